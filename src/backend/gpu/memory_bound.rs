//! The GPU backend's memory-bound ops in either precision: the residual add and its backward, the
//! option-A shortcut and its transpose, global average pooling and max pooling. The two precisions
//! run the same launches with the same parameter lists; only the kernels (kernels/{elementwise,
//! shortcut,pool}.cu in f32, their `_bf16` twins in bf16), the type they write and where they are
//! launched differ, which [`MemoryBoundKernels`] names. (Batch norm, which works the same way, is
//! in `batch_norm.rs`.)

use super::backend::GpuBackend;
use super::batch_norm::with_bn_affine;
use super::bf16_launch::{self as bf16_plan, Launch};
use super::driver::Driver;
use super::launch::{grid_1d, KernelArgs};
use crate::backend::{BnMap, DType, PoolGeometry, Precision};
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

type T<D> = Tensor<GpuBackend<D>>;
type Dims = [usize; 4];

/// One precision's memory-bound kernels and their launch geometry. The geometry functions take the
/// NHWC shapes of the op's input and output as the kernels name them (`x`, `y`; for a backward,
/// still the forward's `x` and `y`).
struct MemoryBoundKernels {
    add_forward: &'static str,
    add_backward: &'static str,
    shortcut_forward: &'static str,
    shortcut_backward: &'static str,
    avg_pool_forward: &'static str,
    avg_pool_backward: &'static str,
    max_pool_forward: &'static str,
    /// In f32 one pass over `x`; in bf16 the second of two, over the taps the argmax pass recorded.
    max_pool_backward: &'static str,
    /// The backward's first pass in bf16, which records each output's first maximum as its tap in
    /// the window (kernels/pool_bf16.cu); "" in f32, whose backward is one pass.
    max_pool_argmax: &'static str,
    /// The BN-input max pools (`relu(BN(x))` at each tap); bf16 only: "" in f32, never launched
    /// (`max_pool_bn_input_fusion` is false there).
    max_pool_forward_bnrelu: &'static str,
    max_pool_argmax_bnrelu: &'static str,
    /// The type the kernels that write activations (or their gradients) store.
    activations: DType,
    /// Over `n` elements.
    elementwise: fn(usize) -> Launch,
    shortcut_forward_at: fn(Dims, Dims) -> Launch,
    shortcut_backward_at: fn(Dims, Dims) -> Launch,
    avg_pool_forward_at: fn(Dims) -> Launch,
    avg_pool_backward_at: fn(Dims) -> Launch,
    max_pool_forward_at: fn(Dims, Dims) -> Launch,
    max_pool_backward_at: fn(Dims, Dims) -> Launch,
}

/// The f32 kernels: one thread per output element, in a 1-D grid-stride loop.
fn flat(n: usize) -> Launch {
    let (grid, block) = grid_1d(n);
    Launch {
        grid,
        block,
        shared_bytes: 0,
    }
}

const F32_KERNELS: MemoryBoundKernels = MemoryBoundKernels {
    add_forward: "add_forward_f32",
    add_backward: "add_backward_f32",
    shortcut_forward: "shortcut_a_forward_f32",
    shortcut_backward: "shortcut_a_backward_f32",
    avg_pool_forward: "global_avg_pool_forward_f32",
    avg_pool_backward: "global_avg_pool_backward_f32",
    max_pool_forward: "max_pool_forward_f32",
    max_pool_backward: "max_pool_backward_f32",
    max_pool_argmax: "",
    max_pool_forward_bnrelu: "",
    max_pool_argmax_bnrelu: "",
    activations: DType::F32,
    elementwise: flat,
    shortcut_forward_at: |_, [n, p, q, cout]| flat(n * p * q * cout),
    shortcut_backward_at: |[n, h, w, cin], _| flat(n * h * w * cin),
    avg_pool_forward_at: |[n, _, _, c]| flat(n * c),
    avg_pool_backward_at: |[n, h, w, c]| flat(n * h * w * c),
    max_pool_forward_at: |_, [n, p, q, c]| flat(n * p * q * c),
    max_pool_backward_at: |[n, h, w, c], _| flat(n * h * w * c),
};

