//! A job object: created kill-on-close, given its limits from a [`JobPlan`],
//! registered with the monitor, queried for accounting and its process list.

use std::mem::size_of;
use std::sync::Arc;

use windows::core::{HSTRING, PCWSTR};
use windows::Win32::Foundation::{FALSE, HANDLE};
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::Threading::GetCurrentProcess;

use super::handle::{own, raw, werr, win32_code, OwnedHandle};
use super::monitor::{self, JobShared};
pub use super::query::KILL_EXIT_CODE;
use super::query::{
    any_alive, basic_and_io, extended_limits, process_ids, process_info, query_info, running_pids,
};
use crate::error::Result;
use crate::jobplan::JobPlan;
use crate::limits::Limits;
use crate::outcome::{Accounting, NotApplied, ProcessInfo};

/// A job object. Dropping it terminates every process in it.
pub struct JobObject {
    pub(crate) shared: Arc<JobShared>,
    /// Limits asked for that this system or situation could not apply.
    pub not_applied: Vec<NotApplied>,
}

fn set_info<T>(
    job: &OwnedHandle,
    class: JOBOBJECTINFOCLASS,
    info: &T,
) -> windows::core::Result<()> {
    // SAFETY: `info` points to a live `T` of `size_of::<T>()` bytes, the struct
    // `class` expects; the job handle is open.
    unsafe {
        SetInformationJobObject(
            raw(job),
            class,
            info as *const T as *const _,
            size_of::<T>() as u32,
        )
    }
}

