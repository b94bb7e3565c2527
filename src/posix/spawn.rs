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
//!
//! Linux, where the system allows it: the program runs in a PID namespace
//! of its own, under a small init of ours as its PID 1 (`init_steps`), as
//! isolate and nsjail do; for a supervisor that is not root, inside a user
//! namespace of its own too (no uid map: the program keeps the supervisor
//! user's rights on files, and has no privilege outside). When
//! the program ends, the init reports its wait status through a pipe and
//! exits, and the kernel ends every process left in the namespace: no
//! setsid or double fork escapes it, and the program sees, and can signal,
//! nothing outside (`kill(getppid())` reaches the init, which ignores it).
//! The program is PID 2, not 1, so that the signals it raises on itself
//! (`abort`) keep their default action. The init shares the supervisor's
//! memory (`CLONE_VM`, no copy: a fork of a large supervisor costs
//! milliseconds, and every page the supervisor then writes is copied for
//! each init still alive) on a stack of its own that lives until the init
//! is reaped (`InitStack`); it makes only raw system calls, none of which
//! writes the shared thread state while it lives (no cancellation points;
//! every signal blocked, so no call is interrupted). It starts the program
//! as above. The init stays out of the job's cgroup: it is not the
//! program's, and counts toward no limit.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::exec::{data_backstop, nice_of, pipe, resolve};
use super::isolate;
use crate::command::{Command, Level};
use crate::error::{Error, Result};

fn cstring(field: &'static str, s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(field, "embedded NUL character"))
}

/// What starting a program gave.
pub(crate) struct Spawned {
    /// The process the supervisor waits for: the init of the program's PID
    /// namespace, or the program itself.
    pub wait_pid: libc::pid_t,
    /// The program, as the supervisor's namespace numbers it.
    pub program: libc::pid_t,
    /// With an init: the pipe it reports the program's wait status on.
    pub status: Option<OwnedFd>,
    /// With an init: its stack, kept until it has been reaped.
    pub init_stack: Option<InitStack>,
    /// An isolated run's working directory and grants, undone at its end.
    pub leftovers: Option<Leftovers>,
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
    /// The job's `cgroup.procs` files, open: the child joins them first.
    join: Vec<libc::c_int>,
    /// An isolated run's view of the files, built by its init.
    view: Option<super::isolate::View>,
    /// An isolated run's program: what it leaves and reads back before exec.
    checks: Option<super::isolate::Checks>,
    /// An isolated run's Landlock rules, where the kernel has Landlock.
    landlock: Option<super::isolate::Landlock>,
    /// An isolated run's seccomp filter (empty: none).
    seccomp: Vec<libc::sock_filter>,
    /// A canary instead of a program: the bait it must not reach.
    canary: Option<(CString, u16)>,
    /// What the canary reached (`isolate::canary_probe`).
    canary_found: libc::c_int,
    /// The step of the view (`isolate::enter`) or the check (`confine`) that failed.
    step: usize,
    check: i32,
    /// Written by the child when a step fails: the errno, and which step.
    err: libc::c_int,
    stage: Stage,
    /// The write end of the init's status pipe (a PID namespace), else -1.
    status: libc::c_int,
    /// The top of the stack the init starts the program on (in the init's
    /// mapping, below its own: never zeroed, so only what is used is paid).
    program_stack: usize,
}

/// What the init writes on its status pipe: [tag, a, b], native-endian i32s.
const MSG_STARTED: i32 = 1; // a: errno of a failed start (0: started), b: its stage
const MSG_ENDED: i32 = 2; // a: the program's wait status

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Join,
    Exec,
    /// Building the view, or the program's checks (an isolated run).
    Isolate,
}

impl Stage {
    fn code(self) -> i32 {
        match self {
            Stage::Exec => 0,
            Stage::Join => 1,
            Stage::Isolate => 2,
        }
    }

    fn of(code: i32) -> Stage {
        match code {
            1 => Stage::Join,
            2 => Stage::Isolate,
            _ => Stage::Exec,
        }
    }
}

