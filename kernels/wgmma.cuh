// wgmma.cuh: Hopper's warpgroup matrix multiply-accumulate (sm_90a only): wgmma.mma_async with both
// operands in shared memory, its fences, commit and wait groups, and the shared-memory matrix
// descriptor it reads the operands through.
//
// Under nvcc each function is one PTX instruction (inline asm; a file that includes this header must
// be compiled for sm_90a: `-gencode arch=compute_90a,code=sm_90a`). In the host emulator the same
// calls go to emu_wgmma.h (runtime/warpgroup_matrix.cpp), which implements them with the PTX ISA's
// semantics and fails a launch that breaks its rules (tests/wgmma.rs). Since the emulator encodes
// the same reading of the ISA as these kernels, that reading was checked on its own (2026-12-05)
// against CUTLASS's CuTe (the GmmaDescriptor bit fields, make_gmma_desc's LBO/SBO for each major-ness
// and swizzle, CLayout_64xN, the SS bf16 instruction's operand order and immediates) and the PTX
// ISA's descriptor and canonical-layout sections: no difference found. Only a GPU run settles it.
//
// The operation (PTX ISA 9.7.15.5.2, wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16):
//   D[64][N] += A[64][16] B[16][N], fp32 accumulators, over a *warpgroup*: the 4 consecutive warps
//   4q .. 4q+3 of the block (128 threads; every thread executes every wgmma instruction, with the
//   same descriptors). A and B are read from shared memory through descriptors, each either
//   "K-major" (imm-trans 0: A as 64 rows of 16 k values, B as N rows, one per output column, of 16 k
//   values) or "MN-major" (imm-trans 1, "transposed": A as 16 k rows of 64 m values, B as 16 k rows
//   of N n values), chosen per operand by wgmma_m64k16_bf16's template arguments.
// D fragments (9.7.15.5.1.1.1, "Matrix Fragments for wgmma.mma_async.m64nNk16", figure for D): thread
//   with warp w (0..3 within the warpgroup), lane l, g = l / 4, t = l % 4 owns N/2 floats:
//     d[4j + 0], d[4j + 1] = D[16w + g][8j + 2t], D[16w + g][8j + 2t + 1]
//     d[4j + 2], d[4j + 3] = D[16w + g + 8][8j + 2t], D[16w + g + 8][8j + 2t + 1]      (j < N / 8)
//   (the ISA gives this as a figure; CUTLASS's CLayout_64xN encodes the same map.)
//
// Shared-memory layouts (9.7.15.5.1.2, "Shared Memory Matrix Layout", and 9.7.15.5.1.2.1.3,
// "Canonical Layouts"; bf16: a "chunk" is 16 bytes = 8 elements, consecutive along the major
// dimension).
// K-major (a chunk holds 8 consecutive k of one row; rows are m for A, n for B):
//   no swizzle: "core matrices" of 8 rows x 16 bytes (128 contiguous bytes, row r at 16 r). The chunk
//     (row r, k chunk c in {0, 1}) is at start + (r / 8) SBO + c LBO + 16 (r % 8).
//   32/64/128-byte swizzle: rows of S = 32/64/128 bytes, 8 rows (an "atom" of 8 x S bytes) stored
//     contiguously; the chunk (r, c) is at start + (r / 8) SBO + S (r % 8) + 16 c, and then the
//     hardware XORs the *shared-window address* bits [4, 4 + b) with bits [7, 7 + b), b = 1, 2, 3 for
//     S = 32, 64, 128 (CuTe's Swizzle<b, 4, 3>). LBO is unused ("assumed 1"): a k16 slice (32 bytes)
//     lies in one atom row. To take the second k16 slice of a 64- or 128-byte row, advance the start
//     address by 32 bytes: the XOR is applied to the summed address, so it finds the chunks where a
//     kernel that swizzled by the same rule stored them.
// MN-major (a chunk holds 8 consecutive m (A) or n (B) of one k; the ISA's LBO/SBO tables call the
// 16-byte MN chunks "rows" and the k "columns"):
//   no swizzle ("interleave"): core matrices of 8 k x 16 bytes (k at 16 k); the chunk (k, MN chunk
//     c, elements 8c .. 8c+7) is at start + c SBO + (k / 8) LBO + 16 (k % 8): LBO = bytes from k 0-7
//     to k 8-15, SBO = bytes from one MN chunk to the next.
//   32/64/128-byte swizzle: "panels" of W = S/16 chunks (S/2 MN elements); a panel's k row is S
//     contiguous bytes, 8 k rows (8 x S bytes) one atom; the chunk (k, c) is at
//     start + (c / W) LBO + (k / 8) SBO + S (k % 8) + 16 (c % W), then the same address-bit XOR.
//     LBO = bytes from one panel to the next (the repeat along MN, read only when the operand spans
//     several panels: N > 64 with the 128-byte swizzle), SBO = bytes from k 0-7 to k 8-15. The start
//     is the first chunk of a k row (start % S = 0 once the operand spans a whole row). The second
//     k16 step of a tile starts 16 k rows later: start + 16 S (+ 2048 with the 128-byte swizzle, a
//     1024-byte multiple, so the XOR pattern does not shift).
//   E.g. [k][64] bf16 panels stored row-major (128-byte rows) with chunk c of row k at c ^ (k % 8),
//   panels `panel_stride_bytes` apart, at 1024-byte multiples of the window: the 128-byte MN-major
//   layout with LBO = panel_stride_bytes, SBO = 1024 (wgmma_mn_major_descriptor).
// The XOR acts on absolute address bits (what the descriptor's base-offset field implies: it is 0
// exactly when the pattern starts at a multiple of its repeat, 8 x S = 256, 512, 1024 bytes, and
// this header always writes 0), so it equals a kernel's own row/chunk swizzle when the tile starts
// at such a multiple. E.g. 64-byte rows with chunk c of row r stored at c ^ ((r / 2) % 4)
// (conv_tc.cuh's tc_swizzle) are the 64-byte swizzle for a tile at a multiple of 512. Keep wgmma
// tiles in dynamic shared memory at 1024-byte multiples from its start, in a kernel without static
// shared memory: its start is then 1024-aligned in the window (the emulator puts it at 1024, see
// emu_wgmma.h; tests/wgmma.rs checks the GPU's).
//
// Rules a kernel must follow (the emulator fails a launch that breaks one, except where noted):
//   - every wgmma function is executed by all 128 threads of the warpgroup, with equal arguments
//     (descriptors, N, transposes, wait counts); a block's thread count is a multiple of 128;
//   - wgmma_fence() after the warpgroup's last access to the accumulator registers and before the
//     first wgmma_m64k16_bf16 that uses them; wgmmas of one shape may chain on the same accumulators
//     without a fence in between (the emulator sees no register access, so it demands the fence
//     after kernel start and after each wait_group that wrote the registers);
//   - wgmma_commit_group() and then wgmma_wait_group<N>() retiring the group before the accumulators
//     are read (the emulator shows NaN until then) and before the shared memory a wgmma reads is
//     overwritten; none in flight when the thread returns;
//   - shared memory written through the generic proxy (ordinary stores; cp.async, which is not an
//     async-proxy operation) is ordered before a wgmma's async-proxy reads by
//     fence_proxy_async_shared(), executed by the writer after its writes (after its
//     cp.async.wait_group) or by the reader after the __syncthreads that publishes them; the emulator
//     tracks cp.async writes, and ordinary stores a kernel reports (emu::note_generic_shared_store).
// wgmma_fence_operand(d) around the wgmmas keeps the *compiler* from moving accumulator accesses
// across wgmma_fence and wgmma_wait_group, which name no registers (as CUTLASS does).
#ifndef RESNET_CUDA_WGMMA_CUH
#define RESNET_CUDA_WGMMA_CUH

