// bn_affine.cuh: batch norm's forward affine map in bf16 training, y = x scale_c + shift_c with
// scale = gamma inv_std and shift = beta - mean scale, as one piece of code for every kernel that
// evaluates it: the normalising pass (batch_norm_bf16.cu) and the backward passes that take BN's own
// ReLU mask from x rather than from the stored y (batch_norm_bf16.cu's, and the tensor-core
// backward-data epilogue's, conv_tc_bn_grad.cuh). Sharing the code is what makes the mask the
// forward's bit for bit; the fused multiply-adds are written out (fmaf) rather than left to each
// compiler's contraction, so that nvcc in every kernel that inlines them, and the emulator's host
// compiler, round them the same way.
#ifndef RESNET_CUDA_BN_AFFINE_CUH
#define RESNET_CUDA_BN_AFFINE_CUH

// A training-mode batch norm's saved batch statistics and its parameters, per channel: what its
// affine map is formed from (for the kernels that take them together: a convolution applying the BN
// to its input, conv_tc_bn_input.cuh; a block's end applying its shortcut's, batch_norm_bf16.cu).
struct BnAffineParams {
    const float* mean;
    const float* inv_std;
    const float* gamma;
    const float* beta;
};

// The coefficients for channels c0 .. c0 + W - 1.
template <int W>
__device__ __forceinline__ void bn_affine_coefficients(const float* __restrict__ mean,
                                                       const float* __restrict__ inv_std,
                                                       const float* __restrict__ gamma,
                                                       const float* __restrict__ beta, int c0, float scale[W],
                                                       float shift[W]) {
#pragma unroll
    for (int k = 0; k < W; ++k) {
        scale[k] = gamma[c0 + k] * inv_std[c0 + k];
        shift[k] = fmaf(-mean[c0 + k], scale[k], beta[c0 + k]);
    }
}

__device__ __forceinline__ float bn_affine(float x, float scale, float shift) { return fmaf(x, scale, shift); }

#endif
