//! The shortcut connection of a residual block, `y = F(x) + shortcut(x)` (paper, sec. 3.3):
//! identity when the shape is kept; when it changes, option A (stride-2 subsampling, the new channels
//! zero: no parameters) or option B (1x1 projection conv + BN; torchvision's `downsample`).

use rand::Rng;

use super::conv_bn::{ConvBnSpec, UnitInput};
use super::{BatchNorm2d, ConvBn, Layer, Mode, Param};
use crate::backend::Backend;
use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

/// Which shortcut a block uses when its shape changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortcutOption {
    /// Identity with zero-padded channels and stride-2 subsampling.
    A,
    /// 1x1 projection (conv + BN).
    B,
}

pub enum Shortcut<B: Backend> {
    Identity,
    PadChannels {
        stride: usize,
        out_ch: usize,
        out: Tensor<B>,
        dx: Tensor<B>,
    },
    /// Boxed: a conv + BN unit is much larger than the other variants.
    Projection(Box<ConvBn<B>>),
}

impl<B: Backend> Shortcut<B> {
    /// The shortcut from `in_ch` to `out_ch` channels at `stride`, named `<block>.downsample` when it
    /// has parameters.
    pub fn new(
        be: &B,
        block: &str,
        option: ShortcutOption,
        in_ch: usize,
        out_ch: usize,
        stride: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if in_ch == out_ch && stride == 1 {
            return Ok(Shortcut::Identity);
        }
        Ok(match option {
            ShortcutOption::A => Shortcut::PadChannels {
                stride,
                out_ch,
                out: Tensor::empty(be)?,
                dx: Tensor::empty(be)?,
            },
            ShortcutOption::B => Shortcut::Projection(Box::new(ConvBn::new(
                be,
                &format!("{block}.downsample.0"),
                &format!("{block}.downsample.1"),
                ConvBnSpec {
                    in_ch,
                    out_ch,
                    kernel: 1,
                    stride,
                    relu: false,
                },
                rng,
            )?)),
        })
    }

    /// Whether this shortcut, given the block input shaped `x`, may leave its output unstored for
    /// the block's end to compute as it reads it (a projection's BN where the backend can,
    /// `ConvBn::can_leave_output_to_block_end`).
    pub fn can_leave_output(&self, be: &B, x: &[usize], mode: Mode) -> Result<bool> {
        match self {
            Shortcut::Projection(p) => p.can_leave_output_to_block_end(be, x, mode),
            _ => Ok(false),
        }
    }

    /// The shortcut's forward, leaving a projection's BN output unstored when `leave_output` (only
    /// where `can_leave_output` said so): the block's end then reads it through `as_residual`.
    pub fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode, leave_output: bool) -> Result<()> {
        match self {
            Shortcut::Identity => Ok(()),
            Shortcut::PadChannels {
                stride,
                out_ch,
                out,
                ..
            } => {
                let xs = x.shape().dims4().unwrap_or_default();
                out.ensure_shape(be, &ops::shortcut_a_output_shape(&xs, *out_ch, *stride))?;
                ops::shortcut_a_forward(be, x, out, *stride)
            }
            Shortcut::Projection(p) => p.forward_from(be, UnitInput::Tensor(x), mode, leave_output),
        }
    }

    /// What the block's end sums in: the shortcut's output, or a projection's BN output left
    /// unstored, as its convolution output through the BN.
    pub fn as_residual<'a>(&'a self, x: &'a Tensor<B>) -> UnitInput<'a, B> {
        match self {
            Shortcut::Projection(p) => p.as_input(),
            _ => UnitInput::Tensor(self.output(x)),
        }
    }

    /// The shortcut's output; for the identity that is `x` itself.
    pub fn output<'a>(&'a self, x: &'a Tensor<B>) -> &'a Tensor<B> {
        match self {
            Shortcut::Identity => x,
            Shortcut::PadChannels { out, .. } => out,
            Shortcut::Projection(p) => p.output(),
        }
    }

    pub fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        match self {
            Shortcut::Identity => Ok(()),
            Shortcut::PadChannels { stride, dx, .. } => {
                dx.ensure_shape(be, x.dims())?;
                ops::shortcut_a_backward(be, dy, dx, *stride)
            }
            Shortcut::Projection(p) => p.backward(be, x, dy),
        }
    }

    /// The gradient reaching the block's input through the shortcut; for the identity, `dy` itself.
    pub fn input_grad<'a>(&'a self, dy: &'a Tensor<B>) -> &'a Tensor<B> {
        match self {
            Shortcut::Identity => dy,
            Shortcut::PadChannels { dx, .. } => dx,
            Shortcut::Projection(p) => p.input_grad(),
        }
    }

    pub fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        if let Shortcut::Projection(p) = self {
            p.visit_params(f);
        }
    }

    pub fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        if let Shortcut::Projection(p) = self {
            p.visit_batch_norms(f);
        }
    }
}
