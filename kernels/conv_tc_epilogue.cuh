// conv_tc_epilogue.cuh: the staged bf16 output store of the tensor-core convolutions (forward and
// backward-data): the block's C tile goes through shared memory so that global memory sees 16-byte
// stores of 8 consecutive channels, consecutive threads writing consecutive 16-byte chunks of a row.
//
// Why: stored straight from the mma fragments (tc_for_each_pair + tc_store_bf16_pair), a warp's
// store instruction writes 8 rows x 16 bytes (lanes 4g .. 4g + 3 hold C[g][2t, 2t + 1] of one
// 16 x 8 accumulator tile), half of each 32-byte sector, with 4x the instructions of 16-byte stores.
// Staged, one warp instruction writes 32 consecutive chunks: 512 contiguous bytes of one row (BN =
// 128 spans 2 rows of 256 bytes, BN = 64 4 rows of 128, BN = 32 8 of 64, BN = 16 16 of 32), so every
// sector it touches is written whole when the rows are 32-byte aligned (K % 16 == 0).
//
// Steps (tc_store_tile_bf16 runs them; every thread of the block must call it, block-uniformly):
//   0. __syncthreads: every warp's last ldmatrix of the main loop is done, so the pipeline's shared
//      memory is free (cp.async has nothing left in flight: tc_mainloop ends with wait_all).
//   1. (with an addend) the addend's tile rows -> staged tile by 16-byte cp.async (zeros outside the
//      tensor), wait, __syncthreads.
//   2. accumulators -> staged tile, rounded to bf16 once (after adding the staged addend in fp32,
//      which each thread reads from exactly the bf16 pair it then overwrites: no other thread touches
//      that pair), as 4-byte pairs in the fragment layout (tc_for_each_pair with tile origin 0).
//   3. __syncthreads, then the staged tile -> global by 16-byte chunks.
//   Leaves the staged tile being read: a caller that reuses the shared memory afterwards
//   (tc_channel_statistics) starts with a __syncthreads, which it does anyway.
// Step 2 is the only one that knows the mma fragment layout: a Hopper wgmma main loop would keep
// steps 0, 1, 3 and walk its own accumulators in step 2 (tc_stage_accumulators).
//
// Staged tile: BM rows of BN bf16 (row-major, BN * 2 bytes a row, no padding), row `row`'s logical
// 16-byte chunk `c` stored at physical chunk tc_swizzle<BN / 8>(row, c) (the XOR swizzle of the
// operand tiles, conv_tc.cuh). Bank analysis (32 banks of 4 bytes = 8 groups of 16 bytes; a 16-byte
// shared access is served a quarter warp, 8 lanes, at a time):
//   - step 2's 4-byte stores: a warp stores pairs (row0 + g, col0 + 2t), row0 a multiple of 8, one
//     logical chunk col0 / 8 for all 32 lanes. The swizzle puts the 8 rows g of one logical chunk in
//     8 different 16-byte bank groups (tc_swizzle's property, which ldmatrix also relies on: rows of
//     >= 128 bytes XOR the chunk with row % 8; narrower rows share a 128-byte line and XOR with the
//     line index), and t picks one of the 4 banks of the group: 32 distinct banks, conflict-free.
//     (A padded tile could not serve both steps for the narrow tiles: conflict-free pair stores need
//     a row stride of an odd number of 16-byte units, while 8 lanes reading 2 (or 4) consecutive rows
//     of 4 (or 2) chunks need it even.)
//   - steps 1 and 3's 16-byte accesses: 8 consecutive threads take 8 consecutive logical chunks of
//     the tile, i.e. one whole 128-byte line (a full row of 8 chunks, half of a 16-chunk row, or 2 or
//     4 whole narrow rows), whose physical chunks the swizzle only permutes inside that line: 8
//     different bank groups, conflict-free.
// Sizes: BM * BN * 2 bytes (32768 for 128x128, 8192 for 64x64 and 128x32, 2048 for 64x16, 4096 for
// 32x64), inside every tile's SMEM_BYTES (static_assert below).
//
// When the staged path applies (tc_staged_store_ok): the row length Ncol is a multiple of 8 and the
// output (and addend) base pointers are 16-byte aligned, so every row start, and every chunk at
// column n0 + 8 c (n0 a multiple of BN), is 16-byte aligned. Otherwise the kernels keep the pair /
// element stores of tc_store_bf16_pair. Rows m >= M and chunks at columns >= Ncol are never written.
#ifndef RESNET_CUDA_CONV_TC_EPILOGUE_CUH
#define RESNET_CUDA_CONV_TC_EPILOGUE_CUH

