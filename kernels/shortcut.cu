// shortcut.cu: the option-A residual shortcut (identity; on a shape change, stride subsampling and zero
// channels appended), NHWC, and its transpose.
//
// Math, x: [N, H, W, Cin], y: [N, P, Q, Cout], P = ceil(H / stride), Q = ceil(W / stride), Cout >= Cin:
//   forward:  y[n,p,q,c] = x[n, p*stride, q*stride, c] for c < Cin, 0 for Cin <= c < Cout
//   backward: dx[n,h,w,c] = dy[n, h/stride, w/stride, c] when stride divides h and w, else 0
// Launch: 1-D grid-stride loops, one output element (y, resp. dx) per iteration; no reductions.
#include "common.cuh"

template <class T>
__device__ __forceinline__ void shortcut_a_forward(const T* __restrict__ x, T* __restrict__ y, int N, int H, int W,
                                                   int Cin, int P, int Q, int Cout, int stride) {
    const unsigned long long total = static_cast<unsigned long long>(N) * P * Q * Cout;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % Cout);
        const unsigned long long pix = i / Cout;
        const int q = static_cast<int>(pix % Q);
        const int p = static_cast<int>((pix / Q) % P);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(P) * Q));
        y[i] = c < Cin ? x[((n * H + static_cast<long long>(p) * stride) * W + static_cast<long long>(q) * stride) * Cin + c]
                       : T(0);
    }
}

template <class T>
__device__ __forceinline__ void shortcut_a_backward(const T* __restrict__ dy, T* __restrict__ dx, int N, int H, int W,
                                                    int Cin, int P, int Q, int Cout, int stride) {
    const unsigned long long total = static_cast<unsigned long long>(N) * H * W * Cin;
    for (unsigned long long i = global_thread_index(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % Cin);
        const unsigned long long pix = i / Cin;
        const int w = static_cast<int>(pix % W);
        const int h = static_cast<int>((pix / W) % H);
        const long long n = static_cast<long long>(pix / (static_cast<unsigned long long>(H) * W));
        T v = T(0);
        if (h % stride == 0 && w % stride == 0) {
            v = dy[((n * P + h / stride) * Q + w / stride) * Cout + c];
        }
        dx[i] = v;
    }
}

extern "C" __global__ void shortcut_a_forward_f32(const float* x, float* y, int N, int H, int W, int Cin, int P, int Q,
                                                  int Cout, int stride) {
    grid_dependency_sync();
    shortcut_a_forward<float>(x, y, N, H, W, Cin, P, Q, Cout, stride);
}
EMU_REGISTER(shortcut_a_forward_f32);

extern "C" __global__ void shortcut_a_backward_f32(const float* dy, float* dx, int N, int H, int W, int Cin, int P,
                                                   int Q, int Cout, int stride) {
    grid_dependency_sync();
    shortcut_a_backward<float>(dy, dx, N, H, W, Cin, P, Q, Cout, stride);
}
EMU_REGISTER(shortcut_a_backward_f32);
