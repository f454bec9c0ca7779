//! Every op of the GPU backend against the CPU reference (`CpuBackend<f32>`) on the same inputs,
//! through the checked wrappers of `resnet_cuda::ops`; then whole training steps (forward, backward,
//! SGD) of resnet8 (option A), resnet8 with option B, and a tiny bottleneck net on both.
//!
//! Which driver runs the GPU side: `RESNET_TEST_DRIVER`, `emu` (the host emulator, the default, what CI
//! runs) or `cuda` / `cuda:N` (a real GPU). Selected without a usable GPU, every test here fails with
//! the driver's reason; it never passes without having run.
//!
//! Shapes include sizes that are not multiples of any tile (16 for the GEMM, 32 channels for batch
//! norm), stride 2, batch 1, 3 input channels and channel counts that are not multiples of 4 or 8.
//!
//! Tolerance: for an output that is a float sum of `L` terms (`L` = the reduction length stated at
//! each check), max |gpu - cpu| <= 8 * f32::EPSILON * sqrt(L) * max |cpu|: the two backends sum in
//! different orders, and rounding errors of a sum grow like sqrt(L) for random data. Data movement
//! ops (copy, add, shortcut, pooling's routing, the SGD update) and the top-k counts are exact.
//!
//! The emulator runs each CUDA thread as a function call, so shapes are kept small.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::gpu::kernel_limits::{self, KernelLimits};
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{Driver, DynDriver, GpuBackend};
use resnet_cuda::backend::{
    Backend, BatchNormConfig, BatchNormSaved, Conv2dGeometry, PoolGeometry, Precision, SgdConfig,
    SgdTensors,
};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::nn::ShortcutOption;
use resnet_cuda::ops;
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

type Cpu = CpuBackend<f32>;
type Gpu = GpuBackend<DynDriver>;

