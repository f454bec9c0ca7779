// input.cu: a training or test batch built on the device from images kept there as bytes.
//
// Math: for sample b of the batch, its draw (image i, crop offset (dy, dx), mirror f, colour shift
// (s_0, s_1, s_2)) and output pixel (y, x, c) of an H x W x 3 image:
//   x' = (f ? W - 1 - x : x) + dx,  y' = y + dy
//   out[b, y, x, c] = (images[i, y', x', c] / 255 + s_c) - mean[y', x', c]   when (y', x') lies in
//                                                                            the image,
//                     0                                                      otherwise,
//   labels[b] = image_labels[i].
// With s = 0 this is the paper's CIFAR augmentation (pad 4, random crop, mirror) applied after
// normalising, so the padding is zero in the mean-subtracted space, exactly as src/data/augment.rs
// does it on the host; with every draw (i, 0, 0, 0, 0, 0, 0) it is plain normalisation. ImageNet
// views arrive already resized, cropped and mirrored, one image per sample, with their PCA colour
// shift in s (src/data/imagenet.rs). Each operation is one IEEE rounding (__fdiv_rn, __fadd_rn,
// __fsub_rn: nothing fused, whatever the compiler's flags), in the host's order, so the f32 output
// equals the host's `p as f32 / 255.0 + s - mean` (CIFAR: `p as f32 / 255.0 - mean`, and adding
// +0 to a non-negative quotient changes nothing) bit for bit; the bf16 output is that value
// rounded once to nearest even, as casting the host's batch would give.
//
// Layout: images [count, H, W, 3] u8 (HWC, as datasets store them), image_labels [count] f32 (exact
// small integers, as ops::upload_labels stores labels), draws [batch, 7] f32 holding
// (i, dy, dx, f, s_0, s_1, s_2) with the first four exact integers, mean [H, W, 3] f32, out
// [batch, H, W, 3] (NHWC), labels [batch] f32. The host checks every i < count and |dy|, |dx| < H, W
// before uploading the draws; an index outside the store would read outside it, so the kernel does
// not trust it either and writes a NaN label (which the loss turns into a NaN loss, stopping the
// run) with a zero image.
// Launch: pixels_bf16.cuh's shape over the [batch, H, W] output pixels, one lane per pixel.
#include "bf16_vec.cuh"
#include "pixels_bf16.cuh"

namespace input_batch {

__device__ __forceinline__ void store_value(float* out, float v) { *out = v; }
__device__ __forceinline__ void store_value(bf16* out, float v) { *out = bf16_from_float(v); }

template <class Out>
__device__ __forceinline__ void gather(const unsigned char* __restrict__ images,
                                       const float* __restrict__ image_labels, const float* __restrict__ draws,
                                       const float* __restrict__ mean, Out* __restrict__ out,
                                       float* __restrict__ labels, int batch, int H, int W, int count) {
    for_owned_pixels(batch, H, W, [&](int b, int y, int x) {
        const float* draw = draws + kImageDrawWidth * static_cast<long long>(b);
        const int i = static_cast<int>(draw[0]), dy = static_cast<int>(draw[1]), dx = static_cast<int>(draw[2]);
        const bool flip = draw[3] != 0.0f;
        const bool known = i >= 0 && i < count;
        if (y == 0 && x == 0) labels[b] = known ? image_labels[i] : __int_as_float(0x7fc00000);
        const int sy = y + dy, sx = (flip ? W - 1 - x : x) + dx;
        const bool inside = known && sy >= 0 && sy < H && sx >= 0 && sx < W;
        Out* dst = out + ((static_cast<long long>(b) * H + y) * W + x) * 3;
        if (!inside) {
            for (int c = 0; c < 3; ++c) store_value(dst + c, 0.0f);
            return;
        }
        const long long at = (static_cast<long long>(sy) * W + sx) * 3;
        const unsigned char* src = images + static_cast<long long>(i) * H * W * 3 + at;
        for (int c = 0; c < 3; ++c) {
            const float scaled = __fadd_rn(__fdiv_rn(static_cast<float>(src[c]), 255.0f), draw[4 + c]);
            store_value(dst + c, __fsub_rn(scaled, mean[at + c]));
        }
    });
}

}  // namespace input_batch

#define INPUT_BATCH_KERNEL(name, Out)                                                                   \
    extern "C" __global__ void name(const unsigned char* images, const float* image_labels,           \
                                    const float* draws, const float* mean, Out* out, float* labels,   \
                                    int batch, int H, int W, int count) {                             \
        grid_dependency_sync();                                                                       \
        input_batch::gather(images, image_labels, draws, mean, out, labels, batch, H, W, count);      \
    }                                                                                                 \
    EMU_REGISTER(name)

INPUT_BATCH_KERNEL(image_batch_f32, float);
INPUT_BATCH_KERNEL(image_batch_bf16, bf16);
