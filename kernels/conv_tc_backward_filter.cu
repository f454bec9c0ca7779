// conv_tc_backward_filter.cu: gradient of 2-D convolution with respect to its weights, on tensor cores
// (bf16 in, fp32 accumulate, fp32 out into the fp32 master gradient), with the long reduction split
// across blocks and summed deterministically (no float atomics).
//
// Math:   dw[k,r,s,c] = sum_{n,p,q} dy[n,p,q,k] * x[n, p*stride - pad + r, q*stride - pad + s, c]
//         (reads outside the image are zero; fp32 sums, no output rounding).
// Layout: x [N,H,W,C] bf16 (NHWC), dy [N,P,Q,K] bf16 (NHWC), dw [K,R,S,C] fp32 (KRSC).
// GEMM:   M = K, Ncol = R*S*C (column rsc = (r*S + s)*C + c), Kred = N*P*Q (j = (n*P + p)*Q + q):
//         A[k, j] = dy[j][k] (contiguous along k, i.e. along M: stored KM, fragments by ldmatrix.trans),
//         B[j, rsc] = x[n, p*st-pad+r, q*st-pad+s, c] (contiguous along c: stored KN, ldmatrix.trans).
// Split:  Z = gridDim.z blocks share an output tile; block z reduces j in [z*L, min((z+1)*L, NPQ)) with
//         L = ceil(ceil(NPQ / Z) / 32) * 32 and writes its partial sums (zeros for an empty range) to
//         out[z][k][r][s][c]. With Z = 1, `out` is dw itself (no reduce). With Z > 1, `out` is a
//         workspace of Z*K*R*S*C floats and conv2d_tc_backward_filter_reduce_bf16 sums the partials in
//         order z = 0..Z-1 into dw: bitwise reproducible for a given Z, and Z depends on the shape only
//         (src/backend/gpu/conv_tc_plan.rs).
// Main loop, tiles, swizzle, pipeline: conv_tc.cuh.
//
// Kernels:
//   conv2d_tc_backward_filter_{V}{T}_bf16  params (const bf16* x, const bf16* dy, float* out, ConvDims d)
//       {V} = ""         requires C % 8 == 0 and K % 8 == 0 (16-byte cp.async chunks); traps otherwise;
//       {V} = "general_" any shape (element-wise gathers into the same tiles);
//       {T} one of 128x128, 64x64, 128x32, 64x16, 32x64 (BM x BN, BM along K, BN along R*S*C), and
//       128x128w64 (four 64 x 64 warp tiles).
//       grid (ceil(K / BM), ceil(R*S*C / BN), Z), block (THREADS, 1, 1) (256 for 128x128, else 128),
//       dynamic shared bytes TcTile::SMEM_BYTES (65536 for 128x128w64, which must opt in above 48 KiB;
//       at most 49152 for the others). Every element of out is written.
//       Pointers: x, dy 16-byte aligned, out 8-byte aligned.
//   conv2d_tc_backward_filter_reduce_bf16  params (const float* workspace, float* dw, int splits,
//       unsigned long long count) with count = K*R*S*C: dw[i] = sum_{z < splits} workspace[z*count + i],
//       z ascending. Grid-stride: any grid/block, e.g. grid (min(ceil(count / 256), 4096), 1, 1), block
//       (256, 1, 1), no shared memory. (Its data is fp32; "_bf16" names the kernel family.)
#include "conv_tc.cuh"

template <class Tile, bool VEC>
__device__ __forceinline__ void conv_tc_backward_filter(const bf16* __restrict__ x, const bf16* __restrict__ dy,
                                                        float* __restrict__ out, const ConvDims& d) {
    if (VEC && (d.C % 8 != 0 || d.K % 8 != 0)) __trap();  // uniform: a vector kernel given an unaligned shape
    using AChunks = TcChunks<Tile::BK, Tile::BM, Tile::THREADS>;
    using BChunks = TcChunks<Tile::BK, Tile::BN, Tile::THREADS>;
    const int H = d.H, W = d.W, C = d.C, K = d.K, S = d.S, P = d.P, Q = d.Q;
    const int RSC = d.R * S * C, NPQ = d.N * P * Q;
    const int m0 = blockIdx.x * Tile::BM, n0 = blockIdx.y * Tile::BN;
    const int tid = threadIdx.x;

    // This block's share of the reduction.
    const int splits = gridDim.z;
    const int per_split = ((NPQ + splits - 1) / splits + Tile::BK - 1) / Tile::BK * Tile::BK;
    const int j_begin = min(NPQ, static_cast<int>(blockIdx.z) * per_split);
    const int j_end = min(NPQ, j_begin + per_split);

    // A: this thread's 8 output channels, fixed; rows are reduction indices.
    const int a_col = AChunks::column(tid), k_base = m0 + 8 * a_col;
    auto load_a = [&](bf16* tile, int k0) {
#pragma unroll
        for (int jj = 0; jj < AChunks::PER_THREAD; ++jj) {
            if (!AChunks::owns(tid, jj)) continue;
            const int row = AChunks::row(tid, jj), j = j_begin + k0 + row;
            const bf16* base = dy + static_cast<long long>(j) * K + k_base;
            if constexpr (VEC) {
                const bool ok = j < j_end && k_base < K;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BM>(row, a_col), ok ? base : dy, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) bits[e] = (j < j_end && k_base + e < K) ? tc_bits(base + e) : 0;
                tc_store_chunk(tile + tc_chunk_offset<Tile::BM>(row, a_col), bits);
            }
        }
    };

    // B: this thread's 8 columns (taps and input channels), decoded once; rows are reduction indices.
    const int b_col = BChunks::column(tid), rsc_base = n0 + 8 * b_col;
    constexpr int COLS = VEC ? 1 : 8;  // the vector path's 8 columns share one tap (C % 8 == 0)
    int col_r[COLS], col_s[COLS], col_c[COLS];
