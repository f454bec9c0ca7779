// batch_norm_bf16.cu: batch norm over bf16 NHWC activations x[M, C] (M = N H W), with fp32 per-channel
// parameters and statistics. The math is batch_norm.cu's (see its header), computed in fp32 from the
// exactly widened bf16 inputs; every bf16 output is rounded once (nearest even):
//   partial_sum:      partial[0][p][c] = sum over partition p's rows of x[m,c]
//   partial_sqdev:    partial[0][p][c] = sum of (x[m,c] - mean_c)^2
//   backward_partial: partial[0][p][c] = sum g,  partial[1][p][c] = sum g (x[m,c] - mean_c),
//                     g = dy, or dy [y > 0] (mask kMaskFromY: y is a block's output, see below), or
//                     dy [x scale_c + shift_c > 0] (kMaskFromAffine: BN's own ReLU)
//   normalize:        y = round(x scale_c + shift_c), scale = gamma inv_std, shift = beta - mean scale,
//                     relu in the rounding (cvt.rn.relu: max(., 0), a NaN stays NaN; tensor_core.cuh)
//   normalize_add:    out = round((x scale_c + shift_c) + residual), relu likewise (one rounding)
//   normalize_add_bn: the same with residual = round(r rscale_c + rshift_c), the output of a second
//                     batch norm (no ReLU) of r, rounded as that BN's normalize would store it (a
//                     residual block's projection shortcut, whose BN output is then never stored):
//                     bit for bit normalize of r, then normalize_add
//   backward_data:    dx = round(k1 g - k2 (x - mean_c) - k0), coef = [k0 | k1 | k2] from the f32
//                     batch_norm_backward_finalize_f32; g = dy, or with relu dy [x scale_c + shift_c > 0]
//   add_relu_backward_data: the same with g = dout [out > 0] (out = relu(BN(x) + residual), the end
//                     of a residual block), and dsum = g stored too (exact), the residual's gradient
// BN's own ReLU mask is taken from x and the forward's affine map (bn_affine_coefficients, bn_affine:
// the same code as normalize's, so the sign is exactly the one the forward clamped), not from the
// stored output y: a tensor fewer to read in both backward passes. The one exception, a positive
// x scale + shift below half bf16's smallest subnormal (2^-134), stored as 0 but kept by the mask,
// is ReLU's derivative at a positive input: right, and never met in practice.
// The partial layout is the f32 kernels' ([q][P][C] floats, P = gridDim.y), so the f32 finalize kernels
// (batch_norm_finalize_mean_f32, _var_f32, batch_norm_backward_finalize_f32) complete the statistics.
// In training, a BN right after a tensor-core convolution skips partial_sum and partial_sqdev: the
// convolution's epilogue wrote per-tile partials (conv_tc_stats.cuh) that batch_norm_finalize_tiles_f32
// merges (src/backend/gpu/batch_norm.rs, StatisticsSource::ConvTiles).
// Likewise backward: a BN whose output gradient a tensor-core backward-data wrote inside a block
// skips backward_partial, that convolution's epilogue having written the same sums (laid out
// [2][C][P], conv_tc_bn_grad.cuh) for batch_norm_backward_finalize_tiles_f32.
//
// Launch (src/backend/gpu/bf16_launch.rs): a thread owns one group of W channels (W = 8, one 16-byte
// vector, when 8 divides C; else 1) and walks rows, so the per-channel parameters are loaded once per
// thread and no index is divided in the loops. Block (tx, ty), at most kBf16Threads threads: tx lanes
// over channel groups, ty over rows.
//   partial kernels: grid (groups / tx, P). Block row p sums rows p ty + y + j P ty (j = 0, 1, ...),
//     each thread in order; the ty lanes are combined by a fixed tree in shared memory. A fixed
//     partition and no atomics: the sums are reproducible run to run.
//   elementwise kernels: any grid; group lanes stride by gridDim.x tx, rows by gridDim.y ty.
#include "bf16_vec.cuh"
#include "bn_affine.cuh"
#include "row_lanes.cuh"

