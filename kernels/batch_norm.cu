// batch_norm.cu: training and inference batch norm over NHWC activations viewed as x[M, C], M = N H W,
// fused with ReLU, and its backward fused with the ReLU backward.
//
// Math (PyTorch's conventions; eps and momentum come from the caller):
//   mean_c = 1/M sum_m x[m,c];  var_c = 1/M sum_m (x[m,c] - mean_c)^2 (biased; two passes for accuracy)
//   inv_std_c = 1/sqrt(var_c + eps)
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var + momentum var M/(M-1)   (unbiased)
//   y = x scale_c + shift_c with scale = gamma inv_std, shift = beta - mean scale; then max(y, 0) if relu
//   normalize_add (a residual block's end): out = (x scale_c + shift_c) + residual, then max(out, 0) if
//   relu; the same roundings as normalize followed by add_forward, in one pass
//   inference: the same with the running mean and inv_std = 1/sqrt(running_var + eps)
//   add_relu backward (out = relu(BN(x) + residual)): dsum = dout [out > 0], then the backward below
//             with g = dsum (the mask taken from out, not from BN's own output)
//   backward: g = dy [x scale_c + shift_c > 0] (BN's own ReLU: the forward's affine map recomputed by
//             the same code, batch_norm_affine, rather than y read), or dy, or in the add_relu case
//             dy [out > 0]; dbeta = sum g, dgamma = inv_std sum g (x - mean),
//             dx = k1 g - k2 (x - mean) - k0 with coef = gamma inv_std / M, k0 = coef dbeta, k1 = coef M,
//             k2 = coef dgamma inv_std   (= gamma inv_std / M (M g - dbeta - xhat dgamma))
//
// Channel reductions are deterministic (a fixed partition, no float atomics):
//   1. *_partial: block (32, 8) = 32 channels x 8 row lanes, grid (ceil(C/32), P). Thread (tx, ty) of
//      block (bx, by) sums rows m = by*8 + ty + j*(8P), j = 0, 1, ...; the 8 row lanes are combined in
//      shared memory in order; partial[q][by][c] for q = 0 (and 1 for the backward's second sum).
//      Reads are coalesced: a warp is 32 consecutive channels of one row.
//   2. *_finalize: one block of 128 threads per channel (grid C): thread t sums partial[p][c] for
//      p = t, t + 128, ...; warp shuffles then shared memory combine the 128 in a fixed tree. The
//      per-channel scalars (mean, inv_std, running stats, backward coefficients) are computed in double.
//      batch_norm_finalize_tiles_f32 does the forward's whole finalize (mean, then the variance by
//      Chan's merge) from the per-tile partials a tensor-core convolution's epilogue wrote
//      (conv_tc_stats.cuh) instead: x is then never read for statistics; and
//      batch_norm_backward_finalize_tiles_f32 the backward's from a backward-data's epilogue
//      (conv_tc_bn_grad.cuh). Those partials are laid out [q][C][P], a channel's contiguous.
//   3. elementwise passes (normalize, backward data): 1-D grid-stride loops over M C elements.
// Element type T is a template parameter; sums accumulate in float. extern "C" names end in _f32.
#include "common.cuh"
#include "launch_constants.h"

// BN's affine map of element i (channel c): x scale_c + shift_c. normalize, normalize_add and
// the backward's ReLU mask all call it, so nvcc contracts the same expression the same way in each:
// the fused op stays bit-identical to the pair, and the mask is exactly the forward's sign.
template <class T>
__device__ __forceinline__ T batch_norm_affine(const T* __restrict__ x, const T* __restrict__ mean,
                                               const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                               const T* __restrict__ beta, unsigned long long i, int c) {
    const T s = gamma[c] * inv_std[c];
    const T t = beta[c] - mean[c] * s;
    return x[i] * s + t;
}

namespace batch_norm {

constexpr int kChannels = kBatchNormChannels;          // blockDim.x of the partial kernels
constexpr int kRowLanes = kBatchNormRowLanes;          // blockDim.y of the partial kernels
constexpr int kFinalizeThreads = kBatchNormFinalizeThreads;

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum of v over a block of kFinalizeThreads threads (a multiple of 32), returned to thread 0.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warp_sums[kFinalizeThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.x == 0) {
        for (int w = 0; w < kFinalizeThreads / 32; ++w) total += warp_sums[w];
    }
    __syncthreads();
    return total;
}

