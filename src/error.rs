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
            Error::Invalid { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { field, message } => write!(f, "invalid {field}: {message}"),
            Error::Os { op, source } => write!(f, "{op} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            Error::Invalid { .. } => None,
        }
    }
}