/// The GPU backend on the driver `RESNET_TEST_DRIVER` names (default `emu`).
fn gpu() -> Gpu {
    let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
    GpuBackend::open(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
}

struct Both {
    cpu: Cpu,
    gpu: Gpu,
    rng: ChaCha8Rng,
}

/// One tensor on each backend, holding the same values.
struct Pair {
    c: Tensor<Cpu>,
    g: Tensor<Gpu>,
}

impl Both {
    fn new(seed: u64) -> Self {
        Both {
            cpu: Cpu::new(),
            gpu: gpu(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn pair_of(&self, shape: &[usize], data: &[f32]) -> Pair {
        Pair {
            c: Tensor::from_slice(&self.cpu, shape, data).unwrap(),
            g: Tensor::from_slice(&self.gpu, shape, data).unwrap(),
        }
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, shape: &[usize], lo: f32, hi: f32) -> Pair {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        self.pair_of(shape, &data)
    }

    fn random(&mut self, shape: &[usize]) -> Pair {
        self.uniform(shape, -1.0, 1.0)
    }

    /// Small integers in [lo, hi]: ties on purpose.
    fn ints(&mut self, shape: &[usize], lo: i32, hi: i32) -> Pair {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(lo..=hi) as f32)
            .collect();
        self.pair_of(shape, &data)
    }

    /// Outputs start as NaN on both sides, so an element a kernel forgets to write fails the check.
    fn nans(&self, shape: &[usize]) -> Pair {
        let n: usize = shape.iter().product();
        self.pair_of(shape, &vec![f32::NAN; n])
    }

    fn host(&self, p: &Pair) -> (Vec<f32>, Vec<f32>) {
        (
            p.g.to_vec(&self.gpu).unwrap(),
            p.c.to_vec(&self.cpu).unwrap(),
        )
    }

    /// The tolerance of the module doc for a sum of `reduction_len` terms.
    fn assert_close(&self, what: &str, p: &Pair, reduction_len: usize) {
        let (g, c) = self.host(p);
        assert_close(what, &g, &c, reduction_len);
    }

    fn assert_exact(&self, what: &str, p: &Pair) {
        let (g, c) = self.host(p);
        assert_eq!(g.len(), c.len(), "{what}");
        for (i, (a, b)) in g.iter().zip(&c).enumerate() {
            assert!(a.to_bits() == b.to_bits(), "{what}[{i}]: gpu {a} cpu {b}");
        }
    }
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], reduction_len: usize) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let max_ref = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 8.0 * f32::EPSILON * (reduction_len.max(1) as f32).sqrt() * max_ref;
    for (i, (a, b)) in gpu.iter().zip(cpu).enumerate() {
        assert!(
            a.is_finite() && (a - b).abs() <= tol,
            "{what}[{i}]: gpu {a} cpu {b}, |diff| {} > tol {tol} (max|ref| {max_ref}, L {reduction_len})",
            (a - b).abs()
        );
    }
}

#[test]
fn convolutions_match_cpu() {
    let mut t = Both::new(1);
    // (x: [N, H, W, C], K, R = S, stride, pad)
    let cases = [
        ([2, 7, 5, 3], 5, 3, 1, 1),
        ([1, 9, 6, 6], 10, 3, 2, 1),
        ([2, 5, 5, 5], 7, 1, 2, 0),
        ([1, 11, 10, 3], 4, 7, 2, 3),
    ];
    for (xd, k, r, stride, pad) in cases {
        let geom = Conv2dGeometry::new(stride, pad);
        let wd = [k, r, r, xd[3]];
        let yd = ops::conv2d_output_shape("test", &xd, &wd, geom).unwrap();
        let x = t.random(&xd);
        let w = t.random(&wd);
        let dy = t.random(&yd);
        let name = format!("x {xd:?} w {wd:?} stride {stride} pad {pad}");

        let mut y = t.nans(&yd);
        ops::conv2d_forward(&t.cpu, &x.c, &w.c, &mut y.c, geom).unwrap();
        ops::conv2d_forward(&t.gpu, &x.g, &w.g, &mut y.g, geom).unwrap();
        t.assert_close(&format!("conv forward {name}"), &y, r * r * xd[3]);

        let mut dx = t.nans(&xd);
        ops::conv2d_backward_data(&t.cpu, &dy.c, &w.c, &mut dx.c, geom).unwrap();
        ops::conv2d_backward_data(&t.gpu, &dy.g, &w.g, &mut dx.g, geom).unwrap();
        t.assert_close(&format!("conv backward data {name}"), &dx, r * r * k);

        let mut dw = t.nans(&wd);
        ops::conv2d_backward_filter(&t.cpu, &x.c, &dy.c, &mut dw.c, geom).unwrap();
        ops::conv2d_backward_filter(&t.gpu, &x.g, &dy.g, &mut dw.g, geom).unwrap();
        t.assert_close(
            &format!("conv backward filter {name}"),
            &dw,
            yd[0] * yd[1] * yd[2],
        );
    }
}

#[test]
fn batch_norm_matches_cpu() {
    let mut t = Both::new(2);
    // C = 7 and 37 (not multiples of 4, 8 or 32); M = 30, 9 and 429 (two row partitions).
    for (xd, relu) in [
        ([2, 5, 3, 7], true),
        ([1, 3, 3, 37], false),
        ([3, 13, 11, 6], true),
    ] {
        let c = xd[3];
        let m = xd[0] * xd[1] * xd[2];
        let cfg = BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            relu,
        };
        let name = format!("x {xd:?} relu {relu}");
        // An offset mean, so the two-pass variance matters.
        let x = t.uniform(&xd, 0.5, 2.5);
        let gamma = t.uniform(&[c], 0.5, 1.5);
        let beta = t.random(&[c]);
        let mut running_mean = t.random(&[c]);
        let mut running_var = t.uniform(&[c], 0.5, 2.0);
        let mut y = t.nans(&xd);
        let mut mean = t.nans(&[c]);
        let mut inv_std = t.nans(&[c]);
        ops::batch_norm_forward_train(
            &t.cpu,
            &x.c,
            &gamma.c,
            &beta.c,
            &mut y.c,
            &mut mean.c,
            &mut inv_std.c,
            &mut running_mean.c,
            &mut running_var.c,
            cfg,
        )
        .unwrap();
        ops::batch_norm_forward_train(
            &t.gpu,
            &x.g,
            &gamma.g,
            &beta.g,
            &mut y.g,
            &mut mean.g,
            &mut inv_std.g,
            &mut running_mean.g,
            &mut running_var.g,
            cfg,
        )
        .unwrap();
        t.assert_close(&format!("bn mean {name}"), &mean, m);
        t.assert_close(&format!("bn inv_std {name}"), &inv_std, m);
        t.assert_close(&format!("bn running_mean {name}"), &running_mean, m);
        t.assert_close(&format!("bn running_var {name}"), &running_var, m);
        t.assert_close(&format!("bn y {name}"), &y, m);

        let mut yi = t.nans(&xd);
        ops::batch_norm_forward_infer(
            &t.cpu,
            &x.c,
            &gamma.c,
            &beta.c,
            &running_mean.c,
            &running_var.c,
            &mut yi.c,
            cfg,
        )
        .unwrap();
        ops::batch_norm_forward_infer(
            &t.gpu,
            &x.g,
            &gamma.g,
            &beta.g,
            &running_mean.g,
            &running_var.g,
            &mut yi.g,
            cfg,
        )
        .unwrap();
        // Per element: no reduction (the inputs are the same values on both sides).
        t.assert_close(&format!("bn infer {name}"), &yi, 1);

        // The backward takes mean and inv_std from the CPU forward on both sides, so that it is
        // checked on its own. Both backends take BN's ReLU mask from x and the affine map, not from
        // y; the GPU's fused multiply-add could put an element within an f32 rounding of the kink
        // on the other side (about 1e-7 of random elements: none with this seed).
        let y_host = y.c.to_vec(&t.cpu).unwrap();
        let y_same = t.pair_of(&xd, &y_host);
        let mean_same = t.pair_of(&[c], &mean.c.to_vec(&t.cpu).unwrap());
        let inv_same = t.pair_of(&[c], &inv_std.c.to_vec(&t.cpu).unwrap());
        let dy = t.random(&xd);
        let mut dx = t.nans(&xd);
        let mut dgamma = t.nans(&[c]);
        let mut dbeta = t.nans(&[c]);
        ops::batch_norm_backward(
            &t.cpu,
            &x.c,
            &y_same.c,
            &dy.c,
            &gamma.c,
            BatchNormSaved {
                mean: &mean_same.c,
                inv_std: &inv_same.c,
                beta: &beta.c,
            },
            &mut dx.c,
            &mut dgamma.c,
            &mut dbeta.c,
            relu,
        )
        .unwrap();
        ops::batch_norm_backward(
            &t.gpu,
            &x.g,
            &y_same.g,
            &dy.g,
            &gamma.g,
            BatchNormSaved {
                mean: &mean_same.g,
                inv_std: &inv_same.g,
                beta: &beta.g,
            },
            &mut dx.g,
            &mut dgamma.g,
            &mut dbeta.g,
            relu,
        )
        .unwrap();
        t.assert_close(&format!("bn dbeta {name}"), &dbeta, m);
        t.assert_close(&format!("bn dgamma {name}"), &dgamma, m);
        t.assert_close(&format!("bn dx {name}"), &dx, m);
    }
}

/// Each pair of GPU tensors holds the same bits.
fn assert_same_bits<const N: usize>(
    be: &Gpu,
    context: &str,
    pairs: [(&str, &Tensor<Gpu>, &Tensor<Gpu>); N],
) {
    for (what, a, b) in pairs {
        let (a, b) = (a.to_vec(be).unwrap(), b.to_vec(be).unwrap());
        let same = a.len() == b.len() && a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what} ({context}): {a:?} against {b:?}");
    }
}