fn prepare(cmd: &Command, fds: [&OwnedFd; 3], join: &[libc::c_int]) -> Result<Prepared> {
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
        view: None,
        checks: None,
        landlock: None,
        seccomp: Vec::new(),
        canary: None,
        canary_found: 0,
        step: 0,
        check: 0,
        err: 0,
        stage: Stage::Exec,
        status: -1,
        program_stack: 0,
    })
}

/// Every signal the supervisor catches back to its default action, and
/// SIGPIPE and SIGXFSZ too, as subprocess does (in a new process, before it
/// runs anything else).
///
/// # Safety
/// Only in a child of `spawn`, whose signal table is its own.
unsafe fn default_signals() {
    // SAFETY: sigaction on valid signal numbers with live structs.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if caught || sig == libc::SIGPIPE || sig == libc::SIGXFSZ {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }
}

/// Writes one status message (a raw system call: no cancellation point).
///
/// # Safety
/// `fd` is the init's open status pipe.
unsafe fn report(fd: libc::c_int, msg: [i32; 3]) {
    // SAFETY: writing 12 bytes from a live array; a pipe write this small is atomic.
    unsafe {
        libc::syscall(
            libc::SYS_write,
            fd,
            msg.as_ptr(),
            std::mem::size_of_val(&msg),
        )
    };
}

/// The init's stack: mapped apart from the Rust heap, unmapped once the
/// init has been reaped (it runs on it until then).
pub(crate) struct InitStack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a mapping owned by one `Running`, touched by no thread of ours.
unsafe impl Send for InitStack {}

impl InitStack {
    const LEN: usize = 256 * 1024;

    fn new() -> Result<InitStack> {
        // SAFETY: a fresh anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os("mmap (init stack)"));
        }
        Ok(InitStack {
            base,
            len: Self::LEN,
        })
    }

    /// The top of the init's own stack.
    fn top(&self) -> *mut libc::c_void {
        ((self.base as usize + self.len) & !15) as *mut libc::c_void
    }

    /// The top of the program's start-up stack: the lowest 64 KiB.
    fn program_top(&self) -> usize {
        (self.base as usize + 64 * 1024) & !15
    }
}

impl Drop for InitStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the init that ran on it has been reaped.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The init of a program's PID namespace (PID 1 there), in the
/// supervisor's memory on its own stack: starts the program (PID 2) as
/// `child_steps` does, reports that start, reaps whatever ends in the
/// namespace, and when the program ends reports its wait status and exits
/// (the kernel then ends every process left in the namespace). Every signal
/// stays blocked: as PID 1 it ignores those sent from inside; SIGKILL from
/// outside ends it.
///
/// # Safety
/// `p` lives until the start is reported (the supervisor waits for it).
unsafe fn init_steps(p: &mut Prepared) -> ! {
    // SAFETY: (the whole body) plain libc calls on this process's own data.
    // Its signal handlers stay as they were: every signal is blocked here,
    // and the program resets them (`child_steps`).
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if let Some(v) = &mut p.view {
            if let Err((e, step)) = super::isolate::enter(v) {
                p.step = step;
                report(p.status, [MSG_STARTED, e, Stage::Isolate.code()]);
                libc::_exit(127);
            }
        }
        // A copy of every descriptor the supervisor had is here: only the
        // program's three, its cgroups and the status pipe stay (another
        // run's pipe end kept open here would keep that run from seeing its
        // end of file).
        let mut keep = [-1; 12];
        for (k, &fd) in keep
            .iter_mut()
            .zip(p.fds.iter().chain(&[p.status]).chain(&p.join))
        {
            *k = fd;
        }
        close_all_but(&mut keep);
        p.parent = 1; // the program's parent, as it sees it
        let top = p.program_stack as *mut libc::c_void;
        let pid = libc::clone(
            child_entry,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            p as *mut Prepared as *mut libc::c_void,
        );
        let err = if pid < 0 {
            *libc::__errno_location()
        } else {
            p.err
        };
        let stage = p.stage.code();
        let status = p.status; // `p` is the supervisor's again after the report
        report(status, [MSG_STARTED, err, stage]);
        if err != 0 {
            libc::_exit(127);
        }
        loop {
            let mut st: libc::c_int = 0;
            let r = libc::syscall(
                libc::SYS_wait4,
                -1,
                &mut st as *mut libc::c_int,
                libc::__WALL,
                std::ptr::null_mut::<libc::rusage>(),
            );
            if r == pid as libc::c_long {
                report(status, [MSG_ENDED, st, 0]);
                libc::_exit(0);
            }
            if r < 0 {
                libc::_exit(126); // no children left: cannot be, the program is one
            }
        }
    }
}