#include <cstdint>

#include "tensor_core.cuh"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "wgmma.cuh needs sm_90a (-gencode arch=compute_90a,code=sm_90a): wgmma exists only there"
#endif

// The descriptor's swizzle field (bits 62-63).
enum class WgmmaSwizzle : int { None = 0, B128 = 1, B64 = 2, B32 = 3 };

// The address of `smem` in the block's shared-memory window (what the descriptor and ldmatrix take).
__device__ __forceinline__ std::uint32_t shared_window_address(const void* smem) {
#if defined(__CUDACC__)
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
#else
    return emu::shared_window_address(smem);
#endif
}

// 64-bit matrix descriptor (9.7.15.5.1.2.2, "Matrix Descriptor Format"): bits 0-13 start address,
// 16-29 leading dimension byte offset (LBO), 32-45 stride dimension byte offset (SBO), each encoded
// as (x & 0x3FFFF) >> 4; bits 49-51 base offset (0 here); bits 62-63 swizzle mode. Byte offsets must
// be multiples of 16. K-major: SBO = bytes from one group of 8 rows to the next; LBO = bytes from
// the first 16-byte k chunk to the second without swizzle, unused with one (pass 16). MN-major: see
// the layouts above (9.7.15.5.1.2.1.1 "Leading Dimension Byte Offset", 9.7.15.5.1.2.1.2 "Stride
// Dimension Byte Offset"; swizzled: LBO = the MN panel stride, SBO = the 8-k-row stride).
__device__ __forceinline__ std::uint64_t wgmma_descriptor(const void* smem, std::uint32_t leading_byte_offset,
                                                          std::uint32_t stride_byte_offset, WgmmaSwizzle swizzle) {
#if defined(__CUDACC__)
    const std::uint64_t start = shared_window_address(smem);
#else
    const std::uint64_t start = emu::wgmma_checked_start(smem, leading_byte_offset, stride_byte_offset);
#endif
    return ((start & 0x3FFFF) >> 4) | ((static_cast<std::uint64_t>(leading_byte_offset) & 0x3FFFF) >> 4) << 16 |
           ((static_cast<std::uint64_t>(stride_byte_offset) & 0x3FFFF) >> 4) << 32 |
           static_cast<std::uint64_t>(swizzle) << 62;
}

