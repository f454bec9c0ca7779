//! Where the trainer's batches and evaluations come from: fixed-size sets are batched on the
//! trainer's own thread pool (as before), ImageNet-style folders through the prefetching loader.
//!
//! Both walk the same [`DataCursor`] sequence: the trainer advances its cursor for every batch (it
//! is what checkpoints save), and the loader, started from a copy of it, produces exactly those
//! batches ahead of time.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::device_feed::DeviceBatches;
use super::TrainConfig;
use crate::backend::Backend;
use crate::data::augment::{CropFlip, CropFlipParams};
use crate::data::batch::{fill_batch_with_views, DataCursor, MeanImage};
use crate::data::eval_views::Crops;
use crate::data::loader::{Batch, Loader, LoaderConfig};
use crate::data::{mean_cache, DataSets};
use crate::error::{Error, Result};
use crate::eval::{evaluate, evaluate_folder, EvalResult};
use crate::models::Network;

/// The augmentation views of iteration `iter`'s global batch of a fixed-size set (`None` without
/// augmentation): drawn from a stream seeded by `(seed, iter)`, so a resumed run draws the same.
fn fixed_set_views(cfg: &TrainConfig, iter: u64) -> Option<Vec<CropFlipParams>> {
    let mut aug_rng =
        ChaCha8Rng::seed_from_u64(cfg.seed ^ iter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    cfg.augment
        .then(|| CropFlip::CIFAR.draw_batch(&mut aug_rng, cfg.batch_size))
}

/// The default number of decode threads: the cores left after one per GPU replica, at least one.
pub fn default_workers(gpus: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(gpus).max(1)
}

pub(super) struct Feed {
    pub data: DataSets,
    loader: Option<Loader>,
    /// Unreadable images skipped in the current epoch, and that epoch.
    skipped: usize,
    epoch: u64,
}

impl Feed {
    pub fn new(data: DataSets) -> Feed {
        Feed {
            data,
            loader: None,
            skipped: 0,
            epoch: 0,
        }
    }

    /// The training mean image: exact for fixed-size sets, sampled and cached for folders.
    pub fn mean_image(&self, run_dir: &std::path::Path) -> Result<MeanImage> {
        match &self.data {
            DataSets::Fixed(s) => {
                let t = std::time::Instant::now();
                let mean = MeanImage::compute(s.train.as_ref())?;
                eprintln!(
                    "mean image of {} training images in {:.1}s",
                    s.train.len(),
                    t.elapsed().as_secs_f64()
                );
                Ok(mean)
            }
            DataSets::Folders(f) => mean_cache::imagenet_mean(f, run_dir),
        }
    }

    /// Starts the loader (folders only) at `cursor`, whose next batch is iteration `iteration`, for
    /// replica `rank` of `world` (`(0, 1)` for a single one).
    pub fn start(
        &mut self,
        cfg: &TrainConfig,
        cursor: &DataCursor,
        iteration: u64,
        (rank, world): (usize, usize),
    ) -> Result<()> {
        if let DataSets::Folders(f) = &self.data {
            let workers = cfg.workers.unwrap_or_else(|| default_workers(cfg.gpus));
            let lc = LoaderConfig::new(cfg.batch_size, cfg.seed, cfg.shuffle, cfg.augment, workers)
                .shard(rank, world);
            self.loader = Some(Loader::start(f.clone(), lc, cursor.clone(), iteration)?);
            eprintln!("loader: {workers} decode threads");
        }
        self.epoch = cursor.epoch;
        Ok(())
    }

    /// Fills this replica's `shard` of the global batch of iteration `iter` (all of it for a single
    /// replica), advancing `cursor`; returns its epoch. The whole global batch's augmentation is
    /// drawn on every replica, so each image gets the same draws whatever the number of replicas.
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        &mut self,
        cfg: &TrainConfig,
        cursor: &mut DataCursor,
        iter: u64,
        mean: &MeanImage,
        shard: Range<usize>,
        pixels: &mut [f32],
        labels: &mut [u32],
    ) -> Result<u64> {
        let (indices, epoch) = self.next_indices(cfg, cursor);
        match (&self.data, self.loader.as_mut()) {
            (DataSets::Fixed(s), _) => {
                let views = fixed_set_views(cfg, iter);
                fill_batch_with_views(
                    s.train.as_ref(),
                    &indices[shard.clone()],
                    mean,
                    views
                        .as_deref()
                        .map(|v| (CropFlip::CIFAR.pad, &v[shard.clone()])),
                    pixels,
                    labels,
                )?;
            }
            (DataSets::Folders(_), _) => {
                let batch = self.next_loaded(iter, epoch)?;
                batch.normalise(mean, pixels)?;
                labels.copy_from_slice(&batch.labels);
            }
        }
        Ok(epoch)
    }

    /// The loader's batch for iteration `iter` of `epoch`.
    fn next_loaded(&mut self, iter: u64, epoch: u64) -> Result<Batch> {
        let Some(loader) = self.loader.as_mut() else {
            return Err(Error::Config("the data loader was not started".into()));
        };
        let batch = loader.next_batch()?;
        if (batch.iteration, batch.epoch) != (iter, epoch) {
            return Err(Error::Config(format!(
                "the data loader is at iteration {} of epoch {}, the trainer at {iter} of {epoch}",
                batch.iteration, batch.epoch
            )));
        }
        self.skipped += batch.skipped;
        Ok(batch)
    }

    /// [`Feed::next`] for batches built on the device: for a fixed-size set kept there, the same
    /// indices and views, written to `device`'s draw table (this replica's `shard` of them); for
    /// folders, the loader's batch as bytes with its colour shifts. The step builds its batch from
    /// them; the batch's labels also go to `labels`, for replicas, which combine their statistics
    /// on the host.
    #[allow(clippy::too_many_arguments)]
    pub fn next_on_device<B: Backend<Elem = f32>>(
        &mut self,
        be: &B,
        cfg: &TrainConfig,
        cursor: &mut DataCursor,
        iter: u64,
        shard: Range<usize>,
        device: &mut DeviceBatches<B>,
        labels: &mut [u32],
    ) -> Result<u64> {
        let (indices, epoch) = self.next_indices(cfg, cursor);
        if let DataSets::Folders(_) = &self.data {
            // The loader already holds this replica's shard, decoded, as bytes.
            let batch = self.next_loaded(iter, epoch)?;
            device.stream(be, &batch)?;
            labels.copy_from_slice(&batch.labels);
            return Ok(epoch);
        }
        let views = fixed_set_views(cfg, iter);
        device.draw(
            be,
            &indices[shard.clone()],
            views.as_deref().map(|v| &v[shard]),
            labels,
        )?;
        Ok(epoch)
    }

    /// The next batch's indices and epoch; reports the skipped images of an epoch that ended.
    fn next_indices(&mut self, cfg: &TrainConfig, cursor: &mut DataCursor) -> (Vec<usize>, u64) {
        let (indices, epoch) =
            cursor.next_batch_indices(self.data.train_len(), cfg.batch_size, cfg.seed, cfg.shuffle);
        if epoch != self.epoch {
            self.report_skipped();
            self.epoch = epoch;
        }
        (indices, epoch)
    }

    /// Prints the count of unreadable images skipped in the epoch that just ended (if any).
    pub fn report_skipped(&mut self) {
        if self.skipped > 0 {
            eprintln!(
                "epoch {}: {} unreadable training images skipped",
                self.epoch, self.skipped
            );
        }
        self.skipped = 0;
    }

    /// The test error: the whole test split for fixed-size sets, the `center` views of the
    /// validation split for folders.
    pub fn evaluate<B: Backend<Elem = f32>>(
        &self,
        be: &B,
        net: &mut Network<B>,
        mean: &MeanImage,
        batch: usize,
    ) -> Result<EvalResult> {
        match &self.data {
            DataSets::Fixed(s) => evaluate(be, net, s.test.as_ref(), mean, batch),
            DataSets::Folders(f) => evaluate_folder(be, net, f, mean, Crops::Center, batch),
        }
    }
}
