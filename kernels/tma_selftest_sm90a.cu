// tma_selftest_sm90a.cu: kernels that exercise tma.cuh (tests/tma.rs); no model uses them. The
// `_sm90a` suffix: nvcc builds this file for sm_90a only; the emulator builds it like every other .cu.
//
// tma_selftest_load_2d(map, out, x, y, box_bytes, mode, window): block (128, 1, 1), grid (1, 1, 1);
// window[0] = the shared-window address of the dynamic shared memory (the swizzle follows the
// address bits, so the reference needs it; a kernel without static shared memory has it at a
// 1024-byte multiple on sm_80 and newer, and at 1024 in the emulator). Dynamic
// shared memory: the tile at offset 0 (box_bytes, a multiple of 16) then the mbarrier (launch with
// box_bytes + 16 bytes, or 2 box_bytes + 16 for mode 4). The threads zero the tiles; thread 0
// initialises the barrier (count 1, or 2 in mode 3) and fences the init; after a __syncthreads,
// thread 0 announces box_bytes and issues the copy of the map's box at (x, y). (Each thread's
// fence.proxy.async orders its zeros before the copy's writes, as the PTX memory model asks when the
// generic and the async proxy write the same bytes.) out receives the tile's raw shared-memory contents (16-bit words,
// swizzled as the copy stored them), written by all threads.
//   mode 0: every thread waits for phase 0, then copies the tile to out[0 .. box_bytes / 2).
//   mode 1: (wrong) after a __syncthreads that follows the issue, the tile is copied before the wait
//           (then a __syncthreads and the wait, so nothing is in flight at the end): the emulator's
//           poison shows in out, where the zeros would be if the copy had not touched the tile yet.
//           (The emulator lands a copy when the first thread waits on its barrier, so the reads
//           must all come before that to see the poison.)
//   mode 2: (wrong) the expect_tx announces box_bytes / 2: the copy delivers more than announced.
//   mode 3: (wrong) init with count 2 and one arrival: the phase never completes (deadlock).
//   mode 4: two phases of one barrier: the box at (x, y) into tile 0, waited with parity 0 and copied
//           to out[0 ..]; then (after a __syncthreads) the box at (x, y + 1) into tile 1 (offset
//           box_bytes; the barrier moves to 2 box_bytes), waited with parity 1, copied to
//           out[box_bytes / 2 ..].
#include "tma.cuh"
#include "wgmma.cuh"  // fence_proxy_async_shared

extern "C" __global__ void tma_selftest_load_2d(const void* map, unsigned short* out, int x, int y, int box_bytes,
                                                int mode, unsigned* window) {
    grid_dependency_sync();
    unsigned char* smem = dynamic_shared_memory<unsigned char>();
    if (threadIdx.x == 0) window[0] = shared_window_address(smem);
    const int tiles = mode == 4 ? 2 : 1;
    auto* bar = reinterpret_cast<std::uint64_t*>(smem + tiles * box_bytes);
    const auto* tile = reinterpret_cast<const unsigned short*>(smem);
    const int words = box_bytes / 2;
    for (int i = threadIdx.x; i < tiles * words; i += blockDim.x) reinterpret_cast<unsigned short*>(smem)[i] = 0;
    // The zeros (generic proxy) ordered before the copy's async-proxy writes to the same bytes.
    fence_proxy_async_shared();
    if (threadIdx.x == 0) {
        mbarrier_init(bar, mode == 3 ? 2 : 1);
        fence_mbarrier_init();
        tma_acquire_map(map);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mbarrier_arrive_expect_tx(bar, mode == 2 ? box_bytes / 2 : box_bytes);
        tma_load_2d(smem, map, x, y, bar);
    }
    if (mode == 1) {
        __syncthreads();
        for (int i = threadIdx.x; i < words; i += blockDim.x) out[i] = tile[i];
        __syncthreads();  // every read done before any thread's wait completes the copy
        mbarrier_wait_parity(bar, 0);
        return;
    }
    mbarrier_wait_parity(bar, 0);
    for (int i = threadIdx.x; i < words; i += blockDim.x) out[i] = tile[i];
    if (mode != 4) return;
    __syncthreads();
    if (threadIdx.x == 0) {
        mbarrier_arrive_expect_tx(bar, box_bytes);
        tma_load_2d(smem + box_bytes, map, x, y + 1, bar);
    }
    mbarrier_wait_parity(bar, 1);
    for (int i = threadIdx.x; i < words; i += blockDim.x) out[words + i] = tile[words + i];
}
EMU_REGISTER(tma_selftest_load_2d);

// tma_selftest_load_im2col(map, out, c, w, h, n, off_w, off_h, box_bytes, window): as mode 0 of
// tma_selftest_load_2d (block (128, 1, 1), grid (1, 1, 1), dynamic shared memory box_bytes + 16,
// window[0] the tile's shared-window address, out the tile's raw 16-bit words), the copy being
// tma_load_im2col_4d of the im2col map at (c, w, h, n) with filter offsets (off_w, off_h).
extern "C" __global__ void tma_selftest_load_im2col(const void* map, unsigned short* out, int c, int w, int h, int n,
                                                    int off_w, int off_h, int box_bytes, unsigned* window) {
    grid_dependency_sync();
    unsigned char* smem = dynamic_shared_memory<unsigned char>();
    if (threadIdx.x == 0) window[0] = shared_window_address(smem);
    auto* bar = reinterpret_cast<std::uint64_t*>(smem + box_bytes);
    const auto* tile = reinterpret_cast<const unsigned short*>(smem);
    const int words = box_bytes / 2;
    for (int i = threadIdx.x; i < words; i += blockDim.x) reinterpret_cast<unsigned short*>(smem)[i] = 0;
    fence_proxy_async_shared();
    if (threadIdx.x == 0) {
        mbarrier_init(bar, 1);
        fence_mbarrier_init();
        tma_acquire_map(map);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mbarrier_arrive_expect_tx(bar, box_bytes);
        tma_load_im2col_4d(smem, map, c, w, h, n, static_cast<std::uint16_t>(off_w), static_cast<std::uint16_t>(off_h),
                           bar);
    }
    mbarrier_wait_parity(bar, 0);
    for (int i = threadIdx.x; i < words; i += blockDim.x) out[i] = tile[i];
}
EMU_REGISTER(tma_selftest_load_im2col);
