//! A ResNet or plain net as a chain of layers: stem, stages of blocks, global average pooling,
//! classifier, and the loss. Forward runs the chain in order; backward runs it in reverse, handing
//! each layer the input it saw (its predecessor's output) and its successor's input gradient.

use rand::Rng;

use super::spec::{BlockKind, Family, ModelConfig};
use crate::backend::{Backend, LossStats, PoolGeometry};
use crate::error::Result;
use crate::nn::{
    BatchNorm2d, Block, BlockSpec, ConvBn, ConvBnSpec, GlobalAvgPool, Layer, Linear, MaxPool2d,
    Mode, Param, PooledStem, SoftmaxCrossEntropy,
};
use crate::ops;
use crate::tensor::Tensor;

pub struct Network<B: Backend> {
    pub config: ModelConfig,
    layers: Vec<Box<dyn Layer<B>>>,
    loss: SoftmaxCrossEntropy<B>,
    /// The labels and loss record of [`Network::loss`], which reads its statistics back at once;
    /// kept so that a step allocates nothing on the device after its first.
    labels: Tensor<B>,
    record: Option<B::LossRecord>,
}

impl<B: Backend> Network<B> {
    /// Builds the network with He-initialised convolutions, BN weight 1 / bias 0, PyTorch's default
    /// classifier init, drawing from `rng`.
    pub fn new(be: &B, config: ModelConfig, rng: &mut impl Rng) -> Result<Self> {
        let mut layers: Vec<Box<dyn Layer<B>>> = Vec::new();
        let stem_ch = config.stem_channels();
        let stem_spec = match config.family {
            Family::Cifar => ConvBnSpec {
                in_ch: 3,
                out_ch: stem_ch,
                kernel: 3,
                stride: 1,
                relu: true,
            },
            Family::ImageNet => ConvBnSpec {
                in_ch: 3,
                out_ch: stem_ch,
                kernel: 7,
                stride: 2,
                relu: true,
            },
        };
        let mut stem = ConvBn::new(be, "conv1", "bn1", stem_spec, rng)?;
        stem.set_input_grad_needed(false);
        match config.family {
            Family::Cifar => layers.push(Box::new(stem)),
            Family::ImageNet => {
                let pool = MaxPool2d::new(
                    be,
                    PoolGeometry {
                        window: 3,
                        stride: 2,
                        pad: 1,
                    },
                )?;
                layers.push(Box::new(PooledStem::new(stem, pool)));
            }
        }
        let shortcut = config.residual.then_some(config.shortcut);
        let mut in_ch = stem_ch;
        for (stage, (&blocks, &out_ch)) in config
            .stage_blocks
            .iter()
            .zip(&config.stage_channels)
            .enumerate()
        {
            for b in 0..blocks {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let spec = BlockSpec {
                    in_ch,
                    out_ch,
                    stride,
                    shortcut,
                };
                let prefix = format!("layer{}.{b}", stage + 1);
                let block = match config.block {
                    BlockKind::Basic => Block::basic(be, &prefix, spec, rng)?,
                    BlockKind::Bottleneck => {
                        Block::bottleneck(be, &prefix, spec, config.bottleneck_stride, rng)?
                    }
                };
                layers.push(Box::new(block));
                in_ch = out_ch;
            }
        }
        layers.push(Box::new(GlobalAvgPool::new(be)?));
        layers.push(Box::new(Linear::new(
            be,
            "fc",
            in_ch,
            config.num_classes,
            rng,
        )?));
        Ok(Network {
            config,
            layers,
            loss: SoftmaxCrossEntropy::new(be)?,
            labels: Tensor::empty(be)?,
            record: None,
        })
    }

    /// Runs the chain on `x: [N, H, W, 3]` and returns the logits `[N, classes]`.
    pub fn forward(&mut self, be: &B, x: &Tensor<B>, mode: Mode) -> Result<&Tensor<B>> {
        self.layers[0].forward(be, x, mode)?;
        for i in 1..self.layers.len() {
            let (done, rest) = self.layers.split_at_mut(i);
            rest[0].forward(be, done[i - 1].output(), mode)?;
        }
        Ok(self.logits())
    }

    pub fn logits(&self) -> &Tensor<B> {
        self.layers.last().expect("a network has layers").output()
    }