/// Closes every descriptor from 3 up but those of `keep` (async-signal-safe).
///
/// # Safety
/// Only in the init, whose descriptors are its own copies.
unsafe fn close_all_but(keep: &mut [libc::c_int]) {
    keep.sort_unstable();
    let mut from: libc::c_uint = 3;
    for &mut k in keep {
        if k >= from as libc::c_int {
            close_range(from, k as libc::c_uint - 1); // nothing when k == from
            from = k as libc::c_uint + 1;
        }
    }
    close_range(from, libc::c_uint::MAX);

    fn close_range(first: libc::c_uint, last: libc::c_uint) {
        if first > last {
            return;
        }
        // SAFETY: close_range(2) on this process's own descriptors.
        let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if r != 0 {
            // Before Linux 5.9: one by one, up to a bound.
            for fd in first..=last.min(65_535) {
                // SAFETY: close(2) on this process's own descriptors.
                unsafe { libc::syscall(libc::SYS_close, fd) };
            }
        }
    }
}

extern "C" fn init_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is this process's copy of the `Prepared` the parent passed.
    unsafe { init_steps(&mut *(arg as *mut Prepared)) }
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
        default_signals();
        // Into the job's cgroups before anything else, so all it starts
        // is in them too; a job that cannot be joined is not started.
        for &fd in &p.join {
            if libc::write(fd, b"0".as_ptr() as *const _, 1) != 1 {
                p.err = *libc::__errno_location();
                p.stage = Stage::Join;
                libc::_exit(127);
            }
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
        // Isolated: leave root, drop every capability, no_new_privs, and
        // read it all back, before the program's first instruction.
        if let Some(c) = &p.checks {
            if let Err((e, check)) = super::isolate::confine(c) {
                p.err = e;
                p.check = check;
                p.stage = Stage::Isolate;
                libc::_exit(127);
            }
        }
        if let Some(l) = &p.landlock {
            if let Err(e) = l.enforce() {
                p.err = e;
                p.check = 5;
                p.stage = Stage::Isolate;
                libc::_exit(127);
            }
        }
        if let Err(e) = super::isolate::seccomp(&p.seccomp) {
            p.err = e;
            p.check = 6;
            p.stage = Stage::Isolate;
            libc::_exit(127);
        }
        if let Some(d) = &p.cwd {
            if libc::chdir(d.as_ptr()) != 0 {
                p.err = *libc::__errno_location();
                libc::_exit(127);
            }
        }
        if let Some((secret, port)) = &p.canary {
            let net = p.view.as_ref().is_some_and(|v| v.net());
            p.canary_found = super::isolate::canary_probe(secret, *port, net);
            libc::_exit(0);
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

/// How this supervisor makes a run's PID namespace: 0, as root (or with
/// CAP_SYS_ADMIN); 1, inside a user namespace of its own, for a supervisor
/// without that right (the program then has no privilege outside it, and
/// its files are still the supervisor user's); 2, not at all (the system
/// gives this user neither). Each way is tried until it fails once.
static PID_NS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether runs get a PID namespace of their own on this system.
pub(crate) fn pid_namespaces() -> bool {
    PID_NS.load(std::sync::atomic::Ordering::Relaxed) < 2
}

/// The `clone` flags that make the namespaces the [`PID_NS`] way `level`.
fn ns_flags(level: u8) -> libc::c_int {
    match level {
        0 => libc::CLONE_NEWPID,
        _ => libc::CLONE_NEWUSER | libc::CLONE_NEWPID,
    }
}

/// Starts `cmd` with `fds` as its stdin, stdout, stderr, in a PID namespace
/// of its own under our init where `own_pid_ns` and the system allow it
/// (always, for an isolated run: else it is refused).
/// `join`: the open `cgroup.procs` files the program writes itself into first.
pub(crate) fn spawn(
    cmd: &Command,
    fds: [&OwnedFd; 3],
    join: &[libc::c_int],
    own_pid_ns: bool,
) -> Result<Spawned> {
    let level = cmd.isolation.level;
    if level == Level::None {
        let mut p = prepare(cmd, fds, join)?;
        return launch(&mut p, cmd, own_pid_ns, None);
    }
    // Checked already (`Running::start`, `Command::isolated_by`).
    ready(level)?;
    let checks = isolate::Checks::new()?;
    let mut left = Leftovers::default();
    let cwd = match &cmd.cwd {
        Some(d) => std::fs::canonicalize(d).map_err(|e| Error::from_io(format!("cwd {d:?}"), e))?,
        None => {
            let w = isolate::Workdir::new(checks.uid)?;
            let d = w.0.clone();
            left.workdir = Some(w);
            d
        }
    };
    let mut c = cmd.clone();
    // The program by its absolute path: its folder is part of the view.
    let program = resolve(cmd)?;
    let program = if program.is_absolute() {
        program
    } else {
        cmd.cwd
            .clone()
            .map_or_else(std::env::current_dir, Ok)
            .map_err(|e| Error::from_io("the current directory", e))?
            .join(program)
    };
    c.program = program.to_string_lossy().into_owned();
    c.cwd = Some(cwd.clone());
    let view = isolate::plan(
        level,
        Some(&program),
        &cwd,
        &cmd.isolation.readable,
        &cmd.isolation.writable,
    )?;
    if let Some(uid) = checks.uid {
        // A root supervisor's program runs as nobody: what it must reach,
        // and nobody cannot, gets one ACL entry, taken back at the end.
        let mut need = Vec::new();
        if left.workdir.is_none() {
            need.push((cwd.clone(), true));
        }
        for w in &cmd.isolation.writable {
            need.push((w.clone(), true));
        }
        for r in cmd
            .isolation
            .readable
            .iter()
            .cloned()
            .chain(program.parent().map(|p| p.to_path_buf()))
        {
            need.push((r, false));
        }
        for (path, write) in need {
            // One key per folder, whatever the spelling, so that two runs'
            // grants on it share one record (and the last puts it back).
            let path =
                std::fs::canonicalize(&path).map_err(|e| Error::from_io(format!("{path:?}"), e))?;
            if !isolate::reachable(&path, write) {
                left.grants.push(isolate::Grant::new(&path, uid, write)?);
            }
        }
    }
    let mut p = prepare(&c, fds, join)?;
    p.landlock = isolate::Landlock::plan(&view)?;
    p.seccomp = isolate::seccomp_program();
    p.view = Some(view);
    p.checks = Some(checks);
    let mut s = launch(&mut p, &c, true, Some(level))?;
    s.leftovers = Some(left);
    Ok(s)
}

/// Whether `level` is enforced here (its canary, once per process): an
/// `Error::Isolation` if not.
pub(crate) fn ready(level: Level) -> Result<()> {
    if level == Level::None {
        return Ok(());
    }
    isolate::canary_once(level, || {
        let checks =
            isolate::Checks::new().map_err(|e| format!("its canary could not run: {e}"))?;
        canary(level, checks)
    })
    .map_err(|what| Error::isolation(level, what, None))
}

/// What an isolated run leaves to undo when it ends: the working directory
/// made for it, the grants made for it.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    workdir: Option<isolate::Workdir>,
    grants: Vec<isolate::Grant>,
}

impl Leftovers {
    /// The working directory made for the run, left in place.
    pub fn keep_workdir(&mut self) -> Option<std::path::PathBuf> {
        self.workdir.take().map(isolate::Workdir::keep)
    }
}

/// Proves `level` is enforced here, once: a process under it must not read
/// a file everyone may read, nor (strict) reach a listener on 127.0.0.1.
fn canary(level: Level, checks: isolate::Checks) -> isolate::CanaryResult {
    let fail = |e: Error| format!("its canary could not run: {e}");
    let bait = isolate::Bait::new().map_err(fail)?;
    let dir = isolate::Workdir::new(checks.uid).map_err(fail)?;
    let null = |w| devnull_fd(w).map_err(fail);
    let (i, o) = (null(false)?, null(true)?);
    let mut c = Command::new("/bin/true");
    c.cwd = Some(dir.0.clone());
    c.isolation.level = level;
    let view = isolate::plan(level, None, &dir.0, &[], &[]).map_err(fail)?;
    let mut p = prepare_canary(&c, [&i, &o, &o]).map_err(fail)?;
    p.landlock = isolate::Landlock::plan(&view).map_err(fail)?;
    p.seccomp = isolate::seccomp_program();
    p.view = Some(view);
    p.checks = Some(checks);
    p.canary = Some((bait.secret.clone(), bait.port));
    let s = launch(&mut p, &c, true, Some(level)).map_err(|e| match e {
        Error::Isolation {
            message,
            code: Some(c),
            ..
        } => format!(
            "{message} (OS error {c}: {})",
            std::io::Error::from_raw_os_error(c)
        ),
        Error::Isolation { message, .. } => message,
        e => fail(e),
    })?;
    let mut st = 0;
    // SAFETY: reaping the canary's init, which exits once the canary has.
    unsafe { libc::waitpid(s.wait_pid, &mut st, 0) };
    drop(s);
    // SAFETY: written by the canary before it exited; it has been reaped.
    let found = unsafe { std::ptr::read_volatile(&p.canary_found) };
    let mut reached = Vec::new();
    if found & 1 != 0 {
        reached.push("a file it was not granted (the supervisor's, readable by everyone)");
    }
    if found & 2 != 0 {
        reached.push("a listener on 127.0.0.1");
    }
    if reached.is_empty() {
        Ok(())
    } else {
        Err(format!("its canary reached {}", reached.join(" and ")))
    }
}

/// A canary's `Prepared`: nothing of a program to resolve.
fn prepare_canary(c: &Command, fds: [&OwnedFd; 3]) -> Result<Prepared> {
    let mut p = prepare(c, fds, &[])?;
    p.rlimits.clear();
    Ok(p)
}

fn devnull_fd(write: bool) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::from_io("opening /dev/null", e))
}

