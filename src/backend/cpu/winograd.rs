//! Winograd F(4x4, 3x3) convolution: the 3x3, stride-1, pad-1 layers (nearly every convolution of
//! a ResNet) in f32, with channel counts in multiples of 16.
//!
//! Each 4x4 block of output pixels (a tile) reads a 6x6 input window `d`. In the transformed domain
//! of `winograd_transforms`, the convolution summed over input channels `c` becomes 36 independent
//! matrix products, one per position `xi` of the 6x6 transformed tile:
//!
//! ```text
//! V[xi][t][c] = (Bᵀ d_t,c B)[xi]          input tiles t
//! U[xi][c][k] = (G g_k,c Gᵀ)[xi]          filters, once per call
//! M[xi][t][k] = sum_c V[xi][t][c] U[xi][c][k]
//! y_t,k       = Aᵀ M[.][t][k] A
//! ```
//!
//! That is 36 multiply-adds per input channel for 16 output pixels where the direct convolution
//! needs 144: 4x fewer. The products run on the direct convolution's register-blocked microkernels
//! (`dot_tile`, `outer_tile`), one plane at a time, over a block of tiles whose transformed input
//! and output stay in the core's caches. (F(2x2, 3x3), 2.25x fewer, measured no faster than the
//! direct convolution at 16 channels here: its transformed tiles are 4x the data they come from,
//! against 2.25x for F(4x4, 3x3), and moving them cost what the products saved.)
//!
//! - backward-data is the same convolution of `dy`, with the filter rotated by 180 degrees and its
//!   channel axes swapped: `dx[i,j,c] = sum_{r,s,k} dy[i+r-1, j+s-1, k] w[k, 2-r, 2-s, c]`.
//! - backward-filter is its adjoint: with `E_t = A dY_t Aᵀ` (the gradient of `M`),
//!   `dU[xi][c][k] = sum_t V[xi][t][c] E[xi][t][k]` and `dw_k,c = Gᵀ dU[.][c][k] G`.
//!
//! Tiles that hang over the bottom or right edge (sides not multiples of 4) read zeros there, and
//! their outputs outside the image are dropped (forward) or have zero gradient (backward-filter).
//!
//! Accuracy: the transforms multiply by up to 5 (B), 8 (A) and divide by 24 (G), and their
//! cancellations lose a few bits that F(2x2, 3x3) would keep; `winograd_tests` states the bound.

use std::ops::Range;

use rayon::prelude::*;

use super::conv::ConvDims;
use super::conv_avx2::{dot_tile, outer_tile, PixelBox, Prefetch, Window, KB, MAX_TILE};
use super::conv_pass::PadSpec;
use super::scratch::with_buffers;
use super::winograd_transforms::{
    input_tile, output_grad_tile, output_tile, prefetch_for_write, TileAt, OUT, PLANES, WIN,
};

/// f32 elements of a forward block's transformed input plus output (128 KiB): both stay in L2
/// while the 36 products sweep over them (measured best of 64, 128 and 256 KiB).
const BLOCK_ELEMS: usize = 1 << 15;

/// How many tiles ahead `transform_output` asks for the cache lines it will store to. A tile's
/// rows lie a whole image row apart, too far for the hardware prefetcher to follow, and without the
/// hint the stores wait on memory: two tiles ahead made the 32x32x16 passes 6% (forward) and 15%
/// (backward-data) faster (A/B, interleaved calls), and changed nothing measurable elsewhere.
const WRITE_AHEAD: usize = 2;

/// The fewest tiles per forward block. Each plane of the transformed filters (`cin x cout`, 16 KiB
/// at 64 channels) is read once per block: at 64 channels two microkernel tiles per block did the
/// 8x8 layers' passes 7% faster than the one that fits `BLOCK_ELEMS` (A/B, interleaved calls).
const MIN_BLOCK_TILES: usize = 2 * MAX_TILE;

/// The same for backward-filter (512 KiB): `outer_tile` keeps its sums in registers while it
/// sweeps the block's tiles, so longer blocks spend less on loading and storing them; each plane
/// it works on is a small slice of the block (measured best of 256 KiB, 512 KiB and 1 MiB).
const FILTER_BLOCK_ELEMS: usize = 1 << 17;

