//! The machinery shared by the direct convolution's passes: zero-bordered image copies and planned
//! "sub-convolutions" that sweep [`dot_tile`] over the output pixels of one image.
//!
//! A pass maps output pixel `(a, b)` to the window at `in_origin + a in_row + b in_pix` of a padded
//! input image and to the 16-channel outputs at `out_origin + a out_row + b out_pix (+ 16 kb)`: the
//! forward convolution is one pass, backward-data one per stride phase (see `conv_direct`).

use super::conv_avx2::{dot_tile, Prefetch, Window, KB, MAX_TILE};

/// A zero-bordered copy of one `[h, w, c]` image: `top` rows and `left` columns of zeros before it,
/// zeros after it up to `[rows, cols]`.
#[derive(Clone, Copy)]
pub struct PadSpec {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub top: usize,
    pub left: usize,
    pub rows: usize,
    pub cols: usize,
}

impl PadSpec {
    pub fn len(&self) -> usize {
        self.rows * self.cols * self.c
    }

    /// A buffer for [`Self::fill`]: the border is zeroed here once, and `fill` only writes the
    /// interior.
    pub fn buffer(&self) -> Vec<f32> {
        vec![0.0; self.len()]
    }

    /// Zeroes the border of a reused buffer (everything [`Self::fill`] does not write).
    pub fn zero_border(&self, buf: &mut [f32]) {
        let (c, row) = (self.c, self.cols * self.c);
        for (r, line) in buf[..self.len()].chunks_exact_mut(row).enumerate() {
            if r < self.top || r >= self.top + self.h {
                line.fill(0.0);
            } else {
                line[..self.left * c].fill(0.0);
                line[(self.left + self.w) * c..].fill(0.0);
            }
        }
    }

    pub fn fill(&self, image: &[f32], buf: &mut [f32]) {
        let row = self.w * self.c;
        assert_eq!(image.len(), self.h * row, "padded image size");
        for (i, src) in image.chunks_exact(row).enumerate() {
            let start = ((self.top + i) * self.cols + self.left) * self.c;
            buf[start..start + row].copy_from_slice(src);
        }
    }
}

/// The geometry of one convolution-shaped pass: output pixel `(a, b)` (of `out_rows x out_cols`)
/// at element `out_origin + a out_row + b out_pix` of the output image gets the window at
/// `in_origin + a in_row + b in_pix` of the padded input times the packed weights.
pub struct PassGeometry {
    pub win: Window,
    pub in_origin: usize,
    pub in_row: usize,
    pub in_pix: usize,
    pub out_rows: usize,
    pub out_cols: usize,
    pub out_origin: usize,
    pub out_row: usize,
    pub out_pix: usize,
    /// Output channels, a multiple of 16.
    pub cout: usize,
}

/// A planned pass: the window and output offsets of every output pixel, computed once per call
/// (not per image or tile), and the weights packed `[cout / 16][win.rows][win.row_len][16]`.
pub struct SubConv {
    win: Window,
    cout: usize,
    in_offsets: Vec<usize>,
    out_offsets: Vec<usize>,
    /// One past the last input and output elements any tile touches.
    in_extent: usize,
    out_extent: usize,
    weights: Vec<f32>,
}

impl SubConv {
    pub fn new(g: PassGeometry, weights: Vec<f32>) -> Self {
        let pixels = (0..g.out_rows).flat_map(|a| (0..g.out_cols).map(move |b| (a, b)));
        let in_offsets: Vec<usize> = pixels
            .clone()
            .map(|(a, b)| g.in_origin + a * g.in_row + b * g.in_pix)
            .collect();
        let out_offsets: Vec<usize> = pixels
            .map(|(a, b)| g.out_origin + a * g.out_row + b * g.out_pix)
            .collect();
        let window = (g.win.rows.max(1) - 1) * g.win.in_row + g.win.row_len;
        assert!(g.cout % KB == 0, "output channels in blocks of 16");
        // `run` relies on this for its kernel calls.
        assert!(
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            "the direct convolution needs AVX2 and FMA"
        );
        assert_eq!(
            weights.len(),
            g.cout * g.win.rows * g.win.row_len,
            "packed weights"
        );
        SubConv {
            win: g.win,
            cout: g.cout,
            in_extent: in_offsets.iter().max().map_or(0, |&o| o + window),
            out_extent: out_offsets.iter().max().map_or(0, |&o| o + g.cout),
            in_offsets,
            out_offsets,
            weights,
        }
    }

    fn weights_per_block(&self) -> usize {
        self.win.rows * self.win.row_len * KB
    }

    /// Tiles per run (for spreading prefetches over them).
    pub fn tiles(&self) -> usize {
        self.in_offsets.len().div_ceil(MAX_TILE) * (self.cout / KB)
    }

    /// Runs the pass on one padded input image, writing its pixels of one output image, and moves
    /// `prefetch` along by one step per tile.
    pub fn run(&self, input: &[f32], output: &mut [f32], prefetch: &mut Prefetch<'_>) {
        let pixels = self.in_offsets.len();
        if pixels == 0 || self.win.rows == 0 || self.win.row_len == 0 {
            return;
        }
        // Every tile reads windows at the listed input offsets and writes 16 channels at the
        // listed output offsets: these bounds cover them all.
        assert!(
            self.in_extent <= input.len() && self.out_extent <= output.len(),
            "subconv bounds"
        );
        for kb in 0..self.cout / KB {
            let w = &self.weights[kb * self.weights_per_block()..][..self.weights_per_block()];
            let mut p0 = 0;
            while p0 < pixels {
                let np = (pixels - p0).min(MAX_TILE);
                match np {
                    6 => self.tile::<6>(input, w, output, p0, kb),
                    5 => self.tile::<5>(input, w, output, p0, kb),
                    4 => self.tile::<4>(input, w, output, p0, kb),
                    3 => self.tile::<3>(input, w, output, p0, kb),
                    2 => self.tile::<2>(input, w, output, p0, kb),
                    _ => self.tile::<1>(input, w, output, p0, kb),
                }
                p0 += np;
                prefetch.step();
            }
        }
    }

    /// Output pixels `p0 .. p0 + NP` (row-major), output channels `16 kb .. 16 kb + 16`.
    #[inline(always)]
    fn tile<const NP: usize>(
        &self,
        input: &[f32],
        w: &[f32],
        output: &mut [f32],
        p0: usize,
        kb: usize,
    ) {
        let x: [*const f32; NP] =
            std::array::from_fn(|j| input[self.in_offsets[p0 + j]..].as_ptr());
        let out = output.as_mut_ptr();
        let y: [*mut f32; NP] = std::array::from_fn(|j| {
            // SAFETY: at most `out_extent - 16`, which `run` checked against the slice.
            unsafe { out.add(self.out_offsets[p0 + j] + kb * KB) }
        });
        // SAFETY: `new` checked AVX2/FMA; `run` checked that every window of this pass
        // (`in_extent`) and every 16-channel output (`out_extent`) lies inside its slice, and `w`
        // holds one block of packed weights.
        unsafe { dot_tile::<NP>(self.win, x, w.as_ptr(), y) }
    }
}
