// conv_wgmma.cuh: Hopper's main loop for the tensor-core convolutions (sm_90a only: wgmma.mma_async),
// a drop-in for conv_tc.cuh's tc_mainloop behind the same loader contract and the same epilogues.
//
// What changes against tc_mainloop (mma.sync): a warpgroup (4 warps, 128 threads) multiplies its
// 64 rows of the A tile by the whole B tile with one wgmma.m64nBNk16 per 16-deep step, both operands
// read by the tensor cores straight from shared memory through descriptors: no ldmatrix, no operand
// registers, and the multiply runs asynchronously while the warps issue the next stage's cp.async.
// On an H100/H200 that is the only way to the tensor cores' full rate; mma.sync reaches well under
// half of it (GPU-NOTES.md).
//
// Tiles (TcTile<BM, BN, BM / 16, 1, STAGES>): BM / 64 warpgroups, warpgroup wg owning rows
// 64 wg .. 64 wg + 63 and all BN columns. Its fp32 accumulators are the m64nBNk16 D fragment: warp
// w % 4 of the warpgroup holds rows 16 (w % 4) + g and + 8 (g = lane / 4), columns 8 j + 2 t, + 1
// (t = lane % 4) in registers 4 j .. 4 j + 3, which is exactly acc[0][j][0..3] of a TcTile whose warps
// are 16 x BN (WARPS_M = BM / 16, WARPS_N = 1): the epilogues' fragment walk (tc_for_each_pair)
// needs no change.
//
// Shared operands: the loaders' tiles as they are. With BK = 32, rows of 64 bytes whose 16-byte chunk
// `c` of row `r` sits at chunk c ^ ((r / 2) % 4) (tc_swizzle<4>): read as addresses, that XORs bits
// 4-5 of the byte offset with bits 7-8, the 64-byte swizzle of wgmma's K-major canonical layout,
// provided each tile starts at a multiple of 512 bytes of the shared window (the swizzle is a function
// of the address). With BK = 64, rows of 128 bytes at chunk c ^ (r % 8) (tc_swizzle<8>): bits 4-6
// with bits 7-9, the 128-byte swizzle (1024-byte alignment). So: A and B descriptors are K-major (no
// transpose), swizzle B64 or B128, stride byte offset 8 rows of BK bf16 (512 or 1024: from one 8-row
// core-matrix group to the next), the leading byte offset unused (a 16-deep step is 32 bytes, inside
// one swizzle row), and the 16-deep steps of a slice start 32 bytes apart. The pipeline's base is
// rounded up to 1024 bytes of the shared window (the launch asks for 1 KiB more than the stages), and
// every stage is a multiple of 1024 bytes.
//
// The tiles with one row per reduction index (conv_tc's KM and KN: backward-data's w, both of
// backward-filter's operands) are wgmma's MN-major operands, and this policy arranges them itself
// (kn_offset): 64-element-wide panels, panel p at p * BK * 64 elements, its reduction row k 128 bytes
// at k * 128, the 16-byte chunk of elements 8c .. 8c + 7 at chunk position c ^ (k % 8): a row-major
// [BK][64] panel under the 128-byte swizzle (address bits 4-6 ^= bits 7-9, each panel 1024-aligned).
// wgmma reads them through wgmma_mn_major_descriptor (panel stride BK * 128 bytes), the 16-deep
// step at k starting k * 128 bytes in; a warpgroup's 64 rows of an MN-major A are panel wg.
// wgmma_fence_operand (no instruction) pins the accumulators in registers around the fences and
// waits, which name no registers and so would not stop the compiler moving accesses across them.
//
// Pipeline (STAGES >= 3), per slice i of BK:
//   cp.async.wait_group STAGES - 3   this thread's copies of slice i have landed
//   landed(slice i)                   the loader's hook (conv_tc.cuh's tc_mainloop: the same contract)
//   fence.proxy.async                 ... and are visible to the async proxy that wgmma reads through
//   __syncthreads                     everyone's have; every warpgroup's wgmma of slice i - 2 retired
//   cp.async slice i + STAGES - 2     into the stage slice i - 2 used, now free
//   wgmma.fence; BK / 16 wgmmas (k 0-15, 16-31, ..., chained on the accumulators); commit
//   wgmma.wait_group 1                slice i - 1's multiply has retired (slice i's may still run)
// So one multiply stays in flight across the barrier, and STAGES - 2 slices of loads ahead of it.
//
// TcWgmmaTmaLoop (B_BY_TMA): the same pipeline with the B tiles brought by the tensor memory
// accelerator (tma.cuh; docs/plans/hopper-tma.md): thread 0 announces a stage's B bytes on that
// stage's mbarrier and issues one cp.async.bulk.tensor for the whole BN x BK box, which the copy
// engine stores with the 64- or 128-byte swizzle, the very layout the loaders' tc_swizzle makes (the
// map's swizzle is kWgmmaRowSwizzle's). `load_b` is then (bf16* tile, int k0, std::uint64_t* bar),
// called by thread 0 alone. Each slice adds, before the barrier,
//   mbarrier.try_wait.parity (stage's barrier, use count of the stage & 1)   slice i's B has landed
// and nothing else changes: the __syncthreads the cp.async A tiles need already orders every
// warpgroup's retired wgmma reads of a stage before the copy that refills it (both async proxy, in
// program order through the barrier), and every thread passes a stage's wait before the next
// __syncthreads, so no wait can miss a phase. The STAGES barriers (8 bytes each) sit right after the
// aligned stages: a TMA launch asks for kWgmmaTmaBarrierBytes more shared memory. No epilogue reaches
// them (the staged tile and the statistics stay inside Tile::SMEM_BYTES), so they are never reused.
// With both operands by TMA (TcWgmmaTmaPointwiseLoop, TcWgmmaTmaIm2colLoop) a producer warp (a
// warpgroup on the 128x256 tiles) issues the copies instead, with a full and an empty mbarrier a
// stage and no block barrier in the loop: TcWgmmaWarpSpecializedPipeline below; launched without it,
// they run this pipeline with the A box beside the B box on the stage's barrier, and no cp.async.
#ifndef RESNET_CUDA_CONV_WGMMA_CUH
#define RESNET_CUDA_CONV_WGMMA_CUH

