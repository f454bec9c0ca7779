// conv_wgmma_forward_sm90a.cu: 2-D convolution forward on Hopper's warpgroup tensor-core instruction
// (wgmma.mma_async; sm_90a only: build.rs compiles files named *_sm90a.cu for that target alone, and the
// CUDA driver loads them on compute capability 9.0 only). bf16 in, fp32 accumulate, bf16 out.
//
// Math, layouts and GEMM view: exactly conv_tc_forward.cu's (y[n,p,q,k] = bf16(sum_{r,s,c}
// x[n, p*st-pad+r, q*st-pad+s, c] w[k,r,s,c]); x NHWC, w KRSC, y NHWC; M = N*P*Q, Ncol = K,
// Kred = R*S*C). The loaders and epilogues are the same code (conv_tc_forward.cuh); only the main loop
// is Hopper's (conv_wgmma.cuh), so a shape gives the same y as the sm_80 kernels up to the fp32
// summation order inside a 16-deep step.
//
// Kernels, with params (const bf16* x, const bf16* w, bf16* y, ConvDims d):
//   conv2d_wgmma_forward_{T}_bf16          requires C % 8 == 0 (16-byte cp.async chunks); traps otherwise
// And with params (const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d):
//   conv2d_wgmma_forward_stats_{T}_bf16    plus the batch-norm statistics partials, [2][K][grid.x]
//                                          floats, as conv2d_tc_forward_stats_* (conv_tc_stats.cuh)
//   with {T} one of 128x128, 128x256, 64x128, 128x64, 64x64 (BM x BN; WgTile* in conv_wgmma.cuh), and
//   128x128k64, 128x256k64 (64-deep slices, 3 stages).
// And with conv_tc_forward.cu's stats_bnrelu params (x, w, y, stats, mean, inv_std, gamma, beta, d):
//   conv2d_wgmma_forward_stats_bnrelu_{T}_bf16  ({T} one of 128x128, 64x128, 128x64, 64x64) the input
//                                          is the BN output relu(x scale + shift), made as staged
//                                          (conv_tc_bn_input.cuh); 4096 more shared bytes, C <= 512
// Launch: grid (ceil(M / BM), ceil(K / BN), 1), block (2 * BM, 1, 1) (BM / 64 warpgroups), dynamic
//         shared bytes = wgmma_smem_bytes<Tile>() (4 stages + 1 KiB of alignment slack: 66560,
//         99328, 50176, 50176, 33792; k64: 99328, 148480; all but 64x64 above 48 KiB, so those
//         launches opt in first).
//         Pointers 16-byte aligned.
//         Every element of y is written.
#include "conv_tc_forward.cuh"
#include "conv_wgmma.cuh"

#define CONV_WGMMA_FORWARD_KERNEL(name, Tile)                                                          \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, false, TcWgmmaLoop>(x, w, y, nullptr, d);                          \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_FORWARD_STATS_KERNEL(name, Tile)                                                    \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d) {                        \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, true, TcWgmmaLoop>(x, w, y, stats, d);                             \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_FORWARD_STATS_BNRELU_KERNEL(name, Tile)                                             \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, const float* mean, const float* inv_std, \
             const float* gamma, const float* beta, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_forward<Tile, true, true, TcWgmmaLoop, true>(x, w, y, stats, d, bn);                   \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_128x128_bf16, WgTile128x128);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_128x256_bf16, WgTile128x256);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_64x128_bf16, WgTile64x128);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_128x64_bf16, WgTile128x64);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_64x64_bf16, WgTile64x64);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_FORWARD_KERNEL(conv2d_wgmma_forward_128x256k64_bf16, WgTile128x256K64);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_128x128_bf16, WgTile128x128);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_128x256_bf16, WgTile128x256);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_64x128_bf16, WgTile64x128);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_128x64_bf16, WgTile128x64);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_64x64_bf16, WgTile64x64);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_FORWARD_STATS_KERNEL(conv2d_wgmma_forward_stats_128x256k64_bf16, WgTile128x256K64);
// The tiles the plan picks for a forward with statistics whose input is a BN's output
// (conv_tc_plan/forward.rs; conv_tc_forward.cu's stats_bnrelu kernels).
CONV_WGMMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_forward_stats_bnrelu_128x128_bf16, WgTile128x128);
CONV_WGMMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_forward_stats_bnrelu_64x128_bf16, WgTile64x128);
CONV_WGMMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_forward_stats_bnrelu_128x64_bf16, WgTile128x64);
CONV_WGMMA_FORWARD_STATS_BNRELU_KERNEL(conv2d_wgmma_forward_stats_bnrelu_64x64_bf16, WgTile64x64);
