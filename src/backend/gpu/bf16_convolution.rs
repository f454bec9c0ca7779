//! The GPU backend's convolutions in mixed precision (`Precision::Bf16`): the tensor-core
//! implicit-GEMM kernels of kernels/conv_tc_*.cu (bf16 operands, f32 accumulation), launched as
//! `conv_tc_plan` decides for the backend's kernel family (mma.sync by default; Hopper's wgmma with
//! `RESNET_TC_KERNELS=wgmma`). Activations are bf16; weights are read through their bf16 copy
//! (`bf16_view_of_weight`); the network's input image, which arrives in f32, is rounded to bf16 in a
//! workspace first. Forward and backward-data write bf16, backward-filter writes the f32 gradient.
//!
//! A channel count C that is not a multiple of 8 (the C = 3 stems) would send forward and
//! backward-filter to the element-gather kernels, a dozen integer instructions an element: by
//! count, the ImageNet stem alone would then take a large share of a resnet50 step. Instead both
//! widen x and w to 8 ceil(C / 8) channels in workspaces (kernels/channel_pad.cu: zeros, which add
//! nothing to any sum) and run the vector kernels; backward-filter narrows its gradient back. The
//! copies cost a pass over x (the stem's input, 77 MB at resnet50 b256, about 0.1 ms).

use super::backend::GpuBackend;
use super::batch_norm::{with_bn_affine, ReluMask};
use super::bf16_launch;
use super::conv_plan::ConvShape;
use super::conv_tc_plan::{TcFilterLaunch, TcLaunch, TcPass};
use super::driver::{DevicePtr, Driver};
use super::launch::KernelArgs;
use crate::backend::{BatchNormSaved, BnGradMask, BnMap, DType};
use crate::error::Result;
use crate::tensor::Tensor;

type T<D> = Tensor<GpuBackend<D>>;

/// The batch norm whose backward sums a backward-data computes
/// (`Backend::conv2d_backward_data_with_bn_grad`'s arguments).
pub(super) struct BnGradInput<'a, D: Driver> {
    pub x: &'a T<D>,
    pub gamma: &'a T<D>,
    pub saved: BatchNormSaved<'a, GpuBackend<D>>,
    pub mask: BnGradMask<'a, GpuBackend<D>>,
}

/// `shape` with x and w widened to 8 ceil(C / 8) channels (module doc).
fn widened(shape: &ConvShape) -> ConvShape {
    let cp = shape.x[3].div_ceil(8) * 8;
    let ([n, h, w, _], [k, r, s, _]) = (shape.x, shape.w);
    ConvShape {
        x: [n, h, w, cp],
        w: [k, r, s, cp],
        ..*shape
    }
}

/// Rows of channels in an NHWC or KRSC tensor: all of its dimensions but the last.
fn pixels(dims: [usize; 4]) -> usize {
    dims[0] * dims[1] * dims[2]
}

impl<D: Driver> GpuBackend<D> {
    fn launch_tc(&self, l: &TcLaunch, args: KernelArgs) -> Result<()> {
        if l.needs_shared_opt_in() {
            self.driver
                .set_max_dynamic_shared(l.kernel, l.shared_bytes)?;
        }
        // RESNET_TMA_PRODUCER=0: the TMA-fed kernels without their producer (the same bits).
        let block = if self.tma_producer {
            l.block
        } else {
            l.without_producer().block
        };
        self.launch(l.kernel, l.grid, block, l.shared_bytes, args)
    }

    /// `args` followed by the tensor maps a TMA-fed launch takes last (`TcLaunch::encode_maps`) over
    /// the GEMM's B operand at `b` (the weights, or backward-filter's x) and its A operand at `a`
    /// (the forward's x, the backward passes' dy); encoded on the host, no device call (a few
    /// hundred nanoseconds a map).
    fn with_tensor_maps(
        &self,
        l: &TcLaunch,
        mut args: KernelArgs,
        b: DevicePtr,
        a: DevicePtr,
    ) -> Result<KernelArgs> {
        for map in l.encode_maps(&*self.driver, b, a) {
            args = args.tensor_map(&map?);
        }
        Ok(args)
    }

