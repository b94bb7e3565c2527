//! One run and a long-lived job on the POSIX backend.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(not(target_os = "linux"))]
use std::os::unix::process::CommandExt;
#[cfg(not(target_os = "linux"))]
use std::process::Stdio as StdStdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exec::pipe;
#[cfg(not(target_os = "linux"))]
use super::exec::{data_backstop, nice_of, resolve};
use super::monitor::{self, clock_ticks, JobShared};
use super::poller::Poller;
use crate::command::{Command, Output, Stdin};
use crate::decide::{self, Ending, Hit, OUTPUT_LIMIT_HIT};
use crate::engine::{self, Finish, Killer, Outputs, RunSteps};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::outcome::{signal_name, Accounting, NotApplied, Outcome, ProcessInfo, Verdict};

fn not_applied(l: &Limits) -> Vec<NotApplied> {
    let mut v = Vec::new();
    let why = "not available on this platform (Windows only)";
    if l.cpu_rate.is_some() {
        v.push(NotApplied {
            limit: "cpu_rate",
            reason: why.into(),
        });
    }
    if l.io_rate.is_some() {
        v.push(NotApplied {
            limit: "io_rate",
            reason: why.into(),
        });
    }
    if l.affinity.is_some() {
        v.push(NotApplied {
            limit: "affinity",
            reason: "not applied by the POSIX backend".into(),
        });
    }
    if l.ui_restrictions {
        v.push(NotApplied {
            limit: "ui_restrictions",
            reason: why.into(),
        });
    }
    for m in super::cgroup::missing() {
        match m {
            "containment" => v.push(NotApplied {
                limit: "containment",
                reason: "no writable cgroup: a process that leaves the job's session \
                         (setsid) is not followed, and the CPU of orphaned processes \
                         is not counted"
                    .into(),
            }),
            _ if l.memory.is_some() || l.job_memory.is_some() => v.push(NotApplied {
                limit: if l.job_memory.is_some() {
                    "job_memory"
                } else {
                    "memory"
                },
                reason: "no memory cgroup: memory is sampled (every 25 ms), so short \
                         peaks and shared memory can be missed"
                    .into(),
            }),
            _ => {}
        }
    }
    v
}

fn io_err(op: impl Into<String>, e: std::io::Error) -> Error {
    Error::from_io(op, e)
}

/// A pipe between two sandboxed programs (`command::pipe`): (read, write).
pub fn child_pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe()
}

fn devnull(write: bool) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(|e| io_err("opening /dev/null", e))?;
    Ok(OwnedFd::from(f))
}

/// What starting a program gave (Linux: `spawn::Spawned`, with its init).
#[cfg(not(target_os = "linux"))]
pub(crate) struct Spawned {
    pub wait_pid: libc::pid_t,
    pub program: libc::pid_t,
    pub status: Option<OwnedFd>,
}

#[cfg(target_os = "linux")]
use super::spawn::Spawned;

/// Starts `cmd` into `job` (its cgroups, a new session) with `fds` as its
/// stdio, in a PID namespace of its own where `own_pid_ns` and the system
/// allow it.
fn start_child(
    cmd: &Command,
    fds: [&OwnedFd; 3],
    job: &JobShared,
    own_pid_ns: bool,
) -> Result<Spawned> {
    #[cfg(target_os = "linux")]
    {
        let join = job
            .os
            .cg
            .as_ref()
            .map_or_else(Vec::new, |c| c.procs_files());
        super::spawn::spawn(cmd, fds, &join, own_pid_ns)
    }
    #[cfg(not(target_os = "linux"))]
    {
        isolation_ready(cmd.isolation.level)?;
        let _ = job; // no cgroups on this system
        let dup = |f: &OwnedFd| -> Result<StdStdio> {
            Ok(StdStdio::from(f.try_clone().map_err(|e| io_err("dup", e))?))
        };
        let mut c = build(cmd, dup(fds[0])?, dup(fds[1])?, dup(fds[2])?)?;
        let child = c
            .spawn()
            .map_err(|e| io_err(format!("starting {:?}", cmd.program), e))?;
        let _ = own_pid_ns; // no PID namespaces on this system
        let pid = child.id() as i32;
        Ok(Spawned {
            wait_pid: pid,
            program: pid,
            status: None,
        })
    }
}