#include <type_traits>

#include "conv_tc.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

// The Hopper tiles (kernels in conv_wgmma_forward_sm90a.cu; TcTile::H* in conv_tc_tile.rs).
using WgTile128x128 = TcTile<128, 128, 8, 1, 4>;  // 2 warpgroups of 64 x 128; 64 acc/thread
using WgTile128x256 = TcTile<128, 256, 8, 1, 4>;  // 2 warpgroups of 64 x 256; 128 acc/thread
using WgTile64x128 = TcTile<64, 128, 4, 1, 4>;    // 1 warpgroup of 64 x 128; 64 acc/thread
using WgTile128x64 = TcTile<128, 64, 8, 1, 4>;    // 2 warpgroups of 64 x 64; 32 acc/thread
using WgTile64x64 = TcTile<64, 64, 4, 1, 4>;      // 1 warpgroup of 64 x 64; 32 acc/thread
// 64-deep slices (half the barriers and waits per multiply), 3 stages: 97 and 145 KiB, one block an SM.
using WgTile128x128K64 = TcTile<128, 128, 8, 1, 3, 64>;
using WgTile128x256K64 = TcTile<128, 256, 8, 1, 3, 64>;

// Bytes the pipeline's base may move to reach a 1024-byte boundary of the shared window.
constexpr int kWgmmaSmemAlign = 1024;

// Dynamic shared memory of a Hopper tile's launch: the stages plus the alignment slack.
template <class Tile>
constexpr int wgmma_smem_bytes() {
    return Tile::SMEM_BYTES + kWgmmaSmemAlign;
}

// (kWgmmaTmaBarrierBytes, launch_constants.h: the TMA main loop's mbarriers after the stages.)

// The swizzled K-major layout's stride between 8-row groups: 8 rows of BK bf16.
template <class Tile>
constexpr std::uint32_t kWgmmaGroupStride = 8 * Tile::BK * 2;
// Its swizzle: rows of 64 bytes (BK = 32) or 128 (BK = 64), as tc_swizzle stores them.
template <class Tile>
constexpr WgmmaSwizzle kWgmmaRowSwizzle = Tile::BK == 64 ? WgmmaSwizzle::B128 : WgmmaSwizzle::B64;
// Elements of one 64-wide panel of an MN-major tile: BK rows of 64.
template <class Tile>
constexpr int kWgmmaPanelElems = Tile::BK * 64;
// Unused by swizzled K-major operands whose 16-deep step lies inside one swizzle row; PTX code
// conventionally encodes 1 (16 bytes).
constexpr std::uint32_t kWgmmaUnusedLeading = 16;

// The pipeline of the policies below; A_BY_TMA and B_BY_TMA as in the header.
template <bool A_BY_TMA, bool B_BY_TMA>
struct TcWgmmaPipeline {
    // Every thread of the block multiplies (TcWgmmaWarpSpecializedPipeline adds a producer warp).
    template <class Tile>
    __host__ __device__ static constexpr int producer_threads() {
        return 0;
    }