    /// Runs `f` with the device address of `x`'s values in bf16: its own when it holds bf16, else
    /// a workspace holding them rounded (the f32 input image of the first convolution).
    fn with_bf16_activation<R>(
        &self,
        x: &T<D>,
        f: impl FnOnce(DevicePtr) -> Result<R>,
    ) -> Result<R> {
        if x.buf().dtype() == DType::Bf16 {
            return f(x.buf().ptr());
        }
        self.with_workspace(x.numel() * DType::Bf16.size(), |staged| {
            self.cast_to_bf16(x.buf().ptr(), staged, x.numel())?;
            f(staged)
        })
    }

    /// Runs `f` with `rows` rows of `c` bf16 at `src` widened to `cp` channels (zeros) in a workspace.
    fn with_widened<R>(
        &self,
        src: DevicePtr,
        rows: usize,
        c: usize,
        cp: usize,
        f: impl FnOnce(DevicePtr) -> Result<R>,
    ) -> Result<R> {
        self.with_workspace(rows * cp * DType::Bf16.size(), |dst| {
            self.launch_planned(
                "channels_pad_bf16",
                bf16_launch::channel_rows(rows),
                KernelArgs::new().ptr(src).ptr(dst).u64(rows).int(c).int(cp),
            )?;
            f(dst)
        })
    }

    /// Runs `f` with bf16 `x` and `w` as the vector kernels can read them, and the shape they have
    /// there: as they are when C % 8 == 0, else widened to 8 ceil(C / 8) channels (module doc).
    fn with_vector_operands<R>(
        &self,
        shape: &ConvShape,
        x16: DevicePtr,
        w16: DevicePtr,
        f: impl FnOnce(&ConvShape, DevicePtr, DevicePtr) -> Result<R>,
    ) -> Result<R> {
        let c = shape.x[3];
        if c % 8 == 0 {
            return f(shape, x16, w16);
        }
        let wide = widened(shape);
        let cp = wide.x[3];
        self.with_widened(x16, pixels(shape.x), c, cp, |x8| {
            self.with_widened(w16, pixels(shape.w), c, cp, |w8| f(&wide, x8, w8))
        })
    }

    /// `y = conv(x, w)`; with `stats`, also the batch-norm statistics partials of `y` as stored
    /// (`plan::forward_stats_partition(y)`'s layout, f32) from the same kernel's epilogue.
    pub(super) fn conv2d_forward_bf16(
        &self,
        shape: &ConvShape,
        x: &T<D>,
        w: &T<D>,
        y: &mut T<D>,
        stats: Option<&mut T<D>>,
    ) -> Result<()> {
        let family = self.tc_family()?;
        let w16 = self.bf16_view_of_weight(w)?;
        let y_ptr = y.buf().ptr();
        let stats_ptr = stats.as_ref().map(|t| t.buf().ptr());
        self.with_bf16_activation(x, |x16| {
            self.with_vector_operands(shape, x16, w16, |shape, x16, w16| {
                let args = KernelArgs::new().ptr(x16).ptr(w16).ptr(y_ptr);
                let (pass, args) = match stats_ptr {
                    None => (TcPass::Forward, args),
                    Some(p) => (TcPass::ForwardStats, args.ptr(p)),
                };
                let args = args.value(&shape.dims());
                self.run_tc_pass(pass, shape, family, |launch: &TcLaunch| {
                    let args = self.with_tensor_maps(launch, args.clone(), w16, x16)?;
                    self.launch_tc(launch, args)
                })
            })
        })?;
        if let Some(stats) = stats {
            Self::written_as(stats, DType::F32);
        }
        Self::written_as(y, DType::Bf16);
        Ok(())
    }

