//! What starting a program needs on any POSIX system, used by both ways of
//! starting it (`spawn`, Linux's clone-based path, and `run`'s std path
//! elsewhere): the program's path, the nice value of a priority, the
//! `RLIMIT_DATA` backstop of a memory limit.

use crate::command::Command;
use crate::error::{Error, Result};
use crate::limits::Priority;

pub(super) fn nice_of(p: Priority) -> i32 {
    match p {
        Priority::Idle => 19,
        Priority::BelowNormal => 10,
        Priority::Normal => 0,
        Priority::AboveNormal => -5,
        Priority::High => -10,
    }
}

/// A clear error for a program that does not exist (std would say only ENOENT).
pub(super) fn resolve(cmd: &Command) -> Result<std::path::PathBuf> {
    let p = std::path::Path::new(&cmd.program);
    if cmd.program.contains('/') {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        if p.is_dir() {
            return Err(Error::os(
                format!("starting {:?}: a directory, not a program", cmd.program),
                libc::EISDIR,
            ));
        }
        return Err(Error::os(
            format!("starting {:?}", cmd.program),
            libc::ENOENT,
        ));
    }
    let mut path = if cmd.env.inherit {
        std::env::var("PATH").ok()
    } else {
        None
    };
    for (k, v) in &cmd.env.changes {
        if k == "PATH" {
            path = v.clone();
        }
    }
    std::env::split_paths(&path.unwrap_or_else(|| "/usr/bin:/bin".into()))
        .map(|d| d.join(&cmd.program))
        .find(|c| c.is_file())
        .ok_or_else(|| Error::os(format!("finding {:?} on PATH", cmd.program), libc::ENOENT))
}

/// `RLIMIT_DATA` for a memory limit `m`: the monitor is the limit; this only
/// guards the machine, far enough above it that the monitor sees it crossed.
pub(super) fn data_backstop(m: u64) -> u64 {
    m.saturating_mul(2).saturating_add(1 << 30)
}

/// A pipe, both ends close-on-exec: (read, write).
pub(super) fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::last_os("pipe2"));
    }
    // SAFETY: two new fds we own.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}
