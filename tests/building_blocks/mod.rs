//! What the building-block suites (`tests/tensor_core.rs`, `tests/wgmma.rs`, `tests/tma.rs`) share,
//! on whichever driver a test names: device memory holding a copy of host values, and a one-block
//! launch of a self-test kernel.

use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{DevicePtr, Driver};

/// Device memory holding a copy of plain values of type `T`, freed on drop.
pub struct DeviceVec<'d, T: Copy> {
    driver: &'d dyn Driver,
    pub ptr: DevicePtr,
    /// What was uploaded; it sizes the allocation and the downloads.
    host: Vec<T>,
}

impl<'d, T: Copy> DeviceVec<'d, T> {
    fn bytes(&self) -> usize {
        std::mem::size_of_val(self.host.as_slice()).max(4)
    }

    pub fn new(driver: &'d dyn Driver, host: &[T]) -> Self {
        let mut v = DeviceVec {
            driver,
            ptr: 0,
            host: host.to_vec(),
        };
        v.ptr = driver.alloc(v.bytes()).unwrap();
        // SAFETY: `ptr` was just allocated with room for `host`.
        unsafe {
            driver.copy_host_to_device(
                v.host.as_ptr() as *const u8,
                v.ptr,
                std::mem::size_of_val(host),
            )
        }
        .unwrap();
        v
    }

    pub fn to_host(&self) -> Vec<T> {
        // The initial contents only size the copy; every byte is overwritten.
        let mut out = self.host.clone();
        let bytes = std::mem::size_of_val(out.as_slice());
        // SAFETY: both ranges hold `host.len()` values of T.
        unsafe {
            self.driver
                .copy_device_to_host(self.ptr, out.as_mut_ptr() as *mut u8, bytes)
        }
        .unwrap();
        out
    }
}

impl<T: Copy> Drop for DeviceVec<'_, T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this size; every launch using it was synchronised.
        unsafe { self.driver.free(self.ptr, self.bytes()) }
    }
}

/// Launches `kernel` over one block of `threads` threads with `shared_bytes` of dynamic shared
/// memory on `driver`, and waits for it.
pub fn launch_on(
    driver: &dyn Driver,
    kernel: &str,
    threads: u32,
    shared_bytes: u32,
    mut args: KernelArgs,
) -> Result<(), String> {
    let mut params = args.params();
    // SAFETY: every call passes the kernel's parameters in order with their types (the layout
    // comment of the self-test kernel's file), and buffers sized for every index it touches.
    unsafe {
        driver
            .launch(
                kernel,
                (1, 1, 1),
                (threads, 1, 1),
                shared_bytes,
                &mut params,
            )
            .and_then(|()| driver.synchronize())
    }
    .map_err(|e| e.to_string())
}
