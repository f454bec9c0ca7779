//! Convolution tuning (`RESNET_CONV_TUNING=1`, `GpuBackend::with_conv_tuning`): the first call of a
//! pass times every candidate and keeps one; later calls launch only that one; nothing is timed
//! inside a graph capture or under a profile's kernel timing.
//!
//! Which candidate wins depends on the device's clock (the emulator's host clock here), so the
//! assertions hold whichever it is: the launch counts, the records, and outputs that agree with the
//! plan's to within what two summation orders of the same bf16 products can differ by (each output
//! rounded to bf16 once: at most an ulp, 2^-8 relative, apart; `2^-7 max |plan|` leaves room for
//! the f32 sums' own order).

use super::*;
use resnet_cuda::backend::gpu::conv_plan::ConvShape;
use resnet_cuda::backend::gpu::conv_tc_plan::{self as plan, TcPass};
use resnet_cuda::backend::gpu::Driver;

/// The widest kernel family this driver has: wgmma with the TMA feeds where its kernels are (the
/// emulator, compute capability 9.0), mma.sync elsewhere.
fn widest_family(gpu: &Gpu) -> TcFamily {
    if gpu.driver().has_kernel("conv2d_wgmma_forward_128x128_bf16") {
        TcFamily::WgmmaTma
    } else {
        TcFamily::MmaSync
    }
}

fn tuned_gpu(tuning: bool) -> Gpu {
    let gpu = gpu_bf16();
    let family = widest_family(&gpu);
    gpu.with_tc_family(family).with_conv_tuning(tuning)
}

fn launches(gpu: &Gpu) -> u64 {
    gpu.device_counts().unwrap().launches
}

/// x [2, 9, 9, 64], w [64, 3, 3, 64], stride 1, pad 1: every TMA feed applies, 162 output rows.
const X: [usize; 4] = [2, 9, 9, 64];
const W: [usize; 4] = [64, 3, 3, 64];

struct Operands {
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

fn operands() -> Operands {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    let len = |d: [usize; 4]| d.iter().product::<usize>();
    Operands {
        x: bf16_values(&mut rng, len(X), -1.0, 1.0),
        w: bf16_values(&mut rng, len(W), -0.5, 0.5),
        dy: bf16_values(&mut rng, len(X), -1.0, 1.0),
    }
}

/// The three passes of the test convolution on `gpu`: (y, dx, dw), and the launches each took.
fn three_passes(gpu: &Gpu, o: &Operands) -> ([Vec<f32>; 3], [u64; 3]) {
    let geom = Conv2dGeometry::new(1, 1);
    let x = activation(gpu, &X, &o.x);
    let dy = activation(gpu, &X, &o.dy);
    let w = Tensor::from_slice(gpu, W, &o.w).unwrap();
    let mut y = poisoned(gpu, &X);
    let mut dx = poisoned(gpu, &X);
    let mut dw = poisoned(gpu, &W);
    let mut counts = [0; 3];
    let before = launches(gpu);
    ops::conv2d_forward(gpu, &x, &w, &mut y, geom).unwrap();
    counts[0] = launches(gpu) - before;
    let before = launches(gpu);
    ops::conv2d_backward_data(gpu, &dy, &w, &mut dx, geom).unwrap();
    counts[1] = launches(gpu) - before;
    let before = launches(gpu);
    ops::conv2d_backward_filter(gpu, &x, &dy, &mut dw, geom).unwrap();
    counts[2] = launches(gpu) - before;
    let out = [y, dx, dw].map(|t| t.to_vec(gpu).unwrap());
    (out, counts)
}

fn shape() -> ConvShape {
    ConvShape {
        x: X,
        w: W,
        y: X,
        geom: Conv2dGeometry::new(1, 1),
    }
}

#[test]
fn a_tuned_pass_times_every_candidate_once_then_launches_its_choice_alone() {
    let o = operands();
    let plain = tuned_gpu(false);
    let family = widest_family(&plain);
    let (planned_out, planned_first) = three_passes(&plain, &o);
    let (_, planned_later) = three_passes(&plain, &o);

    let tuned = tuned_gpu(true);
    let (first_out, first) = three_passes(&tuned, &o);
    let (later_out, later) = three_passes(&tuned, &o);
    let records = tuned.conv_tuning_records();
    let passes: Vec<&str> = records.iter().map(|r| r.pass.as_str()).collect();
    assert_eq!(passes, ["forward", "backward_data", "backward_filter"]);

    // Each candidate: a warm-up and TIMED_RUNS timed runs, each all of its kernels (a split
    // backward-filter's reduce too); the winner once more for the call's outputs.
    let runs = 1 + 3;
    let s = shape();
    let has = |k: &str| tuned.driver().has_kernel(k);
    let launch_kernels: Vec<u64> = [TcPass::Forward, TcPass::BackwardData]
        .into_iter()
        .map(|pass| {
            let c = plan::launch_candidates(pass, &s, family);
            c.iter().filter(|l| has(l.kernel)).count() as u64
        })
        .collect();
    let filters = plan::filter_candidates(TcPass::BackwardFilter, &s, family);
    let filter_kernels: u64 = filters
        .iter()
        .filter(|f| has(f.partial.kernel))
        .map(|f| 1 + u64::from(f.reduce.is_some()))
        .sum();
    let timed = [launch_kernels[0], launch_kernels[1], filter_kernels];
    for (i, r) in records.iter().enumerate() {
        assert!(r.candidates > 1 && r.failed.is_empty(), "{r:?}");
        assert!(r.chosen_ms <= r.planned_ms, "{r:?}");
        // The pass's own launches (the forward's first call also makes the weight's bf16 copy),
        // the timing's, and the winner's kernels instead of the plan's.
        let chosen_kernels = if r.pass == "backward_filter" {
            let f = filters
                .iter()
                .find(|f| r.chosen.starts_with(f.partial.kernel))
                .unwrap();
            1 + u64::from(f.reduce.is_some())
        } else {
            1
        };
        let planned_kernels = if r.pass == "backward_filter" {
            1 + u64::from(filters[0].reduce.is_some())
        } else {
            1
        };
        assert_eq!(
            first[i] + planned_kernels,
            planned_first[i] + runs * timed[i] + chosen_kernels,
            "{r:?}"
        );
        assert_eq!(
            later[i] + planned_kernels,
            planned_later[i] + chosen_kernels,
            "{}: launched again after tuning",
            r.pass
        );
    }
    assert_eq!(tuned.conv_tuning_records().len(), 3, "tuned again");
    for (i, name) in ["y", "dx", "dw"].iter().enumerate() {
        assert!(
            first_out[i]
                .iter()
                .zip(&later_out[i])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the tuning call's output is not its choice's"
        );
        let max = planned_out[i].iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = planned_out[i]
            .iter()
            .zip(&first_out[i])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 2f32.powi(-7) * max, "{name}: {err} against {max}");
    }
}