// Descriptor of an MN-major bf16 operand in 128-byte-swizzled panels of 64 MN elements (the example
// in the layouts above): `start` = the operand's first element (k row 0 of panel 0; for the k16 step
// at k offset kk, panel 0 + 128 kk bytes), `panel_stride_bytes` = bytes between consecutive panels
// (LBO; SBO = 8 k rows of 128 bytes). Panels at 1024-byte multiples of the window.
__device__ __forceinline__ std::uint64_t wgmma_mn_major_descriptor(const void* start, std::uint32_t panel_stride_bytes) {
    return wgmma_descriptor(start, panel_stride_bytes, 1024, WgmmaSwizzle::B128);
}

// No instruction: makes `v` opaque to the compiler (an empty asm that may have changed it), so that
// a value computed once stays in its registers instead of being recomputed where it is used.
__device__ __forceinline__ void wgmma_pin(std::uint64_t& v) {
#if defined(__CUDA_ARCH__)
    asm volatile("" : "+l"(v));
#else
    (void)v;
#endif
}

// wgmma.fence.sync.aligned: orders the warpgroup's earlier register accesses before the register
// accesses of the wgmmas that follow (all 128 threads).
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH__)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif !defined(__CUDACC__)
    emu::wgmma_collective(emu::WarpgroupOp::fence, nullptr, 0);
#endif
}

// wgmma.commit_group.sync.aligned: closes the group of wgmmas issued since the last commit (an empty
// group if none).
__device__ __forceinline__ void wgmma_commit_group() {
#if defined(__CUDA_ARCH__)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif !defined(__CUDACC__)
    emu::wgmma_collective(emu::WarpgroupOp::commit, nullptr, 0);
#endif
}

// wgmma.wait_group.sync.aligned N: waits until at most the N most recent committed groups are
// pending; the accumulators of every older group are then written and readable.
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
    static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes a small constant count of pending groups");
#if defined(__CUDA_ARCH__)
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#elif !defined(__CUDACC__)
    emu::wgmma_collective(emu::WarpgroupOp::wait, nullptr, N);
#endif
}

// setmaxnreg.{inc,dec}.sync.aligned.u32 N (sm_90a): the warpgroup's threads' register count becomes N
// (24 to 256, a multiple of 8), taken from (inc: blocking until enough are free) or handed back to the
// block's pool (dec). A kernel launched with R registers a thread can so give a warpgroup that only
// issues copies few and its multiplying warpgroups more: ptxas allocates the code after an inc with
// N registers. All 128 threads of the warpgroup execute it, with the same N.
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
    static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes 24 to 256 registers, a multiple of 8");