// Where the backward passes take ReLU's mask from (the `mask` argument of backward_partial).
enum ReluMask { kNoMask = 0, kMaskFromY = 1, kMaskFromAffine = 2 };

// Mode 0: s0 = x. Mode 1: s0 = (x - mean)^2. Mode 2: s0 = g, s1 = g (x - mean), g = dy masked as
// `mask` says (ReluMask).
template <class T, int kMode>
__device__ __forceinline__ void partial_sums(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                                             const T* __restrict__ mean, const T* __restrict__ inv_std,
                                             const T* __restrict__ gamma, const T* __restrict__ beta, int M, int C,
                                             int mask, float* __restrict__ partial) {
    __shared__ float s0[kRowLanes][kChannels];
    __shared__ float s1[kRowLanes][kChannels];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int c = blockIdx.x * kChannels + tx;
    const int P = gridDim.y;
    float a0 = 0.0f, a1 = 0.0f;
    if (c < C) {
        const float mu = kMode == 0 ? 0.0f : static_cast<float>(mean[c]);
        for (long long m = static_cast<long long>(blockIdx.y) * kRowLanes + ty; m < M;
             m += static_cast<long long>(P) * kRowLanes) {
            const long long i = m * C + c;
            const float xv = static_cast<float>(x[i]);
            if (kMode == 0) {
                a0 += xv;
            } else if (kMode == 1) {
                const float d = xv - mu;
                a0 += d * d;
            } else {
                const bool keep = mask == kMaskFromY        ? static_cast<float>(y[i]) > 0.0f
                                  : mask == kMaskFromAffine ? batch_norm_affine(x, mean, inv_std, gamma, beta, i, c) > T(0)
                                                            : true;
                const float g = keep ? static_cast<float>(dy[i]) : 0.0f;
                a0 += g;
                a1 += g * (xv - mu);
            }
        }
    }
    s0[ty][tx] = a0;
    s1[ty][tx] = a1;
    __syncthreads();
    if (ty == 0 && c < C) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int r = 0; r < kRowLanes; ++r) {
            t0 += s0[r][tx];
            t1 += s1[r][tx];
        }
        partial[static_cast<long long>(blockIdx.y) * C + c] = t0;
        if (kMode == 2) partial[static_cast<long long>(P + blockIdx.y) * C + c] = t1;
    }
}

// Sum of term(p) over p < P, to thread 0: thread t adds p = t, t + 128, ... in order, then
// block_sum's fixed tree. Every thread of the block must call it (it has barriers).
template <class Term>
__device__ __forceinline__ float reduce_over_partials(int P, Term&& term) {
    float v = 0.0f;
    for (int p = threadIdx.x; p < P; p += kFinalizeThreads) v += term(p);
    return block_sum(v);
}

// Sum over the P partials of channel blockIdx.x in slot q, to thread 0: the partial kernels' layout
// [q][P][C] (their coalesced writes), or with kChannelMajor the convolution epilogues' [q][C][P], in
// which a channel's P partials are contiguous: this block's reads are then coalesced too (P runs in
// the thousands there: one per tile of rows), rather than one 32-byte sector for each 4-byte value.
template <bool kChannelMajor = false>
__device__ __forceinline__ long long partial_index(int q, int p, int c, int P, int C) {
    return kChannelMajor ? (static_cast<long long>(q) * C + c) * P + p : (static_cast<long long>(q) * P + p) * C + c;
}

template <bool kChannelMajor = false>
__device__ __forceinline__ float reduce_partials(const float* __restrict__ partial, int q, int P, int C) {
    const int c = blockIdx.x;
    return reduce_over_partials(P, [&](int p) { return partial[partial_index<kChannelMajor>(q, p, c, P, C)]; });
}

}  // namespace batch_norm

template <class T>
__device__ __forceinline__ void batch_norm_finalize_mean(const float* partial, int P, int M, int C, T* mean) {
    const float s = batch_norm::reduce_partials(partial, 0, P, C);
    if (threadIdx.x == 0) mean[blockIdx.x] = static_cast<T>(static_cast<double>(s) / M);
}

