//! 200 jobs at once on the one monitor thread, each with its right verdict.
//! Its own binary: under Wine every Win32 call goes through one wineserver,
//! and this load would distort the timing of the other scenarios.

mod common;

use std::time::Duration;

use common::*;
use winsandbox::{Limits, Verdict};

#[test]
fn two_hundred_jobs_at_once_get_their_right_verdicts() {
    let probe = probe();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let probe = probe.clone();
            std::thread::spawn(move || {
                let (args, limits, want): (Vec<String>, Limits, Verdict) = match i % 4 {
                    0 => (
                        vec!["exit".into(), "0".into()],
                        Limits::default(),
                        Verdict::Ok,
                    ),
                    1 => (
                        vec!["exit".into(), "3".into()],
                        Limits::default(),
                        Verdict::Re,
                    ),
                    2 => (
                        vec!["sleep".into(), "30".into()],
                        Limits {
                            wall_time: Some(Duration::from_millis(1500)),
                            ..Default::default()
                        },
                        Verdict::Wle,
                    ),
                    _ => (
                        vec!["flood".into(), "1000000".into()],
                        Limits {
                            output_limit: Some(1000),
                            ..Default::default()
                        },
                        Verdict::Ole,
                    ),
                };
                let o = winsandbox::run(&winsandbox::Command::new(probe).args(args).limits(limits))
                    .unwrap();
                (i, want, o.verdict())
            })
        })
        .collect();
    for h in handles {
        let (i, want, got) = h.join().unwrap();
        assert_eq!(got, want, "job {i}");
    }
}