/// Whether `level` is enforced on this system: Linux proves it once (its
/// canary); elsewhere only `none` is.
fn isolation_ready(level: crate::command::Level) -> Result<()> {
    #[cfg(target_os = "linux")]
    return super::spawn::ready(level);
    #[cfg(not(target_os = "linux"))]
    match level {
        crate::command::Level::None => Ok(()),
        _ => Err(Error::isolation(
            level,
            "this system has no isolation mechanism of winsandbox's (Linux and Windows only)",
            None,
        )),
    }
}

/// A `std::process::Command` that starts a new session with the job's
/// rlimits (systems other than Linux).
#[cfg(not(target_os = "linux"))]
fn build(
    cmd: &Command,
    stdin: StdStdio,
    stdout: StdStdio,
    stderr: StdStdio,
) -> Result<std::process::Command> {
    let mut c = std::process::Command::new(resolve(cmd)?);
    c.args(&cmd.args);
    if !cmd.env.inherit {
        c.env_clear();
    }
    for (k, v) in &cmd.env.changes {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::invalid(
                "env",
                format!("environment variable name {k:?} is not valid"),
            ));
        }
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = &cmd.cwd {
        if !d.is_dir() {
            return Err(Error::os(
                format!("cwd {d:?}: no such directory"),
                libc::ENOENT,
            ));
        }
        c.current_dir(d);
    }
    c.stdin(stdin).stdout(stdout).stderr(stderr);
    let l = &cmd.limits;
    // The monitor is the memory limit; RLIMIT_DATA only guards the machine,
    // far enough above it that the monitor sees the limit crossed first.
    let data = l.memory.map(data_backstop);
    let cpu = l.cpu_time.map(|t| t.as_secs() + 1);
    let nice = l.priority.map(nice_of);
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (setsid, prctl, getppid, setrlimit, setpriority).
    let parent = unsafe { libc::getpid() };
    // SAFETY: see above.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                if libc::getppid() != parent {
                    libc::_exit(137); // the supervisor died before prctl took hold
                }
            }
            let _ = parent;
            let set = |res, v: u64| {
                let r = libc::rlimit {
                    rlim_cur: v as libc::rlim_t,
                    rlim_max: v as libc::rlim_t,
                };
                libc::setrlimit(res, &r)
            };
            if let Some(d) = data {
                set(libc::RLIMIT_DATA, d);
            }
            if let Some(c) = cpu {
                let r = libc::rlimit {
                    rlim_cur: c as libc::rlim_t,
                    rlim_max: (c + 1) as libc::rlim_t,
                };
                libc::setrlimit(libc::RLIMIT_CPU, &r);
            }
            set(libc::RLIMIT_CORE, 0);
            if let Some(n) = nice {
                libc::setpriority(libc::PRIO_PROCESS, 0, n);
            }
            Ok(())
        });
    }
    Ok(c)
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: a new fd we own.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
    }
    let _ = pid;
    None
}

pub struct Running {
    job: Arc<JobShared>,
    /// The program.
    pid: i32,
    /// What is waited for: the init of the program's PID namespace, which
    /// reports the program's wait status on `status` and ends with it; or
    /// the program itself.
    wait_pid: i32,
    status: Option<OwnedFd>,
    /// The init's stack: dropped (unmapped) only after the init is reaped,
    /// by `try_reap` or by `Drop` (whose body runs before the fields go).
    #[cfg(target_os = "linux")]
    init_stack: Option<super::spawn::InitStack>,
    pidfd: Option<OwnedFd>,
    started: Instant,
    stdin: Option<(OwnedFd, Vec<u8>, usize)>,
    readers: [Option<OwnedFd>; 2],
    outputs: Outputs,
    exit: Option<(libc::c_int, libc::rusage, Instant)>,
    not_applied: Vec<NotApplied>,
    finish: Finish,
    isolation: crate::command::Level,
    /// An isolated run's working directory and grants: undone last, once
    /// the init (and so everything in its namespace) is gone.
    #[cfg(target_os = "linux")]
    leftovers: Option<super::spawn::Leftovers>,
    /// Name the working directory made for the run, and keep it.
    keep_workdir: bool,
}

