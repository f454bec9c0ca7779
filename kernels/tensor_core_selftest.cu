// tensor_core_selftest.cu: kernels that exercise tensor_core.cuh (tests/tensor_core.rs); no model uses
// them. All run one warp: block (32, 1, 1), grid (1, 1, 1), unless stated.
//
// Math and layout of each kernel:
//   tc_selftest_bf16_round:   bits[i] = bf16 bits of round_nearest_even(x[i]); back[i] = that bf16 as f32;
//                             grid-stride over n, any launch shape.
//   tc_selftest_bf16_relu_round: pairs[i] = pack_floats_bf16x2_relu(x[2i], x[2i + 1]) for i < n / 2;
//                             singles[i] = bf16 bits of bf16_from_float_relu(x[i]) for i < n; grid-stride,
//                             any launch shape.
//   tc_selftest_mma_fragments: lane l: d[4l..4l+4] = its D registers of one mma.m16n8k16 whose registers
//                             are a[4l..4l+4], b[2l..2l+2], c[4l..4l+4] (raw fragments, bf16 pairs as u32).
//   tc_selftest_mma_tile:     D[16][8] = A[16][16] B[16][8] + C[16][8], all row-major (A, B bf16; C, D f32):
//                             A and B staged to shared memory with cp.async, A fragments by ldmatrix.x4,
//                             B fragments by ldmatrix.x2.trans, C loaded and D stored by the C/D ownership.
//   tc_selftest_ldmatrix:     tile: 32 rows of 8 b16 (16 bytes each) copied to shared memory; lane l's row
//                             address is shared row perm[l], plus byte_offset bytes; out[4l + m] = register m
//                             of ldmatrix with `matrices` (1, 2, 4) and `trans` (0, 1); registers past
//                             `matrices` are not written.
//   tc_selftest_cp_async:     lane l copies src[16l ..] (src_bytes[l] bytes) into shared chunk l as group 0 and
//                             src[512 + 16l ..] (src_bytes[32 + l] bytes) into shared chunk 32 + l as group 1.
//                             mode 0: commit both; wait_group<1>; mid[chunk l, chunk 32 + l] = shared bytes;
//                             wait_group<0>. mode 1: commit group 0 only; wait_all; mid as above.
//                             Then out[...] = the two chunks again (64 chunks of 16 bytes in mid and out).
//   tc_selftest_bank_access:  shared memory: 4096 bytes, 128-byte aligned, zeroed. Copy k (0, 1) of lane l:
//                             if dst[32k + l] >= 0, a 16-byte cp.async of src[16 (32k + l) ..] to shared byte
//                             dst[32k + l] (16-byte aligned, < 4096). After the copies: wait_all,
//                             __syncthreads, then ldmatrix.x`matrices` (1, 2, 4; 0: none) with lane l's row
//                             at shared byte row[l] (16-byte aligned, < 4096); out[4l + m] = register m.
//                             For the emulator's bank-conflict counts (tests/tensor_core.rs).
//   tc_selftest_cp_async_no_wait: (wrong) each lane copies 4 floats src[4l ..] into shared memory, commits,
//                             and reads them back into out[4l ..] without waiting.
//   tc_selftest_mma_half_warp: (wrong) only lanes 0-15 execute mma; out[l] = d[0].
//   tc_selftest_ldmatrix_partial_warp: (wrong) launched with block (16, 1, 1): ldmatrix.x1 in a warp of
//                             16 lanes; out[l] = r[0].
#include "tensor_core.cuh"

extern "C" __global__ void tc_selftest_bf16_round(const float* x, unsigned short* bits, float* back, int n) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < static_cast<unsigned long long>(n); i += grid_stride()) {
        const bf16 h = bf16_from_float(x[i]);
        bits[i] = bf16_bits(h);
        back[i] = bf16_to_float(h);
    }
}
EMU_REGISTER(tc_selftest_bf16_round);

