//! Hopper's forward with operands brought by the tensor memory accelerator: the weights
//! (`conv2d_wgmma_tma_forward[_stats]_*`), and for a pointwise convolution (1x1, stride 1, no
//! padding) the input too (`conv2d_wgmma_tma_pointwise_forward[_stats]_*`), both in
//! kernels/conv_wgmma_tma_sm90a.cu. One thread's `cp.async.bulk.tensor` a slice stores each
//! tile in the very swizzled layout the cp.async loaders write, zeros past the rows and past the
//! reduction, and the multiply is unchanged. So y and the statistics partials must equal the plain
//! wgmma kernels' bit for bit, with no tolerance: a wrong box coordinate, swizzle, zero fill or
//! barrier phase changes them. (The plain kernels are held to the f64 reference by
//! `wgmma_every_tile_and_pass` and `forward_stats_every_tile_and_loader`.) Every Hopper tile, on
//! [`wgmma_shapes`] (reductions of 6.75, 36, 1 and 0.5 slices, the last box mostly outside the
//! tensor; partial column tiles of 40, 72 and 264 channels: boxes past K; one pointwise shape) and
//! two more pointwise ones ([`pointwise_shapes`]); and the input through an im2col map (a slice's A
//! tile one copy: `conv2d_wgmma_tma_im2col_forward[_stats]_*`, kernels/conv_wgmma_tma_im2col_sm90a.cu)
//! on every shape whose C is a multiple of the tile's depth ([`im2col_shapes`] too). The same for the forward whose input is a BN's
//! output (BN + ReLU applied in shared memory after the copy lands), against the plain kernel on
//! that output stored. And for pointwise shapes both backward passes, both operands by TMA.
//! Every launch with the producer warp also runs without it ([`both_pipelines`]): the same bits.

use super::bn_grad::{check_bn_grad, Mask};
use super::bn_input::{bn_input_shapes, check_fused_backward_filter, check_fused_forward};
use super::statistics::{conv_inputs, run_stats};
use super::*;
use resnet_cuda::backend::gpu::conv_tc_plan::{TcFeed, TcFilterLaunch, TcLaunch};

/// A TMA-fed launch as planned and, where it has the producer warp, without it (what
/// `RESNET_TMA_PRODUCER=0` launches): the kernel then runs the pipeline every thread of which
/// multiplies, for the same bits (kernels/conv_wgmma.cuh). A producer warpgroup (the 128x256
/// tiles) is never left out: its launch is the only one.
fn both_pipelines(l: TcLaunch) -> Vec<TcLaunch> {
    let mut launches = vec![l];
    if l.without_producer() != l {
        launches.push(l.without_producer());
    }
    launches
}

/// [`both_pipelines`] of a backward-filter's partial kernel.
fn both_filter_pipelines(f: TcFilterLaunch) -> Vec<TcFilterLaunch> {
    both_pipelines(f.partial)
        .into_iter()
        .map(|partial| TcFilterLaunch { partial, ..f })
        .collect()
}

/// The TMA-fed backward-data `tma` of `s` gives dx bit for bit as the plain wgmma launch `plain`
/// does, on both pipelines.
fn assert_backward_data_equals(
    s: &ConvShape,
    tma: TcLaunch,
    plain: &TcLaunch,
    add: bool,
    seed: u64,
) {
    let expected = check_backward_data(s, plain, add, seed);
    for tma in both_pipelines(tma) {
        assert!(
            check_backward_data(s, &tma, add, seed) == expected,
            "{} (block {:?}) on {:?} {:?} stride {} pad {}: dx differs from {}'s",
            tma.kernel,
            tma.block,
            s.x,
            s.w,
            s.geom.stride,
            s.geom.pad,
            plain.kernel
        );
    }
}

