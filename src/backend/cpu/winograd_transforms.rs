//! The tile transforms of Winograd's F(4x4, 3x3), eight channels at a time in AVX registers.
//!
//! With a 6x6 input tile `d`, a 3x3 filter `g` and a 4x4 output tile `y` (Lavin & Gray, 2015,
//! interpolation points 0, ±1, ±2 and infinity):
//!
//! ```text
//!      [4  0 -5  0  1  0]        [ 1/4     0     0  ]
//!      [0 -4 -4  1  1  0]        [-1/6  -1/6  -1/6  ]        [1  1  1  1  1  0]
//! Bᵀ = [0  4 -4 -1  1  0]    G = [-1/6   1/6  -1/6  ]   Aᵀ = [0  1 -1  2 -2  0]
//!      [0 -2 -1  2  1  0]        [1/24  1/12   1/6  ]        [0  1  1  4  4  0]
//!      [0  2 -1 -2  1  0]        [1/24 -1/12   1/6  ]        [0  1 -1  8 -8  1]
//!      [0  4  0 -5  0  1]        [  0     0     1   ]
//!
//! y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//! ```
//!
//! Every matrix here is a tile of pixels whose entries are vectors of channels, so a transform is
//! the same arithmetic on every channel: NHWC keeps those channels contiguous, and a 256-bit
//! register holds eight of them. A transformed tile is written as 36 planes `xi = 6 u + v`
//! (`plane` elements apart), because each plane is one matrix product of the convolution.
//!
//! The filter-side transforms (`G g Gᵀ` and its adjoint `Gᵀ dU G`) run once per call on the
//! weights: plain scalar code in `winograd.rs`.

// The column passes gather one entry from each row (a transpose): an index loop says that best.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps, _mm_prefetch, _MM_HINT_ET0,
};

use super::conv_avx2::LINE;

/// Channels per register.
pub const LANES: usize = 8;
/// Output pixels along one side of a tile.
pub const OUT: usize = 4;
/// Input pixels along one side of a tile's window (`OUT + 3 - 1`).
pub const WIN: usize = 6;
/// Positions of a transformed tile.
pub const PLANES: usize = WIN * WIN;

/// `Bᵀ d` along one axis, in 12 operations by sharing `d4 - 4 d2`, `d3 - 4 d1`, `d4 - d2` and
/// `d3 - d1` between rows 1-4.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn input_1d(d: [__m256; WIN]) -> [__m256; WIN] {
    let (two, four, five) = (
        _mm256_set1_ps(2.0),
        _mm256_set1_ps(4.0),
        _mm256_set1_ps(5.0),
    );
    let a = _mm256_fnmadd_ps(four, d[2], d[4]);
    let b = _mm256_fnmadd_ps(four, d[1], d[3]);
    let c = _mm256_sub_ps(d[4], d[2]);
    let e = _mm256_sub_ps(d[3], d[1]);
    [
        _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4])),
        _mm256_add_ps(a, b),
        _mm256_sub_ps(a, b),
        _mm256_fmadd_ps(two, e, c),
        _mm256_fnmadd_ps(two, e, c),
        _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `Aᵀ m` along one axis: with `a = m1 + m2`, `b = m1 - m2`, `c = m3 + m4`, `d = m3 - m4`:
/// `[m0 + a + c, b + 2 d, a + 4 c, b + 8 d + m5]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn output_1d(m: [__m256; WIN]) -> [__m256; OUT] {
    let (a, b) = (_mm256_add_ps(m[1], m[2]), _mm256_sub_ps(m[1], m[2]));
    let (c, d) = (_mm256_add_ps(m[3], m[4]), _mm256_sub_ps(m[3], m[4]));
    [
        _mm256_add_ps(_mm256_add_ps(m[0], a), c),
        _mm256_fmadd_ps(_mm256_set1_ps(2.0), d, b),
        _mm256_fmadd_ps(_mm256_set1_ps(4.0), c, a),
        _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), d, b), m[5]),
    ]
}

