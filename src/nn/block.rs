//! Residual blocks (paper, sec. 3 and Fig. 5) and their plain twins.
//!
//! A block is a chain of conv + BN (+ReLU) units `F`, and, for a residual block, a shortcut:
//! `y = relu(F(x) + shortcut(x))`, the add and its ReLU fused into the last BN's pass
//! (`batch_norm_add_forward_train`). A plain block is `y = relu(F(x))`, the ReLU fused into its
//! last BN.
//!
//! - basic block (CIFAR nets, ResNet-18/34): 3x3 conv, 3x3 conv, with the block's stride on the first;
//! - bottleneck (ResNet-50/101/152): 1x1 reduce, 3x3, 1x1 expand to 4x; the paper's original models put
//!   the stride on the first 1x1, torchvision ("v1.5") on the 3x3: `BottleneckStride` picks.
//!
//! Backward: with `g = dy [y > 0]`, `dx = dF(x)/dx^T g + dshortcut(x)/dx^T g`, the sum taken as the
//! first convolution writes its part (`conv2d_backward_data_add`).

use rand::Rng;

use super::conv_bn::{ConvBnSpec, UnitInput};
use super::{BatchNorm2d, BnGradTarget, ConvBn, Layer, Mode, Param, Shortcut, ShortcutOption};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

/// Where a bottleneck block that downsamples puts its stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BottleneckStride {
    /// On the first 1x1 convolution, as in the paper's released models.
    OnReduce,
    /// On the 3x3 convolution, as torchvision does.
    On3x3,
}

/// The shape of one block: its input and output channels, its stride, and how it joins its input.
#[derive(Clone, Copy, Debug)]
pub struct BlockSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub stride: usize,
    /// `None` for a plain block (no shortcut).
    pub shortcut: Option<ShortcutOption>,
}

pub struct Block<B: Backend> {
    units: Vec<ConvBn<B>>,
    shortcut: Option<Shortcut<B>>,
    out: Tensor<B>,
    dsum: Tensor<B>,
    dx: Tensor<B>,
}

impl<B: Backend> Block<B> {
    fn unit(
        be: &B,
        prefix: &str,
        i: usize,
        spec: ConvBnSpec,
        rng: &mut impl Rng,
    ) -> Result<ConvBn<B>> {
        ConvBn::new(
            be,
            &format!("{prefix}.conv{i}"),
            &format!("{prefix}.bn{i}"),
            spec,
            rng,
        )
    }

    fn assemble(
        be: &B,
        prefix: &str,
        units: Vec<ConvBn<B>>,
        spec: BlockSpec,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let shortcut = match spec.shortcut {
            Some(option) => Some(Shortcut::new(
                be,
                prefix,
                option,
                spec.in_ch,
                spec.out_ch,
                spec.stride,
                rng,
            )?),
            None => None,
        };
        Ok(Block {
            units,
            shortcut,
            out: Tensor::empty(be)?,
            dsum: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
        })
    }

    /// Two 3x3 convolutions of `out_ch` filters, named `<prefix>.conv1/bn1/conv2/bn2`.
    pub fn basic(be: &B, prefix: &str, spec: BlockSpec, rng: &mut impl Rng) -> Result<Self> {
        let plain = spec.shortcut.is_none();
        let units = vec![
            Self::unit(
                be,
                prefix,
                1,
                ConvBnSpec {
                    in_ch: spec.in_ch,
                    out_ch: spec.out_ch,
                    kernel: 3,
                    stride: spec.stride,
                    relu: true,
                },
                rng,
            )?,
            Self::unit(
                be,
                prefix,
                2,
                ConvBnSpec {
                    in_ch: spec.out_ch,
                    out_ch: spec.out_ch,
                    kernel: 3,
                    stride: 1,
                    relu: plain,
                },
                rng,
            )?,
        ];
        Self::assemble(be, prefix, units, spec, rng)
    }

    /// 1x1 to `out_ch / 4`, 3x3, 1x1 to `out_ch`, named `<prefix>.conv1..3/bn1..3`.
    pub fn bottleneck(
        be: &B,
        prefix: &str,
        spec: BlockSpec,
        stride_at: BottleneckStride,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let plain = spec.shortcut.is_none();
        let width = spec.out_ch / 4;
        let (s1, s2) = match stride_at {
            BottleneckStride::OnReduce => (spec.stride, 1),
            BottleneckStride::On3x3 => (1, spec.stride),
        };
        let units = vec![
            Self::unit(
                be,
                prefix,
                1,
                ConvBnSpec {
                    in_ch: spec.in_ch,
                    out_ch: width,
                    kernel: 1,
                    stride: s1,
                    relu: true,
                },
                rng,
            )?,
            Self::unit(
                be,
                prefix,
                2,
                ConvBnSpec {
                    in_ch: width,
                    out_ch: width,
                    kernel: 3,
                    stride: s2,
                    relu: true,
                },
                rng,
            )?,
            Self::unit(
                be,
                prefix,
                3,
                ConvBnSpec {
                    in_ch: width,
                    out_ch: spec.out_ch,
                    kernel: 1,
                    stride: 1,
                    relu: plain,
                },
                rng,
            )?,
        ];
        Self::assemble(be, prefix, units, spec, rng)
    }

