//! The GPU backend's batch norm, in either precision: deterministic per-channel partial sums, the
//! per-channel finalize kernels (f32 whatever the activations are), then one elementwise pass. The
//! two precisions run the same sequence with the same parameter lists; only the kernels of
//! kernels/batch_norm.cu (f32) or kernels/batch_norm_bf16.cu (bf16) and their launch geometry differ,
//! which [`BatchNormKernels`] names.
//!
//! In bf16, a training-mode BN right after a tensor-core convolution can skip both statistics
//! passes over its input: the convolution's epilogue wrote per-tile partials
//! ([`StatisticsSource::ConvTiles`]), and one finalize kernel merges them.

use super::backend::GpuBackend;
use super::bf16_launch::{
    self as bf16_plan, batch_norm_partial_floats, batch_norm_partitions, Launch,
};
use super::conv_tc_plan;
use super::driver::{DevicePtr, Driver};
use super::launch::{grid_1d, KernelArgs};
use super::launch_constants::{
    BATCH_NORM_CHANNELS, BATCH_NORM_FINALIZE_THREADS, BATCH_NORM_ROW_LANES,
};
use crate::backend::{BatchNormConfig, BatchNormSaved, BnMap, Precision};
use crate::error::Result;
use crate::tensor::Tensor;

const F32: usize = std::mem::size_of::<f32>();

type T<D> = Tensor<GpuBackend<D>>;

/// `args`, then a batch norm's affine-map parameters as the kernels take them, in the order of
/// `BnAffineParams` (kernels/bn_affine.cuh): its saved mean and inv_std, gamma, beta.
pub(super) fn with_bn_affine<D: Driver>(
    args: KernelArgs,
    gamma: &T<D>,
    saved: &BatchNormSaved<'_, GpuBackend<D>>,
) -> KernelArgs {
    args.ptr(saved.mean.buf().ptr())
        .ptr(saved.inv_std.buf().ptr())
        .ptr(gamma.buf().ptr())
        .ptr(saved.beta.buf().ptr())
}

/// Where the backward kernels take ReLU's mask from (`ReluMask` of kernels/batch_norm*.cu, the
/// partial kernels' `mask` argument; also kernels/conv_tc_bn_grad.cuh's TcBnMask).
#[derive(Clone, Copy)]
pub(super) enum ReluMask {
    /// No ReLU: `g = dy`.
    None = 0,
    /// `y > 0`, `y` the output of a residual block (`relu(BN(x) + shortcut)`).
    FromY = 1,
    /// `x scale + shift > 0`: BN's own ReLU, from the forward's affine map of `x`.
    FromAffine = 2,
}

/// One element type's batch-norm kernels (see kernels/batch_norm*.cu for their parameters, which
/// are the same in both) and where they are launched over `x[m, c]`.
struct BatchNormKernels {
    partial_sum: &'static str,
    partial_sqdev: &'static str,
    backward_partial: &'static str,
    normalize: &'static str,
    normalize_add: &'static str,
    /// With the residual through its own BN (bf16 only: "" in f32, never launched there, where
    /// `batch_norm_residual_bn_fusion` is false).
    normalize_add_bn: &'static str,
    backward_data: &'static str,
    add_relu_backward_data: &'static str,
    /// The partial-sum kernels: `grid.y` must be `batch_norm_partitions(m)`.
    partial: fn(usize, usize) -> Launch,
    /// The elementwise passes (normalize, normalize_add, backward data).
    rows: fn(usize, usize) -> Launch,
}

const F32_KERNELS: BatchNormKernels = BatchNormKernels {
    partial_sum: "batch_norm_partial_sum_f32",
    partial_sqdev: "batch_norm_partial_sqdev_f32",
    backward_partial: "batch_norm_backward_partial_f32",
    normalize: "batch_norm_normalize_f32",
    normalize_add: "batch_norm_normalize_add_f32",
    normalize_add_bn: "",
    backward_data: "batch_norm_backward_data_f32",
    add_relu_backward_data: "batch_norm_add_relu_backward_data_f32",
    partial: f32_partial_launch,
    rows: f32_rows_launch,
};

const BF16_KERNELS: BatchNormKernels = BatchNormKernels {
    partial_sum: "batch_norm_partial_sum_bf16",
    partial_sqdev: "batch_norm_partial_sqdev_bf16",
    backward_partial: "batch_norm_backward_partial_bf16",
    normalize: "batch_norm_normalize_bf16",
    normalize_add: "batch_norm_normalize_add_bf16",
    normalize_add_bn: "batch_norm_normalize_add_bn_bf16",
    backward_data: "batch_norm_backward_data_bf16",
    add_relu_backward_data: "batch_norm_add_relu_backward_data_bf16",
    partial: bf16_plan::batch_norm_partial,
    rows: bf16_plan::rows_channels,
};

