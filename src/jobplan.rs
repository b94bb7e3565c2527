//! The Job Object limit structures a [`Limits`] value asks for, built by a pure
//! function and mirrored field by field, so their exact contents are unit-tested
//! on every platform. `windows::job` copies them into the Win32 structures.

use crate::limits::{Limits, Priority};

/// `JOB_OBJECT_LIMIT_*` flags (winnt.h).
pub mod flag {
    pub const JOB_TIME: u32 = 0x0000_0004;
    pub const ACTIVE_PROCESS: u32 = 0x0000_0008;
    pub const AFFINITY: u32 = 0x0000_0010;
    pub const PRIORITY_CLASS: u32 = 0x0000_0020;
    pub const PROCESS_MEMORY: u32 = 0x0000_0100;
    pub const JOB_MEMORY: u32 = 0x0000_0200;
    pub const DIE_ON_UNHANDLED_EXCEPTION: u32 = 0x0000_0400;
    pub const BREAKAWAY_OK: u32 = 0x0000_0800;
    pub const SILENT_BREAKAWAY_OK: u32 = 0x0000_1000;
    pub const KILL_ON_JOB_CLOSE: u32 = 0x0000_2000;
}

/// `JOB_OBJECT_UILIMIT_*`: all eight restrictions.
pub const UILIMIT_ALL: u32 = 0x0000_00FF;

/// `JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP`.
pub const CPU_RATE_ENABLE_HARD_CAP: u32 = 0x1 | 0x4;
/// `JOB_OBJECT_IO_RATE_CONTROL_ENABLE`.
pub const IO_RATE_ENABLE: u32 = 0x1;

/// Priority-class values (`IDLE_PRIORITY_CLASS` ...).
pub fn priority_class(p: Priority) -> u32 {
    match p {
        Priority::Idle => 0x0000_0040,
        Priority::BelowNormal => 0x0000_4000,
        Priority::Normal => 0x0000_0020,
        Priority::AboveNormal => 0x0000_8000,
        Priority::High => 0x0000_0080,
    }
}

/// Mirror of `JOBOBJECT_EXTENDED_LIMIT_INFORMATION`'s settable fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtendedLimits {
    pub limit_flags: u32,
    /// 100 ns units of *user* time, whole job (`PerJobUserTimeLimit`).
    pub per_job_user_time_limit: i64,
    pub active_process_limit: u32,
    pub affinity: u64,
    pub priority_class: u32,
    /// `ProcessMemoryLimit`: committed memory of each process.
    pub process_memory_limit: u64,
    /// `JobMemoryLimit`: committed memory of the whole job.
    pub job_memory_limit: u64,
}

/// Mirror of `JOBOBJECT_CPU_RATE_CONTROL_INFORMATION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuRate {
    pub control_flags: u32,
    /// Cycles per 10,000 (percent x 100).
    pub cpu_rate: u32,
}

/// Mirror of `JOBOBJECT_IO_RATE_CONTROL_INFORMATION` (all volumes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoRate {
    pub control_flags: u32,
    pub max_bandwidth: i64,
}

/// Everything `SetInformationJobObject` is given for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobPlan {
    pub extended: ExtendedLimits,
    /// `JOBOBJECT_BASIC_UI_RESTRICTIONS.UIRestrictionsClass`, if asked.
    pub ui_restrictions: Option<u32>,
    pub cpu_rate: Option<CpuRate>,
    pub io_rate: Option<IoRate>,
}

