//! The monitor's decisions, kept pure so they are tested on every platform:
//! which limit a sample crosses, and what a kernel job message means.

use std::time::{Duration, Instant};

use crate::limits::Limits;
use crate::outcome::Verdict;

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

/// A limit crossed: the verdict and the limit's field name.
pub type Hit = (Verdict, &'static str);

/// The first limit `sample` crosses after `elapsed` of wall time, if any.
/// Order: wall, CPU, memory, processes. A value equal to the limit is within it.
pub fn check_sample(limits: &Limits, elapsed: Duration, s: &Sample) -> Option<Hit> {
    if limits.wall_time.is_some_and(|w| elapsed > w) {
        return Some((Verdict::Wle, "wall_time"));
    }
    if limits.cpu_time.is_some_and(|c| s.cpu_time > c) {
        return Some((Verdict::Tle, "cpu_time"));
    }
    if limits.memory.is_some_and(|m| s.process_memory > m) {
        return Some((Verdict::Mle, "memory"));
    }
    if limits.job_memory.is_some_and(|m| s.job_memory > m) {
        return Some((Verdict::Mle, "job_memory"));
    }
    if limits.processes.is_some_and(|p| s.active_processes > p) {
        return Some((Verdict::Ple, "processes"));
    }
    if limits
        .total_processes
        .is_some_and(|p| s.total_processes > p)
    {
        return Some((Verdict::Ple, "total_processes"));
    }
    None
}

/// Whether a job with these limits needs periodic sampling at all.
pub fn needs_sampling(limits: &Limits) -> bool {
    limits.cpu_time.is_some()
        || limits.memory.is_some()
        || limits.job_memory.is_some()
        || limits.processes.is_some()
        || limits.total_processes.is_some()
}

/// `JOB_OBJECT_MSG_*` values (winnt.h).
pub mod msg {
    pub const END_OF_JOB_TIME: u32 = 1;
    pub const END_OF_PROCESS_TIME: u32 = 2;
    pub const ACTIVE_PROCESS_LIMIT: u32 = 3;
    pub const ACTIVE_PROCESS_ZERO: u32 = 4;
    pub const NEW_PROCESS: u32 = 6;
    pub const EXIT_PROCESS: u32 = 7;
    pub const ABNORMAL_EXIT_PROCESS: u32 = 8;
    pub const PROCESS_MEMORY_LIMIT: u32 = 9;
    pub const JOB_MEMORY_LIMIT: u32 = 10;
}

/// The limit a kernel job message reports crossed, if it reports one.
pub fn kernel_message_hit(message: u32) -> Option<Hit> {
    Some(match message {
        msg::END_OF_JOB_TIME | msg::END_OF_PROCESS_TIME => (Verdict::Tle, "cpu_time"),
        msg::ACTIVE_PROCESS_LIMIT => (Verdict::Ple, "processes"),
        msg::PROCESS_MEMORY_LIMIT => (Verdict::Mle, "memory"),
        msg::JOB_MEMORY_LIMIT => (Verdict::Mle, "job_memory"),
        _ => return None,
    })
}

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
            Some((Verdict::Wle, "wall_time"))
        );
        // CPU time counts kernel time too: the sample holds user + kernel.
        let cpu = Sample {
            cpu_time: Duration::from_millis(1001),
            ..base
        };
        assert_eq!(check_sample(&l, t, &cpu), Some((Verdict::Tle, "cpu_time")));
        let mem = Sample {
            process_memory: (64 << 20) + 1,
            ..base
        };
        assert_eq!(check_sample(&l, t, &mem), Some((Verdict::Mle, "memory")));
        let jm = Sample {
            job_memory: (128 << 20) + 1,
            ..base
        };
        assert_eq!(check_sample(&l, t, &jm), Some((Verdict::Mle, "job_memory")));
        let pa = Sample {
            active_processes: 5,
            ..base
        };
        assert_eq!(check_sample(&l, t, &pa), Some((Verdict::Ple, "processes")));
        let pt = Sample {
            total_processes: 11,
            ..base
        };
        assert_eq!(
            check_sample(&l, t, &pt),
            Some((Verdict::Ple, "total_processes"))
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
            Some((Verdict::Wle, "wall_time"))
        );
    }

    #[test]
    fn kernel_messages() {
        assert_eq!(
            kernel_message_hit(msg::END_OF_JOB_TIME),
            Some((Verdict::Tle, "cpu_time"))
        );
        assert_eq!(
            kernel_message_hit(msg::END_OF_PROCESS_TIME),
            Some((Verdict::Tle, "cpu_time"))
        );
        assert_eq!(
            kernel_message_hit(msg::ACTIVE_PROCESS_LIMIT),
            Some((Verdict::Ple, "processes"))
        );
        assert_eq!(
            kernel_message_hit(msg::PROCESS_MEMORY_LIMIT),
            Some((Verdict::Mle, "memory"))
        );
        assert_eq!(
            kernel_message_hit(msg::JOB_MEMORY_LIMIT),
            Some((Verdict::Mle, "job_memory"))
        );
        for m in [
            msg::NEW_PROCESS,
            msg::EXIT_PROCESS,
            msg::ABNORMAL_EXIT_PROCESS,
            msg::ACTIVE_PROCESS_ZERO,
        ] {
            assert_eq!(kernel_message_hit(m), None);
        }
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
