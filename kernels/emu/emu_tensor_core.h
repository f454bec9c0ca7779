// emu_tensor_core.h: host implementations of the warp-level matrix instructions and of cp.async, which
// kernels reach through tensor_core.cuh (its host side calls these; nvcc sees inline PTX instead).
//
// mma and ldmatrix are warp collectives: each lane offers a pointer to its own fragments at a
// rendezvous of all 32 lanes (emu_sync.h's warp_rendezvous with a full mask), and the last lane to
// arrive gathers every lane's registers, computes, and scatters the results back
// (runtime/warp_matrix.cpp), all by the fragment ownership of the PTX ISA. A lane that never arrives
// (it returned, or took another instruction) or a block whose last warp is partial makes the launch
// fail with a message naming the instruction, like the other warp intrinsics' misuse.
//
// cp.async is per thread (runtime/async_copy.cpp): a copy poisons its destination at issue and
// happens only when cp_async_wait retires its group, so reading the destination too early sees the
// poison (0xff bytes: a NaN in bf16 and in f32) instead of the data.
//
// Both also count their shared-memory bank conflicts (runtime/bank_conflicts.h: each ldmatrix matrix,
// and each quarter warp's k-th cp.async, is one request), which tests read per launching thread
// through emu_take_bank_conflicts (emu::bank_conflicts in Rust).
#ifndef RESNET_CUDA_EMU_TENSOR_CORE_H
#define RESNET_CUDA_EMU_TENSOR_CORE_H

#include <cstdint>

#include "emu_bfloat16.h"
#include "emu_sync.h"

namespace emu {

// One lane's registers of mma.m16n8k16 (A: 4 x bf16x2, B: 2 x bf16x2, C and D: 4 x f32).
struct MmaLane {
    std::uint32_t a[4];
    std::uint32_t b[2];
    float c[4];
    float d[4];
};

// One lane's part of ldmatrix: the row address it supplies and the registers it receives.
struct LdmatrixLane {
    const void* row;
    std::uint32_t r[4];
};

// `arg` of the ldmatrix rendezvous: the number of 8x8 matrices (1, 2 or 4), plus this bit for .trans.
constexpr int kLdmatrixTrans = 16;

inline void warp_mma_m16n8k16_bf16(MmaLane* lane) {
    compiler_fence();
    warp_rendezvous(0xffffffffu, WarpOp::mma_m16n8k16_bf16, reinterpret_cast<std::uintptr_t>(lane), 0, 32);
    compiler_fence();
}

inline void warp_ldmatrix(LdmatrixLane* lane, int matrices, bool trans) {
    compiler_fence();
    warp_rendezvous(0xffffffffu, WarpOp::ldmatrix, reinterpret_cast<std::uintptr_t>(lane),
                    matrices | (trans ? kLdmatrixTrans : 0), 32);
    compiler_fence();
}

// cp.async.cg.shared.global (16 bytes, the first src_bytes from src, zeros after), commit_group,
// wait_group N (retire groups until at most `pending` remain), wait_all (commit, then wait 0).
void cp_async_16(void* dst, const void* src, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending);
void cp_async_wait_all();

}  // namespace emu

#endif
