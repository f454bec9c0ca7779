// conv_index_selftest.cu: kernels that exercise the index helpers of the tensor-core convolutions'
// loaders (tests/conv_tc/indexing.rs); no model uses them.
//
//   conv_selftest_fast_divmod: for i < count (one thread each, any launch shape):
//                              q[i] = n[i] / d[i], r[i] = n[i] % d[i] through FastDivmod(d[i]).
//   conv_selftest_tap_walk:    one thread: a TcTapWalk started at kr0 over the TcTapShape (mid, inner,
//                              channel_stride, middle_stride, outer_stride), then advanced by 0 and
//                              then by `step` (steps - 1 times); out[4t ..] = (outer, middle, channel,
//                              offset) at kr0 + t step, t = 0 .. steps - 1.
#include "conv_tc.cuh"

extern "C" __global__ void conv_selftest_fast_divmod(const int* n, const int* d, int* q, int* r, int count) {
    grid_dependency_sync();
    for (unsigned long long i = global_thread_index(); i < static_cast<unsigned long long>(count);
         i += grid_stride()) {
        const FastDivmod f(d[i]);
        f.divmod(n[i], q[i], r[i]);
    }
}
EMU_REGISTER(conv_selftest_fast_divmod);

extern "C" __global__ void conv_selftest_tap_walk(int kr0, int step, int steps, int mid, int inner,
                                                  int channel_stride, int middle_stride, int outer_stride,
                                                  int* out) {
    grid_dependency_sync();
    if (global_thread_index() != 0) return;
    const TcTapShape shape{mid, inner, channel_stride, middle_stride, outer_stride};
    TcTapWalk walk;
    walk.start(kr0, shape);
    for (int t = 0; t < steps; ++t) {
        walk.advance(t == 0 ? 0 : step, shape);
        int* o = out + 4 * t;
        o[0] = walk.outer;
        o[1] = walk.middle;
        o[2] = walk.channel;
        o[3] = walk.offset;
    }
}
EMU_REGISTER(conv_selftest_tap_walk);