/// `RESNET_CONV_TUNING_FILE`: a second backend (a second process) takes the first one's choices
/// from the file without timing anything and computes the same bits; a choice that is not among
/// its candidates is tuned again and replaced.
#[test]
fn a_tuning_file_hands_the_choices_to_the_next_process() {
    let o = operands();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuning.json");
    let first = tuned_gpu(true).with_conv_tuning_file(&path);
    three_passes(&first, &o);
    let (first_out, first_counts) = three_passes(&first, &o);
    assert_eq!(first.conv_tuning_records().len(), 3);
    let text = std::fs::read_to_string(&path).unwrap();
    for r in first.conv_tuning_records() {
        assert!(text.contains(&r.chosen), "{} not in {text}", r.chosen);
    }

    let second = tuned_gpu(true).with_conv_tuning_file(&path);
    let (second_out, second_counts) = three_passes(&second, &o);
    assert!(second.conv_tuning_records().is_empty(), "timed again");
    // The same launches as the first backend's steady calls (the forward's weight copy aside).
    assert_eq!(second_counts[1..], first_counts[1..]);
    for (i, name) in ["y", "dx", "dw"].iter().enumerate() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&first_out[i]) == bits(&second_out[i]),
            "{name} differs"
        );
    }

    // A choice no candidate has (an older build's kernel, say) is tuned again.
    let forward = first.conv_tuning_records()[0].chosen.clone();
    std::fs::write(&path, text.replace(&forward, "conv2d_no_such_kernel")).unwrap();
    let third = tuned_gpu(true).with_conv_tuning_file(&path);
    three_passes(&third, &o);
    let passes: Vec<String> = third
        .conv_tuning_records()
        .iter()
        .map(|r| r.pass.clone())
        .collect();
    assert_eq!(passes, ["forward"]);
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("conv2d_no_such_kernel"));
}

/// Timing needs the host to wait, which a capture refuses, and kernel timing on for a profile owns
/// its records: a pass first met in either runs the plan's launch and is tuned at a later call.
#[test]
fn nothing_is_tuned_in_a_capture_or_under_a_profile() {
    let o = operands();
    let tuned = tuned_gpu(true);
    assert!(tuned.set_kernel_timing(true).unwrap());
    let before = launches(&tuned);
    three_passes(&tuned, &o);
    let profiled = launches(&tuned) - before;
    let times = tuned.take_kernel_times().unwrap();
    tuned.set_kernel_timing(false).unwrap();
    assert!(tuned.conv_tuning_records().is_empty());
    // The profile saw every launch, and they were the untuned passes' (no candidate's).
    assert_eq!(times.len() as u64, profiled);
    let plain = tuned_gpu(false);
    let before = launches(&plain);
    three_passes(&plain, &o);
    assert_eq!(profiled, launches(&plain) - before);
    three_passes(&tuned, &o);
    assert_eq!(tuned.conv_tuning_records().len(), 3);

    // A forward of another batch size, first met inside a capture (a backward-data makes the
    // weight's bf16 copy before it: a capture may not allocate).
    let geom = Conv2dGeometry::new(1, 1);
    let x1_dims = [1, 9, 9, 64];
    let x1 = activation(&tuned, &x1_dims, &o.x[..o.x.len() / 2]);
    let w = Tensor::from_slice(&tuned, W, &o.w).unwrap();
    let mut y1 = poisoned(&tuned, &x1_dims);
    ops::conv2d_backward_data(&tuned, &x1, &w, &mut poisoned(&tuned, &x1_dims), geom).unwrap();
    let tuned_before = tuned.conv_tuning_records().len();
    tuned.begin_graph_capture().unwrap();
    let captured = ops::conv2d_forward(&tuned, &x1, &w, &mut y1, geom);
    let graph = tuned.end_graph_capture().unwrap();
    captured.unwrap();
    tuned.replay_graph(&graph).unwrap();
    tuned.drop_graph(graph);
    let forwards = |gpu: &Gpu| {
        gpu.conv_tuning_records()
            .iter()
            .filter(|r| r.pass == "forward" && r.shape.starts_with("x [1, 9, 9, 64]"))
            .count()
    };
    assert_eq!(
        forwards(&tuned),
        0,
        "the forward was tuned inside the capture"
    );
    assert_eq!(tuned.conv_tuning_records().len(), tuned_before);
    // Eagerly, it is tuned at its next call.
    ops::conv2d_forward(&tuned, &x1, &w, &mut y1, geom).unwrap();
    assert_eq!(forwards(&tuned), 1);
}