extern "C" __global__ void tc_selftest_bf16_relu_round(const float* x, unsigned* pairs, unsigned short* singles,
                                                       int n) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < static_cast<unsigned long long>(n); i += grid_stride()) {
        if (2 * i + 1 < static_cast<unsigned long long>(n)) pairs[i] = pack_floats_bf16x2_relu(x[2 * i], x[2 * i + 1]);
        singles[i] = bf16_bits(bf16_from_float_relu(x[i]));
    }
}
EMU_REGISTER(tc_selftest_bf16_relu_round);

extern "C" __global__ void tc_selftest_mma_fragments(const unsigned* a, const unsigned* b, const float* c, float* d) {
    grid_dependency_sync();
    const int l = threadIdx.x;
    std::uint32_t ra[4], rb[2];
    float rc[4], rd[4];
    for (int i = 0; i < 4; ++i) ra[i] = a[4 * l + i];
    for (int i = 0; i < 2; ++i) rb[i] = b[2 * l + i];
    for (int i = 0; i < 4; ++i) rc[i] = c[4 * l + i];
    mma_m16n8k16_bf16(rd, ra, rb, rc);
    for (int i = 0; i < 4; ++i) d[4 * l + i] = rd[i];
}
EMU_REGISTER(tc_selftest_mma_fragments);

extern "C" __global__ void tc_selftest_mma_tile(const unsigned short* A, const unsigned short* B, const float* C,
                                                float* D) {
    grid_dependency_sync();
    // 16x16 A is 32 chunks of 16 bytes (one per lane), 16x8 B is 16 chunks (lanes 0-15).
    __shared__ __align__(16) unsigned short As[16 * 16];
    __shared__ __align__(16) unsigned short Bs[16 * 8];
    const int l = threadIdx.x, g = l >> 2, t = l & 3;
    cp_async_16_cg(As + 8 * l, A + 8 * l, 16);
    if (l < 16) cp_async_16_cg(Bs + 8 * l, B + 8 * l, 16);
    cp_async_commit_group();
    cp_async_wait_group<0>();
    __syncthreads();  // every lane's copies are in; now any lane may read any row

    std::uint32_t a[4], b[2];
    ldmatrix_x4(a, As + 16 * (l % 16) + 8 * (l / 16));  // matrices: rows 0-7 | 8-15, columns 0-7 | 8-15
    ldmatrix_x2_trans(b, Bs + 8 * (l % 16));            // matrices: k 0-7, k 8-15 (lanes 16-31 ignored)
    float c[4], d[4];
    c[0] = C[8 * g + 2 * t];
    c[1] = C[8 * g + 2 * t + 1];
    c[2] = C[8 * (g + 8) + 2 * t];
    c[3] = C[8 * (g + 8) + 2 * t + 1];
    mma_m16n8k16_bf16(d, a, b, c);
    D[8 * g + 2 * t] = d[0];
    D[8 * g + 2 * t + 1] = d[1];
    D[8 * (g + 8) + 2 * t] = d[2];
    D[8 * (g + 8) + 2 * t + 1] = d[3];
}
EMU_REGISTER(tc_selftest_mma_tile);

extern "C" __global__ void tc_selftest_ldmatrix(const unsigned short* tile, const int* perm, int matrices, int trans,
                                                int byte_offset, unsigned* out) {
    grid_dependency_sync();
    __shared__ __align__(16) unsigned short rows[32 * 8];
    const int l = threadIdx.x;
    for (int i = 0; i < 8; ++i) rows[8 * l + i] = tile[8 * l + i];
    __syncthreads();
    const void* row = reinterpret_cast<const unsigned char*>(rows + 8 * perm[l]) + byte_offset;
    std::uint32_t r[4];
    if (matrices == 1 && !trans) ldmatrix_x1(r, row);
    if (matrices == 1 && trans) ldmatrix_x1_trans(r, row);
    if (matrices == 2 && !trans) ldmatrix_x2(r, row);
    if (matrices == 2 && trans) ldmatrix_x2_trans(r, row);
    if (matrices == 4 && !trans) ldmatrix_x4(r, row);
    if (matrices == 4 && trans) ldmatrix_x4_trans(r, row);
    for (int m = 0; m < matrices; ++m) out[4 * l + m] = r[m];
}
EMU_REGISTER(tc_selftest_ldmatrix);

