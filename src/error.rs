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
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { field, message } => write!(f, "invalid {field}: {message}"),
            Error::Os { op, source } => write!(f, "{op} failed: {source}"),
            Error::Sandbox { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            Error::Invalid { .. } | Error::Sandbox { .. } => None,
        }
    }
}