impl Running {
    pub fn start(cmd: &Command) -> Result<Running> {
        cmd.limits.validate()?;
        cmd.validate_isolation()?;
        let outputs = Outputs::open(&cmd.stdout, &cmd.stderr, cmd.limits.output_limit, |p| {
            std::fs::File::create(p).map_err(|e| io_err(format!("creating {p:?}"), e))
        })?;
        let (child_in, our_in) = match &cmd.stdin {
            Stdin::Null => (devnull(false)?, None),
            Stdin::Bytes(b) => {
                let (r, w) = pipe()?;
                (r, (!b.is_empty()).then_some((w, b.clone(), 0)))
            }
            Stdin::File(p) => (
                OwnedFd::from(
                    std::fs::File::open(p).map_err(|e| io_err(format!("opening {p:?}"), e))?,
                ),
                None,
            ),
            Stdin::Pipe(e) => (e.take("stdin")?, None),
        };
        // Each output: a pipe the supervisor reads, or a pipe to another program.
        let stream = |o: &Output, what| -> Result<(Option<OwnedFd>, OwnedFd)> {
            match o {
                Output::Pipe(e) => Ok((None, e.take(what)?)),
                _ => pipe().map(|(r, w)| (Some(r), w)),
            }
        };
        let (out_r, out_w) = stream(&cmd.stdout, "stdout")?;
        let (err_r, err_w) = stream(&cmd.stderr, "stderr")?;
        let job = monitor::register(&cmd.limits);
        // Started from a lasting thread (see `on_lasting_thread`): the run is
        // carried by the driver, so it may well outlive the thread that
        // started it. The child's ends are dropped there once it holds them,
        // so end of file follows its exit.
        let (c, j) = (cmd.clone(), job.clone());
        let spawned =
            on_lasting_thread(move || start_child(&c, [&child_in, &out_w, &err_w], &j, true))
                .inspect_err(|_| monitor::unregister(&job))?;
        let pid = spawned.program;
        job.add_session(pid);
        // Wall time runs from the moment the process exists.
        job.start_clock();
        let started = Instant::now();
        for f in [&out_r, &err_r].into_iter().flatten() {
            set_nonblocking(f.as_raw_fd());
        }
        let stdin = our_in.map(|(fd, data, pos)| {
            set_nonblocking(fd.as_raw_fd());
            (fd, data, pos)
        });
        let (out, err) = (out_r, err_r);
        let mut not_applied = not_applied(&cmd.limits);
        #[cfg(target_os = "linux")]
        not_applied.extend(super::isolate::not_applied(cmd.isolation.level));
        if spawned.status.is_none() {
            not_applied.push(NotApplied {
                limit: "pid_namespace",
                reason: "no PID namespace could be made (the supervisor is not root, and \
                         the system gives this user none): the program can see and signal \
                         processes outside its run"
                    .into(),
            });
        }
        Ok(Running {
            job,
            pid,
            wait_pid: spawned.wait_pid,
            status: spawned.status,
            #[cfg(target_os = "linux")]
            init_stack: spawned.init_stack,
            #[cfg(target_os = "linux")]
            leftovers: spawned.leftovers,
            keep_workdir: cmd.keep_workdir,
            isolation: cmd.isolation.level,
            pidfd: pidfd(spawned.wait_pid),
            started,
            stdin,
            readers: [out, err],
            outputs,
            exit: None,
            not_applied,
            finish: Finish::default(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The processes of the job alive now.
    pub fn process_ids(&self) -> Result<Vec<u32>> {
        Ok(live_pids(&self.job))
    }

    /// Ends the whole tree now; the outcome says `SE`, "killed".
    pub fn kill(&mut self) {
        self.killer().kill();
    }

    /// What kills this run from any thread, while another waits on it.
    pub fn killer(&self) -> Killer {
        Killer::new(&self.job)
    }

    fn pump_io(&mut self) -> Result<()> {
        if let Some((fd, data, pos)) = &mut self.stdin {
            loop {
                if *pos >= data.len() {
                    self.stdin = None;
                    break;
                }
                let chunk = &data[*pos..(*pos + 65536).min(data.len())];
                // SAFETY: writing from a live buffer to an fd we own.
                let n =
                    unsafe { libc::write(fd.as_raw_fd(), chunk.as_ptr() as *const _, chunk.len()) };
                if n > 0 {
                    *pos += n as usize;
                    continue;
                }
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted
                {
                    break;
                }
                self.stdin = None; // EPIPE: the child stopped reading
                break;
            }
        }
        let mut buf = [0u8; 65536];
        for i in 0..2 {
            while let Some(fd) = &self.readers[i] {
                // SAFETY: reading into a live stack buffer from an fd we own.
                let n =
                    unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len()) };
                if n > 0 {
                    if self.outputs.deliver(i, &buf[..n as usize])? {
                        self.job.fire(OUTPUT_LIMIT_HIT);
                    }
                    continue;
                }
                if n == 0 {
                    self.readers[i] = None;
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    self.readers[i] = None;
                }
                break;
            }
        }
        Ok(())
    }

    fn try_reap(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // Kill the rest of the tree while the main process is still a zombie
        // (its pid, the group's id, cannot be reused until it is reaped).
        // SAFETY: an all-zero siginfo_t is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only peeks; `info` is writable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.wait_pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: reading the pid field waitid filled (0 when nothing exited).
        if r != 0 || unsafe { info.si_pid() } == 0 {
            return;
        }
        // No limit fires from now on: the rest is ended, then drained.
        self.job.lock().run.ended = true;
        self.job.end();
        // SAFETY: reaping our own child; `status` and `ru` are writable.
        let r = unsafe { libc::wait4(self.wait_pid, &mut status, 0, &mut ru) };
        if r == self.wait_pid {
            // The init's report of the program (its CPU is in the init's
            // `ru`: the init reaped it). None: the init was killed first.
            #[cfg(target_os = "linux")]
            if let Some(fd) = &self.status {
                status = super::spawn::program_status(fd);
                self.init_stack = None; // the init is gone
            }
            self.exit = Some((status, ru, Instant::now()));
            self.finish.exited(Instant::now());
        }
    }

    /// Waits up to `timeout` (`None`: until done). `Ok(None)`: still running.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<Outcome>> {
        engine::wait(self, timeout)
    }

    /// Hands the run's pipes and its pidfd to the driver thread's `poller`
    /// under `key`.
    pub fn attach(&mut self, poller: &Poller, key: usize) -> Result<()> {
        for r in self.readers.iter().flatten() {
            poller.add(r, false, key)?;
        }
        if let Some((fd, _, _)) = &self.stdin {
            poller.add(fd, true, key)?;
        }
        if let Some(p) = &self.pidfd {
            poller.add(p, false, key)?;
        }
        Ok(())
    }

    fn outcome(&mut self) -> Outcome {
        let (status, ru, exited) = self.exit.expect("finish after exit");
        monitor::unregister(&self.job);
        // The kernel's figures for the whole tree, where the job has a cgroup
        // (read after the rest was killed: nothing runs in it any more).
        let cg = self.job.os.cg.as_ref();
        let cg_cpu = cg.and_then(|c| c.cpu_ns());
        let cg_peak = cg.and_then(|c| c.memory_peak()).unwrap_or(0);
        let oom = cg.map_or(0, |c| c.oom_kills());
        let st = self.job.lock();
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let sampled_cpu = st.cpu_ticks as f64 / clock_ticks() as f64;
        let (mut user, mut kernel) = (tv(ru.ru_utime), tv(ru.ru_stime));
        if let Some((u, k)) = cg_cpu.filter(|(u, k)| (u + k) as f64 / 1e9 >= user + kernel) {
            (user, kernel) = (u as f64 / 1e9, k as f64 / 1e9);
        }
        let scale = if user + kernel < sampled_cpu && user + kernel > 0.0 {
            sampled_cpu / (user + kernel)
        } else {
            1.0
        };
        // Not ru_maxrss: a child started by clone(CLONE_VM) or fork carries
        // the supervisor's peak into its own. One process alone: the job's
        // peak is its peak.
        let seen = (st.seen.len() as u32).max(1);
        let process_peak = if seen == 1 { cg_peak } else { 0 };
        #[cfg(target_os = "linux")]
        let workdir = (self.keep_workdir)
            .then(|| self.leftovers.as_mut().and_then(|l| l.keep_workdir()))
            .flatten();
        #[cfg(not(target_os = "linux"))]
        let workdir = None;
        let mut o = Outcome {
            pid: self.pid as u32,
            user_time: user * scale,
            kernel_time: kernel * scale,
            wall_time: exited.saturating_duration_since(self.started).as_secs_f64(),
            peak_memory: st.run.peak_process_memory.max(process_peak),
            peak_job_memory: st.run.peak_job_memory.max(cg_peak),
            processes: seen,
            read_bytes: (ru.ru_inblock.max(0) as u64) * 512,
            write_bytes: (ru.ru_oublock.max(0) as u64) * 512,
            not_applied: self.not_applied.clone(),
            isolation: self.isolation,
            workdir,
            ..Default::default()
        };
        let hit = st.run.hit;
        drop(st);
        let signal = if libc::WIFSIGNALED(status) {
            Some(libc::WTERMSIG(status))
        } else {
            None
        };
        o.exit_code = Some(match signal {
            Some(s) => -(s as i64),
            None => libc::WEXITSTATUS(status) as i64,
        });
        o.status = signal.and_then(signal_name);
        self.outputs.finish_into(&mut o);
        let abnormal = signal.is_some() || o.exit_code != Some(0);
        // What the exit itself shows: RLIMIT_CPU's SIGXCPU (only where a CPU
        // limit was set: a program may raise SIGXCPU itself), the cgroup's
        // OOM killer, the tree's CPU past the limit (orphans included, even
        // after a clean exit), or an abnormal end after the memory peak
        // passed the limit.
        let l = &self.job.limits;
        let cpu_total = Duration::from_secs_f64(o.user_time + o.kernel_time);
        let exit_hit = if signal == Some(libc::SIGXCPU) && l.cpu_time.is_some() {
            Some(Hit::kernel(Verdict::Tle, "cpu_time"))
        } else if oom > 0 {
            let which = if l.job_memory.is_some() {
                "job_memory"
            } else {
                "memory"
            };
            Some(Hit::kernel(Verdict::Mle, which))
        } else if l.cpu_time.is_some_and(|t| cpu_total > t) {
            Some(Hit::kernel(Verdict::Tle, "cpu_time"))
        } else if abnormal && l.memory.is_some_and(|m| o.peak_memory > m) {
            Some(Hit::kernel(Verdict::Mle, "memory"))
        } else {
            None
        };
        let j = decide::judge(&Ending {
            hit,
            killed: self.job.lock().run.killed_before(Some(exited)),
            exit_hit,
            clean_exit: !abnormal,
        });
        o.verdict = Some(j.verdict);
        o.mechanism = Some(j.mechanism);
        o.limit = j.limit;
        o.error = j.error.map(str::to_string);
        o
    }
}

/// The processes of the job that are alive (not zombies).
fn live_pids(job: &JobShared) -> Vec<u32> {
    monitor::members(job)
        .into_iter()
        .map(|p| p as u32)
        .filter(|&p| process_alive(p))
        .collect()
}

/// Whether the process with this id runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    !stat.is_empty() && state != "Z" && state != "X"
}

