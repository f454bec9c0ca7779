// block.cpp: the per-block scheduler: lazy runner fibers, __syncthreads, warp rendezvous, deadlock
// detection. See block.h for the scheduling model.
#include "block.h"

#include "async_copy.h"
#include "bank_conflicts.h"
#include "mbarrier.h"
#include "warp_matrix.h"
#include "warpgroup_matrix.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

__thread emu::ThreadContext* emu_current_thread = nullptr;
__thread emu::BlockContext emu_current_block = {};

namespace emu {

// The runner of the block this OS thread is executing, for the intrinsics' entry points.
static __thread BlockRunner* current_runner = nullptr;

BlockRunner::BlockRunner() { context_for_current_thread(main_); }

BlockRunner::~BlockRunner() {
#if defined(__SANITIZE_ADDRESS__)
    if (dynamic_capacity_) __asan_unpoison_memory_region(dynamic_shared_, dynamic_capacity_);
#endif
    std::free(dynamic_shared_);
}

// How messages name the instruction a warp meets at.
static const char* op_name(WarpOp op) {
    switch (op) {
    case WarpOp::mma_m16n8k16_bf16: return "mma.sync.aligned.m16n8k16 (all 32 lanes of a warp must execute it)";
    case WarpOp::ldmatrix: return "ldmatrix.sync.aligned (all 32 lanes of a warp must execute it)";
    default: return "a warp intrinsic";
    }
}

static std::string format_dim(uint3 v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "(%u,%u,%u)", v.x, v.y, v.z);
    return buf;
}

std::string BlockRunner::where(const ThreadContext* t) const {
    std::string s = "kernel '";
    s += launch_->kernel_name;
    s += "', block " + format_dim(block_idx_);
    if (t) s += ", thread " + format_dim(t->idx);
    return s;
}

