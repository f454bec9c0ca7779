//! The unit every ResNet is made of: a convolution, then BN right after it, then (optionally) ReLU,
//! as the paper prescribes. torchvision names the two halves separately (`conv1`, `bn1`), so this
//! unit takes both names.
//!
//! In training, where the backend computes batch-norm statistics in its convolutions
//! (`Backend::conv2d_stats_len`: the bf16 GPU path), the convolution writes per-channel partials
//! of its output from its epilogue into a buffer this unit owns (sized on the first step, then
//! reused: a step allocates nothing), and BN takes its batch statistics from them instead of
//! reading the convolution's output twice. Elsewhere (the CPU, f32 on the GPU, inference) the two
//! plain ops run and the buffer stays empty.
//!
//! Backward, likewise (`Backend::conv2d_bn_grad_len`, the bf16 GPU path): the convolution after a
//! unit (the next unit of its block, or the next block's first) writes the gradient of this unit's
//! output, and its backward-data epilogue stores it masked by the ReLU between them and computes
//! this unit's BN backward sums from it as it does, into a second buffer this unit owns
//! (`BnGradTarget`), so that BN's backward reads that gradient once (its data pass) rather than
//! twice. At a residual block's end the ReLU follows the sum with the shortcut: the mask is the
//! block's output, and the masked gradient is the sum's gradient, which the block then hands to the
//! shortcut as it is (`Block`).
//!
//! Inside a block, where the backend can (`Backend::conv2d_bn_input_fusion`, the bf16 GPU path), a
//! unit whose BN has a ReLU does not store its output at all: its BN computes its statistics only,
//! and the next unit's convolution reads this unit's convolution output and applies the BN and
//! ReLU as it loads it, in its forward and its backward-filter (`UnitInput::Unstored`). BN's backward
//! then takes its ReLU mask from its input, as the backward-data epilogue above does. The ImageNet
//! stem's unit leaves its output to its max pool in the same way (`PooledStem`, `nn/stem.rs`).

use rand::Rng;

use super::{BatchNorm2d, Conv2d, Layer, Mode, Param};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm2d<B>,
    /// The convolution's batch-norm statistics partials (see the module doc); empty when unused.
    stats: Tensor<B>,
    /// BN's backward partial sums, written by the next layer's backward-data (see the module doc);
    /// empty when unused.
    grad_partials: Tensor<B>,
    /// Whether `grad_partials` holds this step's sums (and the output gradient arrived masked):
    /// set through a `BnGradTarget`, taken by `bn_backward`, cleared by every forward.
    grad_partials_ready: bool,
    /// Whether the last forward left the unit's output unstored, for the next unit's convolution to
    /// compute as it loads it (see the module doc).
    output_unstored: bool,
    /// Whether the last forward read its input through the previous unit's BN (the converse).
    input_through_bn: bool,
}

/// What a unit's convolution (or a block's end, for its shortcut, or the ImageNet stem's max pool)
/// reads: a tensor, or a BN's output (with its ReLU, where it has one) never stored, computed from
/// that BN's input as it is read (see the module doc).
pub enum UnitInput<'a, B: Backend> {
    Tensor(&'a Tensor<B>),
    Unstored {
        /// The BN's input, the previous unit's convolution output.
        x: &'a Tensor<B>,
        bn: &'a BatchNorm2d<B>,
    },
}

impl<B: Backend> UnitInput<'_, B> {
    /// The shape of the input the convolution sees (BN keeps its input's shape).
    pub fn dims(&self) -> &[usize] {
        match self {
            UnitInput::Tensor(t) => t.dims(),
            UnitInput::Unstored { x, .. } => x.dims(),
        }
    }
}