/// Partial filter gradients per backward-filter call: each sums a fixed range of images, and they
/// are added in a fixed order, so the result is bit-reproducible whatever the thread count (see
/// `conv_filter`). As many as fit `FILTER_PARTIAL_ELEMS` (a power of two from 2 to 8: an even
/// split over two cores): every partial is zeroed, swept once per block and read when summed, and
/// at 64 channels one is 576 KiB, so eight cost more than the work they balance (8x8x64: 2 partials
/// measured 16% faster than 8, 16x16x32: 4 partials 6% faster; A/B, interleaved calls).
fn filter_groups(plane_len: usize, images: usize) -> usize {
    let fit = (FILTER_PARTIAL_ELEMS / plane_len).clamp(2, 8);
    (1 << fit.ilog2()).min(images)
}

/// f32 elements of all backward-filter partials together (1 MiB).
const FILTER_PARTIAL_ELEMS: usize = 1 << 18;

/// Elements of the transformed filter gradient per task when the partials are summed.
const REDUCE_CHUNK: usize = 1 << 13;

/// Whether this path takes the convolution.
pub fn applies(d: &ConvDims) -> bool {
    d.r == 3
        && d.s == 3
        && d.stride == 1
        && d.pad == 1
        && d.p == d.h
        && d.q == d.w
        && [d.n, d.h, d.w, d.c, d.k].iter().all(|&v| v > 0)
        && d.c % KB == 0
        && d.k % KB == 0
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// `y = conv(x, w)`; false (nothing written) when this path does not apply.
pub fn forward(d: &ConvDims, x: &[f32], w: &[f32], y: &mut [f32]) -> bool {
    if !applies(d) {
        return false;
    }
    let u = transform_filter(d.c, d.k, |k, r, s, c| w[((k * 3 + r) * 3 + s) * d.c + c]);
    convolve(&Tiles::new(d.h, d.w), d.c, d.k, x, &u, y, None);
    true
}

/// `dx = conv_backward_data(dy, w)`; false (nothing written) when this path does not apply.
pub fn backward_data(d: &ConvDims, dy: &[f32], w: &[f32], dx: &mut [f32]) -> bool {
    backward_data_add(d, dy, w, None, dx)
}

/// `dx = conv_backward_data(dy, w) + addend` (`addend` shaped as `dx`; none: plus nothing), the sum
/// taken as each output tile is stored; false (nothing written) when this path does not apply.
pub fn backward_data_add(
    d: &ConvDims,
    dy: &[f32],
    w: &[f32],
    addend: Option<&[f32]>,
    dx: &mut [f32],
) -> bool {
    if !applies(d) {
        return false;
    }
    // The forward convolution of dy (K channels in) with w'[c, r, s, k] = w[k, 2-r, 2-s, c].
    let u = transform_filter(d.k, d.c, |c, r, s, k| {
        w[((k * 3 + 2 - r) * 3 + 2 - s) * d.c + c]
    });
    convolve(&Tiles::new(d.h, d.w), d.k, d.c, dy, &u, dx, addend);
    true
}

/// `dw = conv_backward_filter(x, dy)`; false (nothing written) when this path does not apply.
pub fn backward_filter(d: &ConvDims, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    if !applies(d) {
        return false;
    }
    let tiles = Tiles::new(d.h, d.w);
    let per_image = tiles.per_image();
    let (image_in, image_out) = (d.h * d.w * d.c, d.h * d.w * d.k);
    let block = filter_block_tiles(d.c, d.k);
    let pad = tiles.padding(d.c);
    let plane_len = PLANES * d.c * d.k;
    let groups = filter_groups(plane_len, d.n);
    with_buffers([groups * plane_len], |[partials]| {
        partials
            .par_chunks_mut(plane_len)
            .enumerate()
            .for_each(|(g, du)| {
                du.fill(0.0);
                let lens = [pad.len(), PLANES * block * d.c, PLANES * block * d.k];
                with_buffers(lens, |[padded, v, e]| {
                    pad.zero_border(padded);
                    let mut padded_image = None;
                    // This group's tiles, numbered across its images; a block may span images.
                    let first = g * d.n / groups * per_image;
                    let end = (g + 1) * d.n / groups * per_image;
                    let mut start = first;
                    while start < end {
                        let nb = block.min(end - start);
                        for (slot, n, run) in tiles.image_runs(start, nb) {
                            if padded_image != Some(n) {
                                pad.fill(&x[n * image_in..][..image_in], padded);
                                padded_image = Some(n);
                            }
                            let grad = &dy[n * image_out..][..image_out];
                            transform_input(&tiles, &pad, padded, run.clone(), v, slot, nb);
                            transform_output_grad(&tiles, d.k, grad, run, e, slot, nb);
                        }
                        accumulate_filter(nb, d.c, d.k, v, e, du);
                        start += nb;
                    }
                });
            });
        // The partials summed in group order, a slice of the planes per task.
        let (du, rest) = partials.split_at_mut(plane_len);
        du.par_chunks_mut(REDUCE_CHUNK)
            .enumerate()
            .for_each(|(i, sum)| {
                for partial in rest.chunks_exact(plane_len) {
                    let part = &partial[i * REDUCE_CHUNK..][..sum.len()];
                    sum.iter_mut().zip(part).for_each(|(a, &b)| *a += b);
                }
            });
        untransform_filter_grad(d.c, d.k, du, dw);
    });
    true
}

/// The 4x4 output tiles of an `h x w` image (as many as cover it), numbered row-major.
struct Tiles {
    h: usize,
    w: usize,
    across: usize,
    down: usize,
}

impl Tiles {
    fn new(h: usize, w: usize) -> Self {
        Tiles {
            h,
            w,
            across: w.div_ceil(OUT),
            down: h.div_ceil(OUT),
        }
    }

    fn per_image(&self) -> usize {
        self.across * self.down
    }

    /// The block of `nb` tiles from tile `start` (numbered across images), as runs within one image
    /// each: `(slot, image, tiles)`, the run's first slot in the block, its image and its tiles.
    fn image_runs(
        &self,
        start: usize,
        nb: usize,
    ) -> impl Iterator<Item = (usize, usize, Range<usize>)> {
        let per_image = self.per_image();
        let mut slot = 0;
        std::iter::from_fn(move || {
            (slot < nb).then(|| {
                let (n, t) = ((start + slot) / per_image, (start + slot) % per_image);
                let run = (per_image - t).min(nb - slot);
                let item = (slot, n, t..t + run);
                slot += run;
                item
            })
        })
    }

    /// The zero-bordered copy of a `c`-channel image that every tile's 6x6 window fits in: one
    /// pixel of padding above and left, and below and right up to whole tiles plus one.
    fn padding(&self, c: usize) -> PadSpec {
        PadSpec {
            h: self.h,
            w: self.w,
            c,
            top: 1,
            left: 1,
            rows: OUT * self.down + 2,
            cols: OUT * self.across + 2,
        }
    }

    /// Tile `t`'s 6x6 input window in the padded image of `pad`.
    fn input_at(&self, t: usize, pad: &PadSpec) -> TileAt {
        let (i, j) = (t / self.across, t % self.across);
        TileAt {
            at: (OUT * i * pad.cols + OUT * j) * pad.c,
            row: pad.cols * pad.c,
            pix: pad.c,
            channels: pad.c,
        }
    }

    /// Tile `t`'s 4x4 output pixels in a `c`-channel image, and how many rows and columns of them
    /// are inside it.
    fn output_at(&self, t: usize, c: usize) -> (TileAt, usize, usize) {
        let (row, col) = (OUT * (t / self.across), OUT * (t % self.across));
        let at = TileAt {
            at: (row * self.w + col) * c,
            row: self.w * c,
            pix: c,
            channels: c,
        };
        (at, (self.h - row).min(OUT), (self.w - col).min(OUT))
    }
}

/// Tiles per block: as many as keep the block's transformed input (`cin` channels) and output
/// (`cout`) within `BLOCK_ELEMS`, in whole microkernel tiles, but at least `MIN_BLOCK_TILES`.
fn block_tiles(cin: usize, cout: usize) -> usize {
    tiles_within(BLOCK_ELEMS, cin, cout).max(MIN_BLOCK_TILES)
}

/// Tiles per backward-filter block, likewise within `FILTER_BLOCK_ELEMS`.
fn filter_block_tiles(cin: usize, cout: usize) -> usize {
    tiles_within(FILTER_BLOCK_ELEMS, cin, cout)
}

fn tiles_within(elems: usize, cin: usize, cout: usize) -> usize {
    (elems / (PLANES * (cin + cout))).max(MAX_TILE) / MAX_TILE * MAX_TILE
}

/// The forward convolution of `x` (`cin` channels) with transformed filters `u` into `y` (`cout`
/// channels), plus `addend` (shaped as `y`) if given. Each task takes a run of whole images, enough
/// for one block of tiles where images are small (an 8x8 image is only 4 tiles, too few to reuse
/// each plane of `u` they stream past), and works through them block by block, a block spanning
/// images where they are small.
fn convolve(
    tiles: &Tiles,
    cin: usize,
    cout: usize,
    x: &[f32],
    u: &[f32],
    y: &mut [f32],
    addend: Option<&[f32]>,
) {
    let pixels = tiles.h * tiles.w;
    let per_image = tiles.per_image();
    let block = block_tiles(cin, cout);
    let images_per_task = (block / per_image).max(1);
    let pad = tiles.padding(cin);
    let lens = [pad.len(), PLANES * block * cin, PLANES * block * cout];
    let y_chunk = images_per_task * pixels * cout;
    y.par_chunks_mut(y_chunk)
        .zip(x.par_chunks(images_per_task * pixels * cin))
        .enumerate()
        .for_each(|(task, (y_run, x_run))| {
            let add_run = addend.map(|a| &a[task * y_chunk..][..y_run.len()]);
            with_buffers(lens, |[padded, v, m]| {
                pad.zero_border(padded);
                let images = x_run.len() / (pixels * cin);
                // Pulls the next task's first image towards the cache while this one is computed.
                let next_at = (task + 1) * images_per_task * pixels * cin;
                let next = x.get(next_at..next_at + pixels * cin).unwrap_or_default();
                let mut prefetch = Prefetch::new(next, images * per_image);
                let mut padded_image = None;
                let (mut start, end) = (0, images * per_image);
                while start < end {
                    let nb = block.min(end - start);
                    for (slot, n, run) in tiles.image_runs(start, nb) {
                        if padded_image != Some(n) {
                            pad.fill(&x_run[n * pixels * cin..][..pixels * cin], padded);
                            padded_image = Some(n);
                        }
                        transform_input(tiles, &pad, padded, run, v, slot, nb);
                    }
                    multiply(nb, cin, cout, v, u, m);
                    for (slot, n, run) in tiles.image_runs(start, nb) {
                        let image = n * pixels * cout..(n + 1) * pixels * cout;
                        let out = (&mut y_run[image.clone()], add_run.map(|a| &a[image]));
                        let m_run = &m[slot * cout..];
                        transform_output(tiles, cout, m_run, run, out, nb, &mut prefetch);
                    }
                    start += nb;
                }
            });
        });
}

/// `V` of tiles `range` of one padded image into slots `slot..` of a block of `nb` tiles:
/// `v[(xi nb + slot) c + channel]`.
fn transform_input(
    tiles: &Tiles,
    pad: &PadSpec,
    padded: &[f32],
    range: Range<usize>,
    v: &mut [f32],
    slot: usize,
    nb: usize,
) {
    let c = pad.c;
    for (slot, t) in (slot..).zip(range) {
        // SAFETY: `applies` checked AVX2 and FMA, and that `c` is a multiple of 16.
        unsafe { input_tile(padded, tiles.input_at(t, pad), &mut v[slot * c..], nb * c) };
    }
}

/// `E = A dY Aᵀ` of tiles `range` of one image's output gradient (`k` channels) into slots `slot..`
/// of a block of `nb` tiles.
fn transform_output_grad(
    tiles: &Tiles,
    k: usize,
    dy: &[f32],
    range: Range<usize>,
    e: &mut [f32],
    slot: usize,
    nb: usize,
) {
    for (slot, t) in (slot..).zip(range) {
        let (at, rows, cols) = tiles.output_at(t, k);
        // SAFETY: `applies` checked AVX2 and FMA, and that `k` is a multiple of 16.
        unsafe { output_grad_tile(dy, at, rows, cols, &mut e[slot * k..], nb * k) };
    }
}

/// `y = Aᵀ M A` (plus the addend, if any) for tiles `range` of one image, from a block of `nb`
/// tiles (`k` channels).
fn transform_output(
    tiles: &Tiles,
    k: usize,
    m: &[f32],
    range: Range<usize>,
    (y, addend): (&mut [f32], Option<&[f32]>),
    nb: usize,
    prefetch: &mut Prefetch<'_>,
) {
    for (slot, t) in range.enumerate() {
        if t + WRITE_AHEAD < tiles.per_image() {
            let (at, rows, cols) = tiles.output_at(t + WRITE_AHEAD, k);
            prefetch_for_write(y, at, rows, cols);
        }
        let (at, rows, cols) = tiles.output_at(t, k);
        // SAFETY: `applies` checked AVX2 and FMA, and that `k` is a multiple of 16.
        unsafe { output_tile(&m[slot * k..], nb * k, y, at, rows, cols, addend) };
        prefetch.step();
    }
}

/// `U[k / 16][xi][c][k % 16] = (G g Gᵀ)[xi]` for the 3x3 filter `g[r][s] = tap(k, r, s, c)` of
/// every output channel `k < cout` and input channel `c < cin`: packed for `dot_tile`, one block
/// of 16 output channels per thread.
fn transform_filter(
    cin: usize,
    cout: usize,
    tap: impl Fn(usize, usize, usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    let mut u = vec![0.0f32; PLANES * cin * cout];
    u.par_chunks_mut(PLANES * cin * KB)
        .enumerate()
        .for_each(|(kb, block)| {
            for kk in 0..KB {
                for c in 0..cin {
                    let k = kb * KB + kk;
                    let g: [[f32; 3]; 3] =
                        std::array::from_fn(|r| std::array::from_fn(|s| tap(k, r, s, c)));
                    // G g down the columns, then (G g) Gᵀ along the rows.
                    let cols = [0, 1, 2].map(|s| filter_1d([g[0][s], g[1][s], g[2][s]]));
                    let gg: [[f32; 3]; WIN] =
                        std::array::from_fn(|u| [cols[0][u], cols[1][u], cols[2][u]]);
                    for (xi, value) in gg.map(filter_1d).iter().flatten().enumerate() {
                        block[(xi * cin + c) * KB + kk] = *value;
                    }
                }
            }
        });
    u
}

/// `dw[k][r][s][c] = (Gᵀ dU[.][c][k] G)[r][s]`, from `dU[xi][c][k]`.
fn untransform_filter_grad(cin: usize, cout: usize, du: &[f32], dw: &mut [f32]) {
    dw.par_chunks_mut(9 * cin)
        .enumerate()
        .for_each(|(k, dw_k)| {
            for c in 0..cin {
                let e: [[f32; WIN]; WIN] = std::array::from_fn(|u| {
                    std::array::from_fn(|v| du[((WIN * u + v) * cin + c) * cout + k])
                });
                // Gᵀ E down the columns, then (Gᵀ E) G along the rows.
                let cols: [[f32; 3]; WIN] =
                    std::array::from_fn(|v| filter_adjoint_1d(std::array::from_fn(|u| e[u][v])));
                let rows: [[f32; WIN]; 3] =
                    std::array::from_fn(|r| std::array::from_fn(|v| cols[v][r]));
                for (r, row) in rows.map(filter_adjoint_1d).iter().enumerate() {
                    for (s, &value) in row.iter().enumerate() {
                        dw_k[(r * 3 + s) * cin + c] = value;
                    }
                }
            }
        });
}

/// `G a` along one axis (in f64, rounded once: the weights are transformed once per call).
fn filter_1d(a: [f32; 3]) -> [f32; WIN] {
    let [a0, a1, a2] = a.map(f64::from);
    [
        a0 / 4.0,
        -(a0 + a1 + a2) / 6.0,
        -(a0 - a1 + a2) / 6.0,
        a0 / 24.0 + a1 / 12.0 + a2 / 6.0,
        a0 / 24.0 - a1 / 12.0 + a2 / 6.0,
        a2,
    ]
    .map(|v| v as f32)
}

/// `Gᵀ e` along one axis (the adjoint of `filter_1d`), in f64 and rounded once.
fn filter_adjoint_1d(e: [f32; WIN]) -> [f32; 3] {
    let [e0, e1, e2, e3, e4, e5] = e.map(f64::from);
    [
        e0 / 4.0 - (e1 + e2) / 6.0 + (e3 + e4) / 24.0,
        (e2 - e1) / 6.0 + (e3 - e4) / 12.0,
        (e3 + e4 - e1 - e2) / 6.0 + e5,
    ]
    .map(|v| v as f32)
}

/// `M[xi][t][k] = sum_c V[xi][t][c] U[xi][c][k]` for a block of `nb` tiles: per plane and run of
/// up to 6 tiles, `dot_tile` for each block of 16 output channels (a one-row window of `cin`
/// elements: the tile's transformed channels). The run's inputs stay in L1 across the channel
/// blocks, and the plane of `U` (at most 16 KiB in a ResNet) across the runs.
fn multiply(nb: usize, cin: usize, cout: usize, v: &[f32], u: &[f32], m: &mut [f32]) {
    let win = Window {
        rows: 1,
        row_len: cin,
        in_row: 0,
    };
    let blocks = cout / KB;
    for xi in 0..PLANES {
        let v_plane = &v[xi * nb * cin..][..nb * cin];
        let m_plane = &mut m[xi * nb * cout..][..nb * cout];
        let mut t0 = 0;
        while t0 < nb {
            let np = (nb - t0).min(MAX_TILE);
            for kb in 0..blocks {
                let w = &u[(kb * PLANES + xi) * cin * KB..][..cin * KB];
                match np {
                    6 => product_tile::<6>(win, v_plane, w, m_plane, t0, kb, cout),
                    5 => product_tile::<5>(win, v_plane, w, m_plane, t0, kb, cout),
                    4 => product_tile::<4>(win, v_plane, w, m_plane, t0, kb, cout),
                    3 => product_tile::<3>(win, v_plane, w, m_plane, t0, kb, cout),
                    2 => product_tile::<2>(win, v_plane, w, m_plane, t0, kb, cout),
                    _ => product_tile::<1>(win, v_plane, w, m_plane, t0, kb, cout),
                }
            }
            t0 += np;
        }
    }
}

/// Tiles `t0 .. t0 + NP` of one plane, output channels `16 kb .. 16 kb + 16`.
#[inline(always)]
fn product_tile<const NP: usize>(
    win: Window,
    v_plane: &[f32],
    w: &[f32],
    m_plane: &mut [f32],
    t0: usize,
    kb: usize,
    cout: usize,
) {
    let cin = win.row_len;
    assert!(
        (t0 + NP) * cin <= v_plane.len() && (t0 + NP - 1) * cout + (kb + 1) * KB <= m_plane.len()
    );
    assert!(w.len() >= cin * KB);
    let x: [*const f32; NP] = std::array::from_fn(|j| v_plane[(t0 + j) * cin..].as_ptr());
    let out = m_plane.as_mut_ptr();
    // SAFETY: inside `m_plane`, by the assertion above.
    let y: [*mut f32; NP] = std::array::from_fn(|j| unsafe { out.add((t0 + j) * cout + kb * KB) });
    // SAFETY: `applies` checked AVX2 and FMA; the assertions above keep every tile's `cin` inputs,
    // the block's `cin x 16` weights and every 16-channel output inside their slices.
    unsafe { dot_tile::<NP>(win, x, w.as_ptr(), y) }
}

/// `dU[xi][c][k] += sum_t V[xi][t][c] E[xi][t][k]` over a block of `nb` tiles: per plane, block of
/// 16 output channels and run of up to 6 input channels, `outer_tile` sums over the tiles.
fn accumulate_filter(nb: usize, cin: usize, cout: usize, v: &[f32], e: &[f32], du: &mut [f32]) {
    let tiles = PixelBox {
        images: 1,
        rows: 1,
        cols: nb,
        x_image: 0,
        x_row: 0,
        x_pix: cin,
        dy_image: 0,
        dy_row: 0,
        dy_pix: cout,
    };
    for xi in 0..PLANES {
        let v_plane = &v[xi * nb * cin..][..nb * cin];
        let e_plane = &e[xi * nb * cout..][..nb * cout];
        let du_plane = &mut du[xi * cin * cout..][..cin * cout];
        for kb in 0..cout / KB {
            let mut c0 = 0;
            while c0 < cin {
                let nt = (cin - c0).min(MAX_TILE);
                let x = v_plane[c0..].as_ptr();
                let dy = e_plane[kb * KB..].as_ptr();
                let dw = du_plane[c0 * cout + kb * KB..].as_mut_ptr();
                // SAFETY: `applies` checked AVX2 and FMA. `x` reads `b cin + t < nb cin` past
                // `c0` (t < nt <= cin - c0), `dy` 16 at `b cout + 16 kb`, `dw` 16 at
                // `t cout + 16 kb`, all inside their planes.
                unsafe {
                    match nt {
                        6 => outer_tile::<6>(tiles, x, dy, dw, cout),
                        5 => outer_tile::<5>(tiles, x, dy, dw, cout),
                        4 => outer_tile::<4>(tiles, x, dy, dw, cout),
                        3 => outer_tile::<3>(tiles, x, dy, dw, cout),
                        2 => outer_tile::<2>(tiles, x, dy, dw, cout),
                        _ => outer_tile::<1>(tiles, x, dy, dw, cout),
                    }
                }
                c0 += nt;
            }
        }
    }
}