bool BlockRunner::run(const Launch& launch, uint3 block_idx, std::string* error) {
    launch_ = &launch;
    block_idx_ = block_idx;
    const dim3 bd = launch.block;
    num_threads_ = bd.x * bd.y * bd.z;

    // Thread contexts in CUDA's linear order (x fastest), which also defines warps and lanes. They
    // depend only on the block shape, so consecutive blocks of a launch reuse them.
    if (bd.x != shape_.x || bd.y != shape_.y || bd.z != shape_.z) {
        shape_ = bd;
        threads_.resize(num_threads_);
        fiber_of_thread_.resize(num_threads_);
        for (unsigned i = 0; i < num_threads_; ++i) {
            ThreadContext& t = threads_[i];
            t.idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
            t.linear = i;
            t.lane = i % 32;
            t.warp = i / 32;
        }
        warps_.resize((num_threads_ + 31) / 32);
        for (unsigned w = 0; w < warps_.size(); ++w) {
            const unsigned lanes = num_threads_ - w * 32 < 32 ? num_threads_ - w * 32 : 32;
            warps_[w].exists = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        }
    }
    for (WarpState& w : warps_) {
        w.exited = 0;
        w.open.clear();
    }
    warpgroups_.assign((num_threads_ + 127) / 128, WarpgroupMeeting{});
    for (NamedBarrier& b : named_) b = NamedBarrier{};
    open_warpgroups_ = 0;
    ready_threads_.assign((num_threads_ + 63) / 64, 0);

    const std::size_t dyn = launch.dynamic_shared_bytes;
#if defined(__SANITIZE_ADDRESS__)
    // The previous launch fenced off the tail it did not use: lift that first, since this launch may
    // use more of the buffer (and free() must see the whole block addressable).
    if (dynamic_capacity_) __asan_unpoison_memory_region(dynamic_shared_, dynamic_capacity_);
#endif
    if (dyn > dynamic_capacity_) {
        std::free(dynamic_shared_);
        // 1024-byte aligned, like its place in a GPU's shared window (emu_wgmma.h), so that even a
        // kernel deriving a swizzle from host address bits sees the hardware's pattern.
        dynamic_capacity_ = (dyn + 1023) / 1024 * 1024;
        dynamic_shared_ = std::aligned_alloc(1024, dynamic_capacity_);
        if (!dynamic_shared_) {
            std::fprintf(stderr, "resnet-cuda emulator: cannot allocate %zu bytes of shared memory\n", dyn);
            std::abort();
        }
    }
    if (dyn) std::memset(dynamic_shared_, 0xff, dyn);
#if defined(__SANITIZE_ADDRESS__)
    // The buffer is reused and rounded up: fence off what this launch did not ask for.
    if (dynamic_capacity_) {
        __asan_poison_memory_region(static_cast<char*>(dynamic_shared_) + dyn, dynamic_capacity_ - dyn);
    }
#endif

    emu_current_block.idx = block_idx;
    emu_current_block.block_dim = launch.block;
    emu_current_block.grid_dim = launch.grid;
    emu_current_block.dynamic_shared = dyn ? dynamic_shared_ : nullptr;

    next_thread_ = 0;
    live_ = num_threads_;
    used_ = 0;
    ready_count_ = 0;
    arrived_ = 0;
    generation_ = 0;
    predicate_count_[0] = predicate_count_[1] = 0;
    failed_ = false;
    async_copy_block_start(num_threads_);
    mbarrier_block_start();
    bank_block_start(num_threads_);
    wgmma_block_start(num_threads_, dyn ? dynamic_shared_ : nullptr, dyn);
    error_.clear();

    BlockRunner* outer = current_runner;
    current_runner = this;
    Fiber* first = start_runner();
    current_ = first;
    first->state = FiberState::running;
    context_switch(main_, first->ctx, false);
    // Back on the worker's stack: every thread returned, or the block failed or deadlocked.
    current_runner = outer;
    emu_current_thread = nullptr;
    current_ = nullptr;

    bool ok = true;
    if (failed_) {
        *error = error_;
        ok = false;
    } else if (live_ != 0) {
        *error = deadlock_report();
        ok = false;
    } else if (std::string why; !wgmma_block_finished(&why)) {
        *error = where(nullptr) + ": " + why;
        ok = false;
    } else {
        bank_flush_cp_async();  // the copies since the last barrier
    }
    if (!ok) {
        for (unsigned i = 0; i < used_; ++i) fibers_[i]->ctx.dirty = true;
    }
    return ok;
}

Fiber* BlockRunner::start_runner() {
    if (used_ == fibers_.size()) {
        auto f = std::make_unique<Fiber>();
        f->stack = allocate_stack(fiber_stack_bytes());
        f->owner = this;
        f->index = used_;
        fibers_.push_back(std::move(f));
    }
    Fiber* f = fibers_[used_++].get();
    f->thread = nullptr;
    f->state = FiberState::running;
    context_prepare(f->ctx, f->stack, &BlockRunner::runner_entry, f);
    return f;
}

void BlockRunner::runner_entry(void* arg) {
    context_entered();
    Fiber* self = static_cast<Fiber*>(arg);
    self->owner->runner_loop(self);
}

void BlockRunner::runner_loop(Fiber* self) {
    // Threads run here as plain calls until one blocks; that thread keeps this fiber, and when it
    // returns the loop goes on with whatever thread has not started yet.
    while (next_thread_ < num_threads_ && !failed_) {
        const unsigned i = next_thread_++;
        ThreadContext* t = &threads_[launch_->schedule == Schedule::last_ahead ? num_threads_ - 1 - i : i];
        self->thread = t;
        emu_current_thread = t;
        t->grid_synced = false;
        try {
            launch_->run(launch_->params);
        } catch (const ThreadExit&) {
            // exit_thread(): the thread's calls are unwound; it has returned.
        }
        thread_exited(t);
    }
    self->thread = nullptr;
    self->state = FiberState::idle;
    switch_away(true);
    __builtin_unreachable();
}

