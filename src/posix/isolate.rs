//! Isolation levels on Linux (`command::Level`): what a strict or
//! restricted run sees, made by its init before the program starts.
//!
//! The init of the run's PID namespace is also in new mount, IPC and UTS
//! namespaces (strict: a network namespace too, with no interface up, so
//! not even the host's loopback is reachable), and for a supervisor that is
//! not root in a user namespace of its own. There it builds the program's
//! whole view of the files (`View`, planned by the supervisor, carried out
//! with raw system calls by the init): a fresh read-only tmpfs root holding
//! read-only binds of the system's own files (`/usr`, `/etc`, the `/lib`s),
//! the program's folder and the paths granted to read; read-write binds of
//! the working directory and the paths granted to write, each at its own
//! path; a `/proc` of the run's PID namespace, a `/dev` of the harmless
//! devices and private `/tmp` and `/dev/shm`. Then `pivot_root`: nothing
//! else of the host's files is reachable, whatever the program's rights.
//! The init opens every source (`O_PATH`) before it mounts the new root
//! over `/tmp` (a source may be beneath it), and binds each through
//! `/proc/self/fd`.
//!
//! The program itself, before its first instruction, joins the job's
//! cgroups, then (supervisor root) leaves root for `nobody` (65534), drops
//! every capability and sets `no_new_privs`; then it reads all of that back
//! (`Checks`), and a mismatch stops the start. A root supervisor's program
//! cannot write the working directory the caller gave as root: that folder
//! (and each path granted) gets one ACL entry for `nobody`, recorded and
//! taken back when the last run using it ends (`Grant`); a working directory
//! winsandbox makes itself is made for the program (`Workdir`).
//!
//! Where the kernel has Landlock, the program also restricts itself
//! (`Landlock`): writes only where it was granted, no TCP (strict), no
//! signal or abstract socket outside its tree.
//!
//! Once per process and level, a canary proves the view is enforced: a
//! process under the same level must fail to read a file the supervisor
//! made readable to everyone, and (strict) to connect to a listener on
//! 127.0.0.1. A level that fails it, or that the system refuses, is never
//! run weaker: the start fails with `Error::Isolation`.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::command::Level;
use crate::error::{Error, Result};

/// The user a root supervisor's isolated program runs as.
pub(crate) const NOBODY: libc::uid_t = 65534;

/// Where the init mounts the new root before `pivot_root` (in its own
/// mount namespace: the host's `/tmp` is not touched).
const NEW_ROOT: &str = "/tmp";

