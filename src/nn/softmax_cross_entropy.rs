//! The loss: mean softmax cross-entropy over the batch. Its backward is computed together with the
//! loss (`dlogits = (softmax - onehot) / N`, see the backend op), since it costs nothing extra.

use crate::backend::{Backend, LossStats};
use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

pub struct SoftmaxCrossEntropy<B: Backend> {
    dlogits: Tensor<B>,
}

impl<B: Backend> SoftmaxCrossEntropy<B> {
    pub fn new(be: &B) -> Result<Self> {
        Ok(SoftmaxCrossEntropy {
            dlogits: Tensor::empty(be)?,
        })
    }

    /// The loss and top-k counts of `logits` against `labels`; keeps the logit gradient.
    pub fn forward_backward(
        &mut self,
        be: &B,
        logits: &Tensor<B>,
        labels: &[u32],
    ) -> Result<LossStats> {
        self.dlogits.ensure_shape(be, logits.dims())?;
        ops::softmax_cross_entropy(be, logits, labels, &mut self.dlogits)
    }

    /// The same on the device: `labels` from `ops::upload_labels`, the statistics appended to
    /// `record` (read later, see [`crate::backend::Backend::read_loss_record`]).
    pub fn forward_backward_recorded(
        &mut self,
        be: &B,
        logits: &Tensor<B>,
        labels: &Tensor<B>,
        record: &mut B::LossRecord,
    ) -> Result<()> {
        self.dlogits.ensure_shape(be, logits.dims())?;
        ops::softmax_cross_entropy_recorded(be, logits, labels, &mut self.dlogits, record)
    }

    /// `d(loss)/d(logits)` from the last call.
    pub fn logits_grad(&self) -> &Tensor<B> {
        &self.dlogits
    }
}