/// The TMA-fed backward-filter `tma` of `s` gives dw bit for bit as the plain wgmma launch `plain`
/// (of the same split) does, on both pipelines.
fn assert_backward_filter_equals(
    s: &ConvShape,
    tma: TcFilterLaunch,
    plain: &TcFilterLaunch,
    seed: u64,
) {
    let expected = check_backward_filter(s, plain, seed);
    for tma in both_filter_pipelines(tma) {
        assert!(
            check_backward_filter(s, &tma, seed) == expected,
            "{} (block {:?}, splits {}) on {:?} {:?} stride {}: dw differs from {}'s",
            tma.partial.kernel,
            tma.partial.block,
            tma.splits,
            s.x,
            s.w,
            s.geom.stride,
            plain.partial.kernel
        );
    }
}

/// Pointwise shapes (1x1, stride 1, no padding) beyond [`wgmma_shapes`]' one: 3 slices over
/// M = 98, and 6.25 slices (C = 200) over M = 169, both with partial row tiles (boxes past N*H*W).
fn pointwise_shapes() -> [ConvShape; 2] {
    [
        shape([2, 7, 7, 96], [72, 1, 1, 96], 1, 0),
        shape([1, 13, 13, 200], [40, 1, 1, 200], 1, 0),
    ]
}

/// 1x1 shapes without padding and of stride 2 (an odd input: 5 x 4 phase-(0, 0) pixels of 9 x 7) and
/// 3, whose backward-data takes the pointwise feed ([`conv_tc_plan::backward_data_pointwise_applies`]).
fn strided_pointwise_shapes() -> [ConvShape; 2] {
    [
        shape([2, 9, 7, 72], [40, 1, 1, 72], 2, 0),
        shape([1, 10, 10, 64], [96, 1, 1, 64], 3, 0),
    ]
}

/// Shapes whose C is a multiple of 64, for the im2col feed of every tile (BK 32 and 64): 3x3 of
/// stride 2 with padding on an odd, non-square input (boxes that wrap rows and images, the last tile
/// past M), 3x3 of stride 1 whose tiles wrap several rows and both images, and a 1x1 of stride 2.
fn im2col_shapes() -> [ConvShape; 3] {
    [
        shape([2, 9, 7, 64], [40, 3, 3, 64], 2, 1),
        shape([2, 6, 5, 128], [72, 3, 3, 128], 1, 1),
        shape([2, 7, 7, 64], [48, 1, 1, 64], 2, 0),
    ]
}

/// Every feed of the TMA-fed forward ([`TcFeed`]: the weights alone; the pointwise input's boxes;
/// the input through an im2col map) on every Hopper tile and every shape it applies to, with and
/// without the statistics: y and the partials bit for bit the plain kernel's.
#[test]
fn wgmma_forward_fed_by_tma_equals_the_cp_async_one_bit_for_bit() {
    let shapes: Vec<ConvShape> = wgmma_shapes()
        .into_iter()
        .chain(pointwise_shapes())
        .chain(im2col_shapes())
        .collect();
    let mut fed_by = [0; 3];
    for (i, s) in shapes.iter().enumerate() {
        let (x, w) = conv_inputs(s, false, 1300 + i as u64);
        for tile in TcTile::HOPPER {
            for (f, feed) in TcFeed::ALL.into_iter().enumerate() {
                if !feed.applies(s, tile) {
                    continue;
                }
                fed_by[f] += 1;
                let tma = conv_tc_plan::forward_tma_fed(s, tile, false, feed);
                assert_hopper_kernel_loaded(tma.kernel);
                let what = format!("{} on {:?} {:?}", tma.kernel, s.x, s.w);
                let plain = run_forward(s, &conv_tc_plan::forward_with(s, tile, false), &x, &w);
                for tma in both_pipelines(tma) {
                    assert!(
                        run_forward(s, &tma, &x, &w) == plain,
                        "{what} (block {:?}): y differs from the cp.async kernel's",
                        tma.block
                    );
                }

                let (stats_plain, part) = conv_tc_plan::forward_stats_with(s, tile, false);
                let stats_tma = conv_tc_plan::forward_tma_fed(s, tile, true, feed);
                assert_eq!(
                    stats_tma.grid, stats_plain.grid,
                    "{what}: the same partition"
                );
                let (y_a, partials_a) = run_stats(s, &stats_plain, &part, &x, &w);
                let as_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                for stats_tma in both_pipelines(stats_tma) {
                    let (y_b, partials_b) = run_stats(s, &stats_tma, &part, &x, &w);
                    let what = format!("{} (block {:?})", stats_tma.kernel, stats_tma.block);
                    assert!(y_a == y_b, "{what}: y differs");
                    assert!(
                        as_bits(&partials_a) == as_bits(&partials_b),
                        "{what}: the statistics partials differ"
                    );
                }
            }
        }
    }
    // Every feed ran: the weights on all 9 shapes, the boxes on the 3 pointwise ones, im2col
    // wherever C is a multiple of BK (the 3 shapes above and the 128-channel one on every tile; the
    // 96- and 32-channel ones on the 32-deep tiles).
    assert_eq!(
        fed_by,
        [63, 21, 38],
        "(weights, pointwise, im2col) launches checked"
    );
}

