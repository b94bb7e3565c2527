//! A Job Object: created kill-on-close, given its limits from a [`JobPlan`],
//! registered with the monitor, queried for accounting and its process list.

use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use windows::core::{HSTRING, PCWSTR};
use windows::Win32::Foundation::{FALSE, HANDLE};
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::Threading::GetCurrentProcess;

use super::handle::{own, raw, werr, win32_code, OwnedHandle, ERROR_MORE_DATA};
use super::monitor::{self, JobShared};
use crate::error::{Error, Result};
use crate::jobplan::JobPlan;
use crate::limits::Limits;
use crate::outcome::{NotApplied, ProcessInfo};

/// Exit code given to every process the sandbox terminates (limit crossed,
/// run ended, job closed): "WSBK". The verdict never rests on it.
pub const KILL_EXIT_CODE: u32 = 0xE057_5342;

/// What a job has used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// 100 ns units, every process the job ever held.
    pub user_time_100ns: i64,
    pub kernel_time_100ns: i64,
    pub total_processes: u32,
    pub active_processes: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub peak_process_memory: u64,
    pub peak_job_memory: u64,
}

impl Accounting {
    pub fn user_time(&self) -> Duration {
        Duration::from_nanos(self.user_time_100ns.max(0) as u64 * 100)
    }

    pub fn kernel_time(&self) -> Duration {
        Duration::from_nanos(self.kernel_time_100ns.max(0) as u64 * 100)
    }
}

/// A job object. Dropping it terminates every process in it.
pub struct Job {
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

fn query_info<T: Default>(
    job: Option<HANDLE>,
    class: JOBOBJECTINFOCLASS,
) -> windows::core::Result<T> {
    let mut info = T::default();
    // SAFETY: `info` is a writable `T` of the size passed, the struct `class`
    // fills; `job` is an open job handle or None (the caller's own job).
    unsafe {
        QueryInformationJobObject(
            job,
            class,
            &mut info as *mut T as *mut _,
            size_of::<T>() as u32,
            None,
        )
    }?;
    Ok(info)
}

impl Job {
    /// Creates a job (named when `name` is given), applies `plan`, and
    /// registers it with the monitor, which enforces `limits`' remainder.
    ///
    /// A limit the kernel refuses is an error, except the best-effort ones
    /// (UI restrictions, CPU rate, I/O rate), which are reported in
    /// `not_applied` instead.
    pub fn create(name: Option<&str>, plan: &JobPlan, limits: &Limits) -> Result<Job> {
        let hname = name.map(HSTRING::from);
        let pname = hname
            .as_ref()
            .map_or(PCWSTR::null(), |h| PCWSTR(h.as_ptr()));
        // SAFETY: no security attributes; `pname` is null or a live NUL-terminated string.
        let h =
            unsafe { CreateJobObjectW(None, pname) }.map_err(|e| werr("CreateJobObjectW", e))?;
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
        Ok(Job {
            shared,
            not_applied,
        })
    }