/// The end of a residual block's backward as one op (`batch_norm_add_relu_backward`): on the GPU
/// it must equal `add_backward` (ReLU) followed by BN's backward without a ReLU bit for bit, in f32
/// and in bf16, since both feed the same masked gradient to the same reductions in the same order;
/// against the CPU (which runs that pair), `dsum` is exact and the rest within the module's
/// tolerance for sums of M terms.
#[test]
fn batch_norm_add_relu_backward_equals_add_then_batch_norm_backward() {
    let mut t = Both::new(21);
    for xd in [[2, 5, 3, 7], [3, 13, 11, 16]] {
        let c = xd[3];
        let m = xd[0] * xd[1] * xd[2];
        let name = format!("x {xd:?}");
        let x = t.uniform(&xd, 0.5, 2.5);
        // About half the block's outputs are clamped: the mask matters.
        let out = t.random(&xd);
        let dout = t.random(&xd);
        let gamma = t.uniform(&[c], 0.5, 1.5);
        let beta = t.random(&[c]);
        let mean = t.uniform(&[c], 0.5, 2.5);
        let inv_std = t.uniform(&[c], 0.5, 2.0);
        let (mut dx, mut dsum) = (t.nans(&xd), t.nans(&xd));
        let (mut dgamma, mut dbeta) = (t.nans(&[c]), t.nans(&[c]));
        ops::batch_norm_add_relu_backward(
            &t.cpu,
            &x.c,
            &out.c,
            &dout.c,
            &gamma.c,
            BatchNormSaved {
                mean: &mean.c,
                inv_std: &inv_std.c,
                beta: &beta.c,
            },
            &mut dx.c,
            &mut dsum.c,
            &mut dgamma.c,
            &mut dbeta.c,
        )
        .unwrap();
        ops::batch_norm_add_relu_backward(
            &t.gpu,
            &x.g,
            &out.g,
            &dout.g,
            &gamma.g,
            BatchNormSaved {
                mean: &mean.g,
                inv_std: &inv_std.g,
                beta: &beta.g,
            },
            &mut dx.g,
            &mut dsum.g,
            &mut dgamma.g,
            &mut dbeta.g,
        )
        .unwrap();
        t.assert_exact(&format!("dsum {name}"), &dsum);
        t.assert_close(&format!("dbeta {name}"), &dbeta, m);
        t.assert_close(&format!("dgamma {name}"), &dgamma, m);
        t.assert_close(&format!("dx {name}"), &dx, m);

        for precision in [Precision::F32, Precision::Bf16] {
            let be = gpu().with_precision(precision);
            let host = |p: &Pair| p.c.to_vec(&t.cpu).unwrap();
            let on_gpu = |p: &Pair, activation: bool| {
                let mut g = Tensor::from_slice(&be, p.c.dims(), &host(p)).unwrap();
                if activation {
                    be.to_activation_dtype(&mut g).unwrap();
                }
                g
            };
            let (x, out, dout) = (on_gpu(&x, true), on_gpu(&out, true), on_gpu(&dout, true));
            let (gamma, beta) = (on_gpu(&gamma, false), on_gpu(&beta, false));
            let (mean, inv_std) = (on_gpu(&mean, false), on_gpu(&inv_std, false));
            let saved = || BatchNormSaved {
                mean: &mean,
                inv_std: &inv_std,
                beta: &beta,
            };
            let fresh = |dims: &[usize]| Tensor::<Gpu>::zeros(&be, dims).unwrap();
            let (mut dx, mut dsum, mut dgamma, mut dbeta) =
                (fresh(&xd), fresh(&xd), fresh(&[c]), fresh(&[c]));
            ops::batch_norm_add_relu_backward(
                &be,
                &x,
                &out,
                &dout,
                &gamma,
                saved(),
                &mut dx,
                &mut dsum,
                &mut dgamma,
                &mut dbeta,
            )
            .unwrap();
            let (mut dx2, mut dsum2, mut dgamma2, mut dbeta2) =
                (fresh(&xd), fresh(&xd), fresh(&[c]), fresh(&[c]));
            ops::add_backward(&be, &out, &dout, &mut dsum2, true).unwrap();
            ops::batch_norm_backward(
                &be,
                &x,
                &out,
                &dsum2,
                &gamma,
                saved(),
                &mut dx2,
                &mut dgamma2,
                &mut dbeta2,
                false,
            )
            .unwrap();
            assert_same_bits(
                &be,
                &format!("{name} {precision:?}, fused against pair"),
                [
                    ("dx", &dx, &dx2),
                    ("dsum", &dsum, &dsum2),
                    ("dgamma", &dgamma, &dgamma2),
                    ("dbeta", &dbeta, &dbeta2),
                ],
            );
        }
    }
}

/// Inputs for one channel of a batch norm whose forward value `x scale + shift` crosses zero among
/// them: `base` values, then 33 probes on the kink `x* = -shift / scale` and 16 steps of the storage
/// type either side (f32 or bf16 bit patterns). The kink comes from the statistics of all the
/// values, probes included, so it is found by iterating (in f64, close enough: the probes span many
/// roundings of it).
fn values_across_the_relu_kink(base: &[f32], gamma: f32, beta: f32, bf16: bool) -> Vec<f32> {
    let step = |v: f32, k: i32| -> f32 {
        if bf16 {
            let b = half::bf16::from_f32(v).to_bits() as i32 + k;
            half::bf16::from_bits(b as u16).to_f32()
        } else {
            f32::from_bits((v.to_bits() as i32 + k) as u32)
        }
    };
    let mut values = base.to_vec();
    // Moving the probes by d moves the kink by about 33 / len d: with a few hundred values, 20
    // rounds bring it well inside the probes' span.
    for _ in 0..20 {
        let m = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / m;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / m;
        let scale = f64::from(gamma) / (var + 1e-5).sqrt();
        let kink = (mean - f64::from(beta) / scale) as f32;
        values.truncate(base.len());
        values.extend((-16..=16).map(|k| step(kink, k)));
    }
    values
}

