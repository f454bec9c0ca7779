// conv_tc_backward_data.cu: gradient of 2-D convolution with respect to its input, on tensor cores
// (bf16 in, fp32 accumulate, bf16 out).
//
// Math:   dx[n,h,w,c] = bf16( sum_{r,s,k} dy[n,p,q,k] * w[k,r,s,c] [+ addend[n,h,w,c]] ) over the taps
//         with p = (h + pad - r) / stride, q = (w + pad - s) / stride exact and inside [0,P) x [0,Q)
//         (the transpose of the forward map; a gather, each dx element written once). The _add_
//         kernels add `addend` in fp32 to the accumulator and round once (the residual shortcut's
//         gradient summed in as dx is stored).
// Layout: dy [N,P,Q,K] bf16 (NHWC), w [K,R,S,C] bf16 (KRSC), dx and addend [N,H,W,C] bf16 (NHWC).
// Stride phases (as conv_backward_data.cu, no zero insertion): input pixels split into stride^2
//         classes (ph, pw) = (h mod stride, w mod stride), blockIdx.z = ph * stride + pw. A class is
//         reached only by taps r = rh0 + stride a (rh0 = (ph + pad) mod stride, a < nr), s = rw0 +
//         stride b (b < ns), which read p = base_p + i - a, q = base_q + j - b for h = ph + stride i,
//         w = pw + stride j (base_p = (ph + pad - rh0) / stride). A class no tap reaches (1x1 stride 2,
//         odd pixels) runs no slices and stores zeros (or the addend).
// GEMM per class: M = N*Hc*Wc (row m = (n*Hc + i)*Wc + j, Hc = ceil((H - ph) / stride)), Ncol = C,
//         Kred = nr*ns*K (kr = (a*ns + b)*K + k, k fastest):  A[m, kr] = dy[n, p, q, k] (zero outside
//         the output; contiguous along k: stored MK), B[kr, c] = w[k, r, s, c] (contiguous along c:
//         stored KN, fragments by ldmatrix.trans).
// Main loop, tiles, swizzle, pipeline: conv_tc.cuh.
//
// Kernels: conv2d_tc_backward_data_{V}{T}_bf16 with params (const bf16* dy, const bf16* w, bf16* dx,
//          ConvDims d) and conv2d_tc_backward_data_add_{V}{T}_bf16 with params (const bf16* dy,
//          const bf16* w, bf16* dx, const bf16* addend, ConvDims d), and
//          conv2d_tc_backward_data_bn_{T}_bf16 (vector loader; T one of 128x128, 64x64, 128x32, 64x16)
//          with params (const bf16* dy, const bf16* w, bf16* dx, const bf16* addend (or null),
//          const bf16* bn_x, const float* mean, const float* inv_std, const float* gamma,
//          const float* beta, int mask, const bf16* bn_y (or null), float* partial, ConvDims d):
//          dx masked as `mask` says (0 none, 1 bn_y > 0, 2 BN's affine map of bn_x > 0) and the
//          backward partials of the BN whose input is bn_x and whose output gradient dx is, into
//          partial[2][gridDim.x * gridDim.z][C] (conv_tc_bn_grad.cuh), where
//   {V} = ""         requires C % 8 == 0 and K % 8 == 0 (16-byte cp.async chunks); traps otherwise;
//   {V} = "general_" any shape (element-wise gathers into the same tiles);
//   {T} one of 128x128, 64x64, 128x32, 64x16, 32x64 (BM x BN), 128x128w64 (four 64 x 64 warp tiles).
// Launch: grid (ceil(N * ceil(H / stride) * ceil(W / stride) / BM), ceil(C / BN), stride^2) (sized for
//         the largest class; blocks past a smaller class's rows return at once), block (THREADS, 1, 1)
//         (256 for 128x128, else 128), dynamic shared bytes TcTile::SMEM_BYTES (65536 for 128x128w64,
//         which must opt in above 48 KiB; at most 49152 for the others). No
//         workspace; dx needs no zeroing. Pointers 16-byte aligned.
// Epilogue: with C % 8 == 0 and dx (and addend) 16-byte aligned, the block's tile (BM class pixels
//         x BN channels, each pixel's channels contiguous in dx) is staged through the pipeline's
//         shared memory and written with 16-byte stores, the addend read with 16-byte cp.async
//         (conv_tc_epilogue.cuh); otherwise each accumulator pair is stored from its fragment (4-byte
//         stores when C is even, else 2-byte). Both map row m to the same pixel and write the same
//         bits (the addend added in fp32, one rounding).
#include "conv_tc_backward_data.cuh"

