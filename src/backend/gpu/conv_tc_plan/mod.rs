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

mod backward_data;
mod backward_filter;
mod candidates;
mod forward;
#[cfg(test)]
mod tests;

pub use backward_data::*;
pub use backward_filter::*;
pub use candidates::*;
pub use forward::*;

use super::conv_plan::ConvShape;
use super::driver::{DevicePtr, Driver};
use super::launch_constants::{
    WGMMA_PRODUCER_THREADS, WGMMA_PRODUCER_WARPGROUP_THREADS, WGMMA_PRODUCER_WARP_MAX_TILE_N,
    WGMMA_TMA_BARRIER_BYTES,
};
use super::tensor_map::{TensorMapBytes, TiledMap2d};

pub use super::conv_tc_kernels::FILTER_REDUCE_KERNEL;
pub use super::conv_tc_maps::{TcIm2colOperand, TcOperandMap};
pub use super::conv_tc_tile::{TcFamily, TcTile};

/// The threads a kernel with both operands by TMA has beyond `tile`'s when launched with its
/// producer (kernels/launch_constants.h): a warp on tiles at most `WGMMA_PRODUCER_WARP_MAX_TILE_N`
/// wide, a warpgroup on wider ones (the 128x256 tiles, whose producer hands its registers to the
/// consumers with `setmaxnreg`).
pub fn producer_threads(tile: TcTile) -> u32 {
    if tile.bn() <= WGMMA_PRODUCER_WARP_MAX_TILE_N as usize {
        WGMMA_PRODUCER_THREADS
    } else {
        WGMMA_PRODUCER_WARPGROUP_THREADS
    }
}

/// Dynamic shared memory a kernel may use without opting in (`cuFuncSetAttribute`).
pub const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

/// One kernel launch: the kernel's name, grid, block and dynamic shared memory bytes, and for a
/// kernel fed by TMA, the tensor maps its last parameters take ([`TcLaunch::tensor_maps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcLaunch {
    pub kernel: &'static str,
    /// The tile the kernel computes (for a backward-filter's reduce, its partial kernel's).
    pub tile: TcTile,
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
    /// The threads of `block` that are the producer of a kernel with both operands by TMA (a warp
    /// or a warpgroup: [`producer_threads`]), 0 for none ([`TcLaunch::without_producer`]
    /// takes them out again).
    pub producer_threads: u32,
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
    /// with its producer, after the tile's warpgroups (kernels/conv_wgmma.cuh,
    /// `TcWgmmaWarpSpecializedPipeline`): [`producer_threads`] more threads.
    fn with_producer(self, tile: TcTile) -> TcLaunch {
        TcLaunch {
            block: (
                self.block.0 + producer_threads(tile),
                self.block.1,
                self.block.2,
            ),
            producer_threads: producer_threads(tile),
            ..self
        }
    }

    /// This launch without its producer, if it has a producer warp: the kernel then runs the
    /// pipeline every thread of which multiplies (kernels/conv_wgmma.cuh; the same bits). What
    /// `RESNET_TMA_PRODUCER=0` makes the backend launch, so that a GPU can time the two (a ninth
    /// warp may cost an SM its second block). A producer warpgroup (the 128x256 tiles) stays: the
    /// consumers take their registers from its `setmaxnreg.dec`, and without it their `.inc` would
    /// wait forever.
    pub fn without_producer(self) -> TcLaunch {
        if self.producer_threads == WGMMA_PRODUCER_WARPGROUP_THREADS {
            return self;
        }
        TcLaunch {
            block: (
                self.block.0 - self.producer_threads,
                self.block.1,
                self.block.2,
            ),
            producer_threads: 0,
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

/// Blocks a layer should have before the 128x128 tile is worth its fewer, larger blocks: one wave of
/// an H200 (132 SMs). Below this, 64x64 gives four times the blocks. A constant, not the device's SM
/// count, so the choice (and with it nothing numeric: tiles do not change the result's rounding
/// beyond the fp32 order inside a tile) is the same everywhere.
const BIG_TILE_MIN_BLOCKS: usize = 132;

/// Whether forward's 16-byte loads apply: every chunk of 8 channels lies inside one tap and is
/// 16-byte aligned.
pub fn forward_vectorizable(shape: &ConvShape) -> bool {
    shape.x[3] % 8 == 0
}

/// Whether the backward passes' 16-byte loads apply (both channel counts multiples of 8).
pub fn backward_vectorizable(shape: &ConvShape) -> bool {
    shape.x[3] % 8 == 0 && shape.w[0] % 8 == 0
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
        tile,
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
        producer_threads: 0,
    }
}

fn dim(v: usize) -> u32 {
    u32::try_from(v).expect("grid dimension fits in u32")
}
