//! What the supervisor makes carries an explicit security descriptor, and
//! the desktop strict programs run on keeps them from the windows of the
//! user's: Wine enforces both (object descriptors, window separation between
//! desktops), so this runs under Wine for real.
#![cfg(windows)]

mod common;

use std::io::Read;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows::core::{PCWSTR, PWSTR};
use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::Threading::*;
use windows::Win32::UI::WindowsAndMessaging::*;

use common::*;
use winsandbox::isolation::dacl_trustees;
use winsandbox::win::{dacl_of, user_sid, worker_desktop, JobObject, ObjectKind};
use winsandbox::{jobplan, Limits, Verdict};

fn raw(h: &impl AsRawHandle) -> HANDLE {
    HANDLE(h.as_raw_handle())
}

/// The trustees of the DACL `h` has, read back; it must be protected and
/// allow only.
fn trustees(h: HANDLE, kind: ObjectKind) -> Vec<String> {
    let sddl = dacl_of(h, kind).unwrap();
    let (protected, sids) = dacl_trustees(&sddl).unwrap_or_else(|| panic!("{sddl}"));
    assert!(protected, "inherits: {sddl}");
    sids
}

/// The supervisor's user SID as SDDL prints it (an alias for the
/// well-known accounts a CI runner may use).
fn user() -> String {
    let sid = user_sid().unwrap();
    match sid.as_str() {
        "S-1-5-18" => "SY".into(),
        "S-1-5-19" => "LS".into(),
        "S-1-5-20" => "NS".into(),
        _ => sid,
    }
}

#[test]
fn the_supervisors_pipes_and_jobs_allow_system_and_its_user_alone() {
    let user = user();
    assert!(user_sid().unwrap().starts_with("S-1-5-"));
    let (r, w) = winsandbox::win::child_pipe().unwrap();
    for end in [&r, &w] {
        assert_eq!(
            trustees(raw(end), ObjectKind::Kernel),
            ["SY", user.as_str()]
        );
    }
    // What a pipe made without a descriptor gets, for contrast: Wine's has
    // none (Windows' the token's default, which may be alike).
    let (mut r0, mut w0) = (HANDLE::default(), HANDLE::default());
    // SAFETY: out-pointers to locals; both handles are closed below.
    unsafe { windows::Win32::System::Pipes::CreatePipe(&mut r0, &mut w0, None, 0) }.unwrap();
    let default = dacl_of(r0, ObjectKind::Kernel).unwrap();
    // SAFETY: the two handles just made.
    unsafe {
        let _ = windows::Win32::Foundation::CloseHandle(r0);
        let _ = windows::Win32::Foundation::CloseHandle(w0);
    }
    if wine().is_some() {
        assert_eq!(dacl_trustees(&default), None, "{default}");
    }
    let limits = Limits::default();
    for name in [
        None,
        Some(format!("winsandbox-test-{}", std::process::id())),
    ] {
        let job = JobObject::create(name.as_deref(), &jobplan::plan(&limits), &limits).unwrap();
        assert_eq!(
            trustees(job.handle(), ObjectKind::Kernel),
            ["SY", user.as_str()],
            "job {name:?}"
        );
    }
}

#[test]
fn a_programs_process_and_thread_objects_allow_system_and_the_user_alone() {
    let user = user();
    let sandbox = winsandbox::win::Sandbox::new(&Limits::default()).unwrap();
    let child = sandbox.spawn(&probe_cmd(&["sleep", "10"])).unwrap();
    assert_eq!(
        trustees(raw(child.handle()), ObjectKind::Kernel),
        ["SY", user.as_str()]
    );
    child.kill().unwrap();
    // For contrast, under Wine: a process made without one (this test's,
    // by its launcher) reads back otherwise (Windows gives such a process
    // its creator's default DACL, which may be alike).
    if wine().is_some() {
        // SAFETY: the pseudo-handle of this process.
        let own = unsafe { GetCurrentProcess() };
        let sddl = dacl_of(own, ObjectKind::Kernel).unwrap();
        assert_ne!(
            dacl_trustees(&sddl),
            Some((true, vec!["SY".to_string(), user.clone()])),
            "{sddl}"
        );
    }
}

/// Starts the probe with `args` on `desktop` (None: the supervisor's) as a
/// strict launch places it (`lpDesktop`), and returns what it printed.
fn on_desktop(desktop: Option<&str>, args: &str) -> String {
    let (r, w) = winsandbox::win::child_pipe().unwrap();
    let mut cmd: Vec<u16> = format!("\"{}\" {args}", probe())
        .encode_utf16()
        .chain(Some(0))
        .collect();
    let mut name: Option<Vec<u16>> = desktop.map(|d| d.encode_utf16().chain(Some(0)).collect());
    let mut si = STARTUPINFOW {
        cb: std::mem::size_of::<STARTUPINFOW>() as u32,
        dwFlags: STARTF_USESTDHANDLES,
        hStdOutput: raw(&w),
        hStdError: raw(&w),
        ..Default::default()
    };
    if let Some(n) = name.as_mut() {
        si.lpDesktop = PWSTR(n.as_mut_ptr());
    }
    let mut pi = PROCESS_INFORMATION::default();
    // SAFETY: every pointer is to a live local; the handles are inheritable.
    unsafe {
        CreateProcessW(
            PCWSTR::null(),
            Some(PWSTR(cmd.as_mut_ptr())),
            None,
            None,
            true,
            DETACHED_PROCESS,
            None,
            PCWSTR::null(),
            &si,
            &mut pi,
        )
    }
    .unwrap();
    // SAFETY: CreateProcessW returned two new handles, ours to close.
    let (process, _thread) = unsafe {
        (
            OwnedHandle::from_raw_handle(pi.hProcess.0),
            OwnedHandle::from_raw_handle(pi.hThread.0),
        )
    };
    drop(w);
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    // SAFETY: a process handle we hold.
    unsafe { WaitForSingleObject(raw(&process), 10_000) };
    out.trim().to_string()
}

