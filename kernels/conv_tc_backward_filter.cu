// conv_tc_backward_filter.cu: gradient of 2-D convolution with respect to its weights, on tensor cores
// (bf16 in, fp32 accumulate, fp32 out into the fp32 master gradient), with the long reduction split
// across blocks and summed deterministically (no float atomics).
//
// Math:   dw[k,r,s,c] = sum_{n,p,q} dy[n,p,q,k] * x[n, p*stride - pad + r, q*stride - pad + s, c]
//         (reads outside the image are zero; fp32 sums, no output rounding).
// Layout: x [N,H,W,C] bf16 (NHWC), dy [N,P,Q,K] bf16 (NHWC), dw [K,R,S,C] fp32 (KRSC).
// GEMM:   M = K, Ncol = R*S*C (column rsc = (r*S + s)*C + c), Kred = N*P*Q (j = (n*P + p)*Q + q):
//         A[k, j] = dy[j][k] (contiguous along k, i.e. along M: stored KM, fragments by ldmatrix.trans),
//         B[j, rsc] = x[n, p*st-pad+r, q*st-pad+s, c] (contiguous along c: stored KN, ldmatrix.trans).
// Split:  Z = gridDim.z blocks share an output tile; block z reduces j in [z*L, min((z+1)*L, NPQ)) with
//         L = ceil(ceil(NPQ / Z) / 32) * 32 and writes its partial sums (zeros for an empty range) to
//         out[z][k][r][s][c]. With Z = 1, `out` is dw itself (no reduce). With Z > 1, `out` is a
//         workspace of Z*K*R*S*C floats and conv2d_tc_backward_filter_reduce_bf16 sums the partials in
//         order z = 0..Z-1 into dw: bitwise reproducible for a given Z, and Z depends on the shape only
//         (src/backend/gpu/conv_tc_plan/backward_filter.rs).
// Main loop, tiles, swizzle, pipeline: conv_tc.cuh.
//
// Kernels:
//   conv2d_tc_backward_filter_{V}{T}_bf16  params (const bf16* x, const bf16* dy, float* out, ConvDims d)
//       {V} = ""         requires C % 8 == 0 and K % 8 == 0 (16-byte cp.async chunks); traps otherwise;
//       {V} = "general_" any shape (element-wise gathers into the same tiles);
//       {T} one of 128x128, 64x64, 128x32, 64x16, 32x64 (BM x BN, BM along K, BN along R*S*C), and
//       128x128w64 (four 64 x 64 warp tiles).
//       grid (ceil(K / BM), ceil(R*S*C / BN), Z), block (THREADS, 1, 1) (256 for 128x128, else 128),
//       dynamic shared bytes TcTile::SMEM_BYTES (65536 for 128x128w64, which must opt in above 48 KiB;
//       at most 49152 for the others). Every element of out is written.
//       Pointers: x, dy 16-byte aligned, out 8-byte aligned.
//   conv2d_tc_backward_filter_bnrelu_{T}_bf16  params (const bf16* x, const bf16* dy, float* out,
//       const float* mean, const float* inv_std, const float* gamma, const float* beta, ConvDims d):
//       the vector kernel's partials for the input z = relu(x scale + shift) of the batch norm whose
//       input x is, computed as B is staged (conv_tc_bn_input.cuh), bit for bit those of the stored
//       z; {T}: 128x128, 64x64, 32x64.
//   conv2d_tc_backward_filter_reduce_bf16  params (const float* workspace, float* dw, int splits,
//       unsigned long long count) with count = K*R*S*C: dw[i] = sum_{z < splits} workspace[z*count + i],
//       z ascending. Grid-stride: any grid/block, e.g. grid (min(ceil(count / 256), 4096), 1, 1), block
//       (256, 1, 1), no shared memory. (Its data is fp32; "_bf16" names the kernel family.)
#include "conv_tc_backward_filter.cuh"

#define CONV_TC_BACKWARD_FILTER_KERNEL(name, Tile, VEC)                                                \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, VEC)                                             \
        name(const bf16* x, const bf16* dy, float* out, ConvDims d) {                                  \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_filter<Tile, VEC>(x, dy, out, d);                                             \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_BACKWARD_FILTER_BNRELU_KERNEL(name, Tile)                                              \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, true)                                            \
        name(const bf16* x, const bf16* dy, float* out, const float* mean, const float* inv_std,        \
             const float* gamma, const float* beta, ConvDims d) {                                      \
        grid_dependency_sync();                                                                        \
        const BnAffineParams bn{mean, inv_std, gamma, beta};                                            \
        conv_tc_backward_filter<Tile, true, TcMmaSyncLoop, true>(x, dy, out, d, bn);                   \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x128_bf16, TcTile128x128, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_64x64_bf16, TcTile64x64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_128x32_bf16, TcTile128x32, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_64x16_bf16, TcTile64x16, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_32x64_bf16, TcTile32x64, true);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_128x128_bf16, TcTile128x128, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_64x64_bf16, TcTile64x64, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_128x32_bf16, TcTile128x32, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_64x16_bf16, TcTile64x16, false);
CONV_TC_BACKWARD_FILTER_KERNEL(conv2d_tc_backward_filter_general_32x64_bf16, TcTile32x64, false);
// The tiles the plan picks (conv_tc_plan/backward_filter.rs, backward_filter_bnrelu_for).
CONV_TC_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_tc_backward_filter_bnrelu_128x128_bf16, TcTile128x128);
CONV_TC_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_tc_backward_filter_bnrelu_64x64_bf16, TcTile64x64);
CONV_TC_BACKWARD_FILTER_BNRELU_KERNEL(conv2d_tc_backward_filter_bnrelu_32x64_bf16, TcTile32x64);

extern "C" __global__ void conv2d_tc_backward_filter_reduce_bf16(const float* workspace, float* dw, int splits,
                                                                 unsigned long long count) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < count; i += grid_stride()) {
        float sum = 0.0f;
        for (int z = 0; z < splits; ++z) sum += workspace[z * count + i];
        dw[i] = sum;
    }
}
EMU_REGISTER(conv2d_tc_backward_filter_reduce_bf16);
