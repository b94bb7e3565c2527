//! What the OS tells of a job or a process, read once here: the job's
//! accounting, limits and process list, a process's memory, times, image and
//! liveness. The job, the monitor and the run all read through these; none
//! of them reads another's.

use std::mem::size_of;

use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::ProcessStatus::{GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};

use super::handle::{own, raw, werr, win32_code, OwnedHandle, ERROR_MORE_DATA};
use crate::error::{Error, Result};
use crate::outcome::ProcessInfo;

/// Exit code given to every process the sandbox terminates (limit crossed,
/// run ended, job closed): "WSBK". The verdict never rests on it.
pub const KILL_EXIT_CODE: u32 = 0xE057_5342;

pub(crate) fn query_info<T: Default>(
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

/// The figures of one open process; None once it has exited.
pub(crate) fn process_info(pid: u32, h: &OwnedHandle) -> Option<ProcessInfo> {
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
    if let Some(m) = memory_of(h) {
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
pub(crate) fn any_alive(pids: &[u32]) -> bool {
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
pub(crate) fn running_pids() -> Option<std::collections::HashSet<u32>> {
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

pub(crate) fn memory_of(process: &OwnedHandle) -> Option<PROCESS_MEMORY_COUNTERS> {
    let mut c = PROCESS_MEMORY_COUNTERS {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        ..Default::default()
    };
    // SAFETY: the process handle is open; `c` is writable with its size in `cb`.
    unsafe { GetProcessMemoryInfo(raw(process), &mut c, c.cb) }.ok()?;
    Some(c)
}

/// The most memory a process is known to have held (its counters read now,
/// while it runs): its peak commit. Wine keeps no peak of commit (its
/// `PeakPagefileUsage` follows the current figure down) and gives zeros
/// once the process is gone, but it keeps the peak of the working set
/// (Linux's VmHWM), which also holds the shared pages of the process's
/// images (about 35 MB for any Wine process): there the peak is also the
/// working set's peak less what of the working set is not commit now.
pub(crate) fn memory_high_water(c: &PROCESS_MEMORY_COUNTERS) -> u64 {
    let commit = (c.PeakPagefileUsage as u64).max(c.PagefileUsage as u64);
    if !under_wine() {
        return commit;
    }
    let shared_now = (c.WorkingSetSize as u64).saturating_sub(c.PagefileUsage as u64);
    commit.max((c.PeakWorkingSetSize as u64).saturating_sub(shared_now))
}

fn under_wine() -> bool {
    static WINE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WINE.get_or_init(|| super::wine_version().is_some())
}

/// The job's extended limits, with the memory peaks the kernel keeps.
pub(crate) fn extended_limits(job: HANDLE) -> Result<JOBOBJECT_EXTENDED_LIMIT_INFORMATION> {
    query_info(Some(job), JobObjectExtendedLimitInformation).map_err(|e| {
        werr(
            "QueryInformationJobObject(JobObjectExtendedLimitInformation)",
            e,
        )
    })
}
