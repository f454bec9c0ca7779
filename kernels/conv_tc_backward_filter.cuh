// conv_tc_backward_filter.cuh: the body of the tensor-core convolution backward-filter partials (math,
// layouts, GEMM view and split in conv_tc_backward_filter.cu's header), shared by the sm_80 kernels
// there and the Hopper (wgmma) kernels of conv_wgmma_backward_sm90a.cu; `MainLoop` is the main-loop
// policy (TcMmaSyncLoop, conv_tc.cuh, or TcWgmmaLoop, conv_wgmma.cuh), which also arranges the KM
// and KN tiles. With TcWgmmaTmaPointwiseLoop (MainLoop::A_BY_TMA; a 1x1 convolution of stride 1
// without padding, traps otherwise) both operands come by TMA, each a row-major matrix whose rows are
// the reduction's pixels: dy as [N*P*Q][K] from `dy_map` and x as [N*H*W][C] (the same pixels) from
// `x_map`, each in boxes of BK rows by 64 columns, one box a 64-wide panel of the KM or KN tile (the
// 128-byte swizzle kn_offset writes). A split starts at a multiple of BK and its last box ends at or
// before the next split's start, or past N*P*Q where TMA fills zeros: no box reads another split's
// rows. The loaders below are then not used. With TcWgmmaTmaIm2colLoop (MainLoop::IM2COL; C % 64 ==
// 0, traps otherwise) dy comes the same way and x through an im2col map (`x_map`, the convolution's
// geometry, boxes of BK pixels by 64 channels: one box a 64-wide panel of the KN tile, whose columns
// n0 + 64 p.. then lie in one tap (r, s)): a slice's panel is the copy of the BK pixels from the
// slice's first j at that tap. Columns past R*S*C read tap 0 again; they reach only accumulator
// columns that no epilogue stores.
#ifndef RESNET_CUDA_CONV_TC_BACKWARD_FILTER_CUH
#define RESNET_CUDA_CONV_TC_BACKWARD_FILTER_CUH

#include "conv_tc.cuh"

// BN_INPUT: x is a batch norm's input and the convolution's input is that BN's output with its ReLU,
// computed as B is staged (conv_tc_bn_input.cuh; `bn` its statistics and parameters).
template <class Tile, bool VEC, class MainLoop = TcMmaSyncLoop, bool BN_INPUT = false>
__device__ __forceinline__ void conv_tc_backward_filter(const bf16* __restrict__ x, const bf16* __restrict__ dy,
                                                        float* __restrict__ out, const ConvDims& d,
                                                        const BnAffineParams& bn = {},
                                                        const void* x_map = nullptr, const void* dy_map = nullptr) {
    static_assert(VEC || !BN_INPUT, "the input map rewrites whole 16-byte chunks of one tap");
    static_assert(MainLoop::A_BY_TMA == MainLoop::B_BY_TMA, "backward-filter by TMA: both operands (pointwise)");
    static_assert(!MainLoop::A_BY_TMA || (VEC && Tile::BM % 64 == 0 && Tile::BN % 64 == 0),
                  "TMA: vector shapes, whole panels");
    // uniform: a pointwise kernel given a shape whose operands are not dy and x themselves
    if (MainLoop::A_BY_TMA && !MainLoop::IM2COL && (d.R != 1 || d.S != 1 || d.stride != 1 || d.pad != 0)) __trap();
    // uniform: an im2col kernel given a shape whose 64-wide panels would straddle two taps
    if (MainLoop::IM2COL && d.C % 64 != 0) __trap();
    if (VEC && (d.C % 8 != 0 || d.K % 8 != 0)) __trap();  // uniform: a vector kernel given an unaligned shape
    if (static_cast<long long>(d.H) * d.W * d.C > 0x7fffffff) __trap();  // uniform: 32-bit offsets within an image
    using AChunks = TcChunks<Tile::BK, Tile::BM, Tile::THREADS>;
    using BChunks = TcChunks<Tile::BK, Tile::BN, Tile::THREADS>;
    const int H = d.H, W = d.W, C = d.C, K = d.K, S = d.S, P = d.P, Q = d.Q;
    const int RSC = d.R * S * C, NPQ = d.N * P * Q;
    const int m0 = blockIdx.x * Tile::BM, n0 = blockIdx.y * Tile::BN;
    const int tid = threadIdx.x;

    // This block's share of the reduction.
    const int splits = gridDim.z;
    const int per_split = ((NPQ + splits - 1) / splits + Tile::BK - 1) / Tile::BK * Tile::BK;
    const int j_begin = min(NPQ, static_cast<int>(blockIdx.z) * per_split);
    const int j_end = min(NPQ, j_begin + per_split);

    // A: this thread's 8 output channels, fixed; rows are reduction indices (pixels), whose runs of
    // output channels lie K apart: a chunk's source moves by BK K from one slice to the next.
    const int a_col = AChunks::column(tid), k_base = m0 + 8 * a_col;
    const bf16* const a_origin = dy + (static_cast<long long>(j_begin) * K + k_base);
    auto load_a = [&](bf16* tile, int k0) {
#pragma unroll
        for (int jj = 0; jj < AChunks::PER_THREAD; ++jj) {
            if (!AChunks::owns(tid, jj)) continue;
            const int row = AChunks::row(tid, jj), j = j_begin + k0 + row;
            const bf16* base = a_origin + static_cast<long long>(k0 + row) * K;
            if constexpr (VEC) {
                const bool ok = j < j_end && k_base < K;
                tc_copy_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BM>(row, a_col), ok ? base : dy, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) bits[e] = (j < j_end && k_base + e < K) ? tc_bits(base + e) : 0;
                tc_store_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BM>(row, a_col), bits);
            }
        }
    };

    // B: this thread's 8 columns (taps and input channels), decoded once; rows are reduction indices.
    const int b_col = BChunks::column(tid), rsc_base = n0 + 8 * b_col;
    constexpr int COLS = VEC ? 1 : 8;  // the vector path's 8 columns share one tap (C % 8 == 0)
    int col_r[COLS], col_s[COLS], col_c[COLS];
