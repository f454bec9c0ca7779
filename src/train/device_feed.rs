//! `--device-data`: a fixed-size dataset kept on the GPU for the whole run.
//!
//! Both splits are uploaded once as bytes (CIFAR-10: 150 MB of training images). Each step the host
//! draws the batch exactly as it would for itself (indices from the data cursor, augmentation views
//! from the iteration's stream) and sends those draws, 16 bytes an image; the step's first kernel
//! builds the batch from them. Evaluations build their batches the same way. The batches equal the
//! host path's bit for bit, so a run, its checkpoints and a resume do not depend on where the
//! batches were made.

use super::TrainConfig;
use crate::backend::Backend;
use crate::data::augment::CropFlipParams;
use crate::data::batch::MeanImage;
use crate::data::device_images::{BatchDraws, DeviceImages};
use crate::data::DataSets;
use crate::error::Result;
use crate::eval::{evaluate_on_device, EvalResult};
use crate::models::Network;
use crate::ops;
use crate::tensor::Tensor;

pub struct DeviceBatches<B: Backend> {
    train: DeviceImages<B>,
    test: DeviceImages<B>,
    draws: BatchDraws<B>,
    mean: Tensor<B>,
}

impl<B: Backend<Elem = f32>> DeviceBatches<B> {
    /// The data on `be` when the run asks for it (`--device-data on`), the backend builds batches
    /// best itself, the run has one replica and the data is a fixed-size set; `None` otherwise.
    /// `batch` is this replica's batch.
    pub fn open(
        be: &B,
        cfg: &TrainConfig,
        data: &DataSets,
        mean: &MeanImage,
        batch: usize,
        single_replica: bool,
    ) -> Result<Option<Self>> {
        let DataSets::Fixed(splits) = data else {
            return Ok(None);
        };
        if !(cfg.device_data && single_replica && be.builds_batches_on_device()) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let train = DeviceImages::upload(be, splits.train.as_ref())?;
        let test = DeviceImages::upload(be, splits.test.as_ref())?;
        let mut mean_tensor = Tensor::zeros(be, mean.shape())?;
        mean_tensor.copy_from_slice(be, &mean.data)?;
        let bytes = (train.len() + test.len()) * mean.data.len();
        eprintln!(
            "data on the device: {} training and {} test images ({:.0} MiB) in {:.1}s",
            train.len(),
            test.len(),
            bytes as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64()
        );
        Ok(Some(DeviceBatches {
            train,
            test,
            draws: BatchDraws::new(be, batch)?,
            mean: mean_tensor,
        }))
    }

    /// Sends the next batch's draws: training images `indices` with `views` (see
    /// [`BatchDraws::fill`]).
    pub fn draw(
        &mut self,
        be: &B,
        indices: &[usize],
        views: Option<&[CropFlipParams]>,
    ) -> Result<()> {
        self.draws.fill(be, &self.train, indices, views)
    }

    /// The step's first op: the batch `x` and its `labels` from the draws sent last.
    pub fn build(&self, be: &B, x: &mut Tensor<B>, labels: &mut Tensor<B>) -> Result<()> {
        ops::image_batch(be, &self.train, &self.draws, &self.mean, x, labels)
    }

    /// The test error over the test split kept on the device.
    pub fn evaluate(&self, be: &B, net: &mut Network<B>, batch: usize) -> Result<EvalResult> {
        evaluate_on_device(be, net, &self.test, &self.mean, batch)
    }
}