/// Starts the prepared `p` (of `cmd`): under an init in a PID namespace of
/// its own where `own_pid_ns` and the system allow it; `isolated`, with the
/// namespaces of its view (refused, not weakened, where the system says no).
fn launch(
    p: &mut Prepared,
    cmd: &Command,
    own_pid_ns: bool,
    isolated: Option<Level>,
) -> Result<Spawned> {
    let status = if isolated.is_some() || (own_pid_ns && pid_namespaces()) {
        Some(pipe()?)
    } else {
        None
    };
    p.status = status.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let init_stack = status.as_ref().map(|_| InitStack::new()).transpose()?;
    let ns_level = PID_NS.load(std::sync::atomic::Ordering::Relaxed);
    let flags = match (&p.view, &p.checks) {
        (Some(v), Some(c)) => libc::CLONE_NEWPID | v.clone_flags(c.uid.is_none()),
        _ => ns_flags(ns_level),
    };
    p.program_stack = init_stack.as_ref().map_or(0, InitStack::program_top);
    // The program's stack where no init starts it (an init has its own).
    const STACK: usize = 256 * 1024;
    let mut stack = if init_stack.is_none() {
        vec![0u8; STACK]
    } else {
        Vec::new()
    };
    // SAFETY: one past the end of the buffer (empty: unused), aligned down to 16 bytes.
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
    let top = (top as usize & !15) as *mut libc::c_void;
    // No signal handler may run on the child's stack in the shared memory:
    // block them all around clone (the program unblocks before exec).
    // SAFETY: sigset operations on local, initialised values.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) };
    let arg = p as *mut Prepared as *mut libc::c_void;
    let pid = match &init_stack {
        // SAFETY: `init_entry` runs on its own mapped stack, which lives
        // until the init is reaped; it uses `p` until it reports the start,
        // and this function waits for that report.
        Some(st) => unsafe {
            libc::clone(
                init_entry,
                st.top(),
                libc::CLONE_VM | flags | libc::SIGCHLD,
                arg,
            )
        },
        // SAFETY: `child_entry` runs on `stack` with `p`, both alive until
        // the child has exec'd or exited (CLONE_VFORK suspends us until then).
        None => unsafe {
            libc::clone(
                child_entry,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                arg,
            )
        },
    };
    let clone_err = std::io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        let refused = matches!(
            clone_err.raw_os_error(),
            Some(libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS)
        );
        if let (Some(level), true) = (isolated, refused) {
            return Err(Error::isolation(
                level,
                "the system refuses the namespaces it needs (user, mount, PID, IPC, UTS, \
                 and network for strict)",
                clone_err.raw_os_error(),
            ));
        }
        if status.is_some() && refused {
            // No right to this way here: the next (in a user namespace of
            // its own; then none, and `not_applied` says so).
            let _ = PID_NS.compare_exchange(
                ns_level,
                ns_level + 1,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
            return launch(p, cmd, own_pid_ns, None);
        }
        return Err(Error::from_io(
            format!("clone for {:?}", cmd.program),
            clone_err,
        ));
    }
    let (err, stage, status) = match status {
        None => {
            // SAFETY: the child wrote these before exiting, if at all; it is gone or exec'd.
            let (err, stage) = unsafe {
                (
                    std::ptr::read_volatile(&p.err),
                    std::ptr::read_volatile(&p.stage),
                )
            };
            (err, stage, None)
        }
        Some((r, w)) => {
            drop(w); // the init holds its own copy
            match read_msg(&r) {
                Some([MSG_STARTED, err, stage]) => (err, Stage::of(stage), Some(r)),
                _ => (libc::ECHILD, Stage::Exec, Some(r)), // the init died
            }
        }
    };
    if err != 0 {
        let mut st = 0;
        // SAFETY: reaping the child that failed to start the program.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        return Err(match (stage, isolated) {
            (Stage::Join, _) => Error::os(
                format!("starting {:?}: joining the job's cgroup", cmd.program),
                err,
            ),
            (Stage::Isolate, Some(level)) => {
                // SAFETY: written before the report that was read above.
                let (step, check) = unsafe {
                    (
                        std::ptr::read_volatile(&p.step),
                        std::ptr::read_volatile(&p.check),
                    )
                };
                Error::isolation(
                    level,
                    isolate::failed_step(p.view.as_ref(), step, check),
                    Some(err),
                )
            }
            _ => Error::os(format!("starting {:?}", cmd.program), err),
        });
    }
    let program = match &status {
        Some(_) => program_of(pid).unwrap_or(pid),
        None => pid,
    };
    Ok(Spawned {
        wait_pid: pid,
        program,
        status,
        init_stack,
        leftovers: None,
    })
}

/// The program an init started: its one child, numbered in our namespace.
fn program_of(init: libc::pid_t) -> Option<libc::pid_t> {
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The program's wait status, read from its init's status pipe once the
/// init has ended: as the init reported it, or SIGKILL where the init was
/// killed before it could.
pub(crate) fn program_status(fd: &OwnedFd) -> libc::c_int {
    match read_msg(fd) {
        Some([MSG_ENDED, st, _]) => st,
        _ => libc::SIGKILL,
    }
}

/// One message of an init's status pipe (blocking); None at its end.
fn read_msg(fd: &OwnedFd) -> Option<[i32; 3]> {
    let mut buf = [0i32; 3];
    let want = std::mem::size_of_val(&buf);
    loop {
        // SAFETY: reading into a live array of `want` bytes from an fd we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
        if n == want as isize {
            return Some(buf);
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}
