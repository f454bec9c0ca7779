//! Datasets and the batches the trainer feeds the network.
//!
//! A dataset is a list of labelled RGB images of one size, read by index. The trainer turns them into
//! network inputs: `pixel / 255 - mean_image` (the per-pixel mean of the training split, as the paper
//! does; no division by a standard deviation), NHWC f32, with the paper's augmentation in training.
//!
//! Fixed-size sets (synthetic, CIFAR-10) implement [`Dataset`] and are batched in the trainer's
//! thread pool ([`batch`]). ImageNet-style folders hold images of any size whose views are made by
//! decoding, resizing and cropping: they implement [`loader::TrainSamples`] and are fed by the
//! prefetching [`loader::Loader`]; their test views come from [`eval_views`].

pub mod augment;
pub mod batch;
pub mod bench;
pub mod cifar10;
pub mod device_images;
pub mod eval_views;
pub mod image;
pub mod image_folder;
pub mod imagenet;
pub mod imagenet_augment;
pub mod loader;
pub mod mean_cache;
pub mod resize;
pub mod synthetic;

use std::sync::Arc;

use crate::error::Result;

/// A labelled image collection, read by index. Images are HWC u8 RGB of a fixed size.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes; labels are `0..num_classes`.
    fn num_classes(&self) -> usize;
    /// `(height, width)` of every image.
    fn image_size(&self) -> (usize, usize);
    /// Writes image `index` (HWC RGB, `height * width * 3` bytes) into `out` and returns its label.
    fn load(&self, index: usize, out: &mut [u8]) -> Result<u32>;
    /// A short description for logs, such as `synthetic (50000 train images)`.
    fn describe(&self) -> String;
}

/// The two splits of a dataset.
pub struct Splits {
    pub train: Box<dyn Dataset>,
    pub test: Box<dyn Dataset>,
    /// The name used in run folders and logs: `synthetic`, `cifar10`, ...
    pub name: String,
}

/// The data of a run: fixed-size splits, or an ImageNet-style folder.
pub enum DataSets {
    Fixed(Splits),
    Folders(Arc<imagenet::ImageNet>),
}

impl DataSets {
    /// Images in the training split.
    pub fn train_len(&self) -> usize {
        match self {
            DataSets::Fixed(s) => s.train.len(),
            DataSets::Folders(f) => f.train.len(),
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            DataSets::Fixed(s) => s.train.num_classes(),
            DataSets::Folders(f) => f.num_classes(),
        }
    }

    /// `(height, width)` of a training view.
    pub fn view_size(&self) -> (usize, usize) {
        match self {
            DataSets::Fixed(s) => s.train.image_size(),
            DataSets::Folders(_) => (imagenet_augment::CROP, imagenet_augment::CROP),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DataSets::Fixed(s) => s.train.describe(),
            DataSets::Folders(f) => f.describe(),
        }
    }
}

/// The finaliser of SplitMix64: a bijection on `u64` that scatters nearby inputs far apart.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes several words into one seed: every part changes the result, and the order matters.
pub fn mix_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5eed_da7a_0000_0001, |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// A uniform integer in `0..n` from one 64-bit draw (multiply-shift; the bias, at most `n / 2^64`, is
/// negligible). Written here rather than taken from `rand` so that data orders and images depend only
/// on the generator's raw stream, not on how a `rand` release maps it to ranges.
pub(crate) fn below(rng: &mut (impl rand::RngCore + ?Sized), n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// A uniform `f32` in `[0, 1)` with 24 random bits (see [`below`] for why not `rand`'s).
pub(crate) fn unit_f32(rng: &mut (impl rand::RngCore + ?Sized)) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}
