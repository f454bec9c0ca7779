// channel_pad.cu: a convolution whose channel count C is not a multiple of 8 (the C = 3 stems) runs
// the tensor-core vector kernels on operands widened to CP = 8 ceil(C / 8) channels, since their
// 16-byte cp.async chunks need C % 8 == 0; the element-gather kernels it would otherwise take spend
// a dozen integer instructions per element. The filter gradient comes back narrowed to C channels.
//
// Math:
//   channels_pad_bf16:   dst[r][j] = src[r][j] for j < C, +0 for C <= j < CP, over rows r < rows
//                        (src rows of C bf16, dst rows of CP bf16): a selection, bit-exact. The zero
//                        channels add exact zeros to every sum of the convolution, and their weights'
//                        gradient is dropped.
//   channels_unpad_f32:  dst[r][j] = src[r][j] for j < C, over rows r < rows (src rows of CP floats,
//                        dst rows of C).
// Launch (bf16_launch::channel_rows): any 1-D grid and block; grid-stride loops, channels_pad_bf16 a
// row per thread (CP / 8 16-byte stores: dst 16-byte aligned), channels_unpad_f32 an element per
// thread.
#include "common.cuh"

extern "C" __global__ void channels_pad_bf16(const unsigned short* src, unsigned short* dst, unsigned long long rows,
                                             int c, int cp) {
    grid_dependency_sync();
    for (unsigned long long r = global_thread_index(); r < rows; r += grid_stride()) {
        const unsigned short* in = src + r * c;
        for (int q = 0; q < cp; q += 8) {
            unsigned int word[4];
            for (int e = 0; e < 8; e += 2) {
                const unsigned int lo = q + e < c ? in[q + e] : 0u;
                const unsigned int hi = q + e + 1 < c ? in[q + e + 1] : 0u;
                word[e / 2] = lo | hi << 16;
            }
            *reinterpret_cast<uint4*>(dst + r * cp + q) = make_uint4(word[0], word[1], word[2], word[3]);
        }
    }
}
EMU_REGISTER(channels_pad_bf16);

extern "C" __global__ void channels_unpad_f32(const float* src, float* dst, unsigned long long rows, int cp, int c) {
    grid_dependency_sync();
    const unsigned long long n = rows * static_cast<unsigned long long>(c);
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        const unsigned long long r = i / c;
        dst[i] = src[r * cp + (i - r * c)];
    }
}
EMU_REGISTER(channels_unpad_f32);
