//! What tells the driver thread (`crate::driver`) which runs have something
//! to do. Linux: one epoll set, edge-triggered, holding every driven run's
//! pipes and pidfd under the run's key, and an eventfd that wakes the thread.
//! Edge-triggered fits the runs' pumps, which read and write until the pipe
//! would block; a pidfd becomes readable once, when its process exits.
//! Elsewhere: no epoll, so the thread looks at every run every 10 ms.

#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

#[cfg(target_os = "linux")]
use crate::error::Error;
use crate::error::Result;

/// The key of the wake-up eventfd; keys of runs start at 1.
#[cfg(target_os = "linux")]
const WAKE_KEY: u64 = 0;

#[cfg(target_os = "linux")]
pub struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Poller {
    pub fn new() -> Result<Poller> {
        // SAFETY: epoll_create1 returns a new fd or -1.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(Error::last_os("epoll_create1"));
        }
        // SAFETY: a new fd we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: eventfd returns a new fd or -1.
        let ev = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if ev < 0 {
            return Err(Error::last_os("eventfd"));
        }
        // SAFETY: a new fd we own.
        let wake = unsafe { OwnedFd::from_raw_fd(ev) };
        let p = Poller { epoll, wake };
        p.add_raw(p.wake.as_raw_fd(), libc::EPOLLIN as u32, WAKE_KEY)?;
        Ok(p)
    }

    fn add_raw(&self, fd: i32, events: u32, key: u64) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLET as u32,
            u64: key,
        };
        // SAFETY: both fds are open; `ev` is a live struct.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0
        {
            return Err(Error::last_os("epoll_ctl"));
        }
        Ok(())
    }

    /// Watches `fd` for reading (or writing) under `key` until it is closed.
    pub fn add(&self, fd: &impl AsRawFd, write: bool, key: usize) -> Result<()> {
        let events = if write { libc::EPOLLOUT } else { libc::EPOLLIN };
        self.add_raw(fd.as_raw_fd(), events as u32, key as u64)
    }

    /// Wakes the thread blocked in `wait`.
    pub fn wake(&self) {
        let one = 1u64;
        // SAFETY: writing 8 bytes from a live u64 to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Blocks until something fires or `until`; pushes the keys of the runs
    /// that have something to do onto `fired`.
    pub fn wait(&self, until: Option<Instant>, fired: &mut Vec<usize>) -> Result<()> {
        const EMPTY: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };
        let mut evs = [EMPTY; 256];
        let ms = until.map_or(-1, |u| {
            crate::decide::dur_to_timeout_ms(u.saturating_duration_since(Instant::now()))
                .min(i32::MAX as u32) as i32
        });
        // SAFETY: `evs` is a live array of the length passed.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::Interrupted => Ok(()),
                _ => Err(Error::from_io("epoll_wait", e)),
            };
        }
        for ev in &evs[..n as usize] {
            let key = ev.u64;
            if key == WAKE_KEY {
                let mut v = 0u64;
                // SAFETY: reading 8 bytes into a live u64 from our eventfd.
                let _ =
                    unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
            } else {
                fired.push(key as usize);
            }
        }
        Ok(())
    }
}

/// Without epoll: the thread looks at every run every 10 ms.
#[cfg(not(target_os = "linux"))]
pub struct Poller;

#[cfg(not(target_os = "linux"))]
impl Poller {
    pub fn new() -> Result<Poller> {
        Ok(Poller)
    }

    pub fn add(&self, fd: &impl std::os::fd::AsRawFd, write: bool, key: usize) -> Result<()> {
        let _ = (fd, write, key);
        Ok(())
    }

    pub fn wake(&self) {}

    pub fn wait(&self, until: Option<Instant>, fired: &mut Vec<usize>) -> Result<()> {
        let tick = std::time::Duration::from_millis(10);
        let d = until.map_or(tick, |u| {
            u.saturating_duration_since(Instant::now()).min(tick)
        });
        std::thread::sleep(d);
        fired.push(usize::MAX); // every run
        Ok(())
    }
}
