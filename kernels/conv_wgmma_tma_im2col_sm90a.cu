// conv_wgmma_tma_im2col_sm90a.cu: Hopper's wgmma forward with both operands brought by the tensor
// memory accelerator for any shape whose input channels are a multiple of the slice depth BK: the
// weights' box as conv_wgmma_tma_sm90a.cu's, and the A tile (BM output pixels at one filter tap by BK
// input channels) by one im2col-mode copy (TcWgmmaTmaIm2colLoop, conv_wgmma.cuh;
// docs/plans/hopper-tma.md), so that no thread computes an input address, a tap or a bounds test.
// And stride-1 backward-data and every backward-filter with C % 64 == 0 the same way (at the end of
// the file). sm_90a only.
//
// Threads: every kernel here gives the copies to a producer (TcWgmmaWarpSpecializedPipeline,
// conv_wgmma.cuh): they launch with kWgmmaProducerThreads (32) threads more than the tile's,
// kWgmmaProducerWarpgroupThreads (128) on the 128x256 tiles, which "Launch as ..." below leaves out
// (conv_tc_plan/mod.rs's TcLaunch::with_producer adds them); launched without, they run the pipeline
// without a producer.
//
// Math, layouts and results: exactly conv_wgmma_forward_sm90a.cu's (bit for bit: the same tiles reach
// shared memory in the same swizzled layout, zeros where the cp.async loader's zero fill puts them).
//
// Kernels, with params (const bf16* x, const bf16* w, bf16* y, ConvDims d, const TmaMap w_map,
// const TmaMap x_map):
//   conv2d_wgmma_tma_im2col_forward_{T}_bf16
// and with params (const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d, const TmaMap w_map,
// const TmaMap x_map):
//   conv2d_wgmma_tma_im2col_forward_stats_{T}_bf16   (the statistics partials as conv2d_wgmma_forward_stats_*)
//   {T} one of 128x128, 128x256, 64x128, 128x64, 64x64, 128x128k64, 128x256k64 (BM x BN).
// and with the input a BN's output with its ReLU, made in shared memory after the copy lands
// (conv_tc_bn_input.cuh; the padding's zeros left alone), params conv2d_wgmma_forward_stats_bnrelu_*'s
// (x, w, y, stats, mean, inv_std, gamma, beta, ConvDims d), then w_map and x_map:
//   conv2d_wgmma_tma_im2col_forward_stats_bnrelu_{T}_bf16   {T} one of 128x128, 64x128, 128x64, 64x64;
//   shared memory as the plain bnrelu kernel's + 64 bytes.
// w_map as conv_wgmma_tma_sm90a.cu's; x_map: an im2col map over x (NHWC) for the convolution's
// geometry (Im2colMap::for_convolution), BM pixels by BK channels, the swizzle of BK (64 bytes for
// 32, 128 for 64). C % BK == 0 (traps otherwise). Launch as the conv_wgmma_forward kernels of the
// tile, with kWgmmaTmaBarrierBytes (64) more dynamic shared memory.
#include "conv_tc_forward.cuh"
#include "conv_wgmma.cuh"
#include "conv_wgmma_tma_fed.cuh"

CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_128x128_bf16, WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_128x256_bf16, WgTile128x256, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_64x128_bf16, WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_128x64_bf16, WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_64x64_bf16, WgTile64x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_128x128k64_bf16,
                                  WgTile128x128K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_KERNEL(conv2d_wgmma_tma_im2col_forward_128x256k64_bf16,
                                  WgTile128x256K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_128x128_bf16,
                                        WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_128x256_bf16,
                                        WgTile128x256, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_64x128_bf16,
                                        WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_128x64_bf16,
                                        WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_64x64_bf16,
                                        WgTile64x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_128x128k64_bf16,
                                        WgTile128x128K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_128x256k64_bf16,
                                        WgTile128x256K64, TcWgmmaTmaIm2colLoop);

// The tiles the plan picks for a forward whose input is a BN's output (as conv_wgmma_forward_sm90a.cu).
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_bnrelu_128x128_bf16,
                                               WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_bnrelu_64x128_bf16,
                                               WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_bnrelu_128x64_bf16,
                                               WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_forward_stats_bnrelu_64x64_bf16,
                                               WgTile64x64, TcWgmmaTmaIm2colLoop);

