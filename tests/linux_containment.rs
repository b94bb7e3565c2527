//! The Linux backend contains the whole tree: a cgroup per job gives exact
//! membership, one kill, the CPU of every process and the kernel's memory
//! peak. Each test is a failure a probe found before jobs had cgroups.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use winsandbox::{Limits, Verdict};

/// Whether runs here get what `not_applied` would name `missing` when
/// not: as root they must (the CI machines); elsewhere the test is skipped,
/// and says so.
fn given(missing: &str, what: &str) -> bool {
    let o = winsandbox::run(&probe_cmd(&["exit", "0"])).unwrap();
    let lacking = o.not_applied.iter().any(|n| n.limit == missing);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        !(lacking && root),
        "running as root, yet no {what}: {:?}",
        o.not_applied
    );
    if lacking {
        eprintln!("skipped: no {what} for this user");
    }
    !lacking
}

/// Whether jobs get cgroups here.
fn contained() -> bool {
    given("containment", "job cgroup")
}

/// Whether runs get a PID namespace here.
fn namespaced() -> bool {
    given("pid_namespace", "PID namespace")
}

#[test]
fn peak_memory_is_never_the_supervisors() {
    // A large supervisor: its peak used to come back as the child's
    // (ru_maxrss after a clone(CLONE_VM) start), so `exit 1` was MLE.
    let big = vec![7u8; 300 << 20];
    std::hint::black_box(&big);
    let l = Limits {
        memory: Some(16 << 20),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["exit", "1"], l)).unwrap();
    assert_eq!((o.verdict(), o.exit_code), (Verdict::Re, Some(1)), "{o:?}");
    assert!(o.peak_memory < 16 << 20, "{}", o.peak_memory);
    assert!(o.peak_job_memory < 16 << 20, "{}", o.peak_job_memory);
    drop(big);
}