    /// `y = conv(relu(BN(x)), w)` and its statistics partials, BN's output computed from bf16 `x`
    /// as the kernel stages it (`plan::forward_stats_bnrelu_for`, which must be `Some` for `shape`).
    pub(super) fn conv2d_forward_bnrelu_bf16(
        &self,
        shape: &ConvShape,
        x: &T<D>,
        bn: &BnMap<'_, GpuBackend<D>>,
        w: &T<D>,
        y: &mut T<D>,
        stats: &mut T<D>,
    ) -> Result<()> {
        let family = self.tc_family()?;
        let w16 = self.bf16_view_of_weight(w)?;
        let args = KernelArgs::new()
            .ptr(x.buf().ptr())
            .ptr(w16)
            .ptr(y.buf().ptr())
            .ptr(stats.buf().ptr());
        let args = with_bn_affine(args, bn.gamma, &bn.saved).value(&shape.dims());
        self.run_tc_pass(
            TcPass::ForwardStatsBnRelu,
            shape,
            family,
            |launch: &TcLaunch| {
                let args = self.with_tensor_maps(launch, args.clone(), w16, x.buf().ptr())?;
                self.launch_tc(launch, args)
            },
        )?;
        Self::written_as(stats, DType::F32);
        Self::written_as(y, DType::Bf16);
        Ok(())
    }

    /// `dx = conv_transpose(dy, w)`, plus `addend` when given (rounded to bf16 once).
    pub(super) fn conv2d_backward_data_bf16(
        &self,
        shape: &ConvShape,
        dy: &T<D>,
        w: &T<D>,
        addend: Option<&T<D>>,
        dx: &mut T<D>,
    ) -> Result<()> {
        let w16 = self.bf16_view_of_weight(w)?;
        let args = KernelArgs::new()
            .ptr(dy.buf().ptr())
            .ptr(w16)
            .ptr(dx.buf().ptr());
        let args = match addend {
            Some(a) => args.ptr(a.buf().ptr()),
            None => args,
        };
        let pass = if addend.is_some() {
            TcPass::BackwardDataAdd
        } else {
            TcPass::BackwardData
        };
        let args = args.value(&shape.dims());
        self.run_tc_pass(pass, shape, self.tc_family()?, |launch: &TcLaunch| {
            let args = self.with_tensor_maps(launch, args.clone(), w16, dy.buf().ptr())?;
            self.launch_tc(launch, args)
        })?;
        Self::written_as(dx, DType::Bf16);
        Ok(())
    }