    /// Loss and top-k counts of the last forward's logits, keeping the logit gradient for backward.
    /// Reads the statistics back at once (a host synchronisation on a GPU); a training step that
    /// must not wait uses [`Network::loss_recorded`].
    pub fn loss(&mut self, be: &B, labels: &[u32]) -> Result<LossStats> {
        self.labels.ensure_shape(be, &[labels.len()])?;
        ops::upload_labels(be, labels, self.config.num_classes, &mut self.labels)?;
        let mut record = match self.record.take() {
            Some(r) => r,
            None => be.loss_record(1)?,
        };
        let logits = self.layers.last().expect("a network has layers").output();
        let outcome = self
            .loss
            .forward_backward_recorded(be, logits, &self.labels, &mut record)
            .and_then(|()| ops::read_loss_stats(be, &mut record));
        self.record = Some(record);
        outcome
    }

    /// [`Network::loss`] without waiting: `labels` on the device (`ops::upload_labels`), the
    /// statistics appended to `record`.
    pub fn loss_recorded(
        &mut self,
        be: &B,
        labels: &Tensor<B>,
        record: &mut B::LossRecord,
    ) -> Result<()> {
        let logits = self.layers.last().expect("a network has layers").output();
        self.loss
            .forward_backward_recorded(be, logits, labels, record)
    }

    /// Backward from the loss to every parameter gradient; `x` is the input of the last forward.
    pub fn backward(&mut self, be: &B, x: &Tensor<B>) -> Result<()> {
        self.backward_with(be, x, &mut |_, _| Ok(()))
    }

    /// [`Network::backward`], calling `layer_done(i, layer)` as soon as layer `i`'s backward has
    /// written its parameter gradients, last layer first. Backward never touches those gradients
    /// again, so the hook may start summing them across replicas while the earlier layers run (a
    /// hook error stops backward and is returned).
    pub fn backward_with(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        layer_done: &mut dyn FnMut(usize, &mut dyn Layer<B>) -> Result<()>,
    ) -> Result<()> {
        let last = self.layers.len() - 1;
        for i in (0..=last).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (layer, after) = rest.split_first_mut().expect("index in range");
            // The layer before offers its last batch norm's backward sums to this layer's
            // backward-data (`Layer::backward_before`).
            let (input, prev) = match before.last_mut() {
                Some(prev) => prev.output_with_bn_grad(),
                None => (x, None),
            };
            let grad = if i == last {
                self.loss.logits_grad()
            } else {
                after[0].input_grad()
            };
            layer.backward_before(be, input, grad, prev)?;
            layer_done(i, layer.as_mut())?;
        }
        Ok(())
    }

    /// The number of layers (stem with its max pool, blocks, pooling, classifier), as
    /// [`Network::backward_with`] numbers them.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The element count of each parameter of layer `i`, in [`Network::visit_params`] order (which
    /// visits layer 0's parameters first, then layer 1's, ...).
    pub fn layer_param_sizes(&mut self, i: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        self.layers[i].visit_params(&mut |p| sizes.push(p.grad.numel()));
        sizes
    }

    /// Forward in training mode, loss, backward: all gradients are then ready for the optimiser.
    pub fn forward_backward(&mut self, be: &B, x: &Tensor<B>, labels: &[u32]) -> Result<LossStats> {
        self.forward(be, x, Mode::Train)?;
        let stats = self.loss(be, labels)?;
        self.backward(be, x)?;
        Ok(stats)
    }

    /// Adds `n` to every batch norm's count of training batches (`num_batches_tracked`), for steps
    /// whose forward pass ran without the layers' code (a replayed graph) or ran it twice.
    pub fn count_training_batches(&mut self, n: i64) {
        self.visit_batch_norms(&mut |bn| bn.num_batches_tracked += n);
    }

    /// [`Network::forward_backward`] without a host synchronisation: the statistics go to
    /// `record` (see [`Network::loss_recorded`]).
    pub fn forward_backward_recorded(
        &mut self,
        be: &B,
        x: &Tensor<B>,
        labels: &Tensor<B>,
        record: &mut B::LossRecord,
    ) -> Result<()> {
        self.forward(be, x, Mode::Train)?;
        self.loss_recorded(be, labels, record)?;
        self.backward(be, x)
    }

    /// Every parameter in a fixed order (the state-dict order of torchvision).
    pub fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        for layer in &mut self.layers {
            layer.visit_params(f);
        }
    }

    /// Every batch-norm layer in a fixed order.
    pub fn visit_batch_norms(&mut self, f: &mut dyn FnMut(&mut BatchNorm2d<B>)) {
        for layer in &mut self.layers {
            layer.visit_batch_norms(f);
        }
    }

    /// The number of learnable scalars (conv and FC weights, FC bias, BN weight and bias).
    pub fn num_params(&mut self) -> usize {
        let mut total = 0;
        self.visit_params(&mut |p| total += p.value.numel());
        total
    }

    /// The names and shapes of every parameter, in order.
    pub fn param_shapes(&mut self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.visit_params(&mut |p| out.push((p.name.clone(), p.value.dims().to_vec())));
        out
    }
}