namespace batch_norm_bf16 {

enum PartialMode { kSum = 0, kSquaredDeviation = 1, kBackward = 2 };

// Where the backward passes take ReLU's mask from (the `mask` argument of backward_partial).
enum ReluMask { kNoMask = 0, kMaskFromY = 1, kMaskFromAffine = 2 };

// BN's affine map (bn_affine_coefficients, bn_affine) is bn_affine.cuh's, shared with the
// tensor-core backward-data epilogue that takes the same mask.

// reduce_row_lanes and kLaneSlots: row_lanes.cuh.

template <int W, bool kVec, int kMode>
__device__ __forceinline__ void partial_sums(const bf16* __restrict__ x, const bf16* __restrict__ y,
                                             const bf16* __restrict__ dy, const float* __restrict__ mean,
                                             const float* __restrict__ inv_std, const float* __restrict__ gamma,
                                             const float* __restrict__ beta, int M, int C, int mask,
                                             float* __restrict__ partial, float* s0, float* s1) {
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int groups = C / W, P = gridDim.y, p = blockIdx.y;
    const long long row_step = static_cast<long long>(P) * blockDim.y;
    // The group loop's bounds are uniform over the block, so every thread reaches each barrier.
    for (int first = blockIdx.x * blockDim.x; first < groups; first += gridDim.x * blockDim.x) {
        const int group = first + tx;
        const int c0 = group * W;
        float a0[W], a1[W], mu[W], scale[W], shift[W];
#pragma unroll
        for (int k = 0; k < W; ++k) a0[k] = a1[k] = mu[k] = scale[k] = shift[k] = 0.0f;
        if (group < groups) {
            if (kMode != kSum) {
#pragma unroll
                for (int k = 0; k < W; ++k) mu[k] = mean[c0 + k];
            }
            if (kMode == kBackward && mask == kMaskFromAffine) {
                bn_affine_coefficients<W>(mean, inv_std, gamma, beta, c0, scale, shift);
            }
            for (long long m = static_cast<long long>(p) * blockDim.y + ty; m < M; m += row_step) {
                const long long i = m * C + c0;
                float xv[W];
                load_bf16<W, kVec>(x + i, xv);
                if (kMode == kSum) {
#pragma unroll
                    for (int k = 0; k < W; ++k) a0[k] += xv[k];
                } else if (kMode == kSquaredDeviation) {
#pragma unroll
                    for (int k = 0; k < W; ++k) {
                        const float d = xv[k] - mu[k];
                        a0[k] += d * d;
                    }
                } else {
                    float dyv[W];
                    load_bf16<W, kVec>(dy + i, dyv);
                    if (mask == kMaskFromY) {
                        float yv[W];
                        load_bf16<W, kVec>(y + i, yv);
#pragma unroll
                        for (int k = 0; k < W; ++k) dyv[k] = yv[k] > 0.0f ? dyv[k] : 0.0f;
                    } else if (mask == kMaskFromAffine) {
#pragma unroll
                        for (int k = 0; k < W; ++k) dyv[k] = bn_affine(xv[k], scale[k], shift[k]) > 0.0f ? dyv[k] : 0.0f;
                    }
#pragma unroll
                    for (int k = 0; k < W; ++k) {
                        a0[k] += dyv[k];
                        a1[k] += dyv[k] * (xv[k] - mu[k]);
                    }
                }
            }
        }
        float* mine0 = s0 + (ty * blockDim.x + tx) * W;
        float* mine1 = kMode == kBackward ? s1 + (ty * blockDim.x + tx) * W : nullptr;
#pragma unroll
        for (int k = 0; k < W; ++k) {
            mine0[k] = a0[k];
            if (kMode == kBackward) mine1[k] = a1[k];
        }
        __syncthreads();
        reduce_row_lanes<W>(s0);
        if (kMode == kBackward) reduce_row_lanes<W>(s1);
        if (ty == 0 && group < groups) {
#pragma unroll
            for (int k = 0; k < W; ++k) {
                partial[static_cast<long long>(p) * C + c0 + k] = s0[tx * W + k];
                if (kMode == kBackward) partial[static_cast<long long>(P + p) * C + c0 + k] = s1[tx * W + k];
            }
        }
        // Lane 0 reads the sums before the next group's lanes overwrite them.
        __syncthreads();
    }
}

// Calls each_row(i) with the element offset i = m C + c0 of every row m this thread's rows cover, for
// every channel group (first channel c0) this thread owns, after setup(c0) once per group.
template <int W, class Setup, class EachRow>
__device__ __forceinline__ void for_owned_groups(long long M, int C, Setup&& setup, EachRow&& each_row) {
    const int groups = C / W;
    const long long row_step = static_cast<long long>(gridDim.y) * blockDim.y;
    for (int group = blockIdx.x * blockDim.x + threadIdx.x; group < groups; group += gridDim.x * blockDim.x) {
        const int c0 = group * W;
        setup(c0);
        for (long long m = static_cast<long long>(blockIdx.y) * blockDim.y + threadIdx.y; m < M; m += row_step) {
            each_row(m * C + c0);
        }
    }
}

// normalize (kAdd false) and normalize_add (kAdd true; with kAddBn, the residual through its own BN
// first, `rbn`): the affine map of batch_norm.cu's batch_norm_affine, with scale and shift formed
// once per channel.
template <int W, bool kVec, bool kAdd, bool kAddBn = false>
__device__ __forceinline__ void normalize(const bf16* __restrict__ x, const float* __restrict__ mean,
                                          const float* __restrict__ inv_std, const float* __restrict__ gamma,
                                          const float* __restrict__ beta, const bf16* __restrict__ residual,
                                          bf16* __restrict__ out, unsigned long long n, int C, int relu,
                                          const BnAffineParams& rbn = {}) {
    static_assert(kAdd || !kAddBn, "a residual's BN needs a residual");
    float scale[W], shift[W], rscale[kAddBn ? W : 1], rshift[kAddBn ? W : 1];
    for_owned_groups<W>(
        static_cast<long long>(n / C), C,
        [&](int c0) {
            bn_affine_coefficients<W>(mean, inv_std, gamma, beta, c0, scale, shift);
            if constexpr (kAddBn) bn_affine_coefficients<W>(rbn.mean, rbn.inv_std, rbn.gamma, rbn.beta, c0, rscale, rshift);
        },
        [&](long long i) {
            float v[W];
            load_bf16<W, kVec>(x + i, v);
#pragma unroll
            for (int k = 0; k < W; ++k) v[k] = bn_affine(v[k], scale[k], shift[k]);
            if (kAdd) {
                float r[W];
                load_bf16<W, kVec>(residual + i, r);
                if constexpr (kAddBn) {
                    // As the residual's BN would have stored it: its affine map, rounded to bf16 once.
#pragma unroll
                    for (int k = 0; k < W; ++k) r[k] = bf16_to_float(bf16_from_float(bn_affine(r[k], rscale[k], rshift[k])));
                }
#pragma unroll
                for (int k = 0; k < W; ++k) v[k] += r[k];
            }
            if (relu) {
                store_bf16<W, kVec, true>(out + i, v);
            } else {
                store_bf16<W, kVec>(out + i, v);
            }
        });
}

// dx from g = dy masked as kMask says (ReluMask); with kWriteG also g itself into g_out (exact: dy or 0).
template <int W, bool kVec, int kMask, bool kWriteG>
__device__ __forceinline__ void backward_data_pass(const bf16* __restrict__ x, const bf16* __restrict__ y,
                                                   const bf16* __restrict__ dy, const float* __restrict__ mean,
                                                   const float* __restrict__ inv_std, const float* __restrict__ gamma,
                                                   const float* __restrict__ beta, const float* __restrict__ coef,
                                                   bf16* __restrict__ dx, bf16* __restrict__ g_out,
                                                   unsigned long long n, int C) {
    float k0[W], k1[W], k2[W], mu[W], scale[W], shift[W];
    for_owned_groups<W>(
        static_cast<long long>(n / C), C,
        [&](int c0) {
#pragma unroll
            for (int k = 0; k < W; ++k) {
                k0[k] = coef[c0 + k];
                k1[k] = coef[C + c0 + k];
                k2[k] = coef[2 * C + c0 + k];
                mu[k] = mean[c0 + k];
            }
            if (kMask == kMaskFromAffine) bn_affine_coefficients<W>(mean, inv_std, gamma, beta, c0, scale, shift);
        },
        [&](long long i) {
            float xv[W], g[W], d[W];
            load_bf16<W, kVec>(x + i, xv);
            load_bf16<W, kVec>(dy + i, g);
            if (kMask == kMaskFromY) {
                float yv[W];
                load_bf16<W, kVec>(y + i, yv);
#pragma unroll
                for (int k = 0; k < W; ++k) g[k] = yv[k] > 0.0f ? g[k] : 0.0f;
            } else if (kMask == kMaskFromAffine) {
#pragma unroll
                for (int k = 0; k < W; ++k) g[k] = bn_affine(xv[k], scale[k], shift[k]) > 0.0f ? g[k] : 0.0f;
            }
#pragma unroll
            for (int k = 0; k < W; ++k) d[k] = k1[k] * g[k] - k2[k] * (xv[k] - mu[k]) - k0[k];
            store_bf16<W, kVec>(dx + i, d);
            if (kWriteG) store_bf16<W, kVec>(g_out + i, g);
        });
}

template <int W, bool kVec>
__device__ __forceinline__ void backward_data(const bf16* x, const bf16* dy, const float* mean, const float* coef,
                                              bf16* dx, unsigned long long n, int C) {
    backward_data_pass<W, kVec, kNoMask, false>(x, nullptr, dy, mean, nullptr, nullptr, nullptr, coef, dx, nullptr,
                                                n, C);
}

template <int W, bool kVec>
__device__ __forceinline__ void relu_backward_data(const bf16* x, const bf16* dy, const float* mean,
                                                   const float* inv_std, const float* gamma, const float* beta,
                                                   const float* coef, bf16* dx, unsigned long long n, int C) {
    backward_data_pass<W, kVec, kMaskFromAffine, false>(x, nullptr, dy, mean, inv_std, gamma, beta, coef, dx,
                                                        nullptr, n, C);
}

template <int W, bool kVec>
__device__ __forceinline__ void add_relu_backward_data(const bf16* x, const bf16* out, const bf16* dout,
                                                       const float* mean, const float* coef, bf16* dx, bf16* dsum,
                                                       unsigned long long n, int C) {
    backward_data_pass<W, kVec, kMaskFromY, true>(x, out, dout, mean, nullptr, nullptr, nullptr, coef, dx, dsum, n,
                                                  C);
}

template <int W, bool kVec>
__device__ __forceinline__ void partial_sum(const bf16* x, int M, int C, float* partial, float* lanes) {
    partial_sums<W, kVec, kSum>(x, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, M, C, kNoMask, partial,
                                lanes, nullptr);
}

template <int W, bool kVec>
__device__ __forceinline__ void partial_sqdev(const bf16* x, const float* mean, int M, int C, float* partial,
                                              float* lanes) {
    partial_sums<W, kVec, kSquaredDeviation>(x, nullptr, nullptr, mean, nullptr, nullptr, nullptr, M, C, kNoMask,
                                             partial, lanes, nullptr);
}

template <int W, bool kVec>
__device__ __forceinline__ void backward_partial(const bf16* x, const bf16* y, const bf16* dy, const float* mean,
                                                 const float* inv_std, const float* gamma, const float* beta, int M,
                                                 int C, int mask, float* partial, float* lanes) {
    partial_sums<W, kVec, kBackward>(x, y, dy, mean, inv_std, gamma, beta, M, C, mask, partial, lanes,
                                     lanes + kLaneSlots);
}

template <int W, bool kVec>
__device__ __forceinline__ void normalize_only(const bf16* x, const float* mean, const float* inv_std,
                                               const float* gamma, const float* beta, bf16* y, unsigned long long n,
                                               int C, int relu) {
    normalize<W, kVec, false>(x, mean, inv_std, gamma, beta, nullptr, y, n, C, relu);
}

template <int W, bool kVec>
__device__ __forceinline__ void normalize_add(const bf16* x, const float* mean, const float* inv_std,
                                              const float* gamma, const float* beta, const bf16* residual,
                                              bf16* out, unsigned long long n, int C, int relu) {
    normalize<W, kVec, true>(x, mean, inv_std, gamma, beta, residual, out, n, C, relu);
}

template <int W, bool kVec>
__device__ __forceinline__ void normalize_add_bn(const bf16* x, const float* mean, const float* inv_std,
                                                 const float* gamma, const float* beta, const bf16* residual,
                                                 const BnAffineParams& rbn, bf16* out, unsigned long long n, int C,
                                                 int relu) {
    normalize<W, kVec, true, true>(x, mean, inv_std, gamma, beta, residual, out, n, C, relu, rbn);
}

}  // namespace batch_norm_bf16

