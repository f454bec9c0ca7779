// warpgroup_matrix.h: the block scheduler's hooks into the wgmma emulation (warpgroup_matrix.cpp).
#ifndef RESNET_CUDA_EMU_WARPGROUP_MATRIX_H
#define RESNET_CUDA_EMU_WARPGROUP_MATRIX_H

#include <cstddef>
#include <string>

#include "../cuda_emu.h"

namespace emu {

// Forgets every warpgroup's in-flight operations and the proxy-fence records, for a new block of
// `num_threads` threads on this worker whose dynamic shared memory is `dynamic_bytes` at `dynamic`.
void wgmma_block_start(unsigned num_threads, void* dynamic, std::size_t dynamic_bytes);

// Runs one warpgroup instruction for all 128 threads of warpgroup `warpgroup`, once all arrived;
// `threads` are its ThreadContexts, each with its WgmmaLane* in `offered` and its arg in `op_arg`.
// Misuse ends the launch (kernel_error).
void complete_warpgroup_op(WarpgroupOp op, unsigned warpgroup, ThreadContext* threads);

// Called when every thread of the block has returned: false, with `error` set, if the block broke a
// rule only its end shows (a setmaxnreg.inc with no setmaxnreg.dec in the block).
bool wgmma_block_finished(std::string* error);

// Called when a thread returns: an error if its warpgroup still has wgmma operations in flight.
void wgmma_thread_exited(const ThreadContext* t);

// cp.async (async_copy.cpp) landed 16 bytes at `dst` for the current thread: a generic-proxy write
// that a wgmma may read only after a fence.proxy.async (as note_generic_shared_store, emu_wgmma.h).
void note_cp_async_landing(const void* dst);

// Which names how a warpgroup instruction is reported, e.g. "wgmma.fence.sync.aligned".
const char* warpgroup_op_name(WarpgroupOp op);

// The block's barrier generation (block.cpp): how many __syncthreads have completed in this block.
unsigned barrier_generation();

}  // namespace emu

#endif
