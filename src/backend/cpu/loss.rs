//! Softmax cross-entropy, mean over the batch, with top-1/top-5 counts.
//!
//! `loss = 1/N sum_n (logsumexp(z_n) - z_n[y_n])`, `dz_n = (softmax(z_n) - onehot(y_n)) / N`.
//! The rank of the label is the number of classes that beat it: a larger logit, or an equal logit at
//! a smaller index (the order a stable sort gives); top-k holds when that rank is below k.

use crate::backend::{Element, LossStats};

pub fn softmax_cross_entropy<T: Element>(
    logits: &[T],
    labels: &[u32],
    dlogits: &mut [T],
    classes: usize,
) -> LossStats {
    let n = labels.len();
    let inv_n = 1.0 / n as f64;
    let mut loss = 0.0;
    let (mut top1, mut top5) = (0, 0);
    for ((z, dz), &label) in logits
        .chunks(classes)
        .zip(dlogits.chunks_mut(classes))
        .zip(labels)
    {
        let label = label as usize;
        let max = z.iter().map(|v| v.f64()).fold(f64::NEG_INFINITY, f64::max);
        let sum_exp: f64 = z.iter().map(|v| (v.f64() - max).exp()).sum();
        let log_sum = max + sum_exp.ln();
        loss += log_sum - z[label].f64();
        for (j, (d, v)) in dz.iter_mut().zip(z).enumerate() {
            let p = (v.f64() - log_sum).exp();
            let target = if j == label { 1.0 } else { 0.0 };
            *d = T::of((p - target) * inv_n);
        }
        let zl = z[label];
        let rank = z
            .iter()
            .enumerate()
            .filter(|&(j, &v)| v > zl || (v == zl && j < label))
            .count();
        top1 += usize::from(rank < 1);
        top5 += usize::from(rank < 5);
    }
    LossStats {
        loss: loss * inv_n,
        top1_correct: top1,
        top5_correct: top5,
    }
}