impl JobObject {
    /// Creates a job (named when `name` is given), applies `plan`, and
    /// registers it with the monitor, which enforces `limits`' remainder.
    ///
    /// A limit the kernel refuses is an error, except the best-effort ones
    /// (UI restrictions, CPU rate, I/O rate), which are reported in
    /// `not_applied` instead.
    pub fn create(name: Option<&str>, plan: &JobPlan, limits: &Limits) -> Result<JobObject> {
        super::wine_desktop_ready();
        let hname = name.map(HSTRING::from);
        let pname = hname
            .as_ref()
            .map_or(PCWSTR::null(), |h| PCWSTR(h.as_ptr()));
        let private = super::security::supervisor_only()?.attributes(false);
        // SAFETY: `private` and its descriptor outlive the call; `pname` is
        // null or a live NUL-terminated string.
        let h = unsafe { CreateJobObjectW(Some(&private), pname) }
            .map_err(|e| werr("CreateJobObjectW", e))?;
        // SAFETY: CreateJobObjectW returned a new handle we now own.
        let handle = unsafe { own(h) };
        let mut not_applied = Vec::new();

        let p = &plan.extended;
        let mut ext = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        ext.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT(p.limit_flags);
        ext.BasicLimitInformation.PerJobUserTimeLimit = p.per_job_user_time_limit;
        ext.BasicLimitInformation.ActiveProcessLimit = p.active_process_limit;
        ext.BasicLimitInformation.Affinity = p.affinity as usize;
        ext.BasicLimitInformation.PriorityClass = p.priority_class;
        ext.ProcessMemoryLimit = p.process_memory_limit as usize;
        ext.JobMemoryLimit = p.job_memory_limit as usize;
        set_info(&handle, JobObjectExtendedLimitInformation, &ext).map_err(|e| {
            werr(
                "SetInformationJobObject(JobObjectExtendedLimitInformation)",
                e,
            )
        })?;

        if let Some(ui) = plan.ui_restrictions {
            let info = JOBOBJECT_BASIC_UI_RESTRICTIONS {
                UIRestrictionsClass: JOB_OBJECT_UILIMIT(ui),
            };
            if let Err(e) = set_info(&handle, JobObjectBasicUIRestrictions, &info) {
                not_applied.push(NotApplied {
                    limit: "ui_restrictions",
                    reason: format!(
                        "SetInformationJobObject refused them (error {})",
                        win32_code(&e)
                    ),
                });
            }
        }
        if let Some(r) = plan.cpu_rate {
            let info = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
                ControlFlags: JOB_OBJECT_CPU_RATE_CONTROL(r.control_flags),
                Anonymous: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION_0 {
                    CpuRate: r.cpu_rate,
                },
            };
            if let Err(e) = set_info(&handle, JobObjectCpuRateControlInformation, &info) {
                not_applied.push(NotApplied {
                    limit: "cpu_rate",
                    reason: format!("SetInformationJobObject(JobObjectCpuRateControlInformation) failed (error {})", win32_code(&e)),
                });
            }
        }
        if let Some(r) = plan.io_rate {
            let info = JOBOBJECT_IO_RATE_CONTROL_INFORMATION {
                MaxBandwidth: r.max_bandwidth,
                ControlFlags: r.control_flags,
                ..Default::default()
            };
            // SAFETY: `info` is a live, initialised struct; VolumeName null means all volumes.
            let rc = unsafe { SetIoRateControlInformationJobObject(raw(&handle), &info) };
            if rc == 0 {
                not_applied.push(NotApplied {
                    limit: "io_rate",
                    reason: format!(
                        "SetIoRateControlInformationJobObject failed (error {})",
                        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                    ),
                });
            }
        }
        let shared = monitor::register(handle, limits)?;
        Ok(JobObject {
            shared,
            not_applied,
        })
    }

    pub fn handle(&self) -> HANDLE {
        raw(&self.shared.os.handle)
    }

    /// Puts a running process into the job.
    pub fn assign(&self, process: &OwnedHandle) -> Result<()> {
        // SAFETY: both handles are open and owned for the call's duration.
        unsafe { AssignProcessToJobObject(self.handle(), raw(process)) }
            .map_err(|e| werr("AssignProcessToJobObject", e))
    }

    /// Ends every process in the job with `exit_code`.
    pub fn terminate(&self, exit_code: u32) -> Result<()> {
        // SAFETY: the job handle is open.
        unsafe { TerminateJobObject(self.handle(), exit_code) }
            .map_err(|e| werr("TerminateJobObject", e))
    }

    /// Ends every process in the job and makes sure none is left running: a
    /// process being created while the job was terminated can join it just
    /// after (seen under Wine), so this terminates again until none of the
    /// listed processes runs (at most about a second).
    pub fn kill_all(&self, exit_code: u32) -> Result<()> {
        for _ in 0..100 {
            self.terminate(exit_code)?;
            if basic_and_io(self.handle()).map_or(true, |b| b.BasicInfo.ActiveProcesses == 0)
                || self.process_ids().map_or(true, |p| !any_alive(&p))
            {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Basic + I/O accounting and the peak memory figures. Where the system
    /// lacks the I/O part (Wine), I/O reads as zero; where it does not report
    /// peaks, they read as zero.
    pub fn accounting(&self) -> Result<Accounting> {
        let basic = basic_and_io(self.handle())?;
        let ext: Option<JOBOBJECT_EXTENDED_LIMIT_INFORMATION> =
            query_info(Some(self.handle()), JobObjectExtendedLimitInformation).ok();
        Ok(Accounting {
            user_time_100ns: basic.BasicInfo.TotalUserTime,
            kernel_time_100ns: basic.BasicInfo.TotalKernelTime,
            total_processes: basic.BasicInfo.TotalProcesses,
            active_processes: basic.BasicInfo.ActiveProcesses,
            read_bytes: basic.IoInfo.ReadTransferCount,
            write_bytes: basic.IoInfo.WriteTransferCount,
            peak_process_memory: ext.map_or(0, |e| e.PeakProcessMemoryUsed as u64),
            peak_job_memory: ext.map_or(0, |e| e.PeakJobMemoryUsed as u64),
        })
    }

    /// The ids of the processes in the job now.
    pub fn process_ids(&self) -> Result<Vec<u32>> {
        process_ids(self.handle())
    }

    /// Extended limits as the kernel reports them back (real Windows; Wine
    /// does not read limits back).
    pub fn limit_flags(&self) -> Result<u32> {
        Ok(extended_limits(self.handle())?
            .BasicLimitInformation
            .LimitFlags
            .0)
    }

    /// Whether `process` is in this job.
    pub fn contains(&self, process: &OwnedHandle) -> Result<bool> {
        let mut r = FALSE;
        // SAFETY: both handles are open; `r` is a writable BOOL.
        unsafe { IsProcessInJob(raw(process), Some(self.handle()), &mut r) }
            .map_err(|e| werr("IsProcessInJob", e))?;
        Ok(r.as_bool())
    }
}

impl JobObject {
    /// What each live process of the job uses now. A process that ends while
    /// it is read, or whose id was reused since the list was read, is left out.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>> {
        use windows::Win32::System::Threading::{
            OpenProcess, PROCESS_QUERY_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION,
        };
        let pids = self.process_ids()?;
        let running = running_pids();
        let mut out = Vec::new();
        for pid in pids {
            if running.as_ref().is_some_and(|r| !r.contains(&pid)) {
                continue; // no thread: ended, or never ran (Wine)
            }
            // Full query rights first: Wine's IsProcessInJob wants them (Windows
            // takes the limited right, the fallback).
            // SAFETY: opening a process by id; the handle returned is ours.
            let opened = unsafe { OpenProcess(PROCESS_QUERY_INFORMATION, false, pid) }
                // SAFETY: as above.
                .or_else(|_| unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) });
            let Ok(h) = opened else {
                continue; // gone already
            };
            // SAFETY: OpenProcess returned a new handle.
            let h = unsafe { own(h) };
            if self.contains(&h).unwrap_or(false) {
                out.extend(process_info(pid, &h));
            }
        }
        Ok(out)
    }
}

impl Drop for JobObject {
    fn drop(&mut self) {
        // Kill-on-close would do it when the last handle goes; do it now, so no
        // process outlives the JobObject value even while the monitor holds a reference.
        let _ = self.terminate(KILL_EXIT_CODE);
        monitor::unregister(&self.shared);
    }
}

/// The job the supervisor itself runs in, if any, and whether it lets a
/// child break away (`JOB_OBJECT_LIMIT_BREAKAWAY_OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervisorJob {
    pub in_job: bool,
    pub breakaway_ok: bool,
}

pub fn supervisor_job() -> SupervisorJob {
    let mut r = FALSE;
    // SAFETY: the pseudo-handle of the current process needs no closing; `r` is writable.
    let in_job =
        unsafe { IsProcessInJob(GetCurrentProcess(), None, &mut r) }.is_ok() && r.as_bool();
    let breakaway_ok = in_job
        && query_info::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>(
            None,
            JobObjectExtendedLimitInformation,
        )
        .is_ok_and(|e| {
            e.BasicLimitInformation.LimitFlags.0 & crate::jobplan::flag::BREAKAWAY_OK != 0
        });
    SupervisorJob {
        in_job,
        breakaway_ok,
    }
}
