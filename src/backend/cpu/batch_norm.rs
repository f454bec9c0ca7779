//! Batch norm over NHWC activations viewed as `[M, C]` with `M = N H W`.
//!
//! Forward (training): `mean_c = 1/M sum x`, `var_c = 1/M sum (x - mean_c)^2`, `inv_std_c =
//! 1/sqrt(var_c + eps)`, `y = gamma_c (x - mean_c) inv_std_c + beta_c`, then `max(y, 0)` if fused
//! with ReLU. Running statistics: `r = (1 - m) r + m stat`, with the unbiased variance `var_c M/(M-1)`.
//! At the end of a residual block the shortcut is added before the ReLU, `max(y + residual, 0)`,
//! in the same pass (`y` itself is never stored).
//!
//! Backward: `g = dy [y > 0]` (or `dy`), `xhat = (x - mean) inv_std`, `dbeta = sum g`,
//! `dgamma = sum g xhat`, `dx = gamma inv_std / M (M g - dbeta - xhat dgamma)`. The mask `y > 0`
//! is taken as `x scale + shift > 0`, the very value forward clamped (same `scale` and `shift`,
//! same rounding), so backward reads `x` and `dy` but never `y`: a third less memory traffic.
//!
//! Every pass walks fixed blocks of rows in parallel. Channel sums are accumulated in `T` within a
//! block and the blocks combined in f64 in block order: accurate (a block is short) and
//! deterministic (the partition depends only on the shape). Within a block, rows are processed as
//! fixed-width channel pieces (`LANES` channels, when `C` is a multiple of it) so that every inner
//! loop has a constant trip count and compiles to whole vector operations.

use rayon::prelude::*;

use super::bn_rows::{fold_rows, RowStep, LANES};
use super::bn_stats::{block_moments, combine_moments, BlockMoments};
use crate::backend::{BatchNormConfig, Element};

/// Rows per parallel block: 1024 rows of 16 f32 channels are 64 KiB, so a block stays in L2 between
/// the two passes the statistics make over it.
const ROWS_PER_BLOCK: usize = 1024;

/// Training-mode forward into `y`; with `residual`, `y` gets `BN(x) + residual` (then the ReLU).
#[allow(clippy::too_many_arguments)]
pub fn forward_train<T: Element>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    residual: Option<&[T]>,
    y: &mut [T],
    save_mean: &mut [T],
    save_inv_std: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    cfg: BatchNormConfig,
) {
    let c = gamma.len();
    let m = (x.len() / c) as f64;
    let blocks: Vec<BlockMoments<T>> = x
        .par_chunks(ROWS_PER_BLOCK * c)
        .map(|xb| block_moments(xb, c))
        .collect();
    let (mean, var) = combine_moments(&blocks, c);
    let momentum = cfg.momentum;
    for ch in 0..c {
        save_mean[ch] = T::of(mean[ch]);
        save_inv_std[ch] = T::of(1.0 / (var[ch] + cfg.eps).sqrt());
        running_mean[ch] = T::of((1.0 - momentum) * running_mean[ch].f64() + momentum * mean[ch]);
        let unbiased = var[ch] * m / (m - 1.0);
        running_var[ch] = T::of((1.0 - momentum) * running_var[ch].f64() + momentum * unbiased);
    }
    let affine = Affine::new(save_mean, save_inv_std, gamma, beta);
    normalize(x, &affine, residual, y, cfg.relu);
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
    let affine = Affine::new(running_mean, &inv_std, gamma, beta);
    normalize(x, &affine, None, y, cfg.relu);
}

/// `gamma (x - mean) inv_std + beta` as `x scale + shift`, per channel.
struct Affine<T> {
    scale: Vec<T>,
    shift: Vec<T>,
}

impl<T: Element> Affine<T> {
    fn new(mean: &[T], inv_std: &[T], gamma: &[T], beta: &[T]) -> Self {
        let scale: Vec<T> = gamma.iter().zip(inv_std).map(|(&g, &s)| g * s).collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &mu), &s)| b - mu * s)
            .collect();
        Affine { scale, shift }
    }
}

