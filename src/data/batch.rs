//! From dataset images to network inputs: the mean image, batch assembly, and the order in which a
//! run visits the training set.
//!
//! Everything here is deterministic: the mean image is an exact integer sum, augmentation views are
//! drawn one after another in batch order before the (parallel) decoding starts, and the epoch order
//! is a Fisher-Yates shuffle from a stream seeded by `(seed, epoch)`. So a run gives the same batches
//! on any number of threads, and a [`DataCursor`] saved in a checkpoint resumes it exactly.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::{pad_crop_flip, CropFlip, CropFlipParams};
use super::{below, mix_seed, Dataset};
use crate::error::{invalid, Result};

/// Channels of every image (RGB).
pub const CHANNELS: usize = 3;

/// The per-pixel mean of a dataset's images, `pixel / 255` averaged, HWC (`height x width x 3`).
#[derive(Clone, Debug, PartialEq)]
pub struct MeanImage {
    pub height: usize,
    pub width: usize,
    /// `height * width * 3` values, HWC.
    pub data: Vec<f32>,
}

/// Images per task when summing the mean image.
const MEAN_CHUNK: usize = 256;

impl MeanImage {
    /// The mean of every image of `ds`, spread over threads. The pixels are summed as integers, which
    /// is exact, so the result does not depend on the number of threads or the order of the sums; each
    /// sum is then divided by `255 * len` in f64 and rounded to f32 once.
    pub fn compute(ds: &dyn Dataset) -> Result<MeanImage> {
        let (height, width) = ds.image_size();
        let size = height * width * CHANNELS;
        let n = ds.len();
        if n == 0 {
            return Err(invalid(
                "mean image",
                format!("dataset `{}` is empty", ds.describe()),
            ));
        }
        let sums = (0..n.div_ceil(MEAN_CHUNK))
            .into_par_iter()
            .map(|chunk| -> Result<Vec<u64>> {
                let mut sum = vec![0u64; size];
                let mut image = vec![0u8; size];
                for index in chunk * MEAN_CHUNK..((chunk + 1) * MEAN_CHUNK).min(n) {
                    ds.load(index, &mut image)?;
                    for (s, &p) in sum.iter_mut().zip(&image) {
                        *s += p as u64;
                    }
                }
                Ok(sum)
            })
            .try_reduce(
                || vec![0u64; size],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        *x += y;
                    }
                    Ok(a)
                },
            )?;
        let denominator = 255.0 * n as f64;
        let data = sums
            .iter()
            .map(|&s| (s as f64 / denominator) as f32)
            .collect();
        Ok(MeanImage {
            height,
            width,
            data,
        })
    }

    /// A mean image from its parts (as a checkpoint stores them), checking the size.
    pub fn from_parts(height: usize, width: usize, data: Vec<f32>) -> Result<MeanImage> {
        if data.len() != height * width * CHANNELS {
            return Err(invalid(
                "mean image",
                format!(
                    "{} values do not make a {height}x{width}x{CHANNELS} image",
                    data.len()
                ),
            ));
        }
        Ok(MeanImage {
            height,
            width,
            data,
        })
    }

    /// The average of each channel over the image's pixels (the mean colour), used for views of
    /// another size than the mean image's.
    pub fn channel_means(&self) -> [f32; CHANNELS] {
        let mut sums = [0f64; CHANNELS];
        for px in self.data.chunks_exact(CHANNELS) {
            for (s, &v) in sums.iter_mut().zip(px) {
                *s += v as f64;
            }
        }
        let pixels = (self.height * self.width).max(1) as f64;
        sums.map(|s| (s / pixels) as f32)
    }

    /// The tensor shape `[height, width, 3]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.height, self.width, CHANNELS]
    }
}

/// Fills one batch: image `indices[i]` of `ds` becomes `pixel / 255 - mean` in `pixels[i]` (NHWC f32)
/// and its label goes to `labels[i]`. With `augment`, each image gets the paper's CIFAR augmentation
/// ([`CropFlip::CIFAR`]), the views drawn from `augment` one image after another in batch order.
///
/// `augment` is generic so that both `Some(&mut chacha)` and `Some(&mut dyn RngCore)` work; without
/// augmentation name a type: `None::<&mut ChaCha8Rng>`.
pub fn fill_batch<R: RngCore + ?Sized>(
    ds: &dyn Dataset,
    indices: &[usize],
    mean: &MeanImage,
    augment: Option<&mut R>,
    pixels: &mut [f32],
    labels: &mut [u32],
) -> Result<()> {
    let views = augment.map(|rng| CropFlip::CIFAR.draw_batch(rng, indices.len()));
    fill_batch_with_views(
        ds,
        indices,
        mean,
        views.as_deref().map(|v| (CropFlip::CIFAR.pad, v)),
        pixels,
        labels,
    )
}