/// BN's own ReLU mask in the backward is recomputed from `x` and the saved statistics (the
/// forward's affine map, by the forward's own code) instead of being read from `y`: it must be the
/// forward's mask bit for bit, on the kink too, where a rounding difference between the two would
/// flip it. So `batch_norm_backward` (ReLU) must equal `batch_norm_add_relu_backward` given the
/// forward's `y` as the block output (its mask is `y > 0`, and BN's backward is the same
/// arithmetic), bit for bit, on inputs crowding each channel's kink, in f32 and in bf16.
#[test]
fn batch_norm_backward_relu_mask_is_the_forwards_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (rows, c) = (256, 8);
    for precision in [Precision::F32, Precision::Bf16] {
        let bf16 = precision == Precision::Bf16;
        let be = gpu().with_precision(precision);
        let gamma: Vec<f32> = (0..c).map(|_| rng.random_range(0.5..1.5)).collect();
        let beta: Vec<f32> = (0..c).map(|_| rng.random_range(-1.0..1.0)).collect();
        // Channel-major first, then laid out as [rows, c].
        let columns: Vec<Vec<f32>> = (0..c)
            .map(|ch| {
                let base: Vec<f32> = (0..rows - 33)
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect();
                values_across_the_relu_kink(&base, gamma[ch], beta[ch], bf16)
            })
            .collect();
        let x_host: Vec<f32> = (0..rows * c).map(|i| columns[i % c][i / c]).collect();
        let dy_host: Vec<f32> = (0..rows * c).map(|_| rng.random_range(-1.0..1.0)).collect();
        let shape = [1, rows, 1, c];
        let activation = |data: &[f32]| {
            let mut t = Tensor::from_slice(&be, shape, data).unwrap();
            be.to_activation_dtype(&mut t).unwrap();
            t
        };
        let channel = |data: &[f32]| Tensor::from_slice(&be, [c], data).unwrap();
        let (x, dy) = (activation(&x_host), activation(&dy_host));
        let (gamma_t, beta_t) = (channel(&gamma), channel(&beta));
        let zeros = |dims: &[usize]| Tensor::<Gpu>::zeros(&be, dims).unwrap();
        let (mut y, mut mean, mut inv_std) = (zeros(&shape), zeros(&[c]), zeros(&[c]));
        be.to_activation_dtype(&mut y).unwrap();
        let (mut running_mean, mut running_var) = (zeros(&[c]), channel(&vec![1.0; c]));
        let cfg = BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            relu: true,
        };
        ops::batch_norm_forward_train(
            &be,
            &x,
            &gamma_t,
            &beta_t,
            &mut y,
            &mut mean,
            &mut inv_std,
            &mut running_mean,
            &mut running_var,
            cfg,
        )
        .unwrap();
        // Not vacuous: in every channel, the probes straddle the kink.
        let y_host = y.to_vec(&be).unwrap();
        for ch in 0..c {
            let probes: Vec<f32> = (rows - 33..rows).map(|r| y_host[r * c + ch]).collect();
            assert!(
                probes.contains(&0.0) && probes.iter().any(|&v| v > 0.0),
                "{precision:?} channel {ch}: the probes do not straddle the kink: {probes:?}"
            );
        }
        let saved = || BatchNormSaved {
            mean: &mean,
            inv_std: &inv_std,
            beta: &beta_t,
        };
        let (mut dx, mut dgamma, mut dbeta) = (zeros(&shape), zeros(&[c]), zeros(&[c]));
        ops::batch_norm_backward(
            &be,
            &x,
            &y,
            &dy,
            &gamma_t,
            saved(),
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            true,
        )
        .unwrap();
        let (mut dx2, mut dsum2, mut dgamma2, mut dbeta2) =
            (zeros(&shape), zeros(&shape), zeros(&[c]), zeros(&[c]));
        ops::batch_norm_add_relu_backward(
            &be,
            &x,
            &y,
            &dy,
            &gamma_t,
            saved(),
            &mut dx2,
            &mut dsum2,
            &mut dgamma2,
            &mut dbeta2,
        )
        .unwrap();
        assert_same_bits(
            &be,
            &format!("{precision:?}, mask from x against from y"),
            [
                ("dx", &dx, &dx2),
                ("dgamma", &dgamma, &dgamma2),
                ("dbeta", &dbeta, &dbeta2),
            ],
        );
    }
}

#[test]
fn add_shortcut_copy_and_sgd_are_exact() {
    let mut t = Both::new(3);
    for relu in [false, true] {
        let shape = [2, 5, 3, 7];
        let a = t.random(&shape);
        let b = t.random(&shape);
        let mut y = t.nans(&shape);
        ops::add_forward(&t.cpu, &a.c, &b.c, &mut y.c, relu).unwrap();
        ops::add_forward(&t.gpu, &a.g, &b.g, &mut y.g, relu).unwrap();
        t.assert_exact(&format!("add relu {relu}"), &y);
        let dy = t.random(&shape);
        let mut ds = t.nans(&shape);
        ops::add_backward(&t.cpu, &y.c, &dy.c, &mut ds.c, relu).unwrap();
        ops::add_backward(&t.gpu, &y.g, &dy.g, &mut ds.g, relu).unwrap();
        t.assert_exact(&format!("add backward relu {relu}"), &ds);
    }

    // Option A: odd spatial sizes with stride 2, 3 -> 6 and 5 -> 10 channels, and the identity.
    for (xd, cout, stride) in [
        ([2, 7, 5, 3], 6, 2),
        ([1, 4, 6, 5], 10, 2),
        ([2, 3, 3, 5], 5, 1),
    ] {
        let yd = ops::shortcut_a_output_shape(&xd, cout, stride);
        let x = t.random(&xd);
        let mut y = t.nans(&yd);
        ops::shortcut_a_forward(&t.cpu, &x.c, &mut y.c, stride).unwrap();
        ops::shortcut_a_forward(&t.gpu, &x.g, &mut y.g, stride).unwrap();
        t.assert_exact(&format!("shortcut A x {xd:?} -> {yd:?}"), &y);
        let dy = t.random(&yd);
        let mut dx = t.nans(&xd);
        ops::shortcut_a_backward(&t.cpu, &dy.c, &mut dx.c, stride).unwrap();
        ops::shortcut_a_backward(&t.gpu, &dy.g, &mut dx.g, stride).unwrap();
        t.assert_exact(&format!("shortcut A backward x {xd:?}"), &dx);
    }

    let src = t.random(&[3, 37]);
    let mut dst = t.nans(&[3, 37]);
    ops::copy(&t.cpu, &src.c, &mut dst.c).unwrap();
    ops::copy(&t.gpu, &src.g, &mut dst.g).unwrap();
    t.assert_exact("copy", &dst);

    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let mut w = t.random(&[5, 3, 3, 7]);
    let mut v = t.random(&[5, 3, 3, 7]);
    let g = t.random(&[5, 3, 3, 7]);
    for _ in 0..2 {
        ops::sgd_update(&t.cpu, &mut w.c, &g.c, &mut v.c, cfg).unwrap();
        ops::sgd_update(&t.gpu, &mut w.g, &g.g, &mut v.g, cfg).unwrap();
    }
    t.assert_exact("sgd w", &w);
    t.assert_exact("sgd v", &v);
}

