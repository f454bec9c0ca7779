// conv_backward_data.cu: gradient of 2-D convolution with respect to its input, as an implicit GEMM.
//
// Math:   dx[n,h,w,c] = sum_{r,s,k} dy[n,p,q,k] * w[k,r,s,c]  over the taps with
//         p = (h + pad - r) / stride, q = (w + pad - s) / stride both exact (no remainder) and in
//         [0,P) x [0,Q): the transpose of the forward map (a gather: no atomics, each dx written once).
// Layout: dy [N,P,Q,K] (NHWC), w [K,R,S,C] (KRSC), dx [N,H,W,C] (NHWC); all contiguous.
// Stride: only taps that land on an output are visited. Input pixels split into stride^2 residue
//         classes (ph, pw) = (h mod stride, w mod stride), one per blockIdx.z = ph * stride + pw. In a
//         class the taps that land are r = rh0 + stride a (rh0 = (ph + pad) mod stride, a < nr =
//         ceil((R - rh0) / stride)) and likewise s = rw0 + stride b (b < ns), and they read the outputs
//         p = (ph + pad - rh0) / stride + i - a for h = ph + stride i (same for q): no remainder tests,
//         no wasted taps. A class no tap reaches (1x1 stride 2, odd pixels) still writes its zeros.
//         Stride 1 is the single class holding every tap.
// GEMM per class: M = N * Hc * Wc (the class's pixels, Hc = ceil((H - ph) / stride), Wc likewise, row
//         m = (n*Hc + i)*Wc + j), Ncol = C, Kred = nr*ns*K (index kr = (a*ns + b)*K + k, k fastest, so
//         dy is contiguous along kr):  A[m, kr] = dy[n,p,q,k] (zero outside [0,P) x [0,Q)),
//         B[kr, c] = w[k, r, s, c] (the transposed weights, contiguous along c).
// Tiling: conv_common.cuh: block tile 64 x 64, 256 threads, 4 x 4 per thread, 16-deep slices in
//         16640 bytes of static shared memory (double-buffered, one barrier a slice). Gathers:
//         A[m0 + t/16 + 16 i, k0 + t%16] (each thread decodes its 4 input pixels once and one (a, b, k)
//         per slice) and B[k0 + t/64 + 4 i, n0 + t%64].
//
// Residual: the _add_ kernels take `addend` (shaped as dx) and store dx + addend instead of dx: the
//         input gradient of a residual block's first convolution with the shortcut's gradient summed
//         in as it is stored, rounded exactly as the convolution's output followed by add_forward.
//         (A separate kernel, not a null test: the extra pointer pushed the plain kernels into
//         register spills.)
// Kernels (every one: params (const T* dy, const T* w, T* dx, ConvDims d); the
// conv2d_backward_data_add_V_f32 twin of each: (const T* dy, const T* w, T* dx, const T* addend,
// ConvDims d)):
//   (a specialised kernel given other R, S or stride calls __trap(): pick the kernel from the shape)
//   conv2d_backward_data_3x3_s1_f32    requires R = S = 3, stride 1 (any pad)
//   conv2d_backward_data_3x3_s2_f32    requires R = S = 3, stride 2 (any pad)
//   conv2d_backward_data_1x1_s1_f32    requires R = S = 1, stride 1 (pad 0: a plain GEMM [NHW,K] x [K,C])
//   conv2d_backward_data_1x1_s2_f32    requires R = S = 1, stride 2
//   conv2d_backward_data_general_f32   any R, S, stride >= 1, pad
// Launch: grid (ceil(N * ceil(H / stride) * ceil(W / stride) / 64), ceil(C / 64), stride * stride),
//         block (256, 1, 1), dynamic shared bytes 0, no workspace. (The grid is sized for the largest
//         class, (0, 0); blocks past a smaller class's end return at once.) Every element of dx is
//         written (pixels no tap reaches get 0), so dx needs no zeroing.
#include "conv_common.cuh"

