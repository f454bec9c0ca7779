// emu_sync.h: block barriers and warp intrinsics. Each one is a rendezvous in the block scheduler
// (runtime/block.cpp): the calling fiber offers its value, yields until every participant arrived, and
// reads the result the last arrival computed for it.
//
// The empty asm statements with a "memory" clobber are compiler barriers around each rendezvous. The
// runtime call is opaque, but a function-local `static __thread` shared array whose address never
// escapes could otherwise be assumed untouched by it, and a value another fiber stored there during the
// wait would be missed.
#ifndef RESNET_CUDA_EMU_SYNC_H
#define RESNET_CUDA_EMU_SYNC_H

#include <cstring>
#include <type_traits>

namespace emu {

enum class BarrierKind : int { plain, count, all, any };
enum class WarpOp : int {
    sync,
    shfl_idx,
    shfl_up,
    shfl_down,
    shfl_xor,
    ballot,
    any,
    all,
    reduce_add_u,
    reduce_min_u,
    reduce_max_u,
    reduce_min_i,
    reduce_max_i,
    // Warp-wide matrix instructions (emu_tensor_core.h): every lane offers a pointer to its fragments,
    // the last arrival computes for the whole warp (runtime/warp_matrix.cpp). They take no mask: the
    // hardware's `.sync.aligned` means all 32 lanes execute the same instruction.
    mma_m16n8k16_bf16,
    ldmatrix,
};

// Runtime entry points (runtime/block.cpp).
int block_barrier(BarrierKind kind, int predicate);
// bar.sync id, threads: the first `threads` arrivals at barrier `id` (1..15) release each other.
void named_barrier(unsigned id, unsigned threads);
unsigned long long warp_rendezvous(unsigned mask, WarpOp op, unsigned long long value, int arg, int width);
[[noreturn]] void kernel_trap(const char* what);
// Ends the launch with `what` (an emulator-detected misuse), naming the block and thread.
[[noreturn]] void kernel_error(const char* what);
// PTX `exit` (common.cuh's exit_thread): the calling CUDA thread ends here, its calls unwound (an
// exception the block runner catches where it called the kernel), and counts as returned.
[[noreturn]] void exit_thread();

inline void compiler_fence() { asm volatile("" ::: "memory"); }

template <class T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}

template <class T>
inline T from_bits(unsigned long long bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}

template <class T>
inline T warp_shuffle(unsigned mask, WarpOp op, T v, int arg, int width) {
    compiler_fence();
    T r = from_bits<T>(warp_rendezvous(mask, op, to_bits(v), arg, width));
    compiler_fence();
    return r;
}

inline unsigned warp_vote(unsigned mask, WarpOp op, unsigned long long v) {
    compiler_fence();
    unsigned r = static_cast<unsigned>(warp_rendezvous(mask, op, v, 0, 32));
    compiler_fence();
    return r;
}

inline int barrier(BarrierKind kind, int predicate) {
    compiler_fence();
    int r = block_barrier(kind, predicate);
    compiler_fence();
    return r;
}

}  // namespace emu

inline void __syncthreads() { emu::barrier(emu::BarrierKind::plain, 0); }
// (common.cuh's named_barrier_sync; no CUDA built-in of its own.)
inline void emu_named_barrier_sync(unsigned id, unsigned threads) {
    emu::compiler_fence();
    emu::named_barrier(id, threads);
    emu::compiler_fence();
}
inline int __syncthreads_count(int p) { return emu::barrier(emu::BarrierKind::count, p); }
inline int __syncthreads_and(int p) { return emu::barrier(emu::BarrierKind::all, p); }
inline int __syncthreads_or(int p) { return emu::barrier(emu::BarrierKind::any, p); }

inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_vote(mask, emu::WarpOp::sync, 0); }

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
    return emu::warp_shuffle(mask, emu::WarpOp::shfl_idx, v, src_lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    return emu::warp_shuffle(mask, emu::WarpOp::shfl_up, v, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    return emu::warp_shuffle(mask, emu::WarpOp::shfl_down, v, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
    return emu::warp_shuffle(mask, emu::WarpOp::shfl_xor, v, lane_mask, width);
}

inline unsigned __ballot_sync(unsigned mask, int p) { return emu::warp_vote(mask, emu::WarpOp::ballot, p != 0); }
inline int __any_sync(unsigned mask, int p) { return static_cast<int>(emu::warp_vote(mask, emu::WarpOp::any, p != 0)); }
inline int __all_sync(unsigned mask, int p) { return static_cast<int>(emu::warp_vote(mask, emu::WarpOp::all, p != 0)); }

inline unsigned __reduce_add_sync(unsigned mask, unsigned v) { return emu::warp_vote(mask, emu::WarpOp::reduce_add_u, v); }
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) { return emu::warp_vote(mask, emu::WarpOp::reduce_min_u, v); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) { return emu::warp_vote(mask, emu::WarpOp::reduce_max_u, v); }
inline int __reduce_add_sync(unsigned mask, int v) {
    return static_cast<int>(emu::warp_vote(mask, emu::WarpOp::reduce_add_u, static_cast<unsigned>(v)));
}
inline int __reduce_min_sync(unsigned mask, int v) {
    return static_cast<int>(emu::warp_vote(mask, emu::WarpOp::reduce_min_i, static_cast<unsigned>(v)));
}
inline int __reduce_max_sync(unsigned mask, int v) {
    return static_cast<int>(emu::warp_vote(mask, emu::WarpOp::reduce_max_i, static_cast<unsigned>(v)));
}

// Memory fences: blocks on different workers share memory like SMs do.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { emu::compiler_fence(); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Ends the launch with an error that names the block and thread.
[[noreturn]] inline void __trap() { emu::kernel_trap("__trap()"); }

#endif
