//! Batch-norm statistics in one trip through memory: each block of rows computes its own sum and its
//! sum of squares about its own mean (a second, cache-resident pass over the block), and the blocks
//! are merged exactly in f64.
//!
//! For a block `b` of `n_b` rows with sum `s_b`, shift `m_b` (its mean rounded to `T`) and
//! `q_b = sum (x - m_b)^2`, the sum of squares about the global mean `mu = (sum_b s_b) / M` is
//!
//! `sum_b [ q_b + 2 (m_b - mu) (s_b - n_b m_b) + n_b (m_b - mu)^2 ]`
//!
//! (expand `(x - mu)^2 = ((x - m_b) + (m_b - mu))^2`; the middle term corrects for `m_b` being a
//! rounded mean). So the variance keeps the accuracy of a two-pass algorithm (deviations are taken
//! about a mean, never `E[x^2] - E[x]^2`) while `x` is read from memory once.

use super::bn_rows::{fold_rows, RowStep, LANES};
use crate::backend::Element;

/// One block's moments, per channel.
pub struct BlockMoments<T> {
    rows: usize,
    /// `s_b`: the sum of the block's values, in `T`.
    sum: Vec<T>,
    /// `m_b`: the shift the squares were taken about (the block mean, rounded to `T`).
    shift: Vec<T>,
    /// `q_b = sum (x - m_b)^2`, in `T`.
    sq: Vec<T>,
}

/// The moments of one block `x` of rows of `c` channels.
pub fn block_moments<T: Element>(x: &[T], c: usize) -> BlockMoments<T> {
    if c % LANES == 0 {
        block_moments_w::<T, LANES>(x, c)
    } else {
        block_moments_w::<T, 1>(x, c)
    }
}

/// `block_moments`, `W` channels at a time (`W` divides `c`).
fn block_moments_w<T: Element, const W: usize>(x: &[T], c: usize) -> BlockMoments<T> {
    let rows = x.len() / c;
    let sum = fold_rows::<T, W, 1>(x.len(), c, &Sum(x));
    let inv_rows = T::of(1.0 / rows as f64);
    let shift: Vec<T> = sum.iter().map(|&s| s * inv_rows).collect();
    let sq = fold_rows::<T, W, 1>(x.len(), c, &SquaresAbout(x, &shift));
    BlockMoments {
        rows,
        sum,
        shift,
        sq,
    }
}

/// `sum x`.
struct Sum<'a, T>(&'a [T]);

impl<T: Element, const W: usize> RowStep<T, W, 1> for Sum<'_, T> {
    #[inline(always)]
    fn step(&self, acc: &mut [[T; W]; 1], o: usize, _: usize) {
        let xv = &self.0[o..o + W];
        for i in 0..W {
            acc[0][i] = acc[0][i] + xv[i];
        }
    }
}

/// `sum (x - shift)^2`.
struct SquaresAbout<'a, T>(&'a [T], &'a [T]);

impl<T: Element, const W: usize> RowStep<T, W, 1> for SquaresAbout<'_, T> {
    #[inline(always)]
    fn step(&self, acc: &mut [[T; W]; 1], o: usize, base: usize) {
        let (xv, mu) = (&self.0[o..o + W], &self.1[base..base + W]);
        for i in 0..W {
            let d = xv[i] - mu[i];
            acc[0][i] = acc[0][i] + d * d;
        }
    }
}

/// Merges the blocks, in order, into the per-channel mean and biased variance (f64).
pub fn combine_moments<T: Element>(blocks: &[BlockMoments<T>], c: usize) -> (Vec<f64>, Vec<f64>) {
    let total_rows: usize = blocks.iter().map(|b| b.rows).sum();
    let m = total_rows as f64;
    let mut mean = vec![0.0f64; c];
    for b in blocks {
        mean.iter_mut().zip(&b.sum).for_each(|(t, s)| *t += s.f64());
    }
    mean.iter_mut().for_each(|t| *t /= m);
    let mut m2 = vec![0.0f64; c];
    for b in blocks {
        let n = b.rows as f64;
        for ch in 0..c {
            let (s, shift, q) = (b.sum[ch].f64(), b.shift[ch].f64(), b.sq[ch].f64());
            let delta = shift - mean[ch];
            m2[ch] += q + 2.0 * delta * (s - n * shift) + n * delta * delta;
        }
    }
    let var = m2.iter().map(|&v| (v / m).max(0.0)).collect();
    (mean, var)
}
