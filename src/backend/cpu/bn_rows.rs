//! Per-channel folds over a block of `[rows, C]` values, shaped for the vectoriser.
//!
//! A fold keeps `N` running sums per channel. Walking the block one `W`-channel piece at a time, the
//! sums of one piece live in fixed-size local arrays (registers, not memory), and even and odd rows
//! go to separate arrays, added at the end, so consecutive rows do not wait on each other's adds.
//! The order of additions depends only on the block's shape: deterministic.

use crate::backend::Element;

/// Channels per piece (one AVX register of f32) when `C` is a multiple of it.
pub const LANES: usize = 8;

/// The terms one row contributes to a fold. A trait rather than a closure so that `step` is always
/// inlined into the loop of [`fold_rows`] (and its sums stay in registers).
pub trait RowStep<T, const W: usize, const N: usize> {
    /// Adds the terms of one piece of one row into `acc[..][0..W]`: `offset` is the piece's first
    /// element in the block, `base` its first channel.
    fn step(&self, acc: &mut [[T; W]; N], offset: usize, base: usize);
}

/// `[N][c]` sums over the rows of a block of `len` values, `W` channels at a time (`W` divides `c`).
pub fn fold_rows<T: Element, const W: usize, const N: usize>(
    len: usize,
    c: usize,
    f: &impl RowStep<T, W, N>,
) -> Vec<T> {
    debug_assert!(c % W == 0);
    let rows = len / c;
    let mut out = vec![T::zero(); N * c];
    for base in (0..c).step_by(W) {
        let mut even = [[T::zero(); W]; N];
        let mut odd = [[T::zero(); W]; N];
        let mut row = 0;
        while row + 1 < rows {
            f.step(&mut even, row * c + base, base);
            f.step(&mut odd, (row + 1) * c + base, base);
            row += 2;
        }
        if row < rows {
            f.step(&mut even, row * c + base, base);
        }
        for (j, (e, o)) in even.iter().zip(&odd).enumerate() {
            for i in 0..W {
                out[j * c + base + i] = e[i] + o[i];
            }
        }
    }
    out
}