void BlockRunner::resume(Fiber* from, Fiber* to, bool finished) {
    current_ = to;
    to->state = FiberState::running;
    emu_current_thread = to->thread;
    context_switch(from->ctx, to->ctx, finished);
}

void BlockRunner::mark_ready(Fiber* f) {
    f->state = FiberState::ready;
    ++ready_count_;
    if (launch_->schedule != Schedule::round_robin) {
        const unsigned i = f->thread->linear;
        ready_threads_[i / 64] |= 1ull << (i % 64);
    }
}

Fiber* BlockRunner::take_ready_in_thread_order() {
    const unsigned words = static_cast<unsigned>(ready_threads_.size());
    for (unsigned k = 0; k < words; ++k) {
        const unsigned w = launch_->schedule == Schedule::first_ahead ? k : words - 1 - k;
        const unsigned long long bits = ready_threads_[w];
        if (!bits) continue;
        const unsigned b = launch_->schedule == Schedule::first_ahead ? __builtin_ctzll(bits) : 63 - __builtin_clzll(bits);
        ready_threads_[w] &= ~(1ull << b);
        --ready_count_;
        return fiber_of_thread_[w * 64 + b];
    }
    return nullptr;
}

void BlockRunner::yield_turn() {
    // Under first_ahead and last_ahead the thread that completes a rendezvous does not simply run on:
    // it queues behind any thread the schedule puts first (lower- or higher-numbered).
    if (launch_->schedule == Schedule::round_robin) return;
    Fiber* self = current_;
    fiber_of_thread_[self->thread->linear] = self;
    mark_ready(self);
    Fiber* next = take_ready_in_thread_order();
    if (next == self) {
        self->state = FiberState::running;
        return;
    }
    resume(self, next, false);
}

void BlockRunner::switch_away(bool finished) {
    Fiber* from = current_;
    if (launch_->schedule != Schedule::round_robin && ready_count_ > 0) {
        resume(from, take_ready_in_thread_order(), finished);
        return;
    }
    // The count spares the scan while a block's threads are still arriving at their first barrier.
    for (unsigned k = 1; ready_count_ > 0 && k <= used_; ++k) {
        Fiber* f = fibers_[(from->index + k) % used_].get();
        if (f->state == FiberState::ready) {
            --ready_count_;
            resume(from, f, finished);
            return;
        }
    }
    if (next_thread_ < num_threads_ && !failed_) {
        resume(from, start_runner(), finished);
        return;
    }
    // Every thread waits: the bulk copies in flight land now (the copy engine runs on regardless of
    // the threads), which may complete an mbarrier phase and wake its waiters.
    if (!failed_ && mbarrier_deliver_all() && ready_count_ > 0) {
        switch_away(finished);
        return;
    }
    // Nothing can run: the block is done or deadlocked; the scheduler on the worker stack decides.
    current_ = nullptr;
    emu_current_thread = nullptr;
    context_switch(from->ctx, main_, finished);
}

void BlockRunner::fail(const char* what) {
    if (!failed_) {
        failed_ = true;
        error_ = where(current_ ? current_->thread : nullptr) + ": " + what;
    }
    Fiber* from = current_;
    current_ = nullptr;
    emu_current_thread = nullptr;
    context_switch(from->ctx, main_, false);
    std::abort();  // an abandoned fiber is never resumed
}