#include <type_traits>

#include "conv_tc.cuh"

template <class Tile>
struct TcStagedTile {
    static constexpr int CHUNKS = Tile::BN / 8;  // 16-byte chunks per staged row
    static constexpr int BYTES = Tile::BM * Tile::BN * 2;
    using Chunks = TcChunks<Tile::BM, Tile::BN, Tile::THREADS>;  // steps 1 and 3: chunk -> thread
    static_assert(BYTES <= Tile::SMEM_BYTES, "the staged C tile fits in the pipeline's shared memory");
    static_assert(Chunks::TOTAL % Tile::THREADS == 0, "every thread moves the same number of chunks");
};

// Element offset of C[row][col] (tile-relative) in the staged tile.
template <class Tile>
__device__ __forceinline__ int tc_staged_offset(int row, int col) {
    return tc_chunk_offset<Tile::BN>(row, col / 8) + col % 8;
}

// A 16-byte vector store or load (8 bf16). The emulator checks the alignment the hardware requires.
__device__ __forceinline__ void tc_store_16(void* dst, const uint4& v) {
#ifndef __CUDACC__
    if (reinterpret_cast<std::uintptr_t>(dst) % 16 != 0) emu::kernel_error("16-byte store to an unaligned address");
#endif
    *reinterpret_cast<uint4*>(dst) = v;
}

__device__ __forceinline__ uint4 tc_load_16(const void* src) {
#ifndef __CUDACC__
    if (reinterpret_cast<std::uintptr_t>(src) % 16 != 0) emu::kernel_error("16-byte load from an unaligned address");
#endif
    return *reinterpret_cast<const uint4*>(src);
}

// Whether the staged store applies to rows of `ncol` bf16 at `out` (and the addend at `addend`,
// unless null): block-uniform, it decides whether tc_store_tile_bf16 (with its barriers) runs.
__device__ __forceinline__ bool tc_staged_store_ok(int ncol, const void* out, const void* addend = nullptr) {
    const auto misaligned = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) != 0; };
    return ncol % 8 == 0 && !misaligned(out) && (addend == nullptr || !misaligned(addend));
}

// "No addend" for tc_store_tile_bf16.
struct TcNoAddend {
    __device__ const bf16* operator()(int) const { return nullptr; }
};

// Step 1: staged[row][col] = addend C[m0 + row][n0 + col] for rows m0 + row < M and chunks with
// n0 + col < Ncol, zeros elsewhere; add_row(m) is the address of the addend's C[m][0].
template <class Tile, class AddRow>
__device__ __forceinline__ void tc_stage_addend(bf16* staged, int m0, int n0, int M, int ncol, AddRow&& add_row) {
    using Ch = typename TcStagedTile<Tile>::Chunks;
    const int chunk = Ch::column(threadIdx.x), col = n0 + 8 * chunk;
#pragma unroll
    for (int j = 0; j < Ch::PER_THREAD; ++j) {
        const int row = Ch::row(threadIdx.x, j), m = m0 + row;
        bf16* dst = staged + tc_chunk_offset<Tile::BN>(row, chunk);
        if (m < M && col < ncol) {
            tc_copy_chunk(dst, add_row(m) + col, true);
        } else {
            tc_store_16(dst, make_uint4(0, 0, 0, 0));
        }
    }
    cp_async_commit_group();
    cp_async_wait_all();
}