/// `y = x scale + shift` (plus `residual`, if given), then ReLU when `relu`.
fn normalize<T: Element>(
    x: &[T],
    affine: &Affine<T>,
    residual: Option<&[T]>,
    y: &mut [T],
    relu: bool,
) {
    let c = affine.scale.len();
    let len = ROWS_PER_BLOCK * c;
    y.par_chunks_mut(len).enumerate().for_each(|(b, yb)| {
        let rows = b * len..b * len + yb.len();
        let xb = &x[rows.clone()];
        let rb = residual.map_or(&[][..], |r| &r[rows]);
        match (c % LANES == 0, relu, residual.is_some()) {
            (true, true, true) => normalize_block::<T, LANES, true, true>(xb, rb, yb, affine),
            (true, true, false) => normalize_block::<T, LANES, true, false>(xb, rb, yb, affine),
            (true, false, true) => normalize_block::<T, LANES, false, true>(xb, rb, yb, affine),
            (true, false, false) => normalize_block::<T, LANES, false, false>(xb, rb, yb, affine),
            (false, true, true) => normalize_block::<T, 1, true, true>(xb, rb, yb, affine),
            (false, true, false) => normalize_block::<T, 1, true, false>(xb, rb, yb, affine),
            (false, false, true) => normalize_block::<T, 1, false, true>(xb, rb, yb, affine),
            (false, false, false) => normalize_block::<T, 1, false, false>(xb, rb, yb, affine),
        }
    });
}

/// One block of `normalize`, `W` channels at a time (`W` divides `C`); `r` is the block's residual
/// when `ADD`. Each piece is computed into a local array and stored whole, which keeps the loop in
/// vector registers.
fn normalize_block<T: Element, const W: usize, const RELU: bool, const ADD: bool>(
    x: &[T],
    r: &[T],
    y: &mut [T],
    affine: &Affine<T>,
) {
    let c = affine.scale.len();
    for (row, (yr, xr)) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
        for base in (0..c).step_by(W) {
            let xv = piece::<T, W>(xr, base);
            let s = piece::<T, W>(&affine.scale, base);
            let t = piece::<T, W>(&affine.shift, base);
            let rv = if ADD {
                piece::<T, W>(r, row * c + base)
            } else {
                [T::zero(); W]
            };
            let mut out = [T::zero(); W];
            for i in 0..W {
                let v = xv[i] * s[i] + t[i];
                // The sum rounds exactly as `add_forward(y, residual)` would.
                let v = if ADD { v + rv[i] } else { v };
                out[i] = if RELU && v < T::zero() { T::zero() } else { v };
            }
            yr[base..base + W].copy_from_slice(&out);
        }
    }
}

/// `s[base .. base + W]` as an array (its length known to the compiler).
#[inline(always)]
fn piece<T: Element, const W: usize>(s: &[T], base: usize) -> [T; W] {
    s[base..base + W].try_into().expect("a piece of W elements")
}

/// The tensors the backward pass reads.
pub struct BackwardInputs<'a, T> {
    pub x: &'a [T],
    pub dy: &'a [T],
    pub gamma: &'a [T],
    /// The forward's shift, for the ReLU's mask.
    pub beta: &'a [T],
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
        dy,
        gamma,
        beta,
        mean,
        inv_std,
        relu,
    } = inp;
    let c = gamma.len();
    let m = (x.len() / c) as f64;
    let len = ROWS_PER_BLOCK * c;
    let affine = Affine::new(mean, inv_std, gamma, beta);
    // Per block: [sum g | sum g (x - mean)]; the second times inv_std is sum g xhat.
    let reduce = |(xb, dyb): (&[T], &[T])| match (c % LANES == 0, relu) {
        (true, true) => grad_sums::<T, LANES, true>(xb, dyb, mean, &affine),
        (true, false) => grad_sums::<T, LANES, false>(xb, dyb, mean, &affine),
        (false, true) => grad_sums::<T, 1, true>(xb, dyb, mean, &affine),
        (false, false) => grad_sums::<T, 1, false>(xb, dyb, mean, &affine),
    };
    let blocks: Vec<Vec<T>> = x
        .par_chunks(len)
        .zip(dy.par_chunks(len))
        .map(reduce)
        .collect();
    let mut sums = vec![0.0f64; 2 * c];
    for block in &blocks {
        sums.iter_mut().zip(block).for_each(|(s, b)| *s += b.f64());
    }
    // dx = gamma inv_std / M (M g - dbeta - xhat dgamma) = k1 g - k2 (x - mean) - k0 per channel.
    let zero = T::zero();
    let (mut k0, mut k1, mut k2) = (vec![zero; c], vec![zero; c], vec![zero; c]);
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
    let k = DxCoefficients {
        mean,
        k0: &k0,
        k1: &k1,
        k2: &k2,
    };
    dx.par_chunks_mut(len).enumerate().for_each(|(b, dxb)| {
        let rows = b * len..b * len + dxb.len();
        let (xb, dyb) = (&x[rows.clone()], &dy[rows]);
        match (c % LANES == 0, relu) {
            (true, true) => dx_block::<T, LANES, true>(xb, dyb, &affine, &k, dxb),
            (true, false) => dx_block::<T, LANES, false>(xb, dyb, &affine, &k, dxb),
            (false, true) => dx_block::<T, 1, true>(xb, dyb, &affine, &k, dxb),
            (false, false) => dx_block::<T, 1, false>(xb, dyb, &affine, &k, dxb),
        }
    });
}