impl RunSteps for Running {
    fn pump(&mut self) -> Result<()> {
        self.pump_io()?;
        self.try_reap();
        Ok(())
    }

    fn drained(&self) -> bool {
        self.readers.iter().all(Option::is_none)
    }

    fn finish(&mut self) -> &mut Finish {
        &mut self.finish
    }

    fn outcome(&mut self) -> Outcome {
        Running::outcome(self)
    }

    fn wait_event(&mut self, until: Option<Instant>) -> Result<Option<Outcome>> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        for r in self.readers.iter().flatten() {
            fds.push(libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some((fd, _, _)) = &self.stdin {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        let mut slice = 50i32; // without a pidfd, exit is polled this often
        if self.exit.is_none() {
            if let Some(p) = &self.pidfd {
                fds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                slice = -1;
            } else {
                slice = 5;
            }
        }
        let now = Instant::now();
        let mut ms = until.map_or(slice, |u| {
            crate::decide::dur_to_timeout_ms(u.saturating_duration_since(now)).min(i32::MAX as u32)
                as i32
        });
        if slice >= 0 && (ms < 0 || ms > slice) {
            ms = slice;
        }
        // SAFETY: `fds` is a live array of pollfd of the length passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("poll", e));
            }
        }
        Ok(None)
    }

