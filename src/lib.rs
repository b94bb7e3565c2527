//! winsandbox: run untrusted programs inside Windows Job Objects, with enforced
//! limits, whole-tree cleanup and an exact account of what happened.
//!
//! The platform-neutral model (limits, outcome, monitor decisions, command
//! lines) lives at the top; each backend in its own folder. The platform split
//! is made here, once: `backend` is the one for this system.

pub mod cli;
pub mod cmdline;
pub mod command;
pub mod decide;
pub mod driver;
pub mod engine;
pub mod error;
pub mod interactive;
pub mod isolation;
pub mod jobplan;
pub mod limits;
pub mod outcome;

#[cfg(windows)]
#[path = "windows/mod.rs"]
pub mod win;
#[cfg(windows)]
pub use win as backend;

#[cfg(unix)]
#[path = "posix/mod.rs"]
pub mod posix;
#[cfg(unix)]
pub use posix as backend;

#[cfg(feature = "python")]
mod python;

/// This system's backend: "windows" or "posix".
#[cfg(windows)]
pub const BACKEND: &str = "windows";
#[cfg(unix)]
pub const BACKEND: &str = "posix";

/// Wine's version when running under Wine; None elsewhere.
pub fn wine_version() -> Option<String> {
    #[cfg(windows)]
    return win::wine_version();
    #[cfg(unix)]
    None
}

pub use command::{Command, Output, SpawnPath, Stdin};
pub use error::{Error, Result};
pub use limits::{Limits, Priority};
pub use outcome::{Mechanism, NotApplied, Outcome, ProcessInfo, Verdict};

/// Runs `cmd` in a fresh sandbox to the end, on this system's backend.
pub fn run(cmd: &Command) -> Result<Outcome> {
    let mut r = backend::Running::start(cmd)?;
    loop {
        if let Some(o) = r.wait(None)? {
            return Ok(o);
        }
    }
}
