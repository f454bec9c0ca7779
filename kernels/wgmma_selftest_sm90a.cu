// wgmma_selftest_sm90a.cu: kernels that exercise wgmma.cuh (tests/wgmma.rs); no model uses them. The
// `_sm90a` suffix: nvcc builds this file for sm_90a only (wgmma exists nowhere else); the emulator
// builds it like every other .cu.
//
// Operands, K = 32 (two k16 steps): a[64W][32] row-major (A, W = warpgroups = blockDim.x / 128),
// bt[N][32] row-major (B transposed: bt[n][k] = B[k][n], so both are "K-major"), c and d [64W][N]
// row-major f32, all bf16 as raw bits. Dynamic shared memory: A's tile at offset 0, B's at 8192 W
// (both 1024-byte multiples; launch with 8192 W + 128 N bytes). Each tile stores row r's 16-byte k
// chunk kc (k = 8kc .. 8kc+7, kc = 0..3) in the canonical K-major layout of `swizzle` (the
// descriptor's code: 0 none, 1 = 128-byte, 2 = 64-byte, 3 = 32-byte), the swizzle written as a
// row/chunk XOR (swizzled_offset below) as kernels do, not as the hardware's address-bit rule:
//   none:  core matrices of 8 rows x 16 bytes; chunk (r, kc) at 512 (r / 8) + 128 kc + 16 (r % 8):
//          LBO = 128, SBO = 512; k step s starts at + 256 s.
//   32 B:  two regions of rows x 32 bytes (k chunks 0-1, then 2-3): chunk (r, kc) at 32 rows (kc / 2)
//          + 32 r + 16 ((kc % 2) ^ ((r / 4) % 2)): SBO = 256; k step s starts at + 32 rows s.
//   64 B:  rows of 64 bytes: chunk (r, kc) at 64 r + 16 (kc ^ ((r / 2) % 4)) (conv_tc.cuh's tc_swizzle
//          for 4-chunk rows): SBO = 512; k step s starts at + 32 s.
//   128 B: rows of 128 bytes (half used): chunk (r, kc) at 128 r + 16 (kc ^ (r % 8)): SBO = 1024; k
//          step s starts at + 32 s.
//
// MN-major ("transposed", imm-trans 1) operands: the source is the operand's transpose, at[32][64W]
// (A as k rows of m) or b[32][N] (B as k rows of n). A tile of R MN elements (R = 64W, or N) by 32 k
// holds the 16-byte chunk (k row k, MN chunk c: elements 8c .. 8c+7) in the canonical MN-major
// layout of `swizzle` (wgmma.cuh), again written as a row/chunk XOR (mn_swizzled_offset):
//   128 B: panels of 64 MN elements, panel p at 4096 p (32 k rows of 128 bytes); chunk (k, c) at
//          4096 (c / 8) + 128 k + 16 ((c % 8) ^ (k % 8)): LBO = 4096 (panel stride), SBO = 1024 (8 k
//          rows); k step s starts at + 2048 s (wgmma_mn_major_descriptor).
//   64 B:  panels of 32 at 2048 p; chunk at 2048 (c / 4) + 64 k + 16 ((c % 4) ^ ((k / 2) % 4)):
//          LBO = 2048, SBO = 512; k step s at + 1024 s.
//   32 B:  panels of 16 at 1024 p; chunk at 1024 (c / 2) + 32 k + 16 ((c % 2) ^ ((k / 4) % 2)):
//          LBO = 1024, SBO = 256; k step s at + 512 s.
//   none:  core matrices of 8 k x 16 bytes; chunk at 512 c + 16 k: LBO = 128 (k 0-7 to 8-15), SBO =
//          512 (one MN chunk to the next); k step s at + 256 s.
//   In every mode the operand starting at MN element r0 (a multiple of 64) starts 64 r0 bytes in.
//
// Kernels (grid (1, 1, 1)):
//   wgmma_selftest_gemm_n{64,128,256}(a, bt, c, d, swizzle, window): block (128 W, 1, 1).
//       D = A B + C: cp.async of both tiles, cp.async.wait_group 0, fence.proxy.async, __syncthreads,
//       C into the accumulators by the D fragment ownership (wgmma.cuh), wgmma.fence, two chained
//       wgmma m64nNk16 (k steps 0 and 1, warpgroup q using A rows 64q ..) in one commit group,
//       wait_group 0, D stored by the fragment ownership. window[0] = the shared-window address of
//       the dynamic shared memory (a multiple of 1024 is what the swizzled layouts assume).
//   wgmma_selftest_gemm_n{64,128,256}_{a_mn,b_mn,ab_mn}(a, b, c, d, swizzle, window): the same with A,
//       B or both MN-major (wgmma imm-trans-a / imm-trans-b 1): `a` is at[32][64W] when A is MN-major,
//       `b` is b[32][N] when B is (else a[64W][32], bt[N][32] as above).
//   wgmma_selftest_variant_<v>(a, bt, d, mid), v = 0..13 but 6: W = 1, N = 64, 64-byte swizzle, C = 0;
//       block (128, 1, 1) unless stated; d = A B when the kernel is correct. One kernel per variant
//       (a template argument, not a run-time switch: wgmmas on paths that branch on a run-time value
//       make ptxas serialise them, which build.rs rejects). The variants:
//       0: correct, as the gemm kernels;
//       1: (wrong) d is stored before wgmma.wait_group (then the wait);
//       2: (wrong) thread 0 flips a bit of the A tile after the commit, before the wait;
//       3: (wrong) no fence.proxy.async between the cp.async and the wgmmas;
//       4: (wrong) no wgmma.fence before the first wgmma;
//       5: (wrong) warp 3 returns before the wgmmas: only 3 warps of the warpgroup execute them;
//       6: unused (see wgmma_selftest_static_operand);
//       7: correct, two groups: wgmma k step 0, commit, wgmma k step 1 (chained on the in-flight
//          accumulators), commit, wait_group 1, mid[thread] = d[0] (still in flight: NaN in the
//          emulator, a race on a GPU), wait_group 0.
//       8: correct, the proxy fence on the reading side: each thread executes fence.proxy.async after
//          the __syncthreads instead of before it (the fence lies on the path from every cp.async
//          write to the wgmma either way);
//       9: (wrong) the kernel returns after the commit, with no wait_group;
//      10: (wrong) after wait_group 0 a third wgmma (k step 0 again) accumulates into d without a new
//          wgmma.fence (the kernel may have accessed d since the wait), then commit and wait 0.
//      11: (wrong) after the fence and barrier each thread rewrites one 16-byte chunk of the A tile
//          in place with ordinary stores (the same values, as conv_tc_bn_input.cuh rewrites staged
//          operands), then a __syncthreads and the wgmmas with no fence.proxy.async after the stores.
//      12: correct, a block of 160 threads whose fifth warp leaves once the tiles are staged;
//      13: (wrong) variant 0 in a block of 160 threads: the fifth warp executes the warpgroup
//          instructions too (compiled for 160, so that the emulator's error is the wgmma's rather
//          than the launch's).
//   wgmma_selftest_mn_misaligned(d): (wrong) block (128, 1, 1), 8192 bytes of dynamic shared memory:
//       an m64n64k16 with both operands MN-major, 128-byte swizzle, B's start 16 bytes into a row of
//       its atom (which the emulator rejects; the shared memory is never written: the launch must
//       fail before the product).
//   wgmma_selftest_static_operand(out): (wrong) block (128, 1, 1), no dynamic shared memory:
//       out[thread] = a descriptor of a static __shared__ array (the emulator maps only dynamic shared
//       memory into the shared window). Kept apart so that the variant kernels have no static shared
//       memory, which would move their dynamic shared memory in the window on a GPU.
#include "wgmma.cuh"

