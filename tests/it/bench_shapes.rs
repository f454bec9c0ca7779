//! The shape recorder finds every distinct convolution of resnet20 and resnet50 (checked against
//! hand-derived lists from the paper), and the kernel benchmarks' plan covers every one of them at
//! the batches of the issue.

use resnet_cuda::bench::{
    BenchDevice, ConvShape, KernelPlan, ModelShapes, CPU_IMAGENET_BATCH, MODEL_BATCHES,
};

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

#[test]
fn kernel_plan_covers_every_distinct_convolution() {
    for device in [BenchDevice::Cpu, BenchDevice::Cuda] {
        let plan = KernelPlan::for_device(device).unwrap();
        for (model, batch) in MODEL_BATCHES {
            let bench_batch = device.batch_for(model, batch);
            for shape in ModelShapes::of(model, batch).unwrap().convs {
                let wanted = shape.with_batch(bench_batch);
                assert!(
                    plan.convs.iter().any(|&(m, s)| m == model && s == wanted),
                    "{device:?}: {model} at batch {batch} has {wanted:?}, missing from the plan"
                );
            }
        }
        // Each shape is benchmarked once.
        for (i, a) in plan.convs.iter().enumerate() {
            assert!(!plan.convs[i + 1..].contains(a), "{a:?} twice");
        }
    }
}

#[test]
fn gpu_plan_keeps_the_issues_batches_and_cpu_shrinks_only_imagenet() {
    let gpu = KernelPlan::for_device(BenchDevice::Cuda).unwrap();
    let batches = |plan: &KernelPlan, model: &str| {
        let mut b: Vec<usize> = plan
            .convs
            .iter()
            .filter(|(m, _)| *m == model)
            .map(|(_, s)| s.batch)
            .collect();
        b.dedup();
        b.sort();
        b.dedup();
        b
    };
    assert_eq!(batches(&gpu, "resnet50"), vec![32, 256]);
    assert_eq!(batches(&gpu, "resnet20"), vec![128]);
    let cpu = KernelPlan::for_device(BenchDevice::Cpu).unwrap();
    assert_eq!(batches(&cpu, "resnet50"), vec![CPU_IMAGENET_BATCH]);
    assert_eq!(batches(&cpu, "resnet20"), vec![128]);
}
