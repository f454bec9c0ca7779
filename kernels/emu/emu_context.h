// emu_context.h: where threadIdx, blockIdx, blockDim, gridDim and dynamic shared memory come from.
//
// All CUDA threads of a block run as fibers on one OS worker thread, so per-block values (blockIdx,
// the dimensions, the dynamic shared buffer) are per-OS-thread variables, and per-thread values live in
// a ThreadContext that the scheduler points `emu_current_thread` at before it resumes a fiber. The
// builtins are macros that read through that pointer, so every fiber sees its own threadIdx.
#ifndef RESNET_CUDA_EMU_CONTEXT_H
#define RESNET_CUDA_EMU_CONTEXT_H

#include "emu_types.h"

namespace emu {

// One CUDA thread of the running block.
struct ThreadContext {
    uint3 idx;              // threadIdx
    unsigned linear;        // x + y Dx + z Dx Dy: the order CUDA groups threads into warps
    unsigned lane;          // linear % 32
    unsigned warp;          // linear / 32
    // Warp-exchange slots: what this lane offered, and what the rendezvous computed for it.
    unsigned long long offered;
    int op_arg;
    int op_width;
    unsigned long long result;
    // Whether the thread called grid_dependency_sync() (common.cuh), which every kernel must.
    bool grid_synced;
};

// The running block, as seen by its threads.
struct BlockContext {
    uint3 idx;              // blockIdx
    dim3 block_dim;         // blockDim
    dim3 grid_dim;          // gridDim
    void* dynamic_shared;   // the launch's dynamic shared memory for this block
};

}  // namespace emu

// `__thread`, not `thread_local`: these are accessed in every kernel's hot loops, and a `thread_local`
// declared `extern` goes through a TLS wrapper call on each access.
extern __thread emu::ThreadContext* emu_current_thread;
extern __thread emu::BlockContext emu_current_block;

#define threadIdx (emu_current_thread->idx)
#define blockIdx (emu_current_block.idx)
#define blockDim (emu_current_block.block_dim)
#define gridDim (emu_current_block.grid_dim)

namespace emu {
// The dynamic shared memory of the running block (aligned to 1024 bytes, sized by the launch, filled
// with 0xff bytes at block start so that a kernel relying on zeroed shared memory fails visibly).
inline void* dynamic_shared() { return emu_current_block.dynamic_shared; }
// grid_dependency_sync() under the emulator: launches already run one after another; the thread
// only records that it made the call, which the block scheduler checks when it returns.
inline void grid_dependency_synced() { emu_current_thread->grid_synced = true; }
}  // namespace emu

#endif
