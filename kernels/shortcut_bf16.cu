// shortcut_bf16.cu: the option-A residual shortcut on bf16 NHWC activations and its transpose; the
// math is shortcut.cu's (see its header) and both are pure data movement, so outputs are bit copies
// of inputs or +0:
//   forward:  y[n,p,q,c] = x[n, p*stride, q*stride, c] for c < Cin, 0 for Cin <= c < Cout
//   backward: dx[n,h,w,c] = dy[n, h/stride, w/stride, c] when stride divides h and w, else 0
// Launch: pixels_bf16.cuh's shape over the output (forward: [N, P, Q]) or input (backward: [N, H, W])
// pixels; channel groups of 8 (16-byte moves) when 8 divides both Cin and Cout, else single channels.
#include "bf16_vec.cuh"
#include "pixels_bf16.cuh"

namespace shortcut_bf16 {

struct ShortcutShape {
    int N, H, W, Cin, P, Q, Cout, stride;
};

template <int W, bool kVec>
__device__ __forceinline__ void forward(const bf16* __restrict__ x, bf16* __restrict__ y, ShortcutShape s) {
    for_owned_pixels(s.N, s.P, s.Q, [&](int n, int p, int q) {
        const bf16* src =
            x + ((static_cast<long long>(n) * s.H + static_cast<long long>(p) * s.stride) * s.W +
                 static_cast<long long>(q) * s.stride) * s.Cin;
        bf16* dst = y + ((static_cast<long long>(n) * s.P + p) * s.Q + q) * s.Cout;
        for_lane_groups(s.Cout / W, [&](int g) {
            // With W = 8, 8 divides Cin, so a group lies wholly below or wholly above it.
            if (g * W < s.Cin) {
                copy_bf16<W, kVec>(dst + g * W, src + g * W);
            } else {
                zero_bf16<W, kVec>(dst + g * W);
            }
        });
    });
}

template <int W, bool kVec>
__device__ __forceinline__ void backward(const bf16* __restrict__ dy, bf16* __restrict__ dx, ShortcutShape s) {
    for_owned_pixels(s.N, s.H, s.W, [&](int n, int h, int w) {
        bf16* dst = dx + ((static_cast<long long>(n) * s.H + h) * s.W + w) * s.Cin;
        const bool sampled = h % s.stride == 0 && w % s.stride == 0;
        const bf16* src =
            dy + ((static_cast<long long>(n) * s.P + h / s.stride) * s.Q + w / s.stride) * s.Cout;
        for_lane_groups(s.Cin / W, [&](int g) {
            if (sampled) {
                copy_bf16<W, kVec>(dst + g * W, src + g * W);
            } else {
                zero_bf16<W, kVec>(dst + g * W);
            }
        });
    });
}

}  // namespace shortcut_bf16

using shortcut_bf16::ShortcutShape;

extern "C" __global__ void shortcut_a_forward_bf16(const bf16* x, bf16* y, int N, int H, int W, int Cin, int P, int Q,
                                                   int Cout, int stride) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(Cin) && channel_groups_vectorised(Cout), pointers_aligned16(x, y),
                         shortcut_bf16::forward, x, y, ShortcutShape{N, H, W, Cin, P, Q, Cout, stride});
}
EMU_REGISTER(shortcut_a_forward_bf16);

extern "C" __global__ void shortcut_a_backward_bf16(const bf16* dy, bf16* dx, int N, int H, int W, int Cin, int P,
                                                    int Q, int Cout, int stride) {
    grid_dependency_sync();
    BF16_DISPATCH_GROUPS(channel_groups_vectorised(Cin) && channel_groups_vectorised(Cout),
                         pointers_aligned16(dy, dx), shortcut_bf16::backward, dy, dx,
                         ShortcutShape{N, H, W, Cin, P, Q, Cout, stride});
}
EMU_REGISTER(shortcut_a_backward_bf16);
