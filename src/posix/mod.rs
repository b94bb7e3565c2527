//! The POSIX fallback backend, so the same API runs on Linux laptops and CI.
//! Windows stays the product: nothing here shapes the Windows design.
//!
//! - A job is a set of sessions: each process started into it calls
//!   `setsid()` in the child (Rust code only between fork and exec), with
//!   `PR_SET_PDEATHSIG` (Linux) so the tree dies with the supervisor.
//!   Ending the job kills every process group with `SIGKILL`.
//! - Memory: the monitor samples private writable memory (`VmData`, as
//!   committed memory on Windows) and ends the job over the limit;
//!   `RLIMIT_DATA` at twice the limit plus 1 GiB only guards the machine, and
//!   an abnormal exit after the peak crossed the limit is `MLE`. CPU: `RLIMIT_CPU` per process (`SIGXCPU` is
//!   `TLE` by the kernel) and the monitor over the tree. Wall time, process
//!   counts and output: the monitor and the pump. Priority: `nice`.
//! - CPU rate, I/O rate, affinity and UI restrictions are not applied, and
//!   the outcome says so.

mod exec;
mod monitor;
mod run;
#[cfg(target_os = "linux")]
mod spawn;

pub use crate::outcome::Accounting;
pub use run::{process_alive, Child, Running, Sandbox};
