// conv_tc.cuh: the shared machinery of the bf16 tensor-core implicit-GEMM convolutions
// (conv_tc_forward.cu, conv_tc_backward_data.cu, conv_tc_backward_filter.cu).
//
// Every pass is one GEMM  C[M, Ncol] = sum_{kr < Kred} A[M, kr] B[kr, Ncol]  (bf16 operands, fp32
// accumulators) whose operands are gathered from NHWC activations and KRSC weights while they are
// staged to shared memory; nothing im2col-like is ever built in global memory.
//
// Structure (three replaceable layers):
//   1. Loaders (per pass, in the .cu files): fill one pipeline stage's A or B tile for the reduction
//      slice starting at k0, either with 16-byte cp.async chunks (8 bf16 contiguous in memory; the
//      zero-fill form supplies padding and out-of-range rows) or, in the general fallback, with
//      element-wise gathers stored to shared memory (any C, K, alignment).
//   2. The main loop (tc_mainloop here): a STAGES-deep cp.async pipeline over BK = 32 deep slices;
//      per slice, ldmatrix fragments from the swizzled tiles and mma.m16n8k16 into fp32 accumulators.
//   3. Epilogues (per pass): the bf16 outputs (forward, backward-data) go through
//      tc_store_tile_bf16 (conv_tc_epilogue.cuh): the tile is staged in shared memory and written
//      with 16-byte stores, each pass giving only a row -> address functor (GEMM row m -> the address
//      of its column 0). Shapes it cannot take (a row length not a multiple of 8, an unaligned
//      pointer) and backward-filter's fp32 partials use tc_for_each_pair, which hands every
//      accumulator pair (row, col, v0, v1) with col even to a functor that maps the GEMM coordinates
//      back to tensors and stores. The forward can also reduce its tile to per-channel batch-norm
//      statistics (conv_tc_stats.cuh).
//   Hopper's main loop (wgmma, sm_90a: conv_wgmma.cuh) replaces layer 2 alone: it takes the same
//   loader contract and shared tiles, and its accumulators are laid out as a TcTile whose warps are
//   16 x BN each (a warpgroup's m64nBN fragment is four warps' m16n8 fragments side by side), so the
//   epilogues run unchanged. The forward is written once for both (conv_tc_forward.cuh, whose
//   MainLoop policy is TcMmaSyncLoop below or TcWgmmaLoop).
//
// Shared-memory tiles: each operand tile is a row-major array of bf16 rows whose 16-byte chunks are
// XOR-swizzled (tc_swizzle) so that the 8 row addresses of every ldmatrix 8x8 matrix fall in 8
// different 16-byte bank groups (conflict-free), and so that cp.async writes stay 16-byte aligned.
// Two storage orders exist per operand, chosen by which axis is contiguous in global memory:
//   "row-major in k" (MK / NK): one row per output row (A) or output column (B), BK = 32 reduction
//       elements (4 chunks) per row: A fragments by ldmatrix.x4, B fragments by ldmatrix.x4 (no trans);
//   "k-major" (KM / KN): one row per reduction index, BM (A) or BN (B) elements per row: A fragments by
//       ldmatrix.x4.trans, B fragments by ldmatrix.x4.trans.
// Fragment addressing (lane l, PTX fragment layouts as in tensor_core.cuh):
//   A from MK: row m_base + l % 16, chunk k_base / 8 + l / 16           (matrices: m0-7|m8-15 x k0-7|k8-15)
//   A from KM: row k_base + l % 8 + 8 (l / 16), chunk m_base / 8 + (l / 8) % 2    (.trans)
//   B from NK: row n_base + l % 8 + 8 (l / 16), chunk k_base / 8 + (l / 8) % 2    (r0, r1: n 0-7; r2, r3: n 8-15)
//   B from KN: row k_base + l % 8 + 8 ((l / 8) % 2), chunk n_base / 8 + l / 16    (.trans; same outputs)
//
// Tile configurations (TcTile<BM, BN, WARPS_M, WARPS_N, STAGES, BK = 32>; BK = 64 only for wgmma's
// main loop): threads = 32 * warps; each
// warp owns a (BM / WARPS_M) x (BN / WARPS_N) sub-tile of MI x NI mma tiles of 16 x 8, so MI * NI * 4
// fp32 accumulators per thread. Dynamic shared memory = STAGES * (BM + BN) * BK * 2 bytes.
#ifndef RESNET_CUDA_CONV_TC_CUH
#define RESNET_CUDA_CONV_TC_CUH

