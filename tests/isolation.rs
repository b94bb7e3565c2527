//! Isolation levels: the denied-actions suite (in the style of Chromium's
//! `sandbox/win/src` validation tests) and the allowed actions, on this
//! system's backend. Linux: every case runs for real. Windows under Wine:
//! both levels must refuse, with nothing started (Wine accepts the
//! mechanisms and does not enforce them); the suite runs on real Windows.

mod common;

use std::path::{Path, PathBuf};

use common::probe_cmd;
use winsandbox::command::Level;
use winsandbox::{Command, Error, Outcome, Verdict};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsb-iso-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn isolated(level: Level, args: &[&str]) -> Command {
    let mut c = probe_cmd(args);
    c.isolation.level = level;
    c
}

fn run(c: &Command) -> Outcome {
    let o = winsandbox::run(c).unwrap_or_else(|e| panic!("{:?}: {e}", c.args));
    assert_eq!(o.verdict(), Verdict::Ok, "{:?}: {o:?}", c.args);
    o
}

fn said(o: &Outcome) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn denied(c: &Command) {
    let o = run(c);
    assert!(
        said(&o).starts_with("denied"),
        "{:?} was {}",
        c.args,
        said(&o)
    );
}

fn allowed(c: &Command) {
    let o = run(c);
    assert_eq!(said(&o), "allowed", "{:?}", c.args);
}

/// The denied-actions suite's setting: the answer beside the working
/// directory, a granted folder, a listener on 127.0.0.1.
struct Suite {
    level: Level,
    outside: PathBuf,
    answer: PathBuf,
    work: PathBuf,
    granted: PathBuf,
    port: String,
    _listener: std::net::TcpListener,
}

impl Suite {
    fn new() -> Suite {
        Suite::at(Level::Strict)
    }

    /// The setting, for runs at `level`.
    fn at(level: Level) -> Suite {
        let outside = scratch("outside");
        let answer = outside.join("01.ans");
        std::fs::write(&answer, "42\n").unwrap();
        #[cfg(unix)]
        make_public(&outside);
        let granted = scratch("granted");
        std::fs::write(granted.join("in.txt"), "input").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Suite {
            level,
            port: listener.local_addr().unwrap().port().to_string(),
            _listener: listener,
            outside,
            answer,
            work: scratch("work"),
            granted,
        }
    }

    /// The probe doing `args` at the suite's level, in `work`, `granted`
    /// readable.
    fn probe(&self, args: &[&str]) -> Command {
        let mut c = isolated(self.level, args);
        c.cwd = Some(self.work.clone());
        c.isolation.readable = vec![self.granted.clone()];
        c
    }

