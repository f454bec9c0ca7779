//! The backward-filter launches: the partial kernel over splits of the N*P*Q reduction and the
//! reduce that sums them, plain, with BN + ReLU applied to the input as it is staged, and Hopper's
//! fed by TMA (see the module's header for the kernels).

use super::super::conv_plan::ConvShape;
use super::super::conv_tc_kernels::{
    kernel_of, BACKWARD_FILTER_IM2COL_TMA_KERNELS, BACKWARD_FILTER_KERNELS,
    BACKWARD_FILTER_POINTWISE_TMA_KERNELS,
};
use super::super::launch_constants::WGMMA_TMA_BARRIER_BYTES;
use super::{
    backward_vectorizable, dim, is_pointwise, launch, TcFamily, TcIm2colOperand, TcLaunch,
    TcOperandMap, TcTile, FILTER_REDUCE_KERNEL,
};

/// Backward-filter: the tensor-core partial kernel over `splits` slices of the N*P*Q reduction; with
/// `splits > 1` it writes `workspace_bytes` of fp32 partials (`splits * K*R*S*C` floats) which
/// `reduce` (params `(workspace, dw, splits as int, K*R*S*C as u64)`) sums into dw in a fixed order.
/// With `splits == 1`, `workspace_bytes == 0`, `reduce` is `None` and the partial kernel's `out`
/// parameter is dw itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcFilterLaunch {
    pub partial: TcLaunch,
    pub splits: usize,
    pub workspace_bytes: usize,
    pub reduce: Option<TcLaunch>,
}

/// Blocks backward-filter aims for: two waves of an H200's 132 SMs (fixed, so the split count, and
/// with it the summation order, is the same on every device).
const FILTER_TARGET_BLOCKS: usize = 264;
/// The fewest reduction rows a backward-filter split gets: 16 slices of 32, enough to amortise the
/// pipeline's prologue and the extra partial sums.
const FILTER_MIN_ROWS_PER_SPLIT: usize = 512;
/// Most splits: bounds the workspace at 64 * K*R*S*C floats.
pub(super) const FILTER_MAX_SPLITS: usize = 64;
/// Threads per block of the reduce kernel, and its most blocks (a grid-stride loop covers the rest).
const REDUCE_THREADS: u32 = 256;
const REDUCE_MAX_BLOCKS: usize = 4096;
/// Backward-filter, `dw = sum over N*P*Q of dy x` into fp32: 128x128 tiles when K > 64, 64x64 for
/// 33..=64, 32x64 for K <= 32 (the tiles' M axis is K); the split count from [`filter_splits`].
pub fn backward_filter(shape: &ConvShape) -> TcFilterLaunch {
    backward_filter_for(shape, TcFamily::MmaSync)
}

/// [`backward_filter`] with the kernels of `family` (the split count follows the tile used).
pub fn backward_filter_for(shape: &ConvShape, family: TcFamily) -> TcFilterLaunch {
    let general = !backward_vectorizable(shape);
    let tile = backward_filter_tile(shape, general, family);
    let splits = filter_splits(shape, tile);
    if family.weights_by_tma() && tile.is_hopper() && !general {
        if is_pointwise(shape) {
            return backward_filter_tma_with(shape, tile, splits);
        }
        if backward_filter_im2col_applies(shape) {
            return backward_filter_im2col_with(shape, tile, splits);
        }
    }
    backward_filter_with(shape, tile, general, splits)
}

/// Whether backward-filter of `shape` can bring x through an im2col map: C a multiple of 64 (each
/// 64-wide panel of the tile's columns inside one tap).
pub fn backward_filter_im2col_applies(shape: &ConvShape) -> bool {
    shape.x[3] % 64 == 0
}

/// Backward-filter on a Hopper `tile` with dy's panels by TMA and x through an im2col map
/// (`conv2d_wgmma_tma_im2col_backward_filter_{T}_bf16`): the plain wgmma kernel's params, then dy's
/// map and x's ([`TcLaunch::encode_maps`]); its grid, split and reduce, its block with the producer
/// warp, and its shared memory plus the pipeline's mbarriers. Vector shapes with C % 64 == 0.
pub fn backward_filter_im2col_with(
    shape: &ConvShape,
    tile: TcTile,
    splits: usize,
) -> TcFilterLaunch {
    assert!(
        tile.is_hopper() && backward_filter_im2col_applies(shape),
        "im2col backward-filter: a Hopper tile ({}) and C % 64 == 0",
        tile.name()
    );
    let kernel = BACKWARD_FILTER_IM2COL_TMA_KERNELS[tile.index()];
    backward_filter_im2col_fed(
        backward_filter_with(shape, tile, false, splits),
        kernel,
        shape,
        tile,
    )
}

