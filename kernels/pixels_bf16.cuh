// pixels_bf16.cuh: the launch shape of the bf16 kernels that work pixel by pixel on NHWC images
// (max pooling, the option-A shortcut): one thread per pixel (n, row, col) and a loop over the
// pixel's channel groups, so no flat index is ever divided back into coordinates.
//
// Block (tx, ty): tx lanes over channel groups, ty over the columns of an image row; grid
// (ceil(cols / ty), rows, N). Any grid is correct: each coordinate loops with its grid stride, so a
// grid clamped to the hardware's limits (65535 in y and z) still covers every pixel.
#ifndef RESNET_CUDA_PIXELS_BF16_CUH
#define RESNET_CUDA_PIXELS_BF16_CUH

#include "common.cuh"

// Calls at(n, row, col) for every pixel of an [N, rows, cols] image batch this thread owns.
template <class At>
__device__ __forceinline__ void for_owned_pixels(int N, int rows, int cols, At&& at) {
    for (int n = blockIdx.z; n < N; n += gridDim.z) {
        for (int row = blockIdx.y; row < rows; row += gridDim.y) {
            for (int col = blockIdx.x * blockDim.y + threadIdx.y; col < cols; col += gridDim.x * blockDim.y) {
                at(n, row, col);
            }
        }
    }
}

// The channel groups of a pixel this thread's lane takes: threadIdx.x, + blockDim.x, ...
template <class Each>
__device__ __forceinline__ void for_lane_groups(int groups, Each&& each) {
    for (int g = threadIdx.x; g < groups; g += blockDim.x) each(g);
}

#endif
