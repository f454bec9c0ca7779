//! Evaluation: top-1 and top-5 error of a network on a dataset split, BN in inference mode.
//!
//! Fixed-size sets are evaluated on one view (the whole image, normalised with the training mean).
//! ImageNet-style folders are evaluated on the views `--crops` names (see
//! [`eval_views`](crate::data::eval_views)): the softmax scores of an image's views are averaged,
//! and the image counts as top-k correct when its label is among the k highest averaged scores.
//! An unreadable test image is skipped with a warning and left out of the error rates.

use serde::Serialize;

use crate::backend::Backend;
use crate::data::batch::{fill_batch, MeanImage};
use crate::data::device_images::{BatchDraws, DeviceImages};
use crate::data::Dataset;
use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::data::eval_views::Crops;
use crate::data::imagenet::{ImageNet, View};
use crate::data::imagenet_augment::CROP;
use crate::error::{Error, Result};
use crate::models::Network;
use crate::nn::Mode;
use crate::tensor::Tensor;
use crate::train::step_graph::GraphedStep;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EvalResult {
    pub top1_err: f64,
    pub top5_err: f64,
    /// Images evaluated.
    pub images: usize,
    /// Unreadable images left out.
    pub skipped: usize,
}

impl EvalResult {
    /// The errors of `top1` and `top5` correct answers out of `images`, none skipped.
    fn of_every_image(top1: usize, top5: usize, images: usize) -> Self {
        let count = images.max(1) as f64;
        EvalResult {
            top1_err: 1.0 - top1 as f64 / count,
            top5_err: 1.0 - top5 as f64 / count,
            images,
            skipped: 0,
        }
    }
}

/// The result of an evaluation whose batches' counts went to `record`: one read, one wait.
fn counted<B: Backend>(be: &B, record: &mut B::LossRecord, images: usize) -> Result<EvalResult> {
    let read = be.read_loss_record(record)?;
    let top1 = read.steps.iter().map(|s| s.top1_correct).sum();
    let top5 = read.steps.iter().map(|s| s.top5_correct).sum();
    Ok(EvalResult::of_every_image(top1, top5, images))
}

/// [`evaluate`] on images kept on the device: each batch is built there
/// ([`ops::image_batch`](crate::ops::image_batch), unaugmented), with the same values as the host
/// builds, so the result is the same. With `graph` (`--cuda-graph on`), the full batches' work
/// (batch, forward, loss) is captured once as a graph on the second batch and replayed for the
/// rest ([`GraphedStep`]); a partial last batch, a new shape, runs eagerly.
pub fn evaluate_on_device<B: Backend<Elem = f32>>(
    be: &B,
    net: &mut Network<B>,
    images: &DeviceImages<B>,
    mean: &Tensor<B>,
    batch: usize,
    graph: bool,
) -> Result<EvalResult> {
    let mut x = Tensor::empty(be)?;
    let mut labels = Tensor::empty(be)?;
    // One table for the full batches, one for a partial last batch.
    let mut tables: Vec<BatchDraws<B>> = Vec::new();
    let indices: Vec<usize> = (0..images.len()).collect();
    // Every batch's counts go to one record, read once at the end: the host waits for the device
    // once an evaluation, not once a batch, and keeps issuing batches meanwhile.
    let batch = batch.max(1);
    let batches = indices.len().div_ceil(batch);
    let mut record = be.loss_record(batches.max(1))?;
    let mut step = GraphedStep::new(be, graph);
    let mut issue_all = || -> Result<()> {
        for chunk in indices.chunks(batch) {
            let n = chunk.len();
            let draws = match tables.iter().position(|t| t.batch() == n) {
                Some(k) => &mut tables[k],
                None => {
                    tables.push(BatchDraws::new(be, n)?);
                    tables.last_mut().expect("just pushed")
                }
            };
            // The draws go to the table's fixed address and the shapes are set (allocating on a
            // change) before the work a graph replays.
            draws.fill(be, images, chunk, None)?;
            x.ensure_shape(be, &[n, images.height, images.width, 3])?;
            labels.ensure_shape(be, &[n])?;
            let draws = &*draws;
            let mut issue = || -> Result<()> {
                crate::ops::image_batch(be, images, draws, mean, &mut x, &mut labels)?;
                net.forward(be, &x, Mode::Eval)?;
                net.loss_recorded(be, &labels, &mut record)
            };
            if n == batch {
                step.run(be, &mut issue)?;
            } else {
                // A new shape: the graph's buffers are about to move.
                step.invalidate(be);
                issue()?;
            }
        }
        Ok(())
    };
    let issued = issue_all();
    step.release(be);
    issued?;
    counted(be, &mut record, images.len())
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
    let mut pixels = vec![0f32; batch * h * w * 3];
    let mut labels = vec![0u32; batch];
    let mut x = Tensor::empty(be)?;
    let mut labels_on_device = Tensor::empty(be)?;
    let indices: Vec<usize> = (0..ds.len()).collect();
    // Every batch's counts go to one record, read at the end: one wait for the device (the uploads
    // leave the host buffers reusable at once).
    let mut record = be.loss_record(indices.len().div_ceil(batch.max(1)).max(1))?;
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
        labels_on_device.ensure_shape(be, &[n])?;
        let classes = net.config.num_classes;
        crate::ops::upload_labels(be, &labels[..n], classes, &mut labels_on_device)?;
        net.loss_recorded(be, &labels_on_device, &mut record)?;
    }
    counted(be, &mut record, ds.len())
}