/// The f32 partial kernels: block (32 channels, 8 row lanes), grid (channel blocks, partitions).
fn f32_partial_launch(m: usize, c: usize) -> Launch {
    Launch {
        grid: (
            c.div_ceil(BATCH_NORM_CHANNELS as usize) as u32,
            batch_norm_partitions(m) as u32,
            1,
        ),
        block: (BATCH_NORM_CHANNELS, BATCH_NORM_ROW_LANES, 1),
        shared_bytes: 0,
    }
}

/// The f32 elementwise passes: a 1-D grid-stride loop over the `m * c` elements.
fn f32_rows_launch(m: usize, c: usize) -> Launch {
    let (grid, block) = grid_1d(m * c);
    Launch {
        grid,
        block,
        shared_bytes: 0,
    }
}

/// The finalize kernels (f32 in both precisions): one block of 128 threads per channel.
fn finalize_launch(c: usize) -> Launch {
    Launch {
        grid: (c as u32, 1, 1),
        block: (BATCH_NORM_FINALIZE_THREADS, 1, 1),
        shared_bytes: 0,
    }
}

/// Where training-mode batch norm takes its per-channel statistics from.
pub(super) enum StatisticsSource<'a, D: Driver> {
    /// Its input `x`: partial sums, then squared deviations from the mean (two passes over `x`).
    Input,
    /// The partials that the bf16 tensor-core convolution which wrote `x` left in its epilogue
    /// (`conv2d_tc_forward_stats_*`, laid out as `conv_tc_plan::forward_stats_partition(x)`):
    /// `x` is not read for statistics.
    ConvTiles(&'a T<D>),
}