// ---- backward-data, stride 1, both operands by TMA ------------------------------------------------------
// Params those of conv_wgmma_backward_sm90a.cu's kernel of the same name without `tma_im2col_`, then
// (const TmaMap w_map, const TmaMap dy_map): w as K rows of R*S*C (box 64 x BK, the 128-byte
// swizzle), dy through an im2col map for the transposed convolution (Im2colMap::for_convolution over
// dy with padding R - 1 - pad; BM pixels by BK output channels): conv_tc_backward_data.cuh. Stride 1,
// K % BK == 0, pad <= R - 1 and S - 1 (traps otherwise). Launch as that kernel, with
// kWgmmaTmaBarrierBytes more shared memory.
//   conv2d_wgmma_tma_im2col_backward_data[_add]_{T}_bf16   {T}: the seven Hopper tiles
//   conv2d_wgmma_tma_im2col_backward_data_bn_{T}_bf16      {T}: 128x128, 64x128, 128x64, 64x64
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_128x128_bf16,
                                        WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_128x256_bf16,
                                        WgTile128x256, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_64x128_bf16,
                                        WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_128x64_bf16,
                                        WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_64x64_bf16,
                                        WgTile64x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_128x128k64_bf16,
                                        WgTile128x128K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(conv2d_wgmma_tma_im2col_backward_data_128x256k64_bf16,
                                        WgTile128x256K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_128x128_bf16,
                                            WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_128x256_bf16,
                                            WgTile128x256, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_64x128_bf16,
                                            WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_128x64_bf16,
                                            WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_64x64_bf16,
                                            WgTile64x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_128x128k64_bf16,
                                            WgTile128x128K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_tma_im2col_backward_data_add_128x256k64_bf16,
                                            WgTile128x256K64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_im2col_backward_data_bn_128x128_bf16,
                                           WgTile128x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_im2col_backward_data_bn_64x128_bf16,
                                           WgTile64x128, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_im2col_backward_data_bn_128x64_bf16,
                                           WgTile128x64, TcWgmmaTmaIm2colLoop);
CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_tma_im2col_backward_data_bn_64x64_bf16,
                                           WgTile64x64, TcWgmmaTmaIm2colLoop);

// ---- backward-filter, both operands by TMA ---------------------------------------------------------------
// Params those of conv_wgmma_backward_sm90a.cu's kernel of the same name without `tma_im2col_`, then
// (const TmaMap dy_map, const TmaMap x_map): dy as N*P*Q rows of K (boxes of 64 x BK, the 128-byte
// swizzle), x through an im2col map for the convolution's geometry, boxes of BK pixels by 64 channels
// (the 128-byte swizzle): conv_tc_backward_filter.cuh. C % 64 == 0 (traps otherwise). Launch (and the
// split's reduce) as that kernel's, with kWgmmaTmaBarrierBytes more shared memory.
//   conv2d_wgmma_tma_im2col_backward_filter_{T}_bf16          {T}: the seven Hopper tiles
//   conv2d_wgmma_tma_im2col_backward_filter_bnrelu_{T}_bf16   {T}: 128x128, 64x128, 128x64, 64x64
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_128x128_bf16,
                                          WgTile128x128, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_128x256_bf16,
                                          WgTile128x256, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_64x128_bf16,
                                          WgTile64x128, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_128x64_bf16,
                                          WgTile128x64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_64x64_bf16,
                                          WgTile64x64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_128x128k64_bf16,
                                          WgTile128x128K64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_128x256k64_bf16,
                                          WgTile128x256K64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_bnrelu_128x128_bf16,
                                                 WgTile128x128, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_bnrelu_64x128_bf16,
                                                 WgTile64x128, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_bnrelu_128x64_bf16,
                                                 WgTile128x64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_tma_im2col_backward_filter_bnrelu_64x64_bf16,
                                                 WgTile64x64, TcWgmmaTmaIm2colLoop, dy_map, x_map);