/// `g = dy [x scale + shift > 0]` when `RELU` (forward's `y > 0`), else `dy`.
#[inline(always)]
fn masked<T: Element, const RELU: bool>(dy: T, x: T, scale: T, shift: T) -> T {
    if RELU && x * scale + shift <= T::zero() {
        T::zero()
    } else {
        dy
    }
}

/// One block's `[sum g | sum g (x - mean)]` per channel, summed in `T`, `W` channels at a time.
fn grad_sums<T: Element, const W: usize, const RELU: bool>(
    x: &[T],
    dy: &[T],
    mean: &[T],
    affine: &Affine<T>,
) -> Vec<T> {
    fold_rows::<T, W, 2>(
        x.len(),
        mean.len(),
        &GradTerms::<T, RELU> {
            x,
            dy,
            mean,
            affine,
        },
    )
}

/// The terms `g` and `g (x - mean)` of the backward reductions.
struct GradTerms<'a, T, const RELU: bool> {
    x: &'a [T],
    dy: &'a [T],
    mean: &'a [T],
    affine: &'a Affine<T>,
}

impl<T: Element, const W: usize, const RELU: bool> RowStep<T, W, 2> for GradTerms<'_, T, RELU> {
    #[inline(always)]
    fn step(&self, acc: &mut [[T; W]; 2], o: usize, base: usize) {
        let (xv, dyv) = (&self.x[o..o + W], &self.dy[o..o + W]);
        let mu = &self.mean[base..base + W];
        let s = &self.affine.scale[base..base + W];
        let t = &self.affine.shift[base..base + W];
        for i in 0..W {
            let g = masked::<T, RELU>(dyv[i], xv[i], s[i], t[i]);
            acc[0][i] = acc[0][i] + g;
            acc[1][i] = acc[1][i] + g * (xv[i] - mu[i]);
        }
    }
}

/// The per-channel coefficients of `dx = k1 g - k2 (x - mean) - k0`.
struct DxCoefficients<'a, T> {
    mean: &'a [T],
    k0: &'a [T],
    k1: &'a [T],
    k2: &'a [T],
}

/// One block of `dx`, `W` channels at a time (as `normalize_block`).
fn dx_block<T: Element, const W: usize, const RELU: bool>(
    x: &[T],
    dy: &[T],
    affine: &Affine<T>,
    k: &DxCoefficients<'_, T>,
    dx: &mut [T],
) {
    let c = k.mean.len();
    let rows = dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c).zip(dy.chunks_exact(c)));
    for (dxr, (xr, dyr)) in rows {
        for base in (0..c).step_by(W) {
            let (xv, dyv) = (piece::<T, W>(xr, base), piece::<T, W>(dyr, base));
            let s = piece::<T, W>(&affine.scale, base);
            let t = piece::<T, W>(&affine.shift, base);
            let (mu, k0) = (piece::<T, W>(k.mean, base), piece::<T, W>(k.k0, base));
            let (k1, k2) = (piece::<T, W>(k.k1, base), piece::<T, W>(k.k2, base));
            let mut out = [T::zero(); W];
            for i in 0..W {
                let g = masked::<T, RELU>(dyv[i], xv[i], s[i], t[i]);
                out[i] = k1[i] * g - k2[i] * (xv[i] - mu[i]) - k0[i];
            }
            dxr[base..base + W].copy_from_slice(&out);
        }
    }
}
