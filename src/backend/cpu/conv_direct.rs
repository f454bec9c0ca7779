//! Direct f32 convolution on NHWC images with the AVX2 microkernels of [`super::conv_avx2`], used
//! instead of im2col + GEMM whenever the output channels come in multiples of 16.
//!
//! Each image is first copied into a zero-bordered buffer (a few tens of KiB, so it stays in L2), so
//! the kernels never test for padding: output pixel `(a, b)` of a stride-`st` convolution reads the
//! `R x S x C` window at padded pixel `(a st, b st)`, whose `R` kernel rows are each `S C` contiguous
//! elements.
//!
//! - forward: `y[a,b,k] = sum_{r,s,c} xpad[a st + r, b st + s, c] w[k,r,s,c]`, one [`SubConv`].
//! - backward-data: `dx[i,j,c] = sum dy[a,b,k] w[k,r,s,c]` over `a st + r - pad = i`,
//!   `b st + s - pad = j`. The pixels `i` of one residue class `i = phi + st u` all use the taps
//!   `r = phi + pad (mod st)`, and for them `a = u + (phi + pad - r) / st`: a stride-1 convolution
//!   of (padded) `dy` with those taps, flipped. So backward-data is `st^2` forward-like [`SubConv`]s
//!   writing interleaved pixels of `dx` (for stride 1: one, the flipped-kernel convolution).
//! - backward-filter: rank-1 updates over pixels, in `conv_filter`.

use std::any::TypeId;

use rayon::prelude::*;

use super::conv::ConvDims;
use super::conv_avx2::{Prefetch, Window, KB};
pub use super::conv_filter::backward_filter;
use super::conv_pass::{PadSpec, PassGeometry, SubConv};

/// Whether this path takes the convolution: `blocked` (the channel count the kernels produce 16
/// at a time) a multiple of 16, no empty dimension, and a CPU with AVX2 and FMA (checked at run
/// time: the binary may run elsewhere).
pub fn applies(d: &ConvDims, blocked: usize) -> bool {
    let dims = [d.n, d.h, d.w, d.c, d.k, d.r, d.s, d.p, d.q, d.stride];
    blocked % KB == 0
        && dims.iter().all(|&v| v > 0)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// `s` as `&[f32]` when `T` is f32.
pub fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: `T` is `f32`, so this is the same slice under its own type.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) })
}

/// `s` as `&mut [f32]` when `T` is f32.
pub fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: `T` is `f32`, so this is the same slice under its own type (and the same unique borrow).
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) })
}

/// Packs `w[k, r, s, c]` (KRSC) as `[k / 16][r][s][c][16]` for [`SubConv`].
fn pack_forward(d: &ConvDims, w: &[f32]) -> Vec<f32> {
    let rsc = d.r * d.s * d.c;
    let mut packed = vec![0.0; d.k * rsc];
    for (kb, block) in packed.chunks_exact_mut(rsc * KB).enumerate() {
        for (i, taps) in block.chunks_exact_mut(KB).enumerate() {
            for (kk, v) in taps.iter_mut().enumerate() {
                *v = w[(kb * KB + kk) * rsc + i];
            }
        }
    }
    packed
}

/// The zero-bordered input of the forward pass and of backward-filter.
pub fn input_padding(d: &ConvDims) -> PadSpec {
    PadSpec {
        h: d.h,
        w: d.w,
        c: d.c,
        top: d.pad,
        left: d.pad,
        rows: d.h + 2 * d.pad,
        cols: d.w + 2 * d.pad,
    }
}

/// `y = conv(x, w)`; false (nothing written) when this path does not apply.
pub fn forward(d: &ConvDims, x: &[f32], w: &[f32], y: &mut [f32]) -> bool {
    if !applies(d, d.k) {
        return false;
    }
    let pad = input_padding(d);
    let plan = SubConv::new(
        PassGeometry {
            win: Window {
                rows: d.r,
                row_len: d.s * d.c,
                in_row: pad.cols * d.c,
            },
            in_origin: 0,
            in_row: d.stride * pad.cols * d.c,
            in_pix: d.stride * d.c,
            out_rows: d.p,
            out_cols: d.q,
            out_origin: 0,
            out_row: d.q * d.k,
            out_pix: d.k,
            cout: d.k,
        },
        pack_forward(d, w),
    );
    let (image_in, image_out) = (d.h * d.w * d.c, d.p * d.q * d.k);
    y.par_chunks_mut(image_out).enumerate().for_each_init(
        || pad.buffer(),
        |buf, (n, yi)| {
            pad.fill(&x[n * image_in..][..image_in], buf);
            let next = x.get((n + 1) * image_in..(n + 2) * image_in);
            let mut prefetch = Prefetch::new(next.unwrap_or_default(), plan.tiles());
            plan.run(buf, yi, &mut prefetch);
        },
    );
    true
}

