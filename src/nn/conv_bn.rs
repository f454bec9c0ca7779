//! The unit every ResNet is made of: a convolution, then BN right after it, then (optionally) ReLU,
//! as the paper prescribes. torchvision names the two halves separately (`conv1`, `bn1`), so this
//! unit takes both names.

use rand::Rng;

use super::{BatchNorm2d, Conv2d, Layer, Mode, Param};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm2d<B>,
}

/// The shape of a conv + BN unit.
#[derive(Clone, Copy, Debug)]
pub struct ConvBnSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub relu: bool,
}

impl<B: Backend> ConvBn<B> {
    pub fn new(
        be: &B,
        conv_name: &str,
        bn_name: &str,
        spec: ConvBnSpec,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Ok(ConvBn {
            conv: Conv2d::new(
                be,
                conv_name,
                spec.in_ch,
                spec.out_ch,
                spec.kernel,
                spec.stride,
                rng,
            )?,
            bn: BatchNorm2d::new(be, bn_name, spec.out_ch, spec.relu)?,
        })
    }

    /// Forward with a residual summed in after BN: `out = relu(BN(conv(x)) + residual)` (see
    /// `BatchNorm2d::forward_add`).
    pub fn forward_add(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        residual: &Tensor<B>,
        out: &mut Tensor<B>,
        mode: Mode,
    ) -> Result<()> {
        self.conv.forward(be, x, mode)?;
        self.bn
            .forward_add(be, self.conv.output(), residual, out, true, mode)
    }

    /// Backward with the input gradient summed into `out`: `dx + addend` (see
    /// `Conv2d::backward_add`).
    pub fn backward_add(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        addend: &Tensor<B>,
        out: &mut Tensor<B>,
    ) -> Result<()> {
        self.bn.backward(be, self.conv.output(), dy)?;
        self.conv
            .backward_add(be, x, self.bn.input_grad(), addend, out)
    }
}

impl<B: Backend> Layer<B> for ConvBn<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        self.conv.forward(be, x, mode)?;
        self.bn.forward(be, self.conv.output(), mode)
    }

    fn output(&self) -> &Tensor<B> {
        self.bn.output()
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.bn.backward(be, self.conv.output(), dy)?;
        self.conv.backward(be, x, self.bn.input_grad())
    }

    fn input_grad(&self) -> &Tensor<B> {
        self.conv.input_grad()
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.conv.set_input_grad_needed(needed);
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.conv.visit_params(f);
        self.bn.visit_params(f);
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        f(&mut self.bn);
    }
}
