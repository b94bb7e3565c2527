//! Process and thread attribute lists (`STARTUPINFOEX`), for the spawn and
//! for the isolation checks.

use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::Threading::{
    DeleteProcThreadAttributeList, InitializeProcThreadAttributeList, UpdateProcThreadAttribute,
    LPPROC_THREAD_ATTRIBUTE_LIST,
};

use super::handle::werr;
use crate::error::Result;

/// An initialised attribute list, deleted on drop.
pub(crate) struct AttrList {
    buf: Vec<usize>,
}

impl AttrList {
    pub(crate) fn new(count: u32) -> Result<AttrList> {
        let mut size = 0usize;
        // SAFETY: a size query: no list, `size` is writable. It fails with
        // ERROR_INSUFFICIENT_BUFFER by design.
        let _ = unsafe { InitializeProcThreadAttributeList(None, count, None, &mut size) };
        let mut buf = vec![0usize; size.div_ceil(std::mem::size_of::<usize>()).max(1)];
        let list = LPPROC_THREAD_ATTRIBUTE_LIST(buf.as_mut_ptr() as *mut _);
        // SAFETY: `buf` holds at least `size` bytes, usize-aligned.
        unsafe { InitializeProcThreadAttributeList(Some(list), count, None, &mut size) }
            .map_err(|e| werr("InitializeProcThreadAttributeList", e))?;
        Ok(AttrList { buf })
    }

    pub(crate) fn ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        LPPROC_THREAD_ATTRIBUTE_LIST(self.buf.as_mut_ptr() as *mut _)
    }

    /// # Safety
    /// `value` must stay valid and unmoved until the list is dropped.
    pub(crate) unsafe fn set(
        &mut self,
        attribute: u32,
        value: *const HANDLE,
        count: usize,
    ) -> windows::core::Result<()> {
        // SAFETY: the caller keeps `value` alive.
        unsafe {
            self.set_bytes(
                attribute,
                value.cast(),
                count * std::mem::size_of::<HANDLE>(),
            )
        }
    }
}

impl AttrList {
    /// Sets `attribute` to the `size` bytes at `value`.
    ///
    /// # Safety
    /// `value` must stay valid and unmoved until the list is dropped.
    pub(crate) unsafe fn set_bytes(
        &mut self,
        attribute: u32,
        value: *const std::ffi::c_void,
        size: usize,
    ) -> windows::core::Result<()> {
        // SAFETY: the list is initialised; the caller keeps `value` alive.
        unsafe {
            UpdateProcThreadAttribute(
                self.ptr(),
                0,
                attribute as usize,
                Some(value),
                size,
                None,
                None,
            )
        }
    }
}

impl Drop for AttrList {
    fn drop(&mut self) {
        // SAFETY: the list was initialised in `new`.
        unsafe { DeleteProcThreadAttributeList(self.ptr()) };
    }
}
