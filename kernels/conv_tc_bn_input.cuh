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
// The cost is a 16-byte shared load and store plus 8 fma + max per chunk, before the barrier; what it
// saves is the normalising pass (a read and a write of z) and backward-filter's read of z. Which wins
// on a given GPU is measured (device-check's `nofusebnin` benchmarks).
#ifndef RESNET_CUDA_CONV_TC_BN_INPUT_CUH
#define RESNET_CUDA_CONV_TC_BN_INPUT_CUH

#include "bf16_vec.cuh"
#include "bn_affine.cuh"

// The batch norm whose output (with ReLU) is the convolution's input: its saved batch statistics and
// parameters, per channel of x.
struct TcBnReluInput {
    const float* mean;
    const float* inv_std;
    const float* gamma;
    const float* beta;
};

// The coefficients of channels c0 .. c0 + 7 (bn_affine.cuh's, so the map is the normalising pass's).
__device__ __forceinline__ void tc_bn_relu_coefficients(const TcBnReluInput& bn, int c0, float (&scale)[8],
                                                        float (&shift)[8]) {
    bn_affine_coefficients<8>(bn.mean, bn.inv_std, bn.gamma, bn.beta, c0, scale, shift);
}

// Rewrites the 8 staged bf16 of x at `chunk` (16-byte aligned shared memory) as z: the affine map,
// the ReLU as the normalising pass writes it (v < 0 ? 0 : v), one rounding to nearest even.
__device__ __forceinline__ void tc_bn_relu_chunk(bf16* chunk, const float (&scale)[8], const float (&shift)[8]) {
    float v[8];
    load_bf16<8, true>(chunk, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        v[k] = bn_affine(v[k], scale[k], shift[k]);
        v[k] = v[k] < 0.0f ? 0.0f : v[k];
    }
    store_bf16<8, true>(chunk, v);
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

// The main loops' default hook: nothing to do when a slice lands.
struct TcNothingLanded {
    __device__ __forceinline__ void operator()(bf16*, bf16*, int) const {}
};

#endif