void BlockRunner::thread_exited(ThreadContext* t) {
    if (!t->grid_synced && !failed_) {
        fail("the thread returned without calling grid_dependency_sync() (common.cuh), which every kernel "
             "must call first: on a GPU it is launched with programmatic dependent launch and could read "
             "the previous kernel's output before it is written");
    }
    --live_;
    WarpState& w = warps_[t->warp];
    const unsigned me = 1u << t->lane;
    w.exited |= me;
    if (__builtin_expect(open_warpgroups_ != 0, 0)) {
        const WarpgroupMeeting& m = warpgroups_[t->linear / 128];
        if (m.arrived) {
            char buf[256];
            std::snprintf(buf, sizeof buf,
                          "thread returned while %u threads of its warpgroup (warps %u-%u) wait for it in %s (all 128 "
                          "threads of a warpgroup must execute it)",
                          m.arrived, t->linear / 128 * 4, t->linear / 128 * 4 + 3, warpgroup_op_name(m.op));
            fail(buf);
        }
    }
    wgmma_thread_exited(t);
    // The common case (no warp group open, no barrier pending) costs nothing more.
    if (__builtin_expect(w.open.empty() && arrived_ == 0, 1)) return;
    for (const WarpGroup& g : w.open) {
        if (g.mask & me) {
            char buf[256];
            std::snprintf(buf, sizeof buf,
                          "thread returned while lanes 0x%08x of its warp wait for it in %s with mask 0x%08x",
                          g.arrived, op_name(g.op), g.mask);
            fail(buf);
        }
    }
    // An exited thread counts as arrived at __syncthreads, as on current GPUs.
    if (arrived_ > 0 && arrived_ == live_) release_barrier();
}

void BlockRunner::release_barrier() {
    // Every thread has finished the interval before this barrier: its cp.async requests are complete.
    bank_flush_cp_async();
    const unsigned parity = generation_ & 1;
    barrier_count_[parity] = predicate_count_[parity];
    barrier_total_[parity] = arrived_;
    predicate_count_[parity ^ 1] = 0;
    arrived_ = 0;
    ++generation_;
    for (unsigned i = 0; i < used_; ++i) {
        if (fibers_[i]->state == FiberState::wait_block) mark_ready(fibers_[i].get());
    }
}

int BlockRunner::block_barrier(BarrierKind kind, int predicate) {
    const unsigned parity = generation_ & 1;
    ++arrived_;
    if (predicate) ++predicate_count_[parity];
    if (arrived_ == live_) {
        release_barrier();
        yield_turn();
    } else {
        current_->state = FiberState::wait_block;
        fiber_of_thread_[current_->thread->linear] = current_;
        switch_away(false);
    }
    const unsigned count = barrier_count_[parity];
    switch (kind) {
    case BarrierKind::count:
        return static_cast<int>(count);
    case BarrierKind::all:
        return count == barrier_total_[parity];
    case BarrierKind::any:
        return count > 0;
    case BarrierKind::plain:
        break;
    }
    return 0;
}

void BlockRunner::named_barrier(unsigned id, unsigned threads) {
    char buf[256];
    // Barrier 0 is __syncthreads' (every thread); a count is whole warps (PTX ISA, bar.sync).
    if (id == 0 || id > 15 || threads == 0 || threads % 32 != 0 || threads > num_threads_) {
        std::snprintf(buf, sizeof buf,
                      "bar.sync %u, %u in a block of %u threads: a named barrier is 1 to 15, its thread count a "
                      "multiple of 32 up to the block's",
                      id, threads, num_threads_);
        fail(buf);
    }
    NamedBarrier& b = named_[id];
    if (b.arrived == 0) {
        b.threads = threads;
    } else if (b.threads != threads) {
        std::snprintf(buf, sizeof buf, "bar.sync %u with %u threads while %u threads wait at it with a count of %u", id,
                      threads, b.arrived, b.threads);
        fail(buf);
    }
    if (++b.arrived == b.threads) {
        b.arrived = 0;
        for (unsigned i = 0; i < used_; ++i) {
            Fiber* f = fibers_[i].get();
            if (f->state == FiberState::wait_named && f->wait_object == &b) {
                f->wait_object = nullptr;
                mark_ready(f);
            }
        }
        yield_turn();
    } else {
        current_->state = FiberState::wait_named;
        current_->wait_object = &b;
        fiber_of_thread_[current_->thread->linear] = current_;
        switch_away(false);
    }
}

static bool uses_width(WarpOp op) {
    return op == WarpOp::shfl_idx || op == WarpOp::shfl_up || op == WarpOp::shfl_down || op == WarpOp::shfl_xor;
}

