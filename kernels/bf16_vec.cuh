// bf16_vec.cuh: moving bf16 activations in groups of channels, for the memory-bound bf16 kernels.
//
// A "group" is W consecutive elements of one row (W = kBf16ChannelGroup = 8 when the channel count
// allows, else 1). With kVec the group moves as one 16-byte access (a uint4 of 8 bf16, or two float4
// of 8 floats), which needs the address 16-byte aligned: the kernels check their base pointers once
// (pointers_aligned16) and take kVec only when every one is, since C % 8 == 0 then keeps every group
// aligned. Without kVec the same group moves element by element, so a misaligned view stays correct.
//
// Widening bf16 -> float is exact (the bf16 bits are the float's upper half); narrowing rounds to
// nearest even, once, in store_bf16.
#ifndef RESNET_CUDA_BF16_VEC_CUH
#define RESNET_CUDA_BF16_VEC_CUH

#include <cstdint>

#include "common.cuh"
#include "launch_constants.h"
#include "tensor_core.cuh"

constexpr int kGroup = kBf16ChannelGroup;
static_assert(kGroup == 8, "a 16-byte vector holds 8 bf16");

// Channels per group for a row of C channels: the vector width when it divides C.
__device__ __forceinline__ bool channel_groups_vectorised(int C) { return C % kGroup == 0; }

__device__ __forceinline__ bool pointer_aligned16(const void* p) {
    return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

// Whether every pointer given (null ones included: they are never dereferenced) is 16-byte aligned.
template <class... Ptrs>
__device__ __forceinline__ bool pointers_aligned16(const Ptrs*... ptrs) {
    return (pointer_aligned16(ptrs) && ...);
}

// The two bf16 of a little-endian pair as floats: the low half is the element at the lower address.
__device__ __forceinline__ float bf16_low_as_float(std::uint32_t pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_high_as_float(std::uint32_t pair) { return __uint_as_float(pair & 0xffff0000u); }

// Two floats rounded to bf16 (nearest even) and packed, `low` at the lower address.
__device__ __forceinline__ std::uint32_t pack_floats_bf16x2(float low, float high) {
    return pack_bf16x2(bf16_from_float(low), bf16_from_float(high));
}

template <int W, bool kVec>
__device__ __forceinline__ void load_bf16(const bf16* __restrict__ p, float v[W]) {
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        const uint4 u = *reinterpret_cast<const uint4*>(p);
        const std::uint32_t pairs[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            v[2 * k] = bf16_low_as_float(pairs[k]);
            v[2 * k + 1] = bf16_high_as_float(pairs[k]);
        }
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = bf16_to_float(p[k]);
    }
}

// kRelu: max(v, 0), the ReLU in the rounding (tensor_core.cuh's bf16_from_float_relu).
template <int W, bool kVec, bool kRelu = false>
__device__ __forceinline__ void store_bf16(bf16* __restrict__ p, const float v[W]) {
    const auto pack = [](float low, float high) {
        return kRelu ? pack_floats_bf16x2_relu(low, high) : pack_floats_bf16x2(low, high);
    };
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        uint4 u;
        u.x = pack(v[0], v[1]);
        u.y = pack(v[2], v[3]);
        u.z = pack(v[4], v[5]);
        u.w = pack(v[6], v[7]);
        *reinterpret_cast<uint4*>(p) = u;
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) p[k] = kRelu ? bf16_from_float_relu(v[k]) : bf16_from_float(v[k]);
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void load_f32(const float* __restrict__ p, float v[W]) {
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        const float4 a = reinterpret_cast<const float4*>(p)[0];
        const float4 b = reinterpret_cast<const float4*>(p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = p[k];
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void store_f32(float* __restrict__ p, const float v[W]) {
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) p[k] = v[k];
    }
}

// Bit-exact moves for the pure data-movement kernels (no conversion at all).
template <int W, bool kVec>
__device__ __forceinline__ void copy_bf16(bf16* __restrict__ dst, const bf16* __restrict__ src) {
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) dst[k] = src[k];
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void zero_bf16(bf16* __restrict__ dst) {
    if constexpr (kVec) {
        static_assert(W == kGroup, "vector accesses move whole groups");
        *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) dst[k] = bf16_from_bits(0);
    }
}

// Calls fn<W, kVec>(args...) with the group width and access kind for rows of C channels whose base
// pointers are (or are not) all 16-byte aligned: <8, true>, <8, false> for a misaligned view, or
// <1, false> when 8 does not divide C. The choice is uniform over the launch, so it costs one branch.
#define BF16_DISPATCH_GROUPS(grouped, aligned, fn, ...)    \
    do {                                                   \
        if (grouped) {                                     \
            if (aligned) {                                 \
                fn<kGroup, true>(__VA_ARGS__);             \
            } else {                                       \
                fn<kGroup, false>(__VA_ARGS__);            \
            }                                              \
        } else {                                           \
            fn<1, false>(__VA_ARGS__);                     \
        }                                                  \
    } while (0)

#endif