#[test]
fn a_daemon_that_left_the_session_does_not_survive_the_run() {
    if !contained() {
        return;
    }
    let o = winsandbox::run(&probe_cmd(&["daemon", "60"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    let pids = pids_in(&o.stdout);
    assert_eq!(pids.len(), 1, "{o:?}");
    assert!(all_gone(&pids), "the setsid daemon {pids:?} survived");
}

#[test]
fn a_setsid_fork_bomb_under_a_process_limit_leaves_nothing() {
    if !contained() {
        return;
    }
    let l = Limits {
        processes: Some(4),
        wall_time: Some(Duration::from_secs(20)),
        ..Default::default()
    };
    let t = Instant::now();
    let o = winsandbox::run(&with_limits(&["setsid-bomb"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Ple, Some("processes")),
        "{o:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Nothing of the probe's is left anywhere on the machine.
    std::thread::sleep(Duration::from_millis(200));
    let left = probes_running("setsid-bomb");
    assert!(left.is_empty(), "{} bomb processes alive", left.len());
}

/// The pids of live probe processes whose arguments include `word`.
fn probes_running(word: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("wsb-probe") && cmd.contains(word) && alive(pid) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn cpu_of_children_never_waited_for_counts() {
    if !contained() {
        return;
    }
    // 3 children burn 0.4 s of CPU each, never reaped by the program: their
    // CPU is in no rusage of its. The job's cgroup counts it.
    let l = Limits {
        cpu_time: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["spin-children", "3", "0.4"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Tle, Some("cpu_time")),
        "{o:?}"
    );
    assert!(o.user_time + o.kernel_time > 1.0, "{o:?}");
}

#[test]
fn cpu_past_the_limit_is_tle_even_after_a_clean_exit() {
    let l = Limits {
        cpu_time: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    for _ in 0..3 {
        let o = winsandbox::run(&with_limits(&["burn", "1.1"], l.clone())).unwrap();
        assert_eq!(
            (o.verdict(), o.limit),
            (Verdict::Tle, Some("cpu_time")),
            "{o:?}"
        );
    }
}

#[test]
fn shared_memory_counts_toward_the_job_memory() {
    if !contained() {
        return;
    }
    let l = Limits {
        job_memory: Some(64 << 20),
        wall_time: Some(Duration::from_secs(20)),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["shared", "512"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Mle, Some("job_memory")),
        "{o:?}"
    );
}

#[test]
fn a_child_holding_stdout_neither_delays_the_run_nor_changes_its_verdict() {
    if !contained() {
        return;
    }
    let l = Limits {
        wall_time: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let t = Instant::now();
    let o = winsandbox::run(&with_limits(&["holder", "30"], l)).unwrap();
    assert_eq!((o.verdict(), o.exit_code), (Verdict::Ok, Some(0)), "{o:?}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let pids = pids_in(&o.stdout);
    assert_eq!(pids.len(), 1, "{o:?}");
    assert!(all_gone(&pids), "{pids:?} survived");
}

#[test]
fn the_cgroups_of_a_job_are_removed_when_it_ends() {
    if !contained() {
        return;
    }
    let o = winsandbox::run(&probe_cmd(&["grandchild", "30"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    let me = format!("winsandbox-{}-", std::process::id());
    let own: String = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    // The unified hierarchy is enough to see it: every job has a cgroup there.
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/');
    for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let d = std::path::Path::new(base).join(rel);
        if !d.join("cgroup.procs").exists() {
            continue;
        }
        // Other tests of this binary run at once: wait for this one's to go.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let n = std::fs::read_dir(&d)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&me))
                .count();
            if n == 0 || Instant::now() > until {
                assert_eq!(n, 0, "job cgroups left in {d:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
}

fn sh(script: &str) -> winsandbox::Command {
    winsandbox::Command::new("/bin/sh").args(["-c", script])
}

#[test]
fn a_run_sees_and_signals_nothing_outside_its_pid_namespace() {
    if !namespaced() {
        return;
    }
    let me = std::process::id();
    // The program is PID 2 under our init; the supervisor, and every
    // other process, is out of its sight and reach.
    let script = format!(
        "echo $$ $PPID; kill -KILL $PPID; kill -KILL -1; \
         kill -0 {me} 2>/dev/null && echo sees-the-supervisor; \
         ls /proc/{me}/ns >/dev/null 2>&1; echo alive"
    );
    let o = winsandbox::run(&sh(&script)).unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert!(out.starts_with("2 1\n"), "{out:?}");
    assert!(!out.contains("sees-the-supervisor"), "{out:?}");
    assert!(out.ends_with("alive\n"), "{out:?}");
    // And the outcome's pid is the program's, as the supervisor numbers it.
    assert_ne!(o.pid, 2, "{o:?}");
}

#[test]
fn a_program_that_aborts_itself_ends_by_its_signal() {
    if !namespaced() {
        return;
    }
    // PID 1 of a namespace ignores the signals it raises on itself; the
    // program is PID 2, so abort() is SIGABRT, not a hang or a SIGSEGV.
    let o = winsandbox::run(&sh("kill -ABRT $$; sleep 5")).unwrap();
    assert_eq!(
        (o.verdict(), o.status),
        (Verdict::Re, Some("SIGABRT")),
        "{o:?}"
    );
    let o = winsandbox::run(&sh("exit 7")).unwrap();
    assert_eq!(o.exit_code, Some(7), "{o:?}");
}

#[test]
fn a_supervisor_killed_outright_takes_every_process_of_its_runs_along() {
    if !namespaced() {
        return;
    }
    // A supervisor (the CLI) SIGKILLed while its program's grandchildren,
    // in the background and in their own sessions, wait to leave a mark.
    let dir = std::env::temp_dir().join(format!("wsb-pdeath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mark = dir.join("mark");
    let _ = std::fs::remove_file(&mark);
    let script = format!(
        "for i in 1 2 3; do setsid sh -c 'sleep 2; echo $i >> {m}' & done; sleep 60",
        m = mark.display()
    );
    let cli = env!("CARGO_BIN_EXE_winsandbox");
    let mut sup = std::process::Command::new(cli)
        .args(["run", "--", "/bin/sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    sup.kill().unwrap(); // SIGKILL: no cleanup of its own runs
    sup.wait().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !mark.exists(),
        "a grandchild outlived its supervisor: {:?}",
        std::fs::read_to_string(&mark)
    );
}

#[test]
fn a_supervisor_that_is_not_root_still_gets_a_pid_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root (to become nobody) and setpriv");
        return;
    }
    // The CLI as nobody, from a folder nobody may read (the build's may not be).
    let dir = std::env::temp_dir().join(format!("wsb-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cli = dir.join("winsandbox");
    std::fs::copy(env!("CARGO_BIN_EXE_winsandbox"), &cli).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&cli)
        .args(["run", "--json", "--", "/bin/sh", "-c", "echo $$ $PPID"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"stdout\": \"2 1\\n\""), "{json}");
    assert!(!json.contains("pid_namespace"), "{json}");
    // No cgroup for nobody here: said so, not silently weaker.
    assert!(json.contains("\"limit\": \"containment\""), "{json}");
}
