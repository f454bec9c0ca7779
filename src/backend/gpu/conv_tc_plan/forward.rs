//! The forward launches: plain, with batch-norm statistics in the epilogue, with BN + ReLU applied to
//! the input as it is staged, and Hopper's fed by TMA (see the module's header for the kernels).

use super::super::conv_plan::ConvShape;
use super::super::conv_tc_kernels::{
    kernel_of, FORWARD_IM2COL_TMA_KERNELS, FORWARD_KERNELS, FORWARD_POINTWISE_TMA_KERNELS,
    FORWARD_STATS_IM2COL_TMA_KERNELS, FORWARD_STATS_KERNELS, FORWARD_STATS_POINTWISE_TMA_KERNELS,
    FORWARD_STATS_TMA_KERNELS, FORWARD_TMA_KERNELS,
};
use super::super::launch_constants::TC_BN_TABLE_CHANNELS;
use super::{
    forward_vectorizable, launch, output_tile, TcFamily, TcIm2colOperand, TcLaunch, TcOperandMap,
    TcTile,
};

/// How a forward-with-statistics kernel splits the output's `rows` = N*P*Q pixels among its
/// batch-norm statistics partials: one per block row of tiles, `tile_rows` (BM) rows each, the last
/// one shorter. The kernel writes `[2][channels][partitions]` floats (per partition and channel the
/// sum, then the sum of squared deviations from the partition's own mean; kernels/conv_tc_stats.cuh),
/// which `batch_norm_finalize_tiles_f32` (kernels/batch_norm.cu) merges given `partitions`, `rows`
/// and `tile_rows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcStatsPartition {
    pub rows: usize,
    pub channels: usize,
    pub tile_rows: usize,
}

impl TcStatsPartition {
    fn new(tile: TcTile, y: [usize; 4]) -> Self {
        let [n, p, q, k] = y;
        TcStatsPartition {
            rows: n * p * q,
            channels: k,
            tile_rows: tile.bm(),
        }
    }

    /// Partials per channel: the forward grid's `grid.x`.
    pub fn partitions(&self) -> usize {
        self.rows.div_ceil(self.tile_rows).max(1)
    }

    /// Floats of the statistics buffer.
    pub fn floats(&self) -> usize {
        2 * self.partitions() * self.channels
    }
}

/// Forward, `y = conv(x, w)`: tile by the output channels K and the pixel count, the vector kernel
/// when C % 8 == 0.
pub fn forward(shape: &ConvShape) -> TcLaunch {
    forward_for(shape, TcFamily::MmaSync)
}

/// [`forward`] with the kernels of `family`.
pub fn forward_for(shape: &ConvShape, family: TcFamily) -> TcLaunch {
    let general = !forward_vectorizable(shape);
    let tile = family.tile(forward_tile(shape.y), general, shape.y[3]);
    if family.weights_by_tma() && tile.is_hopper() {
        return forward_tma_with(shape, tile, false);
    }
    forward_with(shape, tile, general)
}

/// How a TMA-fed forward brings its A operand, the input x (its weights always come by TMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcFeed {
    /// By every thread's cp.async, as the plain wgmma kernel (`conv2d_wgmma_tma_forward*`).
    Weights,
    /// As an [N*H*W][C] matrix in tiled boxes: 1x1 convolutions of stride 1 without padding
    /// ([`is_pointwise`]; `conv2d_wgmma_tma_pointwise_forward*`).
    Pointwise,
    /// Through an im2col map, a slice one copy: shapes whose C is a multiple of the tile's BK
    /// (`conv2d_wgmma_tma_im2col_forward*`).
    Im2col,
}

impl TcFeed {
    pub const ALL: [TcFeed; 3] = [TcFeed::Weights, TcFeed::Pointwise, TcFeed::Im2col];

    /// Whether a forward of `shape` (a vector shape: C % 8 == 0) on the Hopper `tile` can take it.
    pub fn applies(self, shape: &ConvShape, tile: TcTile) -> bool {
        match self {
            TcFeed::Weights => true,
            TcFeed::Pointwise => is_pointwise(shape),
            TcFeed::Im2col => shape.x[3] % tile.bk() == 0,
        }
    }
}

