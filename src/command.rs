//! What to run: the platform-neutral request both backends take.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    /// The read end of a pipe another sandboxed program writes (an
    /// interactive run, `crate::interactive`).
    Pipe(PipeEnd),
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
    /// The write end of a pipe another sandboxed program reads (an
    /// interactive run): the supervisor reads none of it, and the output
    /// limit does not count it.
    Pipe(PipeEnd),
}

/// One end of a pipe between two sandboxed programs, for the one run that
/// uses it: taken at that run's start (a second start with it is an error),
/// and closed in the supervisor once that program holds it, so each side
/// sees the end of the pipe when the other program ends.
#[derive(Clone)]
pub struct PipeEnd(Arc<Mutex<Option<crate::backend::PipeHandle>>>);

impl PipeEnd {
    /// Takes the handle; `what` names the use for the error once taken.
    pub fn take(&self, what: &'static str) -> crate::Result<crate::backend::PipeHandle> {
        crate::engine::lock(&self.0)
            .take()
            .ok_or_else(|| crate::Error::invalid(what, "this pipe end was given to a run already"))
    }
}

impl PartialEq for PipeEnd {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PipeEnd {}

impl std::fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipeEnd")
    }
}

/// A pipe for two sandboxed programs: (read end, write end).
pub fn pipe() -> crate::Result<(PipeEnd, PipeEnd)> {
    let (r, w) = crate::backend::child_pipe()?;
    let end = |h| PipeEnd(Arc::new(Mutex::new(Some(h))));
    Ok((end(r), end(w)))
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

/// How far the program is kept from what it was not granted (the README's
/// isolation table). Orthogonal to the limits; a level this system cannot
/// enforce is refused before the program starts (`Error::Isolation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Level {
    /// No isolation beyond the job: today's behaviour.
    #[default]
    None,
    /// The system's files, its program and the paths granted to read; its
    /// working directory and the paths granted to write; no network, no
    /// process or object outside its job.
    Strict,
    /// As strict, with the host's network (for programs strict breaks);
    /// on Windows it also reads what the Users group may (a restricted
    /// token at low integrity: the README's table).
    Restricted,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::None, Level::Strict, Level::Restricted];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Strict => "strict",
            Level::Restricted => "restricted",
        }
    }

    /// The level named `s` ("none", "strict", "restricted").
    pub fn parse(s: &str) -> crate::Result<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                crate::Error::invalid("isolation", format!("{s:?} (none, strict, restricted)"))
            })
    }
}

/// The isolation a run asks for: its level and the paths granted to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    pub level: Level,
    /// Paths the program may read (files or folders), besides the system's.
    pub readable: Vec<PathBuf>,
    /// Paths the program may read and write, besides its working directory.
    pub writable: Vec<PathBuf>,
}

impl Isolation {
    /// Bad grants are errors naming the argument, before anything starts:
    /// grants need a level, and name existing absolute paths.
    pub fn validate(&self) -> crate::Result<()> {
        for (field, paths) in [("readable", &self.readable), ("writable", &self.writable)] {
            if !paths.is_empty() && self.level == Level::None {
                return Err(crate::Error::invalid(
                    field,
                    "paths are granted only with an isolation level (strict or restricted)",
                ));
            }
            for p in paths {
                if !p.exists() {
                    return Err(crate::Error::os(
                        format!("{field} {p:?}: no such file or directory"),
                        not_found_code(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The system's code for "no such file" (errno ENOENT, Win32 ERROR_FILE_NOT_FOUND: both 2).
fn not_found_code() -> i32 {
    2
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
    pub isolation: Isolation,
    /// Keep the working directory an isolated run gets when it is given no
    /// `cwd` (removed otherwise), and name it in `Outcome::workdir`: where a
    /// file-I/O program leaves its output.
    pub keep_workdir: bool,
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

    /// Its isolation, checked before a run starts: the grants, and
    /// `keep_workdir`, which needs a level and no `cwd` (only then is a
    /// working directory made for the run).
    pub fn validate_isolation(&self) -> crate::Result<()> {
        self.isolation.validate()?;
        if self.keep_workdir && self.isolation.level == Level::None {
            return Err(crate::Error::invalid(
                "keep_workdir",
                "a working directory is made only for an isolated run (strict or restricted)",
            ));
        }
        if self.keep_workdir && self.cwd.is_some() {
            return Err(crate::Error::invalid(
                "keep_workdir",
                "a working directory is made only when no cwd is given (a cwd is yours, never removed)",
            ));
        }
        Ok(())
    }

    /// This command with `default` isolation when it asks for none of its
    /// own (a `Sandbox`'s, for each process started into it), checked.
    pub fn isolated_by(&self, default: &Isolation) -> crate::Result<Command> {
        if self.keep_workdir {
            return Err(crate::Error::invalid(
                "keep_workdir",
                "not for a process started into a Sandbox (no outcome names it): give it a cwd",
            ));
        }
        let mut c = self.clone();
        if c.isolation.level == Level::None {
            c.isolation = default.clone();
        }
        c.isolation.validate()?;
        Ok(c)
    }
}