extern "C" __global__ void tc_selftest_cp_async(const unsigned char* src, const int* src_bytes, int mode,
                                                unsigned char* mid, unsigned char* out) {
    grid_dependency_sync();
    __shared__ __align__(16) unsigned char chunks[64 * 16];
    const int l = threadIdx.x;
    unsigned char* first = chunks + 16 * l;
    unsigned char* second = chunks + 16 * (32 + l);
    cp_async_16_cg(first, src + 16 * l, src_bytes[l]);
    cp_async_commit_group();
    cp_async_16_cg(second, src + 512 + 16 * l, src_bytes[32 + l]);
    if (mode == 0) {
        cp_async_commit_group();
        cp_async_wait_group<1>();
    } else {
        cp_async_wait_all();
    }
    for (int i = 0; i < 16; ++i) {
        mid[16 * l + i] = first[i];
        mid[16 * (32 + l) + i] = second[i];
    }
    cp_async_wait_group<0>();
    for (int i = 0; i < 16; ++i) {
        out[16 * l + i] = first[i];
        out[16 * (32 + l) + i] = second[i];
    }
}
EMU_REGISTER(tc_selftest_cp_async);

extern "C" __global__ void tc_selftest_bank_access(const unsigned char* src, const int* dst, const int* row,
                                                   int matrices, unsigned* out) {
    grid_dependency_sync();
    constexpr int kBytes = 4096;
    __shared__ __align__(128) unsigned char buf[kBytes];
    const int l = threadIdx.x;
    for (int i = 16 * l; i < kBytes; i += 16 * 32) *reinterpret_cast<uint4*>(buf + i) = make_uint4(0, 0, 0, 0);
    __syncthreads();
    for (int k = 0; k < 2; ++k) {
        const int at = dst[32 * k + l];
        if (at >= 0) cp_async_16_cg(buf + at, src + 16 * (32 * k + l), 16);
    }
    cp_async_wait_all();
    __syncthreads();
    std::uint32_t r[4] = {0, 0, 0, 0};
    const void* p = buf + row[l];
    if (matrices == 1) ldmatrix_x1(r, p);
    if (matrices == 2) ldmatrix_x2(r, p);
    if (matrices == 4) ldmatrix_x4(r, p);
    for (int m = 0; m < 4; ++m) out[4 * l + m] = r[m];
}
EMU_REGISTER(tc_selftest_bank_access);

extern "C" __global__ void tc_selftest_cp_async_no_wait(const float* src, float* out) {
    grid_dependency_sync();
    __shared__ __align__(16) float staged[32 * 4];
    const int l = threadIdx.x;
    cp_async_16_cg(staged + 4 * l, src + 4 * l, 16);
    cp_async_commit_group();
    for (int i = 0; i < 4; ++i) out[4 * l + i] = staged[4 * l + i];  // the bug: no cp_async_wait_group
}
EMU_REGISTER(tc_selftest_cp_async_no_wait);

extern "C" __global__ void tc_selftest_mma_half_warp(float* out) {
    grid_dependency_sync();
    const int l = threadIdx.x;
    if (l >= 16) return;  // the bug: mma needs all 32 lanes
    const std::uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    const float c[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    float d[4];
    mma_m16n8k16_bf16(d, a, b, c);
    out[l] = d[0];
}
EMU_REGISTER(tc_selftest_mma_half_warp);

extern "C" __global__ void tc_selftest_ldmatrix_partial_warp(unsigned* out) {
    grid_dependency_sync();
    __shared__ __align__(16) unsigned short rows[8 * 8];
    const int l = threadIdx.x;
    if (l < 8) {
        for (int i = 0; i < 8; ++i) rows[8 * l + i] = static_cast<unsigned short>(8 * l + i);
    }
    __syncthreads();
    std::uint32_t r[1];
    ldmatrix_x1(r, rows + 8 * (l % 8));  // the bug: the block's only warp has 16 lanes
    out[l] = r[0];
}
EMU_REGISTER(tc_selftest_ldmatrix_partial_warp);
