//! The prefetching training loader for datasets whose samples cost real work (decoding, resizing):
//! a producer thread walks the run's batch sequence ahead of the trainer and fills each batch on a
//! pool of `workers` decode threads, handing finished batches over a bounded queue of `prefetch`
//! batches, so the trainer finds the next batch ready when there are enough cores.
//!
//! Determinism: the batch sequence comes from a copy of the run's [`DataCursor`], and sample `slot`
//! of iteration `i` is augmented from a ChaCha8 stream seeded by `(seed, i, slot)` alone, so each
//! view is a pure function of the seed and its place in the run, whatever thread computes it, on any
//! number of workers. With sharding, replica `rank` of `world` gets slots
//! `[rank * batch / world, (rank + 1) * batch / world)` of every global batch, with the same seeds,
//! so the shards together are exactly the unsharded batch.
//!
//! A sample that cannot be read is replaced by the next image of the split (index + 1, wrapping),
//! with one warning line per file the first time and a count in [`Batch::skipped`]; if no image of
//! the split can be read, the loader fails.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::batch::{DataCursor, MeanImage};
use super::imagenet::{normalise_view, ImageNet};
use super::mix_seed;
use crate::error::{Error, Result};

/// A collection of training samples that each make one fixed-size normalised view.
pub trait TrainSamples: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(height, width)` of a view (3 channels, HWC u8).
    fn view_size(&self) -> (usize, usize);
    /// Writes the view of sample `index` into `out` as bytes, augmented from `rng` when `augment`,
    /// and returns its label and the colour shift to add to it once normalised (see
    /// [`Batch::normalise`]).
    fn train_view(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> Result<(u32, [f32; 3])>;
    /// Names the split in errors (its folder).
    fn split_path(&self) -> std::path::PathBuf;
}

impl TrainSamples for ImageNet {
    fn len(&self) -> usize {
        self.train.len()
    }
    fn view_size(&self) -> (usize, usize) {
        (super::imagenet_augment::CROP, super::imagenet_augment::CROP)
    }
    fn train_view(
        &self,
        index: usize,
        augment: bool,
        rng: &mut ChaCha8Rng,
        out: &mut [u8],
    ) -> Result<(u32, [f32; 3])> {
        ImageNet::train_view(self, index, augment, rng, out)
    }
    fn split_path(&self) -> std::path::PathBuf {
        self.train.dir.clone()
    }
}

/// What the loader produces and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per global batch (all replicas together).
    pub batch: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub augment: bool,
    /// Decode threads.
    pub workers: usize,
    /// Finished batches kept ready ahead of the trainer.
    pub prefetch: usize,
    /// This replica and the number of replicas (see [`shard`]).
    pub rank: usize,
    pub world: usize,
}

impl LoaderConfig {
    /// One replica, two batches ahead.
    pub fn new(batch: usize, seed: u64, shuffle: bool, augment: bool, workers: usize) -> Self {
        LoaderConfig {
            batch,
            seed,
            shuffle,
            augment,
            workers,
            prefetch: 2,
            rank: 0,
            world: 1,
        }
    }

    /// This config for replica `rank` of `world`.
    pub fn shard(mut self, rank: usize, world: usize) -> Self {
        self.rank = rank;
        self.world = world;
        self
    }
}

/// The slots of a global batch of `batch` that replica `rank` of `world` takes. Errors unless
/// `rank < world` and `world` divides `batch` (every replica must get a batch of the same size).
pub fn shard(batch: usize, rank: usize, world: usize) -> Result<Range<usize>> {
    if world == 0 || rank >= world || batch % world != 0 {
        return Err(Error::Config(format!(
            "data shard {rank} of {world}: needs rank < world and a batch size ({batch}) divisible by the replicas"
        )));
    }
    let per = batch / world;
    Ok(rank * per..(rank + 1) * per)
}

/// One batch of a replica's shard: NHWC u8 views, the colour shift of each and the labels. The
/// network's input is `pixel / 255 + shift - mean` ([`Batch::normalise`], or on a GPU the same
/// from the bytes, `ops::image_batch`): bytes are a quarter of the floats to move.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub pixels: Vec<u8>,
    /// Each view's colour shift (`[0, 1]` scale): ImageNet's PCA colour augmentation, zero without
    /// augmentation.
    pub shifts: Vec<[f32; 3]>,
    pub labels: Vec<u32>,
    /// The iteration (0-based) and epoch it belongs to.
    pub iteration: u64,
    pub epoch: u64,
    /// Unreadable samples replaced in this batch.
    pub skipped: usize,
}

impl Batch {
    /// The network's input: `pixel / 255 + shift - mean` for each view, NHWC f32, into `out`
    /// (views in parallel). `mean` must be a view's size.
    pub fn normalise(&self, mean: &MeanImage, out: &mut [f32]) -> Result<()> {
        let size = mean.data.len();
        if size == 0
            || self.pixels.len() != self.labels.len() * size
            || out.len() != self.pixels.len()
        {
            return Err(crate::error::invalid(
                "normalise batch",
                format!(
                    "{} bytes of {} views into {} values with a {}x{} mean image",
                    self.pixels.len(),
                    self.labels.len(),
                    out.len(),
                    mean.height,
                    mean.width
                ),
            ));
        }
        out.par_chunks_mut(size)
            .zip(self.pixels.par_chunks(size))
            .zip(self.shifts.par_iter())
            .for_each(|((o, p), &shift)| normalise_view(p, shift, &mean.data, o));
        Ok(())
    }
}

/// The seed of the augmentation stream of sample `slot` of the global batch of `iteration`.
pub fn sample_seed(seed: u64, iteration: u64, slot: usize) -> u64 {
    mix_seed(&[seed, 0x0a06_5eed, iteration, slot as u64])
}

/// The running loader; dropping it stops the producer.
pub struct Loader {
    rx: Receiver<Result<Batch>>,
    stop: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing the batches that follow `cursor`, the first one being iteration
    /// `iteration`.
    pub fn start(
        samples: Arc<dyn TrainSamples>,
        cfg: LoaderConfig,
        cursor: DataCursor,
        iteration: u64,
    ) -> Result<Loader> {
        let slots = shard(cfg.batch, cfg.rank, cfg.world)?;
        let n = samples.len();
        if n < cfg.batch || cfg.batch == 0 {
            return Err(Error::Config(format!(
                "--batch-size {}: larger than the training split ({n} images)",
                cfg.batch
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.workers.max(1))
            .thread_name(|i| format!("decode-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("--workers {}: {e}", cfg.workers)))?;
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let producer = std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                let mut cursor = cursor;
                let mut iteration = iteration;
                let warned = Mutex::new(HashSet::new());
                while !stop_flag.load(Ordering::SeqCst) {
                    let (indices, epoch) =
                        cursor.next_batch_indices(n, cfg.batch, cfg.seed, cfg.shuffle);
                    let batch = pool.install(|| {
                        fill(
                            samples.as_ref(),
                            &cfg,
                            &indices[slots.clone()],
                            slots.start,
                            iteration,
                            epoch,
                            &warned,
                        )
                    });
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                    iteration += 1;
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            rx,
            stop,
            producer: Some(producer),
        })
    }

    /// The next batch, waiting for it if it is not ready.
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.rx
            .recv()
            .map_err(|_| Error::Config("the data loader stopped".into()))?
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the receiver makes the producer's next send fail, so it exits after at most the
        // batch it is filling.
        drop(std::mem::replace(&mut self.rx, sync_channel(1).1));
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

/// Fills one shard of a batch on the current pool.
#[allow(clippy::too_many_arguments)]
fn fill(
    samples: &dyn TrainSamples,
    cfg: &LoaderConfig,
    indices: &[usize],
    first_slot: usize,
    iteration: u64,
    epoch: u64,
    warned: &Mutex<HashSet<usize>>,
) -> Result<Batch> {
    let (h, w) = samples.view_size();
    let size = h * w * 3;
    let n = samples.len();
    let mut pixels = vec![0u8; indices.len() * size];
    let mut shifts = vec![[0f32; 3]; indices.len()];
    let mut labels = vec![0u32; indices.len()];
    let skipped = AtomicUsize::new(0);
    pixels
        .par_chunks_mut(size)
        .zip(shifts.par_iter_mut().zip(labels.par_iter_mut()))
        .enumerate()
        .try_for_each(|(i, (out, (shift, label)))| -> Result<()> {
            let seed = sample_seed(cfg.seed, iteration, first_slot + i);
            let mut index = indices[i];
            for _ in 0..n {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                match samples.train_view(index, cfg.augment, &mut rng, out) {
                    Ok((l, s)) => {
                        *label = l;
                        *shift = s;
                        return Ok(());
                    }
                    Err(e) => {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        if warned.lock().expect("not poisoned").insert(index) {
                            eprintln!("warning: skipping an unreadable training image: {e}");
                        }
                        index = (index + 1) % n;
                    }
                }
            }
            Err(Error::Data {
                path: samples.split_path(),
                message: "no readable image in the split".into(),
            })
        })?;
    Ok(Batch {
        pixels,
        shifts,
        labels,
        iteration,
        epoch,
        skipped: skipped.into_inner(),
    })
}
