// pool_bf16.cu: max pooling and global average pooling over bf16 NHWC activations, with backwards.
// The math is pool.cu's (see its header); here inputs widen exactly to fp32 and bf16 outputs round once:
//   max_pool_forward_bf16:  y = the window's first maximum (row-major taps, a later tap must be strictly
//                           larger), an exact copy of an input value
//   max_pool_backward_bf16: dx[n,h,w,c] = round(sum of dy over the windows whose first maximum is
//                           (h, w)), summed in fp32 in row-major window order (a gather: no atomics),
//                           in two passes: max_pool_argmax_bf16 records each output's first maximum as
//                           its tap in the window (i window + j, one byte: taps [N,P,Q,C], windows up
//                           to 15 x 15), then each input pixel reads the taps of the (at most
//                           ceil(window / stride)^2) windows covering it. The maxima are found once
//                           per output, not again for every input pixel under the window (at the
//                           stem, 3x3 stride 2, every window 2.25 times, each through BN at 9 taps).
//   global_avg_pool_forward_bf16:  y[n,c] (fp32) = (sum over the H W pixels, in order, in fp32) / (H W)
//   global_avg_pool_backward_bf16: dx[n,h,w,c] = round(dy[n,c] (fp32) * inv_hw), the product in fp32
// (the head after global average pooling stays fp32, hence fp32 y and dy).
//   max_pool_forward_bnrelu_bf16, max_pool_argmax_bnrelu_bf16: the same, pooling z = relu(x scale_c +
//                           shift_c), a training-mode batch norm's output with its ReLU, computed from BN's input
//                           x at every tap (the ImageNet stem: conv -> BN -> ReLU -> max pool), so z is
//                           never stored: the normalising pass's arithmetic (bn_affine.cuh), its ReLU
//                           and its one rounding to bf16, so the maxima, their positions, y and dx
//                           (the gradient with respect to z, what BN's backward takes) are bit for bit
//                           those of pooling the stored z. BN's backward then takes its ReLU mask from x.
//   max_pool_backward_bnrelu_sums_bf16: that backward's second pass, and from it BN's backward sums
//                           (conv_tc_bn_grad.cuh's, in its [2][C][P] layout, for
//                           batch_norm_backward_finalize_tiles_f32), so BN's backward never reads dz
//                           for them: per channel c and block p of the P in the grid, over the pixels
//                           the block owns, with g = dz [x scale_c + shift_c > 0] (dz as stored, the
//                           mask the data pass takes),
//                             partial[0][c][p] = sum g,   partial[1][c][p] = sum g (x - mean_c)
//                           in fp32: each thread over its pixels in order, then the block's ty lanes
//                           in row_lanes.cuh's fixed tree (no atomics: the same bits every run).
//
// Launch (src/backend/gpu/bf16_launch.rs). A thread owns a group of W channels (8, one 16-byte vector,
// when 8 divides C; else 1):
//   max pool: pixels_bf16.cuh's shape over the output (forward, argmax) or input (backward) pixels; the sums
//     variant with one lane per channel group (blockDim.x = C / W) and its grid's images clamped, so
//     that P stays in the thousands (bf16_launch.rs, max_pool_backward_sums).
//   global_avg_pool_forward: block (tx, ty), grid (groups / tx, N / ty): lanes over channel groups and
//     images; a thread sums one image's pixels for its group.
//   global_avg_pool_backward: block (tx, ty), grid (groups / tx, N): a thread forms its group's
//     gradient once and stores it to pixels ty, ty + blockDim.y, ... of image blockIdx.y.
// Any grid is correct (every loop strides by its grid extent).
#include <type_traits>

#include "bf16_vec.cuh"
#include "bn_affine.cuh"
#include "pixels_bf16.cuh"
#include "row_lanes.cuh"

namespace pool_bf16 {

struct PoolShape {
    int N, H, W, C, P, Q, window, stride, pad;
};

// What a window compares at a tap: the activation as stored (kBn false), or batch norm + ReLU of it
// (kBn: BN's input is stored), with the coefficients of the window's W channels.
template <int W, bool kBn>
struct TapMap {
    float scale[kBn ? W : 1], shift[kBn ? W : 1];

    __device__ __forceinline__ TapMap(const BnAffineParams& bn, int c0) {
        if constexpr (kBn) bn_affine_coefficients<W>(bn.mean, bn.inv_std, bn.gamma, bn.beta, c0, scale, shift);
    }

