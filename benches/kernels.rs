//! Kernel microbenchmarks: every op family on every distinct layer shape of resnet50 (batch 32 and
//! 256) and resnet20 (batch 128), as `resnet_cuda::bench::KernelPlan` derives them from the model
//! code. On the CPU the resnet50 shapes run at batch `CPU_IMAGENET_BATCH` (see its doc).
//!
//! `cargo bench --bench kernels` (CPU), `RESNET_BENCH_DEVICE=cuda cargo bench --bench kernels` (GPU;
//! fails with a clear message where there is none). Filter with criterion's usual argument, such as
//! `cargo bench --bench kernels -- conv_forward`.
//!
//! Precision: `RESNET_BENCH_PRECISION=bf16|f32` (on the GPU; default bf16, as `train`; the CPU is
//! f32 only). In bf16, activations and their gradients are bf16 (convolutions on the tensor cores),
//! and every group's name ends in `_bf16` (`conv_forward_bf16/resnet50/...`), so the two precisions'
//! figures never mix.
//!
//! Throughput: convolutions report `Throughput::Elements(flops)`, one "element" being one
//! floating-point operation, so criterion's "elem/s" figure is FLOP/s. The memory-bound ops report
//! `Throughput::Bytes` of their compulsory traffic (each tensor read or written once), so their
//! figure is the achieved bandwidth. Every timed region ends with a device synchronisation
//! (`iter_custom`), so asynchronous GPU work is timed to completion.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::gpu::GpuBackend;
use resnet_cuda::backend::{Backend, BatchNormConfig, BatchNormSaved, Precision, SgdConfig};
use resnet_cuda::bench::{BenchDevice, KernelPlan};
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;
use resnet_cuda::Result;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Bytes of one f32.
const F32: u64 = 4;

/// A tensor of uniform values in [-1, 1) (deterministic).
fn random<B: Backend<Elem = f32>>(be: &B, dims: &[usize], seed: u64) -> Result<Tensor<B>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_slice(be, dims, &data)
}

/// A random tensor (as [`random`]) in the backend's activation type: an activation or its gradient.
fn activation<B: Backend<Elem = f32>>(be: &B, dims: &[usize], seed: u64) -> Result<Tensor<B>> {
    let mut t = random(be, dims, seed)?;
    be.to_activation_dtype(&mut t)?;
    Ok(t)
}

/// Bytes of one activation element on `be`.
fn act_bytes<B: Backend>(be: &B) -> u64 {
    be.activation_dtype().size() as u64
}

/// The benchmark group `name`, suffixed `_bf16` when the backend's activations are bf16.
fn group_name<B: Backend>(be: &B, name: &str) -> String {
    match be.activation_dtype() {
        resnet_cuda::backend::DType::Bf16 => format!("{name}_bf16"),
        _ => name.to_string(),
    }
}

/// Times `iters` calls of `op` and the synchronisation that finishes them.
fn timed<B: Backend>(be: &B, iters: u64, mut op: impl FnMut() -> Result<()>) -> Duration {
    be.synchronize().expect("device synchronises");
    let start = Instant::now();
    for _ in 0..iters {
        op().expect("op runs");
    }
    be.synchronize().expect("device synchronises");
    start.elapsed()
}

fn bench_op<B: Backend>(
    group: &mut Group<'_>,
    be: &B,
    id: String,
    throughput: Throughput,
    mut op: impl FnMut() -> Result<()>,
) {
    group.throughput(throughput);
    group.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter_custom(|iters| timed(be, iters, &mut op))
    });
}

fn configure(group: &mut Group<'_>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn convolutions<B: Backend<Elem = f32>>(
    c: &mut Criterion,
    be: &B,
    plan: &KernelPlan,
) -> Result<()> {
    for pass in ["conv_forward", "conv_backward_data", "conv_backward_filter"] {
        let mut group = c.benchmark_group(group_name(be, pass));
        configure(&mut group);
        for &(model, shape) in &plan.convs {
            let x = activation(
                be,
                &[shape.batch, shape.height, shape.width, shape.in_channels],
                1,
            )?;
            let k = shape.kernel;
            let w = random(be, &[shape.out_channels, k, k, shape.in_channels], 2)?;
            let mut y = activation(be, &shape.output_dims(), 3)?;
            let mut dx = Tensor::zeros(be, x.dims())?;
            let mut dw = Tensor::zeros(be, w.dims())?;
            let geom = shape.geometry();
            let id = format!("{model}/{}", shape.label());
            // Each pass does the same 2 N P Q K R S C floating-point operations.
            let flops = Throughput::Elements(shape.flops());
            match pass {
                "conv_forward" => bench_op(&mut group, be, id, flops, || {
                    ops::conv2d_forward(be, &x, &w, &mut y, geom)
                }),
                "conv_backward_data" => bench_op(&mut group, be, id, flops, || {
                    ops::conv2d_backward_data(be, &y, &w, &mut dx, geom)
                }),
                _ => bench_op(&mut group, be, id, flops, || {
                    ops::conv2d_backward_filter(be, &x, &y, &mut dw, geom)
                }),
            }
        }
        group.finish();
    }
    Ok(())
}