    template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR, class LoadA, class LoadB, class Landed = TcNothingLanded,
              class Issued = TcNothingIssued>
    __device__ static __forceinline__ void run(float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int slices,
                                               LoadA&& load_a, LoadB&& load_b, Landed&& landed = Landed{},
                                               Issued&& issued = Issued{}) {
        // conv_tc's "K-major" tiles (one row per reduction index: KM, KN) are wgmma's MN-major operands.
        constexpr bool A_MN = A_K_MAJOR, B_MN = B_K_MAJOR;
        check_tile<Tile, A_MN, B_MN>();
        static_assert(Tile::STAGES >= 3, "one multiply in flight needs 3 stages");
        constexpr int STAGES = Tile::STAGES;
        constexpr int BN = Tile::BN;

        constexpr bool ANY_TMA = A_BY_TMA || B_BY_TMA, ANY_CP_ASYNC = !A_BY_TMA || !B_BY_TMA;
        // Whether `landed` rewrites the staged operands with ordinary stores (the BN + ReLU map).
        constexpr bool REWRITES = !std::is_same_v<std::decay_t<Landed>, TcNothingLanded>;
        // (A TMA operand's loader stores the layout the descriptors read: rows of BK for a K-major
        // tile, or, for an MN-major one, one box a 64-wide panel under the 128-byte swizzle.)
        static_assert(!ANY_TMA || STAGES * 8 <= kWgmmaTmaBarrierBytes, "one barrier a stage");
        bf16* const a_tiles = wgmma_aligned(smem);
        bf16* const b_tiles = a_tiles + STAGES * Tile::A_ELEMS;
        std::uint64_t* const tma_landed = reinterpret_cast<std::uint64_t*>(b_tiles + STAGES * Tile::B_ELEMS);
        float* const d = &acc[0][0][0];  // the m64nBN fragment: BN / 2 floats in order

        zero_accumulators<Tile>(acc);

        if constexpr (ANY_TMA) {
            if (threadIdx.x == 0) {
#pragma unroll
                for (int s = 0; s < STAGES; ++s) mbarrier_init(&tma_landed[s], 1);
                fence_mbarrier_init();
            }
            __syncthreads();  // the barriers exist before anyone waits on them or a copy completes one
        }
        // Slice `slice`'s tiles into stage `stage`: this thread's chunks of a cp.async operand, thread
        // 0's box of a TMA one (both boxes on the stage's one barrier).
        auto load_stage = [&](int stage, int slice) {
            bf16* const a_tile = a_tiles + stage * Tile::A_ELEMS;
            bf16* const b_tile = b_tiles + stage * Tile::B_ELEMS;
            const int k0 = slice * Tile::BK;
            if constexpr (ANY_TMA) {
                if (threadIdx.x == 0) {
                    constexpr int bytes = (A_BY_TMA ? Tile::A_ELEMS * 2 : 0) + (B_BY_TMA ? Tile::B_ELEMS * 2 : 0);
                    mbarrier_arrive_expect_tx(&tma_landed[stage], bytes);
                    if constexpr (A_BY_TMA) load_a(a_tile, k0, &tma_landed[stage]);
                    if constexpr (B_BY_TMA) load_b(b_tile, k0, &tma_landed[stage]);
                }
            }
            if constexpr (!A_BY_TMA) load_a(a_tile, k0);
            if constexpr (!B_BY_TMA) load_b(b_tile, k0);
        };

#pragma unroll
        for (int s = 0; s < STAGES - 2; ++s) {
            if (s < slices) load_stage(s, s);
            if constexpr (ANY_CP_ASYNC) cp_async_commit_group();  // possibly empty: group g holds slice g
        }
        issued();  // (tc_mainloop's contract)

        std::uint64_t a_desc0, b_desc0;
        stage0_descriptors<Tile, A_MN, B_MN>(a_tiles, b_tiles, a_desc0, b_desc0);

        int read_stage = 0, write_stage = STAGES - 2;
        unsigned read_parity = 0;  // (TMA) of the read stage's barrier phase: its use count & 1
        for (int slice = 0; slice < slices; ++slice) {
            if constexpr (ANY_CP_ASYNC) cp_async_wait_group<STAGES - 3>();
            if constexpr (ANY_TMA) mbarrier_wait_parity(&tma_landed[read_stage], read_parity);
            landed(a_tiles + read_stage * Tile::A_ELEMS, b_tiles + read_stage * Tile::B_ELEMS, slice);
            // cp.async's stores and `landed`'s rewrites are the generic proxy's, read by the async one
            // (and, for a rewrite, overwritten by a later copy into the stage); a TMA copy is the async
            // proxy's own.
            if constexpr (ANY_CP_ASYNC || REWRITES) fence_proxy_async_shared();
            __syncthreads();
            const int next = slice + STAGES - 2;
            if (next < slices) load_stage(write_stage, next);
            if constexpr (ANY_CP_ASYNC) cp_async_commit_group();

            multiply_slice<Tile, A_MN, B_MN>(d, a_desc0, b_desc0, read_stage);
            if (read_stage + 1 == STAGES) read_parity ^= 1u;
            read_stage = read_stage + 1 == STAGES ? 0 : read_stage + 1;
            write_stage = write_stage + 1 == STAGES ? 0 : write_stage + 1;
        }
        wgmma_wait_group<0>();
        wgmma_fence_operand<BN>(d);  // the epilogue's reads of acc stay after the wait
        if constexpr (ANY_CP_ASYNC) cp_async_wait_all();
    }