unsigned long long BlockRunner::warp_rendezvous(unsigned mask, WarpOp op, unsigned long long value, int arg,
                                                int width) {
    ThreadContext* t = current_->thread;
    WarpState& w = warps_[t->warp];
    const unsigned me = 1u << t->lane;
    char buf[256];
    if (is_warp_matrix_op(op) && w.exists != 0xffffffffu) {
        std::snprintf(buf, sizeof buf, "%s, but this block's last warp has only lanes 0x%08x", op_name(op), w.exists);
        fail(buf);
    }
    if (!(mask & me)) {
        std::snprintf(buf, sizeof buf, "warp intrinsic with mask 0x%08x that excludes the calling lane %u", mask,
                      t->lane);
        fail(buf);
    }
    if (uses_width(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
        std::snprintf(buf, sizeof buf, "shuffle width %d is not a power of two in [1, 32]", width);
        fail(buf);
    }
    const unsigned expected = mask & w.exists;
    if (expected & w.exited) {
        std::snprintf(buf, sizeof buf, "%s with mask 0x%08x waits for lanes 0x%08x that already returned",
                      op_name(op), mask, expected & w.exited);
        fail(buf);
    }
    t->offered = value;
    t->op_arg = arg;
    t->op_width = width;

    std::size_t gi = w.open.size();
    for (std::size_t i = 0; i < w.open.size(); ++i) {
        if (w.open[i].mask == mask) {
            gi = i;
            break;
        }
        if (w.open[i].mask & mask) {
            std::snprintf(buf, sizeof buf,
                          "lanes of one warp meet at warp intrinsics with overlapping but different masks "
                          "0x%08x and 0x%08x",
                          w.open[i].mask, mask);
            fail(buf);
        }
    }
    if (gi == w.open.size()) w.open.push_back(WarpGroup{mask, 0, op});
    if (w.open[gi].op != op) {
        std::snprintf(buf, sizeof buf, "lanes of one warp meet at different instructions with the same mask 0x%08x: %s and %s",
                      mask, op_name(w.open[gi].op), op_name(op));
        fail(buf);
    }
    w.open[gi].arrived |= me;

    if (w.open[gi].arrived == expected) {
        const WarpGroup g = w.open[gi];
        w.open[gi] = w.open.back();
        w.open.pop_back();
        complete_warp_group(w, g, expected);
        yield_turn();
    } else {
        current_->state = FiberState::wait_warp;
        current_->wait_mask = mask;
        fiber_of_thread_[t->linear] = current_;
        switch_away(false);
    }
    return t->result;
}

void BlockRunner::warpgroup_rendezvous(WarpgroupOp op, void* lane, int arg) {
    ThreadContext* t = current_->thread;
    char buf[320];
    const unsigned q = t->linear / 128;
    // A warpgroup is four contiguous warps from a warp rank that is a multiple of 4 (PTX ISA), all of
    // whose threads execute the instruction: the block must hold the whole of this thread's. (Threads
    // past the last whole warpgroup, such as conv_wgmma.cuh's producer warp, may exist as long as they
    // never execute one.)
    if (num_threads_ < 128 * (q + 1)) {
        std::snprintf(buf, sizeof buf,
                      "%s by thread %u of a block of %u threads: its warpgroup (threads %u-%u) is not 4 whole warps "
                      "of the block, and all 128 of its threads must execute it",
                      warpgroup_op_name(op), t->linear, num_threads_, 128 * q, 128 * q + 127);
        fail(buf);
    }
    for (unsigned w = 4 * q; w < 4 * q + 4; ++w) {
        if (warps_[w].exited) {
            std::snprintf(buf, sizeof buf,
                          "%s waits for threads of its warpgroup that already returned (warp %u, lanes 0x%08x): all 128 "
                          "threads of a warpgroup must execute it",
                          warpgroup_op_name(op), w, warps_[w].exited);
            fail(buf);
        }
    }
    WarpgroupMeeting& m = warpgroups_[q];
    if (m.arrived == 0) {
        m.op = op;
        ++open_warpgroups_;
    } else if (m.op != op) {
        std::snprintf(buf, sizeof buf, "threads of warpgroup %u meet at different instructions: %s and %s", q,
                      warpgroup_op_name(m.op), warpgroup_op_name(op));
        fail(buf);
    }
    t->offered = reinterpret_cast<std::uintptr_t>(lane);
    t->op_arg = arg;
    if (++m.arrived == 128) {
        m.arrived = 0;
        --open_warpgroups_;
        ThreadContext* group = &threads_[q * 128];
        complete_warpgroup_op(op, q, group);
        for (unsigned i = 0; i < 128; ++i) {
            // Every thread but the caller (which completes the meeting and runs on) waits on its fiber.
            if (&group[i] != t) mark_ready(fiber_of_thread_[group[i].linear]);
        }
        yield_turn();
    } else {
        current_->state = FiberState::wait_warpgroup;
        fiber_of_thread_[t->linear] = current_;
        switch_away(false);
    }
}

void BlockRunner::wait_on_mbarrier(const void* bar) {
    current_->state = FiberState::wait_mbarrier;
    current_->wait_object = bar;
    fiber_of_thread_[current_->thread->linear] = current_;
    switch_away(false);
}

void BlockRunner::wake_mbarrier_waiters(const void* bar) {
    for (unsigned i = 0; i < used_; ++i) {
        Fiber* f = fibers_[i].get();
        if (f->state == FiberState::wait_mbarrier && f->wait_object == bar) {
            f->wait_object = nullptr;
            mark_ready(f);
        }
    }
}

void BlockRunner::complete_warp_group(WarpState& w, const WarpGroup& g, unsigned expected) {
    ThreadContext* lanes = &threads_[(&w - warps_.data()) * 32];
    if (is_warp_matrix_op(g.op)) {
        // A full warp (checked at arrival): each lane offered a pointer to its fragments.
        void* data[32];
        int args[32];
        for (unsigned l = 0; l < 32; ++l) {
            data[l] = reinterpret_cast<void*>(static_cast<std::uintptr_t>(lanes[l].offered));
            args[l] = lanes[l].op_arg;
            lanes[l].result = 0;
        }
        char buf[256];
        if (!complete_warp_matrix_op(g.op, data, args, buf, sizeof buf)) fail(buf);
        wake_warp_group(lanes, expected);
        return;
    }
    // Votes and reductions over the group.
    unsigned ballot = 0, sum = 0, umin = 0xffffffffu, umax = 0;
    int imin = 0x7fffffff, imax = -0x7fffffff - 1;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(expected >> l & 1)) continue;
        const unsigned long long v = lanes[l].offered;
        const unsigned u = static_cast<unsigned>(v);
        const int i = static_cast<int>(u);
        if (v) ballot |= 1u << l;
        sum += u;
        umin = u < umin ? u : umin;
        umax = u > umax ? u : umax;
        imin = i < imin ? i : imin;
        imax = i > imax ? i : imax;
    }
    for (unsigned l = 0; l < 32; ++l) {
        if (!(expected >> l & 1)) continue;
        ThreadContext& t = lanes[l];
        const int width = t.op_width;
        const int segment = static_cast<int>(l) & ~(width - 1);
        int src = static_cast<int>(l);
        switch (g.op) {
        case WarpOp::shfl_idx:
            src = segment + (t.op_arg & (width - 1));
            break;
        case WarpOp::shfl_up:
            if (static_cast<int>(l) - t.op_arg >= segment) src = static_cast<int>(l) - t.op_arg;
            break;
        case WarpOp::shfl_down:
            if (static_cast<int>(l) + t.op_arg < segment + width) src = static_cast<int>(l) + t.op_arg;
            break;
        case WarpOp::shfl_xor: {
            // Lanes of earlier width-groups may be read; a later group yields the caller's own value.
            const int x = static_cast<int>(l) ^ (t.op_arg & 31);
            if (x < segment + width) src = x;
            break;
        }
        default:
            break;
        }
        if (uses_width(g.op)) {
            if (!(expected >> src & 1)) {
                char buf[160];
                std::snprintf(buf, sizeof buf, "lane %u shuffles from lane %d, which is not in the mask 0x%08x", l,
                              src, g.mask);
                fail(buf);
            }
            t.result = lanes[src].offered;
        } else {
            switch (g.op) {
            case WarpOp::ballot: t.result = ballot; break;
            case WarpOp::any: t.result = ballot != 0; break;
            case WarpOp::all: t.result = ballot == expected; break;
            case WarpOp::reduce_add_u: t.result = sum; break;
            case WarpOp::reduce_min_u: t.result = umin; break;
            case WarpOp::reduce_max_u: t.result = umax; break;
            case WarpOp::reduce_min_i: t.result = static_cast<unsigned>(imin); break;
            case WarpOp::reduce_max_i: t.result = static_cast<unsigned>(imax); break;
            default: t.result = 0; break;
            }
        }
    }
    wake_warp_group(lanes, expected);
}