const BF16_KERNELS: MemoryBoundKernels = MemoryBoundKernels {
    add_forward: "add_forward_bf16",
    add_backward: "add_backward_bf16",
    shortcut_forward: "shortcut_a_forward_bf16",
    shortcut_backward: "shortcut_a_backward_bf16",
    avg_pool_forward: "global_avg_pool_forward_bf16",
    avg_pool_backward: "global_avg_pool_backward_bf16",
    max_pool_forward: "max_pool_forward_bf16",
    max_pool_backward: "max_pool_backward_bf16",
    max_pool_argmax: "max_pool_argmax_bf16",
    max_pool_forward_bnrelu: "max_pool_forward_bnrelu_bf16",
    max_pool_argmax_bnrelu: "max_pool_argmax_bnrelu_bf16",
    activations: DType::Bf16,
    elementwise: bf16_plan::elementwise,
    shortcut_forward_at: |[_, _, _, cin], [n, p, q, cout]| {
        bf16_plan::shortcut_a_forward(n, p, q, cin, cout)
    },
    shortcut_backward_at: |[n, h, w, cin], [_, _, _, cout]| {
        bf16_plan::shortcut_a_backward(n, h, w, cin, cout)
    },
    avg_pool_forward_at: |[n, _, _, c]| bf16_plan::rows_channels(n, c),
    avg_pool_backward_at: |[n, h, w, c]| bf16_plan::global_avg_pool_backward(n, h * w, c),
    max_pool_forward_at: |_, [n, p, q, c]| bf16_plan::max_pool_forward(n, p, q, c),
    max_pool_backward_at: |[n, h, w, c], _| bf16_plan::max_pool_backward(n, h, w, c),
};

fn dims4<D: Driver>(t: &T<D>) -> Dims {
    t.shape().dims4().expect("shape validated by ops")
}

