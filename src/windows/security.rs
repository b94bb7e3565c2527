//! Explicit security descriptors for what the supervisor makes.
//!
//! Windows gives an object made without a descriptor its creator token's
//! default DACL; Wine gives it no descriptor at all, so any process opens
//! it by name. Every object the supervisor makes (its named pipes, its
//! jobs, its desktop) gets an explicit one instead, built from SDDL
//! (`crate::isolation`, pure and tested everywhere): the same on both, and
//! readable back (`dacl_of`) where Wine stores it.

use std::sync::OnceLock;

use windows::core::{PCWSTR, PWSTR};
use windows::Win32::Foundation::{HANDLE, HLOCAL};
use windows::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, GetSecurityInfo,
    SE_FILE_OBJECT, SE_OBJECT_TYPE,
};
use windows::Win32::Security::{
    GetTokenInformation, TokenUser, DACL_SECURITY_INFORMATION, LABEL_SECURITY_INFORMATION,
    OBJECT_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    TOKEN_INFORMATION_CLASS, TOKEN_QUERY, TOKEN_USER,
};
use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::handle::{own, raw, werr, wide_z, win32_code};
use crate::error::{Error, Result};

/// `SDDL_REVISION_1`.
const SDDL_REVISION: u32 = 1;

/// A self-relative security descriptor, freed on drop.
pub(crate) struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is memory owned by this value, only read once made.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: the system only reads it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    pub fn from_sddl(sddl: &str) -> Result<SecurityDescriptor> {
        let wide = wide_z(sddl);
        let mut sd = PSECURITY_DESCRIPTOR::default();
        // SAFETY: a NUL-terminated string; `sd` receives a LocalAlloc'd descriptor.
        unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                PCWSTR(wide.as_ptr()),
                SDDL_REVISION,
                &mut sd,
                None,
            )
        }
        .map_err(|e| {
            werr(
                format!("ConvertStringSecurityDescriptorToSecurityDescriptor({sddl})"),
                e,
            )
        })?;
        Ok(SecurityDescriptor(sd))
    }

    /// The descriptor, for a call that reads it (while `self` lives).
    pub fn as_ptr(&self) -> PSECURITY_DESCRIPTOR {
        self.0
    }

    /// Attributes carrying this descriptor; they borrow it.
    pub fn attributes(&self, inherit: bool) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0 .0,
            bInheritHandle: inherit.into(),
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { local_free(self.0 .0) };
    }
}

/// The supervisor's user SID, as a string (its process token's user).
pub fn user_sid() -> Result<String> {
    static USER: OnceLock<Result<String>> = OnceLock::new();
    USER.get_or_init(|| {
        let mut token = HANDLE::default();
        // SAFETY: our own process's token, into a local handle.
        unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) }
            .map_err(|e| werr("OpenProcessToken", e))?;
        // SAFETY: a token handle just opened, ours alone.
        let token = unsafe { own(token) };
        let buf = token_info(raw(&token), TokenUser)
            .map_err(|c| Error::os("GetTokenInformation(TokenUser)", c))?;
        // SAFETY: the buffer holds a TOKEN_USER and the SID it points to.
        let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
        sid_text(user.User.Sid)
    })
    .clone()
}

