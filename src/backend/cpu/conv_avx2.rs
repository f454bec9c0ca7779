//! The two register-blocked f32 microkernels of the direct convolution (AVX2 + FMA).
//!
//! Both see a convolution window the same way: for kernel row `r`, the window of an output pixel is
//! `row_len` contiguous input elements (`S` taps of `C` channels: neighbouring pixels of an NHWC row
//! are adjacent in memory), and consecutive kernel rows are `in_row` elements apart. Weights are
//! packed so that one tap `t` of one kernel row holds 16 consecutive output channels: a tap costs
//! two vector loads, each input element one broadcast.
//!
//! - [`dot_tile`]: `y[j][0..16] = sum_{r,t} x_j[r in_row + t] w[r][t][0..16]` for `NP <= 6` output
//!   pixels `j`: 12 accumulator registers, 2 for the weights, 1 for the broadcast.
//! - [`outer_tile`]: `dw[t][0..16] += sum_pixels x[pixel + t] dy[pixel][0..16]` for `NT <= 6`
//!   consecutive window elements `t`, summed over a box of pixels: the filter gradient.
//!
//! Callers check `is_x86_feature_detected!("avx2")` and `("fma")` and that every pointer the kernel
//! forms stays inside its buffer.

use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm_prefetch, _MM_HINT_T1,
};

/// Output channels per tile: two AVX registers of f32.
pub const KB: usize = 16;

/// Largest pixel (or window-element) count per tile: `2 * 6` accumulators fill 12 of the 16 registers.
pub const MAX_TILE: usize = 6;

/// The window shape of [`dot_tile`], in f32 elements.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Kernel rows.
    pub rows: usize,
    /// Contiguous elements per kernel row (taps times input channels).
    pub row_len: usize,
    /// Input elements between consecutive kernel rows.
    pub in_row: usize,
}

/// `y[j][0..16] = sum_{r < rows, t < row_len} x[j][r in_row + t] w[(r row_len + t) 16 + 0..16]`.
///
/// # Safety
/// AVX2 and FMA must be available; every `x[j]` must be readable for `(rows - 1) in_row + row_len`
/// elements, `w` for `rows row_len 16`, and every `y[j]` writable for 16.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_tile<const NP: usize>(
    win: Window,
    x: [*const f32; NP],
    w: *const f32,
    y: [*mut f32; NP],
) {
    let mut acc: [[__m256; 2]; NP] = [[_mm256_setzero_ps(); 2]; NP];
    for r in 0..win.rows {
        // SAFETY (whole loop): r < rows and t < row_len keep every offset inside the extents the
        // caller guarantees.
        unsafe {
            let wr = w.add(r * win.row_len * KB);
            let xr = x.map(|p| p.add(r * win.in_row));
            for t in 0..win.row_len {
                let w0 = _mm256_loadu_ps(wr.add(t * KB));
                let w1 = _mm256_loadu_ps(wr.add(t * KB + 8));
                for j in 0..NP {
                    let xv = _mm256_broadcast_ss(&*xr[j].add(t));
                    acc[j][0] = _mm256_fmadd_ps(xv, w0, acc[j][0]);
                    acc[j][1] = _mm256_fmadd_ps(xv, w1, acc[j][1]);
                }
            }
        }
    }
    for j in 0..NP {
        // SAFETY: each y[j] is writable for 16 elements.
        unsafe {
            _mm256_storeu_ps(y[j], acc[j][0]);
            _mm256_storeu_ps(y[j].add(8), acc[j][1]);
        }
    }
}

/// A box of output pixels (`images x rows x cols`) for [`outer_tile`], with the strides of `x` and
/// `dy` over it.
#[derive(Clone, Copy, Debug)]
pub struct PixelBox {
    pub images: usize,
    pub rows: usize,
    pub cols: usize,
    /// `x` elements between the windows of the same pixel of consecutive images, and of vertically
    /// and horizontally adjacent output pixels.
    pub x_image: usize,
    pub x_row: usize,
    pub x_pix: usize,
    /// `dy` elements between the same pixel of consecutive images, and between vertically and
    /// horizontally adjacent output pixels.
    pub dy_image: usize,
    pub dy_row: usize,
    pub dy_pix: usize,
}

/// `dw[t ldw + 0..16] += sum_{i, a, b} x[i x_image + a x_row + b x_pix + t]
/// dy[i dy_image + a dy_row + b dy_pix + 0..16]` for `t < NT`, over the pixel box.
///
/// # Safety
/// AVX2 and FMA must be available; `x` must be readable at every `i x_image + a x_row + b x_pix + t`,
/// `dy` for 16 elements at every `i dy_image + a dy_row + b dy_pix`, and `dw` readable and writable
/// for 16 at every `t ldw`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn outer_tile<const NT: usize>(
    px: PixelBox,
    x: *const f32,
    dy: *const f32,
    dw: *mut f32,
    ldw: usize,
) {
    let mut acc: [[__m256; 2]; NT] = [[_mm256_setzero_ps(); 2]; NT];
    for (i, a) in (0..px.images).flat_map(|i| (0..px.rows).map(move |a| (i, a))) {
        // SAFETY (whole loop): i < images, a < rows, b < cols, t < NT are the offsets the caller
        // guarantees.
        unsafe {
            let xa = x.add(i * px.x_image + a * px.x_row);
            let dya = dy.add(i * px.dy_image + a * px.dy_row);
            for b in 0..px.cols {
                let xb = xa.add(b * px.x_pix);
                let g0 = _mm256_loadu_ps(dya.add(b * px.dy_pix));
                let g1 = _mm256_loadu_ps(dya.add(b * px.dy_pix + 8));
                for (t, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_broadcast_ss(&*xb.add(t));
                    a[0] = _mm256_fmadd_ps(xv, g0, a[0]);
                    a[1] = _mm256_fmadd_ps(xv, g1, a[1]);
                }
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        // SAFETY: dw is readable and writable for 16 elements at t * ldw.
        unsafe {
            let out = dw.add(t * ldw);
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), a[0]));
            _mm256_storeu_ps(out.add(8), _mm256_add_ps(_mm256_loadu_ps(out.add(8)), a[1]));
        }
    }
}

/// Pulls the next image into L2 a few cache lines per tile while the current one is computed, so
/// that copying it into its padded buffer later finds it in cache instead of waiting on memory.
pub struct Prefetch<'a> {
    next: &'a [f32],
    /// The next line to fetch, and how many to fetch per tile so that the image is done in `tiles`.
    line: usize,
    per_tile: usize,
}

/// f32 elements per 64-byte cache line.
pub const LINE: usize = 16;

impl<'a> Prefetch<'a> {
    /// Spreads `next` (possibly empty) over `tiles` calls of [`Self::step`].
    pub fn new(next: &'a [f32], tiles: usize) -> Self {
        Prefetch {
            next,
            line: 0,
            per_tile: next.len().div_ceil(LINE).div_ceil(tiles.max(1)),
        }
    }

    #[inline(always)]
    pub fn step(&mut self) {
        for _ in 0..self.per_tile {
            let Some(p) = self.next.get(self.line * LINE) else {
                return;
            };
            // SAFETY: a prefetch is only a hint and cannot fault; the address is inside `next`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(std::ptr::from_ref(p).cast::<i8>()) };
            self.line += 1;
        }
    }
}
