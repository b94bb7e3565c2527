//! What tells the driver thread (`crate::driver`) which runs have something
//! to do: one I/O completion port. Each driven run's pipe ends are
//! associated with it under the run's key, so every overlapped read or write
//! that completes posts a packet; the exit of a process of the run's job
//! reaches the monitor's port as a job message, and the monitor posts it on
//! here (`monitor::on_message`). Key 0 only wakes the thread.

use std::time::Instant;

use windows::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
use windows::Win32::System::IO::{
    CreateIoCompletionPort, GetQueuedCompletionStatus, PostQueuedCompletionStatus, OVERLAPPED,
};

use super::handle::{own, raw, werr, OwnedHandle};
use crate::error::Result;

const WAKE_KEY: usize = 0;

pub struct Poller {
    port: OwnedHandle,
}

impl Poller {
    pub fn new() -> Result<Poller> {
        // SAFETY: a new port not bound to any file.
        let port = unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, 1) }
            .map_err(|e| werr("CreateIoCompletionPort", e))?;
        // SAFETY: a new handle we own.
        let port = unsafe { own(port) };
        Ok(Poller { port })
    }

    /// Where the monitor posts a job's process exits: the port's raw value
    /// (the driver's port lives as long as the process).
    pub(crate) fn target(&self, key: usize) -> PortKey {
        PortKey {
            port: raw(&self.port).0 as usize,
            key,
        }
    }

    /// Posts every completed overlapped operation on `h` under `key`.
    pub fn add(&self, h: &OwnedHandle, key: usize) -> Result<()> {
        // SAFETY: both handles are open; associating a handle with a port
        // lasts until the handle is closed.
        unsafe { CreateIoCompletionPort(raw(h), Some(raw(&self.port)), key, 0) }
            .map_err(|e| werr("CreateIoCompletionPort(pipe)", e))?;
        Ok(())
    }

    pub fn wake(&self) {
        self.target(WAKE_KEY).post();
    }

    /// Blocks until a packet comes or `until`; pushes the keys of the runs
    /// that have something to do onto `fired`.
    pub fn wait(&self, until: Option<Instant>, fired: &mut Vec<usize>) -> Result<()> {
        let mut ms = until.map_or(u32::MAX, |u| {
            crate::decide::dur_to_timeout_ms(u.saturating_duration_since(Instant::now()))
        });
        // Up to 256 packets a wake-up: the first waits, the rest are taken
        // as they are queued.
        for _ in 0..256 {
            let mut bytes = 0u32;
            let mut key = 0usize;
            let mut ov: *mut OVERLAPPED = std::ptr::null_mut();
            // SAFETY: the port is open; the out-pointers are valid locals. A
            // packet's OVERLAPPED is not read (its operation may be gone).
            let got = unsafe {
                GetQueuedCompletionStatus(raw(&self.port), &mut bytes, &mut key, &mut ov, ms)
            };
            // A failed operation (a pipe closed) still dequeues its packet.
            if got.is_err() && ov.is_null() {
                break; // timed out: nothing queued
            }
            if key != WAKE_KEY {
                fired.push(key);
            }
            ms = 0;
        }
        Ok(())
    }
}

/// A port and a key to post to, from any thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortKey {
    port: usize,
    key: usize,
}

impl PortKey {
    pub fn post(self) {
        // SAFETY: the driver's port is open for the life of the process; no
        // OVERLAPPED is passed.
        let _ =
            unsafe { PostQueuedCompletionStatus(HANDLE(self.port as *mut _), 0, self.key, None) };
    }
}
