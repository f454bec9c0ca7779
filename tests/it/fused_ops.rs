//! The fused residual ops against the two ops each stands for, run one after the other on the same
//! backend (the CPU backend and the GPU backend on the emulator):
//!
//! - `conv2d_backward_data_add` = `conv2d_backward_data` then `add_forward` (no ReLU);
//! - `batch_norm_add_forward_train` = `batch_norm_forward_train` (no ReLU) then `add_forward` (with
//!   or without ReLU), statistics included;
//! - `batch_norm_add_relu_backward` = `add_backward` (ReLU) then `batch_norm_backward` (no ReLU):
//!   tests/kernels.rs compares the two on the GPU in f32 and bf16; here, that a residual network's
//!   backward takes it (its kernel runs, `add_backward`'s never does).
//!
//! Tolerance: none. The fused kernels perform the same f32 operations in the same order (the sum is
//! taken on the value the unfused op would have stored), so the results must be bit-identical.
//! Where the fused path runs, the scratch tensor the unfused fallback would fill is left untouched:
//! a NaN sentinel there proves the fusion is taken, not merely that a fallback agrees with itself.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::gpu::GpuBackend;
use resnet_cuda::backend::{Backend, BatchNormConfig, Conv2dGeometry};
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

type Cpu = CpuBackend<f32>;

fn random_values(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn tensor<B: Backend<Elem = f32>>(be: &B, dims: &[usize], v: &[f32]) -> Tensor<B> {
    Tensor::from_slice(be, dims, v).unwrap()
}

fn random<B: Backend<Elem = f32>>(rng: &mut ChaCha8Rng, be: &B, dims: &[usize]) -> Tensor<B> {
    tensor(be, dims, &random_values(rng, dims.iter().product()))
}

fn nan_filled<B: Backend<Elem = f32>>(be: &B, dims: &[usize]) -> Tensor<B> {
    tensor(be, dims, &vec![f32::NAN; dims.iter().product()])
}

fn values<B: Backend<Elem = f32>>(be: &B, t: &Tensor<B>) -> Vec<f32> {
    t.to_vec(be).unwrap()
}

fn assert_bits(what: &str, fused: &[f32], unfused: &[f32]) {
    assert_eq!(fused.len(), unfused.len(), "{what}: length");
    for (i, (a, b)) in fused.iter().zip(unfused).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}[{i}]: fused {a} vs unfused {b}"
        );
    }
}

/// `(n, h, w, c, k, stride, fused)`: whether the CPU fuses that shape (Winograd: 3x3, stride 1,
/// channels in multiples of 16). 16x16 images are one parallel task each, so the addend is read at
/// every task's own offset.
const CONV_CASES: [(usize, usize, usize, usize, usize, usize, bool); 5] = [
    (3, 9, 7, 16, 32, 1, true),
    (3, 16, 16, 16, 16, 1, true),
    (2, 8, 8, 32, 16, 1, true),
    (2, 9, 9, 16, 16, 2, false),
    (2, 6, 6, 8, 16, 1, false),
];

#[test]
fn conv_backward_data_add_is_bit_identical_to_conv_then_add() {
    conv_backward_data_add_matches_the_op_pair(&Cpu::new(), |cpu_fuses| cpu_fuses);
}

#[test]
fn gpu_conv_backward_data_add_is_bit_identical_to_conv_then_add() {
    // The GPU's implicit-GEMM kernels fuse every shape.
    conv_backward_data_add_matches_the_op_pair(&GpuBackend::emulator(), |_| true);
}

/// `fuses(cpu_fuses)`: whether `be` takes the fused path on a case the CPU does (or does not) fuse.
fn conv_backward_data_add_matches_the_op_pair<B: Backend<Elem = f32>>(
    be: &B,
    fuses: impl Fn(bool) -> bool,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (n, h, w, c, k, stride, cpu_fuses) in CONV_CASES {
        let fused = fuses(cpu_fuses);
        let geom = Conv2dGeometry::new(stride, 1);
        let (p, q) = (h.div_ceil(stride), w.div_ceil(stride));
        let wt = random(&mut rng, be, &[k, 3, 3, c]);
        let dy = random(&mut rng, be, &[n, p, q, k]);
        let addend = random(&mut rng, be, &[n, h, w, c]);
        let x_dims = [n, h, w, c];

        let mut conv = Tensor::zeros(be, x_dims).unwrap();
        let mut want = Tensor::zeros(be, x_dims).unwrap();
        ops::conv2d_backward_data(be, &dy, &wt, &mut conv, geom).unwrap();
        ops::add_forward(be, &conv, &addend, &mut want, false).unwrap();

        let mut scratch = nan_filled(be, &x_dims);
        let mut got = Tensor::zeros(be, x_dims).unwrap();
        ops::conv2d_backward_data_add(be, &dy, &wt, &addend, &mut scratch, &mut got, geom).unwrap();
        let case = format!("{n}x{h}x{w}x{c} -> {k}, stride {stride}");
        assert_bits(&case, &values(be, &got), &values(be, &want));
        let untouched = values(be, &scratch).iter().all(|v| v.is_nan());
        assert_eq!(untouched, fused, "{case}: fused path taken");
    }
}

