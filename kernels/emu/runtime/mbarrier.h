// mbarrier.h: the block scheduler's hooks into the mbarrier state (mbarrier.cpp).
#ifndef RESNET_CUDA_EMU_MBARRIER_H
#define RESNET_CUDA_EMU_MBARRIER_H

namespace emu {

// Forgets every barrier for a new block on this worker. Copies a block never waited for are dropped:
// nothing may read their destination without a wait.
void mbarrier_block_start();
// Delivers every bulk copy still in flight (the scheduler calls it when every thread waits): returns
// whether there was one, since a delivery may complete a phase and wake its waiters.
bool mbarrier_deliver_all();

}  // namespace emu

#endif
