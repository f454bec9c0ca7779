//! The `Profiled` decorator changes no result and charges every op family, and the shape recorder
//! finds every distinct convolution of the models the benchmarks cover.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{Backend, SgdConfig};
use resnet_cuda::bench::{ConvShape, ModelShapes, Profiled};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

/// Two training steps of resnet8 at batch 3; returns the loss of each step and the final weights.
fn train_two_steps<B: Backend<Elem = f32>>(be: &B) -> (Vec<f64>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    let mut net = Network::new(be, config, &mut rng).unwrap();
    let pixels: Vec<f32> = (0..3 * 32 * 32 * 3)
        .map(|i| (i % 17) as f32 / 17.0 - 0.5)
        .collect();
    let x = Tensor::from_slice(be, [3, 32, 32, 3], &pixels).unwrap();
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    });
    let losses = (0..2)
        .map(|_| {
            let stats = net.forward_backward(be, &x, &[1, 4, 9]).unwrap();
            sgd.step(be, &mut net).unwrap();
            stats.loss
        })
        .collect();
    let mut weights = Vec::new();
    net.visit_params(&mut |p| weights.push(p.value.to_vec(be).unwrap()));
    (losses, weights)
}

#[test]
fn profiled_backend_computes_exactly_what_it_wraps() {
    let bare = train_two_steps(&CpuBackend::<f32>::new());
    let profiled = Profiled::new(CpuBackend::<f32>::new());
    let wrapped = train_two_steps(&profiled);
    // The decorator forwards every op unchanged and the CPU backend is deterministic, so the
    // results must agree bit for bit, not just within a tolerance.
    assert_eq!(bare, wrapped);
    let times = profiled.times();
    for (name, ms) in [
        ("conv", times.conv_ms),
        ("bn", times.bn_ms),
        ("elementwise", times.elementwise_ms),
        ("other", times.other_ms),
    ] {
        assert!(ms > 0.0, "{name} was charged no time: {times:?}");
    }
    profiled.reset();
    assert_eq!(profiled.times().total_ms(), 0.0);
}

/// A basic CIFAR block's 3x3 convolution.
fn conv3x3(batch: usize, side: usize, c: usize, k: usize, stride: usize) -> ConvShape {
    ConvShape {
        batch,
        height: side,
        width: side,
        in_channels: c,
        out_channels: k,
        kernel: 3,
        stride,
        pad: 1,
    }
}

#[test]
fn recorder_finds_resnet20s_convolutions() {
    // Independent of the recorder: the paper's CIFAR net (sec. 4.2) with option-A shortcuts has a
    // 3->16 stem, then per stage one (possibly strided) entry conv and same-width convs.
    let expected = vec![
        conv3x3(128, 32, 3, 16, 1),
        conv3x3(128, 32, 16, 16, 1),
        conv3x3(128, 32, 16, 32, 2),
        conv3x3(128, 16, 32, 32, 1),
        conv3x3(128, 16, 32, 64, 2),
        conv3x3(128, 8, 64, 64, 1),
    ];
    let shapes = ModelShapes::of("resnet20", 128).unwrap();
    assert_eq!(shapes.convs, expected);
    assert_eq!(shapes.losses, vec![(128, 10)]);
    assert_eq!(shapes.global_pools, vec![[128, 8, 8, 64]]);
    assert!(shapes.max_pools.is_empty());
}

/// A 1x1 convolution (no padding).
fn conv1x1(batch: usize, side: usize, c: usize, k: usize, stride: usize) -> ConvShape {
    ConvShape {
        kernel: 1,
        pad: 0,
        ..conv3x3(batch, side, c, k, stride)
    }
}

#[test]
fn recorder_finds_resnet50s_convolutions() {
    // Table 1 of the paper, stride on the first 1x1 of a stage (the paper's released models): the
    // 7x7/2 stem; stage 1 at 56x56 (its projection 64->256 has the expand conv's shape); each later
    // stage: strided 1x1 reduce and strided projection at the previous side, then 3x3, 1x1 expand and
    // the later blocks' 1x1 reduce at the new side.
    let n = 2;
    let mut expected = vec![
        ConvShape {
            kernel: 7,
            pad: 3,
            ..conv3x3(n, 224, 3, 64, 2)
        },
        conv1x1(n, 56, 64, 64, 1),
        conv3x3(n, 56, 64, 64, 1),
        conv1x1(n, 56, 64, 256, 1),
        conv1x1(n, 56, 256, 64, 1),
    ];
    for (side, width) in [(56, 128), (28, 256), (14, 512)] {
        let (in_ch, out_ch) = (2 * width, 4 * width);
        expected.extend([
            conv1x1(n, side, in_ch, width, 2),
            conv3x3(n, side / 2, width, width, 1),
            conv1x1(n, side / 2, width, out_ch, 1),
            conv1x1(n, side, in_ch, out_ch, 2),
            conv1x1(n, side / 2, out_ch, width, 1),
        ]);
    }
    let mut found = ModelShapes::of("resnet50", n).unwrap();
    found.convs.sort();
    expected.sort();
    assert_eq!(found.convs, expected);
    assert_eq!(found.max_pools.len(), 1);
    assert_eq!(found.losses, vec![(n, 1000)]);
    // torchvision's resnet50 has 25,557,032 learnable scalars.
    assert_eq!(found.num_params, 25_557_032);
}