/// The structures for `limits` (validated first by the caller).
///
/// - Kill-on-close is always set: no process outlives its job.
/// - `cpu_time` becomes `PerJobUserTimeLimit`: the kernel counts user time
///   only, so it can fire no later than user + kernel would; the monitor
///   enforces user + kernel.
/// - Wall time, output and the total-process count have no kernel limit.
pub fn plan(limits: &Limits) -> JobPlan {
    let mut e = ExtendedLimits {
        limit_flags: flag::KILL_ON_JOB_CLOSE,
        ..Default::default()
    };
    if limits.no_crash_dialogs {
        e.limit_flags |= flag::DIE_ON_UNHANDLED_EXCEPTION;
    }
    if let Some(m) = limits.memory {
        e.limit_flags |= flag::PROCESS_MEMORY;
        e.process_memory_limit = m;
    }
    if let Some(m) = limits.job_memory {
        e.limit_flags |= flag::JOB_MEMORY;
        e.job_memory_limit = m;
    }
    if let Some(t) = limits.cpu_time {
        e.limit_flags |= flag::JOB_TIME;
        // Round up: the limit never fires early. Bounded by MAX_DURATION.
        let units = t.as_nanos().div_ceil(100).min(i64::MAX as u128);
        e.per_job_user_time_limit = units as i64;
    }
    if let Some(p) = limits.processes {
        e.limit_flags |= flag::ACTIVE_PROCESS;
        e.active_process_limit = p;
    }
    if let Some(a) = limits.affinity {
        e.limit_flags |= flag::AFFINITY;
        e.affinity = a;
    }
    if let Some(p) = limits.priority {
        e.limit_flags |= flag::PRIORITY_CLASS;
        e.priority_class = priority_class(p);
    }
    JobPlan {
        extended: e,
        ui_restrictions: limits.ui_restrictions.then_some(UILIMIT_ALL),
        cpu_rate: limits.cpu_rate.map(|r| CpuRate {
            control_flags: CPU_RATE_ENABLE_HARD_CAP,
            cpu_rate: r * 100,
        }),
        io_rate: limits.io_rate.map(|b| IoRate {
            control_flags: IO_RATE_ENABLE,
            max_bandwidth: b.min(i64::MAX as u64) as i64,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_kill_on_close_no_dialogs_ui() {
        let p = plan(&Limits::default());
        assert_eq!(
            p.extended.limit_flags,
            flag::KILL_ON_JOB_CLOSE | flag::DIE_ON_UNHANDLED_EXCEPTION
        );
        assert_eq!(p.extended.limit_flags, 0x2400);
        assert_eq!(p.extended.process_memory_limit, 0);
        assert_eq!(p.extended.per_job_user_time_limit, 0);
        assert_eq!(p.ui_restrictions, Some(0xFF));
        assert_eq!(p.cpu_rate, None);
        assert_eq!(p.io_rate, None);
    }

    #[test]
    fn every_field() {
        let l = Limits {
            memory: Some(64 << 20),
            job_memory: Some(256 << 20),
            cpu_time: Some(Duration::from_millis(1500)),
            wall_time: Some(Duration::from_secs(10)),
            processes: Some(4),
            total_processes: Some(100),
            output_limit: Some(1 << 20),
            cpu_rate: Some(25),
            affinity: Some(0b11),
            priority: Some(Priority::BelowNormal),
            io_rate: Some(1 << 20),
            ui_restrictions: false,
            no_crash_dialogs: false,
        };
        let p = plan(&l);
        let e = p.extended;
        assert_eq!(
            e.limit_flags,
            flag::KILL_ON_JOB_CLOSE
                | flag::PROCESS_MEMORY
                | flag::JOB_MEMORY
                | flag::JOB_TIME
                | flag::ACTIVE_PROCESS
                | flag::AFFINITY
                | flag::PRIORITY_CLASS
        );
        assert_eq!(e.limit_flags, 0x233C);
        assert_eq!(e.process_memory_limit, 67_108_864);
        assert_eq!(e.job_memory_limit, 268_435_456);
        assert_eq!(e.per_job_user_time_limit, 15_000_000);
        assert_eq!(e.active_process_limit, 4);
        assert_eq!(e.affinity, 3);
        assert_eq!(e.priority_class, 0x4000);
        assert_eq!(p.ui_restrictions, None);
        assert_eq!(
            p.cpu_rate,
            Some(CpuRate {
                control_flags: 5,
                cpu_rate: 2500
            })
        );
        assert_eq!(
            p.io_rate,
            Some(IoRate {
                control_flags: 1,
                max_bandwidth: 1_048_576
            })
        );
        // Never breakaway: a child must not escape its job.
        assert_eq!(
            e.limit_flags & (flag::BREAKAWAY_OK | flag::SILENT_BREAKAWAY_OK),
            0
        );
    }

    #[test]
    fn cpu_time_rounds_up_to_100ns() {
        let l = Limits {
            cpu_time: Some(Duration::from_nanos(150)),
            ..Default::default()
        };
        assert_eq!(plan(&l).extended.per_job_user_time_limit, 2);
    }

    #[test]
    fn priority_classes() {
        assert_eq!(priority_class(Priority::Idle), 0x40);
        assert_eq!(priority_class(Priority::Normal), 0x20);
        assert_eq!(priority_class(Priority::AboveNormal), 0x8000);
        assert_eq!(priority_class(Priority::High), 0x80);
    }
}