/// What GetTokenInformation gives for `class`, in a pointer-aligned buffer
/// (the structure first, the SIDs it points to after it).
pub(crate) fn token_info(
    token: HANDLE,
    class: TOKEN_INFORMATION_CLASS,
) -> std::result::Result<Vec<usize>, i32> {
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` a local.
    let sized = unsafe { GetTokenInformation(token, class, None, 0, &mut len) };
    if len == 0 {
        return Err(sized.err().map_or(0, |e| win32_code(&e)));
    }
    let mut buf = vec![0usize; (len as usize).div_ceil(std::mem::size_of::<usize>())];
    // SAFETY: an out-buffer of at least `len` bytes, pointer-aligned.
    unsafe { GetTokenInformation(token, class, Some(buf.as_mut_ptr().cast()), len, &mut len) }
        .map_err(|e| win32_code(&e))?;
    Ok(buf)
}

/// A SID's string form (`S-1-…`); `sid` must be a valid SID.
pub(crate) fn sid_text(sid: PSID) -> Result<String> {
    let mut text = PWSTR::null();
    // SAFETY: a valid SID, as the caller promises; `text` receives a LocalAlloc'd string.
    unsafe { ConvertSidToStringSidW(sid, &mut text) }
        .map_err(|e| werr("ConvertSidToStringSid", e))?;
    // SAFETY: a string ConvertSidToStringSidW just allocated.
    unsafe { take_string(text) }
}

/// The descriptor of every kernel object the supervisor makes
/// (`isolation::supervisor_only_sddl`), made once.
pub(crate) fn supervisor_only() -> Result<&'static SecurityDescriptor> {
    static SD: OnceLock<Result<SecurityDescriptor>> = OnceLock::new();
    SD.get_or_init(|| {
        SecurityDescriptor::from_sddl(&crate::isolation::supervisor_only_sddl(&user_sid()?))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// What kind of object `dacl_of` reads.
#[derive(Clone, Copy, Debug)]
pub enum ObjectKind {
    /// A process, job, pipe, event ...
    Kernel,
    /// A desktop or window station.
    Window,
}

/// The DACL of the object `handle` refers to, in SDDL, as the system
/// stored it (it may have mapped generic rights).
pub fn dacl_of(handle: HANDLE, kind: ObjectKind) -> Result<String> {
    let kind = match kind {
        ObjectKind::Kernel => SE_OBJECT_TYPE(6), // SE_KERNEL_OBJECT
        ObjectKind::Window => SE_OBJECT_TYPE(7), // SE_WINDOW_OBJECT
    };
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: a handle the caller holds; `sd` receives a LocalAlloc'd descriptor.
    let r = unsafe {
        GetSecurityInfo(
            handle,
            kind,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            None,
            None,
            Some(&mut sd),
        )
    };
    if r.0 != 0 {
        return Err(Error::os("GetSecurityInfo", r.0 as i32));
    }
    // SAFETY: a descriptor GetSecurityInfo just allocated.
    unsafe { take_sddl(sd, DACL_SECURITY_INFORMATION) }
}

/// The mandatory label of the file or folder `path`, in SDDL (`S:` and
/// its entries; empty where it has none), as the system stored it.
pub fn label_of(path: &std::path::Path) -> Result<String> {
    let wide = wide_z(path);
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: a NUL-terminated path; `sd` receives a LocalAlloc'd descriptor.
    let r = unsafe {
        GetNamedSecurityInfoW(
            PCWSTR(wide.as_ptr()),
            SE_FILE_OBJECT,
            LABEL_SECURITY_INFORMATION,
            None,
            None,
            None,
            None,
            &mut sd,
        )
    };
    if r.0 != 0 {
        return Err(Error::os(
            format!("reading the label of {path:?}"),
            r.0 as i32,
        ));
    }
    // SAFETY: a descriptor GetNamedSecurityInfoW just allocated.
    unsafe { take_sddl(sd, LABEL_SECURITY_INFORMATION) }
}

/// The part `info` of the descriptor `sd` in SDDL; `sd` freed.
///
/// # Safety
/// `sd` is a descriptor the system allocated with LocalAlloc, not used after.
unsafe fn take_sddl(sd: PSECURITY_DESCRIPTOR, info: OBJECT_SECURITY_INFORMATION) -> Result<String> {
    let mut text = PWSTR::null();
    // SAFETY: a valid descriptor, as the caller promises; `text` receives a LocalAlloc'd string.
    let made = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION,
            info,
            &mut text,
            None,
        )
    };
    // SAFETY: LocalAlloc'd, as the caller promises; no longer used.
    unsafe { local_free(sd.0) };
    made.map_err(|e| werr("ConvertSecurityDescriptorToStringSecurityDescriptor", e))?;
    // SAFETY: a string the conversion just allocated.
    unsafe { take_string(text) }
}

/// Frees what the system allocated with LocalAlloc.
///
/// # Safety
/// `p` is null or LocalAlloc'd memory no longer used.
pub(crate) unsafe fn local_free(p: *mut std::ffi::c_void) {
    // SAFETY: as the caller promises.
    unsafe { windows::Win32::Foundation::LocalFree(Some(HLOCAL(p))) };
}

/// The string `text`, freed.
///
/// # Safety
/// `text` is a NUL-terminated string the system allocated with LocalAlloc.
unsafe fn take_string(text: PWSTR) -> Result<String> {
    // SAFETY: NUL-terminated, as the caller promises.
    let s = unsafe { text.to_string() };
    // SAFETY: LocalAlloc'd, as the caller promises; not used after.
    unsafe { local_free(text.0.cast()) };
    s.map_err(|_| Error::invalid("string", "a string the system made is not UTF-16"))
}
