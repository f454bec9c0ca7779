//! Pooling over NHWC: global average pooling and max pooling, with their backwards.

use rayon::prelude::*;

use crate::backend::{Element, PoolGeometry};

/// `y[n,c] = 1/(H W) sum_{h,w} x[n,h,w,c]` (summed in f64).
pub fn global_avg_forward<T: Element>(x: &[T], xd: [usize; 4], y: &mut [T]) {
    let [_, h, w, c] = xd;
    let inv = 1.0 / (h * w) as f64;
    y.par_chunks_mut(c)
        .zip(x.par_chunks(h * w * c))
        .for_each(|(y, img)| {
            let mut acc = vec![0.0f64; c];
            for pix in img.chunks(c) {
                acc.iter_mut().zip(pix).for_each(|(a, v)| *a += v.f64());
            }
            y.iter_mut()
                .zip(&acc)
                .for_each(|(y, a)| *y = T::of(a * inv));
        });
}

/// `dx[n,h,w,c] = dy[n,c] / (H W)`.
pub fn global_avg_backward<T: Element>(dy: &[T], dx: &mut [T], xd: [usize; 4]) {
    let [_, h, w, c] = xd;
    let inv = T::of(1.0 / (h * w) as f64);
    dx.par_chunks_mut(h * w * c)
        .zip(dy.par_chunks(c))
        .for_each(|(img, g)| {
            for pix in img.chunks_mut(c) {
                pix.iter_mut().zip(g).for_each(|(d, &g)| *d = g * inv);
            }
        });
}

/// The input pixel `(ih, iw)` of window tap `(i, j)` for output `(p, q)`, if not in the padding.
#[inline]
fn tap(
    geom: PoolGeometry,
    h: usize,
    w: usize,
    p: usize,
    q: usize,
    i: usize,
    j: usize,
) -> Option<(usize, usize)> {
    let ih = (p * geom.stride + i).checked_sub(geom.pad)?;
    let iw = (q * geom.stride + j).checked_sub(geom.pad)?;
    (ih < h && iw < w).then_some((ih, iw))
}

/// The flat input index of the first maximum of the window of output `(n, p, q, c)`.
fn argmax<T: Element>(
    x: &[T],
    xd: [usize; 4],
    geom: PoolGeometry,
    n: usize,
    p: usize,
    q: usize,
    ch: usize,
) -> usize {
    let [_, h, w, c] = xd;
    let mut best: Option<(usize, T)> = None;
    for i in 0..geom.window {
        for j in 0..geom.window {
            if let Some((ih, iw)) = tap(geom, h, w, p, q, i, j) {
                let idx = ((n * h + ih) * w + iw) * c + ch;
                if best.is_none_or(|(_, b)| x[idx] > b) {
                    best = Some((idx, x[idx]));
                }
            }
        }
    }
    // pad < window (checked by ops), so every window holds at least one input pixel.
    best.expect("every pooling window overlaps the input").0
}

pub fn max_forward<T: Element>(
    x: &[T],
    xd: [usize; 4],
    y: &mut [T],
    yd: [usize; 4],
    geom: PoolGeometry,
) {
    let [_, p, q, c] = yd;
    y.par_chunks_mut(p * q * c)
        .enumerate()
        .for_each(|(n, y_img)| {
            for (i, out) in y_img.iter_mut().enumerate() {
                let (pq, ch) = (i / c, i % c);
                *out = x[argmax(x, xd, geom, n, pq / q, pq % q, ch)];
            }
        });
}

/// Each `dy` goes to its window's first maximum; overlapping windows add up. Parallel over images
/// (windows never cross images), sequential within one, so sums are deterministic.
pub fn max_backward<T: Element>(
    x: &[T],
    xd: [usize; 4],
    dy: &[T],
    yd: [usize; 4],
    dx: &mut [T],
    geom: PoolGeometry,
) {
    let [_, h, w, c] = xd;
    let [_, p, q, _] = yd;
    let image = h * w * c;
    dx.par_chunks_mut(image)
        .enumerate()
        .for_each(|(n, dx_img)| {
            dx_img.fill(T::zero());
            for pq in 0..p * q {
                for ch in 0..c {
                    let src = argmax(x, xd, geom, n, pq / q, pq % q, ch) - n * image;
                    dx_img[src] = dx_img[src] + dy[(n * p * q + pq) * c + ch];
                }
            }
        });
}