    // KM / KN tiles in 64-wide panels (see the header): chunk `chunk` of reduction row `row`.
    template <class Tile, int ROW_ELEMS>
    __device__ static __forceinline__ int kn_offset(int row, int chunk) {
        static_assert(ROW_ELEMS % 64 == 0, "MN-major tiles are whole 64-wide panels");
        return (chunk / 8) * kWgmmaPanelElems<Tile> + row * 64 + 8 * ((chunk % 8) ^ (row % 8));
    }

  protected:
    // What both pipelines need of a tile (the stage counts are each pipeline's own).
    template <class Tile, bool A_MN, bool B_MN>
    __device__ static constexpr void check_tile() {
        static_assert(!A_MN || Tile::BM % 64 == 0, "an MN-major A is whole 64-wide panels");
        static_assert(!B_MN || Tile::BN % 64 == 0, "an MN-major B is whole 64-wide panels");
        static_assert(Tile::MI == 1 && Tile::WTM == 16 && Tile::WARPS_N == 1 && Tile::WARPS_M % 4 == 0,
                      "warps of 16 x BN, four to a warpgroup");
        static_assert((Tile::A_ELEMS * 2) % 1024 == 0 && (Tile::B_ELEMS * 2) % 1024 == 0,
                      "stages keep the 1024-byte alignment of the swizzles");
    }