#pragma unroll
    for (int e = 0; e < COLS; ++e) {
        const int rsc = rsc_base + e;
        const int rs = rsc / C;
        col_c[e] = rsc - rs * C;
        col_r[e] = rsc < RSC ? rs / S : kConvInvalid;  // an invalid column fails every bounds test
        col_s[e] = rs - (rs / S) * S;
    }
    auto load_b = [&](bf16* tile, int k0) {
#pragma unroll
        for (int jj = 0; jj < BChunks::PER_THREAD; ++jj) {
            if (!BChunks::owns(tid, jj)) continue;
            const int row = BChunks::row(tid, jj), j = j_begin + k0 + row;
            int h0 = kConvInvalid, w0 = kConvInvalid;
            long long image = 0;
            if (j < j_end) {
                const int q = j % Q, np = j / Q;
                const int p = np % P, n = np / P;
                image = static_cast<long long>(n) * H * W * C;
                h0 = p * d.stride - d.pad;
                w0 = q * d.stride - d.pad;
            }
            if constexpr (VEC) {
                const int h = h0 + col_r[0], ww = w0 + col_s[0];
                const bool ok = h >= 0 && h < H && ww >= 0 && ww < W;
                const bf16* src = ok ? x + image + (static_cast<long long>(h) * W + ww) * C + col_c[0] : x;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BN>(row, b_col), src, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int h = h0 + col_r[e], ww = w0 + col_s[e];
                    const bool ok = h >= 0 && h < H && ww >= 0 && ww < W;
                    bits[e] = ok ? tc_bits(x + image + (static_cast<long long>(h) * W + ww) * C + col_c[e]) : 0;
                }
                tc_store_chunk(tile + tc_chunk_offset<Tile::BN>(row, b_col), bits);
            }
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    const int slices = (j_end - j_begin + Tile::BK - 1) / Tile::BK;
    tc_mainloop<Tile, true, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a, load_b);

    float* const partial = out + static_cast<long long>(blockIdx.z) * K * RSC;
    const bool paired = RSC % 2 == 0;
    tc_for_each_pair<Tile>(acc, m0, n0, [&](int k, int rsc, float v0, float v1) {
        if (k >= K || rsc >= RSC) return;
        float* at = partial + static_cast<long long>(k) * RSC + rsc;
        if (rsc + 1 < RSC && paired) {
            *reinterpret_cast<float2*>(at) = make_float2(v0, v1);
        } else {
            at[0] = v0;
            if (rsc + 1 < RSC) at[1] = v1;
        }
    });
}

#define CONV_TC_BACKWARD_FILTER_KERNEL(name, Tile, VEC)                                                \
    extern "C" __global__ void __launch_bounds__(Tile::THREADS)                                        \
        name(const bf16* x, const bf16* dy, float* out, ConvDims d) {                                  \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_filter<Tile, VEC>(x, dy, out, d);                                             \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x128_bf16, TcTile128x128, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_64x64_bf16, TcTile64x64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x32_bf16, TcTile128x32, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_64x16_bf16, TcTile64x16, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_32x64_bf16, TcTile32x64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_128x128_bf16, TcTile128x128, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_64x64_bf16, TcTile64x64, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_128x32_bf16, TcTile128x32, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_64x16_bf16, TcTile64x16, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_32x64_bf16, TcTile32x64, false);

extern "C" __global__ void conv2d_tc_backward_filter_reduce_bf16(const float* workspace, float* dw, int splits,
                                                                 unsigned long long count) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < count; i += grid_stride()) {
        float sum = 0.0f;
        for (int z = 0; z < splits; ++z) sum += workspace[z * count + i];
        dw[i] = sum;
    }
}
EMU_REGISTER(conv2d_tc_backward_filter_reduce_bf16);