#[test]
fn pooling_matches_cpu() {
    let mut t = Both::new(4);
    let xd = [3, 5, 7, 6];
    let x = t.random(&xd);
    let mut y = t.nans(&[3, 6]);
    ops::global_avg_pool_forward(&t.cpu, &x.c, &mut y.c).unwrap();
    ops::global_avg_pool_forward(&t.gpu, &x.g, &mut y.g).unwrap();
    t.assert_close("global avg pool", &y, 5 * 7);
    let dy = t.random(&[3, 6]);
    let mut dx = t.nans(&xd);
    ops::global_avg_pool_backward(&t.cpu, &dy.c, &mut dx.c).unwrap();
    ops::global_avg_pool_backward(&t.gpu, &dy.g, &mut dx.g).unwrap();
    t.assert_exact("global avg pool backward", &dx);

    // ResNet's 3/2/1 and other windows; small integers make ties, which must route to the first
    // maximum as on the CPU. Gradients are small integers too, so every sum is exact.
    for (xd, window, stride, pad) in [
        ([2, 9, 7, 5], 3, 2, 1),
        ([1, 6, 5, 3], 2, 2, 0),
        ([1, 8, 9, 6], 3, 1, 1),
        ([2, 10, 11, 3], 5, 3, 2),
    ] {
        let geom = PoolGeometry {
            window,
            stride,
            pad,
        };
        let yd = ops::max_pool_output_shape("test", &xd, geom).unwrap();
        let name = format!("x {xd:?} {window}/{stride}/{pad}");
        for (lo, hi) in [(-2, 2), (-100, 100)] {
            let x = t.ints(&xd, lo, hi);
            let mut y = t.nans(&yd);
            ops::max_pool_forward(&t.cpu, &x.c, &mut y.c, geom).unwrap();
            ops::max_pool_forward(&t.gpu, &x.g, &mut y.g, geom).unwrap();
            t.assert_exact(&format!("max pool {name}"), &y);
            let dy = t.ints(&yd, -8, 8);
            let mut dx = t.nans(&xd);
            ops::max_pool_backward(&t.cpu, &x.c, &dy.c, &mut dx.c, geom).unwrap();
            ops::max_pool_backward(&t.gpu, &x.g, &dy.g, &mut dx.g, geom).unwrap();
            t.assert_exact(&format!("max pool backward {name}"), &dx);
        }
    }
}

#[test]
fn linear_matches_cpu() {
    let mut t = Both::new(5);
    // Sizes straddling the 16-wide GEMM tiles, and batch 1.
    for (n, fin, fout) in [(5, 37, 19), (1, 16, 10), (33, 17, 3)] {
        let name = format!("{n}x{fin} -> {fout}");
        let x = t.random(&[n, fin]);
        let w = t.random(&[fout, fin]);
        let b = t.random(&[fout]);
        let mut y = t.nans(&[n, fout]);
        ops::linear_forward(&t.cpu, &x.c, &w.c, &b.c, &mut y.c).unwrap();
        ops::linear_forward(&t.gpu, &x.g, &w.g, &b.g, &mut y.g).unwrap();
        t.assert_close(&format!("linear {name}"), &y, fin + 1);

        let dy = t.random(&[n, fout]);
        let mut dx = t.nans(&[n, fin]);
        let mut dw = t.nans(&[fout, fin]);
        let mut db = t.nans(&[fout]);
        ops::linear_backward(
            &t.cpu,
            &x.c,
            &w.c,
            &dy.c,
            Some(&mut dx.c),
            &mut dw.c,
            &mut db.c,
        )
        .unwrap();
        ops::linear_backward(
            &t.gpu,
            &x.g,
            &w.g,
            &dy.g,
            Some(&mut dx.g),
            &mut dw.g,
            &mut db.g,
        )
        .unwrap();
        t.assert_close(&format!("linear dx {name}"), &dx, fout);
        t.assert_close(&format!("linear dw {name}"), &dw, n);
        t.assert_close(&format!("linear db {name}"), &db, n);

        // Without dx.
        let mut dw2 = t.nans(&[fout, fin]);
        let mut db2 = t.nans(&[fout]);
        ops::linear_backward(&t.gpu, &x.g, &w.g, &dy.g, None, &mut dw2.g, &mut db2.g).unwrap();
        assert_eq!(
            dw2.g.to_vec(&t.gpu).unwrap(),
            dw.g.to_vec(&t.gpu).unwrap(),
            "dw without dx"
        );
    }
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let mut t = Both::new(6);
    // Integer logits make ties, which the rank must break by class index like the CPU.
    for (n, classes, ints) in [(7, 13, true), (1, 10, false), (40, 6, true), (9, 10, false)] {
        let logits = if ints {
            t.ints(&[n, classes], -2, 2)
        } else {
            t.uniform(&[n, classes], -4.0, 4.0)
        };
        let labels: Vec<u32> = (0..n)
            .map(|_| t.rng.random_range(0..classes as u32))
            .collect();
        let mut dz = t.nans(&[n, classes]);
        let sc = ops::softmax_cross_entropy(&t.cpu, &logits.c, &labels, &mut dz.c).unwrap();
        let sg = ops::softmax_cross_entropy(&t.gpu, &logits.g, &labels, &mut dz.g).unwrap();
        let name = format!("{n}x{classes}");
        assert_eq!(sg.top1_correct, sc.top1_correct, "top1 {name}");
        assert_eq!(sg.top5_correct, sc.top5_correct, "top5 {name}");
        // The loss is a mean over n samples, each a sum over the classes.
        assert_close(
            &format!("loss {name}"),
            &[sg.loss as f32],
            &[sc.loss as f32],
            n * classes,
        );
        t.assert_close(&format!("dlogits {name}"), &dz, classes);
    }
}

