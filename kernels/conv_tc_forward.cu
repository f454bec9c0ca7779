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
//                                        statistics partials of y as stored, [2][grid.x][K] floats
//                                        (conv_tc_stats.cuh: per block row of tiles, the sum and the
//                                        sum of squared deviations from that tile's mean).
// Launch: grid (ceil(M / BM), ceil(K / BN), 1), block (THREADS, 1, 1) with THREADS = 256 for 128x128
//         and 128 for the others, dynamic shared bytes = TcTile::SMEM_BYTES (49152, 32768, 40960,
//         20480, 24576, and 65536 for 128x128w64, the one that must opt in above 48 KiB). Pointers
//         16-byte aligned. Every element of y is written.
// Epilogue: with K % 8 == 0 and y 16-byte aligned, the block's tile is staged through the pipeline's
//         shared memory and written with 16-byte stores (conv_tc_epilogue.cuh); otherwise each
//         accumulator pair is stored from its fragment (4-byte stores when K is even, else 2-byte),
//         which needs y only 4-byte aligned. Both write the same bits.
#include "conv_tc_epilogue.cuh"
#include "conv_tc_stats.cuh"

template <class Tile, bool VEC, bool STATS>
__device__ __forceinline__ void conv_tc_forward(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                bf16* __restrict__ y, float* __restrict__ stats,
                                                const ConvDims& d) {
    if (VEC && d.C % 8 != 0) __trap();  // uniform: a vector kernel given an unaligned shape
    using AChunks = TcChunks<Tile::BM, Tile::BK, Tile::THREADS>;
    using BChunks = TcChunks<Tile::BN, Tile::BK, Tile::THREADS>;
    const int H = d.H, W = d.W, C = d.C, K = d.K, S = d.S;
    const int M = d.N * d.P * d.Q, RSC = d.R * S * C;
    const int m0 = blockIdx.x * Tile::BM, n0 = blockIdx.y * Tile::BN;
    const int tid = threadIdx.x;

    // This thread's A rows (output pixels): the image's offset and the input corner of tap (0, 0).
    long long a_image[AChunks::PER_THREAD];
    int a_h0[AChunks::PER_THREAD], a_w0[AChunks::PER_THREAD];
#pragma unroll
    for (int j = 0; j < AChunks::PER_THREAD; ++j) {
        const int m = m0 + AChunks::row(tid, j);
        a_image[j] = 0;
        a_h0[j] = kConvInvalid;
        a_w0[j] = kConvInvalid;
        if (AChunks::owns(tid, j) && m < M) {
            const int q = m % d.Q, np = m / d.Q;
            const int p = np % d.P, n = np / d.P;
            a_image[j] = static_cast<long long>(n) * H * W * C;
            a_h0[j] = p * d.stride - d.pad;
            a_w0[j] = q * d.stride - d.pad;
        }
    }
    const int a_col = AChunks::column(tid), b_col = BChunks::column(tid);

    TcReductionIndex tap;  // this thread's A chunk's (r, s, c), carried from slice to slice
    auto load_a = [&](bf16* tile, int k0) {
        if constexpr (VEC) {
            // The 8 channels of this chunk share one tap (C % 8 == 0).
            const int kr = k0 + 8 * a_col;
            tap.seek(kr, S, C);
            const int r = tap.outer, s = tap.middle, c = tap.channel;
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                const int h = a_h0[j] + r, ww = a_w0[j] + s;
                const bool ok = kr < RSC && h >= 0 && h < H && ww >= 0 && ww < W;
                const bf16* src = ok ? x + a_image[j] + (static_cast<long long>(h) * W + ww) * C + c : x;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), src, ok);
            }
        } else {
            int r[8], s[8], c[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const int kr = k0 + 8 * a_col + e;
                const int rs = kr / C;
                c[e] = kr - rs * C;
                r[e] = kr < RSC ? rs / S : kConvInvalid;  // invalid taps fail the bounds test below
                s[e] = rs - (rs / S) * S;
            }
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int h = a_h0[j] + r[e], ww = a_w0[j] + s[e];
                    const bool ok = h >= 0 && h < H && ww >= 0 && ww < W;
                    bits[e] = ok ? tc_bits(x + a_image[j] + (static_cast<long long>(h) * W + ww) * C + c[e]) : 0;
                }
                tc_store_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), bits);
            }
        }
    };

    // B rows are output channels k; each row's reduction run w[k][0..RSC) is contiguous.
    auto load_b = [&](bf16* tile, int k0) {
        const int kr = k0 + 8 * b_col;
#pragma unroll
        for (int j = 0; j < BChunks::PER_THREAD; ++j) {
            if (!BChunks::owns(tid, j)) continue;
            const int row = BChunks::row(tid, j), k = n0 + row;
            const bf16* base = w + static_cast<long long>(k) * RSC + kr;
            if constexpr (VEC) {
                const bool ok = k < K && kr < RSC;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BK>(row, b_col), ok ? base : w, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) bits[e] = (k < K && kr + e < RSC) ? tc_bits(base + e) : 0;
                tc_store_chunk(tile + tc_chunk_offset<Tile::BK>(row, b_col), bits);
            }
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    const int slices = (RSC + Tile::BK - 1) / Tile::BK;
    tc_mainloop<Tile, false, false>(acc, dynamic_shared_memory<bf16>(), slices, load_a, load_b);

    if constexpr (STATS) tc_round_to_bf16<Tile>(acc);  // the statistics are of the stored values
    if (tc_staged_store_ok(K, y)) {
        // 16-byte stores through shared memory (conv_tc_epilogue.cuh); row m of C is y[m][0..K).
        tc_store_tile_bf16<Tile>(acc, dynamic_shared_memory<bf16>(), m0, n0, M, K,
                                 [&](int m) { return y + static_cast<long long>(m) * K; });
    } else {
        const bool paired = K % 2 == 0;
        tc_for_each_pair<Tile>(acc, m0, n0, [&](int m, int k, float v0, float v1) {
            if (m < M && k < K) tc_store_bf16_pair(y + static_cast<long long>(m) * K + k, v0, v1, k + 1 < K, paired);
        });
    }
    // (Its first barrier also ends the staged store's shared-memory reads before the tile is reused.)
    if constexpr (STATS) tc_channel_statistics<Tile>(acc, m0, n0, M, K, dynamic_shared_memory<float>(), stats);
}

#define CONV_TC_FORWARD_KERNEL(name, Tile, VEC)                                                        \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, VEC, false>(x, w, y, nullptr, d);                                        \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_FORWARD_STATS_KERNEL(name, Tile, VEC)                                                  \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* w, bf16* y, float* stats, ConvDims d) {                        \
        grid_dependency_sync();                                                                        \
        conv_tc_forward<Tile, VEC, true>(x, w, y, stats, d);                                           \
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