extern "C" __global__ void batch_norm_partial_sum_bf16(const bf16* x, int M, int C, float* partial) {
    grid_dependency_sync();
    __shared__ float lanes[kLaneSlots];
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x), batch_norm_bf16::partial_sum, x, M, C,
                         partial, lanes);
}
EMU_REGISTER(batch_norm_partial_sum_bf16);

extern "C" __global__ void batch_norm_partial_sqdev_bf16(const bf16* x, const float* mean, int M, int C,
                                                         float* partial) {
    grid_dependency_sync();
    __shared__ float lanes[kLaneSlots];
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x), batch_norm_bf16::partial_sqdev, x,
                         mean, M, C, partial, lanes);
}
EMU_REGISTER(batch_norm_partial_sqdev_bf16);

// mask: batch_norm_bf16::ReluMask (y is read only for kMaskFromY; inv_std, gamma, beta only for
// kMaskFromAffine).
extern "C" __global__ void batch_norm_backward_partial_bf16(const bf16* x, const bf16* y, const bf16* dy,
                                                            const float* mean, const float* inv_std,
                                                            const float* gamma, const float* beta, int M, int C,
                                                            int mask, float* partial) {
    grid_dependency_sync();
    __shared__ float lanes[2 * kLaneSlots];
    // A null y (no mask from it) counts as aligned.
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, y, dy),
                         batch_norm_bf16::backward_partial, x, y, dy, mean, inv_std, gamma, beta, M, C, mask,
                         partial, lanes);
}
EMU_REGISTER(batch_norm_backward_partial_bf16);

