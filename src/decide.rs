//! The monitor's decisions, kept pure so they are tested on every platform:
//! which limit a sample crosses, and what a kernel job message means.

use std::time::{Duration, Instant};

use crate::limits::Limits;
use crate::outcome::{Mechanism, Verdict};

/// How often the monitor samples each live job that has a limit the kernel
/// may not enforce alone (CPU time with kernel time, memory, processes).
/// Wall time is not sampled: the monitor sleeps until the nearest deadline.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(25);

/// Samples in a row without activity before a job's sampling slows down.
pub const IDLE_SAMPLES: u32 = 4;
/// The slowest a job that shows no activity is sampled.
pub const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// When to sample a job next, given how many samples in a row saw no
/// activity (no CPU time, page faults or process starts). A job that works is
/// sampled every [`SAMPLE_INTERVAL`]; a sleeping one, whose memory cannot
/// grow, ever more rarely, down to [`IDLE_INTERVAL`]; any activity brings it
/// back to the fast rate.
pub fn sample_interval(idle_samples: u32) -> Duration {
    if idle_samples < IDLE_SAMPLES {
        return SAMPLE_INTERVAL;
    }
    let doublings = (idle_samples - IDLE_SAMPLES + 1).min(8);
    (SAMPLE_INTERVAL * (1 << doublings)).min(IDLE_INTERVAL)
}

/// When a job sampled at `at` (time since the monitor's epoch) is next due,
/// about `interval` later: at the point nearest `at + interval` on a grid a
/// quarter of the interval wide, never finer than [`SAMPLE_INTERVAL`]. Jobs
/// that fall due near one another are sampled on one wake-up: 1,000 idle jobs
/// wake the monitor 4 times a second, not 1,000 times.
pub fn next_due(at: Duration, interval: Duration) -> Duration {
    let grid = (interval / 4).max(SAMPLE_INTERVAL).as_nanos();
    let t = (at + interval).as_nanos();
    let due = (t + grid / 2) / grid * grid;
    Duration::from_nanos(u64::try_from(due).unwrap_or(u64::MAX))
}

/// [`next_due`] in instants, on the grid of a monitor started at `epoch`.
pub fn next_due_at(epoch: Instant, now: Instant, interval: Duration) -> Instant {
    epoch + next_due(now.saturating_duration_since(epoch), interval)
}

/// What the monitor read of a job at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// User + kernel CPU time of every process the job ever held.
    pub cpu_time: Duration,
    /// Highest committed memory of any single process.
    pub process_memory: u64,
    /// Committed memory of the whole job.
    pub job_memory: u64,
    /// Processes alive now.
    pub active_processes: u32,
    /// Processes started so far.
    pub total_processes: u32,
}

/// A limit crossed: the verdict, the limit's field name, and what saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub verdict: Verdict,
    pub limit: &'static str,
    pub mechanism: Mechanism,
}

impl Hit {
    /// A limit the monitor (or the output pump) saw crossed.
    pub const fn monitor(verdict: Verdict, limit: &'static str) -> Hit {
        Hit {
            verdict,
            limit,
            mechanism: Mechanism::Monitor,
        }
    }

    /// A limit the kernel reported crossed.
    pub const fn kernel(verdict: Verdict, limit: &'static str) -> Hit {
        Hit {
            verdict,
            limit,
            mechanism: Mechanism::Kernel,
        }
    }
}

/// The output limit crossed (seen by the pump that reads the output).
pub const OUTPUT_LIMIT_HIT: Hit = Hit::monitor(Verdict::Ole, "output_limit");

/// The wall limit crossed at `now`, for a job whose clock started at `started`.
pub fn wall_hit(limits: &Limits, started: Option<Instant>, now: Instant) -> Option<Hit> {
    let (w, s) = (limits.wall_time?, started?);
    (now.saturating_duration_since(s) > w).then_some(Hit::monitor(Verdict::Wle, "wall_time"))
}

/// When the monitor must look at a job's wall clock next (just past its limit).
pub fn wall_deadline(limits: &Limits, started: Option<Instant>) -> Option<Instant> {
    Some(started? + limits.wall_time? + Duration::from_millis(1))
}