impl<D: Driver> GpuBackend<D> {
    fn batch_norm_kernels(&self) -> &'static BatchNormKernels {
        match self.precision {
            Precision::F32 => &F32_KERNELS,
            Precision::Bf16 => &BF16_KERNELS,
        }
    }

    /// Training batch norm's per-channel statistics of `x` (channels: `save_mean`'s length): the
    /// batch mean and `1/sqrt(var + eps)` into `save_*`, and the running statistics updated.
    fn batch_norm_statistics(
        &self,
        x: &T<D>,
        save_mean: &mut T<D>,
        save_inv_std: &mut T<D>,
        running_mean: &mut T<D>,
        running_var: &mut T<D>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let k = self.batch_norm_kernels();
        let c = save_mean.numel();
        let m = x.numel() / c;
        let p = batch_norm_partitions(m);
        let partial_launch = (k.partial)(m, c);
        let finalize = finalize_launch(c);
        self.with_workspace(batch_norm_partial_floats(m, c, 1) * F32, |partial| {
            let x_ptr = x.buf().ptr();
            self.launch_planned(
                k.partial_sum,
                partial_launch,
                KernelArgs::new().ptr(x_ptr).int(m).int(c).ptr(partial),
            )?;
            self.launch_planned(
                "batch_norm_finalize_mean_f32",
                finalize,
                KernelArgs::new()
                    .ptr(partial)
                    .int(p)
                    .int(m)
                    .int(c)
                    .ptr(save_mean.buf().ptr()),
            )?;
            self.launch_planned(
                k.partial_sqdev,
                partial_launch,
                KernelArgs::new()
                    .ptr(x_ptr)
                    .ptr(save_mean.buf().ptr())
                    .int(m)
                    .int(c)
                    .ptr(partial),
            )?;
            self.launch_planned(
                "batch_norm_finalize_var_f32",
                finalize,
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

    /// The same outputs as [`Self::batch_norm_statistics`] from a convolution epilogue's tile
    /// partials `tiles` of `x`: one finalize kernel (`batch_norm_finalize_tiles_f32`), which merges
    /// them by Chan's formula (see kernels/batch_norm.cu).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_statistics_from_tiles(
        &self,
        x: &T<D>,
        tiles: &T<D>,
        save_mean: &mut T<D>,
        save_inv_std: &mut T<D>,
        running_mean: &mut T<D>,
        running_var: &mut T<D>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let dims = x.shape().dims4().expect("ops checked x is NHWC");
        let part = conv_tc_plan::forward_stats_partition(dims);
        debug_assert_eq!(tiles.numel(), part.floats(), "ops checked the length");
        self.launch_planned(
            "batch_norm_finalize_tiles_f32",
            finalize_launch(part.channels),
            KernelArgs::new()
                .ptr(tiles.buf().ptr())
                .int(part.partitions())
                .int(part.rows)
                .int(part.tile_rows)
                .int(part.channels)
                .f64(cfg.eps)
                .f64(cfg.momentum)
                .ptr(save_mean.buf().ptr())
                .ptr(save_inv_std.buf().ptr())
                .ptr(running_mean.buf().ptr())
                .ptr(running_var.buf().ptr()),
        )
    }

    /// Training mode: `out = BN(x)` (then ReLU), or with `residual`, `out = BN(x) + residual` (then
    /// ReLU) in the same pass; statistics from `source`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_train(
        &self,
        x: &T<D>,
        source: StatisticsSource<'_, D>,
        gamma: &T<D>,
        beta: &T<D>,
        residual: Option<&T<D>>,
        out: &mut T<D>,
        save_mean: &mut T<D>,
        save_inv_std: &mut T<D>,
        running_mean: &mut T<D>,
        running_var: &mut T<D>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        match source {
            StatisticsSource::Input => self.batch_norm_statistics(
                x,
                save_mean,
                save_inv_std,
                running_mean,
                running_var,
                cfg,
            )?,
            StatisticsSource::ConvTiles(tiles) => self.batch_norm_statistics_from_tiles(
                x,
                tiles,
                save_mean,
                save_inv_std,
                running_mean,
                running_var,
                cfg,
            )?,
        }
        let (mean, inv_std) = (save_mean.buf().ptr(), save_inv_std.buf().ptr());
        self.batch_norm_normalize(x, mean, inv_std, gamma, beta, residual, None, out, cfg.relu)
    }

    /// Inference mode, with the running statistics (then ReLU).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_infer(
        &self,
        x: &T<D>,
        gamma: &T<D>,
        beta: &T<D>,
        running_mean: &T<D>,
        running_var: &T<D>,
        y: &mut T<D>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let c = gamma.numel();
        self.with_workspace(c * F32, |inv_std| {
            self.launch_1d(
                "batch_norm_infer_inv_std_f32",
                c,
                KernelArgs::new()
                    .ptr(running_var.buf().ptr())
                    .f64(cfg.eps)
                    .int(c)
                    .ptr(inv_std),
            )?;
            let mean = running_mean.buf().ptr();
            self.batch_norm_normalize(x, mean, inv_std, gamma, beta, None, None, y, cfg.relu)
        })
    }

    /// `out = x scale + shift` per channel (`scale = gamma inv_std`, `shift = beta - mean scale`),
    /// plus `residual` when given, then ReLU when `relu`: one pass. With `residual_bn` (bf16 only)
    /// the residual goes through that batch norm first (no ReLU), rounded to bf16 as its stored
    /// output would be (`batch_norm_normalize_add_bn_bf16`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_normalize(
        &self,
        x: &T<D>,
        mean: DevicePtr,
        inv_std: DevicePtr,
        gamma: &T<D>,
        beta: &T<D>,
        residual: Option<&T<D>>,
        residual_bn: Option<&BnMap<'_, GpuBackend<D>>>,
        out: &mut T<D>,
        relu: bool,
    ) -> Result<()> {
        let k = self.batch_norm_kernels();
        let (n, c) = (x.numel(), gamma.numel());
        let args = KernelArgs::new()
            .ptr(x.buf().ptr())
            .ptr(mean)
            .ptr(inv_std)
            .ptr(gamma.buf().ptr())
            .ptr(beta.buf().ptr());
        let (kernel, args) = match (residual, residual_bn) {
            (None, _) => (k.normalize, args),
            (Some(r), None) => (k.normalize_add, args.ptr(r.buf().ptr())),
            (Some(r), Some(r_bn)) => (
                k.normalize_add_bn,
                with_bn_affine(args.ptr(r.buf().ptr()), r_bn.gamma, &r_bn.saved),
            ),
        };
        let args = args
            .ptr(out.buf().ptr())
            .u64(n)
            .int(c)
            .int(usize::from(relu));
        self.launch_planned(kernel, (k.rows)(n / c, c), args)?;
        Self::written_as(out, self.precision.activation_dtype());
        Ok(())
    }

    /// Backward of training-mode batch norm and its ReLU: `dx` in the activation type, `dgamma`
    /// and `dbeta` in f32. BN's own ReLU masks `dy` by the sign of the forward's affine map of `x`
    /// (recomputed from `saved` by the forward's code, so `y` is not read). With `g_out`, the end of a
    /// residual block (`Backend::batch_norm_add_relu_backward`): `y` is the block's output, the mask
    /// is `y > 0`, and the masked `dy` is stored in `g_out` too. With `conv_partials`
    /// (`Backend::batch_norm_backward_from_partials`), the per-channel sums come from the
    /// convolution that wrote `dy` and are not computed here (`y` is then not read at all).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_backward_pass(
        &self,
        x: &T<D>,
        y: &T<D>,
        dy: &T<D>,
        gamma: &T<D>,
        saved: BatchNormSaved<'_, Self>,
        dx: &mut T<D>,
        dgamma: &mut T<D>,
        dbeta: &mut T<D>,
        relu: bool,
        g_out: Option<&mut T<D>>,
        conv_partials: Option<&T<D>>,
    ) -> Result<()> {
        let k = self.batch_norm_kernels();
        let c = gamma.numel();
        let m = x.numel() / c;
        // With the convolution's partials ([2][C][P], conv_tc_bn_grad.cuh) the workspace holds only
        // the coefficients.
        let (p, partial_floats) = match conv_partials {
            Some(t) => (t.numel() / (2 * c), 0),
            None => (batch_norm_partitions(m), batch_norm_partial_floats(m, c, 2)),
        };
        let coef_offset = (partial_floats * F32).div_ceil(256) * 256;
        debug_assert!(relu || g_out.is_none(), "g_out is the ReLU-masked dy");
        let mask = match (relu, &g_out) {
            (false, _) => ReluMask::None,
            (true, None) => ReluMask::FromAffine,
            (true, Some(_)) => ReluMask::FromY,
        };
        let (mean, inv_std, beta) = (
            saved.mean.buf().ptr(),
            saved.inv_std.buf().ptr(),
            saved.beta.buf().ptr(),
        );
        self.with_workspace(coef_offset + 3 * c * F32, |ws| {
            let coef = ws + coef_offset as DevicePtr;
            let partial = match conv_partials {
                Some(t) => t.buf().ptr(),
                None => ws,
            };
            if conv_partials.is_none() {
                self.launch_planned(
                    k.backward_partial,
                    (k.partial)(m, c),
                    KernelArgs::new()
                        .ptr(x.buf().ptr())
                        .ptr(y.buf().ptr())
                        .ptr(dy.buf().ptr())
                        .ptr(mean)
                        .ptr(inv_std)
                        .ptr(gamma.buf().ptr())
                        .ptr(beta)
                        .int(m)
                        .int(c)
                        .int(mask as usize)
                        .ptr(partial),
                )?;
            }
            // The convolution's partials are [2][C][P] (kernels/conv_tc_bn_grad.cuh).
            let finalize = match conv_partials {
                Some(_) => "batch_norm_backward_finalize_tiles_f32",
                None => "batch_norm_backward_finalize_f32",
            };
            self.launch_planned(
                finalize,
                finalize_launch(c),
                KernelArgs::new()
                    .ptr(partial)
                    .int(p)
                    .int(m)
                    .int(c)
                    .ptr(gamma.buf().ptr())
                    .ptr(inv_std)
                    .ptr(dgamma.buf().ptr())
                    .ptr(dbeta.buf().ptr())
                    .ptr(coef),
            )?;
            let (kernel, args) = match &g_out {
                None => (
                    k.backward_data,
                    KernelArgs::new()
                        .ptr(x.buf().ptr())
                        .ptr(dy.buf().ptr())
                        .ptr(mean)
                        .ptr(inv_std)
                        .ptr(gamma.buf().ptr())
                        .ptr(beta)
                        .ptr(coef)
                        .ptr(dx.buf().ptr())
                        .u64(x.numel())
                        .int(c)
                        .int(usize::from(relu)),
                ),
                Some(g) => (
                    k.add_relu_backward_data,
                    KernelArgs::new()
                        .ptr(x.buf().ptr())
                        .ptr(y.buf().ptr())
                        .ptr(dy.buf().ptr())
                        .ptr(mean)
                        .ptr(coef)
                        .ptr(dx.buf().ptr())
                        .ptr(g.buf().ptr())
                        .u64(x.numel())
                        .int(c),
                ),
            };
            self.launch_planned(kernel, (k.rows)(m, c), args)
        })?;
        Self::written_as(dx, self.precision.activation_dtype());
        if let Some(g) = g_out {
            Self::written_as(g, self.precision.activation_dtype());
        }
        Ok(())
    }
}
