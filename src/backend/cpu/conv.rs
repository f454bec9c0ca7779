//! Convolution on the CPU: im2col (NHWC) followed by a GEMM.
//!
//! For a chunk of images, the column matrix has one row per output pixel `(n, p, q)` and one column
//! per `(r, s, c)`: `col[(n,p,q), (r,s,c)] = x[n, p*stride - pad + r, q*stride - pad + s, c]` (zero
//! outside the image). Then, with weights `W` viewed as the row-major `[K, R*S*C]` matrix:
//!
//! - forward:         `Y[(n,p,q), k] = col · Wᵀ`            (Y is NHWC directly)
//! - backward-data:   `dcol = dY · W`, then col2im scatter-adds `dcol` back into `dx`
//! - backward-filter: `dW = dYᵀ · col`, summed over chunks
//!
//! A 1x1 stride-1 unpadded convolution needs no column matrix: `x` itself is `[N*H*W, C]`.
//! Work is split by image chunks across rayon's threads, each chunk running a single-threaded GEMM
//! on a column buffer small enough to stay in cache; a batch too small to split uses one parallel GEMM.
//!
//! On x86-64 with AVX2 and FMA, f32 convolutions whose computed channels (`K`, or `C` for
//! backward-data) come in multiples of 16 take the direct path of `conv_direct` instead, and the
//! 3x3 stride-1 pad-1 ones with both channel counts in multiples of 16 the Winograd path of
//! `winograd`; f64 (the gradient checks' reference) and other shapes stay here.

use rayon::prelude::*;

use super::matmul::{matmul, MatRef, Threads};
use super::CpuBackend;
use crate::backend::{Conv2dGeometry, Element};

/// Column-buffer elements per chunk: about 1 MiB of f32, so the GEMM's operand stays in L2.
const CHUNK_ELEMS: usize = 1 << 18;

/// The sizes of one convolution, from `x: [N,H,W,C]`, `w: [K,R,S,C]`, `y: [N,P,Q,K]`.
#[derive(Clone, Copy, Debug)]
pub struct ConvDims {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub r: usize,
    pub s: usize,
    pub p: usize,
    pub q: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvDims {
    pub fn new(x: &[usize], w: &[usize], y: &[usize], geom: Conv2dGeometry) -> Self {
        ConvDims {
            n: x[0],
            h: x[1],
            w: x[2],
            c: x[3],
            k: w[0],
            r: w[1],
            s: w[2],
            p: y[1],
            q: y[2],
            stride: geom.stride,
            pad: geom.pad,
        }
    }

    pub fn is_pointwise(&self) -> bool {
        self.r == 1 && self.s == 1 && self.stride == 1 && self.pad == 0
    }

    fn rsc(&self) -> usize {
        self.r * self.s * self.c
    }

    fn pq(&self) -> usize {
        self.p * self.q
    }

    fn image_in(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Images per chunk so that a chunk's column matrix is about `CHUNK_ELEMS`, but with at least
    /// one chunk per thread when the batch allows.
    fn images_per_chunk(&self) -> usize {
        let by_cache = (CHUNK_ELEMS / (self.pq() * self.rsc()).max(1)).max(1);
        let by_threads = self.n.div_ceil(rayon::current_num_threads()).max(1);
        by_cache.min(by_threads)
    }

    /// Whether to split the batch across threads (true) or run one multi-threaded GEMM (false).
    fn split_batch(&self) -> bool {
        self.n >= rayon::current_num_threads()
    }

    /// Input index of kernel tap `(r, s)` for output pixel `(p, q)`, or `None` in the padding.
    #[inline]
    fn input_pixel(&self, p: usize, q: usize, r: usize, s: usize) -> Option<usize> {
        let ih = (p * self.stride + r).checked_sub(self.pad)?;
        let iw = (q * self.stride + s).checked_sub(self.pad)?;
        (ih < self.h && iw < self.w).then_some(ih * self.w + iw)
    }
}

/// Fills `col` (rows `(p, q)` of one image, columns `(r, s, c)`) from one NHWC image.
fn im2col_image<T: Element>(d: &ConvDims, image: &[T], col: &mut [T]) {
    let (c, rsc) = (d.c, d.rsc());
    for p in 0..d.p {
        for q in 0..d.q {
            let row = &mut col[(p * d.q + q) * rsc..][..rsc];
            for r in 0..d.r {
                for s in 0..d.s {
                    let dst = &mut row[(r * d.s + s) * c..][..c];
                    match d.input_pixel(p, q, r, s) {
                        Some(pix) => dst.copy_from_slice(&image[pix * c..][..c]),
                        None => dst.fill(T::zero()),
                    }
                }
            }
        }
    }
}

/// Scatter-adds `col` back into one NHWC image gradient (which it first zeroes).
fn col2im_image<T: Element>(d: &ConvDims, col: &[T], image: &mut [T]) {
    let (c, rsc) = (d.c, d.rsc());
    image.fill(T::zero());
    for p in 0..d.p {
        for q in 0..d.q {
            let row = &col[(p * d.q + q) * rsc..][..rsc];
            for r in 0..d.r {
                for s in 0..d.s {
                    if let Some(pix) = d.input_pixel(p, q, r, s) {
                        let src = &row[(r * d.s + s) * c..][..c];
                        for (acc, &v) in image[pix * c..][..c].iter_mut().zip(src) {
                            *acc = *acc + v;
                        }
                    }
                }
            }
        }
    }
}

fn im2col<T: Element>(d: &ConvDims, images: &[T], col: &mut [T]) {
    for (image, col) in images
        .chunks(d.image_in())
        .zip(col.chunks_mut(d.pq() * d.rsc()))
    {
        im2col_image(d, image, col);
    }
}

/// `W` viewed as `[R*S*C, K]` (the transpose of its KRSC storage).
fn weights_t<'a, T>(d: &ConvDims, w: &'a [T]) -> MatRef<'a, T> {
    MatRef::transposed(w, d.rsc(), d.k)
}