/// Along one axis of backward-data, the input pixels `i = phase + stride u` (`u < count`): they
/// receive `dy[u + first + v]` times kernel tap `top - stride v` for `v < taps`.
#[derive(Clone, Copy)]
struct Phase {
    phase: usize,
    count: usize,
    first: isize,
    taps: usize,
    top: usize,
}

/// The phases of one axis (input extent `len`, output extent `out`, kernel `r`), and the zero
/// padding `dy` needs before and after so that every read is in range.
fn phases(
    len: usize,
    out: usize,
    r: usize,
    stride: usize,
    pad: usize,
) -> (Vec<Phase>, usize, usize) {
    let (mut before, mut after) = (0usize, 0usize);
    let mut list = Vec::new();
    for phase in 0..stride.min(len) {
        let count = (len - phase).div_ceil(stride);
        // Taps with `phase + pad - tap` divisible by the stride, largest first.
        let hits = (0..r)
            .rev()
            .filter(|&t| ((phase + pad) as isize - t as isize).rem_euclid(stride as isize) == 0);
        let taps = hits.clone().count();
        let top = hits.clone().next().unwrap_or(0);
        let first = ((phase + pad) as isize - top as isize).div_euclid(stride as isize);
        if taps > 0 {
            let last = first + (count + taps) as isize - 2;
            before = before.max((-first).max(0) as usize);
            after = after.max((last - (out as isize - 1)).max(0) as usize);
        }
        list.push(Phase {
            phase,
            count,
            first,
            taps,
            top,
        });
    }
    (list, before, after)
}

/// `dx = conv_backward_data(dy, w)`; false (nothing written) when this path does not apply.
pub fn backward_data(d: &ConvDims, dy: &[f32], w: &[f32], dx: &mut [f32]) -> bool {
    if !applies(d, d.c) {
        return false;
    }
    let (rows, top, bottom) = phases(d.h, d.p, d.r, d.stride, d.pad);
    let (cols, left, right) = phases(d.w, d.q, d.s, d.stride, d.pad);
    let pad = PadSpec {
        h: d.p,
        w: d.q,
        c: d.k,
        top,
        left,
        rows: top + d.p + bottom,
        cols: left + d.q + right,
    };
    let mut plans = Vec::new();
    for ph in rows.iter().filter(|ph| ph.taps > 0) {
        for pw in cols.iter().filter(|pw| pw.taps > 0) {
            plans.push(backward_data_pass(d, w, &pad, ph, pw));
        }
    }
    // A phase without taps (kernel smaller than the stride) gets no gradient: zero it first.
    let empty = rows
        .iter()
        .chain(&cols)
        .any(|ph| ph.taps == 0 && ph.count > 0);
    let (image_in, image_out) = (d.h * d.w * d.c, d.p * d.q * d.k);
    let tiles = plans.iter().map(SubConv::tiles).sum();
    dx.par_chunks_mut(image_in).enumerate().for_each_init(
        || pad.buffer(),
        |buf, (n, dxi)| {
            if empty {
                dxi.fill(0.0);
            }
            pad.fill(&dy[n * image_out..][..image_out], buf);
            let next = dy.get((n + 1) * image_out..(n + 2) * image_out);
            let mut prefetch = Prefetch::new(next.unwrap_or_default(), tiles);
            for plan in &plans {
                plan.run(buf, dxi, &mut prefetch);
            }
        },
    );
    true
}

/// The pass of backward-data for one row phase and one column phase.
fn backward_data_pass(d: &ConvDims, w: &[f32], pad: &PadSpec, ph: &Phase, pw: &Phase) -> SubConv {
    // Packed `[c / 16][v_r][v_s][k][16]` = `w[k, top_r - stride v_r, top_s - stride v_s, c]`.
    let row_len = pw.taps * d.k;
    let mut weights = vec![0.0; d.c * ph.taps * row_len];
    for (cb, block) in weights.chunks_exact_mut(ph.taps * row_len * KB).enumerate() {
        for (i, lanes) in block.chunks_exact_mut(KB).enumerate() {
            let (vr, rest) = (i / row_len, i % row_len);
            let (vs, k) = (rest / d.k, rest % d.k);
            let (r, s) = (ph.top - d.stride * vr, pw.top - d.stride * vs);
            let src = ((k * d.r + r) * d.s + s) * d.c + cb * KB;
            lanes.copy_from_slice(&w[src..src + KB]);
        }
    }
    let origin_r = (pad.top as isize + ph.first) as usize;
    let origin_c = (pad.left as isize + pw.first) as usize;
    let g = PassGeometry {
        win: Window {
            rows: ph.taps,
            row_len,
            in_row: pad.cols * d.k,
        },
        in_origin: (origin_r * pad.cols + origin_c) * d.k,
        in_row: pad.cols * d.k,
        in_pix: d.k,
        out_rows: ph.count,
        out_cols: pw.count,
        out_origin: (ph.phase * d.w + pw.phase) * d.c,
        out_row: d.stride * d.w * d.c,
        out_pix: d.stride * d.c,
        cout: d.c,
    };
    SubConv::new(g, weights)
}