    // z as the normalising pass stores it: the affine map, then one rounding with the ReLU in it.
    __device__ __forceinline__ void apply(float v[W]) const {
        if constexpr (kBn) {
#pragma unroll
            for (int k = 0; k < W; ++k) {
                const float z = bn_affine(v[k], scale[k], shift[k]);
                v[k] = bf16_to_float(bf16_from_float_relu(z));
            }
        }
    }
};

// The window of output (p, q) over channels [c0, c0 + W) of image `img` (x[n, 0, 0, 0]), each tap
// through `map`: the first maximum's value and tap (i window + j, for the input pixel (p stride - pad
// + i, q stride - pad + j)) per channel. A window without an in-range tap (impossible when pad <
// window) reports tap kNoTap and value 0.
constexpr int kNoTap = 255;

template <int W, bool kVec, bool kBn>
__device__ __forceinline__ void window_max(const bf16* __restrict__ img, const PoolShape& s, int p, int q, int c0,
                                           const TapMap<W, kBn>& map, float best[W], int best_tap[W]) {
#pragma unroll
    for (int k = 0; k < W; ++k) best[k] = 0.0f, best_tap[k] = kNoTap;
    bool found = false;
    const int h0 = p * s.stride - s.pad, w0 = q * s.stride - s.pad;
    for (int i = 0; i < s.window; ++i) {
        const int h = h0 + i;
        if (h < 0 || h >= s.H) continue;
        for (int j = 0; j < s.window; ++j) {
            const int w = w0 + j;
            if (w < 0 || w >= s.W) continue;
            float v[W];
            load_bf16<W, kVec>(img + (static_cast<long long>(h) * s.W + w) * s.C + c0, v);
            map.apply(v);
#pragma unroll
            for (int k = 0; k < W; ++k) {
                if (!found || v[k] > best[k]) best[k] = v[k], best_tap[k] = i * s.window + j;
            }
            found = true;
        }
    }
}

// The taps of W channels as bytes (the backward's workspace: tap < window^2 <= 225, or kNoTap): 8 as
// one 8-byte access (kVec: the channel group's offset is a multiple of 8 and the base 16-byte aligned).
template <int W, bool kVec>
__device__ __forceinline__ void store_taps(std::uint8_t* __restrict__ p, const int tap[W]) {
    if constexpr (kVec) {
        uint2 u;
        u.x = tap[0] | tap[1] << 8 | tap[2] << 16 | static_cast<std::uint32_t>(tap[3]) << 24;
        u.y = tap[4] | tap[5] << 8 | tap[6] << 16 | static_cast<std::uint32_t>(tap[7]) << 24;
        *reinterpret_cast<uint2*>(p) = u;
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) p[k] = static_cast<std::uint8_t>(tap[k]);
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void load_taps(const std::uint8_t* __restrict__ p, int tap[W]) {
    if constexpr (kVec) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
#pragma unroll
        for (int k = 0; k < 4; ++k) tap[k] = (u.x >> (8 * k)) & 0xff, tap[4 + k] = (u.y >> (8 * k)) & 0xff;
    } else {
#pragma unroll
        for (int k = 0; k < W; ++k) tap[k] = p[k];
    }
}

// Each output pixel's window over its channel groups: the first maximum's value (Out = bf16: the
// forward's y) or its tap (Out = std::uint8_t: the backward's first pass, taps [N, P, Q, C]).
template <int W, bool kVec, bool kBn, class Out>
__device__ __forceinline__ void max_pool_windows(const bf16* __restrict__ x, const BnAffineParams& bn,
                                                 Out* __restrict__ out, PoolShape s) {
    for_owned_pixels(s.N, s.P, s.Q, [&](int n, int p, int q) {
        const bf16* img = x + static_cast<long long>(n) * s.H * s.W * s.C;
        Out* pixel = out + ((static_cast<long long>(n) * s.P + p) * s.Q + q) * s.C;
        for_lane_groups(s.C / W, [&](int g) {
            const TapMap<W, kBn> map(bn, g * W);
            float best[W];
            int best_tap[W];
            window_max<W, kVec>(img, s, p, q, g * W, map, best, best_tap);
            if constexpr (std::is_same_v<Out, std::uint8_t>) {
                store_taps<W, kVec>(pixel + g * W, best_tap);
            } else {
                store_bf16<W, kVec>(pixel + g * W, best);  // exact: best holds bf16 values
            }
        });
    });
}

// Outputs whose window covers input coordinate h along one axis: o stride - pad <= h < o stride - pad +
// window, clipped to [0, outputs).
__device__ __forceinline__ void covering_outputs(int h, int stride, int pad, int window, int outputs, int* lo,
                                                 int* hi) {
    const int a = h + pad - window + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    const int b = (h + pad) / stride;
    *hi = b < outputs - 1 ? b : outputs - 1;
}

// The gradient of input pixel (h, w) of image n over channels [c0, c0 + W) (taps_img, dy_img: that
// image's taps and output gradient): the sum, in fp32 and in row-major window order, of dy over the
// windows whose first maximum is (h, w), i.e. whose recorded tap is (h, w)'s place in the window.
template <int W, bool kVec>
__device__ __forceinline__ void pixel_gradient(const std::uint8_t* __restrict__ taps_img,
                                               const bf16* __restrict__ dy_img, const PoolShape& s, int h, int w,
                                               int c0, float acc[W]) {
    int p_lo, p_hi, q_lo, q_hi;
    covering_outputs(h, s.stride, s.pad, s.window, s.P, &p_lo, &p_hi);
    covering_outputs(w, s.stride, s.pad, s.window, s.Q, &q_lo, &q_hi);
#pragma unroll
    for (int k = 0; k < W; ++k) acc[k] = 0.0f;
    for (int p = p_lo; p <= p_hi; ++p) {
        const int row_tap = (h - (p * s.stride - s.pad)) * s.window;
        for (int q = q_lo; q <= q_hi; ++q) {
            const int me = row_tap + w - (q * s.stride - s.pad);
            const long long at = (static_cast<long long>(p) * s.Q + q) * s.C + c0;
            int tap[W];
            float grad[W];
            load_taps<W, kVec>(taps_img + at, tap);
            load_bf16<W, kVec>(dy_img + at, grad);
#pragma unroll
            for (int k = 0; k < W; ++k) {
                if (tap[k] == me) acc[k] += grad[k];
            }
        }
    }
}

// The backward's second pass: dx from the taps the first recorded (the gradient with respect to the
// pooled activation: z's, for the BN-input pool).
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_backward(const std::uint8_t* __restrict__ taps, const bf16* __restrict__ dy,
                                                  bf16* __restrict__ dx, PoolShape s) {
    for_owned_pixels(s.N, s.H, s.W, [&](int n, int h, int w) {
        const std::uint8_t* taps_img = taps + static_cast<long long>(n) * s.P * s.Q * s.C;
        const bf16* dy_img = dy + static_cast<long long>(n) * s.P * s.Q * s.C;
        bf16* out = dx + ((static_cast<long long>(n) * s.H + h) * s.W + w) * s.C;
        for_lane_groups(s.C / W, [&](int g) {
            float acc[W];
            pixel_gradient<W, kVec>(taps_img, dy_img, s, h, w, g * W, acc);
            store_bf16<W, kVec>(out + g * W, acc);
        });
    });
}

// max_pool_backward from the BN-input pool's taps, and the backward sums of that BN (see the header). Lane tx owns
// channel group tx (the launch gives blockDim.x = C / W) for every pixel the thread owns; s0 and s1
// are kLaneSlots floats of shared memory each.
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_backward_bnrelu_sums(const bf16* __restrict__ x, const BnAffineParams& bn,
                                                              const std::uint8_t* __restrict__ taps,
                                                              const bf16* __restrict__ dy, bf16* __restrict__ dx,
                                                              float* __restrict__ partial, PoolShape s, float* s0,
                                                              float* s1) {
    const int group = threadIdx.x, c0 = group * W;
    const bool owns = group < s.C / W;
    float a0[W], a1[W], mu[W];
#pragma unroll
    for (int k = 0; k < W; ++k) a0[k] = a1[k] = mu[k] = 0.0f;
    if (owns) {
        const TapMap<W, true> map(bn, c0);
#pragma unroll
        for (int k = 0; k < W; ++k) mu[k] = bn.mean[c0 + k];
        for_owned_pixels(s.N, s.H, s.W, [&](int n, int h, int w) {
            const std::uint8_t* taps_img = taps + static_cast<long long>(n) * s.P * s.Q * s.C;
            const bf16* dy_img = dy + static_cast<long long>(n) * s.P * s.Q * s.C;
            const long long at = ((static_cast<long long>(n) * s.H + h) * s.W + w) * s.C + c0;
            float dz[W], xv[W];
            pixel_gradient<W, kVec>(taps_img, dy_img, s, h, w, c0, dz);
            store_bf16<W, kVec>(dx + at, dz);
            load_bf16<W, kVec>(x + at, xv);
#pragma unroll
            for (int k = 0; k < W; ++k) {
                // dz as stored; the mask as the data pass takes it (bn_affine.cuh: the forward's).
                const float stored = bf16_to_float(bf16_from_float(dz[k]));
                const float g = bn_affine(xv[k], map.scale[k], map.shift[k]) > 0.0f ? stored : 0.0f;
                a0[k] += g;
                a1[k] += g * (xv[k] - mu[k]);
            }
        });
    }
    float* mine0 = s0 + (threadIdx.y * blockDim.x + threadIdx.x) * W;
    float* mine1 = s1 + (threadIdx.y * blockDim.x + threadIdx.x) * W;
#pragma unroll
    for (int k = 0; k < W; ++k) mine0[k] = a0[k], mine1[k] = a1[k];
    __syncthreads();
    reduce_row_lanes<W>(s0);
    reduce_row_lanes<W>(s1);
    if (threadIdx.y == 0 && owns) {
        const long long P = static_cast<long long>(gridDim.x) * gridDim.y * gridDim.z;
        const long long p = blockIdx.x + static_cast<long long>(gridDim.x) * (blockIdx.y + static_cast<long long>(gridDim.y) * blockIdx.z);
#pragma unroll
        for (int k = 0; k < W; ++k) {
            partial[(c0 + k) * P + p] = s0[threadIdx.x * W + k];
            partial[(s.C + c0 + k) * P + p] = s1[threadIdx.x * W + k];
        }
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void global_avg_pool_forward(const bf16* __restrict__ x, float* __restrict__ y, int N,
                                                        int HW, int C) {
    const int groups = C / W;
    for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += gridDim.x * blockDim.x) {
        for (int n = blockIdx.y * blockDim.y + threadIdx.y; n < N; n += gridDim.y * blockDim.y) {
            const bf16* pixel = x + static_cast<long long>(n) * HW * C + g * W;
            float acc[W];
#pragma unroll
            for (int k = 0; k < W; ++k) acc[k] = 0.0f;
            for (int i = 0; i < HW; ++i, pixel += C) {
                float v[W];
                load_bf16<W, kVec>(pixel, v);
#pragma unroll
                for (int k = 0; k < W; ++k) acc[k] += v[k];
            }
#pragma unroll
            for (int k = 0; k < W; ++k) acc[k] = acc[k] / static_cast<float>(HW);
            store_f32<W, kVec>(y + static_cast<long long>(n) * C + g * W, acc);
        }
    }
}

template <int W, bool kVec>
__device__ __forceinline__ void global_avg_pool_backward(const float* __restrict__ dy, bf16* __restrict__ dx, int N,
                                                         int HW, int C, float inv_hw) {
    const int groups = C / W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        for (int g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += gridDim.x * blockDim.x) {
            float v[W];
            load_f32<W, kVec>(dy + static_cast<long long>(n) * C + g * W, v);
#pragma unroll
            for (int k = 0; k < W; ++k) v[k] = v[k] * inv_hw;
            bf16* pixel = dx + (static_cast<long long>(n) * HW + threadIdx.y) * C + g * W;
            const long long pixel_step = static_cast<long long>(blockDim.y) * C;
            for (int i = threadIdx.y; i < HW; i += blockDim.y, pixel += pixel_step) store_bf16<W, kVec>(pixel, v);
        }
    }
}

}  // namespace pool_bf16

