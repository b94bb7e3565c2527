//! The driver: one thread per process that carries every run handed to it
//! to its end — its stdin, its output, its exit, its drain — so that no run
//! needs a thread of its own while it waits. The backend's [`Poller`] tells
//! the thread which runs have something to do (Linux: an epoll set of the
//! pipes and pidfds; Windows: a completion port for the pipes, which the
//! monitor also tells of process exits); the thread then moves those runs
//! along with the same steps as a blocking wait ([`RunSteps`]). When a run
//! is over its outcome lands in its [`Done`], which wakes every waiter and
//! calls what was registered with [`Done::on_done`].

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{Poller, Running};
use crate::engine::{self, RunSteps};
use crate::error::{Error, Result};
use crate::outcome::Outcome;

/// What is called once a run is over (on the driver thread).
pub type Notify = Box<dyn FnOnce() + Send>;

/// Where a driven run's outcome arrives.
#[derive(Default)]
pub struct Done {
    state: Mutex<DoneState>,
    cond: Condvar,
}

#[derive(Default)]
struct DoneState {
    result: Option<Result<Outcome>>,
    notify: Vec<Notify>,
}

impl Done {
    /// The outcome once the run is over within `timeout` (`None`: however
    /// long it takes); `None` if it is still running then.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Result<Outcome>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = engine::lock(&self.state);
        loop {
            if let Some(r) = &st.result {
                return Some(r.clone());
            }
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    pub fn is_done(&self) -> bool {
        engine::lock(&self.state).result.is_some()
    }

    /// Calls `f` once the run is over: now, on this thread, if it is;
    /// otherwise on the driver thread when it ends.
    pub fn on_done(&self, f: Notify) {
        let mut st = engine::lock(&self.state);
        if st.result.is_some() {
            drop(st);
            f();
        } else {
            st.notify.push(f);
        }
    }

    fn set(&self, r: Result<Outcome>) {
        let notify = {
            let mut st = engine::lock(&self.state);
            st.result = Some(r);
            std::mem::take(&mut st.notify)
        };
        self.cond.notify_all();
        for f in notify {
            f();
        }
    }
}

struct Driver {
    poller: Poller,
    /// Runs handed over and not yet taken up by the thread.
    incoming: Mutex<Vec<(Running, Arc<Done>)>>,
    /// What to call at a time ([`at`]), not yet taken up by the thread.
    timers: Mutex<Vec<(Instant, Notify)>>,
}

/// How often, at most, the thread looks at a run that asked to be looked at
/// again (`RunSteps::check`): such looks are put on a grid of this step, so
/// that many runs share one wake-up.
const CHECK_GRID: Duration = Duration::from_millis(50);

/// The driver of this process: a forked child (which has none of its
/// parent's threads) starts its own.
fn driver() -> Result<Arc<Driver>> {
    static DRIVER: Mutex<Option<(u32, Arc<Driver>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut cur = engine::lock(&DRIVER);
    if let Some((owner, d)) = &*cur {
        if *owner == pid {
            return Ok(d.clone());
        }
    }
    let d = Arc::new(Driver {
        poller: Poller::new()?,
        incoming: Mutex::new(Vec::new()),
        timers: Mutex::new(Vec::new()),
    });
    let t = d.clone();
    std::thread::Builder::new()
        .name("winsandbox-driver".into())
        .spawn(move || run_thread(&t))
        .map_err(|e| Error::sandbox(format!("starting the driver thread: {e}")))?;
    *cur = Some((pid, d.clone()));
    Ok(d)
}

/// Hands `run` to the driver thread, which carries it to its end; the
/// outcome arrives in the returned [`Done`]. Dropping the `Done` does not
/// stop the run: kill it (its `Killer`) for that.
pub fn drive(run: Running) -> Result<Arc<Done>> {
    let d = driver()?;
    let done = Arc::new(Done::default());
    engine::lock(&d.incoming).push((run, done.clone()));
    d.poller.wake();
    Ok(done)
}

/// Calls `f` on the driver thread at `when` (or just after).
pub fn at(when: Instant, f: Notify) -> Result<()> {
    let d = driver()?;
    engine::lock(&d.timers).push((when, f));
    d.poller.wake();
    Ok(())
}

struct Entry {
    run: Running,
    done: Arc<Done>,
    /// When to look at the run again though nothing fired.
    check_at: Option<Instant>,
}

fn run_thread(d: &Driver) {
    let epoch = Instant::now();
    let mut runs: HashMap<usize, Entry> = HashMap::new();
    let mut next_key = 1usize; // 0 wakes the thread
    let mut fired = Vec::new();
    let mut timers: Vec<(Instant, Notify)> = Vec::new();
    loop {
        let until = runs
            .values()
            .filter_map(|e| e.check_at)
            .chain(timers.iter().map(|(t, _)| *t))
            .min();
        fired.clear();
        if d.poller.wait(until, &mut fired).is_err() {
            std::thread::sleep(Duration::from_millis(10)); // and look at every run
            fired.extend(runs.keys().copied());
        }
        timers.append(&mut engine::lock(&d.timers));
        let incoming = std::mem::take(&mut *engine::lock(&d.incoming));
        for (mut run, done) in incoming {
            let key = next_key;
            next_key += 1;
            match run.attach(&d.poller, key) {
                Ok(()) => {
                    runs.insert(
                        key,
                        Entry {
                            run,
                            done,
                            check_at: None,
                        },
                    );
                    fired.push(key);
                }
                Err(e) => {
                    drop(run); // kills what it started
                    done.set(Err(e));
                }
            }
        }
        let now = Instant::now();
        if fired.contains(&usize::MAX) {
            fired.extend(runs.keys().copied()); // the poller cannot tell which
        }
        fired.extend(
            runs.iter()
                .filter(|(_, e)| e.check_at.is_some_and(|t| t <= now))
                .map(|(k, _)| *k),
        );
        fired.sort_unstable();
        fired.dedup();
        for key in &fired {
            let Some(e) = runs.get_mut(key) else {
                continue; // a late event of a run that is over
            };
            if let Some(result) = step(e, epoch) {
                let e = runs.remove(key).expect("present above");
                drop(e.run); // its handles go before anyone is told
                e.done.set(result);
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = timers.into_iter().partition(|(t, _)| *t <= now);
        timers = later;
        for (_, f) in due {
            f();
        }
    }
}

/// Moves one run along without blocking; its result once it is over.
fn step(e: &mut Entry, epoch: Instant) -> Option<Result<Outcome>> {
    let r = &mut e.run;
    match engine::advance(r) {
        Err(err) => return Some(Err(err)),
        Ok(Some(o)) => return Some(Ok(o)),
        Ok(None) => {}
    }
    let now = Instant::now();
    match r.check(now) {
        Err(err) => Some(Err(err)),
        Ok((Some(o), _)) => Some(Ok(r.finish().keep(o))),
        Ok((None, at)) => {
            let at = match (at, r.finish().wait_until(None)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.check_at = at.map(|t| on_grid(epoch, t));
            None
        }
    }
}

/// `t` rounded up to the grid of [`CHECK_GRID`] from `epoch`: runs due near
/// one another share one wake-up.
fn on_grid(epoch: Instant, t: Instant) -> Instant {
    let g = CHECK_GRID.as_nanos();
    let since = t.saturating_duration_since(epoch).as_nanos();
    let up = since.div_ceil(g) * g;
    epoch + Duration::from_nanos(u64::try_from(up).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_land_on_the_grid_never_early() {
        let e = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(on_grid(e, e), e);
        assert_eq!(on_grid(e, e + ms(1)), e + CHECK_GRID);
        assert_eq!(on_grid(e, e + CHECK_GRID), e + CHECK_GRID);
        assert_eq!(on_grid(e, e + CHECK_GRID + ms(1)), e + CHECK_GRID * 2);
    }

    #[test]
    fn done_wakes_waiters_and_calls_what_was_registered_once() {
        let d = Arc::new(Done::default());
        assert!(d.wait(Some(Duration::from_millis(1))).is_none());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        d.on_done(Box::new(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || d.wait(None).map(|r| r.map(|o| o.pid)))
        };
        let o = Outcome {
            pid: 42,
            ..Default::default()
        };
        d.set(Ok(o));
        assert_eq!(waiter.join().unwrap().unwrap().unwrap(), 42);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Registered after the end: called at once.
        let c = calls.clone();
        d.on_done(Box::new(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(d.is_done());
    }
}
