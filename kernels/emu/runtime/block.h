// block.h: runs one thread block of a launch on the calling OS thread.
//
// Every CUDA thread of the block runs on a fiber, started lazily: a "runner" fiber executes threads
// one after another as plain calls, so a kernel that never waits runs its whole block as a loop on a
// single fiber with no switch at all. Only when a thread blocks (a barrier, a warp intrinsic or a
// wgmma warpgroup instruction) does its runner stay with it, and a new runner takes the next thread.
// So barrier-free kernels get the plain loop DESIGN.md asks for, and cooperative ones get one fiber
// per waiting thread, without any per-kernel flag to keep right.
//
// Scheduling is deterministic: the order threads run in depends only on the kernel, the launch and its
// Schedule. A correct kernel gives the same result under every schedule, since the hardware promises
// no order between warps; a kernel that reads shared memory another warp writes without a barrier in
// between gives a different one under some schedule, which is how the emulator finds missing barriers.
#ifndef RESNET_CUDA_EMU_BLOCK_H
#define RESNET_CUDA_EMU_BLOCK_H

#include <memory>
#include <string>
#include <vector>

#include "../cuda_emu.h"
#include "fiber.h"

namespace emu {

// Largest dynamic shared memory a launch may ask for: sm_90's 227 KiB per block, reachable only by a
// kernel that opted in (emu_set_max_dynamic_shared, as cuFuncSetAttribute with
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES on a GPU).
constexpr unsigned kMaxDynamicShared = 227 * 1024;
// What a kernel may use without opting in: 48 KiB, the hardware's default limit for every block.
constexpr unsigned kDefaultDynamicShared = 48 * 1024;

// The order a block's threads take turns in between rendezvous (barriers and warp intrinsics).
enum class Schedule : int {
    // A blocked fiber hands over to the next ready one in fiber order: the warps advance side by side,
    // one rendezvous at a time. The default, and the fastest.
    round_robin = 0,
    // The lowest-numbered ready thread always runs next, and threads start in order: warp 0 runs
    // ahead until it waits at __syncthreads (or returns) before warp 1 takes a step, and within a warp
    // lane 0 goes first. A warp that writes shared memory before the barrier that should protect
    // another warp's reads of it overwrites them before they happen.
    first_ahead = 1,
    // The mirror image: threads start from the last one, and the highest-numbered ready thread runs
    // next, so the last warp runs ahead. Finds the same hazards with reader and writer swapped.
    last_ahead = 2,
};

// What every block of one launch shares.
struct Launch {
    const char* kernel_name;
    Trampoline run;
    void** params;
    dim3 grid;
    dim3 block;
    unsigned dynamic_shared_bytes;
    Schedule schedule;
};

class BlockRunner;

// Thrown by exit_thread() (PTX `exit`) and caught where the runner called the kernel: it unwinds the
// CUDA thread's calls, whatever their depth, on its own fiber's stack.
struct ThreadExit {};

// The runner of the block the calling worker thread executes (for the intrinsics' runtime code).
BlockRunner* current_block_runner();

enum class FiberState : unsigned char {
    idle,
    running,
    ready,
    wait_block,
    wait_warp,
    wait_warpgroup,
    wait_mbarrier,
    wait_named,
};

struct Fiber {
    Context ctx;
    Stack stack;
    BlockRunner* owner = nullptr;
    ThreadContext* thread = nullptr;  // the CUDA thread running on this fiber now
    FiberState state = FiberState::idle;
    unsigned index = 0;               // position in the runner's fiber list
    unsigned wait_mask = 0;           // for deadlock reports: the warp mask it waits on
    const void* wait_object = nullptr;  // the mbarrier it waits on (wait_mbarrier)
    ~Fiber() { free_stack(stack); }
};

// Lanes of one warp that met at a warp intrinsic with the same mask and are waiting for the rest.
struct WarpGroup {
    unsigned mask;
    unsigned arrived;
    WarpOp op;
};

// Threads of one warpgroup (warps 4q .. 4q+3) that met at a wgmma instruction (emu_wgmma.h).
struct WarpgroupMeeting {
    unsigned arrived = 0;
    WarpgroupOp op = WarpgroupOp::fence;
};

struct WarpState {
    unsigned exists = 0;  // lanes present in this warp (the last warp of a block may be partial)
    unsigned exited = 0;  // lanes whose thread has returned
    std::vector<WarpGroup> open;
};