    // The accumulators zeroed, and in the registers before the first wgmma.
    template <class Tile>
    __device__ static __forceinline__ void zero_accumulators(float (&acc)[Tile::MI][Tile::NI][4]) {
#pragma unroll
        for (int j = 0; j < Tile::NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[0][j][e] = 0.0f;
        wgmma_fence_operand<Tile::BN>(&acc[0][0][0]);
    }

    // Stage 0's descriptors: this thread's warpgroup's 64 rows of A (rows 64 wg.. of an MK tile, or
    // panel wg of a KM tile) and the whole B tile, at reduction offset 0. Opaque once made, so that
    // the compiler keeps the two in registers instead of rebuilding them from the shared address in
    // every slice (it does, some ten instructions each).
    template <class Tile, bool A_MN, bool B_MN>
    __device__ static __forceinline__ void stage0_descriptors(const bf16* a_tiles, const bf16* b_tiles,
                                                              std::uint64_t& a_desc0, std::uint64_t& b_desc0) {
        const int warpgroup = threadIdx.x / 128;
        a_desc0 = operand<Tile, A_MN>(a_tiles + warpgroup * (A_MN ? kWgmmaPanelElems<Tile> : 64 * Tile::BK), 0);
        b_desc0 = operand<Tile, B_MN>(b_tiles, 0);
        wgmma_pin(a_desc0);
        wgmma_pin(b_desc0);
    }

    // One slice's multiply from stage `stage`: BK / 16 wgmmas (k 0-15, 16-31, ..., chained on the
    // accumulators d, the m64nBN fragment), committed, then wait_group 1: the previous slice's
    // multiply has retired (this one may still run). The descriptors come first, because ptxas adds
    // fences around code between wgmma.fence and a wgmma: stage 0's (a_desc0, b_desc0) plus the
    // stage's and the step's offsets in the start-address field (16-byte units; the field never
    // carries: shared addresses are below 2^18).
    template <class Tile, bool A_MN, bool B_MN>
    __device__ static __forceinline__ void multiply_slice(float* d, std::uint64_t a_desc0, std::uint64_t b_desc0,
                                                          int stage) {
        constexpr int BN = Tile::BN;
        const std::uint64_t a_stage = a_desc0 + static_cast<std::uint64_t>(stage) * (Tile::A_ELEMS * 2 / 16);
        const std::uint64_t b_stage = b_desc0 + static_cast<std::uint64_t>(stage) * (Tile::B_ELEMS * 2 / 16);
        std::uint64_t a_desc[Tile::BK / 16], b_desc[Tile::BK / 16];
#pragma unroll
        for (int step = 0; step < Tile::BK / 16; ++step) {
            a_desc[step] = a_stage + step * step_units<A_MN>();
            b_desc[step] = b_stage + step * step_units<B_MN>();
        }
        wgmma_fence_operand<BN>(d);
        wgmma_fence();
#pragma unroll
        for (int step = 0; step < Tile::BK / 16; ++step)
            wgmma_m64k16_bf16<BN, A_MN, B_MN>(d, a_desc[step], b_desc[step]);
        wgmma_commit_group();
        wgmma_wait_group<1>();
        wgmma_fence_operand<BN>(d);
    }

    // How far a descriptor's start moves from one 16-deep step to the next, in its 16-byte units:
    // 16 bf16 along a K-major row (32 bytes), or 16 rows of an MN-major panel (2048 bytes).
    template <bool MN_MAJOR>
    __device__ static constexpr std::uint64_t step_units() {
        return MN_MAJOR ? 16 * 128 / 16 : 16 * 2 / 16;
    }

    // The descriptor of the operand whose tile starts at `tile`, for the 16-deep step at reduction
    // offset k (see the header): K-major rows (MK, NK) or MN-major panels (KM, KN).
    template <class Tile, bool MN_MAJOR>
    __device__ static __forceinline__ std::uint64_t operand(const bf16* tile, int k) {
        if constexpr (MN_MAJOR) {
            return wgmma_mn_major_descriptor(tile + 64 * k, kWgmmaPanelElems<Tile> * 2);
        } else {
            return wgmma_descriptor(tile + k, kWgmmaUnusedLeading, kWgmmaGroupStride<Tile>, kWgmmaRowSwizzle<Tile>);
        }
    }

    // `smem` moved up to the next 1024-byte boundary of the shared window.
    __device__ static __forceinline__ bf16* wgmma_aligned(bf16* smem) {
        const std::uint32_t offset = ::shared_window_address(smem);  // (not emu:: by ADL)
        const std::uint32_t pad = (kWgmmaSmemAlign - offset % kWgmmaSmemAlign) % kWgmmaSmemAlign;
        return reinterpret_cast<bf16*>(reinterpret_cast<unsigned char*>(smem) + pad);
    }
};

// mma.sync's loaders for both operands (every thread's cp.async), Hopper's multiply.
struct TcWgmmaLoop : TcWgmmaPipeline<false, false> {
    static constexpr bool A_BY_TMA = false, B_BY_TMA = false, IM2COL = false;
};

// The B operand by TMA (see the header): the forward's weights, a 2-D tensor map over w as [K][RSC]
// whose box is BN rows of BK; `load_box` is what the kernel's `load_b` calls (`map` the address of a
// TmaMap, tma.cuh: void here so that conv_tc_forward.cuh, which sm_80 files include too, needs no
// sm_90 type).
struct TcWgmmaTmaLoop : TcWgmmaPipeline<false, true> {
    static constexpr bool A_BY_TMA = false, B_BY_TMA = true, IM2COL = false;

