// conv_tc_stats.cuh: per-channel batch-norm statistics from the epilogue of the tensor-core forward
// convolution (conv_tc_forward.cu's *_stats_* kernels), so that the BN after it never reads y for
// them.
//
// Math: block b (blockIdx.x) owns the GEMM rows m0 = b BM .. m0 + n_b - 1 with n_b = min(BM, M - m0)
// (every block row of tiles has n_b >= 1). For each channel k < K of its columns it writes
//   stats[0][k][b] = S_b = sum over its rows of v[m, k]
//   stats[1][k][b] = Q_b = sum over its rows of (v[m, k] - mu_b)^2,   mu_b = fl(S_b / n_b)
// where v = fp32 value of the bf16 actually stored in y (the caller rounds the accumulators first), in
// fp32. Q_b is a sum of squared deviations from the tile's own mean, computed in a second pass over
// the values still in registers: no sum-of-squares cancellation. Rows m >= M (the zero-filled tail of
// the last tile) are excluded; columns k >= K are not written. Layout [2][K][P] floats, P = gridDim.x
// (a channel's partials contiguous, for the finalize's coalesced reads: stats[q][k][b]);
// the finalize kernel batch_norm_finalize_tiles_f32 (batch_norm.cu) merges the P partials (Chan's
// parallel-variance formula) in a fixed order.
//
// Reduction inside the block, deterministic (a fixed order, no atomics):
//   1. each thread adds, per column it holds, its 2 MI fragment values (rows 16 i + g and
//      16 i + g + 8, i < MI, of its warp tile; tc_for_each_pair's layout) in the order i, then +8;
//   2. the WARPS_M * 8 row lanes (warp row wr, fragment group g = lane / 4) write these to shared
//      memory lanes[wr * 8 + g][column], as float2 pairs;
//   3. thread tid < BN adds column tid over the row lanes in order 0, 1, ....
//   The pipeline's shared memory is reused (after a barrier: the last slice's ldmatrix reads, and
//   the staged output store's reads of the same memory (conv_tc_epilogue.cuh), must be done): lanes
//   take ROW_LANES x (BN + 8) floats, then the BN tile means. The row stride BN + 8 is 8 (or, for
//   BN = 16, 24) modulo the 32 banks, so the 4 fragment rows g of a half-warp's float2 stores cover
//   32 distinct banks (conflict-free); the column sums read consecutive floats.
#ifndef RESNET_CUDA_CONV_TC_STATS_CUH
#define RESNET_CUDA_CONV_TC_STATS_CUH

#include "conv_tc.cuh"

template <class Tile>
struct TcStatsShared {
    static constexpr int ROW_LANES = Tile::WARPS_M * 8;
    static constexpr int STRIDE = Tile::BN + 8;                   // floats per row lane
    static constexpr int MEANS = ROW_LANES * STRIDE;              // offset of the BN tile means
    static constexpr int BYTES = (MEANS + Tile::BN) * 4;
    static_assert(BYTES <= Tile::SMEM_BYTES, "the statistics fit in the pipeline's shared memory");
    static_assert(Tile::BN <= Tile::THREADS, "one thread per column of the tile");
};

// Rounds every accumulator to the bf16 the epilogue stores (and back to fp32: exact), so that what
// follows (the store, the statistics) sees the stored values.
template <class Tile>
__device__ __forceinline__ void tc_round_to_bf16(float (&acc)[Tile::MI][Tile::NI][4]) {
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
        for (int j = 0; j < Tile::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = bf16_to_float(bf16_from_float(acc[i][j][e]));
}

// One pass of the block reduction (steps 1-3 of the header): returns to thread col < BN the sum over
// the tile's first valid_rows rows of term(v, col) for the values v of tile column col.
template <class Tile, class Term>
__device__ __forceinline__ float tc_column_sum(const float (&acc)[Tile::MI][Tile::NI][4], int valid_rows,
                                               float* lanes, Term&& term) {
    using Sh = TcStatsShared<Tile>;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int wr = warp % Tile::WARPS_M, wn = (warp / Tile::WARPS_M) * Tile::WTN;
    const int row0 = wr * Tile::WTM + g;  // tile-relative row of acc[0][*][0]
#pragma unroll
    for (int j = 0; j < Tile::NI; ++j) {
        const int col = wn + 8 * j + 2 * t;
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                if (row0 + 16 * i + 8 * h < valid_rows) {
                    s0 += term(acc[i][j][2 * h], col);
                    s1 += term(acc[i][j][2 * h + 1], col + 1);
                }
            }
        *reinterpret_cast<float2*>(lanes + (wr * 8 + g) * Sh::STRIDE + col) = make_float2(s0, s1);
    }
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.x < Tile::BN) {
        for (int r = 0; r < Sh::ROW_LANES; ++r) total += lanes[r * Sh::STRIDE + threadIdx.x];
    }
    return total;
}

// Writes this block's statistics partials (see the header) for the tile at (m0, n0) of a GEMM with M
// rows and K columns. `smem` is the pipeline's shared memory, `stats` the [2][gridDim.x][K] floats.
// Every thread of the block must call it (it has barriers).
template <class Tile>
__device__ __forceinline__ void tc_channel_statistics(const float (&acc)[Tile::MI][Tile::NI][4], int m0, int n0,
                                                      int M, int K, float* smem, float* __restrict__ stats) {
    using Sh = TcStatsShared<Tile>;
    float* const lanes = smem;
    float* const means = smem + Sh::MEANS;
    const int valid_rows = min(Tile::BM, M - m0);
    const int col = threadIdx.x, k = n0 + col;
    const long long slot = static_cast<long long>(gridDim.x) * K;  // floats per statistic
    const long long out = static_cast<long long>(k) * gridDim.x + blockIdx.x;
    __syncthreads();  // every warp is done with the pipeline's tiles (and the staged output tile)

    const float sum = tc_column_sum<Tile>(acc, valid_rows, lanes, [](float v, int) { return v; });
    if (col < Tile::BN) {
        means[col] = sum / static_cast<float>(valid_rows);
        if (k < K) stats[out] = sum;
    }
    __syncthreads();  // the means are visible; the row lanes are read and may be rewritten

    const float sqdev = tc_column_sum<Tile>(acc, valid_rows, lanes, [&](float v, int c) {
        const float d = v - means[c];
        return d * d;
    });
    if (col < Tile::BN && k < K) stats[slot + out] = sqdev;
}

#endif