/// The first limit `sample` crosses after `elapsed` of wall time, if any.
/// Order: wall, CPU, memory, processes. A value equal to the limit is within it.
pub fn check_sample(limits: &Limits, elapsed: Duration, s: &Sample) -> Option<Hit> {
    if limits.wall_time.is_some_and(|w| elapsed > w) {
        return Some(Hit::monitor(Verdict::Wle, "wall_time"));
    }
    if limits.cpu_time.is_some_and(|c| s.cpu_time > c) {
        return Some(Hit::monitor(Verdict::Tle, "cpu_time"));
    }
    if limits.memory.is_some_and(|m| s.process_memory > m) {
        return Some(Hit::monitor(Verdict::Mle, "memory"));
    }
    if limits.job_memory.is_some_and(|m| s.job_memory > m) {
        return Some(Hit::monitor(Verdict::Mle, "job_memory"));
    }
    if limits.processes.is_some_and(|p| s.active_processes > p) {
        return Some(Hit::monitor(Verdict::Ple, "processes"));
    }
    if limits
        .total_processes
        .is_some_and(|p| s.total_processes > p)
    {
        return Some(Hit::monitor(Verdict::Ple, "total_processes"));
    }
    None
}

/// Whether a job counts processes (a process limit of either kind): its
/// sampling never slows down, since new processes are only found by samples
/// (a fork bomb's parents sleep, and look idle).
pub fn counts_processes(limits: &Limits) -> bool {
    limits.processes.is_some() || limits.total_processes.is_some()
}

/// A job's idle back-off: how many samples in a row saw no activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    idle: u32,
    activity: u64,
}

impl Backoff {
    /// Records one sample's activity figure (a sum that grows with CPU time,
    /// page faults, process starts or memory); true if it changed.
    pub fn note(&mut self, activity: u64) -> bool {
        let active = activity != self.activity;
        self.idle = if active {
            0
        } else {
            self.idle.saturating_add(1)
        };
        self.activity = activity;
        active
    }

    /// How long until the job is sampled again ([`sample_interval`]; a job
    /// that [`counts_processes`] keeps [`SAMPLE_INTERVAL`]).
    pub fn interval(&self, limits: &Limits) -> Duration {
        if counts_processes(limits) {
            SAMPLE_INTERVAL
        } else {
            sample_interval(self.idle)
        }
    }
}

/// Whether a job with these limits needs periodic sampling at all.
pub fn needs_sampling(limits: &Limits) -> bool {
    limits.cpu_time.is_some()
        || limits.memory.is_some()
        || limits.job_memory.is_some()
        || limits.processes.is_some()
        || limits.total_processes.is_some()
}

/// A job object's completion-port message (`JOB_OBJECT_MSG_*`, winnt.h),
/// typed: the monitor matches on this, never on raw numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobMessage {
    EndOfJobTime,
    EndOfProcessTime,
    ActiveProcessLimit,
    ActiveProcessZero,
    NewProcess,
    ExitProcess,
    AbnormalExitProcess,
    ProcessMemoryLimit,
    JobMemoryLimit,
    /// Any other value (`JOB_OBJECT_MSG_NOTIFICATION_LIMIT` and later ones).
    Other(u32),
}

impl JobMessage {
    /// The message for the value the port delivered (its byte count).
    pub fn from_raw(message: u32) -> JobMessage {
        use JobMessage::*;
        match message {
            1 => EndOfJobTime,
            2 => EndOfProcessTime,
            3 => ActiveProcessLimit,
            4 => ActiveProcessZero,
            6 => NewProcess,
            7 => ExitProcess,
            8 => AbnormalExitProcess,
            9 => ProcessMemoryLimit,
            10 => JobMemoryLimit,
            m => Other(m),
        }
    }

    /// The limit this message reports crossed by the kernel, if it reports one.
    pub fn hit(self) -> Option<Hit> {
        use JobMessage::*;
        Some(match self {
            EndOfJobTime | EndOfProcessTime => Hit::kernel(Verdict::Tle, "cpu_time"),
            ActiveProcessLimit => Hit::kernel(Verdict::Ple, "processes"),
            ProcessMemoryLimit => Hit::kernel(Verdict::Mle, "memory"),
            JobMemoryLimit => Hit::kernel(Verdict::Mle, "job_memory"),
            _ => return None,
        })
    }
}