    // The map's box at (reduction k0, row n0) into `tile`, completing `bar`.
    __device__ static __forceinline__ void load_box(bf16* tile, const void* map, int k0, int n0,
                                                    std::uint64_t* bar) {
        ::tma_load_2d(tile, map, k0, n0, bar);  // (not emu:: by ADL on bf16)
    }
};

// Both operands by TMA, with a producer warp (the pipeline of TcWgmmaTmaPointwiseLoop and
// TcWgmmaTmaIm2colLoop below). Once no thread copies with cp.async, the only work besides the
// multiply is thread 0's two bulk copies a slice, and the one thing that still ties the warpgroups
// together is the per-slice __syncthreads that frees a stage for its refill. Here
// an extra warp, threads Tile::THREADS .. + 31 (one lane of it), issues the copies, and each stage has
// two mbarriers, CUTLASS's full/empty pair:
//   full[s]  (count 1): the producer's arrive.expect_tx of both boxes' bytes; the copies complete it.
//   empty[s] (count Tile::THREADS / 32): lane 0 of each consumer warp arrives once its
//            wgmma.wait_group has retired the multiply that read stage s.
// Producer, slice i into stage s = i % STAGES, its use u = i / STAGES:
//   u > 0: wait empty[s] for phase u - 1 (parity (u - 1) & 1): every warp released slice i - STAGES
//   arrive.expect_tx full[s]; copy A's box and B's box onto full[s]
// Consumers, slice i:
//   wait full[s] for phase u (parity u & 1)
//   wgmma.fence; BK / 16 wgmmas; commit; wgmma.wait_group 1     slice i - 1's multiply retired
//   lane 0 of each warp: arrive empty[stage of slice i - 1]
// So the copies run up to STAGES slices ahead of the multiply (the shared pipeline keeps STAGES - 2),
// no barrier joins the warpgroups inside the loop, and the loop of a consumer warp is the wait, the
// descriptors, the wgmmas, the wait_group and one arrive. The last slice's stage is never released:
// nothing refills it. No fence.proxy.async: the copies write through the async proxy that wgmma reads
// through; the epilogue's ordinary stores into the stages come after every full[] wait and the final
// wait_group 0, as in the shared pipeline.
// The producer warp leaves the kernel after its last copy (tc_producer_thread: the kernel bodies return
// for it after the main loop); the epilogues' __syncthreads then wait for the consumers alone (since
// Volta a block barrier waits for the threads that have not exited: CUDA programming guide, on
// __syncthreads). The launch has Tile::THREADS + PRODUCER_THREADS threads (conv_tc_plan/mod.rs's
// TcLaunch::with_producer). On tiles up to kWgmmaProducerWarpMaxTileN wide the producer is one warp
// (one lane is all the copies need); on the 128x256 tiles a warpgroup, which hands its registers to
// the consumers (Registers below). The consumers' warpgroups are warps 0-3 and 4-7 (a warpgroup is
// four contiguous warps from a multiple of four; a producer warp's partial warpgroup never executes
// wgmma).
// A kernel that rewrites the landed tiles (the BN + ReLU map: `landed`) needs every consumer's
// rewrite done before any multiply reads the stage: after the full wait each consumer maps its chunks,
// fences them for the async proxy, and the consumers meet at a named barrier of their own
// (bar.sync kTcConsumerBarrier, Tile::THREADS), which the producer warp never reaches. The `issued`
// hook (the map's coefficient table, ending in a __syncthreads) runs before the split, by every
// thread, once the producer has issued each stage's first copy.
//
// Registers: a warp scheduler (a quarter of the SM) holds a quarter of the register file, 16384, and
// the block's warps are dealt to the four in turn, so the ninth warp costs as much as a fourth warp on
// every scheduler: ptxas caps a 288-thread block at 168 registers a thread (65536 / 384). The tiles
// whose accumulators fit beside that (BN <= kWgmmaProducerWarpMaxTileN: 64 floats a thread, about 100
// registers in all) take the producer warp. The 128x256 tiles (128 floats, 150 to 240 registers)
// would spill at 168, so theirs is a warpgroup, CUTLASS's arrangement: the 384-thread launch gets 168
// a thread, and after the split the producer warpgroup gives all but kWgmmaProducerRegisters back
// (setmaxnreg.dec) and the consumers take kWgmmaConsumerRegisters (setmaxnreg.inc, which waits for the
// producer's): 128 x 24 + 256 x 240 = 64512, the launch's own. ptxas allocates the code after an inc
// with its count, but only code no thread reaches with another count: the producer warpgroup
// therefore leaves from inside the pipeline (exit_thread, common.cuh) rather than return through the
// kernel body, whose code after the main loop (the epilogue) is the consumers'. These kernels are
// never launched without their producer warpgroup (Occupancy below): an inc takes its registers from
// the block's own pool, which only a dec fills (PTX ISA, setmaxnreg), so without the producer's dec
// the consumers' incs would wait forever (the emulator fails a block with an inc and no dec).
//
// Occupancy: the same rule makes a 288-thread block cost 384 threads' registers, so two blocks of
// 128x128 (about 95 registers with the producer warp, 110 to 120 for the statistics and BN + ReLU
// variants) may no longer fit an SM where two 256-thread blocks did: one block then runs its
// epilogue with the tensor cores idle. Whether the leaner loop outweighs that is for an H200 to say,
// so the kernels with a producer warp keep both pipelines and take the one their launch asks for:
// launched with Tile::THREADS threads (RESNET_TMA_PRODUCER=0: TcLaunch::without_producer) they run
// the shared pipeline, with Tile::THREADS + producer_threads() the producer's; the results are the
// same bits either way (tests/conv_tc/tma.rs). The 128x256 tiles always take their warpgroup.

// The named barrier (1..15; 0 is __syncthreads') at which the consumer warps meet without the producer.
constexpr unsigned kTcConsumerBarrier = 1;

// A thread's registers after the hand-over on the tiles with a producer warpgroup (Registers above):
// 240 is what the 128x256 tiles with 64-deep slices need (at 232 ptxas cannot allocate them), which
// leaves the producer 24, the least setmaxnreg takes (its loop, a few addresses and parities, fits).
constexpr int kWgmmaProducerRegisters = 24;
constexpr int kWgmmaConsumerRegisters = 240;

struct TcWgmmaWarpSpecializedPipeline : TcWgmmaPipeline<true, true> {
    using Shared = TcWgmmaPipeline<true, true>;

