//! `resnet-cuda data-bench`: the speed of the ImageNet training pipeline on this machine.
//!
//! Two figures, each in images per second and per second per decode thread: decoding alone (read
//! the file, decode to RGB), and the whole training pipeline as the trainer gets it (decode, scale
//! augmentation, crop, mirror, PCA colour, normalisation, through the prefetching [`Loader`]). The
//! mean image is a constant grey here: subtracting it costs the same as subtracting the real one,
//! and the benchmark should not spend minutes estimating it.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::batch::DataCursor;
use super::imagenet::{FolderSplit, ImageNet};
use super::loader::{Loader, LoaderConfig};
use crate::error::{Error, Result};

/// The measured figures.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub workers: usize,
    /// Images decoded and images put through the pipeline.
    pub images: usize,
    pub decode_images_per_s: f64,
    pub pipeline_images_per_s: f64,
}

impl BenchReport {
    pub fn decode_per_core(&self) -> f64 {
        self.decode_images_per_s / self.workers as f64
    }
    pub fn pipeline_per_core(&self) -> f64 {
        self.pipeline_images_per_s / self.workers as f64
    }
}

/// Decodes `images` training images (the first ones of a seeded shuffle, so every class is
/// represented), then draws batches of `batch` from the loader until at least `images` have been
/// made, on `workers` threads.
pub fn data_bench(
    data: Arc<ImageNet>,
    workers: usize,
    images: usize,
    batch: usize,
) -> Result<BenchReport> {
    let n = data.train.len();
    let batch = batch.min(n).max(1);
    let images = images.max(batch);
    let order = super::batch::epoch_order(n, 0, 0, true);
    let sample: Vec<usize> = (0..images).map(|i| order[i % n]).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| Error::Config(format!("--workers {workers}: {e}")))?;
    // Warm the page cache so that both figures measure the CPU, not the disk.
    pool.install(|| {
        sample.par_iter().for_each(|&i| {
            let _ = std::fs::read(data.path(FolderSplit::Train, i));
        })
    });
    let t = Instant::now();
    let decoded: usize = pool.install(|| {
        sample
            .par_iter()
            .filter(|&&i| data.load(FolderSplit::Train, i).is_ok())
            .count()
    });
    let decode_s = t.elapsed().as_secs_f64();
    if decoded == 0 {
        return Err(Error::Data {
            path: data.train.dir.clone(),
            message: "no readable image in the training split".into(),
        });
    }
    let cfg = LoaderConfig::new(batch, 0, true, true, workers);
    let mut loader = Loader::start(data, cfg, DataCursor::default(), 0)?;
    let t = Instant::now();
    let mut made = 0;
    while made < images {
        made += loader.next_batch()?.labels.len();
    }
    let pipeline_s = t.elapsed().as_secs_f64();
    Ok(BenchReport {
        workers,
        images: made,
        decode_images_per_s: decoded as f64 / decode_s,
        pipeline_images_per_s: made as f64 / pipeline_s,
    })
}