/// `plain` (a wgmma backward-filter) with its partial kernel the im2col-fed `kernel`.
fn backward_filter_im2col_fed(
    plain: TcFilterLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
) -> TcFilterLaunch {
    let [n, p, q, k] = shape.y;
    let partial = plain.partial;
    TcFilterLaunch {
        partial: TcLaunch {
            kernel,
            shared_bytes: partial.shared_bytes + WGMMA_TMA_BARRIER_BYTES,
            b_map: None,
            a_map: Some(TcOperandMap::panels(n * p * q, k, tile)),
            a_im2col: None,
            b_im2col: Some(TcIm2colOperand::filter_input(shape, tile)),
            ..partial
        }
        .with_producer(tile),
        ..plain
    }
}

/// Backward-filter of a pointwise shape ([`is_pointwise`]) on a Hopper `tile` with both operands by
/// TMA (`conv2d_wgmma_tma_pointwise_backward_filter_{T}_bf16`): the plain wgmma kernel's params,
/// then x's map and dy's, both in 64-wide panels ([`TcLaunch::tensor_maps`]); its grid, split and
/// reduce, its block with the producer warp, and its shared memory plus the pipeline's mbarriers.
/// Vector shapes only.
pub fn backward_filter_tma_with(shape: &ConvShape, tile: TcTile, splits: usize) -> TcFilterLaunch {
    assert!(
        tile.is_hopper() && is_pointwise(shape),
        "TMA backward-filter: a Hopper tile ({}) and a pointwise shape",
        tile.name()
    );
    let kernel = BACKWARD_FILTER_POINTWISE_TMA_KERNELS[tile.index()];
    backward_filter_fed(
        backward_filter_with(shape, tile, false, splits),
        kernel,
        shape,
        tile,
    )
}

/// `plain` (a wgmma backward-filter of a pointwise shape) with its partial kernel the TMA-fed
/// `kernel`: x (N*H*W rows of C) and dy (the same pixels, rows of K) as 64-wide panels.
fn backward_filter_fed(
    plain: TcFilterLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
) -> TcFilterLaunch {
    let [n, h, w, c] = shape.x;
    let k = shape.y[3];
    let x = TcOperandMap::panels(n * h * w, c, tile);
    let dy = TcOperandMap::panels(n * h * w, k, tile);
    TcFilterLaunch {
        partial: plain
            .partial
            .fed_by_tma(kernel, x, Some(dy))
            .with_producer(tile),
        ..plain
    }
}

/// [`backward_filter_for`]'s tile (by the output channels K, the tiles' M axis).
fn backward_filter_tile(shape: &ConvShape, general: bool, family: TcFamily) -> TcTile {
    let tile = match shape.w[0] {
        0..=32 => TcTile::T32x64,
        33..=64 => TcTile::T64x64,
        _ => TcTile::T128x128,
    };
    let [_, r, s, c] = shape.w;
    family.tile(tile, general, r * s * c)
}

/// [`backward_filter_for`] whose input is the output of a training-mode batch norm with ReLU,
/// computed from BN's input as it is staged (params `(x, dy, out, mean, inv_std, gamma, beta,
/// ConvDims)`; the same tile, splits and reduce), or `None` for a shape that takes the general
/// loader.
pub fn backward_filter_bnrelu_for(shape: &ConvShape, family: TcFamily) -> Option<TcFilterLaunch> {
    if !backward_vectorizable(shape) {
        return None;
    }
    let tile = backward_filter_tile(shape, false, family);
    let splits = filter_splits(shape, tile);
    if family.weights_by_tma() && tile.is_hopper() {
        if is_pointwise(shape) {
            return backward_filter_bnrelu_tma_with(shape, tile, splits);
        }
        if backward_filter_im2col_applies(shape) {
            return backward_filter_bnrelu_im2col_with(shape, tile, splits);
        }
    }
    backward_filter_bnrelu_with(shape, tile, splits)
}

