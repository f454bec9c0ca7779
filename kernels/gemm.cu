// gemm.cu: a shared-memory tiled SGEMM with selectable transposes, and a column sum; the linear layer
// (and, later, 1x1 convolutions) run on it.
//
// Math, all matrices row-major:
//   gemm:       C[M,N] = op(A)[M,K] op(B)[K,N] (+ bias[N] broadcast over rows when bias != null)
//               op(A) = A (stored [M,K]) or A^T (trans_a != 0, A stored [K,M]);
//               op(B) = B (stored [K,N]) or B^T (trans_b != 0, B stored [N,K]).
//   column_sum: out[j] = sum_i X[i, j] for X: [rows, cols], summed in row order (deterministic).
// Launch: gemm with block (16, 16) and grid (ceil(N/16), ceil(M/16)): each block computes one 16x16 tile
// of C, stepping through K in 16-wide slabs of op(A) and op(B) staged in static shared memory (two
// __syncthreads per slab); out-of-range elements load as zero, so any M, N, K works. column_sum: 1-D
// grid-stride over columns.
#include "common.cuh"
#include "launch_constants.h"

namespace gemm {
constexpr int kTile = kGemmTile;
}

template <class T>
__device__ __forceinline__ void gemm_tiled(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                           const T* __restrict__ bias, int M, int N, int K, int trans_a,
                                           int trans_b) {
    using gemm::kTile;
    __shared__ T As[kTile][kTile + 1];
    __shared__ T Bs[kTile][kTile + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * kTile + ty, col = blockIdx.x * kTile + tx;
    // Loads of As: element (row, k0 + tx); of Bs: element (k0 + ty, col).
    const int a_row = row;
    T acc = T(0);
    for (int k0 = 0; k0 < K; k0 += kTile) {
        const int ak = k0 + tx, bk = k0 + ty;
        T a = T(0), b = T(0);
        if (a_row < M && ak < K) a = trans_a ? A[static_cast<long long>(ak) * M + a_row] : A[static_cast<long long>(a_row) * K + ak];
        if (bk < K && col < N) b = trans_b ? B[static_cast<long long>(col) * K + bk] : B[static_cast<long long>(bk) * N + col];
        As[ty][tx] = a;
        Bs[ty][tx] = b;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kTile; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) {
        if (bias != nullptr) acc += bias[col];
        C[static_cast<long long>(row) * N + col] = acc;
    }
}

template <class T>
__device__ __forceinline__ void column_sum(const T* __restrict__ X, T* __restrict__ out, int rows, int cols) {
    for (unsigned long long j = global_thread_index(); j < static_cast<unsigned long long>(cols); j += grid_stride()) {
        T acc = T(0);
        for (int i = 0; i < rows; ++i) acc += X[static_cast<long long>(i) * cols + j];
        out[j] = acc;
    }
}

extern "C" __global__ void gemm_f32(const float* A, const float* B, float* C, const float* bias, int M, int N, int K,
                                    int trans_a, int trans_b) {
    grid_dependency_sync();
    gemm_tiled<float>(A, B, C, bias, M, N, K, trans_a, trans_b);
}
EMU_REGISTER(gemm_f32);

extern "C" __global__ void column_sum_f32(const float* X, float* out, int rows, int cols) {
    grid_dependency_sync();
    column_sum<float>(X, out, rows, cols);
}
EMU_REGISTER(column_sum_f32);