/// How a run ended, as its backend saw it: what [`judge`] decides from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ending {
    /// The first limit recorded crossed while it ran (monitor, kernel, pump).
    pub hit: Option<Hit>,
    /// The caller killed it before it ended.
    pub killed: bool,
    /// A limit its exit shows crossed, where no message said so (POSIX: the
    /// `SIGXCPU` of `RLIMIT_CPU`; an abnormal exit after the memory peak
    /// passed the limit).
    pub exit_hit: Option<Hit>,
    /// It exited normally with code 0.
    pub clean_exit: bool,
}

/// The verdict of a run, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub mechanism: Mechanism,
    pub limit: Option<&'static str>,
    pub error: Option<&'static str>,
}

/// The verdict precedence, the same on every backend: a limit crossed while
/// it ran, then the caller's kill, then a limit its exit shows, then the exit.
pub fn judge(e: &Ending) -> Judgement {
    let j = |verdict, mechanism, limit| Judgement {
        verdict,
        mechanism,
        limit,
        error: None,
    };
    match (e.hit, e.killed, e.exit_hit) {
        (Some(h), _, _) => j(h.verdict, h.mechanism, Some(h.limit)),
        (None, true, _) => Judgement {
            error: Some("killed by the supervisor before it ended"),
            ..j(Verdict::Se, Mechanism::Sandbox, None)
        },
        (None, false, Some(h)) => j(h.verdict, h.mechanism, Some(h.limit)),
        (None, false, None) if e.clean_exit => j(Verdict::Ok, Mechanism::Exit, None),
        (None, false, None) => j(Verdict::Re, Mechanism::Exit, None),
    }
}

/// How an interactor's exit code reads, by default (testlib's convention):
/// 0 accepted, 1 wrong answer, 2 presentation error, 3 judge failure. A
/// caller may give another mapping.
pub const TESTLIB_CODES: [(i64, Verdict); 4] = [
    (0, Verdict::Ok),
    (1, Verdict::Wa),
    (2, Verdict::Pe),
    (3, Verdict::Jf),
];

/// How long one side of an interactive run may go on once the other has
/// ended by itself (the solution exited, or the interactor gave its
/// verdict): it sees its pipes end and should end too; then it is ended.
pub const PARTNER_GRACE: Duration = Duration::from_secs(2);

/// Whether a single run's verdict is a limit crossed.
pub fn is_limit(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Tle | Verdict::Wle | Verdict::Mle | Verdict::Ole | Verdict::Ple
    )
}