#if defined(__CUDA_ARCH__)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#elif !defined(__CUDACC__)
    emu::wgmma_collective(emu::WarpgroupOp::setmaxnreg_inc, nullptr, N);
#endif
}

template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
    static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes 24 to 256 registers, a multiple of 8");
#if defined(__CUDA_ARCH__)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#elif !defined(__CUDACC__)
    emu::wgmma_collective(emu::WarpgroupOp::setmaxnreg_dec, nullptr, N);
#endif
}

// fence.proxy.async.shared::cta: orders this thread's earlier generic-proxy accesses to shared memory
// (ordinary stores, cp.async once waited for) before later async-proxy accesses (wgmma reads).
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(__CUDA_ARCH__)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#elif !defined(__CUDACC__)
    emu::compiler_fence();
    emu::fence_proxy_async_shared();
    emu::compiler_fence();
#endif
}

// ---- wgmma.mma_async -----------------------------------------------------------------------------------
// The N/2 accumulator operands as "+f" constraints, and the template's register list "%0, ..., %(N/2-1)"
// from groups of 8 (N/2 is a multiple of 8 for every N here).
#define RESNET_WG_F2(i) "+f"(d[i]), "+f"(d[(i) + 1])
#define RESNET_WG_F8(i) RESNET_WG_F2(i), RESNET_WG_F2((i) + 2), RESNET_WG_F2((i) + 4), RESNET_WG_F2((i) + 6)
#define RESNET_WG_F32(i) RESNET_WG_F8(i), RESNET_WG_F8((i) + 8), RESNET_WG_F8((i) + 16), RESNET_WG_F8((i) + 24)
#define RESNET_WG_F64(i) RESNET_WG_F32(i), RESNET_WG_F32((i) + 32)
#define RESNET_WG_F128(i) RESNET_WG_F64(i), RESNET_WG_F64((i) + 64)
#define RESNET_WG_R8(a, b, c, d, e, f, g, h) "%" #a ", %" #b ", %" #c ", %" #d ", %" #e ", %" #f ", %" #g ", %" #h
#define RESNET_WG_REGS8 RESNET_WG_R8(0, 1, 2, 3, 4, 5, 6, 7)
#define RESNET_WG_REGS16 RESNET_WG_REGS8 ", " RESNET_WG_R8(8, 9, 10, 11, 12, 13, 14, 15)
#define RESNET_WG_REGS32 \
    RESNET_WG_REGS16 ", " RESNET_WG_R8(16, 17, 18, 19, 20, 21, 22, 23) ", " RESNET_WG_R8(24, 25, 26, 27, 28, 29, 30, 31)
#define RESNET_WG_REGS64                                                                                  \
    RESNET_WG_REGS32 ", " RESNET_WG_R8(32, 33, 34, 35, 36, 37, 38, 39) ", " RESNET_WG_R8(40, 41, 42, 43, 44, 45, \
                                                                                         46, 47) ", "      \
        RESNET_WG_R8(48, 49, 50, 51, 52, 53, 54, 55) ", " RESNET_WG_R8(56, 57, 58, 59, 60, 61, 62, 63)
#define RESNET_WG_REGS128                                                                                     \
    RESNET_WG_REGS64 ", " RESNET_WG_R8(64, 65, 66, 67, 68, 69, 70, 71) ", " RESNET_WG_R8(72, 73, 74, 75, 76, 77,    \
                                                                                         78, 79) ", "         \
        RESNET_WG_R8(80, 81, 82, 83, 84, 85, 86, 87) ", " RESNET_WG_R8(88, 89, 90, 91, 92, 93, 94, 95) ", "         \
        RESNET_WG_R8(96, 97, 98, 99, 100, 101, 102, 103) ", " RESNET_WG_R8(104, 105, 106, 107, 108, 109, 110, 111) \
        ", " RESNET_WG_R8(112, 113, 114, 115, 116, 117, 118, 119) ", " RESNET_WG_R8(120, 121, 122, 123, 124, 125, \
                                                                                   126, 127)
