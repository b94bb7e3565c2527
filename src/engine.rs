//! The run lifecycle's platform-neutral parts, written once for both
//! backends: the output sinks and the output limit, the job a run's owner
//! and the monitor share (`Job`, over a small `Backend`: its clock, the
//! first limit crossed, its sampling schedule, its memory peaks), the
//! monitor's registry of live jobs and its loop (`look`, `serve`). The
//! backends keep only what touches the OS.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::command::Output;
use crate::decide::{self, Backoff, Hit, DRAIN_LIMIT};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::outcome::Outcome;

enum Sink {
    Memory(Vec<u8>),
    File(std::fs::File, std::path::PathBuf),
    Discard,
}

/// Where a run's stdout and stderr go, and how much more output the output
/// limit lets through (both streams together).
pub struct Outputs {
    sinks: [Sink; 2],
    remaining: Option<u64>,
    truncated: bool,
}

impl Outputs {
    /// Sinks for `stdout` and `stderr`; `create` opens an output file (each
    /// backend opens files its own way).
    pub fn open(
        stdout: &Output,
        stderr: &Output,
        limit: Option<u64>,
        create: impl Fn(&Path) -> Result<std::fs::File>,
    ) -> Result<Outputs> {
        let sink = |o: &Output| -> Result<Sink> {
            Ok(match o {
                Output::Capture => Sink::Memory(Vec::new()),
                Output::Discard | Output::Pipe(_) => Sink::Discard,
                Output::File(p) => Sink::File(create(p)?, p.clone()),
            })
        };
        Ok(Outputs {
            sinks: [sink(stdout)?, sink(stderr)?],
            remaining: limit,
            truncated: false,
        })
    }

    /// Delivers a chunk read from stream `i` (0: stdout, 1: stderr), as much
    /// of it as the limit allows. True when this chunk is the first that did
    /// not fit (the caller records the output limit crossed).
    pub fn deliver(&mut self, i: usize, chunk: &[u8]) -> Result<bool> {
        let keep = match &mut self.remaining {
            Some(r) => {
                let k = (*r).min(chunk.len() as u64) as usize;
                *r -= k as u64;
                k
            }
            None => chunk.len(),
        };
        match &mut self.sinks[i] {
            Sink::Memory(v) => v.extend_from_slice(&chunk[..keep]),
            Sink::File(f, path) => f
                .write_all(&chunk[..keep])
                .map_err(|e| Error::from_io(format!("writing the output file {path:?}"), e))?,
            Sink::Discard => {}
        }
        let first = keep < chunk.len() && !self.truncated;
        self.truncated |= keep < chunk.len();
        Ok(first)
    }

    /// Moves what was captured into `o`, and whether output was cut.
    pub fn finish_into(&mut self, o: &mut Outcome) {
        o.truncated = self.truncated;
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Sink::Memory(v) = s {
                let v = std::mem::take(v);
                if i == 0 {
                    o.stdout = v;
                } else {
                    o.stderr = v;
                }
            }
        }
    }
}

/// The end of a run, the same on every backend: once the main process has
/// exited, output is read until both streams end or [`DRAIN_LIMIT`] passes
/// (a process passed a pipe out of the job); the outcome is made once, then
/// kept for every later `wait`.
#[derive(Debug, Default)]
pub struct Finish {
    drain_until: Option<Instant>,
    outcome: Option<Outcome>,
}

impl Finish {
    /// The main process was seen exited at `now`.
    pub fn exited(&mut self, now: Instant) {
        self.drain_until.get_or_insert(now + DRAIN_LIMIT);
    }

    /// Whether the run is over at `now`: exited, and its output read to the
    /// end (`drained`) or the drain limit passed.
    pub fn over(&self, drained: bool, now: Instant) -> bool {
        self.drain_until.is_some_and(|d| drained || now >= d)
    }

