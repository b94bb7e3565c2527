//! One monitor thread for every live POSIX job: wall-time deadlines, and
//! every `SAMPLE_INTERVAL` one scan of `/proc` for the jobs that need it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::cgroup::JobCgroup;
use crate::decide::{check_sample, Sample, IDLE_INTERVAL, SAMPLE_INTERVAL};
use crate::engine::{self, Registry};
use crate::limits::Limits;
use crate::outcome::ProcessInfo;

/// What only the POSIX backend keeps of a job's state.
#[derive(Default)]
pub(crate) struct Procs {
    /// Session ids (= process-group ids) of the processes started into the job.
    pub sessions: Vec<i32>,
    pub seen: std::collections::HashSet<i32>,
    /// Processes of the job alive at the last sample: re-read every sample.
    pub known: Vec<i32>,
    pub cpu_ticks: u64,
    /// The job cgroup's CPU (ns) at the last full sample, and that sample's
    /// activity figure: while the CPU stays the same nothing of the job ran,
    /// so no process can have grown or started, and the sample is not read
    /// again (one file a sample for an idle job, not two per process).
    cg_cpu_seen: Option<u64>,
    last_activity: u64,
}

/// The POSIX backend's part of a job.
pub(crate) struct Posix {
    /// The job's cgroups: exact membership, one kill, the kernel's counts.
    pub cg: Option<JobCgroup>,
}

impl engine::Backend for Posix {
    type State = Procs;

    /// SIGKILL to every process of the job: its cgroup's, where it has one.
    /// Otherwise to every process group of the job, and to every process of
    /// its sessions that left the group (`setpgid`), found by a `/proc` scan:
    /// for every sampled job (a backed-off job may not have seen the
    /// descendant yet) and wherever the monitor saw more processes than the
    /// groups' leaders. A process that left the session (`setsid`) is then
    /// not followed (`not_applied` says so).
    fn end(job: &JobShared) {
        if let Some(cg) = &job.os.cg {
            cg.kill();
            return;
        }
        let (sessions, more) = {
            let st = job.lock();
            (
                st.sessions.clone(),
                job.sampled || st.seen.len() > st.sessions.len(),
            )
        };
        for &s in &sessions {
            // SAFETY: kill(2) on a process group we created; no memory involved.
            unsafe { libc::kill(-s, libc::SIGKILL) };
        }
        if more {
            let set: std::collections::HashSet<i32> = sessions.iter().copied().collect();
            for p in scan(&set) {
                // SAFETY: kill(2) on a process of the job's own sessions.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
        }
    }
}

pub(crate) type JobShared = engine::Job<Posix>;

impl JobShared {
    pub fn start_clock(&self) {
        self.lock().run.started.get_or_insert(Instant::now());
        if self.watched() {
            wake();
        }
    }

    pub fn add_session(&self, sid: i32) {
        let mut st = self.lock();
        st.sessions.push(sid);
        st.seen.insert(sid);
        st.known.push(sid);
    }
}

struct Monitor {
    /// Where the sampling grid (`decide::next_due`) starts.
    epoch: Instant,
    jobs: Registry<JobShared>,
    wake: Condvar,
    pending: Mutex<bool>,
}

/// This process's monitor, and the process it was started in: a child made
/// by `fork` (a `multiprocessing` pool) has none of its parent's threads, so
/// it starts its own monitor on first use instead of waiting on a thread
/// that is not there.
static MONITOR: Mutex<Option<(u32, &'static Monitor)>> = Mutex::new(None);

fn monitor() -> &'static Monitor {
    let pid = std::process::id();
    let mut cur = engine::lock(&MONITOR);
    if let Some((owner, m)) = *cur {
        if owner == pid {
            return m;
        }
    }
    // A new monitor for this process, kept for its lifetime (a forked
    // child leaks its parent's copy, which no thread serves).
    let m: &'static Monitor = Box::leak(Box::new(Monitor {
        epoch: Instant::now(),
        jobs: Registry::default(),
        wake: Condvar::new(),
        pending: Mutex::new(false),
    }));
    *cur = Some((pid, m));
    std::thread::Builder::new()
        .name("winsandbox-monitor".into())
        .spawn(move || run_thread(m))
        .expect("monitor thread");
    m
}

