//! The restricted level's token: a restricted version of the supervisor's
//! own (Microsoft's "Restricted Tokens": so no privilege is needed to start
//! a program with it), made, read back, and proved.
//!
//! Made: every privilege but SeChangeNotify deleted, every group but
//! Everyone, Users, INTERACTIVE, Authenticated Users and the logon session
//! deny-only, restricted to the run's SID, Users, Everyone, RESTRICTED and
//! the logon session (`isolation::restricting_sids`; Chromium's
//! `USER_LIMITED` with a SID of the run's own), at low integrity, and a
//! default DACL of its own. Every access it makes must pass two checks:
//! the user's (its SID stays, so the user's folders granted to the run
//! pass it), and the restricting SIDs' (so what only the user may open, it
//! may not; what another run was granted, it may not).
//!
//! Read back (`verify`): restricted, to this run's SID, low, no privilege
//! left. Proved (`canary`), once per process: impersonating such a token,
//! the supervisor opens a file granted to the user alone (must be denied),
//! one granted to the token's SID (must be read: the control) and writes it
//! (must be denied: it has no low label). Wine 8 keeps none of this: its
//! token reads back without restricting SIDs, and the level is refused.

use std::path::Path;

use windows::core::PCWSTR;
use windows::Win32::Foundation::{HANDLE, LUID};
use windows::Win32::Security::{
    CreateRestrictedToken, EqualSid, GetLengthSid, GetSecurityDescriptorDacl,
    ImpersonateLoggedOnUser, IsTokenRestricted, RevertToSelf, SetTokenInformation,
    TokenDefaultDacl, TokenGroups, TokenIntegrityLevel, TokenPrivileges, TokenRestrictedSids, ACL,
    DISABLE_MAX_PRIVILEGE, LUID_AND_ATTRIBUTES, SID_AND_ATTRIBUTES, TOKEN_ALL_ACCESS,
    TOKEN_DEFAULT_DACL, TOKEN_GROUPS, TOKEN_MANDATORY_LABEL, TOKEN_PRIVILEGES,
};
use windows::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::handle::{own, raw, wide_z, win32_code, OwnedHandle};
use super::isolate::Sid;
use super::security::{sid_text, token_info, user_sid, SecurityDescriptor};
use crate::command::Level;
use crate::error::{Error, Result};
use crate::isolation::{
    canary_granted_sddl, group_kept, restricted_default_dacl_sddl, restricting_sids, LOW_INTEGRITY,
};

/// `SE_GROUP_INTEGRITY`, `SE_GROUP_LOGON_ID`.
const GROUP_INTEGRITY: u32 = 0x20;
const GROUP_LOGON_ID: u32 = 0xC000_0000;
/// `SE_CHANGE_NOTIFY_PRIVILEGE`: the one privilege a restricted token keeps.
const CHANGE_NOTIFY: LUID = LUID {
    LowPart: 23,
    HighPart: 0,
};

fn refused(what: impl Into<String>, code: Option<i32>) -> Error {
    Error::isolation(Level::Restricted, what, code)
}

/// The SIDs and attributes of a TOKEN_GROUPS that `token_info` read.
fn groups(buf: &[usize]) -> &[SID_AND_ATTRIBUTES] {
    // SAFETY: `buf` holds a TOKEN_GROUPS (GetTokenInformation wrote it),
    // its GroupCount entries after its count, inside the buffer.
    unsafe {
        let g = &*(buf.as_ptr() as *const TOKEN_GROUPS);
        std::slice::from_raw_parts(g.Groups.as_ptr(), g.GroupCount as usize)
    }
}