namespace {

constexpr int kK = 32;  // bf16 per row of a and bt: 4 chunks of 16 bytes

// Bytes from the tile's start to the 16-byte chunk kc (0..3) of row r, layout above.
__device__ __forceinline__ int swizzled_offset(int swizzle, int rows, int r, int kc) {
    switch (swizzle) {
    case 1: return 128 * r + 16 * (kc ^ (r % 8));
    case 2: return 64 * r + 16 * (kc ^ ((r / 2) % 4));
    case 3: return 32 * rows * (kc / 2) + 32 * r + 16 * ((kc % 2) ^ ((r / 4) % 2));
    default: return 512 * (r / 8) + 128 * kc + 16 * (r % 8);
    }
}

// Descriptor of the 64- or N-row operand slice that starts at row r0, k step s (0, 1).
__device__ __forceinline__ std::uint64_t operand_descriptor(const unsigned char* tile, int swizzle, int rows, int r0,
                                                            int s) {
    switch (swizzle) {
    case 1: return wgmma_descriptor(tile + 128 * r0 + 32 * s, 16, 1024, WgmmaSwizzle::B128);
    case 2: return wgmma_descriptor(tile + 64 * r0 + 32 * s, 16, 512, WgmmaSwizzle::B64);
    case 3: return wgmma_descriptor(tile + 32 * rows * s + 32 * r0, 16, 256, WgmmaSwizzle::B32);
    default: return wgmma_descriptor(tile + 512 * (r0 / 8) + 256 * s, 128, 512, WgmmaSwizzle::None);
    }
}

// Copies the rows x 32 bf16 matrix `src` into `tile` by the layout of `swizzle` (one 16-byte cp.async
// per chunk, spread over the block), without waiting.
__device__ __forceinline__ void stage(unsigned char* tile, const unsigned short* src, int rows, int swizzle) {
    for (int i = threadIdx.x; i < rows * 4; i += blockDim.x) {
        const int r = i / 4, kc = i % 4;
        cp_async_16_cg(tile + swizzled_offset(swizzle, rows, r, kc), src + r * kK + 8 * kc, 16);
    }
}

// Bytes from an MN-major tile's start to the chunk of k row k (0..31) holding MN elements 8c .. 8c+7.
__device__ __forceinline__ int mn_swizzled_offset(int swizzle, int k, int c) {
    switch (swizzle) {
    case 1: return 4096 * (c / 8) + 128 * k + 16 * ((c % 8) ^ (k % 8));
    case 2: return 2048 * (c / 4) + 64 * k + 16 * ((c % 4) ^ ((k / 2) % 4));
    case 3: return 1024 * (c / 2) + 32 * k + 16 * ((c % 2) ^ ((k / 4) % 2));
    default: return 512 * c + 16 * k;
    }
}

// Descriptor of the MN-major operand slice that starts at MN element r0 (a multiple of 64), k step s.
__device__ __forceinline__ std::uint64_t mn_operand_descriptor(const unsigned char* tile, int swizzle, int r0,
                                                               int s) {
    const unsigned char* start = tile + 64 * r0;
    switch (swizzle) {
    case 1: return wgmma_mn_major_descriptor(start + 2048 * s, 4096);
    case 2: return wgmma_descriptor(start + 1024 * s, 2048, 512, WgmmaSwizzle::B64);
    case 3: return wgmma_descriptor(start + 512 * s, 1024, 256, WgmmaSwizzle::B32);
    default: return wgmma_descriptor(start + 256 * s, 128, 512, WgmmaSwizzle::None);
    }
}

// Copies the 32 x mn bf16 matrix `src` (k rows of mn elements) into `tile` by the MN-major layout of
// `swizzle`, one 16-byte cp.async per chunk, without waiting.
__device__ __forceinline__ void stage_mn(unsigned char* tile, const unsigned short* src, int mn, int swizzle) {
    const int chunks = mn / 8;
    for (int i = threadIdx.x; i < kK * chunks; i += blockDim.x) {
        const int k = i / chunks, c = i % chunks;
        cp_async_16_cg(tile + mn_swizzled_offset(swizzle, k, c), src + k * mn + 8 * c, 16);
    }
}

// The D element (row, column) of this thread's accumulator i (warpgroup-relative row).
__device__ __forceinline__ void fragment_position(int i, int* row, int* col) {
    const int t = threadIdx.x % 128, w = t / 32, g = (t % 32) / 4, q = t % 4;
    *row = 16 * w + g + 8 * ((i % 4) / 2);
    *col = 8 * (i / 4) + 2 * q + i % 2;
}

template <int N, bool A_MN, bool B_MN>
__device__ __forceinline__ void gemm(const unsigned short* a, const unsigned short* b, const float* c, float* d,
                                     int swizzle, unsigned* window) {
    grid_dependency_sync();
    const int warpgroups = static_cast<int>(blockDim.x) / 128, q = static_cast<int>(threadIdx.x) / 128;
    unsigned char* smem = dynamic_shared_memory<unsigned char>();
    unsigned char* a_tile = smem;
    unsigned char* b_tile = smem + 8192 * warpgroups;
    if (threadIdx.x == 0) window[0] = shared_window_address(smem);
    if (A_MN) {
        stage_mn(a_tile, a, 64 * warpgroups, swizzle);
    } else {
        stage(a_tile, a, 64 * warpgroups, swizzle);
    }
    if (B_MN) {
        stage_mn(b_tile, b, N, swizzle);
    } else {
        stage(b_tile, b, N, swizzle);
    }
    cp_async_commit_group();
    cp_async_wait_group<0>();
    fence_proxy_async_shared();  // this thread's cp.async writes (generic proxy) before wgmma reads (async)
    __syncthreads();             // and every thread's

    float acc[N / 2];
    for (int i = 0; i < N / 2; ++i) {
        int row, col;
        fragment_position(i, &row, &col);
        acc[i] = c[(64 * q + row) * N + col];
    }
    // Descriptors first: between wgmma.fence and the wgmmas, code that touches registers (here the
    // branches on `swizzle`) makes ptxas insert another fence (its info C7519).
    std::uint64_t a_desc[2], b_desc[2];
    for (int s = 0; s < 2; ++s) {
        a_desc[s] = A_MN ? mn_operand_descriptor(a_tile, swizzle, 64 * q, s)
                         : operand_descriptor(a_tile, swizzle, 64 * warpgroups, 64 * q, s);
        b_desc[s] = B_MN ? mn_operand_descriptor(b_tile, swizzle, 0, s) : operand_descriptor(b_tile, swizzle, N, 0, s);
    }
    wgmma_fence_operand<N>(acc);
    wgmma_fence();
    wgmma_m64k16_bf16<N, A_MN, B_MN>(acc, a_desc[0], b_desc[0]);
    wgmma_m64k16_bf16<N, A_MN, B_MN>(acc, a_desc[1], b_desc[1]);
    wgmma_commit_group();
    wgmma_wait_group<0>();
    wgmma_fence_operand<N>(acc);
    for (int i = 0; i < N / 2; ++i) {
        int row, col;
        fragment_position(i, &row, &col);
        d[(64 * q + row) * N + col] = acc[i];
    }
}

}  // namespace