/// The interactor's own verdict: by its exit code where it ended by itself
/// (OK or RE) with a code `codes` maps; otherwise none (it crossed a limit,
/// crashed, was killed, or the sandbox failed: a judge failure).
pub fn interactor_verdict(
    v: Verdict,
    exit_code: Option<i64>,
    codes: &[(i64, Verdict)],
) -> Option<Verdict> {
    if !matches!(v, Verdict::Ok | Verdict::Re) {
        return None;
    }
    let code = exit_code?;
    codes.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

/// The verdict of an interactive run, from the solution's verdict, the
/// interactor's (`interactor_verdict`), and whether the solution was ended
/// because it outlived the interactor by [`PARTNER_GRACE`]:
/// 1. a limit the solution crossed wins;
/// 2. then a judge failure (`JF`): the interactor has no verdict of its own,
///    or says so;
/// 3. where the interactor accepted: `WLE` for a solution that did not end
///    after the interaction (it sat idle), the solution's `RE` (or `SE`)
///    where it failed, else `OK`;
/// 4. else the interactor's verdict: a solution that crashed or stopped
///    early is judged as the interactor saw it (testlib: `PE`, "unexpected
///    end of file"), the order of the two ends not mattering.
pub fn judge_interactive(
    solution: Verdict,
    interactor: Option<Verdict>,
    solution_outlived: bool,
) -> Verdict {
    if is_limit(solution) {
        return solution;
    }
    match interactor {
        None | Some(Verdict::Jf) => Verdict::Jf,
        Some(Verdict::Ok) if solution_outlived => Verdict::Wle,
        Some(Verdict::Ok) => solution,
        Some(x) => x,
    }
}

/// How long output is still read after the main process exited and the rest
/// of the job was killed (a handle or descriptor passed out of the job could
/// hold a pipe open).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// How long a killed process may take to end before the run stops waiting
/// for it and reports `SE`: a run ends by its wall limit plus this, or this
/// long after it was killed, whatever the program or the system does.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// When a run that has not seen its main process exit stops waiting (time
/// since its start): `STOP_GRACE` after its wall limit, or after the moment it
/// was killed (a limit crossed, or the caller's kill), whichever is first.
/// None: no bound (no wall limit, and not killed).
pub fn hard_stop(wall_limit: Option<Duration>, killed_at: Option<Duration>) -> Option<Duration> {
    let a = wall_limit.map(|w| w + STOP_GRACE);
    let b = killed_at.map(|k| k + STOP_GRACE);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Milliseconds for a wait: rounded up (a wait never ends early) and capped
/// below `INFINITE` (0xFFFF_FFFF).
pub fn dur_to_timeout_ms(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(0xFFFF_FFFE) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactive_verdicts_follow_the_documented_rules() {
        use Verdict::*;
        let codes = &TESTLIB_CODES;
        assert_eq!(interactor_verdict(Ok, Some(0), codes), Some(Ok));
        assert_eq!(interactor_verdict(Re, Some(1), codes), Some(Wa));
        assert_eq!(interactor_verdict(Re, Some(2), codes), Some(Pe));
        assert_eq!(interactor_verdict(Re, Some(3), codes), Some(Jf));
        assert_eq!(interactor_verdict(Re, Some(7), codes), None); // no such code
        assert_eq!(interactor_verdict(Re, Some(-11), codes), None); // crashed
        assert_eq!(interactor_verdict(Wle, Some(1), codes), None); // its own limit
        assert_eq!(interactor_verdict(Se, None, codes), None);
        assert_eq!(interactor_verdict(Re, Some(5), &[(5, Ok)]), Some(Ok)); // the caller's map
                                                                           // 1. the solution's limit wins, whatever the interactor says
        assert_eq!(judge_interactive(Tle, Some(Ok), false), Tle);
        assert_eq!(judge_interactive(Ole, None, false), Ole);
        // 2. an interactor without a verdict: judge failure
        assert_eq!(judge_interactive(Ok, None, false), Jf);
        assert_eq!(judge_interactive(Se, None, false), Jf);
        assert_eq!(judge_interactive(Re, Some(Jf), false), Jf);
        // 3. an accepting interactor
        assert_eq!(judge_interactive(Se, Some(Ok), true), Wle);
        assert_eq!(judge_interactive(Re, Some(Ok), false), Re);
        assert_eq!(judge_interactive(Ok, Some(Ok), false), Ok);
        // 4. else the interactor's verdict
        assert_eq!(judge_interactive(Se, Some(Pe), true), Pe);
        assert_eq!(judge_interactive(Re, Some(Wa), false), Wa);
        assert_eq!(judge_interactive(Re, Some(Pe), false), Pe);
        assert_eq!(judge_interactive(Ok, Some(Wa), false), Wa);
    }

    #[test]
    fn a_run_stops_waiting_by_its_wall_limit_or_after_a_kill_plus_the_grace() {
        let s = Duration::from_secs;
        assert_eq!(hard_stop(None, None), None);
        assert_eq!(hard_stop(Some(s(3)), None), Some(s(3) + STOP_GRACE));
        assert_eq!(hard_stop(None, Some(s(1))), Some(s(1) + STOP_GRACE));
        assert_eq!(hard_stop(Some(s(3)), Some(s(1))), Some(s(1) + STOP_GRACE));
        assert_eq!(hard_stop(Some(s(3)), Some(s(10))), Some(s(3) + STOP_GRACE));
    }

    #[test]
    fn next_due_batches_jobs_on_a_grid() {
        let ms = Duration::from_millis;
        // Fast sampling stays at its pace when the wake-up is a little late.
        assert_eq!(
            next_due(ms(1000) + Duration::from_micros(300), ms(25)),
            ms(1025)
        );
        assert_eq!(next_due(ms(1010), ms(25)), ms(1025));
        assert_eq!(next_due(ms(1013), ms(25)), ms(1050));
        // Idle jobs sampled at scattered instants fall due together.
        let idle = IDLE_INTERVAL;
        let dues: std::collections::BTreeSet<Duration> = (0..1000u64)
            .map(|i| next_due(ms(5000) + Duration::from_micros(i * 997), idle))
            .collect();
        assert_eq!(dues.len(), 5, "{dues:?}");
        // Never sooner than half a grid step, never later than half a step past the interval.
        for i in 0..2000u64 {
            let at = Duration::from_micros(i * 1231);
            for iv in [ms(25), ms(50), ms(200), idle] {
                let d = next_due(at, iv);
                let half = (iv / 4).max(SAMPLE_INTERVAL) / 2;
                assert!(
                    d > at && d + half >= at + iv && d <= at + iv + half,
                    "{at:?} {iv:?} {d:?}"
                );
            }
        }
    }

    fn limits() -> Limits {
        Limits {
            wall_time: Some(Duration::from_secs(2)),
            cpu_time: Some(Duration::from_secs(1)),
            memory: Some(64 << 20),
            job_memory: Some(128 << 20),
            processes: Some(4),
            total_processes: Some(10),
            ..Default::default()
        }
    }

    #[test]
    fn within_limits_is_none() {
        let s = Sample {
            cpu_time: Duration::from_secs(1),
            process_memory: 64 << 20,
            job_memory: 128 << 20,
            active_processes: 4,
            total_processes: 10,
        };
        assert_eq!(check_sample(&limits(), Duration::from_secs(2), &s), None);
        assert_eq!(
            check_sample(
                &Limits::default(),
                Duration::from_secs(9999),
                &Sample::default()
            ),
            None
        );
    }

    #[test]
    fn each_limit_fires() {
        let l = limits();
        let t = Duration::from_millis(100);
        let base = Sample::default();
        assert_eq!(
            check_sample(&l, Duration::from_millis(2001), &base),
            Some(Hit::monitor(Verdict::Wle, "wall_time"))
        );
        // CPU time counts kernel time too: the sample holds user + kernel.
        let cpu = Sample {
            cpu_time: Duration::from_millis(1001),
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &cpu),
            Some(Hit::monitor(Verdict::Tle, "cpu_time"))
        );
        let mem = Sample {
            process_memory: (64 << 20) + 1,
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &mem),
            Some(Hit::monitor(Verdict::Mle, "memory"))
        );
        let jm = Sample {
            job_memory: (128 << 20) + 1,
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &jm),
            Some(Hit::monitor(Verdict::Mle, "job_memory"))
        );
        let pa = Sample {
            active_processes: 5,
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &pa),
            Some(Hit::monitor(Verdict::Ple, "processes"))
        );
        let pt = Sample {
            total_processes: 11,
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &pt),
            Some(Hit::monitor(Verdict::Ple, "total_processes"))
        );
    }

    #[test]
    fn wall_time_wins_over_others() {
        let s = Sample {
            cpu_time: Duration::from_secs(5),
            active_processes: 50,
            ..Default::default()
        };
        assert_eq!(
            check_sample(&limits(), Duration::from_secs(3), &s),
            Some(Hit::monitor(Verdict::Wle, "wall_time"))
        );
    }

    #[test]
    fn kernel_messages() {
        let hit = |m| JobMessage::from_raw(m).hit();
        assert_eq!(hit(1), Some(Hit::kernel(Verdict::Tle, "cpu_time")));
        assert_eq!(hit(2), Some(Hit::kernel(Verdict::Tle, "cpu_time")));
        assert_eq!(hit(3), Some(Hit::kernel(Verdict::Ple, "processes")));
        assert_eq!(hit(9), Some(Hit::kernel(Verdict::Mle, "memory")));
        assert_eq!(hit(10), Some(Hit::kernel(Verdict::Mle, "job_memory")));
        assert_eq!(JobMessage::from_raw(6), JobMessage::NewProcess);
        assert_eq!(JobMessage::from_raw(7), JobMessage::ExitProcess);
        assert_eq!(JobMessage::from_raw(8), JobMessage::AbnormalExitProcess);
        assert_eq!(JobMessage::from_raw(4), JobMessage::ActiveProcessZero);
        assert_eq!(JobMessage::from_raw(11), JobMessage::Other(11));
        for m in [4, 5, 6, 7, 8, 11, 0xFFFF_0001] {
            assert_eq!(hit(m), None, "{m}");
        }
    }

    #[test]
    fn verdict_precedence_is_hit_then_kill_then_exit_hit_then_exit() {
        let tle = Hit::kernel(Verdict::Tle, "cpu_time");
        let wle = Hit::monitor(Verdict::Wle, "wall_time");
        let all = Ending {
            hit: Some(wle),
            killed: true,
            exit_hit: Some(tle),
            clean_exit: true,
        };
        let v = |e: Ending| {
            let j = judge(&e);
            (j.verdict, j.mechanism, j.limit)
        };
        assert_eq!(
            v(all),
            (Verdict::Wle, Mechanism::Monitor, Some("wall_time"))
        );
        let killed = Ending { hit: None, ..all };
        assert_eq!(v(killed), (Verdict::Se, Mechanism::Sandbox, None));
        assert!(judge(&killed).error.is_some());
        let exit_hit = Ending {
            killed: false,
            ..killed
        };
        assert_eq!(
            v(exit_hit),
            (Verdict::Tle, Mechanism::Kernel, Some("cpu_time"))
        );
        let ok = Ending {
            exit_hit: None,
            ..exit_hit
        };
        assert_eq!(v(ok), (Verdict::Ok, Mechanism::Exit, None));
        let re = Ending {
            clean_exit: false,
            ..ok
        };
        assert_eq!(v(re), (Verdict::Re, Mechanism::Exit, None));
        assert_eq!(judge(&re).error, None);
    }

    #[test]
    fn backoff_slows_idle_jobs_but_not_those_counting_processes() {
        let plain = Limits::default();
        let counted = Limits {
            processes: Some(1),
            ..Default::default()
        };
        let mut b = Backoff::default();
        assert!(b.note(5));
        for _ in 0..IDLE_SAMPLES + 5 {
            assert!(!b.note(5));
        }
        assert_eq!(b.interval(&plain), IDLE_INTERVAL);
        assert_eq!(b.interval(&counted), SAMPLE_INTERVAL);
        assert!(b.note(6));
        assert_eq!(b.interval(&plain), SAMPLE_INTERVAL);
    }

    #[test]
    fn wall_limit_is_crossed_after_it_not_at_it() {
        let l = Limits {
            wall_time: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(wall_hit(&l, Some(t0), t0 + s), None);
        assert_eq!(
            wall_hit(&l, Some(t0), t0 + s + Duration::from_millis(1)),
            Some(Hit::monitor(Verdict::Wle, "wall_time"))
        );
        assert_eq!(wall_hit(&l, None, t0 + s * 9), None);
        assert_eq!(wall_hit(&Limits::default(), Some(t0), t0 + s * 9), None);
        assert_eq!(
            wall_deadline(&l, Some(t0)),
            Some(t0 + s + Duration::from_millis(1))
        );
        assert_eq!(wall_deadline(&l, None), None);
    }

    #[test]
    fn sampling_only_when_needed() {
        assert!(!needs_sampling(&Limits {
            wall_time: Some(Duration::from_secs(1)),
            ..Default::default()
        }));
        assert!(needs_sampling(&Limits {
            memory: Some(1),
            ..Default::default()
        }));
    }

    #[test]
    fn idle_jobs_are_sampled_less_often() {
        assert_eq!(sample_interval(0), Duration::from_millis(25));
        assert_eq!(sample_interval(IDLE_SAMPLES - 1), Duration::from_millis(25));
        assert_eq!(sample_interval(IDLE_SAMPLES), Duration::from_millis(50));
        assert_eq!(
            sample_interval(IDLE_SAMPLES + 1),
            Duration::from_millis(100)
        );
        assert_eq!(sample_interval(IDLE_SAMPLES + 5), Duration::from_secs(1));
        assert_eq!(sample_interval(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn timeouts_round_up_and_cap() {
        assert_eq!(dur_to_timeout_ms(Duration::from_nanos(1)), 1);
        assert_eq!(dur_to_timeout_ms(Duration::from_millis(5)), 5);
        assert_eq!(dur_to_timeout_ms(Duration::ZERO), 0);
        assert_eq!(
            dur_to_timeout_ms(Duration::from_secs(u64::MAX / 4)),
            0xFFFF_FFFE
        );
    }
}