/// The forward whose input is a BN's output with its ReLU, fed by TMA
/// (`conv2d_wgmma_tma_[pointwise_|im2col_]forward_stats_bnrelu_*`): the map applied in shared memory
/// after the copy lands, rows past M and an im2col tile's padding left zero. Bit for bit the plain
/// cp.async kernel of the tile on the BN output stored (`bn_input.rs`'s exact data and check), every
/// feed that applies, on its shapes (with padding: 3x3 of stride 1 and 2), the pointwise ones and
/// the im2col ones.
#[test]
fn wgmma_bn_input_fed_by_tma_equals_the_plain_kernel_on_the_stored_input() {
    let shapes: Vec<ConvShape> = bn_input_shapes()
        .into_iter()
        .chain(pointwise_shapes())
        .chain(im2col_shapes())
        .collect();
    let mut fed_by = [0; 3];
    for (i, s) in shapes.iter().enumerate() {
        for tile in TcTile::HOPPER {
            for (f, feed) in TcFeed::ALL.into_iter().enumerate() {
                let Some(fused) = conv_tc_plan::forward_stats_bnrelu_tma_fed(s, tile, feed) else {
                    continue;
                };
                assert_eq!(
                    fused.kernel.contains("pointwise"),
                    feed == TcFeed::Pointwise
                );
                for fused in both_pipelines(fused) {
                    check_fused_forward(s, &fused, tile, 2400 + i as u64);
                }
                fed_by[f] += 1;
            }
        }
    }
    // The four tiles the plan picks (all 32 deep), on every shape: the weights on all 10, the
    // boxes on the 2 pointwise ones, im2col where C is a multiple of 32 (the 64- and 32-channel
    // bn_input shapes, the 96-channel pointwise one and the 3 im2col shapes).
    assert_eq!(
        fed_by,
        [40, 8, 24],
        "(weights, pointwise, im2col) launches checked"
    );
}