    fn check(&mut self, now: Instant) -> Result<(Option<Outcome>, Option<Instant>)> {
        // Without a pidfd the exit is looked for this often.
        let poll_exit = self.exit.is_none() && self.pidfd.is_none();
        Ok((None, poll_exit.then(|| now + Duration::from_millis(5))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Once the init of the program's PID namespace is reaped, the
        // kernel has ended every process in it, which is every process of
        // the job: nothing is left to end (the cgroup's removal still
        // checks it is empty).
        let emptied = self.exit.is_some() && self.status.is_some();
        if !emptied {
            self.job.end();
        }
        if self.exit.is_none() {
            if self.wait_pid != self.pid {
                // SAFETY: kill(2) on our own child (the init), not yet reaped.
                unsafe { libc::kill(self.wait_pid, libc::SIGKILL) };
            }
            let mut status = 0;
            // SAFETY: reaping our own child, killed just above.
            unsafe { libc::waitpid(self.wait_pid, &mut status, 0) };
        }
        monitor::unregister(&self.job);
    }
}

/// A long-lived job: several processes (each its own session), accounting,
/// termination. Dropping it kills them all.
/// A child's exit code once reaped, shared by its `Child` and its `Sandbox`.
type Status = Arc<std::sync::Mutex<Option<i64>>>;

pub struct Sandbox {
    job: Arc<JobShared>,
    pub not_applied: Vec<NotApplied>,
    /// Every process started into the job, so that closing the sandbox
    /// reaps those nobody waited for (no zombie outlives it).
    children: std::sync::Mutex<Vec<Child>>,
    /// The isolation of every process started into it (`isolate`).
    isolation: crate::command::Isolation,
}

pub struct Child {
    /// The program (what `kill` ends, what `pid` says).
    pid: i32,
    /// What is reaped: the init of an isolated process's namespaces, or the
    /// program itself.
    wait_pid: i32,
    status: Status,
    /// An isolated process's init: its status pipe, stack and leftovers,
    /// dropped once it is reaped.
    init: Arc<std::sync::Mutex<Option<Spawned>>>,
}

/// The exit code of a wait status: the code, or minus the signal.
fn code_of(status: libc::c_int) -> i64 {
    if libc::WIFSIGNALED(status) {
        -(libc::WTERMSIG(status) as i64)
    } else {
        libc::WEXITSTATUS(status) as i64
    }
}

/// Starts `f` on a thread that lives as long as the process and waits for
/// its result, unless this is the main thread: `PR_SET_PDEATHSIG` fires
/// when the thread that started a child ends, so a sandbox process started
/// from a short-lived thread would die with that thread.
fn on_lasting_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Task = Box<dyn FnOnce() + Send>;
    type Spawner = (u32, std::sync::mpsc::Sender<Task>);
    // With the process it serves: a forked child starts its own.
    static SPAWNER: std::sync::Mutex<Option<Spawner>> = std::sync::Mutex::new(None);
    // SAFETY: getpid and gettid have no preconditions.
    if unsafe { libc::gettid() == libc::getpid() } {
        return f();
    }
    let pid = std::process::id();
    let tx = {
        let mut cur = engine::lock(&SPAWNER);
        match &*cur {
            Some((owner, tx)) if *owner == pid => tx.clone(),
            _ => {
                let (tx, rx) = std::sync::mpsc::channel::<Task>();
                std::thread::Builder::new()
                    .name("winsandbox-spawner".into())
                    .spawn(move || {
                        for task in rx {
                            task();
                        }
                    })
                    .expect("spawner thread");
                *cur = Some((pid, tx.clone()));
                tx
            }
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let task: Task = Box::new(move || {
        let _ = done_tx.send(f());
    });
    tx.send(task)
        .expect("the spawner thread lives as long as the process");
    done_rx.recv().expect("the spawner thread runs every task")
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Ends this process (`SIGKILL`); its own children stay in the job.
    /// Nothing is sent once it has been reaped: its pid may be another's.
    pub fn kill(&self) -> Result<()> {
        let st = crate::engine::lock(&self.status);
        if st.is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped (the lock
            // keeps `wait` from reaping it meanwhile), so the pid is still its.
            if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(Error::from_io("kill", e));
                }
            }
        }
        Ok(())
    }

    /// The exit code (minus the signal) once it ended within `timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<i64>> {
        let until = timeout.map(|t| Instant::now() + t);
        loop {
            let mut st = crate::engine::lock(&self.status);
            if st.is_none() {
                let mut status = 0;
                // SAFETY: polling our own child; `status` is writable.
                let r = unsafe { libc::waitpid(self.wait_pid, &mut status, libc::WNOHANG) };
                if r == self.wait_pid {
                    // An init reports its program's status, then goes.
                    let init = crate::engine::lock(&self.init).take();
                    #[cfg(target_os = "linux")]
                    if let Some(fd) = init.as_ref().and_then(|s| s.status.as_ref()) {
                        status = super::spawn::program_status(fd);
                    }
                    drop(init);
                    *st = Some(code_of(status));
                } else if r < 0 {
                    return Err(Error::last_os("waitpid"));
                }
            }
            if let Some(c) = *st {
                return Ok(Some(c));
            }
            drop(st);
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if crate::engine::lock(&self.status).is_none() {
            let mut status = 0;
            // SAFETY: reaping our own child if it has ended (never blocks).
            unsafe { libc::waitpid(self.wait_pid, &mut status, libc::WNOHANG) };
        }
    }
}

impl Sandbox {
    pub fn new(limits: &Limits) -> Result<Sandbox> {
        limits.validate()?;
        let job = monitor::register(limits);
        job.start_clock();
        Ok(Sandbox {
            job,
            not_applied: not_applied(limits),
            children: std::sync::Mutex::new(Vec::new()),
            isolation: Default::default(),
        })
    }