/// Every parameter's value and gradient, in the network's order.
fn params_of<B: Backend<Elem = f32>>(
    be: &B,
    net: &mut Network<B>,
) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let mut out = Vec::new();
    net.visit_params(&mut |p| {
        out.push((
            p.name.clone(),
            p.value.to_vec(be).unwrap(),
            p.grad.to_vec(be).unwrap(),
        ))
    });
    out
}

/// max |a - b| <= rel * max |b|.
fn assert_rel(what: &str, a: &[f32], b: &[f32], rel: f32) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= rel * scale,
        "{what}: max |gpu - cpu| {err} > {rel} * max|cpu| {scale}"
    );
}

#[test]
fn resnet8_training_step_matches_cpu() {
    let config = ModelConfig::from_name("resnet8", 10)
        .unwrap()
        .with_shortcut(ShortcutOption::A);
    // A small batch of small images keeps the emulator quick; the stages still halve 12 -> 6 -> 3.
    training_step_matches_cpu(config, 3, 12, 11);
}

/// Option B: the projection shortcuts (1x1 stride-2 conv + BN) where the shape changes.
#[test]
fn resnet8_option_b_training_step_matches_cpu() {
    let config = ModelConfig::from_name("resnet8", 10)
        .unwrap()
        .with_shortcut(ShortcutOption::B);
    training_step_matches_cpu(config, 2, 10, 21);
}

/// The ImageNet family cut down: 7x7/2 stem, 3x3/2 max pool, then one bottleneck block (1x1, 3x3, 1x1
/// with 4x expansion and a projection shortcut) in each of two stages: 24 -> 12 -> 6 -> 6 -> 3.
#[test]
fn tiny_bottleneck_training_step_matches_cpu() {
    let mut config = ModelConfig::from_name("resnet50", 7).unwrap();
    config.stage_blocks = vec![1, 1];
    config.stage_channels = vec![32, 64];
    training_step_matches_cpu(config, 2, 24, 31);
}

