// conv_tc_forward.cuh: the body of the tensor-core convolution forward (math, layouts and GEMM view
// in conv_tc_forward.cu's header), shared by the sm_80 kernels there and the Hopper (wgmma) kernels of
// conv_wgmma_forward_sm90a.cu: the loaders and epilogues are written once, and `MainLoop` (a policy
// with `run<Tile, A_K_MAJOR, B_K_MAJOR>(acc, smem, slices, load_a, load_b)`) is the only part that
// differs: TcMmaSyncLoop (conv_tc.cuh: ldmatrix + mma.sync) or TcWgmmaLoop (conv_wgmma.cuh). With
// TcWgmmaTmaLoop (MainLoop::B_BY_TMA) the B tiles come by TMA from `w_map` (the address of a
// __grid_constant__ TmaMap over w as [K][RSC], box BK x BN: conv_wgmma_tma_sm90a.cu) and the
// B loader below is not used. With TcWgmmaTmaPointwiseLoop (MainLoop::A_BY_TMA, a 1x1 convolution of
// stride 1 without padding, whose A is x as a [N*H*W][C] matrix) the A tiles come from `x_map` (box
// BK x BM) too. With TcWgmmaTmaIm2colLoop (MainLoop::IM2COL; any shape with C % BK == 0, traps
// otherwise, so that a slice's BK channels lie in one tap) `x_map` is an im2col map over x
// (tensor_map_im2col.rs's Im2colMap::for_convolution, box BM pixels by BK channels): one copy a slice
// brings the A tile, output pixels m0.. at the slice's tap (r, s), channels c0.. (k0 = (r S + s) C +
// c0), zeros in the padding and past the last pixel.
#ifndef RESNET_CUDA_CONV_TC_FORWARD_CUH
#define RESNET_CUDA_CONV_TC_FORWARD_CUH

#include "conv_tc_epilogue.cuh"
#include "conv_tc_stats.cuh"

