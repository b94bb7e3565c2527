//! Native benchmarks, reported as ratios against a baseline measured in the
//! same run, interleaved:
//! 1. per-run overhead: a sandboxed no-op vs a bare spawn + wait of the same
//!    program (`std::process::Command`: CreateProcessW on Windows,
//!    posix_spawn/fork+exec on Linux);
//! 3. throughput at concurrency 1, 2, 8, 32 vs the same count of bare spawns;
//! 4. scale: N live jobs of sleeping children: supervisor threads, memory per
//!    job, and the process's CPU while they sleep (the monitor's).
//!
//! `cargo bench --bench spawn` (quick: `-- --quick`). Prints a table.

use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use winsandbox::backend::Running;
use winsandbox::{Command, Limits, Verdict};

fn probe() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = dir.join(format!("wsb-probe{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        p.to_string_lossy().into_owned()
    } else {
        env!("CARGO_BIN_EXE_wsb-probe").to_string()
    }
}

fn bare(probe: &str) {
    let s = StdCommand::new(probe)
        .arg("exit")
        .arg("0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(s.status.success());
}

fn sandboxed(probe: &str) {
    let o = winsandbox::run(&Command::new(probe).args(["exit", "0"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn overhead(probe: &str, n: usize) {
    for _ in 0..5 {
        bare(probe);
        sandboxed(probe);
    }
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        bare(probe);
        b.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sandboxed(probe);
        s.push(t.elapsed().as_secs_f64());
    }
    let (mb, ms) = (median(&mut b), median(&mut s));
    println!(
        "| per-run overhead (no-op) | bare spawn+wait | {:.3} | sandboxed {:.3} ms, bare {:.3} ms, {n} runs interleaved, medians |",
        ms / mb,
        ms * 1e3,
        mb * 1e3
    );
}

fn throughput(probe: &str, conc: usize, total: usize) {
    let go = |f: fn(&str)| -> f64 {
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let hs: Vec<_> = (0..conc)
            .map(|_| {
                let next = next.clone();
                let p = probe.to_string();
                std::thread::spawn(move || {
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        f(&p);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        total as f64 / t.elapsed().as_secs_f64()
    };
    // interleaved: bare, sandboxed, bare, sandboxed
    let (b1, s1, b2, s2) = (go(bare), go(sandboxed), go(bare), go(sandboxed));
    let (b, s) = ((b1 + b2) / 2.0, (s1 + s2) / 2.0);
    println!(
        "| throughput, concurrency {conc} | bare spawns | {:.3} | sandboxed {s:.0} runs/s, bare {b:.0} runs/s ({total} runs x2) |",
        s / b
    );
}

#[cfg(unix)]
fn threads_and_memory() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:") * 1024)
}

#[cfg(windows)]
fn threads_and_memory() -> (u64, u64) {
    use windows::Win32::System::ProcessStatus::{GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
    use windows::Win32::System::Threading::{GetCurrentProcess, GetCurrentProcessId};
    let mut c = PROCESS_MEMORY_COUNTERS {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        ..Default::default()
    };
    // SAFETY: pseudo-handle of this process; `c` writable with its size.
    let _ = unsafe { GetProcessMemoryInfo(GetCurrentProcess(), &mut c, c.cb) };
    // SAFETY: no arguments.
    let me = unsafe { GetCurrentProcessId() };
    (windows_threads(me), c.PagefileUsage as u64)
}

#[cfg(windows)]
fn windows_threads(pid: u32) -> u64 {
    use windows::Win32::Foundation::CloseHandle;
    use windows::Win32::System::Diagnostics::ToolHelp::*;
    // SAFETY: a snapshot handle, closed below.
    let Ok(snap) = (unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) }) else {
        return 0;
    };
    let mut e = THREADENTRY32 {
        dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
        ..Default::default()
    };
    let mut n = 0;
    // SAFETY: `e` is writable with its size set.
    let mut ok = unsafe { Thread32First(snap, &mut e) }.is_ok();
    while ok {
        if e.th32OwnerProcessID == pid {
            n += 1;
        }
        // SAFETY: as above.
        ok = unsafe { Thread32Next(snap, &mut e) }.is_ok();
    }
    // SAFETY: closing the snapshot.
    let _ = unsafe { CloseHandle(snap) };
    n
}

/// CPU time of this whole process so far (user + kernel), seconds.
fn process_cpu() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills a zeroed struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
    #[cfg(windows)]
    {
        use windows::Win32::Foundation::FILETIME;
        use windows::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
        let (mut a, mut b, mut k, mut u) = (
            FILETIME::default(),
            FILETIME::default(),
            FILETIME::default(),
            FILETIME::default(),
        );
        // SAFETY: pseudo-handle; four writable FILETIMEs.
        let _ = unsafe { GetProcessTimes(GetCurrentProcess(), &mut a, &mut b, &mut k, &mut u) };
        let f =
            |t: FILETIME| ((t.dwHighDateTime as u64) << 32 | t.dwLowDateTime as u64) as f64 / 1e7;
        f(k) + f(u)
    }
}

#[cfg(unix)]
fn raise_fd_limit() {
    // SAFETY: get/setrlimit on plain structs.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

#[cfg(windows)]
fn raise_fd_limit() {}

fn scale(probe: &str, n: usize, limits: &Limits, label: &str) {
    let (t0, m0) = threads_and_memory();
    let mut live: Vec<Running> = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Command::new(probe)
            .args(["sleep", "120"])
            .limits(limits.clone());
        live.push(Running::start(&c).unwrap());
    }
    // Measured once the monitor's idle back-off has settled (it reaches
    // decide::IDLE_INTERVAL after about 1.7 s of sleep).
    std::thread::sleep(Duration::from_secs(3));
    let (t1, m1) = threads_and_memory();
    let c0 = process_cpu();
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (process_cpu() - c0) / w.elapsed().as_secs_f64() * 100.0;
    let per_job = m1.saturating_sub(m0) as f64 / n as f64 / 1024.0;
    println!(
        "| scale: {n} live jobs ({label}) | - | - | threads {t0} -> {t1}, memory {per_job:.1} KiB/job, supervisor CPU while they sleep {cpu:.2} % of a core |"
    );
    for r in &mut live {
        r.kill();
    }
    drop(live);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let wine = {
        #[cfg(windows)]
        {
            winsandbox::win::wine_version()
        }
        #[cfg(not(windows))]
        {
            None::<String>
        }
    };
    raise_fd_limit();
    let probe = probe();
    println!(
        "\nwinsandbox native benchmarks: backend {}{}",
        if cfg!(windows) { "windows" } else { "posix" },
        wine.as_ref()
            .map_or(String::new(), |v| format!(" (Wine {v})"))
    );
    println!("| measure | baseline | ratio | detail |\n|---|---|---|---|");
    overhead(&probe, if quick { 20 } else { 200 });
    for c in [1, 2, 8, 32] {
        throughput(&probe, c, if quick { 32 } else { 200 });
    }
    let sizes: &[usize] = if quick {
        &[10]
    } else if wine.is_some() {
        &[10, 100]
    } else {
        &[10, 100, 1000]
    };
    let wall = Limits {
        wall_time: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let sampled = Limits {
        memory: Some(256 << 20),
        wall_time: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    for &n in sizes {
        scale(&probe, n, &wall, "wall limit");
    }
    for &n in sizes {
        scale(&probe, n, &sampled, "memory limit: sampled");
    }
}
