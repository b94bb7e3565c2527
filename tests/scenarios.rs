//! Conformance scenarios, the same on every backend: real processes, real
//! limits. On Windows they run under Wine here and natively in CI.

mod common;

use std::time::{Duration, Instant};

use common::*;
use winsandbox::backend::Running;
use winsandbox::{Limits, Mechanism, Output, Stdin, Verdict};

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

#[test]
fn exit_codes_propagate() {
    let ok = winsandbox::run(&probe_cmd(&["exit", "0"])).unwrap();
    assert_eq!(
        (ok.verdict(), ok.exit_code, ok.mechanism),
        (Verdict::Ok, Some(0), Some(Mechanism::Exit))
    );
    let re = winsandbox::run(&probe_cmd(&["exit", "7"])).unwrap();
    assert_eq!((re.verdict(), re.exit_code), (Verdict::Re, Some(7)));
    assert!(re.processes >= 1);
}

#[test]
fn stdin_round_trips_10_mb() {
    let data: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let o = winsandbox::run(&probe_cmd(&["cat"]).stdin(Stdin::Bytes(data.clone()))).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert_eq!(o.stdout.len(), data.len());
    assert!(o.stdout == data, "stdout differs from stdin");
}

#[test]
fn no_deadlock_with_megabytes_on_all_three_pipes() {
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let o = winsandbox::run(&probe_cmd(&["cat-both"]).stdin(Stdin::Bytes(data.clone()))).unwrap();
    assert_eq!(
        o.verdict(),
        Verdict::Ok,
        "{:?}",
        String::from_utf8_lossy(&o.stderr[..o.stderr.len().min(200)])
    );
    assert!(o.stdout == data && o.stderr == data);
}

#[test]
fn argv_round_trips() {
    let args = [
        "plain",
        "",
        "with space",
        "quote\"inside",
        "trailing\\",
        "trail space\\",
        "back\\\\\"slash",
        "tab\there",
        "ünïcödé ✓",
        "\\\\server\\share\\",
        "-dash",
        "a=b",
        "'single'",
    ];
    let mut all = vec!["echo-args"];
    all.extend(args);
    let o = winsandbox::run(&probe_cmd(&all)).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
    let got: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .split('\0')
        .map(String::from)
        .collect();
    let mut want: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    want.push(String::new()); // after the last separator
    assert_eq!(got, want);
}

