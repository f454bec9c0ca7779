//! The GPU backend's f32 batch-norm statistics (kernels/batch_norm.cu): deterministic per-channel
//! partial sums, then per-channel finalize kernels. (bf16: `bf16_memory_bound.rs`.)

use super::backend::GpuBackend;
use super::driver::Driver;
use super::launch::KernelArgs;
use super::launch_constants::{
    BATCH_NORM_CHANNELS, BATCH_NORM_FINALIZE_THREADS, BATCH_NORM_ROW_LANES,
};
use crate::backend::BatchNormConfig;
use crate::error::Result;
use crate::tensor::Tensor;

const F32: usize = std::mem::size_of::<f32>();

/// Partitions of the rows for the batch-norm channel reductions: about 256 rows per block row
/// lane group, at most 1024 partitions; fixed by `M`, so results are reproducible.
pub(super) fn batch_norm_partitions(m: usize) -> usize {
    m.div_ceil(256).clamp(1, 1024)
}

/// The batch-norm partial kernels' block: channels by row lanes.
pub(super) const BN_PARTIAL_BLOCK: (u32, u32, u32) = (BATCH_NORM_CHANNELS, BATCH_NORM_ROW_LANES, 1);

impl<D: Driver> GpuBackend<D> {
    /// Training batch norm's per-channel statistics of `x` (channels: `save_mean`'s length): the
    /// batch mean and `1/sqrt(var + eps)` into `save_*`, and the running statistics updated.
    pub(super) fn batch_norm_statistics(
        &self,
        x: &Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let c = save_mean.numel();
        let m = x.numel() / c;
        let p = batch_norm_partitions(m);
        let partial_grid = (c.div_ceil(BATCH_NORM_CHANNELS as usize) as u32, p as u32, 1);
        let finalize = ((c as u32, 1, 1), (BATCH_NORM_FINALIZE_THREADS, 1, 1));
        self.with_workspace(p * c * F32, |partial| {
            self.launch(
                "batch_norm_partial_sum_f32",
                partial_grid,
                BN_PARTIAL_BLOCK,
                0,
                KernelArgs::new()
                    .ptr(x.buf().ptr())
                    .int(m)
                    .int(c)
                    .ptr(partial),
            )?;
            self.launch(
                "batch_norm_finalize_mean_f32",
                finalize.0,
                finalize.1,
                0,
                KernelArgs::new()
                    .ptr(partial)
                    .int(p)
                    .int(m)
                    .int(c)
                    .ptr(save_mean.buf().ptr()),
            )?;
            self.launch(
                "batch_norm_partial_sqdev_f32",
                partial_grid,
                BN_PARTIAL_BLOCK,
                0,
                KernelArgs::new()
                    .ptr(x.buf().ptr())
                    .ptr(save_mean.buf().ptr())
                    .int(m)
                    .int(c)
                    .ptr(partial),
            )?;
            self.launch(
                "batch_norm_finalize_var_f32",
                finalize.0,
                finalize.1,
                0,
                KernelArgs::new()
                    .ptr(partial)
                    .int(p)
                    .int(m)
                    .int(c)
                    .ptr(save_mean.buf().ptr())
                    .f64(cfg.eps)
                    .f64(cfg.momentum)
                    .ptr(save_inv_std.buf().ptr())
                    .ptr(running_mean.buf().ptr())
                    .ptr(running_var.buf().ptr()),
            )
        })
    }
}

/// The leading parameters of the batch-norm normalising kernels: `x, mean, inv_std, gamma, beta`.
pub(super) fn batch_norm_affine_args<D: Driver>(
    x: &Tensor<GpuBackend<D>>,
    mean: &Tensor<GpuBackend<D>>,
    inv_std: &Tensor<GpuBackend<D>>,
    gamma: &Tensor<GpuBackend<D>>,
    beta: &Tensor<GpuBackend<D>>,
) -> KernelArgs {
    KernelArgs::new()
        .ptr(x.buf().ptr())
        .ptr(mean.buf().ptr())
        .ptr(inv_std.buf().ptr())
        .ptr(gamma.buf().ptr())
        .ptr(beta.buf().ptr())
}
