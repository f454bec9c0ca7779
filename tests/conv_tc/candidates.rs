//! The convolution tuner's candidates (`conv_tc_plan::launch_candidates`, `filter_candidates`):
//! every launch it may keep in place of the plan's must compute the pass, with the plan's arguments
//! and outputs in the plan's layout. Each candidate is checked here exactly as the kernel tests
//! check the plan's launches: against the f64 reference (plain passes, the statistics' bounds), or
//! bit for bit against the plain kernel of its tile on the stored BN output (the fused passes).

use super::bn_grad::{check_bn_grad, Mask};
use super::bn_input::{check_fused_backward_filter, check_fused_forward};
use super::statistics::{check_partials, conv_inputs, run_stats};
use super::*;
use resnet_cuda::backend::gpu::conv_tc_plan::{TcFamily, TcPass};

/// A 3x3 stride-1 shape every TMA feed takes (im2col for all three passes: C and K multiples of
/// 64) with 162 output rows (2 or 3 row tiles: the BN epilogues' partitions differ by BM), a
/// pointwise one, a 3x3 stride-2 one (backward-data on the cp.async loaders) and a 1x1 stride-2
/// one (backward-data by TMA from phase (0, 0)); partial tiles throughout.
fn candidate_shapes() -> [ConvShape; 4] {
    [
        shape([2, 9, 9, 64], [64, 3, 3, 64], 1, 1),
        shape([2, 5, 5, 64], [64, 1, 1, 64], 1, 0),
        shape([1, 7, 7, 32], [64, 3, 3, 32], 2, 1),
        shape([1, 7, 7, 64], [128, 1, 1, 64], 2, 0),
    ]
}

/// The widest family this driver runs (`RESNET_TEST_TILES=mma`: mma.sync alone), and whether a
/// candidate's tile is one `every_tile` keeps.
fn family() -> TcFamily {
    if every_tile().iter().any(|t| t.is_hopper()) {
        TcFamily::WgmmaTma
    } else {
        TcFamily::MmaSync
    }
}

fn tested(l: &TcLaunch) -> bool {
    every_tile().contains(&l.tile)
}

#[test]
fn every_tuning_candidate_computes_its_pass() {
    let family = family();
    for (i, s) in candidate_shapes().iter().enumerate() {
        let seed = 3100 + 10 * i as u64;
        for pass in [
            TcPass::Forward,
            TcPass::BackwardData,
            TcPass::BackwardDataAdd,
        ] {
            let candidates = conv_tc_plan::launch_candidates(pass, s, family);
            assert!(candidates.len() > 1, "{} of {s:?}", pass.name());
            for l in candidates.iter().filter(|l| tested(l)) {
                match pass {
                    TcPass::Forward => check_forward(s, l, seed),
                    TcPass::BackwardData => drop(check_backward_data(s, l, false, seed)),
                    _ => drop(check_backward_data(s, l, true, seed)),
                }
            }
        }
        let part = conv_tc_plan::forward_stats_partition(s.y);
        for l in conv_tc_plan::launch_candidates(TcPass::ForwardStats, s, family) {
            if !tested(&l) {
                continue;
            }
            let (x, w) = conv_inputs(s, false, seed);
            let (y, stats) = run_stats(s, &l, &part, &x, &w);
            let what = format!("{} on {:?} {:?}", l.kernel, s.x, s.w);
            check(&what, &to_f64(&y), &forward_reference(s, &x, &w), true);
            check_partials(&what, &part, &y, &stats);
        }
        for l in conv_tc_plan::launch_candidates(TcPass::ForwardStatsBnRelu, s, family) {
            if tested(&l) {
                check_fused_forward(s, &l, l.tile, seed);
            }
        }
        let masks = [Mask::None, Mask::FromY, Mask::FromAffine];
        let bn_grad = conv_tc_plan::launch_candidates(TcPass::BackwardDataBn, s, family);
        for (j, l) in bn_grad.iter().filter(|l| tested(l)).enumerate() {
            check_bn_grad(s, l, l.tile, masks[j % 3], j % 2 == 1, seed);
        }
        for f in conv_tc_plan::filter_candidates(TcPass::BackwardFilter, s, family) {
            if tested(&f.partial) {
                check_backward_filter(s, &f, seed);
            }
        }
        for f in conv_tc_plan::filter_candidates(TcPass::BackwardFilterBnRelu, s, family) {
            if tested(&f.partial) {
                check_fused_backward_filter(s, &f, f.partial.tile, seed);
            }
        }
    }
}