using pool_bf16::PoolShape;

extern "C" __global__ void global_avg_pool_forward_bf16(const bf16* x, float* y, int N, int HW, int C) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, y), pool_bf16::global_avg_pool_forward,
                         x, y, N, HW, C);
}
EMU_REGISTER(global_avg_pool_forward_bf16);

extern "C" __global__ void global_avg_pool_backward_bf16(const float* dy, bf16* dx, int N, int HW, int C,
                                                         float inv_hw) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(dy, dx),
                         pool_bf16::global_avg_pool_backward, dy, dx, N, HW, C, inv_hw);
}
EMU_REGISTER(global_avg_pool_backward_bf16);

namespace pool_bf16 {
// BF16_DISPATCH_GROUPS instantiates `fn<W, kVec>`: the stored and the BN-input variants as such.
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_forward_stored(const bf16* x, bf16* y, PoolShape s) {
    max_pool_windows<W, kVec, false>(x, BnAffineParams{}, y, s);
}
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_forward_bnrelu(const bf16* x, const BnAffineParams& bn, bf16* y,
                                                        PoolShape s) {
    max_pool_windows<W, kVec, true>(x, bn, y, s);
}
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_argmax_stored(const bf16* x, std::uint8_t* taps, PoolShape s) {
    max_pool_windows<W, kVec, false>(x, BnAffineParams{}, taps, s);
}
template <int W, bool kVec>
__device__ __forceinline__ void max_pool_argmax_bnrelu(const bf16* x, const BnAffineParams& bn, std::uint8_t* taps,
                                                       PoolShape s) {
    max_pool_windows<W, kVec, true>(x, bn, taps, s);
}
}  // namespace pool_bf16