impl<D: Driver> GpuBackend<D> {
    fn memory_bound_kernels(&self) -> &'static MemoryBoundKernels {
        match self.precision {
            Precision::F32 => &F32_KERNELS,
            Precision::Bf16 => &BF16_KERNELS,
        }
    }

    /// `y = a + b`, then ReLU when `relu` (`backward`: `dsum = dy [y > 0]` with `a = y`,
    /// `b = dy`, `out = dsum`).
    pub(super) fn residual_add(
        &self,
        backward: bool,
        a: &T<D>,
        b: &T<D>,
        out: &mut T<D>,
        relu: bool,
    ) -> Result<()> {
        let k = self.memory_bound_kernels();
        let kernel = if backward {
            k.add_backward
        } else {
            k.add_forward
        };
        let n = out.numel();
        self.launch_planned(
            kernel,
            (k.elementwise)(n),
            KernelArgs::new()
                .ptr(a.buf().ptr())
                .ptr(b.buf().ptr())
                .ptr(out.buf().ptr())
                .u64(n)
                .int(usize::from(relu)),
        )?;
        Self::written_as(out, k.activations);
        Ok(())
    }

    /// The option-A shortcut (`forward`: `src = x`, `dst = y`) or its transpose (`src = dy`,
    /// `dst = dx`).
    pub(super) fn shortcut_a(
        &self,
        forward: bool,
        src: &T<D>,
        dst: &mut T<D>,
        stride: usize,
    ) -> Result<()> {
        let k = self.memory_bound_kernels();
        let (x, y) = match forward {
            true => (dims4(src), dims4(dst)),
            false => (dims4(dst), dims4(src)),
        };
        let (kernel, launch) = match forward {
            true => (k.shortcut_forward, (k.shortcut_forward_at)(x, y)),
            false => (k.shortcut_backward, (k.shortcut_backward_at)(x, y)),
        };
        let ([n, h, w, cin], [_, p, q, cout]) = (x, y);
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
        Self::written_as(dst, k.activations);
        Ok(())
    }

    /// `y[n, c] = mean_hw x[n, h, w, c]`; `y` is f32 in both precisions (the classifier's head is).
    pub(super) fn global_avg_pool_forward_any(&self, x: &T<D>, y: &mut T<D>) -> Result<()> {
        let k = self.memory_bound_kernels();
        let [n, h, w, c] = dims4(x);
        self.launch_planned(
            k.avg_pool_forward,
            (k.avg_pool_forward_at)(dims4(x)),
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

    /// `dx[n, h, w, c] = dy[n, c] / (H W)`: `dy` f32, `dx` in the activation type.
    pub(super) fn global_avg_pool_backward_any(&self, dy: &T<D>, dx: &mut T<D>) -> Result<()> {
        let k = self.memory_bound_kernels();
        let [n, h, w, c] = dims4(dx);
        // Rounded to f32 exactly as the CPU reference does.
        let inv_hw = (1.0 / (h * w) as f64) as f32;
        self.launch_planned(
            k.avg_pool_backward,
            (k.avg_pool_backward_at)(dims4(dx)),
            KernelArgs::new()
                .ptr(dy.buf().ptr())
                .ptr(dx.buf().ptr())
                .int(n)
                .int(h * w)
                .int(c)
                .f32(inv_hw),
        )?;
        Self::written_as(dx, k.activations);
        Ok(())
    }

    /// Max pooling's forward (`dy = None`: `x -> out = y`) or backward (`dy -> out = dx`); with
    /// `bn` (bf16 only), of `relu(BN(x))` computed at each tap (`Backend::max_pool_forward_bn_input`).
    pub(super) fn max_pool(
        &self,
        x: &T<D>,
        bn: Option<&BnMap<'_, GpuBackend<D>>>,
        dy: Option<&T<D>>,
        out: &mut T<D>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let k = self.memory_bound_kernels();
        let xd = dims4(x);
        let yd = dy.map_or_else(|| dims4(out), dims4);
        match dy {
            None => {
                let (kernel, args) =
                    pool_input(x, bn, k.max_pool_forward, k.max_pool_forward_bnrelu);
                let args = with_pool_shape(args.ptr(out.buf().ptr()), xd, yd, geom);
                self.launch_planned(kernel, (k.max_pool_forward_at)(xd, yd), args)?;
            }
            // f32: one pass, which finds every covering window's maximum again.
            Some(dy) if k.max_pool_argmax.is_empty() => {
                let args = KernelArgs::new()
                    .ptr(x.buf().ptr())
                    .ptr(dy.buf().ptr())
                    .ptr(out.buf().ptr());
                let args = with_pool_shape(args, xd, yd, geom);
                self.launch_planned(k.max_pool_backward, (k.max_pool_backward_at)(xd, yd), args)?;
            }
            Some(dy) => self.with_max_pool_taps(x, bn, yd, geom, |taps| {
                let args = KernelArgs::new()
                    .ptr(taps)
                    .ptr(dy.buf().ptr())
                    .ptr(out.buf().ptr());
                let args = with_pool_shape(args, xd, yd, geom);
                self.launch_planned(k.max_pool_backward, (k.max_pool_backward_at)(xd, yd), args)
            })?,
        }
        Self::written_as(out, k.activations);
        Ok(())
    }

    /// The bf16 max pool backward's first pass (kernels/pool_bf16.cu, `max_pool_argmax_bf16` or,
    /// with `bn`, `_bnrelu_bf16`): each output's first maximum as its tap in the window, one byte per
    /// element of `y` in a workspace, which `second` (the pass that reads it) gets.
    fn with_max_pool_taps(
        &self,
        x: &T<D>,
        bn: Option<&BnMap<'_, GpuBackend<D>>>,
        yd: Dims,
        geom: PoolGeometry,
        second: impl FnOnce(super::DevicePtr) -> Result<()>,
    ) -> Result<()> {
        // A tap is a byte (255: none), so a window has at most 225 (15 x 15).
        if geom.window > MAX_TAPPED_WINDOW {
            return Err(invalid(
                "max_pool_backward",
                format!(
                    "a {0}x{0} window: the bf16 kernels take windows up to {1}x{1} (f32 takes any)",
                    geom.window, MAX_TAPPED_WINDOW
                ),
            ));
        }
        let k = self.memory_bound_kernels();
        let xd = dims4(x);
        let [n, p, q, c] = yd;
        self.with_workspace(n * p * q * c, |taps| {
            let (kernel, args) = pool_input(x, bn, k.max_pool_argmax, k.max_pool_argmax_bnrelu);
            let args = with_pool_shape(args.ptr(taps), xd, yd, geom);
            self.launch_planned(kernel, (k.max_pool_forward_at)(xd, yd), args)?;
            second(taps)
        })
    }

    /// The BN-input max pool's backward, and from its second pass that BN's backward partial sums
    /// into `partials` (kernels/pool_bf16.cu, `max_pool_backward_bnrelu_sums_bf16`): `[2][C][P]`
    /// floats, P the launch's blocks, which `Backend::max_pool_bn_grad_len` sized.
    pub(super) fn max_pool_with_bn_sums(
        &self,
        x: &T<D>,
        bn: &BnMap<'_, GpuBackend<D>>,
        dy: &T<D>,
        dx: &mut T<D>,
        partials: &mut T<D>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let (xd, yd) = (dims4(x), dims4(dy));
        let [n, h, w, c] = xd;
        let launch = bf16_plan::max_pool_backward_sums(n, h, w, c).ok_or_else(|| {
            invalid(
                "max_pool_backward_bn_input",
                format!(
                    "{c} channels: too many for the pool's BN sums (max_pool_bn_grad_len is None)"
                ),
            )
        })?;
        self.with_max_pool_taps(x, Some(bn), yd, geom, |taps| {
            let args = with_bn_affine(KernelArgs::new().ptr(x.buf().ptr()), bn.gamma, &bn.saved)
                .ptr(taps)
                .ptr(dy.buf().ptr())
                .ptr(dx.buf().ptr())
                .ptr(partials.buf().ptr());
            let args = with_pool_shape(args, xd, yd, geom);
            self.launch_planned("max_pool_backward_bnrelu_sums_bf16", launch, args)
        })?;
        Self::written_as(dx, DType::Bf16);
        Self::written_as(partials, DType::F32);
        Ok(())
    }
}

/// A max pool's input arguments and kernel: `x` alone (`plain`), or with `bn` the BN whose output
/// with ReLU the pool computes at each tap (`bnrelu`, which takes BN's statistics and affine after x).
fn pool_input<D: Driver>(
    x: &T<D>,
    bn: Option<&BnMap<'_, GpuBackend<D>>>,
    plain: &'static str,
    bnrelu: &'static str,
) -> (&'static str, KernelArgs) {
    let args = KernelArgs::new().ptr(x.buf().ptr());
    match bn {
        Some(bn) => (bnrelu, with_bn_affine(args, bn.gamma, &bn.saved)),
        None => (plain, args),
    }
}

/// The largest max-pool window the bf16 backward takes: its taps are bytes.
const MAX_TAPPED_WINDOW: usize = 15;

/// The max pools' shape parameters, after their pointers: `N, H, W, C` of the input, `P, Q` of the
/// output, then the window, stride and padding.
fn with_pool_shape(
    args: KernelArgs,
    [n, h, w, c]: Dims,
    [_, p, q, _]: Dims,
    geom: PoolGeometry,
) -> KernelArgs {
    [n, h, w, c, p, q, geom.window, geom.stride, geom.pad]
        .into_iter()
        .fold(args, |a, v| a.int(v))
}
