//! What nvcc compiled into each kernel that limits how it may be launched: the most threads a block
//! can have (its `__launch_bounds__`, and what the registers ptxas gave each thread leave room for)
//! and its static shared memory, which counts against the block's shared memory beside the launch's
//! dynamic part. A GPU refuses a launch beyond them; build.rs reads them from nvcc's output
//! (`build/kernel_limits.rs`) so that the emulator refuses the same launches.

use super::embedded;

/// One kernel's launch limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLimits {
    /// The most threads a block of this kernel can have (`CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK`).
    pub max_threads: u32,
    /// Its static shared memory in bytes (`CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES`).
    pub static_shared_bytes: u32,
}

/// Every kernel build.rs computed limits for, in name order.
pub fn all_compiled() -> impl Iterator<Item = (&'static str, KernelLimits)> {
    embedded::KERNEL_LIMITS
        .iter()
        .map(|&(name, max_threads, static_shared_bytes)| {
            (
                name,
                KernelLimits {
                    max_threads,
                    static_shared_bytes,
                },
            )
        })
}

/// The limits build.rs computed for `kernel`, for every architecture the binary carries; `None` for a
/// kernel nvcc did not compile (every kernel, in a build without nvcc).
pub fn compiled(kernel: &str) -> Option<KernelLimits> {
    all_compiled()
        .find(|(name, _)| *name == kernel)
        .map(|(_, limits)| limits)
}
