// conv_tc_forward.cu: 2-D convolution forward on tensor cores (bf16 in, fp32 accumulate, bf16 out).
//
// Math:   y[n,p,q,k] = bf16( sum_{r,s,c} x[n, p*stride - pad + r, q*stride - pad + s, c] * w[k,r,s,c] )
//         (reads outside the image are zero; the sum in fp32, rounded to bf16 once).
// Layout: x [N,H,W,C] bf16 (NHWC), w [K,R,S,C] bf16 (KRSC), y [N,P,Q,K] bf16 (NHWC); all contiguous.
// GEMM:   M = N*P*Q (row m = (n*P + p)*Q + q, so y is C[M, K] row-major), Ncol = K, Kred = R*S*C
//         (index kr = (r*S + s)*C + c, c fastest):  A[m, kr] = x[n, p*st-pad+r, q*st-pad+s, c]
//         (im2col, contiguous along c: stored MK), B[kr, k] = w[k][kr] (contiguous along kr: stored
//         NK, i.e. the "col" operand of mma .row.col with no transpose).
// Main loop, tiles, swizzle, pipeline: conv_tc.cuh.
//
// Kernels, with params (const bf16* x, const bf16* w, bf16* y, ConvDims d):
//   conv2d_tc_forward_{T}_bf16          requires C % 8 == 0 (16-byte cp.async chunks of 8 channels,
//                                        zero-filled for padding and rows/columns past the GEMM);
//                                        traps otherwise. Any R, S, stride, pad, K.
//   conv2d_tc_forward_general_{T}_bf16  any shape (the C = 3 stems): operands gathered element by
//                                        element into the same shared tiles; same math.
//   with {T} one of 128x128, 64x64, 128x32, 64x16, 32x64 (BM x BN: TcTile* in conv_tc.cuh), and
//   128x128w64 (128 x 128 in four 64 x 64 warp tiles).
// And with params (const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d):
//   conv2d_tc_forward_stats_[general_]{T}_bf16  the same y, plus the per-channel batch-norm
//                                        statistics partials of y as stored, [2][K][grid.x] floats
//                                        (conv_tc_stats.cuh: per block row of tiles, the sum and the
//                                        sum of squared deviations from that tile's mean).
// And with params (const bf16* x, const bf16* w, bf16* y, float* stats, const float* mean,
//                  const float* inv_std, const float* gamma, const float* beta, ConvDims d):
//   conv2d_tc_forward_stats_bnrelu_{T}_bf16  the same, of the input z = relu(x scale + shift) of the
//                                        batch norm (mean, inv_std, gamma, beta per channel of x)
//                                        whose input x is, computed as A is staged and never
//                                        stored (conv_tc_bn_input.cuh); y is bit for bit the vector
//                                        kernel's on the stored z. {T}: 128x128, 64x64, 128x32,
//                                        64x16. Requires C % 8 == 0 and C <= 512
//                                        (kTcBnTableChannels). Dynamic shared bytes: the tile's
//                                        plus 4096 (kTcBnTableBytes, the map's coefficients).
// Launch: grid (ceil(M / BM), ceil(K / BN), 1), block (THREADS, 1, 1) with THREADS = 256 for 128x128
//         and 128 for the others, dynamic shared bytes = TcTile::SMEM_BYTES (49152, 32768, 40960,
//         20480, 24576, and 65536 for 128x128w64, the one that must opt in above 48 KiB). Pointers
//         16-byte aligned. Every element of y is written.
// Epilogue: with K % 8 == 0 and y 16-byte aligned, the block's tile is staged through the pipeline's
//         shared memory and written with 16-byte stores (conv_tc_epilogue.cuh); otherwise each
//         accumulator pair is stored from its fragment (4-byte stores when K is even, else 2-byte),
//         which needs y only 4-byte aligned. Both write the same bits.
#include "conv_tc_forward.cuh"

#define CONV_TC_FORWARD_KERNEL(name, Tile, VEC)                                                        \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, VEC)                                             \
        name(const bf16* x, const bf16* w, bf16* y, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, VEC, false>(x, w, y, nullptr, d);                                        \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_FORWARD_STATS_KERNEL(name, Tile, VEC)                                                  \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, VEC)                                             \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d) {                        \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, VEC, true>(x, w, y, stats, d);                                           \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_FORWARD_STATS_BNRELU_KERNEL(name, Tile)                                                \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, true)                                            \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, const float* mean, const float* inv_std, \
             const float* gamma, const float* beta, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_forward<Tile, true, true, TcMmaSyncLoop, true>(x, w, y, stats, d, bn);                 \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_128x128_bf16, TcTile128x128, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_64x64_bf16, TcTile64x64, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_128x32_bf16, TcTile128x32, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_64x16_bf16, TcTile64x16, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_32x64_bf16, TcTile32x64, true);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_general_128x128_bf16, TcTile128x128, false);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_general_64x64_bf16, TcTile64x64, false);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_general_128x32_bf16, TcTile128x32, false);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_general_64x16_bf16, TcTile64x16, false);
CONV_TC_FORWARD_KERNEL(conv2d_tc_forward_general_32x64_bf16, TcTile32x64, false);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_128x128_bf16, TcTile128x128, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_64x64_bf16, TcTile64x64, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_128x32_bf16, TcTile128x32, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_64x16_bf16, TcTile64x16, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_32x64_bf16, TcTile32x64, true);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_general_128x128_bf16, TcTile128x128, false);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_general_64x64_bf16, TcTile64x64, false);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_general_128x32_bf16, TcTile128x32, false);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_general_64x16_bf16, TcTile64x16, false);
CONV_TC_FORWARD_STATS_KERNEL(conv2d_tc_forward_stats_general_32x64_bf16, TcTile32x64, false);
// The tiles the plan picks for a forward with statistics (conv_tc_plan/forward.rs, forward_stats_bnrelu_for).
CONV_TC_FORWARD_STATS_BNRELU_KERNEL(conv2d_tc_forward_stats_bnrelu_128x128_bf16, TcTile128x128);
CONV_TC_FORWARD_STATS_BNRELU_KERNEL(conv2d_tc_forward_stats_bnrelu_64x64_bf16, TcTile64x64);
CONV_TC_FORWARD_STATS_BNRELU_KERNEL(conv2d_tc_forward_stats_bnrelu_128x32_bf16, TcTile128x32);
CONV_TC_FORWARD_STATS_BNRELU_KERNEL(conv2d_tc_forward_stats_bnrelu_64x16_bf16, TcTile64x16);
