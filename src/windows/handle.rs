//! Owned handles and the conversion of `windows` crate errors back to Win32 codes.

pub(crate) use std::os::windows::io::OwnedHandle;
use std::os::windows::io::{AsRawHandle, FromRawHandle};

use windows::Win32::Foundation::HANDLE;

use crate::error::Error;

/// The raw `HANDLE` of an owned handle, for one FFI call.
pub(crate) fn raw(o: &OwnedHandle) -> HANDLE {
    HANDLE(o.as_raw_handle())
}

/// Takes ownership of a handle just returned by the system.
///
/// # Safety
/// `h` must be a valid, open handle that nothing else owns or will close.
pub(crate) unsafe fn own(h: HANDLE) -> OwnedHandle {
    // SAFETY: the caller guarantees `h` is open and unowned.
    unsafe { OwnedHandle::from_raw_handle(h.0) }
}

/// The Win32 error code inside a `windows` crate error: its HRESULT is
/// `HRESULT_FROM_WIN32(code)` (0x8007xxxx) for every Win32 failure.
pub(crate) fn win32_code(e: &windows::core::Error) -> i32 {
    let hr = e.code().0 as u32;
    if hr & 0xFFFF_0000 == 0x8007_0000 {
        (hr & 0xFFFF) as i32
    } else {
        hr as i32
    }
}

/// `s` as a NUL-terminated UTF-16 string, for a `PCWSTR` argument (a path,
/// a name, an SDDL string: a `&str` is an `OsStr` too).
pub(crate) fn wide_z(s: impl AsRef<std::ffi::OsStr>) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    s.as_ref().encode_wide().chain(Some(0)).collect()
}

/// A `windows` crate error as ours, naming the operation and keeping the code.
pub(crate) fn werr(op: impl Into<String>, e: windows::core::Error) -> Error {
    Error::os(op, win32_code(&e))
}

pub(crate) const ERROR_ACCESS_DENIED: i32 = 5;
pub(crate) const ERROR_FILE_NOT_FOUND: i32 = 2;
pub(crate) const ERROR_BROKEN_PIPE: i32 = 109;
pub(crate) const ERROR_NO_DATA: i32 = 232;
pub(crate) const ERROR_MORE_DATA: i32 = 234;
pub(crate) const ERROR_IO_PENDING: i32 = 997;
pub(crate) const ERROR_IO_INCOMPLETE: i32 = 996;
pub(crate) const ERROR_OPERATION_ABORTED: i32 = 995;