#include "conv_common.cuh"
#include "fast_divmod.cuh"
#include "conv_tc_bn_input.cuh"
#include "tensor_core.cuh"

constexpr int kTcBlockK = 32;  // reduction slice depth of every configuration (two mma k-steps)

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int BK_ = kTcBlockK>
struct TcTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_;
    static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // warp tile
    static constexpr int MI = WTM / 16, NI = WTN / 8;             // mma tiles per warp
    static constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK;    // bf16 per stage
    static constexpr int SMEM_BYTES = STAGES * (A_ELEMS + B_ELEMS) * 2;
    // Blocks per SM the vector kernels are compiled for (__launch_bounds__'s second argument, see
    // TC_LAUNCH_BOUNDS): a budget of 128 registers a thread, 256 for the 128-accumulator warp tiles,
    // over the SM's 64 Ki. Left to itself ptxas sometimes aims lower and spills (which fails the
    // build), or a register over a budget halves the blocks an SM holds.
    static constexpr int MIN_BLOCKS = 65536 / (THREADS * (MI * NI * 4 > 64 ? 256 : 128));
    static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tiles are whole 16 x 16 blocks (B by ldmatrix.x4)");
    static_assert(BM % 8 == 0 && BN % 8 == 0 && STAGES >= 2, "tile sizes");
    static_assert(BK == 32 || BK == 64, "slices of 32 (every main loop) or 64 (wgmma) reduction elements");
};

// The launch bounds of a tensor-core convolution kernel on Tile: the vector kernels (VEC) promise
// Tile::MIN_BLOCKS blocks per SM; the general element-gather kernels, rare fallbacks with more
// registers in flight, only their thread count.
#define TC_LAUNCH_BOUNDS(Tile, VEC) __launch_bounds__(Tile::THREADS, (VEC) ? Tile::MIN_BLOCKS : 1)

// The configurations the plan (src/backend/gpu/conv_tc_tile.rs) can pick; keep the two in step.
using TcTile128x128 = TcTile<128, 128, 2, 4, 3>;  // 8 warps of 64 x 32; 64 acc/thread; 48 KiB
using TcTile64x64 = TcTile<64, 64, 2, 2, 4>;      // 4 warps of 32 x 32; 32 acc/thread; 32 KiB
using TcTile128x32 = TcTile<128, 32, 4, 1, 4>;    // 4 warps of 32 x 32; 32 acc/thread; 40 KiB
using TcTile64x16 = TcTile<64, 16, 4, 1, 4>;      // 4 warps of 16 x 16; 8 acc/thread; 20 KiB
using TcTile32x64 = TcTile<32, 64, 2, 2, 4>;      // 4 warps of 16 x 32; 16 acc/thread; 24 KiB
// CUTLASS's sm80 workhorse shape: fewer, bigger warp tiles (2 ldmatrix.x4 per 4 mma, against 3 per 4
// for 64 x 32), at 2 blocks per SM by registers (about 250); 4 stages need the 64 KiB opt-in.
using TcTile128x128W64 = TcTile<128, 128, 2, 2, 4>;  // 4 warps of 64 x 64; 128 acc/thread; 64 KiB

// ---- swizzled shared tiles ----------------------------------------------------------------------------
// Physical 16-byte chunk of logical chunk `chunk` in row `row` of a tile with CHUNKS chunks per row.
// Rows of >= 128 bytes: chunk ^ (row % 8). Narrower rows pack 8 / CHUNKS rows into one 128-byte bank
// line, so the XOR takes the row's line index instead: 8 consecutive rows then still cover the 8
// 16-byte bank groups exactly once for any fixed logical chunk.
template <int CHUNKS>
__device__ __forceinline__ int tc_swizzle(int row, int chunk) {
    static_assert(CHUNKS == 2 || CHUNKS == 4 || CHUNKS % 8 == 0, "row widths of 32, 64 or 128k bytes");
    if constexpr (CHUNKS % 8 == 0) {
        return chunk ^ (row & 7);
    } else {
        return chunk ^ ((row / (8 / CHUNKS)) & (CHUNKS - 1));
    }
}