#pragma unroll
    for (int e = 0; e < COLS; ++e) {
        const int rsc = rsc_base + e;
        const int rs = rsc / C;
        col_c[e] = rsc - rs * C;
        col_r[e] = rsc < RSC ? rs / S : kConvInvalid;  // an invalid column fails every bounds test
        col_s[e] = rs - (rs / S) * S;
    }
    // A row's pixel j = (n P + p) Q + q, split by multiplication (fast_divmod.cuh): this is in every
    // slice of the main loop, for each of the thread's rows.
    const FastDivmod by_q(Q), by_p(P);
    // (VEC) The thread's one tap, as an offset from a row's window corner (p stride, q stride).
    const int tap_h = col_r[0] - d.pad, tap_w = col_s[0] - d.pad;
    const long long image_elems = static_cast<long long>(H) * W * C;
    TcLandedChunks<BChunks::PER_THREAD, Tile::STAGES> b_landed;  // (BN_INPUT) which chunks were copies
    auto load_b = [&](bf16* tile, int k0) {
#pragma unroll
        for (int jj = 0; jj < BChunks::PER_THREAD; ++jj) {
            if (!BChunks::owns(tid, jj)) continue;
            const int row = BChunks::row(tid, jj), j = j_begin + k0 + row;
            if constexpr (VEC) {
                int np, q, n, p;  // past j_end too (j < 2^31): the chunk is then zero-filled
                by_q.divmod(j, np, q);
                by_p.divmod(np, n, p);
                const int h = p * d.stride + tap_h, ww = q * d.stride + tap_w;
                // 0 <= h < H and 0 <= w < W, each as one unsigned compare; the offset within the
                // image in 32 bits (an image holds fewer than 2^31 elements: checked above).
                const bool ok = j < j_end && static_cast<unsigned>(h) < static_cast<unsigned>(H) &&
                                static_cast<unsigned>(ww) < static_cast<unsigned>(W);
                const bf16* src = ok ? x + (n * image_elems + ((h * W + ww) * C + col_c[0])) : x;
                tc_copy_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BN>(row, b_col), src, ok);
                if constexpr (BN_INPUT) b_landed.record(k0 / Tile::BK, jj, ok);
            } else {
                int h0 = kConvInvalid, w0 = kConvInvalid;
                long long image = 0;
                if (j < j_end) {
                    int np, q, n, p;
                    by_q.divmod(j, np, q);
                    by_p.divmod(np, n, p);
                    image = n * image_elems;
                    h0 = p * d.stride - d.pad;
                    w0 = q * d.stride - d.pad;
                }
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int h = h0 + col_r[e], ww = w0 + col_s[e];
                    const bool ok = h >= 0 && h < H && ww >= 0 && ww < W;
                    bits[e] = ok ? tc_bits(x + image + (static_cast<long long>(h) * W + ww) * C + col_c[e]) : 0;
                }
                tc_store_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BN>(row, b_col), bits);
            }
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    const int slices = (j_end - j_begin + Tile::BK - 1) / Tile::BK;
    // The main loop with the loaders: the threads' cp.async chunks, or thread 0's boxes by TMA (for
    // each 64-wide panel p, the rows j_begin + k0.. of dy's columns m0 + 64 p.. and x's n0 + 64 p..,
    // at p BK 64 elements: kn_offset's panels; zeros past N*P*Q, K and C). (The box loaders exist
    // only in the branch that uses them: other policies have no load_box.)
    auto run_main_loop = [&](auto&& landed) {
        if constexpr (MainLoop::IM2COL) {
            auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
#pragma unroll
                for (int p = 0; p < Tile::BM / 64; ++p)
                    MainLoop::load_box(tile + p * Tile::BK * 64, dy_map, m0 + 64 * p, j_begin + k0, bar);
            };
            const FastDivmod by_c(C), by_s(S);
            const int taps = d.R * S;
            auto load_b_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
                // The slice's first pixel j = (n P + p) Q + q and its window corner.
                int np, q, n, p;
                by_q.divmod(j_begin + k0, np, q);
                by_p.divmod(np, n, p);
                const int corner_h = p * d.stride - d.pad, corner_w = q * d.stride - d.pad;
#pragma unroll
                for (int panel = 0; panel < Tile::BN / 64; ++panel) {
                    int tap, c0, r, s;
                    by_c.divmod(n0 + 64 * panel, tap, c0);
                    by_s.divmod(tap < taps ? tap : 0, r, s);
                    MainLoop::load_pixels(tile + panel * Tile::BK * 64, x_map, c0, corner_w, corner_h, n, s, r, bar);
                }
            };
            MainLoop::template run<Tile, true, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a_box,
                                                     load_b_box, landed);
        } else if constexpr (MainLoop::A_BY_TMA) {
            auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
#pragma unroll
                for (int p = 0; p < Tile::BM / 64; ++p)
                    MainLoop::load_box(tile + p * Tile::BK * 64, dy_map, m0 + 64 * p, j_begin + k0, bar);
            };
            auto load_b_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
