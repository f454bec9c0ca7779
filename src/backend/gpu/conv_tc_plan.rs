//! Launch planning for the bf16 tensor-core implicit-GEMM convolutions of `kernels/conv_tc_*.cu`:
//! which kernel (tile configuration, vector or general loader), its grid, block and dynamic shared
//! memory, and backward-filter's split of its long reduction with the workspace that needs.
//!
//! Everything here is a pure function of the [`ConvShape`], never of the device, so a shape computes
//! the same bits on every GPU and in the emulator (backward-filter's split count fixes its summation
//! order).
//!
//! GEMM views (bf16 operands, fp32 accumulation; see each kernel file's header):
//!
//! | pass            | rows (M)                    | columns (Ncol) | reduction          | grid z   |
//! |-----------------|-----------------------------|----------------|--------------------|----------|
//! | forward         | N*P*Q                       | K              | R*S*C              | 1        |
//! | backward-data   | N*ceil(H/st)*ceil(W/st)     | C              | taps of a phase * K| stride^2 |
//! | backward-filter | K                           | R*S*C          | N*P*Q              | splits Z |
//!
//! Kernels and their parameters (`ConvDims` by value, as in [`super::conv_plan::ConvDims`]; every
//! pointer is a device address, 16-byte aligned for the bf16 tensors; device allocations are):
//!
//! | kernel                                         | params                                                         |
//! |------------------------------------------------|----------------------------------------------------------------|
//! | `conv2d_tc_forward_[general_]{T}_bf16`          | `(const bf16* x, const bf16* w, bf16* y, ConvDims d)`          |
//! | `conv2d_tc_forward_stats_[general_]{T}_bf16`    | `(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d)`: `stats` as [`TcStatsPartition`] |
//! | `conv2d_tc_backward_data_[general_]{T}_bf16`    | `(const bf16* dy, const bf16* w, bf16* dx, ConvDims d)`        |
//! | `conv2d_tc_backward_data_add_[general_]{T}_bf16`| `(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, ConvDims d)` |
//! | `conv2d_tc_backward_filter_[general_]{T}_bf16`  | `(const bf16* x, const bf16* dy, float* out, ConvDims d)`: `out` is `dw` when `splits == 1`, else the workspace |
//! | `conv2d_tc_backward_filter_reduce_bf16`         | `(const float* workspace, float* dw, int splits, unsigned long long count)`, `count = K*R*S*C` |
//!
//! `{T}` is the tile ([`TcTile::name`]): `128x128`, `64x64`, `128x32`, `64x16`, `32x64` (BM x BN), and
//! `128x128w64` (128 x 128 in four 64 x 64 warp tiles). Without
//! `general_` a kernel needs `C % 8 == 0` (forward) or `C % 8 == 0 && K % 8 == 0` (the backward
//! passes) for its 16-byte `cp.async` loads, and traps otherwise; the plan picks `general_` (element
//! gathers, the same tensor-core math) for every other shape. (The backend widens the C = 3 stems
//! to 8 channels for forward and backward-filter first, `bf16_convolution.rs`, so those take the
//! vector kernels.)
//! Layouts: x, y, dy, dx, addend bf16 NHWC; w bf16 KRSC; dw fp32 KRSC.
//!
//! Hopper's wgmma tiles ([`TcTile::HOPPER`]) have kernels `conv2d_wgmma_{op}_{BMxBN}_bf16` for every
//! pass above (`{op}` as in the `conv2d_tc_*` names, the same params; the backward-filter partials
//! summed by the same reduce kernel), vector loader only (kernels/conv_wgmma_*_sm90a.cu), on compute
//! capability 9.0 and in the emulator. The forward's also come fed by TMA,
//! `conv2d_wgmma_tma_forward[_stats]_{BMxBN}_bf16` (kernels/conv_wgmma_tma_sm90a.cu;
//! [`TcFamily::WgmmaTma`], [`forward_tma_with`]): the plain kernel's params, then the weights'
//! tensor map by value ([`TcLaunch::b_map`]), and 64 more bytes of shared memory; and for 1x1
//! convolutions of stride 1 without padding, `conv2d_wgmma_tma_pointwise_forward[_stats]_{BMxBN}_bf16`
//! with the input by TMA too (a second map, [`TcLaunch::a_map`]); and the `_stats_bnrelu_`
//! forwards of the four planned tiles likewise ([`forward_stats_bnrelu_tma_with`]). For pointwise
//! shapes backward-data too: `conv2d_wgmma_tma_pointwise_backward_data[_add|_bn]_{BMxBN}_bf16`
//! ([`backward_data_tma_with`], [`backward_data_bn_tma_with`]; w's map in 64-wide panels, then dy's),
//! and backward-filter: `conv2d_wgmma_tma_pointwise_backward_filter[_bnrelu]_{BMxBN}_bf16`
//! ([`backward_filter_tma_with`], [`backward_filter_bnrelu_tma_with`]; x's map, then dy's, both in
//! 64-wide panels; the same split and reduce).
//!
//! `128x128w64` (4 stages, 65536 bytes) and the wgmma tiles but 64x64 use more than 48 KiB of dynamic shared
//! memory: their launches need `Driver::set_max_dynamic_shared` first
//! ([`TcLaunch::needs_shared_opt_in`]). The plan picks none of them yet; the tile sweep
//! (`benches/tc_tiles.rs`) measures them against the others.

