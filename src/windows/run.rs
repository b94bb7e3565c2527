//! One sandboxed run (`Running`) and a long-lived job for several processes
//! (`Sandbox`), on the Windows backend.

use std::time::{Duration, Instant};

use windows::Win32::Foundation::{HANDLE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows::Win32::System::Threading::{
    GetExitCodeProcess, TerminateProcess, WaitForMultipleObjects, WaitForSingleObject,
};

use super::handle::*;
use super::job::{supervisor_job, JobObject};
use super::monitor;
use super::pipe::{open_file, open_inheritable, pipe, Reader, Writer};
use super::poller::Poller;
use super::query::{filetime, process_times, KILL_EXIT_CODE};
use super::spawn::{spawn, Process, SpawnRequest, Stdio};
use crate::command::{Command, Output, Stdin};
use crate::decide::{self, dur_to_timeout_ms, Ending, Hit, OUTPUT_LIMIT_HIT};
use crate::engine::{self, Finish, Killer, Outputs, RunSteps};
use crate::error::{Error, Result};
use crate::jobplan;
use crate::limits::Limits;
use crate::outcome::{
    ntstatus_name, Accounting, Mechanism, NotApplied, Outcome, ProcessInfo, Verdict,
};
/// How often a wait for a live main process looks whether a limit was crossed
/// (which starts the grace of `decide::hard_stop`), in milliseconds.
const HIT_CHECK_MS: u32 = 500;
/// How often, at most, the driver thread looks at a run whose main process
/// has not been seen to exit though no event came (`RunSteps::check`).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Creates the job for `limits`, deciding about UI limits and breakaway: a
/// job nested in the supervisor's own cannot carry UI limits, so the child
/// breaks away where the outer job allows it, else runs without them (said
/// in `not_applied`).
fn make_job(limits: &Limits) -> Result<(JobObject, bool)> {
    limits.validate()?;
    let sup = supervisor_job();
    let mut plan = jobplan::plan(limits);
    let mut breakaway = false;
    let mut notes = Vec::new();
    if plan.ui_restrictions.is_some() && sup.in_job {
        if sup.breakaway_ok {
            breakaway = true;
        } else {
            plan.ui_restrictions = None;
            notes.push(NotApplied {
                limit: "ui_restrictions",
                reason: "the supervisor runs in a job that forbids breakaway, and a nested job cannot carry UI limits".into(),
            });
        }
    }
    let mut job = JobObject::create(None, &plan, limits)?;
    notes.append(&mut job.not_applied);
    job.not_applied = notes;
    Ok((job, breakaway))
}

fn null_device() -> Result<OwnedHandle> {
    open_inheritable("NUL", false)
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A run in progress. Dropping it kills the whole tree.
pub struct Running {
    job: JobObject,
    process: Process,
    started: Instant,
    /// `started` on the system clock (FILETIME units), to read the kernel's
    /// exit time of the process against.
    started_at: u64,
    stdin: Option<Writer>,
    /// What the supervisor reads of stdout and stderr (none for a stream
    /// that goes to another program: `Output::Pipe`).
    readers: [Option<Reader>; 2],
    outputs: Outputs,
    /// Exit code and wall time, once the exit is seen, and when it was seen.
    exit: Option<(u32, f64)>,
    exit_seen: Option<Instant>,
    /// When the run was first seen killed (a limit crossed, or `kill`).
    killed_at: Option<Instant>,
    wall_limit: Option<Duration>,
    finish: Finish,
    isolation: crate::command::Level,
    /// An isolated run's confinement: its grants, labels and fresh working
    /// directory, undone when the run is dropped (after its job is ended).
    contained: Option<super::isolate::Contained>,
    /// Name the working directory made for the run, and keep it.
    keep_workdir: bool,
}

impl Running {
    /// Creates the job, the pipes, and starts the program in the job.
    pub fn start(cmd: &Command) -> Result<Running> {
        Running::start_proved(cmd, true)
    }

    /// For the tests, under Wine alone: starts `cmd` without its level's
    /// once-per-process proof (which Wine fails), so that the launch itself
    /// runs there (the grants, the fresh directory, the token, the spawn)
    /// up to the read back of the child's token, which ends the child and
    /// refuses the run. Elsewhere an error, nothing started.
    #[doc(hidden)]
    pub fn start_unproved_under_wine(cmd: &Command) -> Result<Running> {
        if super::wine_version().is_none() {
            return Err(Error::sandbox(
                "start_unproved_under_wine: only under Wine, whose read back refuses every level",
            ));
        }
        Running::start_proved(cmd, false)
    }

    fn start_proved(cmd: &Command, prove: bool) -> Result<Running> {
        cmd.validate_isolation()?;
        let program = super::spawn::resolve_program(&cmd.program, &cmd.env);
        let plan = super::isolate::plan(&cmd.isolation, cmd.cwd.as_deref(), program.as_deref())?;
        if prove {
            super::isolate::check(&cmd.isolation)?;
        }
        let (mut job, breakaway) = make_job(&cmd.limits)?;
        let outputs = Outputs::open(&cmd.stdout, &cmd.stderr, cmd.limits.output_limit, |p| {
            Ok(std::fs::File::from(open_file(&path_str(p), true, false)?))
        })?;
        // Each output: a pipe the supervisor reads, or a pipe to another program.
        let stream = |o: &Output, what| -> Result<(Option<OwnedHandle>, OwnedHandle)> {
            match o {
                Output::Pipe(e) => Ok((None, e.take(what)?)),
                _ => pipe(true).map(|p| (Some(p.ours), p.theirs)),
            }
        };
        let (out_ours, out_theirs) = stream(&cmd.stdout, "stdout")?;
        let (err_ours, err_theirs) = stream(&cmd.stderr, "stderr")?;
        let (stdin_theirs, writer) = match &cmd.stdin {
            Stdin::Null => (null_device()?, None),
            Stdin::File(p) => (open_inheritable(&path_str(p), false)?, None),
            Stdin::Pipe(e) => (e.take("stdin")?, None),
            Stdin::Bytes(b) => {
                let p = pipe(false)?;
                (p.theirs, Some(Writer::new(p.ours, b.clone())?))
            }
        };
        let stdio = Stdio {
            stdin: stdin_theirs,
            stdout: out_theirs,
            stderr: err_theirs,
        };
        let contained = super::isolate::contain(cmd, plan)?;
        // A strict run's desktop: the supervisor's own; where it cannot be
        // made, the run goes on on the supervisor's and says so.
        let desktop = match contained {
            Some(_) => match super::desktop::worker_desktop() {
                Ok(d) => Some(d),
                Err(e) => {
                    job.not_applied.push(crate::outcome::NotApplied {
                        limit: "desktop",
                        reason: format!(
                            "the supervisor's own desktop could not be made ({e}): the program \
                             shares the supervisor's"
                        ),
                    });
                    None
                }
            },
            None => None,
        };
        let req = SpawnRequest::of(
            cmd,
            program.as_deref(),
            breakaway,
            cmd.limits.no_crash_dialogs,
            contained.as_ref(),
            desktop,
        );
        let process = spawn(&job, &req, &stdio)?;
        // Wall time runs from the moment the process exists: a slow
        // CreateProcessW on a loaded machine is not the program's time.
        job.shared.start_clock();
        let started = Instant::now();
        let started_at = system_time_now();
        drop(stdio); // only the child holds its ends now: end of file follows its exit
        Ok(Running {
            job,
            process,
            started,
            started_at,
            stdin: writer,
            readers: [
                out_ours.map(Reader::new).transpose()?,
                err_ours.map(Reader::new).transpose()?,
            ],
            outputs,
            exit: None,
            exit_seen: None,
            killed_at: None,
            wall_limit: cmd.limits.wall_time,
            finish: Finish::default(),
            isolation: cmd.isolation.level,
            contained,
            keep_workdir: cmd.keep_workdir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    pub fn job(&self) -> &JobObject {
        &self.job
    }

    /// The ids of the processes in the run's job now.
    pub fn process_ids(&self) -> Result<Vec<u32>> {
        self.job.process_ids()
    }

    /// Ends the whole tree now; the outcome says `SE`, "killed".
    pub fn kill(&mut self) {
        self.killer().kill();
    }

    /// What kills this run from any thread, while another waits on it.
    pub fn killer(&self) -> Killer {
        Killer::new(&self.job.shared)
    }

    /// Whether the owner killed the run before its exit was seen.
    fn killed(&self) -> bool {
        self.job.shared.lock().run.killed_before(self.exit_seen)
    }

    fn pump_io(&mut self) -> Result<()> {
        if let Some(w) = &mut self.stdin {
            w.pump()?;
            if w.done() {
                self.stdin = None;
            }
        }
        for i in 0..2 {
            let Some(reader) = self.readers[i].as_mut() else {
                continue;
            };
            while let Some(chunk) = reader.pump()? {
                if self.outputs.deliver(i, chunk)? {
                    self.job.shared.fire(OUTPUT_LIMIT_HIT);
                }
            }
        }
        Ok(())
    }

    fn on_exit(&mut self) -> Result<()> {
        let mut code = 0u32;
        // SAFETY: the process handle is open; `code` is writable.
        unsafe { GetExitCodeProcess(raw(&self.process.handle), &mut code) }
            .map_err(|e| werr("GetExitCodeProcess", e))?;
        let now = Instant::now();
        // Wall time ends when the process ended (the kernel's exit time), not
        // when this wait saw it: a wait called late does not lengthen it.
        let seen = now.saturating_duration_since(self.started).as_secs_f64();
        let wall = process_times(&self.process.handle)
            .filter(|t| t.exited != 0)
            .and_then(|t| t.exited.checked_sub(self.started_at))
            .map(|d| d as f64 / 1e7)
            .filter(|&w| w <= seen) // the system clock was not set back meanwhile
            .unwrap_or(seen);
        self.exit = Some((code, wall));
        self.exit_seen = Some(now);
        // The main process's own peak, also where the job reports none (Wine).
        self.job.shared.note_exit_memory(&self.process.handle);
        // Every kernel message queued before now is handled before the verdict.
        monitor::flush(&self.job.shared, Duration::from_secs(1));
        // Whatever the main process left running goes now.
        let _ = self.job.kill_all(KILL_EXIT_CODE);
        self.finish.exited(now);
        Ok(())
    }

    /// Waits up to `timeout` (`None`: until done). `Ok(None)`: still running.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<Outcome>> {
        engine::wait(self, timeout)
    }

    /// Hands the run's pipes and process exits to the driver thread's
    /// `poller` under `key` (before any pipe operation starts: Wine posts
    /// only operations started after the association).
    pub fn attach(&mut self, poller: &Poller, key: usize) -> Result<()> {
        for r in self.readers.iter().flatten() {
            poller.add(r.handle(), key)?;
        }
        if let Some(h) = self.stdin.as_ref().and_then(|w| w.handle()) {
            poller.add(h, key)?;
        }
        let _ = self.job.shared.os.driver.set(poller.target(key));
        Ok(())
    }

    /// The main process did not end by its hard stop (`decide::hard_stop`):
    /// kills once more, and if it still runs, ends the run with `SE` saying
    /// so. None: it ended after all (its exit is handled as usual).
    fn stop_waiting(&mut self) -> Result<Option<Outcome>> {
        let _ = self.job.terminate(KILL_EXIT_CODE);
        // SAFETY: the process handle is open; ending it is what we want.
        let _ = unsafe { TerminateProcess(raw(&self.process.handle), KILL_EXIT_CODE) };
        // SAFETY: as above.
        if unsafe { WaitForSingleObject(raw(&self.process.handle), 250) } == WAIT_OBJECT_0 {
            self.on_exit()?;
            return Ok(None);
        }
        let mut o = self.outcome();
        let why = match (o.limit, self.killed()) {
            (Some(l), _) => format!("after it crossed {l}"),
            (None, true) => "after the supervisor killed it".to_string(),
            (None, false) => "at its wall limit".to_string(),
        };
        o.verdict = Some(Verdict::Se);
        o.mechanism = Some(Mechanism::Sandbox);
        o.exit_code = None;
        o.status = None;
        o.error = Some(format!(
            "the process did not end within {} s of being killed {why}; \
             the run stopped waiting for it (it may still exist)",
            decide::STOP_GRACE.as_secs()
        ));
        Ok(Some(o))
    }

    fn outcome(&mut self) -> Outcome {
        let (code, wall_time) = self.exit.unwrap_or_else(|| {
            let seen = self.started.elapsed().as_secs_f64();
            (KILL_EXIT_CODE, seen)
        });
        let acc = self.job.accounting().ok().unwrap_or_default();
        let st = self.job.shared.lock();
        let hit = st.run.hit;
        let mut o = Outcome {
            exit_code: Some(code as i64),
            status: ntstatus_name(code),
            pid: self.process.pid,
            user_time: acc.user_time().as_secs_f64(),
            kernel_time: acc.kernel_time().as_secs_f64(),
            wall_time,
            peak_memory: acc.peak_process_memory.max(st.run.peak_process_memory),
            peak_job_memory: acc.peak_job_memory.max(st.run.peak_job_memory),
            processes: acc
                .total_processes
                .saturating_sub(st.console_hosts())
                .max(st.new_processes)
                .max(1),
            read_bytes: acc.read_bytes,
            write_bytes: acc.write_bytes,
            not_applied: self.job.not_applied.clone(),
            isolation: self.isolation,
            workdir: (self.keep_workdir)
                .then(|| self.contained.as_mut().and_then(|c| c.keep_workdir()))
                .flatten(),
            ..Default::default()
        };
        drop(st);
        self.outputs.finish_into(&mut o);
        let j = decide::judge(&Ending {
            hit,
            killed: self.killed(),
            exit_hit: None,
            clean_exit: code == 0,
        });
        o.verdict = Some(j.verdict);
        o.mechanism = Some(j.mechanism);
        o.limit = j.limit;
        o.error = j.error.map(str::to_string);
        o
    }
}

impl RunSteps for Running {
    fn pump(&mut self) -> Result<()> {
        self.pump_io()?;
        if self.exit.is_none() {
            // SAFETY: the process handle is open; a zero wait only looks.
            let ended = unsafe { WaitForSingleObject(raw(&self.process.handle), 0) };
            if ended == WAIT_OBJECT_0 {
                self.on_exit()?;
            }
        }
        Ok(())
    }

    fn drained(&self) -> bool {
        self.readers.iter().flatten().all(|r| r.eof)
    }

    fn finish(&mut self) -> &mut Finish {
        &mut self.finish
    }

    fn outcome(&mut self) -> Outcome {
        Running::outcome(self)
    }

    fn wait_event(&mut self, until: Option<Instant>) -> Result<Option<Outcome>> {
        let (end, again) = self.check(Instant::now())?;
        if end.is_some() {
            return Ok(end);
        }
        let mut handles: Vec<HANDLE> = Vec::with_capacity(4);
        if self.exit.is_none() {
            handles.push(raw(&self.process.handle));
        }
        handles.extend(self.readers.iter().flatten().filter_map(|r| r.event()));
        handles.extend(self.stdin.as_ref().and_then(|w| w.event()));
        let until = match (until, again) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = Instant::now();
        let mut ms = until.map_or(u32::MAX, |u| {
            dur_to_timeout_ms(u.saturating_duration_since(now))
        });
        if self.exit.is_none() {
            ms = ms.min(HIT_CHECK_MS); // a limit crossed starts the grace
        }
        if handles.is_empty() {
            std::thread::sleep(Duration::from_millis(ms.min(10) as u64));
            return Ok(None);
        }
        // SAFETY: every handle in the slice is open for the call.
        let r = unsafe { WaitForMultipleObjects(&handles, false, ms) };
        if r == WAIT_FAILED {
            return Err(Error::last_os("WaitForMultipleObjects"));
        }
        if self.exit.is_none() && r == WAIT_OBJECT_0 {
            self.on_exit()?;
        }
        Ok(None)
    }

    fn check(&mut self, now: Instant) -> Result<(Option<Outcome>, Option<Instant>)> {
        if self.exit.is_some() {
            return Ok((None, None));
        }
        if self.killed_at.is_none() {
            let st = self.job.shared.lock();
            self.killed_at = st.run.hit.map(|_| now).or(st.run.killed_at);
        }
        let killed = self
            .killed_at
            .map(|k| k.saturating_duration_since(self.started));
        let stop = decide::hard_stop(self.wall_limit, killed).map(|s| self.started + s);
        if stop.is_some_and(|s| now >= s) {
            return Ok((self.stop_waiting()?, None));
        }
        // Looked at again by its hard stop, and at least once a second: a
        // limit crossed starts the grace, and the kernel does not promise to
        // deliver the exit message the driver thread waits for.
        let again = now + LOOK_AGAIN;
        Ok((None, Some(stop.map_or(again, |s| s.min(again)))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.job.terminate(KILL_EXIT_CODE);
    }
}

/// A long-lived job: start several processes into it, read its accounting and
/// process list while they run, terminate it. Dropping it kills them all.
pub struct Sandbox {
    job: JobObject,
    breakaway: bool,
    no_crash_dialogs: bool,
    /// The isolation of every process started into it (`isolate`).
    isolation: crate::command::Isolation,
}

/// The system time now, in FILETIME units (100 ns since 1601).
fn system_time_now() -> u64 {
    use windows::Win32::System::SystemInformation::GetSystemTimePreciseAsFileTime;
    // SAFETY: no arguments; returns the time by value.
    filetime(unsafe { GetSystemTimePreciseAsFileTime() })
}

/// A process started in a [`Sandbox`].
pub struct Child {
    process: Process,
    /// A strict process's AppContainer grants, undone when it is dropped.
    _contained: Option<super::isolate::Contained>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Ends this process (`TerminateProcess`, with [`KILL_EXIT_CODE`]); its
    /// own children stay in the job. One that has already ended is left as
    /// it is.
    pub fn kill(&self) -> Result<()> {
        // SAFETY: the process handle is open for the life of `self`.
        match unsafe { TerminateProcess(raw(&self.process.handle), KILL_EXIT_CODE) } {
            Ok(()) => Ok(()),
            Err(_) if self.wait(Some(Duration::ZERO))?.is_some() => Ok(()),
            Err(e) => Err(werr("TerminateProcess", e)),
        }
    }

    pub fn handle(&self) -> &OwnedHandle {
        &self.process.handle
    }

    /// The exit code once it ended within `timeout` (`None`: wait forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<i64>> {
        let ms = timeout.map_or(u32::MAX, dur_to_timeout_ms);
        // SAFETY: the process handle is open.
        let r = unsafe { WaitForSingleObject(raw(&self.process.handle), ms) };
        if r == WAIT_TIMEOUT {
            return Ok(None);
        }
        if r == WAIT_FAILED {
            return Err(Error::last_os("WaitForSingleObject"));
        }
        let mut code = 0u32;
        // SAFETY: the handle is open; `code` is writable.
        unsafe { GetExitCodeProcess(raw(&self.process.handle), &mut code) }
            .map_err(|e| werr("GetExitCodeProcess", e))?;
        Ok(Some(code as i64))
    }
}

impl Sandbox {
    pub fn new(limits: &Limits) -> Result<Sandbox> {
        let (job, breakaway) = make_job(limits)?;
        job.shared.start_clock();
        Ok(Sandbox {
            job,
            breakaway,
            no_crash_dialogs: limits.no_crash_dialogs,
            isolation: Default::default(),
        })
    }

    /// Isolates every process started into the sandbox from now on: an
    /// `Error::Isolation` where the level is not enforced (every level, in
    /// this version: see `isolate`).
    pub fn isolate(&mut self, iso: crate::command::Isolation) -> Result<()> {
        iso.validate()?;
        super::isolate::plan(&iso, None, None)?;
        super::isolate::check(&iso)?;
        self.isolation = iso;
        Ok(())
    }

    /// Starts `cmd` in the job. Its stdio are the null device or files
    /// (`Output::Capture` is for `run`: here it means discard).
    pub fn spawn(&self, cmd: &Command) -> Result<Child> {
        let cmd = &cmd.isolated_by(&self.isolation)?;
        let program = super::spawn::resolve_program(&cmd.program, &cmd.env);
        let plan = super::isolate::plan(&cmd.isolation, cmd.cwd.as_deref(), program.as_deref())?;
        super::isolate::check(&cmd.isolation)?;
        let contained = super::isolate::contain(cmd, plan)?;
        let out = |o: &Output, what| match o {
            Output::File(p) => open_inheritable(&path_str(p), true),
            Output::Pipe(e) => e.take(what),
            _ => open_inheritable("NUL", true),
        };
        let stdin = match &cmd.stdin {
            Stdin::File(p) => open_inheritable(&path_str(p), false)?,
            Stdin::Pipe(e) => e.take("stdin")?,
            Stdin::Null => null_device()?,
            Stdin::Bytes(_) => {
                return Err(Error::invalid(
                    "stdin",
                    "bytes are for run(); give a file here",
                ))
            }
        };
        let stdio = Stdio {
            stdin,
            stdout: out(&cmd.stdout, "stdout")?,
            stderr: out(&cmd.stderr, "stderr")?,
        };
        // No outcome here to say it in: without its own desktop, a strict
        // process is refused.
        let desktop = match contained {
            Some(_) => Some(super::desktop::worker_desktop()?),
            None => None,
        };
        let req = SpawnRequest::of(
            cmd,
            program.as_deref(),
            self.breakaway,
            self.no_crash_dialogs,
            contained.as_ref(),
            desktop,
        );
        Ok(Child {
            process: spawn(&self.job, &req, &stdio)?,
            _contained: contained,
        })
    }

    pub fn job(&self) -> &JobObject {
        &self.job
    }

    /// What each live process of the job uses now.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>> {
        self.job.processes()
    }

    /// The ids of the processes in the job now.
    pub fn process_ids(&self) -> Result<Vec<u32>> {
        self.job.process_ids()
    }

    /// What the job used so far.
    pub fn accounting(&self) -> Result<Accounting> {
        self.job.accounting()
    }

    /// Ends every process in the job, with `exit_code`.
    pub fn terminate(&self, exit_code: u32) -> Result<()> {
        self.job.terminate(exit_code)
    }

    /// The first limit the job crossed, if any.
    pub fn hit(&self) -> Option<Hit> {
        self.job.shared.hit()
    }
}