    fn last_unit(&self) -> &ConvBn<B> {
        self.units.last().expect("a block has at least one unit")
    }
}

impl<B: Backend> Layer<B> for Block<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        let last = self.units.len() - 1;
        for i in 0..=last {
            let (done, rest) = self.units.split_at_mut(i);
            let (unit, after) = rest.split_first_mut().expect("index in range");
            let input = match done.last() {
                None => UnitInput::Tensor(x),
                Some(prev) => prev.as_input(),
            };
            match &mut self.shortcut {
                // The sum and its ReLU ride on the last BN's pass: `relu(BN(conv(h)) + s(x))`.
                // A projection's BN may be left to that pass too, applied as it reads the shortcut.
                Some(shortcut) if i == last => {
                    let leave = shortcut.can_leave_output(be, x.dims(), mode)?;
                    shortcut.forward(be, x, mode, leave)?;
                    unit.forward_add(be, input, shortcut.as_residual(x), &mut self.out, mode)?;
                }
                _ => {
                    // Inside the block, BN + ReLU may be left to the next convolution's load.
                    let leave = match after.first() {
                        Some(next) => unit.can_leave_output_to(be, input.dims(), next, mode)?,
                        None => false,
                    };
                    unit.forward_from(be, input, mode, leave)?;
                }
            }
        }
        Ok(())
    }

    fn output(&self) -> &Tensor<B> {
        match self.shortcut {
            Some(_) => &self.out,
            None => self.last_unit().output(),
        }
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.backward_before(be, x, dy, None)
    }

    /// A residual block's end is a target whose mask is the block's output; a plain block's is its
    /// last unit's BN and ReLU.
    fn output_with_bn_grad(&mut self) -> (&Tensor<B>, Option<BnGradTarget<'_, B>>) {
        let last = self
            .units
            .last_mut()
            .expect("a block has at least one unit");
        match self.shortcut {
            Some(_) => (&self.out, Some(last.block_end_bn_grad(&self.out))),
            None => {
                let (out, target) = last.output_with_bn_grad();
                (out, Some(target))
            }
        }
    }

    fn backward_before(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        mut prev: Option<BnGradTarget<'_, B>>,
    ) -> Result<()> {
        let last = self.units.len() - 1;
        // The sum's gradient `dout [out > 0]`: `dy` itself when the next block's backward-data
        // delivered it masked, with the last BN's sums (`BnGradTarget`); else `dsum`.
        let masked_on_arrival = self.units[last].bn_grad_arrived();
        if self.shortcut.is_some() && !masked_on_arrival {
            // The add's ReLU and the last BN's backward in one op, which also leaves the sum's
            // gradient, the shortcut's, in `dsum`.
            self.units[last].bn_backward_add_relu(be, &self.out, dy, &mut self.dsum)?;
        }
        let dsum = if masked_on_arrival { dy } else { &self.dsum };
        if let Some(shortcut) = &mut self.shortcut {
            if masked_on_arrival {
                self.units[last].bn_backward(be, dy)?;
            }
            shortcut.backward(be, x, dsum)?;
        }
        for i in (0..=last).rev() {
            let (before, rest) = self.units.split_at_mut(i);
            let (unit, after) = rest.split_first_mut().expect("index in range");
            match (i == last, &self.shortcut) {
                (true, Some(_)) => {} // BN's half is done above
                (true, None) => unit.bn_backward(be, dy)?,
                (false, _) => unit.bn_backward(be, after[0].input_grad())?,
            }
            match (before.last_mut(), &self.shortcut) {
                // Inside the block: the input gradient is the previous unit's BN output gradient,
                // whose BN sums the convolution may compute as it writes it.
                (Some(prev_unit), _) => {
                    let (input, target) = prev_unit.output_with_bn_grad();
                    unit.conv_backward_before(be, input, None, Some(target))?;
                }
                // The block's input gradient, F's plus the shortcut's, summed as the first
                // convolution's input gradient is written (and the layer before's BN sums
                // computed there, where it can).
                (None, Some(shortcut)) => {
                    let addend = shortcut.input_grad(dsum);
                    unit.conv_backward_before(be, x, Some((addend, &mut self.dx)), prev.take())?;
                }
                (None, None) => unit.conv_backward_before(be, x, None, prev.take())?,
            }
        }
        Ok(())
    }

    fn input_grad(&self) -> &Tensor<B> {
        match self.shortcut {
            Some(_) => &self.dx,
            None => self.units[0].input_grad(),
        }
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        for unit in &mut self.units {
            unit.visit_params(f);
        }
        if let Some(shortcut) = &mut self.shortcut {
            shortcut.visit_params(f);
        }
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        for unit in &mut self.units {
            unit.visit_batch_norms(f);
        }
        if let Some(shortcut) = &mut self.shortcut {
            shortcut.visit_batch_norms(f);
        }
    }
}
