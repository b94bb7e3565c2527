//! Helpers shared by the integration tests.
#![allow(dead_code)]

use winsandbox::{Command, Limits};

/// The probe program built beside the test binary.
pub fn probe() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(format!("wsb-probe{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        p.to_string_lossy().into_owned()
    } else {
        env!("CARGO_BIN_EXE_wsb-probe").to_string()
    }
}

pub fn probe_cmd(args: &[&str]) -> Command {
    Command::new(probe()).args(args.iter().copied())
}

pub fn with_limits(args: &[&str], limits: Limits) -> Command {
    probe_cmd(args).limits(limits)
}

/// Wine's version, when the tests run under Wine.
pub fn wine() -> Option<String> {
    #[cfg(windows)]
    {
        winsandbox::win::wine_version()
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// True (and a note on stderr) when this test needs kernel enforcement that
/// Wine does not give; the Windows CI job runs it.
/// libtest counts a test that returns early as passed, so each skip is also
/// written as one line to the file `WSB_SKIP_LOG` names (when set), which
/// the test script counts and prints as skips.
pub fn skip_under_wine(what: &str) -> bool {
    skip_on_wine(&format!("does not enforce {what}"))
}

/// True (and a note) under Wine for a test that ends a job while its
/// processes are being created: Wine 8's server crashes (SIGSEGV) then, and
/// every program waits for it without end. Measured: 2 crashes in 6 runs of
/// the scenarios, in the fork bomb and the one-child PLE test, one test at a
/// time. The Windows CI job runs these.
pub fn skip_where_wine_server_crashes() -> bool {
    skip_on_wine("its server crashes when a job is ended while a child is being created")
}

fn skip_on_wine(why: &str) -> bool {
    let Some(v) = wine() else {
        return false;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    let line = format!("{test}: Wine {v}: {why}");
    eprintln!("skipped: {line} (runs in the windows-latest CI job)");
    if let Some(path) = std::env::var_os("WSB_SKIP_LOG") {
        use std::io::Write as _;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        if let Err(e) = f.and_then(|mut f| writeln!(f, "{line}")) {
            panic!("the skip of {test} could not be logged to {path:?}: {e}");
        }
    }
    true
}

/// Whether a process with this id is still running.
pub fn alive(pid: u32) -> bool {
    #[cfg(windows)]
    {
        winsandbox::win::process_alive(pid)
    }
    #[cfg(unix)]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // state is the field after the ")" of the command name; Z = zombie (dead)
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        !stat.is_empty() && state != "Z" && state != "X"
    }
}

/// Waits up to 5 s for every pid to be gone.
pub fn all_gone(pids: &[u32]) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn pids_in(out: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The file name of a process's image ("conhost.exe"), or "" when unknown.
#[cfg(windows)]
pub fn image_name(pid: u32) -> String {
    use windows::core::PWSTR;
    use windows::Win32::Foundation::CloseHandle;
    use windows::Win32::System::Threading::{
        OpenProcess, QueryFullProcessImageNameW, PROCESS_NAME_WIN32,
        PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: opening by id; closed below.
    let Ok(h) = (unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }) else {
        return String::new();
    };
    let mut buf = [0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` is writable for `len` characters.
    let ok = unsafe {
        QueryFullProcessImageNameW(h, PROCESS_NAME_WIN32, PWSTR(buf.as_mut_ptr()), &mut len)
    }
    .is_ok();
    // SAFETY: closing the handle opened above.
    let _ = unsafe { CloseHandle(h) };
    if !ok {
        return String::new();
    }
    let path = String::from_utf16_lossy(&buf[..len as usize]);
    path.rsplit(['\\', '/']).next().unwrap_or("").to_string()
}

#[cfg(not(windows))]
pub fn image_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}