use super::conv_plan::ConvShape;
use super::conv_tc_kernels::{
    kernel_of, BACKWARD_DATA_ADD_IM2COL_TMA_KERNELS, BACKWARD_DATA_ADD_KERNELS,
    BACKWARD_DATA_ADD_POINTWISE_TMA_KERNELS, BACKWARD_DATA_IM2COL_TMA_KERNELS,
    BACKWARD_DATA_KERNELS, BACKWARD_DATA_POINTWISE_TMA_KERNELS, BACKWARD_FILTER_IM2COL_TMA_KERNELS,
    BACKWARD_FILTER_KERNELS, BACKWARD_FILTER_POINTWISE_TMA_KERNELS, FORWARD_IM2COL_TMA_KERNELS,
    FORWARD_KERNELS, FORWARD_POINTWISE_TMA_KERNELS, FORWARD_STATS_IM2COL_TMA_KERNELS,
    FORWARD_STATS_KERNELS, FORWARD_STATS_POINTWISE_TMA_KERNELS, FORWARD_STATS_TMA_KERNELS,
    FORWARD_TMA_KERNELS,
};
use super::driver::{DevicePtr, Driver};
use super::launch_constants::{
    TC_BN_TABLE_CHANNELS, WGMMA_PRODUCER_MAX_TILE_N, WGMMA_PRODUCER_THREADS,
    WGMMA_TMA_BARRIER_BYTES,
};
use super::tensor_map::{TensorMapBytes, TiledMap2d};

pub use super::conv_tc_kernels::FILTER_REDUCE_KERNEL;
pub use super::conv_tc_maps::{TcIm2colOperand, TcOperandMap};
pub use super::conv_tc_tile::{TcFamily, TcTile};

/// Dynamic shared memory a kernel may use without opting in (`cuFuncSetAttribute`).
pub const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

/// One kernel launch: the kernel's name, grid, block and dynamic shared memory bytes, and for a
/// kernel fed by TMA, the tensor maps its last parameters take ([`TcLaunch::tensor_maps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcLaunch {
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
    /// `Some` for a kernel fed by TMA (`conv2d_wgmma_tma_*`): the map of its GEMM's B operand, the
    /// first `const __grid_constant__ TmaMap` parameter after `ConvDims`: the weights w of the
    /// forward (`w_map`) and of backward-data, backward-filter's input x (`x_map`).
    pub b_map: Option<TcOperandMap>,
    /// `Some` for `conv2d_wgmma_tma_pointwise_*`: the map of the GEMM's A operand, after the B map:
    /// the forward's input x (`x_map`), the output gradient dy of both backward passes (`dy_map`).
    pub a_map: Option<TcOperandMap>,
    /// `Some` for `conv2d_wgmma_tma_im2col_{forward,backward_data}*` (instead of `a_map`): the A
    /// operand through an im2col map, the forward's x or backward-data's dy, after the B map.
    pub a_im2col: Option<TcIm2colOperand>,
    /// `Some` for `conv2d_wgmma_tma_im2col_backward_filter*` (instead of `b_map`): its x through an
    /// im2col map (`x_map`), after dy's tiled map (`a_map`): the tiled maps come first.
    pub b_im2col: Option<TcIm2colOperand>,
    /// Whether `block` includes the producer warp of a kernel with both operands by TMA
    /// ([`TcLaunch::without_producer_warp`] takes it out again).
    pub producer_warp: bool,
}

impl TcLaunch {
    /// The tensor maps the launch takes after its other parameters, in order, over the B operand's
    /// tensor at `b` (w, or backward-filter's x) and the A operand's at `a` (the forward's x, the
    /// backward passes' dy), each to be made by `Driver::encode_tensor_map_2d` and passed by
    /// `KernelArgs::tensor_map`; none for a launch not fed by TMA.
    pub fn tensor_maps(&self, b: DevicePtr, a: DevicePtr) -> impl Iterator<Item = TiledMap2d> {
        let b_map = self.b_map.map(|m| m.tiled_map(b));
        b_map.into_iter().chain(self.a_map.map(|m| m.tiled_map(a)))
    }