/// [`backward_filter_bnrelu_with`] on a Hopper tile with x through an im2col map
/// (`conv2d_wgmma_tma_im2col_backward_filter_bnrelu_{T}_bf16`, as [`backward_filter_im2col_with`]),
/// `None` where the plain kernel has none or C % 64 != 0.
pub fn backward_filter_bnrelu_im2col_with(
    shape: &ConvShape,
    tile: TcTile,
    splits: usize,
) -> Option<TcFilterLaunch> {
    let plain = backward_filter_bnrelu_with(shape, tile, splits)?;
    if !tile.is_hopper() || !backward_filter_im2col_applies(shape) {
        return None;
    }
    let kernel = match tile {
        TcTile::H128x128 => "conv2d_wgmma_tma_im2col_backward_filter_bnrelu_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_tma_im2col_backward_filter_bnrelu_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_tma_im2col_backward_filter_bnrelu_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_tma_im2col_backward_filter_bnrelu_64x64_bf16",
        _ => return None,
    };
    Some(backward_filter_im2col_fed(plain, kernel, shape, tile))
}

/// [`backward_filter_bnrelu_with`] of a pointwise shape on a Hopper tile with both operands by TMA
/// (`conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_{T}_bf16`, as [`backward_filter_tma_with`]),
/// `None` where the plain kernel has none.
pub fn backward_filter_bnrelu_tma_with(
    shape: &ConvShape,
    tile: TcTile,
    splits: usize,
) -> Option<TcFilterLaunch> {
    let plain = backward_filter_bnrelu_with(shape, tile, splits)?;
    let kernel = match tile {
        TcTile::H128x128 => "conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_64x64_bf16",
        _ => return None,
    };
    Some(backward_filter_fed(plain, kernel, shape, tile))
}

/// [`backward_filter_bnrelu_for`] with an explicit tile and split count (tests), `None` for a tile
/// without the kernel: only the tiles [`backward_filter_for`] picks have one.
pub fn backward_filter_bnrelu_with(
    shape: &ConvShape,
    tile: TcTile,
    splits: usize,
) -> Option<TcFilterLaunch> {
    let kernel = match tile {
        TcTile::T128x128 => "conv2d_tc_backward_filter_bnrelu_128x128_bf16",
        TcTile::T64x64 => "conv2d_tc_backward_filter_bnrelu_64x64_bf16",
        TcTile::T32x64 => "conv2d_tc_backward_filter_bnrelu_32x64_bf16",
        TcTile::H128x128 => "conv2d_wgmma_backward_filter_bnrelu_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_backward_filter_bnrelu_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_backward_filter_bnrelu_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_backward_filter_bnrelu_64x64_bf16",
        _ => return None,
    };
    let mut plan = backward_filter_with(shape, tile, false, splits);
    plan.partial.kernel = kernel;
    Some(plan)
}

/// Backward-filter with an explicit tile, loader and split count (tests, benchmarks). `general ==
/// false` requires C % 8 == 0 and K % 8 == 0.
pub fn backward_filter_with(
    shape: &ConvShape,
    tile: TcTile,
    general: bool,
    splits: usize,
) -> TcFilterLaunch {
    assert!(splits >= 1, "backward-filter needs at least one split");
    let [k, r, s, c] = shape.w;
    let count = k * r * s * c;
    let partial = launch(
        kernel_of(&BACKWARD_FILTER_KERNELS, tile, general),
        tile,
        k,
        r * s * c,
        splits,
    );
    let reduce = (splits > 1).then(|| TcLaunch {
        kernel: FILTER_REDUCE_KERNEL,
        tile,
        grid: (
            dim(count
                .div_ceil(REDUCE_THREADS as usize)
                .clamp(1, REDUCE_MAX_BLOCKS)),
            1,
            1,
        ),
        block: (REDUCE_THREADS, 1, 1),
        shared_bytes: 0,
        b_map: None,
        a_map: None,
        a_im2col: None,
        b_im2col: None,
        producer_threads: 0,
    });
    TcFilterLaunch {
        partial,
        splits,
        workspace_bytes: if splits > 1 { splits * count * 4 } else { 0 },
        reduce,
    }
}

/// Backward-filter's split count Z for `tile`: enough blocks for [`FILTER_TARGET_BLOCKS`], each split
/// keeping at least [`FILTER_MIN_ROWS_PER_SPLIT`] reduction rows, at most [`FILTER_MAX_SPLITS`].
pub fn filter_splits(shape: &ConvShape, tile: TcTile) -> usize {
    let [n, p, q, _] = shape.y;
    let [k, r, s, c] = shape.w;
    let tiles = k.div_ceil(tile.bm()) * (r * s * c).div_ceil(tile.bn());
    let wanted = FILTER_TARGET_BLOCKS.div_ceil(tiles);
    let most = (n * p * q)
        .div_ceil(FILTER_MIN_ROWS_PER_SPLIT)
        .min(FILTER_MAX_SPLITS);
    wanted.clamp(1, most.max(1))
}