    /// How long a wait may last: to `deadline`, and no later than the drain limit.
    pub fn wait_until(&self, deadline: Option<Instant>) -> Option<Instant> {
        match (deadline, self.drain_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The outcome, once made.
    pub fn kept(&self) -> Option<Outcome> {
        self.outcome.clone()
    }

    /// Keeps `o` as the outcome and returns it.
    pub fn keep(&mut self, o: Outcome) -> Outcome {
        self.outcome.insert(o).clone()
    }
}

/// What a backend's run does for the one wait loop, [`wait`].
pub trait RunSteps {
    /// Moves stdin and output along and notes the main process's exit
    /// (calling [`Finish::exited`]), without blocking.
    fn pump(&mut self) -> Result<()>;
    /// Whether stdout and stderr have both reached their end.
    fn drained(&self) -> bool;
    fn finish(&mut self) -> &mut Finish;
    /// The outcome of a run that is over.
    fn outcome(&mut self) -> Outcome;
    /// Blocks until something happens (output, input room, the exit) or
    /// `until`. `Some`: the run ended by a way of the backend's own (a
    /// process that would not die by its hard stop).
    fn wait_event(&mut self, until: Option<Instant>) -> Result<Option<Outcome>>;
    /// Without blocking, what a wait looks at besides the run's own events:
    /// an end of the backend's own (as in `wait_event`), and the latest time
    /// to look at the run again though none of its events came (`None`: only
    /// when one comes). The driver thread calls this after each `pump`.
    fn check(&mut self, now: Instant) -> Result<(Option<Outcome>, Option<Instant>)>;
}

/// Waits up to `timeout` (`None`: until the run is over); `Ok(None)`: it is
/// still running. The same loop on every backend.
pub fn wait(r: &mut impl RunSteps, timeout: Option<Duration>) -> Result<Option<Outcome>> {
    if let Some(o) = r.finish().kept() {
        return Ok(Some(o));
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(o) = advance(r)? {
            return Ok(Some(o));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        let until = r.finish().wait_until(deadline);
        if let Some(o) = r.wait_event(until)? {
            return Ok(Some(r.finish().keep(o)));
        }
    }
}

/// One step of a run, without blocking, the same for a blocking wait and
/// the driver thread: its pipes and exit moved along, and its outcome, made
/// and kept, once it is over.
pub fn advance(r: &mut impl RunSteps) -> Result<Option<Outcome>> {
    r.pump()?;
    let drained = r.drained();
    if r.finish().over(drained, Instant::now()) {
        let o = r.outcome();
        return Ok(Some(r.finish().keep(o)));
    }
    Ok(None)
}

/// What a job's owner and the monitor both read and write, on any backend.
#[derive(Debug, Default)]
pub struct RunState {
    /// When the wall clock started (the main process was created).
    pub started: Option<Instant>,
    /// The first limit crossed; it decides the verdict.
    pub hit: Option<Hit>,
    /// The highest memory of any one process, and of the job, seen so far.
    pub peak_process_memory: u64,
    pub peak_job_memory: u64,
    /// The main process has exited: no limit fires after that (what is left
    /// is being ended and drained, not judged).
    pub ended: bool,
    /// When the job's owner asked for the whole tree to be killed (the
    /// run's `kill`, or its `Killer` from another thread).
    pub killed_at: Option<Instant>,
    next_sample: Option<Instant>,
    backoff: Backoff,
}

impl RunState {
    /// Whether the owner's kill came before the main process was seen
    /// exited at `exit_seen` (a kill after the exit changes no verdict).
    pub fn killed_before(&self, exit_seen: Option<Instant>) -> bool {
        self.killed_at
            .is_some_and(|k| exit_seen.is_none_or(|e| k <= e))
    }

    /// Records `hit` unless one was recorded before; true if it is the first
    /// (the caller ends the job).
    pub fn record(&mut self, hit: Hit) -> bool {
        let first = self.hit.is_none();
        if first {
            self.hit = Some(hit);
        }
        first
    }

    /// Whether a job sampled at all is due for a sample at `now`.
    pub fn due(&self, sampled: bool, now: Instant) -> bool {
        sampled
            && self.started.is_some()
            && self.hit.is_none()
            && !self.ended
            && self.next_sample.is_none_or(|t| now >= t)
    }

    /// The wall limit crossed at `now`, while no limit has been recorded yet
    /// (a job already ended needs no second look).
    pub fn wall_crossed(&self, limits: &Limits, now: Instant) -> Option<Hit> {
        (self.hit.is_none() && !self.ended)
            .then(|| decide::wall_hit(limits, self.started, now))
            .flatten()
    }

    /// When the monitor must look at this job next, while it runs and no
    /// limit has been recorded: just past its wall limit, and at its next
    /// sample if it is sampled. None once a limit was recorded: the job was
    /// ended, and a deadline left in the past would wake the monitor at once,
    /// again and again, until the job is unregistered.
    pub fn next_wake(&self, limits: &Limits, sampled: bool, now: Instant) -> Option<Instant> {
        if self.started.is_none() || self.hit.is_some() || self.ended {
            return None;
        }
        let sample = sampled.then(|| self.next_sample.unwrap_or(now));
        let wall = decide::wall_deadline(limits, self.started);
        match (sample, wall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records one sample's activity figure and schedules the next sample
    /// (the idle back-off, on the grid of a monitor started at `epoch`).
    /// True if the job showed activity.
    pub fn schedule(
        &mut self,
        limits: &Limits,
        activity: u64,
        epoch: Instant,
        now: Instant,
    ) -> bool {
        let active = self.backoff.note(activity);
        let interval = self.backoff.interval(limits);
        self.next_sample = Some(decide::next_due_at(epoch, now, interval));
        active
    }

    /// Wall time so far (zero before the clock started).
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// A job whose owner can end it from any thread (each backend's shared job
/// state).
pub trait OwnerKill: Send + Sync {
    /// Records the owner's kill (`RunState::killed_at`, the first only) and
    /// ends the whole tree.
    fn kill_by_owner(&self);
}

/// Kills a run's whole tree from any thread, without its `Running` (which
/// the driver or a waiting thread may hold); nothing once the run is gone.
#[derive(Clone)]
pub struct Killer(std::sync::Weak<dyn OwnerKill>);

impl Killer {
    pub fn new<T: OwnerKill + 'static>(job: &Arc<T>) -> Killer {
        let weak: std::sync::Weak<dyn OwnerKill> = Arc::downgrade(job) as _;
        Killer(weak)
    }

    pub fn kill(&self) {
        if let Some(job) = self.0.upgrade() {
            job.kill_by_owner();
        }
    }
}

/// The monitor's live jobs, each under a key no other job had (from 1: the
/// Windows monitor's port uses 0 to wake itself).
pub struct Registry<T> {
    jobs: Mutex<BTreeMap<usize, Arc<T>>>,
    next_key: AtomicUsize,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            jobs: Mutex::new(BTreeMap::new()),
            next_key: AtomicUsize::new(1),
        }
    }
}

impl<T> Registry<T> {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        lock(&self.jobs)
    }

    /// A fresh key, not yet registered (the job is built with it).
    pub fn next_key(&self) -> usize {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn insert(&self, key: usize, job: Arc<T>) {
        self.lock().insert(key, job);
    }

    pub fn remove(&self, key: usize) {
        self.lock().remove(&key);
    }

    pub fn get(&self, key: usize) -> Option<Arc<T>> {
        self.lock().get(&key).cloned()
    }

    /// Every live job now (the lock is not held while the caller works).
    pub fn all(&self) -> Vec<Arc<T>> {
        self.lock().values().cloned().collect()
    }
}

/// A backend's part of a live job: the OS objects behind it, what only
/// that backend keeps of its state, and how it ends the whole tree.
pub trait Backend: Send + Sync + Sized + 'static {
    /// Kept under the job's one lock, beside its `RunState`.
    type State: Default + Send;
    /// Ends every process of `job` now.
    fn end(job: &Job<Self>);
}

/// A job's state under its lock: the engine's `RunState`, and the
/// backend's part (reached through `Deref`).
#[derive(Default)]
pub struct JobState<S> {
    pub run: RunState,
    pub os: S,
}

impl<S> std::ops::Deref for JobState<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.os
    }
}

