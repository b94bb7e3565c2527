//! Interactive runs: a solution and an interactor, each in a job of its own
//! with its own limits, the solution's stdout piped to the interactor's
//! stdin and the interactor's stdout to the solution's stdin. Those pipes
//! join the two programs directly (the supervisor holds no end of them once
//! both have started); it reads only their stderr. Both runs are carried by
//! the driver thread, and what one's end means for the other is decided as
//! it ends, so nothing waits on a thread of its own and nothing hangs:
//! - the solution crossed a limit, or could not be judged (`SE`): the
//!   interactor is ended at once;
//! - the interactor ended without a verdict of its own (a limit, a crash, an
//!   exit code the mapping does not know): the solution is ended at once;
//! - either ended by itself: the other sees its pipes end, and is ended if
//!   it is still there [`PARTNER_GRACE`] later.
//!
//! The verdict is `decide::judge_interactive`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Killer, Running};
use crate::command::{self, Command, Output, Stdin};
use crate::decide::{interactor_verdict, judge_interactive, PARTNER_GRACE};
use crate::driver::{self, Done, Notify};
use crate::error::Result;
use crate::outcome::{Outcome, Verdict};

/// What an interactive run gives: both outcomes and the verdict.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub solution: Outcome,
    pub interactor: Outcome,
    pub verdict: Verdict,
}

/// An interactive run in progress.
pub struct Interactive {
    solution: Arc<Done>,
    interactor: Arc<Done>,
    killers: [Killer; 2],
    pids: [u32; 2],
    /// The solution was ended because it outlived the interactor.
    outlived: Arc<AtomicBool>,
    codes: Vec<(i64, Verdict)>,
}

/// The verdict of a finished run, or SE where it failed.
fn verdict_of(d: &Done) -> (Verdict, Option<i64>) {
    match d.wait(Some(Duration::ZERO)) {
        Some(Ok(o)) => (o.verdict(), o.exit_code),
        _ => (Verdict::Se, None),
    }
}

impl Interactive {
    /// Starts both programs; `codes` maps the interactor's exit codes to
    /// verdicts (`decide::TESTLIB_CODES` by default). The commands' own
    /// stdin and stdout are replaced by the pipes.
    pub fn start(
        solution: &Command,
        interactor: &Command,
        codes: &[(i64, Verdict)],
    ) -> Result<Interactive> {
        let (sol_in, int_out) = command::pipe()?;
        let (int_in, sol_out) = command::pipe()?;
        let mut sc = solution.clone();
        (sc.stdin, sc.stdout) = (Stdin::Pipe(sol_in), Output::Pipe(sol_out));
        let mut ic = interactor.clone();
        (ic.stdin, ic.stdout) = (Stdin::Pipe(int_in), Output::Pipe(int_out));
        let s = Running::start(&sc)?;
        let (sk, spid) = (s.killer(), s.pid());
        let sd = driver::drive(s)?;
        let i = match Running::start(&ic) {
            Ok(i) => i,
            Err(e) => {
                sk.kill();
                let _ = sd.wait(None);
                return Err(e);
            }
        };
        let (ik, ipid) = (i.killer(), i.pid());
        let id = match driver::drive(i) {
            Ok(d) => d,
            Err(e) => {
                sk.kill();
                return Err(e);
            }
        };
        let outlived = Arc::new(AtomicBool::new(false));
        let codes = codes.to_vec();
        // The solution ended: a limit or SE ends the interactor now; else it
        // has the grace to give its verdict.
        let (sd2, ik2) = (sd.clone(), ik.clone());
        sd.on_done(Box::new(move || {
            let (v, _) = verdict_of(&sd2);
            if matches!(v, Verdict::Ok | Verdict::Re) {
                later(ik2);
            } else {
                ik2.kill();
            }
        }));
        // The interactor ended: without a verdict of its own it ends the
        // solution now; with one, the solution has the grace to end.
        let (id2, sd3, sk2, out2, codes2) = (
            id.clone(),
            sd.clone(),
            sk.clone(),
            outlived.clone(),
            codes.clone(),
        );
        id.on_done(Box::new(move || {
            let (v, code) = verdict_of(&id2);
            if interactor_verdict(v, code, &codes2).is_none() {
                sk2.kill();
                return;
            }
            let sk3 = sk2.clone();
            let f: Notify = Box::new(move || {
                if !sd3.is_done() {
                    out2.store(true, Ordering::SeqCst);
                    sk3.kill();
                }
            });
            if driver::at(Instant::now() + PARTNER_GRACE, f).is_err() {
                sk2.kill(); // no timer: no wait either
            }
        }));
        Ok(Interactive {
            solution: sd,
            interactor: id,
            killers: [sk, ik],
            pids: [spid, ipid],
            outlived,
            codes,
        })
    }

    /// The ids of the solution's and the interactor's main processes.
    pub fn pids(&self) -> [u32; 2] {
        self.pids
    }

    /// Whether both have ended.
    pub fn is_done(&self) -> bool {
        self.solution.is_done() && self.interactor.is_done()
    }

    /// Ends both process trees now.
    pub fn kill(&self) {
        for k in &self.killers {
            k.kill();
        }
    }

    /// Calls `f` once both have ended (at once if they have).
    pub fn on_done(&self, f: Notify) {
        let i = self.interactor.clone();
        self.solution.on_done(Box::new(move || i.on_done(f)));
    }

    /// Both outcomes and the verdict once both ended within `timeout`
    /// (`None`: however long it takes).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Result<Interaction>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let s = self.solution.wait(timeout)?;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let i = self.interactor.wait(left)?;
        Some(s.and_then(|s| {
            let i = i?;
            let outlived = self.outlived.load(Ordering::SeqCst) && s.verdict() == Verdict::Se;
            let int_v = interactor_verdict(i.verdict(), i.exit_code, &self.codes);
            let verdict = judge_interactive(s.verdict(), int_v, outlived);
            Ok(Interaction {
                solution: s,
                interactor: i,
                verdict,
            })
        }))
    }
}

/// Ends a run [`PARTNER_GRACE`] from now (what it does meanwhile is its own).
fn later(k: Killer) {
    let k2 = k.clone();
    if driver::at(Instant::now() + PARTNER_GRACE, Box::new(move || k2.kill())).is_err() {
        k.kill();
    }
}

/// Runs both to their end (see [`Interactive::start`]).
pub fn run(
    solution: &Command,
    interactor: &Command,
    codes: &[(i64, Verdict)],
) -> Result<Interaction> {
    let r = Interactive::start(solution, interactor, codes)?;
    r.wait(None).expect("no timeout")
}

impl Drop for Interactive {
    fn drop(&mut self) {
        if !self.is_done() {
            self.kill();
        }
    }
}
