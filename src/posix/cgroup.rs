//! A cgroup per job (Linux): exact membership (a process cannot leave by
//! `setsid` or a double fork), one kill for the whole tree, the CPU of every
//! process that ever ran in it (reaped and orphaned ones included), and the
//! kernel's own memory peak, limit and OOM count.
//!
//! Job cgroups are made only beneath the supervisor's own cgroup in each
//! hierarchy (read from `/proc/self/cgroup`), named
//! `winsandbox-<supervisor pid>-<job key>`, and removed when the job ends.
//! cgroup v2 gives `cgroup.kill`, `cgroup.events` and `cpu.stat` in every
//! cgroup, and `memory` where that controller is enabled for our subtree;
//! cgroup v1 gives `memory`, `cpuacct` and `freezer` where they are mounted
//! and writable. Whatever cannot be had is left out, and the run says so
//! (`Containment::missing`).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The supervisor's own cgroup in each hierarchy we use (absolute paths).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Places {
    pub unified: Option<PathBuf>,
    /// Whether the unified hierarchy has the memory controller for our children.
    pub unified_memory: bool,
    pub memory: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
}

/// Parses `/proc/self/mountinfo` and `/proc/self/cgroup` into the directory
/// of our own cgroup in each hierarchy (pure: unit-tested with both texts).
pub fn places_from(mountinfo: &str, self_cgroup: &str) -> Places {
    // hierarchy-id:controllers:path; v2 is "0::path".
    let own = |want: &str| -> Option<&str> {
        self_cgroup.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
            let hit = if want.is_empty() {
                ctl.is_empty()
            } else {
                ctl.split(',').any(|c| c == want)
            };
            hit.then_some(path)
        })
    };
    let mut p = Places::default();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split_whitespace().collect();
        let g: Vec<&str> = post.split_whitespace().collect();
        if f.len() < 5 || g.len() < 3 {
            continue;
        }
        let (root, mnt, fstype, opts) = (f[3], f[4], g[0], g[2]);
        let dir = |cg: &str| -> Option<PathBuf> {
            // The cgroup path is relative to the hierarchy's root; the mount
            // may show only a subtree of it (a container).
            let rel = cg.strip_prefix(root.trim_end_matches('/')).unwrap_or(cg);
            let d = Path::new(mnt).join(rel.trim_start_matches('/'));
            Some(d)
        };
        if fstype == "cgroup2" && p.unified.is_none() {
            p.unified = own("").and_then(dir);
        } else if fstype == "cgroup" {
            let has = |c: &str| opts.split(',').any(|o| o == c);
            if has("memory") && p.memory.is_none() {
                p.memory = own("memory").and_then(dir);
            }
            if has("cpuacct") && p.cpuacct.is_none() {
                p.cpuacct = own("cpuacct").and_then(dir);
            }
            if has("freezer") && p.freezer.is_none() {
                p.freezer = own("freezer").and_then(dir);
            }
        }
    }
    p
}