// wgmma_selftest_gemm_n<N><suffix>: A (a_mn) and B (b_mn) MN-major or K-major.
#define RESNET_WGMMA_SELFTEST_GEMM(name, n, a_mn, b_mn)                                                        \
    extern "C" __global__ void __launch_bounds__(256)                                                           \
        name(const unsigned short* a, const unsigned short* b, const float* c, float* d, int swizzle,          \
             unsigned* window) {                                                                                \
        gemm<n, a_mn, b_mn>(a, b, c, d, swizzle, window);                                                       \
    }                                                                                                           \
    EMU_REGISTER(name);

RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n64, 64, false, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n128, 128, false, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n256, 256, false, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n64_a_mn, 64, true, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n128_a_mn, 128, true, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n256_a_mn, 256, true, false)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n64_b_mn, 64, false, true)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n128_b_mn, 128, false, true)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n256_b_mn, 256, false, true)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n64_ab_mn, 64, true, true)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n128_ab_mn, 128, true, true)
RESNET_WGMMA_SELFTEST_GEMM(wgmma_selftest_gemm_n256_ab_mn, 256, true, true)
#undef RESNET_WGMMA_SELFTEST_GEMM

namespace {

// d[row][col] = this thread's accumulators of a one-warpgroup m64nN tile.
template <int N>
__device__ __forceinline__ void store_d(float* d, const float* acc) {
    for (int i = 0; i < N / 2; ++i) {
        int row, col;
        fragment_position(i, &row, &col);
        d[row * N + col] = acc[i];
    }
}

template <int variant>
__device__ __forceinline__ void variant_body(const unsigned short* a, const unsigned short* bt, float* d, float* mid) {
    grid_dependency_sync();
    constexpr int N = 64, kSwizzle = 2;
    unsigned char* a_tile = dynamic_shared_memory<unsigned char>();
    unsigned char* b_tile = a_tile + 8192;
    stage(a_tile, a, 64, kSwizzle);
    stage(b_tile, bt, N, kSwizzle);
    cp_async_commit_group();
    cp_async_wait_group<0>();
    if constexpr (variant != 3 && variant != 8) fence_proxy_async_shared();
    __syncthreads();
    if constexpr (variant == 8) fence_proxy_async_shared();
    if constexpr (variant == 5) {
        if (threadIdx.x / 32 == 3) return;
    }
    // 12: a block of 160 threads whose fifth warp leaves once the tiles are staged, as conv_wgmma.cuh's
    // producer warp does: warpgroup 0 multiplies in a block that is not whole warpgroups, and the
    // barrier before the store waits for its threads alone (the exited warp does not hold it).
    if constexpr (variant == 12) {
        if (threadIdx.x >= 128) return;
    }
    if constexpr (variant == 11) {
        uint4* chunk = reinterpret_cast<uint4*>(a_tile) + threadIdx.x;
        const uint4 v = *chunk;
        *chunk = v;
#if !defined(__CUDACC__)
        emu::note_generic_shared_store(chunk);
#endif
        __syncthreads();
    }

    const std::uint64_t a_desc[2] = {operand_descriptor(a_tile, kSwizzle, 64, 0, 0),
                                     operand_descriptor(a_tile, kSwizzle, 64, 0, 1)};
    const std::uint64_t b_desc[2] = {operand_descriptor(b_tile, kSwizzle, N, 0, 0),
                                     operand_descriptor(b_tile, kSwizzle, N, 0, 1)};
    float acc[N / 2];
    for (int i = 0; i < N / 2; ++i) acc[i] = 0.0f;
    wgmma_fence_operand<N>(acc);
    if constexpr (variant != 4) wgmma_fence();
    wgmma_m64k16_bf16<N>(acc, a_desc[0], b_desc[0]);
    if constexpr (variant == 7) {
        wgmma_commit_group();
        wgmma_m64k16_bf16<N>(acc, a_desc[1], b_desc[1]);
        wgmma_commit_group();
        wgmma_wait_group<1>();
        wgmma_fence_operand<N>(acc);
        mid[threadIdx.x] = acc[0];
    } else {
        wgmma_m64k16_bf16<N>(acc, a_desc[1], b_desc[1]);
        wgmma_commit_group();
    }
    if constexpr (variant == 2) {
        if (threadIdx.x == 0) a_tile[0] ^= 0x80;  // flips the lowest exponent bit of A[0][0]
    }
    if constexpr (variant == 9) {
        return;  // with the group in flight
    } else if constexpr (variant == 1) {
        store_d<N>(d, acc);  // before the wait
        wgmma_wait_group<0>();
        wgmma_fence_operand<N>(acc);
    } else {
        wgmma_wait_group<0>();
        wgmma_fence_operand<N>(acc);
        if constexpr (variant == 10) {
            wgmma_m64k16_bf16<N>(acc, a_desc[0], b_desc[0]);
            wgmma_commit_group();
            wgmma_wait_group<0>();
            wgmma_fence_operand<N>(acc);
        }
        if constexpr (variant == 12) __syncthreads();
        store_d<N>(d, acc);
    }
}

}  // namespace

