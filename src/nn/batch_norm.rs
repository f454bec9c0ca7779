//! BatchNorm2d with an optional fused ReLU, PyTorch's conventions (eps 1e-5, momentum 0.1, unbiased
//! running variance). The math of forward and backward is stated on the backend op.

use super::{Layer, Mode, Param};
use crate::backend::{Backend, BatchNormConfig, BatchNormSaved, BnMap, Element};
use crate::error::{invalid, Result};
use crate::ops;
use crate::tensor::Tensor;

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

pub struct BatchNorm2d<B: Backend> {
    /// State-dict prefix, such as `layer1.0.bn1`.
    pub name: String,
    pub weight: Param<B>,
    pub bias: Param<B>,
    pub running_mean: Tensor<B>,
    pub running_var: Tensor<B>,
    /// Training-mode forward passes so far (PyTorch's `num_batches_tracked`).
    pub num_batches_tracked: i64,
    pub relu: bool,
    save_mean: Tensor<B>,
    save_inv_std: Tensor<B>,
    out: Tensor<B>,
    dx: Tensor<B>,
    /// Whether the last forward was in training mode, i.e. whether backward is possible.
    trained_forward: bool,
    /// Whether the last forward wrote `out` (not so after `statistics_from_stats`).
    output_stored: bool,
}

impl<B: Backend> BatchNorm2d<B> {
    /// Weight 1, bias 0, running mean 0 and running variance 1, as PyTorch initialises them.
    pub fn new(be: &B, name: &str, channels: usize, relu: bool) -> Result<Self> {
        let ones = vec![B::Elem::of(1.0); channels];
        Ok(BatchNorm2d {
            name: name.to_string(),
            weight: Param::new(
                be,
                format!("{name}.weight"),
                Tensor::from_slice(be, [channels], &ones)?,
            )?,
            bias: Param::new(be, format!("{name}.bias"), Tensor::zeros(be, [channels])?)?,
            running_mean: Tensor::zeros(be, [channels])?,
            running_var: Tensor::from_slice(be, [channels], &ones)?,
            num_batches_tracked: 0,
            relu,
            save_mean: Tensor::zeros(be, [channels])?,
            save_inv_std: Tensor::zeros(be, [channels])?,
            out: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
            trained_forward: false,
            output_stored: false,
        })
    }

    fn config(&self) -> BatchNormConfig {
        BatchNormConfig {
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
            relu: self.relu,
        }
    }