/// One training step of `config` on `n` random `side x side` images on both backends: the loss to 1e-5
/// relative, top-1/top-5 counts exactly, and every gradient and updated weight to 1e-4 of its largest
/// magnitude (many layers of f32 sums in different orders; the per-op bound above, compounded).
fn training_step_matches_cpu(config: ModelConfig, n: usize, side: usize, seed: u64) {
    let cpu = Cpu::new();
    let gpu = gpu();
    let classes = config.num_classes;
    let mut net_c =
        Network::new(&cpu, config.clone(), &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
    let mut net_g = Network::new(&gpu, config, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let pixels: Vec<f32> = (0..n * side * side * 3)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<u32> = (0..n)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    let x_c = Tensor::from_slice(&cpu, [n, side, side, 3], &pixels).unwrap();
    let x_g = Tensor::from_slice(&gpu, [n, side, side, 3], &pixels).unwrap();

    let before_c = params_of(&cpu, &mut net_c);
    let before_g = params_of(&gpu, &mut net_g);
    for ((name, vg, _), (_, vc, _)) in before_g.iter().zip(&before_c) {
        assert_eq!(vg, vc, "{name}: both nets start from the same weights");
    }

    let stats_c = net_c.forward_backward(&cpu, &x_c, &labels).unwrap();
    let stats_g = net_g.forward_backward(&gpu, &x_g, &labels).unwrap();
    let loss_rel = ((stats_g.loss - stats_c.loss) / stats_c.loss).abs();
    assert!(
        loss_rel <= 1e-5,
        "loss gpu {} cpu {} (relative {loss_rel})",
        stats_g.loss,
        stats_c.loss
    );
    assert_eq!(stats_g.top1_correct, stats_c.top1_correct);
    assert_eq!(stats_g.top5_correct, stats_c.top5_correct);

    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let mut sgd_c = Sgd::new(cfg);
    let mut sgd_g = Sgd::new(cfg);
    sgd_c.step(&cpu, &mut net_c).unwrap();
    sgd_g.step(&gpu, &mut net_g).unwrap();

    let after_c = params_of(&cpu, &mut net_c);
    let after_g = params_of(&gpu, &mut net_g);
    assert_eq!(after_c.len(), after_g.len());
    for ((name, vg, gg), (_, vc, gc)) in after_g.iter().zip(&after_c) {
        assert_rel(&format!("{name} gradient"), gg, gc, 1e-4);
        assert_rel(&format!("{name} updated"), vg, vc, 1e-4);
    }
}

/// Enough rows (M = 33 800) for 133 row partitions, more than the 128 threads of the finalize blocks;
/// and a second run gives bit-identical results (fixed partition, no atomics).
#[test]
fn batch_norm_many_partitions_is_deterministic() {
    let mut t = Both::new(7);
    let xd = [2, 130, 130, 3];
    let (m, c) = (2 * 130 * 130, 3);
    let cfg = BatchNormConfig {
        eps: 1e-5,
        momentum: 0.1,
        relu: true,
    };
    let x = t.uniform(&xd, -1.0, 3.0);
    let gamma = t.uniform(&[c], 0.5, 1.5);
    let beta = t.random(&[c]);
    let dy = t.random(&xd);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut rm = t.pair_of(&[c], &[0.0; 3]);
        let mut rv = t.pair_of(&[c], &[1.0; 3]);
        let mut y = t.nans(&xd);
        let mut mean = t.nans(&[c]);
        let mut inv_std = t.nans(&[c]);
        ops::batch_norm_forward_train(
            &t.cpu,
            &x.c,
            &gamma.c,
            &beta.c,
            &mut y.c,
            &mut mean.c,
            &mut inv_std.c,
            &mut rm.c,
            &mut rv.c,
            cfg,
        )
        .unwrap();
        ops::batch_norm_forward_train(
            &t.gpu,
            &x.g,
            &gamma.g,
            &beta.g,
            &mut y.g,
            &mut mean.g,
            &mut inv_std.g,
            &mut rm.g,
            &mut rv.g,
            cfg,
        )
        .unwrap();
        t.assert_close("bn mean", &mean, m);
        t.assert_close("bn inv_std", &inv_std, m);
        t.assert_close("bn running_mean", &rm, m);
        t.assert_close("bn running_var", &rv, m);
        t.assert_close("bn y", &y, m);

        // The backward on the CPU forward's statistics on both sides (each backend takes the ReLU
        // mask from x and them).
        let y_same = t.pair_of(&xd, &y.c.to_vec(&t.cpu).unwrap());
        let mean_same = t.pair_of(&[c], &mean.c.to_vec(&t.cpu).unwrap());
        let inv_same = t.pair_of(&[c], &inv_std.c.to_vec(&t.cpu).unwrap());
        let mut dx = t.nans(&xd);
        let mut dgamma = t.nans(&[c]);
        let mut dbeta = t.nans(&[c]);
        ops::batch_norm_backward(
            &t.cpu,
            &x.c,
            &y_same.c,
            &dy.c,
            &gamma.c,
            BatchNormSaved {
                mean: &mean_same.c,
                inv_std: &inv_same.c,
                beta: &beta.c,
            },
            &mut dx.c,
            &mut dgamma.c,
            &mut dbeta.c,
            true,
        )
        .unwrap();
        ops::batch_norm_backward(
            &t.gpu,
            &x.g,
            &y_same.g,
            &dy.g,
            &gamma.g,
            BatchNormSaved {
                mean: &mean_same.g,
                inv_std: &inv_same.g,
                beta: &beta.g,
            },
            &mut dx.g,
            &mut dgamma.g,
            &mut dbeta.g,
            true,
        )
        .unwrap();
        t.assert_close("bn dbeta", &dbeta, m);
        t.assert_close("bn dgamma", &dgamma, m);
        t.assert_close("bn dx", &dx, m);
        let bits = |p: &Pair| -> Vec<u32> {
            p.g.to_vec(&t.gpu)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        runs.push([
            bits(&y),
            bits(&mean),
            bits(&inv_std),
            bits(&rv),
            bits(&dx),
            bits(&dgamma),
            bits(&dbeta),
        ]);
    }
    assert!(
        runs[0] == runs[1],
        "a second run gives bit-identical results"
    );
}

#[test]
fn the_backend_counts_launches_host_syncs_and_allocations() {
    let be = gpu();
    let count = || be.device_counts().expect("the GPU backend counts");
    let start = count();
    let a = Tensor::from_slice(&be, [2, 3], &[1.0, -2.0, 3.0, -4.0, 5.0, -6.0]).unwrap();
    let b = Tensor::from_slice(&be, [2, 3], &[0.5; 6]).unwrap();
    let mut y = Tensor::zeros(&be, [2, 3]).unwrap();
    let allocated = count().since(&start);
    assert_eq!(allocated.allocations, 3, "{allocated:?}");
    assert_eq!(
        allocated.launches, 0,
        "uploads launch nothing: {allocated:?}"
    );

    let before = count();
    ops::add_forward(&be, &a, &b, &mut y, true).unwrap();
    ops::add_forward(&be, &a, &b, &mut y, false).unwrap();
    let added = count().since(&before);
    assert_eq!((added.launches, added.host_syncs), (2, 0), "{added:?}");

    let before = count();
    let host = y.to_vec(&be).unwrap();
    be.synchronize().unwrap();
    let read = count().since(&before);
    assert_eq!(host, vec![1.5, -1.5, 3.5, -3.5, 5.5, -5.5]);
    // The read waits for the device, and so does the explicit synchronisation.
    assert_eq!((read.launches, read.host_syncs), (0, 2), "{read:?}");
    assert_eq!(Cpu::new().device_counts(), None);
}

/// emu_selftest_bounded's limits as nvcc compiles them (kernels/emu_selftest.cu): __launch_bounds__(128)
/// and an 8 KiB static array.
const BOUNDED: KernelLimits = KernelLimits {
    max_threads: 128,
    static_shared_bytes: 8192,
};

#[test]
#[cfg_attr(
    not(resnet_kernels_compiled),
    ignore = "needs the limits nvcc's output gives each kernel: a build with nvcc"
)]
fn a_launch_beyond_what_its_kernel_was_compiled_for_is_refused() {
    // On a GPU the driver refuses these launches; the emulator refuses the same ones from the limits
    // build.rs read from nvcc's PTX and ptxas's report. The sizes are sm_90's (227 KiB a block with
    // the opt-in).
    let be = gpu();
    let driver = be.driver();
    let kernel = "emu_selftest_bounded";
    assert_eq!(driver.kernel_limits(kernel).unwrap(), BOUNDED);
    let (blocks, threads) = (2usize, 128usize);
    let bytes = blocks * threads * 4;
    let out = driver.alloc(bytes).unwrap();
    // SAFETY: the kernel takes (int*) and writes out[0..blocks * its block size), at most `bytes`
    // for the blocks launched here (a larger block is refused before it runs).
    let launch = |threads: usize, shared: u32| unsafe {
        let mut args = KernelArgs::new().ptr(out);
        driver.launch(
            kernel,
            (blocks as u32, 1, 1),
            (threads as u32, 1, 1),
            shared,
            &mut args.params(),
        )
    };
    launch(threads, 40 * 1024).expect("the bound, with all the 48 KiB default leaves beside 8 KiB");
    let mut host = vec![i32::MIN; blocks * threads];
    // SAFETY: `host` has room for `bytes`; the copy waits for the launch.
    unsafe { driver.copy_device_to_host(out, host.as_mut_ptr().cast(), bytes) }.unwrap();
    let expected: Vec<i32> = (0..blocks * threads)
        .map(|i| (threads - i % threads) as i32)
        .collect();
    assert_eq!(host, expected);

    let err = launch(160, 1024).expect_err("160 threads").to_string();
    assert!(err.contains(kernel), "{err}");
    launch(threads, 40 * 1024 + 4).expect_err("more than 48 KiB in all without opting in");
    driver
        .set_max_dynamic_shared(kernel, 219 * 1024 + 4)
        .expect_err("more than 227 KiB in all");
    driver.set_max_dynamic_shared(kernel, 219 * 1024).unwrap();
    launch(threads, 219 * 1024).expect("227 KiB in all after opting in");
    driver.synchronize().unwrap();
    // SAFETY: allocated above with this size; the launches have finished.
    unsafe { driver.free(out, bytes) };
}

