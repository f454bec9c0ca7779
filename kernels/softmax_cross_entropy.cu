// softmax_cross_entropy.cu: mean softmax cross-entropy over a batch, its logit gradient, and top-1/top-5
// counts, computed as the CPU reference does.
//
// Math, logits z: [N, classes], labels l: [N] (class indices held as exact floats; one that is not an
// index in [0, classes) gives loss_n = NaN, top1 = top5 = 0 and dz = 0 for its row, never a read out of
// bounds):
//   per sample: lse = max + log sum_j exp(z_j - max) (in double); loss_n = lse - z[l];
//               dz_j = (exp(z_j - lse) - [j == l]) / N;
//               rank = #{j : z_j > z_l} + #{j < l : z_j == z_l}; top1 = rank < 1, top5 = rank < 5
//   softmax_cross_entropy_record: totals t[0] = sum_n loss_n / N, t[1] = sum top1, t[2] = sum top5,
//   summed in a fixed order (deterministic; the counts are exact below 2^24), appended to a loss
//   record: header (unsigned) [count, first_non_finite + 1 (0: none), ...] of kLossRecordHeaderWords
//   words, then `capacity` slots of 3 floats. The step goes to slot `count` (dropped when the record is
//   full: the host sees count > capacity and reports it), count increments, and a non-finite t[0]
//   sets the flag unless it is set already. The host reads the record when it needs to and zeroes the
//   header; the guarded SGD update (elementwise.cu) skips itself while the flag is set, so a training
//   step never waits for the host to look at its loss.
// Launch: per-sample kernel, 1-D grid-stride over samples (each thread walks its row, no reductions
// across threads); the reduce kernel is one block of 256 threads: strided per-thread sums, then warp
// shuffles and shared memory in a fixed tree, then thread 0 appends. Per-sample results go to a float
// workspace [3][N].
#include "common.cuh"
#include "launch_constants.h"

namespace softmax_xent {
constexpr int kReduceThreads = kLossReduceThreads;

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}
}  // namespace softmax_xent

template <class T>
__device__ __forceinline__ void softmax_cross_entropy_per_sample(const T* __restrict__ logits,
                                                                 const float* __restrict__ labels,
                                                                 T* __restrict__ dlogits, float* __restrict__ per_sample,
                                                                 int N, int classes) {
    const double inv_n = 1.0 / N;
    for (unsigned long long n = global_thread_index(); n < static_cast<unsigned long long>(N); n += grid_stride()) {
        const T* z = logits + n * classes;
        T* dz = dlogits + n * classes;
        const float label_value = labels[n];
        // Written so that NaN fails it too.
        if (!(label_value >= 0.0f && label_value < static_cast<float>(classes) &&
              label_value == floorf(label_value))) {
            for (int j = 0; j < classes; ++j) dz[j] = static_cast<T>(0.0);
            per_sample[n] = __int_as_float(0x7fc00000);
            per_sample[N + n] = 0.0f;
            per_sample[2 * N + n] = 0.0f;
            continue;
        }
        const int label = static_cast<int>(label_value);
        double max = static_cast<double>(z[0]);
        for (int j = 1; j < classes; ++j) max = fmax(max, static_cast<double>(z[j]));
        double sum_exp = 0.0;
        for (int j = 0; j < classes; ++j) sum_exp += exp(static_cast<double>(z[j]) - max);
        const double lse = max + log(sum_exp);
        const T zl = z[label];
        int rank = 0;
        for (int j = 0; j < classes; ++j) {
            const double p = exp(static_cast<double>(z[j]) - lse);
            dz[j] = static_cast<T>((p - (j == label ? 1.0 : 0.0)) * inv_n);
            rank += (z[j] > zl || (z[j] == zl && j < label)) ? 1 : 0;
        }
        per_sample[n] = static_cast<float>(lse - static_cast<double>(zl));
        per_sample[N + n] = rank < 1 ? 1.0f : 0.0f;
        per_sample[2 * N + n] = rank < 5 ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void softmax_cross_entropy_per_sample_f32(const float* logits, const float* labels,
                                                                float* dlogits, float* per_sample, int N,
                                                                int classes) {
    grid_dependency_sync();
    softmax_cross_entropy_per_sample<float>(logits, labels, dlogits, per_sample, N, classes);
}
EMU_REGISTER(softmax_cross_entropy_per_sample_f32);

extern "C" __global__ void softmax_cross_entropy_record(const float* per_sample, int N, unsigned* record,
                                                        int capacity) {
    grid_dependency_sync();
    using softmax_xent::kReduceThreads;
    __shared__ float warp_sums[3][kReduceThreads / 32];
    __shared__ float totals[3];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int q = 0; q < 3; ++q) {
        float v = 0.0f;
        for (int n = threadIdx.x; n < N; n += kReduceThreads) v += per_sample[q * N + n];
        v = softmax_xent::warp_sum(v);
        if (lane == 0) warp_sums[q][warp] = v;
    }
    __syncthreads();
    if (threadIdx.x < 3) {
        const int q = threadIdx.x;
        float total = 0.0f;
        for (int w = 0; w < kReduceThreads / 32; ++w) total += warp_sums[q][w];
        totals[q] = q == 0 ? total / static_cast<float>(N) : total;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned count = record[0];
        float* slots = reinterpret_cast<float*>(record + kLossRecordHeaderWords);
        if (count < static_cast<unsigned>(capacity)) {
            for (int q = 0; q < 3; ++q) slots[3 * count + q] = totals[q];
        }
        // Not finite: NaN fails every comparison, infinities exceed the largest float.
        if (!(fabsf(totals[0]) <= 3.40282347e38f) && record[1] == 0u) record[1] = count + 1u;
        record[0] = count + 1u;
    }
}
EMU_REGISTER(softmax_cross_entropy_record);
