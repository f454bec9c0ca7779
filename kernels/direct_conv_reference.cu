// direct_conv_reference.cu: a simple, correct direct 2-D convolution (forward, backward-data,
// backward-filter) over NHWC activations and KRSC weights: the GPU backend's fallback until the fast
// kernels of kernels/conv*.cu replace it. One thread per output element, direct loops, no shared memory.
//
// Math, x: [N, H, W, C], w: [K, R, S, C], y: [N, P, Q, K], out-of-range input reads are zero:
//   forward:         y[n,p,q,k]  = sum_{r,s,c} x[n, p*stride - pad + r, q*stride - pad + s, c] w[k,r,s,c]
//   backward_data:   dx[n,h,w,c] = sum over (r, s, k) with p = (h + pad - r)/stride, q = (w + pad - s)/stride
//                                  exact and in range of dy[n,p,q,k] w[k,r,s,c]
//   backward_filter: dw[k,r,s,c] = sum_{n,p,q} dy[n,p,q,k] x[n, p*stride - pad + r, q*stride - pad + s, c]
// Launch: 1-D grid-stride loops over the output elements (y, dx, dw respectively).
#include "common.cuh"

struct DirectConvShape {
    int N, H, W, C, K, R, S, P, Q, stride, pad;
};

template <class T>
__device__ __forceinline__ void direct_conv_forward(const T* __restrict__ x, const T* __restrict__ w,
                                                    T* __restrict__ y, DirectConvShape s) {
    const unsigned long long total = static_cast<unsigned long long>(s.N) * s.P * s.Q * s.K;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int k = static_cast<int>(i % s.K);
        const unsigned long long pix = i / s.K;
        const int q = static_cast<int>(pix % s.Q);
        const int p = static_cast<int>((pix / s.Q) % s.P);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(s.P) * s.Q));
        T acc = T(0);
        for (int r = 0; r < s.R; ++r) {
            const int h = p * s.stride - s.pad + r;
            if (h < 0 || h >= s.H) continue;
            for (int t = 0; t < s.S; ++t) {
                const int ww = q * s.stride - s.pad + t;
                if (ww < 0 || ww >= s.W) continue;
                const T* xp = x + ((n * s.H + h) * s.W + ww) * s.C;
                const T* wp = w + ((static_cast<long long>(k) * s.R + r) * s.S + t) * s.C;
                for (int c = 0; c < s.C; ++c) acc += xp[c] * wp[c];
            }
        }
        y[i] = acc;
    }
}

template <class T>
__device__ __forceinline__ void direct_conv_backward_data(const T* __restrict__ dy, const T* __restrict__ w,
                                                          T* __restrict__ dx, DirectConvShape s) {
    const unsigned long long total = static_cast<unsigned long long>(s.N) * s.H * s.W * s.C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % s.C);
        const unsigned long long pix = i / s.C;
        const int ww = static_cast<int>(pix % s.W);
        const int h = static_cast<int>((pix / s.W) % s.H);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(s.H) * s.W));
        T acc = T(0);
        for (int r = 0; r < s.R; ++r) {
            const int ph = h + s.pad - r;
            if (ph < 0 || ph % s.stride != 0 || ph / s.stride >= s.P) continue;
            const int p = ph / s.stride;
            for (int t = 0; t < s.S; ++t) {
                const int qw = ww + s.pad - t;
                if (qw < 0 || qw % s.stride != 0 || qw / s.stride >= s.Q) continue;
                const int q = qw / s.stride;
                const T* dyp = dy + ((n * s.P + p) * s.Q + q) * s.K;
                for (int k = 0; k < s.K; ++k) acc += dyp[k] * w[((static_cast<long long>(k) * s.R + r) * s.S + t) * s.C + c];
            }
        }
        dx[i] = acc;
    }
}

template <class T>
__device__ __forceinline__ void direct_conv_backward_filter(const T* __restrict__ x, const T* __restrict__ dy,
                                                            T* __restrict__ dw, DirectConvShape s) {
    const unsigned long long total = static_cast<unsigned long long>(s.K) * s.R * s.S * s.C;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % s.C);
        const int t = static_cast<int>((i / s.C) % s.S);
        const int r = static_cast<int>((i / (static_cast<unsigned long long>(s.C) * s.S)) % s.R);
        const int k = static_cast<int>(i / (static_cast<unsigned long long>(s.C) * s.S * s.R));
        T acc = T(0);
        for (long long n = 0; n < s.N; ++n) {
            for (int p = 0; p < s.P; ++p) {
                const int h = p * s.stride - s.pad + r;
                if (h < 0 || h >= s.H) continue;
                for (int q = 0; q < s.Q; ++q) {
                    const int ww = q * s.stride - s.pad + t;
                    if (ww < 0 || ww >= s.W) continue;
                    acc += dy[((n * s.P + p) * s.Q + q) * s.K + k] * x[((n * s.H + h) * s.W + ww) * s.C + c];
                }
            }
        }
        dw[i] = acc;
    }
}

#define DIRECT_CONV_PARAMS int N, int H, int W, int C, int K, int R, int S, int P, int Q, int stride, int pad
#define DIRECT_CONV_SHAPE DirectConvShape{N, H, W, C, K, R, S, P, Q, stride, pad}

extern "C" __global__ void direct_conv_forward_f32(const float* x, const float* w, float* y, DIRECT_CONV_PARAMS) {
    grid_dependency_sync();
    direct_conv_forward<float>(x, w, y, DIRECT_CONV_SHAPE);
}
EMU_REGISTER(direct_conv_forward_f32);

extern "C" __global__ void direct_conv_backward_data_f32(const float* dy, const float* w, float* dx,
                                                         DIRECT_CONV_PARAMS) {
    grid_dependency_sync();
    direct_conv_backward_data<float>(dy, w, dx, DIRECT_CONV_SHAPE);
}
EMU_REGISTER(direct_conv_backward_data_f32);

extern "C" __global__ void direct_conv_backward_filter_f32(const float* x, const float* dy, float* dw,
                                                           DIRECT_CONV_PARAMS) {
    grid_dependency_sync();
    direct_conv_backward_filter<float>(x, dy, dw, DIRECT_CONV_SHAPE);
}
EMU_REGISTER(direct_conv_backward_filter_f32);