// Element offset of logical chunk `chunk` of `row` in a tile of ROW_ELEMS bf16 per row.
template <int ROW_ELEMS>
__device__ __forceinline__ int tc_chunk_offset(int row, int chunk) {
    constexpr int CHUNKS = ROW_ELEMS / 8;
    return row * ROW_ELEMS + 8 * tc_swizzle<CHUNKS>(row, chunk);
}

// The 16-byte chunks of a ROWS x ROW_ELEMS tile that thread `tid` of THREADS fills: chunk
// i = tid + j * THREADS for j < PER_THREAD (those below TOTAL), at row i / CHUNKS, chunk i % CHUNKS.
// With THREADS a multiple of CHUNKS (always here), a thread's chunk column is the same for all j.
template <int ROWS, int ROW_ELEMS, int THREADS>
struct TcChunks {
    static constexpr int CHUNKS = ROW_ELEMS / 8;
    static constexpr int TOTAL = ROWS * CHUNKS;
    static constexpr int PER_THREAD = (TOTAL + THREADS - 1) / THREADS;
    static constexpr int ROW_STEP = THREADS / CHUNKS;  // rows between a thread's consecutive chunks
    static_assert(THREADS % CHUNKS == 0, "a thread keeps one chunk column");
    __device__ static bool owns(int tid, int j) { return TOTAL % THREADS == 0 || tid + j * THREADS < TOTAL; }
    __device__ static int row(int tid, int j) { return tid / CHUNKS + j * ROW_STEP; }
    __device__ static int column(int tid) { return tid % CHUNKS; }
};

// Stage 16 bytes: a cp.async that copies `valid ? 16 : 0` bytes (0: sixteen zeros; `src` must still be
// a valid address, so callers pass the tensor's base then).
__device__ __forceinline__ void tc_copy_chunk(bf16* dst, const bf16* src, bool valid) {
    cp_async_16_cg(dst, src, valid ? 16 : 0);
}

// Stage 8 gathered bf16 (as raw bits) with one ordinary 16-byte shared store: the general path.
__device__ __forceinline__ void tc_store_chunk(bf16* dst, const std::uint16_t (&bits)[8]) {
    uint4 v;
    v.x = bits[0] | static_cast<std::uint32_t>(bits[1]) << 16;
    v.y = bits[2] | static_cast<std::uint32_t>(bits[3]) << 16;
    v.z = bits[4] | static_cast<std::uint32_t>(bits[5]) << 16;
    v.w = bits[6] | static_cast<std::uint32_t>(bits[7]) << 16;
    *reinterpret_cast<uint4*>(dst) = v;
}

// Raw bits of a global bf16 (0 = +0.0 for elements outside the tensor).
__device__ __forceinline__ std::uint16_t tc_bits(const bf16* p) { return bf16_bits(*p); }

// ---- fragments ---------------------------------------------------------------------------------------
// The element offset, within its tile, of the row address lane hands to ldmatrix.x4 for the A fragment
// 16 x 16 at (m_base, k_base), from a tile stored MK (BM rows of BK) or KM (BK rows of BM; read .trans).
template <bool K_MAJOR, int BM>
__device__ __forceinline__ int tc_a_offset(int m_base, int k_base, int lane) {
    if constexpr (!K_MAJOR) {
        return tc_chunk_offset<kTcBlockK>(m_base + lane % 16, k_base / 8 + lane / 16);
    } else {
        return tc_chunk_offset<BM>(k_base + lane % 8 + 8 * (lane / 16), m_base / 8 + (lane / 8) % 2);
    }
}

// The same for B, two adjacent n-blocks (16 x 16 at k_base, n_base: registers 0-1 for columns
// n_base..+7, 2-3 for n_base+8..+15), from a tile stored NK (BN rows of BK) or KN (BK rows of BN; .trans).
template <bool K_MAJOR, int BN>
__device__ __forceinline__ int tc_b_offset(int n_base, int k_base, int lane) {
    if constexpr (!K_MAJOR) {
        return tc_chunk_offset<kTcBlockK>(n_base + lane % 8 + 8 * (lane / 16), k_base / 8 + (lane / 8) % 2);
    } else {
        return tc_chunk_offset<BN>(k_base + lane % 8 + 8 * ((lane / 8) % 2), n_base / 8 + lane / 16);
    }
}

