// elementwise.cu: the residual add (+ReLU) and its backward, and the SGD update.
//
// Math, over n elements (every tensor contiguous, all of the same length; the layout is irrelevant):
//   add_forward:  y = a + b, then y = max(y, 0) when relu != 0 (NaN passes through, as in the CPU path)
//   add_backward: dsum = dy * [y > 0] when relu != 0, else dsum = dy (both addends receive dsum)
//   sgd_update:   v = momentum v + (g + weight_decay w);  w = w - lr v   (PyTorch's SGD with momentum)
//   sgd_update_chunks: the same on every parameter (the _guarded kernel: lr from device memory, skipped
//                 while a loss record's non-finite flag is set) of a network in one launch, over a table of chunks
//                 (w, g, v, len, w_copy): each is up to kSgdChunk consecutive elements of one parameter;
//                 when w_copy is not null the same pass writes w_copy = bf16(w), rounded to nearest even
//                 from the new fp32 w (the weights the bf16 convolutions read)
// Launch: 1-D grid-stride loops, so any grid and block size covers n; sgd_update_chunks: any grid (blocks
// take chunks blockIdx.x, + gridDim.x, ...), any block size.
// Element type T is a template parameter (sgd_update: f32 only); each instantiation is an extern "C"
// kernel named *_f32 etc.
#include "common.cuh"
#include "tensor_core.cuh"

template <class T>
__device__ __forceinline__ void add_forward(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y,
                                            unsigned long long n, int relu) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        const T v = a[i] + b[i];
        y[i] = (relu && v < T(0)) ? T(0) : v;
    }
}

template <class T>
__device__ __forceinline__ void add_backward(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dsum,
                                             unsigned long long n, int relu) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        dsum[i] = (!relu || y[i] > T(0)) ? dy[i] : T(0);
    }
}

// Element i of one SGD step. Every product and sum rounds on its own (the _rn intrinsics), in the CPU
// backend's order: nvcc would otherwise contract `momentum * v + ...` and `w - lr * v` into fused
// multiply-adds, which round once and so differ from the CPU's update in the last bit (seen on an
// H200). The update is memory-bound; the separate roundings cost nothing measurable, and they keep
// GPU and CPU training bit-identical in this op.
// Returns the new w[i].
__device__ __forceinline__ float sgd_element(float* __restrict__ w, const float* __restrict__ g,
                                             float* __restrict__ v, unsigned long long i, float lr, float momentum,
                                             float weight_decay) {
    const float decayed = __fadd_rn(g[i], __fmul_rn(weight_decay, w[i]));
    const float vi = __fadd_rn(__fmul_rn(momentum, v[i]), decayed);
    v[i] = vi;
    const float updated = __fsub_rn(w[i], __fmul_rn(lr, vi));
    w[i] = updated;
    return updated;
}

__device__ __forceinline__ void sgd_update(float* __restrict__ w, const float* __restrict__ g,
                                           float* __restrict__ v, unsigned long long n, float lr,
                                           float momentum, float weight_decay) {
    for (unsigned long long i = global_thread_index(); i < n; i += grid_stride()) {
        sgd_element(w, g, v, i, lr, momentum, weight_decay);
    }
}

// One entry of sgd_update_chunks' table (device addresses and a length), 40 bytes; the host builds it
// (src/backend/gpu/sgd_chunks.rs) and keeps it on the device while the parameters stay put. w_copy is
// the address of the chunk's bf16 copy of w, or 0 when the parameter has none.
struct SgdChunk {
    unsigned long long w, g, v, len, w_copy;
};

// Every chunk is updated exactly as sgd_update updates its elements, so one launch over all of a
// network's parameters is bit-identical to a launch per parameter.
__device__ __forceinline__ void sgd_update_chunks(const SgdChunk* __restrict__ chunks, int num_chunks, float lr,
                                                  float momentum, float weight_decay) {
    for (int c = blockIdx.x; c < num_chunks; c += gridDim.x) {
        const SgdChunk k = chunks[c];
        float* w = reinterpret_cast<float*>(k.w);
        const float* g = reinterpret_cast<const float*>(k.g);
        float* v = reinterpret_cast<float*>(k.v);
        bf16* w_copy = reinterpret_cast<bf16*>(k.w_copy);
        // The branch is uniform over the chunk; the fp32 update is the same instructions either way.
        if (w_copy != nullptr) {
            for (unsigned long long i = threadIdx.x; i < k.len; i += blockDim.x) {
                w_copy[i] = bf16_from_float(sgd_element(w, g, v, i, lr, momentum, weight_decay));
            }
        } else {
            for (unsigned long long i = threadIdx.x; i < k.len; i += blockDim.x) {
                sgd_element(w, g, v, i, lr, momentum, weight_decay);
            }
        }
    }
}

extern "C" __global__ void add_forward_f32(const float* a, const float* b, float* y, unsigned long long n, int relu) {
    grid_dependency_sync();
    add_forward<float>(a, b, y, n, relu);
}
EMU_REGISTER(add_forward_f32);

extern "C" __global__ void add_backward_f32(const float* y, const float* dy, float* dsum, unsigned long long n,
                                            int relu) {
    grid_dependency_sync();
    add_backward<float>(y, dy, dsum, n, relu);
}
EMU_REGISTER(add_backward_f32);

extern "C" __global__ void sgd_update_f32(float* w, const float* g, float* v, unsigned long long n, float lr,
                                          float momentum, float weight_decay) {
    grid_dependency_sync();
    sgd_update(w, g, v, n, lr, momentum, weight_decay);
}
EMU_REGISTER(sgd_update_f32);

extern "C" __global__ void sgd_update_chunks_f32(const SgdChunk* chunks, int num_chunks, float lr, float momentum,
                                                 float weight_decay) {
    grid_dependency_sync();
    sgd_update_chunks(chunks, num_chunks, lr, momentum, weight_decay);
}
EMU_REGISTER(sgd_update_chunks_f32);

// sgd_update_chunks with the learning rate read from device memory, and nothing done while the loss
// record's non-finite flag (`diverged`, its second header word, softmax_cross_entropy.cu) is set: the
// step of a training run decides on the device, so the host need not wait for the loss first, and a
// schedule change is a write to *lr (a captured CUDA graph keeps the same arguments). The flag is
// uniform over the grid, so whole blocks return; otherwise bit-identical to sgd_update_chunks_f32.
extern "C" __global__ void sgd_update_chunks_guarded_f32(const SgdChunk* chunks, int num_chunks, const float* lr,
                                                         const unsigned* diverged, float momentum,
                                                         float weight_decay) {
    grid_dependency_sync();
    if (*diverged != 0u) return;
    sgd_update_chunks(chunks, num_chunks, *lr, momentum, weight_decay);
}
EMU_REGISTER(sgd_update_chunks_guarded_f32);
