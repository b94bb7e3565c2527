//! Isolation levels on Windows: fail closed.
//!
//! Before anything is created for a run, each level proves that this
//! system takes its mechanism: strict sets a per-run AppContainer SID
//! (derived, no profile: `crate::isolation`) into a process attribute
//! list; restricted makes a restricted token of the supervisor's own and
//! reads it back. Wine 8 refuses the first (`ERROR_NOT_SUPPORTED`; a
//! careless launcher then starts the child unconfined) and accepts the
//! second without keeping its restricting SIDs: both are refused there,
//! nothing started (`Error::Isolation`). Where the mechanism is taken, the
//! launch under it (the SID's grants on the program's folder, its working
//! directory and the granted paths; the restricted token's desktop) is not
//! built in this version, so the level is refused too: never run weaker.

use windows::core::PCWSTR;
use windows::Win32::Foundation::{HANDLE, HLOCAL};
use windows::Win32::Security::Authorization::ConvertStringSidToSidW;
use windows::Win32::Security::{
    CreateRestrictedToken, IsTokenRestricted, DISABLE_MAX_PRIVILEGE, PSID, SECURITY_CAPABILITIES,
    SID_AND_ATTRIBUTES, TOKEN_ASSIGN_PRIMARY, TOKEN_DUPLICATE, TOKEN_QUERY,
};
use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::handle::{own as own_handle, win32_code};
use super::spawn::AttrList;
use crate::command::{Isolation, Level};
use crate::error::{Error, Result};

/// `PROC_THREAD_ATTRIBUTE_SECURITY_CAPABILITIES`.
pub(crate) const ATTR_SECURITY_CAPABILITIES: u32 = 0x0002_0009;

/// Whether `iso` can run here: Ok for none; an `Error::Isolation` naming
/// what this system does not enforce otherwise (see the module's note).
pub(crate) fn check(iso: &Isolation) -> Result<()> {
    match iso.level {
        Level::None => Ok(()),
        Level::Strict => {
            appcontainer_taken()?;
            Err(Error::isolation(
                Level::Strict,
                "this version does not yet launch into an AppContainer (its SID's grants on \
                 the program, the working directory and the granted paths): refused rather \
                 than run without one",
                None,
            ))
        }
        Level::Restricted => {
            restricted_token_kept()?;
            Err(Error::isolation(
                Level::Restricted,
                "this version does not yet launch with a restricted token (its desktop and \
                 its grants): refused rather than run without one",
                None,
            ))
        }
    }
}

/// A SID from its string form, freed on drop.
struct Sid(PSID);

impl Sid {
    fn parse(s: &str) -> Result<Sid> {
        let wide: Vec<u16> = s.encode_utf16().chain(Some(0)).collect();
        let mut sid = PSID::default();
        // SAFETY: a NUL-terminated string; `sid` receives a LocalAlloc'd SID.
        unsafe { ConvertStringSidToSidW(PCWSTR(wide.as_ptr()), &mut sid) }
            .map_err(|e| Error::os(format!("ConvertStringSidToSid({s})"), win32_code(&e)))?;
        Ok(Sid(sid))
    }
}

impl Drop for Sid {
    fn drop(&mut self) {
        // SAFETY: the SID was allocated by ConvertStringSidToSidW with LocalAlloc.
        unsafe { windows::Win32::Foundation::LocalFree(Some(HLOCAL(self.0 .0))) };
    }
}

/// The per-run AppContainer SID set into an attribute list, as a launch
/// would: Err where the system refuses it (Wine: ERROR_NOT_SUPPORTED).
fn appcontainer_taken() -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let name = crate::isolation::appcontainer_name(std::process::id(), run);
    let sid = Sid::parse(&crate::isolation::appcontainer_sid(&name))?;
    let caps = SECURITY_CAPABILITIES {
        AppContainerSid: sid.0,
        Capabilities: std::ptr::null_mut(),
        CapabilityCount: 0,
        Reserved: 0,
    };
    let mut list = AttrList::new(1)?;
    // SAFETY: `caps` (and the SID it points to) outlive `list`.
    unsafe {
        list.set_bytes(
            ATTR_SECURITY_CAPABILITIES,
            (&caps as *const SECURITY_CAPABILITIES).cast(),
            std::mem::size_of::<SECURITY_CAPABILITIES>(),
        )
    }
    .map_err(|e| {
        Error::isolation(
            Level::Strict,
            "no AppContainer on this system: UpdateProcThreadAttribute(SECURITY_CAPABILITIES) \
             failed",
            Some(win32_code(&e)),
        )
    })?;
    drop(list); // before `caps` and the SID it points to
    Ok(())
}

/// A restricted token of the supervisor's own, read back: Err where the
/// system drops its restricting SIDs (Wine).
fn restricted_token_kept() -> Result<()> {
    let mut own = HANDLE::default();
    // SAFETY: our own process's token, into a local handle.
    unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_DUPLICATE | TOKEN_QUERY | TOKEN_ASSIGN_PRIMARY,
            &mut own,
        )
    }
    .map_err(|e| Error::os("OpenProcessToken", win32_code(&e)))?;
    // SAFETY: a token handle just opened, ours alone.
    let own = unsafe { own_handle(own) };
    let everyone = Sid::parse("S-1-1-0")?;
    let restrict = [SID_AND_ATTRIBUTES {
        Sid: everyone.0,
        Attributes: 0,
    }];
    let mut token = HANDLE::default();
    // SAFETY: a valid token handle; the SID array outlives the call.
    unsafe {
        CreateRestrictedToken(
            super::handle::raw(&own),
            DISABLE_MAX_PRIVILEGE,
            None,
            None,
            Some(&restrict),
            &mut token,
        )
    }
    .map_err(|e| {
        Error::isolation(
            Level::Restricted,
            "CreateRestrictedToken failed",
            Some(win32_code(&e)),
        )
    })?;
    // SAFETY: a token handle just made, ours alone.
    let token = unsafe { own_handle(token) };
    // SAFETY: a token handle we own.
    if unsafe { IsTokenRestricted(super::handle::raw(&token)) }.is_err() {
        return Err(Error::isolation(
            Level::Restricted,
            "restricted tokens are accepted and not enforced here: the token read back has \
             no restricting SIDs",
            None,
        ));
    }
    Ok(())
}
