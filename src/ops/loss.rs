//! Softmax cross-entropy, its device-side record, and reading it back.

use super::input::upload_labels;
use super::{expect_masters, expect_nonempty, expect_rank2, expect_shape};
use crate::backend::{Backend, LossStats};
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

pub(super) fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l as usize >= classes) {
        Some(bad) => Err(invalid(
            op,
            format!("label {bad} is out of range for {classes} classes"),
        )),
        None => Ok(()),
    }
}

/// The loss on the device: see [`Backend::softmax_cross_entropy`]. `labels` is `[N]`, from
/// [`upload_labels`].
pub fn softmax_cross_entropy_recorded<B: Backend>(
    be: &B,
    logits: &Tensor<B>,
    labels: &Tensor<B>,
    dlogits: &mut Tensor<B>,
    record: &mut B::LossRecord,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    let [n, _] = expect_rank2(OP, "logits", logits)?;
    expect_nonempty(OP, "logits", logits)?;
    if labels.dims() != [n] {
        return Err(invalid(
            OP,
            format!("labels {:?} for a batch of {n}", labels.dims()),
        ));
    }
    expect_shape(OP, "dlogits", dlogits, logits.dims())?;
    expect_masters(be, OP, &[("logits", logits), ("labels", labels)])?;
    be.softmax_cross_entropy(logits, labels, dlogits, record)
}

/// Mean softmax cross-entropy of `logits` against host `labels`, read back at once (one host
/// synchronisation): uploads the labels and runs the device op on a record of its own. For tests
/// and one-off uses; a training step uses [`softmax_cross_entropy_recorded`].
pub fn softmax_cross_entropy<B: Backend>(
    be: &B,
    logits: &Tensor<B>,
    labels: &[u32],
    dlogits: &mut Tensor<B>,
) -> Result<LossStats> {
    const OP: &str = "softmax_cross_entropy";
    let [n, classes] = expect_rank2(OP, "logits", logits)?;
    expect_nonempty(OP, "logits", logits)?;
    if labels.len() != n {
        return Err(invalid(
            OP,
            format!("{} labels for a batch of {n}", labels.len()),
        ));
    }
    check_labels(OP, labels, classes)?;
    expect_shape(OP, "dlogits", dlogits, logits.dims())?;
    let mut on_device = Tensor::zeros(be, [n])?;
    upload_labels(be, labels, classes, &mut on_device)?;
    let mut record = be.loss_record(1)?;
    softmax_cross_entropy_recorded(be, logits, &on_device, dlogits, &mut record)?;
    read_loss_stats(be, &mut record)
}

/// The one step `record` holds, read back (a host synchronisation).
pub fn read_loss_stats<B: Backend>(be: &B, record: &mut B::LossRecord) -> Result<LossStats> {
    let read = be.read_loss_record(record)?;
    match read.steps.as_slice() {
        [one] => Ok(*one),
        steps => Err(invalid(
            "read_loss_stats",
            format!("the record holds {} steps, not one", steps.len()),
        )),
    }
}
