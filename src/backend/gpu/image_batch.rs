//! Batches built on the device (`Backend::image_batch`): a dataset's images live in device memory
//! as bytes, uploaded once, and kernels/input.cu gathers, normalises and augments each batch from a
//! table of per-sample draws, straight into the network's input in the activation type. A step then
//! moves a few bytes per image across the bus instead of 12 KiB of floats, and the host does no
//! per-pixel work. A store refilled every step (the ImageNet loader's batch) goes up from
//! page-locked staging memory on the driver's copy stream, overlapping the step before it
//! (`Driver::upload_ahead`), and lands in the store at the start of its own step.

use super::backend::GpuBackend;
use super::bf16_launch;
use super::buffer::{Allocation, DeviceBuffer};
use std::sync::Arc;

use super::driver::{DevicePtr, Driver, Staging};
use super::launch::KernelArgs;
use crate::backend::{Backend, DType};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A dataset's images on the device: `[count, H, W, 3]` u8, and their labels as exact f32.
pub struct GpuImages<D: Driver> {
    pixels: Allocation<D>,
    /// Bytes of pixels held.
    pixel_bytes: usize,
    labels: DeviceBuffer<D>,
    /// For a store refilled every step: the host memory its bytes go up from, made at the first
    /// refill.
    staging: Option<StagingPair<D>>,
}

/// Two staging buffers used in turn, and the device buffer their copies land in: the host fills one
/// staging buffer while the copy engine may still be reading the other, so a refill neither waits
/// for the device nor for a pageable copy, and the copy overlaps the step running meanwhile.
struct StagingPair<D: Driver> {
    driver: Arc<D>,
    // Dropped before `landing`: freeing a staging buffer waits for the copy that read it, which is
    // the copy that wrote `landing`.
    buffers: [Staging; 2],
    next: usize,
    landing: Allocation<D>,
}

impl<D: Driver> StagingPair<D> {
    fn new(driver: &Arc<D>, landing: Allocation<D>) -> Result<Self> {
        let bytes = landing.bytes;
        let first = driver.alloc_staging(bytes)?;
        let second = match driver.alloc_staging(bytes) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: just allocated, never used.
                unsafe { driver.free_staging(&first) };
                return Err(e);
            }
        };
        let pair = StagingPair {
            driver: driver.clone(),
            buffers: [first, second],
            next: 0,
            landing,
        };
        // The first upload must wait for the allocation, which the stream ordered.
        driver.mark_landing_free(pair.landing.ptr)?;
        Ok(pair)
    }

    /// Copies `bytes` into the next buffer (once the upload that last read it is done), uploads it
    /// on the copy stream and lands it in `dst`, ordered on the stream: the ops issued after this
    /// see the new bytes, the ones issued before it the old.
    fn upload(&mut self, bytes: &[u8], dst: DevicePtr) -> Result<()> {
        let staging = &self.buffers[self.next];
        self.driver.wait_staging(staging)?;
        // SAFETY: the buffer holds `staging.bytes >= bytes.len()` bytes (the store's size), and no
        // upload reads it any more.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), staging.ptr, bytes.len()) };
        // SAFETY: the landing buffer holds the store's bytes, as many as `bytes`, and only these
        // two calls use it; `dst` is the store, as large, and a different allocation.
        unsafe {
            self.driver
                .upload_ahead(staging, self.landing.ptr, bytes.len())?;
            self.driver
                .land_upload(self.landing.ptr, dst, bytes.len())?;
        }
        self.next ^= 1;
        Ok(())
    }
}

impl<D: Driver> Drop for StagingPair<D> {
    fn drop(&mut self) {
        for s in &self.buffers {
            // SAFETY: both came from `alloc_staging` and are freed once, here.
            unsafe { self.driver.free_staging(s) };
        }
    }
}

impl<D: Driver> GpuBackend<D> {
    pub(super) fn store_images(&self, pixels: &[u8], labels: &[u32]) -> Result<GpuImages<D>> {
        let mut images = GpuImages {
            pixels: self.alloc_bytes(pixels.len())?,
            pixel_bytes: pixels.len(),
            labels: self.alloc_zeros(labels.len())?,
            staging: None,
        };
        if !pixels.is_empty() {
            // SAFETY: the allocation was just made with `pixels.len()` bytes.
            unsafe {
                self.driver
                    .copy_host_to_device(pixels.as_ptr(), images.pixels.ptr, pixels.len())?
            };
        }
        self.upload_image_labels(&mut images, labels)?;
        Ok(images)
    }

    pub(super) fn refill_stored_images(
        &self,
        images: &mut GpuImages<D>,
        pixels: &[u8],
        labels: &[u32],
    ) -> Result<()> {
        if pixels.len() != images.pixel_bytes || labels.len() != images.labels.len() {
            return Err(Error::InvalidArgument {
                op: "refill images",
                message: format!(
                    "{} bytes and {} labels into a store of {} and {}",
                    pixels.len(),
                    labels.len(),
                    images.pixel_bytes,
                    images.labels.len()
                ),
            });
        }
        if !pixels.is_empty() {
            let staging = match &mut images.staging {
                Some(s) => s,
                None => {
                    let landing = self.alloc_bytes(pixels.len())?;
                    images
                        .staging
                        .insert(StagingPair::new(&self.driver, landing)?)
                }
            };
            staging.upload(pixels, images.pixels.ptr)?;
        }
        self.upload_image_labels(images, labels)
    }

    /// The store's labels, as the exact floats the loss reads.
    fn upload_image_labels(&self, images: &mut GpuImages<D>, labels: &[u32]) -> Result<()> {
        let values: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        self.upload(&values, &mut images.labels)
    }

    pub(super) fn gather_image_batch(
        &self,
        images: &GpuImages<D>,
        count: usize,
        draws: &Tensor<Self>,
        mean: &Tensor<Self>,
        x: &mut Tensor<Self>,
        labels: &mut Tensor<Self>,
    ) -> Result<()> {
        let [batch, h, w, _] = x.shape().dims4().expect("ops checked x is NHWC");
        let out = self.precision.activation_dtype();
        let kernel = match out {
            DType::Bf16 => "image_batch_bf16",
            _ => "image_batch_f32",
        };
        self.launch_planned(
            kernel,
            bf16_launch::image_batch(batch, h, w),
            KernelArgs::new()
                .ptr(images.pixels.ptr)
                .ptr(images.labels.ptr())
                .ptr(draws.buf().ptr())
                .ptr(mean.buf().ptr())
                .ptr(x.buf().ptr())
                .ptr(labels.buf().ptr())
                .int(batch)
                .int(h)
                .int(w)
                .int(count),
        )?;
        Self::written_as(x, out);
        Self::written_as(labels, DType::F32);
        Ok(())
    }
}
