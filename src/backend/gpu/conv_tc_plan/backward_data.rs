//! The backward-data launches: plain (`add`: plus an addend), with the batch-norm backward partials
//! in the epilogue, and Hopper's fed by TMA (see the module's header for the kernels).

use super::super::conv_plan::ConvShape;
use super::super::conv_tc_kernels::{
    kernel_of, BACKWARD_DATA_ADD_IM2COL_TMA_KERNELS, BACKWARD_DATA_ADD_KERNELS,
    BACKWARD_DATA_ADD_POINTWISE_TMA_KERNELS, BACKWARD_DATA_IM2COL_TMA_KERNELS,
    BACKWARD_DATA_KERNELS, BACKWARD_DATA_POINTWISE_TMA_KERNELS,
};
use super::{
    backward_vectorizable, launch, output_tile, TcFamily, TcIm2colOperand, TcLaunch, TcOperandMap,
    TcTile,
};
/// Backward-data, `dx = conv_transpose(dy, w)` (`add`: `+ addend`): one launch; grid z holds the
/// stride^2 phases. Tile by the input channels C, the vector kernel when C and K are multiples of 8.
pub fn backward_data(shape: &ConvShape, add: bool) -> TcLaunch {
    backward_data_for(shape, add, TcFamily::MmaSync)
}

/// [`backward_data`] with the kernels of `family`.
pub fn backward_data_for(shape: &ConvShape, add: bool, family: TcFamily) -> TcLaunch {
    let general = !backward_vectorizable(shape);
    let tile = family.tile(
        output_tile(backward_data_rows(shape), shape.x[3]),
        general,
        shape.x[3],
    );
    if family.weights_by_tma() && tile.is_hopper() && !general {
        if backward_data_pointwise_applies(shape) {
            return backward_data_tma_with(shape, add, tile);
        }
        if backward_data_im2col_applies(shape, tile) {
            return backward_data_im2col_with(shape, add, tile);
        }
    }
    backward_data_with(shape, add, tile, general)
}

/// Whether backward-data of `shape` can bring dy by TMA as an [N*P*Q][K] matrix: a 1x1 convolution
/// without padding, of any stride. Its one stride phase with a tap, (0, 0), has dy's pixels in order
/// as its GEMM rows (P = ceil(H / stride)); the other phases have no tap and load nothing.
pub fn backward_data_pointwise_applies(shape: &ConvShape) -> bool {
    let [_, r, s, _] = shape.w;
    r == 1 && s == 1 && shape.geom.pad == 0
}

/// Whether backward-data of `shape` on the Hopper `tile` can bring dy through an im2col map: stride
/// 1 (one class), K a multiple of the tile's depth (a slice inside one tap), a square filter with
/// pad <= R - 1 (the transposed convolution's padding R - 1 - pad, the same in H and W).
pub fn backward_data_im2col_applies(shape: &ConvShape, tile: TcTile) -> bool {
    let [k, r, s, _] = shape.w;
    shape.geom.stride == 1 && k % tile.bk() == 0 && r == s && shape.geom.pad < r
}

/// Stride-1 backward-data on a Hopper `tile` with both operands by TMA, dy through an im2col map
/// (`conv2d_wgmma_tma_im2col_backward_data[_add]_{T}_bf16`): the plain wgmma kernel's params, then
/// w's map in 64-wide panels of its [K][R*S*C] view and dy's im2col map
/// ([`TcLaunch::encode_maps`]); its grid, its block with the producer warp, and its shared memory
/// plus the pipeline's mbarriers. Vector shapes ([`backward_data_im2col_applies`]).
pub fn backward_data_im2col_with(shape: &ConvShape, add: bool, tile: TcTile) -> TcLaunch {
    assert!(
        tile.is_hopper() && backward_data_im2col_applies(shape, tile),
        "im2col backward-data: a Hopper tile ({}) and a stride-1 shape of whole-tap slices",
        tile.name()
    );
    let table = if add {
        &BACKWARD_DATA_ADD_IM2COL_TMA_KERNELS
    } else {
        &BACKWARD_DATA_IM2COL_TMA_KERNELS
    };
    backward_data_im2col_fed(
        backward_data_with(shape, add, tile, false),
        table[tile.index()],
        shape,
        tile,
    )
}