    // The tiles wider than kWgmmaProducerWarpMaxTileN (128x256) get a producer warpgroup that hands
    // its registers to the consumers (Registers in the header).
    template <class Tile>
    __host__ __device__ static constexpr bool hands_registers() {
        return Tile::BN > kWgmmaProducerWarpMaxTileN;
    }
    template <class Tile>
    __host__ __device__ static constexpr int producer_threads() {
        return hands_registers<Tile>() ? kWgmmaProducerWarpgroupThreads : kWgmmaProducerThreads;
    }

    template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR, class LoadA, class LoadB, class Landed = TcNothingLanded,
              class Issued = TcNothingIssued>
    __device__ static __forceinline__ void run(float (&acc)[Tile::MI][Tile::NI][4], bf16* smem, int slices,
                                               LoadA&& load_a, LoadB&& load_b, Landed&& landed = Landed{},
                                               Issued&& issued = Issued{}) {
        // (uniform) A launch without the producer warp (RESNET_TMA_PRODUCER=0) runs the shared
        // pipeline. The tiles whose producer is a warpgroup always have it (Registers above: their
        // consumers' registers come from its setmaxnreg.dec).
        if (!hands_registers<Tile>() && blockDim.x == Tile::THREADS) {
            Shared::template run<Tile, A_K_MAJOR, B_K_MAJOR>(acc, smem, slices, load_a, load_b, landed, issued);
        } else {
            run_with_producer<Tile, A_K_MAJOR, B_K_MAJOR>(acc, smem, slices, load_a, load_b, landed, issued);
        }
    }

