//! The GPU backend's memory-bound ops in mixed precision (`Precision::Bf16`): batch norm, the
//! residual add, the option-A shortcut and pooling on bf16 activations, with f32 per-channel
//! parameters and statistics. Kernels: kernels/{batch_norm,elementwise,pool,shortcut}_bf16.cu, launched
//! as `bf16_launch` plans them; the per-channel finalize kernels are batch_norm.cu's f32 ones.

use super::backend::GpuBackend;
use super::bf16_launch::{self as plan, Launch};
use super::driver::{DevicePtr, Driver};
use super::launch::KernelArgs;
use crate::backend::{BatchNormConfig, BatchNormSaved, DType, PoolGeometry};
use crate::error::Result;
use crate::tensor::Tensor;

const F32: usize = std::mem::size_of::<f32>();

type T<D> = Tensor<GpuBackend<D>>;

fn dims4<D: Driver>(t: &T<D>) -> [usize; 4] {
    t.shape().dims4().expect("shape validated by ops")
}

impl<D: Driver> GpuBackend<D> {
    fn launch_planned(&self, kernel: &str, l: Launch, args: KernelArgs) -> Result<()> {
        self.launch(kernel, l.grid, l.block, l.shared_bytes, args)
    }

    /// The per-channel statistics of bf16 `x` (channels: `save_mean`'s length), as the f32 path:
    /// the partial sums read bf16, the finalize kernels are the f32 ones.
    fn batch_norm_statistics_bf16(
        &self,
        x: &T<D>,
        save_mean: &mut T<D>,
        save_inv_std: &mut T<D>,
        running_mean: &mut T<D>,
        running_var: &mut T<D>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let c = save_mean.numel();
        let m = x.numel() / c;
        let p = plan::batch_norm_partitions(m);
        let partial_launch = plan::batch_norm_partial(m, c);
        let finalize = plan::batch_norm_finalize(c);
        self.with_workspace(plan::batch_norm_partial_floats(m, c, 1) * F32, |partial| {
            let x_ptr = x.buf().ptr();
            self.launch_planned(
                "batch_norm_partial_sum_bf16",
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
                "batch_norm_partial_sqdev_bf16",
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

    /// `out = BN(x)` (then ReLU), or with `residual`, `out = BN(x) + residual` (then ReLU): training
    /// mode, statistics from `x`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_train_bf16(
        &self,
        x: &T<D>,
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
        self.batch_norm_statistics_bf16(
            x,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )?;
        let (mean, inv_std) = (save_mean.buf().ptr(), save_inv_std.buf().ptr());
        self.batch_norm_normalize_bf16(x, mean, inv_std, gamma, beta, residual, out, cfg.relu)
    }

    /// Inference-mode batch norm with the running statistics (then ReLU).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_infer_bf16(
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
            self.batch_norm_normalize_bf16(x, mean, inv_std, gamma, beta, None, y, cfg.relu)
        })
    }

