//! Pipes between the supervisor and a child: the child's end is an ordinary
//! inheritable handle, ours is overlapped, so one thread can serve stdin,
//! stdout and stderr at once without deadlock, waiting on their events.

use std::sync::atomic::{AtomicU64, Ordering};

use windows::core::HSTRING;
use windows::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE, HANDLE};
use windows::Win32::Security::SECURITY_ATTRIBUTES;
use windows::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_FLAGS_AND_ATTRIBUTES, FILE_FLAG_FIRST_PIPE_INSTANCE,
    FILE_FLAG_OVERLAPPED, FILE_READ_ATTRIBUTES, FILE_SHARE_MODE, FILE_WRITE_ATTRIBUTES,
    OPEN_EXISTING, PIPE_ACCESS_INBOUND, PIPE_ACCESS_OUTBOUND,
};
use windows::Win32::System::Pipes::{
    CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows::Win32::System::Threading::{CreateEventW, GetCurrentProcessId};
use windows::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::handle::*;
use crate::error::{Error, Result};

/// Read buffer of each output pipe (and write chunk of stdin): small, since
/// every live run holds two.
const BUF: usize = 16 * 1024;

pub(crate) struct PipePair {
    /// Overlapped, not inheritable: the supervisor's end.
    pub ours: OwnedHandle,
    /// Inheritable: given to the child, closed by us once it started.
    pub theirs: OwnedHandle,
}

fn inheritable() -> SECURITY_ATTRIBUTES {
    SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        bInheritHandle: true.into(),
        ..Default::default()
    }
}

/// A pipe whose data flows to us (`inbound`: the child's stdout/stderr) or
/// from us (the child's stdin).
pub(crate) fn pipe(inbound: bool) -> Result<PipePair> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // SAFETY: no arguments, cannot fail.
    let pid = unsafe { GetCurrentProcessId() };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = HSTRING::from(format!(
        r"\\.\pipe\winsandbox-{pid}-{}-{nanos:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let access = if inbound {
        PIPE_ACCESS_INBOUND
    } else {
        PIPE_ACCESS_OUTBOUND
    };
    // Explicit: Wine would give a pipe made without one no descriptor at
    // all, and any process could open it by its name.
    let private = super::security::supervisor_only()?.attributes(false);
    // SAFETY: `name` is a live NUL-terminated string; `private` and its
    // descriptor outlive the call.
    let ours = unsafe {
        CreateNamedPipeW(
            &name,
            access | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            BUF as u32,
            BUF as u32,
            0,
            Some(&private),
        )
    };
    if ours.is_invalid() {
        return Err(Error::last_os("CreateNamedPipeW"));
    }
    // SAFETY: a new valid handle.
    let ours = unsafe { own(ours) };
    let sa = inheritable();
    let their_access = if inbound {
        GENERIC_WRITE.0 | FILE_READ_ATTRIBUTES.0
    } else {
        GENERIC_READ.0 | FILE_WRITE_ATTRIBUTES.0
    };
    // SAFETY: `name` and `sa` are live; the pipe exists (created above).
    let theirs = unsafe {
        CreateFileW(
            &name,
            their_access,
            FILE_SHARE_MODE(0),
            Some(&sa),
            OPEN_EXISTING,
            FILE_FLAGS_AND_ATTRIBUTES(0),
            None,
        )
    }
    .map_err(|e| werr("CreateFileW(pipe client)", e))?;
    // SAFETY: a new valid handle.
    let theirs = unsafe { own(theirs) };
    Ok(PipePair { ours, theirs })
}

/// A pipe between two sandboxed programs (`command::pipe`): (read, write),
/// both ends inheritable and synchronous, as a program's stdio expects.
/// Each is passed to its child by the spawn's explicit handle list only.
pub fn child_pipe() -> Result<(OwnedHandle, OwnedHandle)> {
    use windows::Win32::System::Pipes::CreatePipe;
    // An anonymous pipe is a named one with a generated name (Wine's can be
    // opened by it): the same descriptor as the supervisor's own pipes.
    let sa = super::security::supervisor_only()?.attributes(true);
    let (mut r, mut w) = (HANDLE::default(), HANDLE::default());
    // SAFETY: `sa` is live for the call; the out-pointers are valid locals.
    unsafe { CreatePipe(&mut r, &mut w, Some(&sa), 64 * 1024) }
        .map_err(|e| werr("CreatePipe", e))?;
    // SAFETY: two new valid handles that nothing else owns.
    Ok(unsafe { (own(r), own(w)) })
}