extern "C" __global__ void max_pool_forward_bf16(const bf16* x, bf16* y, int N, int H, int W, int C, int P, int Q,
                                                 int window, int stride, int pad) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, y), pool_bf16::max_pool_forward_stored,
                         x, y, PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_forward_bf16);

// The backward's two passes (a pool over the stored activation, or with BN + ReLU at each tap: the
// _bnrelu pass): taps [N, P, Q, C] bytes, the workspace between them.
extern "C" __global__ void max_pool_argmax_bf16(const bf16* x, std::uint8_t* taps, int N, int H, int W, int C, int P,
                                                int Q, int window, int stride, int pad) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, taps), pool_bf16::max_pool_argmax_stored,
                         x, taps, PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_argmax_bf16);

extern "C" __global__ void max_pool_backward_bf16(const std::uint8_t* taps, const bf16* dy, bf16* dx, int N, int H,
                                                  int W, int C, int P, int Q, int window, int stride, int pad) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(taps, dy, dx), pool_bf16::max_pool_backward,
                         taps, dy, dx, PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_backward_bf16);

// x is BN's input; mean, inv_std (its forward's saved batch statistics), gamma, beta: fp32 [C].
extern "C" __global__ void max_pool_forward_bnrelu_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                        const float* gamma, const float* beta, bf16* y, int N, int H,
                                                        int W, int C, int P, int Q, int window, int stride, int pad) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, y), pool_bf16::max_pool_forward_bnrelu,
                         x, BnAffineParams{mean, inv_std, gamma, beta}, y,
                         PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_forward_bnrelu_bf16);