/// The direct f32 kernels of `conv_direct`, where the CPU and the shapes allow; false otherwise.
#[cfg(target_arch = "x86_64")]
mod direct {
    use super::super::conv_direct::{self, as_f32, as_f32_mut};
    use super::super::winograd;
    use super::ConvDims;

    /// 1x1 stride-1 convolutions are plain GEMMs on `x` itself: they stay on that path.
    pub fn forward<T: 'static>(d: &ConvDims, x: &[T], w: &[T], y: &mut [T]) -> bool {
        match (as_f32(x), as_f32(w), as_f32_mut(y)) {
            (Some(x), Some(w), Some(y)) if !d.is_pointwise() => {
                winograd::forward(d, x, w, y) || conv_direct::forward(d, x, w, y)
            }
            _ => false,
        }
    }

    pub fn backward_data<T: 'static>(d: &ConvDims, dy: &[T], w: &[T], dx: &mut [T]) -> bool {
        match (as_f32(dy), as_f32(w), as_f32_mut(dx)) {
            (Some(dy), Some(w), Some(dx)) if !d.is_pointwise() => {
                winograd::backward_data(d, dy, w, dx) || conv_direct::backward_data(d, dy, w, dx)
            }
            _ => false,
        }
    }

    /// `dx = backward_data(dy, w) + addend` in one pass, where Winograd takes the shape.
    pub fn backward_data_add<T: 'static>(
        d: &ConvDims,
        dy: &[T],
        w: &[T],
        addend: &[T],
        dx: &mut [T],
    ) -> bool {
        match (as_f32(dy), as_f32(w), as_f32(addend), as_f32_mut(dx)) {
            (Some(dy), Some(w), Some(addend), Some(dx)) => {
                winograd::backward_data_add(d, dy, w, Some(addend), dx)
            }
            _ => false,
        }
    }

    pub fn backward_filter<T: 'static>(d: &ConvDims, x: &[T], dy: &[T], dw: &mut [T]) -> bool {
        match (as_f32(x), as_f32(dy), as_f32_mut(dw)) {
            (Some(x), Some(dy), Some(dw)) if !d.is_pointwise() => {
                winograd::backward_filter(d, x, dy, dw)
                    || conv_direct::backward_filter(d, x, dy, dw)
            }
            _ => false,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod direct {
    use super::ConvDims;

    pub fn forward<T>(_: &ConvDims, _: &[T], _: &[T], _: &mut [T]) -> bool {
        false
    }

    pub fn backward_data<T>(_: &ConvDims, _: &[T], _: &[T], _: &mut [T]) -> bool {
        false
    }

    pub fn backward_data_add<T>(_: &ConvDims, _: &[T], _: &[T], _: &[T], _: &mut [T]) -> bool {
        false
    }

    pub fn backward_filter<T>(_: &ConvDims, _: &[T], _: &[T], _: &mut [T]) -> bool {
        false
    }
}

impl<T: Element> CpuBackend<T> {
    pub(super) fn conv_forward(&self, d: &ConvDims, x: &[T], w: &[T], y: &mut [T]) {
        if direct::forward(d, x, w, y) {
            return;
        }
        if d.is_pointwise() {
            let rows = d.n * d.h * d.w;
            return matmul(
                MatRef::row_major(x, rows, d.c),
                weights_t(d, w),
                y,
                false,
                Threads::Parallel,
            );
        }
        let (pq, rsc) = (d.pq(), d.rsc());
        let chunk = d.images_per_chunk();
        let run = |x_chunk: &[T], y_chunk: &mut [T], threads| {
            let rows = y_chunk.len() / d.k;
            self.with_workspace(rows * rsc, |col| {
                im2col(d, x_chunk, col);
                matmul(
                    MatRef::row_major(col, rows, rsc),
                    weights_t(d, w),
                    y_chunk,
                    false,
                    threads,
                );
            });
        };
        if d.split_batch() {
            x.par_chunks(chunk * d.image_in())
                .zip(y.par_chunks_mut(chunk * pq * d.k))
                .for_each(|(xc, yc)| run(xc, yc, Threads::Serial));
        } else {
            x.chunks(chunk * d.image_in())
                .zip(y.chunks_mut(chunk * pq * d.k))
                .for_each(|(xc, yc)| run(xc, yc, Threads::Parallel));
        }
    }

    /// `dx = conv_backward_data(dy, w) + addend` in one pass where a kernel fuses the sum; false
    /// (nothing written) otherwise.
    pub(super) fn conv_backward_data_add(
        &self,
        d: &ConvDims,
        dy: &[T],
        w: &[T],
        addend: &[T],
        dx: &mut [T],
    ) -> bool {
        direct::backward_data_add(d, dy, w, addend, dx)
    }

    pub(super) fn conv_backward_data(&self, d: &ConvDims, dy: &[T], w: &[T], dx: &mut [T]) {
        if direct::backward_data(d, dy, w, dx) {
            return;
        }
        let w_mat = MatRef::row_major(w, d.k, d.rsc());
        if d.is_pointwise() {
            let rows = d.n * d.h * d.w;
            return matmul(
                MatRef::row_major(dy, rows, d.k),
                w_mat,
                dx,
                false,
                Threads::Parallel,
            );
        }
        let (pq, rsc) = (d.pq(), d.rsc());
        let chunk = d.images_per_chunk();
        let run = |dy_chunk: &[T], dx_chunk: &mut [T], threads| {
            let rows = dy_chunk.len() / d.k;
            self.with_workspace(rows * rsc, |dcol| {
                matmul(
                    MatRef::row_major(dy_chunk, rows, d.k),
                    w_mat,
                    dcol,
                    false,
                    threads,
                );
                for (image, col) in dx_chunk.chunks_mut(d.image_in()).zip(dcol.chunks(pq * rsc)) {
                    col2im_image(d, col, image);
                }
            });
        };
        if d.split_batch() {
            dy.par_chunks(chunk * pq * d.k)
                .zip(dx.par_chunks_mut(chunk * d.image_in()))
                .for_each(|(dyc, dxc)| run(dyc, dxc, Threads::Serial));
        } else {
            dy.chunks(chunk * pq * d.k)
                .zip(dx.chunks_mut(chunk * d.image_in()))
                .for_each(|(dyc, dxc)| run(dyc, dxc, Threads::Parallel));
        }
    }

    pub(super) fn conv_backward_filter(&self, d: &ConvDims, x: &[T], dy: &[T], dw: &mut [T]) {
        if direct::backward_filter(d, x, dy, dw) {
            return;
        }
        let (pq, rsc, k) = (d.pq(), d.rsc(), d.k);
        // dW[K, RSC] += dY_chunkᵀ · col_chunk, for one chunk of images.
        let accumulate_chunk =
            |x_chunk: &[T], dy_chunk: &[T], acc: &mut [T], first: bool, threads| {
                let rows = dy_chunk.len() / k;
                let dy_t = MatRef::transposed(dy_chunk, k, rows);
                if d.is_pointwise() {
                    matmul(
                        dy_t,
                        MatRef::row_major(x_chunk, rows, rsc),
                        acc,
                        !first,
                        threads,
                    );
                } else {
                    self.with_workspace(rows * rsc, |col| {
                        im2col(d, x_chunk, col);
                        matmul(
                            dy_t,
                            MatRef::row_major(col, rows, rsc),
                            acc,
                            !first,
                            threads,
                        );
                    });
                }
            };
        let chunk = if d.is_pointwise() {
            d.n
        } else {
            d.images_per_chunk()
        };
        // The images of group `g` accumulate into their own partial dW, chunk by chunk.
        let accumulate_group = |images: std::ops::Range<usize>, acc: &mut [T], threads| {
            let mut first = true;
            let mut start = images.start;
            while start < images.end {
                let end = (start + chunk).min(images.end);
                let xc = &x[start * d.image_in()..end * d.image_in()];
                let dyc = &dy[start * pq * k..end * pq * k];
                accumulate_chunk(xc, dyc, acc, first, threads);
                first = false;
                start = end;
            }
        };
        if !d.split_batch() {
            return accumulate_group(0..d.n, dw, Threads::Parallel);
        }
        // A fixed number of groups, summed in a fixed order: the result does not depend on how
        // rayon schedules the work, which keeps training bit-reproducible for a given thread count.
        let groups = rayon::current_num_threads().min(d.n);
        let partials: Vec<Vec<T>> = (0..groups)
            .into_par_iter()
            .map(|g| {
                let mut acc = vec![T::zero(); k * rsc];
                accumulate_group(
                    g * d.n / groups..(g + 1) * d.n / groups,
                    &mut acc,
                    Threads::Serial,
                );
                acc
            })
            .collect();
        dw.copy_from_slice(&partials[0]);
        for partial in &partials[1..] {
            dw.iter_mut().zip(partial).for_each(|(a, &b)| *a = *a + b);
        }
    }
}
