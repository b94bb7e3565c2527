//! One error type for the whole crate: bad input names the field and the value,
//! an operating-system failure names the operation and keeps the OS code
//! (a Win32 error code on Windows, an errno elsewhere).

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// A value given by the caller is unusable (`field` names it).
    Invalid {
        field: &'static str,
        message: String,
    },
    /// An operating-system call failed; `source.raw_os_error()` is its code.
    Os { op: String, source: io::Error },
    /// The sandbox could not do what was asked, and no OS call failed with
    /// a code to tell (an unexpected state, a thread that could not start).
    Sandbox { message: String },
    /// An isolation level this system does not enforce: nothing was started.
    /// `code` is the OS code of the call that refused, when one did.
    Isolation {
        level: crate::command::Level,
        message: String,
        code: Option<i32>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The last OS error of this thread, for the operation `op`.
    pub fn last_os(op: impl Into<String>) -> Self {
        Error::Os {
            op: op.into(),
            source: io::Error::last_os_error(),
        }
    }

    pub fn os(op: impl Into<String>, code: i32) -> Self {
        Error::Os {
            op: op.into(),
            source: io::Error::from_raw_os_error(code),
        }
    }

    /// A failure of the sandbox's own, with no OS code.
    pub fn sandbox(message: impl Into<String>) -> Self {
        Error::Sandbox {
            message: message.into(),
        }
    }

    /// `level` is not enforced here (`message` says what is missing).
    pub fn isolation(
        level: crate::command::Level,
        message: impl Into<String>,
        code: Option<i32>,
    ) -> Self {
        Error::Isolation {
            level,
            message: message.into(),
            code,
        }
    }

    pub fn from_io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Os {
            op: op.into(),
            source,
        }
    }

    /// The Win32 error code (Windows) or errno (elsewhere), when there is one.
    pub fn os_code(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            Error::Isolation { code, .. } => *code,
            Error::Invalid { .. } | Error::Sandbox { .. } => None,
        }
    }
}

/// A copy for every waiter of a run that failed: the OS code and the text
/// stay (an `io::Error` itself cannot be cloned).
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Invalid { field, message } => Error::invalid(field, message.clone()),
            Error::Os { op, source } => Error::Os {
                op: op.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Sandbox { message } => Error::sandbox(message.clone()),
            Error::Isolation {
                level,
                message,
                code,
            } => Error::isolation(*level, message.clone(), *code),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { field, message } => write!(f, "invalid {field}: {message}"),
            Error::Os { op, source } => write!(f, "{op} failed: {source}"),
            Error::Sandbox { message } => f.write_str(message),
            Error::Isolation {
                level,
                message,
                code,
            } => {
                write!(
                    f,
                    "isolation {:?} is not enforced on this system, nothing was started: {message}",
                    level.as_str()
                )?;
                match code {
                    Some(c) => write!(f, " (OS error {c})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            Error::Invalid { .. } | Error::Sandbox { .. } | Error::Isolation { .. } => None,
        }
    }
}