fn writable(d: &Path) -> bool {
    let Ok(c) = CString::new(d.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a NUL-terminated path; no memory is written.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Our places that exist and that we may make cgroups in (read once).
fn places() -> &'static Places {
    static P: OnceLock<Places> = OnceLock::new();
    P.get_or_init(|| {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut p = places_from(&mi, &cg);
        for slot in [
            &mut p.unified,
            &mut p.memory,
            &mut p.cpuacct,
            &mut p.freezer,
        ] {
            if slot.as_deref().is_some_and(|d| !writable(d)) {
                *slot = None;
            }
        }
        if let Some(u) = &p.unified {
            p.unified_memory = enable_memory(u);
            // Joining a cgroup costs about 0.2 ms per hierarchy (the kernel's
            // migration lock): none is joined for what the unified one gives
            // already (cgroup.kill, cpu.stat).
            // What a job cgroup has there, seen in a first one (the root
            // cgroup, ours here, lists neither file).
            // SAFETY: getpid has no preconditions.
            let probe = u.join(format!("winsandbox-{}-0", unsafe { libc::getpid() }));
            if std::fs::create_dir(&probe).is_ok() {
                if probe.join("cgroup.kill").exists() {
                    p.freezer = None;
                }
                if probe.join("cpu.stat").exists() {
                    p.cpuacct = None;
                }
                let _ = std::fs::remove_dir(&probe);
            }
            if p.unified_memory {
                p.memory = None;
            }
        }
        sweep_stale(&p);
        p
    })
}

/// How often starting a job looks again for the cgroups of supervisors that
/// died: another live supervisor on the machine (a fleet's other worker)
/// clears what a SIGKILLed one left within this long of its next job.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

static LAST_SWEEP: Mutex<Option<Instant>> = Mutex::new(None);

/// [`remove_stale`] in each hierarchy, at most once per [`SWEEP_EVERY`]
/// (one thread at a time; the others go on at once).
fn sweep_stale(p: &Places) {
    let Ok(mut last) = LAST_SWEEP.try_lock() else {
        return;
    };
    if last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
        return;
    }
    for base in [&p.unified, &p.memory, &p.cpuacct, &p.freezer]
        .into_iter()
        .flatten()
    {
        remove_stale(base);
    }
    *last = Some(Instant::now());
}

/// The supervisor pid in a job cgroup's name (`winsandbox-<pid>-<key>`).
pub fn owner_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("winsandbox-")?;
    let (pid, key) = rest.split_once('-')?;
    key.parse::<usize>().ok()?;
    pid.parse().ok()
}

/// Removes the job cgroups of supervisors that died without removing them
/// (SIGKILL), first killing what is left in them: the job was never meant
/// to outlive its supervisor.
fn remove_stale(base: &Path) {
    let Ok(dir) = std::fs::read_dir(base) else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(owner_of) else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if !gone {
            continue;
        }
        let d = e.path();
        for _ in 0..100 {
            let pids = procs_in(&d);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) on a process left in a dead supervisor's job.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = std::fs::remove_dir(&d);
    }
}

/// Whether our children in the unified hierarchy get the memory controller:
/// enabled already, or enabled now (allowed at the root, or where our own
/// cgroup holds no process: the kernel refuses it otherwise).
fn enable_memory(own: &Path) -> bool {
    let has = |f: &str| {
        std::fs::read_to_string(own.join(f))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"))
    };
    if !has("cgroup.controllers") {
        return false;
    }
    has("cgroup.subtree_control")
        || std::fs::write(own.join("cgroup.subtree_control"), "+memory").is_ok()
}

/// What a job's cgroups could not give, for `not_applied`.
pub fn missing() -> Vec<&'static str> {
    let p = places();
    let mut v = Vec::new();
    if p.unified.is_none() && p.freezer.is_none() && p.memory.is_none() && p.cpuacct.is_none() {
        v.push("containment");
    }
    if p.memory.is_none() && !p.unified_memory {
        v.push("kernel_memory_accounting");
    }
    v
}

/// One job's cgroups, removed on drop (after killing what is left in them).
#[derive(Debug)]
pub struct JobCgroup {
    unified: Option<PathBuf>,
    unified_memory: bool,
    memory: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    freezer: Option<PathBuf>,
    /// The `cgroup.procs` of each, open for writing: the child joins by
    /// writing "0" into each before exec (an isolated one, from a view of
    /// the files where the cgroups cannot be seen).
    procs: Vec<std::os::fd::OwnedFd>,
    /// The job's total CPU, kept open: the monitor reads it at every sample
    /// of every job (one `pread`; a cgroup file is made anew at offset 0).
    /// `cpuacct.usage` (ns), else `cpu.stat` (its `usage_usec`).
    cpu_total: Option<(std::fs::File, bool)>,
}

fn put(dir: &Path, file: &str, value: &str) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(file))
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .is_ok()
}

