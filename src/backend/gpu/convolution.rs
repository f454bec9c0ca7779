//! The GPU backend's f32 convolutions: the implicit-GEMM kernels of kernels/conv_{forward,
//! backward_data,backward_filter}.cu launched as `conv_plan` decides, or the direct reference kernels
//! of kernels/direct_conv_reference.cu. (bf16: `bf16_convolution.rs`.)

use super::backend::{ConvKernels, GpuBackend};
use super::conv_plan::{ConvShape, CONV_THREADS};
use super::driver::Driver;
use super::launch::KernelArgs;
use crate::backend::{Backend, Conv2dGeometry};
use crate::error::Result;
use crate::tensor::Tensor;

impl<D: Driver> GpuBackend<D> {
    /// A launch of one of the implicit-GEMM convolution kernels (fixed block, no dynamic shared
    /// memory; see `conv_plan`).
    pub(super) fn launch_conv(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        args: KernelArgs,
    ) -> Result<()> {
        self.launch(kernel, grid, (CONV_THREADS, 1, 1), 0, args)
    }

    /// A convolution pass whose `args` already hold its three tensors: the implicit-GEMM kernel and
    /// grid `fast`, or with reference convolutions the direct kernel `reference`, one thread per
    /// each of the `outputs` elements of the result.
    pub(super) fn launch_conv_pass(
        &self,
        shape: &ConvShape,
        args: KernelArgs,
        reference: &str,
        outputs: usize,
        (kernel, grid): (&str, (u32, u32, u32)),
    ) -> Result<()> {
        match self.convs {
            ConvKernels::Reference => {
                self.launch_1d(reference, outputs, direct_conv_args(args, shape))
            }
            ConvKernels::ImplicitGemm => self.launch_conv(kernel, grid, args.value(&shape.dims())),
        }
    }

    /// The implicit-GEMM backward-data kernel for `shape`, adding `addend` as it stores when given.
    pub(super) fn launch_backward_data(
        &self,
        shape: &ConvShape,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        addend: Option<&Tensor<Self>>,
    ) -> Result<()> {
        let args = KernelArgs::new()
            .ptr(dy.buf().ptr())
            .ptr(w.buf().ptr())
            .ptr(dx.buf().ptr());
        let (kernel, args) = match addend {
            None => (shape.backward_data_kernel(), args),
            Some(a) => (shape.backward_data_add_kernel(), args.ptr(a.buf().ptr())),
        };
        let args = args.value(&shape.dims());
        self.launch_conv(kernel, shape.backward_data_grid(), args)
    }
}

/// The convolution's shape from its three tensors: input `x`, weights `w` and output `y`.
pub(super) fn conv_shape<B: Backend>(
    x: &Tensor<B>,
    w: &Tensor<B>,
    y: &Tensor<B>,
    geom: Conv2dGeometry,
) -> ConvShape {
    ConvShape {
        x: dims4(x),
        w: dims4(w),
        y: dims4(y),
        geom,
    }
}

/// The shape parameters of the direct (reference) convolution kernels: `N H W C K R S P Q stride pad`.
pub(super) fn direct_conv_args(args: KernelArgs, shape: &ConvShape) -> KernelArgs {
    let d = shape.dims();
    [d.n, d.h, d.w, d.c, d.k, d.r, d.s, d.p, d.q, d.stride, d.pad]
        .into_iter()
        .fold(args, |args, v| args.int(v as usize))
}

pub(super) fn dims4(t: &Tensor<impl Backend>) -> [usize; 4] {
    t.shape().dims4().expect("shape validated by ops")
}