/// `A g` along one axis (the adjoint of `output_1d`): with `p = g0 + g2`, `q = g1 + g3`,
/// `r = g0 + 4 g2`, `s = 2 g1 + 8 g3`: `[g0, p + q, p - q, r + s, r - s, g3]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn output_adjoint_1d(g: [__m256; OUT]) -> [__m256; WIN] {
    let (p, q) = (_mm256_add_ps(g[0], g[2]), _mm256_add_ps(g[1], g[3]));
    let r = _mm256_fmadd_ps(_mm256_set1_ps(4.0), g[2], g[0]);
    let s = double(_mm256_fmadd_ps(_mm256_set1_ps(4.0), g[3], g[1]));
    [
        g[0],
        _mm256_add_ps(p, q),
        _mm256_sub_ps(p, q),
        _mm256_add_ps(r, s),
        _mm256_sub_ps(r, s),
        g[3],
    ]
}

/// `2 a`, exactly.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn double(a: __m256) -> __m256 {
    _mm256_add_ps(a, a)
}

/// Where one tile lies in an NHWC buffer: its first pixel at element `at`, pixels `pix` elements
/// apart along a row and `row` elements apart down a column, `channels` channels each.
#[derive(Clone, Copy, Debug)]
pub struct TileAt {
    pub at: usize,
    pub row: usize,
    pub pix: usize,
    pub channels: usize,
}

impl TileAt {
    /// One past the last element of the tile's first `rows x cols` pixels.
    fn extent(&self, rows: usize, cols: usize) -> usize {
        self.at + (rows - 1) * self.row + (cols - 1) * self.pix + self.channels
    }
}

/// `V = Bᵀ d B` for the 6x6 input tile `d` at `tile` of `src`, every channel: plane `xi` of channel
/// `c` goes to `v[xi plane + c]`.
///
/// # Safety
/// The CPU must have AVX2 and FMA (callers check once per convolution); `tile.channels` must be a
/// multiple of 8.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn input_tile(src: &[f32], tile: TileAt, v: &mut [f32], plane: usize) {
    assert!(tile.extent(WIN, WIN) <= src.len() && (PLANES - 1) * plane + tile.channels <= v.len());
    let (s, o) = (src.as_ptr(), v.as_mut_ptr());
    for c in (0..tile.channels).step_by(LANES) {
        // SAFETY: pixel (u, v) of the tile is at `at + u row + v pix`, at most `extent - channels`,
        // and `c + 8 <= channels`; the stores stay below `35 plane + channels`: both checked above.
        unsafe {
            let mut db = [[_mm256_setzero_ps(); WIN]; WIN];
            for (u, db_row) in db.iter_mut().enumerate() {
                let p = s.add(tile.at + u * tile.row + c);
                let mut d = [_mm256_setzero_ps(); WIN];
                for (v, value) in d.iter_mut().enumerate() {
                    *value = _mm256_loadu_ps(p.add(v * tile.pix));
                }
                // d B along the row.
                *db_row = input_1d(d);
            }
            for col in 0..WIN {
                // Bᵀ (d B) down the column.
                let mut column = [_mm256_setzero_ps(); WIN];
                for (u, value) in column.iter_mut().enumerate() {
                    *value = db[u][col];
                }
                for (u, value) in input_1d(column).into_iter().enumerate() {
                    _mm256_storeu_ps(o.add((WIN * u + col) * plane + c), value);
                }
            }
        }
    }
}

