//! Batch norm over NHWC activations viewed as `[M, C]` with `M = N H W`.
//!
//! Forward (training): `mean_c = 1/M sum x`, `var_c = 1/M sum (x - mean_c)^2` (two passes, for
//! accuracy), `inv_std_c = 1/sqrt(var_c + eps)`, `y = gamma_c (x - mean_c) inv_std_c + beta_c`,
//! then `max(y, 0)` if fused with ReLU. Running statistics: `r = (1 - m) r + m stat`, with the unbiased
//! variance `var_c M/(M-1)`.
//!
//! Backward: `g = dy [y > 0]` (or `dy`), `xhat = (x - mean) inv_std`, `dbeta = sum g`,
//! `dgamma = sum g xhat`, `dx = gamma inv_std / M (M g - dbeta - xhat dgamma)`.
//!
//! Channel sums are accumulated in f64 over fixed row blocks combined in order (deterministic).

use rayon::prelude::*;

use crate::backend::{BatchNormConfig, Element};

/// Rows per parallel block for the channel reductions and the elementwise passes.
const ROWS_PER_BLOCK: usize = 1024;

/// Per-channel sums over all rows of `f(row_values, acc)`, where `acc` holds `width` sums in `T`
/// (so the inner loop vectorises). Each block of rows sums in `T`, the blocks are combined in f64 in
/// a fixed order: accurate (a block is short) and deterministic.
fn reduce_rows<T: Element>(
    x: &[T],
    c: usize,
    width: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<f64> {
    let rows = x.len() / c;
    let blocks: Vec<Vec<T>> = (0..rows.div_ceil(ROWS_PER_BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![T::zero(); width];
            for row in b * ROWS_PER_BLOCK..((b + 1) * ROWS_PER_BLOCK).min(rows) {
                f(row, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for block in blocks {
        total.iter_mut().zip(block).for_each(|(t, b)| *t += b.f64());
    }
    total
}

#[allow(clippy::too_many_arguments)]
pub fn forward_train<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    save_mean: &mut [T],
    save_inv_std: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    cfg: BatchNormConfig,
) {
    let c = gamma.len();
    let m = (x.len() / c) as f64;
    let sums = reduce_rows(x, c, c, |row, acc| {
        for (a, &v) in acc.iter_mut().zip(&x[row * c..][..c]) {
            *a = *a + v;
        }
    });
    let mean: Vec<f64> = sums.iter().map(|s| s / m).collect();
    let mean_t: Vec<T> = mean.iter().map(|&v| T::of(v)).collect();
    let sq = reduce_rows(x, c, c, |row, acc| {
        for ((a, &v), &mu) in acc.iter_mut().zip(&x[row * c..][..c]).zip(&mean_t) {
            let d = v - mu;
            *a = *a + d * d;
        }
    });
    let momentum = cfg.momentum;
    for ch in 0..c {
        let var = sq[ch] / m;
        save_mean[ch] = T::of(mean[ch]);
        save_inv_std[ch] = T::of(1.0 / (var + cfg.eps).sqrt());
        running_mean[ch] = T::of((1.0 - momentum) * running_mean[ch].f64() + momentum * mean[ch]);
        let unbiased = var * m / (m - 1.0);
        running_var[ch] = T::of((1.0 - momentum) * running_var[ch].f64() + momentum * unbiased);
    }
    normalize(x, save_mean, save_inv_std, gamma, beta, y, cfg.relu);
}

pub fn forward_infer<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    y: &mut [T],
    cfg: BatchNormConfig,
) {
    let inv_std: Vec<T> = running_var
        .iter()
        .map(|v| T::of(1.0 / (v.f64() + cfg.eps).sqrt()))
        .collect();
    normalize(x, running_mean, &inv_std, gamma, beta, y, cfg.relu);
}

/// `y = gamma (x - mean) inv_std + beta` (then ReLU), as `y = x scale + shift` per channel.
fn normalize<T: Element>(
    x: &[T],
    mean: &[T],
    inv_std: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    relu: bool,
) {
    let c = gamma.len();
    let scale: Vec<T> = gamma.iter().zip(inv_std).map(|(&g, &s)| g * s).collect();
    let shift: Vec<T> = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &mu), &s)| b - mu * s)
        .collect();
    y.par_chunks_mut(ROWS_PER_BLOCK * c)
        .zip(x.par_chunks(ROWS_PER_BLOCK * c))
        .for_each(|(yb, xb)| {
            for (yr, xr) in yb.chunks_mut(c).zip(xb.chunks(c)) {
                for (((yv, &xv), &s), &t) in yr.iter_mut().zip(xr).zip(&scale).zip(&shift) {
                    let v = xv * s + t;
                    *yv = if relu && v < T::zero() { T::zero() } else { v };
                }
            }
        });
}

/// The tensors the backward pass reads.
pub struct BackwardInputs<'a, T> {
    pub x: &'a [T],
    pub y: &'a [T],
    pub dy: &'a [T],
    pub gamma: &'a [T],
    pub mean: &'a [T],
    pub inv_std: &'a [T],
    pub relu: bool,
}

pub fn backward<T: Element>(
    inp: BackwardInputs<'_, T>,
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let BackwardInputs {
        x,
        y,
        dy,
        gamma,
        mean,
        inv_std,
        relu,
    } = inp;
    let c = gamma.len();
    let m = (x.len() / c) as f64;
    let zero = T::zero();
    let grad = |g: T, y: T| if relu && y <= zero { zero } else { g };
    // acc[..c] = sum g, acc[c..] = sum g (x - mean); the second times inv_std is sum g xhat.
    let sums = reduce_rows(x, c, 2 * c, |row, acc| {
        let (sum_g, sum_gx) = acc.split_at_mut(c);
        let r = row * c..(row + 1) * c;
        for ch in 0..c {
            let i = r.start + ch;
            let g = grad(dy[i], y[i]);
            sum_g[ch] = sum_g[ch] + g;
            sum_gx[ch] = sum_gx[ch] + g * (x[i] - mean[ch]);
        }
    });
    // dx = gamma inv_std / M (M g - dbeta - xhat dgamma) = k1 g - k2 (x - mean) - k0 per channel.
    let mut k0 = vec![zero; c];
    let mut k1 = vec![zero; c];
    let mut k2 = vec![zero; c];
    for ch in 0..c {
        let inv = inv_std[ch].f64();
        let (db, dg) = (sums[ch], sums[c + ch] * inv);
        dbeta[ch] = T::of(db);
        dgamma[ch] = T::of(dg);
        let coef = gamma[ch].f64() * inv / m;
        k0[ch] = T::of(coef * db);
        k1[ch] = T::of(coef * m);
        k2[ch] = T::of(coef * dg * inv);
    }
    dx.par_chunks_mut(ROWS_PER_BLOCK * c)
        .enumerate()
        .for_each(|(b, dxb)| {
            let base = b * ROWS_PER_BLOCK * c;
            for (r, dx_row) in dxb.chunks_mut(c).enumerate() {
                let i0 = base + r * c;
                for ch in 0..c {
                    let i = i0 + ch;
                    let g = grad(dy[i], y[i]);
                    dx_row[ch] = k1[ch] * g - k2[ch] * (x[i] - mean[ch]) - k0[ch];
                }
            }
        });
}
