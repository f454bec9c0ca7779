// conv_wgmma_tma_sm90a.cu: Hopper's wgmma convolutions with operands brought by the tensor memory
// accelerator: one thread's cp.async.bulk.tensor a slice instead of every thread's 16-byte cp.async
// (TcWgmmaTmaLoop and TcWgmmaTmaPointwiseLoop, conv_wgmma.cuh; docs/plans/hopper-tma.md). The forward's
// weights always, the input too for pointwise shapes (1x1, stride 1, no padding), and for those
// shapes both operands of backward-filter, and of backward-data for any 1x1 shape without padding,
// strided too (at the end of the file). sm_90a only
// (the `_sm90a` suffix).
//
// Threads: the kernels with both operands by TMA (all but the weights-only forwards) give the copies
// to a producer (TcWgmmaWarpSpecializedPipeline, conv_wgmma.cuh): they launch with
// kWgmmaProducerThreads (32) threads more than the tile's, kWgmmaProducerWarpgroupThreads (128) on
// the 128x256 tiles, which "Launch as ..." below leaves out (conv_tc_plan/mod.rs's
// TcLaunch::with_producer adds them); launched without, they run the pipeline without a producer.
//
// Math, layouts and results: exactly conv_wgmma_forward_sm90a.cu's and conv_wgmma_backward_sm90a.cu's
// (bit for bit: the same tiles reach shared memory in the same swizzled layout, the multiply and its
// order are the same).
//
// Kernels, with params (const bf16* x, const bf16* w, bf16* y, ConvDims d, const TmaMap w_map):
//   conv2d_wgmma_tma_forward_{T}_bf16
// and with params (const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d, const TmaMap w_map):
//   conv2d_wgmma_tma_forward_stats_{T}_bf16   (the statistics partials as conv2d_wgmma_forward_stats_*)
//   {T} one of 128x128, 128x256, 64x128, 128x64, 64x64, 128x128k64, 128x256k64 (BM x BN).
// w_map (by value, 128 bytes; conv_tc_maps.rs's TcOperandMap::weights, Driver::encode_tensor_map_2d): w as a
// 2-D tensor of K rows of R*S*C bf16 (row stride R*S*C*2 bytes), box BK (32, or 64 for k64) x BN,
// swizzle 64 bytes (BK = 32) or 128 (BK = 64), out-of-bounds elements zeros. `w` itself is not read.
// And the pointwise forward, both operands by TMA (TcWgmmaTmaPointwiseLoop), for 1x1 convolutions of
// stride 1 without padding (traps otherwise), with params (..., ConvDims d, const TmaMap w_map,
// const TmaMap x_map):
//   conv2d_wgmma_tma_pointwise_forward[_stats]_{T}_bf16
// x_map: x as a 2-D tensor of N*H*W rows of C bf16 (row stride C*2 bytes), box BK x BM, the same
// swizzle. `x` itself is not read either.
// And with the input a BN's output with its ReLU, made in shared memory after the copy lands
// (conv_tc_bn_input.cuh), params conv2d_wgmma_forward_stats_bnrelu_*'s (x, w, y, stats, mean,
// inv_std, gamma, beta, ConvDims d), then w_map (and x_map for pointwise):
//   conv2d_wgmma_tma_forward_stats_bnrelu_{T}_bf16
//   conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_{T}_bf16
//   {T} one of 128x128, 64x128, 128x64, 64x64; shared memory as the plain bnrelu kernel's + 64 bytes.
// Launch: as the conv_wgmma_forward kernels of the tile, with kWgmmaTmaBarrierBytes (64) more dynamic
// shared memory. C % 8 == 0 (traps otherwise), which also makes the maps' row strides multiples of 16.
#include "conv_tc_forward.cuh"
#include "conv_wgmma.cuh"
#include "conv_wgmma_tma_fed.cuh"

#define CONV_WGMMA_TMA_FORWARD_KERNEL(name, Tile)                                                      \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, ConvDims d, const __grid_constant__ TmaMap w_map) { \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, false, TcWgmmaTmaLoop>(x, w, y, nullptr, d, {}, &w_map);           \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(name, Tile)                                                \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d,                          \
             const __grid_constant__ TmaMap w_map) {                                                   \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, true, TcWgmmaTmaLoop>(x, w, y, stats, d, {}, &w_map);              \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_128x128_bf16, WgTile128x128);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_128x256_bf16, WgTile128x256);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_64x128_bf16, WgTile64x128);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_128x64_bf16, WgTile128x64);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_64x64_bf16, WgTile64x64);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_TMA_FORWARD_KERNEL(conv2d_wgmma_tma_forward_128x256k64_bf16, WgTile128x256K64);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_128x128_bf16, WgTile128x128);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_128x256_bf16, WgTile128x256);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_64x128_bf16, WgTile64x128);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_128x64_bf16, WgTile128x64);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_64x64_bf16, WgTile64x64);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_TMA_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_forward_stats_128x256k64_bf16, WgTile128x256K64);

CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_128x128_bf16,
                                  WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_128x256_bf16,
                                  WgTile128x256, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_64x128_bf16,
                                  WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_128x64_bf16,
                                  WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_64x64_bf16, WgTile64x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_128x128k64_bf16,
                                  WgTile128x128K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_pointwise_forward_128x256k64_bf16,
                                  WgTile128x256K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_128x128_bf16,
                                        WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_128x256_bf16,
                                        WgTile128x256, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_64x128_bf16,
                                        WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_128x64_bf16,
                                        WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_64x64_bf16,
                                        WgTile64x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_128x128k64_bf16,
                                        WgTile128x128K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_128x256k64_bf16,
                                        WgTile128x256K64, TcWgmmaTmaPointwiseLoop);

#define CONV_WGMMA_TMA_FORWARD_STATS_BNRELU_KERNEL(name, Tile)                                         \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, const float* mean, const float* inv_std, \
             const float* gamma, const float* beta, ConvDims d, const __grid_constant__ TmaMap w_map) { \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_forward<Tile, true, true, TcWgmmaTmaLoop, true>(x, w, y, stats, d, bn, &w_map);        \
    }                                                                                                  \
    EMU_REGISTER(name)

// The tiles the plan picks for a forward whose input is a BN's output (as conv_wgmma_forward_sm90a.cu).
CONV_WGMMA_TMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_forward_stats_bnrelu_128x128_bf16, WgTile128x128);
CONV_WGMMA_TMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_forward_stats_bnrelu_64x128_bf16, WgTile64x128);
CONV_WGMMA_TMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_forward_stats_bnrelu_128x64_bf16, WgTile128x64);
CONV_WGMMA_TMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_forward_stats_bnrelu_64x64_bf16, WgTile64x64);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_128x128_bf16,
                                               WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_64x128_bf16,
                                               WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_128x64_bf16,
                                               WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_forward_stats_bnrelu_64x64_bf16,
                                               WgTile64x64, TcWgmmaTmaPointwiseLoop);

// ---- backward-data, pointwise, both operands by TMA ---------------------------------------------------
// Params those of conv_wgmma_backward_sm90a.cu's kernel of the same name without `tma_pointwise_`, then
// (const TmaMap w_map, const TmaMap dy_map): w as K rows of C (box 64 x BK, the 128-byte swizzle),
// dy as N*P*Q rows of K (box BK x BM, the swizzle of BK): conv_tc_backward_data.cuh. 1x1, no
// padding, any stride (traps otherwise). Launch as that kernel, with kWgmmaTmaBarrierBytes more shared memory.
//   conv2d_wgmma_tma_pointwise_backward_data[_add]_{T}_bf16   {T}: the seven Hopper tiles
//   conv2d_wgmma_tma_pointwise_backward_data_bn_{T}_bf16      {T}: 128x128, 64x128, 128x64, 64x64
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_128x128_bf16,
                                        WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_128x256_bf16,
                                        WgTile128x256, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_64x128_bf16,
                                        WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_128x64_bf16,
                                        WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_64x64_bf16,
                                        WgTile64x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_128x128k64_bf16,
                                        WgTile128x128K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_128x256k64_bf16,
                                        WgTile128x256K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_128x128_bf16,
                                            WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_128x256_bf16,
                                            WgTile128x256, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_64x128_bf16,
                                            WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_128x64_bf16,
                                            WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_64x64_bf16,
                                            WgTile64x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_128x128k64_bf16,
                                            WgTile128x128K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_add_128x256k64_bf16,
                                            WgTile128x256K64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_bn_128x128_bf16,
                                           WgTile128x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_bn_64x128_bf16,
                                           WgTile64x128, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_bn_128x64_bf16,
                                           WgTile128x64, TcWgmmaTmaPointwiseLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_pointwise_backward_data_bn_64x64_bf16,
                                           WgTile64x64, TcWgmmaTmaPointwiseLoop);

// ---- backward-filter, pointwise, both operands by TMA -------------------------------------------------
// Params those of conv_wgmma_backward_sm90a.cu's kernel of the same name without `tma_pointwise_`, then
// (const TmaMap x_map, const TmaMap dy_map): x as N*H*W rows of C, dy as N*P*Q (the same pixels) rows of
// K, each in boxes of 64 x BK (the 128-byte swizzle): conv_tc_backward_filter.cuh. 1x1, stride 1, no
// padding (traps otherwise). Launch (and the split's reduce) as that kernel's, with
// kWgmmaTmaBarrierBytes more shared memory.
//   conv2d_wgmma_tma_pointwise_backward_filter_{T}_bf16          {T}: the seven Hopper tiles
//   conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_{T}_bf16   {T}: 128x128, 64x128, 128x64, 64x64
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_128x128_bf16,
                                          WgTile128x128, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_128x256_bf16,
                                          WgTile128x256, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_64x128_bf16,
                                          WgTile64x128, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_128x64_bf16,
                                          WgTile128x64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_64x64_bf16,
                                          WgTile64x64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_128x128k64_bf16,
                                          WgTile128x128K64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_128x256k64_bf16,
                                          WgTile128x256K64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_128x128_bf16,
                                                 WgTile128x128, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_64x128_bf16,
                                                 WgTile64x128, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_128x64_bf16,
                                                 WgTile128x64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_64x64_bf16,
                                                 WgTile64x64, TcWgmmaTmaPointwiseLoop, x_map, dy_map);
