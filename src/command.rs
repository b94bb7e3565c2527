//! What to run: the platform-neutral request both backends take.

use std::path::PathBuf;

use crate::cmdline::EnvSpec;
use crate::limits::Limits;

/// Where the child's stdin comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// An empty stdin (the null device).
    #[default]
    Null,
    /// These bytes, then end of file (written by the supervisor as the child reads).
    Bytes(Vec<u8>),
    /// This file, opened for reading.
    File(PathBuf),
}

/// Where stdout or stderr goes. Output is always read through a pipe by the
/// supervisor, so the output limit holds whichever is chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Kept in memory and returned in the outcome.
    #[default]
    Capture,
    /// Written to this file (created or truncated).
    File(PathBuf),
    /// Read and dropped.
    Discard,
}

/// How the child is put into its job (Windows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpawnPath {
    /// `JOB_LIST` where the system has it, else suspended + assign + resume.
    #[default]
    Auto,
    /// `PROC_THREAD_ATTRIBUTE_JOB_LIST`: in the job before its first instruction.
    JobList,
    /// `CREATE_SUSPENDED`, `AssignProcessToJobObject`, `ResumeThread`.
    Suspended,
}

#[derive(Clone, Debug, Default)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: EnvSpec,
    pub stdin: Stdin,
    pub stdout: Output,
    pub stderr: Output,
    pub limits: Limits,
    pub spawn_path: SpawnPath,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            env: EnvSpec::inherit(),
            ..Default::default()
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }

    pub fn stdin(mut self, s: Stdin) -> Self {
        self.stdin = s;
        self
    }
}