// Splits a reduction index over this class's taps (a, b, k), k fastest: kr = (a * ns + b) * K + k.
// Stride 1 has one class holding every tap (ns = S), so the 3x3 / 1x1 extents fold to constants.
template <int R_, int S_, int STRIDE_>
__device__ __forceinline__ void conv_bwd_data_split(int kr, int K, int ns, int& a, int& b, int& k) {
    if (STRIDE_ == 1) {
        conv_split_tap<R_, S_>(kr, K, ns, a, b, k);
    } else {
        conv_split_tap<0, 0>(kr, K, ns, a, b, k);
    }
}

template <class T, int R_, int S_, int STRIDE_, bool ADD>
__device__ __forceinline__ void conv2d_backward_data(const T* __restrict__ dy, const T* __restrict__ w,
                                                     T* __restrict__ dx, const T* __restrict__ addend,
                                                     const ConvDims& d) {
    __shared__ float As[2][kConvTileK][kConvSmemStride];
    __shared__ float Bs[2][kConvTileK][kConvSmemStride];
    conv_check_specialisation<R_, S_, STRIDE_>(d);

    const int R = R_ ? R_ : d.R;
    const int S = S_ ? S_ : d.S;
    const int stride = STRIDE_ ? STRIDE_ : d.stride;
    const int H = d.H, W = d.W, P = d.P, Q = d.Q, C = d.C, K = d.K, pad = d.pad;
    const int RSC = R * S * C;

    // This block's residue class of input pixels, h = ph + stride i, w = pw + stride j, and the taps
    // that reach it, r = rh0 + stride a (a < nr), s = rw0 + stride b (b < ns), which read the outputs
    // p = base_p + i - a, q = base_q + j - b.
    const int ph = static_cast<int>(blockIdx.z) / stride, pw = static_cast<int>(blockIdx.z) % stride;
    const int Hc = ph < H ? (H - ph + stride - 1) / stride : 0;
    const int Wc = pw < W ? (W - pw + stride - 1) / stride : 0;
    const int rh0 = (ph + pad) % stride, rw0 = (pw + pad) % stride;
    const int nr = rh0 < R ? (R - rh0 + stride - 1) / stride : 0;
    const int ns = rw0 < S ? (S - rw0 + stride - 1) / stride : 0;
    const int base_p = (ph + pad - rh0) / stride, base_q = (pw + pad - rw0) / stride;
    const int M = d.N * Hc * Wc;
    const int RED = nr * ns * K;

    const int m0 = blockIdx.x * kConvTileM, n0 = blockIdx.y * kConvTileN;
    if (m0 >= M) return;  // uniform over the block: a smaller class than the grid is sized for
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    // This thread's gather rows of A: dy's image and the output coordinates read by tap (0, 0).
    const T* a_image[kConvThreadTile];
    int a_p0[kConvThreadTile], a_q0[kConvThreadTile];
#pragma unroll
    for (int i = 0; i < kConvThreadTile; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m < M) {
            const int jw = m % Wc, ni = m / Wc;
            const int ih = ni % Hc, n = ni / Hc;
            a_image[i] = dy + static_cast<long long>(n) * P * Q * K;
            a_p0[i] = base_p + ih;
            a_q0[i] = base_q + jw;
        } else {
            a_image[i] = dy;
            a_p0[i] = kConvInvalid;
            a_q0[i] = kConvInvalid;
        }
    }
    // This thread's B column (an input channel).
    const int b_col = t % 64, b_row = t / 64;
    const int c_b = n0 + b_col;
    const bool c_ok = c_b < C;

    // Gathers slice k0 of A (rows ty + 16 i, column tx) and B (rows b_row + 4 i, column b_col) into
    // registers. Only called for k0 < RED, so ns > 0 in the divisions.
    float a_reg[kConvThreadTile], b_reg[kConvThreadTile];
    auto gather = [&](int k0) {
        {
            const int kr = k0 + tx;
            const bool kr_ok = kr < RED;
            int a, b, k;
            conv_bwd_data_split<R_, S_, STRIDE_>(kr, K, ns, a, b, k);
#pragma unroll
            for (int i = 0; i < kConvThreadTile; ++i) {
                const int p = a_p0[i] - a, q = a_q0[i] - b;
                const bool ok = kr_ok && p >= 0 && p < P && q >= 0 && q < Q;
                a_reg[i] = ok ? conv_to_float(a_image[i][(static_cast<long long>(p) * Q + q) * K + k]) : 0.0f;
            }
        }
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            const int kr = k0 + b_row + 4 * i;
            float v = 0.0f;
            if (c_ok && kr < RED) {
                int a, b, k;
                conv_bwd_data_split<R_, S_, STRIDE_>(kr, K, ns, a, b, k);
                const int r = rh0 + stride * a, s = rw0 + stride * b;
                v = conv_to_float(w[static_cast<long long>(k) * RSC + (r * S + s) * C + c_b]);
            }
            b_reg[i] = v;
        }
    };

    float acc[kConvThreadTile][kConvThreadTile] = {};
    if (RED > 0) gather(0);
    int buf = 0;
    for (int k0 = 0; k0 < RED; k0 += kConvTileK) {
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            As[buf][tx][ty + 16 * i] = a_reg[i];
            Bs[buf][b_row + 4 * i][b_col] = b_reg[i];
        }
        __syncthreads();
        if (k0 + kConvTileK < RED) gather(k0 + kConvTileK);  // in flight during this slice's math
        conv_slice_mma(As[buf], Bs[buf], acc, tx, ty);
        buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < kConvThreadTile; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
        const int jw = m % Wc, ni = m / Wc;
        const int ih = ni % Hc, n = ni / Hc;
        const long long base = ((static_cast<long long>(n) * H + ph + stride * ih) * W + pw + stride * jw) * C;