/// Evaluates `net` on the validation split of `data` with the views of `crops`, decoding `batch`
/// views' worth of images at a time in parallel and running views of one size together, at most
/// `batch` 224x224 views' worth of pixels per forward pass.
pub fn evaluate_folder<B: Backend<Elem = f32>>(
    be: &B,
    net: &mut Network<B>,
    data: &ImageNet,
    mean: &MeanImage,
    crops: Crops,
    batch: usize,
) -> Result<EvalResult> {
    let classes = data.num_classes();
    let images_per_chunk = (batch / crops.views_per_image()).max(1);
    let (mut top1, mut top5, mut evaluated, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    let mut x = Tensor::empty(be)?;
    let indices: Vec<usize> = (0..data.val.len()).collect();
    for chunk in indices.chunks(images_per_chunk) {
        let decoded: Vec<Result<(Vec<View>, u32)>> = chunk
            .par_iter()
            .map(|&i| data.eval_views(i, crops, mean))
            .collect();
        let mut images = Vec::with_capacity(chunk.len());
        for result in decoded {
            match result {
                Ok(views) => images.push(views),
                Err(e) => {
                    eprintln!("warning: skipping an unreadable test image: {e}");
                    skipped += 1;
                }
            }
        }
        // Every view of every image, tagged with its image, grouped by size.
        let mut groups: BTreeMap<(usize, usize), Vec<(usize, &View)>> = BTreeMap::new();
        for (img, (views, _)) in images.iter().enumerate() {
            for v in views {
                groups
                    .entry((v.height, v.width))
                    .or_default()
                    .push((img, v));
            }
        }
        let mut scores = vec![vec![0f64; classes]; images.len()];
        for ((h, w), views) in groups {
            // At most `batch` 224x224 images' worth of pixels per pass, so that the large
            // multiscale views do not multiply the memory a pass needs.
            let per_pass = (batch * CROP * CROP / (h * w)).max(1);
            for part in views.chunks(per_pass) {
                let mut pixels = Vec::with_capacity(part.len() * h * w * 3);
                for (_, v) in part {
                    pixels.extend_from_slice(&v.data);
                }
                x.ensure_shape(be, &[part.len(), h, w, 3])?;
                x.copy_from_slice(be, &pixels)?;
                let logits = net.forward(be, &x, Mode::Eval)?.to_vec(be)?;
                for ((img, _), row) in part.iter().zip(logits.chunks_exact(classes)) {
                    add_softmax(row, &mut scores[*img]);
                }
            }
        }
        for ((_, label), score) in images.iter().zip(&scores) {
            let rank = rank_of(score, *label as usize);
            top1 += (rank < 1) as usize;
            top5 += (rank < 5) as usize;
            evaluated += 1;
        }
    }
    if evaluated == 0 {
        return Err(Error::Data {
            path: data.val.dir.clone(),
            message: "no readable image in the validation split".into(),
        });
    }
    let n = evaluated as f64;
    Ok(EvalResult {
        top1_err: 1.0 - top1 as f64 / n,
        top5_err: 1.0 - top5 as f64 / n,
        images: evaluated,
        skipped,
    })
}

/// Adds `softmax(logits)` to `sum`: `exp(z_i - max z) / sum_j exp(z_j - max z)`, in f64.
pub fn add_softmax(logits: &[f32], sum: &mut [f64]) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
    let exps: Vec<f64> = logits.iter().map(|&z| (z as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    for (s, e) in sum.iter_mut().zip(exps) {
        *s += e / total;
    }
}

/// How many classes score strictly higher than `label` (0: top-1 correct; below 5: top-5 correct).
pub fn rank_of(scores: &[f64], label: usize) -> usize {
    scores.iter().filter(|&&s| s > scores[label]).count()
}
