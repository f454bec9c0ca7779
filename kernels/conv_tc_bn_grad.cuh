// conv_tc_bn_grad.cuh: batch-norm backward partial sums from the epilogue of the tensor-core
// convolution backward-data (conv_tc_backward_data.cuh's _bn_ kernels), so that the BN whose output
// gradient this convolution writes never reads that gradient for them.
//
// Where it applies: a BN's output, after its ReLU, is the input of the next convolution, whose
// backward-data writes dz = d(loss)/d(that output) (plus, at a block's input, the shortcut's
// gradient: the addend). Inside a block the ReLU is the BN's own, y = relu(x scale_c + shift_c)
// (scale and shift BN's affine map, bn_affine.cuh, so the mask is bit for bit the one the forward
// clamped); between blocks it is the previous block's end, y = relu(BN(x) + s), whose output y is
// read for the mask (y > 0). BN's backward needs, per channel c, of g = dz [mask]:
//   S_c = sum_m g[m, c],   T_c = sum_m g[m, c] (x[m, c] - mean_c).
// The separate pass (batch_norm_backward_partial_bf16) reads x and dz (and y) for them; here dz is
// still in the block's shared memory. And the epilogue stores g itself rather than dz: for a block's
// end that is the sum's gradient dsum, which BN's data pass and the shortcut then read as it is,
// with no mask and no y to read again.
//
// Math: block (bx, by, bz) owns the class-bz GEMM rows m0 = bx BM .. m0 + BM - 1 (those < M) and the
// channels n0 = by BN .. n0 + BN - 1 (those < C). It stores g (exactly dz, or +0 where masked) in
// dx and writes, for its partition p = bz gridDim.x + bx of P = gridDim.x gridDim.z and each of its
// channels c,
//   partial[0][c][p] = sum of g over its rows,   partial[1][c][p] = sum of g (x - mean_c) over them,
// in fp32, with dz the bf16 value the plain kernel stores (exact in fp32) and x the stored bf16
// input. batch_norm_backward_finalize_tiles_f32 merges the P partials into dgamma, dbeta and the
// data pass's coefficients, as batch_norm_backward_finalize_f32 does batch_norm_backward_partial's
// ([2][P][C]); here a channel's P partials are contiguous ([2][C][P]), because P is large (one per
// block of rows) and the finalize, a block per channel, then reads them coalesced. A block whose
// class has fewer rows (grid sized for the largest class) writes zeros (tc_bn_grad_zero_partials).
//
// Deterministic (a fixed order, no atomics): each thread walks its staged chunks (TcChunks: one
// column of 8 channels, rows tid / CHUNKS + j ROW_STEP) in order j and sums per channel; the ROW_STEP
// threads of a chunk column then write their 16 sums to shared memory and thread tid < BN adds its
// channel's over them in order 0, 1, ....
// Shared memory: after a barrier (every thread's reads of the staged tile are done), 2 x THREADS x 8
// floats (16 KiB for 256 threads), inside every tile's pipeline memory (static_assert). Thread t's 8
// sums at floats 8t .. 8t + 7.
#ifndef RESNET_CUDA_CONV_TC_BN_GRAD_CUH
#define RESNET_CUDA_CONV_TC_BN_GRAD_CUH

#include "bf16_vec.cuh"
#include "bn_affine.cuh"
#include "conv_tc_epilogue.cuh"

// Where the ReLU mask on the BN's output gradient comes from: the numbering of batch_norm_bf16.cu's
// ReluMask (and of ReluMask in src/backend/gpu/batch_norm.rs).
enum TcBnMask { kTcBnNoMask = 0, kTcBnMaskFromY = 1, kTcBnMaskFromAffine = 2 };

// The BN whose output gradient the convolution writes: its input x (NHWC, same shape and layout as
// dx), its saved batch statistics and parameters, the mask (kTcBnMaskFromY: y > 0, y a block's
// output relu(BN(x) + s), same layout), and the [2][C][P] partials to write.
struct TcBnGrad {
    const bf16* x;
    const float* mean;
    const float* inv_std;
    const float* gamma;
    const float* beta;
    int mask;
    const bf16* y;
    float* partial;
};

// Where partial[q][k][p] is for this block's partition p = bz gridDim.x + bx of P = gridDim.x gridDim.z.
__device__ __forceinline__ long long tc_bn_grad_index(int q, int k, int C) {
    const long long P = static_cast<long long>(gridDim.x) * gridDim.z;
    const long long p = static_cast<long long>(blockIdx.z) * gridDim.x + blockIdx.x;
    return (static_cast<long long>(q) * C + k) * P + p;
}

// Channels n0 .. n0 + BN - 1 (< C) of this block's partition: zeros (a block past its class's rows).
template <class Tile>
__device__ __forceinline__ void tc_bn_grad_zero_partials(const TcBnGrad& bn, int n0, int C) {
    const int k = n0 + static_cast<int>(threadIdx.x);
    if (static_cast<int>(threadIdx.x) < Tile::BN && k < C) {
        bn.partial[tc_bn_grad_index(0, k, C)] = 0.0f;
        bn.partial[tc_bn_grad_index(1, k, C)] = 0.0f;
    }
}

