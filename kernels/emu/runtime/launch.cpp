// launch.cpp: the C ABI the Rust side calls, launch validation, and the worker pool that spreads a
// grid's blocks over OS threads.
//
// Blocks of a launch are independent (CUDA guarantees no order among them), so workers take block
// indices from a shared counter. Results do not depend on which worker ran which block, except for
// the order of float atomics from different blocks. One launch runs at a time, process-wide, like a
// single stream; the launching thread works as one of the workers.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bank_conflicts.h"
#include "block.h"
#include "registry.h"

namespace emu {
namespace {

struct Job {
    const Launch* launch;
    unsigned long long total_blocks;
    std::atomic<unsigned long long> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex error_mu;
    std::string error;
    BankCounts banks;  // summed over the workers (under error_mu)
};

BlockRunner& local_runner() {
    thread_local std::unique_ptr<BlockRunner> runner(new BlockRunner);
    return *runner;
}

void work(Job& job) {
    BlockRunner& runner = local_runner();
    const dim3 g = job.launch->grid;
    std::string error;
    while (!job.failed.load(std::memory_order_relaxed)) {
        const unsigned long long b = job.next_block.fetch_add(1, std::memory_order_relaxed);
        if (b >= job.total_blocks) break;
        const uint3 idx{static_cast<unsigned>(b % g.x), static_cast<unsigned>(b / g.x % g.y),
                        static_cast<unsigned>(b / (static_cast<unsigned long long>(g.x) * g.y))};
        if (!runner.run(*job.launch, idx, &error)) {
            std::lock_guard<std::mutex> lock(job.error_mu);
            if (!job.failed.exchange(true)) job.error = error;
        }
    }
    // This worker's counts are all from this job's blocks: it runs blocks only here.
    const BankCounts banks = bank_take_worker_counts();
    std::lock_guard<std::mutex> lock(job.error_mu);
    job.banks.add(banks);
}

unsigned configured_workers() {
    unsigned n = std::thread::hardware_concurrency();
    if (const char* env = std::getenv("RESNET_EMU_THREADS")) {
        const long v = std::atol(env);
        if (v > 0) n = static_cast<unsigned>(v);
    }
    return n == 0 ? 1 : n;
}

class Pool {
public:
    // Created on first use and never destroyed: its threads wait forever and end with the process,
    // so no static destructor can run while they still use the pool.
    static Pool& get() {
        static Pool* pool = new Pool(configured_workers());
        return *pool;
    }

    unsigned workers() const { return static_cast<unsigned>(threads_.size()) + 1; }

    void run(Job& job) {
        std::lock_guard<std::mutex> one_launch(launch_mu_);
        if (threads_.empty() || job.total_blocks == 1) {
            work(job);
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_ = &job;
            ++epoch_;
            busy_ = static_cast<unsigned>(threads_.size());
        }
        wake_.notify_all();
        work(job);
        std::unique_lock<std::mutex> lock(mu_);
        done_.wait(lock, [this] { return busy_ == 0; });
        job_ = nullptr;
    }

private:
    explicit Pool(unsigned n) {
        for (unsigned i = 1; i < n; ++i) {
            threads_.emplace_back([this] { worker_main(); });
            threads_.back().detach();
        }
    }

