//! Conv2d without bias (every ResNet convolution is followed by BN, which has the bias).
//!
//! Forward `y = conv(x, w)`; backward `dw = conv_backward_filter(x, dy)`,
//! `dx = conv_backward_data(dy, w)` (the transposed convolution). Weights are KRSC.

use rand::Rng;

use super::conv_bn::{BnGradTarget, UnitInput};
use super::{init, Layer, Mode, Param};
use crate::backend::{Backend, BnGradMask, BnMap, Conv2dGeometry, Element};
use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

pub struct Conv2d<B: Backend> {
    pub weight: Param<B>,
    pub geom: Conv2dGeometry,
    out: Tensor<B>,
    dx: Tensor<B>,
    input_grad_needed: bool,
}

impl<B: Backend> Conv2d<B> {
    /// A `kernel x kernel` convolution from `in_ch` to `out_ch` channels, He-initialised. Padding is
    /// `kernel / 2` ("same" at stride 1), as in every ResNet convolution.
    pub fn new(
        be: &B,
        name: &str,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let values: Vec<B::Elem> = init::he_normal_fan_out(rng, out_ch, kernel, kernel, in_ch)
            .into_iter()
            .map(B::Elem::of)
            .collect();
        let w = Tensor::from_slice(be, [out_ch, kernel, kernel, in_ch], &values)?;
        Ok(Conv2d {
            weight: Param::new(be, format!("{name}.weight"), w)?,
            geom: Conv2dGeometry::new(stride, kernel / 2),
            out: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
            input_grad_needed: true,
        })
    }

    /// The output shape for an input shape.
    pub fn output_shape(&self, x: &[usize]) -> Result<[usize; 4]> {
        let xs: [usize; 4] = x.try_into().map_err(|_| crate::error::Error::Shape {
            op: "conv2d",
            tensor: "x",
            actual: x.to_vec(),
            expected: "rank 4 (NHWC)".into(),
        })?;
        let ws = self.weight.value.shape().dims4().expect("weights are KRSC");
        ops::conv2d_output_shape("conv2d", &xs, &ws, self.geom)
    }

    /// Forward that also writes, from the same pass, the batch-norm statistics partials of the
    /// output into `stats` (`ops::conv2d_forward_with_stats`; the caller sizes `stats` by
    /// `Backend::conv2d_stats_len`), for the BN that follows (`BatchNorm2d::forward_train_from_stats`).
    pub fn forward_with_stats(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        stats: &mut Tensor<B>,
    ) -> Result<()> {
        let shape = self.output_shape(x.dims())?;
        self.out.ensure_shape(be, &shape)?;
        let w = &self.weight.value;
        ops::conv2d_forward_with_stats(be, x, w, &mut self.out, stats, self.geom)
    }

    /// `forward_with_stats` of `relu(BN(x))`, BN's output computed from `x` as the convolution
    /// loads it (`ops::conv2d_forward_with_stats_bn_input`).
    pub fn forward_with_stats_bn_input(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        bn: BnMap<'_, B>,
        stats: &mut Tensor<B>,
    ) -> Result<()> {
        let shape = self.output_shape(x.dims())?;
        self.out.ensure_shape(be, &shape)?;
        let w = &self.weight.value;
        ops::conv2d_forward_with_stats_bn_input(be, x, bn, w, &mut self.out, stats, self.geom)
    }

    /// The weight gradient from `input` as the forward read it.
    fn backward_filter(&mut self, be: &B, input: &UnitInput<'_, B>, dy: &Tensor<B>) -> Result<()> {
        let dw = &mut self.weight.grad;
        match *input {
            UnitInput::Tensor(x) => ops::conv2d_backward_filter(be, x, dy, dw, self.geom),
            UnitInput::Unstored { x, bn } => {
                let map = bn.relu_map("conv2d_backward_filter_bn_input")?;
                ops::conv2d_backward_filter_bn_input(be, x, map, dy, dw, self.geom)
            }
        }
    }

    /// `Layer::backward` from `input` as the forward read it (`UnitInput::Unstored`: through a BN).
    pub fn backward_from(&mut self, be: &B, input: UnitInput<'_, B>, dy: &Tensor<B>) -> Result<()> {
        self.backward_filter(be, &input, dy)?;
        if self.input_grad_needed {
            self.dx.ensure_shape(be, input.dims())?;
            ops::conv2d_backward_data(be, dy, &self.weight.value, &mut self.dx, self.geom)?;
        }
        Ok(())
    }

    /// Whether backward computes the input gradient (see `Layer::set_input_grad_needed`).
    pub fn input_grad_needed(&self) -> bool {
        self.input_grad_needed
    }

    /// Backward whose input gradient (plus `addend`, into `out`, as [`Self::backward_add`]) is the
    /// output gradient of `target`'s batch norm: backward-data stores it masked by the ReLU between
    /// them and writes the BN's backward sums into the target's partials (sized by
    /// `Backend::conv2d_bn_grad_len`), for `BatchNorm2d::backward_from_partials`.
    pub fn backward_with_bn_grad(
        &mut self,
        be: &B,
        input: UnitInput<'_, B>,
        dy: &Tensor<B>,
        addend: Option<(&Tensor<B>, &mut Tensor<B>)>,
        target: &mut BnGradTarget<'_, B>,
    ) -> Result<()> {
        debug_assert!(
            self.input_grad_needed,
            "backward-data runs for the BN before it"
        );
        self.backward_filter(be, &input, dy)?;
        let (addend, dz) = match addend {
            Some((a, out)) => (Some(a), out),
            None => (None, &mut self.dx),
        };
        dz.ensure_shape(be, input.dims())?;
        let mask = match target.block_output {
            Some(y) => BnGradMask::Output(y),
            None if target.bn.relu => BnGradMask::Own,
            None => BnGradMask::None,
        };
        ops::conv2d_backward_data_with_bn_grad(
            be,
            dy,
            &self.weight.value,
            addend,
            dz,
            target.x,
            &target.bn.weight.value,
            target.bn.saved(),
            mask,
            &mut *target.partials,
            self.geom,
        )
    }

    /// Backward with the input gradient summed into `out`: `dx = conv_backward_data(dy, w) +
    /// addend` (a residual block's first convolution, `addend` the shortcut's gradient), fused
    /// where the backend can. `input_grad` is not meaningful afterwards.
    pub fn backward_add(
        &mut self,
        be: &B,
        input: UnitInput<'_, B>,
        dy: &Tensor<B>,
        addend: &Tensor<B>,
        out: &mut Tensor<B>,
    ) -> Result<()> {
        self.backward_filter(be, &input, dy)?;
        self.dx.ensure_shape(be, input.dims())?;
        out.ensure_shape(be, input.dims())?;
        let w = &self.weight.value;
        ops::conv2d_backward_data_add(be, dy, w, addend, &mut self.dx, out, self.geom)
    }
}

impl<B: Backend> Layer<B> for Conv2d<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, _mode: Mode) -> Result<()> {
        let shape = self.output_shape(x.dims())?;
        self.out.ensure_shape(be, &shape)?;
        ops::conv2d_forward(be, x, &self.weight.value, &mut self.out, self.geom)
    }

    fn output(&self) -> &Tensor<B> {
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.backward_from(be, UnitInput::Tensor(x), dy)
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad_needed = needed;
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.weight);
    }
}
