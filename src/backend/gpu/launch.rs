//! Kernel argument lists and launch geometry shared by every GPU op.

use std::ffi::c_void;

use super::driver::DevicePtr;
use super::tensor_map::TensorMapBytes;

/// Most 8-byte words an argument list holds: the longest, the pointwise TMA backward-data with BN
/// partials (12 words of pointers and an int, the 44-byte `ConvDims`, 6 words of padding and two
/// 128-byte tensor maps: 56). Fixed, so that building and launching an argument list allocates
/// nothing.
pub const MAX_ARG_WORDS: usize = 64;

/// The argument words, 64-byte aligned so that a tensor map among them sits as `CUtensorMap` does.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct ArgWords([u64; MAX_ARG_WORDS]);

/// A `cuLaunchKernel`-style argument list. Each argument starts on its own 8-byte word, little-endian,
/// so a word holds a device pointer, a 64-bit integer, a double, or (in its low bytes) an `int` or a
/// `float`; a by-value struct takes as many words as it needs, a tensor map 16 words from a 64-byte
/// boundary. The kernel reads exactly its parameter's size from the argument's address. Held in fixed
/// arrays: one is built per launch.
#[derive(Clone)]
pub struct KernelArgs {
    words: ArgWords,
    /// Index in `words` of each argument's first word.
    starts: [u8; MAX_ARG_WORDS],
    num_words: usize,
    num_args: usize,
}

impl Default for KernelArgs {
    fn default() -> Self {
        KernelArgs {
            words: ArgWords([0; MAX_ARG_WORDS]),
            starts: [0; MAX_ARG_WORDS],
            num_words: 0,
            num_args: 0,
        }
    }
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
        let start = self.claim(1);
        self.words.0[start] = w;
        self
    }

    /// A `const __grid_constant__ TmaMap` parameter (kernels/tma.cuh): the map's 128 bytes, copied,
    /// starting on a 64-byte boundary of the list (the words before it that padding skips belong to
    /// no argument).
    pub fn tensor_map(mut self, map: &TensorMapBytes) -> Self {
        self.num_words = self.num_words.next_multiple_of(8);
        let start = self.claim(16);
        for (word, bytes) in self.words.0[start..start + 16]
            .iter_mut()
            .zip(map.0.chunks_exact(8))
        {
            *word = u64::from_le_bytes(bytes.try_into().expect("8-byte chunk"));
        }
        self
    }

    /// Starts a new argument of `words` words and returns its first word's index. Panics past
    /// [`MAX_ARG_WORDS`]: every kernel's list is fixed by the code, so that is a bug, not an input.
    fn claim(&mut self, words: usize) -> usize {
        let start = self.num_words;
        assert!(
            start + words <= MAX_ARG_WORDS,
            "kernel argument list longer than {MAX_ARG_WORDS} words"
        );
        self.starts[self.num_args] = start as u8;
        self.num_args += 1;
        self.num_words += words;
        start
    }

    /// A by-value struct parameter (`#[repr(C)]`, plain old data, alignment at most 8), copied.
    pub fn value<T: KernelPod>(mut self, v: &T) -> Self {
        const { assert!(std::mem::align_of::<T>() <= 8) };
        let size = std::mem::size_of::<T>();
        let start = self.claim(size.div_ceil(8).max(1));
        // SAFETY: `T: KernelPod` is plain data with no padding-sensitive invariants; the claimed words
        // (zeroed when the list was made) hold at least `size` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                v as *const T as *const u8,
                self.words.0[start..].as_mut_ptr() as *mut u8,
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
    pub fn params(&mut self) -> KernelParams {
        let base = self.words.0.as_mut_ptr();
        let mut params = KernelParams {
            ptrs: [std::ptr::null_mut(); MAX_ARG_WORDS],
            len: self.num_args,
        };
        for (p, &i) in params.ptrs.iter_mut().zip(&self.starts[..self.num_args]) {
            // SAFETY: every start indexes into `words`.
            *p = unsafe { base.add(i as usize) } as *mut c_void;
        }
        params
    }
}

/// The `void**` array of a [`KernelArgs`], as a slice (`&mut params` where a launch wants
/// `&mut [*mut c_void]`).
pub struct KernelParams {
    ptrs: [*mut c_void; MAX_ARG_WORDS],
    len: usize,
}

impl std::ops::Deref for KernelParams {
    type Target = [*mut c_void];
    fn deref(&self) -> &[*mut c_void] {
        &self.ptrs[..self.len]
    }
}

impl std::ops::DerefMut for KernelParams {
    fn deref_mut(&mut self) -> &mut [*mut c_void] {
        &mut self.ptrs[..self.len]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    #[repr(C)]
    struct Three {
        a: i32,
        b: i32,
        c: i32,
    }
    // SAFETY: repr(C) plain integers.
    unsafe impl KernelPod for Three {}

    /// The value of `T` at a parameter's address, as a kernel would read it.
    fn read<T: Copy>(p: *mut c_void) -> T {
        // SAFETY: the tests read each parameter as the type it was written as.
        unsafe { *(p as *const T) }
    }

    #[test]
    fn each_parameter_points_at_its_own_value() {
        let mut args = KernelArgs::new()
            .ptr(0xdead_beef_0000)
            .int(7)
            .value(&Three { a: 1, b: -2, c: 3 })
            .f32(0.5)
            .u64(1 << 40)
            .f64(-2.25);
        let params = args.params();
        assert_eq!(params.len(), 6);
        assert_eq!(read::<u64>(params[0]), 0xdead_beef_0000);
        assert_eq!(read::<i32>(params[1]), 7);
        let t: Three = read(params[2]);
        assert_eq!((t.a, t.b, t.c), (1, -2, 3));
        // The 12-byte struct takes two words: the next argument starts 16 bytes later.
        assert_eq!(params[3] as usize - params[2] as usize, 16);
        assert_eq!(read::<f32>(params[3]), 0.5);
        assert_eq!(read::<u64>(params[4]), 1 << 40);
        assert_eq!(read::<f64>(params[5]), -2.25);
    }

    #[test]
    fn a_tensor_map_starts_on_a_64_byte_boundary_and_keeps_its_bytes() {
        let mut bytes = [0u8; 128];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        let map = TensorMapBytes(bytes);
        let mut args = KernelArgs::new()
            .ptr(1)
            .value(&Three { a: 1, b: 2, c: 3 })
            .tensor_map(&map)
            .int(9);
        let params = args.params();
        assert_eq!(params.len(), 4);
        assert_eq!(params[2] as usize % 64, 0, "the map is 64-byte aligned");
        // Words 0-2 hold the pointer and the struct; the map starts at word 8, the int after it.
        assert_eq!(params[2] as usize - params[0] as usize, 64);
        assert_eq!(read::<[u8; 128]>(params[2]), bytes);
        assert_eq!(params[3] as usize - params[2] as usize, 128);
        assert_eq!(read::<i32>(params[3]), 9);
    }

    #[test]
    #[should_panic(expected = "longer than 64 words")]
    fn an_overlong_list_is_a_bug_caught_at_once() {
        (0..=MAX_ARG_WORDS).fold(KernelArgs::new(), |args, i| args.int(i));
    }
}