fn batch_norms<B: Backend<Elem = f32>>(c: &mut Criterion, be: &B, plan: &KernelPlan) -> Result<()> {
    let mut group = c.benchmark_group(group_name(be, "batch_norm"));
    let act = act_bytes(be);
    configure(&mut group);
    for &(model, dims, relu) in &plan.batch_norms {
        let ch = dims[3];
        let numel = dims.iter().product::<usize>() as u64;
        let x = activation(be, &dims, 4)?;
        let dy = activation(be, &dims, 5)?;
        let gamma = Tensor::from_slice(be, [ch], &vec![1.0; ch])?;
        let beta = Tensor::zeros(be, [ch])?;
        let mut y = Tensor::zeros(be, dims)?;
        let mut dx = Tensor::zeros(be, dims)?;
        let mut stats: Vec<Tensor<B>> = (0..6)
            .map(|_| Tensor::zeros(be, [ch]))
            .collect::<Result<_>>()?;
        let [mean, inv_std, run_mean, run_var, dgamma, dbeta] = &mut stats[..] else {
            unreachable!("six per-channel tensors")
        };
        let cfg = BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            relu,
        };
        let relu_tag = if relu { "_relu" } else { "" };
        let shape = format!("{}x{}x{}x{}", dims[0], dims[1], dims[2], dims[3]);
        // The bytes each must move at least: forward reads x and writes y; backward reads x and dy
        // (BN's ReLU mask comes from x and the saved statistics, not from y) and writes dx. Both
        // make two passes over their inputs (statistics, then the elementwise pass).
        bench_op(
            &mut group,
            be,
            format!("forward{relu_tag}/{model}/{shape}"),
            Throughput::Bytes(2 * numel * act),
            || {
                ops::batch_norm_forward_train(
                    be, &x, &gamma, &beta, &mut y, mean, inv_std, run_mean, run_var, cfg,
                )
            },
        );
        bench_op(
            &mut group,
            be,
            format!("backward{relu_tag}/{model}/{shape}"),
            Throughput::Bytes(3 * numel * act),
            || {
                let beta = &beta;
                let saved = BatchNormSaved {
                    mean,
                    inv_std,
                    beta,
                };
                ops::batch_norm_backward(
                    be, &x, &y, &dy, &gamma, saved, &mut dx, dgamma, dbeta, relu,
                )
            },
        );
    }
    group.finish();
    Ok(())
}

fn residual_adds<B: Backend<Elem = f32>>(
    c: &mut Criterion,
    be: &B,
    plan: &KernelPlan,
) -> Result<()> {
    let mut group = c.benchmark_group(group_name(be, "add"));
    configure(&mut group);
    for &(model, dims, relu) in &plan.adds {
        let numel = dims.iter().product::<usize>() as u64;
        let a = activation(be, &dims, 6)?;
        let b = activation(be, &dims, 7)?;
        let mut y = Tensor::zeros(be, dims)?;
        let mut dsum = Tensor::zeros(be, dims)?;
        let relu_tag = if relu { "_relu" } else { "" };
        let shape = format!("{}x{}x{}x{}", dims[0], dims[1], dims[2], dims[3]);
        // Both directions read two tensors and write one.
        let bytes = Throughput::Bytes(3 * numel * act_bytes(be));
        bench_op(
            &mut group,
            be,
            format!("forward{relu_tag}/{model}/{shape}"),
            bytes.clone(),
            || ops::add_forward(be, &a, &b, &mut y, relu),
        );
        bench_op(
            &mut group,
            be,
            format!("backward{relu_tag}/{model}/{shape}"),
            bytes,
            || ops::add_backward(be, &a, &b, &mut dsum, relu),
        );
    }
    group.finish();
    Ok(())
}

