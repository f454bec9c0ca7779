//! The GPU backend's SGD: every parameter updated in one launch, from a chunk table built once per
//! parameter list (kernels/elementwise.cu, `sgd_update_chunks_f32` and its guarded form).

use super::backend::GpuBackend;
use super::buffer::Allocation;
use super::driver::{DevicePtr, Driver};
use super::launch::KernelArgs;
use super::sgd_chunks::{
    sgd_chunk_table_with_copies, SgdParam, SgdParamWithCopy, SGD_CHUNK_THREADS, WORDS_PER_CHUNK,
};
use crate::backend::{SgdConfig, SgdTensors};
use crate::error::Result;

/// `sgd_update_chunks_f32`'s table on the device, for the parameters it was built from.
pub(super) struct SgdTable<D: Driver> {
    pub(super) params: Vec<SgdParamWithCopy>,
    pub(super) device: Allocation<D>,
    pub(super) chunks: usize,
}

impl<D: Driver> GpuBackend<D> {
    /// One launch over every parameter of `params`: `sgd_update_chunks_f32` with `cfg.lr`, or with
    /// `guarded = Some((lr, flag))` `sgd_update_chunks_guarded_f32`, which reads the rate at `lr` and
    /// does nothing while the loss record's flag at `flag` is set.
    pub(super) fn sgd_update_chunks(
        &self,
        params: &mut [SgdTensors<'_, Self>],
        cfg: SgdConfig,
        guarded: Option<(DevicePtr, DevicePtr)>,
    ) -> Result<()> {
        // A weight with a bf16 copy (made by its first bf16 convolution) gets the copy written in
        // the same pass, so the next step's convolutions read it without a cast.
        let specs: Vec<SgdParamWithCopy> = params
            .iter()
            .map(|p| SgdParamWithCopy {
                param: SgdParam {
                    w: p.w.buf().ptr(),
                    g: p.g.buf().ptr(),
                    v: p.v.buf().ptr(),
                    len: p.w.numel(),
                },
                w_copy: p.w.buf().bf16_copy.get().map_or(0, |c| c.ptr),
            })
            .collect();
        let mut cached = self.sgd_table.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_none_or(|t| t.params != specs) {
            let table = sgd_chunk_table_with_copies(&specs);
            let bytes = std::mem::size_of_val(&table[..]);
            let device = self.alloc_bytes(bytes)?;
            // SAFETY: `device` was just allocated with `bytes` bytes; `table` holds as many.
            unsafe {
                self.driver
                    .copy_host_to_device(table.as_ptr().cast(), device.ptr, bytes)?
            };
            let chunks = table.len() / WORDS_PER_CHUNK;
            *cached = Some(SgdTable {
                params: specs,
                device,
                chunks,
            });
        }
        let table = cached.as_ref().expect("the table was filled above");
        let (table_ptr, chunks) = (table.device.ptr, table.chunks);
        if chunks == 0 {
            return Ok(());
        }
        for p in params.iter_mut() {
            // The f32 values change; the copy (where there is one) changes with them, below.
            p.w.buf_mut().f32_values_changed();
        }
        let grid = (chunks as u32, 1, 1);
        let block = (SGD_CHUNK_THREADS, 1, 1);
        let args = KernelArgs::new().ptr(table_ptr).int(chunks);
        match guarded {
            None => self.launch(
                "sgd_update_chunks_f32",
                grid,
                block,
                0,
                args.f32(cfg.lr as f32)
                    .f32(cfg.momentum as f32)
                    .f32(cfg.weight_decay as f32),
            )?,
            Some((lr, flag)) => self.launch(
                "sgd_update_chunks_guarded_f32",
                grid,
                block,
                0,
                args.ptr(lr)
                    .ptr(flag)
                    .f32(cfg.momentum as f32)
                    .f32(cfg.weight_decay as f32),
            )?,
        }
        for p in params.iter() {
            if p.w.buf().bf16_copy.get().is_some() {
                p.w.buf().set_bf16_copy_fresh();
            }
        }
        Ok(())
    }
}
