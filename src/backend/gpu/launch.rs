//! Kernel argument lists and launch geometry shared by every GPU op.

use std::ffi::c_void;

use super::driver::DevicePtr;

/// A `cuLaunchKernel`-style argument list. Each argument lives in its own 8-byte slot, little-endian,
/// so a slot holds a device pointer, a 64-bit integer, a double, or (in its low bytes) an `int` or a
/// `float`; the kernel reads exactly its parameter's size from the slot's address.
#[derive(Default)]
pub struct KernelArgs {
    slots: Vec<u64>,
}

impl KernelArgs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `T*` / `const T*` parameter (`ptr` may be 0 for a null pointer).
    pub fn ptr(mut self, ptr: DevicePtr) -> Self {
        self.slots.push(ptr);
        self
    }

    /// An `int` parameter. Panics if `v` does not fit: ops validated the shapes, so a size past
    /// `i32::MAX` here is a bug in the backend's choice of parameter type.
    pub fn int(mut self, v: usize) -> Self {
        let v = i32::try_from(v).expect("kernel int argument fits in i32");
        self.slots.push(v as u32 as u64);
        self
    }

    /// An `unsigned long long` parameter.
    pub fn u64(mut self, v: usize) -> Self {
        self.slots.push(v as u64);
        self
    }

    /// A `float` parameter.
    pub fn f32(mut self, v: f32) -> Self {
        self.slots.push(v.to_bits() as u64);
        self
    }

    /// A `double` parameter.
    pub fn f64(mut self, v: f64) -> Self {
        self.slots.push(v.to_bits());
        self
    }

    /// The `void**` array: one pointer per slot. Valid while `self` is borrowed.
    pub fn params(&mut self) -> Vec<*mut c_void> {
        self.slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect()
    }
}

/// Threads per block of the 1-D grid-stride kernels.
pub const BLOCK_1D: u32 = 256;
/// Most blocks a 1-D grid-stride launch uses; the loop covers the rest.
const MAX_BLOCKS_1D: usize = 1 << 16;

/// Grid and block for a 1-D grid-stride loop over `n` items.
pub fn grid_1d(n: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    let blocks = n.div_ceil(BLOCK_1D as usize).clamp(1, MAX_BLOCKS_1D) as u32;
    ((blocks, 1, 1), (BLOCK_1D, 1, 1))
}
