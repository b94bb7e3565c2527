//! Starting a child straight into its job.
//!
//! `PROC_THREAD_ATTRIBUTE_JOB_LIST` puts the child in the job before its first
//! instruction; where the system lacks it, the child starts suspended, is
//! assigned, then resumed (a guard terminates it if a step fails).
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` lets exactly its three stdio handles
//! through. A supervisor already in a job nests the child's job inside it
//! (Windows 8+); `CREATE_BREAKAWAY_FROM_JOB` is used only where the outer job
//! allows it, and only when nesting is refused or UI limits need a top-level job.

use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use windows::core::{PCWSTR, PWSTR};
use windows::Win32::System::Diagnostics::Debug::{
    SetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SEM_NOOPENFILEERRORBOX,
    THREAD_ERROR_MODE,
};
use windows::Win32::System::Threading::*;

use super::attrs::AttrList;
use super::handle::*;
use super::job::{JobObject, KILL_EXIT_CODE};
use crate::cmdline::{command_line, env_block, EnvSpec};
use crate::command::SpawnPath;
use crate::error::{Error, Result};

/// The three inheritable handles a child gets as stdin, stdout, stderr.
pub(crate) struct Stdio {
    pub stdin: OwnedHandle,
    pub stdout: OwnedHandle,
    pub stderr: OwnedHandle,
}

/// A started child (its primary thread already resumed).
pub struct Process {
    pub handle: OwnedHandle,
    pub pid: u32,
}

pub(crate) struct SpawnRequest<'a> {
    pub program: &'a str,
    /// Where `program` was found (`resolve_program`), found once by the
    /// caller; None leaves the search to `CreateProcessW`.
    pub resolved: Option<&'a Path>,
    pub args: &'a [String],
    pub cwd: Option<&'a Path>,
    pub env: &'a EnvSpec,
    pub path: SpawnPath,
    pub breakaway: bool,
    pub no_crash_dialogs: bool,
    /// An isolated run's confinement (an AppContainer, or a restricted
    /// token): the child starts in it, suspended, and runs only once its
    /// token has been read back.
    pub contained: Option<&'a super::isolate::Contained>,
    /// The desktop to start it on (an isolated run's: the supervisor's own).
    pub desktop: Option<&'a super::desktop::WorkerDesktop>,
}

impl<'a> SpawnRequest<'a> {
    /// The request for `cmd` into a job (`breakaway`: leave the outer one).
    pub fn of(
        cmd: &'a crate::command::Command,
        resolved: Option<&'a Path>,
        breakaway: bool,
        no_crash_dialogs: bool,
        contained: Option<&'a super::isolate::Contained>,
        desktop: Option<&'a super::desktop::WorkerDesktop>,
    ) -> SpawnRequest<'a> {
        SpawnRequest {
            program: &cmd.program,
            resolved,
            args: &cmd.args,
            cwd: cmd.cwd.as_deref(),
            env: &cmd.env,
            path: cmd.spawn_path,
            breakaway,
            no_crash_dialogs,
            contained,
            desktop,
        }
    }
}

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().collect()
}

/// Finds `program` as Windows would for a command: a path is taken as is
/// (`.exe` added when it has no extension); a bare name is looked up in the
/// child's `PATH`. `None` leaves the search to `CreateProcessW` (system dirs).
pub(crate) fn resolve_program(program: &str, env: &EnvSpec) -> Option<PathBuf> {
    let with_exe = |p: PathBuf| -> Option<PathBuf> {
        if p.is_file() {
            return Some(p);
        }
        if p.extension().is_none() {
            let e = p.with_extension("exe");
            if e.is_file() {
                return Some(e);
            }
        }
        None
    };
    if program.contains(['\\', '/', ':']) {
        return with_exe(PathBuf::from(program));
    }
    let mut path = if env.inherit {
        std::env::var("PATH").ok()
    } else {
        None
    };
    for (k, v) in &env.changes {
        if k.eq_ignore_ascii_case("PATH") {
            path = v.clone();
        }
    }
    std::env::split_paths(&path.unwrap_or_default()).find_map(|d| with_exe(d.join(program)))
}

/// Makes crash and critical-error dialogs impossible for the children, which
/// inherit the supervisor's error mode. Done once, for the whole process.
fn set_error_mode() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: reads the process error mode; no arguments.
        let cur = unsafe { windows::Win32::System::Diagnostics::Debug::GetErrorMode() };
        let want = THREAD_ERROR_MODE(cur)
            | SEM_FAILCRITICALERRORS
            | SEM_NOGPFAULTERRORBOX
            | SEM_NOOPENFILEERRORBOX;
        // SAFETY: sets process-wide flags; always succeeds.
        unsafe { SetErrorMode(want) };
    });
}

/// Terminates a half-started child unless disarmed.
struct KillGuard<'a> {
    process: &'a OwnedHandle,
    armed: bool,
}

impl Drop for KillGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: the process handle is open.
            let _ = unsafe { TerminateProcess(raw(self.process), KILL_EXIT_CODE) };
        }
    }
}

/// Starts `req` in `job` with `stdio`.
pub(crate) fn spawn(job: &JobObject, req: &SpawnRequest<'_>, stdio: &Stdio) -> Result<Process> {
    if req.no_crash_dialogs {
        set_error_mode();
    }
    let resolved = req.resolved;
    if resolved.is_none() && req.program.contains(['\\', '/', ':']) {
        return Err(Error::os(
            format!("starting {:?}", req.program),
            ERROR_FILE_NOT_FOUND,
        ));
    }
    let app: Option<Vec<u16>> = resolved.map(wide_z);
    let args: Vec<Vec<u16>> = req.args.iter().map(|a| wide(a.as_ref())).collect();
    let mut cmd =
        command_line(&wide(req.program.as_ref()), &args).map_err(|m| Error::invalid("args", m))?;
    if cmd.len() >= 32767 {
        return Err(Error::invalid(
            "args",
            format!(
                "the command line is {} characters; Windows takes at most 32766",
                cmd.len()
            ),
        ));
    }
    cmd.push(0);
    let env = if req.env.inherit && req.env.changes.is_empty() {
        None
    } else {
        let base = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Some(env_block(base, req.env).map_err(|m| Error::invalid("env", m))?)
    };
    let req_cwd = req.contained.map(|c| c.cwd.as_path()).or(req.cwd);
    let cwd = match req_cwd {
        Some(d) => {
            if !d.is_dir() {
                return Err(Error::os(format!("cwd {d:?}: no such directory"), 267));
                // ERROR_DIRECTORY
            }
            Some(wide_z(d))
        }
        None => None,
    };

    let mut handles = [raw(&stdio.stdin), raw(&stdio.stdout), raw(&stdio.stderr)];
    let mut n = handles.len();
    // HANDLE_LIST takes each handle once.
    if handles[2] == handles[1] {
        n = 2;
    }
    if handles[1] == handles[0] || (n == 3 && handles[2] == handles[0]) {
        handles.swap(0, 2);
        n -= 1;
    }
    let job_handle = [job.handle()];

    let mut path = req.path;
    let mut breakaway = req.breakaway;
    // Strict: an AppContainer (an attribute); restricted: its token.
    let token = req.contained.and_then(|c| c.token.as_ref());
    let caps = req.contained.filter(|c| c.token.is_none()).map(|c| {
        windows::Win32::Security::SECURITY_CAPABILITIES {
            AppContainerSid: c.sid.0,
            Capabilities: std::ptr::null_mut(),
            CapabilityCount: 0,
            Reserved: 0,
        }
    });
    // The process and thread objects get an explicit descriptor too (Wine
    // would give them none it checks).
    let run_sd;
    let objects = match req.contained {
        Some(c) => {
            run_sd = super::security::SecurityDescriptor::from_sddl(
                &crate::isolation::child_objects_sddl(
                    &super::security::user_sid()?,
                    Some(&c.sid_text),
                ),
            )?;
            &run_sd
        }
        None => super::security::supervisor_only()?,
    };
    let objects_sa = objects.attributes(false);
    loop {
        let use_job_list = path != SpawnPath::Suspended;
        let mut attrs = AttrList::new(1 + use_job_list as u32 + caps.is_some() as u32)?;
        if let Some(caps) = &caps {
            // SAFETY: `caps` (and the SID it points to, in `req`) outlive `attrs`.
            unsafe {
                attrs.set_bytes(
                    super::isolate::ATTR_SECURITY_CAPABILITIES,
                    (caps as *const windows::Win32::Security::SECURITY_CAPABILITIES).cast(),
                    std::mem::size_of_val(caps),
                )
            }
            .map_err(|e| {
                Error::isolation(
                    crate::command::Level::Strict,
                    "no AppContainer on this system: \
                     UpdateProcThreadAttribute(SECURITY_CAPABILITIES) failed",
                    Some(win32_code(&e)),
                )
            })?;
        }
        // SAFETY: `handles` outlives `attrs` (both locals of this frame).
        unsafe { attrs.set(PROC_THREAD_ATTRIBUTE_HANDLE_LIST, handles.as_ptr(), n) }.map_err(
            |e| {
                werr(
                    "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST)",
                    e,
                )
            },
        )?;
        if use_job_list {
            // SAFETY: `job_handle` outlives `attrs`.
            let set = unsafe { attrs.set(PROC_THREAD_ATTRIBUTE_JOB_LIST, job_handle.as_ptr(), 1) };
            if let Err(e) = set {
                if path == SpawnPath::Auto {
                    path = SpawnPath::Suspended; // before Windows 10: no JOB_LIST
                    continue;
                }
                return Err(werr(
                    "UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_JOB_LIST)",
                    e,
                ));
            }
        }
        let mut si = STARTUPINFOEXW::default();
        si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
        si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        si.StartupInfo.hStdInput = raw(&stdio.stdin);
        si.StartupInfo.hStdOutput = raw(&stdio.stdout);
        si.StartupInfo.hStdError = raw(&stdio.stderr);
        si.lpAttributeList = attrs.ptr();
        // Isolated: on the supervisor's own desktop, not the user's.
        if let Some(d) = req.desktop {
            si.StartupInfo.lpDesktop = PWSTR(d.wide().as_ptr().cast_mut());
        }
        let mut flags =
            EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT | DETACHED_PROCESS;
        let suspended = !use_job_list || req.contained.is_some();
        if suspended {
            flags |= CREATE_SUSPENDED;
        }
        if breakaway {
            flags |= CREATE_BREAKAWAY_FROM_JOB;
        }
        let mut pi = PROCESS_INFORMATION::default();
        let app_w = app.as_ref().map_or(PCWSTR::null(), |a| PCWSTR(a.as_ptr()));
        let cmd_w = Some(PWSTR(cmd.as_mut_ptr()));
        let env_p = env.as_ref().map(|e| e.as_ptr() as *const _);
        let cwd_w = cwd.as_ref().map_or(PCWSTR::null(), |c| PCWSTR(c.as_ptr()));
        let r = match token {
            // SAFETY: every pointer is to a live local: `app`, `cmd` (mutable,
            // as the call requires), the objects' attributes and descriptor,
            // `env`, `cwd`, `si` with its attribute list; the token is a
            // restricted version of our own (no privilege needed).
            Some(t) => unsafe {
                CreateProcessAsUserW(
                    Some(raw(t)),
                    app_w,
                    cmd_w,
                    Some(&objects_sa),
                    Some(&objects_sa),
                    true,
                    flags,
                    env_p,
                    cwd_w,
                    &si.StartupInfo,
                    &mut pi,
                )
            },
            // SAFETY: as above.
            None => unsafe {
                CreateProcessW(
                    app_w,
                    cmd_w,
                    Some(&objects_sa),
                    Some(&objects_sa),
                    true,
                    flags,
                    env_p,
                    cwd_w,
                    &si.StartupInfo,
                    &mut pi,
                )
            },
        };
        if let Err(e) = r {
            let code = win32_code(&e);
            if code == ERROR_ACCESS_DENIED && !breakaway {
                let sup = super::job::supervisor_job();
                if sup.in_job && sup.breakaway_ok {
                    breakaway = true; // nesting refused: leave the outer job instead
                    continue;
                }
                if sup.in_job {
                    return Err(Error::os(
                        "placing the child in its job: the supervisor's own job allows neither nesting nor breakaway",
                        code,
                    ));
                }
            }
            return Err(Error::os(
                format!("CreateProcessW({:?})", req.program),
                code,
            ));
        }
        // SAFETY: CreateProcessW returned two new handles we now own.
        let process = unsafe { own(pi.hProcess) };
        // SAFETY: as above.
        let thread = unsafe { own(pi.hThread) };
        if suspended {
            let mut guard = KillGuard {
                process: &process,
                armed: true,
            };
            if !use_job_list {
                job.assign(&process)?;
            }
            // Isolated: before its first instruction, its token is read
            // back (this run's AppContainer, or its restricted low token),
            // or it never runs.
            if let Some(c) = req.contained {
                c.verify(raw(&process))?;
            }
            // SAFETY: the thread handle is open; the thread is suspended once.
            let prev = unsafe { ResumeThread(raw(&thread)) };
            if prev == u32::MAX {
                return Err(Error::last_os("ResumeThread"));
            }
            if prev != 1 {
                return Err(Error::sandbox(format!(
                    "ResumeThread: the suspend count was {prev}, not 1"
                )));
            }
            guard.armed = false;
        }
        return Ok(Process {
            handle: process,
            pid: pi.dwProcessId,
        });
    }
}
