//! How the implicit-GEMM convolution kernels of `kernels/conv_*.cu` are launched for a given shape:
//! which specialisation, the grid, and backward-filter's split of its long reduction.
//!
//! The launch contract is the one `kernels/conv_common.cuh` states: block (256, 1, 1), no dynamic
//! shared memory, 64 x 64 output tiles; the GEMM views are
//!
//! | pass            | rows (M)   | columns (Ncol)             | reduction        | grid z          |
//! |-----------------|------------|----------------------------|------------------|-----------------|
//! | forward         | N*P*Q      | K                          | R*S*C            | 1               |
//! | backward-data   | N*ceil(H/stride)*ceil(W/stride) | C     | R*S*K / stride^2 | stride^2        |
//! | backward-filter | K          | R*S*C                      | N*P*Q            | Z (split count) |
//!
//! Everything here depends on the shape alone, never on the device, so a given shape computes the
//! same bits on every GPU and in the emulator.

use super::launch::KernelPod;
use crate::backend::Conv2dGeometry;

/// Threads per block of every conv kernel.
pub use super::launch_constants::CONV_THREADS;
use super::launch_constants::{CONV_TILE_M, CONV_TILE_N};
/// Blocks backward-filter aims for: two waves' worth of the largest GPU we target (an H200 has 132
/// SMs). A fixed number rather than the device's count keeps the split, hence the rounding, the same
/// on every device.
const FILTER_TARGET_BLOCKS: usize = 264;
/// The fewest reduction items (N*P*Q rows) a backward-filter split is given: below this a block
/// spends more on its prologue and on the extra partial sums than it saves.
const FILTER_MIN_ROWS_PER_SPLIT: usize = 256;

/// The kernels' `ConvDims` argument, passed by value: x [N,H,W,C], w [K,R,S,C], y [N,P,Q,K].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    pub n: i32,
    pub h: i32,
    pub w: i32,
    pub c: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub p: i32,
    pub q: i32,
    pub stride: i32,
    pub pad: i32,
}

// SAFETY: #[repr(C)], 11 i32 in the order of `struct ConvDims` in kernels/conv_common.cuh.
unsafe impl KernelPod for ConvDims {}

/// A convolution's shape, as the kernels see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Input [N, H, W, C].
    pub x: [usize; 4],
    /// Weights [K, R, S, C].
    pub w: [usize; 4],
    /// Output [N, P, Q, K].
    pub y: [usize; 4],
    pub geom: Conv2dGeometry,
}

impl ConvShape {
    pub fn dims(&self) -> ConvDims {
        let [n, h, w, c] = self.x;
        let [k, r, s, _] = self.w;
        let [_, p, q, _] = self.y;
        // `ops` validated the shapes; sizes past i32 would be a tensor of over 2^31 elements, which the
        // kernels' int indexing does not support, so say so rather than wrap.
        let i = |v: usize| i32::try_from(v).expect("conv dimension fits in i32");
        ConvDims {
            n: i(n),
            h: i(h),
            w: i(w),
            c: i(c),
            k: i(k),
            r: i(r),
            s: i(s),
            p: i(p),
            q: i(q),
            stride: i(self.geom.stride),
            pad: i(self.geom.pad),
        }
    }