/// The feed the plan takes: the tiled boxes for a pointwise shape (the simplest copy), else im2col
/// where C allows, else the weights alone.
pub fn forward_feed(shape: &ConvShape, tile: TcTile) -> TcFeed {
    if TcFeed::Pointwise.applies(shape, tile) {
        TcFeed::Pointwise
    } else if TcFeed::Im2col.applies(shape, tile) {
        TcFeed::Im2col
    } else {
        TcFeed::Weights
    }
}

/// The forward of a Hopper `tile` fed by TMA as the plan feeds it ([`forward_feed`]).
pub fn forward_tma_with(shape: &ConvShape, tile: TcTile, stats: bool) -> TcLaunch {
    forward_tma_fed(shape, tile, stats, forward_feed(shape, tile))
}

/// The forward of a Hopper `tile` with its weights by TMA and its input as `feed` says
/// (`conv2d_wgmma_tma_[pointwise_|im2col_]forward[_stats]_{T}_bf16`): params those of the plain
/// wgmma kernel, then the maps ([`TcLaunch::encode_maps`]). Its grid and block are the plain
/// kernel's (the block with the producer warp where both operands come by TMA:
/// `TcLaunch::with_producer`), its shared memory that plus the pipeline's mbarriers. Vector
/// shapes only (C % 8 == 0), and a `feed` that applies ([`TcFeed::applies`]).
pub fn forward_tma_fed(shape: &ConvShape, tile: TcTile, stats: bool, feed: TcFeed) -> TcLaunch {
    assert!(
        tile.is_hopper() && feed.applies(shape, tile),
        "the {} tile has no TMA kernel fed by {feed:?} for {shape:?}",
        tile.name()
    );
    let table = match (feed, stats) {
        (TcFeed::Weights, false) => &FORWARD_TMA_KERNELS,
        (TcFeed::Weights, true) => &FORWARD_STATS_TMA_KERNELS,
        (TcFeed::Pointwise, false) => &FORWARD_POINTWISE_TMA_KERNELS,
        (TcFeed::Pointwise, true) => &FORWARD_STATS_POINTWISE_TMA_KERNELS,
        (TcFeed::Im2col, false) => &FORWARD_IM2COL_TMA_KERNELS,
        (TcFeed::Im2col, true) => &FORWARD_STATS_IM2COL_TMA_KERNELS,
    };
    let plain = if stats {
        forward_stats_with(shape, tile, false).0
    } else {
        forward_with(shape, tile, false)
    };
    forward_fed(plain, table[tile.index()], shape, tile, feed)
}

/// The forward launch `plain` of a Hopper `tile` as the TMA-fed `kernel`: the weights' map, and
/// the input's as `feed` brings it.
fn forward_fed(
    plain: TcLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
    feed: TcFeed,
) -> TcLaunch {
    let input = (feed == TcFeed::Pointwise).then(|| TcOperandMap::pointwise_input(shape, tile));
    let fed = TcLaunch {
        a_im2col: (feed == TcFeed::Im2col).then(|| TcIm2colOperand::input(shape, tile)),
        ..plain.fed_by_tma(kernel, TcOperandMap::weights(shape, tile), input)
    };
    match feed {
        TcFeed::Weights => fed,
        TcFeed::Pointwise | TcFeed::Im2col => fed.with_producer(tile),
    }
}

/// Whether a forward's A operand is its input itself, as an [N*H*W][C] matrix: a 1x1 convolution of
/// stride 1 without padding (the output pixels are the input's).
pub fn is_pointwise(shape: &ConvShape) -> bool {
    let [_, r, s, _] = shape.w;
    r == 1 && s == 1 && shape.geom.stride == 1 && shape.geom.pad == 0
}

/// The forward's tile for an output `y = [N, P, Q, K]`: a function of the output's shape alone
/// (its N*P*Q rows and K columns), so that the batch norm reading `y` finds the statistics
/// partition ([`forward_stats_partition`]) from its input's shape.
fn forward_tile(y: [usize; 4]) -> TcTile {
    let [n, p, q, k] = y;
    output_tile(n * p * q, k)
}