/// Backward-data of 1x1 shapes without padding with both operands by TMA
/// (`conv2d_wgmma_tma_pointwise_backward_data[_add]_*`: dy's rows, w's 64-wide panels): bit for bit
/// the plain wgmma kernel's dx (and within the module's tolerance of the f64 reference), every
/// Hopper tile; strided ones too (stride 2 on an odd input, whose phase (0, 0) has ceil(H / 2) rows,
/// and 3: the other phases store zeros, or the addend). The `_bn_` variant (the four planned tiles)
/// on the strided shapes against the plain `_bn_` kernel, as check_bn_grad does; on the stride-1
/// ones it is held to the plain one through whole training steps (`tests/mixed_precision.rs`,
/// `the_forward_fed_by_tma_gives_the_wgmma_step_bit_for_bit`).
#[test]
fn wgmma_backward_data_fed_by_tma_equals_the_cp_async_one_bit_for_bit() {
    let shapes: Vec<ConvShape> = wgmma_shapes()
        .into_iter()
        .chain(pointwise_shapes())
        .chain(strided_pointwise_shapes())
        .filter(conv_tc_plan::backward_data_pointwise_applies)
        .collect();
    assert_eq!(shapes.len(), 6);
    for (i, s) in shapes.iter().enumerate() {
        for tile in TcTile::HOPPER {
            for add in [false, true] {
                let seed = 1400 + i as u64;
                let plain = conv_tc_plan::backward_data_with(s, add, tile, false);
                let tma = conv_tc_plan::backward_data_tma_with(s, add, tile);
                assert_backward_data_equals(s, tma, &plain, add, seed);
            }
        }
    }
    let mut bn_checked = 0;
    for (i, s) in strided_pointwise_shapes().iter().enumerate() {
        for tile in TcTile::HOPPER {
            if let Some(bn) = conv_tc_plan::backward_data_bn_tma_with(s, tile) {
                for bn in both_pipelines(bn) {
                    check_bn_grad(s, &bn, tile, Mask::FromAffine, false, 1450 + i as u64);
                }
                bn_checked += 1;
            }
        }
    }
    assert_eq!(bn_checked, 8, "the four _bn_ tiles on both strided shapes");
}

/// Stride-1 backward-data with dy through an im2col map of the transposed convolution and w's
/// panels by TMA (`conv2d_wgmma_tma_im2col_backward_data[_add]_*`): bit for bit the plain wgmma
/// kernel's dx (the same reduction order: the kernel reads the flipped taps in the plain loader's
/// order), every Hopper tile whose depth divides K, on 3x3 shapes with padding 1 and 0 (C = 40:
/// w's panels run past C into the next tap, which must not reach dx), a non-square input, and tiles
/// that wrap rows and images and run past the last pixel; and with the BN partials
/// (`_bn_`, the four planned tiles) against the plain `_bn_` kernel.
#[test]
fn wgmma_backward_data_fed_through_im2col_equals_the_cp_async_one_bit_for_bit() {
    let shapes = [
        shape([2, 6, 5, 40], [64, 3, 3, 40], 1, 1),
        shape([1, 7, 9, 64], [128, 3, 3, 64], 1, 1),
        shape([2, 6, 6, 32], [64, 3, 3, 32], 1, 0),
    ];
    let mut checked = [0; 2];
    for (i, s) in shapes.iter().enumerate() {
        for tile in TcTile::HOPPER {
            if !conv_tc_plan::backward_data_im2col_applies(s, tile) {
                continue;
            }
            for add in [false, true] {
                let seed = 1600 + i as u64;
                let tma = conv_tc_plan::backward_data_im2col_with(s, add, tile);
                assert_hopper_kernel_loaded(tma.kernel);
                let plain = conv_tc_plan::backward_data_with(s, add, tile, false);
                assert_backward_data_equals(s, tma, &plain, add, seed);
                checked[0] += 1;
            }
            if let Some(bn) = conv_tc_plan::backward_data_bn_im2col_with(s, tile) {
                // dx masked by the BN's own ReLU: the plain kernel's bits where it passes.
                for bn in both_pipelines(bn) {
                    check_bn_grad(s, &bn, tile, Mask::FromAffine, false, 1700 + i as u64);
                }
                checked[1] += 1;
            }
        }
    }
    // Every tile on the three shapes (K = 64 and 128: both depths), twice; the four _bn_ tiles.
    assert_eq!(checked, [42, 12], "(plain and _add, _bn_) launches checked");
}