// The element offsets at which this lane's ldmatrix rows lie in the stage the main loop reads.
// Per k-step (16 of the slice's 32) the offset of the warp's first A fragment (i = 0) and first B pair
// (j = 0) is carried from slice to slice, moved by one stage each time (not recomputed from the lane:
// ptxas would rebuild the swizzle arithmetic every slice). The other fragments lie at a fixed distance
// from the first: a constant where the rows are the output rows or columns (MK, NK: the swizzle repeats
// every 8 rows, and fragments are 16 rows apart), and a function of the lane alone where the rows are
// reduction indices (KM, KN: fragments are 2 chunks apart within a row, under the row's XOR).
template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR>
struct TcFragmentWalk {
    static constexpr int KSTEPS = Tile::BK / 16;
    int a[KSTEPS], b[KSTEPS];  // stage read_stage's offsets of fragments i = 0 and j = 0
    int lane, wm, wn;

    __device__ __forceinline__ TcFragmentWalk(int wm_, int wn_, int lane_) : lane(lane_), wm(wm_), wn(wn_) {
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            a[kk] = tc_a_offset<A_K_MAJOR, Tile::BM>(wm, 16 * kk, lane);
            b[kk] = tc_b_offset<B_K_MAJOR, Tile::BN>(wn, 16 * kk, lane);
        }
    }

    // Offset of A fragment i (rows wm + 16 i ..) of k-step kk, and of B pair j (columns wn + 16 j ..).
    __device__ __forceinline__ int a_at(int kk, int i) const {
        if constexpr (!A_K_MAJOR) {
            return a[kk] + 16 * i * kTcBlockK;
        } else {
            return a[kk] + tc_a_offset<true, Tile::BM>(wm + 16 * i, 16 * kk, lane) -
                   tc_a_offset<true, Tile::BM>(wm, 16 * kk, lane);
        }
    }
    __device__ __forceinline__ int b_at(int kk, int j) const {
        if constexpr (!B_K_MAJOR) {
            return b[kk] + 16 * j * kTcBlockK;
        } else {
            return b[kk] + tc_b_offset<true, Tile::BN>(wn + 16 * j, 16 * kk, lane) -
                   tc_b_offset<true, Tile::BN>(wn, 16 * kk, lane);
        }
    }

    // On to the next stage of the ring (from the last back to the first).
    __device__ __forceinline__ void next_stage(bool wrap) {
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            a[kk] += wrap ? -(Tile::STAGES - 1) * Tile::A_ELEMS : Tile::A_ELEMS;
            b[kk] += wrap ? -(Tile::STAGES - 1) * Tile::B_ELEMS : Tile::B_ELEMS;
        }
    }
};

// ---- reduction index -> (tap, channel) ---------------------------------------------------------------------
// A loader's reduction index kr = (outer * mid + middle) * inner + channel (forward: the tap (r, s) and
// input channel c, with mid = S and inner = C; backward-data: the tap (a, b) and output channel k),
// and beside it the element offset that index reads, relative to where kr = 0 reads:
//     offset = outer * outer_stride + middle * middle_stride + channel * channel_stride.
// The main loop loads slices in order, so a loader's kr grows by the slice depth from one call to the
// next: carrying that step through channel, middle and outer, and the offset with them, costs a
// compare or two a slice where splitting kr anew costs two integer divisions and the offset a few
// multiplies. `start` splits once, before the main loop; `advance` moves on by `step` (>= 0). The
// walk holds only what changes; the shape (TcTapShape) is the caller's, the same for all its walks.
struct TcTapShape {
    int mid, inner, channel_stride, middle_stride, outer_stride;  // mid, inner >= 1
};

struct TcTapWalk {
    int outer = 0, middle = 0, channel = 0, offset = 0;

    __device__ __forceinline__ void start(int kr0, const TcTapShape& t) {
        const int om = kr0 / t.inner;
        channel = kr0 - om * t.inner;
        outer = om / t.mid;
        middle = om - outer * t.mid;
        offset = outer * t.outer_stride + middle * t.middle_stride + channel * t.channel_stride;
    }

