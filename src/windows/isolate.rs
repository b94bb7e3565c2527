//! Isolation levels on Windows, failing closed.
//!
//! Strict: the program runs in an AppContainer of its own, with no
//! capability (so no network, loopback included), under a SID derived from
//! a per-run name (`crate::isolation`: no profile is registered, userenv is
//! never called). Restricted: it runs with a restricted token of the
//! supervisor's own at low integrity (`token`), restricted to a SID of the
//! run's own. Either way what it may reach is granted to the run's SID
//! alone, one ACE per path, and taken back when the run ends (`Grant`): its
//! program (read, execute) and its folder (list), on themselves alone (not
//! the system's folders, which every AppContainer, and Users, read
//! already); its working directory (a fresh one when none is given) and the
//! `writable` paths (modify), the `readable` paths (read, execute),
//! inherited inside. A restricted program writes only below a low label:
//! its fresh directory is made with one, and the caller's `cwd` and
//! `writable` folders get one for the run (`LowLabel`, its old label put
//! back after). It starts suspended on the supervisor's own desktop
//! (`desktop`: one per process), and before its first instruction the
//! supervisor reads its token back: this run's AppContainer, or this run's
//! restricted low token, or it is ended and the run is refused.
//!
//! Before anything is created for a run, each level proves, once per
//! process, that this system enforces its mechanism: strict sets its SID
//! into a process attribute list; restricted makes a token as a run's,
//! reads it back and tries it (`token::canary`). Wine 8 refuses the first
//! (`ERROR_NOT_SUPPORTED`; a careless launcher then starts the child
//! unconfined) and accepts the second without keeping its restricting
//! SIDs: both are refused there, nothing started (`Error::Isolation`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use windows::core::PCWSTR;
use windows::Win32::Foundation::HANDLE;
use windows::Win32::Security::Authorization::ConvertStringSidToSidW;
use windows::Win32::Security::{PSID, SECURITY_CAPABILITIES, TOKEN_QUERY};
use windows::Win32::System::Threading::OpenProcessToken;

use super::attrs::AttrList;
use super::handle::{own as own_handle, wide_z, win32_code};
use crate::command::{Isolation, Level};
use crate::error::{Error, Result};

/// `PROC_THREAD_ATTRIBUTE_SECURITY_CAPABILITIES`.
pub(crate) const ATTR_SECURITY_CAPABILITIES: u32 = 0x0002_0009;

/// Whether `iso` can run here: Ok for none, and for each level where the
/// system enforces it; an `Error::Isolation` naming what this system does
/// not enforce otherwise (see the module's note).
pub(crate) fn check(iso: &Isolation) -> Result<()> {
    // What the system takes does not change while the process lives: each
    // level's proof is made once.
    static STRICT: OnceLock<Result<()>> = OnceLock::new();
    static RESTRICTED: OnceLock<Result<()>> = OnceLock::new();
    match iso.level {
        Level::None => Ok(()),
        Level::Strict => STRICT.get_or_init(appcontainer_taken).clone(),
        Level::Restricted => RESTRICTED.get_or_init(super::token::enforced).clone(),
    }
}

/// A SID from its string form, freed on drop.
pub(crate) struct Sid(pub PSID);

// SAFETY: a SID is plain memory owned by this value; nothing aliases it.
unsafe impl Send for Sid {}
// SAFETY: as above; it is only read once made.
unsafe impl Sync for Sid {}

