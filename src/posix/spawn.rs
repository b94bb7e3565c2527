//! Starting a child on POSIX.
//!
//! Linux: `clone(CLONE_VM | CLONE_VFORK)`, as glibc's `posix_spawn` does, so
//! starting a child costs the same whatever the supervisor's size (a Python
//! process): no page tables are copied. The parent prepares every string and
//! number first; the child, on its own small stack, makes only
//! async-signal-safe calls: default signal dispositions, `setsid`,
//! `PR_SET_PDEATHSIG`, the rlimits, `nice`, its three stdio, `chdir`,
//! `execve`. An exec failure's errno comes back through the shared memory.
//! Elsewhere: `std::process::Command` with the same steps in `pre_exec`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::exec::{data_backstop, nice_of, resolve};
use crate::command::Command;
use crate::error::{Error, Result};

fn cstring(field: &'static str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(field, "embedded NUL character"))
}

/// Everything the child needs, made before it exists.
struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    fds: [libc::c_int; 3],
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
    nice: Option<libc::c_int>,
    parent: libc::pid_t,
    /// The job's `cgroup.procs` files: the child joins them first.
    join: Vec<CString>,
    /// Written by the child when a step fails: the errno, and which step.
    err: libc::c_int,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Join,
    Exec,
}

fn prepare(cmd: &Command, fds: [&OwnedFd; 3], join: &[CString]) -> Result<Prepared> {
    let path = resolve(cmd)?;
    let path = cstring("args", path.as_os_str().as_bytes())?;
    let mut argv_s = vec![cstring("args", cmd.program.as_bytes())?];
    for a in &cmd.args {
        argv_s.push(cstring("args", a.as_bytes())?);
    }
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if cmd.env.inherit {
        env.extend(
            std::env::vars_os().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
    }
    for (k, v) in &cmd.env.changes {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::invalid(
                "env",
                format!("environment variable name {k:?} is not valid"),
            ));
        }
        env.retain(|(ek, _)| ek != k.as_bytes());
        if let Some(v) = v {
            env.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
    }
    let mut envp_s = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k;
        kv.push(b'=');
        kv.extend(v);
        envp_s.push(cstring("env", &kv)?);
    }
    let cwd = match &cmd.cwd {
        Some(d) => {
            if !d.is_dir() {
                return Err(Error::os(
                    format!("cwd {d:?}: no such directory"),
                    libc::ENOENT,
                ));
            }
            Some(cstring("cwd", d.as_os_str().as_bytes())?)
        }
        None => None,
    };
    let l = &cmd.limits;
    let lim = |cur: u64, max: u64| libc::rlimit {
        rlim_cur: cur as libc::rlim_t,
        rlim_max: max as libc::rlim_t,
    };
    let mut rlimits = vec![(libc::RLIMIT_CORE as libc::c_int, lim(0, 0))];
    if let Some(m) = l.memory {
        // The monitor is the memory limit; RLIMIT_DATA only guards the machine,
        // far enough above it that the monitor sees the limit crossed first.
        let d = data_backstop(m);
        rlimits.push((libc::RLIMIT_DATA as libc::c_int, lim(d, d)));
    }
    if let Some(t) = l.cpu_time {
        let c = t.as_secs() + 1;
        rlimits.push((libc::RLIMIT_CPU as libc::c_int, lim(c, c + 1)));
    }
    let argv = argv_s
        .iter()
        .map(|c| c.as_ptr())
        .chain(Some(std::ptr::null()))
        .collect();
    let envp = envp_s
        .iter()
        .map(|c| c.as_ptr())
        .chain(Some(std::ptr::null()))
        .collect();
    Ok(Prepared {
        path,
        _argv: argv_s,
        argv,
        _envp: envp_s,
        envp,
        cwd,
        fds: fds.map(|f| f.as_raw_fd()),
        rlimits,
        nice: l.priority.map(nice_of),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        join: join.to_vec(),
        err: 0,
        stage: Stage::Exec,
    })
}