impl<S> std::ops::DerefMut for JobState<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.os
    }
}

/// What a job's owner and the monitor share, on every backend.
pub struct Job<B: Backend> {
    /// Its key in the monitor's registry.
    pub key: usize,
    pub limits: Limits,
    /// Whether its limits need samples (`decide::needs_sampling`).
    pub sampled: bool,
    pub os: B,
    state: Mutex<JobState<B::State>>,
}

impl<B: Backend> Job<B> {
    pub fn new(key: usize, limits: &Limits, os: B) -> Job<B> {
        Job {
            key,
            limits: limits.clone(),
            sampled: decide::needs_sampling(limits),
            os,
            state: Mutex::new(JobState::default()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, JobState<B::State>> {
        lock(&self.state)
    }

    /// Whether the monitor has anything to do for this job once its clock
    /// runs: a wall limit to keep or samples to take. A job without either
    /// need not wake it (the kernel or its owner does the rest).
    pub fn watched(&self) -> bool {
        self.sampled || self.limits.wall_time.is_some()
    }

    /// Ends every process of the job now (the backend's one kill).
    pub fn end(&self) {
        B::end(self);
    }

    /// Records `hit` unless one was recorded before, then ends the job.
    pub fn fire(&self, hit: Hit) {
        let first = self.lock().run.record(hit);
        if first {
            self.end();
        }
    }

    /// The first limit crossed, if any.
    pub fn hit(&self) -> Option<Hit> {
        self.lock().run.hit
    }
}

impl<B: Backend> OwnerKill for Job<B> {
    fn kill_by_owner(&self) {
        self.lock().run.killed_at.get_or_insert_with(Instant::now);
        self.end();
    }
}

/// One look of the monitor at `jobs`: ends each job past its wall limit,
/// hands those due a sample to `sample` (all at once: a backend may read
/// them in one scan), and returns when it must look next (None: not until
/// woken).
pub fn look<B: Backend>(
    jobs: &[Arc<Job<B>>],
    sample: impl FnOnce(&[&Arc<Job<B>>], Instant),
) -> Option<Instant> {
    let now = Instant::now();
    let mut due = Vec::new();
    for j in jobs {
        let (wall, is_due) = {
            let st = j.lock();
            (
                st.run.wall_crossed(&j.limits, now),
                st.run.due(j.sampled, now),
            )
        };
        if let Some(h) = wall {
            j.fire(h);
        } else if is_due {
            due.push(j);
        }
    }
    if !due.is_empty() {
        sample(&due, now);
    }
    let now = Instant::now();
    jobs.iter()
        .filter_map(|j| j.lock().run.next_wake(&j.limits, j.sampled, now))
        .min()
}

/// The monitor thread's loop, on every backend: a look at every live job,
/// then `sleep` until the instant it returned or until woken (a backend
/// handles what woke it there: a job's messages, a new job). No job is held
/// while asleep: the last owner of an ended job frees it (and what the
/// backend made for it) at once, not at the monitor's next wake.
pub fn serve<B: Backend>(
    jobs: &Registry<Job<B>>,
    mut sample: impl FnMut(&[&Arc<Job<B>>], Instant),
    mut sleep: impl FnMut(Option<Instant>),
) -> ! {
    loop {
        let until = look(&jobs.all(), &mut sample);
        sleep(until);
    }
}

/// The shared state behind `m`, even if a thread panicked holding it.
pub fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Verdict;

    #[test]
    fn output_limit_counts_both_streams_and_fires_once() {
        let mut o = Outputs::open(
            &Output::Capture,
            &Output::Capture,
            Some(5),
            |_| unreachable!(),
        )
        .unwrap();
        assert!(!o.deliver(0, b"abc").unwrap());
        assert!(o.deliver(1, b"defg").unwrap());
        assert!(!o.deliver(0, b"h").unwrap());
        let mut out = Outcome::default();
        o.finish_into(&mut out);
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"abc"[..], &b"de"[..])
        );
        assert!(out.truncated);
        let mut free =
            Outputs::open(&Output::Capture, &Output::Discard, None, |_| unreachable!()).unwrap();
        assert!(!free.deliver(1, &[0; 1 << 16]).unwrap());
        assert!(!free.deliver(0, b"x").unwrap());
        let mut out = Outcome::default();
        free.finish_into(&mut out);
        assert_eq!(
            (out.stdout.len(), out.stderr.len(), out.truncated),
            (1, 0, false)
        );
    }