fn pools_loss_sgd<B: Backend<Elem = f32>>(
    c: &mut Criterion,
    be: &B,
    plan: &KernelPlan,
) -> Result<()> {
    let mut group = c.benchmark_group(group_name(be, "pool"));
    let act = act_bytes(be);
    configure(&mut group);
    for &(model, dims, geom) in &plan.max_pools {
        let x = activation(be, &dims, 8)?;
        let out = ops::max_pool_output_shape("bench", &dims, geom)?;
        let mut y = Tensor::zeros(be, out)?;
        let dy = activation(be, &out, 9)?;
        let mut dx = Tensor::zeros(be, dims)?;
        let (x_bytes, y_bytes) = (x.numel() as u64 * act, y.numel() as u64 * act);
        let shape = format!("{}x{}x{}x{}", dims[0], dims[1], dims[2], dims[3]);
        bench_op(
            &mut group,
            be,
            format!("max_forward/{model}/{shape}"),
            Throughput::Bytes(x_bytes + y_bytes),
            || ops::max_pool_forward(be, &x, &mut y, geom),
        );
        bench_op(
            &mut group,
            be,
            format!("max_backward/{model}/{shape}"),
            Throughput::Bytes(2 * x_bytes + y_bytes),
            || ops::max_pool_backward(be, &x, &dy, &mut dx, geom),
        );
    }
    for &(model, dims) in &plan.global_pools {
        let x = activation(be, &dims, 10)?;
        let mut y = Tensor::zeros(be, [dims[0], dims[3]])?;
        let dy = random(be, &[dims[0], dims[3]], 11)?;
        let mut dx = Tensor::zeros(be, dims)?;
        // The pooled [N, C] side (and its gradient) stays f32: the classifier's head.
        let bytes = Throughput::Bytes(x.numel() as u64 * act + y.numel() as u64 * F32);
        let shape = format!("{}x{}x{}x{}", dims[0], dims[1], dims[2], dims[3]);
        bench_op(
            &mut group,
            be,
            format!("global_avg_forward/{model}/{shape}"),
            bytes.clone(),
            || ops::global_avg_pool_forward(be, &x, &mut y),
        );
        bench_op(
            &mut group,
            be,
            format!("global_avg_backward/{model}/{shape}"),
            bytes,
            || ops::global_avg_pool_backward(be, &dy, &mut dx),
        );
    }
    group.finish();

    let mut group = c.benchmark_group(group_name(be, "softmax_cross_entropy"));
    configure(&mut group);
    for &(model, n, classes) in &plan.losses {
        let logits = random(be, &[n, classes], 12)?;
        let mut dlogits = Tensor::zeros(be, [n, classes])?;
        let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
        // Reads the logits, writes their gradient.
        let bytes = Throughput::Bytes(2 * (n * classes) as u64 * F32);
        bench_op(
            &mut group,
            be,
            format!("{model}/{n}x{classes}"),
            bytes,
            || ops::softmax_cross_entropy(be, &logits, &labels, &mut dlogits).map(|_| ()),
        );
    }
    group.finish();

    let mut group = c.benchmark_group(group_name(be, "sgd"));
    configure(&mut group);
    let cfg = SgdConfig {
        lr: 1e-3,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    for &(model, params) in &plan.sgd {
        // One flat tensor of the model's parameter count: the traffic of a whole SGD step.
        let mut w = random(be, &[params], 13)?;
        let g = random(be, &[params], 14)?;
        let mut v = Tensor::zeros(be, [params])?;
        // Reads w, g, v; writes w, v.
        let bytes = Throughput::Bytes(5 * params as u64 * F32);
        bench_op(&mut group, be, format!("{model}/{params}"), bytes, || {
            ops::sgd_update(be, &mut w, &g, &mut v, cfg)
        });
    }
    group.finish();
    Ok(())
}

fn run_all<B: Backend<Elem = f32>>(be: &B, plan: &KernelPlan) -> Result<()> {
    let mut c = Criterion::default().configure_from_args();
    convolutions(&mut c, be, plan)?;
    batch_norms(&mut c, be, plan)?;
    residual_adds(&mut c, be, plan)?;
    pools_loss_sgd(&mut c, be, plan)?;
    c.final_summary();
    Ok(())
}

/// `RESNET_BENCH_PRECISION`, as `--precision` reads it; unset, the device's default.
fn precision_from_env() -> Result<Option<Precision>> {
    match std::env::var("RESNET_BENCH_PRECISION") {
        Ok(v) if !v.is_empty() => Ok(Some(v.parse().map_err(|_| {
            resnet_cuda::Error::Config(format!("RESNET_BENCH_PRECISION={v}: expected bf16 or f32"))
        })?)),
        _ => Ok(None),
    }
}

fn run() -> Result<()> {
    let device = BenchDevice::from_env()?;
    let precision = precision_from_env()?;
    let plan = KernelPlan::for_device(device)?;
    match device {
        BenchDevice::Cpu => {
            if precision == Some(Precision::Bf16) {
                return Err(resnet_cuda::Error::Config(
                    "RESNET_BENCH_PRECISION=bf16: the CPU backend computes in f32 only".into(),
                ));
            }
            run_all(&CpuBackend::<f32>::new(), &plan)
        }
        // GPU 0 through the CUDA driver; without one, the driver's reason and a non-zero exit.
        BenchDevice::Cuda => {
            let precision = precision.unwrap_or(Precision::Bf16);
            run_all(&GpuBackend::cuda(0)?.with_precision(precision), &plan)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
