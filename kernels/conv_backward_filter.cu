// conv_backward_filter.cu: gradient of 2-D convolution with respect to its weights, as an implicit GEMM
// whose long reduction is split across blocks and summed deterministically (no float atomics).
//
// Math:   dw[k,r,s,c] = sum_{n,p,q} dy[n,p,q,k] * x[n, p*stride - pad + r, q*stride - pad + s, c]
//         (reads outside the image are zero).
// Layout: x [N,H,W,C] (NHWC), dy [N,P,Q,K] (NHWC), dw [K,R,S,C] (KRSC); all contiguous.
// GEMM:   M = K (output channels), Ncol = R*S*C (column rsc = (r*S + s)*C + c), Kred = N*P*Q
//         (index j = (n*P + p)*Q + q):  A[k, j] = dy[j*K + k],  B[j, rsc] = x[n, p*stride-pad+r, ...].
// Split:  Z = gridDim.z blocks share one output tile; block z reduces j in [z*L, min((z+1)*L, NPQ)) with
//         L = ceil(ceil(NPQ / Z) / 16) * 16, and writes its partial sums (zeros for an empty range) to
//         workspace[z][k][r][s][c]. conv2d_backward_filter_reduce_f32 then sums the Z partials in order
//         z = 0, 1, ..., Z-1, so the result is bitwise reproducible for a given Z.
//         With Z = 1 and T = f32 the partial kernel may be given dw itself as its workspace (no reduce).
//         Suggested Z: enough blocks to fill the GPU, e.g. Z = clamp(ceil(2 * SMs / (gx * gy)), 1,
//         ceil(NPQ / 256)) with gx, gy the grid's x, y below.
// Tiling: conv_common.cuh: block tile 64 x 64, 256 threads, 4 x 4 per thread, 16-deep slices in
//         16640 bytes of static shared memory (double-buffered, one barrier a slice). Gathers:
//         A[m0 + t%64, j0 + t/64 + 4 i] (coalesced along k) and B[j0 + t/64 + 4 i, n0 + t%64] (each
//         thread decodes its column (r, s, c) once and one (n, p, q) per load).
//
// Kernels:
//   conv2d_backward_filter_partial_{3x3_s1,3x3_s2,1x1_s1,1x1_s2,general}_f32
//       params (const T* x, const T* dy, float* workspace, ConvDims d); the 3x3 / 1x1 variants require
//       R = S = 3 / R = S = 1 and stride 1 / 2 as named (any pad; otherwise they __trap());
//       general: any R, S, stride, pad.
//       grid (ceil(K / 64), ceil(R*S*C / 64), Z), block (256, 1, 1), dynamic shared bytes 0;
//       workspace bytes = Z * K * R * S * C * 4 (f32 partials whatever T), every element written.
//   conv2d_backward_filter_reduce_f32
//       params (const float* workspace, T* dw, int splits, unsigned long long count) with
//       count = K*R*S*C, splits = Z: dw[i] = sum_{z < Z} workspace[z * count + i], z ascending.
//       1-D grid-stride loop: any grid and block, e.g. grid (min(ceil(count / 256), 4096), 1, 1),
//       block (256, 1, 1), dynamic shared bytes 0.
#include "conv_common.cuh"