    /// Readies a forward pass over `x` in `mode`: sizes the output, records whether backward is
    /// possible, and counts a training-mode batch.
    fn start_forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        self.out.ensure_shape(be, x.dims())?;
        self.count_forward(mode);
        Ok(())
    }

    /// Records whether backward is possible, and counts a training-mode batch.
    fn count_forward(&mut self, mode: Mode) {
        self.trained_forward = mode == Mode::Train;
        self.output_stored = true;
        if mode == Mode::Train {
            self.num_batches_tracked += 1;
        }
    }

    /// A residual is summed after BN, before the block's ReLU: a BN with a ReLU of its own cannot
    /// take one.
    fn check_takes_residual(&self, op: &'static str) -> Result<()> {
        if self.relu {
            return Err(invalid(
                op,
                format!(
                    "{}: a BN with its own ReLU cannot take a residual",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// `out = BN(x) + residual`, then ReLU when `relu` (the end of a residual block; this BN has
    /// no ReLU of its own), fused where the backend can in training. `output` is not meaningful
    /// afterwards; `backward` is as after `forward` (it never reads `y` without a ReLU).
    pub fn forward_add(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        residual: &Tensor<B>,
        out: &mut Tensor<B>,
        relu: bool,
        mode: Mode,
    ) -> Result<()> {
        self.check_takes_residual("batch_norm_add_forward_train")?;
        out.ensure_shape(be, x.dims())?;
        if mode == Mode::Eval {
            self.forward(be, x, mode)?;
            return ops::add_forward(be, &self.out, residual, out, relu);
        }
        self.start_forward(be, x, mode)?;
        let cfg = BatchNormConfig {
            relu,
            ..self.config()
        };
        ops::batch_norm_add_forward_train(
            be,
            x,
            &self.weight.value,
            &self.bias.value,
            residual,
            &mut self.out,
            out,
            &mut self.save_mean,
            &mut self.save_inv_std,
            &mut self.running_mean,
            &mut self.running_var,
            cfg,
        )
    }

    /// Backward of `forward_add` with its ReLU (`out = relu(BN(x) + residual)`), from `dout`, the
    /// gradient of `out`: `dsum` receives the gradient of the sum (the residual's), `input_grad`
    /// BN's, in one op (`ops::batch_norm_add_relu_backward`).
    pub fn backward_add_relu(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        out: &Tensor<B>,
        dout: &Tensor<B>,
        dsum: &mut Tensor<B>,
    ) -> Result<()> {
        self.check_trained("batch_norm_add_relu_backward")?;
        self.dx.ensure_shape(be, x.dims())?;
        dsum.ensure_shape(be, x.dims())?;
        ops::batch_norm_add_relu_backward(
            be,
            x,
            out,
            dout,
            &self.weight.value,
            BatchNormSaved {
                mean: &self.save_mean,
                inv_std: &self.save_inv_std,
                beta: &self.bias.value,
            },
            &mut self.dx,
            dsum,
            &mut self.weight.grad,
            &mut self.bias.grad,
        )
    }

    fn check_trained(&self, op: &'static str) -> Result<()> {
        if !self.trained_forward {
            return Err(invalid(
                op,
                format!(
                    "{}: backward needs a training-mode forward first",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Whether the last forward was in training mode (so that backward may run).
    pub fn trained(&self) -> bool {
        self.trained_forward
    }

    /// What backward reads of the last training-mode forward (statistics and shift).
    pub fn saved(&self) -> BatchNormSaved<'_, B> {
        BatchNormSaved {
            mean: &self.save_mean,
            inv_std: &self.save_inv_std,
            beta: &self.bias.value,
        }
    }

    /// `backward(x, dy)` with the per-channel sums from `partials`, which the convolution that
    /// wrote `dy` (this BN's output gradient) computed in its epilogue
    /// (`ops::conv2d_backward_data_with_bn_grad`), instead of from reading `dy` for them.
    pub fn backward_from_partials(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        dy: &Tensor<B>,
        partials: &Tensor<B>,
    ) -> Result<()> {
        self.check_trained("batch_norm_backward_from_partials")?;
        self.dx.ensure_shape(be, x.dims())?;
        let saved = BatchNormSaved {
            mean: &self.save_mean,
            inv_std: &self.save_inv_std,
            beta: &self.bias.value,
        };
        ops::batch_norm_backward_from_partials(
            be,
            x,
            dy,
            partials,
            &self.weight.value,
            saved,
            &mut self.dx,
            &mut self.weight.grad,
            &mut self.bias.grad,
            self.relu,
        )
    }

    /// `forward(x, Train)` with the batch statistics taken from `stats`, the partials the
    /// convolution that wrote `x` computed in its epilogue (`Conv2d::forward_with_stats`), instead
    /// of from reading `x`.
    pub fn forward_train_from_stats(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        stats: &Tensor<B>,
    ) -> Result<()> {
        self.start_forward(be, x, Mode::Train)?;
        let cfg = self.config();
        ops::batch_norm_forward_train_from_stats(
            be,
            x,
            stats,
            &self.weight.value,
            &self.bias.value,
            None,
            &mut self.out,
            &mut self.save_mean,
            &mut self.save_inv_std,
            &mut self.running_mean,
            &mut self.running_var,
            cfg,
        )
    }

    /// `forward_train_from_stats(x, stats)` without the output (`output` is not written): the
    /// batch statistics and running averages only, for a BN whose output its reader computes from
    /// `x` as it reads it ([`Self::map`]): the next convolution or the stem's max pool (BN with
    /// ReLU), or a residual block's end (its shortcut's BN, without).
    pub fn statistics_from_stats(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        stats: &Tensor<B>,
    ) -> Result<()> {
        self.count_forward(Mode::Train);
        self.output_stored = false;
        let cfg = self.config();
        ops::batch_norm_statistics_from_stats(
            be,
            x,
            stats,
            &mut self.save_mean,
            &mut self.save_inv_std,
            &mut self.running_mean,
            &mut self.running_var,
            cfg,
        )
    }

    /// `output`, without checking that the last forward stored it (its owner knows).
    pub(super) fn output_unchecked(&self) -> &Tensor<B> {
        &self.out
    }

    /// `map` for a convolution or a max pool, which apply the ReLU after the map: an error for a BN
    /// without one (whose output neither may compute).
    pub fn relu_map(&self, op: &'static str) -> Result<BnMap<'_, B>> {
        if !self.relu {
            return Err(invalid(
                op,
                format!(
                    "{}: a convolution or max pool applies BN with its ReLU, and this BN has none",
                    self.name
                ),
            ));
        }
        Ok(self.map())
    }

    /// This BN's affine map as its reader applies it to BN's input (a convolution or a max pool,
    /// with the ReLU; a block's end, to its shortcut): its forward's saved statistics and its
    /// parameters.
    pub fn map(&self) -> BnMap<'_, B> {
        BnMap {
            gamma: &self.weight.value,
            saved: self.saved(),
        }
    }

    /// `forward_add(x, residual, out, relu, Train)` with the batch statistics from `stats`, as
    /// [`Self::forward_train_from_stats`]. With `residual_bn`, the residual is that BN's (no ReLU)
    /// output over `residual`, which was not stored: it is computed as it is read
    /// (`ops::batch_norm_add_bn_forward_train_from_stats`). `output` is not written.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_add_train_from_stats(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        stats: &Tensor<B>,
        residual: &Tensor<B>,
        residual_bn: Option<&BatchNorm2d<B>>,
        out: &mut Tensor<B>,
        relu: bool,
    ) -> Result<()> {
        const OP: &str = "batch_norm_forward_train_from_stats";
        self.check_takes_residual(OP)?;
        if let Some(r_bn) = residual_bn.filter(|r_bn| r_bn.relu) {
            return Err(invalid(
                OP,
                format!(
                    "{}: a residual's BN with a ReLU of its own is not applied here",
                    r_bn.name
                ),
            ));
        }
        out.ensure_shape(be, x.dims())?;
        // The sum goes to `out`: this BN's own output is neither written nor allocated.
        self.count_forward(Mode::Train);
        self.output_stored = false;
        let cfg = BatchNormConfig {
            relu,
            ..self.config()
        };
        let (gamma, beta) = (&self.weight.value, &self.bias.value);
        match residual_bn {
            None => ops::batch_norm_forward_train_from_stats(
                be,
                x,
                stats,
                gamma,
                beta,
                Some(residual),
                out,
                &mut self.save_mean,
                &mut self.save_inv_std,
                &mut self.running_mean,
                &mut self.running_var,
                cfg,
            ),
            Some(r_bn) => ops::batch_norm_add_bn_forward_train_from_stats(
                be,
                x,
                stats,
                gamma,
                beta,
                residual,
                r_bn.map(),
                out,
                &mut self.save_mean,
                &mut self.save_inv_std,
                &mut self.running_mean,
                &mut self.running_var,
                cfg,
            ),
        }
    }
}

impl<B: Backend> Layer<B> for BatchNorm2d<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<()> {
        self.start_forward(be, x, mode)?;
        let cfg = self.config();
        match mode {
            Mode::Train => ops::batch_norm_forward_train(
                be,
                x,
                &self.weight.value,
                &self.bias.value,
                &mut self.out,
                &mut self.save_mean,
                &mut self.save_inv_std,
                &mut self.running_mean,
                &mut self.running_var,
                cfg,
            ),
            Mode::Eval => ops::batch_norm_forward_infer(
                be,
                x,
                &self.weight.value,
                &self.bias.value,
                &self.running_mean,
                &self.running_var,
                &mut self.out,
                cfg,
            ),
        }
    }

    fn output(&self) -> &Tensor<B> {
        debug_assert!(
            self.output_stored,
            "{}: its output was left to its reader (a convolution, max pool or block end)",
            self.name
        );
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.check_trained("batch_norm_backward")?;
        self.dx.ensure_shape(be, x.dims())?;
        // `y`, the ReLU's mask where a backend reads it: a BN whose output was not stored exists
        // only on backends that take the mask from `x` (`Backend::conv2d_bn_input_fusion`,
        // `max_pool_bn_input_fusion`), so `x` stands in for it there.
        let y = if self.output_stored { &self.out } else { x };
        ops::batch_norm_backward(
            be,
            x,
            y,
            dy,
            &self.weight.value,
            BatchNormSaved {
                mean: &self.save_mean,
                inv_std: &self.save_inv_std,
                beta: &self.bias.value,
            },
            &mut self.dx,
            &mut self.weight.grad,
            &mut self.bias.grad,
            self.relu,
        )
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.weight);
        f(&mut self.bias);
    }

    fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        f(self);
    }
}
