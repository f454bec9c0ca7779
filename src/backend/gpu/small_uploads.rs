//! Small host-to-device uploads through page-locked memory: a training step's few per-step inputs
//! (the batch's draws, labels, the learning rate) go up without the host ever waiting for the
//! device. A copy from pageable memory "might be synchronous with respect to host" (CUDA's notes on
//! API synchronisation): the host could then stall until the stream drained, and the GPU idle while
//! the host prepares the next step. From page-locked memory the copy is queued and the call returns.
//!
//! A ring of [`SLOTS`] buffers of [`SLOT_BYTES`] each: an upload copies its bytes into the next slot,
//! queues the copy on the stream and records the slot's event; before a slot is written again, the
//! host waits for that event, which the copy [`SLOTS`] uploads earlier recorded (in a training loop,
//! several steps back: in practice it never waits). Larger uploads keep the pageable path.

use std::sync::Arc;

use super::driver::{DevicePtr, Driver, Staging};
use crate::error::Result;

/// Bytes a slot holds: the largest upload that goes through the ring (a draw table of 2,340 images).
pub(super) const SLOT_BYTES: usize = 64 * 1024;
/// Slots in the ring: 1 MiB of page-locked memory.
const SLOTS: usize = 16;

pub(super) struct SmallUploads<D: Driver> {
    driver: Arc<D>,
    slots: Vec<Staging>,
    next: usize,
}

impl<D: Driver> SmallUploads<D> {
    pub(super) fn new(driver: &Arc<D>) -> Result<Self> {
        let mut ring = SmallUploads {
            driver: driver.clone(),
            slots: Vec::with_capacity(SLOTS),
            next: 0,
        };
        for _ in 0..SLOTS {
            // On an error, `ring` frees the slots made so far.
            ring.slots.push(driver.alloc_staging(SLOT_BYTES)?);
        }
        Ok(ring)
    }

    /// Queues the copy of `src` (at most [`SLOT_BYTES`]) to device `dst` on the stream.
    ///
    /// # Safety
    /// `dst` is valid device memory for `src.len()` writes.
    pub(super) unsafe fn upload(&mut self, src: &[u8], dst: DevicePtr) -> Result<()> {
        assert!(src.len() <= SLOT_BYTES, "a small upload fits a slot");
        let slot = &self.slots[self.next];
        self.driver.wait_staging(slot)?;
        // SAFETY: the slot holds SLOT_BYTES >= src.len() bytes, and no copy reads it any more.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), slot.ptr, src.len()) };
        // SAFETY: the caller's guarantee for `dst`; the slot holds the bytes.
        unsafe { self.driver.upload_staged(slot, dst, src.len())? };
        self.next = (self.next + 1) % SLOTS;
        Ok(())
    }
}

impl<D: Driver> Drop for SmallUploads<D> {
    fn drop(&mut self) {
        for s in &self.slots {
            // SAFETY: each came from `alloc_staging` and is freed once, here (after its last copy).
            unsafe { self.driver.free_staging(s) };
        }
    }
}