#[test]
fn a_program_on_the_worker_desktop_finds_no_window_of_the_supervisors() {
    let title = format!("winsandbox-test-window-{}", std::process::id());
    let wide: Vec<u16> = title.encode_utf16().chain(Some(0)).collect();
    // SAFETY: a top-level window of a system class, titled by a live string.
    let window = unsafe {
        CreateWindowExW(
            WINDOW_EX_STYLE(0),
            windows::core::w!("STATIC"),
            PCWSTR(wide.as_ptr()),
            WINDOW_STYLE(0),
            0,
            0,
            10,
            10,
            None,
            None,
            None,
            None,
        )
    }
    .expect("a window (under Wine: the prefix needs Graphics=null, scripts/winenv.sh)");
    let find = format!("try-find-window {title}");
    // On the supervisor's desktop it is found: through the sandbox (no
    // job UI limit, which on Windows would hide it too) and started bare.
    let limits = Limits {
        ui_restrictions: false,
        ..Limits::default()
    };
    let o = winsandbox::run(&with_limits(&["try-find-window", &title], limits)).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "allowed");
    assert_eq!(on_desktop(None, &find), "allowed");
    // On the worker desktop it is not.
    let desktop = worker_desktop().unwrap();
    let name = desktop.name();
    assert!(
        name.ends_with(&format!("\\winsandbox-{}", std::process::id())),
        "{name}"
    );
    let there = on_desktop(Some(&name), &find);
    assert!(there.starts_with("denied"), "{name}: {there}");
    // SAFETY: the window made above.
    unsafe { DestroyWindow(window) }.unwrap();
}

#[test]
fn the_worker_desktops_descriptor_reads_back() {
    // Wine keeps desktops apart but stores no descriptor for them (it reads
    // back empty).
    if skip_under_wine("descriptors on desktops") {
        return;
    }
    // SYSTEM, the user, and every AppContainer (with the rights to use it,
    // not to hook or switch it).
    let user = user();
    assert_eq!(
        trustees(worker_desktop().unwrap().handle(), ObjectKind::Window),
        ["SY", user.as_str(), "AC", "RC"]
    );
}

/// A restricted run's token: made as a run's is (Wine accepts every call),
/// then read back. Wine drops its restricting SIDs, and the read back says
/// so (that is why the level is refused there); Windows keeps them, at
/// low integrity, with no privilege but SeChangeNotify.
#[test]
fn a_restricted_token_reads_back_as_made_or_says_what_is_missing() {
    let read = winsandbox::win::try_restricted_token("winsandbox.test.token").unwrap();
    if common::wine().is_some() {
        let why = read.unwrap_err();
        assert!(why.contains("no restricting SIDs"), "{why}");
    } else {
        read.unwrap();
    }
}

/// A restricted run lowers the label of the caller's `cwd` and `writable`
/// folders for its run, inherited inside, and puts the old one back.
#[test]
fn a_lowered_label_is_put_back() {
    let d = std::env::temp_dir().join(format!("wsb-label-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("inside")).unwrap();
    let before = match winsandbox::win::label_of(&d) {
        // Wine asks for the SACL's access right to read a label, which a
        // process without SeSecurityPrivilege is refused.
        Err(e)
            if e.os_code() == Some(5)
                && common::skip_under_wine("labels on files (reading one is refused)") =>
        {
            std::fs::remove_dir_all(&d).unwrap();
            return;
        }
        r => r.unwrap(),
    };
    let low = winsandbox::win::LowLabel::new(&d, true).unwrap();
    let during = winsandbox::win::label_of(&d).unwrap();
    let inside = winsandbox::win::label_of(&d.join("inside")).unwrap();
    drop(low);
    let after = winsandbox::win::label_of(&d).unwrap();
    eprintln!("before {before:?} during {during:?} inside {inside:?} after {after:?}");
    std::fs::remove_dir_all(&d).unwrap();
    assert!(during.contains("(ML;OICI;NW;;;LW)"), "{during}");
    assert!(inside.contains("NW;;;LW)"), "{inside}");
    // "No label" may read back as nothing or as an empty `S:`.
    let entries = |s: &str| s.contains('(').then(|| s.to_string());
    assert_eq!(entries(&after), entries(&before));
}
