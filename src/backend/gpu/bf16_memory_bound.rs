//! The GPU backend's memory-bound ops in mixed precision (`Precision::Bf16`): the residual add, the
//! option-A shortcut and pooling on bf16 activations. Kernels: kernels/{elementwise,pool,shortcut}_bf16.cu,
//! launched as `bf16_launch` plans them. (Batch norm, whose two precisions share one launch sequence,
//! is in `batch_norm.rs`.)

use super::backend::GpuBackend;
use super::bf16_launch as plan;
use super::driver::Driver;
use super::launch::KernelArgs;
use crate::backend::{DType, PoolGeometry};
use crate::error::Result;
use crate::tensor::Tensor;

type T<D> = Tensor<GpuBackend<D>>;

fn dims4<D: Driver>(t: &T<D>) -> [usize; 4] {
    t.shape().dims4().expect("shape validated by ops")
}

impl<D: Driver> GpuBackend<D> {
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

    /// The option-A shortcut (`forward`: `src = x`, `dst = y`) or its transpose (`src = dy`,
    /// `dst = dx`).
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