    /// The specialisation suffix: `3x3_s1`, `3x3_s2`, `1x1_s1`, `1x1_s2` (any pad), else `general`
    /// (the 7x7 stem, and anything else).
    pub fn variant(&self) -> &'static str {
        VARIANTS[self.variant_index()]
    }

    fn variant_index(&self) -> usize {
        let [_, r, s, _] = self.w;
        match (r, s, self.geom.stride) {
            (3, 3, 1) => 0,
            (3, 3, 2) => 1,
            (1, 1, 1) => 2,
            (1, 1, 2) => 3,
            _ => 4,
        }
    }

    pub fn forward_kernel(&self) -> &'static str {
        FORWARD_KERNELS[self.variant_index()]
    }

    pub fn backward_data_kernel(&self) -> &'static str {
        BACKWARD_DATA_KERNELS[self.variant_index()]
    }

    /// Backward-data storing `dx + addend` (same grid as [`ConvShape::backward_data_grid`]).
    pub fn backward_data_add_kernel(&self) -> &'static str {
        BACKWARD_DATA_ADD_KERNELS[self.variant_index()]
    }

    pub fn backward_filter_kernel(&self) -> &'static str {
        BACKWARD_FILTER_KERNELS[self.variant_index()]
    }

    /// Forward: one block per 64 output pixels x 64 output channels.
    pub fn forward_grid(&self) -> (u32, u32, u32) {
        let [n, p, q, k] = self.y;
        grid(n * p * q, k, 1)
    }

    /// Backward-data: the input pixels split into `stride^2` residue classes (grid z), each its own
    /// GEMM over the taps that reach it; rows are a class's pixels, at most `N*ceil(H/s)*ceil(W/s)`.
    pub fn backward_data_grid(&self) -> (u32, u32, u32) {
        let [n, h, w, c] = self.x;
        let s = self.geom.stride;
        grid(n * h.div_ceil(s) * w.div_ceil(s), c, s * s)
    }

    /// Backward-filter's split count `Z`: enough blocks for [`FILTER_TARGET_BLOCKS`], but each split
    /// keeps at least [`FILTER_MIN_ROWS_PER_SPLIT`] of the N*P*Q reduction rows.
    pub fn backward_filter_splits(&self) -> usize {
        let [n, p, q, _] = self.y;
        let tiles = self.filter_tiles();
        let wanted = FILTER_TARGET_BLOCKS.div_ceil(tiles);
        let most = (n * p * q).div_ceil(FILTER_MIN_ROWS_PER_SPLIT);
        wanted.clamp(1, most.max(1))
    }

    /// Backward-filter partial kernel's grid for `splits` splits.
    pub fn backward_filter_grid(&self, splits: usize) -> (u32, u32, u32) {
        let [k, r, s, c] = self.w;
        grid(k, r * s * c, splits)
    }

    /// Elements of the weight gradient, `K*R*S*C` (what the reduce kernel sums per split).
    pub fn filter_len(&self) -> usize {
        self.w.iter().product()
    }

    fn filter_tiles(&self) -> usize {
        let [k, r, s, c] = self.w;
        k.div_ceil(CONV_TILE_M as usize) * (r * s * c).div_ceil(CONV_TILE_N as usize)
    }
}

/// The kernel names per variant, in [`ConvShape::variant_index`] order: static, so a launch builds
/// no string (a test checks them against `conv2d_<op>_<variant>_f32`).
const VARIANTS: [&str; 5] = ["3x3_s1", "3x3_s2", "1x1_s1", "1x1_s2", "general"];
const FORWARD_KERNELS: [&str; 5] = [
    "conv2d_forward_3x3_s1_f32",
    "conv2d_forward_3x3_s2_f32",
    "conv2d_forward_1x1_s1_f32",
    "conv2d_forward_1x1_s2_f32",
    "conv2d_forward_general_f32",
];
const BACKWARD_DATA_KERNELS: [&str; 5] = [
    "conv2d_backward_data_3x3_s1_f32",
    "conv2d_backward_data_3x3_s2_f32",
    "conv2d_backward_data_1x1_s1_f32",
    "conv2d_backward_data_1x1_s2_f32",
    "conv2d_backward_data_general_f32",
];
const BACKWARD_DATA_ADD_KERNELS: [&str; 5] = [
    "conv2d_backward_data_add_3x3_s1_f32",
    "conv2d_backward_data_add_3x3_s2_f32",
    "conv2d_backward_data_add_1x1_s1_f32",
    "conv2d_backward_data_add_1x1_s2_f32",
    "conv2d_backward_data_add_general_f32",
];
const BACKWARD_FILTER_KERNELS: [&str; 5] = [
    "conv2d_backward_filter_partial_3x3_s1_f32",
    "conv2d_backward_filter_partial_3x3_s2_f32",
    "conv2d_backward_filter_partial_1x1_s1_f32",
    "conv2d_backward_filter_partial_1x1_s2_f32",
    "conv2d_backward_filter_partial_general_f32",
];