/// Forward with batch-norm statistics in the epilogue: the same tile and loader as [`forward`],
/// plus the statistics partials (`stats` parameter) of [`forward_stats_partition`]`(shape.y)`.
pub fn forward_stats(shape: &ConvShape) -> TcLaunch {
    forward_stats_for(shape, TcFamily::MmaSync)
}

/// [`forward_stats`] with the kernels of `family` (whose tiles keep the rows of the mma.sync tile
/// they stand in for, so the statistics partition is [`forward_stats_partition`] either way).
pub fn forward_stats_for(shape: &ConvShape, family: TcFamily) -> TcLaunch {
    let general = !forward_vectorizable(shape);
    let tile = family.tile(forward_tile(shape.y), general, shape.y[3]);
    if family.weights_by_tma() && tile.is_hopper() {
        return forward_tma_with(shape, tile, true);
    }
    forward_stats_with(shape, tile, general).0
}

/// [`forward_stats`] with an explicit tile and loader (tests), and the partition its statistics
/// follow.
pub fn forward_stats_with(
    shape: &ConvShape,
    tile: TcTile,
    general: bool,
) -> (TcLaunch, TcStatsPartition) {
    let [n, p, q, k] = shape.y;
    let kernel = kernel_of(&FORWARD_STATS_KERNELS, tile, general);
    (
        launch(kernel, tile, n * p * q, k, 1),
        TcStatsPartition::new(tile, shape.y),
    )
}

/// [`forward_stats_for`] whose input is the output of a training-mode batch norm with ReLU,
/// computed from BN's input as it is staged (kernels/conv_tc_bn_input.cuh; params `(x, w, y, stats,
/// mean, inv_std, gamma, beta, ConvDims)`): the same tile, grid and statistics partition,
/// [`BN_TABLE_BYTES`] more shared memory (the map's coefficients), or `None` for a shape that takes
/// the general loader or has more than `TC_BN_TABLE_CHANNELS` input channels.
pub fn forward_stats_bnrelu_for(shape: &ConvShape, family: TcFamily) -> Option<TcLaunch> {
    if !forward_vectorizable(shape) {
        return None;
    }
    let tile = family.tile(forward_tile(shape.y), false, shape.y[3]);
    if family.weights_by_tma() && tile.is_hopper() {
        return forward_stats_bnrelu_tma_with(shape, tile);
    }
    forward_stats_bnrelu_with(shape, tile)
}

/// [`forward_stats_bnrelu_with`] for a Hopper tile fed by TMA as the plan feeds it
/// ([`forward_feed`]), or `None` where the plain kernel has none.
pub fn forward_stats_bnrelu_tma_with(shape: &ConvShape, tile: TcTile) -> Option<TcLaunch> {
    forward_stats_bnrelu_tma_fed(shape, tile, forward_feed(shape, tile))
}

