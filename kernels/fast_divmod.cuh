// fast_divmod.cuh: division by a divisor fixed for a whole launch, without a division instruction.
//
// GPUs have no integer divide: `n / d` with a runtime d is a ~20-instruction sequence (a float
// reciprocal and two corrections). A convolution's loaders split indices by the same few divisors
// (an image's width, its height) in every slice of their main loop, so they precompute, once per
// thread, a multiplier and a shift with which
//     n / d = (umulhi(n, m) + n) >> l,   l = ceil(log2 d),   m = floor(2^32 (2^l - d) / d) + 1
// for every 0 <= n < 2^31 and 1 <= d < 2^31 (the round-up method of Granlund and Montgomery,
// "Division by invariant integers using multiplication", 1994: m + 2^32 is 2^(32 + l) / d rounded up,
// a 33-bit multiplier whose top bit the "+ n" supplies; n + umulhi(n, m) < 2^32 since n < 2^31).
// A power of two d = 2^l gives m = 1 and umulhi(n, 1) = 0: n >> l. The quotient then costs a
// multiply-high, an add and a shift, and the remainder one multiply-add more.
// (tests/conv_tc/indexing.rs checks it against `/` and `%` on every divisor up to 4096 and beyond.)
#ifndef RESNET_CUDA_FAST_DIVMOD_CUH
#define RESNET_CUDA_FAST_DIVMOD_CUH

#include <cstdint>

#include "common.cuh"

struct FastDivmod {
    int divisor = 1;
    std::uint32_t multiplier = 0;
    std::uint32_t shift = 0;

    FastDivmod() = default;

    // d >= 1 (a zero divisor gives d = 1: callers never divide by it, see the loaders).
    __device__ __forceinline__ explicit FastDivmod(int d) : divisor(d > 0 ? d : 1) {
        const std::uint32_t ud = static_cast<std::uint32_t>(divisor);
        shift = 32 - __clz(static_cast<int>(ud - 1));  // ceil(log2 d): 0 for d = 1 (__clz(0) = 32)
        const std::uint64_t two_l = std::uint64_t{1} << shift;
        multiplier = static_cast<std::uint32_t>(((two_l - ud) << 32) / ud + 1);
    }

    // n / d for 0 <= n < 2^31.
    __device__ __forceinline__ int div(int n) const {
        const std::uint32_t un = static_cast<std::uint32_t>(n);
        const std::uint32_t hi = static_cast<std::uint32_t>((static_cast<std::uint64_t>(un) * multiplier) >> 32);
        return static_cast<int>((hi + un) >> shift);
    }

    // q = n / d and r = n % d for 0 <= n < 2^31.
    __device__ __forceinline__ void divmod(int n, int& q, int& r) const {
        q = div(n);
        r = n - q * divisor;
    }
};

#endif
