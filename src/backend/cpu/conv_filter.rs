//! Backward-filter of the direct f32 convolution:
//! `dw[k,r,s,c] = sum_{n,a,b} dy[n,a,b,k] xpad[n, a st + r, b st + s, c]`, as rank-1 updates over
//! pixels ([`outer_tile`]: 6 window elements x 16 output channels of sums in registers per sweep).
//!
//! The images are split into a fixed number of groups, each summing its own partial gradient in
//! image order; the partials are added in group order. Neither depends on rayon's scheduling nor
//! on the thread count, so the result is bit-reproducible.

use rayon::prelude::*;

use super::conv::ConvDims;
use super::conv_avx2::{outer_tile, PixelBox, Prefetch, KB, MAX_TILE};
use super::conv_direct::{applies, input_padding};
use super::conv_pass::PadSpec;

/// Elements of `dy` and input per block of backward-filter: a block of `FILTER_BLOCK / (C + K)`
/// pixels keeps its `dy` and input rows in L1 while every window element and channel block is
/// swept over them (more pixels measured slower for the wider layers). At least
/// `FILTER_MIN_PIXELS`, so that loading and storing a tile's 12 sums stays a small cost. Small
/// images are grouped several to a block.
const FILTER_BLOCK: usize = 4096;
const FILTER_MIN_PIXELS: usize = 64;

/// Output pixels per backward-filter block.
fn block_pixels(d: &ConvDims) -> usize {
    (FILTER_BLOCK / (d.c + d.k)).max(FILTER_MIN_PIXELS)
}

/// Partial filter gradients per call (fewer for smaller batches): each is a fixed range of images.
const FILTER_GROUPS: usize = 8;

/// `dw = conv_backward_filter(x, dy)`; false (nothing written) when this path does not apply.
pub fn backward_filter(d: &ConvDims, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    if !applies(d, d.k) {
        return false;
    }
    let pad = input_padding(d);
    let sc = d.s * d.c;
    let (image_in, image_out) = (d.h * d.w * d.c, d.p * d.q * d.k);
    let per_block = (block_pixels(d) / (d.p * d.q)).max(1);
    // More groups than threads, so that a thread held up by another process does not hold up the
    // rest: rayon balances them, and the fixed partition keeps the sums reproducible.
    let groups = FILTER_GROUPS.min(d.n);
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            // `acc[r][s c][k]`: RSCK, so a 16-channel block of one window element is contiguous.
            let mut acc = vec![0.0f32; d.r * sc * d.k];
            // `per_block` padded images back to back.
            let mut buf = vec![0.0f32; per_block * pad.len()];
            let (mut n, end) = (g * d.n / groups, (g + 1) * d.n / groups);
            while n < end {
                let m = per_block.min(end - n);
                let images = x[n * image_in..(n + m) * image_in].chunks_exact(image_in);
                for (image, padded) in images.zip(buf.chunks_exact_mut(pad.len())) {
                    pad.fill(image, padded);
                }
                let dy_block = &dy[n * image_out..(n + m) * image_out];
                // The next block's images, to prefetch while this one is computed.
                let next = n + m..(n + 2 * m).min(end);
                let next_in = [
                    &x[next.start * image_in..next.end * image_in],
                    &dy[next.start * image_out..next.end * image_out],
                ];
                filter_block(
                    d,
                    &pad,
                    &buf[..m * pad.len()],
                    dy_block,
                    m,
                    &mut acc,
                    next_in,
                );
                n += m;
            }
            acc
        })
        .collect();
    let mut total = partials[0].clone();
    for partial in &partials[1..] {
        total.iter_mut().zip(partial).for_each(|(a, &b)| *a += b);
    }
    // RSCK -> KRSC.
    for (i, taps) in total.chunks_exact(d.k).enumerate() {
        for (k, &v) in taps.iter().enumerate() {
            dw[k * d.r * sc + i] = v;
        }
    }
    true
}

/// Adds the `dy^T window` products of `images` consecutive images (padded, back to back in `xpad`)
/// into `acc` (RSCK), prefetching the two slices of `next`.
fn filter_block(
    d: &ConvDims,
    pad: &PadSpec,
    xpad: &[f32],
    dy: &[f32],
    images: usize,
    acc: &mut [f32],
    next: [&[f32]; 2],
) {
    let sc = d.s * d.c;
    // The last window element of an image is inside that image's padded copy, and images are
    // `pad.len()` apart: every read below is inside `xpad`, `dy` and `acc`.
    assert!(
        ((d.p - 1) * d.stride + d.r) * pad.cols * d.c <= pad.len()
            && (d.q - 1) * d.stride + d.s <= pad.cols
            && images * pad.len() <= xpad.len()
            && images * d.p * d.q * d.k <= dy.len()
            && d.r * sc * d.k <= acc.len(),
        "filter bounds"
    );
    let block_rows = if images > 1 {
        d.p
    } else {
        (block_pixels(d) / d.q).clamp(1, d.p)
    };
    let tiles = d.p.div_ceil(block_rows) * d.r * sc.div_ceil(MAX_TILE) * (d.k / KB);
    let mut prefetch = next.map(|slice| Prefetch::new(slice, tiles));
    let mut a0 = 0;
    while a0 < d.p {
        let rows = block_rows.min(d.p - a0);
        let pixels = PixelBox {
            images,
            rows,
            cols: d.q,
            x_image: pad.len(),
            x_row: d.stride * pad.cols * d.c,
            x_pix: d.stride * d.c,
            dy_image: d.p * d.q * d.k,
            dy_row: d.q * d.k,
            dy_pix: d.k,
        };
        // Channel block outermost: its 16-channel slice of the block's dy stays in L1 for every
        // tile, and consecutive tiles (t0, t0 + 6) share most of their input cache lines.
        for kb in 0..d.k / KB {
            let dyp = dy[a0 * d.q * d.k + kb * KB..].as_ptr();
            for r in 0..d.r {
                let x_base = (a0 * d.stride + r) * pad.cols * d.c;
                let mut t0 = 0;
                while t0 < sc {
                    let nt = (sc - t0).min(MAX_TILE);
                    let xp = xpad[x_base + t0..].as_ptr();
                    let out = acc[(r * sc + t0) * d.k + kb * KB..].as_mut_ptr();
                    // SAFETY: AVX2/FMA were checked by `backward_filter`; the assert above bounds
                    // every window element (images, rows a0.., kernel row r, elements t0..t0+nt)
                    // and every dy pixel of this block, and acc holds `r s c` rows of `k`.
                    unsafe {
                        match nt {
                            6 => outer_tile::<6>(pixels, xp, dyp, out, d.k),
                            5 => outer_tile::<5>(pixels, xp, dyp, out, d.k),
                            4 => outer_tile::<4>(pixels, xp, dyp, out, d.k),
                            3 => outer_tile::<3>(pixels, xp, dyp, out, d.k),
                            2 => outer_tile::<2>(pixels, xp, dyp, out, d.k),
                            _ => outer_tile::<1>(pixels, xp, dyp, out, d.k),
                        }
                    }
                    prefetch.iter_mut().for_each(Prefetch::step);
                    t0 += nt;
                }
            }
        }
        a0 += rows;
    }
}