// BN_INPUT: x is a batch norm's input and the convolution's input is that BN's output with its ReLU,
// computed as A is staged (conv_tc_bn_input.cuh; `bn` its statistics and parameters), with the map's
// coefficients in a table in front of the pipeline (kTcBnTableBytes more shared memory; C at most
// kTcBnTableChannels).
template <class Tile, bool VEC, bool STATS, class MainLoop = TcMmaSyncLoop, bool BN_INPUT = false>
__device__ __forceinline__ void conv_tc_forward(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                bf16* __restrict__ y, float* __restrict__ stats,
                                                const ConvDims& d, const BnAffineParams& bn = {},
                                                const void* w_map = nullptr, const void* x_map = nullptr) {
    static_assert(VEC || !BN_INPUT, "the input map rewrites whole 16-byte chunks of one tap");
    static_assert(!MainLoop::B_BY_TMA || VEC, "TMA kernels: the vector A loader's shapes");
    static_assert(!MainLoop::A_BY_TMA || MainLoop::B_BY_TMA, "A by TMA comes with B by TMA");
    // uniform: a pointwise kernel given a shape whose A is not x itself
    if (MainLoop::A_BY_TMA && !MainLoop::IM2COL && (d.R != 1 || d.S != 1 || d.stride != 1 || d.pad != 0)) __trap();
    // uniform: an im2col kernel given a shape whose slices would straddle two taps
    if (MainLoop::IM2COL && d.C % Tile::BK != 0) __trap();
    if (VEC && d.C % 8 != 0) __trap();  // uniform: a vector kernel given an unaligned shape
    if (BN_INPUT && d.C > kTcBnTableChannels) __trap();  // uniform: more channels than the table holds
    using AChunks = TcChunks<Tile::BM, Tile::BK, Tile::THREADS>;
    using BChunks = TcChunks<Tile::BN, Tile::BK, Tile::THREADS>;
    const int H = d.H, W = d.W, C = d.C, K = d.K, S = d.S;
    const int M = d.N * d.P * d.Q, RSC = d.R * S * C;
    const int m0 = blockIdx.x * Tile::BM, n0 = blockIdx.y * Tile::BN;
    const int tid = threadIdx.x;

    // This thread's A rows (output pixels): the input corner of tap (0, 0) and, relative to x, the
    // element offset of that corner's channel 0 (outside the image for padded rows: it is only ever
    // dereferenced with the tap's offset added, and only for taps inside the image).
    long long a_corner[AChunks::PER_THREAD];
    int a_h0[AChunks::PER_THREAD], a_w0[AChunks::PER_THREAD];
#pragma unroll
    for (int j = 0; j < AChunks::PER_THREAD; ++j) {
        const int m = m0 + AChunks::row(tid, j);
        a_corner[j] = 0;
        a_h0[j] = kConvInvalid;
        a_w0[j] = kConvInvalid;
        if (AChunks::owns(tid, j) && m < M) {
            const int q = m % d.Q, np = m / d.Q;
            const int p = np % d.P, n = np / d.P;
            a_h0[j] = p * d.stride - d.pad;
            a_w0[j] = q * d.stride - d.pad;
            a_corner[j] = (static_cast<long long>(n) * H * W + static_cast<long long>(a_h0[j]) * W + a_w0[j]) * C;
        }
    }
    const int a_col = AChunks::column(tid), b_col = BChunks::column(tid);

    // This thread's A chunk's (r, s, c) and its offset (r W + s) C + c from the corner, slice by slice.
    const TcTapShape taps{S, C, 1, C, W * C};
    TcTapWalk tap;
    if constexpr (VEC) tap.start(8 * a_col, taps);
    TcLandedChunks<AChunks::PER_THREAD, Tile::STAGES> a_landed;  // (BN_INPUT) which chunks were copies
    auto load_a = [&](bf16* tile, int k0) {
        if constexpr (VEC) {
            // The 8 channels of this chunk share one tap (C % 8 == 0).
            const int kr = k0 + 8 * a_col;
            tap.advance(k0 == 0 ? 0 : Tile::BK, taps);  // the slices come in order
            const int r = tap.outer, s = tap.middle;
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                // 0 <= h < H and 0 <= w < W, each as one unsigned compare.
                const bool ok = kr < RSC && static_cast<unsigned>(a_h0[j] + r) < static_cast<unsigned>(H) &&
                                static_cast<unsigned>(a_w0[j] + s) < static_cast<unsigned>(W);
                const bf16* src = ok ? x + (a_corner[j] + tap.offset) : x;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), src, ok);
                if constexpr (BN_INPUT) a_landed.record(k0 / Tile::BK, j, ok);
            }
        } else {
            int r[8], s[8], c[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const int kr = k0 + 8 * a_col + e;
                const int rs = kr / C;
                c[e] = kr - rs * C;
                r[e] = kr < RSC ? rs / S : kConvInvalid;  // invalid taps fail the bounds test below
                s[e] = rs - (rs / S) * S;
            }
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int h = a_h0[j] + r[e], ww = a_w0[j] + s[e];
                    const bool ok = h >= 0 && h < H && ww >= 0 && ww < W;
                    bits[e] = ok ? tc_bits(x + a_corner[j] + (static_cast<long long>(r[e]) * W + s[e]) * C + c[e]) : 0;
                }
                tc_store_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), bits);
            }
        }
    };

    // B rows are output channels k; each row's reduction run w[k][0..RSC) is contiguous, so a chunk's
    // source moves by the slice depth from one slice to the next.
    const bf16* b_row[BChunks::PER_THREAD];
    bool b_row_ok[BChunks::PER_THREAD];
