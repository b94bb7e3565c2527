//! wsb-probe: a small program that misbehaves on request, for the tests and
//! the demo. `wsb-probe COMMAND [ARGS]`:
//!
//! exit N | sleep SECS | spin SECS | crash | echo-args ARGS... | cat |
//! cat-both | flood BYTES | alloc MIB HOLD_SECS | fork-bomb | tree N SECS |
//! grandchild SECS | env NAME | cwd | in-job | handle-valid VALUE | hello |
//! daemon SECS | setsid-bomb | holder SECS | spin-children N SECS | burn SECS |
//! shared MIB | peak MIB SECS | interactor IN OUT | guess | guess-wrong
//!
//! `interactor` is a testlib-style interactor for "guess the number": the
//! secret (1..=1000) is in the file IN; each query `? X` on its stdin gets
//! `<`, `>` or `=` (the secret against X); `! X` is the answer. It writes
//! its reason to the file OUT and exits 0 (right), 1 (wrong, or over 20
//! queries), 2 (a line it cannot read, or the end of its input).
//! `guess` plays it by bisection; `guess-wrong` answers one off.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn me() -> std::path::PathBuf {
    std::env::current_exe().expect("current_exe")
}

fn arg<T: std::str::FromStr>(a: &[String], i: usize, what: &str) -> T {
    a.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("wsb-probe: {what} expected");
        std::process::exit(64)
    })
}

fn spawn_self(args: &[&str]) -> std::io::Result<std::process::Child> {
    Command::new(me())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

#[cfg(windows)]
fn in_job() -> bool {
    use windows::Win32::System::JobObjects::IsProcessInJob;
    use windows::Win32::System::Threading::GetCurrentProcess;
    let mut r = windows::Win32::Foundation::FALSE;
    // SAFETY: current-process pseudo-handle, writable BOOL.
    unsafe { IsProcessInJob(GetCurrentProcess(), None, &mut r) }.is_ok() && r.as_bool()
}

#[cfg(not(windows))]
fn in_job() -> bool {
    false
}

#[cfg(windows)]
fn handle_valid(v: usize) -> bool {
    use windows::Win32::Foundation::{GetHandleInformation, HANDLE};
    let mut flags = 0u32;
    // SAFETY: only queries a handle value; an invalid one makes it fail.
    unsafe { GetHandleInformation(HANDLE(v as *mut _), &mut flags) }.is_ok()
}

#[cfg(not(windows))]
fn handle_valid(v: usize) -> bool {
    // SAFETY: fcntl on any integer is safe; a closed fd gives EBADF.
    unsafe { libc::fcntl(v as i32, libc::F_GETFD) != -1 }
}

#[cfg(unix)]
fn shared_memory(len: usize) {
    // SAFETY: a new anonymous shared mapping of `len` bytes, written only
    // within its bounds.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            eprintln!("mmap failed");
            std::process::exit(3);
        }
        for off in (0..len).step_by(4096) {
            *(p as *mut u8).add(off) = 1;
        }
    }
}

/// Two copies of itself (`cmd GENERATION+1`) each, then waits. Bounded at
/// 10 generations (at most 2,047 processes), so a sandbox that failed to
/// stop it cannot take the machine down with it.
fn bomb(cmd: &str, a: &[String]) {
    let generation: u32 = a.get(1).and_then(|g| g.parse().ok()).unwrap_or(0);
    let mut kids = Vec::new();
    if generation < 10 {
        let next = (generation + 1).to_string();
        for _ in 0..2 {
            if let Ok(c) = spawn_self(&[cmd, &next]) {
                kids.push(c);
            }
        }
    }
    std::thread::sleep(Duration::from_secs(30));
}

/// Leaves the session (POSIX; nothing elsewhere).
fn new_session() {
    #[cfg(unix)]
    // SAFETY: setsid on ourselves.
    unsafe {
        libc::setsid();
    }
}

/// This process's CPU time (POSIX; wall time since start elsewhere).
fn own_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }
    #[cfg(not(unix))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
}