#define CONV_TC_BACKWARD_DATA_KERNEL(name, Tile, VEC)                                                  \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, VEC)                                             \
        name(const bf16* dy, const bf16* w, bf16* dx, ConvDims d) {                                    \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, VEC, false>(dy, w, dx, nullptr, d);                                \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_BACKWARD_DATA_ADD_KERNEL(name, Tile, VEC)                                              \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, VEC)                                             \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, ConvDims d) {                \
        grid_dependency_sync();                                                                        \
        conv_tc_backward_data<Tile, VEC, true>(dy, w, dx, addend, d);                                  \
    }                                                                                                  \
    EMU_REGISTER(name)

#define CONV_TC_BACKWARD_DATA_BN_KERNEL(name, Tile)                                                    \
    extern "C" __global__ void TC_LAUNCH_BOUNDS(Tile, true)                                            \
        name(const bf16* dy, const bf16* w, bf16* dx, const bf16* addend, const bf16* bn_x,             \
             const float* mean, const float* inv_std, const float* gamma, const float* beta, int mask, \
             const bf16* bn_y, float* partial, ConvDims d) {                                           \
        grid_dependency_sync();                                                                        \
        const TcBnGrad bn{bn_x, mean, inv_std, gamma, beta, mask, bn_y, partial};                      \
        conv_tc_backward_data<Tile, true, false, TcMmaSyncLoop, true>(dy, w, dx, addend, d, bn);      \
    }                                                                                                  \
    EMU_REGISTER(name)

CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_128x128_bf16, TcTile128x128, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_64x64_bf16, TcTile64x64, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_128x32_bf16, TcTile128x32, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_64x16_bf16, TcTile64x16, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_32x64_bf16, TcTile32x64, true);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_general_128x128_bf16, TcTile128x128, false);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_general_64x64_bf16, TcTile64x64, false);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_general_128x32_bf16, TcTile128x32, false);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_general_64x16_bf16, TcTile64x16, false);
CONV_TC_BACKWARD_DATA_KERNEL(conv2d_tc_backward_data_general_32x64_bf16, TcTile32x64, false);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_128x128_bf16, TcTile128x128, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_128x128w64_bf16, TcTile128x128W64, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_64x64_bf16, TcTile64x64, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_128x32_bf16, TcTile128x32, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_64x16_bf16, TcTile64x16, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_32x64_bf16, TcTile32x64, true);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_general_128x128_bf16, TcTile128x128, false);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_general_64x64_bf16, TcTile64x64, false);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_general_128x32_bf16, TcTile128x32, false);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_general_64x16_bf16, TcTile64x16, false);
CONV_TC_BACKWARD_DATA_ADD_KERNEL(conv2d_tc_backward_data_add_general_32x64_bf16, TcTile32x64, false);
// The tiles backward-data's plan picks (conv_tc_plan/mod.rs, output_tile), with the BN partials.
CONV_TC_BACKWARD_DATA_BN_KERNEL(conv2d_tc_backward_data_bn_128x128_bf16, TcTile128x128);
CONV_TC_BACKWARD_DATA_BN_KERNEL(conv2d_tc_backward_data_bn_64x64_bf16, TcTile64x64);
CONV_TC_BACKWARD_DATA_BN_KERNEL(conv2d_tc_backward_data_bn_128x32_bf16, TcTile128x32);
CONV_TC_BACKWARD_DATA_BN_KERNEL(conv2d_tc_backward_data_bn_64x16_bf16, TcTile64x16);
