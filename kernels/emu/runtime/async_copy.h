// async_copy.h: the block scheduler's hook into cp.async's per-thread queues (async_copy.cpp).
#ifndef RESNET_CUDA_EMU_ASYNC_COPY_H
#define RESNET_CUDA_EMU_ASYNC_COPY_H

namespace emu {

// Empties every thread's queue for a new block of `num_threads` threads on this worker. Copies a
// block never waited for are dropped: nothing may read their destination without a wait.
void async_copy_block_start(unsigned num_threads);

}  // namespace emu

#endif