    /// Every tensor map the launch takes after its other parameters, in order, encoded by `driver`
    /// over the B operand's tensor at `b` and the A operand's at `a` ([`Self::tensor_maps`]'s tiled
    /// maps, then the im2col map of [`Self::a_im2col`] or [`Self::b_im2col`]); none for a launch not
    /// fed by TMA. Lazily, one map at a time: a launch in the training step allocates nothing.
    pub fn encode_maps<'d, D: Driver + ?Sized>(
        &self,
        driver: &'d D,
        b: DevicePtr,
        a: DevicePtr,
    ) -> impl Iterator<Item = crate::Result<TensorMapBytes>> + 'd {
        let tiled = self.b_map.map(|m| m.tiled_map(b));
        let tiled = tiled.into_iter().chain(self.a_map.map(|m| m.tiled_map(a)));
        let im2col = self.a_im2col.map(|x| x.im2col_map(a));
        let im2col = im2col
            .into_iter()
            .chain(self.b_im2col.map(|x| x.im2col_map(b)));
        tiled
            .map(move |m| driver.encode_tensor_map_2d(&m))
            .chain(im2col.map(move |m| driver.encode_tensor_map_im2col(&m)))
    }

    /// This plain wgmma launch as its TMA-fed `kernel`: the same grid and block, the pipeline's
    /// mbarriers in the shared memory, and the maps.
    fn fed_by_tma(
        self,
        kernel: &'static str,
        b_map: TcOperandMap,
        a_map: Option<TcOperandMap>,
    ) -> TcLaunch {
        TcLaunch {
            kernel,
            shared_bytes: self.shared_bytes + WGMMA_TMA_BARRIER_BYTES,
            b_map: Some(b_map),
            a_map,
            a_im2col: None,
            b_im2col: None,
            ..self
        }
    }

    /// This launch of a kernel with both operands by TMA (`conv2d_wgmma_tma_{pointwise,im2col}_*`)
    /// with its producer warp: the tiles at most `WGMMA_PRODUCER_MAX_TILE_N` wide give the copies
    /// to one more warp, after the tile's warpgroups (kernels/conv_wgmma.cuh,
    /// `TcWgmmaWarpSpecializedPipeline`); wider tiles keep the block as it is.
    fn with_producer_warp(self, tile: TcTile) -> TcLaunch {
        if tile.bn() > WGMMA_PRODUCER_MAX_TILE_N as usize {
            return self;
        }
        TcLaunch {
            block: (
                self.block.0 + WGMMA_PRODUCER_THREADS,
                self.block.1,
                self.block.2,
            ),
            producer_warp: true,
            ..self
        }
    }

    /// This launch without its producer warp, if it has one: the kernel then runs the pipeline
    /// every thread of which multiplies (kernels/conv_wgmma.cuh; the same bits). What
    /// `RESNET_TMA_PRODUCER=0` makes the backend launch, so that a GPU can time the two (a ninth
    /// warp may cost an SM its second block).
    pub fn without_producer_warp(self) -> TcLaunch {
        if !self.producer_warp {
            return self;
        }
        TcLaunch {
            block: (
                self.block.0 - WGMMA_PRODUCER_THREADS,
                self.block.1,
                self.block.2,
            ),
            producer_warp: false,
            ..self
        }
    }
}

impl TcLaunch {
    /// Whether the launch needs `Driver::set_max_dynamic_shared(kernel, shared_bytes)` first.
    pub fn needs_shared_opt_in(&self) -> bool {
        self.shared_bytes > DEFAULT_SHARED_LIMIT
    }
}

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

/// Blocks a layer should have before the 128x128 tile is worth its fewer, larger blocks: one wave of
/// an H200 (132 SMs). Below this, 64x64 gives four times the blocks. A constant, not the device's SM
/// count, so the choice (and with it nothing numeric: tiles do not change the result's rounding
/// beyond the fp32 order inside a tile) is the same everywhere.
const BIG_TILE_MIN_BLOCKS: usize = 132;
/// Blocks backward-filter aims for: two waves of an H200's 132 SMs (fixed, so the split count, and
/// with it the summation order, is the same on every device).
const FILTER_TARGET_BLOCKS: usize = 264;
/// The fewest reduction rows a backward-filter split gets: 16 slices of 32, enough to amortise the
/// pipeline's prologue and the extra partial sums.
const FILTER_MIN_ROWS_PER_SPLIT: usize = 512;
/// Most splits: bounds the workspace at 64 * K*R*S*C floats.
const FILTER_MAX_SPLITS: usize = 64;
/// Threads per block of the reduce kernel, and its most blocks (a grid-stride loop covers the rest).
const REDUCE_THREADS: u32 = 256;
const REDUCE_MAX_BLOCKS: usize = 4096;

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
/// `TcLaunch::with_producer_warp`), its shared memory that plus the pipeline's mbarriers. Vector
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
        TcFeed::Pointwise | TcFeed::Im2col => fed.with_producer_warp(tile),
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
        if is_pointwise(shape) {
            return backward_data_tma_with(shape, add, tile);
        }
        if backward_data_im2col_applies(shape, tile) {
            return backward_data_im2col_with(shape, add, tile);
        }
    }
    backward_data_with(shape, add, tile, general)
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
    .with_producer_warp(tile)
}