#pragma unroll
                for (int p = 0; p < Tile::BN / 64; ++p)
                    MainLoop::load_box(tile + p * Tile::BK * 64, x_map, n0 + 64 * p, j_begin + k0, bar);
            };
            MainLoop::template run<Tile, true, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a_box,
                                                     load_b_box, landed);
        } else {
            MainLoop::template run<Tile, true, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a, load_b,
                                                     landed);
        }
    };
    if constexpr (BN_INPUT) {
        // x -> relu(BN(x)) on this thread's chunks of each slice that hold x: its 8 columns, and so
        // their channels, are fixed for the block (no copy is made for columns past R*S*C). The
        // cp.async loader records which chunks were copies (padding and rows past the split stay
        // zero). A TMA box (pointwise: no padding) holds x in every row below j_end, and is mapped
        // whole: its rows past j_end lie past N*P*Q, where dy's box holds zeros too, so their
        // relu(shift) (finite) adds nothing; its columns past C get scale = shift = 0.
        float scale[8] = {}, shift[8] = {};
        if (rsc_base < RSC) tc_bn_relu_coefficients(bn, col_c[0], scale, shift);
        auto landed = [&](bf16*, bf16* b_tile, int slice) {
#pragma unroll
            for (int jj = 0; jj < BChunks::PER_THREAD; ++jj) {
                bool real;
                if constexpr (MainLoop::IM2COL) {
                    // The chunk's pixel at the thread's tap inside the image (padding stays zero;
                    // rows past j_end lie past N*P*Q, where dy's panels hold zeros).
                    int np, q, n, p;
                    by_q.divmod(j_begin + slice * Tile::BK + BChunks::row(tid, jj), np, q);
                    by_p.divmod(np, n, p);
                    real = rsc_base < RSC &&
                           static_cast<unsigned>(p * d.stride + tap_h) < static_cast<unsigned>(H) &&
                           static_cast<unsigned>(q * d.stride + tap_w) < static_cast<unsigned>(W);
                } else {
                    real = MainLoop::A_BY_TMA || b_landed.real(slice, jj);
                }
                if (BChunks::owns(tid, jj) && real)
                    tc_bn_relu_chunk(b_tile + MainLoop::template kn_offset<Tile, Tile::BN>(BChunks::row(tid, jj), b_col),
                                     scale, shift);
            }
        };
        run_main_loop(landed);
    } else {
        run_main_loop(TcNothingLanded{});
    }
    if (tc_producer_thread<Tile, MainLoop>()) return;  // its copies are issued: nothing more to do

    float* const partial = out + static_cast<long long>(blockIdx.z) * K * RSC;
    const bool paired = RSC % 2 == 0;
    tc_for_each_pair<Tile>(acc, m0, n0, [&](int k, int rsc, float v0, float v1) {
        if (k >= K || rsc >= RSC) return;
        float* at = partial + static_cast<long long>(k) * RSC + rsc;
        if (rsc + 1 < RSC && paired) {
            *reinterpret_cast<float2*>(at) = make_float2(v0, v1);
        } else {
            at[0] = v0;
            if (rsc + 1 < RSC) at[1] = v1;
        }
    });
}

#endif