extern "C" __global__ void batch_norm_normalize_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                     const float* gamma, const float* beta, bf16* y,
                                                     unsigned long long n, int C, int relu) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, y), batch_norm_bf16::normalize_only, x,
                         mean, inv_std, gamma, beta, y, n, C, relu);
}
EMU_REGISTER(batch_norm_normalize_bf16);

extern "C" __global__ void batch_norm_normalize_add_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                         const float* gamma, const float* beta, const bf16* residual,
                                                         bf16* out, unsigned long long n, int C, int relu) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, residual, out),
                         batch_norm_bf16::normalize_add, x, mean, inv_std, gamma, beta, residual, out, n, C, relu);
}
EMU_REGISTER(batch_norm_normalize_add_bf16);

extern "C" __global__ void batch_norm_normalize_add_bn_bf16(const bf16* x, const float* mean, const float* inv_std,
                                                            const float* gamma, const float* beta, const bf16* residual,
                                                            const float* r_mean, const float* r_inv_std,
                                                            const float* r_gamma, const float* r_beta, bf16* out,
                                                            unsigned long long n, int C, int relu) {
    grid_dependency_sync();
    const BnAffineParams rbn{r_mean, r_inv_std, r_gamma, r_beta};
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, residual, out),
                         batch_norm_bf16::normalize_add_bn, x, mean, inv_std, gamma, beta, residual, rbn, out, n, C,
                         relu);
}
EMU_REGISTER(batch_norm_normalize_add_bn_bf16);