/// Backward-filter with dy's panels and x through an im2col map
/// (`conv2d_wgmma_tma_im2col_backward_filter_*`): bit for bit the plain wgmma kernel's dw, every
/// Hopper tile, one split and three, on 3x3 shapes of stride 1 and 2 with padding (odd, non-square
/// inputs: slices that wrap rows and images; column tiles past R*S*C), a 1x1 of stride 2 and a
/// 128-channel 3x3 (two panels a tap); and its `_bnrelu_` variant (the padding left zero) against
/// the plain kernel on the BN output stored.
#[test]
fn wgmma_backward_filter_fed_through_im2col_equals_the_cp_async_one_bit_for_bit() {
    let shapes = [
        shape([2, 9, 7, 64], [40, 3, 3, 64], 2, 1),
        shape([2, 6, 5, 128], [72, 3, 3, 128], 1, 1),
        shape([2, 7, 7, 64], [48, 1, 1, 64], 2, 0),
        shape([1, 5, 6, 64], [64, 3, 3, 64], 1, 0),
        // 288 pixels: 9 slices of 32 (5 of 64), so that every stage is refilled within a split
        // (the producer warp waits for its release).
        shape([2, 12, 12, 64], [24, 3, 3, 64], 1, 1),
    ];
    let mut checked = [0; 2];
    for (i, s) in shapes.iter().enumerate() {
        for tile in TcTile::HOPPER {
            for splits in [1, 3] {
                let seed = 1800 + i as u64;
                let tma = conv_tc_plan::backward_filter_im2col_with(s, tile, splits);
                assert_hopper_kernel_loaded(tma.partial.kernel);
                let plain = conv_tc_plan::backward_filter_with(s, tile, false, splits);
                assert_backward_filter_equals(s, tma, &plain, seed);
                checked[0] += 1;
                if let Some(fused) =
                    conv_tc_plan::backward_filter_bnrelu_im2col_with(s, tile, splits)
                {
                    for fused in both_filter_pipelines(fused) {
                        check_fused_backward_filter(s, &fused, tile, 1900 + i as u64);
                    }
                    checked[1] += 1;
                }
            }
        }
    }
    assert_eq!(checked, [70, 40], "(plain, _bnrelu_) launches checked");
}

/// The pointwise shapes of [`wgmma_shapes`] and [`pointwise_shapes`], and one of 288 pixels (9
/// slices of 32: every pipeline stage reused within a split).
fn all_pointwise_shapes() -> Vec<ConvShape> {
    wgmma_shapes()
        .into_iter()
        .chain(pointwise_shapes())
        .chain([shape([2, 12, 12, 24], [40, 1, 1, 24], 1, 0)])
        .filter(conv_tc_plan::is_pointwise)
        .collect()
}

/// Backward-filter of pointwise shapes with both operands by TMA
/// (`conv2d_wgmma_tma_pointwise_backward_filter_*`: x's and dy's 64-wide panels of the split's
/// rows): bit for bit the plain wgmma kernel's dw (and within the module's tolerance of the f64
/// reference), every Hopper tile, one split and three (splits that end inside a slice; a box read
/// past its split's rows would add the next split's pixels where the plain loader reads zeros).
#[test]
fn wgmma_backward_filter_fed_by_tma_equals_the_cp_async_one_bit_for_bit() {
    let shapes = all_pointwise_shapes();
    assert_eq!(shapes.len(), 4);
    for (i, s) in shapes.iter().enumerate() {
        for tile in TcTile::HOPPER {
            for splits in [1, 3] {
                let seed = 1500 + i as u64;
                let tma = conv_tc_plan::backward_filter_tma_with(s, tile, splits);
                assert_hopper_kernel_loaded(tma.partial.kernel);
                let plain = conv_tc_plan::backward_filter_with(s, tile, false, splits);
                assert_backward_filter_equals(s, tma, &plain, seed);
            }
        }
    }
}