/// Opens a file or device as an inheritable handle for a child's stdio.
pub(crate) fn open_inheritable(path: &str, write: bool) -> Result<OwnedHandle> {
    open_file(path, write, true)
}

/// Opens `path` to read (it must exist) or to write (created, or truncated to
/// zero in the same `CreateFileW(CREATE_ALWAYS)` call; std's `File::create`
/// truncates afterwards with `SetFileInformationByHandle`, which device names
/// such as `NUL` refuse under Wine). `inherit`: for a child's stdio.
pub(crate) fn open_file(path: &str, write: bool, inherit: bool) -> Result<OwnedHandle> {
    use windows::Win32::Storage::FileSystem::{
        CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE,
    };
    let sa = inheritable();
    let name = HSTRING::from(path);
    let (access, disp) = if write {
        (GENERIC_WRITE.0, CREATE_ALWAYS)
    } else {
        (GENERIC_READ.0, OPEN_EXISTING)
    };
    // SAFETY: `name` and `sa` are live for the call.
    let h = unsafe {
        CreateFileW(
            &name,
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            inherit.then_some(&sa as *const _),
            disp,
            FILE_ATTRIBUTE_NORMAL,
            None,
        )
    }
    .map_err(|e| {
        werr(
            format!("{} {path:?}", if write { "creating" } else { "opening" }),
            e,
        )
    })?;
    // SAFETY: a new valid handle.
    Ok(unsafe { own(h) })
}

fn event() -> Result<OwnedHandle> {
    // SAFETY: an anonymous manual-reset event, as overlapped I/O needs.
    let h =
        unsafe { CreateEventW(None, true, false, None) }.map_err(|e| werr("CreateEventW", e))?;
    // SAFETY: a new valid handle.
    Ok(unsafe { own(h) })
}

/// One overlapped operation at a time on one handle. The buffer and the
/// OVERLAPPED are boxed: the kernel writes to them until the operation ends,
/// and Drop waits for that.
struct Op {
    handle: OwnedHandle,
    event: OwnedHandle,
    ov: Box<OVERLAPPED>,
    pending: bool,
    /// The call itself failed with a broken pipe: the OVERLAPPED was never
    /// written, so it must not be polled.
    closed: bool,
}

enum Poll {
    Pending,
    Done(usize),
    /// The other end is gone (broken pipe, no data).
    Closed,
}

impl Op {
    fn new(handle: OwnedHandle) -> Result<Op> {
        Ok(Op {
            handle,
            event: event()?,
            ov: Box::new(OVERLAPPED::default()),
            pending: false,
            closed: false,
        })
    }

    fn arm(&mut self) -> *mut OVERLAPPED {
        *self.ov = OVERLAPPED {
            hEvent: raw(&self.event),
            ..Default::default()
        };
        &mut *self.ov
    }

