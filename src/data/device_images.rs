//! A fixed-size dataset kept on the device, and the per-step table that picks a batch from it.
//!
//! On a GPU the trainer uploads a training split once as bytes ([`DeviceImages::upload`]); every
//! step it then sends only the batch's draws, four numbers per image ([`BatchDraws::fill`]): which
//! image, the crop offset and the mirror bit, drawn on the host from exactly the streams the host
//! path draws from. The device gathers, normalises and augments the batch itself
//! ([`crate::ops::image_batch`]), so the batches, and therefore a run, are the same as on the host
//! path, reproducible and resumable.

use rayon::prelude::*;

use super::augment::CropFlipParams;
use super::batch::CHANNELS;
use super::Dataset;
use crate::backend::{Backend, Element, IMAGE_DRAW_WIDTH};
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

/// Draws hold image indices as floats, exact below 2^24.
const MAX_IMAGES: usize = 1 << 24;

/// Every image of a dataset on the device, with the labels also kept on the host.
pub struct DeviceImages<B: Backend> {
    pub(crate) store: B::ImageStore,
    pub(crate) height: usize,
    pub(crate) width: usize,
    labels: Vec<u32>,
    name: String,
}

impl<B: Backend> DeviceImages<B> {
    /// Reads every image of `ds` (in parallel) and uploads them; checks every label against the
    /// dataset's class count, naming the first image whose label is out of range.
    pub fn upload(be: &B, ds: &dyn Dataset) -> Result<Self> {
        const OP: &str = "upload images";
        let (height, width) = ds.image_size();
        let size = height * width * CHANNELS;
        let count = ds.len();
        if count >= MAX_IMAGES {
            return Err(invalid(
                OP,
                format!(
                    "`{}` holds {count} images; the device keeps at most {MAX_IMAGES}",
                    ds.describe()
                ),
            ));
        }
        let mut pixels = vec![0u8; count * size];
        let mut labels = vec![0u32; count];
        pixels
            .par_chunks_mut(size.max(1))
            .zip(labels.par_iter_mut())
            .enumerate()
            .try_for_each(|(i, (image, label))| -> Result<()> {
                *label = ds.load(i, image)?;
                Ok(())
            })?;
        let classes = ds.num_classes();
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(invalid(
                OP,
                format!(
                    "image {i} of `{}` has label {l}, not below {classes}",
                    ds.describe()
                ),
            ));
        }
        Self::from_bytes(be, &pixels, labels, (height, width), ds.describe())
    }

    /// Images given as bytes, `[labels.len(), height, width, 3]`, named `name` in messages. The
    /// labels are not checked here: the loss turns one out of range into a NaN loss.
    pub fn from_bytes(
        be: &B,
        pixels: &[u8],
        labels: Vec<u32>,
        (height, width): (usize, usize),
        name: String,
    ) -> Result<Self> {
        check_bytes(pixels, &labels, (height, width))?;
        Ok(DeviceImages {
            store: be.upload_images(pixels, &labels)?,
            height,
            width,
            labels,
            name,
        })
    }

    /// Replaces every image and label by as many others of the same size (a streamed batch).
    pub fn refill(&mut self, be: &B, pixels: &[u8], labels: &[u32]) -> Result<()> {
        check_bytes(pixels, labels, (self.height, self.width))?;
        if labels.len() != self.len() {
            return Err(invalid(
                "refill images",
                format!("{} images into a store of {}", labels.len(), self.len()),
            ));
        }
        be.refill_images(&mut self.store, pixels, labels)?;
        self.labels.copy_from_slice(labels);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Every image's label, in dataset order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// What the images came from, for messages.
    pub fn describe(&self) -> &str {
        &self.name
    }
}

fn check_bytes(pixels: &[u8], labels: &[u32], (height, width): (usize, usize)) -> Result<()> {
    if pixels.len() != labels.len() * height * width * CHANNELS {
        return Err(invalid(
            "images",
            format!(
                "{} bytes do not make {} images of {height}x{width}x{CHANNELS}",
                pixels.len(),
                labels.len()
            ),
        ));
    }
    Ok(())
}

/// One batch's draws on the device, `[B, IMAGE_DRAW_WIDTH]`: `(image, dy, dx, mirror, shift)`
/// per sample (see [`Backend::image_batch`]). The tensor
/// stays where it is and is refilled before each step, so a step captured as a graph reads the
/// next batch's draws there.
pub struct BatchDraws<B: Backend> {
    pub(crate) table: Tensor<B>,
    host: Vec<B::Elem>,
}

impl<B: Backend> BatchDraws<B> {
    pub fn new(be: &B, batch: usize) -> Result<Self> {
        Ok(BatchDraws {
            table: Tensor::zeros(be, [batch, IMAGE_DRAW_WIDTH])?,
            host: Vec::with_capacity(batch * IMAGE_DRAW_WIDTH),
        })
    }

    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.table.dims()[0]
    }

    /// Writes the draws of a batch of `indices` into images of `images`, with `views[b]` for
    /// sample `b` (unaugmented without) and no colour shift. Checks that the batch is this table's
    /// size, every index is an image of `images` and every offset leaves part of the image in view.
    pub fn fill(
        &mut self,
        be: &B,
        images: &DeviceImages<B>,
        indices: &[usize],
        views: Option<&[CropFlipParams]>,
    ) -> Result<()> {
        self.fill_shifted(be, images, indices, views, None)
    }

    /// [`BatchDraws::fill`] with the colour shift `shifts[b]` added to sample `b`'s pixels (on the
    /// `[0, 1]` scale, before the mean is subtracted: ImageNet's PCA colour augmentation).
    pub fn fill_shifted(
        &mut self,
        be: &B,
        images: &DeviceImages<B>,
        indices: &[usize],
        views: Option<&[CropFlipParams]>,
        shifts: Option<&[[f32; 3]]>,
    ) -> Result<()> {
        const OP: &str = "batch draws";
        let batch = self.batch();
        if indices.len() != batch
            || views.is_some_and(|v| v.len() != batch)
            || shifts.is_some_and(|s| s.len() != batch)
        {
            return Err(invalid(
                OP,
                format!(
                    "a table of {batch} draws given {} indices, {} views and {} shifts",
                    indices.len(),
                    views.map_or(batch, <[_]>::len),
                    shifts.map_or(batch, <[_]>::len)
                ),
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= images.len()) {
            return Err(invalid(
                OP,
                format!("index {bad} is past the end of `{}`", images.describe()),
            ));
        }
        let (h, w) = (images.height as isize, images.width as isize);
        self.host.clear();
        for (b, &i) in indices.iter().enumerate() {
            let v = views.map_or(CropFlipParams::IDENTITY, |v| v[b]);
            if v.dy.abs() >= h || v.dx.abs() >= w {
                return Err(invalid(
                    OP,
                    format!("offset ({}, {}) leaves a {h}x{w} image", v.dy, v.dx),
                ));
            }
            let [r, g, b_] = shifts.map_or([0.0; 3], |s| s[b]);
            let row: [f64; IMAGE_DRAW_WIDTH] = [
                i as f64,
                v.dy as f64,
                v.dx as f64,
                f64::from(u8::from(v.flip)),
                f64::from(r),
                f64::from(g),
                f64::from(b_),
            ];
            self.host.extend(row.map(B::Elem::of));
        }
        self.table.copy_from_slice(be, &self.host)
    }
}
