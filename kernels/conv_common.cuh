// conv_common.cuh: what the three convolution kernel files (conv_forward.cu, conv_backward_data.cu,
// conv_backward_filter.cu) share: the dims struct every conv kernel takes, the block tiling of the
// implicit GEMM, and the per-slice multiply-accumulate over shared memory.
//
// Implicit GEMM: C[M, Ncol] = sum_{kr < Kred} A[M, kr] B[kr, Ncol], where A and B are never built in
// memory; each kernel gathers its tiles straight from the NHWC activations and KRSC weights.
//
// Tiling (all conv GEMM kernels):
//   block tile 64 (M) x 64 (Ncol), 256 threads as a 16 x 16 grid (tx = t % 16, ty = t / 16);
//   thread tile 4 x 4: thread (tx, ty) owns rows ty + 16 i and columns tx + 16 j, i, j in 0..4, so that
//     output stores by adjacent threads hit adjacent columns (coalesced along the NHWC channel axis);
//   K slices 16 deep, double-buffered: each slice is gathered from global memory into registers (4 A
//     and 4 B values a thread) while the math of the previous slice runs, then stored into
//     As[buf][16][65] and Bs[buf][16][65] (float; the +1 column removes shared-memory bank conflicts
//     on the transposing stores); buf alternates, so one __syncthreads a slice suffices (a buffer is
//     rewritten only after every thread has passed the barrier that follows its last read);
//   static shared memory: 2 buffers * 2 tiles * 16 * 65 * 4 = 16640 bytes; dynamic shared bytes: 0;
//   accumulation in f32 whatever the element type T.
// Launch: block (256, 1, 1), grid (ceil(M / 64), ceil(Ncol / 64), Z) with Z = 1 (forward), stride^2
// (backward-data's residue classes) or the split count (backward-filter); dynamic shared bytes 0.
//
// Kernel argument `ConvDims` is passed by value (cuLaunchKernel: a pointer to the struct). On the Rust
// side it is `#[repr(C)] struct ConvDims { n, h, w, c, k, r, s, p, q, stride, pad: i32 }` (11 i32,
// 44 bytes, in this order): x [N,H,W,C], w [K,R,S,C], y [N,P,Q,K], P = (H + 2 pad - R) / stride + 1.
#ifndef RESNET_CUDA_CONV_COMMON_CUH
#define RESNET_CUDA_CONV_COMMON_CUH

#include "common.cuh"
#include "launch_constants.h"

struct ConvDims {
    int N, H, W, C;   // input activations [N, H, W, C]
    int K, R, S;      // weights [K, R, S, C]
    int P, Q;         // output [N, P, Q, K]
    int stride, pad;  // the same along both spatial axes
};

// kConvTileM, kConvTileN (block tile rows and columns) and kConvThreads (threads per block, 16 x 16)
// come from launch_constants.h, shared with the Rust launch code.
constexpr int kConvTileK = 16;       // reduction slice depth
constexpr int kConvThreadTile = 4;   // 4 x 4 outputs per thread
constexpr int kConvSmemStride = kConvTileM + 1;

// A row index that fails every bounds check (`row + tap` stays negative for any tap < 2^28).
constexpr int kConvInvalid = -(1 << 29);

template <class T>
__device__ __forceinline__ float conv_to_float(T v) {
    return static_cast<float>(v);
}

template <class T>
__device__ __forceinline__ T conv_from_float(float v) {
    return static_cast<T>(v);
}

// acc[i][j] += sum_{k < 16} As[k][ty + 16 i] * Bs[k][tx + 16 j]
__device__ __forceinline__ void conv_slice_mma(const float (*As)[kConvSmemStride],
                                               const float (*Bs)[kConvSmemStride],
                                               float (&acc)[kConvThreadTile][kConvThreadTile], int tx,
                                               int ty) {
#pragma unroll
    for (int k = 0; k < kConvTileK; ++k) {
        float a[kConvThreadTile], b[kConvThreadTile];
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < kConvThreadTile; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
#pragma unroll
            for (int j = 0; j < kConvThreadTile; ++j) acc[i][j] += a[i] * b[j];
        }
    }
}

// A specialised kernel launched on a shape it was not built for would compute a wrong answer
// silently; it traps instead (on a GPU the launch fails with an illegal-instruction error, in the
// emulator with the block and thread at fault). Uniform over the grid, so no thread is left at a barrier.
template <int R_, int S_, int STRIDE_>
__device__ __forceinline__ void conv_check_specialisation(const ConvDims& d) {
    if ((R_ != 0 && d.R != R_) || (S_ != 0 && d.S != S_) || (STRIDE_ != 0 && d.stride != STRIDE_)) __trap();
}

// Splits a reduction index over (r, s, inner) with `inner` fastest: idx = (r * S + s) * inner + i.
// R_/S_ are the compile-time kernel extents (0: runtime); a 1x1 kernel needs no division.
template <int R_, int S_>
__device__ __forceinline__ void conv_split_tap(int idx, int inner, int S, int& r, int& s, int& i) {
    if (R_ == 1 && S_ == 1) {
        r = 0;
        s = 0;
        i = idx;
    } else {
        const int rs = idx / inner;
        i = idx - rs * inner;
        r = rs / S;
        s = rs - r * S;
    }
}

#endif
