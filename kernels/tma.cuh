// tma.cuh: Hopper's shared-memory barriers (mbarrier) and the tensor memory accelerator's tiled 2-D
// load (cp.async.bulk.tensor), the building blocks of a wgmma main loop fed by one thread's bulk
// copies instead of every thread's cp.async (docs/plans/hopper-tma.md). sm_90 or newer: include it
// only from `*_sm90a.cu` files.
//
// Under nvcc each function is one PTX instruction (inline asm) or a try_wait loop; in the host
// emulator the same calls go to emu_tma.h (runtime/mbarrier.cpp), which states the semantics the
// emulator implements and checks (tests/tma.rs against a scalar reference, on a GPU too).
//
// Usage, one stage:
//   thread 0:     mbarrier_init(bar, 1); fence_mbarrier_init();   then __syncthreads()
//   producer:     tma_acquire_map(map) once, then per stage
//                 mbarrier_arrive_expect_tx(bar, box bytes); tma_load_2d(tile, map, x, y, bar);
//   every reader: mbarrier_wait_parity(bar, phase); ... read the tile ...; phase ^= 1 for the next use
// `map` is the address of a tensor map (Driver::encode_tensor_map_2d): a `const __grid_constant__
// TmaMap` kernel parameter's (the convolutions: no upload, and no tma_acquire_map needed), or one
// uploaded to global memory before the launch and not written while kernels read it (the selftest,
// which then runs tma_acquire_map first); `tile` a 128-byte aligned place in dynamic shared
// memory (1024-byte aligned for the 128-byte swizzle, whose pattern follows the address bits); `bar`
// an 8-byte aligned std::uint64_t in shared memory.
#ifndef RESNET_CUDA_TMA_CUH
#define RESNET_CUDA_TMA_CUH

#include <cstdint>

#include "common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "tma.cuh needs sm_90 or newer (mbarrier transaction counts, cp.async.bulk.tensor)"
#endif

// A tensor map passed by value as a kernel parameter, `const __grid_constant__ TmaMap map` (the way
// CUDA means maps to travel: in the parameter space, no upload and no tensormap-proxy fence, `&map`
// is what the copies take). 128 bytes; CUtensorMap's 64-byte alignment under nvcc. The emulator
// copies parameters out of 8-byte words (a recorded graph's too), so its copy asks for no more.
#ifdef __CUDACC__
struct alignas(64) TmaMap {
    std::uint64_t opaque[16];
};
#else
struct TmaMap {
    std::uint64_t opaque[16];
};
#endif
static_assert(sizeof(TmaMap) == 128, "a tensor map is 128 bytes");

#ifdef __CUDACC__
__device__ __forceinline__ std::uint32_t tma_shared_address(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// mbarrier.init.shared::cta.b64: `count` arrivals complete each phase; the first phase has parity 0.
__device__ __forceinline__ void mbarrier_init(std::uint64_t* bar, unsigned count) {
#ifdef __CUDACC__
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(tma_shared_address(bar)), "r"(count) : "memory");
#else
    emu::mbarrier_init(bar, count);
#endif
}

// fence.mbarrier_init.release.cluster: the initialising thread makes its inits visible to the async
// proxy (the bulk copies that complete on them) before the barrier that publishes them.
__device__ __forceinline__ void fence_mbarrier_init() {
#ifdef __CUDACC__
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

// mbarrier.arrive.expect_tx.shared::cta.b64: `bytes` more transaction bytes for the current phase,
// then this thread's arrival.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint64_t* bar, unsigned bytes) {
#ifdef __CUDACC__
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(tma_shared_address(bar)), "r"(bytes)
                 : "memory");
#else
    emu::mbarrier_arrive(bar, bytes);
#endif
}

// mbarrier.arrive.shared::cta.b64: this thread's arrival.
__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* bar) {
#ifdef __CUDACC__
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(tma_shared_address(bar)) : "memory");
#else
    emu::mbarrier_arrive(bar, 0);
#endif
}

// Returns once the phase of parity `parity` (0 or 1) has completed: mbarrier.try_wait.parity in a loop.
__device__ __forceinline__ void mbarrier_wait_parity(std::uint64_t* bar, unsigned parity) {
#ifdef __CUDACC__
    const std::uint32_t addr = tma_shared_address(bar);
    std::uint32_t done = 0;
    do {
        asm volatile(
            "{\n\t.reg .pred p;\n\t"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
            "selp.u32 %0, 1, 0, p;\n\t}"
            : "=r"(done)
            : "r"(addr), "r"(parity)
            : "memory");
    } while (!done);
#else
    emu::mbarrier_wait_parity(bar, parity);
#endif
}

// fence.proxy.tensormap::generic.acquire.gpu on the map's 128 bytes: the copy engine reads a tensor
// map through the tensormap proxy, which may hold an earlier map that lived at the same global
// address (device memory is reused from launch to launch); the thread that issues copies through
// `map` runs this once first.
__device__ __forceinline__ void tma_acquire_map(const void* map) {
#ifdef __CUDACC__
    asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" ::"l"(map) : "memory");
#else
    (void)map;
#endif
}

// cp.async.bulk.tensor.2d, tiled mode: the map's box at element coordinates (x along the contiguous
// dimension, y along rows) into `dst`, completing `bar`'s transaction bytes (the whole box's, out of
// bounds elements being zeros) when it lands. One thread issues it.
__device__ __forceinline__ void tma_load_2d(void* dst, const void* map, int x, int y, std::uint64_t* bar) {
#ifdef __CUDACC__
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
            tma_shared_address(dst)),
        "l"(map), "r"(x), "r"(y), "r"(tma_shared_address(bar))
        : "memory");
#else
    emu::tma_load_2d(dst, map, x, y, bar);
#endif
}

// cp.async.bulk.tensor.4d, im2col mode: `pixels` rows of `channels` elements (the map's, made by
// Driver::encode_tensor_map_im2col over an NHWC tensor: src/backend/gpu/tensor_map_im2col.rs states
// the walk) starting at channel c of pixel (n, h + off_h, w + off_w), the pixels walked through the
// map's pixel box shifted by (off_h, off_w), into `dst` with the map's swizzle, completing `bar`'s
// transaction bytes (the whole box's; elements outside the tensor are zeros). One thread issues it.
__device__ __forceinline__ void tma_load_im2col_4d(void* dst, const void* map, int c, int w, int h, int n,
                                                   std::uint16_t off_w, std::uint16_t off_h, std::uint64_t* bar) {
#ifdef __CUDACC__
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes "
        "[%0], [%1, {%2, %3, %4, %5}], [%6], {%7, %8};" ::"r"(tma_shared_address(dst)),
        "l"(map), "r"(c), "r"(w), "r"(h), "r"(n), "r"(tma_shared_address(bar)), "h"(off_w), "h"(off_h)
        : "memory");
#else
    emu::tma_load_im2col_4d(dst, map, c, w, h, n, off_w, off_h, bar);
#endif
}

#endif
