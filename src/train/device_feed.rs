//! `--device-data`: batches built on the GPU, from bytes.
//!
//! A fixed-size dataset (synthetic, CIFAR-10) is kept on the GPU for the whole run: both splits are
//! uploaded once as bytes (CIFAR-10: 150 MB of training images). Each step the host draws the
//! batch exactly as it would for itself (indices from the data cursor, augmentation views from the
//! iteration's stream) and sends those draws, 28 bytes an image; the step's first kernel builds the
//! batch from them. Evaluations build their batches the same way.
//!
//! An ImageNet-style folder streams: the loader's decoded views go up as bytes, a quarter of the
//! floats the host path sends, with their PCA colour shifts, into a store of one batch that the
//! step's first kernel normalises from. Evaluation stays on the host path (its views come in
//! several sizes).
//!
//! Either way the batches equal the host path's bit for bit, so a run, its checkpoints and a resume
//! do not depend on where the batches were made.

use super::TrainConfig;
use crate::backend::Backend;
use crate::data::augment::CropFlipParams;
use crate::data::batch::MeanImage;
use crate::data::device_images::{BatchDraws, DeviceImages};
use crate::data::loader::Batch;
use crate::data::DataSets;
use crate::error::Result;
use crate::eval::{evaluate_on_device, EvalResult};
use crate::models::Network;
use crate::ops;
use crate::tensor::Tensor;

enum Source<B: Backend> {
    /// Both splits of a fixed-size set, for the whole run.
    Resident {
        train: DeviceImages<B>,
        test: DeviceImages<B>,
    },
    /// The current batch of the loader, its sample `b` in image `b`.
    Streamed {
        batch: DeviceImages<B>,
        slots: Vec<usize>,
    },
}

pub struct DeviceBatches<B: Backend> {
    source: Source<B>,
    draws: BatchDraws<B>,
    mean: Tensor<B>,
}

impl<B: Backend<Elem = f32>> DeviceBatches<B> {
    /// The device's batches when the run asks for them (`--device-data on`) and the backend
    /// builds batches best itself; `None` otherwise. `batch` is this replica's batch. Every
    /// replica keeps a resident set whole, on its own GPU; the `leader` says so.
    pub fn open(
        be: &B,
        cfg: &TrainConfig,
        data: &DataSets,
        mean: &MeanImage,
        batch: usize,
        leader: bool,
    ) -> Result<Option<Self>> {
        if !(cfg.device_data && be.builds_batches_on_device()) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let source = match data {
            DataSets::Fixed(splits) => {
                let train = DeviceImages::upload(be, splits.train.as_ref())?;
                let test = DeviceImages::upload(be, splits.test.as_ref())?;
                let bytes = (train.len() + test.len()) * mean.data.len();
                if leader {
                    eprintln!(
                        "data on the device: {} training and {} test images ({:.0} MiB) in {:.1}s",
                        train.len(),
                        test.len(),
                        bytes as f64 / (1 << 20) as f64,
                        started.elapsed().as_secs_f64()
                    );
                }
                Source::Resident { train, test }
            }
            DataSets::Folders(f) => {
                let (h, w) = data.view_size();
                let pixels = vec![0u8; batch * h * w * 3];
                let name = format!("the loader's batch of {}", f.describe());
                let store = DeviceImages::from_bytes(be, &pixels, vec![0; batch], (h, w), name)?;
                if leader {
                    eprintln!("data on the device: batches of {batch} views sent as bytes");
                }
                Source::Streamed {
                    batch: store,
                    slots: (0..batch).collect(),
                }
            }
        };
        let mut mean_tensor = Tensor::zeros(be, mean.shape())?;
        mean_tensor.copy_from_slice(be, &mean.data)?;
        Ok(Some(DeviceBatches {
            source,
            draws: BatchDraws::new(be, batch)?,
            mean: mean_tensor,
        }))
    }

    /// Sends the next batch's draws: training images `indices` with `views` (see
    /// [`BatchDraws::fill`]); their labels go to `labels`. For a resident set only.
    pub fn draw(
        &mut self,
        be: &B,
        indices: &[usize],
        views: Option<&[CropFlipParams]>,
        labels: &mut [u32],
    ) -> Result<()> {
        match &self.source {
            Source::Resident { train, .. } => {
                self.draws.fill(be, train, indices, views)?;
                for (l, &i) in labels.iter_mut().zip(indices) {
                    *l = train.labels()[i];
                }
                Ok(())
            }
            Source::Streamed { .. } => Err(crate::error::Error::Config(
                "--device-data: a streamed dataset has no resident images to draw from".into(),
            )),
        }
    }

    /// Sends the loader's `batch`: its views as bytes, its labels and colour shifts.
    pub fn stream(&mut self, be: &B, batch: &Batch) -> Result<()> {
        match &mut self.source {
            Source::Streamed {
                batch: store,
                slots,
            } => {
                store.refill(be, &batch.pixels, &batch.labels)?;
                self.draws
                    .fill_shifted(be, store, slots, None, Some(&batch.shifts))
            }
            Source::Resident { .. } => Err(crate::error::Error::Config(
                "--device-data: a resident dataset takes draws, not streamed batches".into(),
            )),
        }
    }

    /// The step's first op: the batch `x` and its `labels` from what was sent last.
    pub fn build(&self, be: &B, x: &mut Tensor<B>, labels: &mut Tensor<B>) -> Result<()> {
        let images = match &self.source {
            Source::Resident { train, .. } => train,
            Source::Streamed { batch, .. } => batch,
        };
        ops::image_batch(be, images, &self.draws, &self.mean, x, labels)
    }

    /// The test error over a test split kept on the device (its full batches replayed as a graph
    /// when `graph`); `None` for a streamed dataset, which evaluates on the host path.
    pub fn evaluate(
        &self,
        be: &B,
        net: &mut Network<B>,
        batch: usize,
        graph: bool,
    ) -> Option<Result<EvalResult>> {
        match &self.source {
            Source::Resident { test, .. } => {
                Some(evaluate_on_device(be, net, test, &self.mean, batch, graph))
            }
            Source::Streamed { .. } => None,
        }
    }
}