/// The restricted token a run with SID `run_text` starts its program with
/// (see the module's note).
pub(crate) fn restricted_token(run_text: &str) -> Result<OwnedHandle> {
    let mut own_token = HANDLE::default();
    // SAFETY: our own process's token, into a local handle. All access, as
    // Chromium opens it: the restricted token's handle has the same rights,
    // and it is adjusted, duplicated, impersonated and assigned.
    unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_ALL_ACCESS, &mut own_token) }
        .map_err(|e| Error::os("OpenProcessToken", win32_code(&e)))?;
    // SAFETY: a token handle just opened, ours alone.
    let own_token = unsafe { own(own_token) };
    let buf = token_info(raw(&own_token), TokenGroups)
        .map_err(|c| Error::os("GetTokenInformation(TokenGroups)", c))?;
    let mut deny = Vec::new();
    let mut logon = None;
    for g in groups(&buf) {
        let text = sid_text(g.Sid)?;
        if g.Attributes & GROUP_LOGON_ID == GROUP_LOGON_ID {
            logon = Some(text.clone());
        }
        if !group_kept(&text) && g.Attributes & GROUP_INTEGRITY == 0 {
            deny.push(SID_AND_ATTRIBUTES {
                Sid: g.Sid,
                Attributes: 0,
            });
        }
    }
    let sids = restricting_sids(run_text, logon.as_deref())
        .iter()
        .map(|s| Sid::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let restrict: Vec<SID_AND_ATTRIBUTES> = sids
        .iter()
        .map(|s| SID_AND_ATTRIBUTES {
            Sid: s.0,
            Attributes: 0,
        })
        .collect();
    let mut token = HANDLE::default();
    // SAFETY: a valid token handle; the SID arrays (and `buf`, `sids` they
    // point into) outlive the call.
    unsafe {
        CreateRestrictedToken(
            raw(&own_token),
            DISABLE_MAX_PRIVILEGE,
            Some(&deny),
            None,
            Some(&restrict),
            &mut token,
        )
    }
    .map_err(|e| refused("CreateRestrictedToken failed", Some(win32_code(&e))))?;
    // SAFETY: a token handle just made, ours alone.
    let token = unsafe { own(token) };

    let low = Sid::parse(LOW_INTEGRITY)?;
    let label = TOKEN_MANDATORY_LABEL {
        Label: SID_AND_ATTRIBUTES {
            Sid: low.0,
            Attributes: GROUP_INTEGRITY,
        },
    };
    // SAFETY: the label and the SID it points to outlive the call; the
    // length counts both, as the call requires.
    unsafe {
        SetTokenInformation(
            raw(&token),
            TokenIntegrityLevel,
            (&label as *const TOKEN_MANDATORY_LABEL).cast(),
            std::mem::size_of::<TOKEN_MANDATORY_LABEL>() as u32 + GetLengthSid(low.0),
        )
    }
    .map_err(|e| {
        refused(
            "lowering the token's integrity failed",
            Some(win32_code(&e)),
        )
    })?;

    let sd = SecurityDescriptor::from_sddl(&restricted_default_dacl_sddl(&user_sid()?, run_text))?;
    let (mut present, mut defaulted) = (Default::default(), Default::default());
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: a descriptor we own; the out-pointers are locals; `dacl`
    // points into `sd`, alive past the SetTokenInformation below.
    unsafe { GetSecurityDescriptorDacl(sd.as_ptr(), &mut present, &mut dacl, &mut defaulted) }
        .map_err(|e| Error::os("GetSecurityDescriptorDacl", win32_code(&e)))?;
    let default_dacl = TOKEN_DEFAULT_DACL { DefaultDacl: dacl };
    // SAFETY: the structure and the ACL it points to outlive the call.
    unsafe {
        SetTokenInformation(
            raw(&token),
            TokenDefaultDacl,
            (&default_dacl as *const TOKEN_DEFAULT_DACL).cast(),
            std::mem::size_of::<TOKEN_DEFAULT_DACL>() as u32,
        )
    }
    .map_err(|e| {
        refused(
            "setting the token's default DACL failed",
            Some(win32_code(&e)),
        )
    })?;
    Ok(token)
}

/// Whether `token` is what `restricted_token` makes for `run`: restricted,
/// to `run` among its restricting SIDs, at low integrity, no privilege but
/// SeChangeNotify. Err: what is not so.
pub(crate) fn verify(token: HANDLE, run: &Sid) -> std::result::Result<(), String> {
    // SAFETY: a token handle the caller holds.
    if unsafe { IsTokenRestricted(token) }.is_err() {
        return Err(
            "restricted tokens are accepted and not enforced here: the token read back \
                    has no restricting SIDs"
                .into(),
        );
    }
    let read = |class, what: &str| {
        token_info(token, class)
            .map_err(|c| format!("its {what} could not be read back (error {c})"))
    };
    let buf = read(TokenRestrictedSids, "restricting SIDs")?;
    let is_run = |g: &SID_AND_ATTRIBUTES| {
        // SAFETY: two valid SIDs (the token's point into `buf`).
        unsafe { EqualSid(g.Sid, run.0) }.is_ok()
    };
    if !groups(&buf).iter().any(is_run) {
        return Err("the token's restricting SIDs do not hold this run's".into());
    }
    let buf = read(TokenIntegrityLevel, "integrity level")?;
    // SAFETY: `buf` holds a TOKEN_MANDATORY_LABEL and the SID it points to.
    let label = unsafe { &*(buf.as_ptr() as *const TOKEN_MANDATORY_LABEL) };
    let level = sid_text(label.Label.Sid).map_err(|e| e.to_string())?;
    if level != LOW_INTEGRITY {
        return Err(format!(
            "the token's integrity is {level}, not low ({LOW_INTEGRITY})"
        ));
    }
    let buf = read(TokenPrivileges, "privileges")?;
    // SAFETY: `buf` holds a TOKEN_PRIVILEGES, its PrivilegeCount entries
    // after its count, inside the buffer.
    let privileges: &[LUID_AND_ATTRIBUTES] = unsafe {
        let p = &*(buf.as_ptr() as *const TOKEN_PRIVILEGES);
        std::slice::from_raw_parts(p.Privileges.as_ptr(), p.PrivilegeCount as usize)
    };
    if let Some(p) = privileges.iter().find(|p| p.Luid != CHANGE_NOTIFY) {
        return Err(format!(
            "the token kept a privilege (LUID {}) it should not have",
            p.Luid.LowPart
        ));
    }
    Ok(())
}