    void worker_main() {
        unsigned long long seen = 0;
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            wake_.wait(lock, [&] { return epoch_ != seen; });
            seen = epoch_;
            Job* job = job_;
            lock.unlock();
            work(*job);
            lock.lock();
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::mutex launch_mu_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    Job* job_ = nullptr;
    unsigned long long epoch_ = 0;
    unsigned busy_ = 0;
    std::vector<std::thread> threads_;
};

thread_local std::string last_error;

// The bank-conflict counts of the launches this OS thread made since emu_take_bank_conflicts last
// read them: per launching thread, so that concurrent callers (test threads) see only their own.
thread_local BankCounts launched_banks;

int fail_launch(std::string message) {
    last_error = std::move(message);
    return 1;
}

// The dynamic shared memory each kernel opted in to, by name; kernels not here have the default limit.
std::mutex opt_in_mu;
std::unordered_map<std::string, unsigned> opted_in;

// What nvcc compiled into each kernel (build/kernel_limits.rs, given by emu_set_kernel_limits): the
// most threads a block can have (its __launch_bounds__ and registers) and its static shared memory.
// A kernel not here (a build without nvcc) is held to CUDA's general limits only.
struct CompiledLimits {
    unsigned max_threads;
    unsigned static_shared;
};
std::unordered_map<std::string, CompiledLimits> compiled_limits;  // under opt_in_mu

CompiledLimits limits_of(const char* kernel) {
    std::lock_guard<std::mutex> lock(opt_in_mu);
    const auto it = compiled_limits.find(kernel);
    return it == compiled_limits.end() ? CompiledLimits{1024, 0} : it->second;
}

// The schedule of launches that name none: RESNET_EMU_SCHEDULE, read once; -2 for a value that is not
// one of the three names (every such launch then fails and says so).
int schedule_from_environment() {
    static const int schedule = [] {
        const char* env = std::getenv("RESNET_EMU_SCHEDULE");
        if (!env || !*env || std::string(env) == "round-robin") return static_cast<int>(Schedule::round_robin);
        if (std::string(env) == "first-ahead") return static_cast<int>(Schedule::first_ahead);
        if (std::string(env) == "last-ahead") return static_cast<int>(Schedule::last_ahead);
        return -2;
    }();
    return schedule;
}

// The dynamic shared memory a launch of `kernel` may ask for: what it opted in to, else what the 48 KiB
// default leaves beside its static shared memory.
unsigned dynamic_shared_limit(const char* kernel, unsigned static_shared) {
    std::lock_guard<std::mutex> lock(opt_in_mu);
    const auto it = opted_in.find(kernel);
    if (it != opted_in.end()) return it->second;
    return static_shared >= kDefaultDynamicShared ? 0 : kDefaultDynamicShared - static_shared;
}

}  // namespace
}  // namespace emu

extern "C" {

// Holds `kernel_name` to the limits nvcc compiled into it (build/kernel_limits.rs): blocks of at most
// `max_threads` threads, and `static_shared_bytes` of static shared memory counted against the block's
// shared memory beside the dynamic part. Returns 0 on success; otherwise nonzero (an unknown kernel, a
// limit no launch could meet), and emu_last_error() says why.
int emu_set_kernel_limits(const char* kernel_name, unsigned max_threads, unsigned static_shared_bytes) {
    using namespace emu;
    last_error.clear();
    if (!kernel_name || !find_kernel(kernel_name)) {
        return fail_launch("nvcc compiled kernel '" + std::string(kernel_name ? kernel_name : "(null)") +
                           "', which no kernels/*.cu registers with EMU_REGISTER");
    }
    if (max_threads == 0 || max_threads > 1024 || static_shared_bytes > kDefaultDynamicShared) {
        return fail_launch("kernel '" + std::string(kernel_name) + "': limits of " + std::to_string(max_threads) +
                           " threads and " + std::to_string(static_shared_bytes) +
                           " bytes of static shared memory are not a kernel's (1 to 1024 threads, at most 48 KiB)");
    }
    std::lock_guard<std::mutex> lock(opt_in_mu);
    compiled_limits[kernel_name] = CompiledLimits{max_threads, static_shared_bytes};
    return 0;
}

// Lets `kernel_name` launch with up to `bytes` of dynamic shared memory, like cuFuncSetAttribute with
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES. Returns 0 on success; otherwise nonzero, and
// emu_last_error() says why (an unknown kernel, more than the 227 KiB a block can have beside its
// static shared memory).
int emu_set_max_dynamic_shared(const char* kernel_name, unsigned bytes) {
    using namespace emu;
    last_error.clear();
    if (!kernel_name || !find_kernel(kernel_name)) {
        return fail_launch("unknown kernel '" + std::string(kernel_name ? kernel_name : "(null)") +
                           "': cannot set its shared memory limit");
    }
    const unsigned static_shared = limits_of(kernel_name).static_shared;
    if (1ull * bytes + static_shared > kMaxDynamicShared) {
        return fail_launch("kernel '" + std::string(kernel_name) + "': " + std::to_string(bytes) +
                           " bytes of dynamic shared memory beside its " + std::to_string(static_shared) +
                           " static exceed the 227 KiB a block can have");
    }
    std::lock_guard<std::mutex> lock(opt_in_mu);
    opted_in[kernel_name] = bytes;
    return 0;
}

// Launches `kernel_name` like cuLaunchKernel: `params[i]` points at argument i, and the block's threads
// take turns as `schedule` says (emu::Schedule: 0 round-robin, 1 first-ahead, 2 last-ahead; -1: the
// one RESNET_EMU_SCHEDULE names, round-robin when unset). Returns 0 on success; otherwise nonzero,
// and emu_last_error() says why. Blocks until the launch finished.
int emu_launch(const char* kernel_name, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,
               unsigned block_y, unsigned block_z, unsigned dynamic_shared_bytes, void** params, unsigned num_params,
               int schedule) {
    using namespace emu;
    last_error.clear();
    if (schedule == -1) schedule = schedule_from_environment();
    if (schedule < 0 || schedule > static_cast<int>(Schedule::last_ahead)) {
        // Only the environment can name a schedule that does not exist (Rust passes an enum).
        const char* env = std::getenv("RESNET_EMU_SCHEDULE");
        return fail_launch("RESNET_EMU_SCHEDULE='" + std::string(env ? env : "") +
                           "' is not a schedule: use round-robin, first-ahead or last-ahead");
    }
    if (!kernel_name) return fail_launch("kernel name is null");
    const KernelEntry* k = find_kernel(kernel_name);
    if (!k) {
        return fail_launch("unknown kernel '" + std::string(kernel_name) + "': no kernels/*.cu registers it with " +
                           "EMU_REGISTER (" + std::to_string(kernel_count()) + " kernels are registered)");
    }
    const std::string who = "kernel '" + std::string(kernel_name) + "': ";
    if (num_params != k->num_params) {
        return fail_launch(who + "takes " + std::to_string(k->num_params) + " parameters, the launch passed " +
                           std::to_string(num_params));
    }
    for (unsigned i = 0; i < num_params; ++i) {
        if (!params || !params[i]) return fail_launch(who + "parameter " + std::to_string(i) + " is a null pointer");
    }
    if (grid_x == 0 || grid_y == 0 || grid_z == 0 || block_x == 0 || block_y == 0 || block_z == 0) {
        return fail_launch(who + "grid and block dimensions must be at least 1");
    }
    if (grid_x > 0x7fffffffu || grid_y > 65535 || grid_z > 65535) {
        return fail_launch(who + "grid exceeds CUDA's limits (x < 2^31, y and z <= 65535)");
    }
    const unsigned long long threads = 1ull * block_x * block_y * block_z;
    if (block_x > 1024 || block_y > 1024 || block_z > 64 || threads > 1024) {
        return fail_launch(who + "block of " + std::to_string(block_x) + "x" + std::to_string(block_y) + "x" +
                           std::to_string(block_z) + " exceeds CUDA's limits (at most 1024 threads, z <= 64)");
    }
    if (dynamic_shared_bytes > kMaxDynamicShared) {
        return fail_launch(who + std::to_string(dynamic_shared_bytes) +
                           " bytes of dynamic shared memory exceed the 227 KiB a block can have");
    }
    const CompiledLimits compiled = limits_of(kernel_name);
    if (threads > compiled.max_threads) {
        return fail_launch(who + "a block of " + std::to_string(threads) + " threads exceeds the " +
                           std::to_string(compiled.max_threads) +
                           " it was compiled for (its __launch_bounds__, or what its registers allow in a "
                           "block): a GPU refuses the launch (build/kernel_limits.rs)");
    }
    const unsigned limit = dynamic_shared_limit(kernel_name, compiled.static_shared);
    if (dynamic_shared_bytes > limit) {
        return fail_launch(who + std::to_string(dynamic_shared_bytes) +
                           " bytes of dynamic shared memory exceed its limit of " + std::to_string(limit) +
                           " (beside " + std::to_string(compiled.static_shared) +
                           " static): above 48 KiB in all a kernel must opt in first (Driver::set_max_dynamic_shared, "
                           "which sets CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES on a GPU)");
    }

    const Launch launch{k->name, k->run, params, dim3(grid_x, grid_y, grid_z), dim3(block_x, block_y, block_z),
                        dynamic_shared_bytes, static_cast<Schedule>(schedule)};
    Job job;
    job.launch = &launch;
    job.total_blocks = 1ull * grid_x * grid_y * grid_z;
    Pool::get().run(job);
    if (job.failed.load()) return fail_launch(job.error);
    launched_banks.add(job.banks);
    return 0;
}

// Writes the shared-memory bank-conflict counts (runtime/bank_conflicts.h) of the successful launches
// this OS thread made since its last call, and resets them: counts[0] ldmatrix matrices, [1] their
// wavefronts beyond one each, [2] cp.async quarter-warp requests, [3] their wavefronts beyond one each.
void emu_take_bank_conflicts(unsigned long long counts[4]) {
    const emu::BankCounts c = emu::launched_banks;
    emu::launched_banks = emu::BankCounts{};
    counts[0] = c.ldmatrix_matrices;
    counts[1] = c.ldmatrix_excess;
    counts[2] = c.cp_async_requests;
    counts[3] = c.cp_async_excess;
}

// Why the last emu_launch on this thread failed; empty after a success. Valid until the next launch.
const char* emu_last_error(void) { return emu::last_error.c_str(); }

// Registered kernels, in name order, for `resnet-cuda info` and for tests.
unsigned emu_kernel_count(void) { return static_cast<unsigned>(emu::kernel_count()); }
const char* emu_kernel_name(unsigned i) {
    const emu::KernelEntry* k = emu::kernel_at(i);
    return k ? k->name : nullptr;
}

// The byte size of each parameter of `kernel_name` (what a recorded launch copies of its arguments),
// written to `sizes` (room for `max` entries). Returns the parameter count, or -1 for an unknown kernel
// (emu_last_error() says so).
int emu_kernel_param_sizes(const char* kernel_name, unsigned* sizes, unsigned max) {
    using namespace emu;
    last_error.clear();
    const KernelEntry* k = kernel_name ? find_kernel(kernel_name) : nullptr;
    if (!k) {
        fail_launch("unknown kernel '" + std::string(kernel_name ? kernel_name : "(null)") + "'");
        return -1;
    }
    for (unsigned i = 0; i < k->num_params && i < max; ++i) sizes[i] = k->param_sizes[i];
    return static_cast<int>(k->num_params);
}

// OS threads a launch spreads its blocks over (RESNET_EMU_THREADS, else the number of CPUs).
unsigned emu_worker_count(void) { return emu::Pool::get().workers(); }

}  // extern "C"
