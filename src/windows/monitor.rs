//! The one monitor thread for every live job.
//!
//! Each job is associated with a single I/O completion port; the kernel posts
//! its `JOB_OBJECT_MSG_*` messages there with the job's key. The thread:
//! - routes each message to its job: a limit message records the verdict
//!   (mechanism "kernel") and terminates the job; `NEW_PROCESS` opens the new
//!   process for memory sampling, `EXIT_PROCESS` closes it;
//! - wakes at the nearest wall-time deadline and ends that job (`WLE`);
//! - every [`SAMPLE_INTERVAL`] (down to once a second for a job that shows no
//!   activity: `decide::sample_interval`) samples the jobs whose limits need it (CPU time
//!   with kernel time, memory, process counts) and ends a job that crossed
//!   one (mechanism "monitor"). The kernel does not guarantee delivery of its
//!   messages, and some systems (Wine) do not enforce the limits: this is the
//!   backstop.
//!
//! A run that has seen its main process exit posts a flush marker and waits
//! for it, so every message queued before it has been handled.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, OnceLock};
use std::time::{Duration, Instant};

use windows::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::Threading::{OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};
use windows::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus, OVERLAPPED,
};

use super::handle::{own, raw, werr, OwnedHandle};
use super::poller::PortKey;
use super::query::{
    basic_and_io, extended_limits, memory_high_water, memory_of, process_ids, wine_console_host,
    KILL_EXIT_CODE,
};
use crate::decide::{self, check_sample, Hit, JobMessage, Sample};
use crate::engine::{self, Registry};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::outcome::Verdict;

/// Completion key that only wakes the thread (a job was added).
const WAKE_KEY: usize = 0;
/// A message id no kernel message uses: "flush" for the job of the key.
const FLUSH_MSG: u32 = 0xFFFF_0001;

/// What only the Windows backend keeps of a job's state.
#[derive(Default)]
pub(crate) struct Procs {
    pub new_processes: u32,
    pub exited_processes: u32,
    /// Processes of the job the monitor opened, for memory sampling.
    tracked: HashMap<u32, OwnedHandle>,
    /// Wine's console hosts of the processes the supervisor started (one per
    /// such process, `job::wine_console_host`): Wine's, not the program's, so
    /// they count toward no limit and no figure. How many are alive.
    console_hosts: HashMap<u32, u32>,
    console_hosts_alive: u32,
    flush_requested: u64,
    flush_done: u64,
}

/// The Windows backend's part of a job.
pub(crate) struct Win32 {
    pub handle: OwnedHandle,
    /// Signalled when the monitor has handled a flush (`flush`).
    cond: Condvar,
    /// Where a process exit is posted on, for a run the driver thread
    /// carries (`crate::driver`): it learns of the exit from here.
    pub driver: OnceLock<PortKey>,
}

impl engine::Backend for Win32 {
    type State = Procs;

    fn end(job: &JobShared) {
        // SAFETY: the job handle is open while `job` lives.
        let _ = unsafe { TerminateJobObject(raw(&job.os.handle), KILL_EXIT_CODE) };
    }
}

/// What the monitor and the job's owner share.
pub(crate) type JobShared = engine::Job<Win32>;

impl Procs {
    /// How many console hosts of Wine's the job has had (see `console_hosts`).
    pub fn console_hosts(&self) -> u32 {
        self.console_hosts.len() as u32
    }

    /// Sets `pid` aside when it is Wine's console host of a process the
    /// supervisor started (the first for that process); true if it was.
    fn set_aside(&mut self, pid: u32, h: &OwnedHandle) -> bool {
        if self.console_hosts.contains_key(&pid) {
            return true;
        }
        match wine_console_host(pid, h) {
            Some(parent) if !self.console_hosts.values().any(|&p| p == parent) => {
                self.console_hosts.insert(pid, parent);
                self.console_hosts_alive += 1;
                true
            }
            _ => false,
        }
    }
}

impl JobShared {
    /// Starts the wall clock (the main process is about to start).
    pub fn start_clock(&self) {
        self.lock().run.started = Some(Instant::now());
        if self.watched() {
            wake();
        }
    }

    /// Folds the main process's final memory counters into the job's
    /// peaks, read at its exit; a memory limit they show crossed between two
    /// samples (a short peak, where the kernel enforces no limit: Wine) is
    /// that limit's hit.
    pub fn note_exit_memory(&self, process: &OwnedHandle) {
        if let Some(c) = memory_of(process) {
            let peak = memory_high_water(&c);
            let mut st = self.lock();
            let r = &mut st.run;
            r.peak_process_memory = r.peak_process_memory.max(peak);
            r.peak_job_memory = r.peak_job_memory.max(peak);
        }
        let (process, job) = {
            let st = self.lock();
            (st.run.peak_process_memory, st.run.peak_job_memory)
        };
        let l = &self.limits;
        if l.memory.is_some_and(|m| process > m) {
            self.fire(Hit::monitor(Verdict::Mle, "memory"));
        } else if l.job_memory.is_some_and(|m| job > m) {
            self.fire(Hit::monitor(Verdict::Mle, "job_memory"));
        }
    }
}