/// `plain` (a wgmma backward-data launch of a stride-1 shape) as the im2col-fed `kernel`.
fn backward_data_im2col_fed(
    plain: TcLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
) -> TcLaunch {
    TcLaunch {
        a_im2col: Some(TcIm2colOperand::output_gradient(shape, tile)),
        ..plain.fed_by_tma(kernel, TcOperandMap::weight_panels(shape, tile), None)
    }
    .with_producer(tile)
}

/// Backward-data of a 1x1 shape ([`backward_data_pointwise_applies`]) on a Hopper `tile` with both
/// operands by TMA (`conv2d_wgmma_tma_pointwise_backward_data[_add]_{T}_bf16`): the plain wgmma kernel's params,
/// then w's map in 64-wide panels and dy's ([`TcLaunch::tensor_maps`]); its grid, its block with the
/// producer warp, and its shared memory plus the pipeline's mbarriers. Vector shapes only
/// (C % 8 == 0, K % 8 == 0).
pub fn backward_data_tma_with(shape: &ConvShape, add: bool, tile: TcTile) -> TcLaunch {
    assert!(
        tile.is_hopper() && backward_data_pointwise_applies(shape),
        "TMA backward-data: a Hopper tile ({}) and a 1x1 shape without padding",
        tile.name()
    );
    let table = if add {
        &BACKWARD_DATA_ADD_POINTWISE_TMA_KERNELS
    } else {
        &BACKWARD_DATA_POINTWISE_TMA_KERNELS
    };
    backward_data_fed(
        backward_data_with(shape, add, tile, false),
        table[tile.index()],
        shape,
        tile,
    )
}

/// `plain` (a wgmma backward-data launch of a 1x1 shape without padding) as the TMA-fed `kernel`.
fn backward_data_fed(
    plain: TcLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
) -> TcLaunch {
    let dy = TcOperandMap::pointwise_output_gradient(shape, tile);
    plain
        .fed_by_tma(kernel, TcOperandMap::weight_panels(shape, tile), Some(dy))
        .with_producer(tile)
}

/// Backward-data with an explicit tile and loader (tests, benchmarks). `general == false` requires
/// C % 8 == 0 and K % 8 == 0.
pub fn backward_data_with(shape: &ConvShape, add: bool, tile: TcTile, general: bool) -> TcLaunch {
    let names = if add {
        &BACKWARD_DATA_ADD_KERNELS
    } else {
        &BACKWARD_DATA_KERNELS
    };
    let st = shape.geom.stride;
    launch(
        kernel_of(names, tile, general),
        tile,
        backward_data_rows(shape),
        shape.x[3],
        st * st,
    )
}

/// Backward-data with the batch-norm backward partials in its epilogue
/// (kernels/conv_tc_bn_grad.cuh; params `(dy, w, dx, addend or 0, bn_x, mean, inv_std, gamma, beta,
/// mask as int, bn_y or 0, partial, ConvDims)`): [`backward_data_for`]'s tile and grid, so `dx` is
/// the same bits before its mask, or `None`
/// for a shape that takes the general loader (the partials need the staged 16-byte store). The
/// kernel writes [`bn_grad_partials`] floats.
pub fn backward_data_bn_for(shape: &ConvShape, family: TcFamily) -> Option<TcLaunch> {
    if !backward_vectorizable(shape) {
        return None;
    }
    let tile = output_tile(backward_data_rows(shape), shape.x[3]);
    let tile = family.tile(tile, false, shape.x[3]);
    if family.weights_by_tma() && tile.is_hopper() {
        if backward_data_pointwise_applies(shape) {
            return backward_data_bn_tma_with(shape, tile);
        }
        if backward_data_im2col_applies(shape, tile) {
            return backward_data_bn_im2col_with(shape, tile);
        }
    }
    backward_data_bn_with(shape, tile)
}

