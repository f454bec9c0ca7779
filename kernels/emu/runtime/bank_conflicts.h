// bank_conflicts.h: counts the shared-memory bank conflicts of ldmatrix and of 16-byte cp.async stores
// (bank_conflicts.cpp), so that tests can prove a kernel's shared-memory layout conflict-free without a
// GPU and its profiler.
//
// Model. Shared memory has 32 banks of 4 bytes: byte address a lies in bank (a / 4) % 32, and a bank
// serves one 4-byte word per cycle ("wavefront"); several accesses to the same word are one (a
// broadcast, or for stores one write). A request's cost is therefore, over the banks, the largest
// number of distinct words of one bank that its accesses touch (at least 1). Which accesses form one
// request:
//   - ldmatrix .x1/.x2/.x4 (.trans or not) is served one 8x8 matrix at a time: the 8 row addresses of
//     matrix m (lanes 8m .. 8m+7, 16 bytes each, 128 bytes in all, what one wavefront can return) form
//     one request. Ideal: 1 wavefront per matrix, reached when the 8 rows fall in the 8 different
//     16-byte bank groups of a 128-byte line (or repeat a row exactly).
//   - 16-byte cp.async stores (like any 16-byte shared access) are served a quarter warp at a time:
//     lanes 8q .. 8q+7 (128 bytes) form one request. Ideal: 1 wavefront per quarter that has any lane.
// The PTX ISA does not describe banks; this is the model the project's issue states (the one in which
// Nsight Compute's "wavefronts per request" of shared loads and stores are usually explained), and we
// found no public NVIDIA description that differs.
//
// Which cp.async are "issued together": each emulated thread issues its copies on its own, so the
// emulator groups lane l's k-th cp.async with the k-th of the other lanes of its warp, counting k from
// the last __syncthreads (a warp cannot be converged across a barrier it has not passed). That is what
// the hardware does when the warp is converged at its copies, or diverges only by some lanes issuing
// fewer at the end (a partial last chunk); lanes without a k-th copy do not take part in request k. A
// lane that skipped a copy in the middle would have its later copies grouped with the wrong ones; the
// convolution loaders never do (a lane's chunks are all its warp's, or a prefix of them). The groups
// are evaluated when a barrier releases (every thread is past the interval) and when the block ends.
// Costs are independent of the schedule: a record is keyed by (warp, k, lane), not by arrival order.
//
// Addresses: host addresses of the emulated shared memory. For accesses aligned to 16 bytes (the only
// ones here; ldmatrix and cp.async check it), the cost depends only on which accesses share a 16-byte
// bank group (address bits 4-6) at different addresses, which shifting every address by a common
// multiple of 16 does not change: so it does not matter where the emulator placed a shared array.
//
// Counters are per OS worker thread (bank_take_worker_counts), summed per launch by launch.cpp and
// handed to the thread that launched (emu_take_bank_conflicts).
#ifndef RESNET_CUDA_EMU_BANK_CONFLICTS_H
#define RESNET_CUDA_EMU_BANK_CONFLICTS_H

#include <cstdint>

namespace emu {

struct BankCounts {
    unsigned long long ldmatrix_matrices = 0;  // 8x8 matrices loaded (requests)
    unsigned long long ldmatrix_excess = 0;    // wavefronts beyond 1 per matrix
    unsigned long long cp_async_requests = 0;  // quarter-warp requests with at least one 16-byte cp.async
    unsigned long long cp_async_excess = 0;    // wavefronts beyond 1 per request

    void add(const BankCounts& o) {
        ldmatrix_matrices += o.ldmatrix_matrices;
        ldmatrix_excess += o.ldmatrix_excess;
        cp_async_requests += o.cp_async_requests;
        cp_async_excess += o.cp_async_excess;
    }
};

// Wavefronts of one request made of `n` 16-byte accesses at the 16-byte aligned `addresses`.
int wavefronts_16(const std::uintptr_t* addresses, int n);

// ldmatrix: one matrix whose 8 rows (16-byte aligned) are at `rows`.
void bank_note_ldmatrix_matrix(const std::uintptr_t rows[8]);

// A new block of `num_threads` threads on this worker: forgets the cp.async records.
void bank_block_start(unsigned num_threads);
// cp.async: the current thread (warp `warp`, lane `lane`, linear index `linear`) stores 16 bytes at
// `dst` (16-byte aligned).
void bank_note_cp_async(unsigned linear, unsigned warp, unsigned lane, const void* dst);
// Every thread of the block is past the interval of the recorded copies (a barrier released, or the
// block ended): counts their requests and forgets them.
void bank_flush_cp_async();

// This worker's counts since the last call, reset to zero.
BankCounts bank_take_worker_counts();

}  // namespace emu

#endif