    __device__ __forceinline__ void advance(int step, const TcTapShape& t) {
        channel += step;
        offset += step * t.channel_stride;
        while (channel >= t.inner) {  // at most step / inner + 1 times: once or not at all for inner >= 32
            channel -= t.inner;
            offset += t.middle_stride - t.inner * t.channel_stride;
            if (++middle == t.mid) {
                middle = 0;
                ++outer;
                offset += t.outer_stride - t.mid * t.middle_stride;
            }
        }
    }
};

// ---- main loop -----------------------------------------------------------------------------------------
// acc += A[m0.., 0..Kred) B[0..Kred), n0..] for this warp's sub-tile, over `slices` slices of BK.
// `load_a(tile, k0)` / `load_b(tile, k0)` fill one stage's tiles for the slice at reduction offset k0
// (cp.async or plain shared stores; each thread only its own chunks). A_K_MAJOR / B_K_MAJOR give the
// storage order the loaders use. Pipeline: STAGES - 1 slices in flight ahead of the math; each
// iteration waits for the oldest, one barrier (which also proves every warp finished reading the stage
// about to be refilled), issues the next load, then runs the slice's ldmatrix + mma.
// `landed(a_tile, b_tile, slice)` runs between this thread's wait for a slice's copies and that
// barrier, on the slice's stage (slice % STAGES): a loader may rewrite there the chunks it copied
// (conv_tc_bn_input.cuh); `issued()` runs once, by every thread, after the first slices' copies
// are issued and before any wait (work that may overlap them, such as a table the landed hook
// reads, with its own barrier). The defaults do nothing.
template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR, class LoadA, class LoadB, class Landed = TcNothingLanded,
          class Issued = TcNothingIssued>
__device__ __forceinline__ void tc_mainloop(float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int slices,
                                            LoadA&& load_a, LoadB&& load_b, Landed&& landed = Landed{},
                                            Issued&& issued = Issued{}) {
    static_assert(Tile::BK == kTcBlockK, "the mma.sync fragments read 32-deep slices (tc_a_offset, tc_b_offset)");
    constexpr int STAGES = Tile::STAGES;
    bf16* const a_tiles = smem;
    bf16* const b_tiles = smem + STAGES * Tile::A_ELEMS;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int wm = (warp % Tile::WARPS_M) * Tile::WTM, wn = (warp / Tile::WARPS_M) * Tile::WTN;

#pragma unroll
    for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
        for (int j = 0; j < Tile::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < slices) {
            load_a(a_tiles + s * Tile::A_ELEMS, s * Tile::BK);
            load_b(b_tiles + s * Tile::B_ELEMS, s * Tile::BK);
        }
        cp_async_commit_group();  // possibly empty: keeps the group count = slices issued + padding
    }
    issued();

    constexpr int KSTEPS = Tile::BK / 16;
    TcFragmentWalk<Tile, A_K_MAJOR, B_K_MAJOR> frags(wm, wn, lane);
    int read_stage = 0, write_stage = STAGES - 1;
    for (int slice = 0; slice < slices; ++slice) {
        cp_async_wait_group<STAGES - 2>();  // this thread's copies of `slice` have landed
        landed(a_tiles + read_stage * Tile::A_ELEMS, b_tiles + read_stage * Tile::B_ELEMS, slice);
        __syncthreads();  // everyone's have (and were rewritten); and stage `write_stage` is free
        const int next = slice + STAGES - 1;
        if (next < slices) {
            load_a(a_tiles + write_stage * Tile::A_ELEMS, next * Tile::BK);
            load_b(b_tiles + write_stage * Tile::B_ELEMS, next * Tile::BK);
        }
        cp_async_commit_group();

#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            std::uint32_t a[Tile::MI][4], b[Tile::NI / 2][4];
#pragma unroll
            for (int i = 0; i < Tile::MI; ++i) ldmatrix<4, A_K_MAJOR>(a[i], a_tiles + frags.a_at(kk, i));
#pragma unroll
            for (int j = 0; j < Tile::NI / 2; ++j) ldmatrix<4, B_K_MAJOR>(b[j], b_tiles + frags.b_at(kk, j));
#pragma unroll
            for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
                for (int j = 0; j < Tile::NI; ++j)
                    mma_m16n8k16_bf16(acc[i][j], a[i], &b[j / 2][2 * (j % 2)], acc[i][j]);
        }
        frags.next_stage(read_stage + 1 == STAGES);
        read_stage = read_stage + 1 == STAGES ? 0 : read_stage + 1;
        write_stage = write_stage + 1 == STAGES ? 0 : write_stage + 1;
    }
    cp_async_wait_all();  // no copy may outlive the block (only empty groups remain here)
}