    /// Denied on every system: read and write outside, the answer beside
    /// the working directory, a granted file written, the network
    /// (loopback too; restricted keeps it), the supervisor. Allowed: its
    /// directory, the granted file, its stdio.
    fn common_cases(&self) {
        let p = |p: &Path| p.to_str().unwrap().to_string();
        let me = std::process::id().to_string();
        denied(&self.probe(&["try-read", &p(&self.answer)]));
        denied(&self.probe(&["try-write", &p(&self.outside.join("new"))]));
        denied(&self.probe(&["try-write", &p(&self.granted.join("in.txt"))]));
        if self.level == Level::Strict {
            denied(&self.probe(&["try-connect", &self.port]));
        } else {
            allowed(&self.probe(&["try-connect", &self.port]));
        }
        denied(&self.probe(&["try-kill", &me]));
        assert!(!self.outside.join("new").exists());
        allowed(&self.probe(&["try-write", "out.txt"]));
        assert_eq!(
            std::fs::read(self.work.join("out.txt")).unwrap(),
            b"written"
        );
        allowed(&self.probe(&["try-read", "out.txt"]));
        allowed(&self.probe(&["try-read", &p(&self.granted.join("in.txt"))]));
        let o = run(&self.probe(&["hello"]));
        assert!(said(&o).contains("hello"), "{o:?}");
        assert_eq!(o.isolation, self.level);
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        for d in [&self.outside, &self.work, &self.granted] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(unix)]
#[test]
fn strict_denies_files_network_and_processes_outside_and_allows_its_own() {
    let s = Suite::new();
    s.common_cases();
    // Linux: the answer by a relative path, the system's files written,
    // other users' homes, another run's processes; the system and /tmp allowed.
    denied(&s.probe(&["try-read", "../wsb-iso-outside/01.ans"]));
    denied(&s.probe(&["try-write", "/usr/wsb-iso-written"]));
    denied(&s.probe(&["try-list", "/root"]));
    denied(&s.probe(&["try-list", "/proc/1/root"]));
    // The user's keyrings: the same in every run of that user.
    allowed(&isolated(Level::None, &["try-keyring"]));
    denied(&s.probe(&["try-keyring"]));
    allowed(&s.probe(&["try-read", "/etc/passwd"]));
    allowed(&s.probe(&["try-write", "/tmp/scratch"]));
}

/// The kernel's Landlock ABI (0: none).
#[cfg(unix)]
fn landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only asks the version.
    unsafe { libc::syscall(444, std::ptr::null::<u8>(), 0usize, 1u32) }.max(0)
}