/// [`fill_batch`] with views already drawn: `views = Some((pad, per_image_views))` applies
/// `pad_crop_flip` with `per_image_views[i]` to image `i`; `None` leaves the images as they are.
/// Images are decoded and normalised in parallel.
pub fn fill_batch_with_views(
    ds: &dyn Dataset,
    indices: &[usize],
    mean: &MeanImage,
    views: Option<(usize, &[CropFlipParams])>,
    pixels: &mut [f32],
    labels: &mut [u32],
) -> Result<()> {
    const OP: &str = "fill batch";
    let (height, width) = ds.image_size();
    let size = height * width * CHANNELS;
    if (mean.height, mean.width) != (height, width) || mean.data.len() != size {
        return Err(invalid(
            OP,
            format!(
                "the mean image is {}x{}, the images of `{}` are {height}x{width}",
                mean.height,
                mean.width,
                ds.describe()
            ),
        ));
    }
    let n = indices.len();
    if labels.len() != n || pixels.len() != n * size {
        return Err(invalid(
            OP,
            format!(
                "{n} indices need {n} labels and {} pixel values, got {} and {}",
                n * size,
                labels.len(),
                pixels.len()
            ),
        ));
    }
    if let Some((_, v)) = views {
        if v.len() != n {
            return Err(invalid(
                OP,
                format!("{n} indices but {} augmentation views", v.len()),
            ));
        }
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        return Err(invalid(
            OP,
            format!("index {bad} is past the end of `{}`", ds.describe()),
        ));
    }
    let classes = ds.num_classes();
    pixels
        .par_chunks_mut(size)
        .zip(labels.par_iter_mut())
        .enumerate()
        .try_for_each_init(
            || (vec![0u8; size], vec![0f32; size]),
            |(raw, normalised), (i, (dst, label))| -> Result<()> {
                let index = indices[i];
                let l = ds.load(index, raw)?;
                if l as usize >= classes {
                    return Err(invalid(
                        OP,
                        format!(
                            "image {index} of `{}` has label {l}, not below {classes}",
                            ds.describe()
                        ),
                    ));
                }
                *label = l;
                match views {
                    None => normalise(raw, &mean.data, dst),
                    Some((pad, views)) => {
                        normalise(raw, &mean.data, normalised);
                        pad_crop_flip(normalised, height, width, CHANNELS, pad, views[i], dst);
                    }
                }
                Ok(())
            },
        )
}

/// `dst = raw / 255 - mean`.
fn normalise(raw: &[u8], mean: &[f32], dst: &mut [f32]) {
    for ((d, &p), &m) in dst.iter_mut().zip(raw).zip(mean) {
        *d = p as f32 / 255.0 - m;
    }
}

/// The order of one epoch over `num` images: a Fisher-Yates permutation from a ChaCha8 stream seeded
/// by `(seed, epoch)` when `shuffle`, else `0..num`.
pub fn epoch_order(num: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..num).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, 0x0e0c_4f1e, epoch]));
        for i in (1..num).rev() {
            order.swap(i, below(&mut rng, i + 1));
        }
    }
    order
}

/// Where a run is in its walk through the training set: the epoch and the position in that epoch's
/// order. Saved in checkpoints so a resumed run sees exactly the batches it would have seen.
///
/// Every batch is full: an epoch of `num` images gives `num / batch` batches, and the last
/// `num % batch` images of its order are skipped (the next epoch reshuffles, so they are not the
/// same images every time).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DataCursor {
    pub epoch: u64,
    pub position: usize,
    /// The current epoch's order, kept so a batch does not recompute it.
    #[serde(skip)]
    cache: OrderCache,
}

impl DataCursor {
    /// A cursor at position `position` of epoch `epoch`.
    pub fn new(epoch: u64, position: usize) -> Self {
        DataCursor {
            epoch,
            position,
            cache: OrderCache::default(),
        }
    }

    /// The indices of the next batch of `batch` images of a dataset of `num` images, and the epoch
    /// they belong to; moves past them, into the next epoch when fewer than `batch` remain.
    ///
    /// Panics unless `0 < batch <= num`: the trainer checks its batch size against the dataset
    /// before it starts.
    pub fn next_batch_indices(
        &mut self,
        num: usize,
        batch: usize,
        seed: u64,
        shuffle: bool,
    ) -> (Vec<usize>, u64) {
        assert!(
            batch > 0 && batch <= num,
            "data cursor: a batch of {batch} cannot be drawn from {num} images"
        );
        if self.position + batch > num {
            self.epoch += 1;
            self.position = 0;
        }
        let key = (num, seed, self.epoch, shuffle);
        if self.cache.0.as_ref().map(|(k, _)| *k) != Some(key) {
            self.cache.0 = Some((key, epoch_order(num, seed, self.epoch, shuffle)));
        }
        let order = &self.cache.0.as_ref().expect("just filled").1;
        let indices = order[self.position..self.position + batch].to_vec();
        self.position += batch;
        (indices, self.epoch)
    }
}

type OrderKey = (usize, u64, u64, bool);

/// A memo of one epoch order; invisible to comparisons and serialisation.
#[derive(Clone, Default)]
struct OrderCache(Option<(OrderKey, Vec<usize>)>);

impl PartialEq for OrderCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for OrderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderCache")
    }
}