/// `y = Aᵀ M A` for every channel: plane `xi` of channel `k` at `m[xi plane + k]`; the output
/// tile goes to `tile` of `out`, its first `rows x cols` pixels only (fewer than 4 at the bottom
/// or right edge of an image whose sides are not multiples of 4). With `addend` (laid out as
/// `out`), `y + addend` is stored instead: a residual gradient summed in on the way out.
///
/// # Safety
/// As for [`input_tile`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn output_tile(
    m: &[f32],
    plane: usize,
    out: &mut [f32],
    tile: TileAt,
    rows: usize,
    cols: usize,
    addend: Option<&[f32]>,
) {
    assert!((1..=OUT).contains(&rows) && (1..=OUT).contains(&cols));
    assert!(
        tile.extent(rows, cols) <= out.len() && (PLANES - 1) * plane + tile.channels <= m.len()
    );
    assert!(addend.is_none_or(|a| a.len() == out.len()));
    let (s, o) = (m.as_ptr(), out.as_mut_ptr());
    let add = addend.map(<[f32]>::as_ptr);
    for k in (0..tile.channels).step_by(LANES) {
        // SAFETY: the loads stay below `35 plane + channels`, the stores (and the addend's loads,
        // as long as `out`) within the first `rows x cols` pixels of the tile: checked above.
        unsafe {
            let mut ma = [[_mm256_setzero_ps(); OUT]; WIN];
            for (u, ma_row) in ma.iter_mut().enumerate() {
                let p = s.add(WIN * u * plane + k);
                let mut planes = [_mm256_setzero_ps(); WIN];
                for (v, value) in planes.iter_mut().enumerate() {
                    *value = _mm256_loadu_ps(p.add(v * plane));
                }
                // M A along the row.
                *ma_row = output_1d(planes);
            }
            for b in 0..cols {
                // Aᵀ (M A) down the column.
                let mut column = [_mm256_setzero_ps(); WIN];
                for (u, value) in column.iter_mut().enumerate() {
                    *value = ma[u][b];
                }
                for (a, value) in output_1d(column).into_iter().take(rows).enumerate() {
                    let at = tile.at + a * tile.row + b * tile.pix + k;
                    let value = match add {
                        Some(r) => _mm256_add_ps(value, _mm256_loadu_ps(r.add(at))),
                        None => value,
                    };
                    _mm256_storeu_ps(o.add(at), value);
                }
            }
        }
    }
}

/// Asks for the cache lines of the first `rows x cols` pixels of `tile` in `out` with intent to
/// write (PREFETCHW), so that `output_tile`'s stores later find them in the cache. Only a hint: it
/// changes no data.
pub fn prefetch_for_write(out: &[f32], tile: TileAt, rows: usize, cols: usize) {
    for r in 0..rows {
        let start = tile.at + r * tile.row;
        let end = start + (cols - 1) * tile.pix + tile.channels;
        // Steps of a line from `start` touch every line of the row, the last one up to `LINE - 1`
        // elements past `end` (buffers need not be line-aligned).
        for e in (start..(end + LINE - 1).min(out.len())).step_by(LINE) {
            // SAFETY: a prefetch cannot fault, and `e < out.len()`: the pointer is inside `out`.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(out.as_ptr().add(e).cast::<i8>()) };
        }
    }
}

/// `E = A dY Aᵀ` for every channel, the gradient of `M` from the output tile's gradient `dY` at
/// `tile` of `dy` (its first `rows x cols` pixels; the rest lie outside the image, with zero
/// gradient): plane `xi` of channel `k` goes to `e[xi plane + k]`.
///
/// # Safety
/// As for [`input_tile`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn output_grad_tile(
    dy: &[f32],
    tile: TileAt,
    rows: usize,
    cols: usize,
    e: &mut [f32],
    plane: usize,
) {
    assert!((1..=OUT).contains(&rows) && (1..=OUT).contains(&cols));
    assert!(tile.extent(rows, cols) <= dy.len() && (PLANES - 1) * plane + tile.channels <= e.len());
    let (s, o) = (dy.as_ptr(), e.as_mut_ptr());
    for k in (0..tile.channels).step_by(LANES) {
        // SAFETY: the loads read only the first `rows x cols` pixels, the stores stay below
        // `35 plane + channels`: both checked above.
        unsafe {
            let mut ga = [[_mm256_setzero_ps(); WIN]; OUT];
            for (a, ga_row) in ga.iter_mut().enumerate().take(rows) {
                let mut g = [_mm256_setzero_ps(); OUT];
                for (b, value) in g.iter_mut().enumerate().take(cols) {
                    *value = _mm256_loadu_ps(s.add(tile.at + a * tile.row + b * tile.pix + k));
                }
                // dY Aᵀ along the row.
                *ga_row = output_adjoint_1d(g);
            }
            for col in 0..WIN {
                // A (dY Aᵀ) down the column.
                let mut column = [_mm256_setzero_ps(); OUT];
                for (a, value) in column.iter_mut().enumerate() {
                    *value = ga[a][col];
                }
                for (u, value) in output_adjoint_1d(column).into_iter().enumerate() {
                    _mm256_storeu_ps(o.add((WIN * u + col) * plane + k), value);
                }
            }
        }
    }
}