/// A batch norm (a unit's, with what follows it) whose output gradient the next convolution's
/// backward-data can reduce for it (see the module doc): what that convolution's epilogue reads,
/// where it writes the sums, and the flag it sets when it has.
pub struct BnGradTarget<'a, B: Backend> {
    /// BN's input, the unit's convolution output.
    pub(super) x: &'a Tensor<B>,
    pub(super) bn: &'a BatchNorm2d<B>,
    /// A residual block's output `relu(BN(x) + s)`, whose sign is the mask; `None`: BN's own ReLU
    /// (or none).
    pub(super) block_output: Option<&'a Tensor<B>>,
    pub(super) partials: &'a mut Tensor<B>,
    pub(super) ready: &'a mut bool,
    /// Whether BN's output was left unstored (see the module doc): the convolution then reads
    /// `x` through `bn` for its backward-filter too.
    pub(super) output_unstored: bool,
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
            stats: Tensor::empty(be)?,
            grad_partials: Tensor::empty(be)?,
            grad_partials_ready: false,
            output_unstored: false,
            input_through_bn: false,
        })
    }

    /// Whether this forward takes BN's statistics from the convolution's epilogue: in training,
    /// on a backend that computes them there. Then sizes the partials buffer for the output of a
    /// convolution of an input shaped `x` (a no-op after the first step at a shape).
    fn stats_from_conv(&mut self, be: &B, x: &[usize], mode: Mode) -> Result<bool> {
        self.grad_partials_ready = false; // a new forward: last step's backward sums are stale
        self.output_unstored = false;
        self.input_through_bn = false;
        if mode != Mode::Train {
            return Ok(false);
        }
        let y = self.conv.output_shape(x)?;
        match be.conv2d_stats_len(&y) {
            Some(len) => {
                self.stats.ensure_shape(be, &[len])?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether this unit, given an input shaped `x`, may leave its output unstored for `next`, the
    /// unit after it in a block, to compute as it loads it (see the module doc): in training, for
    /// a BN with ReLU, where the backend takes BN statistics from both convolutions and applies BN
    /// in `next`'s.
    pub fn can_leave_output_to(
        &self,
        be: &B,
        x: &[usize],
        next: &ConvBn<B>,
        mode: Mode,
    ) -> Result<bool> {
        if mode != Mode::Train || !self.bn.relu {
            return Ok(false);
        }
        let y = self.conv.output_shape(x)?;
        let next_y = next.conv.output_shape(&y)?;
        let w = next
            .conv
            .weight
            .value
            .shape()
            .dims4()
            .expect("weights are KRSC");
        Ok(be.conv2d_stats_len(&y).is_some()
            && be.conv2d_stats_len(&next_y).is_some()
            && be.conv2d_bn_input_fusion(&y, &w, next.conv.geom))
    }

    /// The convolution forward with BN's statistics from its epilogue (the caller checked
    /// `stats_from_conv`), of `input`.
    fn conv_forward_with_stats(&mut self, be: &B, input: UnitInput<'_, B>) -> Result<()> {
        match input {
            UnitInput::Tensor(x) => self.conv.forward_with_stats(be, x, &mut self.stats),
            UnitInput::Unstored { x, bn } => {
                self.input_through_bn = true;
                let map = bn.relu_map("conv2d_forward_with_stats_bn_input")?;
                self.conv
                    .forward_with_stats_bn_input(be, x, map, &mut self.stats)
            }
        }
    }

    /// The plain convolution forward of a stored `input` (no BN statistics from the convolution, so
    /// the unit before stored its output: `can_leave_output_to` needs them).
    fn conv_forward_plain(&mut self, be: &B, input: UnitInput<'_, B>, mode: Mode) -> Result<()> {
        match input {
            UnitInput::Tensor(x) => self.conv.forward(be, x, mode),
            UnitInput::Unstored { bn, .. } => Err(crate::error::invalid(
                "conv2d_forward",
                format!(
                    "{}: its output was not stored, and this convolution cannot apply it",
                    bn.name
                ),
            )),
        }
    }

    /// The unit's forward from `input`; with `leave_output`, BN computes its statistics only and
    /// the output is left to its reader (only where that reader can apply it:
    /// `can_leave_output_to`, `can_leave_output_to_block_end`, or `PooledStem`'s check). Without
    /// statistics from the convolution the output is stored all the same: [`Self::as_input`] says.
    pub fn forward_from(
        &mut self,
        be: &B,
        input: UnitInput<'_, B>,
        mode: Mode,
        leave_output: bool,
    ) -> Result<()> {
        if !self.stats_from_conv(be, input.dims(), mode)? {
            self.conv_forward_plain(be, input, mode)?;
            return self.bn.forward(be, self.conv.output(), mode);
        }
        self.conv_forward_with_stats(be, input)?;
        let y = self.conv.output();
        if leave_output {
            self.output_unstored = true;
            return self.bn.statistics_from_stats(be, y, &self.stats);
        }
        self.bn.forward_train_from_stats(be, y, &self.stats)
    }

    /// Forward with a residual summed in after BN: `out = relu(BN(conv(input)) + residual)` (see
    /// `BatchNorm2d::forward_add`); the residual may be a shortcut's BN output left unstored
    /// (`can_leave_output_to_block_end`), applied here as it is read.
    pub fn forward_add(
        &mut self,
        be: &B,
        input: UnitInput<'_, B>,
        residual: UnitInput<'_, B>,
        out: &mut Tensor<B>,
        mode: Mode,
    ) -> Result<()> {
        let stats = self.stats_from_conv(be, input.dims(), mode)?;
        match (stats, residual) {
            (true, residual) => {
                self.conv_forward_with_stats(be, input)?;
                let (y, stats) = (self.conv.output(), &self.stats);
                let (r, r_bn) = match residual {
                    UnitInput::Tensor(r) => (r, None),
                    UnitInput::Unstored { x: r, bn } => (r, Some(bn)),
                };
                self.bn
                    .forward_add_train_from_stats(be, y, stats, r, r_bn, out, true)
            }
            (false, UnitInput::Tensor(r)) => {
                self.conv_forward_plain(be, input, mode)?;
                self.bn
                    .forward_add(be, self.conv.output(), r, out, true, mode)
            }
            (false, UnitInput::Unstored { bn, .. }) => Err(crate::error::invalid(
                "batch_norm_forward_add",
                format!(
                    "{}: its output was not stored, and this block end cannot apply it",
                    bn.name
                ),
            )),
        }
    }

    /// Whether this unit, a residual block's projection shortcut given the block input shaped `x`,
    /// may leave its BN output unstored for the block's end to apply as it reads it: in training,
    /// for a BN without ReLU, where the backend takes BN statistics from the convolution (the
    /// block's last unit, whose output has the same shape, then does too) and applies a residual's
    /// BN at the block's end.
    pub fn can_leave_output_to_block_end(&self, be: &B, x: &[usize], mode: Mode) -> Result<bool> {
        if mode != Mode::Train || self.bn.relu {
            return Ok(false);
        }
        let y = self.conv.output_shape(x)?;
        Ok(be.conv2d_stats_len(&y).is_some() && be.batch_norm_residual_bn_fusion())
    }

    /// What the next unit's convolution reads: this unit's output, or, when it was left unstored,
    /// this unit's convolution output through its BN.
    pub fn as_input(&self) -> UnitInput<'_, B> {
        if self.output_unstored {
            UnitInput::Unstored {
                x: self.conv.output(),
                bn: &self.bn,
            }
        } else {
            UnitInput::Tensor(self.bn.output())
        }
    }

    /// The unit's output (BN's, after its ReLU) and the target through which the next
    /// convolution's backward-data may compute this unit's BN backward sums.
    pub fn output_with_bn_grad(&mut self) -> (&Tensor<B>, BnGradTarget<'_, B>) {
        self.output_and_bn_grad(None)
    }

    /// The target for a residual block's last unit, whose BN output is summed with the shortcut
    /// into `block_output` and then goes through ReLU.
    pub fn block_end_bn_grad<'a>(&'a mut self, block_output: &'a Tensor<B>) -> BnGradTarget<'a, B> {
        self.output_and_bn_grad(Some(block_output)).1
    }

    fn output_and_bn_grad<'a>(
        &'a mut self,
        block_output: Option<&'a Tensor<B>>,
    ) -> (&'a Tensor<B>, BnGradTarget<'a, B>) {
        let target = BnGradTarget {
            x: self.conv.output(),
            bn: &self.bn,
            block_output,
            partials: &mut self.grad_partials,
            ready: &mut self.grad_partials_ready,
            output_unstored: self.output_unstored,
        };
        // (Stale when unstored: the next convolution's backward then reads `x` through the target.)
        (self.bn.output_unchecked(), target)
    }

    /// Whether this step's BN backward sums (and masked output gradient) have arrived through a
    /// `BnGradTarget`.
    pub fn bn_grad_arrived(&self) -> bool {
        self.grad_partials_ready
    }

    /// The backward in two halves, so that a block can put its own work between them: BN's
    /// (`bn_backward` from the gradient of this unit's output, or `bn_backward_add_relu` from that
    /// of `forward_add`'s `out`, which also gives the sum's gradient `dsum`), then the
    /// convolution's (`conv_backward_before`, which may sum `addend` into its input gradient, see
    /// `Conv2d::backward_add`). When this step's BN sums
    /// arrived through a `BnGradTarget`, `bn_backward` takes them, and `dy` arrived masked.
    pub fn bn_backward(&mut self, be: &B, dy: &Tensor<B>) -> Result<()> {
        if std::mem::take(&mut self.grad_partials_ready) {
            let (x, partials) = (self.conv.output(), &self.grad_partials);
            return self.bn.backward_from_partials(be, x, dy, partials);
        }
        self.bn.backward(be, self.conv.output(), dy)
    }

    pub fn bn_backward_add_relu(
        &mut self,
        be: &B,
        out: &Tensor<B>,
        dout: &Tensor<B>,
        dsum: &mut Tensor<B>,
    ) -> Result<()> {
        self.bn
            .backward_add_relu(be, self.conv.output(), out, dout, dsum)
    }

    /// The convolution's backward (with `addend`: `Conv2d::backward_add`), whose input gradient is
    /// the output gradient of `prev`'s batch norm when there is one (the layer before, see the
    /// module doc): where the backend can, backward-data also masks it and computes that BN's
    /// backward sums, and sets the target's flag; otherwise the plain ops. Backward-filter reads
    /// the input as the forward did: through `prev`'s BN when its output was left unstored.
    pub fn conv_backward_before(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        addend: Option<(&Tensor<B>, &mut Tensor<B>)>,
        prev: Option<BnGradTarget<'_, B>>,
    ) -> Result<()> {
        let w = self
            .conv
            .weight
            .value
            .shape()
            .dims4()
            .expect("weights are KRSC");
        let input = match &prev {
            Some(t) if t.output_unstored => UnitInput::Unstored { x: t.x, bn: t.bn },
            // `x` would be the stale BN output the forward did not read: a wiring error.
            _ if self.input_through_bn => {
                return Err(crate::error::invalid(
                    "conv2d_backward_filter",
                    format!(
                        "{}: the forward read its input through the previous BN, but backward was \
                         not given that BN",
                        self.conv.weight.name
                    ),
                ))
            }
            _ => UnitInput::Tensor(x),
        };
        let x_dims: Option<[usize; 4]> = input.dims().try_into().ok();
        // A BN without a training forward has no statistics to mask by: its own backward then
        // reports that, after the plain ops.
        let wants_dx = self.conv.input_grad_needed();
        let fused = prev
            .filter(|t| wants_dx && t.bn.trained())
            .and_then(|target| {
                let len = be.conv2d_bn_grad_len(&x_dims?, &w, self.conv.geom)?;
                Some((target, len))
            });
        let dy = self.bn.input_grad();
        match (fused, addend) {
            (Some((mut target, len)), addend) => {
                target.partials.ensure_shape(be, &[len])?;
                self.conv
                    .backward_with_bn_grad(be, input, dy, addend, &mut target)?;
                *target.ready = true;
                Ok(())
            }
            (None, Some((a, out))) => self.conv.backward_add(be, input, dy, a, out),
            (None, None) => self.conv.backward_from(be, input, dy),
        }
    }
}

impl<B: Backend> Layer<B> for ConvBn<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        self.forward_from(be, UnitInput::Tensor(x), mode, false)
    }

    fn output(&self) -> &Tensor<B> {
        self.bn.output()
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.backward_before(be, x, dy, None)
    }

    fn output_with_bn_grad(&mut self) -> (&Tensor<B>, Option<BnGradTarget<'_, B>>) {
        let (out, target) = ConvBn::output_with_bn_grad(self);
        (out, Some(target))
    }

    fn backward_before(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        prev: Option<BnGradTarget<'_, B>>,
    ) -> Result<()> {
        self.bn_backward(be, dy)?;
        self.conv_backward_before(be, x, None, prev)
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
