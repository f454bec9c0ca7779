// tensor_core.cuh: the tensor-core building blocks (sm_80 and newer): bf16 values, the warp-wide
// matrix multiply-accumulate mma.m16n8k16 (bf16 inputs, f32 accumulators), ldmatrix, and the
// asynchronous global-to-shared copy cp.async with its commit/wait groups.
//
// Under nvcc each function is one PTX instruction (inline asm). In the host emulator the same calls
// go to emu_tensor_core.h, which implements them with the PTX ISA's fragment ownership, so kernels
// built on this header are proven in CI (tests/tensor_core.rs) before a GPU runs them.
//
// Fragments of mma.m16n8k16 (D = A B + C; A 16x16, B 16x8, C and D 16x8), for lane l with
// g = l / 4 and t = l % 4; a "pair" is one uint32 holding two bf16, the first in the low half:
//   A: a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B: b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
//   C, D: c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// ldmatrix m8n8 (.x1, .x2, .x4 matrices of 8x8 b16): lanes 8m .. 8m+7 give the 16-byte-aligned
// shared-memory addresses of the 8 rows of matrix m; lane l receives in r[m] the pair M[g][2t, 2t+1]
// (with .trans, the pair of the transpose: M[2t][g], M[2t+1][g]). So .x4 of a row-major 16x16 tile,
// lane l pointing at row l % 16, column 8 (l / 16), yields exactly an A fragment; .x2.trans of a
// row-major 16x8 B[k][n], lane l < 16 pointing at row l, yields a B fragment.
#ifndef RESNET_CUDA_TENSOR_CORE_CUH
#define RESNET_CUDA_TENSOR_CORE_CUH

#include <cstdint>

#include "common.cuh"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "tensor_core.cuh needs sm_80 or newer (mma.m16n8k16 with bf16, ldmatrix, cp.async)"
#endif
#endif

