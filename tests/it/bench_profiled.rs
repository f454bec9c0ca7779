//! The `Profiled` decorator changes no result and charges every op family.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{Backend, SgdConfig};
use resnet_cuda::bench::Profiled;
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