/// The backward-filter whose input is a BN's output with its ReLU, fed by TMA
/// (`conv2d_wgmma_tma_pointwise_backward_filter_bnrelu_*`: the map applied in shared memory after
/// the copy lands, rows past the split's end left zero): bit for bit the plain kernel of the tile on
/// the BN output stored, one split and three.
#[test]
fn wgmma_backward_filter_bn_input_fed_by_tma_equals_the_plain_kernel_on_the_stored_input() {
    let mut checked = 0;
    for (i, s) in all_pointwise_shapes().iter().enumerate() {
        for tile in TcTile::HOPPER {
            for splits in [1, 3] {
                let Some(fused) = conv_tc_plan::backward_filter_bnrelu_tma_with(s, tile, splits)
                else {
                    continue;
                };
                assert!(fused.partial.kernel.contains("tma_pointwise"));
                for fused in both_filter_pipelines(fused) {
                    check_fused_backward_filter(s, &fused, tile, 2500 + i as u64);
                }
                checked += 1;
            }
        }
    }
    // The four tiles the plan picks, on every shape, both splits.
    assert_eq!(checked, 4 * 4 * 2);
}

/// A pointwise kernel given a shape whose A is not x itself (here 1x1 with stride 2), or an im2col
/// kernel given one whose slices would straddle two taps (C = 32 on a 64-deep tile), traps rather
/// than reading the wrong pixels. Emulator only, as `vector_kernels_trap_on_unaligned_channels`: on
/// a GPU a trap ends the context every later test of the process shares.
#[test]
fn tma_fed_kernels_trap_on_shapes_they_cannot_walk() {
    if driver().name() != "emu" {
        eprintln!(
            "not run on {}: a trap would end the context",
            driver().name()
        );
        return;
    }
    let pointwise = shape([1, 8, 8, 32], [32, 1, 1, 32], 1, 0);
    let pointwise_kernel = conv_tc_plan::forward_tma_with(&pointwise, TcTile::H64x64, false);
    let c64 = shape([1, 8, 8, 64], [32, 3, 3, 64], 1, 1);
    let im2col_kernel =
        conv_tc_plan::forward_tma_fed(&c64, TcTile::H128x128K64, false, TcFeed::Im2col);
    for (kernel, s) in [
        (pointwise_kernel, shape([1, 8, 8, 32], [32, 1, 1, 32], 2, 0)),
        (im2col_kernel, shape([1, 8, 8, 32], [32, 3, 3, 32], 1, 1)),
    ] {
        // The other shape's grid and maps, the kernel.
        let other = conv_tc_plan::forward_tma_fed(&s, TcTile::H64x64, false, TcFeed::Weights);
        let l = TcLaunch {
            grid: other.grid,
            ..kernel
        };
        let (dx, dw) = (
            DeviceVec::new(&vec![0u16; len(s.x).max(len(c64.x))]),
            DeviceVec::new(&vec![0u16; len(s.w).max(len(c64.w))]),
        );
        let dy = DeviceVec::new(&vec![0u16; len(s.y).max(len(c64.y))]);
        let args = KernelArgs::new()
            .ptr(dx.ptr)
            .ptr(dw.ptr)
            .ptr(dy.ptr)
            .value(&s.dims());
        let mut args = with_tensor_maps(&l, args, dw.ptr, dx.ptr);
        if l.needs_shared_opt_in() {
            driver()
                .set_max_dynamic_shared(l.kernel, l.shared_bytes)
                .unwrap();
        }
        let mut params = args.params();
        // SAFETY: the kernel's parameters, buffers sized for either shape.
        let result = unsafe {
            driver()
                .launch(l.kernel, l.grid, l.block, l.shared_bytes, &mut params)
                .and_then(|()| driver().synchronize())
        };
        let e = result.expect_err("the kernel must trap on a shape it cannot walk");
        assert!(e.to_string().contains("__trap()"), "{}: {e}", l.kernel);
    }
}
