// emu_selftest.cu: kernels that exercise the emulator itself (tests/emulator.rs); no model uses them.
// On a GPU the same tests run them for real, which checks the emulator against the hardware.
//
// Math and layout of each kernel:
//   emu_selftest_sgemm_f32:   C[M,N] = A[M,K] B[K,N], row-major; 16x16 tiles through static shared
//                             memory, two __syncthreads per K-tile; block (16,16), grid (ceil(N/16), ceil(M/16)).
//   emu_selftest_block_sum_f32: sums[b] = sum of x[b*D .. b*D+D) (zero past n), D = blockDim.x, a multiple
//                             of 32: __shfl_down_sync within warps, then warp 0 over the warp sums.
//   emu_selftest_ballot:      ballots[i/32] = __ballot_sync of (flags[i] != 0) over each warp (lanes past n
//                             vote 0), and *total += popcount of each ballot with atomicAdd.
//   emu_selftest_atomics:     over x[0..n): *fsum, *dsum, *isum += x[i]; *umask |= 1 << (x[i] & 31);
//                             *imax, *imin = max, min of x; a CAS loop hands each i a unique ticket t
//                             and writes order[t] = i.
//   emu_selftest_reverse_dynamic: y[b*D + t] = s[D-1-t] where s = this block's chunk of x in dynamic
//                             shared memory (-1 past n); D = blockDim.x, shared bytes = 4 D.
//   emu_selftest_warp:        per thread i (8 ints out[8 i ..]): inclusive warp scan (shfl_up), warp total
//                             (shfl_xor), lane (warp % 32)'s value (shfl), sum over width-8 groups (shfl_xor,
//                             width 8), __any_sync(x > 5), __all_sync(x > -100), __reduce_add_sync,
//                             __syncthreads_count(x > 0).
//   emu_selftest_index:       out[4 g + 0..4] = packed threadIdx, blockIdx, blockDim, gridDim (x | y << 10 |
//                             z << 20) for global thread g = block linear * threads per block + thread linear.
//   emu_selftest_exit_before_shuffle: lane 0 returns, the rest shuffle with a full mask (an error).
//   emu_selftest_trap:        thread (3,0,0) of block (1,0,0) calls __trap(); others write out[i] = 1.
//   emu_selftest_no_grid_sync: (wrong) out[i] = i without calling grid_dependency_sync() first.
//   emu_selftest_staging_hazard: the shape of a GEMM's last main-loop read and its epilogue staging, in
//                             a 64-thread block: s[t] = t; __syncthreads; v = s[(t + 32) % 64] (the other
//                             warp's element, as ldmatrix reads other warps' rows); __syncwarp; then, only
//                             if `with_barrier`, __syncthreads; s[t] = -1 (the staging write); out[t] = v.
//                             Without the barrier a warp may overwrite s before the other warp read it: on
//                             a GPU that is a race, in the emulator a wrong out[] under the first-ahead or
//                             last-ahead schedule (tests/emulator.rs). Correct result: out[t] = (t+32) % 64.
//   emu_selftest_named_barrier: the staging hazard's shape with its two barriers named (bar.sync 1,
//                             `threads`), in a 96-thread block whose third warp only writes out[t] = t and
//                             returns (as a producer warp leaves a consumers' barrier alone). With
//                             threads = 64: out[t] = (t+32) % 64 for t < 64, t above. With 96 the barrier
//                             waits for a warp that returned (a deadlock); with 48 it is not whole warps.
#include "common.cuh"

constexpr int kTile = 16;

extern "C" __global__ void emu_selftest_sgemm_f32(const float* A, const float* B, float* C, int M, int N, int K) {
    grid_dependency_sync();
    __shared__ float As[kTile][kTile];
    __shared__ float Bs[kTile][kTile + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * kTile + ty, col = blockIdx.x * kTile + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += kTile) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < kTile; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}
EMU_REGISTER(emu_selftest_sgemm_f32);

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

extern "C" __global__ void emu_selftest_block_sum_f32(const float* x, float* sums, int n) {
    grid_dependency_sync();
    __shared__ float warp_sums[32];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float v = warp_sum(i < n ? x[i] : 0.0f);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = warp_sum(lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f);
        if (lane == 0) sums[blockIdx.x] = v;
    }
}
EMU_REGISTER(emu_selftest_block_sum_f32);

extern "C" __global__ void emu_selftest_ballot(const int* flags, unsigned* ballots, unsigned* total, int n) {
    grid_dependency_sync();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned b = __ballot_sync(0xffffffffu, i < n && flags[i] != 0);
    if (threadIdx.x % 32 == 0) {
        ballots[i / 32] = b;
        atomicAdd(total, static_cast<unsigned>(__popc(b)));
    }
}
EMU_REGISTER(emu_selftest_ballot);

