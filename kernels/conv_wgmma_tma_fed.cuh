// conv_wgmma_tma_fed.cuh: the kernel definitions shared by the wgmma convolutions with both operands
// brought by TMA (conv_wgmma_tma_sm90a.cu's pointwise kernels, conv_wgmma_tma_im2col_sm90a.cu's), which
// differ only in the main-loop policy `Loop` (TcWgmmaTmaPointwiseLoop or TcWgmmaTmaIm2colLoop,
// conv_wgmma.cuh) and so in what the maps hold. Params: those of the plain wgmma kernel of the pass,
// then the B operand's map (w_map: the weights) and the A operand's (x_map or dy_map); for
// backward-filter the two maps in the order the file's kernels take them (FIRST_MAP, SECOND_MAP:
// `x_map, dy_map` or `dy_map, x_map`, the tiled maps first); the files' headers say what each map
// must be.
#ifndef RESNET_CUDA_CONV_WGMMA_TMA_FED_CUH
#define RESNET_CUDA_CONV_WGMMA_TMA_FED_CUH

#include "conv_tc_backward_data.cuh"
#include "conv_tc_backward_filter.cuh"
#include "conv_tc_forward.cuh"
#include "conv_wgmma.cuh"

#define CONV_WGMMA_TMA_FED_FORWARD_KERNEL(name, Tile, Loop)                                            \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* x, const bf16* w, bf16* y, ConvDims d, const __grid_constant__ TmaMap w_map,  \
             const __grid_constant__ TmaMap x_map) {                                                   \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, false, Loop>(x, w, y, nullptr, d, {}, &w_map, &x_map);             \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_FORWARD_STATS_KERNEL(name, Tile, Loop)                                      \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d,                          \
             const __grid_constant__ TmaMap w_map, const __grid_constant__ TmaMap x_map) {             \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, true, true, Loop>(x, w, y, stats, d, {}, &w_map, &x_map);                \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_FORWARD_STATS_BNRELU_KERNEL(name, Tile, Loop)                               \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, const float* mean, const float* inv_std, \
             const float* gamma, const float* beta, ConvDims d, const __grid_constant__ TmaMap w_map,  \
             const __grid_constant__ TmaMap x_map) {                                                   \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_forward<Tile, true, true, Loop, true>(x, w, y, stats, d, bn, &w_map, &x_map);          \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_BACKWARD_DATA_KERNEL(name, Tile, Loop)                                      \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* dy, const bf16* w, bf16* dx, ConvDims d, const __grid_constant__ TmaMap w_map, \
             const __grid_constant__ TmaMap dy_map) {                                                  \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, true, false, Loop>(dy, w, dx, nullptr, d, {}, &w_map, &dy_map);    \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_BACKWARD_DATA_ADD_KERNEL(name, Tile, Loop)                                  \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, ConvDims d,                  \
             const __grid_constant__ TmaMap w_map, const __grid_constant__ TmaMap dy_map) {            \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, true, true, Loop>(dy, w, dx, addend, d, {}, &w_map, &dy_map);      \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_BACKWARD_DATA_BN_KERNEL(name, Tile, Loop)                                   \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, const bf16* bn_x,             \
             const float* mean, const float* inv_std, const float* gamma, const float* beta, int mask, \
             const bf16* bn_y, float* partial, ConvDims d, const __grid_constant__ TmaMap w_map,       \
             const __grid_constant__ TmaMap dy_map) {                                                  \
        grid_dependency_sync();                                                                        \
        const TcBnGrad bn{bn_x, mean, inv_std, gamma, beta, mask, bn_y, partial};                      \
        conv_tc_backward_data<Tile, true, false, Loop, true>(dy, w, dx, addend, d, bn, &w_map, &dy_map); \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_BACKWARD_FILTER_KERNEL(name, Tile, Loop, FIRST_MAP, SECOND_MAP)              \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* x, const bf16* dy, float* out, ConvDims d, const __grid_constant__ TmaMap FIRST_MAP, \
             const __grid_constant__ TmaMap SECOND_MAP) {                                              \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_filter<Tile, true, Loop>(x, dy, out, d, {}, &x_map, &dy_map);                 \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_WGMMA_TMA_FED_BACKWARD_FILTER_BNRELU_KERNEL(name, Tile, Loop, FIRST_MAP, SECOND_MAP)       \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS + Loop::template producer_threads<Tile>()) \
        name(const bf16* x, const bf16* dy, float* out, const float* mean, const float* inv_std,        \
             const float* gamma, const float* beta, ConvDims d, const __grid_constant__ TmaMap FIRST_MAP, \
             const __grid_constant__ TmaMap SECOND_MAP) {                                              \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_backward_filter<Tile, true, Loop, true>(x, dy, out, d, bn, &x_map, &dy_map);           \
    }                                                                                                  \
    EMU_REGISTER(name)

#endif