#pragma unroll
    for (int j = 0; j < BChunks::PER_THREAD; ++j) {
        const int k = n0 + BChunks::row(tid, j);
        b_row_ok[j] = BChunks::owns(tid, j) && k < K;
        b_row[j] = w + (b_row_ok[j] ? static_cast<long long>(k) * RSC + 8 * b_col : 0);
    }
    auto load_b = [&](bf16* tile, int k0) {
        const int kr = k0 + 8 * b_col;
#pragma unroll
        for (int j = 0; j < BChunks::PER_THREAD; ++j) {
            if (!BChunks::owns(tid, j)) continue;
            const int row = BChunks::row(tid, j);
            const bf16* base = b_row[j] + k0;
            if constexpr (VEC) {
                const bool ok = b_row_ok[j] && kr < RSC;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BK>(row, b_col), ok ? base : w, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) bits[e] = (b_row_ok[j] && kr + e < RSC) ? tc_bits(base + e) : 0;
                tc_store_chunk(tile + tc_chunk_offset<Tile::BK>(row, b_col), bits);
            }
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    const int slices = (RSC + Tile::BK - 1) / Tile::BK;
    // The main loop with the policy's loaders: for the TMA policies (conv_wgmma.cuh) rows n0.. of w's
    // [K][RSC] view and, for a pointwise shape, rows m0.. of x's [N*H*W][C] view (the output pixels
    // are the input's), reduction k0..: zeros past the rows and past the reduction, as load_b's and
    // load_a's. (The boxes' loaders exist only in the branches that use them: other policies have
    // no load_box.)
    auto run_main_loop = [&](bf16* stages, auto&& landed, auto&& issued) {
        if constexpr (MainLoop::B_BY_TMA) {
            auto load_b_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
                MainLoop::load_box(tile, w_map, k0, n0, bar);
            };
            if constexpr (MainLoop::IM2COL) {
                // The block's first output pixel (n, p, q) and its window corner, once; a slice's
                // tap and first channel by multiplications (fast_divmod.cuh), in thread 0 alone.
                const int q0 = m0 % d.Q, p0 = m0 / d.Q % d.P, n_first = m0 / (d.P * d.Q);
                const int corner_h = p0 * d.stride - d.pad, corner_w = q0 * d.stride - d.pad;
                const FastDivmod by_c(C), by_s(S);
                auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
                    int tap, c0, r, s;
                    by_c.divmod(k0, tap, c0);
                    by_s.divmod(tap, r, s);
                    MainLoop::load_pixels(tile, x_map, c0, corner_w, corner_h, n_first, s, r, bar);
                };
                MainLoop::template run<Tile, false, false>(acc, stages, slices, load_a_box, load_b_box, landed,
                                                           issued);
            } else if constexpr (MainLoop::A_BY_TMA) {
                auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
                    MainLoop::load_box(tile, x_map, k0, m0, bar);
                };
                MainLoop::template run<Tile, false, false>(acc, stages, slices, load_a_box, load_b_box, landed,
                                                           issued);
            } else {
                MainLoop::template run<Tile, false, false>(acc, stages, slices, load_a, load_b_box, landed, issued);
            }
        } else {
            MainLoop::template run<Tile, false, false>(acc, stages, slices, load_a, load_b, landed, issued);
        }
    };
    if constexpr (BN_INPUT) {
        float* const table = dynamic_shared_memory<float>();
        auto fill_table = [&] { tc_fill_bn_coefficients<Tile::THREADS>(bn, C, table); };
        bf16* const stages = dynamic_shared_memory<bf16>() + kTcBnTableBytes / 2;
        // x -> relu(BN(x)) on this thread's copied chunks of the slice; its 8 channels are those of
        // the chunk column's reduction index, the same for all of the thread's chunks. A chunk that
        // was zero-filled (padding, rows past M) stays zero: the cp.async loader records which were
        // copies; a TMA box (pointwise: no padding) holds x in every row below M; an im2col copy
        // holds x where the row's pixel at the slice's tap (r, s) lies inside the image, the test
        // the cp.async loader makes (rows past M have no pixel and fail it).
        TcTapWalk landed_tap;
        landed_tap.start(8 * a_col, taps);
        auto landed = [&](bf16* a_tile, bf16*, int slice) {
            landed_tap.advance(slice == 0 ? 0 : Tile::BK, taps);  // the slices come in order
            const int kr = slice * Tile::BK + 8 * a_col;
            if (kr >= RSC) return;  // zero-filled past the reduction
            float scale[8], shift[8];
            tc_bn_relu_coefficients(table, C, landed_tap.channel, scale, shift);
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                bool real;
                if constexpr (MainLoop::IM2COL) {
                    real = static_cast<unsigned>(a_h0[j] + landed_tap.outer) < static_cast<unsigned>(H) &&
                           static_cast<unsigned>(a_w0[j] + landed_tap.middle) < static_cast<unsigned>(W);
                } else if constexpr (MainLoop::A_BY_TMA) {
                    real = m0 + AChunks::row(tid, j) < M;
                } else {
                    real = a_landed.real(slice, j);
                }
                if (AChunks::owns(tid, j) && real)
                    tc_bn_relu_chunk(a_tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), scale, shift);
            }
        };
        run_main_loop(stages, landed, fill_table);
    } else {
        run_main_loop(dynamic_shared_memory<bf16>(), TcNothingLanded{}, TcNothingIssued{});
    }
    if (tc_producer_thread<Tile, MainLoop>()) return;  // its copies are issued: nothing more to do

    if constexpr (STATS) tc_round_to_bf16<Tile>(acc);  // the statistics are of the stored values
    if (tc_staged_store_ok(K, y)) {
        // 16-byte stores through shared memory (conv_tc_epilogue.cuh); row m of C is y[m][0..K).
        tc_store_tile_bf16<Tile>(acc, dynamic_shared_memory<bf16>(), m0, n0, M, K,
                                 [&](int m) { return y + static_cast<long long>(m) * K; });
    } else {
        const bool paired = K % 2 == 0;
        tc_for_each_pair<Tile>(acc, m0, n0, [&](int m, int k, float v0, float v1) {
            if (m < M && k < K) tc_store_bf16_pair(y + static_cast<long long>(m) * K + k, v0, v1, k + 1 < K, paired);
        });
    }
    // (Its first barrier also ends the staged store's shared-memory reads before the tile is reused.)
    if constexpr (STATS) tc_channel_statistics<Tile>(acc, m0, n0, M, K, dynamic_shared_memory<float>(), stats);
}

#endif
