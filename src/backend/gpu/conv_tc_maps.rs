//! The tensor maps of the TMA-fed tensor-core convolutions (`kernels/conv_wgmma_tma*_sm90a.cu`): for
//! each operand a kernel brings by the tensor memory accelerator, the tiled box or the im2col walk a
//! launch's map describes ([`super::conv_tc_plan::TcLaunch`] holds them; its `encode_maps` makes
//! them, in the kernel's parameter order).

use super::conv_plan::ConvShape;
use super::conv_tc_tile::TcTile;
use super::driver::DevicePtr;
use super::tensor_map::{TiledMap2d, TmaSwizzle};
use super::tensor_map_im2col::{Im2colBox, Im2colMap};

/// An operand as a TMA-fed forward reads it: a row-major bf16 matrix of `rows` rows of `depth`
/// reduction elements, one copy a slice bringing the box of `box_rows` rows by `box_depth` (BK)
/// elements, stored with the swizzle the wgmma descriptors read (64 bytes for rows of 32 bf16, 128
/// for 64). Out-of-bounds elements (past the rows, past the depth) arrive as zeros. The weights: w
/// (KRSC) as K rows of R*S*C, boxes of BN rows; a pointwise forward's input: x (NHWC) as N*H*W rows
/// of C, boxes of BM rows; a pointwise backward-data's dy as N*H*W rows of K, boxes of BM rows, and
/// its w as K rows of C (R*S*C for a stride-1 backward-data fed by im2col) in boxes of BK rows by 64 (one 64-wide panel of the KN tile, whose rows of
/// 128 bytes take the 128-byte swizzle); a pointwise backward-filter's dy (N*P*Q rows of K) and x
/// (N*H*W rows of C) likewise in boxes of BK rows by 64, panels of its KM and KN tiles (there the
/// rows are the reduction and `depth` is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcOperandMap {
    pub rows: usize,
    pub depth: usize,
    pub box_rows: u32,
    pub box_depth: u32,
}

impl TcOperandMap {
    pub(super) fn weights(shape: &ConvShape, tile: TcTile) -> Self {
        let [k, r, s, c] = shape.w;
        TcOperandMap {
            rows: k,
            depth: r * s * c,
            box_rows: tile.bn() as u32,
            box_depth: tile.bk() as u32,
        }
    }

    pub(super) fn pointwise_input(shape: &ConvShape, tile: TcTile) -> Self {
        let [n, h, w, c] = shape.x;
        TcOperandMap {
            rows: n * h * w,
            depth: c,
            box_rows: tile.bm() as u32,
            box_depth: tile.bk() as u32,
        }
    }

    pub(super) fn weight_panels(shape: &ConvShape, tile: TcTile) -> Self {
        let [k, r, s, c] = shape.w;
        Self::panels(k, r * s * c, tile)
    }

    /// A row-major `rows` x `columns` matrix read as 64-wide panels of BK rows.
    pub(super) fn panels(rows: usize, columns: usize, tile: TcTile) -> Self {
        TcOperandMap {
            rows,
            depth: columns,
            box_rows: tile.bk() as u32,
            box_depth: 64,
        }
    }

    pub(super) fn pointwise_output_gradient(shape: &ConvShape, tile: TcTile) -> Self {
        let [n, p, q, k] = shape.y;
        TcOperandMap {
            rows: n * p * q,
            depth: k,
            box_rows: tile.bm() as u32,
            box_depth: tile.bk() as u32,
        }
    }

    /// The map over the matrix at `global` (the vector kernels' C % 8 == 0 makes the row stride a
    /// multiple of 16 bytes, as TMA requires).
    pub fn tiled_map(&self, global: DevicePtr) -> TiledMap2d {
        TiledMap2d {
            global,
            element_bytes: 2,
            dims: [self.depth as u64, self.rows as u64],
            row_stride_bytes: self.depth as u64 * 2,
            box_dims: [self.box_depth, self.box_rows],
            swizzle: if self.box_depth == 64 {
                TmaSwizzle::B128
            } else {
                TmaSwizzle::B64
            },
        }
    }
}

/// The A operand of an im2col-fed forward (`conv2d_wgmma_tma_im2col_forward*`): x through an im2col
/// map for the convolution's geometry, one copy a slice bringing BM output pixels at the slice's tap
/// by BK channels ([`Im2colMap::for_convolution`]), stored with the swizzle of BK (rows of 64 or 128
/// bytes, as the loaders' tiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcIm2colOperand {
    pub nhwc: [usize; 4],
    pub taps: [usize; 2],
    pub stride: usize,
    pub pad: usize,
    pub tile: Im2colBox,
}

impl TcIm2colOperand {
    pub(super) fn input(shape: &ConvShape, tile: TcTile) -> Self {
        let [_, r, s, _] = shape.w;
        TcIm2colOperand {
            nhwc: shape.x,
            taps: [r, s],
            stride: shape.geom.stride,
            pad: shape.geom.pad,
            tile: Im2colBox {
                channels: tile.bk() as u32,
                pixels: tile.bm() as u32,
                swizzle: if tile.bk() == 64 {
                    TmaSwizzle::B128
                } else {
                    TmaSwizzle::B64
                },
            },
        }
    }

    /// A stride-1 backward-data's A operand: dy through an im2col map of the transposed
    /// convolution, a forward one over dy with padding R - 1 - pad whose output is x's H x W (the
    /// kernel reads it at flipped filter offsets; kernels/conv_tc_backward_data.cuh). R == S.
    pub(super) fn output_gradient(shape: &ConvShape, tile: TcTile) -> Self {
        let [_, r, _, _] = shape.w;
        TcIm2colOperand {
            nhwc: shape.y,
            pad: r - 1 - shape.geom.pad,
            ..Self::input(shape, tile)
        }
    }

    /// Backward-filter's B operand: x through an im2col map for the convolution's geometry, one
    /// copy a 64-wide panel of the KN tile: BK pixels (the reduction) by 64 channels of one tap,
    /// under the 128-byte swizzle.
    pub(super) fn filter_input(shape: &ConvShape, tile: TcTile) -> Self {
        TcIm2colOperand {
            tile: Im2colBox {
                channels: 64,
                pixels: tile.bk() as u32,
                swizzle: TmaSwizzle::B128,
            },
            ..Self::input(shape, tile)
        }
    }

    /// The map over the NHWC tensor at `x`.
    pub fn im2col_map(&self, x: DevicePtr) -> Im2colMap {
        Im2colMap::for_convolution(x, self.nhwc, self.taps, (self.stride, self.pad), self.tile)
    }
}