// tc_mainloop as a main-loop policy (conv_tc_forward.cuh takes one): the sm_80 path, ldmatrix +
// mma.sync per warp. Hopper's wgmma path is TcWgmmaLoop (conv_wgmma.cuh).
// A policy also owns the arrangement of the tiles it reads with one row per reduction index (KM, KN):
// kn_offset<Tile, ROW_ELEMS>(row, chunk) is the element offset of logical 16-byte chunk `chunk` of reduction
// row `row` in such a tile of ROW_ELEMS elements a row. (Tiles with one row per output row or column,
// MK and NK, are the same for every policy: tc_chunk_offset<BK>.)
struct TcMmaSyncLoop {
    // (conv_wgmma.cuh's TMA policies bring operands by the tensor memory accelerator.)
    static constexpr bool A_BY_TMA = false, B_BY_TMA = false, IM2COL = false;
    // Threads a launch of `Tile` has beyond Tile::THREADS (conv_wgmma.cuh's producer warp).
    template <class Tile>
    __host__ __device__ static constexpr int producer_threads() {
        return 0;
    }

    template <class Tile, int ROW_ELEMS>
    __device__ static __forceinline__ int kn_offset(int row, int chunk) {
        return tc_chunk_offset<ROW_ELEMS>(row, chunk);
    }

    template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR, class LoadA, class LoadB, class Landed = TcNothingLanded,
              class Issued = TcNothingIssued>
    __device__ static __forceinline__ void run(float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int slices,
                                               LoadA&& load_a, LoadB&& load_b, Landed&& landed = Landed{},
                                               Issued&& issued = Issued{}) {
        tc_mainloop<Tile, A_K_MAJOR, B_K_MAJOR>(acc, smem, slices, load_a, load_b, landed, issued);
    }
};

// Whether this thread is a main loop's producer warp (conv_wgmma.cuh's TcWgmmaWarpSpecializedPipeline), which has left
// the loop with nothing more to do: the kernel bodies return for it before their epilogues.
template <class Tile, class MainLoop>
__device__ __forceinline__ bool tc_producer_thread() {
    return MainLoop::template producer_threads<Tile>() != 0 && threadIdx.x >= Tile::THREADS;
}

// ---- epilogue walk -------------------------------------------------------------------------------------
// Calls store(row, col, v0, v1) for each accumulator pair of this thread: C[row][col] = v0,
// C[row][col + 1] = v1, with row, col the GEMM coordinates (tile origin m0, n0 added; col even). The
// functor checks the bounds (row < M, col < Ncol, col + 1 < Ncol).
template <class Tile, class Store>
__device__ __forceinline__ void tc_for_each_pair(const float (&acc)[Tile::MI][Tile::NI][4], int m0, int n0,
                                                 Store&& store) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm = m0 + (warp % Tile::WARPS_M) * Tile::WTM, wn = n0 + (warp / Tile::WARPS_M) * Tile::WTN;
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
        for (int j = 0; j < Tile::NI; ++j) {
            const int row = wm + 16 * i + g, col = wn + 8 * j + 2 * t;
            store(row, col, acc[i][j][0], acc[i][j][1]);
            store(row + 8, col, acc[i][j][2], acc[i][j][3]);
        }
}

// Stores a bf16 pair at out[0], out[1] (only out[0] when `second` is false): one 32-bit store when the
// pair is 4-byte aligned (`paired`: the row length is even, col is even), else two 16-bit stores.
__device__ __forceinline__ void tc_store_bf16_pair(bf16* out, float v0, float v1, bool second, bool paired) {
    const bf16 h0 = bf16_from_float(v0), h1 = bf16_from_float(v1);
    if (second && paired) {
        *reinterpret_cast<std::uint32_t*>(out) = pack_bf16x2(h0, h1);
    } else {
        out[0] = h0;
        if (second) out[1] = h1;
    }
}

#endif