/// Whether our child `pid` has ended and is waiting to be reaped (POSIX;
/// elsewhere: not running).
fn ended_unreaped(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(not(unix))]
fn shared_memory(len: usize) {
    std::hint::black_box(vec![1u8; len]);
}

/// A child's pid as the supervisor numbers it. In a PID namespace of its own
/// (the Linux backend) the probe's pids are the namespace's; `/proc` is the
/// supervisor's, so the child is found there by its innermost `NSpid`
/// among the processes of this namespace.
fn outside_pid(id: u32) -> u32 {
    #[cfg(target_os = "linux")]
    {
        let mine = std::fs::read_link("/proc/self/ns/pid").ok();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() != mine {
                continue;
            }
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let inner = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<u32>().ok());
            if inner == Some(id) {
                return p;
            }
        }
    }
    id
}

fn interactor(a: &[String]) {
    use std::io::BufRead;
    let secret: u32 = std::fs::read_to_string(&a[1])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| std::process::exit(3)); // judge failure: no test
    let verdict = |code: i32, why: &str| -> ! {
        let _ = std::fs::write(&a[2], why);
        std::process::exit(code)
    };
    let mut out = std::io::stdout().lock();
    let mut queries = 0;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u32>().ok())) {
            (Some("?"), Some(x)) => {
                queries += 1;
                if queries > 20 {
                    verdict(1, "too many queries");
                }
                let r = match secret.cmp(&x) {
                    std::cmp::Ordering::Less => "<",
                    std::cmp::Ordering::Greater => ">",
                    std::cmp::Ordering::Equal => "=",
                };
                if writeln!(out, "{r}").and_then(|()| out.flush()).is_err() {
                    verdict(2, "the solution stopped reading");
                }
            }
            (Some("!"), Some(x)) if x == secret => verdict(0, "ok"),
            (Some("!"), Some(_)) => verdict(1, "wrong answer"),
            _ => verdict(2, "a line that is not a query or an answer"),
        }
    }
    verdict(2, "unexpected end of input")
}

fn guess(wrong: bool) {
    use std::io::BufRead;
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    let (mut lo, mut hi) = (1u32, 1000u32);
    while lo <= hi {
        let mid = (lo + hi) / 2;
        writeln!(out, "? {mid}").unwrap();
        out.flush().unwrap();
        let mut r = String::new();
        if input.read_line(&mut r).unwrap_or(0) == 0 {
            std::process::exit(4);
        }
        match r.trim() {
            "<" => hi = mid - 1,
            ">" => lo = mid + 1,
            _ => {
                writeln!(out, "! {}", if wrong { mid + 1 } else { mid }).unwrap();
                return;
            }
        }
    }
}

fn allowed(r: std::io::Result<()>) {
    match r {
        Ok(()) => println!("allowed"),
        Err(e) => println!("denied: {e}"),
    }
}

