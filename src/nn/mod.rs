//! Layers: each owns its parameters, their gradients, its output and its input gradient, and has a
//! forward pass and a hand-derived backward pass side by side. There is no autograd and no tape: a
//! model runs its layers forward in order and backward in reverse, handing each layer the input it
//! saw in forward (the previous layer's output), so nothing is copied to be kept for backward.
//!
//! Output and gradient tensors are allocated on the first pass and reused while the input shape stays
//! the same, so a training step at a fixed batch size allocates nothing.

mod batch_norm;
mod block;
mod conv2d;
pub mod conv_bn;
pub mod init;
mod linear;
mod pool;
mod shortcut;
mod softmax_cross_entropy;
mod stem;

pub use batch_norm::BatchNorm2d;
pub use block::{Block, BlockSpec, BottleneckStride};
pub use conv2d::Conv2d;
pub use conv_bn::{BnGradTarget, ConvBn, ConvBnSpec};
pub use linear::Linear;
pub use pool::{GlobalAvgPool, MaxPool2d};
pub use shortcut::{Shortcut, ShortcutOption};
pub use softmax_cross_entropy::SoftmaxCrossEntropy;
pub use stem::PooledStem;

use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

/// Training uses batch statistics in BN and keeps what backward needs; evaluation uses the running
/// statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A learnable tensor and its gradient, under its torchvision state-dict name (`layer1.0.conv1.weight`).
pub struct Param<B: Backend> {
    pub name: String,
    pub value: Tensor<B>,
    pub grad: Tensor<B>,
}

impl<B: Backend> Param<B> {
    pub fn new(be: &B, name: String, value: Tensor<B>) -> Result<Self> {
        let grad = Tensor::zeros(be, value.shape().clone())?;
        Ok(Param { name, value, grad })
    }
}

/// What every layer offers the model that drives it.
pub trait Layer<B: Backend>: Send {
    /// Computes the output from `x`; in `Train` mode also keeps what backward needs.
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()>;
    /// The output of the last forward pass.
    fn output(&self) -> &Tensor<B>;
    /// Given the input `x` of the last (training) forward pass and the gradient `dy` of the loss with
    /// respect to the output, writes the parameter gradients and (unless disabled) the input gradient.
    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()>;
    /// The gradient with respect to the input, from the last backward pass: after a
    /// `backward_before` that took its target, masked by the layer before's ReLU (the gradient
    /// with respect to that ReLU's input, which is what the layer before wants).
    fn input_grad(&self) -> &Tensor<B>;
    /// The output of the last forward pass and, where the layer ends in a batch norm (and ReLU)
    /// whose output gradient the next layer's backward-data can reduce for it (a `ConvBn`, a
    /// block), that target (see `conv_bn`'s module doc). Default: no target.
    fn output_with_bn_grad(&mut self) -> (&Tensor<B>, Option<BnGradTarget<'_, B>>) {
        (self.output(), None)
    }
    /// `backward`, the layer before being `prev` (its `output_with_bn_grad` target): a layer whose
    /// input gradient a convolution's backward-data writes may compute `prev`'s batch-norm
    /// backward sums there, and then delivers that gradient masked by `prev`'s ReLU. Default:
    /// `backward`, `prev` untouched.
    fn backward_before(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        _prev: Option<BnGradTarget<'_, B>>,
    ) -> Result<()> {
        self.backward(be, x, dy)
    }
    /// The first layer of a network does not need its input gradient; this lets it skip the work.
    fn set_input_grad_needed(&mut self, _needed: bool) {}
    /// Every parameter, in a fixed order.
    fn visit_params<'a>(&'a mut self, _f: &mut dyn FnMut(&'a mut Param<B>)) {}
    /// Every batch-norm layer, in the same fixed order, for its running statistics.
    fn visit_batch_norms(&mut self, _f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {}
}

/// Joins a state-dict prefix and a name: `("layer1.0", "conv1")` gives `layer1.0.conv1`.
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
