// warp_matrix.h: the whole-warp computations behind mma.m16n8k16 and ldmatrix (emu_tensor_core.h),
// run by the last lane to arrive at their rendezvous (block.cpp) for all 32 lanes at once.
#ifndef RESNET_CUDA_EMU_WARP_MATRIX_H
#define RESNET_CUDA_EMU_WARP_MATRIX_H

#include <cstddef>

#include "../cuda_emu.h"

namespace emu {

inline bool is_warp_matrix_op(WarpOp op) { return op == WarpOp::mma_m16n8k16_bf16 || op == WarpOp::ldmatrix; }

// `lane_data[l]` is lane l's MmaLane* or LdmatrixLane*, `lane_arg[l]` the arg it passed. Reads every
// lane's inputs, then writes every lane's outputs. On misuse returns false with a message in `error`.
bool complete_warp_matrix_op(WarpOp op, void* const lane_data[32], const int lane_arg[32], char* error,
                             std::size_t error_size);

}  // namespace emu

#endif