#[test]
fn crash_is_re_with_its_status_name() {
    let o = winsandbox::run(&probe_cmd(&["crash"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Re);
    if cfg!(windows) {
        assert_eq!(o.exit_code, Some(0xC000_0005));
        assert_eq!(o.status, Some("STATUS_ACCESS_VIOLATION"));
    } else {
        assert_eq!(o.exit_code, Some(-11));
        assert_eq!(o.status, Some("SIGSEGV"));
    }
}

#[test]
fn missing_program_is_a_clear_error() {
    let e = winsandbox::run(&winsandbox::Command::new("/no/such/dir/wsb-nothing")).unwrap_err();
    assert_eq!(e.os_code(), Some(2), "{e}");
    assert!(e.to_string().contains("wsb-nothing"), "{e}");
    let e = winsandbox::run(&winsandbox::Command::new("wsb-no-such-program-anywhere")).unwrap_err();
    assert_eq!(e.os_code(), Some(2), "{e}");
}

#[test]
fn wall_time_gives_wle_within_ten_percent() {
    let l = Limits {
        wall_time: secs(1.0),
        ..Default::default()
    };
    let t = Instant::now();
    let o = winsandbox::run(&with_limits(&["sleep", "30"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit, o.mechanism),
        (Verdict::Wle, Some("wall_time"), Some(Mechanism::Monitor))
    );
    assert!((1.0..1.1).contains(&o.wall_time), "wall {}", o.wall_time);
    // Not waited out: the program sleeps 30 s (creation and teardown take
    // seconds under Wine beside the 200-job test).
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn memory_hog_gives_mle() {
    let l = Limits {
        memory: Some(64 << 20),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["alloc", "512", "10"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Mle, Some("memory")),
        "{o:?}"
    );
    assert!(
        o.wall_time < 9.0,
        "ended by the limit, not by the program: {}",
        o.wall_time
    );
}

#[test]
fn a_short_memory_peak_gives_mle_every_time() {
    // 80 MiB touched, then freed, and the program ends soon after: a peak
    // shorter than the monitor's sampling. The kernel stops it (Windows; Linux, one
    // process in a memory cgroup); under Wine, which enforces no memory
    // limit, the process's high-water marks read at its exit tell.
    let l = Limits {
        memory: Some(64 << 20),
        processes: Some(1),
        ..Default::default()
    };
    for i in 0..5 {
        let o = winsandbox::run(&with_limits(&["peak", "80", "0.1"], l.clone())).unwrap();
        assert_eq!(
            (o.verdict(), o.limit),
            (Verdict::Mle, Some("memory")),
            "run {i}: {o:?}"
        );
        assert!(
            o.peak_memory > 64 << 20 || o.exit_code != Some(0),
            "run {i}: {o:?}"
        );
    }
    // No false alarm: a small program under a small limit.
    let small = Limits {
        memory: Some(32 << 20),
        processes: Some(1),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["peak", "4", "0.1"], small)).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
}

#[test]
fn job_memory_counts_the_whole_tree() {
    let l = Limits {
        job_memory: Some(64 << 20),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["alloc", "256", "10"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Mle, Some("job_memory")),
        "{o:?}"
    );
}

#[test]
fn fork_bomb_gives_ple_and_nothing_survives() {
    if skip_where_wine_server_crashes() {
        return;
    }
    let l = Limits {
        processes: Some(4),
        wall_time: secs(20.0),
        ..Default::default()
    };
    let mut r = Running::start(&with_limits(&["fork-bomb"], l)).unwrap();
    let o = r.wait(None).unwrap().unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Ple, Some("processes")),
        "{o:?}"
    );
    assert!(o.wall_time < 15.0);
    // Every process the job lists is dead (Wine's list can keep a dead one for a while).
    let pids = r.process_ids().unwrap();
    let named: Vec<(u32, String)> = pids.iter().map(|&p| (p, image_name(p))).collect();
    assert!(all_gone(&pids), "survivors among {named:?}");
}

/// What a judge sets: one process. The program itself runs and is counted
/// once (under Wine, Wine's console host of it counts toward nothing); a
/// crash under the limit is RE at once.
#[test]
fn one_process_allowed_runs_a_real_program() {
    let one = Limits {
        processes: Some(1),
        total_processes: Some(1),
        wall_time: secs(20.0),
        ..Default::default()
    };
    for (args, verdict) in [
        (&["hello"][..], Verdict::Ok),
        (&["sleep", "0.3"][..], Verdict::Ok),
        (&["exit", "3"][..], Verdict::Re),
        (&["crash"][..], Verdict::Re),
    ] {
        let o = winsandbox::run(&with_limits(args, one.clone())).unwrap();
        assert_eq!(
            (o.verdict(), o.limit, o.processes),
            (verdict, None, 1),
            "{args:?}: {o:?}"
        );
        assert!(o.wall_time < 10.0, "{args:?}: {o:?}");
    }
}

#[test]
fn one_process_allowed_and_one_child_started_gives_ple() {
    if skip_where_wine_server_crashes() {
        return;
    }
    for (limits, name) in [
        (
            Limits {
                processes: Some(1),
                ..Default::default()
            },
            "processes",
        ),
        (
            Limits {
                total_processes: Some(1),
                ..Default::default()
            },
            "total_processes",
        ),
    ] {
        let l = Limits {
            wall_time: secs(20.0),
            ..limits
        };
        let o = winsandbox::run(&with_limits(&["tree", "1", "5"], l)).unwrap();
        assert_eq!((o.verdict(), o.limit), (Verdict::Ple, Some(name)), "{o:?}");
        assert!(o.wall_time < 4.0, "{o:?}");
    }
}

#[test]
fn total_processes_limit() {
    let l = Limits {
        total_processes: Some(3),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["tree", "5", "2"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Ple, Some("total_processes")),
        "{o:?}"
    );
}

#[test]
fn output_flood_gives_ole_with_exactly_the_limit_kept() {
    let l = Limits {
        output_limit: Some(1 << 20),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["flood", "100000000"], l)).unwrap();
    assert_eq!((o.verdict(), o.limit), (Verdict::Ole, Some("output_limit")));
    assert_eq!(o.stdout.len(), 1 << 20);
    assert!(o.truncated);
}