void BlockRunner::wake_warp_group(ThreadContext* lanes, unsigned expected) {
    for (unsigned l = 0; l < 32; ++l) {
        if (!(expected >> l & 1)) continue;
        // Every lane but the caller (which completes the group and runs on) is waiting on its fiber.
        if (&lanes[l] != current_->thread) mark_ready(fiber_of_thread_[lanes[l].linear]);
    }
}

std::string BlockRunner::deadlock_report() const {
    unsigned at_barrier = 0, at_warp = 0, at_warpgroup = 0, at_mbarrier = 0, at_named = 0;
    const ThreadContext* example = nullptr;
    unsigned example_mask = 0;
    for (unsigned i = 0; i < used_; ++i) {
        const Fiber& f = *fibers_[i];
        if (f.state == FiberState::wait_block) ++at_barrier;
        if (f.state == FiberState::wait_warpgroup) ++at_warpgroup;
        if (f.state == FiberState::wait_mbarrier) ++at_mbarrier;
        if (f.state == FiberState::wait_named) ++at_named;
        if (f.state == FiberState::wait_warp) {
            ++at_warp;
            if (!example) {
                example = f.thread;
                example_mask = f.wait_mask;
            }
        }
    }
    char buf[560];
    std::snprintf(buf, sizeof buf,
                  "deadlock: %u of %u live threads wait at __syncthreads, %u at a warp intrinsic, %u at a wgmma "
                  "warpgroup instruction, %u on an mbarrier phase and %u at a named barrier (threads of one block "
                  "took different barriers, a warp intrinsic's mask names lanes that never arrive, an mbarrier "
                  "misses arrivals or transaction bytes, or a named barrier's count more threads than reach it)",
                  at_barrier, live_, at_warp, at_warpgroup, at_mbarrier, at_named);
    std::string s = where(example) + ": " + buf;
    if (example) {
        std::snprintf(buf, sizeof buf, "; this thread waits with mask 0x%08x", example_mask);
        s += buf;
    }
    return s;
}

BlockRunner* current_block_runner() { return current_runner; }

// Entry points declared in emu_sync.h.
int block_barrier(BarrierKind kind, int predicate) { return current_runner->block_barrier(kind, predicate); }

void named_barrier(unsigned id, unsigned threads) { current_runner->named_barrier(id, threads); }

unsigned long long warp_rendezvous(unsigned mask, WarpOp op, unsigned long long value, int arg, int width) {
    return current_runner->warp_rendezvous(mask, op, value, arg, width);
}

void warpgroup_rendezvous(WarpgroupOp op, void* lane, int arg) { current_runner->warpgroup_rendezvous(op, lane, arg); }

unsigned barrier_generation() { return current_runner->barrier_generation(); }

void kernel_error(const char* what) { current_runner->fail(what); }

void exit_thread() { throw ThreadExit{}; }

void kernel_trap(const char* what) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "the kernel called %s", what);
    current_runner->fail(buf);
}

}  // namespace emu