// With relu, BN's own ReLU: the mask is x scale + shift > 0 (see the header), so y is not read.
// Three blocks per SM: the six per-channel constants of a group of 8 channels (48 registers) do not
// fit the 64 registers of four without spilling. Two input streams instead of three keep about as
// many bytes in flight per SM as before (768 threads x 2 x 16 bytes).
extern "C" __global__ void __launch_bounds__(kBf16Threads, 3)
    batch_norm_backward_data_bf16(const bf16* x, const bf16* dy, const float* mean, const float* inv_std,
                                  const float* gamma, const float* beta, const float* coef, bf16* dx,
                                  unsigned long long n, int C, int relu) {
    grid_dependency_sync();
    if (relu) {
        BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, dy, dx),
                             batch_norm_bf16::relu_backward_data, x, dy, mean, inv_std, gamma, beta, coef, dx, n, C);
    } else {
        BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, dy, dx),
                             batch_norm_bf16::backward_data, x, dy, mean, coef, dx, n, C);
    }
}
EMU_REGISTER(batch_norm_backward_data_bf16);

// The end of a residual block, out = relu(BN(x) + residual), backward: dsum = dout [out > 0] (the
// sum's gradient, the residual's) and BN's dx from it, in one pass; the partials before it come
// from batch_norm_backward_partial_bf16 with y = out and mask kMaskFromY, which masks dout the same way.
// Four blocks per SM (64 registers a thread) keep enough 16-byte loads in flight over its three input
// streams; without the bound ptxas takes 71 registers and fits three.
extern "C" __global__ void __launch_bounds__(kBf16Threads, 4)
    batch_norm_add_relu_backward_data_bf16(const bf16* x, const bf16* out, const bf16* dout, const float* mean,
                                           const float* coef, bf16* dx, bf16* dsum, unsigned long long n, int C) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(C), pointers_aligned16(x, out, dout, dx, dsum),
                         batch_norm_bf16::add_relu_backward_data, x, out, dout, mean, coef, dx, dsum, n, C);
}
EMU_REGISTER(batch_norm_add_relu_backward_data_bf16);
