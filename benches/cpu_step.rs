//! End-to-end CPU training step: resnet20, batch 128, 32x32 inputs, f32, forward + backward + SGD, on
//! all cores rayon sees. Criterion reports the time per step and images per second.
//!
//! `cargo bench --bench cpu_step`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::SgdConfig;
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

fn resnet20_train_step(c: &mut Criterion) {
    let batch = 128;
    let be = CpuBackend::<f32>::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let config = ModelConfig::from_name("resnet20", 10).expect("resnet20 exists");
    let mut net = Network::new(&be, config, &mut rng).expect("network builds");
    let pixels: Vec<f32> = (0..batch * 32 * 32 * 3)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_slice(&be, [batch, 32, 32, 3], &pixels).expect("input uploads");
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    });

    let mut group = c.benchmark_group("cpu_f32");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("resnet20_train_step_batch128", |b| {
        b.iter(|| {
            net.forward_backward(&be, &x, &labels).expect("step runs");
            sgd.step(&be, &mut net).expect("sgd runs");
        })
    });
    group.finish();
}

criterion_group!(benches, resnet20_train_step);
criterion_main!(benches);