    /// After ReadFile/WriteFile returned: pending, done at once, or closed.
    fn started(&mut self, r: windows::core::Result<()>) -> Result<()> {
        match r {
            Ok(()) => self.pending = true, // completed; the event is set and poll() reads the count
            Err(e) if win32_code(&e) == ERROR_IO_PENDING => self.pending = true,
            Err(e) if matches!(win32_code(&e), ERROR_BROKEN_PIPE | ERROR_NO_DATA) => {
                self.closed = true
            }
            Err(e) => return Err(werr("overlapped pipe I/O", e)),
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Poll> {
        if self.closed {
            return Ok(Poll::Closed);
        }
        if !self.pending {
            return Ok(Poll::Pending);
        }
        let mut n = 0u32;
        // SAFETY: `ov` is the OVERLAPPED of the operation on this handle.
        match unsafe { GetOverlappedResult(raw(&self.handle), &*self.ov, &mut n, false) } {
            Ok(()) => {
                self.pending = false;
                Ok(Poll::Done(n as usize))
            }
            Err(e) => match win32_code(&e) {
                ERROR_IO_INCOMPLETE => Ok(Poll::Pending),
                ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_OPERATION_ABORTED => {
                    self.pending = false;
                    Ok(Poll::Closed)
                }
                _ => {
                    self.pending = false;
                    Err(werr("GetOverlappedResult(pipe)", e))
                }
            },
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.pending {
            let mut n = 0u32;
            // SAFETY: cancel our own operation, then wait until the kernel is
            // done with `ov` and the buffer before they are freed.
            unsafe {
                let _ = CancelIoEx(raw(&self.handle), Some(&*self.ov));
            }
            // SAFETY: as above.
            let _ = unsafe { GetOverlappedResult(raw(&self.handle), &*self.ov, &mut n, true) };
        }
    }
}

/// Reads a pipe to its end, handing each chunk to the caller.
pub(crate) struct Reader {
    op: Op,
    buf: Box<[u8]>,
    pub eof: bool,
}

impl Reader {
    pub fn new(handle: OwnedHandle) -> Result<Reader> {
        Ok(Reader {
            op: Op::new(handle)?,
            buf: vec![0u8; BUF].into_boxed_slice(),
            eof: false,
        })
    }

    /// The supervisor's end of the pipe.
    pub fn handle(&self) -> &OwnedHandle {
        &self.op.handle
    }

    /// The event to wait on while a read is pending.
    pub fn event(&self) -> Option<HANDLE> {
        (self.op.pending && !self.eof).then(|| raw(&self.op.event))
    }

    /// Starts a read if none is pending; then returns the bytes of a finished one.
    pub fn pump(&mut self) -> Result<Option<&[u8]>> {
        if self.eof {
            return Ok(None);
        }
        if !self.op.pending {
            let ov = self.op.arm();
            // SAFETY: the buffer and OVERLAPPED are boxed and outlive the
            // operation (Op's Drop waits for it); the handle is open.
            let r = unsafe {
                ReadFile(
                    raw(&self.op.handle),
                    Some(&mut self.buf[..]),
                    None,
                    Some(ov),
                )
            };
            self.op.started(r)?;
        }
        match self.op.poll()? {
            Poll::Pending => Ok(None),
            Poll::Done(n) => Ok(Some(&self.buf[..n])),
            Poll::Closed => {
                self.eof = true;
                Ok(None)
            }
        }
    }
}

/// Writes a buffer into a pipe, then closes it (the child sees end of file).
pub(crate) struct Writer {
    op: Option<Op>,
    data: Vec<u8>,
    pos: usize,
}

impl Writer {
    pub fn new(handle: OwnedHandle, data: Vec<u8>) -> Result<Writer> {
        let mut w = Writer {
            op: Some(Op::new(handle)?),
            data,
            pos: 0,
        };
        if w.data.is_empty() {
            w.op = None;
        }
        Ok(w)
    }

    pub fn event(&self) -> Option<HANDLE> {
        self.op
            .as_ref()
            .and_then(|o| o.pending.then(|| raw(&o.event)))
    }

    pub fn done(&self) -> bool {
        self.op.is_none()
    }

    /// The supervisor's end of the pipe, while it is open.
    pub fn handle(&self) -> Option<&OwnedHandle> {
        self.op.as_ref().map(|o| &o.handle)
    }

    /// Starts the next write or finishes the last; closes the pipe at the end
    /// or when the child stopped reading.
    pub fn pump(&mut self) -> Result<()> {
        loop {
            let Some(op) = self.op.as_mut() else {
                return Ok(());
            };
            if !op.pending {
                let end = (self.pos + BUF).min(self.data.len());
                let ov = op.arm();
                // SAFETY: `data` is not touched while the write is pending (its
                // heap buffer stays put); Op's Drop waits for the operation.
                let r = unsafe {
                    WriteFile(
                        raw(&op.handle),
                        Some(&self.data[self.pos..end]),
                        None,
                        Some(ov),
                    )
                };
                op.started(r)?;
            }
            match op.poll()? {
                Poll::Pending => return Ok(()),
                Poll::Done(n) => {
                    self.pos += n;
                    if self.pos >= self.data.len() {
                        self.op = None; // closes our end: end of file for the child
                        return Ok(());
                    }
                }
                Poll::Closed => {
                    self.op = None;
                    return Ok(());
                }
            }
        }
    }
}

// SAFETY: an Op owns its handles and its boxed OVERLAPPED; the raw event
// handle inside the OVERLAPPED is a process-wide value, valid from any thread.
// Ops are used by one thread at a time (behind `&mut` or a Mutex).
unsafe impl Send for Op {}
