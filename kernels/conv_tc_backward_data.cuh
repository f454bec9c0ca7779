// conv_tc_backward_data.cuh: the body of the tensor-core convolution backward-data (math, layouts and
// GEMM view in conv_tc_backward_data.cu's header), shared by the sm_80 kernels there and the Hopper
// (wgmma) kernels of conv_wgmma_backward_sm90a.cu; `MainLoop` is the main-loop policy (TcMmaSyncLoop,
// conv_tc.cuh, or TcWgmmaLoop, conv_wgmma.cuh), which also arranges the KN tile of w. With BN_GRAD,
// the epilogue stores dx masked by that BN's ReLU and writes the BN's backward partials
// (conv_tc_bn_grad.cuh); that needs the staged store (C % 8 == 0, 16-byte aligned); the addend, if
// any, is then `addend` when not null (ADD stays false).
#ifndef RESNET_CUDA_CONV_TC_BACKWARD_DATA_CUH
#define RESNET_CUDA_CONV_TC_BACKWARD_DATA_CUH

#include "conv_tc_bn_grad.cuh"
#include "conv_tc_epilogue.cuh"

// With TcWgmmaTmaPointwiseLoop (MainLoop::A_BY_TMA; a 1x1 convolution without padding, of any
// stride, traps otherwise) both operands come by TMA: dy as an [N*P*Q][K] matrix from `dy_map` (box
// BK x BM, the MK tile: the GEMM rows of stride phase (0, 0) are dy's pixels in order, P = Hc and
// Q = Wc; the other phases have no tap, no slice, and store zeros or the addend), and w as a [K][C] matrix from `w_map` in boxes of 64 x BK, one a 64-wide panel of the
// KN tile (the 128-byte swizzle kn_offset writes); the loaders below are then not used. With
// TcWgmmaTmaIm2colLoop (MainLoop::IM2COL; stride 1, K % BK == 0 and pad <= R - 1, S - 1, traps
// otherwise) the transposed convolution is a forward one over dy with the taps flipped and padding
// R - 1 - pad: `dy_map` is an im2col map over dy for that geometry (BM pixels by BK output channels)
// and a slice at tap (a, b) (this kernel's order: r = a, s = b, the same reduction order as the
// loaders, so the same sums) reads it at filter offsets (R - 1 - a, S - 1 - b), dy's pixel
// (h + pad - a, w + pad - b); w's panels are the tap's columns (a S + b) C + n0 + 64 p.. of w as
// [K][R*S*C] (columns past C read the next tap's weights: they only reach accumulator columns past
// C, which no epilogue stores or sums).
template <class Tile, bool VEC, bool ADD, class MainLoop = TcMmaSyncLoop, bool BN_GRAD = false>
__device__ __forceinline__ void conv_tc_backward_data(const bf16* __restrict__ dy, const bf16* __restrict__ w,
                                                      bf16* __restrict__ dx, const bf16* __restrict__ addend,
                                                      const ConvDims& d, const TcBnGrad& bn = TcBnGrad{},
                                                      const void* w_map = nullptr, const void* dy_map = nullptr) {
    static_assert(!BN_GRAD || (VEC && !ADD), "the BN partials take the vector kernel's staged store");
    static_assert(MainLoop::A_BY_TMA == MainLoop::B_BY_TMA, "backward-data by TMA: both operands");
    static_assert(!MainLoop::A_BY_TMA || (VEC && Tile::BN % 64 == 0), "TMA: vector shapes, whole panels");
    if (VEC && (d.C % 8 != 0 || d.K % 8 != 0)) __trap();  // uniform: a vector kernel given an unaligned shape
    // uniform: a pointwise kernel given a shape whose GEMM is not dy [M][K] times w [K][C]
    if (MainLoop::A_BY_TMA && !MainLoop::IM2COL && (d.R != 1 || d.S != 1 || d.pad != 0)) __trap();
    // uniform: an im2col kernel given a shape that is not one stride-1 class of whole-tap slices
    if (MainLoop::IM2COL && (d.stride != 1 || d.K % Tile::BK != 0 || d.pad > d.R - 1 || d.pad > d.S - 1)) __trap();
    // Uniform: the partials read the staged tile, and x (and y) by 16-byte loads.
    if (BN_GRAD && (!tc_staged_store_ok(d.C, dx, addend) || !tc_staged_store_ok(d.C, bn.x, bn.y))) __trap();
    using AChunks = TcChunks<Tile::BM, Tile::BK, Tile::THREADS>;
    using BChunks = TcChunks<Tile::BK, Tile::BN, Tile::THREADS>;
    const int H = d.H, W = d.W, P = d.P, Q = d.Q, C = d.C, K = d.K, S = d.S, stride = d.stride, pad = d.pad;
    const int RSC = d.R * S * C;

    const int ph = static_cast<int>(blockIdx.z) / stride, pw = static_cast<int>(blockIdx.z) % stride;
    const int Hc = ph < H ? (H - ph + stride - 1) / stride : 0;
    const int Wc = pw < W ? (W - pw + stride - 1) / stride : 0;
    const int rh0 = (ph + pad) % stride, rw0 = (pw + pad) % stride;
    const int nr = rh0 < d.R ? (d.R - rh0 + stride - 1) / stride : 0;
    const int ns = rw0 < S ? (S - rw0 + stride - 1) / stride : 0;
    const int base_p = (ph + pad - rh0) / stride, base_q = (pw + pad - rw0) / stride;
    const int M = d.N * Hc * Wc, RED = nr * ns * K;

    const int m0 = blockIdx.x * Tile::BM, n0 = blockIdx.y * Tile::BN;
    if (m0 >= M) {  // uniform over the block: a smaller class than the grid is sized for
        if constexpr (BN_GRAD) tc_bn_grad_zero_partials<Tile>(bn, n0, C);
        return;
    }
    const int tid = threadIdx.x;

    // This thread's A rows (class pixels): the output read by tap (0, 0) and, relative to dy, the
    // element offset of its channel 0 (outside the image for some rows: it is only ever dereferenced
    // with a tap's offset added, and only for taps inside the image).
    long long a_corner[AChunks::PER_THREAD];
    int a_p0[AChunks::PER_THREAD], a_q0[AChunks::PER_THREAD];
#pragma unroll
    for (int j = 0; j < AChunks::PER_THREAD; ++j) {
        const int m = m0 + AChunks::row(tid, j);
        a_corner[j] = 0;
        a_p0[j] = kConvInvalid;
        a_q0[j] = kConvInvalid;
        if (AChunks::owns(tid, j) && m < M) {
            const int jw = m % Wc, ni = m / Wc;
            const int ih = ni % Hc, n = ni / Hc;
            a_p0[j] = base_p + ih;
            a_q0[j] = base_q + jw;
            a_corner[j] = (static_cast<long long>(n) * P * Q + static_cast<long long>(a_p0[j]) * Q + a_q0[j]) * K;
        }
    }
    const int a_col = AChunks::column(tid), b_col = BChunks::column(tid);

    // Splits a reduction index into this class's tap (a, b) and output channel k (kr < RED, so ns > 0).
    auto split = [&](int kr, int& a, int& b, int& k) {
        const int ab = kr / K;
        k = kr - ab * K;
        a = ab / ns;
        b = ab - a * ns;
    };

    // This thread's A chunk's tap (a, b) and channel k, and its offset -(a Q + b) K + k from the
    // corner, slice by slice (an empty class, RED = 0, loads nothing).
    const TcTapShape a_taps{ns, K, 1, -K, -Q * K};
    TcTapWalk tap;
    if (VEC && RED > 0) tap.start(8 * a_col, a_taps);
    auto load_a = [&](bf16* tile, int k0) {
        if constexpr (VEC) {
            // The 8 output channels of this chunk share one tap (K % 8 == 0).
            const int kr = k0 + 8 * a_col;
            tap.advance(k0 == 0 ? 0 : Tile::BK, a_taps);  // the slices come in order
            const int a = tap.outer, b = tap.middle;
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                // 0 <= p < P and 0 <= q < Q, each as one unsigned compare.
                const bool ok = kr < RED && static_cast<unsigned>(a_p0[j] - a) < static_cast<unsigned>(P) &&
                                static_cast<unsigned>(a_q0[j] - b) < static_cast<unsigned>(Q);
                const bf16* src = ok ? dy + (a_corner[j] + tap.offset) : dy;
                tc_copy_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), src, ok);
            }
        } else {
            int ta[8], tb[8], tk[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const int kr = k0 + 8 * a_col + e;
                ta[e] = -kConvInvalid;  // past the reduction: p = p0 - a is then negative, so no load
                tb[e] = 0;
                tk[e] = 0;
                if (kr < RED) split(kr, ta[e], tb[e], tk[e]);
            }
#pragma unroll
            for (int j = 0; j < AChunks::PER_THREAD; ++j) {
                if (!AChunks::owns(tid, j)) continue;
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int p = a_p0[j] - ta[e], q = a_q0[j] - tb[e];
                    const bool ok = p >= 0 && p < P && q >= 0 && q < Q;
                    bits[e] = ok ? tc_bits(dy + a_corner[j] - (static_cast<long long>(ta[e]) * Q + tb[e]) * K + tk[e])
                                 : 0;
                }
                tc_store_chunk(tile + tc_chunk_offset<Tile::BK>(AChunks::row(tid, j), a_col), bits);
            }
        }
    };

    // B rows are reduction indices (tap, k); each row's input channels w[k, r, s, 0..C) are contiguous.
    // Row kr = (a ns + b) K + k reads w at k RSC + (r S + s) C + c_base with r = rh0 + stride a and
    // s = rw0 + stride b: each of this thread's rows walks that offset slice by slice.
    const int c_base = n0 + 8 * b_col;
    const int b_origin = (rh0 * S + rw0) * C + c_base;
    const TcTapShape b_taps{ns, K, RSC, stride * C, stride * S * C};
    TcTapWalk b_walk[BChunks::PER_THREAD];
    if (RED > 0) {
#pragma unroll
        for (int j = 0; j < BChunks::PER_THREAD; ++j) b_walk[j].start(BChunks::row(tid, j), b_taps);
    }
    auto load_b = [&](bf16* tile, int k0) {
#pragma unroll
        for (int j = 0; j < BChunks::PER_THREAD; ++j) {
            if (!BChunks::owns(tid, j)) continue;
            const int row = BChunks::row(tid, j), kr = k0 + row;
            b_walk[j].advance(k0 == 0 ? 0 : Tile::BK, b_taps);  // the slices come in order
            const bf16* base = w + (static_cast<long long>(b_origin) + b_walk[j].offset);
            if constexpr (VEC) {
                const bool ok = kr < RED && c_base < C;
                tc_copy_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BN>(row, b_col), ok ? base : w, ok);
            } else {
                std::uint16_t bits[8];
#pragma unroll
                for (int e = 0; e < 8; ++e) bits[e] = (kr < RED && c_base + e < C) ? tc_bits(base + e) : 0;
                tc_store_chunk(tile + MainLoop::template kn_offset<Tile, Tile::BN>(row, b_col), bits);
            }
        }
    };

    float acc[Tile::MI][Tile::NI][4];
    const int slices = (RED + Tile::BK - 1) / Tile::BK;
    if constexpr (MainLoop::IM2COL) {
        // The block's first pixel (n, h, w) and its window corner in dy, once; a slice's tap and
        // first output channel by multiplications (fast_divmod.cuh), in thread 0 alone.
        const int w_first = m0 % W, h_first = m0 / W % H, n_first = m0 / (H * W);
        const int flipped_pad_h = d.R - 1 - pad, flipped_pad_w = S - 1 - pad;
        const FastDivmod by_k(K), by_s(S);
        auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
            int tap, k, a, b;
            by_k.divmod(k0, tap, k);
            by_s.divmod(tap, a, b);
            MainLoop::load_pixels(tile, dy_map, k, w_first - flipped_pad_w, h_first - flipped_pad_h, n_first,
                                  S - 1 - b, d.R - 1 - a, bar);
        };
        auto load_b_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
            int tap, k;
            by_k.divmod(k0, tap, k);
