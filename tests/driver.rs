//! Runs carried by the one driver thread (`winsandbox::driver`): many at
//! once, each with its verdict, its output and its input, and no thread of
//! their own. One test in its own binary, so that the thread count is this
//! test's alone.

mod common;

use std::time::Duration;

use common::*;
use winsandbox::backend::Running;
use winsandbox::{driver, Limits, Stdin, Verdict};

/// This process's threads now (where `/proc` tells).
fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

#[test]
fn driven_runs_end_with_their_verdicts_output_and_input_on_one_thread() {
    let n = if wine().is_some() { 40 } else { 200 };
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // The monitor exists before the count: only the driver may be added.
    let first = Running::start(&probe_cmd(&["exit", "0"])).unwrap();
    let before = threads();
    let mut runs = vec![(driver::drive(first).unwrap(), Verdict::Ok, 0)];
    let mut killers = Vec::new();
    for i in 0..n {
        let (cmd, want, out_len) = match i % 5 {
            0 => (
                probe_cmd(&["cat"]).stdin(Stdin::Bytes(input.clone())),
                Verdict::Ok,
                input.len(),
            ),
            1 => (probe_cmd(&["exit", "3"]), Verdict::Re, 0),
            2 => (
                with_limits(
                    &["sleep", "30"],
                    Limits {
                        wall_time: Some(Duration::from_millis(1500)),
                        ..Default::default()
                    },
                ),
                Verdict::Wle,
                0,
            ),
            3 => (
                with_limits(
                    &["flood", "10000000"],
                    Limits {
                        output_limit: Some(5000),
                        ..Default::default()
                    },
                ),
                Verdict::Ole,
                5000,
            ),
            _ => (probe_cmd(&["sleep", "30"]), Verdict::Se, 0), // killed below
        };
        let r = Running::start(&cmd).unwrap();
        if i % 5 == 4 {
            killers.push(r.killer());
        }
        runs.push((driver::drive(r).unwrap(), want, out_len));
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = threads();
    for k in &killers {
        k.kill();
    }
    for (i, (done, want, out_len)) in runs.iter().enumerate() {
        let o = done
            .wait(Some(Duration::from_secs(60)))
            .unwrap_or_else(|| panic!("run {i} did not end"))
            .unwrap();
        assert_eq!(o.verdict(), *want, "run {i}: {o:?}");
        assert_eq!(o.stdout.len(), *out_len, "run {i}");
        if *out_len == input.len() {
            assert_eq!(o.stdout, input, "run {i}: stdin came back");
        }
        if *want == Verdict::Se {
            assert!(o.error.as_deref().unwrap_or("").contains("killed"), "{o:?}");
        }
    }
    if let (Some(b), Some(d)) = (before, during) {
        assert!(d <= b + 1, "{n} runs in flight: threads {b} -> {d}");
    }
}
