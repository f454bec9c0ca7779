//! A batch's labels and images on the device.

use super::loss::check_labels;
use super::{expect_masters, expect_shape};
use crate::backend::{Backend, Element};
use crate::data::device_images::{BatchDraws, DeviceImages};
use crate::error::Result;
use crate::tensor::Tensor;

/// Checks `labels` against `classes` and writes them into `dst` (`[labels.len()]`) as the class
/// indices [`Backend::softmax_cross_entropy`] reads. A plain upload: no host synchronisation.
pub fn upload_labels<B: Backend>(
    be: &B,
    labels: &[u32],
    classes: usize,
    dst: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "upload_labels";
    expect_shape(OP, "labels", dst, &[labels.len()])?;
    check_labels(OP, labels, classes)?;
    let values: Vec<B::Elem> = labels.iter().map(|&l| B::Elem::of(f64::from(l))).collect();
    dst.copy_from_slice(be, &values)
}

/// A batch built on the device from stored images: see [`Backend::image_batch`]. `x` is
/// `[B, H, W, 3]` with `B` the draws' batch and `H x W` the images' size, `mean` `[H, W, 3]`,
/// `labels` `[B]`; the draws were checked when they were filled.
pub fn image_batch<B: Backend>(
    be: &B,
    images: &DeviceImages<B>,
    draws: &BatchDraws<B>,
    mean: &Tensor<B>,
    x: &mut Tensor<B>,
    labels: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "image_batch";
    let (b, h, w) = (draws.batch(), images.height, images.width);
    expect_shape(OP, "x", x, &[b, h, w, 3])?;
    expect_shape(OP, "mean", mean, &[h, w, 3])?;
    expect_shape(OP, "labels", labels, &[b])?;
    expect_masters(be, OP, &[("draws", &draws.table), ("mean", mean)])?;
    be.image_batch(&images.store, images.len(), &draws.table, mean, x, labels)
}
