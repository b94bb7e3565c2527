//! Interactive runs: the solution and a testlib-style interactor (the
//! probe's `interactor`, "guess the number") joined by pipes, each in its
//! own job; every way a solution or the interactor misbehaves ends with the
//! documented verdict, soon, and nothing left running.

mod common;

use std::time::{Duration, Instant};

use common::*;
use winsandbox::decide::TESTLIB_CODES;
use winsandbox::interactive::{Interaction, Interactive};
use winsandbox::{Limits, Verdict};

fn judge(solution: &[&str], interactor: Option<&[&str]>) -> (Interaction, String) {
    judge_with(solution, interactor, 2)
}

fn judge_with(solution: &[&str], interactor: Option<&[&str]>, wall: u64) -> (Interaction, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsb-interactive-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, verdict) = (dir.join("secret.txt"), dir.join("verdict.txt"));
    std::fs::write(&input, "617\n").unwrap();
    let _ = std::fs::remove_file(&verdict);
    let sol = with_limits(
        solution,
        Limits {
            wall_time: Some(Duration::from_secs(wall)),
            ..Default::default()
        },
    );
    let files = [input.to_string_lossy(), verdict.to_string_lossy()];
    let int_args: Vec<&str> = match interactor {
        Some(a) => a.to_vec(),
        None => vec!["interactor", &files[0], &files[1]],
    };
    let int = with_limits(
        &int_args,
        Limits {
            wall_time: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    let t = Instant::now();
    let _ = dir; // kept: the files stay for a look after a failure
    let r = Interactive::start(&sol, &int, &TESTLIB_CODES).unwrap();
    let pids = r.pids();
    let x = r
        .wait(Some(Duration::from_secs(30)))
        .expect("ended")
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{solution:?}: {:?}",
        t.elapsed()
    );
    for p in pids {
        assert!(!alive(p), "{solution:?}: process {p} is left");
    }
    (x, std::fs::read_to_string(&verdict).unwrap_or_default())
}

#[test]
fn a_right_solution_is_accepted() {
    let (x, why) = judge(&["guess"], None);
    assert_eq!((x.verdict, why.as_str()), (Verdict::Ok, "ok"), "{x:?}");
    assert_eq!(x.solution.verdict(), Verdict::Ok);
    assert_eq!(x.interactor.exit_code, Some(0));
    // The pipes went between the programs, not through the supervisor.
    assert!(x.solution.stdout.is_empty() && x.interactor.stdout.is_empty());
}

#[test]
fn a_wrong_answer_is_wa() {
    let (x, why) = judge(&["guess-wrong"], None);
    assert_eq!(
        (x.verdict, why.as_str()),
        (Verdict::Wa, "wrong answer"),
        "{x:?}"
    );
}

#[test]
fn a_silent_solution_ends_by_its_wall_limit_and_the_interactor_with_it() {
    let (x, _) = judge(&["sleep", "30"], None);
    assert_eq!(x.verdict, Verdict::Wle, "{x:?}");
    assert_eq!(x.solution.limit, Some("wall_time"));
    assert_eq!(
        x.interactor.verdict(),
        Verdict::Se,
        "ended by the supervisor: {x:?}"
    );
    // Waiting for the interactor is not the solution's CPU.
    assert!(x.solution.cpu_time() < 0.5, "{x:?}");
}

#[test]
fn a_flooding_solution_is_pe() {
    let (x, why) = judge(&["flood", "4000000"], None);
    assert_eq!(
        (x.verdict, why.as_str()),
        (Verdict::Pe, "a line that is not a query or an answer"),
        "{x:?}"
    );
}

#[test]
fn a_solution_that_ends_early_or_crashes() {
    let (x, why) = judge(&["exit", "0"], None);
    assert_eq!(
        (x.verdict, why.as_str()),
        (Verdict::Pe, "unexpected end of input"),
        "{x:?}"
    );
    // A crash is judged as the interactor saw it: the end of its input.
    let (x, why) = judge(&["crash"], None);
    assert_eq!(
        (x.verdict, why.as_str()),
        (Verdict::Pe, "unexpected end of input"),
        "{x:?}"
    );
    assert_eq!(x.solution.verdict(), Verdict::Re, "{x:?}");
}

#[test]
fn a_crashing_interactor_is_a_judge_failure_and_ends_the_solution() {
    let (x, _) = judge(&["sleep", "30"], Some(&["crash"]));
    assert_eq!(x.verdict, Verdict::Jf, "{x:?}");
    assert_eq!(x.solution.verdict(), Verdict::Se, "ended at once: {x:?}");
    assert!(x.solution.wall_time < 1.9, "{x:?}");
}

#[test]
fn a_solution_that_outlives_the_interactor_is_ended() {
    // The interactor ends at once (exit 1: "wrong"), the solution does not
    // read and does not end: it is ended after the grace, the verdict WA.
    let (x, _) = judge_with(&["sleep", "30"], Some(&["exit", "1"]), 6);
    assert_eq!(x.verdict, Verdict::Wa, "{x:?}");
    assert_eq!(x.solution.verdict(), Verdict::Se, "{x:?}");
    assert!(x.solution.wall_time < 5.0, "ended after the grace: {x:?}");
    // And one the interactor accepted: WLE (it sat idle).
    let (x, _) = judge_with(&["sleep", "30"], Some(&["exit", "0"]), 6);
    assert_eq!(x.verdict, Verdict::Wle, "{x:?}");
    assert_eq!(x.solution.limit, None, "not its wall limit: {x:?}");
}