struct Monitor {
    port: OwnedHandle,
    /// Where the sampling grid (`decide::next_due`) starts.
    epoch: Instant,
    jobs: Registry<JobShared>,
}

static MONITOR: OnceLock<std::result::Result<Monitor, String>> = OnceLock::new();

fn monitor() -> Result<&'static Monitor> {
    MONITOR
        .get_or_init(|| {
            // SAFETY: a new port not bound to any file.
            let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, 1) }
                .map_err(|e| werr("CreateIoCompletionPort", e).to_string())?;
            // SAFETY: a new handle we own.
            let port = unsafe { own(port) };
            std::thread::Builder::new()
                .name("winsandbox-monitor".into())
                .spawn(run_thread)
                .map_err(|e| format!("starting the monitor thread: {e}"))?;
            Ok(Monitor {
                port,
                epoch: Instant::now(),
                jobs: Registry::default(),
            })
        })
        .as_ref()
        .map_err(|e| Error::sandbox(e.clone()))
}

fn post(key: usize, message: u32) {
    if let Ok(m) = monitor() {
        // SAFETY: the port is open for the life of the process; no OVERLAPPED.
        let _ = unsafe { PostQueuedCompletionStatus(raw(&m.port), message, key, None) };
    }
}

fn wake() {
    post(WAKE_KEY, 0);
}

/// Associates `handle` with the port and starts watching it.
pub(crate) fn register(handle: OwnedHandle, limits: &Limits) -> Result<Arc<JobShared>> {
    let m = monitor()?;
    let key = m.jobs.next_key();
    let assoc = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
        CompletionKey: key as *mut _,
        CompletionPort: raw(&m.port),
    };
    // SAFETY: `assoc` is a live struct of the size passed; both handles are open.
    unsafe {
        SetInformationJobObject(
            raw(&handle),
            JobObjectAssociateCompletionPortInformation,
            &assoc as *const _ as *const _,
            std::mem::size_of_val(&assoc) as u32,
        )
    }
    .map_err(|e| {
        werr(
            "SetInformationJobObject(JobObjectAssociateCompletionPortInformation)",
            e,
        )
    })?;
    let os = Win32 {
        handle,
        cond: Condvar::new(),
        driver: OnceLock::new(),
    };
    let shared = Arc::new(JobShared::new(key, limits, os));
    // Not woken: the job has nothing for it before its clock starts (its
    // messages come through the port whatever the monitor waits for).
    m.jobs.insert(key, shared.clone());
    Ok(shared)
}

pub(crate) fn unregister(job: &JobShared) {
    if let Ok(m) = monitor() {
        m.jobs.remove(job.key);
    }
    job.lock().tracked.clear();
}