    pub(crate) fn handle(&self) -> HANDLE {
        raw(&self.shared.handle)
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
        let ext: JOBOBJECT_EXTENDED_LIMIT_INFORMATION =
            query_info(Some(self.handle()), JobObjectExtendedLimitInformation).map_err(|e| {
                werr(
                    "QueryInformationJobObject(JobObjectExtendedLimitInformation)",
                    e,
                )
            })?;
        Ok(ext.BasicLimitInformation.LimitFlags.0)
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

impl Job {
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

/// The figures of one open process; None once it has exited.
fn process_info(pid: u32, h: &OwnedHandle) -> Option<ProcessInfo> {
    use windows::Win32::Foundation::STILL_ACTIVE;
    use windows::Win32::System::Threading::{GetExitCodeProcess, GetProcessHandleCount};
    let mut code = 0u32;
    // SAFETY: `h` is open; `code` is writable.
    unsafe { GetExitCodeProcess(raw(h), &mut code) }.ok()?;
    if code != STILL_ACTIVE.0 as u32 {
        return None; // a dead id a job's list still holds (Wine)
    }
    let mut info = ProcessInfo {
        pid,
        ..Default::default()
    };
    if let Some(m) = monitor::memory_of(h) {
        info.working_set = m.WorkingSetSize as u64;
        info.peak_working_set = m.PeakWorkingSetSize as u64;
        info.private_memory = m.PagefileUsage as u64;
    }
    // SAFETY: `h` is open; the count is writable.
    let _ = unsafe { GetProcessHandleCount(raw(h), &mut info.handles) };
    if let Some(t) = process_times(h) {
        info.user_time = t.user as f64 / 1e7;
        info.kernel_time = t.kernel as f64 / 1e7;
    }
    if let Some(path) = image_path(h) {
        info.name = path.rsplit(['\\', '/']).next().unwrap_or("").to_string();
    }
    Some(info)
}

/// A FILETIME as one number: 100 ns units (since 1601 for a point in time).
pub(crate) fn filetime(t: windows::Win32::Foundation::FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

/// What `GetProcessTimes` tells of a process, in FILETIME units.
pub(crate) struct ProcessTimes {
    /// When it exited; 0 while it runs.
    pub exited: u64,
    pub kernel: u64,
    pub user: u64,
}

/// The times of an open process; None when they cannot be read.
pub(crate) fn process_times(h: &OwnedHandle) -> Option<ProcessTimes> {
    use windows::Win32::System::Threading::GetProcessTimes;
    let (mut created, mut exited, mut kernel, mut user) = Default::default();
    // SAFETY: `h` is open; the four FILETIMEs are writable.
    unsafe { GetProcessTimes(raw(h), &mut created, &mut exited, &mut kernel, &mut user) }.ok()?;
    Some(ProcessTimes {
        exited: filetime(exited),
        kernel: filetime(kernel),
        user: filetime(user),
    })
}

impl Drop for Job {
    fn drop(&mut self) {
        // Kill-on-close would do it when the last handle goes; do it now, so no
        // process outlives the Job value even while the monitor holds a reference.
        let _ = self.terminate(KILL_EXIT_CODE);
        monitor::unregister(&self.shared);
    }
}

/// Whether a process with this id runs: it has not exited and has at least
/// one thread. The thread test matters under Wine, where a job terminated
/// while one of its processes was inside `CreateProcess` can keep the new
/// process object for good: listed in the job, never exited, never given a
/// thread, so it never runs an instruction and cannot be terminated. (A job's
/// list can also keep a dead id for a while under Wine.)
pub fn process_alive(pid: u32) -> bool {
    any_alive(&[pid])
}

/// Whether any of these processes runs (see [`process_alive`]). The system
/// snapshot is taken only when one of them has not exited.
fn any_alive(pids: &[u32]) -> bool {
    let active: Vec<u32> = pids.iter().copied().filter(|&p| still_active(p)).collect();
    if active.is_empty() {
        return false;
    }
    match running_pids() {
        Some(running) => active.iter().any(|p| running.contains(p)),
        None => true, // no snapshot: count them as running
    }
}

/// Whether the process has not exited (its exit code reads STILL_ACTIVE).
fn still_active(pid: u32) -> bool {
    use windows::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: opening by id; the handle is closed below.
    let Ok(h) = (unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }) else {
        return false;
    };
    let mut code = 0u32;
    // SAFETY: `h` is open; `code` is writable.
    let ok = unsafe { GetExitCodeProcess(h, &mut code) }.is_ok();
    // SAFETY: closing the handle opened above.
    let _ = unsafe { CloseHandle(h) };
    ok && code == STILL_ACTIVE.0 as u32
}

/// The ids of the processes of the system that have at least one thread, from
/// a Toolhelp snapshot; None when no snapshot can be taken.
fn running_pids() -> Option<std::collections::HashSet<u32>> {
    Some(
        snapshot()?
            .into_iter()
            .filter(|e| e.threads > 0)
            .map(|e| e.pid)
            .collect(),
    )
}

/// One process of a Toolhelp snapshot.
struct SnapEntry {
    pid: u32,
    parent: u32,
    threads: u32,
}

/// Every process of the system, from a Toolhelp snapshot; None when no
/// snapshot can be taken.
fn snapshot() -> Option<Vec<SnapEntry>> {
    use windows::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
        TH32CS_SNAPPROCESS,
    };
    // SAFETY: a snapshot of the processes; the handle is owned at once.
    let snap = unsafe { own(CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0).ok()?) };
    let mut entry = PROCESSENTRY32W {
        dwSize: size_of::<PROCESSENTRY32W>() as u32,
        ..Default::default()
    };
    let mut out = Vec::new();
    // SAFETY: `snap` is an open snapshot; `entry` is writable, its size set.
    let mut more = unsafe { Process32FirstW(raw(&snap), &mut entry) }.is_ok();
    while more {
        out.push(SnapEntry {
            pid: entry.th32ProcessID,
            parent: entry.th32ParentProcessID,
            threads: entry.cntThreads,
        });
        // SAFETY: as above.
        more = unsafe { Process32NextW(raw(&snap), &mut entry) }.is_ok();
    }
    Some(out)
}

/// Under Wine, whether the new job process `pid` (open as `h`) is the console
/// host Wine starts for a console program that has none: Wine's own
/// `conhost.exe` (the image in the system folder) whose parent the supervisor
/// started itself. Returns that parent's id. Real Windows starts no such host
/// for a `DETACHED_PROCESS` child, so there this is always None.
pub(crate) fn wine_console_host(pid: u32, h: &OwnedHandle) -> Option<u32> {
    static CONHOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let conhost = CONHOST.get_or_init(|| {
        super::wine_version()?;
        let mut buf = [0u16; 512];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            windows::Win32::System::SystemInformation::GetSystemDirectoryW(Some(&mut buf))
        };
        let dir = String::from_utf16_lossy(buf.get(..n as usize)?);
        (n > 0).then(|| format!("{dir}\\conhost.exe").to_lowercase())
    });
    let conhost = conhost.as_ref()?;
    if image_path(h)?.to_lowercase() != *conhost {
        return None;
    }
    let snap = snapshot()?;
    let parent = snap.iter().find(|e| e.pid == pid)?.parent;
    // SAFETY: no arguments; reads this process's id.
    let me = unsafe { windows::Win32::System::Threading::GetCurrentProcessId() };
    snap.iter()
        .any(|e| e.pid == parent && e.parent == me)
        .then_some(parent)
}

/// The Win32 path of an open process's image.
fn image_path(h: &OwnedHandle) -> Option<String> {
    use windows::core::PWSTR;
    use windows::Win32::System::Threading::{QueryFullProcessImageNameW, PROCESS_NAME_WIN32};
    let mut buf = [0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` is writable for `len` characters.
    unsafe {
        QueryFullProcessImageNameW(
            raw(h),
            PROCESS_NAME_WIN32,
            PWSTR(buf.as_mut_ptr()),
            &mut len,
        )
    }
    .ok()?;
    Some(String::from_utf16_lossy(&buf[..len as usize]))
}

/// Basic + I/O accounting, or basic accounting alone (I/O zero) where the
/// combined class is not implemented (Wine: ERROR_INVALID_FUNCTION).
pub(crate) fn basic_and_io(job: HANDLE) -> Result<JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION> {
    match query_info(Some(job), JobObjectBasicAndIoAccountingInformation) {
        Ok(info) => Ok(info),
        Err(_) => {
            let basic: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION =
                query_info(Some(job), JobObjectBasicAccountingInformation).map_err(|e| {
                    werr(
                        "QueryInformationJobObject(JobObjectBasicAccountingInformation)",
                        e,
                    )
                })?;
            Ok(JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION {
                BasicInfo: basic,
                ..Default::default()
            })
        }
    }
}

/// The process-id list of `job`: the buffer grows to the count the kernel
/// reports on `ERROR_MORE_DATA` (a few retries for a tree still growing).
pub(crate) fn process_ids(job: HANDLE) -> Result<Vec<u32>> {
    let header = 2; // two u32 counts = one usize
    let mut cap = 64usize;
    for _ in 0..8 {
        let mut buf = vec![0usize; header + cap];
        let bytes = (buf.len() * size_of::<usize>()) as u32;
        // SAFETY: `buf` is writable for `bytes` bytes and suitably aligned for
        // JOBOBJECT_BASIC_PROCESS_ID_LIST (usize-aligned).
        let r = unsafe {
            QueryInformationJobObject(
                Some(job),
                JobObjectBasicProcessIdList,
                buf.as_mut_ptr() as *mut _,
                bytes,
                None,
            )
        };
        // SAFETY: the buffer starts with the list header, written or zeroed.
        let list = unsafe { &*(buf.as_ptr() as *const JOBOBJECT_BASIC_PROCESS_ID_LIST) };
        match r {
            Ok(()) => {
                let n = (list.NumberOfProcessIdsInList as usize).min(cap);
                // ProcessIdList starts right after the two u32 counts.
                return Ok(buf[1..1 + n].iter().map(|&p| p as u32).collect());
            }
            Err(e) if win32_code(&e) == ERROR_MORE_DATA => {
                cap = (list.NumberOfAssignedProcesses as usize).max(cap * 2) + 16;
            }
            Err(e) => {
                return Err(werr(
                    "QueryInformationJobObject(JobObjectBasicProcessIdList)",
                    e,
                ))
            }
        }
    }
    Err(Error::os(
        "QueryInformationJobObject(JobObjectBasicProcessIdList): the list kept growing",
        ERROR_MORE_DATA,
    ))
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
