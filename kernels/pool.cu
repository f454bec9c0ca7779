// pool.cu: global average pooling and max pooling over NHWC activations, with their backwards.
//
// Math, x: [N, H, W, C]:
//   global_avg_pool_forward:  y[n,c] = 1/(H W) sum_{h,w} x[n,h,w,c]   (summed in h, w order, in float)
//   global_avg_pool_backward: dx[n,h,w,c] = dy[n,c] * inv_hw, inv_hw = 1/(H W) rounded to T by the caller
//   max_pool_forward:  y[n,p,q,c] = max over the window taps (i, j) in [0, window)^2 of the in-range
//                      x[n, p*stride - pad + i, q*stride - pad + j, c]; the first maximum in row-major
//                      tap order wins (a later tap must be strictly larger), as in the CPU reference
//   max_pool_backward: dx[n,h,w,c] = sum of dy[n,p,q,c] over the outputs (p, q), in row-major order,
//                      whose window's first maximum is (h, w). A gather: each input element recomputes
//                      the argmax of every window containing it, so there are no atomics and the sum
//                      order is fixed (the CPU reference's order).
// Launch: 1-D grid-stride loops, one output element (y, resp. dx) per iteration.
#include "common.cuh"

template <class T>
__device__ __forceinline__ void global_avg_pool_forward(const T* __restrict__ x, T* __restrict__ y, int N, int HW,
                                                        int C) {
    const unsigned long long total = static_cast<unsigned long long>(N) * C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const long long n = static_cast<long long>(i / C);
        const int c = static_cast<int>(i % C);
        const T* img = x + n * HW * C + c;
        float acc = 0.0f;
        for (int k = 0; k < HW; ++k) acc += static_cast<float>(img[static_cast<long long>(k) * C]);
        y[i] = static_cast<T>(acc / static_cast<float>(HW));
    }
}

template <class T>
__device__ __forceinline__ void global_avg_pool_backward(const T* __restrict__ dy, T* __restrict__ dx, int N, int HW,
                                                         int C, T inv_hw) {
    const unsigned long long total = static_cast<unsigned long long>(N) * HW * C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % C);
        const unsigned long long n = i / (static_cast<unsigned long long>(HW) * C);
        dx[i] = dy[n * C + c] * inv_hw;
    }
}

struct PoolShape {
    int N, H, W, C, P, Q, window, stride, pad;
};

// Flat index (within the image plane: h * W + w) of the first maximum of window (p, q) of channel c of
// image `img` (which points at x[n, 0, 0, 0]).
template <class T>
__device__ __forceinline__ int window_argmax(const T* __restrict__ img, const PoolShape& s, int p, int q, int c) {
    int best = -1;
    T best_v = T(0);
    const int h0 = p * s.stride - s.pad, w0 = q * s.stride - s.pad;
    for (int i = 0; i < s.window; ++i) {
        const int h = h0 + i;
        if (h < 0 || h >= s.H) continue;
        for (int j = 0; j < s.window; ++j) {
            const int w = w0 + j;
            if (w < 0 || w >= s.W) continue;
            const T v = img[(static_cast<long long>(h) * s.W + w) * s.C + c];
            if (best < 0 || v > best_v) {
                best = h * s.W + w;
                best_v = v;
            }
        }
    }
    return best;
}

template <class T>
__device__ __forceinline__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y, PoolShape s) {
    const unsigned long long total = static_cast<unsigned long long>(s.N) * s.P * s.Q * s.C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % s.C);
        const unsigned long long pix = i / s.C;
        const int q = static_cast<int>(pix % s.Q);
        const int p = static_cast<int>((pix / s.Q) % s.P);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(s.P) * s.Q));
        const T* img = x + n * s.H * s.W * s.C;
        const int best = window_argmax(img, s, p, q, c);
        y[i] = img[static_cast<long long>(best) * s.C + c];
    }
}

// Outputs whose window covers input coordinate `h` along one axis: o*stride - pad <= h < o*stride - pad + window.
__device__ __forceinline__ void covering_range(int h, int stride, int pad, int window, int outputs, int* lo, int* hi) {
    const int a = h + pad - window + 1;  // o*stride >= a
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    const int b = (h + pad) / stride;    // o*stride <= h + pad
    *hi = b < outputs - 1 ? b : outputs - 1;
}

template <class T>
__device__ __forceinline__ void max_pool_backward(const T* __restrict__ x, const T* __restrict__ dy,
                                                  T* __restrict__ dx, PoolShape s) {
    const unsigned long long total = static_cast<unsigned long long>(s.N) * s.H * s.W * s.C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % s.C);
        const unsigned long long pix = i / s.C;
        const int w = static_cast<int>(pix % s.W);
        const int h = static_cast<int>((pix / s.W) % s.H);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(s.H) * s.W));
        const T* img = x + n * s.H * s.W * s.C;
        const T* dy_img = dy + n * s.P * s.Q * s.C;
        int p_lo, p_hi, q_lo, q_hi;
        covering_range(h, s.stride, s.pad, s.window, s.P, &p_lo, &p_hi);
        covering_range(w, s.stride, s.pad, s.window, s.Q, &q_lo, &q_hi);
        T acc = T(0);
        for (int p = p_lo; p <= p_hi; ++p) {
            for (int q = q_lo; q <= q_hi; ++q) {
                if (window_argmax(img, s, p, q, c) == h * s.W + w) {
                    acc = acc + dy_img[(static_cast<long long>(p) * s.Q + q) * s.C + c];
                }
            }
        }
        dx[i] = acc;
    }
}

extern "C" __global__ void global_avg_pool_forward_f32(const float* x, float* y, int N, int HW, int C) {
    grid_dependency_sync();
    global_avg_pool_forward<float>(x, y, N, HW, C);
}
EMU_REGISTER(global_avg_pool_forward_f32);

extern "C" __global__ void global_avg_pool_backward_f32(const float* dy, float* dx, int N, int HW, int C,
                                                        float inv_hw) {
    grid_dependency_sync();
    global_avg_pool_backward<float>(dy, dx, N, HW, C, inv_hw);
}
EMU_REGISTER(global_avg_pool_backward_f32);

extern "C" __global__ void max_pool_forward_f32(const float* x, float* y, int N, int H, int W, int C, int P, int Q,
                                                int window, int stride, int pad) {
    grid_dependency_sync();
    max_pool_forward<float>(x, y, PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_forward_f32);

extern "C" __global__ void max_pool_backward_f32(const float* x, const float* dy, float* dx, int N, int H, int W,
                                                 int C, int P, int Q, int window, int stride, int pad) {
    grid_dependency_sync();
    max_pool_backward<float>(x, dy, dx, PoolShape{N, H, W, C, P, Q, window, stride, pad});
}
EMU_REGISTER(max_pool_backward_f32);