#[cfg(unix)]
fn make_public(d: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn restricted_keeps_the_network_and_denies_the_files() {
    Suite::at(Level::Restricted).common_cases();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    allowed(&isolated(Level::Restricted, &["try-connect", &port]));
    denied(&isolated(Level::Restricted, &["try-list", "/root"]));
    // Abstract sockets live in the network namespace restricted shares with
    // the host (an X server's, D-Bus's): Landlock (ABI 6+) keeps them out.
    if landlock_abi() >= 6 {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("wsb-iso-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _l = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        allowed(&isolated(Level::None, &["try-unix", &name]));
        denied(&isolated(Level::Restricted, &["try-unix", &name]));
    } else {
        eprintln!(
            "skipped: no Landlock ABI 6 here, so abstract sockets are reachable under restricted"
        );
    }
    denied(&isolated(Level::Restricted, &["try-list", "/home"]));
}

#[cfg(unix)]
#[test]
fn a_run_without_a_directory_gets_a_fresh_one_removed_after() {
    let o = run(&isolated(Level::Strict, &["cwd"]));
    let dir = said(&o);
    assert!(dir.contains("winsandbox-work-"), "{dir}");
    assert!(!Path::new(&dir).exists(), "{dir} was left behind");
    allowed(&isolated(Level::Strict, &["try-write", "output.txt"]));
}

#[cfg(unix)]
#[test]
fn a_granted_directory_gets_its_permissions_back() {
    use std::os::unix::fs::PermissionsExt;
    let work = scratch("grant");
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = std::fs::metadata(&work).unwrap().permissions().mode();
    let mut c = isolated(Level::Strict, &["try-write", "x"]);
    c.cwd = Some(work.clone());
    allowed(&c);
    assert_eq!(
        std::fs::metadata(&work).unwrap().permissions().mode(),
        before
    );
    std::fs::remove_dir_all(work).unwrap();
}

#[test]
fn bad_grants_are_refused_before_anything_starts() {
    let mut c = isolated(Level::None, &["hello"]);
    c.isolation.readable = vec![std::env::temp_dir()];
    assert!(matches!(
        winsandbox::run(&c),
        Err(Error::Invalid {
            field: "readable",
            ..
        })
    ));
    let mut c = isolated(Level::Strict, &["hello"]);
    c.isolation.writable = vec![PathBuf::from("/no/such/wsb/path")];
    let e = winsandbox::run(&c).unwrap_err();
    assert_eq!(e.os_code(), Some(2), "{e}");
    assert_eq!(
        Level::parse("lax").unwrap_err().to_string(),
        "invalid isolation: \"lax\" (none, strict, restricted)"
    );
}

/// Windows: a grant that would change the system's files' ACLs (or walk a
/// whole drive) is refused naming its argument, before anything starts or
/// is changed; under Wine too, where the levels themselves are refused
/// after this check.
#[cfg(windows)]
#[test]
fn grants_of_the_systems_files_or_a_drive_are_refused_on_windows() {
    let windir = PathBuf::from(std::env::var("SystemRoot").unwrap());
    let dir = scratch("system-grants");
    let marker = dir.join("started");
    let write = ["try-write", marker.to_str().unwrap()];
    for level in [Level::Strict, Level::Restricted] {
        type Set = fn(&mut Command, &Path);
        let cases: [(&str, Set); 3] = [
            ("writable", |c, w| {
                c.isolation.writable = vec![w.join("Temp")]
            }),
            ("readable", |c, w| {
                c.isolation.readable = vec![w.ancestors().last().unwrap().to_path_buf()]
            }),
            ("cwd", |c, w| c.cwd = Some(w.to_path_buf())),
        ];
        for (field, set) in cases {
            let mut c = isolated(level, &write);
            set(&mut c, &windir);
            match winsandbox::run(&c) {
                Err(Error::Invalid { field: f, message }) => {
                    assert_eq!(f, field, "{level:?}: {message}")
                }
                other => panic!("{level:?} {field}: {other:?}"),
            }
            assert!(!marker.exists(), "{level:?} {field}: the program ran");
        }
    }
    // A relative path is planned where it is, not taken for a drive: under
    // Wine the run gets as far as the level's own refusal.
    if common::wine().is_some() {
        let mut c = isolated(Level::Strict, &write);
        c.cwd = Some(PathBuf::from("."));
        let e = winsandbox::run(&c).unwrap_err();
        assert!(matches!(e, Error::Isolation { .. }), "{e}");
    }
    // Into a Sandbox: refused when it is isolated.
    let mut iso = winsandbox::command::Isolation {
        level: Level::Strict,
        ..Default::default()
    };
    iso.writable = vec![windir.join("Temp")];
    let mut sb = winsandbox::win::Sandbox::new(&winsandbox::Limits::default()).unwrap();
    assert!(matches!(
        sb.isolate(iso),
        Err(Error::Invalid {
            field: "writable",
            ..
        })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Real Windows: strict runs in an AppContainer of its own (the
/// windows-latest CI job); under Wine, a counted skip (see
/// `levels_refuse_under_wine`).
#[cfg(windows)]
#[test]
fn strict_denies_files_network_and_processes_outside_on_windows() {
    if common::skip_under_wine("AppContainers (strict is refused there)") {
        return;
    }
    Suite::new().common_cases();
}

/// Real Windows: restricted runs with a restricted token at low integrity
/// (the windows-latest CI job); under Wine, a counted skip (see
/// `levels_refuse_under_wine`).
#[cfg(windows)]
#[test]
fn restricted_denies_files_and_processes_outside_on_windows() {
    if common::skip_under_wine("restricted tokens (restricted is refused there)") {
        return;
    }
    let s = Suite::at(Level::Restricted);
    s.common_cases();
    // A writable folder of the caller's gets a low label for the run, and
    // its own back after.
    let writable = scratch("writable");
    let before = winsandbox::win::label_of(&writable).unwrap();
    let mut c = s.probe(&["try-write", writable.join("w.txt").to_str().unwrap()]);
    c.isolation.writable = vec![writable.clone()];
    allowed(&c);
    // "No label" may read back as nothing or as an empty `S:`.
    let entries = |s: String| s.contains('(').then_some(s);
    assert_eq!(
        entries(winsandbox::win::label_of(&writable).unwrap()),
        entries(before)
    );
    std::fs::remove_dir_all(writable).unwrap();
}

#[cfg(windows)]
#[test]
fn levels_refuse_under_wine() {
    if common::wine().is_none() {
        eprintln!("skipped: real Windows enforces the levels (the suite above runs)");
        return;
    }
    let dir = scratch("wine");
    let marker = dir.join("started");
    for level in [Level::Strict, Level::Restricted] {
        let e = winsandbox::run(&isolated(level, &["try-write", marker.to_str().unwrap()]))
            .unwrap_err();
        assert!(
            matches!(e, Error::Isolation { level: l, .. } if l == level),
            "{level:?}: {e}"
        );
        assert!(!marker.exists(), "{level:?}: the program ran");
        eprintln!("{level:?}: {e}");
    }
    // Strict: the attribute itself is refused (ERROR_NOT_SUPPORTED), as measured.
    let e = winsandbox::run(&isolated(Level::Strict, &["hello"])).unwrap_err();
    assert_eq!(e.os_code(), Some(50), "{e}");
    let e = winsandbox::run(&isolated(Level::Restricted, &["hello"])).unwrap_err();
    assert!(e.to_string().contains("not enforced"), "{e}");
    // The same program unisolated does run (the test can see a start).
    let o = winsandbox::run(&isolated(
        Level::None,
        &["try-write", marker.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
    assert!(marker.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Under Wine, past the levels' proof (which refuses them there): the
/// launch itself runs (restricted: its token made, its fresh directory
/// made with its label, the program started with the token) and the read
/// back of the child's token ends it before its first instruction; the
/// directory is removed. A launcher that did not read back would have run
/// it unconfined.
#[cfg(windows)]
#[test]
fn the_launch_reads_back_and_ends_a_child_not_confined_under_wine() {
    if common::wine().is_none() {
        eprintln!("skipped: real Windows confines (the suites above run)");
        return;
    }
    let dir = scratch("unproved");
    let marker = dir.join("started");
    let work = |pid: u32| {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("winsandbox-work-{pid}-"))
            })
            .count()
    };
    for level in [Level::Strict, Level::Restricted] {
        let c = isolated(level, &["try-write", marker.to_str().unwrap()]);
        let e = match winsandbox::win::Running::start_unproved_under_wine(&c) {
            Ok(_) => panic!("{level:?}: started"),
            Err(e) => e,
        };
        assert!(
            matches!(e, Error::Isolation { level: l, .. } if l == level),
            "{level:?}: {e}"
        );
        eprintln!("{level:?}: {e}");
        assert!(!marker.exists(), "{level:?}: the program ran");
        assert_eq!(work(std::process::id()), 0, "{level:?}: a directory left");
    }
    // Restricted: what the read back found.
    let e = winsandbox::win::Running::start_unproved_under_wine(&isolated(
        Level::Restricted,
        &["hello"],
    ))
    .err()
    .unwrap();
    assert!(e.to_string().contains("no restricting SIDs"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A level the system refuses fails closed: the CLI, run as uid 1000 where
/// no user namespace may be made (`tests/python/without_namespaces.py`),
/// says SE and exit 3, and the program never ran.
#[cfg(unix)]
#[test]
fn a_level_the_system_refuses_fails_closed_with_nothing_started() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to map uid 1000 in a user namespace)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("refused");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = dir.join("started");
    for level in ["strict", "restricted"] {
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/without_namespaces.py"
            ))
            .arg(env!("CARGO_BIN_EXE_winsandbox"))
            .args(["run", "--json", "--isolation", level, "--", "/bin/touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{level}: {json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(json.contains("\"verdict\": \"SE\""), "{json}");
        assert!(
            json.contains(&format!("\"isolation\": \"{level}\"")),
            "{json}"
        );
        assert!(json.contains("not enforced on this system"), "{json}");
        assert!(!marker.exists(), "{level}: the program ran");
    }
    // The same program, unisolated, does run there (the test can see a start).
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/without_namespaces.py"
        ))
        .arg(env!("CARGO_BIN_EXE_winsandbox"))
        .args(["run", "--", "/bin/touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
