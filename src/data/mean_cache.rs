//! The ImageNet mean image: the per-pixel mean of the `center` views (shorter side 256, central
//! 224x224) of an evenly spaced sample of at most [`MEAN_SAMPLE`] training images, cached in a side
//! file so that it is computed once per data folder.
//!
//! The sample (every `n / k`-th image) and the integer sums make the result exact and independent of
//! the number of threads. The training views are random crops at random scales, whose per-pixel
//! mean is close to uniform; the centre views estimate the same statistics of the resized images.
//! 10,000 images put the standard error of each mean pixel near `0.3 / sqrt(10000) = 0.003`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::batch::{MeanImage, CHANNELS};
use super::imagenet::{center_view, FolderSplit, ImageNet};
use super::imagenet_augment::CROP;
use super::{mix_seed, splitmix64};
use crate::error::{Error, Result};

/// The most training images the mean image is estimated from.
pub const MEAN_SAMPLE: usize = 10_000;
/// The side file's name, in the data folder (or, if that is read-only, in the run folder).
pub const CACHE_FILE: &str = "resnet-cuda-mean-224.json";

#[derive(Serialize, Deserialize)]
struct CacheFile {
    /// What the mean was computed from: the training split's size, the sample size and a hash of
    /// the sampled files' paths. A cache whose key differs is recomputed.
    train_images: usize,
    sample: usize,
    paths_hash: u64,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

/// The indices of the sampled training images: `i * n / k` for `i < k = min(n, MEAN_SAMPLE)`.
pub fn sample_indices(n: usize) -> Vec<usize> {
    let k = n.min(MEAN_SAMPLE);
    (0..k).map(|i| i * n / k).collect()
}

/// The mean image of `data`: read from the side file in the data folder or in `run_dir`, else
/// computed and written to the first of the two that accepts it.
pub fn imagenet_mean(data: &ImageNet, run_dir: &Path) -> Result<MeanImage> {
    let indices = sample_indices(data.train.len());
    let paths_hash = mix_seed(
        &indices
            .iter()
            .map(|&i| hash_str(&data.path(FolderSplit::Train, i).to_string_lossy()))
            .collect::<Vec<_>>(),
    );
    let key = (data.train.len(), indices.len(), paths_hash);
    let places = [data.root.join(CACHE_FILE), run_dir.join(CACHE_FILE)];
    for place in &places {
        if let Some(mean) = read_cache(place, key) {
            eprintln!("mean image from {}", place.display());
            return Ok(mean);
        }
    }
    let t = std::time::Instant::now();
    let mean = compute(data, &indices)?;
    eprintln!(
        "mean image of {} sampled training images in {:.1}s",
        indices.len(),
        t.elapsed().as_secs_f64()
    );
    let file = CacheFile {
        train_images: key.0,
        sample: key.1,
        paths_hash: key.2,
        height: mean.height,
        width: mean.width,
        data: mean.data.clone(),
    };
    let text = serde_json::to_string(&file).expect("the mean image serialises");
    for place in &places {
        match write_atomic(place, &text) {
            Ok(()) => {
                eprintln!("mean image cached in {}", place.display());
                break;
            }
            Err(e) => eprintln!("warning: cannot cache the mean image: {e}"),
        }
    }
    Ok(mean)
}

/// The exact mean of the centre views of `indices`; unreadable images are skipped with a warning.
pub fn compute(data: &ImageNet, indices: &[usize]) -> Result<MeanImage> {
    let size = CROP * CROP * CHANNELS;
    let skipped = AtomicUsize::new(0);
    let (sum, count) = indices
        .par_iter()
        .fold(
            || (vec![0u64; size], 0usize),
            |(mut sum, count), &i| {
                let view = data
                    .load(FolderSplit::Train, i)
                    .and_then(|(image, _)| center_view(&image));
                match view {
                    Ok(view) => {
                        for (s, &p) in sum.iter_mut().zip(&view.data) {
                            *s += p as u64;
                        }
                        (sum, count + 1)
                    }
                    Err(e) => {
                        eprintln!("warning: skipping an unreadable image: {e}");
                        skipped.fetch_add(1, Ordering::Relaxed);
                        (sum, count)
                    }
                }
            },
        )
        .reduce(
            || (vec![0u64; size], 0),
            |(mut a, n), (b, m)| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                (a, n + m)
            },
        );
    if count == 0 {
        return Err(Error::Data {
            path: data.train.dir.clone(),
            message: "no readable image in the training split".into(),
        });
    }
    let skipped = skipped.into_inner();
    if skipped > 0 {
        eprintln!("mean image: {skipped} unreadable images skipped");
    }
    let denominator = 255.0 * count as f64;
    MeanImage::from_parts(
        CROP,
        CROP,
        sum.iter()
            .map(|&s| (s as f64 / denominator) as f32)
            .collect(),
    )
}

fn read_cache(path: &Path, key: (usize, usize, u64)) -> Option<MeanImage> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    if (file.train_images, file.sample, file.paths_hash) != key
        || (file.height, file.width) != (CROP, CROP)
    {
        return None;
    }
    MeanImage::from_parts(file.height, file.width, file.data).ok()
}

/// Writes `text` to a temporary name beside `path`, then renames it, so a reader never sees half.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A hash of a string (FNV-style bytes folded through splitmix64), stable across runs and builds.
fn hash_str(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| splitmix64(h ^ b as u64))
}