/// The plan's launch comes first, no launch twice, the family's tiles alone (the TMA feeds only for
/// `WgmmaTma`), and for the passes with a BN epilogue only the plan's partials layout.
#[test]
fn the_candidates_start_with_the_plan_and_keep_its_outputs() {
    let launch_passes = [
        TcPass::Forward,
        TcPass::ForwardStats,
        TcPass::ForwardStatsBnRelu,
        TcPass::BackwardData,
        TcPass::BackwardDataAdd,
        TcPass::BackwardDataBn,
    ];
    let filter_passes = [TcPass::BackwardFilter, TcPass::BackwardFilterBnRelu];
    for s in candidate_shapes() {
        for family in [TcFamily::MmaSync, TcFamily::Wgmma, TcFamily::WgmmaTma] {
            let allowed = |l: &TcLaunch| {
                (family.is_hopper() || !l.tile.is_hopper())
                    && (family.weights_by_tma() || l.b_map.is_none() && l.b_im2col.is_none())
            };
            for pass in launch_passes {
                let c = conv_tc_plan::launch_candidates(pass, &s, family);
                let what = format!("{} {family:?} {s:?}", pass.name());
                assert_eq!(
                    c.first().copied(),
                    conv_tc_plan::planned_launch(pass, &s, family),
                    "{what}"
                );
                assert!(c.len() > 1, "{what}: only the plan's");
                for (i, l) in c.iter().enumerate() {
                    assert!(!c[..i].contains(l), "{what}: {} twice", l.kernel);
                    assert!(allowed(l), "{what}: {} is not the family's", l.kernel);
                    match pass {
                        TcPass::ForwardStats | TcPass::ForwardStatsBnRelu => assert_eq!(
                            l.grid.0, c[0].grid.0,
                            "{what}: {} partitions the statistics otherwise",
                            l.kernel
                        ),
                        TcPass::BackwardDataBn => assert_eq!(
                            conv_tc_plan::bn_grad_partials(l, s.x[3]),
                            conv_tc_plan::bn_grad_partials(&c[0], s.x[3]),
                            "{what}: {} writes other partials",
                            l.kernel
                        ),
                        _ => {}
                    }
                }
            }
            for pass in filter_passes {
                let c = conv_tc_plan::filter_candidates(pass, &s, family);
                let what = format!("{} {family:?} {s:?}", pass.name());
                assert_eq!(
                    c.first().copied(),
                    conv_tc_plan::planned_filter_launch(pass, &s, family),
                    "{what}"
                );
                assert!(c.len() > 1, "{what}: only the plan's");
                for (i, f) in c.iter().enumerate() {
                    assert!(!c[..i].contains(f), "{what}: {} twice", f.partial.kernel);
                    assert!(allowed(&f.partial), "{what}: {}", f.partial.kernel);
                }
            }
        }
    }
    // The TMA feeds are candidates of WgmmaTma: a pointwise shape's forward by tiled boxes.
    let pointwise = candidate_shapes()[1];
    assert!(
        conv_tc_plan::launch_candidates(TcPass::Forward, &pointwise, TcFamily::WgmmaTma)
            .iter()
            .any(|l| l.a_map.is_some()),
        "no pointwise TMA forward among the candidates"
    );
    // A shape on the general loader keeps the plan's launch alone.
    let odd = shape([1, 5, 5, 12], [16, 3, 3, 12], 1, 1);
    let c = conv_tc_plan::launch_candidates(TcPass::Forward, &odd, TcFamily::WgmmaTma);
    assert_eq!(c, vec![conv_tc_plan::forward_for(&odd, TcFamily::WgmmaTma)]);
}