// Step 3 of tc_store_tile_bf16 with the BN's backward: after tc_stage_tile_bf16 has staged the tile
// at (m0, n0) (M rows, C channels) in `smem`, stores g (the staged gradient with the mask applied:
// exactly dz or +0) to out_row(m) and writes this block's partials (see the header). row(m) is the
// element offset of GEMM row m's channel 0 in dx, x and y alike (16-byte aligned: C % 8 == 0).
// Every thread of the block must call it (it has barriers).
template <class Tile, class Row>
__device__ __forceinline__ void tc_bn_grad_store(const TcBnGrad& bn, bf16* smem, bf16* __restrict__ dx, int m0,
                                                 int n0, int M, int C, Row&& row_offset) {
    using Ch = typename TcStagedTile<Tile>::Chunks;
    constexpr int LANE_FLOATS = Tile::THREADS * 8;  // one of the two sums, 8 channels a thread
    static_assert(2 * LANE_FLOATS * 4 <= Tile::SMEM_BYTES, "the sums fit in the pipeline's memory");
    static_assert(Tile::BN <= Tile::THREADS, "one thread per channel of the tile adds its row lanes");
    const int tid = static_cast<int>(threadIdx.x);
    const int chunk = Ch::column(tid), c0 = n0 + 8 * chunk;
    float s[8], t[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) s[e] = t[e] = 0.0f;
    if (c0 < C) {
        float mu[8], scale[8], shift[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) mu[e] = bn.mean[c0 + e];
        if (bn.mask == kTcBnMaskFromAffine) {
            bn_affine_coefficients<8>(bn.mean, bn.inv_std, bn.gamma, bn.beta, c0, scale, shift);
        }
#pragma unroll
        for (int j = 0; j < Ch::PER_THREAD; ++j) {
            const int row = Ch::row(tid, j), m = m0 + row;
            if (!Ch::owns(tid, j) || m >= M) continue;
            const long long at = row_offset(m) + c0;
            const uint4 dz = tc_load_16(smem + tc_chunk_offset<Tile::BN>(row, chunk));
            const uint4 xs = tc_load_16(bn.x + at);
            const uint4 ys = bn.mask == kTcBnMaskFromY ? tc_load_16(bn.y + at) : make_uint4(0, 0, 0, 0);
            const std::uint32_t dz_pairs[4] = {dz.x, dz.y, dz.z, dz.w};
            const std::uint32_t x_pairs[4] = {xs.x, xs.y, xs.z, xs.w};
            const std::uint32_t y_pairs[4] = {ys.x, ys.y, ys.z, ys.w};
            std::uint32_t g_pairs[4];
#pragma unroll
            for (int h = 0; h < 4; ++h) {
                std::uint32_t keep = 0xffffffffu;  // per bf16 half: all ones keeps dz, zero stores +0
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int e = 2 * h + half;
                    const float xv = half == 0 ? bf16_low_as_float(x_pairs[h]) : bf16_high_as_float(x_pairs[h]);
                    bool pass = true;
                    if (bn.mask == kTcBnMaskFromAffine) {
                        pass = bn_affine(xv, scale[e], shift[e]) > 0.0f;
                    } else if (bn.mask == kTcBnMaskFromY) {
                        pass = (half == 0 ? bf16_low_as_float(y_pairs[h]) : bf16_high_as_float(y_pairs[h])) > 0.0f;
                    }
                    if (!pass) keep &= half == 0 ? 0xffff0000u : 0x0000ffffu;
                    const float dzv = half == 0 ? bf16_low_as_float(dz_pairs[h]) : bf16_high_as_float(dz_pairs[h]);
                    const float g = pass ? dzv : 0.0f;
                    s[e] += g;
                    t[e] += g * (xv - mu[e]);
                }
                g_pairs[h] = dz_pairs[h] & keep;
            }
            tc_store_16(dx + at, make_uint4(g_pairs[0], g_pairs[1], g_pairs[2], g_pairs[3]));
        }
    }
    __syncthreads();  // every thread has read its staged chunks: the memory is free
    float* const lanes_s = reinterpret_cast<float*>(smem);
    float* const lanes_t = lanes_s + LANE_FLOATS;
    // 16-byte stores: 8 threads a phase, 32 bytes apart, 2-way conflicts (scalar stores 8 floats
    // apart would be 8-way); the column sums below read consecutive floats, conflict-free.
    float4* const mine_s = reinterpret_cast<float4*>(lanes_s + 8 * tid);
    float4* const mine_t = reinterpret_cast<float4*>(lanes_t + 8 * tid);
    mine_s[0] = make_float4(s[0], s[1], s[2], s[3]);
    mine_s[1] = make_float4(s[4], s[5], s[6], s[7]);
    mine_t[0] = make_float4(t[0], t[1], t[2], t[3]);
    mine_t[1] = make_float4(t[4], t[5], t[6], t[7]);
    __syncthreads();
    // Column col of the tile is channel 8 (col / 8) + col % 8 of chunk col / 8, whose sums thread
    // r CHUNKS + col / 8 (row lane r) holds at 8 (r CHUNKS + col / 8) + col % 8 = r BN + col.
    const int k = n0 + tid;
    if (tid < Tile::BN && k < C) {
        float total_s = 0.0f, total_t = 0.0f;
        for (int r = 0; r < Ch::ROW_STEP; ++r) {
            total_s += lanes_s[r * Tile::BN + tid];
            total_t += lanes_t[r * Tile::BN + tid];
        }
        bn.partial[tc_bn_grad_index(0, k, C)] = total_s;
        bn.partial[tc_bn_grad_index(1, k, C)] = total_t;
    }
}

#endif
