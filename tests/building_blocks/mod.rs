//! Device memory holding a copy of host values, for the building-block suites (`tests/tensor_core.rs`,
//! `tests/wgmma.rs`, `tests/tma.rs`), on whichever driver a test names.

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