// ---- bf16 -------------------------------------------------------------------------------------------
// Round to nearest even from float (a NaN stays a NaN); widening to float is exact.
#ifdef __CUDACC__
using bf16 = __nv_bfloat16;
__device__ __forceinline__ bf16 bf16_from_float(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float bf16_to_float(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ std::uint16_t bf16_bits(bf16 x) { return __bfloat16_as_ushort(x); }
__device__ __forceinline__ bf16 bf16_from_bits(std::uint16_t b) { return __ushort_as_bfloat16(b); }
#else
using bf16 = emu::bfloat16;
inline bf16 bf16_from_float(float x) { return emu::bfloat16_from_float(x); }
inline float bf16_to_float(bf16 x) { return emu::bfloat16_to_float(x); }
inline std::uint16_t bf16_bits(bf16 x) { return x.bits; }
inline bf16 bf16_from_bits(std::uint16_t b) { return bf16{b}; }
#endif

// Two bf16 in one 32-bit register as the hardware orders them: `first` (the lower column or k index)
// in bits 0-15, `second` in bits 16-31, which is also their order in memory on a little-endian load.
__device__ __forceinline__ std::uint32_t pack_bf16x2(bf16 first, bf16 second) {
    return static_cast<std::uint32_t>(bf16_bits(first)) | static_cast<std::uint32_t>(bf16_bits(second)) << 16;
}

// max(x, 0) rounded to bf16 in the conversion itself (cvt.rn.relu): a negative result becomes +0, a
// NaN the canonical NaN 0x7fff (so a NaN still propagates, as PyTorch's relu lets it). One
// instruction for a pair, where an fp32 compare and select per element and the conversion would take
// five: every bf16 ReLU of the forward (the normalising pass, the residual add, and the maps that
// fuse BN + ReLU into a convolution's operand or the max pool) goes through these, so a fused ReLU
// stays bit for bit the stored one. The pair: `low` at the lower address (bits 0-15); cvt packs its
// first source operand into the upper half.
__device__ __forceinline__ std::uint32_t pack_floats_bf16x2_relu(float low, float high) {
#ifdef __CUDACC__
    std::uint32_t d;
    asm("cvt.rn.relu.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(high), "f"(low));
    return d;
#else
    return pack_bf16x2(emu::bfloat16_relu_from_float(low), emu::bfloat16_relu_from_float(high));
#endif
}

__device__ __forceinline__ bf16 bf16_from_float_relu(float x) {
#ifdef __CUDACC__
    std::uint16_t d;
    asm("cvt.rn.relu.bf16.f32 %0, %1;" : "=h"(d) : "f"(x));
    return bf16_from_bits(d);
#else
    return emu::bfloat16_relu_from_float(x);
#endif
}

// ---- mma ----------------------------------------------------------------------------------------------
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = a b + c over the warp (all 32 lanes must
// call it together, converged). `d` may be `c` (accumulate in place).
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const std::uint32_t a[4], const std::uint32_t b[2],
                                                  const float c[4]) {
#ifdef __CUDACC__
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#else
    emu::MmaLane lane;
    for (int i = 0; i < 4; ++i) lane.a[i] = a[i];
    for (int i = 0; i < 2; ++i) lane.b[i] = b[i];
    for (int i = 0; i < 4; ++i) lane.c[i] = c[i];
    emu::warp_mma_m16n8k16_bf16(&lane);
    for (int i = 0; i < 4; ++i) d[i] = lane.d[i];
#endif
}

// ---- ldmatrix -------------------------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16: `row` is this lane's row address in shared
// memory (16-byte aligned; used by lanes 0 .. 8 * matrices - 1); r[m] receives this lane's pair of
// matrix m. The "memory" clobber keeps the compiler from moving shared-memory stores across it.
#ifdef __CUDACC__
__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
#define RESNET_LDMATRIX_ASM(shape, outputs, ...) \
    asm volatile("ldmatrix.sync.aligned.m8n8" shape ".shared.b16 " outputs ";\n" : __VA_ARGS__ : "memory")
#endif

template <int Matrices, bool Trans>
__device__ __forceinline__ void ldmatrix(std::uint32_t r[Matrices], const void* row) {
    static_assert(Matrices == 1 || Matrices == 2 || Matrices == 4, "ldmatrix loads 1, 2 or 4 matrices");
#ifdef __CUDACC__
    const std::uint32_t s = shared_address(row);
    if constexpr (Matrices == 1 && !Trans) {
        RESNET_LDMATRIX_ASM(".x1", "{%0}, [%1]", "=r"(r[0]) : "r"(s));
    } else if constexpr (Matrices == 1) {
        RESNET_LDMATRIX_ASM(".x1.trans", "{%0}, [%1]", "=r"(r[0]) : "r"(s));
    } else if constexpr (Matrices == 2 && !Trans) {
        RESNET_LDMATRIX_ASM(".x2", "{%0, %1}, [%2]", "=r"(r[0]), "=r"(r[1]) : "r"(s));
    } else if constexpr (Matrices == 2) {
        RESNET_LDMATRIX_ASM(".x2.trans", "{%0, %1}, [%2]", "=r"(r[0]), "=r"(r[1]) : "r"(s));
    } else if constexpr (!Trans) {
        RESNET_LDMATRIX_ASM(".x4", "{%0, %1, %2, %3}, [%4]", "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
    } else {
        RESNET_LDMATRIX_ASM(".x4.trans", "{%0, %1, %2, %3}, [%4]", "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                            : "r"(s));
    }
#else
    emu::LdmatrixLane lane;
    lane.row = row;
    emu::warp_ldmatrix(&lane, Matrices, Trans);
    for (int m = 0; m < Matrices; ++m) r[m] = lane.r[m];
#endif
}

__device__ __forceinline__ void ldmatrix_x1(std::uint32_t r[1], const void* row) { ldmatrix<1, false>(r, row); }
__device__ __forceinline__ void ldmatrix_x2(std::uint32_t r[2], const void* row) { ldmatrix<2, false>(r, row); }
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t r[4], const void* row) { ldmatrix<4, false>(r, row); }
__device__ __forceinline__ void ldmatrix_x1_trans(std::uint32_t r[1], const void* row) { ldmatrix<1, true>(r, row); }
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t r[2], const void* row) { ldmatrix<2, true>(r, row); }
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t r[4], const void* row) { ldmatrix<4, true>(r, row); }

// ---- cp.async --------------------------------------------------------------------------------------------
// cp.async.cg.shared.global [smem_dst], [gmem_src], 16, src_bytes: copies src_bytes (0..16) and fills
// the rest of the 16 bytes with zeros (src_bytes = 0 writes 16 zeros, a convolution's padding; keep
// gmem_src a valid address anyway). Both addresses 16-byte aligned. The data may be read only after a
// wait that retires its group, and by other threads only after that wait and a barrier.
__device__ __forceinline__ void cp_async_16_cg(void* smem_dst, const void* gmem_src, int src_bytes) {
#ifdef __CUDACC__
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src),
                 "r"(src_bytes)
                 : "memory");
#else
    emu::compiler_fence();
    emu::cp_async_16(smem_dst, gmem_src, src_bytes);
    emu::compiler_fence();
#endif
}

// Closes the group of copies issued since the last commit (an empty group if none).
__device__ __forceinline__ void cp_async_commit_group() {
#ifdef __CUDACC__
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
    emu::compiler_fence();
    emu::cp_async_commit();
    emu::compiler_fence();
#endif
}

// Waits until at most N of this thread's committed groups are pending (the N most recent).
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
    static_assert(N >= 0, "cp.async.wait_group takes a count of pending groups");
#ifdef __CUDACC__
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
    emu::compiler_fence();
    emu::cp_async_wait(N);
    emu::compiler_fence();
#endif
}

// Waits for every copy this thread issued, committed or not.
__device__ __forceinline__ void cp_async_wait_all() {
#ifdef __CUDACC__
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#else
    emu::compiler_fence();
    emu::cp_async_wait_all();
    emu::compiler_fence();
#endif
}

#endif