#[allow(clippy::zombie_processes)] // children are left running on purpose
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let cmd = a.first().map(String::as_str).unwrap_or("hello");
    let mut out = std::io::stdout().lock();
    match cmd {
        "hello" => println!("hello from wsb-probe"),
        "exit" => std::process::exit(arg(&a, 1, "exit code")),
        "sleep" => std::thread::sleep(Duration::from_secs_f64(arg(&a, 1, "seconds"))),
        "spin" => {
            let until = Instant::now() + Duration::from_secs_f64(arg(&a, 1, "seconds"));
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        }
        "crash" => {
            let p = std::hint::black_box(std::ptr::null_mut::<u32>());
            // SAFETY: none: this is the crash the tests ask for.
            unsafe { p.write_volatile(1) };
        }
        "echo-args" => {
            for x in &a[1..] {
                out.write_all(x.as_bytes()).unwrap();
                out.write_all(b"\0").unwrap();
            }
        }
        "cat" => {
            std::io::copy(&mut std::io::stdin().lock(), &mut out).unwrap();
        }
        "cat-both" => {
            // stdin to both stdout and stderr, chunk by chunk: deadlocks a
            // supervisor that does not serve all three pipes at once.
            let mut err = std::io::stderr().lock();
            let mut buf = vec![0u8; 1 << 16];
            let mut input = std::io::stdin().lock();
            loop {
                let n = input.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).unwrap();
                err.write_all(&buf[..n]).unwrap();
            }
        }
        "flood" => {
            let total: u64 = arg(&a, 1, "bytes");
            let chunk = vec![b'x'; 1 << 16];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if out.write_all(&chunk[..n]).is_err() {
                    std::process::exit(1);
                }
                left -= n as u64;
            }
        }
        "alloc" => {
            let mib: usize = arg(&a, 1, "MiB");
            let hold: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            for _ in 0..mib {
                let mut v: Vec<u8> = Vec::new();
                if v.try_reserve_exact(1 << 20).is_err() {
                    eprintln!("allocation failed after {} MiB", blocks.len());
                    std::process::exit(3);
                }
                v.resize(1 << 20, 1); // touch every page
                blocks.push(v);
            }
            println!("allocated {mib} MiB");
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs_f64(hold));
            std::hint::black_box(&blocks);
        }
        "interactor" => interactor(&a),
        "guess" | "guess-wrong" => guess(a[0] == "guess-wrong"),
        "peak" => {
            // MiB touched, then freed; the program goes on for SECS.
            let mib: usize = arg(&a, 1, "MiB");
            let mut v: Vec<u8> = vec![1; mib << 20];
            std::hint::black_box(&mut v);
            drop(v);
            println!("touched and freed {mib} MiB");
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs_f64(arg(&a, 2, "seconds")));
        }
        "fork-bomb" => bomb("fork-bomb", &a),
        "tree" => {
            // N children that sleep SECS, their pids on stdout; then sleeps as long.
            let n: usize = arg(&a, 1, "count");
            let secs: String = arg(&a, 2, "seconds");
            for _ in 0..n {
                let c = spawn_self(&["sleep", &secs]).unwrap();
                println!("{}", outside_pid(c.id()));
            }
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs_f64(secs.parse().unwrap_or(0.0)));
        }
        "grandchild" => {
            // A child that starts a grandchild and returns at once.
            let secs: String = arg(&a, 1, "seconds");
            let c = spawn_self(&["sleep", &secs]).unwrap();
            println!("{}", outside_pid(c.id()));
        }
        "escape-group" => {
            // A child that leaves the process group (POSIX; on Windows a plain
            // child), then this process lingers a moment and returns.
            let secs: String = arg(&a, 1, "seconds");
            let c = spawn_self(&["new-group-sleep", &secs]).unwrap();
            println!("{}", outside_pid(c.id()));
            out.flush().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
        "new-group-sleep" => {
            #[cfg(unix)]
            // SAFETY: setpgid on ourselves.
            unsafe {
                libc::setpgid(0, 0);
            }
            std::thread::sleep(Duration::from_secs_f64(arg(&a, 1, "seconds")));
        }
        "daemon" => {
            // A child that leaves the session (setsid) and outlives this
            // process, which returns at once: the classic daemon.
            let secs: String = arg(&a, 1, "seconds");
            let c = spawn_self(&["setsid-sleep", &secs]).unwrap();
            println!("{}", outside_pid(c.id()));
        }
        "setsid-sleep" => {
            new_session();
            std::thread::sleep(Duration::from_secs_f64(arg(&a, 1, "seconds")));
        }
        "setsid-bomb" => {
            // fork-bomb, each process in a session of its own first.
            new_session();
            bomb("setsid-bomb", &a)
        }
        "holder" => {
            // A child that keeps this process's stdout open for SECS; its pid
            // on stdout; this process returns at once.
            let secs: String = arg(&a, 1, "seconds");
            let c = Command::new(me())
                .args(["sleep", &secs])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            println!("{}", outside_pid(c.id()));
        }
        "spin-children" => {
            // N children that burn SECS of CPU each (their own CPU clock),
            // never waited for (their CPU is in no rusage of ours); returns
            // once they have all ended.
            let n: u32 = arg(&a, 1, "count");
            let secs: f64 = arg(&a, 2, "seconds");
            let kids: Vec<_> = (0..n)
                .map(|_| spawn_self(&["burn", &secs.to_string()]).unwrap())
                .collect();
            while !kids.iter().all(|c| ended_unreaped(c.id())) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        "burn" => {
            let secs: f64 = arg(&a, 1, "seconds");
            let mut x = 0u64;
            while own_cpu_seconds() < secs {
                for _ in 0..100_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
            }
            std::hint::black_box(x);
        }
        "shared" => {
            // MIB of shared anonymous memory, every page touched (POSIX; a
            // plain allocation elsewhere), then held a moment.
            let mib: usize = arg(&a, 1, "MiB");
            shared_memory(mib << 20);
            println!("touched {mib} MiB shared");
            out.flush().unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        "env" => println!(
            "{}",
            std::env::var(arg::<String>(&a, 1, "name")).unwrap_or_else(|_| "<unset>".into())
        ),
        "cwd" => println!("{}", std::env::current_dir().unwrap().display()),
        // The denied-actions suite (isolation): each prints "allowed" or
        // "denied: <error>" and exits 0 either way.
        "try-read" => allowed(std::fs::read(arg::<String>(&a, 1, "path")).map(|_| ())),
        "try-write" => allowed(std::fs::write(arg::<String>(&a, 1, "path"), b"written")),
        "try-connect" => allowed(
            std::net::TcpStream::connect(("127.0.0.1", arg::<u16>(&a, 1, "port"))).map(|_| ()),
        ),
        "try-list" => allowed(std::fs::read_dir(arg::<String>(&a, 1, "path")).map(|_| ())),
        #[cfg(target_os = "linux")]
        "try-keyring" => {
            // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, create)
            // SAFETY: a query of this process's user keyring's id.
            let r = unsafe { libc::syscall(libc::SYS_keyctl, 0, -4, 1) };
            allowed(if r >= 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            })
        }
        #[cfg(target_os = "linux")]
        "try-unix" => {
            use std::os::linux::net::SocketAddrExt;
            let name = arg::<String>(&a, 1, "abstract socket name");
            allowed(
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| std::os::unix::net::UnixStream::connect_addr(&addr))
                    .map(|_| ()),
            )
        }
        #[cfg(windows)]
        "try-kill" => {
            use windows::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE};
            let pid: u32 = arg(&a, 1, "pid");
            // SAFETY: asks for a handle and closes it at once (dropped).
            let r = unsafe { OpenProcess(PROCESS_TERMINATE, false, pid) };
            allowed(
                r.map(|h| {
                    // SAFETY: the handle just opened.
                    let _ = unsafe { windows::Win32::Foundation::CloseHandle(h) };
                })
                .map_err(|e| std::io::Error::other(e.to_string())),
            )
        }
        #[cfg(unix)]
        "try-kill" => {
            let pid: i32 = arg(&a, 1, "pid");
            // SAFETY: kill(2) with signal 0 sends nothing: it asks whether it could.
            let r = unsafe { libc::kill(pid, 0) };
            allowed(if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            })
        }
        #[cfg(windows)]
        "try-find-window" => {
            use windows::core::PCWSTR;
            use windows::Win32::UI::WindowsAndMessaging::FindWindowW;
            let title: Vec<u16> = arg::<String>(&a, 1, "window title")
                .encode_utf16()
                .chain(Some(0))
                .collect();
            // SAFETY: a NUL-terminated title; no class name.
            let r = unsafe { FindWindowW(PCWSTR::null(), PCWSTR(title.as_ptr())) };
            allowed(
                r.map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            )
        }
        "in-job" => println!("{}", in_job()),
        "handle-valid" => println!("{}", handle_valid(arg(&a, 1, "handle value"))),
        _ => {
            eprintln!("wsb-probe: unknown command {cmd:?}");
            std::process::exit(64);
        }
    }
}