extern "C" __global__ void emu_selftest_atomics(const int* x, int n, float* fsum, double* dsum, int* isum,
                                                unsigned* umask, int* imax, int* imin, unsigned* ticket,
                                                int* order) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < static_cast<unsigned long long>(n); i += grid_stride()) {
        const int v = x[i];
        atomicAdd(fsum, static_cast<float>(v));
        atomicAdd(dsum, static_cast<double>(v));
        atomicAdd(isum, v);
        atomicOr(umask, 1u << (v & 31));
        atomicMax(imax, v);
        atomicMin(imin, v);
        unsigned seen = *ticket, assumed;
        do {
            assumed = seen;
            seen = atomicCAS(ticket, assumed, assumed + 1);
        } while (seen != assumed);
        order[seen] = static_cast<int>(i);
    }
}
EMU_REGISTER(emu_selftest_atomics);

extern "C" __global__ void emu_selftest_reverse_dynamic(const float* x, float* y, int n) {
    grid_dependency_sync();
    float* s = dynamic_shared_memory<float>();
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : -1.0f;
    __syncthreads();
    if (i < n) y[i] = s[blockDim.x - 1 - t];
}
EMU_REGISTER(emu_selftest_reverse_dynamic);

extern "C" __global__ void emu_selftest_warp(const int* x, int* out) {
    grid_dependency_sync();
    const unsigned full = 0xffffffffu;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32, warp = i / 32;
    const int v = x[i];
    int scan = v;
    for (int d = 1; d < 32; d <<= 1) {
        const int up = __shfl_up_sync(full, scan, d);
        if (lane >= d) scan += up;
    }
    int total = v;
    for (int m = 16; m > 0; m >>= 1) total += __shfl_xor_sync(full, total, m);
    int group = v;
    for (int m = 4; m > 0; m >>= 1) group += __shfl_xor_sync(full, group, m, 8);
    int* o = out + 8 * i;
    o[0] = scan;
    o[1] = total;
    o[2] = __shfl_sync(full, v, warp % 32);
    o[3] = group;
    o[4] = __any_sync(full, v > 5);
    o[5] = __all_sync(full, v > -100);
    o[6] = __reduce_add_sync(full, v);
    o[7] = __syncthreads_count(v > 0);
}
EMU_REGISTER(emu_selftest_warp);

__device__ __forceinline__ unsigned pack3(unsigned x, unsigned y, unsigned z) { return x | y << 10 | z << 20; }

extern "C" __global__ void emu_selftest_index(unsigned* out) {
    grid_dependency_sync();
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned* o = out + 4 * (b * threads + t);
    o[0] = pack3(threadIdx.x, threadIdx.y, threadIdx.z);
    o[1] = pack3(blockIdx.x, blockIdx.y, blockIdx.z);
    o[2] = pack3(blockDim.x, blockDim.y, blockDim.z);
    o[3] = pack3(gridDim.x, gridDim.y, gridDim.z);
}
EMU_REGISTER(emu_selftest_index);

extern "C" __global__ void emu_selftest_exit_before_shuffle(int* out) {
    grid_dependency_sync();
    if (threadIdx.x == 0) return;
    out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);
}
EMU_REGISTER(emu_selftest_exit_before_shuffle);

extern "C" __global__ void emu_selftest_trap(int* out) {
    grid_dependency_sync();
    if (blockIdx.x == 1 && threadIdx.x == 3) __trap();
    out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}
EMU_REGISTER(emu_selftest_trap);

extern "C" __global__ void emu_selftest_staging_hazard(int* out, int with_barrier) {
    grid_dependency_sync();
    __shared__ int s[64];
    const int t = threadIdx.x;
    s[t] = t;
    __syncthreads();
    const int v = s[(t + 32) % 64];
    __syncwarp();
    if (with_barrier) __syncthreads();
    s[t] = -1;
    out[t] = v;
}
EMU_REGISTER(emu_selftest_staging_hazard);

extern "C" __global__ void emu_selftest_named_barrier(int* out, int threads) {
    grid_dependency_sync();
    __shared__ int s[64];
    const int t = threadIdx.x;
    if (t >= 64) {
        out[t] = t;
        return;
    }
    s[t] = t;
    named_barrier_sync(1, threads);
    const int v = s[(t + 32) % 64];
    __syncwarp();
    named_barrier_sync(1, threads);
    s[t] = -1;
    out[t] = v;
}
EMU_REGISTER(emu_selftest_named_barrier);

extern "C" __global__ void emu_selftest_no_grid_sync(int* out) {
    // The bug: no grid_dependency_sync() (common.cuh) before the kernel touches memory.
    out[threadIdx.x] = static_cast<int>(threadIdx.x);
}
EMU_REGISTER(emu_selftest_no_grid_sync);

// Compiled for blocks of at most 128 threads, with 8 KiB of static shared memory beside whatever
// dynamic shared memory a launch gives it (at least 4 bytes a thread): the kernel the launch-limit
// tests go beyond (tests/emulator.rs with limits they set, tests/kernels.rs with nvcc's). Each thread
// writes its index reversed within the block through the static array, plus one through the dynamic.
extern "C" __global__ void __launch_bounds__(128) emu_selftest_bounded(int* out) {
    grid_dependency_sync();
    __shared__ int reversed[2048];
    int* ones = dynamic_shared_memory<int>();
    const unsigned t = threadIdx.x;
    reversed[t] = static_cast<int>(t);
    ones[t] = 1;
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = reversed[blockDim.x - 1 - t] + ones[t];
}
EMU_REGISTER(emu_selftest_bounded);