    /// `out = x scale + shift` per channel (`scale = gamma inv_std`, `shift = beta - mean scale`),
    /// plus `residual` when given, then ReLU when `relu`: one pass, bf16 in and out.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_normalize_bf16(
        &self,
        x: &T<D>,
        mean: DevicePtr,
        inv_std: DevicePtr,
        gamma: &T<D>,
        beta: &T<D>,
        residual: Option<&T<D>>,
        out: &mut T<D>,
        relu: bool,
    ) -> Result<()> {
        let (n, c) = (x.numel(), gamma.numel());
        let args = KernelArgs::new()
            .ptr(x.buf().ptr())
            .ptr(mean)
            .ptr(inv_std)
            .ptr(gamma.buf().ptr())
            .ptr(beta.buf().ptr());
        let (kernel, args) = match residual {
            None => ("batch_norm_normalize_bf16", args),
            Some(r) => ("batch_norm_normalize_add_bf16", args.ptr(r.buf().ptr())),
        };
        let args = args
            .ptr(out.buf().ptr())
            .u64(n)
            .int(c)
            .int(usize::from(relu));
        self.launch_planned(kernel, plan::rows_channels(n / c, c), args)?;
        Self::written_as(out, DType::Bf16);
        Ok(())
    }

    /// Backward of training-mode batch norm (and its ReLU) on bf16 `x`, `y`, `dy`: f32 `dgamma`,
    /// `dbeta`, bf16 `dx`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batch_norm_backward_bf16(
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
    ) -> Result<()> {
        let c = gamma.numel();
        let m = x.numel() / c;
        let p = plan::batch_norm_partitions(m);
        let partial_bytes = plan::batch_norm_partial_floats(m, c, 2) * F32;
        let coef_offset = partial_bytes.div_ceil(256) * 256;
        let relu = usize::from(relu);
        self.with_workspace(coef_offset + 3 * c * F32, |ws| {
            let (partial, coef) = (ws, ws + coef_offset as DevicePtr);
            self.launch_planned(
                "batch_norm_backward_partial_bf16",
                plan::batch_norm_partial(m, c),
                KernelArgs::new()
                    .ptr(x.buf().ptr())
                    .ptr(y.buf().ptr())
                    .ptr(dy.buf().ptr())
                    .ptr(saved.mean.buf().ptr())
                    .int(m)
                    .int(c)
                    .int(relu)
                    .ptr(partial),
            )?;
            self.launch_planned(
                "batch_norm_backward_finalize_f32",
                plan::batch_norm_finalize(c),
                KernelArgs::new()
                    .ptr(partial)
                    .int(p)
                    .int(m)
                    .int(c)
                    .ptr(gamma.buf().ptr())
                    .ptr(saved.inv_std.buf().ptr())
                    .ptr(dgamma.buf().ptr())
                    .ptr(dbeta.buf().ptr())
                    .ptr(coef),
            )?;
            self.launch_planned(
                "batch_norm_backward_data_bf16",
                plan::rows_channels(m, c),
                KernelArgs::new()
                    .ptr(x.buf().ptr())
                    .ptr(y.buf().ptr())
                    .ptr(dy.buf().ptr())
                    .ptr(saved.mean.buf().ptr())
                    .ptr(coef)
                    .ptr(dx.buf().ptr())
                    .u64(x.numel())
                    .int(c)
                    .int(relu),
            )
        })?;
        Self::written_as(dx, DType::Bf16);
        Ok(())
    }

    /// `out = f(a, b)` elementwise over bf16 tensors: `add_forward_bf16` (`a + b`, then ReLU) or
    /// `add_backward_bf16` (`dy [y > 0]`, with `a = y`, `b = dy`).
    pub(super) fn elementwise_bf16(
        &self,
        kernel: &'static str,
        a: &T<D>,
        b: &T<D>,
        out: &mut T<D>,
        relu: bool,
    ) -> Result<()> {
        let n = out.numel();
        self.launch_planned(
            kernel,
            plan::elementwise(n),
            KernelArgs::new()
                .ptr(a.buf().ptr())
                .ptr(b.buf().ptr())
                .ptr(out.buf().ptr())
                .u64(n)
                .int(usize::from(relu)),
        )?;
        Self::written_as(out, DType::Bf16);
        Ok(())
    }

    /// The option-A shortcut (`forward`: `x -> y`) or its transpose (`dy -> dx`); `input` and
    /// `output` are the NHWC tensors on either side, `x`-shaped first.
    pub(super) fn shortcut_a_bf16(
        &self,
        forward: bool,
        src: &T<D>,
        dst: &mut T<D>,
        stride: usize,
    ) -> Result<()> {
        let (x_dims, y_dims) = if forward {
            (dims4(src), dims4(dst))
        } else {
            (dims4(dst), dims4(src))
        };
        let ([n, h, w, cin], [_, p, q, cout]) = (x_dims, y_dims);
        let (kernel, launch) = if forward {
            (
                "shortcut_a_forward_bf16",
                plan::shortcut_a_forward(n, p, q, cin, cout),
            )
        } else {
            (
                "shortcut_a_backward_bf16",
                plan::shortcut_a_backward(n, h, w, cin, cout),
            )
        };
        let args = KernelArgs::new()
            .ptr(src.buf().ptr())
            .ptr(dst.buf().ptr())
            .int(n)
            .int(h)
            .int(w)
            .int(cin)
            .int(p)
            .int(q)
            .int(cout)
            .int(stride);
        self.launch_planned(kernel, launch, args)?;
        Self::written_as(dst, DType::Bf16);
        Ok(())
    }

    /// `y[n, c] = mean_hw x[n, h, w, c]`: bf16 in, f32 out (the classifier's head is f32).
    pub(super) fn global_avg_pool_forward_bf16(&self, x: &T<D>, y: &mut T<D>) -> Result<()> {
        let [n, h, w, c] = dims4(x);
        self.launch_planned(
            "global_avg_pool_forward_bf16",
            plan::rows_channels(n, c),
            KernelArgs::new()
                .ptr(x.buf().ptr())
                .ptr(y.buf().ptr())
                .int(n)
                .int(h * w)
                .int(c),
        )?;
        Self::written_as(y, DType::F32);
        Ok(())
    }

    /// `dx[n, h, w, c] = dy[n, c] / (H W)`: f32 in, bf16 out.
    pub(super) fn global_avg_pool_backward_bf16(&self, dy: &T<D>, dx: &mut T<D>) -> Result<()> {
        let [n, h, w, c] = dims4(dx);
        let inv_hw = (1.0 / (h * w) as f64) as f32;
        self.launch_planned(
            "global_avg_pool_backward_bf16",
            plan::global_avg_pool_backward(n, h * w, c),
            KernelArgs::new()
                .ptr(dy.buf().ptr())
                .ptr(dx.buf().ptr())
                .int(n)
                .int(h * w)
                .int(c)
                .f32(inv_hw),
        )?;
        Self::written_as(dx, DType::Bf16);
        Ok(())
    }

    /// Max pooling's forward (`dy = None`: `x -> out`) or backward (`dy -> out = dx`), bf16.
    pub(super) fn max_pool_bf16(
        &self,
        x: &T<D>,
        dy: Option<&T<D>>,
        out: &mut T<D>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let [n, h, w, c] = dims4(x);
        let [_, p, q, _] = match dy {
            Some(dy) => dims4(dy),
            None => dims4(out),
        };
        let args = KernelArgs::new().ptr(x.buf().ptr());
        let (kernel, launch, args) = match dy {
            None => (
                "max_pool_forward_bf16",
                plan::max_pool_forward(n, p, q, c),
                args,
            ),
            Some(dy) => (
                "max_pool_backward_bf16",
                plan::max_pool_backward(n, h, w, c),
                args.ptr(dy.buf().ptr()),
            ),
        };
        let args = args
            .ptr(out.buf().ptr())
            .int(n)
            .int(h)
            .int(w)
            .int(c)
            .int(p)
            .int(q)
            .int(geom.window)
            .int(geom.stride)
            .int(geom.pad);
        self.launch_planned(kernel, launch, args)?;
        Self::written_as(out, DType::Bf16);
        Ok(())
    }
}
