//! The supervisor's own desktop, where strict programs run.
//!
//! A program on another desktop than the user's finds none of the user's
//! windows, and none of the supervisor's: it cannot send them messages
//! (Microsoft: restricted programs belong on a desktop other than the
//! default). One desktop per supervisor process, not one per run: each
//! desktop takes desktop heap, which a judge's rate of runs would exhaust
//! (programs then fail to start, 0xC0000142). It is made on first use, on
//! the supervisor's window station, with an explicit descriptor
//! (`isolation::worker_desktop_sddl`), and lives as long as the process.
//! Wine keeps windows of different desktops apart too, so this is tested
//! there for real.

use std::sync::OnceLock;

use windows::core::PCWSTR;
use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::StationsAndDesktops::{
    CreateDesktopW, GetProcessWindowStation, GetUserObjectInformationW, DESKTOP_CONTROL_FLAGS,
    HDESK, UOI_NAME,
};

use super::handle::{werr, wide_z};
use super::security::{user_sid, SecurityDescriptor};
use crate::error::Result;

/// The desktop strict runs use.
pub struct WorkerDesktop {
    handle: HDESK,
    /// `<window station>\<desktop>`, NUL-terminated: a STARTUPINFO's `lpDesktop`.
    full_name: Vec<u16>,
}

// SAFETY: a desktop handle may be used from any thread; it is never closed
// (the desktop lives as long as the process).
unsafe impl Send for WorkerDesktop {}
// SAFETY: as above; it is only read.
unsafe impl Sync for WorkerDesktop {}

/// READ_CONTROL, DESKTOP_CREATEWINDOW, DESKTOP_READOBJECTS: enough to make
/// it and read its descriptor back.
const ACCESS: u32 = 0x0002_0000 | 0x0002 | 0x0001;

impl WorkerDesktop {
    /// `<window station>\<desktop>`, as a child's `lpDesktop` names it.
    pub fn name(&self) -> String {
        String::from_utf16_lossy(&self.full_name[..self.full_name.len() - 1])
    }

    /// The NUL-terminated full name, for `STARTUPINFOW::lpDesktop`.
    pub(crate) fn wide(&self) -> &[u16] {
        &self.full_name
    }

    /// The desktop's handle (for reading its descriptor back).
    pub fn handle(&self) -> HANDLE {
        HANDLE(self.handle.0)
    }
}

/// The supervisor's desktop, made on first use.
pub fn worker_desktop() -> Result<&'static WorkerDesktop> {
    static DESKTOP: OnceLock<Result<WorkerDesktop>> = OnceLock::new();
    DESKTOP.get_or_init(make).as_ref().map_err(Clone::clone)
}

fn make() -> Result<WorkerDesktop> {
    let name = crate::isolation::worker_desktop_name(std::process::id());
    let sd = SecurityDescriptor::from_sddl(&crate::isolation::worker_desktop_sddl(&user_sid()?))?;
    let sa = sd.attributes(false);
    let wide = wide_z(&name);
    // SAFETY: a NUL-terminated name; `sa` and its descriptor outlive the call.
    let handle = unsafe {
        CreateDesktopW(
            PCWSTR(wide.as_ptr()),
            PCWSTR::null(),
            None,
            DESKTOP_CONTROL_FLAGS(0),
            ACCESS,
            Some(&sa),
        )
    }
    .map_err(|e| werr(format!("CreateDesktopW({name})"), e))?;
    let station = window_station_name()?;
    let full_name = wide_z(format!("{station}\\{name}"));
    Ok(WorkerDesktop { handle, full_name })
}

/// The name of the supervisor's window station (`WinSta0` in a user's session).
fn window_station_name() -> Result<String> {
    // SAFETY: no arguments; the handle is the process's, not to be closed.
    let station =
        unsafe { GetProcessWindowStation() }.map_err(|e| werr("GetProcessWindowStation", e))?;
    let mut buf = [0u16; 256];
    let mut len = 0u32;
    // SAFETY: an out-buffer of its size in bytes.
    unsafe {
        GetUserObjectInformationW(
            HANDLE(station.0),
            UOI_NAME,
            Some(buf.as_mut_ptr().cast()),
            std::mem::size_of_val(&buf) as u32,
            Some(&mut len),
        )
    }
    .map_err(|e| werr("GetUserObjectInformationW(UOI_NAME)", e))?;
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    Ok(String::from_utf16_lossy(&buf[..end]))
}