/// Waits until the monitor has handled every message queued for `job`
/// before this call (at most `limit`).
pub(crate) fn flush(job: &JobShared, limit: Duration) {
    let target = {
        let mut st = job.lock();
        st.flush_requested += 1;
        st.flush_requested
    };
    post(job.key, FLUSH_MSG);
    let deadline = Instant::now() + limit;
    let mut st = job.lock();
    while st.flush_done < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        st = job
            .os
            .cond
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// The engine's monitor loop over every job, asleep on the completion port:
/// each message that wakes it is routed to its job before the next look.
fn run_thread() {
    // The thread starts inside get_or_init: wait for the value to exist.
    let m = loop {
        match MONITOR.get() {
            Some(Ok(m)) => break m,
            Some(Err(_)) => return,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let sample = |due: &[&Arc<JobShared>], now: Instant| {
        for job in due {
            sample(job, now);
        }
    };
    let sleep = |until: Option<Instant>| {
        let timeout = until.map_or(u32::MAX, |t| {
            decide::dur_to_timeout_ms(t.saturating_duration_since(Instant::now()))
        }); // u32::MAX: INFINITE
        let mut bytes = 0u32;
        let mut key = 0usize;
        let mut ov: *mut OVERLAPPED = std::ptr::null_mut();
        // SAFETY: the port is open; the out-pointers are valid locals.
        let got = unsafe {
            GetQueuedCompletionStatus(raw(&m.port), &mut bytes, &mut key, &mut ov, timeout)
        };
        if got.is_ok() && key != WAKE_KEY {
            if let Some(job) = m.jobs.get(key) {
                // For job messages the OVERLAPPED pointer carries the process id.
                on_message(&job, bytes, ov as usize as u32);
            }
        }
    };
    engine::serve(&m.jobs, sample, sleep)
}

fn on_message(job: &JobShared, message: u32, pid: u32) {
    if message == FLUSH_MSG {
        job.lock().flush_done += 1;
        job.os.cond.notify_all();
        return;
    }
    match JobMessage::from_raw(message) {
        JobMessage::NewProcess => {
            // SAFETY: opening a process by id; the handle returned is ours.
            let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }
                .ok()
                .map(|h| {
                    // SAFETY: OpenProcess returned a new handle.
                    unsafe { own(h) }
                });
            let mut st = job.lock();
            if let Some(h) = h {
                if st.set_aside(pid, &h) {
                    return;
                }
                st.tracked.insert(pid, h);
            }
            st.new_processes += 1;
            let (total, active) = (
                st.new_processes,
                st.new_processes.saturating_sub(st.exited_processes),
            );
            drop(st);
            let l = &job.limits;
            if l.total_processes.is_some_and(|t| total > t) {
                job.fire(Hit::monitor(Verdict::Ple, "total_processes"));
            } else if l.processes.is_some_and(|p| active > p) {
                job.fire(Hit::monitor(Verdict::Ple, "processes"));
            }
        }
        JobMessage::ExitProcess | JobMessage::AbnormalExitProcess => {
            let mut st = job.lock();
            if st.console_hosts.contains_key(&pid) {
                st.console_hosts_alive = st.console_hosts_alive.saturating_sub(1);
                return;
            }
            st.exited_processes += 1;
            if let Some(h) = st.tracked.remove(&pid) {
                if let Some(c) = memory_of(&h) {
                    let r = &mut st.run;
                    r.peak_process_memory = r.peak_process_memory.max(memory_high_water(&c));
                }
            }
            drop(st);
            if let Some(d) = job.os.driver.get() {
                d.post(); // the driver looks whether it was the main process
            }
        }
        JobMessage::ActiveProcessZero => {
            if let Some(d) = job.os.driver.get() {
                d.post();
            }
        }
        m => {
            if let Some(hit) = m.hit() {
                job.fire(hit);
            }
        }
    }
}

/// Reads the job's use and ends it if it crossed a limit.
fn sample(job: &JobShared, now: Instant) {
    let h = raw(&job.os.handle);
    let basic = basic_and_io(h).ok();
    let ext = extended_limits(h).ok();
    let mut st = job.lock();
    // Processes the kernel counts that no NEW_PROCESS message told us of.
    if let Some(b) = &basic {
        if b.BasicInfo.ActiveProcesses > st.tracked.len() as u32 + st.console_hosts_alive {
            drop(st);
            let pids = process_ids(h).unwrap_or_default();
            st = job.lock();
            for pid in pids {
                if st.tracked.contains_key(&pid) || st.console_hosts.contains_key(&pid) {
                    continue;
                }
                // SAFETY: opening a process by id; the handle returned is ours.
                let opened = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) };
                if let Ok(p) = opened {
                    // SAFETY: OpenProcess returned a new handle.
                    let p = unsafe { own(p) };
                    // A host whose NEW_PROCESS is still queued is set aside now.
                    if !st.set_aside(pid, &p) {
                        st.tracked.insert(pid, p);
                    }
                }
            }
        }
    }
    let mut process_peak = st.run.peak_process_memory;
    let mut job_now = 0u64;
    for p in st.tracked.values() {
        if let Some(c) = memory_of(p) {
            process_peak = process_peak.max(memory_high_water(&c));
            job_now += c.PagefileUsage as u64;
        }
    }
    if let Some(e) = &ext {
        process_peak = process_peak.max(e.PeakProcessMemoryUsed as u64);
        job_now = job_now.max(e.PeakJobMemoryUsed as u64);
    }
    st.run.peak_process_memory = process_peak;
    st.run.peak_job_memory = st.run.peak_job_memory.max(job_now);
    let s = Sample {
        cpu_time: basic.as_ref().map_or(Duration::ZERO, |b| {
            Duration::from_nanos(
                (b.BasicInfo.TotalUserTime.max(0) + b.BasicInfo.TotalKernelTime.max(0)) as u64
                    * 100,
            )
        }),
        process_memory: process_peak,
        job_memory: st.run.peak_job_memory,
        active_processes: basic.as_ref().map_or(
            st.new_processes.saturating_sub(st.exited_processes),
            |b| {
                b.BasicInfo
                    .ActiveProcesses
                    .saturating_sub(st.console_hosts_alive)
            },
        ),
        total_processes: st.new_processes.max(basic.as_ref().map_or(0, |b| {
            b.BasicInfo
                .TotalProcesses
                .saturating_sub(st.console_hosts())
        })),
    };
    let elapsed = st.run.elapsed(now);
    // A job that shows no activity (CPU, page faults, process starts, commit)
    // is sampled ever more rarely; any activity brings back the fast rate.
    let activity = s.cpu_time.as_nanos() as u64
        + basic
            .as_ref()
            .map_or(0, |b| b.BasicInfo.TotalPageFaultCount as u64)
        + s.total_processes as u64
        + job_now;
    let epoch = monitor().map_or(now, |m| m.epoch);
    st.run.schedule(&job.limits, activity, epoch, now);
    drop(st);
    if let Some(hit) = check_sample(&job.limits, elapsed, &s) {
        job.fire(hit);
    }
}
