//! The GPU backend's memory ops: allocation, uploads (small ones through page-locked memory:
//! `small_uploads.rs`) and downloads (converting bf16 contents to and from the backend's f32
//! `Elem` on the host), device copies, and the bf16 copies of weights that bf16 convolutions read.

use half::bf16;

use super::backend::GpuBackend;
use super::bf16_launch;
use super::buffer::DeviceBuffer;
use super::driver::{DevicePtr, Driver};
use super::launch::KernelArgs;
use super::small_uploads::{SmallUploads, SLOT_BYTES};
use crate::backend::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const F32: usize = std::mem::size_of::<f32>();

impl<D: Driver> GpuBackend<D> {
    /// A zeroed buffer of `len` elements, holding f32 (room for f32 whatever it holds later).
    pub(super) fn buffer_zeros(&self, len: usize) -> Result<DeviceBuffer<D>> {
        let mem = self.alloc_bytes(len * F32)?;
        if mem.bytes > 0 {
            // SAFETY: the allocation was just made with this size.
            unsafe { self.driver.memset_zero(mem.ptr, mem.bytes)? };
        }
        Ok(DeviceBuffer::new(mem, len, DType::F32))
    }

    /// Writes `src` as f32 (the buffer then holds f32, whatever it held before).
    pub(super) fn buffer_upload(&self, src: &[f32], dst: &mut DeviceBuffer<D>) -> Result<()> {
        if src.len() != dst.len {
            return Err(Error::InvalidArgument {
                op: "upload",
                message: format!("{} elements into a buffer of {}", src.len(), dst.len),
            });
        }
        dst.dtype = DType::F32;
        dst.f32_values_changed();
        if src.is_empty() {
            return Ok(());
        }
        let bytes: &[u8] = bytemuck::cast_slice(src);
        if bytes.len() <= SLOT_BYTES {
            let mut ring = self.small_uploads.lock().unwrap_or_else(|e| e.into_inner());
            let ring = match &mut *ring {
                Some(r) => r,
                None => ring.insert(SmallUploads::new(&self.driver)?),
            };
            // SAFETY: the allocation has room for `len` f32, as many as `src` holds.
            return unsafe { ring.upload(bytes, dst.ptr()) };
        }
        // SAFETY: the allocation has room for `len` f32, and `src` holds as many.
        unsafe {
            self.driver
                .copy_host_to_device(src.as_ptr().cast(), dst.ptr(), dst.len * F32)
        }
    }

    /// Reads the buffer as f32: bf16 contents are widened exactly.
    pub(super) fn buffer_download(&self, src: &DeviceBuffer<D>, dst: &mut [f32]) -> Result<()> {
        if dst.len() != src.len {
            return Err(Error::InvalidArgument {
                op: "download",
                message: format!("a buffer of {} elements into {}", src.len, dst.len()),
            });
        }
        if dst.is_empty() {
            return Ok(());
        }
        self.counters.host_sync();
        match src.dtype {
            // SAFETY: both ranges hold `len` f32 elements.
            DType::F32 => unsafe {
                self.driver
                    .copy_device_to_host(src.ptr(), dst.as_mut_ptr().cast(), src.len * F32)
            },
            DType::Bf16 => {
                let mut staged = vec![bf16::ZERO; src.len];
                // SAFETY: the buffer holds `len` bf16, and `staged` has room for as many.
                unsafe {
                    self.driver.copy_device_to_host(
                        src.ptr(),
                        staged.as_mut_ptr().cast(),
                        src.content_bytes(),
                    )?
                };
                for (d, s) in dst.iter_mut().zip(&staged) {
                    *d = s.to_f32();
                }
                Ok(())
            }
            DType::F64 => unreachable!("GPU buffers never hold f64"),
        }
    }

    /// `dst = src`, in `src`'s element type.
    pub(super) fn tensor_copy(&self, src: &Tensor<Self>, dst: &mut Tensor<Self>) -> Result<()> {
        if src.buf().ptr() == dst.buf().ptr() {
            return Ok(());
        }
        let bytes = src.buf().content_bytes();
        let out = dst.buf_mut();
        out.dtype = src.buf().dtype;
        out.f32_values_changed();
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: ops checked that both tensors hold the same number of elements, and every
        // allocation has room for that many f32; two tensors never share memory.
        unsafe {
            self.driver
                .copy_device_to_device(src.buf().ptr(), out.ptr(), bytes)
        }
    }

    /// Marks `t` as holding `dtype`: every op that writes a tensor says what it wrote.
    pub(super) fn written_as(t: &mut Tensor<Self>, dtype: DType) {
        t.buf_mut().dtype = dtype;
    }

    /// The device address of `w`'s values in bf16: a bf16 tensor's own, or the bf16 copy of an f32
    /// weight, made (or refreshed, when the f32 values changed since) here.
    pub(super) fn bf16_view_of_weight(&self, w: &Tensor<Self>) -> Result<DevicePtr> {
        let buf = w.buf();
        if buf.dtype == DType::Bf16 {
            return Ok(buf.ptr());
        }
        let copy = match buf.bf16_copy.get() {
            Some(copy) => copy,
            None => {
                let mem = self.alloc_bytes(buf.len * DType::Bf16.size())?;
                // Another thread cannot race here (a backend's ops come from one thread at a time);
                // if one did, its allocation would simply be dropped.
                let _ = buf.bf16_copy.set(mem);
                buf.bf16_copy.get().expect("set above")
            }
        };
        if !buf.bf16_copy_is_fresh() {
            self.cast_to_bf16(buf.ptr(), copy.ptr, buf.len)?;
            buf.set_bf16_copy_fresh();
        }
        Ok(copy.ptr)
    }

    /// `Backend::to_activation_dtype`: rounds `t`'s f32 values to bf16 (to nearest even) when the
    /// backend computes in bf16. Nothing to do when `t` already holds the activation type.
    pub(super) fn cast_to_activation_dtype(&self, t: &mut Tensor<Self>) -> Result<()> {
        let want = self.precision.activation_dtype();
        if t.buf().dtype == want {
            return Ok(());
        }
        let n = t.numel();
        // Through a workspace: converting in place would let one thread's narrow store overwrite an
        // element another thread has yet to read.
        self.with_workspace(n * want.size(), |staged| {
            self.cast_to_bf16(t.buf().ptr(), staged, n)?;
            // SAFETY: the workspace holds `n` bf16, and the tensor's allocation has room for `n` f32.
            unsafe {
                self.driver
                    .copy_device_to_device(staged, t.buf().ptr(), n * want.size())
            }
        })?;
        Self::written_as(t, want);
        Ok(())
    }

    /// `dst[i] = bf16(src[i])` for `n` f32 (kernels/elementwise_bf16.cu).
    pub(super) fn cast_to_bf16(&self, src: DevicePtr, dst: DevicePtr, n: usize) -> Result<()> {
        self.launch_planned(
            "cast_f32_to_bf16",
            bf16_launch::elementwise(n),
            KernelArgs::new().ptr(src).ptr(dst).u64(n),
        )
    }
}