    #[test]
    fn a_run_is_over_once_drained_or_at_the_drain_limit_and_keeps_its_outcome() {
        let t0 = Instant::now();
        let mut f = Finish::default();
        assert!(!f.over(true, t0));
        assert_eq!(f.wait_until(None), None);
        f.exited(t0);
        f.exited(t0 + DRAIN_LIMIT); // the first exit counts
        assert!(f.over(true, t0) && !f.over(false, t0));
        assert!(f.over(false, t0 + DRAIN_LIMIT));
        let soon = t0 + Duration::from_millis(5);
        assert_eq!(f.wait_until(Some(soon)), Some(soon));
        assert_eq!(f.wait_until(None), Some(t0 + DRAIN_LIMIT));
        assert!(f.kept().is_none());
        let o = Outcome {
            pid: 7,
            ..Default::default()
        };
        assert_eq!(f.keep(o.clone()).pid, 7);
        assert_eq!(f.kept().map(|k| k.pid), Some(7));
    }

    #[test]
    fn the_first_hit_stays() {
        let mut st = RunState::default();
        let wle = Hit::monitor(Verdict::Wle, "wall_time");
        assert!(st.record(wle));
        assert!(!st.record(Hit::kernel(Verdict::Tle, "cpu_time")));
        assert_eq!(st.hit, Some(wle));
    }