impl Sid {
    pub(crate) fn parse(s: &str) -> Result<Sid> {
        let wide = wide_z(s);
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
        unsafe { super::security::local_free(self.0 .0) };
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

/// An isolated run's confinement: its level, its SID, its token
/// (restricted), its working directory, what was granted to it and the
/// labels it lowered (taken back on drop, before a fresh directory is
/// removed).
pub(crate) struct Contained {
    pub level: Level,
    pub sid: Sid,
    /// The same SID as a string.
    pub sid_text: String,
    /// Restricted: the token its program starts with (`token`).
    pub token: Option<super::handle::OwnedHandle>,
    pub cwd: PathBuf,
    grants: Vec<Grant>,
    labels: Vec<LowLabel>,
    workdir: Option<PathBuf>,
}

impl Contained {
    /// The working directory made for the run, left in place (the caller's).
    pub fn keep_workdir(&mut self) -> Option<PathBuf> {
        self.workdir.take()
    }

    /// Whether the started (suspended) `process` runs confined as this run
    /// asked: its token, read back. Err names the level and what is not so.
    pub fn verify(&self, process: HANDLE) -> Result<()> {
        match self.level {
            Level::Strict => verify_contained(process, &self.sid),
            _ => super::token::verify_process(process, &self.sid),
        }
        .map_err(|what| Error::isolation(self.level, what, None))
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        self.labels.clear();
        self.grants.clear();
        if let Some(d) = &self.workdir {
            // The job's processes may hold files a moment after it is ended.
            for _ in 0..50 {
                if std::fs::remove_dir_all(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Everything an isolated run needs before its start, given its `plan`
/// (`plan`): None without a level.
pub(crate) fn contain(
    cmd: &crate::command::Command,
    plan: Option<Vec<crate::isolation::WinGrant>>,
) -> Result<Option<Contained>> {
    let level = cmd.isolation.level;
    let Some(plan) = plan.filter(|_| level != Level::None) else {
        return Ok(None);
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let name = crate::isolation::appcontainer_name(std::process::id(), run);
    let restricted = level == Level::Restricted;
    let sid_text = if restricted {
        crate::isolation::restricted_run_sid(&name)
    } else {
        crate::isolation::appcontainer_sid(&name)
    };
    let sid = Sid::parse(&sid_text)?;
    let token = if restricted {
        Some(super::token::restricted_token(&sid_text)?)
    } else {
        None
    };
    let mut c = Contained {
        level,
        sid,
        sid_text: sid_text.clone(),
        token,
        cwd: PathBuf::new(),
        grants: Vec::new(),
        labels: Vec::new(),
        workdir: None,
    };
    c.cwd = match &cmd.cwd {
        Some(d) => d.clone(),
        None => {
            let d =
                std::env::temp_dir().join(format!("winsandbox-work-{}-{run}", std::process::id()));
            // Made with its final ACL (and label): nothing granted afterwards.
            let sd = super::security::SecurityDescriptor::from_sddl(
                &crate::isolation::fresh_workdir_sddl(
                    &super::security::user_sid()?,
                    &sid_text,
                    restricted,
                ),
            )?;
            let sa = sd.attributes(false);
            let wide = wide_z(&d);
            // SAFETY: a NUL-terminated path; `sa` and its descriptor outlive the call.
            unsafe {
                windows::Win32::Storage::FileSystem::CreateDirectoryW(
                    PCWSTR(wide.as_ptr()),
                    Some(&sa),
                )
            }
            .map_err(|e| Error::os(format!("creating {d:?}"), win32_code(&e)))?;
            c.workdir = Some(d.clone());
            d
        }
    };
    for g in plan {
        let path = Path::new(&g.path);
        c.grants.push(Grant::new(path, &c.sid, g.access, g.tree)?);
        // Low integrity writes only below a low label: the caller's `cwd`
        // and `writable` get one for the run.
        if restricted && g.access == crate::isolation::FILE_MODIFY {
            c.labels.push(LowLabel::new(path, g.tree)?);
        }
    }
    Ok(Some(c))
}

/// What an isolated run will grant its SID (`isolation::windows_grants`),
/// planned before anything starts or is changed: grants that may not be
/// made (the system's folders, a drive) are errors naming the argument.
/// None without a level.
pub(crate) fn plan(
    iso: &crate::command::Isolation,
    cwd: Option<&Path>,
    program: Option<&Path>,
) -> Result<Option<Vec<crate::isolation::WinGrant>>> {
    if iso.level == Level::None {
        return Ok(None);
    }
    // Absolute, as the system resolves it (no link followed, no `\\?\`):
    // a relative path is planned and granted where it really is.
    let text = |field: &'static str, p: &Path| -> Result<String> {
        let a = std::path::absolute(p).map_err(|e| Error::from_io(format!("{field} {p:?}"), e))?;
        a.to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(field, format!("{p:?}: not valid Unicode")))
    };
    let all = |field, ps: &[PathBuf]| {
        ps.iter()
            .map(|p| text(field, p))
            .collect::<Result<Vec<_>>>()
    };
    let readable = all("readable", &iso.readable)?;
    let writable = all("writable", &iso.writable)?;
    let cwd = cwd.map(|d| text("cwd", d)).transpose()?;
    let program = program
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| p.to_str().map(str::to_string));
    let system: Vec<String> = [
        "SystemRoot",
        "ProgramFiles",
        "ProgramFiles(x86)",
        "ProgramW6432",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .collect();
    crate::isolation::windows_grants(
        program.as_deref(),
        cwd.as_deref(),
        &refs(&readable),
        &refs(&writable),
        &refs(&system),
    )
    .map(Some)
    .map_err(|(field, why)| Error::invalid(field, why))
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// One ACE for a run's SID on a path, removed on drop (every ACE of that
/// SID goes: the SID is the run's alone). `tree`: inherited by what is in
/// a folder, existing files included (the system walks the tree); else on
/// that one file or folder, nothing walked.
struct Grant {
    path: Vec<u16>,
    sid: PSID,
    tree: bool,
}

// SAFETY: the SID pointer stays valid for the grant's life (its `Contained` owns it, and drops the grants first).
unsafe impl Send for Grant {}
// SAFETY: as above.
unsafe impl Sync for Grant {}

impl Grant {
    fn new(path: &Path, sid: &Sid, access: u32, tree: bool) -> Result<Grant> {
        let g = Grant {
            path: wide_z(path),
            sid: sid.0,
            tree: tree && path.is_dir(),
        };
        g.set(
            windows::Win32::Security::Authorization::GRANT_ACCESS,
            access,
        )
        .map_err(|code| Error::os(format!("granting this run's SID access to {path:?}"), code))?;
        Ok(g)
    }

    /// Sets one entry for the SID into the path's DACL.
    fn set(
        &self,
        mode: windows::Win32::Security::Authorization::ACCESS_MODE,
        access: u32,
    ) -> std::result::Result<(), i32> {
        let inherit = self.tree;
        use windows::Win32::Security::Authorization::*;
        use windows::Win32::Security::{
            ACE_FLAGS, ACL, DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
            SUB_CONTAINERS_AND_OBJECTS_INHERIT,
        };
        let name = PCWSTR(self.path.as_ptr());
        let mut old: *mut ACL = std::ptr::null_mut();
        let mut sd = PSECURITY_DESCRIPTOR::default();
        // SAFETY: a NUL-terminated path; the out-pointers are locals.
        let r = unsafe {
            GetNamedSecurityInfoW(
                name,
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                None,
                None,
                Some(&mut old),
                None,
                &mut sd,
            )
        };
        if r.0 != 0 {
            return Err(r.0 as i32);
        }
        let entry = EXPLICIT_ACCESS_W {
            grfAccessPermissions: access,
            grfAccessMode: mode,
            grfInheritance: if inherit {
                SUB_CONTAINERS_AND_OBJECTS_INHERIT
            } else {
                ACE_FLAGS(0)
            },
            Trustee: TRUSTEE_W {
                TrusteeForm: TRUSTEE_IS_SID,
                TrusteeType: TRUSTEE_IS_UNKNOWN,
                ptstrName: windows::core::PWSTR(self.sid.0.cast()),
                ..Default::default()
            },
        };
        let mut new: *mut ACL = std::ptr::null_mut();
        // SAFETY: `old` points into `sd`, alive until freed below; `new` is ours to free.
        let r = unsafe { SetEntriesInAclW(Some(&[entry]), Some(old), &mut new) };
        let result = if r.0 != 0 {
            Err(r.0 as i32)
        } else if self.tree {
            // SAFETY: a NUL-terminated path and the ACL just made.
            let r = unsafe {
                SetNamedSecurityInfoW(
                    name,
                    SE_FILE_OBJECT,
                    DACL_SECURITY_INFORMATION,
                    None,
                    None,
                    Some(new),
                    None,
                )
            };
            if r.0 != 0 {
                Err(r.0 as i32)
            } else {
                Ok(())
            }
        } else {
            set_one(name, new)
        };
        // SAFETY: both were allocated by the system with LocalAlloc.
        unsafe {
            super::security::local_free(new.cast());
            super::security::local_free(sd.0);
        }
        result
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let _ = self.set(windows::Win32::Security::Authorization::REVOKE_ACCESS, 0);
    }
}

/// A low mandatory label on a caller's folder or file, for a restricted
/// run (its program, at low integrity, writes only below one); the label
/// it had is put back on drop. `tree`: inherited inside (the system walks
/// the folder, as for a `Grant`).
pub struct LowLabel {
    path: Vec<u16>,
    /// The label it had, in SDDL (`S:` and its entries; empty for none).
    old: String,
}

impl LowLabel {
    pub fn new(path: &Path, tree: bool) -> Result<LowLabel> {
        let old = super::security::label_of(path)?;
        let l = LowLabel {
            path: wide_z(path),
            old,
        };
        l.set(&crate::isolation::low_label_sddl(tree && path.is_dir()))
            .map_err(|code| Error::os(format!("lowering the label of {path:?}"), code))?;
        Ok(l)
    }

    /// Sets the label `sddl` says (an `S:` part; none if it has no entry:
    /// an empty SACL, which takes any label off).
    fn set(&self, sddl: &str) -> std::result::Result<(), i32> {
        use windows::Win32::Security::Authorization::{SetNamedSecurityInfoW, SE_FILE_OBJECT};
        use windows::Win32::Security::{
            GetSecurityDescriptorSacl, InitializeAcl, ACL, ACL_REVISION, LABEL_SECURITY_INFORMATION,
        };
        // An entry to set: parsed; none (the label it had was none): not
        // parsed at all, so that putting "no label" back cannot fail.
        let sd = match sddl.contains('(') {
            true => Some(
                super::security::SecurityDescriptor::from_sddl(sddl)
                    .map_err(|e| e.os_code().unwrap_or(87))?,
            ),
            false => None,
        };
        let mut sacl: *mut ACL = std::ptr::null_mut();
        if let Some(sd) = &sd {
            let (mut present, mut defaulted) = (Default::default(), Default::default());
            // SAFETY: a descriptor we own; the out-pointers are locals; `sacl`
            // points into `sd`, which outlives its use below.
            unsafe {
                GetSecurityDescriptorSacl(sd.as_ptr(), &mut present, &mut sacl, &mut defaulted)
            }
            .map_err(|e| win32_code(&e))?;
        }
        // No entry: an empty ACL, which takes any label off.
        let mut empty = ACL::default();
        if sacl.is_null() {
            // SAFETY: `empty` is an ACL header of the size given.
            unsafe { InitializeAcl(&mut empty, std::mem::size_of::<ACL>() as u32, ACL_REVISION) }
                .map_err(|e| win32_code(&e))?;
            sacl = &mut empty;
        }
        // SAFETY: a NUL-terminated path; `sacl` is valid (in `sd` or `empty`).
        let r = unsafe {
            SetNamedSecurityInfoW(
                PCWSTR(self.path.as_ptr()),
                SE_FILE_OBJECT,
                LABEL_SECURITY_INFORMATION,
                None,
                None,
                None,
                Some(sacl),
            )
        };
        if r.0 != 0 {
            Err(r.0 as i32)
        } else {
            Ok(())
        }
    }
}

impl Drop for LowLabel {
    fn drop(&mut self) {
        let old = std::mem::take(&mut self.old);
        let _ = self.set(&old);
    }
}

/// Sets `dacl` on the one file or folder `name` (SetFileSecurityW: no walk
/// of what is inside).
fn set_one(name: PCWSTR, dacl: *mut windows::Win32::Security::ACL) -> std::result::Result<(), i32> {
    use windows::Win32::Security::{
        InitializeSecurityDescriptor, SetFileSecurityW, SetSecurityDescriptorDacl,
        DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SECURITY_DESCRIPTOR,
    };
    let mut sd = SECURITY_DESCRIPTOR::default();
    let psd = PSECURITY_DESCRIPTOR((&mut sd as *mut SECURITY_DESCRIPTOR).cast());
    // SAFETY: `sd` is a local descriptor; `dacl` lives until after the call.
    unsafe {
        InitializeSecurityDescriptor(psd, 1) // SECURITY_DESCRIPTOR_REVISION
            .and_then(|()| SetSecurityDescriptorDacl(psd, true, Some(dacl), false))
            .and_then(|()| SetFileSecurityW(name, DACL_SECURITY_INFORMATION, psd).ok())
    }
    .map_err(|e| win32_code(&e))
}

/// The token of `process` (a handle the caller holds), for reading back.
pub(crate) fn process_token(
    process: HANDLE,
) -> std::result::Result<super::handle::OwnedHandle, String> {
    let mut token = HANDLE::default();
    // SAFETY: a process handle the caller holds; `token` is a local.
    unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) }.map_err(|e| {
        format!(
            "OpenProcessToken of the child failed (error {})",
            win32_code(&e)
        )
    })?;
    // SAFETY: a token handle just opened, ours alone.
    Ok(unsafe { own_handle(token) })
}

/// Whether the started (suspended) `process` runs in an AppContainer with
/// `sid`: its token, read back. Err: what is not so.
fn verify_contained(process: HANDLE, sid: &Sid) -> std::result::Result<(), String> {
    use windows::Win32::Security::{EqualSid, TokenAppContainerSid, TokenIsAppContainer};
    let token = process_token(process)?;
    let read = |class, what: &str| {
        super::security::token_info(super::handle::raw(&token), class)
            .map_err(|c| format!("its {what} could not be read (error {c})"))
    };
    // A DWORD: the low half of the first word (x86-64 and ARM64 are little-endian).
    if read(TokenIsAppContainer, "token")?[0] as u32 == 0 {
        return Err("the child's token is not an AppContainer's".into());
    }
    // TOKEN_APPCONTAINER_INFORMATION (the SID's pointer) and the SID after it.
    let buf = read(TokenAppContainerSid, "AppContainer SID")?;
    let theirs = PSID(buf[0] as *mut _);
    // SAFETY: two valid SIDs (the token's points into `buf`).
    if theirs.0.is_null() || unsafe { EqualSid(theirs, sid.0) }.is_err() {
        return Err("the child's AppContainer SID is not this run's".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appcontainer_attribute_is_windows_own() {
        // PROC_THREAD_ATTRIBUTE_SECURITY_CAPABILITIES: number 9, input (0x20000).
        assert_eq!(ATTR_SECURITY_CAPABILITIES, 0x0002_0009);
        // SECURITY_CAPABILITIES on x64: SID pointer, array pointer, two DWORDs.
        assert_eq!(std::mem::size_of::<SECURITY_CAPABILITIES>(), 24);
    }
}
