//! Evaluation: top-1 and top-5 error of a network on a dataset split, single view (the whole image,
//! normalised with the training mean, no augmentation), BN in inference mode.

use serde::Serialize;

use crate::backend::Backend;
use crate::data::batch::{fill_batch, MeanImage};
use crate::data::Dataset;
use crate::error::Result;
use crate::models::Network;
use crate::nn::Mode;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EvalResult {
    pub top1_err: f64,
    pub top5_err: f64,
    pub images: usize,
}

/// Evaluates `net` on every image of `ds`, `batch` images at a time.
pub fn evaluate<B: Backend<Elem = f32>>(
    be: &B,
    net: &mut Network<B>,
    ds: &dyn Dataset,
    mean: &MeanImage,
    batch: usize,
) -> Result<EvalResult> {
    let (h, w) = ds.image_size();
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut pixels = vec![0f32; batch * h * w * 3];
    let mut labels = vec![0u32; batch];
    let mut x = Tensor::empty(be)?;
    let indices: Vec<usize> = (0..ds.len()).collect();
    for chunk in indices.chunks(batch) {
        let n = chunk.len();
        fill_batch(
            ds,
            chunk,
            mean,
            None::<&mut rand_chacha::ChaCha8Rng>,
            &mut pixels[..n * h * w * 3],
            &mut labels[..n],
        )?;
        x.ensure_shape(be, &[n, h, w, 3])?;
        x.copy_from_slice(be, &pixels[..n * h * w * 3])?;
        net.forward(be, &x, Mode::Eval)?;
        let stats = net.loss(be, &labels[..n])?;
        top1 += stats.top1_correct;
        top5 += stats.top5_correct;
    }
    let images = ds.len().max(1) as f64;
    Ok(EvalResult {
        top1_err: 1.0 - top1 as f64 / images,
        top5_err: 1.0 - top5 as f64 / images,
        images: ds.len(),
    })
}