    #[test]
    fn a_job_is_due_once_started_and_until_a_hit() {
        let l = Limits {
            memory: Some(1 << 20),
            wall_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let now = Instant::now();
        let mut st = RunState::default();
        assert!(!st.due(true, now));
        assert_eq!(st.next_wake(&l, true, now), None);
        st.started = Some(now);
        assert!(st.due(true, now) && !st.due(false, now));
        assert_eq!(st.next_wake(&l, true, now), Some(now));
        assert!(st.schedule(&l, 7, now, now));
        assert!(!st.due(true, now));
        let next = st.next_wake(&l, true, now).unwrap();
        assert!(
            next > now && next <= now + decide::SAMPLE_INTERVAL * 2,
            "{next:?}"
        );
        assert_eq!(
            st.wall_crossed(&l, now + Duration::from_millis(1001)),
            Some(Hit::monitor(Verdict::Wle, "wall_time"))
        );
        st.record(Hit::monitor(Verdict::Mle, "memory"));
        assert!(!st.due(true, now + Duration::from_secs(5)));
        // An ended job neither wakes the monitor nor crosses its wall limit again.
        assert_eq!(st.next_wake(&l, true, now), None);
        assert_eq!(st.wall_crossed(&l, now + Duration::from_secs(5)), None);
    }

    /// A backend with no OS behind it: it counts the ends.
    #[derive(Default)]
    struct Fake {
        ended: AtomicUsize,
    }

    impl Backend for Fake {
        type State = ();
        fn end(job: &Job<Fake>) {
            job.os.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_look_ends_jobs_past_their_wall_limit_once_and_samples_the_due_ones() {
        let t0 = Instant::now();
        let job = |limits: Limits, started: Option<Instant>| {
            let j = Job::new(0, &limits, Fake::default());
            j.lock().run.started = started;
            Arc::new(j)
        };
        let second = Duration::from_secs(1);
        let over = job(
            Limits {
                wall_time: Some(second),
                ..Default::default()
            },
            Some(t0 - second * 2),
        );
        let sampled = job(
            Limits {
                memory: Some(1 << 20),
                wall_time: Some(second * 60),
                ..Default::default()
            },
            Some(t0),
        );
        let waiting = job(
            Limits {
                wall_time: Some(second),
                ..Default::default()
            },
            None,
        );
        let jobs = vec![over.clone(), sampled.clone(), waiting.clone()];
        let mut seen = Vec::new();
        let next = look(&jobs, |due, _| {
            seen = due.iter().map(|j| Arc::as_ptr(j)).collect();
            for j in due {
                j.lock().run.schedule(&j.limits, 1, t0, Instant::now());
            }
        });
        assert_eq!(over.hit(), Some(Hit::monitor(Verdict::Wle, "wall_time")));
        assert_eq!(over.os.ended.load(Ordering::SeqCst), 1);
        assert_eq!(seen, vec![Arc::as_ptr(&sampled)]);
        assert_eq!((sampled.hit(), waiting.hit()), (None, None));
        // Next: the sampled job's next sample, not the ended job's deadline.
        let next = next.expect("a sampled job wakes the monitor");
        assert!(next > t0 && next <= Instant::now() + decide::SAMPLE_INTERVAL * 2);
        // A second look fires nothing again, and (made before `next`, at
        // least 12.5 ms after the first) samples nothing.
        let mut again = Vec::new();
        let next2 = look(&jobs, |due, _| {
            again = due.iter().map(|j| Arc::as_ptr(j)).collect();
        });
        assert_eq!(over.os.ended.load(Ordering::SeqCst), 1);
        if Instant::now() < next {
            assert!(again.is_empty());
            assert_eq!(next2, Some(next));
        }
    }

    #[test]
    fn registry_keys_are_fresh_and_start_at_one() {
        let r: Registry<u8> = Registry::default();
        let (a, b) = (r.next_key(), r.next_key());
        assert_eq!((a, b), (1, 2));
        r.insert(a, Arc::new(10));
        r.insert(b, Arc::new(20));
        assert_eq!(r.get(b).as_deref(), Some(&20));
        r.remove(a);
        assert_eq!(r.all().iter().map(|v| **v).collect::<Vec<_>>(), vec![20]);
        assert!(r.get(a).is_none());
    }
}