// Channel c's outputs of training BN given its batch mean (as stored in mean[c]) and the biased
// variance var = (1/M) sum (x - mean)^2: inv_std and the running statistics (see the header).
template <class T>
__device__ __forceinline__ void batch_norm_store_statistics(int c, int M, double var, const T* mean, double eps,
                                                            double momentum, T* inv_std, T* running_mean,
                                                            T* running_var) {
    const double m = M;
    inv_std[c] = static_cast<T>(1.0 / sqrt(var + eps));
    running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) +
                                     momentum * static_cast<double>(mean[c]));
    const double unbiased = var * m / (m - 1.0);
    running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
}

template <class T>
__device__ __forceinline__ void batch_norm_finalize_var(const float* partial, int P, int M, int C, const T* mean,
                                                        double eps, double momentum, T* inv_std, T* running_mean,
                                                        T* running_var) {
    const float s = batch_norm::reduce_partials(partial, 0, P, C);
    if (threadIdx.x == 0) {
        const double var = static_cast<double>(s) / M;
        batch_norm_store_statistics(blockIdx.x, M, var, mean, eps, momentum, inv_std, running_mean, running_var);
    }
}

// The whole finalize from the tile partials of a convolution's epilogue (conv_tc_stats.cuh):
// partial[0][p][c] = S_p and partial[1][p][c] = Q_p (squared deviations from the tile's own mean
// mu_p = S_p / n_p) over the n_p = min(tile_rows, M - p tile_rows) rows of tile p. Chan's
// parallel-variance merge, about the batch mean a as stored in mean[c]:
//   mean_c = (sum_p S_p) / M
//   M var_c = sum_p [ Q_p + (S_p - n_p a)^2 / n_p ]
// (exact when mu_p is the exact tile mean, since sum_rows (x - a)^2 = Q_p + n_p (mu_p - a)^2; with
// mu_p rounded to fp32 the error is (S_p - n_p mu_p)^2 / n_p <= n_p ulp(mu_p)^2 / 4, second order).
// Every term is >= 0: no cancellation; S_p - n_p a is one fma (n_p a exact inside it). The sums run
// in reduce_over_partials' fixed order, so the result is the same every run.
template <class T>
__device__ __forceinline__ void batch_norm_finalize_tiles(const float* partial, int P, int M, int tile_rows, int C,
                                                          double eps, double momentum, T* mean, T* inv_std,
                                                          T* running_mean, T* running_var) {
    __shared__ float batch_mean;
    const int c = blockIdx.x;
    const float s = batch_norm::reduce_partials<true>(partial, 0, P, C);
    if (threadIdx.x == 0) {
        mean[c] = static_cast<T>(static_cast<double>(s) / M);
        batch_mean = static_cast<float>(mean[c]);
    }
    __syncthreads();
    const float a = batch_mean;
    const float m2 = batch_norm::reduce_over_partials(P, [&](int p) {
        const float n = static_cast<float>(min(tile_rows, M - p * tile_rows));
        const float sum = partial[batch_norm::partial_index<true>(0, p, c, P, C)];
        const float sqdev = partial[batch_norm::partial_index<true>(1, p, c, P, C)];
        const float e = fmaf(-n, a, sum);
        return sqdev + e * e / n;
    });
    if (threadIdx.x == 0) {
        const double var = static_cast<double>(m2) / M;
        batch_norm_store_statistics(c, M, var, mean, eps, momentum, inv_std, running_mean, running_var);
    }
}

template <class T>
__device__ __forceinline__ void batch_norm_normalize(const T* __restrict__ x, const T* __restrict__ mean,
                                                     const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                                     const T* __restrict__ beta, T* __restrict__ y,
                                                     unsigned long long n, int C, int relu) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        const T v = batch_norm_affine(x, mean, inv_std, gamma, beta, i, static_cast<int>(i % C));
        y[i] = (relu && v < T(0)) ? T(0) : v;
    }
}

// One pass where normalize (relu off) then add_forward would take two: the BN output never goes to
// memory; bit-identical to the pair (the same affine map, then add_forward's sum).
template <class T>
__device__ __forceinline__ void batch_norm_normalize_add(const T* __restrict__ x, const T* __restrict__ mean,
                                                         const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                                         const T* __restrict__ beta, const T* __restrict__ residual,
                                                         T* __restrict__ out, unsigned long long n, int C, int relu) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        const T v = batch_norm_affine(x, mean, inv_std, gamma, beta, i, static_cast<int>(i % C));
        const T sum = v + residual[i];
        out[i] = (relu && sum < T(0)) ? T(0) : sum;
    }
}

