//! The Windows backend: Job Objects, spawning into them, one monitor thread.

mod attrs;
mod desktop;
mod handle;
mod isolate;
mod job;
mod monitor;
mod pipe;
mod poller;
mod query;
mod run;
mod security;
mod spawn;
mod token;

pub use crate::engine::Killer;
pub use crate::outcome::Accounting;
pub use desktop::{worker_desktop, WorkerDesktop};
pub use isolate::LowLabel;
pub use job::{supervisor_job, JobObject, SupervisorJob};
pub use pipe::child_pipe;
pub use poller::Poller;

/// A pipe end a sandboxed program holds (`command::PipeEnd`).
pub type PipeHandle = std::os::windows::io::OwnedHandle;
pub use query::{process_alive, KILL_EXIT_CODE};
pub use run::{Child, Running, Sandbox};
pub use security::{dacl_of, label_of, user_sid, ObjectKind};
pub use spawn::Process;
pub use token::try_restricted_token;

use windows::core::{s, w};
use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

/// Wine's version when running under Wine (ntdll exports `wine_get_version`).
pub fn wine_version() -> Option<String> {
    // SAFETY: ntdll is loaded in every process; the name is a static string.
    let ntdll = unsafe { GetModuleHandleW(w!("ntdll.dll")) }.ok()?;
    // SAFETY: a lookup by a static NUL-terminated name.
    let f = unsafe { GetProcAddress(ntdll, s!("wine_get_version")) }?;
    // SAFETY: Wine's `const char *wine_get_version(void)`.
    let f: extern "C" fn() -> *const std::ffi::c_char = unsafe { std::mem::transmute(f) };
    let p = f();
    if p.is_null() {
        return Some(String::new());
    }
    // SAFETY: Wine returns a static NUL-terminated string.
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Under Wine, starts Wine's desktop process (its `explorer.exe`) from the
/// supervisor, once, before the first job. Wine starts it on the first use of
/// the desktop by any process: when that is a sandboxed program (or its
/// console host), the desktop process is created in the program's job,
/// listed there and ended with it (seen: an `explorer.exe` in a job's
/// process list under Wine). Touching the desktop here makes it the
/// supervisor's child, in no job of ours. Real Windows has its desktop
/// already: nothing happens there.
pub(crate) fn wine_desktop_ready() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if wine_version().is_some() {
            // SAFETY: no arguments; returns the desktop window's handle,
            // which is not kept.
            let _ = unsafe { windows::Win32::UI::WindowsAndMessaging::GetDesktopWindow() };
        }
    });
}

/// The supervisor's own open-handle count (`GetProcessHandleCount`).
pub fn own_handle_count() -> crate::error::Result<u32> {
    use windows::Win32::System::Threading::{GetCurrentProcess, GetProcessHandleCount};
    let mut n = 0u32;
    // SAFETY: the current-process pseudo-handle; `n` is writable.
    unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut n) }
        .map_err(|e| handle::werr("GetProcessHandleCount", e))?;
    Ok(n)
}
