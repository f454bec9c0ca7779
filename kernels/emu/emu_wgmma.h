// emu_wgmma.h: host implementations of Hopper's warpgroup instructions (wgmma.fence, mma_async,
// commit_group, wait_group) and of fence.proxy.async, which kernels reach through wgmma.cuh (its
// host side calls these; nvcc sees inline PTX instead).
//
// The four wgmma instructions and setmaxnreg are warpgroup collectives (`.sync.aligned`): every thread of the 4
// warps 4q .. 4q+3 offers a pointer to its operands at a rendezvous of all 128 (block.cpp), and the
// last to arrive runs the instruction for the whole warpgroup (runtime/warpgroup_matrix.cpp). A
// thread that never arrives (it returned, or waits elsewhere), a thread whose warpgroup is not 4 whole
// warps of the block (a block may end in a partial one that never executes them), or threads that disagree (different instructions, descriptors, transposes,
// counts) make the launch fail with a message.
//
// mma_async is asynchronous as on the hardware: the product is computed at issue from the shared
// memory it reads then, kept in flight, and the thread's accumulators are set to NaN at once, so a
// kernel that reads them before a wait_group retiring the op sees NaN. wait_group writes the results
// and fails the launch if the shared memory an op read changed in between (the hardware may read it
// at any time until then). See warpgroup_matrix.cpp for every rule checked.
//
// Shared-memory window: descriptors hold addresses in the block's shared window. Here only dynamic
// shared memory is in the window, at offset kDynamicSharedWindowOffset = 1024 (sm_80 and newer keep
// the first 1 KiB of a block's shared memory for the system, so a kernel without static shared
// memory finds its dynamic shared memory at a 1024-byte multiple, which is what the 128-byte swizzle
// pattern needs). Operands in static __shared__ arrays (thread-local variables in the emulator, not
// in any window) are rejected.
#ifndef RESNET_CUDA_EMU_WGMMA_H
#define RESNET_CUDA_EMU_WGMMA_H

#include <cstddef>
#include <cstdint>

#include "emu_sync.h"

namespace emu {

constexpr std::uint32_t kDynamicSharedWindowOffset = 1024;

enum class WarpgroupOp : int { fence, mma_async, commit, wait, setmaxnreg_inc, setmaxnreg_dec };

// One thread's operands of wgmma.mma_async.m64nNk16 (the descriptors must agree across the warpgroup).
struct WgmmaLane {
    float* d;  // N/2 accumulators
    std::uint64_t a_desc;
    std::uint64_t b_desc;
    int n;
    bool a_mn_major;  // imm-trans-a: A stored MN-major (M-major)
    bool b_mn_major;  // imm-trans-b: B stored MN-major (N-major)
};

// The warpgroup rendezvous (runtime/block.cpp): `lane` is a WgmmaLane* for mma_async, else null;
// `arg` is N for mma_async, the pending-group count for wait and the register count for setmaxnreg.
void warpgroup_rendezvous(WarpgroupOp op, void* lane, int arg);

// The compiler barriers keep values the kernel keeps in memory (accumulators whose address escaped,
// static shared arrays) from being cached across the call, as in emu_sync.h.
inline void wgmma_collective(WarpgroupOp op, WgmmaLane* lane, int arg) {
    compiler_fence();
    warpgroup_rendezvous(op, lane, arg);
    compiler_fence();
}

// Other runtime entry points (runtime/warpgroup_matrix.cpp).
void fence_proxy_async_shared();
// The current thread wrote the 16 shared-memory bytes at `dst` with ordinary stores (generic proxy):
// a wgmma may read them only after a fence.proxy.async, as after a cp.async landing. Kernels that
// rewrite staged operands in place call it (conv_tc_bn_input.cuh), so the emulator checks their fence.
void note_generic_shared_store(const void* dst);
// `bytes` of shared memory from `dst` were written by the async proxy (a bulk tensor copy, emu_tma.h):
// a wgmma may read them with no proxy fence, whatever generic stores were there before.
void note_async_proxy_shared_write(const void* dst, std::size_t bytes);
// The window address of `p`, which must lie in the block's dynamic shared memory.
std::uint32_t shared_window_address(const void* p);
// The window address of a descriptor's start, after checking what the hardware would silently drop
// (a start not 16-byte aligned, byte offsets not multiples of 16 or too large for the 14-bit fields).
std::uint32_t wgmma_checked_start(const void* p, std::uint32_t leading_byte_offset, std::uint32_t stride_byte_offset);

}  // namespace emu

#endif
