//! Times each CPU op on resnet20's batch-128 shapes (ms per call, median of 7), then the whole
//! training step (forward + backward + SGD, median of `steps`).
//!
//! `cargo run --release --example op_profile [ops|step] [steps]`: both by default.
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{BatchNormConfig, BatchNormSaved, Conv2dGeometry, SgdConfig};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::ops;
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

/// CPU time of all this process's threads so far, in ms (0 where unsupported). On a loaded machine
/// wall time mostly measures the other processes; CPU time much less so.
fn cpu_ms() -> f64 {
    resnet_cuda::bench::process_cpu_ms().unwrap_or(0.0)
}

/// Median wall time, min wall time and min CPU time (all threads) of `runs` calls of `f` (after one
/// warm-up call), in ms. Under load the minima are the steadiest figures.
fn measure(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    f();
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_ms());
            f();
            (t.elapsed().as_secs_f64() * 1e3, cpu_ms() - c)
        })
        .unzip();
    wall.sort_by(|a, b| a.total_cmp(b));
    cpu.sort_by(|a, b| a.total_cmp(b));
    (wall[runs / 2], wall[0], cpu[0])
}

/// Timed calls per op.
const RUNS: usize = 7;

fn time(name: &str, f: impl FnMut()) {
    let (median, min, cpu) = measure(RUNS, f);
    println!("{name:<32} {median:8.2} ms  (min {min:6.2}, min cpu {cpu:7.2} ms)");
}

fn ops_profile(be: &CpuBackend<f32>) {
    let n = 128;
    let convs = [
        (32, 3, 16, 1),
        (32, 16, 16, 1),
        (32, 16, 32, 2),
        (16, 32, 32, 1),
        (16, 32, 64, 2),
        (8, 64, 64, 1),
    ];
    for (h, c, k, stride) in convs {
        let g = Conv2dGeometry::new(stride, 1);
        let p = h / stride;
        let x = Tensor::from_slice(be, [n, h, h, c], &vec![0.5f32; n * h * h * c]).unwrap();
        let w = Tensor::from_slice(be, [k, 3, 3, c], &vec![0.1f32; k * 9 * c]).unwrap();
        let mut y = Tensor::zeros(be, [n, p, p, k]).unwrap();
        let mut dx = Tensor::zeros(be, [n, h, h, c]).unwrap();
        let mut dw = Tensor::zeros(be, [k, 3, 3, c]).unwrap();
        let gf = 2.0 * (n * p * p * k * 9 * c) as f64 / 1e9;
        println!("conv {h}x{h} {c}->{k} /{stride}: {gf:.2} GFLOP per pass");
        time("  fwd", || {
            ops::conv2d_forward(be, &x, &w, &mut y, g).unwrap()
        });
        time("  bwd-data", || {
            ops::conv2d_backward_data(be, &y, &w, &mut dx, g).unwrap()
        });
        time("  bwd-filter", || {
            ops::conv2d_backward_filter(be, &x, &y, &mut dw, g).unwrap()
        });
    }
    for (h, c) in [(32, 16), (16, 32), (8, 64)] {
        let x = Tensor::from_slice(be, [n, h, h, c], &vec![0.5f32; n * h * h * c]).unwrap();
        let mut y = Tensor::zeros(be, [n, h, h, c]).unwrap();
        let mut dx = Tensor::zeros(be, [n, h, h, c]).unwrap();
        let ones = Tensor::from_slice(be, [c], &vec![1f32; c]).unwrap();
        let mut v = (0..6)
            .map(|_| Tensor::zeros(be, [c]).unwrap())
            .collect::<Vec<_>>();
        let cfg = BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            relu: true,
        };
        let [a, b, cc, d, e, f] = &mut v[..] else {
            unreachable!()
        };
        time(&format!("bn fwd {h}x{h}x{c}"), || {
            ops::batch_norm_forward_train(be, &x, &ones, &ones, &mut y, a, b, cc, d, cfg).unwrap()
        });
        time(&format!("bn bwd {h}x{h}x{c}"), || {
            let saved = BatchNormSaved {
                mean: a,
                inv_std: b,
                beta: &ones,
            };
            ops::batch_norm_backward(be, &x, &y, &x, &ones, saved, &mut dx, e, f, true).unwrap()
        });
        time(&format!("add relu {h}x{h}x{c}"), || {
            ops::add_forward(be, &x, &x, &mut dx, true).unwrap()
        });
    }
}

/// The training step of `benches/cpu_step.rs`: resnet20, batch 128, f32.
fn step_profile(be: &CpuBackend<f32>, steps: usize) {
    let batch = 128;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let config = ModelConfig::from_name("resnet20", 10).expect("resnet20 exists");
    let mut net = Network::new(be, config, &mut rng).expect("network builds");
    let pixels: Vec<f32> = (0..batch * 32 * 32 * 3)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_slice(be, [batch, 32, 32, 3], &pixels).expect("input uploads");
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    });
    let (median, min, cpu) = measure(steps, || {
        net.forward_backward(be, &x, &labels).expect("step runs");
        sgd.step(be, &mut net).expect("sgd runs");
    });
    println!(
        "resnet20 train step, batch 128, {} threads: median {median:.1} ms (min {min:.1}, min \
         cpu {cpu:.1} ms; {steps} steps)",
        rayon::current_num_threads()
    );
}

fn main() {
    let be = CpuBackend::<f32>::new();
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("all", String::as_str);
    let steps = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(9);
    if what != "step" {
        ops_profile(&be);
    }
    if what != "ops" {
        step_profile(&be, steps);
    }
}