/// The child's side: only async-signal-safe calls, nothing allocated.
///
/// # Safety
/// `p` points to a `Prepared` that lives until the parent resumes (it is
/// suspended until this function execs or exits: `CLONE_VFORK`).
unsafe fn child_steps(p: &mut Prepared) -> ! {
    // SAFETY: (the whole body) plain libc calls on prepared, live data; the
    // signal table is the child's own (no CLONE_SIGHAND).
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            // SIGPIPE and SIGXFSZ back to default too, as subprocess does.
            if caught || sig == libc::SIGPIPE || sig == libc::SIGXFSZ {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        // Into the job's cgroups before anything else, so all it starts
        // is in them too; a job that cannot be joined is not started.
        for f in &p.join {
            let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr() as *const _, 1) != 1 {
                p.err = *libc::__errno_location();
                p.stage = Stage::Join;
                libc::_exit(127);
            }
            libc::close(fd);
        }
        libc::setsid();
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != p.parent {
            libc::_exit(137); // the supervisor died before prctl took hold
        }
        for (res, r) in &p.rlimits {
            libc::setrlimit(*res as _, r);
        }
        if let Some(n) = p.nice {
            libc::setpriority(libc::PRIO_PROCESS, 0, n);
        }
        // Move the three fds above 2 first, so none is overwritten by another's dup2.
        let mut high = [0; 3];
        for (h, &fd) in high.iter_mut().zip(p.fds.iter()) {
            *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            if *h < 0 {
                p.err = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        for (i, &fd) in high.iter().enumerate() {
            if libc::dup2(fd, i as libc::c_int) < 0 {
                p.err = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        if let Some(d) = &p.cwd {
            if libc::chdir(d.as_ptr()) != 0 {
                p.err = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        p.err = *libc::__errno_location();
        libc::_exit(127)
    }
}

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Prepared` the parent passed to clone.
    unsafe { child_steps(&mut *(arg as *mut Prepared)) }
}

/// Starts `cmd` with `fds` as its stdin, stdout, stderr; returns its pid.
/// `join`: the `cgroup.procs` files the child writes itself into first.
pub(crate) fn spawn(cmd: &Command, fds: [&OwnedFd; 3], join: &[CString]) -> Result<libc::pid_t> {
    let mut p = prepare(cmd, fds, join)?;
    const STACK: usize = 256 * 1024;
    let mut stack = vec![0u8; STACK];
    // SAFETY: one past the end of the buffer, aligned down to 16 bytes.
    let top = unsafe { stack.as_mut_ptr().add(STACK) };
    let top = (top as usize & !15) as *mut libc::c_void;
    // No signal handler may run on the child's stack in the shared memory:
    // block them all around clone (the child unblocks before exec).
    // SAFETY: sigset operations on local, initialised values.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
    // SAFETY: `child_entry` runs on `stack` with `p`, both alive until the
    // child has exec'd or exited (CLONE_VFORK suspends us until then).
    let pid = unsafe {
        libc::clone(
            child_entry,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut p as *mut Prepared as *mut libc::c_void,
        )
    };
    let clone_err = std::io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(Error::from_io(
            format!("clone for {:?}", cmd.program),
            clone_err,
        ));
    }
    // SAFETY: the child wrote `err` before exiting, if at all; it is gone or exec'd.
    let err = unsafe { std::ptr::read_volatile(&p.err) };
    if err != 0 {
        let mut status = 0;
        // SAFETY: reaping the child that failed to exec.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: as for `err`.
        if unsafe { std::ptr::read_volatile(&p.stage) } == Stage::Join {
            return Err(Error::os(
                format!("starting {:?}: joining the job's cgroup", cmd.program),
                err,
            ));
        }
        return Err(Error::os(format!("starting {:?}", cmd.program), err));
    }
    Ok(pid)
}