/// `(n, h, w, c)`: channel counts on the 8-lane path and off it.
const BN_CASES: [(usize, usize, usize, usize); 3] = [(4, 5, 7, 16), (3, 4, 4, 5), (2, 3, 3, 8)];

#[test]
fn batch_norm_add_is_bit_identical_to_batch_norm_then_add() {
    batch_norm_add_matches_the_op_pair(&Cpu::new());
}

#[test]
fn gpu_batch_norm_add_is_bit_identical_to_batch_norm_then_add() {
    // The emulator is compiled with contraction on, as nvcc compiles the kernels: the fused kernel
    // must round exactly as normalize followed by add_forward do there too.
    batch_norm_add_matches_the_op_pair(&GpuBackend::emulator());
}

fn batch_norm_add_matches_the_op_pair<B: Backend<Elem = f32>>(be: &B) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (n, h, w, c) in BN_CASES {
        for relu in [true, false] {
            let dims = [n, h, w, c];
            let x = random(&mut rng, be, &dims);
            let residual = random(&mut rng, be, &dims);
            let gamma = random(&mut rng, be, &[c]);
            let beta = random(&mut rng, be, &[c]);
            let running_mean0 = random_values(&mut rng, c);
            let cfg = BatchNormConfig {
                eps: 1e-5,
                momentum: 0.1,
                relu,
            };
            // [save_mean, save_inv_std, running_mean, running_var] for each path.
            let stats = |be: &B| -> Vec<Tensor<B>> {
                let zeros = vec![0.0f32; c];
                let ones = vec![1.0f32; c];
                [&zeros, &zeros, &running_mean0, &ones]
                    .map(|v| tensor(be, &[c], v))
                    .into()
            };

            let mut u = stats(be);
            let mut y = Tensor::zeros(be, dims).unwrap();
            let mut want = Tensor::zeros(be, dims).unwrap();
            let [m, s, rm, rv] = &mut u[..] else {
                unreachable!()
            };
            let bn_cfg = BatchNormConfig { relu: false, ..cfg };
            ops::batch_norm_forward_train(be, &x, &gamma, &beta, &mut y, m, s, rm, rv, bn_cfg)
                .unwrap();
            ops::add_forward(be, &y, &residual, &mut want, relu).unwrap();

            let mut f = stats(be);
            let mut scratch = nan_filled(be, &dims);
            let mut got = Tensor::zeros(be, dims).unwrap();
            let [m, s, rm, rv] = &mut f[..] else {
                unreachable!()
            };
            ops::batch_norm_add_forward_train(
                be,
                &x,
                &gamma,
                &beta,
                &residual,
                &mut scratch,
                &mut got,
                m,
                s,
                rm,
                rv,
                cfg,
            )
            .unwrap();
            let case = format!("{n}x{h}x{w}x{c}, relu {relu}");
            assert_bits(
                &format!("{case}: out"),
                &values(be, &got),
                &values(be, &want),
            );
            for (i, name) in ["save_mean", "save_inv_std", "running_mean", "running_var"]
                .iter()
                .enumerate()
            {
                let (fused, unfused) = (values(be, &f[i]), values(be, &u[i]));
                assert_bits(&format!("{case}: {name}"), &fused, &unfused);
            }
            assert!(
                values(be, &scratch).iter().all(|v| v.is_nan()),
                "{case}: the fused path must not need BN's separate output"
            );
        }
    }
}

/// A residual network's training step on the GPU backend runs the fused end-of-block backward once
/// per block and never the separate `add_backward` (the kernels it launched, as timed one by one).
#[test]
fn residual_blocks_backward_through_the_fused_op() {
    use resnet_cuda::models::{ModelConfig, Network};
    let be = GpuBackend::emulator();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    let mut net = Network::new(&be, config, &mut rng).unwrap();
    let x = random(&mut rng, &be, &[2, 12, 12, 3]);
    assert!(be.set_kernel_timing(true).unwrap());
    net.forward_backward(&be, &x, &[1, 7]).unwrap();
    let kernels: Vec<String> = be
        .take_kernel_times()
        .unwrap()
        .into_iter()
        .map(|t| t.kernel)
        .collect();
    let fused = kernels
        .iter()
        .filter(|k| k.starts_with("batch_norm_add_relu_backward_data"))
        .count();
    assert_eq!(fused, 3, "resnet8 has three residual blocks: {kernels:?}");
    assert!(
        !kernels.iter().any(|k| k.starts_with("add_backward")),
        "{kernels:?}"
    );
}