    /// Isolates every process started into the sandbox from now on (a
    /// process's own `Command::isolation`, when it has a level, wins): an
    /// `Error::Isolation` if this system does not enforce the level.
    pub fn isolate(&mut self, iso: crate::command::Isolation) -> Result<()> {
        iso.validate()?;
        isolation_ready(iso.level)?;
        self.isolation = iso;
        Ok(())
    }

    pub fn spawn(&self, cmd: &Command) -> Result<Child> {
        let cmd = &cmd.isolated_by(&self.isolation)?;
        let out = |o: &Output, what| -> Result<OwnedFd> {
            Ok(match o {
                Output::File(p) => OwnedFd::from(
                    std::fs::File::create(p).map_err(|e| io_err(format!("creating {p:?}"), e))?,
                ),
                Output::Pipe(e) => e.take(what)?,
                _ => devnull(true)?,
            })
        };
        let stdin = match &cmd.stdin {
            Stdin::Null => devnull(false)?,
            Stdin::File(p) => OwnedFd::from(
                std::fs::File::open(p).map_err(|e| io_err(format!("opening {p:?}"), e))?,
            ),
            Stdin::Pipe(e) => e.take("stdin")?,
            Stdin::Bytes(_) => {
                return Err(Error::invalid(
                    "stdin",
                    "bytes are for run(); give a file here",
                ))
            }
        };
        let (o, e) = (out(&cmd.stdout, "stdout")?, out(&cmd.stderr, "stderr")?);
        let (c, job) = (cmd.clone(), self.job.clone());
        let spawned = on_lasting_thread(move || start_child(&c, [&stdin, &o, &e], &job, false))?;
        let (pid, wait_pid) = (spawned.program, spawned.wait_pid);
        self.job.add_session(pid);
        let status: Status = Arc::new(std::sync::Mutex::new(None));
        let init = Arc::new(std::sync::Mutex::new(Some(spawned)));
        engine::lock(&self.children).push(Child {
            pid,
            wait_pid,
            status: status.clone(),
            init: init.clone(),
        });
        Ok(Child {
            pid,
            wait_pid,
            status,
            init,
        })
    }

