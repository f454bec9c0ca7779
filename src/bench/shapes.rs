//! The layer shapes of a model, found by running its forward pass on the [`ShapeRecorder`].

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::shape_recorder::{ConvShape, RecordedOp, ShapeRecorder};
use crate::backend::PoolGeometry;
use crate::error::Result;
use crate::models::{Family, ModelConfig, Network};
use crate::nn::Mode;
use crate::tensor::Tensor;

/// A model by name with the class count of its family's dataset (CIFAR-10: 10, ImageNet: 1000).
pub fn bench_model_config(name: &str) -> Result<ModelConfig> {
    let config = ModelConfig::from_name(name, 10)?;
    match config.family {
        Family::Cifar => Ok(config),
        Family::ImageNet => ModelConfig::from_name(name, 1000),
    }
}

/// The distinct shapes of each op family in one training step, in first-use order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelShapes {
    pub convs: Vec<ConvShape>,
    /// Batch-norm inputs and whether the ReLU is fused.
    pub batch_norms: Vec<([usize; 4], bool)>,
    /// Residual-add inputs and whether the ReLU is fused.
    pub adds: Vec<([usize; 4], bool)>,
    pub max_pools: Vec<([usize; 4], PoolGeometry)>,
    pub global_pools: Vec<[usize; 4]>,
    /// `(batch, classes)` of the loss.
    pub losses: Vec<(usize, usize)>,
    /// Learnable scalars, which is what one SGD step updates.
    pub num_params: usize,
}

fn push_distinct<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl ModelShapes {
    /// Walks `model`'s forward pass and loss at `batch` (backward repeats the same shapes).
    pub fn of(model: &str, batch: usize) -> Result<Self> {
        let config = bench_model_config(model)?;
        let side = config.image_size();
        let be = ShapeRecorder::new();
        let mut net = Network::new(&be, config, &mut ChaCha8Rng::seed_from_u64(0))?;
        let x = Tensor::zeros(&be, [batch, side, side, 3])?;
        net.forward(&be, &x, Mode::Train)?;
        net.loss(&be, &vec![0; batch])?;
        let mut shapes = ModelShapes {
            num_params: net.num_params(),
            ..Self::default()
        };
        for op in be.ops() {
            match op {
                RecordedOp::Conv(c) => push_distinct(&mut shapes.convs, c),
                RecordedOp::BatchNorm { dims, relu } => {
                    push_distinct(&mut shapes.batch_norms, (dims, relu))
                }
                RecordedOp::Add { dims, relu } => push_distinct(&mut shapes.adds, (dims, relu)),
                RecordedOp::MaxPool { dims, geom } => {
                    push_distinct(&mut shapes.max_pools, (dims, geom))
                }
                RecordedOp::GlobalAvgPool { dims } => push_distinct(&mut shapes.global_pools, dims),
                RecordedOp::SoftmaxCrossEntropy { batch, classes } => {
                    push_distinct(&mut shapes.losses, (batch, classes))
                }
            }
        }
        Ok(shapes)
    }
}