#[test]
fn output_to_a_file_and_discarded() {
    let dir = std::env::temp_dir().join(format!("wsb-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("out.txt");
    let mut c = probe_cmd(&["flood", "300000"]);
    c.stdout = Output::File(f.clone());
    c.stderr = Output::Discard;
    let o = winsandbox::run(&c).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
    assert!(o.stdout.is_empty());
    assert_eq!(std::fs::read(&f).unwrap().len(), 300_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The null device by its name ("NUL" on Windows): opened the way
/// `CreateFileW(CREATE_ALWAYS)` opens it, not created and then truncated.
#[test]
fn output_to_the_null_device_by_name() {
    let null = if cfg!(windows) { "NUL" } else { "/dev/null" };
    let mut c = probe_cmd(&["flood", "300000"]);
    c.stdout = Output::File(null.into());
    c.stderr = Output::File(null.into());
    c.stdin = Stdin::File(null.into());
    let o = winsandbox::run(&c).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

#[test]
fn grandchild_is_killed_and_not_waited_for() {
    let t = Instant::now();
    let o = winsandbox::run(&probe_cmd(&["grandchild", "60"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited for the grandchild (it sleeps 60 s)"
    );
    let pids = pids_in(&o.stdout);
    assert_eq!(pids.len(), 1);
    assert!(all_gone(&pids), "grandchild {pids:?} survived");
}

#[test]
fn a_descendant_that_left_the_process_group_is_killed_too() {
    // A sampled limit, so the monitor sees the descendant before the end.
    let l = Limits {
        memory: Some(1 << 30),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["escape-group", "60"], l)).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    let pids = pids_in(&o.stdout);
    assert_eq!(pids.len(), 1);
    assert!(all_gone(&pids), "{pids:?} survived");
}

#[test]
fn environment_and_working_directory() {
    let mut c = probe_cmd(&["env", "WSB_TEST_VAR"]);
    c.env
        .changes
        .push(("WSB_TEST_VAR".into(), Some("value 1".into())));
    assert_eq!(
        String::from_utf8_lossy(&winsandbox::run(&c).unwrap().stdout).trim(),
        "value 1"
    );
    let mut c = probe_cmd(&["env", "PATH"]);
    c.env.inherit = false;
    assert_eq!(
        String::from_utf8_lossy(&winsandbox::run(&c).unwrap().stdout).trim(),
        "<unset>"
    );
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let mut c = probe_cmd(&["cwd"]);
    c.cwd = Some(dir.clone());
    let got = String::from_utf8_lossy(&winsandbox::run(&c).unwrap().stdout)
        .trim()
        .to_string();
    let got = std::path::PathBuf::from(got).canonicalize().unwrap();
    assert_eq!(got, dir);
    let mut c = probe_cmd(&["cwd"]);
    c.cwd = Some("/no/such/dir/at/all".into());
    assert!(winsandbox::run(&c).is_err());
}

#[test]
fn bad_limits_are_rejected_before_anything_starts() {
    let e = winsandbox::run(&with_limits(
        &["exit", "0"],
        Limits {
            memory: Some(0),
            ..Default::default()
        },
    ))
    .unwrap_err();
    assert!(e.to_string().contains("memory"), "{e}");
}

#[test]
fn cpu_time_gives_tle() {
    if skip_under_wine("CPU-time accounting") {
        return;
    }
    let l = Limits {
        cpu_time: secs(0.5),
        wall_time: secs(20.0),
        ..Default::default()
    };
    let o = winsandbox::run(&with_limits(&["spin", "15"], l)).unwrap();
    assert_eq!(
        (o.verdict(), o.limit),
        (Verdict::Tle, Some("cpu_time")),
        "{o:?}"
    );
    assert!(o.cpu_time() >= 0.5 && o.wall_time < 10.0, "{o:?}");
}

#[test]
fn a_sandbox_process_is_killed_alone() {
    let sb = winsandbox::backend::Sandbox::new(&Limits::default()).unwrap();
    let a = sb.spawn(&probe_cmd(&["sleep", "60"])).unwrap();
    let b = sb.spawn(&probe_cmd(&["sleep", "60"])).unwrap();
    a.kill().unwrap();
    let killed: i64 = if winsandbox::BACKEND == "windows" {
        0xE057_5342 // KILL_EXIT_CODE
    } else {
        -9 // SIGKILL
    };
    assert_eq!(a.wait(Some(Duration::from_secs(10))).unwrap(), Some(killed));
    a.kill().unwrap(); // ended already: nothing happens
    assert_eq!(b.wait(Some(Duration::from_millis(200))).unwrap(), None);
    // (Wine's job list can keep a dead id for a while: liveness is asked.)
    assert!(sb.process_ids().unwrap().contains(&b.pid()));
    assert!(!alive(a.pid()) && alive(b.pid()));
    sb.terminate(5).unwrap();
    assert!(b.wait(Some(Duration::from_secs(10))).unwrap().is_some());
}

#[test]
fn a_sandbox_lists_what_each_process_uses() {
    let sb = winsandbox::backend::Sandbox::new(&Limits::default()).unwrap();
    let hog = sb.spawn(&probe_cmd(&["alloc", "64", "60"])).unwrap();
    let idle = sb.spawn(&probe_cmd(&["sleep", "60"])).unwrap();
    let mine = |ps: &[winsandbox::ProcessInfo], pid: u32| ps.iter().find(|p| p.pid == pid).cloned();
    // Poll until the hog holds its 64 MiB (process start-up is slow under Wine).
    let until = Instant::now() + Duration::from_secs(30);
    let (h, i) = loop {
        let ps = sb.processes().unwrap();
        if let (Some(h), Some(i)) = (mine(&ps, hog.pid()), mine(&ps, idle.pid())) {
            if h.private_memory >= 64 << 20 && h.working_set >= 64 << 20 {
                break (h, i);
            }
        }
        assert!(
            Instant::now() < until,
            "the hog never showed 64 MiB: {ps:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for p in [&h, &i] {
        assert!(p.name.starts_with("wsb-probe"), "{p:?}");
        assert!(p.peak_working_set >= p.working_set, "{p:?}");
        assert!(p.user_time >= 0.0 && p.kernel_time >= 0.0, "{p:?}");
    }
    // The hog's 64 MiB (checked above) are its own, not the sleeper's.
    assert!(h.private_memory > i.private_memory, "{h:?} vs {i:?}");
    // Wine answers GetProcessHandleCount for another process with 0.
    if wine().is_none() {
        assert!(
            h.handles >= 3 && i.handles >= 3,
            "stdio at least: {h:?} {i:?}"
        );
    }
    drop(sb); // the job and every process in it end here
    assert!(all_gone(&[hog.pid(), idle.pid()]));
}
