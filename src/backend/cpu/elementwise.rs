//! Elementwise ops: residual add (+ReLU) and its backward, the option-A shortcut, the SGD update.

use rayon::prelude::*;

use crate::backend::{Element, SgdConfig};

/// Elements per parallel block for the elementwise passes.
const BLOCK: usize = 1 << 15;

/// `y = a + b`, then `max(y, 0)` when `relu`.
pub fn add<T: Element>(a: &[T], b: &[T], y: &mut [T], relu: bool) {
    if relu {
        add_impl::<T, true>(a, b, y);
    } else {
        add_impl::<T, false>(a, b, y);
    }
}

/// `add` with the ReLU decided at compile time, so the loop body is branch-free and vectorises.
fn add_impl<T: Element, const RELU: bool>(a: &[T], b: &[T], y: &mut [T]) {
    y.par_chunks_mut(BLOCK)
        .zip(a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)))
        .for_each(|(y, (a, b))| {
            for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                let v = a + b;
                *y = if RELU && v < T::zero() { T::zero() } else { v };
            }
        });
}

/// `dsum = dy [y > 0]` with ReLU, `dsum = dy` without.
pub fn add_backward<T: Element>(y: &[T], dy: &[T], dsum: &mut [T], relu: bool) {
    if !relu {
        dsum.copy_from_slice(dy);
        return;
    }
    dsum.par_chunks_mut(BLOCK)
        .zip(y.par_chunks(BLOCK).zip(dy.par_chunks(BLOCK)))
        .for_each(|(d, (y, dy))| {
            for ((d, &y), &g) in d.iter_mut().zip(y).zip(dy) {
                *d = if y > T::zero() { g } else { T::zero() };
            }
        });
}

/// Option A: `y[n,p,q,c] = x[n, p s, q s, c]` for `c < C_in`, 0 for `C_in <= c < C_out`.
pub fn shortcut_a_forward<T: Element>(
    x: &[T],
    xd: [usize; 4],
    y: &mut [T],
    yd: [usize; 4],
    stride: usize,
) {
    let [_, h, w, cin] = xd;
    let [_, p, q, cout] = yd;
    y.par_chunks_mut(p * q * cout)
        .enumerate()
        .for_each(|(n, y_img)| {
            for (pq, y_pix) in y_img.chunks_mut(cout).enumerate() {
                let (pi, qi) = (pq / q, pq % q);
                let src = ((n * h + pi * stride) * w + qi * stride) * cin;
                y_pix[..cin].copy_from_slice(&x[src..][..cin]);
                y_pix[cin..].fill(T::zero());
            }
        });
}

/// The transpose of option A: `dx[n, p s, q s, c] = dy[n,p,q,c]` for `c < C_in`, 0 elsewhere.
pub fn shortcut_a_backward<T: Element>(
    dy: &[T],
    yd: [usize; 4],
    dx: &mut [T],
    xd: [usize; 4],
    stride: usize,
) {
    let [_, p, q, cout] = yd;
    let [_, h, w, cin] = xd;
    dx.par_chunks_mut(h * w * cin)
        .enumerate()
        .for_each(|(n, dx_img)| {
            dx_img.fill(T::zero());
            for pi in 0..p {
                for qi in 0..q {
                    let dst = (pi * stride * w + qi * stride) * cin;
                    let src = ((n * p + pi) * q + qi) * cout;
                    dx_img[dst..][..cin].copy_from_slice(&dy[src..][..cin]);
                }
            }
        });
}

/// PyTorch's SGD: `v = momentum v + (g + wd w)`, `w -= lr v`.
pub fn sgd_update<T: Element>(w: &mut [T], g: &[T], v: &mut [T], cfg: SgdConfig) {
    let (lr, mom, wd) = (T::of(cfg.lr), T::of(cfg.momentum), T::of(cfg.weight_decay));
    w.par_chunks_mut(BLOCK)
        .zip(v.par_chunks_mut(BLOCK).zip(g.par_chunks(BLOCK)))
        .for_each(|(w, (v, g))| {
            for ((w, v), &g) in w.iter_mut().zip(v).zip(g) {
                *v = mom * *v + (g + wd * *w);
                *w = *w - lr * *v;
            }
        });
}