fn wake() {
    let m = monitor();
    *engine::lock(&m.pending) = true;
    m.wake.notify_one();
}

pub(crate) fn register(limits: &Limits) -> Arc<JobShared> {
    let m = monitor();
    let key = m.jobs.next_key();
    let cg = JobCgroup::create(key, kernel_memory_limit(limits));
    let job = Arc::new(JobShared::new(key, limits, Posix { cg }));
    // Not woken: the job has nothing for it before its clock starts.
    m.jobs.insert(key, job.clone());
    job
}

/// The memory limit the kernel can enforce for the whole job: `job_memory`,
/// or `memory` where the job may hold one process only (a per-process limit
/// over a tree stays the monitor's).
pub(crate) fn kernel_memory_limit(limits: &Limits) -> Option<u64> {
    limits
        .job_memory
        .or(limits.memory.filter(|_| limits.processes == Some(1)))
}

/// The job's live processes: its cgroup's members, else its sessions' (a
/// `/proc` scan).
pub(crate) fn members(job: &JobShared) -> Vec<i32> {
    match &job.os.cg {
        Some(cg) => cg.members(),
        None => {
            let sessions = job.lock().sessions.iter().copied().collect();
            scan(&sessions).into_iter().map(|p| p.pid).collect()
        }
    }
}

pub(crate) fn unregister(job: &JobShared) {
    monitor().jobs.remove(job.key);
}

/// The engine's monitor loop over this process's jobs: a full `/proc` scan
/// every `SAMPLE_INTERVAL * 10` while any job is active, every
/// `IDLE_INTERVAL` otherwise (between them only known processes are read);
/// asleep on the condition variable `wake` signals.
fn run_thread(m: &'static Monitor) {
    let mut next_full = Instant::now();
    let sample = |due: &[&Arc<JobShared>], now: Instant| {
        let full = now >= next_full;
        let active = sample_jobs(due, now, full);
        if full {
            next_full = now
                + if active {
                    SAMPLE_INTERVAL * 10
                } else {
                    IDLE_INTERVAL
                };
        }
    };
    let sleep = |until: Option<Instant>| {
        let mut pending = engine::lock(&m.pending);
        if !*pending {
            pending = match until {
                Some(t) => {
                    m.wake
                        .wait_timeout(pending, t.saturating_duration_since(Instant::now()))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => m.wake.wait(pending).unwrap_or_else(|p| p.into_inner()),
            };
        }
        *pending = false;
    };
    engine::serve(&m.jobs, sample, sleep)
}

/// One process as `/proc/PID/stat` and `statm` tell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub session: i32,
    /// utime + stime + cutime + cstime, clock ticks.
    pub cpu_ticks: u64,
    /// Private writable memory (statm "data"), bytes.
    pub data_bytes: u64,
}

/// `/proc/PID/stat` as the command name and the fields after it (field 3,
/// the state, first): the name may hold spaces and parentheses.
fn split_stat(stat: &str) -> Option<(&str, Vec<&str>)> {
    let close = stat.rfind(')')?;
    let name = stat.get(stat.find('(')? + 1..close)?;
    Some((name, stat[close + 1..].split_whitespace().collect()))
}