// scale-d 1 (D = A B + D), imm-scale-a/b 1 (no negation), imm-trans-a/b from the template (operands
// a_op, b_op: the descriptors; ta_op, tb_op: the transpose immediates). No "memory" clobber: the
// instruction only starts; its shared-memory reads are ordered by the fences and waits.
#define RESNET_WGMMA_ASM(n, regs, a_op, b_op, ta_op, tb_op, ...)                                         \
    asm volatile("wgmma.mma_async.sync.aligned.m64n" #n "k16.f32.bf16.bf16 {" regs "}, " a_op ", " b_op \
                 ", 1, 1, 1, " ta_op ", " tb_op ";\n"                                                  \
                 : __VA_ARGS__                                                                        \
                 : "l"(a_desc), "l"(b_desc), "n"(A_MN_MAJOR ? 1 : 0), "n"(B_MN_MAJOR ? 1 : 0))

// d: this thread's N/2 accumulators (fragment order above), updated in place; a_desc: A (64 x k16),
// b_desc: B (N x k16), each K-major, or MN-major when A_MN_MAJOR / B_MN_MAJOR (imm-trans-a /
// imm-trans-b = 1). Issues the operation; d may be read only after a wgmma_wait_group that retires a
// group containing it.
template <int N, bool A_MN_MAJOR = false, bool B_MN_MAJOR = false>
__device__ __forceinline__ void wgmma_m64k16_bf16(float* d, std::uint64_t a_desc, std::uint64_t b_desc) {
    static_assert(N == 16 || N == 32 || N == 64 || N == 128 || N == 256, "wgmma m64nNk16 with N in 16, 32, 64, 128, 256");
#if defined(__CUDA_ARCH__)
    if constexpr (N == 16) {
        RESNET_WGMMA_ASM(16, RESNET_WG_REGS8, "%8", "%9", "%10", "%11", RESNET_WG_F8(0));
    } else if constexpr (N == 32) {
        RESNET_WGMMA_ASM(32, RESNET_WG_REGS16, "%16", "%17", "%18", "%19", RESNET_WG_F8(0), RESNET_WG_F8(8));
    } else if constexpr (N == 64) {
        RESNET_WGMMA_ASM(64, RESNET_WG_REGS32, "%32", "%33", "%34", "%35", RESNET_WG_F32(0));
    } else if constexpr (N == 128) {
        RESNET_WGMMA_ASM(128, RESNET_WG_REGS64, "%64", "%65", "%66", "%67", RESNET_WG_F64(0));
    } else {
        RESNET_WGMMA_ASM(256, RESNET_WG_REGS128, "%128", "%129", "%130", "%131", RESNET_WG_F128(0));
    }
#elif !defined(__CUDACC__)
    emu::WgmmaLane lane{d, a_desc, b_desc, N, A_MN_MAJOR, B_MN_MAJOR};
    emu::wgmma_collective(emu::WarpgroupOp::mma_async, &lane, N);
#endif
}

// A compiler-only barrier on the N/2 accumulators (no instruction): their values must be in
// registers here, and no access to them moves across this point. Use it after filling d and before
// wgmma_fence(), and after wgmma_wait_group() before reading d, as CUTLASS does: wgmma_fence and
// wgmma_wait_group name no registers, so without it the compiler may move register reads and
// writes of d across them.
template <int N>
__device__ __forceinline__ void wgmma_fence_operand(float* d) {
#if defined(__CUDA_ARCH__)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) asm volatile("" : "+f"(d[i])::"memory");
#elif !defined(__CUDACC__)
    (void)d;
    emu::compiler_fence();
#endif
}

#undef RESNET_WGMMA_ASM
#undef RESNET_WG_F2
#undef RESNET_WG_F8
#undef RESNET_WG_F32
#undef RESNET_WG_F64
#undef RESNET_WG_F128
#undef RESNET_WG_R8
#undef RESNET_WG_REGS8
#undef RESNET_WG_REGS16
#undef RESNET_WG_REGS32
#undef RESNET_WG_REGS64
#undef RESNET_WG_REGS128

#endif