/// The token of the started (suspended) `process`, read back (`verify`).
pub(crate) fn verify_process(process: HANDLE, run: &Sid) -> std::result::Result<(), String> {
    let token = super::isolate::process_token(process)?;
    verify(raw(&token), run)
}

/// Proves the kernel enforces `token` (see the module's note): Err names
/// what it does not. `user`, `run_text`: the SIDs of the supervisor's user
/// and of the token's run.
pub(crate) fn canary(token: &OwnedHandle, user: &str, run_text: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("winsandbox-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::from_io(format!("{dir:?}"), e))?;
    let not_granted = dir.join("not-granted");
    let granted = dir.join("granted");
    let made = create_with(&not_granted, &crate::isolation::supervisor_only_sddl(user))
        .and_then(|()| create_with(&granted, &canary_granted_sddl(user, run_text)));
    let tried = made.and_then(|()| impersonating(token, &not_granted, &granted));
    let _ = std::fs::remove_dir_all(&dir);
    let [secret, read, write] = tried?;
    match secret {
        Ok(()) => Err(refused(
            "restricted tokens are not enforced here: a file granted to the user alone was \
             read under one",
            None,
        )),
        Err(5) => match (read, write) {
            (Err(c), _) => Err(refused(
                "the canary could not read the file granted to its token",
                Some(c),
            )),
            (Ok(()), Ok(())) => Err(refused(
                "integrity levels are not enforced here: a file without a low label was \
                 written at low integrity",
                None,
            )),
            (Ok(()), Err(_)) => Ok(()),
        },
        Err(c) => Err(refused(
            "the canary's read of a file not granted failed otherwise than denied",
            Some(c),
        )),
    }
}

/// Makes an empty file with the descriptor `sddl`.
fn create_with(path: &Path, sddl: &str) -> Result<()> {
    let sd = SecurityDescriptor::from_sddl(sddl)?;
    let sa = sd.attributes(false);
    let wide = wide_z(path);
    // SAFETY: a NUL-terminated path; `sa` and its descriptor outlive the call.
    let h = unsafe {
        CreateFileW(
            PCWSTR(wide.as_ptr()),
            FILE_GENERIC_WRITE.0,
            FILE_SHARE_READ,
            Some(&sa),
            windows::Win32::Storage::FileSystem::CREATE_ALWAYS,
            FILE_ATTRIBUTE_NORMAL,
            None,
        )
    }
    .map_err(|e| Error::os(format!("creating {path:?}"), win32_code(&e)))?;
    // SAFETY: a handle just made, ours alone; closed on drop.
    drop(unsafe { own(h) });
    Ok(())
}

/// Opens `path` for `access` and closes it: the error code if refused.
fn try_open(path: &Path, access: u32) -> std::result::Result<(), i32> {
    let wide = wide_z(path);
    // SAFETY: a NUL-terminated path; no descriptor, no template.
    let h = unsafe {
        CreateFileW(
            PCWSTR(wide.as_ptr()),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            None,
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            None,
        )
    }
    .map_err(|e| win32_code(&e))?;
    // SAFETY: a handle just opened, ours alone; closed on drop.
    drop(unsafe { own(h) });
    Ok(())
}

/// The three opens of the canary, made by a thread of its own while it
/// impersonates `token` (no other thread ever runs as it).
fn impersonating(
    token: &OwnedHandle,
    not_granted: &Path,
    granted: &Path,
) -> Result<[std::result::Result<(), i32>; 3]> {
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: a primary token the caller holds, with TOKEN_QUERY |
            // TOKEN_DUPLICATE; it applies to this thread alone.
            unsafe { ImpersonateLoggedOnUser(raw(token)) }.map_err(|e| {
                refused(
                    "the supervisor could not impersonate the restricted token",
                    Some(win32_code(&e)),
                )
            })?;
            let tried = [
                try_open(not_granted, FILE_GENERIC_READ.0),
                try_open(granted, FILE_GENERIC_READ.0),
                try_open(granted, FILE_GENERIC_WRITE.0),
            ];
            // SAFETY: ends this thread's impersonation; no arguments.
            unsafe { RevertToSelf() }.map_err(|e| Error::os("RevertToSelf", win32_code(&e)))?;
            Ok(tried)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sandbox("the canary's thread panicked")))
    })
}

/// For the tests: a restricted token made for a run named `name`, read
/// back. Err: it could not be made; Ok(Err): what the read back found.
pub fn try_restricted_token(name: &str) -> Result<std::result::Result<(), String>> {
    let text = crate::isolation::restricted_run_sid(name);
    let sid = Sid::parse(&text)?;
    let token = restricted_token(&text)?;
    Ok(verify(raw(&token), &sid))
}

/// Whether the restricted level is enforced here: a token made as a run's
/// would be, read back and proved (`canary`). Made once per process.
pub(crate) fn enforced() -> Result<()> {
    let text =
        crate::isolation::restricted_run_sid(&format!("winsandbox.canary.{}", std::process::id()));
    let sid = Sid::parse(&text)?;
    let token = restricted_token(&text)?;
    verify(raw(&token), &sid).map_err(|what| refused(what, None))?;
    canary(&token, &user_sid()?, &text)
}