// Step 2: staged[row][col] = bf16(acc (+ staged[row][col] as fp32 when ADD)) for this thread's pairs.
template <class Tile, bool ADD>
__device__ __forceinline__ void tc_stage_accumulators(const float (&acc)[Tile::MI][Tile::NI][4], bf16* staged) {
    tc_for_each_pair<Tile>(acc, 0, 0, [&](int row, int col, float v0, float v1) {
        auto* pair = reinterpret_cast<std::uint32_t*>(staged + tc_staged_offset<Tile>(row, col));
        if constexpr (ADD) {
            const std::uint32_t a = *pair;
            v0 += bf16_to_float(bf16_from_bits(static_cast<std::uint16_t>(a & 0xffffu)));
            v1 += bf16_to_float(bf16_from_bits(static_cast<std::uint16_t>(a >> 16)));
        }
        *pair = pack_bf16x2(bf16_from_float(v0), bf16_from_float(v1));
    });
}

// Step 3: C[m0 + row][n0 + col .. + 7] = staged chunk, for rows m0 + row < M and chunks with
// n0 + col < Ncol; out_row(m) is the (16-byte aligned) address of C[m][0].
template <class Tile, class OutRow>
__device__ __forceinline__ void tc_write_staged(const bf16* staged, int m0, int n0, int M, int ncol,
                                                OutRow&& out_row) {
    using Ch = typename TcStagedTile<Tile>::Chunks;
    const int chunk = Ch::column(threadIdx.x), col = n0 + 8 * chunk;
    if (col >= ncol) return;  // (no barrier follows)
#pragma unroll
    for (int j = 0; j < Ch::PER_THREAD; ++j) {
        const int row = Ch::row(threadIdx.x, j), m = m0 + row;
        if (m < M) tc_store_16(out_row(m) + col, tc_load_16(staged + tc_chunk_offset<Tile::BN>(row, chunk)));
    }
}

// Steps 0-2 of tc_store_tile_bf16 alone: the tile staged in `smem` (rounded to bf16, the addend
// added), visible to every thread of the block, for a caller with its own step 3
// (conv_tc_bn_grad.cuh). Every thread of the block must call it (it has barriers).
template <class Tile, class AddRow = TcNoAddend>
__device__ __forceinline__ void tc_stage_tile_bf16(const float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int m0,
                                                   int n0, int M, int ncol, AddRow&& add_row = TcNoAddend{}) {
    constexpr bool ADD = !std::is_same<std::decay_t<AddRow>, TcNoAddend>::value;
    static_assert(TcStagedTile<Tile>::BYTES <= Tile::SMEM_BYTES, "the staged tile reuses the pipeline's memory");
    __syncthreads();  // step 0: the main loop's reads of `smem` are done
    if constexpr (ADD) {
        tc_stage_addend<Tile>(smem, m0, n0, M, ncol, add_row);
        __syncthreads();
    }
    tc_stage_accumulators<Tile, ADD>(acc, smem);
    __syncthreads();
}

// The staged store, steps 0-3 of the header: C[m][n] = bf16(acc [+ addend C[m][n]]) for the tile at
// (m0, n0) of a GEMM with M rows of `ncol` columns, rows m at out_row(m) (the address of C[m][0]),
// the addend's at add_row(m) (TcNoAddend: none). Requires tc_staged_store_ok. `smem` is the
// pipeline's dynamic shared memory. Every thread of the block must call it (it has barriers).
template <class Tile, class OutRow, class AddRow = TcNoAddend>
__device__ __forceinline__ void tc_store_tile_bf16(const float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int m0,
                                                   int n0, int M, int ncol, OutRow&& out_row,
                                                   AddRow&& add_row = TcNoAddend{}) {
    tc_stage_tile_bf16<Tile>(acc, smem, m0, n0, M, ncol, add_row);
    tc_write_staged<Tile>(smem, m0, n0, M, ncol, out_row);
}

#endif