    /// The ids of the processes of the job alive now.
    pub fn process_ids(&self) -> Result<Vec<u32>> {
        Ok(live_pids(&self.job))
    }

    /// Ends every process in the job. A POSIX process killed by a signal
    /// has no exit code to give: `exit_code` is not used.
    pub fn terminate(&self, exit_code: u32) -> Result<()> {
        let _ = exit_code;
        self.job.end();
        Ok(())
    }

    /// What each live process of the job uses now.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>> {
        Ok(live_pids(&self.job)
            .into_iter()
            .filter_map(monitor::process_info)
            .collect())
    }

    /// The first limit the job crossed, if any.
    pub fn hit(&self) -> Option<Hit> {
        self.job.hit()
    }

    /// What the job used, as the monitor last sampled it: CPU time (user
    /// and kernel together, as `/proc` sums them, counted as user time),
    /// the memory peaks, processes seen and alive. I/O is not counted.
    pub fn accounting(&self) -> Result<Accounting> {
        let active = live_pids(&self.job).len() as u32;
        let cg_cpu = self.job.os.cg.as_ref().and_then(|c| c.cpu_ns());
        let cg_peak = self.job.os.cg.as_ref().and_then(|c| c.memory_peak());
        let st = self.job.lock();
        let ticks_100ns = 10_000_000 / clock_ticks().max(1);
        let (user, kernel) = match cg_cpu {
            Some((u, k)) => ((u / 100) as i64, (k / 100) as i64),
            None => ((st.cpu_ticks * ticks_100ns) as i64, 0),
        };
        Ok(Accounting {
            user_time_100ns: user,
            kernel_time_100ns: kernel,
            total_processes: st.seen.len() as u32,
            active_processes: active,
            read_bytes: 0,
            write_bytes: 0,
            peak_process_memory: st.run.peak_process_memory,
            peak_job_memory: st.run.peak_job_memory.max(cg_peak.unwrap_or(0)),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.job.end();
        // Reap what nobody waited for; the status stays readable through
        // any `Child` still held. Killed processes end at once; one that
        // does not within 2 s (uninterruptible sleep) is left to `Child`.
        let until = Instant::now() + Duration::from_secs(2);
        for c in engine::lock(&self.children).iter() {
            let _ = c.wait(Some(until.saturating_duration_since(Instant::now())));
        }
        monitor::unregister(&self.job);
    }
}