extern "C" __global__ void max_pool_argmax_bnrelu_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                       const float* gamma, const float* beta, std::uint8_t* taps, int N,
                                                       int H, int W, int C, int P, int Q, int window, int stride,
                                                       int pad) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, taps), pool_bf16::max_pool_argmax_bnrelu,
                         x, BnAffineParams{mean, inv_std, gamma, beta}, taps,
                         PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_argmax_bnrelu_bf16);

// The stem's BN backward sums too, into `partial` ([2][C][P] floats, P = the grid's blocks; see the
// header): blockDim.x must be C / 8 (or C when 8 does not divide C).
extern "C" __global__ void max_pool_backward_bnrelu_sums_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                              const float* gamma, const float* beta,
                                                              const std::uint8_t* taps, const bf16* dy, bf16* dx,
                                                              float* partial, int N, int H, int W, int C, int P, int Q,
                                                              int window, int stride, int pad) {
    grid_dependency_sync();
    __shared__ float s0[kLaneSlots], s1[kLaneSlots];
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, taps, dy, dx),
                         pool_bf16::max_pool_backward_bnrelu_sums, x, BnAffineParams{mean, inv_std, gamma, beta}, taps,
                         dy, dx, partial, PoolShape{N, H, W, C, P, Q, window, stride, pad}, s0, s1);
}
EMU_REGISTER(max_pool_backward_bnrelu_sums_bf16);