fn grid(rows: usize, cols: usize, z: usize) -> (u32, u32, u32) {
    let dim = |v: usize| u32::try_from(v).expect("grid dimension fits in u32");
    let (tile_rows, tile_cols) = (CONV_TILE_M as usize, CONV_TILE_N as usize);
    (
        dim(rows.div_ceil(tile_rows)),
        dim(cols.div_ceil(tile_cols)),
        dim(z),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> ConvShape {
        let geom = Conv2dGeometry::new(stride, pad);
        let p = geom.output_extent(x[1], w[1]).unwrap();
        let q = geom.output_extent(x[2], w[2]).unwrap();
        ConvShape {
            x,
            w,
            y: [x[0], p, q, w[0]],
            geom,
        }
    }

    #[test]
    fn variants_follow_kernel_size_and_stride() {
        assert_eq!(shape([1, 8, 8, 4], [4, 3, 3, 4], 1, 1).variant(), "3x3_s1");
        assert_eq!(shape([1, 8, 8, 4], [4, 3, 3, 4], 2, 1).variant(), "3x3_s2");
        assert_eq!(shape([1, 8, 8, 4], [4, 1, 1, 4], 1, 0).variant(), "1x1_s1");
        assert_eq!(shape([1, 8, 8, 4], [4, 1, 1, 4], 2, 0).variant(), "1x1_s2");
        assert_eq!(shape([1, 9, 9, 3], [8, 7, 7, 3], 2, 3).variant(), "general");
        assert_eq!(shape([1, 9, 9, 3], [8, 3, 3, 3], 3, 1).variant(), "general");
    }

    #[test]
    fn kernel_names_follow_the_op_and_variant() {
        for (i, variant) in VARIANTS.iter().enumerate() {
            let name = |op: &str| format!("conv2d_{op}_{variant}_f32");
            assert_eq!(FORWARD_KERNELS[i], name("forward"));
            assert_eq!(BACKWARD_DATA_KERNELS[i], name("backward_data"));
            assert_eq!(BACKWARD_DATA_ADD_KERNELS[i], name("backward_data_add"));
            assert_eq!(BACKWARD_FILTER_KERNELS[i], name("backward_filter_partial"));
        }
    }

    #[test]
    fn grids_cover_every_output() {
        // resnet50's conv2_x 3x3 at batch 32: N*P*Q = 32*56*56 rows, 64 channels.
        let s = shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1);
        assert_eq!(s.forward_grid(), (1568, 1, 1));
        assert_eq!(s.backward_data_grid(), (1568, 1, 1));
        // Stride 2: four residue classes of ceil(57/2)^2 = 29^2 pixels each, 58 rows of 29.
        let s2 = shape([2, 57, 57, 5], [7, 3, 3, 5], 2, 1);
        assert_eq!(s2.backward_data_grid(), (27, 1, 4));
        assert_eq!(s2.backward_filter_grid(3), (1, 1, 3));
    }

    #[test]
    fn filter_splits_fill_the_gpu_but_keep_long_slices() {
        // 64x(3*3*64) = 1 x 9 tiles: 264 / 9 -> 30 splits, and 32*56*56 rows allow that many.
        let big = shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1);
        assert_eq!(big.backward_filter_splits(), 30);
        // 512x(3*3*512) = 8 x 72 tiles already fill the GPU: no split.
        let deep = shape([32, 7, 7, 512], [512, 3, 3, 512], 1, 1);
        assert_eq!(deep.backward_filter_splits(), 1);
        // A tiny reduction (1*4*4 = 16 rows) is never split.
        let tiny = shape([1, 4, 4, 3], [5, 3, 3, 3], 1, 1);
        assert_eq!(tiny.backward_filter_splits(), 1);
    }
}