    /// `dz = (conv_transpose(dy, w) [+ addend]) * mask` and, from its epilogue, the backward
    /// partials of the BN `bn` whose output gradient `dz` is (`plan::backward_data_bn_for`, which
    /// must be `Some` for `shape`: the caller sized `partials` by it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv2d_backward_data_bn_bf16(
        &self,
        shape: &ConvShape,
        dy: &T<D>,
        w: &T<D>,
        addend: Option<&T<D>>,
        dz: &mut T<D>,
        bn: &BnGradInput<'_, D>,
        partials: &mut T<D>,
    ) -> Result<()> {
        let family = self.tc_family()?;
        let w16 = self.bf16_view_of_weight(w)?;
        let (mask, y) = match bn.mask {
            BnGradMask::None => (ReluMask::None, 0),
            BnGradMask::Own => (ReluMask::FromAffine, 0),
            BnGradMask::Output(y) => (ReluMask::FromY, y.buf().ptr()),
        };
        let args = KernelArgs::new()
            .ptr(dy.buf().ptr())
            .ptr(w16)
            .ptr(dz.buf().ptr())
            .ptr(addend.map_or(0, |a| a.buf().ptr()))
            .ptr(bn.x.buf().ptr());
        let args = with_bn_affine(args, bn.gamma, &bn.saved)
            .int(mask as usize)
            .ptr(y)
            .ptr(partials.buf().ptr())
            .value(&shape.dims());
        self.run_tc_pass(
            TcPass::BackwardDataBn,
            shape,
            family,
            |launch: &TcLaunch| {
                let args = self.with_tensor_maps(launch, args.clone(), w16, dy.buf().ptr())?;
                self.launch_tc(launch, args)
            },
        )?;
        Self::written_as(dz, DType::Bf16);
        Self::written_as(partials, DType::F32);
        Ok(())
    }

    /// `dw` (f32) from bf16 `x` and `dy`, its reduction split as the plan says and summed in a fixed
    /// order.
    pub(super) fn conv2d_backward_filter_bf16(
        &self,
        shape: &ConvShape,
        x: &T<D>,
        dy: &T<D>,
        dw: &mut T<D>,
    ) -> Result<()> {
        let (dy_ptr, dw_ptr) = (dy.buf().ptr(), dw.buf().ptr());
        let [k, r, s, c] = shape.w;
        self.with_bf16_activation(x, |x16| {
            if c % 8 == 0 || k % 8 != 0 {
                return self.filter_into(shape, x16, dy_ptr, dw_ptr);
            }
            // Widened x (module doc); the gradient of the padding channels is computed and dropped.
            let wide = widened(shape);
            let cp = wide.x[3];
            self.with_widened(x16, pixels(shape.x), c, cp, |x8| {
                self.with_workspace(k * r * s * cp * DType::F32.size(), |dw8| {
                    self.filter_into(&wide, x8, dy_ptr, dw8)?;
                    self.launch_planned(
                        "channels_unpad_f32",
                        bf16_launch::channel_rows(k * r * s * c),
                        KernelArgs::new()
                            .ptr(dw8)
                            .ptr(dw_ptr)
                            .u64(k * r * s)
                            .int(cp)
                            .int(c),
                    )
                })
            })
        })?;
        Self::written_as(dw, DType::F32);
        Ok(())
    }

    /// Backward-filter of `shape` from bf16 `x16` and `dy` into f32 `dw` as the plan says.
    fn filter_into(
        &self,
        shape: &ConvShape,
        x16: DevicePtr,
        dy: DevicePtr,
        dw: DevicePtr,
    ) -> Result<()> {
        let family = self.tc_family()?;
        self.run_tc_pass(
            TcPass::BackwardFilter,
            shape,
            family,
            |launch: &TcFilterLaunch| {
                self.run_filter(shape, launch, dw, (x16, dy), |out| {
                    KernelArgs::new()
                        .ptr(x16)
                        .ptr(dy)
                        .ptr(out)
                        .value(&shape.dims())
                })
            },
        )
    }

    /// `dw` (f32) of the convolution of `relu(BN(x))` (BN's output computed from bf16 `x` as the
    /// kernel stages it; `plan::backward_filter_bnrelu_for`, which must be `Some` for `shape`).
    pub(super) fn conv2d_backward_filter_bnrelu_bf16(
        &self,
        shape: &ConvShape,
        x: &T<D>,
        bn: &BnMap<'_, GpuBackend<D>>,
        dy: &T<D>,
        dw: &mut T<D>,
    ) -> Result<()> {
        let family = self.tc_family()?;
        let (x, dy, dw_ptr) = (x.buf().ptr(), dy.buf().ptr(), dw.buf().ptr());
        self.run_tc_pass(
            TcPass::BackwardFilterBnRelu,
            shape,
            family,
            |launch: &TcFilterLaunch| {
                self.run_filter(shape, launch, dw_ptr, (x, dy), |out| {
                    let args = KernelArgs::new().ptr(x).ptr(dy).ptr(out);
                    with_bn_affine(args, bn.gamma, &bn.saved).value(&shape.dims())
                })
            },
        )?;
        Self::written_as(dw, DType::F32);
        Ok(())
    }

    /// Runs `launch` (a backward-filter's partial kernel with the arguments `args(out)`, and the
    /// tensor maps over `x` and `dy` if it is fed by TMA, then its reduce when split) into `dw`.
    fn run_filter(
        &self,
        shape: &ConvShape,
        launch: &TcFilterLaunch,
        dw: DevicePtr,
        (x, dy): (DevicePtr, DevicePtr),
        args: impl Fn(DevicePtr) -> KernelArgs,
    ) -> Result<()> {
        let partial = |out: DevicePtr| {
            let args = self.with_tensor_maps(&launch.partial, args(out), x, dy)?;
            self.launch_tc(&launch.partial, args)
        };
        match launch.reduce {
            None => partial(dw),
            Some(reduce) => self.with_workspace(launch.workspace_bytes, |workspace| {
                partial(workspace)?;
                let count = shape.filter_len();
                let args = KernelArgs::new()
                    .ptr(workspace)
                    .ptr(dw)
                    .int(launch.splits)
                    .u64(count);
                self.launch_tc(&reduce, args)
            }),
        }
    }
}