/// Backward-data of a pointwise shape ([`is_pointwise`]) on a Hopper `tile` with both operands by
/// TMA (`conv2d_wgmma_tma_pointwise_backward_data[_add]_{T}_bf16`): the plain wgmma kernel's params,
/// then w's map in 64-wide panels and dy's ([`TcLaunch::tensor_maps`]); its grid, its block with the
/// producer warp, and its shared memory plus the pipeline's mbarriers. Vector shapes only
/// (C % 8 == 0, K % 8 == 0).
pub fn backward_data_tma_with(shape: &ConvShape, add: bool, tile: TcTile) -> TcLaunch {
    assert!(
        tile.is_hopper() && is_pointwise(shape),
        "TMA backward-data: a Hopper tile ({}) and a pointwise shape",
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

/// `plain` (a wgmma backward-data launch of a pointwise shape) as the TMA-fed `kernel`.
fn backward_data_fed(
    plain: TcLaunch,
    kernel: &'static str,
    shape: &ConvShape,
    tile: TcTile,
) -> TcLaunch {
    let dy = TcOperandMap::pointwise_output_gradient(shape, tile);
    plain
        .fed_by_tma(kernel, TcOperandMap::weight_panels(shape, tile), Some(dy))
        .with_producer_warp(tile)
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
        if is_pointwise(shape) {
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

/// [`backward_data_bn_with`] of a pointwise shape on a Hopper tile with both operands by TMA
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
        .with_producer_warp(tile),
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
            .with_producer_warp(tile),
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
        producer_warp: false,
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

/// Whether forward's 16-byte loads apply: every chunk of 8 channels lies inside one tap and is
/// 16-byte aligned.
pub fn forward_vectorizable(shape: &ConvShape) -> bool {
    shape.x[3] % 8 == 0
}

/// Whether the backward passes' 16-byte loads apply (both channel counts multiples of 8).
pub fn backward_vectorizable(shape: &ConvShape) -> bool {
    shape.x[3] % 8 == 0 && shape.w[0] % 8 == 0
}

/// Rows of backward-data's GEMM: the largest phase's pixels, N*ceil(H/st)*ceil(W/st).
fn backward_data_rows(shape: &ConvShape) -> usize {
    let [n, h, w, _] = shape.x;
    let st = shape.geom.stride;
    n * h.div_ceil(st) * w.div_ceil(st)
}

/// The tile for a GEMM with `rows` rows and `cols` output columns (channels): narrow tiles for 16- and
/// 32-channel outputs so that most of a 128-wide tile is not wasted, 64x64 for 64 channels or when
/// 128x128 tiles would not fill one wave of SMs, else 128x128.
fn output_tile(rows: usize, cols: usize) -> TcTile {
    if cols <= 16 {
        TcTile::T64x16
    } else if cols <= 32 {
        TcTile::T128x32
    } else if cols <= 64 || rows.div_ceil(128) * cols.div_ceil(128) < BIG_TILE_MIN_BLOCKS {
        TcTile::T64x64
    } else {
        TcTile::T128x128
    }
}

fn launch(kernel: &'static str, tile: TcTile, rows: usize, cols: usize, z: usize) -> TcLaunch {
    TcLaunch {
        kernel,
        grid: (
            dim(rows.div_ceil(tile.bm()).max(1)),
            dim(cols.div_ceil(tile.bn()).max(1)),
            dim(z),
        ),
        block: (tile.threads(), 1, 1),
        shared_bytes: tile.shared_bytes(),
        b_map: None,
        a_map: None,
        a_im2col: None,
        b_im2col: None,
        producer_warp: false,
    }
}

fn dim(v: usize) -> u32 {
    u32::try_from(v).expect("grid dimension fits in u32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::tensor_map::TmaSwizzle;
    use crate::backend::Conv2dGeometry;

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
    fn shared_memory_matches_the_kernel_configs_and_only_w64_opts_in() {
        assert_eq!(TcTile::T128x128.shared_bytes(), 49152);
        assert_eq!(TcTile::T64x64.shared_bytes(), 32768);
        assert_eq!(TcTile::T128x32.shared_bytes(), 40960);
        assert_eq!(TcTile::T64x16.shared_bytes(), 20480);
        assert_eq!(TcTile::T32x64.shared_bytes(), 24576);
        assert_eq!(TcTile::T128x128W64.shared_bytes(), 65536);
        assert_eq!(TcTile::H128x128.shared_bytes(), 66560);
        assert_eq!(TcTile::H128x256.shared_bytes(), 99328);
        assert_eq!(TcTile::H64x128.shared_bytes(), 50176);
        assert_eq!(TcTile::H128x64.shared_bytes(), 50176);
        assert_eq!(TcTile::H64x64.shared_bytes(), 33792);
        assert_eq!(TcTile::H128x128K64.shared_bytes(), 99328);
        assert_eq!(TcTile::H128x256K64.shared_bytes(), 148480);
        let s = shape([8, 56, 56, 256], [512, 1, 1, 256], 1, 0);
        assert!(!forward(&s).needs_shared_opt_in());
        assert!(forward_with(&s, TcTile::T128x128W64, false).needs_shared_opt_in());
        for tile in TcTile::HOPPER {
            let opt_in = tile != TcTile::H64x64;
            assert_eq!(forward_with(&s, tile, false).needs_shared_opt_in(), opt_in);
        }
    }

    #[test]
    fn the_wgmma_family_keeps_the_statistics_partition_and_falls_back_for_general_shapes() {
        for s in [
            shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1),
            shape([8, 56, 56, 64], [64, 1, 1, 64], 1, 0),
            shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1),
            shape([128, 16, 16, 32], [32, 3, 3, 32], 1, 1),
            shape([1, 7, 7, 2048], [512, 1, 1, 2048], 1, 0),
        ] {
            let mma = forward_stats(&s);
            let wg = forward_stats_for(&s, TcFamily::Wgmma);
            assert!(wg.kernel.starts_with("conv2d_wgmma_"), "{}", wg.kernel);
            // Same rows per block, hence the same partitions (grid.x) for batch norm.
            assert_eq!(wg.grid.0, mma.grid.0, "{:?}", s);
            assert!(backward_data_for(&s, false, TcFamily::Wgmma)
                .kernel
                .starts_with("conv2d_wgmma_"));
            let f = backward_filter_for(&s, TcFamily::Wgmma);
            assert!(f.partial.kernel.starts_with("conv2d_wgmma_"));
        }
        // C = 3: the general loaders, which only mma.sync has.
        let stem = shape([1, 17, 17, 3], [16, 7, 7, 3], 2, 3);
        assert_eq!(
            forward_for(&stem, TcFamily::Wgmma).kernel,
            forward(&stem).kernel
        );
        assert_eq!(TcFamily::default(), TcFamily::MmaSync);
    }

    /// The block of a TMA-fed launch whose plain wgmma launch has `plain_block`: the same, plus the
    /// producer warp where the kernel has one (both operands by TMA, a tile at most
    /// `WGMMA_PRODUCER_MAX_TILE_N` wide: kernels/conv_wgmma.cuh).
    fn fed_block(plain_block: (u32, u32, u32), fed_kernel: &str) -> (u32, u32, u32) {
        let tile = TcTile::HOPPER
            .into_iter()
            .find(|t| {
                let name = t.name().trim_start_matches("wgmma");
                fed_kernel.ends_with(&format!("_{name}_bf16"))
            })
            .unwrap_or_else(|| panic!("no Hopper tile for {fed_kernel}"));
        let both = fed_kernel.contains("_pointwise_") || fed_kernel.contains("_im2col_");
        let producer = both && tile.bn() <= WGMMA_PRODUCER_MAX_TILE_N as usize;
        let extra = if producer { WGMMA_PRODUCER_THREADS } else { 0 };
        (plain_block.0 + extra, plain_block.1, plain_block.2)
    }

    #[test]
    fn the_tma_family_feeds_the_forward_by_tma_and_leaves_the_rest_to_wgmma() {
        for s in [
            shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1),
            shape([8, 56, 56, 256], [512, 1, 1, 256], 2, 0),
            shape([8, 56, 56, 64], [64, 1, 1, 64], 1, 0),
            shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1),
            shape([1, 7, 7, 2048], [512, 1, 1, 2048], 1, 0),
        ] {
            for stats in [false, true] {
                let (wg, tma) = if stats {
                    let f = |family| forward_stats_for(&s, family);
                    (f(TcFamily::Wgmma), f(TcFamily::WgmmaTma))
                } else {
                    let f = |family| forward_for(&s, family);
                    (f(TcFamily::Wgmma), f(TcFamily::WgmmaTma))
                };
                let op = if stats { "forward_stats" } else { "forward" };
                let pointwise = is_pointwise(&s);
                // The tile's depth: 64 for the k64 tiles.
                let bk = if wg.kernel.contains("k64") { 64 } else { 32 };
                let im2col = !pointwise && s.x[3] % bk == 0;
                let plain = format!("conv2d_wgmma_{op}_");
                let fed = match (pointwise, im2col) {
                    (true, _) => format!("conv2d_wgmma_tma_pointwise_{op}_"),
                    (false, true) => format!("conv2d_wgmma_tma_im2col_{op}_"),
                    (false, false) => format!("conv2d_wgmma_tma_{op}_"),
                };
                assert_eq!(wg.kernel.replacen(&plain, &fed, 1), tma.kernel);
                // The im2col map: x's geometry, BM pixels by BK channels, a valid map.
                let x_map = tma.a_im2col.map(|a| a.im2col_map(0x7f00_0010_0000));
                assert_eq!(x_map.is_some(), im2col);
                if let Some(m) = x_map {
                    assert_eq!(m.nhwc, s.x);
                    assert_eq!(m.pixels_per_column as usize, wg.block.0 as usize / 2);
                    assert_eq!(m.channels_per_pixel, bk as u32);
                    m.validate().unwrap();
                }
                assert_eq!(
                    (fed_block(wg.block, tma.kernel), wg.grid),
                    (tma.block, tma.grid)
                );
                assert_eq!(tma.shared_bytes, wg.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
                let map = tma.b_map.expect("a TMA launch has a weight map");
                assert_eq!((map.rows, map.depth), (s.w[0], s.w[1] * s.w[2] * s.w[3]));
                let [n, h, w, c] = s.x;
                let input = tma.a_map.map(|m| (m.rows, m.depth, m.box_rows));
                let tile_rows = wg.block.0 as usize / 2; // BM: two threads a row
                assert_eq!(input, pointwise.then_some((n * h * w, c, tile_rows as u32)));
                assert!(wg.b_map.is_none() && wg.a_map.is_none());
                assert!(wg.tensor_maps(0x1000, 0x2000).next().is_none());
                // The maps are ones the CUDA driver takes (at any 16-byte aligned addresses), the
                // weights' first.
                let maps: Vec<TiledMap2d> = tma
                    .tensor_maps(0x7f00_0000_0100, 0x7f00_0010_0000)
                    .collect();
                assert_eq!(maps.len(), 1 + usize::from(pointwise));
                assert_eq!(maps[0].global, 0x7f00_0000_0100);
                for m in &maps {
                    m.validate().unwrap();
                }
            }
            // The forward whose input is a BN's output, likewise, where it exists (C <= 512).
            let fused = forward_stats_bnrelu_for(&s, TcFamily::WgmmaTma);
            let plain = forward_stats_bnrelu_for(&s, TcFamily::Wgmma);
            assert_eq!(fused.is_some(), s.x[3] <= 512);
            assert_eq!(fused.is_some(), plain.is_some());
            if let (Some(fused), Some(plain)) = (fused, plain) {
                assert!(
                    fused.kernel.starts_with("conv2d_wgmma_tma_"),
                    "{}",
                    fused.kernel
                );
                assert_eq!(
                    (fused.grid, fused.block),
                    (plain.grid, fed_block(plain.block, fused.kernel))
                );
                assert_eq!(
                    fused.shared_bytes,
                    plain.shared_bytes + WGMMA_TMA_BARRIER_BYTES
                );
                assert_eq!(fused.a_map.is_some(), is_pointwise(&s));
                assert!(fused.b_map.is_some());
            }
            for add in [false, true] {
                let (wg, tma) = (
                    backward_data_for(&s, add, TcFamily::Wgmma),
                    backward_data_for(&s, add, TcFamily::WgmmaTma),
                );
                if is_pointwise(&s) {
                    let fed = wg
                        .kernel
                        .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_pointwise_", 1);
                    assert_eq!(tma.kernel, fed);
                    assert_eq!(
                        (tma.grid, tma.block),
                        (wg.grid, fed_block(wg.block, tma.kernel))
                    );
                    assert_eq!(tma.shared_bytes, wg.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
                    let maps: Vec<TiledMap2d> = tma.tensor_maps(0x1000, 0x2000).collect();
                    assert_eq!(maps.len(), 2);
                    // w's panels: 64 input channels by BK output channels, the 128-byte swizzle.
                    assert_eq!(maps[0].dims, [s.w[3] as u64, s.w[0] as u64]);
                    assert_eq!(maps[0].box_dims[0], 64);
                    assert_eq!(maps[0].swizzle, TmaSwizzle::B128);
                    assert_eq!(
                        maps[1].dims,
                        [s.y[3] as u64, (s.y[0] * s.y[1] * s.y[2]) as u64]
                    );
                    for m in &maps {
                        m.validate().unwrap();
                    }
                    let bn = backward_data_bn_for(&s, TcFamily::WgmmaTma).unwrap();
                    assert!(bn
                        .kernel
                        .starts_with("conv2d_wgmma_tma_pointwise_backward_data_bn_"));
                } else if s.geom.stride == 1 && s.w[0] % 32 == 0 {
                    // Stride 1, K a multiple of the (32-deep) tile's depth: dy through an im2col
                    // map, w's panels over its [K][R*S*C] view.
                    let fed = wg
                        .kernel
                        .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_im2col_", 1);
                    assert_eq!(tma.kernel, fed);
                    assert_eq!(
                        (tma.grid, tma.block),
                        (wg.grid, fed_block(wg.block, tma.kernel))
                    );
                    let maps: Vec<TiledMap2d> = tma.tensor_maps(0x1000, 0x2000).collect();
                    assert_eq!(maps.len(), 1);
                    assert_eq!(
                        maps[0].dims,
                        [(s.w[1] * s.w[2] * s.w[3]) as u64, s.w[0] as u64]
                    );
                    let dy = tma.a_im2col.expect("dy's im2col map").im2col_map(0x2000);
                    assert_eq!((dy.nhwc, dy.lower), (s.y, [-1, -1]));
                    dy.validate().unwrap();
                    let bn = backward_data_bn_for(&s, TcFamily::WgmmaTma).unwrap();
                    assert!(bn
                        .kernel
                        .starts_with("conv2d_wgmma_tma_im2col_backward_data_bn_"));
                } else {
                    assert_eq!(tma, wg);
                }
            }
            let (wg, tma) = (
                backward_filter_for(&s, TcFamily::Wgmma),
                backward_filter_for(&s, TcFamily::WgmmaTma),
            );
            let (wg_bn, tma_bn) = (
                backward_filter_bnrelu_for(&s, TcFamily::Wgmma).unwrap(),
                backward_filter_bnrelu_for(&s, TcFamily::WgmmaTma).unwrap(),
            );
            if is_pointwise(&s) {
                for (wg, tma) in [(wg, tma), (wg_bn, tma_bn)] {
                    let fed = wg.partial.kernel.replacen(
                        "conv2d_wgmma_",
                        "conv2d_wgmma_tma_pointwise_",
                        1,
                    );
                    assert_eq!(tma.partial.kernel, fed);
                    // The same split, workspace and reduce: only the partial kernel is fed.
                    assert_eq!(
                        (tma.splits, tma.workspace_bytes),
                        (wg.splits, wg.workspace_bytes)
                    );
                    assert_eq!(tma.reduce, wg.reduce);
                    let (p, q) = (tma.partial, wg.partial);
                    assert_eq!((p.grid, p.block), (q.grid, fed_block(q.block, p.kernel)));
                    assert_eq!(p.shared_bytes, q.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
                    // x's panels (64 input channels by BK pixels), then dy's: the 128-byte swizzle.
                    let maps: Vec<TiledMap2d> = p.tensor_maps(0x1000, 0x2000).collect();
                    let pixels = (s.x[0] * s.x[1] * s.x[2]) as u64;
                    assert_eq!(maps[0].global, 0x1000);
                    assert_eq!(maps[0].dims, [s.x[3] as u64, pixels]);
                    assert_eq!(maps[1].dims, [s.y[3] as u64, pixels]);
                    for m in &maps {
                        assert_eq!(m.box_dims[0], 64);
                        assert_eq!(m.swizzle, TmaSwizzle::B128);
                        m.validate().unwrap();
                    }
                }
            } else if s.x[3] % 64 == 0 {
                // x through an im2col map (64-channel panels, BK pixels), dy's tiled panels.
                for (wg, tma) in [(wg, tma), (wg_bn, tma_bn)] {
                    let fed =
                        wg.partial
                            .kernel
                            .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_im2col_", 1);
                    assert_eq!(tma.partial.kernel, fed);
                    assert_eq!((tma.splits, tma.reduce), (wg.splits, wg.reduce));
                    let maps: Vec<TiledMap2d> = tma.partial.tensor_maps(0x1000, 0x2000).collect();
                    assert_eq!(maps.len(), 1);
                    assert_eq!(maps[0].global, 0x2000);
                    maps[0].validate().unwrap();
                    let x = tma
                        .partial
                        .b_im2col
                        .expect("x's im2col map")
                        .im2col_map(0x1000);
                    assert_eq!((x.nhwc, x.channels_per_pixel), (s.x, 64));
                    x.validate().unwrap();
                }
            } else {
                assert_eq!((tma, tma_bn), (wg, wg_bn));
            }
        }
        // Every Hopper tile's boxes: BK x BN of w, BK x BM of a pointwise x, the swizzle of their
        // rows.
        let s = shape([2, 14, 14, 64], [256, 1, 1, 64], 1, 0);
        for tile in TcTile::HOPPER {
            let maps: Vec<TiledMap2d> = forward_tma_with(&s, tile, true)
                .tensor_maps(0x1000, 0x2000)
                .collect();
            assert_eq!(maps[0].box_dims, [tile.bk() as u32, tile.bn() as u32]);
            assert_eq!(maps[1].box_dims, [tile.bk() as u32, tile.bm() as u32]);
            for m in &maps {
                assert_eq!(m.swizzle.bytes() as usize, 2 * tile.bk());
                m.validate().unwrap();
            }
        }
        // The stem (C = 3) takes mma.sync's general loader, as with Wgmma.
        let stem = shape([1, 17, 17, 3], [16, 7, 7, 3], 2, 3);
        assert_eq!(forward_for(&stem, TcFamily::WgmmaTma), forward(&stem));
    }

    #[test]
    fn hopper_tiles_name_their_wgmma_kernels() {
        let s = shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1);
        for tile in TcTile::HOPPER {
            let (bm, t) = (tile.bm(), tile.name().trim_start_matches("wgmma"));
            let name = |op: &str| format!("conv2d_wgmma_{op}_{t}_bf16");
            let launch = forward_with(&s, tile, false);
            assert_eq!(launch.kernel, name("forward"));
            assert_eq!(launch.block, (2 * bm as u32, 1, 1));
            let stats = forward_stats_with(&s, tile, false).0;
            assert_eq!(stats.kernel, name("forward_stats"));
            let data = backward_data_with(&s, false, tile, false).kernel;
            assert_eq!(data, name("backward_data"));
            let add = backward_data_with(&s, true, tile, false).kernel;
            assert_eq!(add, name("backward_data_add"));
            let filter = backward_filter_with(&s, tile, false, 2);
            assert_eq!(filter.partial.kernel, name("backward_filter"));
            assert_eq!(filter.reduce.unwrap().kernel, FILTER_REDUCE_KERNEL);
        }
    }

    #[test]
    fn grids_cover_every_output() {
        for s in [
            shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1),
            shape([3, 57, 57, 40], [24, 3, 3, 40], 2, 1),
            shape([1, 7, 7, 512], [2048, 1, 1, 512], 1, 0),
            shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3),
        ] {
            let f = forward(&s);
            let [n, p, q, k] = s.y;
            let tile = TcTile::ALL
                .into_iter()
                .find(|t| f.block.0 == t.threads() && f.shared_bytes == t.shared_bytes())
                .unwrap();
            assert!(f.grid.0 as usize * tile.bm() >= n * p * q);
            assert!(f.grid.1 as usize * tile.bn() >= k);
            assert_eq!(f.grid.2, 1);
            let d = backward_data(&s, false);
            let st = s.geom.stride;
            assert_eq!(d.grid.2 as usize, st * st);
            let [_, h, w, c] = s.x;
            let tile = TcTile::ALL
                .into_iter()
                .find(|t| d.shared_bytes == t.shared_bytes())
                .unwrap();
            assert!(d.grid.0 as usize * tile.bm() >= n * h.div_ceil(st) * w.div_ceil(st));
            assert!(d.grid.1 as usize * tile.bn() >= c);
            let b = backward_filter(&s);
            let tile = TcTile::ALL
                .into_iter()
                .find(|t| b.partial.shared_bytes == t.shared_bytes())
                .unwrap();
            assert!(b.partial.grid.0 as usize * tile.bm() >= s.w[0]);
            assert!(b.partial.grid.1 as usize * tile.bn() >= s.w[1] * s.w[2] * s.w[3]);
            assert_eq!(b.partial.grid.2 as usize, b.splits);
        }
    }

    #[test]
    fn the_statistics_partition_follows_the_forward_grid() {
        for s in [
            shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1),
            shape([3, 57, 57, 40], [24, 3, 3, 40], 2, 1),
            shape([64, 28, 28, 128], [512, 1, 1, 128], 1, 0),
            shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3),
            shape([1, 1, 1, 8], [16, 1, 1, 8], 1, 0),
        ] {
            let planned = forward(&s);
            let stats = forward_stats(&s);
            let part = forward_stats_partition(s.y);
            assert_eq!(stats.grid, planned.grid);
            assert_eq!(
                (stats.block, stats.shared_bytes),
                (planned.block, planned.shared_bytes)
            );
            assert_eq!(
                stats.kernel.replace("forward_stats_", "forward_"),
                planned.kernel
            );
            assert_eq!(part.partitions(), stats.grid.0 as usize);
            assert_eq!(part.floats(), 2 * part.partitions() * s.y[3]);
            let [n, p, q, _] = s.y;
            assert_eq!(part.rows, n * p * q);
            assert!(part.tile_rows * (part.partitions() - 1) < part.rows);
        }
    }

    #[test]
    fn small_channel_counts_get_narrow_tiles() {
        // CIFAR resnet stage 1 (16 channels) and 2 (32 channels) at batch 128.
        let k16 = shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1);
        assert_eq!(forward(&k16).kernel, "conv2d_tc_forward_64x16_bf16");
        // Backward-filter's M axis is K: 16 output channels take the 32-row tile.
        assert_eq!(
            backward_filter(&k16).partial.kernel,
            "conv2d_tc_backward_filter_32x64_bf16"
        );
        assert_eq!(
            backward_data(&k16, true).kernel,
            "conv2d_tc_backward_data_add_64x16_bf16"
        );
        let k32 = shape([128, 16, 16, 32], [32, 3, 3, 32], 1, 1);
        assert_eq!(forward(&k32).kernel, "conv2d_tc_forward_128x32_bf16");
        // resnet50 at batch 64: a wide layer with many pixels takes the big tile.
        let big = shape([64, 28, 28, 128], [512, 1, 1, 128], 1, 0);
        assert_eq!(forward(&big).kernel, "conv2d_tc_forward_128x128_bf16");
        // ... and one whose 128x128 grid would not fill a wave takes 64x64.
        let late = shape([8, 7, 7, 512], [512, 3, 3, 512], 1, 1);
        assert_eq!(forward(&late).kernel, "conv2d_tc_forward_64x64_bf16");
    }

    #[test]
    fn odd_channel_counts_take_the_general_kernels() {
        let stem = shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3);
        assert_eq!(
            forward(&stem).kernel,
            "conv2d_tc_forward_general_64x64_bf16"
        );
        assert_eq!(
            backward_data(&stem, false).kernel,
            "conv2d_tc_backward_data_general_64x16_bf16"
        );
        assert_eq!(
            backward_filter(&stem).partial.kernel,
            "conv2d_tc_backward_filter_general_64x64_bf16"
        );
        // K = 20: forward still vectorizes (only C matters), the backward passes do not.
        let k20 = shape([2, 8, 8, 16], [20, 3, 3, 16], 1, 1);
        assert!(!forward(&k20).kernel.contains("general"));
        assert!(backward_data(&k20, false).kernel.contains("general"));
    }

    #[test]
    fn filter_splits_fill_the_gpu_and_size_the_workspace() {
        // 64 x 576 -> 1 x 9 tiles of 64x64: 264 / 9 -> 30 splits.
        let s = shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1);
        let f = backward_filter(&s);
        assert_eq!(f.splits, 30);
        assert_eq!(f.workspace_bytes, 30 * 64 * 576 * 4);
        let reduce = f.reduce.unwrap();
        assert_eq!(reduce.kernel, FILTER_REDUCE_KERNEL);
        assert_eq!(reduce.grid, (144, 1, 1));
        // 512 x 4608 -> 4 x 36 = 144 tiles of 128x128: 2 splits.
        let deep = shape([32, 7, 7, 512], [512, 3, 3, 512], 1, 1);
        assert_eq!(backward_filter(&deep).splits, 2);
        // A tiny reduction (1*4*4 rows) is never split: no workspace, no reduce.
        let tiny = shape([1, 4, 4, 8], [8, 3, 3, 8], 1, 1);
        let t = backward_filter(&tiny);
        assert_eq!((t.splits, t.workspace_bytes, t.reduce), (1, 0, None));
        // The split count never exceeds its cap.
        let stem = shape([256, 224, 224, 3], [64, 7, 7, 3], 2, 3);
        assert_eq!(backward_filter(&stem).splits, FILTER_MAX_SPLITS);
    }
}