/// The system's own files every isolated program may read.
const SYSTEM: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The devices an isolated program gets in its `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

fn cstr(p: impl AsRef<[u8]>) -> Result<CString> {
    CString::new(p.as_ref()).map_err(|_| Error::invalid("path", "embedded NUL character"))
}

/// One step of building the view, every string made beforehand.
#[derive(Debug)]
pub(crate) enum Step {
    /// `mkdir` (an existing folder is fine).
    Dir(CString),
    /// An empty file to bind a file onto.
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Tmpfs {
        at: CString,
        mode: CString,
    },
    Proc(CString),
    /// Binds `source` at `at`, read-only unless `write`.
    Bind {
        source: CString,
        at: CString,
        write: bool,
    },
}

/// The plan of a run's view of the files.
#[derive(Debug)]
pub(crate) struct View {
    steps: Vec<Step>,
    /// The init's `O_PATH` descriptor of each step's source (binds), -1 else.
    fds: Vec<libc::c_int>,
    new_root: CString,
    net: bool,
    /// The paths bound read-write (the working directory, `writable`), as
    /// the program sees them (at their own paths).
    writable: Vec<CString>,
}

impl View {
    /// Whether the run keeps the host's network (restricted).
    pub fn net(&self) -> bool {
        self.net
    }

    /// The namespaces the run's init is made in, besides its PID namespace.
    pub fn clone_flags(&self, user_ns: bool) -> libc::c_int {
        let mut f = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if !self.net {
            f |= libc::CLONE_NEWNET;
        }
        if user_ns {
            f |= libc::CLONE_NEWUSER;
        }
        f
    }
}

/// What a bind-mounted path is granted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Read,
    Write,
}

/// Plans the view of a run at `level`: the system, `program`'s folder (and
/// its real folder, through links), `cwd` and the granted paths.
pub(crate) fn plan(
    level: Level,
    program: Option<&Path>,
    cwd: &Path,
    readable: &[PathBuf],
    writable: &[PathBuf],
) -> Result<View> {
    let mut binds: Vec<(PathBuf, Access)> = Vec::new();
    let mut steps = Vec::new();
    let inside = |p: &Path| -> Result<CString> {
        let mut s = NEW_ROOT.as_bytes().to_vec();
        s.extend_from_slice(p.as_os_str().as_bytes());
        cstr(s)
    };
    for s in SYSTEM {
        let p = Path::new(s);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(p).map_err(|e| Error::from_io(s, e))?;
                steps.push(Step::Symlink {
                    target: cstr(target.as_os_str().as_bytes())?,
                    link: inside(p)?,
                });
            }
            Ok(m) if m.is_dir() => binds.push((p.to_path_buf(), Access::Read)),
            _ => {}
        }
    }
    let mut folders = vec![program.and_then(Path::parent).map(Path::to_path_buf)];
    if let Some(real) = program.and_then(|p| std::fs::canonicalize(p).ok()) {
        folders.push(real.parent().map(Path::to_path_buf));
    }
    for f in folders.into_iter().flatten() {
        binds.push((f, Access::Read));
    }
    for r in readable {
        binds.push((absolute("readable", r)?, Access::Read));
    }
    for w in writable {
        binds.push((
            writable_path("writable", absolute("writable", w)?)?,
            Access::Write,
        ));
    }
    binds.push((writable_path("cwd", cwd.to_path_buf())?, Access::Write));
    // Outer paths first, so an inner bind lands on top of an outer one;
    // one bind per path, the widest access asked.
    binds.sort_by(|a, b| (a.0.components().count(), &a.0).cmp(&(b.0.components().count(), &b.0)));
    binds.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same && later.1 == Access::Write {
            kept.1 = Access::Write;
        }
        same
    });
    // Covered by a system bind already (a program in /usr/bin): no bind of its own.
    binds.retain(|(p, a)| {
        *a == Access::Write
            || SYSTEM
                .iter()
                .all(|s| !p.starts_with(s) || p == Path::new(s))
    });
    steps.push(Step::Tmpfs {
        at: inside(Path::new("/tmp"))?,
        mode: cstr("mode=1777")?,
    });
    let writable = binds
        .iter()
        .filter(|(_, a)| *a == Access::Write)
        .map(|(p, _)| cstr(p.as_os_str().as_bytes()))
        .collect::<Result<_>>()?;
    for (p, access) in &binds {
        let is_dir = std::fs::metadata(p)
            .map_err(|e| Error::from_io(format!("isolation: {p:?}"), e))?
            .is_dir();
        for a in p.ancestors().collect::<Vec<_>>().into_iter().rev().skip(1) {
            if a != p.as_path() {
                steps.push(Step::Dir(inside(a)?));
            }
        }
        let at = inside(p)?;
        steps.push(if is_dir {
            Step::Dir(at.clone())
        } else {
            Step::File(at.clone())
        });
        steps.push(Step::Bind {
            source: cstr(p.as_os_str().as_bytes())?,
            at,
            write: *access == Access::Write,
        });
    }
    steps.push(Step::Proc(inside(Path::new("/proc"))?));
    steps.push(Step::Tmpfs {
        at: inside(Path::new("/dev"))?,
        mode: cstr("mode=0755")?,
    });
    for d in DEVICES {
        let p = Path::new("/dev").join(d);
        steps.push(Step::File(inside(&p)?));
        steps.push(Step::Bind {
            source: cstr(p.as_os_str().as_bytes())?,
            at: inside(&p)?,
            write: true,
        });
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: cstr(target)?,
            link: inside(&Path::new("/dev").join(link))?,
        });
    }
    steps.push(Step::Dir(inside(Path::new("/dev/shm"))?));
    steps.push(Step::Tmpfs {
        at: inside(Path::new("/dev/shm"))?,
        mode: cstr("mode=1777")?,
    });
    Ok(View {
        fds: vec![-1; steps.len()],
        steps,
        new_root: cstr(NEW_ROOT)?,
        net: level == Level::Restricted,
        writable,
    })
}

/// A path the program may write: never the root, nor the system's files.
fn writable_path(field: &'static str, p: PathBuf) -> Result<PathBuf> {
    let system = |s: &&str| p.starts_with(s) || Path::new(s).starts_with(&p);
    if p == Path::new("/") || SYSTEM.iter().any(system) {
        return Err(Error::invalid(
            field,
            format!("{p:?}: an isolated program may not write the system's files"),
        ));
    }
    Ok(p)
}

/// Whether everyone may already read (and `write`) `path`: no grant needed.
pub(crate) fn reachable(path: &Path, write: bool) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    let want = match (m.is_dir(), write) {
        (true, true) => 0o7,
        (true, false) => 0o5,
        (false, true) => 0o6,
        (false, false) => 0o4,
    };
    m.permissions().mode() & want == want
}

fn absolute(field: &'static str, p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| Error::from_io(format!("{field} {p:?}"), e))
}

/// Builds the view in the init (new mount namespace), then `pivot_root`
/// into it. Only system calls on prepared strings (no allocation): on
/// failure, the errno and the index of the step that failed.
///
/// # Safety
/// Only in the init of an isolated run, in a mount namespace of its own.
pub(crate) unsafe fn enter(v: &mut View) -> std::result::Result<(), (libc::c_int, usize)> {
    let errno = || {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() }
    };
    let null = std::ptr::null::<libc::c_char>();
    let nodata = std::ptr::null::<libc::c_void>();
    let root = v.new_root.as_ptr();
    // SAFETY: mount(2), mkdir(2) … on NUL-terminated strings made by `plan`.
    unsafe {
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            nodata,
        ) != 0
        {
            return Err((errno(), usize::MAX));
        }
        // Every source, opened here (in this mount namespace) before the
        // new root covers /tmp.
        for (i, s) in v.steps.iter().enumerate() {
            if let Step::Bind { source, .. } = s {
                v.fds[i] = libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                if v.fds[i] < 0 {
                    return Err((errno(), i));
                }
            }
        }
        if libc::mount(
            c"tmpfs".as_ptr(),
            root,
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=0755".as_ptr().cast(),
        ) != 0
        {
            return Err((errno(), usize::MAX));
        }
        for (i, s) in v.steps.iter().enumerate() {
            let ok = match s {
                Step::Dir(p) => libc::mkdir(p.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST,
                Step::File(p) => {
                    let fd = libc::open(
                        p.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    fd >= 0 && libc::close(fd) == 0
                }
                Step::Symlink { target, link } => {
                    libc::symlink(target.as_ptr(), link.as_ptr()) == 0
                }
                Step::Tmpfs { at, mode } => {
                    (libc::mkdir(at.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST)
                        && libc::mount(
                            c"tmpfs".as_ptr(),
                            at.as_ptr(),
                            c"tmpfs".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV,
                            mode.as_ptr().cast(),
                        ) == 0
                }
                Step::Proc(at) => {
                    (libc::mkdir(at.as_ptr(), 0o555) == 0 || errno() == libc::EEXIST)
                        && libc::mount(
                            c"proc".as_ptr(),
                            at.as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            nodata,
                        ) == 0
                }
                Step::Bind { at, write, .. } => {
                    let mut buf = [0u8; 32];
                    let source = fd_path(&mut buf, v.fds[i]);
                    libc::mount(
                        source,
                        at.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        nodata,
                    ) == 0
                        && remount(at, !*write)
                }
            };
            if !ok {
                return Err((errno(), i));
            }
            if v.fds[i] >= 0 {
                libc::close(v.fds[i]);
            }
        }
        // The root itself read-only (its /tmp and /dev/shm are mounts of their own).
        if !remount(&v.new_root, true)
            || libc::chdir(root) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err((errno(), usize::MAX));
        }
    }
    Ok(())
}

/// "/proc/self/fd/<fd>", NUL-terminated, written into `buf` (no allocation).
fn fd_path(buf: &mut [u8; 32], fd: libc::c_int) -> *const libc::c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.max(0) as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for k in 0..len {
        buf[PREFIX.len() + k] = digits[len - 1 - k];
    }
    buf[PREFIX.len() + len] = 0;
    buf.as_ptr().cast()
}

/// Remounts the bind at `at` with nosuid (and read-only if `ro`), keeping
/// the flags the source mount has (a user namespace may not clear them).
///
/// # Safety
/// In the init, on a mount it made.
unsafe fn remount(at: &CString, ro: bool) -> bool {
    // SAFETY: statfs(2) into a local struct; mount(2) on a prepared path.
    unsafe {
        // glibc's statvfs takes the flags from statfs(2) (Linux >= 2.6.36).
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(at.as_ptr(), &mut st) != 0 {
            return false;
        }
        let has = |flag: libc::c_long| st.f_flag as libc::c_long & flag != 0;
        let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID;
        for (st_flag, ms) in [
            (libc::ST_NODEV as libc::c_long, libc::MS_NODEV),
            (libc::ST_NOEXEC as libc::c_long, libc::MS_NOEXEC),
            (libc::ST_NOATIME as libc::c_long, libc::MS_NOATIME),
            (libc::ST_NODIRATIME as libc::c_long, libc::MS_NODIRATIME),
            (libc::ST_RELATIME as libc::c_long, libc::MS_RELATIME),
            (libc::ST_RDONLY as libc::c_long, libc::MS_RDONLY),
        ] {
            if has(st_flag) {
                flags |= ms;
            }
        }
        if ro {
            flags |= libc::MS_RDONLY;
        }
        libc::mount(
            std::ptr::null(),
            at.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) == 0
    }
}

/// What the program reads back before exec, and what it must find.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checks {
    /// The user it must run as (a root supervisor's program), if one.
    pub uid: Option<libc::uid_t>,
    /// The device of the host's root: the program's `/` must not be it.
    pub host_root_dev: libc::dev_t,
}

impl Checks {
    pub fn new() -> Result<Checks> {
        let m = std::fs::metadata("/").map_err(|e| Error::from_io("stat /", e))?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        Ok(Checks {
            uid: root.then_some(NOBODY),
            host_root_dev: std::os::unix::fs::MetadataExt::dev(&m) as libc::dev_t,
        })
    }
}

/// The program's last steps before exec under a level: leaves root (as
/// `checks` asks), drops every capability, sets `no_new_privs`, and reads
/// all of it back. Err: which check failed (1 user, 2 capabilities,
/// 3 no_new_privs, 4 the view), with the errno where a call failed.
///
/// # Safety
/// Only in the program's process before exec (async-signal-safe calls).
pub(crate) unsafe fn confine(c: &Checks) -> std::result::Result<(), (libc::c_int, i32)> {
    // SAFETY: (the whole body) credential and prctl calls on this process.
    unsafe {
        let errno = || *libc::__errno_location();
        if let Some(u) = c.uid {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(u, u, u) != 0
                || libc::setresuid(u, u, u) != 0
            {
                return Err((errno(), 1));
            }
            if libc::getuid() != u || libc::geteuid() != u || libc::getgid() != u {
                return Err((libc::EPERM, 1));
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let mut hdr = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let none = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capset, &mut hdr, none.as_ptr()) != 0 {
            return Err((errno(), 2));
        }
        let mut now = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut hdr, now.as_mut_ptr()) != 0
            || now
                .iter()
                .any(|d| d.effective | d.permitted | d.inheritable != 0)
        {
            return Err((libc::EPERM, 2));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1
        {
            return Err((errno(), 3));
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(c"/".as_ptr(), &mut st) != 0 || st.st_dev == c.host_root_dev {
            return Err((libc::EPERM, 4));
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Landlock, where the kernel has it: a second wall inside the view. The
/// program may read and execute anywhere in its view, write only its
/// working directory, the paths granted to write, `/tmp`, `/dev/shm` and
/// `/dev`; strict (ABI 4+) connects and binds no TCP port; and (ABI 6+) it
/// signals no process and reaches no abstract socket outside its own tree.
#[derive(Debug)]
pub(crate) struct Landlock {
    abi: i64,
    net: bool,
    writable: Vec<CString>,
}

const LL_CREATE_RULESET: libc::c_long = 444;
const LL_ADD_RULE: libc::c_long = 445;
const LL_RESTRICT_SELF: libc::c_long = 446;
const LL_RULESET_VERSION: u32 = 1;
const LL_RULE_PATH_BENEATH: libc::c_int = 1;
const LL_READ: u64 = 1 | 1 << 2 | 1 << 3; // EXECUTE, READ_FILE, READ_DIR

#[repr(C)]
struct RulesetAttr {
    fs: u64,
    net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed: u64,
    parent_fd: i32,
}

impl Landlock {
    /// The kernel's Landlock ABI version, or None (not built in, or off).
    pub fn abi() -> Option<i64> {
        static ABI: OnceLock<Option<i64>> = OnceLock::new();
        *ABI.get_or_init(|| {
            // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only asks the version.
            let v = unsafe {
                libc::syscall(
                    LL_CREATE_RULESET,
                    std::ptr::null::<RulesetAttr>(),
                    0usize,
                    LL_RULESET_VERSION,
                )
            };
            (v > 0).then_some(v as i64)
        })
    }

    /// The rules of a run with `view` (None where the kernel has no Landlock).
    pub fn plan(view: &View) -> Result<Option<Landlock>> {
        let Some(abi) = Self::abi() else {
            return Ok(None);
        };
        let mut w = view.writable.clone();
        for p in ["/tmp", "/dev/shm", "/dev"] {
            w.push(cstr(p)?);
        }
        Ok(Some(Landlock {
            abi,
            net: view.net,
            writable: w,
        }))
    }

    /// Every filesystem right this ABI knows.
    fn fs_rights(&self) -> u64 {
        let mut r = (1u64 << 13) - 1; // ABI 1: EXECUTE .. MAKE_SYM
        if self.abi >= 2 {
            r |= 1 << 13; // REFER
        }
        if self.abi >= 3 {
            r |= 1 << 14; // TRUNCATE
        }
        if self.abi >= 5 {
            r |= 1 << 15; // IOCTL_DEV
        }
        r
    }

    /// Restricts this process (the program, after `no_new_privs`, in its view).
    ///
    /// # Safety
    /// Only in the program's process before exec (raw calls, no allocation).
    pub unsafe fn enforce(&self) -> std::result::Result<(), libc::c_int> {
        let fs = self.fs_rights();
        let attr = RulesetAttr {
            fs,
            net: if self.abi >= 4 && !self.net { 3 } else { 0 }, // BIND_TCP | CONNECT_TCP
            scoped: if self.abi >= 6 { 3 } else { 0 },           // ABSTRACT_UNIX_SOCKET | SIGNAL
        };
        let size = match self.abi {
            1..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: (the whole body) Landlock system calls on local structs,
        // open/close on prepared paths.
        unsafe {
            let errno = || *libc::__errno_location();
            let rs = libc::syscall(LL_CREATE_RULESET, &attr, size, 0u32) as libc::c_int;
            if rs < 0 {
                return Err(errno());
            }
            let rule = |path: *const libc::c_char, allowed: u64| -> bool {
                let fd = libc::open(path, libc::O_PATH | libc::O_CLOEXEC);
                if fd < 0 {
                    return false;
                }
                let pb = PathBeneath {
                    allowed,
                    parent_fd: fd,
                };
                let r = libc::syscall(LL_ADD_RULE, rs, LL_RULE_PATH_BENEATH, &pb, 0u32);
                libc::close(fd);
                r == 0
            };
            let mut ok = rule(c"/".as_ptr(), LL_READ);
            for w in &self.writable {
                ok = ok && rule(w.as_ptr(), fs);
            }
            let ok = ok && libc::syscall(LL_RESTRICT_SELF, rs, 0u32) == 0;
            let e = errno();
            libc::close(rs);
            if ok {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// The system calls of the kernel's keyrings: a user's keyrings are the
/// same in every run of that user (`nobody` for a root supervisor: a
/// channel between runs; the supervisor's own user otherwise: its keys).
const KEYRING_CALLS: [libc::c_long; 3] =
    [libc::SYS_add_key, libc::SYS_keyctl, libc::SYS_request_key];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// The seccomp filter of an isolated program: the keyring calls fail with
/// EPERM; a call of another architecture (32-bit calls on x86_64, whose
/// numbers differ) kills the process; everything else is allowed. Pure.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn seccomp_program() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // struct seccomp_data: nr at 0, arch at 4.
    let mut p = vec![
        stmt(ld, 4),
        jeq(AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, 0),
    ];
    let n = KEYRING_CALLS.len() as u8;
    for (i, &call) in KEYRING_CALLS.iter().enumerate() {
        // To the EPERM return when equal (after the rest and the allow).
        p.push(jeq(call as u32, n - i as u8, 0));
    }
    p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
    p
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn seccomp_program() -> Vec<libc::sock_filter> {
    Vec::new()
}

/// Installs `program` (after `no_new_privs`). An empty program: nothing.
///
/// # Safety
/// Only in the program's process before exec; `program` lives meanwhile.
pub(crate) unsafe fn seccomp(
    program: &[libc::sock_filter],
) -> std::result::Result<(), libc::c_int> {
    if program.is_empty() {
        return Ok(());
    }
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(PR_SET_SECCOMP) with a filter that lives during the call.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        // SAFETY: this thread's errno.
        Err(unsafe { *libc::__errno_location() })
    }
}

/// What a level does not give here, for the outcome's `not_applied`.
pub(crate) fn not_applied(level: Level) -> Option<crate::outcome::NotApplied> {
    (level == Level::Restricted && Landlock::abi().unwrap_or(0) < 6).then(|| {
        crate::outcome::NotApplied {
            limit: "abstract_sockets",
            reason: "restricted shares the host's network namespace, and this kernel has no \
                     Landlock ABI 6 to keep the program from the host's abstract sockets"
                .into(),
        }
    })
}

/// What a failed step of `enter` or `confine` was, for the error.
pub(crate) fn failed_step(v: Option<&View>, step: usize, check: i32) -> String {
    if check > 0 {
        return match check {
            1 => format!("the program could not leave root for uid {NOBODY}"),
            2 => "the program's capabilities could not be dropped".into(),
            3 => "no_new_privs could not be set".into(),
            5 => "the kernel's Landlock refused the run's rules".into(),
            6 => "the seccomp filter (no keyrings) could not be installed".into(),
            _ => "the program's root is still the host's".into(),
        };
    }
    match v.and_then(|v| v.steps.get(step)) {
        Some(Step::Proc(_)) => "mounting a /proc of the run's PID namespace (a container that \
                                masks parts of /proc refuses it)"
            .into(),
        Some(s) => format!("building the view of the files: {s:?}"),
        None => "making the run's root (mount namespace, tmpfs, pivot_root)".into(),
    }
}

/// A working directory winsandbox made for one run (none given): the
/// program's own, removed with everything in it when the run ends.
#[derive(Debug)]
pub(crate) struct Workdir(pub PathBuf);

impl Workdir {
    pub fn new(uid: Option<libc::uid_t>) -> Result<Workdir> {
        let base = std::env::temp_dir();
        for _ in 0..100 {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            let n = next_id();
            let d = base.join(format!("winsandbox-work-{pid}-{n}"));
            let c = cstr(d.as_os_str().as_bytes())?;
            // SAFETY: mkdir(2) on a NUL-terminated path; 0700: the program's
            // alone from the start (then handed to it, never widened).
            if unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0 {
                if let Some(u) = uid {
                    // SAFETY: chown(2) of the folder we just made.
                    if unsafe { libc::chown(c.as_ptr(), u, u) } != 0 {
                        let e = Error::last_os(format!("chown {d:?}"));
                        let _ = std::fs::remove_dir(&d);
                        return Err(e);
                    }
                }
                return Ok(Workdir(d));
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::AlreadyExists {
                return Err(Error::last_os(format!("mkdir {d:?}")));
            }
        }
        Err(Error::sandbox("no free name for a working directory"))
    }

    /// Its path, the folder left in place (the caller's now).
    pub fn keep(self) -> PathBuf {
        let mut me = std::mem::ManuallyDrop::new(self);
        std::mem::take(&mut me.0)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One ACL entry for the program's user on a path winsandbox did not make
/// (a root supervisor's program runs as `nobody`): added when the first
/// run needing it starts, and the path's ACL and mode put back as they were
/// when the last one ends.
#[derive(Debug)]
pub(crate) struct Grant(PathBuf);

struct Saved {
    runs: usize,
    acl: Option<Vec<u8>>,
    mode: u32,
}

fn grants() -> &'static Mutex<HashMap<PathBuf, Saved>> {
    static G: OnceLock<Mutex<HashMap<PathBuf, Saved>>> = OnceLock::new();
    G.get_or_init(Default::default)
}

const ACL_XATTR: &std::ffi::CStr = c"system.posix_acl_access";

impl Grant {
    /// Grants `uid` read (and execute, for a folder) or read-write on `path`.
    pub fn new(path: &Path, uid: libc::uid_t, write: bool) -> Result<Grant> {
        let mut g = crate::engine::lock(grants());
        if let Some(s) = g.get_mut(path) {
            s.runs += 1;
            return Ok(Grant(path.to_path_buf()));
        }
        let c = cstr(path.as_os_str().as_bytes())?;
        let meta = std::fs::metadata(path).map_err(|e| Error::from_io(format!("{path:?}"), e))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        let acl = get_acl(&c);
        let perm = if write {
            7
        } else if meta.is_dir() {
            5
        } else {
            4
        };
        let new = acl_with(acl.as_deref(), mode, uid, perm);
        // SAFETY: setxattr(2) with a live buffer of its length.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                ACL_XATTR.as_ptr(),
                new.as_ptr().cast(),
                new.len(),
                0,
            )
        };
        if r != 0 {
            return Err(Error::last_os(format!(
                "granting uid {uid} access to {path:?} (a POSIX ACL)"
            )));
        }
        g.insert(path.to_path_buf(), Saved { runs: 1, acl, mode });
        Ok(Grant(path.to_path_buf()))
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut g = crate::engine::lock(grants());
        let Some(s) = g.get_mut(&self.0) else { return };
        s.runs -= 1;
        if s.runs > 0 {
            return;
        }
        let s = g.remove(&self.0).expect("present");
        let Ok(c) = cstr(self.0.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: xattr calls and chmod on a NUL-terminated path.
        unsafe {
            match &s.acl {
                Some(a) => {
                    libc::setxattr(
                        c.as_ptr(),
                        ACL_XATTR.as_ptr(),
                        a.as_ptr().cast(),
                        a.len(),
                        0,
                    );
                }
                None => {
                    libc::removexattr(c.as_ptr(), ACL_XATTR.as_ptr());
                }
            }
            libc::chmod(c.as_ptr(), s.mode as libc::mode_t);
        }
    }
}

fn get_acl(c: &CString) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: getxattr(2) into a live buffer of its length.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            ACL_XATTR.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// The (tag, perm, id) entries of a `system.posix_acl_access` value.
fn acl_entries(a: &[u8]) -> Vec<(u16, u16, u32)> {
    a[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect()
}

/// The `system.posix_acl_access` value of `acl` (or of the plain `mode`
/// when there is none) with an entry `uid: perm` added (or widened), and
/// the mask widened to let it through. Pure (the xattr format: a version
/// word, then (tag u16, perm u16, id u32) entries, sorted by tag then id).
pub(crate) fn acl_with(acl: Option<&[u8]>, mode: u32, uid: u32, perm: u16) -> Vec<u8> {
    let mut entries: Vec<(u16, u16, u32)> = match acl {
        Some(a) if a.len() >= 4 => acl_entries(a),
        _ => vec![
            (ACL_USER_OBJ, ((mode >> 6) & 7) as u16, ACL_UNDEFINED_ID),
            (ACL_GROUP_OBJ, ((mode >> 3) & 7) as u16, ACL_UNDEFINED_ID),
            (ACL_OTHER, (mode & 7) as u16, ACL_UNDEFINED_ID),
        ],
    };
    match entries.iter_mut().find(|e| e.0 == ACL_USER && e.2 == uid) {
        Some(e) => e.1 |= perm,
        None => entries.push((ACL_USER, perm, uid)),
    }
    let group = entries
        .iter()
        .find(|e| e.0 == ACL_GROUP_OBJ)
        .map_or(0, |e| e.1);
    match entries.iter_mut().find(|e| e.0 == ACL_MASK) {
        Some(m) => m.1 |= perm,
        None => entries.push((ACL_MASK, group | perm, ACL_UNDEFINED_ID)),
    }
    entries.sort_by_key(|e| (e.0, e.2));
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// What a canary found: Ok, or what was reachable that must not be.
pub(crate) type CanaryResult = std::result::Result<(), String>;

/// The canary's bait: a file readable by everyone, and a listener on
/// 127.0.0.1, both the supervisor's.
pub(crate) struct Bait {
    pub secret: CString,
    pub port: u16,
    _dir: Workdir,
    _listener: std::net::TcpListener,
}

impl Bait {
    pub fn new() -> Result<Bait> {
        let dir = Workdir::new(None)?;
        let f = dir.0.join("secret");
        std::fs::write(&f, b"canary").map_err(|e| Error::from_io(format!("{f:?}"), e))?;
        for p in [&dir.0, &f] {
            use std::os::unix::fs::PermissionsExt;
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::from_io(format!("{p:?}"), e))?;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::from_io("canary listener on 127.0.0.1", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::from_io("canary listener", e))?
            .port();
        Ok(Bait {
            secret: cstr(f.as_os_str().as_bytes())?,
            port,
            _dir: dir,
            _listener: listener,
        })
    }
}

/// The canary's own test, in a process under the level instead of a
/// program: bit 1, the secret could be opened; bit 2, the listener
/// could be reached (strict only).
///
/// # Safety
/// In the would-be program's process, before `_exit` (raw calls only).
pub(crate) unsafe fn canary_probe(secret: &CString, port: u16, net: bool) -> i32 {
    let mut found = 0;
    // SAFETY: open/socket/connect/close on local values.
    unsafe {
        let fd = libc::open(secret.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            found |= 1;
            libc::close(fd);
        }
        if !net {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if s >= 0 {
                let mut a: libc::sockaddr_in = std::mem::zeroed();
                a.sin_family = libc::AF_INET as libc::sa_family_t;
                a.sin_port = port.to_be();
                a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
                if libc::connect(
                    s,
                    (&a as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                ) == 0
                {
                    found |= 2;
                }
                libc::close(s);
            }
        }
    }
    found
}

/// The canary's verdict for each level, found once per process.
pub(crate) fn canary_once(level: Level, run: impl FnOnce() -> CanaryResult) -> CanaryResult {
    static DONE: OnceLock<Mutex<HashMap<Level, CanaryResult>>> = OnceLock::new();
    let m = DONE.get_or_init(Default::default);
    if let Some(r) = crate::engine::lock(m).get(&level) {
        return r.clone();
    }
    let r = run();
    crate::engine::lock(m).entry(level).or_insert(r).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_filter_refuses_the_keyrings_only() {
        let p = seccomp_program();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            // arch check, kill, load nr, one test per call, allow, EPERM
            assert_eq!(p.len(), 4 + KEYRING_CALLS.len() + 2);
            let last = p.len() - 1;
            for (i, c) in KEYRING_CALLS.iter().enumerate() {
                let jump = &p[4 + i];
                assert_eq!(jump.k, *c as u32);
                // Its jump lands on the EPERM return.
                assert_eq!(4 + i + 1 + jump.jt as usize, last);
            }
            assert_eq!(p[last].k, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
            assert_eq!(p[last - 1].k, libc::SECCOMP_RET_ALLOW);
        }
    }

    #[test]
    fn descriptor_paths() {
        let mut b = [0u8; 32];
        for fd in [0, 7, 10, 1234, i32::MAX] {
            // SAFETY: fd_path wrote a NUL-terminated string into `b`.
            let s = unsafe { std::ffi::CStr::from_ptr(fd_path(&mut b, fd)) };
            assert_eq!(s.to_str().unwrap(), format!("/proc/self/fd/{fd}"));
        }
    }

    #[test]
    fn an_acl_from_a_mode_gains_the_user_and_a_mask() {
        let a = acl_with(None, 0o750, 65534, 7);
        assert_eq!(&a[..4], &2u32.to_le_bytes());
        let e = acl_entries(&a);
        assert_eq!(
            e,
            vec![
                (ACL_USER_OBJ, 7, u32::MAX),
                (ACL_USER, 7, 65534),
                (ACL_GROUP_OBJ, 5, u32::MAX),
                (ACL_MASK, 7, u32::MAX),
                (ACL_OTHER, 0, u32::MAX),
            ]
        );
        // Adding again widens the one entry, and keeps the rest.
        let b = acl_with(Some(&acl_with(Some(&a), 0, 1000, 4)), 0, 65534, 1);
        assert_eq!(b.len(), 4 + 6 * 8);
    }
}
