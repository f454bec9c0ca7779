// conv_forward.cu: 2-D convolution forward as an implicit GEMM.
//
// Math:   y[n,p,q,k] = sum_{r,s,c} x[n, p*stride - pad + r, q*stride - pad + s, c] * w[k,r,s,c]
//         (reads outside the image are zero).
// Layout: x [N,H,W,C] (NHWC), w [K,R,S,C] (KRSC), y [N,P,Q,K] (NHWC); all contiguous.
// GEMM:   M = N*P*Q (output pixels, row m = (n*P + p)*Q + q), Ncol = K (output channels),
//         Kred = R*S*C (index kr = (r*S + s)*C + c, c fastest, so both operands are contiguous along kr):
//         A[m, kr] = x[n, p*stride - pad + r, q*stride - pad + s, c],  B[kr, k] = w[k*R*S*C + kr].
// Tiling: conv_common.cuh: block tile 64 x 64, 256 threads, 4 x 4 per thread, 16-deep slices in
//         16640 bytes of static shared memory (double-buffered, one barrier a slice). Gathers: thread t
//         loads A[m0 + t/16 + 16 i, k0 + t%16] and B[k0 + t%16, n0 + t/16 + 16 i] (i < 4); each thread
//         decodes its 4 output pixels once and one (r, s, c) per slice.
//
// Kernels (every one: params (const T* x, const T* w, T* y, ConvDims d)):
//   (a specialised kernel given other R, S or stride calls __trap(): pick the kernel from the shape)
//   conv2d_forward_3x3_s1_f32    requires R = S = 3, stride 1 (any pad)
//   conv2d_forward_3x3_s2_f32    requires R = S = 3, stride 2 (any pad)
//   conv2d_forward_1x1_s1_f32    requires R = S = 1, stride 1 (pad 0: then a plain GEMM [NHW,C] x [C,K])
//   conv2d_forward_1x1_s2_f32    requires R = S = 1, stride 2
//   conv2d_forward_general_f32   any R, S, stride >= 1, pad (the 7x7/2 stem with C = 3, anything else)
// Launch: grid (ceil(N*P*Q / 64), ceil(K / 64), 1), block (256, 1, 1), dynamic shared bytes 0,
//         no workspace. Every element of y is written (no need to zero it first).
#include "conv_common.cuh"

template <class T, int R_, int S_, int STRIDE_>
__device__ __forceinline__ void conv2d_forward(const T* __restrict__ x, const T* __restrict__ w,
                                               T* __restrict__ y, const ConvDims& d) {
    __shared__ float As[2][kConvTileK][kConvSmemStride];
    __shared__ float Bs[2][kConvTileK][kConvSmemStride];
    conv_check_specialisation<R_, S_, STRIDE_>(d);

    const int R = R_ ? R_ : d.R;
    const int S = S_ ? S_ : d.S;
    const int stride = STRIDE_ ? STRIDE_ : d.stride;
    const int H = d.H, W = d.W, C = d.C, K = d.K;
    const int M = d.N * d.P * d.Q;
    const int RSC = R * S * C;
    const int m0 = blockIdx.x * kConvTileM, n0 = blockIdx.y * kConvTileN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;

    // This thread's gather rows of A: the image, and the top-left input corner of each output pixel.
    const T* a_image[kConvThreadTile];
    int a_h0[kConvThreadTile], a_w0[kConvThreadTile];
#pragma unroll
    for (int i = 0; i < kConvThreadTile; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m < M) {
            const int q = m % d.Q, np = m / d.Q;
            const int p = np % d.P, n = np / d.P;
            a_image[i] = x + static_cast<long long>(n) * H * W * C;
            a_h0[i] = p * stride - d.pad;
            a_w0[i] = q * stride - d.pad;
        } else {
            a_image[i] = x;
            a_h0[i] = kConvInvalid;
            a_w0[i] = kConvInvalid;
        }
    }

    // Gathers slice k0 of A (rows ty + 16 i, column tx) and B (row tx, columns ty + 16 i) into registers.
    float a_reg[kConvThreadTile], b_reg[kConvThreadTile];
    auto gather = [&](int k0) {
        const int kr = k0 + tx;
        const bool kr_ok = kr < RSC;
        int r, s, c;
        conv_split_tap<R_, S_>(kr, C, S, r, s, c);
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            const int ih = a_h0[i] + r, iw = a_w0[i] + s;
            float v = 0.0f;
            if (kr_ok && ih >= 0 && ih < H && iw >= 0 && iw < W) {
                v = conv_to_float(a_image[i][(static_cast<long long>(ih) * W + iw) * C + c]);
            }
            a_reg[i] = v;
        }
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            const int k = n0 + ty + 16 * i;
            b_reg[i] = (kr_ok && k < K) ? conv_to_float(w[static_cast<long long>(k) * RSC + kr]) : 0.0f;
        }
    };

    float acc[kConvThreadTile][kConvThreadTile] = {};
    gather(0);
    int buf = 0;
    for (int k0 = 0; k0 < RSC; k0 += kConvTileK) {
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            As[buf][tx][ty + 16 * i] = a_reg[i];
            Bs[buf][tx][ty + 16 * i] = b_reg[i];
        }
        __syncthreads();
        if (k0 + kConvTileK < RSC) gather(k0 + kConvTileK);  // in flight during this slice's math
        conv_slice_mma(As[buf], Bs[buf], acc, tx, ty);
        buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < kConvThreadTile; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < kConvThreadTile; ++j) {
            const int k = n0 + tx + 16 * j;
            if (k < K) y[static_cast<long long>(m) * K + k] = conv_from_float<T>(acc[i][j]);
        }
    }
}

#define CONV_FORWARD_KERNEL(name, T, R, S, STRIDE)                                                   \
    extern "C" __global__ void __launch_bounds__(kConvThreads)                                       \
        name(const T* x, const T* w, T* y, ConvDims d) {                                             \
        grid_dependency_sync();                                                                      \
        conv2d_forward<T, R, S, STRIDE>(x, w, y, d);                                                 \
    }                                                                                                \
    EMU_REGISTER(name)

CONV_FORWARD_KERNEL(conv2d_forward_3x3_s1_f32, float, 3, 3, 1);
CONV_FORWARD_KERNEL(conv2d_forward_3x3_s2_f32, float, 3, 3, 2);
CONV_FORWARD_KERNEL(conv2d_forward_1x1_s1_f32, float, 1, 1, 1);
CONV_FORWARD_KERNEL(conv2d_forward_1x1_s2_f32, float, 1, 1, 2);
CONV_FORWARD_KERNEL(conv2d_forward_general_f32, float, 0, 0, 0);