/// Parses `/proc/PID/stat` (the command name may hold spaces and parentheses).
pub fn parse_stat(pid: i32, stat: &str) -> Option<ProcInfo> {
    let (_, f) = split_stat(stat)?;
    // f[0] = state (field 3); session = field 6; utime..cstime = fields 14..17
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    let session = n(3)? as i32;
    let cpu = (n(11)? + n(12)? + n(13)? + n(14)?).max(0) as u64;
    Some(ProcInfo {
        pid,
        session,
        cpu_ticks: cpu,
        data_bytes: 0,
    })
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

pub fn clock_ticks() -> u64 {
    // SAFETY: as above.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// A small `/proc` file, read in one `read` into `buf` (no size query, no
/// allocation: the monitor reads thousands a second). Text after a command
/// name that is not UTF-8 is still read; the name itself is skipped.
fn read_small<'a>(path: &str, buf: &'a mut [u8; 2048]) -> Option<std::borrow::Cow<'a, str>> {
    use std::io::Read;
    let n = std::fs::File::open(path).ok()?.read(buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]))
}

fn read_proc(pid: i32, page: u64) -> Option<ProcInfo> {
    let mut buf = [0u8; 2048];
    let info = parse_stat(pid, &read_small(&format!("/proc/{pid}/stat"), &mut buf)?)?;
    Some(with_memory(info, page))
}

/// `info` with its private writable memory (statm's "data") filled in.
fn with_memory(mut info: ProcInfo, page: u64) -> ProcInfo {
    let mut buf = [0u8; 2048];
    if let Some(statm) = read_small(&format!("/proc/{}/statm", info.pid), &mut buf) {
        // size resident shared text lib data dt
        if let Some(d) = statm
            .split_whitespace()
            .nth(5)
            .and_then(|v| v.parse::<u64>().ok())
        {
            info.data_bytes = d * page;
        }
    }
    info
}

/// What process `pid` uses now, from `/proc` (`Sandbox::processes`); None
/// once it is gone.
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let mut buf = [0u8; 2048];
    let stat = read_small(&format!("/proc/{pid}/stat"), &mut buf)?;
    let (name, f) = split_stat(&stat)?;
    let ticks = clock_ticks() as f64;
    let secs = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / ticks;
    let (user_time, kernel_time) = (secs(11), secs(12));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    let handles = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u32);
    Some(ProcessInfo {
        pid,
        name: name.to_string(),
        working_set: kib("VmRSS:"),
        peak_working_set: kib("VmHWM:"),
        private_memory: kib("VmData:"),
        handles,
        user_time,
        kernel_time,
    })
}

/// Every process whose session is in `sessions` (a scan of all of `/proc`).
pub fn scan(sessions: &std::collections::HashSet<i32>) -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let page = page_size();
    let mut buf = [0u8; 2048];
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(stat) = read_small(&format!("/proc/{pid}/stat"), &mut buf) else {
            continue;
        };
        match parse_stat(pid, &stat) {
            Some(info) if sessions.contains(&info.session) => out.push(with_memory(info, page)),
            _ => {} // another session: statm not read
        }
    }
    out
}