template <class T>
__device__ __forceinline__ void batch_norm_infer_inv_std(const T* running_var, double eps, int C, T* inv_std) {
    for (unsigned long long c = global_thread_index(); c < static_cast<unsigned long long>(C); c += grid_stride()) {
        inv_std[c] = static_cast<T>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
    }
}

// coef[c] = k0, coef[C + c] = k1, coef[2C + c] = k2 (see the header).
template <class T, bool kChannelMajor = false>
__device__ __forceinline__ void batch_norm_backward_finalize(const float* partial, int P, int M, int C,
                                                             const T* gamma, const T* inv_std, T* dgamma, T* dbeta,
                                                             T* coef) {
    const float sum_g = batch_norm::reduce_partials<kChannelMajor>(partial, 0, P, C);
    const float sum_gx = batch_norm::reduce_partials<kChannelMajor>(partial, 1, P, C);
    if (threadIdx.x == 0) {
        const int c = blockIdx.x;
        const double m = M;
        const double inv = static_cast<double>(inv_std[c]);
        const double db = sum_g, dg = static_cast<double>(sum_gx) * inv;
        dbeta[c] = static_cast<T>(db);
        dgamma[c] = static_cast<T>(dg);
        const double k = static_cast<double>(gamma[c]) * inv / m;
        coef[c] = static_cast<T>(k * db);
        coef[C + c] = static_cast<T>(k * m);
        coef[2 * C + c] = static_cast<T>(k * dg * inv);
    }
}

// g = dy masked as `mask` says (batch_norm::ReluMask); g_out, when not null, also receives g (the
// add_relu variant: the residual's gradient).
template <class T>
__device__ __forceinline__ void batch_norm_backward_data(const T* __restrict__ x, const T* __restrict__ y,
                                                         const T* __restrict__ dy, const T* __restrict__ mean,
                                                         const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                                         const T* __restrict__ beta, const T* __restrict__ coef,
                                                         T* __restrict__ dx, T* __restrict__ g_out,
                                                         unsigned long long n, int C, int mask) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        const int c = static_cast<int>(i % C);
        const bool keep = mask == batch_norm::kMaskFromY        ? y[i] > T(0)
                          : mask == batch_norm::kMaskFromAffine ? batch_norm_affine(x, mean, inv_std, gamma, beta, i, c) > T(0)
                                                                : true;
        const T g = keep ? dy[i] : T(0);
        dx[i] = coef[C + c] * g - coef[2 * C + c] * (x[i] - mean[c]) - coef[c];
        if (g_out != nullptr) g_out[i] = g;
    }
}

extern "C" __global__ void batch_norm_partial_sum_f32(const float* x, int M, int C, float* partial) {
    grid_dependency_sync();
    batch_norm::partial_sums<float, 0>(x, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, M, C,
                                       batch_norm::kNoMask, partial);
}
EMU_REGISTER(batch_norm_partial_sum_f32);

extern "C" __global__ void batch_norm_partial_sqdev_f32(const float* x, const float* mean, int M, int C,
                                                        float* partial) {
    grid_dependency_sync();
    batch_norm::partial_sums<float, 1>(x, nullptr, nullptr, mean, nullptr, nullptr, nullptr, M, C,
                                       batch_norm::kNoMask, partial);
}
EMU_REGISTER(batch_norm_partial_sqdev_f32);

// mask: batch_norm::ReluMask (y is read only for kMaskFromY; inv_std, gamma, beta only for
// kMaskFromAffine).
extern "C" __global__ void batch_norm_backward_partial_f32(const float* x, const float* y, const float* dy,
                                                           const float* mean, const float* inv_std,
                                                           const float* gamma, const float* beta, int M, int C,
                                                           int mask, float* partial) {
    grid_dependency_sync();
    batch_norm::partial_sums<float, 2>(x, y, dy, mean, inv_std, gamma, beta, M, C, mask, partial);
}
EMU_REGISTER(batch_norm_backward_partial_f32);

extern "C" __global__ void batch_norm_finalize_mean_f32(const float* partial, int P, int M, int C, float* mean) {
    grid_dependency_sync();
    batch_norm_finalize_mean<float>(partial, P, M, C, mean);
}
EMU_REGISTER(batch_norm_finalize_mean_f32);

extern "C" __global__ void batch_norm_finalize_var_f32(const float* partial, int P, int M, int C, const float* mean,
                                                       double eps, double momentum, float* inv_std,
                                                       float* running_mean, float* running_var) {
    grid_dependency_sync();
    batch_norm_finalize_var<float>(partial, P, M, C, mean, eps, momentum, inv_std, running_mean, running_var);
}
EMU_REGISTER(batch_norm_finalize_var_f32);