#pragma unroll
        for (int j = 0; j < kConvThreadTile; ++j) {
            const int c = n0 + tx + 16 * j;
            if (c >= C) continue;
            const T v = conv_from_float<T>(acc[i][j]);
            dx[base + c] = ADD ? T(v + addend[base + c]) : v;
        }
    }
}

#define CONV_BACKWARD_DATA_KERNEL(name, T, R, S, STRIDE)                                             \
    extern "C" __global__ void __launch_bounds__(kConvThreads)                                       \
        name(const T* dy, const T* w, T* dx, ConvDims d) {                                           \
        grid_dependency_sync();                                                                      \
        conv2d_backward_data<T, R, S, STRIDE, false>(dy, w, dx, nullptr, d);                         \
    }                                                                                                \
    EMU_REGISTER(name)

#define CONV_BACKWARD_DATA_ADD_KERNEL(name, T, R, S, STRIDE)                                         \
    extern "C" __global__ void __launch_bounds__(kConvThreads)                                       \
        name(const T* dy, const T* w, T* dx, const T* addend, ConvDims d) {                          \
        grid_dependency_sync();                                                                      \
        conv2d_backward_data<T, R, S, STRIDE, true>(dy, w, dx, addend, d);                           \
    }                                                                                                \
    EMU_REGISTER(name)

CONV_BACKWARD_DATA_KERNEL(conv2d_backward_data_3x3_s1_f32, float, 3, 3, 1);
CONV_BACKWARD_DATA_KERNEL(conv2d_backward_data_3x3_s2_f32, float, 3, 3, 2);
CONV_BACKWARD_DATA_KERNEL(conv2d_backward_data_1x1_s1_f32, float, 1, 1, 1);
CONV_BACKWARD_DATA_KERNEL(conv2d_backward_data_1x1_s2_f32, float, 1, 1, 2);
CONV_BACKWARD_DATA_KERNEL(conv2d_backward_data_general_f32, float, 0, 0, 0);
CONV_BACKWARD_DATA_ADD_KERNEL(conv2d_backward_data_add_3x3_s1_f32, float, 3, 3, 1);
CONV_BACKWARD_DATA_ADD_KERNEL(conv2d_backward_data_add_3x3_s2_f32, float, 3, 3, 2);
CONV_BACKWARD_DATA_ADD_KERNEL(conv2d_backward_data_add_1x1_s1_f32, float, 1, 1, 1);
CONV_BACKWARD_DATA_ADD_KERNEL(conv2d_backward_data_add_1x1_s2_f32, float, 1, 1, 2);
CONV_BACKWARD_DATA_ADD_KERNEL(conv2d_backward_data_add_general_f32, float, 0, 0, 0);