/// Samples `due` (all of `/proc` when `full`, else only the processes
/// already known: new ones are found by the next full scan), ends the jobs
/// over a limit, and schedules each job's next sample. True if any job was
/// active.
fn sample_jobs(due: &[&Arc<JobShared>], now: Instant, full: bool) -> bool {
    let page = page_size();
    let mut sessions = std::collections::HashSet::new();
    for j in due.iter().filter(|j| j.os.cg.is_none()) {
        sessions.extend(j.lock().sessions.iter().copied());
    }
    // Jobs without a cgroup are found by session: all of /proc when `full`,
    // else only the processes already known (new ones wait for the next
    // full scan). A cgroup lists its members exactly.
    let procs: Vec<ProcInfo> = if sessions.is_empty() {
        Vec::new()
    } else if full {
        scan(&sessions)
    } else {
        let mut known: Vec<i32> = Vec::new();
        for j in due.iter().filter(|j| j.os.cg.is_none()) {
            known.extend(j.lock().known.iter().copied());
        }
        known
            .iter()
            .filter_map(|&p| read_proc(p, page))
            .filter(|p| sessions.contains(&p.session))
            .collect()
    };
    let ticks = clock_ticks();
    let mut by_session: HashMap<i32, Vec<ProcInfo>> = HashMap::new();
    for p in procs {
        by_session.entry(p.session).or_default().push(p);
    }
    let mut any_active = false;
    for j in due {
        let cg_total = j.os.cg.as_ref().and_then(|cg| cg.cpu_total_ns());
        if cg_total.is_some() {
            let mut st = j.lock();
            if st.cg_cpu_seen == cg_total {
                let activity = st.last_activity;
                st.run.schedule(&j.limits, activity, monitor().epoch, now);
                any_active |= crate::decide::counts_processes(&j.limits);
                continue;
            }
        }
        let cg_cpu = j.os.cg.as_ref().and_then(|cg| cg.cpu_ns());
        let in_cg: Vec<ProcInfo> = j.os.cg.as_ref().map_or_else(Vec::new, |cg| {
            cg.members()
                .into_iter()
                .filter_map(|p| read_proc(p, page))
                .collect()
        });
        let kernel = j.os.cg.as_ref().map(|cg| (cg_cpu, cg.memory_peak()));
        let mut st = j.lock();
        let mine: Vec<&ProcInfo> = if j.os.cg.is_some() {
            in_cg.iter().collect()
        } else {
            st.sessions
                .iter()
                .filter_map(|s| by_session.get(s))
                .flatten()
                .collect()
        };
        let mut cpu: u64 = mine.iter().map(|p| p.cpu_ticks).sum();
        if let Some((Some((u, s)), _)) = kernel {
            cpu = cpu.max((u + s) / (1_000_000_000 / ticks.max(1)));
        }
        st.cpu_ticks = st.cpu_ticks.max(cpu);
        st.known = mine
            .iter()
            .filter(|p| p.data_bytes > 0)
            .map(|p| p.pid)
            .collect();
        for p in &mine {
            st.seen.insert(p.pid);
            st.run.peak_process_memory = st.run.peak_process_memory.max(p.data_bytes);
        }
        let job_mem: u64 = mine.iter().map(|p| p.data_bytes).sum();
        st.run.peak_job_memory = st.run.peak_job_memory.max(job_mem);
        if let Some((_, Some(peak))) = kernel {
            st.run.peak_job_memory = st.run.peak_job_memory.max(peak);
        }
        let activity = cpu + st.seen.len() as u64 + job_mem;
        st.cg_cpu_seen = cg_total;
        st.last_activity = activity;
        let active = st.run.schedule(&j.limits, activity, monitor().epoch, now);
        any_active |= active || crate::decide::counts_processes(&j.limits);
        let s = Sample {
            cpu_time: Duration::from_secs_f64(st.cpu_ticks as f64 / ticks as f64),
            process_memory: st.run.peak_process_memory,
            job_memory: st.run.peak_job_memory,
            active_processes: mine.iter().filter(|p| p.data_bytes > 0).count() as u32,
            total_processes: st.seen.len() as u32,
        };
        let elapsed = st.run.elapsed(now);
        drop(st);
        if let Some(hit) = check_sample(&j.limits, elapsed, &s) {
            j.fire(hit);
        }
    }
    any_active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let s = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 100 0 0";
        let p = parse_stat(1234, s).unwrap();
        assert_eq!(p.session, 1234);
        assert_eq!(p.cpu_ticks, 13);
        assert!(parse_stat(1, "garbage").is_none());
    }

    #[test]
    fn scan_finds_this_session() {
        // SAFETY: getsid(0) reads our own session id.
        let sid = unsafe { libc::getsid(0) };
        let procs = scan(&[sid].into_iter().collect());
        let me = std::process::id() as i32;
        let p = procs
            .iter()
            .find(|p| p.pid == me)
            .expect("this process in its own session");
        assert!(p.data_bytes > 0);
    }
}
