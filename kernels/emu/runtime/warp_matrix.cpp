// warp_matrix.cpp: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 and
// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16 for a whole warp, by the fragment layouts of
// the PTX ISA ("Matrix fragments for mma.m16n8k16", "ldmatrix"). With g = lane / 4 and t = lane % 4,
// and "pair" meaning one 32-bit register holding two b16 values, the first in the low half:
//
//   mma A (16x16, row-major):  a0 = A[g][2t, 2t+1]   a1 = A[g+8][2t, 2t+1]
//                              a2 = A[g][2t+8, 2t+9] a3 = A[g+8][2t+8, 2t+9]
//   mma B (16x8, k-pairs):     b0 = B[2t, 2t+1][g]   b1 = B[2t+8, 2t+9][g]
//   mma C, D (16x8, f32):      c0, c1 = C[g][2t, 2t+1]   c2, c3 = C[g+8][2t, 2t+1]
//   ldmatrix, matrix m:        rows are the 16 bytes at the addresses of lanes 8m .. 8m+7;
//                              r[m] = M[g][2t, 2t+1], or with .trans M[2t, 2t+1][g] (of the transpose)
#include "warp_matrix.h"

#include "bank_conflicts.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace emu {
namespace {

float low_bf16(std::uint32_t pair) { return bfloat16_to_float(bfloat16{static_cast<std::uint16_t>(pair)}); }
float high_bf16(std::uint32_t pair) { return bfloat16_to_float(bfloat16{static_cast<std::uint16_t>(pair >> 16)}); }

// D = A B + C. Each product of two bf16 values is exact in f32 (8 x 8 significant bits fit in 24; only
// an under- or overflow of the exponent can round it), and the products are added to C one k at a
// time, k = 0..15, each addition rounded to f32 (a fused multiply-add, so that even an inexact
// product is rounded once). The hardware adds in an unspecified order with its own internal rounding,
// so on a GPU results agree to a few units in the last place; here they are reproducible exactly by
// a reference that does the same fused multiply-adds in the same order.
void mma_m16n8k16_bf16(MmaLane* const lanes[32]) {
    float a[16][16], b[16][8], c[16][8];
    for (int l = 0; l < 32; ++l) {
        const MmaLane& x = *lanes[l];
        const int g = l >> 2, t = l & 3;
        a[g][2 * t] = low_bf16(x.a[0]);
        a[g][2 * t + 1] = high_bf16(x.a[0]);
        a[g + 8][2 * t] = low_bf16(x.a[1]);
        a[g + 8][2 * t + 1] = high_bf16(x.a[1]);
        a[g][2 * t + 8] = low_bf16(x.a[2]);
        a[g][2 * t + 9] = high_bf16(x.a[2]);
        a[g + 8][2 * t + 8] = low_bf16(x.a[3]);
        a[g + 8][2 * t + 9] = high_bf16(x.a[3]);
        b[2 * t][g] = low_bf16(x.b[0]);
        b[2 * t + 1][g] = high_bf16(x.b[0]);
        b[2 * t + 8][g] = low_bf16(x.b[1]);
        b[2 * t + 9][g] = high_bf16(x.b[1]);
        c[g][2 * t] = x.c[0];
        c[g][2 * t + 1] = x.c[1];
        c[g + 8][2 * t] = x.c[2];
        c[g + 8][2 * t + 1] = x.c[3];
    }
    float d[16][8];
    for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 8; ++j) {
            float acc = c[i][j];
            for (int k = 0; k < 16; ++k) acc = std::fma(a[i][k], b[k][j], acc);
            d[i][j] = acc;
        }
    }
    for (int l = 0; l < 32; ++l) {
        MmaLane& x = *lanes[l];
        const int g = l >> 2, t = l & 3;
        x.d[0] = d[g][2 * t];
        x.d[1] = d[g][2 * t + 1];
        x.d[2] = d[g + 8][2 * t];
        x.d[3] = d[g + 8][2 * t + 1];
    }
}

const char* ldmatrix_shape(int arg) {
    switch (arg) {
    case 1: return ".x1";
    case 2: return ".x2";
    case 4: return ".x4";
    case 1 | kLdmatrixTrans: return ".x1.trans";
    case 2 | kLdmatrixTrans: return ".x2.trans";
    case 4 | kLdmatrixTrans: return ".x4.trans";
    default: return "(invalid shape)";
    }
}

bool ldmatrix(LdmatrixLane* const lanes[32], const int lane_arg[32], char* error, std::size_t error_size) {
    const int arg = lane_arg[0];
    for (int l = 1; l < 32; ++l) {
        if (lane_arg[l] != arg) {
            std::snprintf(error, error_size, "ldmatrix: lanes of one warp ask for different shapes (lane 0 %s, lane %d %s)",
                          ldmatrix_shape(arg), l, ldmatrix_shape(lane_arg[l]));
            return false;
        }
    }
    const int matrices = arg & ~kLdmatrixTrans;
    const bool trans = (arg & kLdmatrixTrans) != 0;
    if (matrices != 1 && matrices != 2 && matrices != 4) {
        std::snprintf(error, error_size, "ldmatrix: %d matrices (must be 1, 2 or 4)", matrices);
        return false;
    }
    // Only lanes 0 .. 8 * matrices - 1 supply addresses; the others' are ignored, as on sm_80+.
    std::uint16_t m[4][8][8];
    for (int k = 0; k < matrices; ++k) {
        std::uintptr_t rows[8];
        for (int r = 0; r < 8; ++r) {
            const int l = 8 * k + r;
            const void* row = lanes[l]->row;
            if (reinterpret_cast<std::uintptr_t>(row) % 16 != 0) {
                std::snprintf(error, error_size,
                              "ldmatrix%s: lane %d gives row address %p, which is not 16-byte aligned",
                              ldmatrix_shape(arg), l, row);
                return false;
            }
            std::memcpy(m[k][r], row, 16);
            rows[r] = reinterpret_cast<std::uintptr_t>(row);
        }
        bank_note_ldmatrix_matrix(rows);  // one matrix, one request (bank_conflicts.h)
    }
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int k = 0; k < matrices; ++k) {
            const std::uint16_t lo = trans ? m[k][2 * t][g] : m[k][g][2 * t];
            const std::uint16_t hi = trans ? m[k][2 * t + 1][g] : m[k][g][2 * t + 1];
            lanes[l]->r[k] = static_cast<std::uint32_t>(lo) | static_cast<std::uint32_t>(hi) << 16;
        }
    }
    return true;
}

}  // namespace

bool complete_warp_matrix_op(WarpOp op, void* const lane_data[32], const int lane_arg[32], char* error,
                             std::size_t error_size) {
    if (op == WarpOp::mma_m16n8k16_bf16) {
        MmaLane* lanes[32];
        for (int l = 0; l < 32; ++l) lanes[l] = static_cast<MmaLane*>(lane_data[l]);
        mma_m16n8k16_bf16(lanes);
        return true;
    }
    LdmatrixLane* lanes[32];
    for (int l = 0; l < 32; ++l) lanes[l] = static_cast<LdmatrixLane*>(lane_data[l]);
    return ldmatrix(lanes, lane_arg, error, error_size);
}

}  // namespace emu