// One per OS worker thread; reuses its fibers, stacks and buffers from block to block.
class BlockRunner {
public:
    BlockRunner();
    ~BlockRunner();
    BlockRunner(const BlockRunner&) = delete;
    BlockRunner& operator=(const BlockRunner&) = delete;

    // Runs block `block_idx` of `launch` to completion. On failure (deadlock, misuse of an intrinsic,
    // __trap) returns false with a message naming the kernel, block and thread.
    bool run(const Launch& launch, uint3 block_idx, std::string* error);

    // Entry points for the intrinsics (emu_sync.h), called from a fiber of the running block.
    int block_barrier(BarrierKind kind, int predicate);
    // bar.sync id, threads (a named barrier, emu_sync.h).
    void named_barrier(unsigned id, unsigned threads);
    unsigned long long warp_rendezvous(unsigned mask, WarpOp op, unsigned long long value, int arg, int width);
    // A wgmma instruction: all 128 threads of the caller's warpgroup meet; the last one runs it.
    void warpgroup_rendezvous(WarpgroupOp op, void* lane, int arg);
    // An mbarrier wait (mbarrier.cpp): the calling thread sleeps until wake_mbarrier_waiters(bar).
    void wait_on_mbarrier(const void* bar);
    // Makes every thread waiting on `bar` ready (its phase completed; each checks its parity again).
    void wake_mbarrier_waiters(const void* bar);
    // Completed __syncthreads in this block so far.
    unsigned barrier_generation() const { return generation_; }
    // Ends the block with an error. Takes a C string: the calling fiber is abandoned, so a temporary
    // std::string in its frame would never be destroyed.
    [[noreturn]] void fail(const char* what);

private:
    static void runner_entry(void* fiber);
    [[noreturn]] void runner_loop(Fiber* self);
    Fiber* start_runner();
    void switch_away(bool finished);
    void yield_turn();
    void mark_ready(Fiber* f);
    Fiber* take_ready_in_thread_order();
    void resume(Fiber* from, Fiber* to, bool finished);
    void thread_exited(ThreadContext* t);
    void release_barrier();
    void complete_warp_group(WarpState& w, const WarpGroup& g, unsigned expected);
    void wake_warp_group(ThreadContext* lanes, unsigned expected);
    std::string deadlock_report() const;
    std::string where(const ThreadContext* t) const;

    const Launch* launch_ = nullptr;
    uint3 block_idx_{0, 0, 0};
    Context main_;                                // the worker's own stack: the scheduler
    std::vector<std::unique_ptr<Fiber>> fibers_;  // slots; the first `used_` belong to this block
    unsigned used_ = 0;
    unsigned ready_count_ = 0;  // fibers in state `ready`
    Fiber* current_ = nullptr;

    dim3 shape_{0, 0, 0};  // the block shape threads_ and warps_ were built for
    std::vector<ThreadContext> threads_;
    std::vector<Fiber*> fiber_of_thread_;  // set while a thread waits at a barrier or warp intrinsic
    // Under first_ahead and last_ahead: bit i set while thread i's fiber is ready (64 threads a word).
    std::vector<unsigned long long> ready_threads_;
    unsigned num_threads_ = 0;
    unsigned next_thread_ = 0;  // first thread not started yet
    unsigned live_ = 0;         // threads not yet returned

    // __syncthreads: arrivals of the open generation; results double-buffered by generation parity,
    // since a released thread may arrive at the next barrier before a slower one read its result.
    unsigned arrived_ = 0;
    unsigned generation_ = 0;
    unsigned predicate_count_[2] = {0, 0};
    unsigned barrier_count_[2] = {0, 0};
    unsigned barrier_total_[2] = {0, 0};

    // Named barriers 1..15 (bar.sync id, threads): the open phase's thread count and arrivals.
    struct NamedBarrier {
        unsigned threads = 0;
        unsigned arrived = 0;
    };
    NamedBarrier named_[16];

    std::vector<WarpState> warps_;
    std::vector<WarpgroupMeeting> warpgroups_;
    unsigned open_warpgroups_ = 0;  // warpgroups with some threads waiting at a meeting

    void* dynamic_shared_ = nullptr;
    std::size_t dynamic_capacity_ = 0;

    bool failed_ = false;
    std::string error_;
};

}  // namespace emu

#endif