#[test]
#[cfg_attr(
    not(resnet_kernels_compiled),
    ignore = "needs the limits nvcc's output gives each kernel: a build with nvcc"
)]
fn every_kernel_has_the_limits_build_rs_read_from_nvcc() {
    // On a GPU: the driver's attributes of each loaded kernel against what build.rs computed from
    // the PTX's .maxntid and ptxas's registers and shared memory (the smallest thread limit over the
    // architectures compiled, so it may be below this GPU's, never above it). On the emulator, which
    // enforces the computed limits: every kernel it has is among them, and every one of them is its.
    let be = gpu();
    let driver = be.driver();
    let compiled: Vec<_> = kernel_limits::all_compiled().collect();
    let mut differ = Vec::new();
    let mut checked = 0;
    for (kernel, limits) in &compiled {
        if !driver.has_kernel(kernel) {
            assert_ne!(driver.name(), "emu", "the emulator has no kernel {kernel}");
            continue;
        }
        let actual = driver.kernel_limits(kernel).unwrap();
        assert!(
            limits.max_threads <= actual.max_threads
                && limits.static_shared_bytes == actual.static_shared_bytes,
            "{kernel}: build.rs computed {limits:?}, the driver says {actual:?}"
        );
        if *limits != actual {
            differ.push(format!("{kernel}: computed {limits:?}, driver {actual:?}"));
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} kernels checked");
    if driver.name() == "emu" {
        let registered = resnet_cuda::backend::gpu::emu::kernel_names();
        let uncompiled: Vec<String> = registered
            .into_iter()
            .filter(|name| !compiled.iter().any(|(k, _)| k == name))
            .collect();
        // Only the deliberately wrong hand-overs, which ptxas refuses (kernels/wgmma_selftest_sm90a.cu).
        assert_eq!(
            uncompiled,
            (1..=3)
                .map(|v| format!("wgmma_selftest_register_handover_{v}"))
                .collect::<Vec<_>>(),
            "the emulator's kernels that nvcc did not compile"
        );
    }
    // Below this GPU's limit only where another architecture's cubin has more registers.
    eprintln!("{checked} kernels checked; differing: {differ:#?}");
    assert_eq!(
        driver.kernel_limits("emu_selftest_bounded").unwrap(),
        BOUNDED
    );
}

#[test]
fn more_than_48_kib_of_dynamic_shared_memory_without_opting_in_is_refused() {
    // The hardware's rule, which the emulator copies: a block gets 48 KiB of dynamic shared memory
    // unless its kernel opted in (cuFuncSetAttribute on a GPU). emu_selftest_reverse_dynamic
    // reverses each block's chunk of x through dynamic shared memory; it uses 4 KiB of the 64 asked.
    let be = gpu();
    let driver = be.driver();
    let kernel = "emu_selftest_reverse_dynamic";
    let n = 1024usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let bytes = n * 4;
    let (dx, dy) = (driver.alloc(bytes).unwrap(), driver.alloc(bytes).unwrap());
    // SAFETY: both buffers hold n f32; the kernel reads x[0..n) and writes y[0..n) (one block of n).
    let launch = |shared: u32| unsafe {
        let mut args = KernelArgs::new().ptr(dx).ptr(dy).int(n);
        driver.launch(
            kernel,
            (1, 1, 1),
            (n as u32, 1, 1),
            shared,
            &mut args.params(),
        )
    };
    // SAFETY: `x` holds `bytes` bytes.
    unsafe { driver.copy_host_to_device(x.as_ptr().cast(), dx, bytes) }.unwrap();
    let refused = launch(64 * 1024);
    assert!(refused.is_err(), "64 KiB without opting in was accepted");
    driver.set_max_dynamic_shared(kernel, 64 * 1024).unwrap();
    launch(64 * 1024).unwrap();
    let mut y = vec![f32::NAN; n];
    // SAFETY: `y` has room for `bytes` bytes; the launch is ordered before the copy.
    unsafe { driver.copy_device_to_host(dy, y.as_mut_ptr().cast(), bytes) }.unwrap();
    let reversed: Vec<f32> = x.iter().rev().copied().collect();
    assert_eq!(y, reversed);
    // SAFETY: allocated above with these sizes; the copy above synchronised the launch.
    unsafe {
        driver.free(dx, bytes);
        driver.free(dy, bytes);
    }
}

#[test]
fn sgd_on_every_parameter_is_one_launch_and_exact() {
    // Parameters smaller than a chunk, one spanning three chunks (8192 elements each), odd sizes.
    let mut t = Both::new(17);
    let shapes: [&[usize]; 4] = [&[64], &[3, 3, 37, 61], &[10], &[7, 5]];
    let mut params: Vec<(Pair, Pair, Pair)> = shapes
        .iter()
        .map(|s| (t.random(s), t.random(s), t.random(s)))
        .collect();
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    for step in 0..2 {
        for (w, g, v) in params.iter_mut() {
            ops::sgd_update(&t.cpu, &mut w.c, &g.c, &mut v.c, cfg).unwrap();
        }
        let mut tensors: Vec<SgdTensors<'_, Gpu>> = params
            .iter_mut()
            .map(|(w, g, v)| SgdTensors {
                w: &mut w.g,
                g: &g.g,
                v: &mut v.g,
            })
            .collect();
        let before = t.gpu.device_counts().unwrap();
        ops::sgd_update_many(&t.gpu, &mut tensors, cfg).unwrap();
        let counts = t.gpu.device_counts().unwrap().since(&before);
        assert_eq!(counts.launches, 1, "step {step}: {counts:?}");
        // The chunk table goes to the device once; the second step reuses it.
        let table_uploads = if step == 0 { 1 } else { 0 };
        assert_eq!(counts.allocations, table_uploads, "step {step}: {counts:?}");
    }
    for (i, (w, _, v)) in params.iter().enumerate() {
        t.assert_exact(&format!("sgd w of parameter {i}"), w);
        t.assert_exact(&format!("sgd v of parameter {i}"), v);
    }
}