/// [`backward_data_bn_with`] of a stride-1 shape on a Hopper tile with dy through an im2col map
/// (`conv2d_wgmma_tma_im2col_backward_data_bn_{T}_bf16`, as [`backward_data_im2col_with`]), `None`
/// where the plain kernel has none or the feed does not apply.
pub fn backward_data_bn_im2col_with(shape: &ConvShape, tile: TcTile) -> Option<TcLaunch> {
    let plain = backward_data_bn_with(shape, tile)?;
    if !tile.is_hopper() || !backward_data_im2col_applies(shape, tile) {
        return None;
    }
    let kernel = match tile {
        TcTile::H128x128 => "conv2d_wgmma_tma_im2col_backward_data_bn_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_tma_im2col_backward_data_bn_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_tma_im2col_backward_data_bn_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_tma_im2col_backward_data_bn_64x64_bf16",
        _ => return None,
    };
    Some(backward_data_im2col_fed(plain, kernel, shape, tile))
}

/// [`backward_data_bn_with`] of a 1x1 shape without padding on a Hopper tile with both operands by TMA
/// (`conv2d_wgmma_tma_pointwise_backward_data_bn_{T}_bf16`, as [`backward_data_tma_with`]), `None`
/// where the plain kernel has none.
pub fn backward_data_bn_tma_with(shape: &ConvShape, tile: TcTile) -> Option<TcLaunch> {
    let plain = backward_data_bn_with(shape, tile)?;
    let kernel = match tile {
        TcTile::H128x128 => "conv2d_wgmma_tma_pointwise_backward_data_bn_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_tma_pointwise_backward_data_bn_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_tma_pointwise_backward_data_bn_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_tma_pointwise_backward_data_bn_64x64_bf16",
        _ => return None,
    };
    Some(backward_data_fed(plain, kernel, shape, tile))
}

/// [`backward_data_bn_for`] with an explicit tile (tests), `None` for a tile without the kernel:
/// only the tiles [`backward_data_for`] picks have one.
pub fn backward_data_bn_with(shape: &ConvShape, tile: TcTile) -> Option<TcLaunch> {
    let kernel = match tile {
        TcTile::T128x128 => "conv2d_tc_backward_data_bn_128x128_bf16",
        TcTile::T64x64 => "conv2d_tc_backward_data_bn_64x64_bf16",
        TcTile::T128x32 => "conv2d_tc_backward_data_bn_128x32_bf16",
        TcTile::T64x16 => "conv2d_tc_backward_data_bn_64x16_bf16",
        TcTile::H128x128 => "conv2d_wgmma_backward_data_bn_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_backward_data_bn_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_backward_data_bn_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_backward_data_bn_64x64_bf16",
        _ => return None,
    };
    let st = shape.geom.stride;
    Some(launch(
        kernel,
        tile,
        backward_data_rows(shape),
        shape.x[3],
        st * st,
    ))
}

/// Floats of the partials a [`backward_data_bn_for`] launch writes for `channels` channels:
/// `[2][channels][P]`, one partition per block of the grid's x and z (phase) axes.
pub fn bn_grad_partials(launch: &TcLaunch, channels: usize) -> usize {
    2 * launch.grid.0 as usize * launch.grid.2 as usize * channels
}

/// Rows of backward-data's GEMM: the largest phase's pixels, N*ceil(H/st)*ceil(W/st).
fn backward_data_rows(shape: &ConvShape) -> usize {
    let [n, h, w, _] = shape.x;
    let st = shape.geom.stride;
    n * h.div_ceil(st) * w.div_ceil(st)
}
