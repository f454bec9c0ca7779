// emu_bfloat16.h: the host emulator's bfloat16, standing in for CUDA's __nv_bfloat16.
//
// bfloat16 is the upper half of an IEEE binary32: 1 sign bit, the same 8 exponent bits, 7 stored
// mantissa bits. So widening to float is exact (append 16 zero bits), and narrowing is a rounding of
// the 32-bit pattern to its upper 16 bits. Like __float2bfloat16_rn (cvt.rn.bf16.f32), narrowing
// rounds to nearest, ties to even; values past the largest bf16 round to infinity; a NaN stays a NaN
// (its payload's top bits kept and the quiet bit set, so rounding can never carry it into infinity).
//
// Storage only: a trivial struct (no constructors), so it can live in __shared__ arrays, which are
// `static __thread` in the emulator. Arithmetic goes through float, as the kernels do on the device.
#ifndef RESNET_CUDA_EMU_BFLOAT16_H
#define RESNET_CUDA_EMU_BFLOAT16_H

#include <cstdint>
#include <cstring>

namespace emu {

struct bfloat16 {
    std::uint16_t bits;
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 is 16 bits, like __nv_bfloat16");

inline bfloat16 bfloat16_from_float(float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    // Round to nearest even: add just under half a unit of the kept part (0x7fff), plus one more when
    // the kept part is odd, so that an exact half rounds up only from an odd value. A carry out of the
    // mantissa raises the exponent, which is the correct rounding (up to infinity at the top).
    u += 0x7fffu + ((u >> 16) & 1u);
    return bfloat16{static_cast<std::uint16_t>(u >> 16)};
}

// cvt.rn.relu.bf16.f32: the rounding above, then a negative result (sign bit set: -0 included, which
// is this emulator's reading of "clamps the result to 0 if negative"; tests/tensor_core.rs checks it
// against the hardware) becomes +0, and a NaN becomes the canonical NaN 0x7fff, as the PTX ISA
// specifies for .relu.
inline bfloat16 bfloat16_relu_from_float(float x) {
    if (x != x) return bfloat16{0x7fffu};
    const bfloat16 rounded = bfloat16_from_float(x);
    return (rounded.bits & 0x8000u) != 0 ? bfloat16{0} : rounded;
}

inline float bfloat16_to_float(bfloat16 x) {
    const std::uint32_t u = static_cast<std::uint32_t>(x.bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

}  // namespace emu

#endif
