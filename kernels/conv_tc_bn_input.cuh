// conv_tc_bn_input.cuh: a tensor-core convolution whose input is a batch norm's output with its ReLU,
// z = max(x scale_c + shift_c, 0) (bn_affine.cuh), computed from BN's input x as the operand is
// staged, so that z is never written to memory nor read back: the forward reads x where it would
// read z, and so does backward-filter (whose B operand is the same activation). Nothing changes in
// the math: the staged tile holds exactly the bf16 values the normalising pass would have stored
// (same affine code, same fp32 arithmetic, one rounding to bf16), so the convolution's result is
// bit for bit the one it computes from a stored z.
//
// How. The loaders still copy x with 16-byte cp.async; a copy lands asynchronously, so the map
// cannot be applied as it is issued. The main loops (conv_tc.cuh, conv_wgmma.cuh) call a `landed`
// hook for each slice after this thread's wait for that slice's copies and before the barrier that
// hands the stage to every warp: each thread then rewrites, in shared memory, the chunks it copied
// itself (their completion is visible to it after its own wait), so no barrier is added. A chunk the
// loader zero-filled (padding, rows or columns past the GEMM) stays zero: padding is z's, not x's
// (relu(0 scale + shift) need not be 0), so the loader records which of its chunks were real copies,
// per pipeline stage (TcLandedChunks), and only those are mapped.
//
// The map's coefficients: the forward's slices move through the channels, so a block computes all
// C channels' once into a table in front of its pipeline (tc_fill_bn_coefficients); backward-filter's
// columns, and so each thread's 8 channels, are fixed, so a thread keeps its 16 in registers.
//
// The cost is a 16-byte shared load and store plus 8 fma and 4 conversions (the ReLU in them) per chunk (and the forward's four
// 16-byte table loads), before the barrier; what it saves is the normalising pass (a read and a write
// of z) and the launch. Which wins on a given GPU is measured (device-check's `nofusebnin`
// benchmarks, and the tile sweep's `forward_bnrelu` and `backward_filter_bnrelu` passes).
#ifndef RESNET_CUDA_CONV_TC_BN_INPUT_CUH
#define RESNET_CUDA_CONV_TC_BN_INPUT_CUH

#include "bf16_vec.cuh"
#include "bn_affine.cuh"
#include "launch_constants.h"

// The coefficients of channels c0 .. c0 + 7 (bn_affine.cuh's, so the map is the normalising pass's).
__device__ __forceinline__ void tc_bn_relu_coefficients(const BnAffineParams& bn, int c0, float (&scale)[8],
                                                        float (&shift)[8]) {
    bn_affine_coefficients<8>(bn.mean, bn.inv_std, bn.gamma, bn.beta, c0, scale, shift);
}

// Shared memory a block of the forward sets aside for the coefficients of the C channels of x
// (C <= kTcBnTableChannels, launch_constants.h): scale[0 .. C) then shift[0 .. C), in front of the
// pipeline's stages, the same size for every C (so a kernel's shared memory does not vary by layer;
// 4 KiB, a multiple of the wgmma pipeline's 1024-byte alignment). The forward's slices move
// through the channels, so each landed slice would otherwise read 8 of every per-channel vector
// from global memory just before the barrier; this way a block computes them once (the same code,
// so the same bits) and a slice reads them with four 16-byte shared loads.
constexpr int kTcBnTableBytes = 2 * kTcBnTableChannels * static_cast<int>(sizeof(float));

// Fills the table (the first THREADS threads of the block, then a barrier of every thread before any
// slice reads it; threads past THREADS, a producer warp's, only meet the barrier). The forward runs it
// as the main loop's `issued` hook, so the first slices' copies are in flight meanwhile.
template <int THREADS>
__device__ __forceinline__ void tc_fill_bn_coefficients(const BnAffineParams& bn, int C, float* table) {
    for (int c = threadIdx.x; c < C && threadIdx.x < THREADS; c += THREADS) {
        float scale[1], shift[1];
        bn_affine_coefficients<1>(bn.mean, bn.inv_std, bn.gamma, bn.beta, c, scale, shift);
        table[c] = scale[0];
        table[C + c] = shift[0];
    }
    __syncthreads();
}

// Channels c0 .. c0 + 7 from the table (c0 and C multiples of 8: 16-byte aligned).
__device__ __forceinline__ void tc_bn_relu_coefficients(const float* table, int C, int c0, float (&scale)[8],
                                                        float (&shift)[8]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const float4 s = *reinterpret_cast<const float4*>(table + c0 + 4 * h);
        const float4 t = *reinterpret_cast<const float4*>(table + C + c0 + 4 * h);
        scale[4 * h] = s.x, scale[4 * h + 1] = s.y, scale[4 * h + 2] = s.z, scale[4 * h + 3] = s.w;
        shift[4 * h] = t.x, shift[4 * h + 1] = t.y, shift[4 * h + 2] = t.z, shift[4 * h + 3] = t.w;
    }
}

// Rewrites the 8 staged bf16 of x at `chunk` (16-byte aligned shared memory) as z: the affine map,
// the ReLU in the one rounding to nearest even, as the normalising pass writes it (store_bf16 with kRelu).
__device__ __forceinline__ void tc_bn_relu_chunk(bf16* chunk, const float (&scale)[8], const float (&shift)[8]) {
    float v[8];
    load_bf16<8, true>(chunk, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = bn_affine(v[k], scale[k], shift[k]);
    store_bf16<8, true, true>(chunk, v);
#if !defined(__CUDACC__)
    // A generic-proxy store a wgmma may read next: the emulator checks the fence.proxy.async for it.
    emu::note_generic_shared_store(chunk);
#endif
}

// Which of a thread's PER_THREAD chunks of an operand tile were real copies (not zero-fill), for each
// of the STAGES pipeline stages: one bit per (stage, chunk), set by the loader as it issues a slice,
// read by the landed hook for the same slice STAGES - 1 (or - 2) slices later, before the stage is
// reused. A slice's stage is slice % STAGES in both main loops.
template <int PER_THREAD, int STAGES>
struct TcLandedChunks {
    static_assert(PER_THREAD * STAGES <= 32, "one bit per chunk and stage in a 32-bit mask");
    std::uint32_t bits = 0;

    __device__ __forceinline__ static int shift(int slice) { return (slice % STAGES) * PER_THREAD; }

    // Records chunk j of `slice` as copied (`real`) or zero-filled.
    __device__ __forceinline__ void record(int slice, int j, bool real) {
        const std::uint32_t bit = 1u << (shift(slice) + j);
        bits = real ? bits | bit : bits & ~bit;
    }

    __device__ __forceinline__ bool real(int slice, int j) const { return (bits >> (shift(slice) + j)) & 1u; }
};

// The main loops' default hooks: nothing to do when a slice lands, nor once the first are issued.
struct TcNothingLanded {
    __device__ __forceinline__ void operator()(bf16*, bf16*, int) const {}
};
struct TcNothingIssued {
    __device__ __forceinline__ void operator()() const {}
};

#endif
