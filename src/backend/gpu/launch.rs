//! Kernel argument lists and launch geometry shared by every GPU op.

use std::ffi::c_void;

use super::driver::DevicePtr;

/// A `cuLaunchKernel`-style argument list. Each argument starts on its own 8-byte word, little-endian,
/// so a word holds a device pointer, a 64-bit integer, a double, or (in its low bytes) an `int` or a
/// `float`; a by-value struct takes as many words as it needs. The kernel reads exactly its
/// parameter's size from the argument's address.
#[derive(Default)]
pub struct KernelArgs {
    words: Vec<u64>,
    /// Index in `words` of each argument's first word.
    starts: Vec<usize>,
}

impl KernelArgs {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `T*` / `const T*` parameter (`ptr` may be 0 for a null pointer).
    pub fn ptr(self, ptr: DevicePtr) -> Self {
        self.word(ptr)
    }

    fn word(mut self, w: u64) -> Self {
        self.starts.push(self.words.len());
        self.words.push(w);
        self
    }

    /// A by-value struct parameter (`#[repr(C)]`, plain old data, alignment at most 8), copied.
    pub fn value<T: KernelPod>(mut self, v: &T) -> Self {
        const { assert!(std::mem::align_of::<T>() <= 8) };
        let size = std::mem::size_of::<T>();
        let start = self.words.len();
        self.starts.push(start);
        self.words.resize(start + size.div_ceil(8).max(1), 0);
        // SAFETY: `T: KernelPod` is plain data with no padding-sensitive invariants; the destination
        // words were just allocated with at least `size` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                v as *const T as *const u8,
                self.words[start..].as_mut_ptr() as *mut u8,
                size,
            )
        };
        self
    }

    /// An `int` parameter. Panics if `v` does not fit: ops validated the shapes, so a size past
    /// `i32::MAX` here is a bug in the backend's choice of parameter type.
    pub fn int(self, v: usize) -> Self {
        let v = i32::try_from(v).expect("kernel int argument fits in i32");
        self.word(v as u32 as u64)
    }

    /// An `unsigned long long` parameter.
    pub fn u64(self, v: usize) -> Self {
        self.word(v as u64)
    }

    /// A `float` parameter.
    pub fn f32(self, v: f32) -> Self {
        self.word(v.to_bits() as u64)
    }

    /// A `double` parameter.
    pub fn f64(self, v: f64) -> Self {
        self.word(v.to_bits())
    }

    /// The `void**` array: one pointer per argument. Valid while `self` is borrowed.
    pub fn params(&mut self) -> Vec<*mut c_void> {
        let base = self.words.as_mut_ptr();
        self.starts
            .iter()
            // SAFETY: every start indexes into `words`.
            .map(|&i| unsafe { base.add(i) } as *mut c_void)
            .collect()
    }
}

/// Plain-old-data structs that kernels take by value (`#[repr(C)]`, fields of fixed-size integers or
/// floats, no pointers to host memory).
///
/// # Safety
/// The type is `#[repr(C)]`, `Copy`, and its layout equals the CUDA C++ struct the kernel declares.
pub unsafe trait KernelPod: Copy {}

/// Threads per block of the 1-D grid-stride kernels.
pub const BLOCK_1D: u32 = 256;
/// Most blocks a 1-D grid-stride launch uses; the loop covers the rest.
const MAX_BLOCKS_1D: usize = 1 << 16;

/// Grid and block for a 1-D grid-stride loop over `n` items.
pub fn grid_1d(n: usize) -> ((u32, u32, u32), (u32, u32, u32)) {
    let blocks = n.div_ceil(BLOCK_1D as usize).clamp(1, MAX_BLOCKS_1D) as u32;
    ((blocks, 1, 1), (BLOCK_1D, 1, 1))
}