template <class T, int R_, int S_, int STRIDE_>
__device__ __forceinline__ void conv2d_backward_filter_partial(const T* __restrict__ x,
                                                               const T* __restrict__ dy,
                                                               float* __restrict__ workspace,
                                                               const ConvDims& d) {
    __shared__ float As[2][kConvTileK][kConvSmemStride];
    __shared__ float Bs[2][kConvTileK][kConvSmemStride];
    conv_check_specialisation<R_, S_, STRIDE_>(d);

    const int R = R_ ? R_ : d.R;
    const int S = S_ ? S_ : d.S;
    const int stride = STRIDE_ ? STRIDE_ : d.stride;
    const int H = d.H, W = d.W, C = d.C, K = d.K, P = d.P, Q = d.Q;
    const int RSC = R * S * C;
    const int NPQ = d.N * P * Q;
    const int m0 = blockIdx.x * kConvTileM, n0 = blockIdx.y * kConvTileN;
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int col = t % 64, row = t / 64;

    // This block's share of the reduction.
    const int splits = gridDim.z;
    const int per_split = ((NPQ + splits - 1) / splits + kConvTileK - 1) / kConvTileK * kConvTileK;
    const int j_begin = min(NPQ, static_cast<int>(blockIdx.z) * per_split);
    const int j_end = min(NPQ, j_begin + per_split);

    // This thread's A row (an output channel) and B column (a filter tap and input channel).
    const int k_a = m0 + col;
    const bool k_ok = k_a < K;
    const int rsc_b = n0 + col;
    int r_b = kConvInvalid, s_b = kConvInvalid, c_b = 0;
    if (rsc_b < RSC) conv_split_tap<R_, S_>(rsc_b, C, S, r_b, s_b, c_b);

    // Gathers slice j0 of A and B (rows row + 4 i, column col of both) into registers.
    float a_reg[kConvThreadTile], b_reg[kConvThreadTile];
    auto gather = [&](int j0) {
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            const int j = j0 + row + 4 * i;
            const bool j_ok = j < j_end;
            a_reg[i] = (j_ok && k_ok) ? conv_to_float(dy[static_cast<long long>(j) * K + k_a]) : 0.0f;
            float v = 0.0f;
            if (j_ok) {
                const int q = j % Q, np = j / Q;
                const int p = np % P, n = np / P;
                const int ih = p * stride - d.pad + r_b, iw = q * stride - d.pad + s_b;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                    v = conv_to_float(x[((static_cast<long long>(n) * H + ih) * W + iw) * C + c_b]);
                }
            }
            b_reg[i] = v;
        }
    };

    float acc[kConvThreadTile][kConvThreadTile] = {};
    if (j_begin < j_end) gather(j_begin);
    int buf = 0;
    for (int j0 = j_begin; j0 < j_end; j0 += kConvTileK) {
#pragma unroll
        for (int i = 0; i < kConvThreadTile; ++i) {
            As[buf][row + 4 * i][col] = a_reg[i];
            Bs[buf][row + 4 * i][col] = b_reg[i];
        }
        __syncthreads();
        if (j0 + kConvTileK < j_end) gather(j0 + kConvTileK);  // in flight during this slice's math
        conv_slice_mma(As[buf], Bs[buf], acc, tx, ty);
        buf ^= 1;
    }

    float* out = workspace + static_cast<long long>(blockIdx.z) * K * RSC;
#pragma unroll
    for (int i = 0; i < kConvThreadTile; ++i) {
        const int k = m0 + ty + 16 * i;
        if (k >= K) continue;
#pragma unroll
        for (int jj = 0; jj < kConvThreadTile; ++jj) {
            const int rsc = n0 + tx + 16 * jj;
            if (rsc < RSC) out[static_cast<long long>(k) * RSC + rsc] = acc[i][jj];
        }
    }
}

#define CONV_BACKWARD_FILTER_KERNEL(name, T, R, S, STRIDE)                                           \
    extern "C" __global__ void __launch_bounds__(kConvThreads)                                       \
        name(const T* x, const T* dy, float* workspace, ConvDims d) {                                \
        grid_dependency_sync();                                                                      \
        conv2d_backward_filter_partial<T, R, S, STRIDE>(x, dy, workspace, d);                        \
    }                                                                                                \
    EMU_REGISTER(name)

CONV_BACKWARD_FILTER_KERNEL(conv2d_backward_filter_partial_3x3_s1_f32, float, 3, 3, 1);
CONV_BACKWARD_FILTER_KERNEL(conv2d_backward_filter_partial_3x3_s2_f32, float, 3, 3, 2);
CONV_BACKWARD_FILTER_KERNEL(conv2d_backward_filter_partial_1x1_s1_f32, float, 1, 1, 1);
CONV_BACKWARD_FILTER_KERNEL(conv2d_backward_filter_partial_1x1_s2_f32, float, 1, 1, 2);
CONV_BACKWARD_FILTER_KERNEL(conv2d_backward_filter_partial_general_f32, float, 0, 0, 0);

template <class T>
__device__ __forceinline__ void conv2d_backward_filter_reduce(const float* __restrict__ workspace,
                                                              T* __restrict__ dw, int splits,
                                                              unsigned long long count) {
    for (unsigned long long i = global_thread_index(); i < count; i += grid_stride()) {
        float sum = 0.0f;
        for (int z = 0; z < splits; ++z) sum += workspace[z * count + i];
        dw[i] = conv_from_float<T>(sum);
    }
}

extern "C" __global__ void conv2d_backward_filter_reduce_f32(const float* workspace, float* dw, int splits,
                                                             unsigned long long count) {
    grid_dependency_sync();
    conv2d_backward_filter_reduce<float>(workspace, dw, splits, count);
}
EMU_REGISTER(conv2d_backward_filter_reduce_f32);
