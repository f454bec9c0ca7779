//! The model zoo: parameter counts against the paper and torchvision, names, and a training sanity
//! check (a resnet20 can overfit one batch).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::SgdConfig;
use resnet_cuda::models::{Family, ModelConfig, Network};
use resnet_cuda::nn::ShortcutOption;
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

fn build(name: &str, classes: usize) -> Network<CpuBackend<f32>> {
    let be = CpuBackend::<f32>::new();
    let config = ModelConfig::from_name(name, classes).expect("known model");
    Network::new(&be, config, &mut ChaCha8Rng::seed_from_u64(0)).expect("network builds")
}

fn params(name: &str, classes: usize) -> usize {
    build(name, classes).num_params()
}

/// The paper's Table 6 prints CIFAR parameter counts to two significant figures.
#[test]
fn cifar_parameter_counts_match_the_paper() {
    let millions = |n: usize| n as f64 / 1e6;
    assert_eq!(format!("{:.2}", millions(params("resnet20", 10))), "0.27");
    assert_eq!(format!("{:.2}", millions(params("resnet56", 10))), "0.85");
    assert_eq!(format!("{:.1}", millions(params("resnet110", 10))), "1.7");
    // Option A adds no parameters, so the plain twin has exactly as many.
    assert_eq!(params("plain20", 10), params("resnet20", 10));
}

/// torchvision's counts, exact (1000 classes).
#[test]
fn imagenet_parameter_counts_match_torchvision() {
    assert_eq!(params("resnet18", 1000), 11_689_512);
    assert_eq!(params("resnet50", 1000), 25_557_032);
}

#[test]
fn names_follow_torchvision_state_dict() {
    let shapes = build("resnet18", 1000).param_shapes();
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..6],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "layer1.0.conv1.weight",
            "layer1.0.bn1.weight",
            "layer1.0.bn1.bias"
        ]
    );
    assert!(names.contains(&"layer2.0.downsample.0.weight"));
    assert!(names.contains(&"layer2.0.downsample.1.bias"));
    assert_eq!(&names[names.len() - 2..], ["fc.weight", "fc.bias"]);
    // Convolution weights are KRSC on the device: conv1 is 64 x 7 x 7 x 3.
    assert_eq!(shapes[0].1, vec![64, 7, 7, 3]);
}

#[test]
fn model_names_parse_and_bad_names_are_rejected() {
    let r8 = ModelConfig::from_name("resnet8", 10).unwrap();
    assert_eq!(
        (r8.family, r8.stage_blocks.clone()),
        (Family::Cifar, vec![1, 1, 1])
    );
    assert_eq!(
        ModelConfig::from_name("resnet1202", 10)
            .unwrap()
            .stage_blocks,
        vec![200; 3]
    );
    assert_eq!(
        ModelConfig::from_name("resnet50", 1000).unwrap().family,
        Family::ImageNet
    );
    assert_eq!(
        ModelConfig::from_name("cifar-resnet50", 10).unwrap().family,
        Family::Cifar
    );
    assert_eq!(
        ModelConfig::from_name("resnet20", 10).unwrap().shortcut,
        ShortcutOption::A
    );
    assert_eq!(
        ModelConfig::from_name("resnet34", 10).unwrap().shortcut,
        ShortcutOption::B
    );
    for bad in [
        "resnet21",
        "resnet2",
        "vgg16",
        "plain50",
        "resnet",
        "resnet-20",
    ] {
        let err = ModelConfig::from_name(bad, 10).unwrap_err().to_string();
        assert!(err.contains(bad), "error for {bad} should name it: {err}");
    }
    assert!(ModelConfig::from_name("resnet20", 0).is_err());
}

/// A resnet20 memorises one fixed batch of 32 random images with random labels: the loss must fall
/// below 0.05 within 100 steps of the paper's SGD (lr 0.1, momentum 0.9, weight decay 1e-4).
#[test]
fn resnet20_overfits_one_batch() {
    let be = CpuBackend::<f32>::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let config = ModelConfig::from_name("resnet20", 10).unwrap();
    let mut net = Network::new(&be, config, &mut rng).unwrap();
    let (n, side) = (32, 32);
    let pixels: Vec<f32> = (0..n * side * side * 3)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_slice(&be, [n, side, side, 3], &pixels).unwrap();
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    });
    let mut losses = Vec::new();
    for _ in 0..100 {
        let stats = net.forward_backward(&be, &x, &labels).unwrap();
        losses.push(stats.loss);
        if stats.loss < 0.05 {
            break;
        }
        sgd.step(&be, &mut net).unwrap();
    }
    let last = *losses.last().unwrap();
    assert!(
        last < 0.05,
        "loss after {} steps is {last}; history {losses:?}",
        losses.len()
    );
    assert!(
        losses[0] > 1.5,
        "the first loss should be near ln(10), got {}",
        losses[0]
    );
}