/// [`forward_stats_bnrelu_with`] for a Hopper tile with its weights by TMA and its input as `feed`
/// says (`conv2d_wgmma_tma_[pointwise_|im2col_]forward_stats_bnrelu_{T}_bf16`; the BN + ReLU
/// applied in shared memory after the copy lands), as [`forward_tma_fed`]; `None` where the plain
/// kernel has none or `feed` does not apply.
pub fn forward_stats_bnrelu_tma_fed(
    shape: &ConvShape,
    tile: TcTile,
    feed: TcFeed,
) -> Option<TcLaunch> {
    let plain = forward_stats_bnrelu_with(shape, tile)?;
    if !tile.is_hopper() || !feed.applies(shape, tile) {
        return None;
    }
    let kernel = match (tile, feed) {
        (TcTile::H128x128, TcFeed::Weights) => "conv2d_wgmma_tma_forward_stats_bnrelu_128x128_bf16",
        (TcTile::H64x128, TcFeed::Weights) => "conv2d_wgmma_tma_forward_stats_bnrelu_64x128_bf16",
        (TcTile::H128x64, TcFeed::Weights) => "conv2d_wgmma_tma_forward_stats_bnrelu_128x64_bf16",
        (TcTile::H64x64, TcFeed::Weights) => "conv2d_wgmma_tma_forward_stats_bnrelu_64x64_bf16",
        (TcTile::H128x128, TcFeed::Pointwise) => {
            "conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_128x128_bf16"
        }
        (TcTile::H64x128, TcFeed::Pointwise) => {
            "conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_64x128_bf16"
        }
        (TcTile::H128x64, TcFeed::Pointwise) => {
            "conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_128x64_bf16"
        }
        (TcTile::H64x64, TcFeed::Pointwise) => {
            "conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_64x64_bf16"
        }
        (TcTile::H128x128, TcFeed::Im2col) => {
            "conv2d_wgmma_tma_im2col_forward_stats_bnrelu_128x128_bf16"
        }
        (TcTile::H64x128, TcFeed::Im2col) => {
            "conv2d_wgmma_tma_im2col_forward_stats_bnrelu_64x128_bf16"
        }
        (TcTile::H128x64, TcFeed::Im2col) => {
            "conv2d_wgmma_tma_im2col_forward_stats_bnrelu_128x64_bf16"
        }
        (TcTile::H64x64, TcFeed::Im2col) => {
            "conv2d_wgmma_tma_im2col_forward_stats_bnrelu_64x64_bf16"
        }
        _ => return None,
    };
    Some(forward_fed(plain, kernel, shape, tile, feed))
}

/// [`forward_stats_bnrelu_for`] with an explicit tile (tests), `None` for a tile without the kernel:
/// only the tiles [`forward_stats_for`] picks have one.
pub fn forward_stats_bnrelu_with(shape: &ConvShape, tile: TcTile) -> Option<TcLaunch> {
    let kernel = match tile {
        TcTile::T128x128 => "conv2d_tc_forward_stats_bnrelu_128x128_bf16",
        TcTile::T64x64 => "conv2d_tc_forward_stats_bnrelu_64x64_bf16",
        TcTile::T128x32 => "conv2d_tc_forward_stats_bnrelu_128x32_bf16",
        TcTile::T64x16 => "conv2d_tc_forward_stats_bnrelu_64x16_bf16",
        TcTile::H128x128 => "conv2d_wgmma_forward_stats_bnrelu_128x128_bf16",
        TcTile::H64x128 => "conv2d_wgmma_forward_stats_bnrelu_64x128_bf16",
        TcTile::H128x64 => "conv2d_wgmma_forward_stats_bnrelu_128x64_bf16",
        TcTile::H64x64 => "conv2d_wgmma_forward_stats_bnrelu_64x64_bf16",
        _ => return None,
    };
    if shape.x[3] > TC_BN_TABLE_CHANNELS as usize {
        return None;
    }
    let [n, p, q, k] = shape.y;
    let mut l = launch(kernel, tile, n * p * q, k, 1);
    l.shared_bytes += BN_TABLE_BYTES;
    Some(l)
}

/// Shared memory a `_bnrelu_` forward adds to its tile's: the coefficient table, scale and shift in
/// f32 for up to `TC_BN_TABLE_CHANNELS` channels, the same for every layer so that the kernel's
/// shared-memory opt-in never changes (kTcBnTableBytes in kernels/conv_tc_bn_input.cuh).
pub const BN_TABLE_BYTES: u32 = 2 * TC_BN_TABLE_CHANNELS * 4;

/// The statistics partition of [`forward_stats`] for a convolution whose output is `y`.
pub fn forward_stats_partition(y: [usize; 4]) -> TcStatsPartition {
    TcStatsPartition::new(forward_tile(y), y)
}

/// Forward with an explicit tile and loader (tests, benchmarks). `general == false` requires
/// C % 8 == 0 (the kernel traps otherwise).
pub fn forward_with(shape: &ConvShape, tile: TcTile, general: bool) -> TcLaunch {
    let [n, p, q, k] = shape.y;
    launch(
        kernel_of(&FORWARD_KERNELS, tile, general),
        tile,
        n * p * q,
        k,
        1,
    )
}
