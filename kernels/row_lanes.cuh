// row_lanes.cuh: per-channel sums over the ty row lanes of a bf16 kernel's block (tx lanes over
// channel groups of W channels, ty lanes over rows or pixels; bf16_launch.rs), combined in shared
// memory in a fixed order, so that a reduction is the same every run: the batch-norm statistics
// (batch_norm_bf16.cu) and the stem's BN backward sums taken by its max pool (pool_bf16.cu).
#ifndef RESNET_CUDA_ROW_LANES_CUH
#define RESNET_CUDA_ROW_LANES_CUH

#include "bf16_vec.cuh"
#include "launch_constants.h"

// Adds the ty row lanes of s (laid out [ty][tx][W]) into lane 0, in a fixed tree: lanes at distance
// `half` (a power of two, halving) fold in, so any ty (not only powers of two) reduces correctly.
template <int W>
__device__ __forceinline__ void reduce_row_lanes(float* s) {
    const int tx = threadIdx.x, ty = threadIdx.y, lanes = blockDim.y;
    int half = 1;
    while (half * 2 < lanes) half *= 2;
    for (; half > 0; half /= 2) {
        if (ty < half && ty + half < lanes) {
            float* mine = s + (ty * blockDim.x + tx) * W;
            const float* other = s + ((ty + half) * blockDim.x + tx) * W;
#pragma unroll
            for (int k = 0; k < W; ++k) mine[k] += other[k];
        }
        __syncthreads();
    }
}

// Floats of shared memory per block for one sum per channel (reduce_row_lanes' s): a slot per
// thread and channel of its group. Declared once per kernel, not per template instance, so that the
// vector and scalar instances share it.
constexpr int kLaneSlots = kBf16Threads * kGroup;

#endif