extern "C" __global__ void batch_norm_finalize_tiles_f32(const float* partial, int P, int M, int tile_rows, int C,
                                                         double eps, double momentum, float* mean, float* inv_std,
                                                         float* running_mean, float* running_var) {
    grid_dependency_sync();
    batch_norm_finalize_tiles<float>(partial, P, M, tile_rows, C, eps, momentum, mean, inv_std, running_mean,
                                     running_var);
}
EMU_REGISTER(batch_norm_finalize_tiles_f32);

extern "C" __global__ void batch_norm_normalize_f32(const float* x, const float* mean, const float* inv_std,
                                                    const float* gamma, const float* beta, float* y,
                                                    unsigned long long n, int C, int relu) {
    grid_dependency_sync();
    batch_norm_normalize<float>(x, mean, inv_std, gamma, beta, y, n, C, relu);
}
EMU_REGISTER(batch_norm_normalize_f32);

extern "C" __global__ void batch_norm_normalize_add_f32(const float* x, const float* mean, const float* inv_std,
                                                        const float* gamma, const float* beta,
                                                        const float* residual, float* out, unsigned long long n,
                                                        int C, int relu) {
    grid_dependency_sync();
    batch_norm_normalize_add<float>(x, mean, inv_std, gamma, beta, residual, out, n, C, relu);
}
EMU_REGISTER(batch_norm_normalize_add_f32);

extern "C" __global__ void batch_norm_infer_inv_std_f32(const float* running_var, double eps, int C,
                                                        float* inv_std) {
    grid_dependency_sync();
    batch_norm_infer_inv_std<float>(running_var, eps, C, inv_std);
}
EMU_REGISTER(batch_norm_infer_inv_std_f32);

extern "C" __global__ void batch_norm_backward_finalize_f32(const float* partial, int P, int M, int C,
                                                            const float* gamma, const float* inv_std,
                                                            float* dgamma, float* dbeta, float* coef) {
    grid_dependency_sync();
    batch_norm_backward_finalize<float>(partial, P, M, C, gamma, inv_std, dgamma, dbeta, coef);
}
EMU_REGISTER(batch_norm_backward_finalize_f32);

// The same from the [2][C][P] partials a tensor-core backward-data's epilogue wrote
// (conv_tc_bn_grad.cuh).
extern "C" __global__ void batch_norm_backward_finalize_tiles_f32(const float* partial, int P, int M, int C,
                                                                  const float* gamma, const float* inv_std,
                                                                  float* dgamma, float* dbeta, float* coef) {
    grid_dependency_sync();
    batch_norm_backward_finalize<float, true>(partial, P, M, C, gamma, inv_std, dgamma, dbeta, coef);
}
EMU_REGISTER(batch_norm_backward_finalize_tiles_f32);

// With relu, BN's own ReLU: the mask is x scale + shift > 0, so y is not read.
extern "C" __global__ void batch_norm_backward_data_f32(const float* x, const float* dy, const float* mean,
                                                        const float* inv_std, const float* gamma, const float* beta,
                                                        const float* coef, float* dx, unsigned long long n, int C,
                                                        int relu) {
    grid_dependency_sync();
    batch_norm_backward_data<float>(x, nullptr, dy, mean, inv_std, gamma, beta, coef, dx, nullptr, n, C,
                                    relu ? batch_norm::kMaskFromAffine : batch_norm::kNoMask);
}
EMU_REGISTER(batch_norm_backward_data_f32);

// The end of a residual block, out = relu(BN(x) + residual), backward: g = dout [out > 0] stored as
// dsum (the residual's gradient) and BN's dx from it, in one pass (partials: backward_partial with
// y = out, mask kMaskFromY).
extern "C" __global__ void batch_norm_add_relu_backward_data_f32(const float* x, const float* out, const float* dout,
                                                                 const float* mean, const float* coef, float* dx,
                                                                 float* dsum, unsigned long long n, int C) {
    grid_dependency_sync();
    batch_norm_backward_data<float>(x, out, dout, mean, nullptr, nullptr, nullptr, coef, dx, dsum, n, C,
                                    batch_norm::kMaskFromY);
}
EMU_REGISTER(batch_norm_add_relu_backward_data_f32);
