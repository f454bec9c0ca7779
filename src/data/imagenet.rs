//! ImageNet-style data: `DIR/train/<class>/*` and `DIR/val/<class>/*` (see [`ImageFolder`]), JPEG or
//! PNG images of any size. A training sample is decoded, given the paper's augmentation
//! ([`imagenet_augment`](super::imagenet_augment)) and normalised to a 224x224x3 view
//! `pixel / 255 + colour shift - mean_image`; a test image gives the views of
//! [`eval_views`](super::eval_views).

use std::path::{Path, PathBuf};

use rand::RngCore;

use super::batch::{MeanImage, CHANNELS};
use super::eval_views::{eval_views, five_crop_corners, Crops, TEST_SIDE};
use super::image::{read_rgb, RgbImage};
use super::image_folder::ImageFolder;
use super::imagenet_augment::{self, CROP};
use super::resize::{resize_crop, shorter_side_size};
use crate::error::Result;

/// The two splits of an ImageNet-style folder.
#[derive(Clone, Debug)]
pub struct ImageNet {
    pub root: PathBuf,
    pub train: ImageFolder,
    /// Labelled with the training split's classes.
    pub val: ImageFolder,
}

/// Which split of an [`ImageNet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderSplit {
    Train,
    Val,
}

/// One normalised view, HWC f32.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl ImageNet {
    /// Scans `root/train` and `root/val`; errors name the folder at fault.
    pub fn open(root: &Path) -> Result<ImageNet> {
        let train = ImageFolder::scan(&root.join("train"))?;
        let mut val = ImageFolder::scan(&root.join("val"))?;
        val.relabel(&train.classes)?;
        Ok(ImageNet {
            root: root.to_path_buf(),
            train,
            val,
        })
    }

    pub fn split(&self, split: FolderSplit) -> &ImageFolder {
        match split {
            FolderSplit::Train => &self.train,
            FolderSplit::Val => &self.val,
        }
    }

    pub fn num_classes(&self) -> usize {
        self.train.classes.len()
    }

    /// Such as `imagenet DIR (1281167 train, 50000 val images, 1000 classes)`.
    pub fn describe(&self) -> String {
        format!(
            "imagenet {} ({} train, {} val images, {} classes)",
            self.root.display(),
            self.train.len(),
            self.val.len(),
            self.num_classes()
        )
    }

    /// The file of image `index` of `split`.
    pub fn path(&self, split: FolderSplit, index: usize) -> &Path {
        &self.split(split).images[index].0
    }

    /// Decodes image `index` of `split`.
    pub fn load(&self, split: FolderSplit, index: usize) -> Result<(RgbImage, u32)> {
        let (path, label) = &self.split(split).images[index];
        Ok((read_rgb(path)?, *label))
    }

    /// Writes the training view of image `index` into `out` (224x224x3 bytes) and returns its label
    /// and the colour shift to add once normalised (see [`normalise_view`]). With `augment` the view
    /// is drawn from `rng` (scale, crop, mirror, PCA colour); without, it is the `center` test view,
    /// unshifted.
    pub fn train_view(
        &self,
        index: usize,
        augment: bool,
        rng: &mut (impl RngCore + ?Sized),
        out: &mut [u8],
    ) -> Result<(u32, [f32; 3])> {
        let (image, label) = self.load(FolderSplit::Train, index)?;
        if !augment {
            out.copy_from_slice(&center_view(&image)?.data);
            return Ok((label, [0.0; 3]));
        }
        let p = imagenet_augment::draw(rng, image.height, image.width);
        let resized = shorter_side_size(image.height, image.width, p.short_side);
        let view = resize_crop(&image, resized, (p.y0, p.x0), (CROP, CROP))?;
        let view = if p.flip {
            super::resize::crop(&view, 0, 0, CROP, CROP, true)
        } else {
            view
        };
        out.copy_from_slice(&view.data);
        Ok((label, p.rgb_shift()))
    }

    /// The normalised test views of image `index` of the validation split, and its label. Views of
    /// the mean image's size subtract it pixel by pixel; the other sizes (multiscale) subtract its
    /// per-channel average.
    pub fn eval_views(
        &self,
        index: usize,
        crops: Crops,
        mean: &MeanImage,
    ) -> Result<(Vec<View>, u32)> {
        let (image, label) = self.load(FolderSplit::Val, index)?;
        Ok((normalise_views(&eval_views(&image, crops)?, mean), label))
    }
}

/// Normalises views for the network: see [`ImageNet::eval_views`].
pub fn normalise_views(views: &[RgbImage], mean: &MeanImage) -> Vec<View> {
    let channel_mean = mean.channel_means();
    views
        .iter()
        .map(|v| {
            let mut data = vec![0f32; v.height * v.width * CHANNELS];
            if (v.height, v.width) == (mean.height, mean.width) {
                normalise_view(&v.data, [0.0; 3], &mean.data, &mut data);
            } else {
                for (d, (i, &p)) in data.iter_mut().zip(v.data.iter().enumerate()) {
                    *d = p as f32 / 255.0 - channel_mean[i % CHANNELS];
                }
            }
            View {
                height: v.height,
                width: v.width,
                data,
            }
        })
        .collect()
}

/// The `center` view: shorter side resized to 256, the central 224x224 crop.
pub fn center_view(image: &RgbImage) -> Result<RgbImage> {
    let resized = shorter_side_size(image.height, image.width, TEST_SIDE);
    let corner = five_crop_corners(resized.0, resized.1, CROP)[4];
    resize_crop(image, resized, corner, (CROP, CROP))
}

/// `out = pixel / 255 + shift[channel] - mean`, HWC.
/// `out = pixel / 255 + shift - mean` over an HWC view's bytes, in this order (the device's
/// `image_batch` does the same roundings, so the two agree bit for bit).
pub fn normalise_view(view: &[u8], shift: [f32; 3], mean: &[f32], out: &mut [f32]) {
    for (((o, &p), &m), c) in out
        .iter_mut()
        .zip(view)
        .zip(mean)
        .zip((0..CHANNELS).cycle())
    {
        *o = p as f32 / 255.0 + shift[c] - m;
    }
}
