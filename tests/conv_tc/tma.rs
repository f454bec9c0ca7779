//! Hopper's forward with the weights brought by the tensor memory accelerator
//! (`conv2d_wgmma_tma_forward[_stats]_*`, kernels/conv_wgmma_tma_forward_sm90a.cu): one thread's
//! `cp.async.bulk.tensor` a slice stores the B tile in the very swizzled layout the cp.async loader
//! writes, zeros past K and past R*S*C, and the multiply is unchanged. So y and the statistics
//! partials must equal the plain wgmma kernels' bit for bit, with no tolerance: a wrong box
//! coordinate, swizzle, zero fill or barrier phase changes them. (The plain kernels are held to the
//! f64 reference by `wgmma_every_tile_and_pass` and `forward_stats_every_tile_and_loader`.) Every
//! Hopper tile, on [`wgmma_shapes`]: reductions of 6.75, 36 and 0.5 slices (the last box mostly
//! outside the tensor), partial column tiles of 40, 72 and 264 channels (boxes past K).

use super::statistics::{conv_inputs, run_plain, run_stats};
use super::*;

#[test]
fn wgmma_forward_fed_by_tma_equals_the_cp_async_one_bit_for_bit() {
    for (i, s) in wgmma_shapes().iter().enumerate() {
        let (x, w) = conv_inputs(s, false, 1300 + i as u64);
        for tile in TcTile::HOPPER {
            let tma = conv_tc_plan::forward_tma_with(s, tile, false);
            assert!(
                driver().has_kernel(tma.kernel),
                "{} is not loaded on {}: the wgmma kernels need compute capability 9.0 (an H100 or \
                 H200) or the emulator",
                tma.kernel,
                driver().name()
            );
            let what = format!("{} on {:?} {:?}", tma.kernel, s.x, s.w);
            let plain = run_plain(s, &conv_tc_plan::forward_with(s, tile, false), &x, &w);
            assert!(
                run_plain(s, &tma, &x, &w) == plain,
                "{what}: y differs from the cp.async kernel's"
            );

            let (stats_plain, part) = conv_tc_plan::forward_stats_with(s, tile, false);
            let stats_tma = conv_tc_plan::forward_tma_with(s, tile, true);
            assert_eq!(
                stats_tma.grid, stats_plain.grid,
                "{what}: the same partition"
            );
            let (y_a, partials_a) = run_stats(s, &stats_plain, &part, &x, &w);
            let (y_b, partials_b) = run_stats(s, &stats_tma, &part, &x, &w);
            let as_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(y_a == y_b, "{}: y differs", stats_tma.kernel);
            assert!(
                as_bits(&partials_a) == as_bits(&partials_b),
                "{}: the statistics partials differ",
                stats_tma.kernel
            );
        }
    }
}
