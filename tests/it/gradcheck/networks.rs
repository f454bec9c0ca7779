//! Whole networks end to end: the gradient of the mean cross-entropy loss with respect to every
//! parameter tensor, from the network's hand-derived backward chain, against central differences of
//! the loss. Each parameter tensor is sampled (up to 6 elements, fixed seed) to keep the run short;
//! every tensor of the network is covered.

use resnet_cuda::models::{BlockKind, Family, ModelConfig, Network};
use resnet_cuda::nn::{BottleneckStride, ShortcutOption};
use resnet_cuda::tensor::Tensor;

use super::common::{read, seeded, uniform, Cpu};
use super::kinks::{check_robust, Sampling};

fn check_network(config: ModelConfig, input_dims: [usize; 4], seed: u64) {
    let be = Cpu::new();
    let what = config.name.clone();
    let classes = config.num_classes;
    let mut net = Network::new(&be, config, &mut seeded(seed)).unwrap();
    let x_data = uniform(
        &mut seeded(seed + 1),
        input_dims.iter().product(),
        -1.0,
        1.0,
    );
    let x = Tensor::from_slice(&be, input_dims, &x_data).unwrap();
    let labels: Vec<u32> = (0..input_dims[0] as u32)
        .map(|i| (i * 7 + 3) % classes as u32)
        .collect();
    net.forward_backward(&be, &x, &labels).unwrap();

    let mut params = Vec::new();
    net.visit_params(&mut |p| {
        params.push((p.name.clone(), read(&be, &p.value), read(&be, &p.grad)))
    });
    for (index, (name, values, grad)) in params.iter().enumerate() {
        let set = |net: &mut Network<Cpu>, v: &[f64]| {
            let mut i = 0;
            net.visit_params(&mut |p| {
                if i == index {
                    p.value.copy_from_slice(&be, v).unwrap();
                }
                i += 1;
            });
        };
        check_robust(
            &format!("{what}: {name}"),
            values,
            &[1.0],
            grad,
            Sampling::AtMost(6, seed + index as u64),
            |p| {
                set(&mut net, p);
                net.forward(&be, &x, resnet_cuda::nn::Mode::Train).unwrap();
                vec![net.loss(&be, &labels).unwrap().loss]
            },
        );
        set(&mut net, values);
    }
    println!("{what}: {} parameter tensors checked", params.len());
}

#[test]
fn cifar_resnet8_option_a() {
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    check_network(config, [3, 8, 8, 3], 100);
}

#[test]
fn cifar_resnet8_option_b() {
    let config = ModelConfig::from_name("resnet8", 10)
        .unwrap()
        .with_shortcut(ShortcutOption::B);
    check_network(config, [2, 9, 7, 3], 200);
}

#[test]
fn cifar_plain8() {
    let config = ModelConfig::from_name("plain8", 5).unwrap();
    check_network(config, [3, 8, 8, 3], 300);
}

/// An ImageNet-style net (7x7/2 stem, max pool) with two stages of one bottleneck block each.
#[test]
fn tiny_bottleneck_net() {
    let config = ModelConfig {
        name: "tiny-bottleneck".into(),
        family: Family::ImageNet,
        depth: 8,
        residual: true,
        block: BlockKind::Bottleneck,
        stage_blocks: vec![1, 1],
        stage_channels: vec![16, 32],
        shortcut: ShortcutOption::B,
        bottleneck_stride: BottleneckStride::OnReduce,
        num_classes: 6,
    };
    check_network(config, [2, 17, 15, 3], 400);
}