#define RESNET_WGMMA_SELFTEST_VARIANT(v)                                                                         \
    extern "C" __global__ void __launch_bounds__(128)                                                            \
        wgmma_selftest_variant_##v(const unsigned short* a, const unsigned short* bt, float* d, float* mid) {    \
        variant_body<v>(a, bt, d, mid);                                                                          \
    }                                                                                                            \
    EMU_REGISTER(wgmma_selftest_variant_##v);

RESNET_WGMMA_SELFTEST_VARIANT(0)
RESNET_WGMMA_SELFTEST_VARIANT(1)
RESNET_WGMMA_SELFTEST_VARIANT(2)
RESNET_WGMMA_SELFTEST_VARIANT(3)
RESNET_WGMMA_SELFTEST_VARIANT(4)
RESNET_WGMMA_SELFTEST_VARIANT(5)
RESNET_WGMMA_SELFTEST_VARIANT(7)
RESNET_WGMMA_SELFTEST_VARIANT(8)
RESNET_WGMMA_SELFTEST_VARIANT(9)
RESNET_WGMMA_SELFTEST_VARIANT(10)
RESNET_WGMMA_SELFTEST_VARIANT(11)

// (Variant 12 has a fifth warp.)
extern "C" __global__ void __launch_bounds__(160)
    wgmma_selftest_variant_12(const unsigned short* a, const unsigned short* bt, float* d, float* mid) {
    variant_body<12>(a, bt, d, mid);
}
EMU_REGISTER(wgmma_selftest_variant_12);

extern "C" __global__ void __launch_bounds__(160)
    wgmma_selftest_variant_13(const unsigned short* a, const unsigned short* bt, float* d, float* mid) {
    variant_body<0>(a, bt, d, mid);
}
EMU_REGISTER(wgmma_selftest_variant_13);

extern "C" __global__ void __launch_bounds__(128) wgmma_selftest_mn_misaligned(float* d) {
    grid_dependency_sync();
    constexpr int N = 64;
    unsigned char* smem = dynamic_shared_memory<unsigned char>();
    const std::uint64_t a_desc = wgmma_mn_major_descriptor(smem, 4096);
    const std::uint64_t b_desc = wgmma_mn_major_descriptor(smem + 4096 + 16, 4096);
    float acc[N / 2];
    for (int i = 0; i < N / 2; ++i) acc[i] = 0.0f;
    wgmma_fence_operand<N>(acc);
    wgmma_fence();
    wgmma_m64k16_bf16<N, true, true>(acc, a_desc, b_desc);
    wgmma_commit_group();
    wgmma_wait_group<0>();
    wgmma_fence_operand<N>(acc);
    for (int i = 0; i < N / 2; ++i) d[threadIdx.x * (N / 2) + i] = acc[i];
}
EMU_REGISTER(wgmma_selftest_mn_misaligned);

extern "C" __global__ void wgmma_selftest_static_operand(unsigned long long* out) {
    grid_dependency_sync();
    __shared__ __align__(1024) unsigned char tile[64 * 64];
    out[threadIdx.x] = wgmma_descriptor(tile, 16, 512, WgmmaSwizzle::B64);
}
EMU_REGISTER(wgmma_selftest_static_operand);

// Register hand-over (setmaxnreg) and exit_thread in a block of three warpgroups, as conv_wgmma.cuh's
// 128x256 tiles launch with their producer: warpgroup 2 gives registers back and leaves from inside a
// call; warpgroups 0 and 1 take more, meet at a __syncthreads the exited warpgroup must not hold, and
// write. out[t] = 3 t + 1 for t < 256; for t >= 256, -1 - t, written before the exit (the store after
// the call must never run). Variants (the wrong ones, for the emulator's checks, exist only there: on
// a GPU they would hang or be undefined): 0 correct, 24 and 240 registers (128 x 24 + 256 x 240 =
// 64512); 1 the consumers ask 248 (66560 in all); 2 warp 1 asks 232 where the rest of its warpgroup
// asks 240; 3 an inc to 232 after one to 240.
namespace {

__device__ __forceinline__ void mark_and_exit(int* out) {
    out[threadIdx.x] = -1 - static_cast<int>(threadIdx.x);
    exit_thread();
}

template <int VARIANT>
__device__ __forceinline__ void register_handover(int* out) {
    grid_dependency_sync();
    if (threadIdx.x >= 256) {
        setmaxnreg_dec<24>();
        mark_and_exit(out);
        out[threadIdx.x] = 7;  // (never runs)
    }
    if constexpr (VARIANT == 1) {
        setmaxnreg_inc<248>();
    } else if constexpr (VARIANT == 2) {
        if (threadIdx.x / 32 == 1) {
            setmaxnreg_inc<232>();
        } else {
            setmaxnreg_inc<240>();
        }
    } else {
        setmaxnreg_inc<240>();
    }
    if constexpr (VARIANT == 3) setmaxnreg_inc<232>();
    __syncthreads();
    out[threadIdx.x] = 3 * static_cast<int>(threadIdx.x) + 1;
}

}  // namespace

#define RESNET_WGMMA_REGISTER_HANDOVER(v)                                                                        \
    extern "C" __global__ void __launch_bounds__(384, 1) wgmma_selftest_register_handover_##v(int* out) {       \
        register_handover<v>(out);                                                                               \
    }                                                                                                            \
    EMU_REGISTER(wgmma_selftest_register_handover_##v);

RESNET_WGMMA_REGISTER_HANDOVER(0)
#if !defined(__CUDACC__)
RESNET_WGMMA_REGISTER_HANDOVER(1)
RESNET_WGMMA_REGISTER_HANDOVER(2)
RESNET_WGMMA_REGISTER_HANDOVER(3)
#endif
