// conv_wgmma_backward_sm90a.cu: the backward passes of 2-D convolution on Hopper's warpgroup tensor-core
// instruction (wgmma.mma_async; sm_90a only, like conv_wgmma_forward_sm90a.cu). bf16 in, fp32
// accumulate; backward-data writes bf16 dx, backward-filter fp32 partials.
//
// Math, layouts, GEMM views, stride phases and the backward-filter split: exactly those of
// conv_tc_backward_data.cu and conv_tc_backward_filter.cu, whose bodies (loaders, epilogues) these
// kernels share (conv_tc_backward_data.cuh, conv_tc_backward_filter.cuh); only the main loop is
// Hopper's (conv_wgmma.cuh), and with it the arrangement of the tiles with one row per reduction
// index: backward-data's w (KN) and both backward-filter operands (KM, KN) are wgmma's MN-major
// operands, stored as 64-wide panels under the 128-byte swizzle. A shape gives the same result as the
// sm_80 kernels up to the fp32 summation order inside a 16-deep step.
//
// Kernels ({T} one of 128x128, 128x256, 64x128, 128x64, 64x64, 128x128k64, 128x256k64: BM x BN, WgTile* in conv_wgmma.cuh; vector loaders
// only: C % 8 == 0 and K % 8 == 0, else they trap):
//   conv2d_wgmma_backward_data_{T}_bf16      (const bf16* dy, const bf16* w, bf16* dx, ConvDims d)
//   conv2d_wgmma_backward_data_add_{T}_bf16  (const bf16* dy, const bf16* w, bf16* dx, const bf16* addend,
//                                             ConvDims d)
//   conv2d_wgmma_backward_data_bn_{T}_bf16   ({T} one of 128x128, 64x128, 128x64, 64x64) the params of
//                                             conv_tc_backward_data.cu's _bn_ kernels: dx and the
//                                             partials of the BN it is the output gradient of
//   conv2d_wgmma_backward_filter_{T}_bf16    (const bf16* x, const bf16* dy, float* out, ConvDims d); the
//                                             split partials are summed by conv_tc_backward_filter.cu's
//                                             conv2d_tc_backward_filter_reduce_bf16 as for the sm_80 kernels
//   conv2d_wgmma_backward_filter_bnrelu_{T}_bf16  ({T} one of 128x128, 64x128, 128x64, 64x64) the params
//                                             of conv_tc_backward_filter.cu's _bnrelu_ kernels: the
//                                             input is the BN output relu(x scale + shift), made as
//                                             staged (conv_tc_bn_input.cuh)
// Launch: grids as the sm_80 kernels of the same pass (conv_tc_plan/), block (2 * BM, 1, 1), dynamic
//         shared bytes wgmma_smem_bytes<Tile>() (66560, 99328, 50176, 50176, 33792, 99328, 148480: all
//         but 64x64 opt in above 48 KiB).
#include "conv_tc_backward_data.cuh"
#include "conv_tc_backward_filter.cuh"
#include "conv_wgmma.cuh"

#define CONV_WGMMA_BACKWARD_DATA_KERNEL(name, Tile)                                                    \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* dy, const bf16* w, bf16* dx, ConvDims d) {                                    \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, true, false, TcWgmmaLoop>(dy, w, dx, nullptr, d);                  \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(name, Tile)                                                \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, ConvDims d) {                \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, true, true, TcWgmmaLoop>(dy, w, dx, addend, d);                    \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_BACKWARD_DATA_BN_KERNEL(name, Tile)                                                 \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, const bf16* bn_x,             \
             const float* mean, const float* inv_std, const float* gamma, const float* beta, int mask, \
             const bf16* bn_y, float* partial, ConvDims d) {                                           \
        grid_dependency_sync();                                                                        \
        const TcBnGrad bn{bn_x, mean, inv_std, gamma, beta, mask, bn_y, partial};                      \
        conv_tc_backward_data<Tile, true, false, TcWgmmaLoop, true>(dy, w, dx, addend, d, bn);        \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_BACKWARD_FILTER_KERNEL(name, Tile)                                                  \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* dy, float* out, ConvDims d) {                                  \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_filter<Tile, true, TcWgmmaLoop>(x, dy, out, d);                               \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_BACKWARD_FILTER_BNRELU_KERNEL(name, Tile)                                           \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* dy, float* out, const float* mean, const float* inv_std,        \
             const float* gamma, const float* beta, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_backward_filter<Tile, true, TcWgmmaLoop, true>(x, dy, out, d, bn);                     \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_128x128_bf16, WgTile128x128);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_128x256_bf16, WgTile128x256);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_64x128_bf16, WgTile64x128);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_128x64_bf16, WgTile128x64);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_64x64_bf16, WgTile64x64);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_BACKWARD_DATA_KERNEL(conv2d_wgmma_backward_data_128x256k64_bf16, WgTile128x256K64);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_128x128_bf16, WgTile128x128);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_128x256_bf16, WgTile128x256);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_64x128_bf16, WgTile64x128);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_128x64_bf16, WgTile128x64);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_64x64_bf16, WgTile64x64);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_BACKWARD_DATA_ADD_KERNEL(conv2d_wgmma_backward_data_add_128x256k64_bf16, WgTile128x256K64);
// The tiles the plan stands in for the mma.sync ones (TcFamily::tile), with the BN partials.
CONV_WGMMA_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_backward_data_bn_128x128_bf16, WgTile128x128);
CONV_WGMMA_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_backward_data_bn_64x128_bf16, WgTile64x128);
CONV_WGMMA_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_backward_data_bn_128x64_bf16, WgTile128x64);
CONV_WGMMA_BACKWARD_DATA_BN_KERNEL(conv2d_wgmma_backward_data_bn_64x64_bf16, WgTile64x64);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_128x128_bf16, WgTile128x128);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_128x256_bf16, WgTile128x256);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_64x128_bf16, WgTile64x128);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_128x64_bf16, WgTile128x64);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_64x64_bf16, WgTile64x64);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_128x128k64_bf16, WgTile128x128K64);
CONV_WGMMA_BACKWARD_FILTER_KERNEL(conv2d_wgmma_backward_filter_128x256k64_bf16, WgTile128x256K64);
// The tiles the plan picks for a backward-filter whose input is a BN's output (conv_tc_plan/backward_filter.rs).
CONV_WGMMA_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_backward_filter_bnrelu_128x128_bf16, WgTile128x128);
CONV_WGMMA_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_backward_filter_bnrelu_64x128_bf16, WgTile64x128);
CONV_WGMMA_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_backward_filter_bnrelu_128x64_bf16, WgTile128x64);
CONV_WGMMA_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_wgmma_backward_filter_bnrelu_64x64_bf16, WgTile64x64);
