// emu_atomics.h: CUDA's atomic functions as real host atomics. Blocks run concurrently on several OS
// threads, so these must be atomic across threads, not only across the fibers of one block. Relaxed
// ordering, as on the device (use __threadfence for ordering). The order in which blocks' float atomics
// land depends on scheduling, so float sums built with atomicAdd may differ in the last bits between
// runs, as on a GPU; everything else in the emulator is deterministic.
#ifndef RESNET_CUDA_EMU_ATOMICS_H
#define RESNET_CUDA_EMU_ATOMICS_H

#include <cstring>

namespace emu {

// Read-modify-write through a compare-and-swap loop on the value's bits: float and double have no
// native fetch-add, and min/max of floats compare as floats.
template <class T, class Bits, class F>
inline T atomic_update(T* address, F f) {
    static_assert(sizeof(T) == sizeof(Bits), "bit container must match");
    Bits* p = reinterpret_cast<Bits*>(address);
    Bits old_bits = __atomic_load_n(p, __ATOMIC_RELAXED);
    for (;;) {
        T old;
        std::memcpy(&old, &old_bits, sizeof(T));
        T next = f(old);
        Bits next_bits;
        std::memcpy(&next_bits, &next, sizeof(T));
        if (__atomic_compare_exchange_n(p, &old_bits, next_bits, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return old;
    }
}

}  // namespace emu

#define EMU_ATOMIC_INT_OPS(T)                                                                         \
    inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }              \
    inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }              \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }            \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }              \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }              \
    inline T atomicMin(T* a, T v) { return emu::atomic_update<T, T>(a, [v](T o) { return v < o ? v : o; }); } \
    inline T atomicMax(T* a, T v) { return emu::atomic_update<T, T>(a, [v](T o) { return v > o ? v : o; }); } \
    inline T atomicCAS(T* a, T expected, T desired) {                                                 \
        __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return expected;                                                                              \
    }

EMU_ATOMIC_INT_OPS(int)
EMU_ATOMIC_INT_OPS(unsigned int)
EMU_ATOMIC_INT_OPS(unsigned long long)
EMU_ATOMIC_INT_OPS(long long)
#undef EMU_ATOMIC_INT_OPS

inline float atomicAdd(float* a, float v) {
    return emu::atomic_update<float, unsigned int>(a, [v](float o) { return o + v; });
}
inline double atomicAdd(double* a, double v) {
    return emu::atomic_update<double, unsigned long long>(a, [v](double o) { return o + v; });
}
inline float atomicExch(float* a, float v) {
    return emu::atomic_update<float, unsigned int>(a, [v](float) { return v; });
}
// CUDA 12.8+ has float atomicMin/Max; same NaN-free semantics as fminf/fmaxf here.
inline float atomicMax(float* a, float v) {
    return emu::atomic_update<float, unsigned int>(a, [v](float o) { return v > o ? v : o; });
}
inline float atomicMin(float* a, float v) {
    return emu::atomic_update<float, unsigned int>(a, [v](float o) { return v < o ? v : o; });
}
// ((old >= limit) ? 0 : old + 1) and ((old == 0 || old > limit) ? limit : old - 1), as CUDA defines them.
inline unsigned int atomicInc(unsigned int* a, unsigned int limit) {
    return emu::atomic_update<unsigned, unsigned>(a, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned int atomicDec(unsigned int* a, unsigned int limit) {
    return emu::atomic_update<unsigned, unsigned>(
        a, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

#endif
