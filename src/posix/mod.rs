//! The POSIX fallback backend, so the same API runs on Linux laptops and CI.
//! Windows stays the product: nothing here shapes the Windows design.
//!
//! - A job is a cgroup (Linux, where one can be made beneath the
//!   supervisor's own: `cgroup`): the child joins it before exec, so all it
//!   starts is in it, whatever `setsid` or double fork it does. Ending the
//!   job is one `cgroup.kill` (v2), else freeze-kill-thaw (v1 freezer). Its
//!   CPU (`cpuacct`/`cpu.stat`) counts every process that ever ran in it,
//!   and its memory peak, limit and OOM kills are the kernel's (`memory`).
//!   Without a cgroup a job is a set of sessions (each process started into
//!   it calls `setsid()`), killed group by group, and `not_applied` names
//!   what is weaker ("containment", the memory limit).
//! - `PR_SET_PDEATHSIG` so the main process dies with the supervisor.
//! - Memory: the monitor also samples private writable memory (`VmData`, as
//!   committed memory on Windows) per process and ends the job over the
//!   limit; `RLIMIT_DATA` at twice the limit plus 1 GiB only guards the
//!   machine, and an abnormal exit after the peak crossed the limit is
//!   `MLE`. CPU: `RLIMIT_CPU` per process (`SIGXCPU` is `TLE` by the kernel),
//!   the monitor over the tree, and the tree's total at the end. Wall time,
//!   process counts and output: the monitor and the pump. No limit fires
//!   once the main process has exited. Priority: `nice`.
//! - CPU rate, I/O rate, affinity and UI restrictions are not applied, and
//!   the outcome says so.

mod cgroup;
mod exec;
#[cfg(target_os = "linux")]
mod isolate;
mod monitor;
mod poller;
mod run;
#[cfg(target_os = "linux")]
mod spawn;

pub use crate::engine::Killer;
pub use crate::outcome::Accounting;
pub use poller::Poller;
pub use run::{child_pipe, process_alive, Child, Running, Sandbox};

/// A pipe end a sandboxed program holds (`command::PipeEnd`).
pub type PipeHandle = std::os::fd::OwnedFd;
