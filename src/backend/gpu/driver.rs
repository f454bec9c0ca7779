//! The narrow seam under the GPU backend: device memory and kernel launches.
//!
//! [`GpuBackend`](super::backend::GpuBackend) holds every line of launch code (grid and block sizes,
//! shared memory, workspaces, argument lists) and talks to the device only through [`Driver`]. Two
//! drivers implement it:
//!
//! - [`EmuDriver`]: device memory is host memory, a launch runs the kernel in the host emulator
//!   ([`super::emu`]). Needs no GPU, so CI exercises all the launch code with it.
//! - [`CudaDriver`](super::cuda_driver::CudaDriver): cudarc's driver API, the fatbins that build.rs
//!   embedded (`super::embedded`), stream-ordered allocation, copies and `cuLaunchKernel` on one
//!   stream.
//!
//! [`DynDriver`] picks one of them at run time by name (`emu`, `cuda`, `cuda:N`), so that the trainer
//! and the tests need one instantiation of the backend for both.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::c_void;

use super::cuda_driver::CudaDriver;
use super::emu;
use crate::error::{Error, Result};

/// A device address, as CUDA's `CUdeviceptr` (a plain host address under the emulator). Kernel
/// arguments that are pointers are passed as this value.
pub type DevicePtr = u64;

/// Device memory, copies and kernel launches on one in-order stream. Every operation is ordered after
/// the ones issued before it; [`Driver::synchronize`] waits for all of them.
pub trait Driver: Send + Sync + 'static {
    /// A short name for messages, such as `emu`.
    fn name(&self) -> String;

    /// `bytes` of device memory (at least 256-byte aligned), contents unspecified. `bytes > 0`.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr>;

    /// Frees memory from [`Driver::alloc`]. Work already issued may still use it: the free is ordered
    /// after that work on the stream (as `cuMemFreeAsync`; the emulator's work is already done).
    ///
    /// # Safety
    /// `ptr` came from `alloc(bytes)` of this driver, is freed once, and no work is issued on it after.
    unsafe fn free(&self, ptr: DevicePtr, bytes: usize);

    /// Copies `bytes` from host `src` to device `dst`.
    ///
    /// # Safety
    /// `src` is valid for `bytes` reads and `dst` for `bytes` writes.
    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()>;

    /// Copies `bytes` from device `src` to host `dst`; the data is in `dst` when this returns.
    ///
    /// # Safety
    /// `src` is valid for `bytes` reads and `dst` for `bytes` writes.
    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()>;

    /// Copies `bytes` from device `src` to device `dst` (the ranges do not overlap).
    ///
    /// # Safety
    /// Both ranges are valid device memory for `bytes`.
    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()>;

    /// Sets `bytes` of device memory at `dst` to zero.
    ///
    /// # Safety
    /// `dst` is valid device memory for `bytes` writes.
    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()>;

    /// Launches `kernel` (its `extern "C"` name) over `grid` blocks of `block` threads with
    /// `shared_bytes` of dynamic shared memory. `params[i]` points at the value of the kernel's
    /// parameter `i`, exactly as for `cuLaunchKernel`.
    ///
    /// # Safety
    /// Each `params[i]` points at a live value of the kernel's parameter type `i`; every device pointer
    /// among them is valid for every access the kernel makes.
    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()>;

    /// Lets `kernel` launch with up to `bytes` of dynamic shared memory. A block has 48 KiB without
    /// this; above it a kernel must opt in first, up to the device's maximum (227 KiB on sm_90):
    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)` on a GPU, and the
    /// emulator enforces the same rule.
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()>;

    /// Waits until every operation issued so far has finished.
    fn synchronize(&self) -> Result<()>;

    /// The CUDA driver underneath, when this is one: what NCCL needs (a second stream on the same
    /// GPU, its context). `None` for the emulator.
    fn as_cuda(&self) -> Option<&CudaDriver> {
        None
    }
}

/// The host emulator as a device: memory is host memory, launches run synchronously on the CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmuDriver;

/// Alignment of emulator allocations (what `cuMemAlloc` guarantees, and more than any vector load).
const EMU_ALIGN: usize = 256;

fn emu_layout(bytes: usize) -> Result<Layout> {
    Layout::from_size_align(bytes.max(1), EMU_ALIGN).map_err(|e| Error::InvalidArgument {
        op: "emu alloc",
        message: format!("{bytes} bytes: {e}"),
    })
}

impl Driver for EmuDriver {
    fn name(&self) -> String {
        "emu".into()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        let layout = emu_layout(bytes)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::InvalidArgument {
                op: "emu alloc",
                message: format!("out of host memory allocating {bytes} bytes"),
            });
        }
        Ok(ptr as DevicePtr)
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: usize) {
        let layout = emu_layout(bytes).expect("the layout was valid when allocated");
        // SAFETY: the caller guarantees `ptr` came from `alloc(bytes)`, hence this layout.
        unsafe { dealloc(ptr as *mut u8, layout) }
    }

    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller guarantees both ranges; host and "device" allocations never overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()> {
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, bytes) };
        Ok(())
    }

    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller guarantees both ranges are valid and disjoint.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller guarantees the range.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, bytes) };
        Ok(())
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: the caller's guarantees are exactly emu::launch's.
        unsafe { emu::launch(kernel, grid, block, shared_bytes, params) }.map_err(|message| {
            Error::InvalidArgument {
                op: "emulator launch",
                message,
            }
        })
    }

    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        emu::set_max_dynamic_shared(kernel, bytes).map_err(|message| Error::InvalidArgument {
            op: "emulator shared memory opt-in",
            message,
        })
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// A driver chosen at run time: `Box<dyn Driver>` forwards every call.
pub type DynDriver = Box<dyn Driver>;

/// Opens the driver named `emu`, `cuda` (GPU 0) or `cuda:N`.
pub fn open_driver(name: &str) -> Result<DynDriver> {
    match name {
        "emu" => Ok(Box::new(EmuDriver)),
        "cuda" => Ok(Box::new(CudaDriver::new(0)?)),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Box::new(CudaDriver::new(ordinal)?)),
            _ => Err(Error::Config(format!(
                "driver {name:?}: expected `emu`, `cuda` or `cuda:N` (a GPU number)"
            ))),
        },
    }
}

impl Driver for DynDriver {
    fn name(&self) -> String {
        (**self).name()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        (**self).alloc(bytes)
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: usize) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).free(ptr, bytes) }
    }

    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_host_to_device(src, dst, bytes) }
    }

    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_device_to_host(src, dst, bytes) }
    }

    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_device_to_device(src, dst, bytes) }
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).memset_zero(dst, bytes) }
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).launch(kernel, grid, block, shared_bytes, params) }
    }

    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        (**self).set_max_dynamic_shared(kernel, bytes)
    }

    fn synchronize(&self) -> Result<()> {
        (**self).synchronize()
    }

    fn as_cuda(&self) -> Option<&CudaDriver> {
        (**self).as_cuda()
    }
}