  private:
    template <class Tile, bool A_K_MAJOR, bool B_K_MAJOR, class LoadA, class LoadB, class Landed, class Issued>
    __device__ static __forceinline__ void run_with_producer(float (&acc)[Tile::MI][Tile::NI][4], bf16* smem,
                                                             int slices, LoadA&& load_a, LoadB&& load_b,
                                                             Landed&& landed, Issued&& issued) {
        // Whether `landed` rewrites the staged operands with ordinary stores (the BN + ReLU map).
        constexpr bool REWRITES = !std::is_same_v<std::decay_t<Landed>, TcNothingLanded>;
        constexpr bool A_MN = A_K_MAJOR, B_MN = B_K_MAJOR;
        check_tile<Tile, A_MN, B_MN>();
        static_assert(Tile::STAGES >= 2, "a refill of one stage while the other is multiplied");
        static_assert(2 * Tile::STAGES * 8 <= kWgmmaTmaBarrierBytes, "a full and an empty barrier a stage");
        constexpr int STAGES = Tile::STAGES;
        constexpr int BN = Tile::BN;
        constexpr unsigned CONSUMER_WARPS = Tile::THREADS / 32;
        bf16* const a_tiles = wgmma_aligned(smem);
        bf16* const b_tiles = a_tiles + STAGES * Tile::A_ELEMS;
        std::uint64_t* const full = reinterpret_cast<std::uint64_t*>(b_tiles + STAGES * Tile::B_ELEMS);
        std::uint64_t* const empty = full + STAGES;

        if (threadIdx.x == 0) {
#pragma unroll
            for (int s = 0; s < STAGES; ++s) {
                mbarrier_init(&full[s], 1);
                mbarrier_init(&empty[s], CONSUMER_WARPS);
            }
            fence_mbarrier_init();
        }
        __syncthreads();  // the barriers exist before anyone waits on them or a copy completes one

        // The producer's copies of slices produced .. end - 1 (its lane 0 alone).
        int produced = 0, produce_stage = 0;
        unsigned empty_parity = 1;  // of the phase the next refill of a stage waits for, less 1
        auto produce_until = [&](int end) {
            for (; produced < end; ++produced) {
                if (produced >= STAGES) mbarrier_wait_parity(&empty[produce_stage], empty_parity);
                constexpr int bytes = (Tile::A_ELEMS + Tile::B_ELEMS) * 2;
                mbarrier_arrive_expect_tx(&full[produce_stage], bytes);
                const int k0 = produced * Tile::BK;
                load_a(a_tiles + produce_stage * Tile::A_ELEMS, k0, &full[produce_stage]);
                load_b(b_tiles + produce_stage * Tile::B_ELEMS, k0, &full[produce_stage]);
                if (++produce_stage == STAGES) {
                    produce_stage = 0;
                    empty_parity ^= 1u;
                }
            }
        };
        const bool producer = threadIdx.x == Tile::THREADS;
        // Every stage's first copy, then `issued` by every thread, the producer warp too (tc_mainloop's
        // contract: the map's table fill ends in a __syncthreads), while the copies are in flight.
        if (producer) produce_until(slices < STAGES ? slices : STAGES);
        issued();
        if (threadIdx.x >= Tile::THREADS) {
            if constexpr (hands_registers<Tile>()) setmaxnreg_dec<kWgmmaProducerRegisters>();
            if (producer) produce_until(slices);
            // A producer warpgroup leaves from here, so that no code after the pipeline runs on its
            // few registers (exit_thread, common.cuh); the kernel body returns for a producer warp
            // (tc_producer_thread).
            if constexpr (hands_registers<Tile>()) exit_thread();
            return;
        }
        if constexpr (hands_registers<Tile>()) setmaxnreg_inc<kWgmmaConsumerRegisters>();

        float* const d = &acc[0][0][0];  // the m64nBN fragment: BN / 2 floats in order
        zero_accumulators<Tile>(acc);

        std::uint64_t a_desc0, b_desc0;
        stage0_descriptors<Tile, A_MN, B_MN>(a_tiles, b_tiles, a_desc0, b_desc0);

        const bool signals = threadIdx.x % 32 == 0;  // the lane that releases stages for its warp
        int stage = 0, previous = STAGES - 1;
        unsigned full_parity = 0;  // of the read stage's barrier phase: its use count & 1
        for (int slice = 0; slice < slices; ++slice) {
            mbarrier_wait_parity(&full[stage], full_parity);
            if constexpr (REWRITES) {
                // Each consumer maps its chunks in place (ordinary stores, made visible to the async
                // proxy that wgmma reads through), then waits for the other consumers' chunks.
                landed(a_tiles + stage * Tile::A_ELEMS, b_tiles + stage * Tile::B_ELEMS, slice);
                fence_proxy_async_shared();
                named_barrier_sync(kTcConsumerBarrier, Tile::THREADS);
            }
            multiply_slice<Tile, A_MN, B_MN>(d, a_desc0, b_desc0, stage);
            // The previous slice's multiply has retired: its stage may be refilled.
            if (slice > 0 && signals) mbarrier_arrive(&empty[previous]);
            previous = stage;
            if (++stage == STAGES) {
                stage = 0;
                full_parity ^= 1u;
            }
        }
        wgmma_wait_group<0>();
        wgmma_fence_operand<BN>(d);  // the epilogue's reads of acc stay after the wait
    }
};

// Both operands by TMA through `Pipeline` (the producer warp's, which falls back to the shared one
// for the 128x256 tiles), A as the pointwise tiled box or, with IM2COL_, an im2col copy. No
// thread issues a cp.async: the loop is the waits, the copies and the multiply.
//   pointwise: a 1x1 convolution of stride 1 without padding, whose A is x itself as a 2-D
//     [N*H*W][C] matrix, a box of BM rows of BK a slice beside the weights' box; or a pointwise
//     backward-data (dy as [N*H*W][K], w's panels), or backward-filter (both as 64-wide panels).
//   im2col: any forward shape with C % BK == 0, the A tile of a slice one copy of BM output pixels at
//     the slice's tap by its BK channels (conv_tc_forward.cuh; the map's box and walk:
//     src/backend/gpu/tensor_map_im2col.rs), the weights' box beside it on the stage's barrier; and
//     stride-1 backward-data, backward-filter likewise (conv_tc_backward_*.cuh).
template <class Pipeline, bool IM2COL_>
struct TcWgmmaTmaFedLoop : Pipeline {
    using Pipeline::producer_threads;
    static constexpr bool A_BY_TMA = true, B_BY_TMA = true, IM2COL = IM2COL_;

    __device__ static __forceinline__ void load_box(bf16* tile, const void* map, int k0, int row0,
                                                    std::uint64_t* bar) {
        ::tma_load_2d(tile, map, k0, row0, bar);  // (not emu:: by ADL on bf16)
    }

    // The im2col map's BM pixels from window corner (corner_w, corner_h) of image n at filter tap
    // (r, s), channels c0.., into `tile`, completing `bar`.
    __device__ static __forceinline__ void load_pixels(bf16* tile, const void* map, int c0, int corner_w, int corner_h,
                                                       int n, int s, int r, std::uint64_t* bar) {
        ::tma_load_im2col_4d(tile, map, c0, corner_w, corner_h, n, static_cast<std::uint16_t>(s),
                             static_cast<std::uint16_t>(r), bar);
    }
};

using TcWgmmaTmaPointwiseLoop = TcWgmmaTmaFedLoop<TcWgmmaWarpSpecializedPipeline, false>;
using TcWgmmaTmaIm2colLoop = TcWgmmaTmaFedLoop<TcWgmmaWarpSpecializedPipeline, true>;


#endif
