//! The host emulator as a launch driver: runs the kernels of `kernels/*.cu`, compiled for the CPU by
//! build.rs, with CUDA's launch semantics (blocks, shared memory, barriers, warp intrinsics; see
//! `kernels/emu/`). A launch takes the same argument array as `cuLaunchKernel`, so the GPU launch code
//! is shared with the CUDA driver path. Device pointers are plain host pointers here.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;

use super::kernel_limits::{self, KernelLimits};

extern "C" {
    fn emu_launch(
        kernel_name: *const c_char,
        grid_x: u32,
        grid_y: u32,
        grid_z: u32,
        block_x: u32,
        block_y: u32,
        block_z: u32,
        dynamic_shared_bytes: u32,
        params: *mut *mut c_void,
        num_params: u32,
        schedule: i32,
    ) -> i32;
    fn emu_set_max_dynamic_shared(kernel_name: *const c_char, bytes: u32) -> i32;
    fn emu_set_kernel_limits(
        kernel_name: *const c_char,
        max_threads: u32,
        static_shared: u32,
    ) -> i32;
    fn emu_last_error() -> *const c_char;
    fn emu_kernel_count() -> u32;
    fn emu_kernel_name(index: u32) -> *const c_char;
    fn emu_worker_count() -> u32;
    fn emu_kernel_param_sizes(kernel_name: *const c_char, sizes: *mut u32, max: u32) -> i32;
    fn emu_take_bank_conflicts(counts: *mut u64);
}

/// The order the threads of a block take turns in between barriers and warp intrinsics
/// (`kernels/emu/runtime/block.h`). A correct kernel gives the same result under each, since a GPU
/// promises no order between warps; one that lets a warp write shared memory before the barrier that
/// should keep another warp's reads of it first gives a wrong result under `FirstAhead` or
/// `LastAhead`. `launch` takes the schedule `RESNET_EMU_SCHEDULE` names (`round-robin`, the default,
/// `first-ahead` or `last-ahead`), so CI runs the kernel suites under all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The warps advance side by side, one rendezvous at a time (the fastest).
    RoundRobin = 0,
    /// The lowest-numbered ready thread runs next: warp 0 runs ahead to its next `__syncthreads`.
    FirstAhead = 1,
    /// The highest-numbered ready thread runs next: the last warp runs ahead.
    LastAhead = 2,
}

/// Runs `kernel` over `grid` blocks of `block` threads with `shared_bytes` of dynamic shared memory
/// and returns when every block has finished. `params[i]` points at the value of the kernel's
/// parameter `i`, as for `cuLaunchKernel`.
///
/// Errors name the kernel and say what was wrong: an unknown kernel, a parameter count that does not
/// match the kernel's, a grid or block beyond CUDA's limits, or a failure inside the kernel (a
/// deadlock at a barrier, a misused warp intrinsic, `__trap()`), with the block and thread at fault.
///
/// # Safety
///
/// Each `params[i]` must point to a live value whose type is exactly the kernel's parameter `i`
/// (`*const f32` for `const float*`, `u64` for `unsigned long long`, `i32` for `int`...), and every
/// pointer passed that way must be valid for all reads and writes the kernel makes through it, with
/// no other access to that memory during the launch.
pub unsafe fn launch(
    kernel: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    params: &mut [*mut c_void],
) -> Result<(), String> {
    // SAFETY: passed on from the caller.
    unsafe { launch_with(kernel, grid, block, shared_bytes, params, None) }
}

/// `launch` under `schedule` rather than the one `RESNET_EMU_SCHEDULE` names.
///
/// # Safety
///
/// As for `launch`.
pub unsafe fn launch_scheduled(
    kernel: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    params: &mut [*mut c_void],
    schedule: Schedule,
) -> Result<(), String> {
    // SAFETY: passed on from the caller.
    unsafe { launch_with(kernel, grid, block, shared_bytes, params, Some(schedule)) }
}

/// # Safety
///
/// As for `launch`.
unsafe fn launch_with(
    kernel: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    params: &mut [*mut c_void],
    schedule: Option<Schedule>,
) -> Result<(), String> {
    compiled_limits_given()?;
    let name = c_name(kernel)?;
    let num_params = u32::try_from(params.len())
        .map_err(|_| format!("kernel '{kernel}': too many parameters"))?;
    // SAFETY: the name is NUL-terminated and `params` holds `num_params` pointers; the caller
    // guarantees what they point at.
    let status = unsafe {
        emu_launch(
            name.as_ptr(),
            grid.0,
            grid.1,
            grid.2,
            block.0,
            block.1,
            block.2,
            shared_bytes,
            params.as_mut_ptr(),
            num_params,
            // -1: the schedule RESNET_EMU_SCHEDULE names.
            schedule.map_or(-1, |s| s as i32),
        )
    };
    status_result(status)
}