#pragma unroll
            for (int p = 0; p < Tile::BN / 64; ++p)
                MainLoop::load_box(tile + p * Tile::BK * 64, w_map, tap * C + n0 + 64 * p, k, bar);
        };
        MainLoop::template run<Tile, false, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a_box, load_b_box);
    } else if constexpr (MainLoop::A_BY_TMA) {
        // Rows m0.. of dy (phase (0, 0)'s rows are its pixels in order), channels k0..; and for each
        // 64-wide panel p of the KN tile, w's rows k0.. (reduction) by columns n0 + 64 p.. (input
        // channels), at p BK 64 elements (kn_offset's panels). Zeros past M, K and C.
        auto load_a_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
            MainLoop::load_box(tile, dy_map, k0, m0, bar);
        };
        auto load_b_box = [&](bf16* tile, int k0, std::uint64_t* bar) {
#pragma unroll
            for (int p = 0; p < Tile::BN / 64; ++p) MainLoop::load_box(tile + p * Tile::BK * 64, w_map, n0 + 64 * p, k0, bar);
        };
        MainLoop::template run<Tile, false, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a_box, load_b_box);
    } else {
        MainLoop::template run<Tile, false, true>(acc, dynamic_shared_memory<bf16>(), slices, load_a, load_b);
    }
    if (tc_producer_thread<Tile, MainLoop>()) return;  // its copies are issued: nothing more to do

    // Row m of this class's GEMM is the pixel (n, ph + stride ih, pw + stride jw): the offset of its
    // dx (and addend) channel 0.
    const auto pixel = [&](int m) {
        const int jw = m % Wc, ni = m / Wc;
        const int ih = ni % Hc, n = ni / Hc;
        return ((static_cast<long long>(n) * H + ph + stride * ih) * W + pw + stride * jw) * C;
    };
    if (tc_staged_store_ok(C, dx, addend)) {
        // 16-byte stores through shared memory (conv_tc_epilogue.cuh), the addend read the same way.
        bf16* const smem = dynamic_shared_memory<bf16>();
        const auto dx_row = [&](int m) { return dx + pixel(m); };
        if constexpr (BN_GRAD) {
            if (addend != nullptr) {  // uniform
                tc_stage_tile_bf16<Tile>(acc, smem, m0, n0, M, C, [&](int m) { return addend + pixel(m); });
            } else {
                tc_stage_tile_bf16<Tile>(acc, smem, m0, n0, M, C);
            }
            tc_bn_grad_store<Tile>(bn, smem, dx, m0, n0, M, C, pixel);
        } else if constexpr (ADD) {
            tc_store_tile_bf16<Tile>(acc, smem, m0, n0, M, C, dx_row, [&](int m) { return addend + pixel(m); });
        } else {
            tc_store_tile_bf16<Tile>(acc, smem, m0, n0, M, C, dx_row);
        }
        return;
    }
    const bool paired = C % 2 == 0;
    tc_for_each_pair<Tile>(acc, m0, n0, [&](int m, int c, float v0, float v1) {
        if (m >= M || c >= C) return;
        const long long at = pixel(m) + c;
        const bool second = c + 1 < C;
        if constexpr (ADD) {
            v0 += bf16_to_float(addend[at]);
            if (second) v1 += bf16_to_float(addend[at + 1]);
        }
        tc_store_bf16_pair(dx + at, v0, v1, second, paired);
    });
}

#endif
