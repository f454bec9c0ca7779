//! Device memory of the GPU backend: a tensor's buffer, with the element type it currently holds and,
//! for a weight used by bf16 convolutions, its bf16 copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::driver::{DevicePtr, Driver};
use crate::backend::DType;

/// One device allocation, freed on drop.
pub(super) struct Allocation<D: Driver> {
    pub(super) ptr: DevicePtr,
    pub(super) bytes: usize,
    pub(super) driver: Arc<D>,
}

impl<D: Driver> Drop for Allocation<D> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            // SAFETY: allocated by this driver with this size; dropped once. Work using it was issued
            // on the driver's one in-order stream, so the driver frees it after that work.
            unsafe { self.driver.free(self.ptr, self.bytes) }
        }
    }
}

/// Device memory holding `len` elements of a tensor; freed on drop.
///
/// The allocation always has room for `len` f32 (4 bytes an element), whatever the buffer holds now:
/// layers allocate their tensors before the backend decides, op by op, what it writes into them (see
/// `crate::backend::DType`). A bf16 activation thus leaves half of its allocation unused; what bf16
/// buys is bandwidth, and the bytes an op moves are `len * dtype.size()`.
pub struct DeviceBuffer<D: Driver> {
    pub(super) mem: Allocation<D>,
    pub(super) len: usize,
    /// What the buffer holds now: set by every op that writes it.
    pub(super) dtype: DType,
    /// The bf16 copy of an f32 weight, made on its first use by a bf16 convolution.
    pub(super) bf16_copy: OnceLock<Allocation<D>>,
    /// Whether `bf16_copy` equals the f32 values rounded: set when the copy is made and by the SGD
    /// kernel that writes both; cleared by every other write of the f32 values (upload, copy).
    pub(super) bf16_copy_fresh: AtomicBool,
}

impl<D: Driver> DeviceBuffer<D> {
    pub(super) fn new(mem: Allocation<D>, len: usize, dtype: DType) -> Self {
        DeviceBuffer {
            mem,
            len,
            dtype,
            bf16_copy: OnceLock::new(),
            bf16_copy_fresh: AtomicBool::new(false),
        }
    }

    /// The device address (0 for an empty buffer).
    pub fn ptr(&self) -> DevicePtr {
        self.mem.ptr
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the allocation in bytes.
    pub fn bytes(&self) -> usize {
        self.mem.bytes
    }

    /// The element type the buffer holds now.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of the current contents: `len` elements of `dtype`.
    pub fn content_bytes(&self) -> usize {
        self.len * self.dtype.size()
    }

    /// Records that the f32 values were overwritten by something other than the SGD kernel.
    pub(super) fn f32_values_changed(&mut self) {
        *self.bf16_copy_fresh.get_mut() = false;
    }

    pub(super) fn bf16_copy_is_fresh(&self) -> bool {
        self.bf16_copy_fresh.load(Ordering::Acquire)
    }

    pub(super) fn set_bf16_copy_fresh(&self) {
        self.bf16_copy_fresh.store(true, Ordering::Release);
    }
}