/// `Ok` for a status of 0; otherwise the emulator's message for the calling thread's last call.
fn status_result(status: i32) -> Result<(), String> {
    if status == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// The message of the calling thread's last failed call into the emulator.
fn last_error() -> String {
    // SAFETY: emu_last_error returns this thread's NUL-terminated message, valid until its next call.
    unsafe { CStr::from_ptr(emu_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A kernel's name as the emulator's C functions take it.
fn c_name(kernel: &str) -> Result<CString, String> {
    CString::new(kernel).map_err(|_| format!("kernel name {kernel:?} contains a NUL byte"))
}

/// Lets `kernel` launch with up to `bytes` of dynamic shared memory (at most 227 KiB). Without this a
/// launch above 48 KiB fails, as on the hardware, where `cuFuncSetAttribute` with
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` must come first.
pub fn set_max_dynamic_shared(kernel: &str, bytes: u32) -> Result<(), String> {
    compiled_limits_given()?;
    let name = c_name(kernel)?;
    // SAFETY: the name is NUL-terminated; the call only reads it.
    status_result(unsafe { emu_set_max_dynamic_shared(name.as_ptr(), bytes) })
}

/// Holds `kernel` to `limits` from now on: a launch with a larger block, or with more dynamic shared
/// memory than its static part leaves (48 KiB in all without opting in, 227 KiB with), fails as it
/// would on a GPU. Every kernel nvcc compiled is held to its compiled limits before the first launch;
/// this replaces them (a test's own limits for a kernel it alone launches).
pub fn set_kernel_limits(kernel: &str, limits: KernelLimits) -> Result<(), String> {
    compiled_limits_given()?;
    give_limits(kernel, limits)
}

fn give_limits(kernel: &str, limits: KernelLimits) -> Result<(), String> {
    let name = c_name(kernel)?;
    // SAFETY: the name is NUL-terminated; the call only reads it.
    status_result(unsafe {
        emu_set_kernel_limits(
            name.as_ptr(),
            limits.max_threads,
            limits.static_shared_bytes,
        )
    })
}

/// Gives the emulator the limits build.rs read from nvcc's output for every kernel, once per process;
/// the error (a compiled kernel the emulator does not have) fails every launch after it too.
fn compiled_limits_given() -> Result<(), String> {
    static GIVEN: OnceLock<Result<(), String>> = OnceLock::new();
    GIVEN
        .get_or_init(|| {
            kernel_limits::all_compiled()
                .try_for_each(|(kernel, limits)| give_limits(kernel, limits))
        })
        .clone()
}

/// Names of every kernel the emulator can launch, sorted.
pub fn kernel_names() -> Vec<String> {
    // SAFETY: plain queries of the registry; names are static NUL-terminated strings.
    unsafe {
        (0..emu_kernel_count())
            .filter_map(|i| {
                let p = emu_kernel_name(i);
                (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// OS threads a launch spreads its blocks over (`RESNET_EMU_THREADS`, else the number of CPUs).
pub fn worker_count() -> usize {
    // SAFETY: a plain query; starts the worker pool if it is not running yet.
    unsafe { emu_worker_count() as usize }
}

/// The byte size of each parameter of `kernel`, in order: what a recorded launch must copy of each
/// argument to replay it after the caller's argument list is gone.
pub fn param_sizes(kernel: &str) -> Result<Vec<u32>, String> {
    let name = c_name(kernel)?;
    let mut sizes = [0u32; 64];
    // SAFETY: the name is NUL-terminated and `sizes` has room for 64 entries.
    let n =
        unsafe { emu_kernel_param_sizes(name.as_ptr(), sizes.as_mut_ptr(), sizes.len() as u32) };
    if n < 0 {
        return Err(last_error());
    }
    let n = n as usize;
    if n > sizes.len() {
        return Err(format!(
            "kernel '{kernel}' has {n} parameters, more than a recording holds"
        ));
    }
    Ok(sizes[..n].to_vec())
}

/// Shared-memory bank conflicts of `ldmatrix` and of 16-byte `cp.async` stores, counted by the
/// emulator in every launch (model: `kernels/emu/runtime/bank_conflicts.h`). Shared memory has 32
/// banks of 4 bytes; a request costs, over the banks, the most distinct 4-byte words it touches in
/// one bank ("wavefronts", at least 1). An `ldmatrix` is one request per 8x8 matrix (its 8 rows of 16
/// bytes); the copies of a warp's lanes that are the k-th each lane issued since the last
/// `__syncthreads` are one request per quarter warp (8 lanes) that has any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankConflicts {
    /// 8x8 matrices `ldmatrix` loaded.
    pub ldmatrix_matrices: u64,
    /// Their wavefronts beyond the ideal one each: 0 when every matrix is conflict-free.
    pub ldmatrix_excess: u64,
    /// Quarter-warp requests of 16-byte `cp.async` stores.
    pub cp_async_requests: u64,
    /// Their wavefronts beyond the ideal one each: 0 when every request is conflict-free.
    pub cp_async_excess: u64,
}

/// The bank-conflict counts of the launches that succeeded on the calling OS thread since its last
/// call (the counts are per launching thread, so tests running in parallel threads see only their
/// own), and resets them.
pub fn bank_conflicts() -> BankConflicts {
    let mut c = [0u64; 4];
    // SAFETY: writes 4 counts into `c`, and reads or writes nothing else.
    unsafe { emu_take_bank_conflicts(c.as_mut_ptr()) };
    BankConflicts {
        ldmatrix_matrices: c[0],
        ldmatrix_excess: c[1],
        cp_async_requests: c[2],
        cp_async_excess: c[3],
    }
}
