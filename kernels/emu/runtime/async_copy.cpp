// async_copy.cpp: cp.async.cg.shared.global with its commit and wait groups, per CUDA thread.
//
// PTX semantics kept: a copy belongs to no group until cp.async.commit_group closes the open group
// (an empty group when nothing was issued since the last commit); cp.async.wait_group N returns once
// at most the N most recent committed groups are still pending, so it retires the oldest groups
// first; cp.async.wait_all also waits for copies not yet committed. The order in which a thread's
// copies land before a wait is unspecified on the hardware; here they all land at the wait, which is
// one of the allowed outcomes and the one that exposes a missing wait: at issue the 16 destination
// bytes are filled with 0xff (a NaN as bf16 and as f32), and the source is read only when the group
// retires. Other threads see the data after the issuing thread's wait and a barrier, as on a GPU.
#include "async_copy.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <vector>

#include "../cuda_emu.h"
#include "bank_conflicts.h"
#include "warpgroup_matrix.h"

namespace emu {
namespace {

struct Copy {
    unsigned char* dst;
    const unsigned char* src;
    int src_bytes;
};

struct ThreadQueue {
    std::vector<Copy> open;               // issued since the last commit
    std::deque<std::vector<Copy>> groups; // committed, oldest first
};

// The running block's queues, indexed by the thread's linear index. One block runs at a time per
// worker, so a per-OS-thread table is per block.
thread_local std::vector<ThreadQueue> queues;
// Whether any thread of this worker issued or committed since the queues were last emptied: blocks of
// kernels without cp.async then cost nothing here.
thread_local bool queues_used = false;

ThreadQueue& my_queue() {
    queues_used = true;
    return queues[emu_current_thread->linear];
}

void land(const Copy& c) {
    std::memcpy(c.dst, c.src, static_cast<std::size_t>(c.src_bytes));
    std::memset(c.dst + c.src_bytes, 0, static_cast<std::size_t>(16 - c.src_bytes));
    // A generic-proxy write, completed now (at the issuing thread's wait): a wgmma may read it only
    // after a fence.proxy.async (warpgroup_matrix.cpp).
    note_cp_async_landing(c.dst);
}

}  // namespace

void async_copy_block_start(unsigned num_threads) {
    if (queues.size() < num_threads) queues.resize(num_threads);
    if (!queues_used) return;
    for (ThreadQueue& q : queues) {
        q.open.clear();
        q.groups.clear();
    }
    queues_used = false;
}

void cp_async_16(void* dst, const void* src, int src_bytes) {
    char buf[200];
    if (src_bytes < 0 || src_bytes > 16) {
        std::snprintf(buf, sizeof buf, "cp.async.cg with src_size %d (must be 0 to 16)", src_bytes);
        kernel_error(buf);
    }
    // cp.async requires both addresses aligned to the copy size, the source even when a src_size of
    // 0 reads none of it (the PTX ISA states no exception; kernels pass the tensor's base then).
    const bool src_misaligned = reinterpret_cast<std::uintptr_t>(src) % 16 != 0;
    if (reinterpret_cast<std::uintptr_t>(dst) % 16 != 0 || src_misaligned) {
        std::snprintf(buf, sizeof buf, "cp.async.cg of 16 bytes from %p to %p: both must be 16-byte aligned", src,
                      dst);
        kernel_error(buf);
    }
    auto* d = static_cast<unsigned char*>(dst);
    const ThreadContext* t = emu_current_thread;
    bank_note_cp_async(t->linear, t->warp, t->lane, d);  // its shared-memory store's request (bank_conflicts.h)
    std::memset(d, 0xff, 16);
    my_queue().open.push_back(Copy{d, static_cast<const unsigned char*>(src), src_bytes});
}

void cp_async_commit() {
    ThreadQueue& q = my_queue();
    q.groups.push_back(std::move(q.open));
    q.open.clear();
}

void cp_async_wait(int pending) {
    ThreadQueue& q = my_queue();
    const std::size_t keep = pending < 0 ? 0 : static_cast<std::size_t>(pending);
    while (q.groups.size() > keep) {
        for (const Copy& c : q.groups.front()) land(c);
        q.groups.pop_front();
    }
}

void cp_async_wait_all() {
    cp_async_commit();
    cp_async_wait(0);
}

}  // namespace emu