fn get(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// The processes a cgroup lists (its `cgroup.procs`).
fn procs_in(dir: &Path) -> Vec<i32> {
    get(dir, "cgroup.procs")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The value after `key` in a "key value" file (memory.events, cpu.stat, …).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl JobCgroup {
    /// Makes the job's cgroups, with `memory_limit` (bytes) set where there
    /// is a memory controller. None when no hierarchy is usable.
    pub fn create(key: usize, memory_limit: Option<u64>) -> Option<JobCgroup> {
        let p = places();
        sweep_stale(p);
        // SAFETY: getpid has no preconditions.
        let name = format!("winsandbox-{}-{key}", unsafe { libc::getpid() });
        let make = |base: &Option<PathBuf>| -> Option<PathBuf> {
            let d = base.as_ref()?.join(&name);
            match std::fs::create_dir(&d) {
                Ok(()) => Some(d),
                // Left by an earlier supervisor with our pid: its counters
                // are not ours. Taken only if it is empty and can be made anew.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::remove_dir(&d)
                    .and_then(|()| std::fs::create_dir(&d))
                    .ok()
                    .map(|()| d),
                Err(_) => None,
            }
        };
        let mut cg = JobCgroup {
            unified: make(&p.unified),
            unified_memory: p.unified_memory,
            memory: make(&p.memory),
            cpuacct: make(&p.cpuacct),
            freezer: make(&p.freezer),
            procs: Vec::new(),
            cpu_total: None,
        };
        let open = |d: &Option<PathBuf>, f: &str| std::fs::File::open(d.as_ref()?.join(f)).ok();
        cg.cpu_total = open(&cg.cpuacct, "cpuacct.usage")
            .map(|f| (f, false))
            .or_else(|| open(&cg.unified, "cpu.stat").map(|f| (f, true)));
        cg.unified_memory &= cg.unified.is_some();
        if let Some(limit) = memory_limit {
            let v = limit.to_string();
            if let Some(m) = &cg.memory {
                put(m, "memory.limit_in_bytes", &v);
                // Swap would let the job hold more than its limit.
                put(m, "memory.memsw.limit_in_bytes", &v);
            }
            if cg.unified_memory {
                let u = cg.unified.as_ref().expect("checked above");
                put(u, "memory.max", &v);
                put(u, "memory.swap.max", "0");
            }
        }
        cg.procs = cg
            .dirs()
            .filter_map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .ok()
                    .map(std::os::fd::OwnedFd::from)
            })
            .collect();
        (!cg.procs.is_empty()).then_some(cg)
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.unified, &self.memory, &self.cpuacct, &self.freezer]
            .into_iter()
            .flatten()
    }

    /// The open `cgroup.procs` files a new process writes "0" into to join.
    pub fn procs_files(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// The processes in the job now (its `cgroup.procs`).
    pub fn members(&self) -> Vec<i32> {
        self.dirs().next().map_or_else(Vec::new, |d| procs_in(d))
    }

    /// Whether any process is in the job.
    pub fn populated(&self) -> bool {
        match &self.unified {
            Some(u) => get(u, "cgroup.events")
                .and_then(|s| keyed(&s, "populated"))
                .is_none_or(|n| n > 0),
            None => !self.members().is_empty(),
        }
    }

    /// CPU of every process that ran in the job: (user, system) in ns.
    pub fn cpu_ns(&self) -> Option<(u64, u64)> {
        if let Some(a) = &self.cpuacct {
            let n = |f| get(a, f).and_then(|s| s.trim().parse::<u64>().ok());
            if let (Some(u), Some(s)) = (n("cpuacct.usage_user"), n("cpuacct.usage_sys")) {
                return Some((u, s));
            }
        }
        let mut buf = [0u8; 1024];
        let s = match self.kept_cpu(&mut buf) {
            Some((text, true)) => std::borrow::Cow::Borrowed(text),
            _ => std::borrow::Cow::Owned(get(self.unified.as_ref()?, "cpu.stat")?),
        };
        Some((
            keyed(&s, "user_usec")? * 1000,
            keyed(&s, "system_usec")? * 1000,
        ))
    }

    /// The kept CPU file's text (one `pread`, no open), and whether it is
    /// `cpu.stat`.
    fn kept_cpu<'a>(&self, buf: &'a mut [u8; 1024]) -> Option<(&'a str, bool)> {
        use std::os::unix::fs::FileExt;
        let (f, stat) = self.cpu_total.as_ref()?;
        let n = f.read_at(buf, 0).ok()?;
        Some((std::str::from_utf8(&buf[..n]).ok()?, *stat))
    }

    /// The CPU of every process that ran in the job, ns, user and system
    /// together: the cheap read, for telling whether anything ran.
    pub fn cpu_total_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        let (text, stat) = self.kept_cpu(&mut buf)?;
        match stat {
            true => keyed(text, "usage_usec").map(|u| u * 1000),
            false => text.trim().parse().ok(),
        }
    }

    /// The kernel's peak of the job's memory, bytes.
    pub fn memory_peak(&self) -> Option<u64> {
        if let Some(m) = &self.memory {
            return get(m, "memory.max_usage_in_bytes").and_then(|s| s.trim().parse().ok());
        }
        if self.unified_memory {
            return get(self.unified.as_ref()?, "memory.peak").and_then(|s| s.trim().parse().ok());
        }
        None
    }

    /// How many times the kernel's OOM killer ended a process of the job.
    pub fn oom_kills(&self) -> u64 {
        if let Some(m) = &self.memory {
            return get(m, "memory.oom_control")
                .and_then(|s| keyed(&s, "oom_kill"))
                .unwrap_or(0);
        }
        if self.unified_memory {
            if let Some(u) = &self.unified {
                return get(u, "memory.events")
                    .and_then(|s| keyed(&s, "oom_kill"))
                    .unwrap_or(0);
            }
        }
        0
    }

    /// SIGKILL to every process in the job, including any it forks meanwhile:
    /// `cgroup.kill` (v2), else freeze, kill, thaw (v1 freezer), else kill
    /// what `cgroup.procs` lists until it is empty (bounded).
    pub fn kill(&self) {
        if let Some(u) = &self.unified {
            if put(u, "cgroup.kill", "1") {
                return;
            }
        }
        let kill_listed = |me: &Self| {
            let pids = me.members();
            for &p in &pids {
                // SAFETY: kill(2) on a process listed in the job's own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            !pids.is_empty()
        };
        if let Some(f) = &self.freezer {
            if put(f, "freezer.state", "FROZEN") {
                let until = Instant::now() + Duration::from_millis(500);
                while get(f, "freezer.state").is_some_and(|s| s.trim() != "FROZEN")
                    && Instant::now() < until
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                kill_listed(self);
                put(f, "freezer.state", "THAWED");
                return;
            }
        }
        for _ in 0..1000 {
            if !kill_listed(self) {
                break;
            }
            std::thread::yield_now();
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty: kill, then wait a little
        // for the kernel to let the processes go.
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if !self.populated() {
                break;
            }
            self.kill();
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for d in self.dirs() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const SELF: &str = "6:freezer:/\n4:memory:/api/92ec\n2:cpuacct:/\n0::/a/b\n";

    #[test]
    fn places_are_our_own_cgroup_in_each_hierarchy() {
        let p = places_from(MOUNTS, SELF);
        assert_eq!(
            p.memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/api/92ec"))
        );
        assert_eq!(
            p.cpuacct.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            p.freezer.as_deref(),
            Some(Path::new("/sys/fs/cgroup/freezer"))
        );
        assert_eq!(
            p.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/a/b"))
        );
    }

    #[test]
    fn a_pure_v2_system_and_a_container_mount() {
        let mi = "30 24 0:26 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let p = places_from(mi, "0::/user.slice/u-1000/app\n");
        assert_eq!(
            p.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/u-1000/app"))
        );
        assert_eq!((p.memory, p.cpuacct, p.freezer), (None, None, None));
        assert_eq!(places_from("", ""), Places::default());
    }

    #[test]
    fn job_cgroup_names() {
        assert_eq!(owner_of("winsandbox-123-4"), Some(123));
        assert_eq!(owner_of("winsandbox-123"), None);
        assert_eq!(owner_of("other-123-4"), None);
    }

    #[test]
    fn keyed_files() {
        let s = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(keyed(s, "user_usec"), Some(1000));
        assert_eq!(keyed(s, "usage"), None);
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
    }
}
