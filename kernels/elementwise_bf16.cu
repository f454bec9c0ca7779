// elementwise_bf16.cu: the residual add and its backward on bf16 tensors, and the casts between fp32
// and bf16. Every tensor is contiguous, all of length n; the layout is irrelevant.
//
// Math (inputs widened exactly to fp32, each output rounded once to nearest even):
//   add_forward_bf16:  y = round(a + b), with relu != 0 max(y, 0) in the same rounding (a NaN stays a
//                      NaN, the canonical one: tensor_core.cuh's bf16_from_float_relu). The fp32 sum of two bf16 is their exact sum rounded to fp32, and
//                      rounding that to bf16 equals rounding the exact sum (the fp32 rounding can only
//                      touch bits far below bf16's half unit), so the result is correctly rounded.
//   add_backward_bf16: dsum = dy where y > 0 or relu == 0, else +0: a selection, bit-exact.
//   cast_f32_to_bf16:  dst = round(src) (NaN stays NaN, overflow goes to infinity)
//   cast_bf16_to_f32:  dst = src, exact
// Launch (bf16_launch::elementwise): any 1-D grid and block. Thread t of the grid-stride loop takes the
// 8-element vectors t, t + stride, ... (16-byte accesses when every pointer is 16-byte aligned), then
// the n % 8 tail elements one each. Without alignment the same loop runs element by element.
#include "bf16_vec.cuh"

namespace elementwise_bf16 {

// Calls op.apply<kGroup, true>(i) for every 8-element vector (i its first element) this thread owns
// when kVec, then op.apply<1, false>(i) for every remaining element; with !kVec for every element.
template <bool kVec, class Op>
__device__ __forceinline__ void for_owned_elements(unsigned long long n, const Op& op) {
    unsigned long long scalar_start = 0;
    if (kVec) {
        const unsigned long long vectors = n / kGroup;
        for (unsigned long long v = global_thread_index(); v < vectors; v += grid_stride()) {
            op.template apply<kGroup, true>(v * kGroup);
        }
        scalar_start = vectors * kGroup;
    }
    for (unsigned long long i = scalar_start + global_thread_index(); i < n; i += grid_stride()) {
        op.template apply<1, false>(i);
    }
}

template <class Op>
__device__ __forceinline__ void run(unsigned long long n, bool aligned, const Op& op) {
    if (aligned) {
        for_owned_elements<true>(n, op);
    } else {
        for_owned_elements<false>(n, op);
    }
}

struct AddForward {
    const bf16* __restrict__ a;
    const bf16* __restrict__ b;
    bf16* __restrict__ y;
    int relu;
    template <int W, bool kVec>
    __device__ __forceinline__ void apply(unsigned long long i) const {
        float va[W], vb[W];
        load_bf16<W, kVec>(a + i, va);
        load_bf16<W, kVec>(b + i, vb);
#pragma unroll
        for (int k = 0; k < W; ++k) va[k] += vb[k];
        if (relu) {
            store_bf16<W, kVec, true>(y + i, va);
        } else {
            store_bf16<W, kVec>(y + i, va);
        }
    }
};

// A selection of dy's bits, never a conversion of them: dy passes unchanged (NaN payloads included).
struct AddBackward {
    const bf16* __restrict__ y;
    const bf16* __restrict__ dy;
    bf16* __restrict__ dsum;
    int relu;
    template <int W, bool kVec>
    __device__ __forceinline__ void apply(unsigned long long i) const {
        if (!relu) {
            copy_bf16<W, kVec>(dsum + i, dy + i);
            return;
        }
        if constexpr (kVec) {
            const uint4 yu = *reinterpret_cast<const uint4*>(y + i);
            const uint4 du = *reinterpret_cast<const uint4*>(dy + i);
            uint4 out;
            out.x = select_pair(yu.x, du.x);
            out.y = select_pair(yu.y, du.y);
            out.z = select_pair(yu.z, du.z);
            out.w = select_pair(yu.w, du.w);
            *reinterpret_cast<uint4*>(dsum + i) = out;
        } else {
#pragma unroll
            for (int k = 0; k < W; ++k) dsum[i + k] = bf16_to_float(y[i + k]) > 0.0f ? dy[i + k] : bf16_from_bits(0);
        }
    }
    // Per half of the pair: dy's half where y's half is > 0, else zero.
    __device__ __forceinline__ static std::uint32_t select_pair(std::uint32_t y_pair, std::uint32_t dy_pair) {
        const std::uint32_t low = bf16_low_as_float(y_pair) > 0.0f ? 0x0000ffffu : 0u;
        const std::uint32_t high = bf16_high_as_float(y_pair) > 0.0f ? 0xffff0000u : 0u;
        return dy_pair & (low | high);
    }
};

struct CastToBf16 {
    const float* __restrict__ src;
    bf16* __restrict__ dst;
    template <int W, bool kVec>
    __device__ __forceinline__ void apply(unsigned long long i) const {
        float v[W];
        load_f32<W, kVec>(src + i, v);
        store_bf16<W, kVec>(dst + i, v);
    }
};

struct CastToF32 {
    const bf16* __restrict__ src;
    float* __restrict__ dst;
    template <int W, bool kVec>
    __device__ __forceinline__ void apply(unsigned long long i) const {
        float v[W];
        load_bf16<W, kVec>(src + i, v);
        store_f32<W, kVec>(dst + i, v);
    }
};

}  // namespace elementwise_bf16

extern "C" __global__ void add_forward_bf16(const bf16* a, const bf16* b, bf16* y, unsigned long long n, int relu) {
    grid_dependency_sync();
    elementwise_bf16::run(n, pointers_aligned16(a, b, y), elementwise_bf16::AddForward{a, b, y, relu});
}
EMU_REGISTER(add_forward_bf16);

extern "C" __global__ void add_backward_bf16(const bf16* y, const bf16* dy, bf16* dsum, unsigned long long n,
                                             int relu) {
    grid_dependency_sync();
    elementwise_bf16::run(n, pointers_aligned16(y, dy, dsum), elementwise_bf16::AddBackward{y, dy, dsum, relu});
}
EMU_REGISTER(add_backward_bf16);

extern "C" __global__ void cast_f32_to_bf16(const float* src, bf16* dst, unsigned long long n) {
    grid_dependency_sync();
    elementwise_bf16::run(n, pointers_aligned16(src, dst), elementwise_bf16::CastToBf16{src, dst});
}
EMU_REGISTER(cast_f32_to_bf16);

extern "C" __global__ void cast_bf16_to_f32(const bf16* src, float* dst, unsigned long long n) {
    grid_dependency_sync();
    elementwise_bf16::run(n, pointers_aligned16(src, dst), elementwise_bf16::CastToF32{src, dst});
}
EMU_REGISTER(cast_bf16_to_f32);
