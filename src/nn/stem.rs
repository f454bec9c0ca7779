//! The ImageNet stem as one layer: the 7x7 stride-2 convolution, BN + ReLU, and the 3x3 stride-2
//! max pool (torchvision's `conv1`, `bn1`, `relu`, `maxpool`).
//!
//! One layer rather than two so that the pool can read the stem's BN output without its being
//! stored, where the backend pools through a batch norm (`Backend::max_pool_bn_input_fusion`): in
//! training, BN then computes its statistics only and the pool computes `relu(BN(x))` at each tap
//! from the convolution's output `x`, in its forward and again in its backward (which writes the
//! gradient with respect to BN's output, what BN's backward takes, and, where the backend can, BN's
//! backward sums from the same pass, as a convolution's backward-data gives a BN before it; BN's
//! backward takes its ReLU mask from `x`). That output is the network's largest activation (64 channels at half the input's
//! resolution: 411 MB in bf16 at batch 256 of 224x224 images), and the pass that stored it read and
//! wrote it once more. Everywhere else (evaluation, a backend without the fusion) the BN output is
//! stored and pooled as before. Either way the pool's output and its gradient are the same bit for
//! bit; BN's backward sums, when the pool takes them, are added in another order (rounding apart,
//! the same sums).

use super::conv_bn::{ConvBn, UnitInput};
use super::pool::MaxPool2d;
use super::{BatchNorm2d, Layer, Mode, Param};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

pub struct PooledStem<B: Backend> {
    pub unit: ConvBn<B>,
    pub pool: MaxPool2d<B>,
}

impl<B: Backend> PooledStem<B> {
    pub fn new(unit: ConvBn<B>, pool: MaxPool2d<B>) -> Self {
        PooledStem { unit, pool }
    }
}

impl<B: Backend> Layer<B> for PooledStem<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        // The unit stores its output anyway where its BN cannot leave it (no statistics from the
        // convolution): `as_input` says which it did.
        let leave = mode == Mode::Train && self.unit.bn.relu && be.max_pool_bn_input_fusion();
        self.unit
            .forward_from(be, UnitInput::Tensor(x), mode, leave)?;
        self.pool.forward_from(be, self.unit.as_input())
    }

    fn output(&self) -> &Tensor<B> {
        self.pool.output()
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        // Where it can, the pool also takes BN's backward sums, which BN's backward then uses.
        let (_, target) = self.unit.output_with_bn_grad();
        if !self.pool.backward_with_bn_grad(be, target, dy)? {
            self.pool.backward_from(be, self.unit.as_input(), dy)?;
        }
        self.unit.backward(be, x, self.pool.input_grad())
    }

    fn input_grad(&self) -> &Tensor<B> {
        self.unit.input_grad()
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.unit.set_input_grad_needed(needed);
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.unit.visit_params(f);
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        self.unit.visit_batch_norms(f);
    }
}
