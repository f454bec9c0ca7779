//! Op-level checks of the CPU reference backend, through the checked entry points of
//! `resnet_cuda::ops`:
//!
//! - every op with a backward: the analytic gradient against central differences of its forward, in
//!   f64 (tolerances at [`GRAD_TOLERANCE`]), and the forward against a direct formula where finite
//!   differences alone would only prove self-consistency;
//! - batch norm's inference mode and running statistics, the loss's top-k counts and the SGD step
//!   against hand-computed values;
//! - the f32 path against the f64 reference on the same inputs ([`assert_f32_matches`]);
//! - bad calls: an error that names the op and the tensor at fault.

use rand::Rng;
use resnet_cuda::backend::{
    Backend, BatchNormConfig, BatchNormSaved, Conv2dGeometry, Element, PoolGeometry, SgdConfig,
};
use resnet_cuda::ops;

use super::common::*;

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// One convolution: `x: [n, h, w, c]`, `w: [k, r, r, c]`, stride and padding.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    r: usize,
    stride: usize,
    pad: usize,
}

const fn conv(
    n: usize,
    (h, w): (usize, usize),
    (c, k): (usize, usize),
    r: usize,
    stride: usize,
    pad: usize,
) -> ConvCase {
    ConvCase {
        n,
        h,
        w,
        c,
        k,
        r,
        stride,
        pad,
    }
}

/// Checks forward against the direct formula, backward-data against central differences of forward
/// in `x`, and backward-filter against central differences in `w`.
///
/// Runs in a pool of two threads whatever the host: there the batch-3 cases take the backend's
/// batch-split path (two uneven groups of images whose partial filter gradients are summed) and the
/// batch-1 cases its single parallel-GEMM path.
fn check_conv(case: ConvCase, seed: u64) {
    with_threads(2, || check_conv_on_this_pool(case, seed));
}

fn check_conv_on_this_pool(case: ConvCase, seed: u64) {
    let be = Cpu::new();
    let mut rng = seeded(seed);
    let xd = [case.n, case.h, case.w, case.c];
    let wd = [case.k, case.r, case.r, case.c];
    let geom = Conv2dGeometry::new(case.stride, case.pad);
    let yd = ops::conv2d_output_shape("test", &xd, &wd, geom).unwrap();
    let x = uniform(&mut rng, numel(&xd), -1.0, 1.0);
    let w = uniform(&mut rng, numel(&wd), -1.0, 1.0);
    let dy = uniform(&mut rng, numel(&yd), -1.0, 1.0);
    let forward = |x: &[f64], w: &[f64]| {
        let mut y = output(&be, &yd);
        ops::conv2d_forward(
            &be,
            &tensor(&be, &xd, x),
            &tensor(&be, &wd, w),
            &mut y,
            geom,
        )
        .unwrap();
        read(&be, &y)
    };

    let (expected, expected_dims) = conv2d_reference(&x, xd, &w, wd, case.stride, case.pad);
    assert_eq!(expected_dims, yd, "{case:?}: output shape");
    assert_close(
        &format!("conv2d_forward {case:?}"),
        &forward(&x, &w),
        &expected,
        1e-13,
    );

    let dy_t = tensor(&be, &yd, &dy);
    let mut dx = output(&be, &xd);
    ops::conv2d_backward_data(&be, &dy_t, &tensor(&be, &wd, &w), &mut dx, geom).unwrap();
    let mut dw = output(&be, &wd);
    ops::conv2d_backward_filter(&be, &tensor(&be, &xd, &x), &dy_t, &mut dw, geom).unwrap();

    check_gradient(
        &format!("conv2d_backward_data {case:?}"),
        &x,
        &dy,
        &read(&be, &dx),
        |xp| forward(xp, &w),
    );
    check_gradient(
        &format!("conv2d_backward_filter {case:?}"),
        &w,
        &dy,
        &read(&be, &dw),
        |wp| forward(&x, wp),
    );
}

#[test]
fn conv2d_1x1_gradients() {
    // Stride 1 unpadded is the backend's pointwise path (no im2col); the others go through im2col.
    check_conv(conv(3, (7, 5), (3, 5), 1, 1, 0), 11);
    check_conv(conv(1, (9, 9), (5, 3), 1, 1, 0), 12);
    check_conv(conv(3, (7, 5), (3, 5), 1, 2, 0), 13);
    check_conv(conv(1, (9, 9), (5, 3), 1, 2, 0), 14);
    check_conv(conv(3, (7, 5), (5, 3), 1, 1, 1), 15);
}

#[test]
fn conv2d_3x3_gradients() {
    check_conv(conv(3, (7, 5), (3, 5), 3, 1, 1), 21);
    check_conv(conv(1, (9, 9), (5, 3), 3, 1, 1), 22);
    check_conv(conv(3, (9, 9), (3, 5), 3, 2, 1), 23);
    check_conv(conv(1, (7, 5), (5, 3), 3, 2, 1), 24);
    check_conv(conv(3, (7, 5), (5, 3), 3, 1, 0), 25);
    check_conv(conv(1, (9, 9), (3, 5), 3, 2, 0), 26);
}

#[test]
fn conv2d_7x7_gradients() {
    check_conv(conv(1, (9, 9), (3, 5), 7, 2, 3), 31);
    check_conv(conv(3, (7, 5), (3, 5), 7, 2, 3), 32);
    check_conv(conv(3, (9, 9), (3, 3), 7, 1, 3), 33);
    check_conv(conv(1, (9, 9), (5, 3), 7, 1, 0), 34);
}

// ---------------------------------------------------------------------------------------------
// Batch norm
// ---------------------------------------------------------------------------------------------

fn bn_config(relu: bool) -> BatchNormConfig {
    BatchNormConfig {
        eps: 1e-5,
        momentum: 0.1,
        relu,
    }
}

/// Training-mode forward; returns `(y, save_mean, save_inv_std)`.
fn bn_train(
    be: &Cpu,
    xd: [usize; 4],
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    relu: bool,
) -> [Vec<f64>; 3] {
    let c = xd[3];
    let mut y = output(be, &xd);
    let mut mean = output(be, &[c]);
    let mut inv_std = output(be, &[c]);
    let mut running_mean = filled(be, &[c], 0.0);
    let mut running_var = filled(be, &[c], 1.0);
    ops::batch_norm_forward_train(
        be,
        &tensor(be, &xd, x),
        &tensor(be, &[c], gamma),
        &tensor(be, &[c], beta),
        &mut y,
        &mut mean,
        &mut inv_std,
        &mut running_mean,
        &mut running_var,
        bn_config(relu),
    )
    .unwrap();
    [read(be, &y), read(be, &mean), read(be, &inv_std)]
}

/// Random batch-norm inputs: channels with their own offset and spread, so the mean and variance
/// really matter; `gamma` in [0.5, 1.5] and `beta` in [-0.5, 0.5].
fn bn_inputs(seed: u64, xd: [usize; 4]) -> [Vec<f64>; 3] {
    let mut rng = seeded(seed);
    let c = xd[3];
    let offset = uniform(&mut rng, c, -2.0, 2.0);
    let spread = uniform(&mut rng, c, 0.5, 2.0);
    let x = uniform(&mut rng, numel(&xd), -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(i, u)| offset[i % c] + spread[i % c] * u)
        .collect();
    let gamma = uniform(&mut rng, c, 0.5, 1.5);
    let beta = uniform(&mut rng, c, -0.5, 0.5);
    [x, gamma, beta]
}

fn check_batch_norm_gradients(relu: bool, seed: u64) {
    let be = Cpu::new();
    let xd = [3, 5, 7, 4];
    let c = xd[3];
    let [x, gamma, beta] = bn_inputs(seed, xd);
    let dy = uniform(&mut seeded(seed + 1000), numel(&xd), -1.0, 1.0);

    if relu {
        // Finite differences are invalid where a perturbation moves a pre-activation across ReLU's
        // kink at 0. A step of h in any input moves a pre-activation by at most about
        // gamma inv_std h (1 + 2/M) < 1e-4 here, so it suffices that every pre-activation of this
        // seed's data lies at least 1e-3 from 0; `beta` shifts about half of the values to either side.
        let [pre, _, _] = bn_train(&be, xd, &x, &gamma, &beta, false);
        let closest = pre.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
        assert!(
            closest > 1e-3,
            "seed {seed}: a pre-activation is {closest:e} from the kink"
        );
        let dead = pre.iter().filter(|&&v| v < 0.0).count();
        assert!(
            dead > pre.len() / 5 && dead < pre.len() * 4 / 5,
            "ReLU masks {dead} values"
        );
    }

    let [y, mean, inv_std] = bn_train(&be, xd, &x, &gamma, &beta, relu);
    let (mean_t, inv_std_t) = (tensor(&be, &[c], &mean), tensor(&be, &[c], &inv_std));
    let mut dx = output(&be, &xd);
    let mut dgamma = output(&be, &[c]);
    let mut dbeta = output(&be, &[c]);
    ops::batch_norm_backward(
        &be,
        &tensor(&be, &xd, &x),
        &tensor(&be, &xd, &y),
        &tensor(&be, &xd, &dy),
        &tensor(&be, &[c], &gamma),
        BatchNormSaved {
            mean: &mean_t,
            inv_std: &inv_std_t,
            beta: &tensor(&be, &[c], &beta),
        },
        &mut dx,
        &mut dgamma,
        &mut dbeta,
        relu,
    )
    .unwrap();

    let name = if relu {
        "batch_norm+relu"
    } else {
        "batch_norm"
    };
    check_gradient(&format!("{name} dx"), &x, &dy, &read(&be, &dx), |xp| {
        bn_train(&be, xd, xp, &gamma, &beta, relu)[0].clone()
    });
    check_gradient(
        &format!("{name} dgamma"),
        &gamma,
        &dy,
        &read(&be, &dgamma),
        |gp| bn_train(&be, xd, &x, gp, &beta, relu)[0].clone(),
    );
    check_gradient(
        &format!("{name} dbeta"),
        &beta,
        &dy,
        &read(&be, &dbeta),
        |bp| bn_train(&be, xd, &x, &gamma, bp, relu)[0].clone(),
    );
}

#[test]
fn batch_norm_train_gradients() {
    check_batch_norm_gradients(false, 41);
}

#[test]
fn batch_norm_relu_train_gradients() {
    check_batch_norm_gradients(true, 43);
}

#[test]
fn batch_norm_train_forward_matches_formula() {
    let be = Cpu::new();
    let xd = [2, 3, 5, 3];
    let c = xd[3];
    let [x, gamma, beta] = bn_inputs(43, xd);
    let m = numel(&xd) / c;
    for relu in [false, true] {
        let [y, mean, inv_std] = bn_train(&be, xd, &x, &gamma, &beta, relu);
        let mut expected = vec![0.0; x.len()];
        for ch in 0..c {
            let values: Vec<f64> = x.iter().skip(ch).step_by(c).copied().collect();
            let mu = values.iter().sum::<f64>() / m as f64;
            let var = values.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / m as f64;
            let is = 1.0 / (var + 1e-5).sqrt();
            assert!(
                (mean[ch] - mu).abs() <= 1e-14 * mu.abs().max(1.0),
                "save_mean[{ch}]"
            );
            assert!((inv_std[ch] - is).abs() <= 1e-14 * is, "save_inv_std[{ch}]");
            for i in (ch..x.len()).step_by(c) {
                let v = gamma[ch] * (x[i] - mu) * is + beta[ch];
                expected[i] = if relu { v.max(0.0) } else { v };
            }
        }
        assert_close(
            &format!("batch_norm_forward_train relu={relu}"),
            &y,
            &expected,
            1e-13,
        );
    }
}

#[test]
fn batch_norm_infer_matches_formula() {
    let be = Cpu::new();
    let xd = [2, 3, 5, 4];
    let c = xd[3];
    let mut rng = seeded(44);
    let x = uniform(&mut rng, numel(&xd), -3.0, 3.0);
    let gamma = uniform(&mut rng, c, 0.5, 1.5);
    let beta = uniform(&mut rng, c, -0.5, 0.5);
    let running_mean = uniform(&mut rng, c, -1.0, 1.0);
    let running_var = uniform(&mut rng, c, 0.1, 3.0);
    for relu in [false, true] {
        let mut y = output(&be, &xd);
        ops::batch_norm_forward_infer(
            &be,
            &tensor(&be, &xd, &x),
            &tensor(&be, &[c], &gamma),
            &tensor(&be, &[c], &beta),
            &tensor(&be, &[c], &running_mean),
            &tensor(&be, &[c], &running_var),
            &mut y,
            bn_config(relu),
        )
        .unwrap();
        let expected: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i % c;
                let y =
                    gamma[ch] * (v - running_mean[ch]) / (running_var[ch] + 1e-5).sqrt() + beta[ch];
                if relu {
                    y.max(0.0)
                } else {
                    y
                }
            })
            .collect();
        if relu {
            assert!(expected.contains(&0.0), "the data exercises the ReLU");
        }
        assert_close(
            &format!("batch_norm_forward_infer relu={relu}"),
            &read(&be, &y),
            &expected,
            1e-14,
        );
    }
}

#[test]
fn batch_norm_running_statistics_update() {
    // x: [N=2, H=1, W=2, C=2]; channel 0 holds 1, 2, 3, 4 and channel 1 holds -1, 0, 0, 5.
    // Channel 0: mean 5/2, biased variance 5/4, unbiased 5/3.
    // Channel 1: mean 1, squared deviations 4 + 1 + 1 + 16 = 22, biased variance 11/2, unbiased 22/3.
    let be = Cpu::new();
    let xd = [2, 1, 2, 2];
    let x = [1.0, -1.0, 2.0, 0.0, 3.0, 0.0, 4.0, 5.0];
    let x_t = tensor(&be, &xd, &x);
    let gamma = tensor(&be, &[2], &[1.0, 1.0]);
    let beta = tensor(&be, &[2], &[0.0, 0.0]);
    let mut y = output(&be, &xd);
    let mut mean = output(&be, &[2]);
    let mut inv_std = output(&be, &[2]);
    let mut running_mean = tensor(&be, &[2], &[0.5, -2.0]);
    let mut running_var = tensor(&be, &[2], &[2.0, 0.25]);
    // running = 0.9 running + 0.1 batch statistic (unbiased variance), worked by hand:
    //   step 1: mean 0.9*0.5 + 0.1*2.5 = 0.7,      0.9*(-2) + 0.1*1 = -1.7
    //           var  0.9*2 + 0.1*5/3 = 59/30,       0.9*0.25 + 0.1*22/3 = 23/24
    //   step 2: mean 0.9*0.7 + 0.25 = 0.88,        0.9*(-1.7) + 0.1 = -1.43
    //           var  0.9*59/30 + 1/6 = 581/300,     0.9*23/24 + 11/15 = 383/240
    let expected = [
        ([0.7, -1.7], [59.0 / 30.0, 23.0 / 24.0]),
        ([0.88, -1.43], [581.0 / 300.0, 383.0 / 240.0]),
    ];
    let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0);
    for (step, (rm, rv)) in expected.iter().enumerate() {
        ops::batch_norm_forward_train(
            &be,
            &x_t,
            &gamma,
            &beta,
            &mut y,
            &mut mean,
            &mut inv_std,
            &mut running_mean,
            &mut running_var,
            bn_config(false),
        )
        .unwrap();
        let (got_rm, got_rv) = (read(&be, &running_mean), read(&be, &running_var));
        for ch in 0..2 {
            assert!(
                close(got_rm[ch], rm[ch]),
                "step {step}: running_mean[{ch}] {} != {}",
                got_rm[ch],
                rm[ch]
            );
            assert!(
                close(got_rv[ch], rv[ch]),
                "step {step}: running_var[{ch}] {} != {}",
                got_rv[ch],
                rv[ch]
            );
        }
        let (got_mean, got_inv_std) = (read(&be, &mean), read(&be, &inv_std));
        let want_inv_std = [1.0 / (1.25f64 + 1e-5).sqrt(), 1.0 / (5.5f64 + 1e-5).sqrt()];
        for ch in 0..2 {
            assert!(
                close(got_mean[ch], [2.5, 1.0][ch]),
                "save_mean[{ch}] {}",
                got_mean[ch]
            );
            assert!(
                close(got_inv_std[ch], want_inv_std[ch]),
                "save_inv_std[{ch}] {}",
                got_inv_std[ch]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Residual add, option-A shortcut, pooling, linear
// ---------------------------------------------------------------------------------------------

#[test]
fn add_gradients() {
    let be = Cpu::new();
    let dims = [2, 5, 3, 4];
    let len = numel(&dims);
    let mut rng = seeded(51);
    // b = s - a with |s| >= 0.05: no sum lies within a step of ReLU's kink, so finite differences
    // are valid everywhere, and about half the sums are negative, so the mask matters.
    let a = uniform(&mut rng, len, -1.0, 1.0);
    let sum = signed_away_from_zero(&mut rng, len, 0.05, 1.0);
    let b: Vec<f64> = sum.iter().zip(&a).map(|(s, a)| s - a).collect();
    let dy = uniform(&mut rng, len, -1.0, 1.0);
    for relu in [false, true] {
        let forward = |a: &[f64], b: &[f64]| {
            let mut y = output(&be, &dims);
            ops::add_forward(
                &be,
                &tensor(&be, &dims, a),
                &tensor(&be, &dims, b),
                &mut y,
                relu,
            )
            .unwrap();
            read(&be, &y)
        };
        let y = forward(&a, &b);
        let expected: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| if relu { (a + b).max(0.0) } else { a + b })
            .collect();
        assert_close(&format!("add_forward relu={relu}"), &y, &expected, 0.0);
        let mut dsum = output(&be, &dims);
        ops::add_backward(
            &be,
            &tensor(&be, &dims, &y),
            &tensor(&be, &dims, &dy),
            &mut dsum,
            relu,
        )
        .unwrap();
        let dsum = read(&be, &dsum);
        check_gradient(&format!("add relu={relu} da"), &a, &dy, &dsum, |ap| {
            forward(ap, &b)
        });
        check_gradient(&format!("add relu={relu} db"), &b, &dy, &dsum, |bp| {
            forward(&a, bp)
        });
    }
}

fn check_shortcut_a(xd: [usize; 4], out_channels: usize, stride: usize, seed: u64) {
    let be = Cpu::new();
    let mut rng = seeded(seed);
    let yd = ops::shortcut_a_output_shape(&xd, out_channels, stride);
    let x = uniform(&mut rng, numel(&xd), -1.0, 1.0);
    let dy = uniform(&mut rng, numel(&yd), -1.0, 1.0);
    let forward = |x: &[f64]| {
        let mut y = output(&be, &yd);
        ops::shortcut_a_forward(&be, &tensor(&be, &xd, x), &mut y, stride).unwrap();
        read(&be, &y)
    };
    let mut expected = vec![0.0; numel(&yd)];
    for n in 0..yd[0] {
        for p in 0..yd[1] {
            for q in 0..yd[2] {
                for c in 0..xd[3] {
                    expected[at4(yd, [n, p, q, c])] = x[at4(xd, [n, p * stride, q * stride, c])];
                }
            }
        }
    }
    let what = format!("shortcut_a {xd:?} -> {yd:?} stride {stride}");
    assert_close(&what, &forward(&x), &expected, 0.0);
    let mut dx = output(&be, &xd);
    ops::shortcut_a_backward(&be, &tensor(&be, &yd, &dy), &mut dx, stride).unwrap();
    check_gradient(&what, &x, &dy, &read(&be, &dx), forward);
}

#[test]
fn shortcut_a_gradients() {
    check_shortcut_a([3, 7, 5, 3], 6, 2, 61); // odd sizes, channels doubled
    check_shortcut_a([2, 8, 6, 4], 8, 2, 62); // even sizes
    check_shortcut_a([2, 5, 3, 4], 4, 1, 63); // identity
    check_shortcut_a([1, 5, 5, 3], 5, 1, 64); // stride 1, widened
}

#[test]
fn global_avg_pool_gradients() {
    let be = Cpu::new();
    for (xd, seed) in [([3, 5, 7, 4], 71), ([2, 1, 1, 3], 72)] {
        let mut rng = seeded(seed);
        let (n, c) = (xd[0], xd[3]);
        let x = uniform(&mut rng, numel(&xd), -1.0, 1.0);
        let dy = uniform(&mut rng, n * c, -1.0, 1.0);
        let forward = |x: &[f64]| {
            let mut y = output(&be, &[n, c]);
            ops::global_avg_pool_forward(&be, &tensor(&be, &xd, x), &mut y).unwrap();
            read(&be, &y)
        };
        let hw = xd[1] * xd[2];
        let expected: Vec<f64> = (0..n * c)
            .map(|i| {
                (0..hw)
                    .map(|j| x[(i / c * hw + j) * c + i % c])
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        assert_close(
            &format!("global_avg_pool {xd:?}"),
            &forward(&x),
            &expected,
            1e-15,
        );
        let mut dx = output(&be, &xd);
        ops::global_avg_pool_backward(&be, &tensor(&be, &[n, c], &dy), &mut dx).unwrap();
        check_gradient(
            &format!("global_avg_pool {xd:?}"),
            &x,
            &dy,
            &read(&be, &dx),
            forward,
        );
    }
}

const RESNET_POOL: PoolGeometry = PoolGeometry {
    window: 3,
    stride: 2,
    pad: 1,
};

#[test]
fn max_pool_gradients() {
    let be = Cpu::new();
    let geom = RESNET_POOL;
    for (xd, seed) in [([2usize, 9, 7, 3], 81), ([1, 8, 8, 2], 82)] {
        let mut rng = seeded(seed);
        let yd = [xd[0], xd[1].div_ceil(2), xd[2].div_ceil(2), xd[3]];
        // A permutation of 0..len, scaled: all values distinct and 1/len apart, far more than the
        // step, so each window's maximum is unique and stays the maximum under perturbation.
        let len = numel(&xd);
        let x: Vec<f64> = permutation(&mut rng, len)
            .iter()
            .map(|v| v / len as f64)
            .collect();
        let dy = uniform(&mut rng, numel(&yd), -1.0, 1.0);
        let forward = |x: &[f64]| {
            let mut y = output(&be, &yd);
            ops::max_pool_forward(&be, &tensor(&be, &xd, x), &mut y, geom).unwrap();
            read(&be, &y)
        };
        let mut expected = vec![f64::NEG_INFINITY; numel(&yd)];
        for n in 0..yd[0] {
            for p in 0..yd[1] {
                for q in 0..yd[2] {
                    for c in 0..yd[3] {
                        for i in (2 * p).saturating_sub(1)..(2 * p + 2).min(xd[1]) {
                            for j in (2 * q).saturating_sub(1)..(2 * q + 2).min(xd[2]) {
                                let out = &mut expected[at4(yd, [n, p, q, c])];
                                *out = out.max(x[at4(xd, [n, i, j, c])]);
                            }
                        }
                    }
                }
            }
        }
        assert_close(
            &format!("max_pool_forward {xd:?}"),
            &forward(&x),
            &expected,
            0.0,
        );
        let mut dx = output(&be, &xd);
        ops::max_pool_backward(
            &be,
            &tensor(&be, &xd, &x),
            &tensor(&be, &yd, &dy),
            &mut dx,
            geom,
        )
        .unwrap();
        check_gradient(
            &format!("max_pool {xd:?}"),
            &x,
            &dy,
            &read(&be, &dx),
            forward,
        );
    }
}

#[test]
fn max_pool_ties_go_to_the_first_maximum() {
    // All-equal 4x4 input, windows 3x3/2 pad 1: the four windows' first in-range taps in row-major
    // order are (0,0), (0,1), (1,0) and (1,1), so those get one dy each and nothing else does.
    let be = Cpu::new();
    let x = tensor(&be, &[1, 4, 4, 1], &[0.5; 16]);
    let dy = tensor(&be, &[1, 2, 2, 1], &[1.0, 2.0, 3.0, 4.0]);
    let mut dx = output(&be, &[1, 4, 4, 1]);
    ops::max_pool_backward(&be, &x, &dy, &mut dx, RESNET_POOL).unwrap();
    let mut expected = [0.0; 16];
    expected[0] = 1.0;
    expected[1] = 2.0;
    expected[4] = 3.0;
    expected[5] = 4.0;
    assert_eq!(read(&be, &dx), expected);
}

#[test]
fn linear_gradients() {
    let be = Cpu::new();
    let (n, fin, fout) = (3, 7, 5);
    let mut rng = seeded(91);
    let x = uniform(&mut rng, n * fin, -1.0, 1.0);
    let w = uniform(&mut rng, fout * fin, -1.0, 1.0);
    let b = uniform(&mut rng, fout, -1.0, 1.0);
    let dy = uniform(&mut rng, n * fout, -1.0, 1.0);
    let forward = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = output(&be, &[n, fout]);
        ops::linear_forward(
            &be,
            &tensor(&be, &[n, fin], x),
            &tensor(&be, &[fout, fin], w),
            &tensor(&be, &[fout], b),
            &mut y,
        )
        .unwrap();
        read(&be, &y)
    };
    let expected: Vec<f64> = (0..n * fout)
        .map(|i| {
            b[i % fout]
                + (0..fin)
                    .map(|j| x[i / fout * fin + j] * w[i % fout * fin + j])
                    .sum::<f64>()
        })
        .collect();
    assert_close("linear_forward", &forward(&x, &w, &b), &expected, 1e-15);

    let (x_t, w_t, dy_t) = (
        tensor(&be, &[n, fin], &x),
        tensor(&be, &[fout, fin], &w),
        tensor(&be, &[n, fout], &dy),
    );
    let mut dx = output(&be, &[n, fin]);
    let mut dw = output(&be, &[fout, fin]);
    let mut db = output(&be, &[fout]);
    ops::linear_backward(&be, &x_t, &w_t, &dy_t, Some(&mut dx), &mut dw, &mut db).unwrap();
    let (dw, db) = (read(&be, &dw), read(&be, &db));
    check_gradient("linear dx", &x, &dy, &read(&be, &dx), |xp| {
        forward(xp, &w, &b)
    });
    check_gradient("linear dw", &w, &dy, &dw, |wp| forward(&x, wp, &b));
    check_gradient("linear db", &b, &dy, &db, |bp| forward(&x, &w, bp));

    // Without dx (the first layer's input needs none), dw and db are the same.
    let mut dw2 = output(&be, &[fout, fin]);
    let mut db2 = output(&be, &[fout]);
    ops::linear_backward(&be, &x_t, &w_t, &dy_t, None, &mut dw2, &mut db2).unwrap();
    assert_eq!(read(&be, &dw2), dw);
    assert_eq!(read(&be, &db2), db);
}

// ---------------------------------------------------------------------------------------------
// Loss and optimizer
// ---------------------------------------------------------------------------------------------

#[test]
fn softmax_cross_entropy_gradient() {
    let be = Cpu::new();
    let (n, classes) = (5, 10);
    let mut rng = seeded(101);
    let logits = uniform(&mut rng, n * classes, -3.0, 3.0);
    let labels: Vec<u32> = (0..n)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    let loss = |z: &[f64]| {
        let mut dz = output(&be, &[n, classes]);
        ops::softmax_cross_entropy(&be, &tensor(&be, &[n, classes], z), &labels, &mut dz)
            .unwrap()
            .loss
    };
    let mut dz = output(&be, &[n, classes]);
    let stats =
        ops::softmax_cross_entropy(&be, &tensor(&be, &[n, classes], &logits), &labels, &mut dz)
            .unwrap();

    let mut expected_loss = 0.0;
    for (row, &label) in logits.chunks(classes).zip(&labels) {
        let log_sum_exp = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        expected_loss += (log_sum_exp - row[label as usize]) / n as f64;
    }
    assert!(
        (stats.loss - expected_loss).abs() <= 1e-14 * expected_loss,
        "loss {} vs {expected_loss}",
        stats.loss
    );

    // The loss is a scalar: one output, weight 1.
    check_gradient(
        "softmax_cross_entropy dlogits",
        &logits,
        &[1.0],
        &read(&be, &dz),
        |z| vec![loss(z)],
    );
}

#[test]
fn softmax_cross_entropy_uniform_logits_and_topk() {
    let be = Cpu::new();
    // Equal logits: loss ln(classes), dlogits (1/classes - onehot) / N.
    let mut dz = output(&be, &[2, 4]);
    let stats =
        ops::softmax_cross_entropy(&be, &filled(&be, &[2, 4], 0.3), &[1, 3], &mut dz).unwrap();
    assert!(
        (stats.loss - 4f64.ln()).abs() < 1e-15,
        "loss {}",
        stats.loss
    );
    let expected = [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375];
    assert_close("uniform dlogits", &read(&be, &dz), &expected, 1e-15);

    // Six samples, seven classes; the label's rank is the number of classes that beat it (a larger
    // logit, or an equal one at a smaller index).
    #[rustfmt::skip]
    let logits = [
        0.1, 0.2, 5.0, 0.3, 0.4, 0.5, 0.6, // label 2, the largest: rank 0, top-1 and top-5
        6.0, 5.0, 4.0, 1.0, 0.0, 3.0, 2.0, // label 5 (3.0): beaten by 6, 5, 4: rank 3, top-5
        6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, // label 4 (2.0): rank 4, top-5
        6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, // label 5 (1.0): rank 5, neither
        1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, // label 2 ties with class 1 before it: rank 1, top-5 only
        2.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, // label 0 ties with class 3 after it: rank 0, top-1
    ];
    let labels = [2, 5, 4, 5, 2, 0];
    let mut dz = output(&be, &[6, 7]);
    let stats =
        ops::softmax_cross_entropy(&be, &tensor(&be, &[6, 7], &logits), &labels, &mut dz).unwrap();
    assert_eq!((stats.top1_correct, stats.top5_correct), (2, 5));
}

#[test]
fn sgd_update_matches_pytorch_over_two_steps() {
    let be = Cpu::new();
    let len = 37;
    let mut rng = seeded(111);
    let w0 = uniform(&mut rng, len, -1.0, 1.0);
    let g1 = uniform(&mut rng, len, -1.0, 1.0);
    let g2 = uniform(&mut rng, len, -1.0, 1.0);
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let mut w = tensor(&be, &[len], &w0);
    let mut v = filled(&be, &[len], 0.0);
    ops::sgd_update(&be, &mut w, &tensor(&be, &[len], &g1), &mut v, cfg).unwrap();
    ops::sgd_update(&be, &mut w, &tensor(&be, &[len], &g2), &mut v, cfg).unwrap();
    // torch.optim.SGD(momentum=0.9, weight_decay=1e-4, dampening=0, nesterov=False):
    // d = g + wd w; v = d on the first step, v = momentum v + d after; w -= lr v.
    let (w, v) = (read(&be, &w), read(&be, &v));
    for i in 0..len {
        let v1 = g1[i] + 1e-4 * w0[i];
        let w1 = w0[i] - 0.1 * v1;
        let v2 = 0.9 * v1 + (g2[i] + 1e-4 * w1);
        let w2 = w1 - 0.1 * v2;
        // The same arithmetic in the same order: equal up to a few roundings at most.
        assert!(
            (w[i] - w2).abs() <= 4.0 * f64::EPSILON * w2.abs().max(1.0),
            "w[{i}] {} vs {w2}",
            w[i]
        );
        assert!(
            (v[i] - v2).abs() <= 4.0 * f64::EPSILON * v2.abs().max(1.0),
            "v[{i}] {} vs {v2}",
            v[i]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The f32 path against the f64 reference
// ---------------------------------------------------------------------------------------------

/// Runs forward, backward-data and backward-filter in f32 and in f64 on the same f32-representable
/// inputs and compares with [`assert_f32_matches`]. The reduction lengths: forward sums `R S C`
/// products, backward-data at most `K R S`, backward-filter `N P Q`. Two threads, as in
/// [`check_conv`]: the batch of 4 is split into two groups of images.
fn check_conv_f32(case: ConvCase, seed: u64) {
    with_threads(2, || check_conv_f32_on_this_pool(case, seed));
}

fn check_conv_f32_on_this_pool(case: ConvCase, seed: u64) {
    let (be32, be64) = (Cpu32::new(), Cpu::new());
    let mut rng = seeded(seed);
    let xd = [case.n, case.h, case.w, case.c];
    let wd = [case.k, case.r, case.r, case.c];
    let geom = Conv2dGeometry::new(case.stride, case.pad);
    let yd = ops::conv2d_output_shape("test", &xd, &wd, geom).unwrap();
    let x = to_f32(&uniform(&mut rng, numel(&xd), -1.0, 1.0));
    let w = to_f32(&uniform(&mut rng, numel(&wd), -1.0, 1.0));
    let dy = to_f32(&uniform(&mut rng, numel(&yd), -1.0, 1.0));

    let (mut y32, mut dx32, mut dw32) =
        (output(&be32, &yd), output(&be32, &xd), output(&be32, &wd));
    let (x32, w32, dy32) = (
        tensor(&be32, &xd, &x),
        tensor(&be32, &wd, &w),
        tensor(&be32, &yd, &dy),
    );
    ops::conv2d_forward(&be32, &x32, &w32, &mut y32, geom).unwrap();
    ops::conv2d_backward_data(&be32, &dy32, &w32, &mut dx32, geom).unwrap();
    ops::conv2d_backward_filter(&be32, &x32, &dy32, &mut dw32, geom).unwrap();

    let (mut y64, mut dx64, mut dw64) =
        (output(&be64, &yd), output(&be64, &xd), output(&be64, &wd));
    let x64 = tensor(&be64, &xd, &to_f64(&x));
    let w64 = tensor(&be64, &wd, &to_f64(&w));
    let dy64 = tensor(&be64, &yd, &to_f64(&dy));
    ops::conv2d_forward(&be64, &x64, &w64, &mut y64, geom).unwrap();
    ops::conv2d_backward_data(&be64, &dy64, &w64, &mut dx64, geom).unwrap();
    ops::conv2d_backward_filter(&be64, &x64, &dy64, &mut dw64, geom).unwrap();

    let (r, c, k) = (case.r, case.c, case.k);
    assert_f32_matches(
        &format!("conv2d_forward {case:?}"),
        &read(&be32, &y32),
        &read(&be64, &y64),
        r * r * c,
    );
    assert_f32_matches(
        &format!("conv2d_backward_data {case:?}"),
        &read(&be32, &dx32),
        &read(&be64, &dx64),
        k * r * r,
    );
    assert_f32_matches(
        &format!("conv2d_backward_filter {case:?}"),
        &read(&be32, &dw32),
        &read(&be64, &dw64),
        yd[0] * yd[1] * yd[2],
    );
}

#[test]
fn conv2d_f32_matches_f64() {
    check_conv_f32(conv(4, (16, 16), (16, 32), 3, 2, 1), 121); // a stage's first 3x3 conv
    check_conv_f32(conv(4, (16, 16), (16, 16), 3, 1, 1), 122); // a stage's inner 3x3 conv
    check_conv_f32(conv(4, (16, 16), (16, 32), 1, 2, 0), 123); // projection shortcut
    check_conv_f32(conv(4, (16, 16), (16, 32), 1, 1, 0), 124); // bottleneck 1x1 (pointwise path)
    check_conv_f32(conv(2, (32, 32), (3, 16), 7, 2, 3), 125); // ImageNet stem
}

#[test]
fn batch_norm_f32_matches_f64() {
    let (be32, be64) = (Cpu32::new(), Cpu::new());
    let xd = [4, 16, 16, 32];
    let c = xd[3];
    let m = numel(&xd) / c;
    let [x, gamma, beta] = bn_inputs(131, xd).map(|v| to_f64(&to_f32(&v)));
    let dy = to_f64(&to_f32(&uniform(&mut seeded(132), numel(&xd), -1.0, 1.0)));
    let running_mean = to_f64(&to_f32(&uniform(&mut seeded(133), c, -1.0, 1.0)));
    let running_var = to_f64(&to_f32(&uniform(&mut seeded(134), c, 0.5, 2.0)));

    /// Forward-train then backward on one backend; returns y, saved mean and inverse std, running
    /// mean and variance, dx, dgamma, dbeta, all as f64.
    fn run<B: Backend>(be: &B, xd: [usize; 4], inputs: [&[f64]; 6], relu: bool) -> Vec<Vec<f64>> {
        let [x, gamma, beta, dy, rm, rv] =
            inputs.map(|v| v.iter().map(|&a| B::Elem::of(a)).collect::<Vec<_>>());
        let c = xd[3];
        let (x, gamma, beta, dy) = (
            tensor(be, &xd, &x),
            tensor(be, &[c], &gamma),
            tensor(be, &[c], &beta),
            tensor(be, &xd, &dy),
        );
        let (mut y, mut mean, mut inv_std) = (output(be, &xd), output(be, &[c]), output(be, &[c]));
        let (mut rm, mut rv) = (tensor(be, &[c], &rm), tensor(be, &[c], &rv));
        ops::batch_norm_forward_train(
            be,
            &x,
            &gamma,
            &beta,
            &mut y,
            &mut mean,
            &mut inv_std,
            &mut rm,
            &mut rv,
            bn_config(relu),
        )
        .unwrap();
        let (mut dx, mut dgamma, mut dbeta) = (output(be, &xd), output(be, &[c]), output(be, &[c]));
        let saved = BatchNormSaved {
            mean: &mean,
            inv_std: &inv_std,
            beta: &beta,
        };
        ops::batch_norm_backward(
            be,
            &x,
            &y,
            &dy,
            &gamma,
            saved,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            relu,
        )
        .unwrap();
        [&y, &mean, &inv_std, &rm, &rv, &dx, &dgamma, &dbeta]
            .iter()
            .map(|t| read(be, t).iter().map(|v| v.f64()).collect())
            .collect()
    }

    let inputs = [&x[..], &gamma, &beta, &dy, &running_mean, &running_var];
    let names = [
        "y",
        "save_mean",
        "save_inv_std",
        "running_mean",
        "running_var",
        "dx",
        "dgamma",
        "dbeta",
    ];
    for relu in [false, true] {
        let got = run(&be32, xd, inputs, relu);
        let want = run(&be64, xd, inputs, relu);
        for ((name, got), want) in names.iter().zip(&got).zip(&want) {
            // Every output is (or depends on) a per-channel reduction over M = N H W values.
            let got: Vec<f32> = got.iter().map(|&v| v as f32).collect();
            assert_f32_matches(&format!("batch_norm relu={relu} {name}"), &got, want, m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad calls
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_shapes_are_errors_that_name_the_op_and_tensor() {
    let be = Cpu::new();
    let z = |dims: &[usize]| filled(&be, dims, 0.0);
    let g = Conv2dGeometry::new(1, 1);

    // Convolution: a weight with the wrong channel count, a wrong output, a zero stride, rank 3.
    let (x, w) = (z(&[2, 5, 5, 3]), z(&[4, 3, 3, 3]));
    assert_error(
        ops::conv2d_forward(&be, &x, &z(&[4, 3, 3, 2]), &mut z(&[2, 5, 5, 4]), g),
        &["conv2d_forward", "`w`", "[4, 3, 3, 2]", "[K, R, S, 3]"],
    );
    assert_error(
        ops::conv2d_forward(&be, &x, &w, &mut z(&[2, 5, 5, 3]), g),
        &["conv2d_forward", "`y`", "[2, 5, 5, 3]", "[2, 5, 5, 4]"],
    );
    assert_error(
        ops::conv2d_forward(
            &be,
            &x,
            &w,
            &mut z(&[2, 5, 5, 4]),
            Conv2dGeometry::new(0, 1),
        ),
        &["conv2d_forward", "stride"],
    );
    assert_error(
        ops::conv2d_forward(&be, &z(&[5, 5, 3]), &w, &mut z(&[2, 5, 5, 4]), g),
        &["conv2d_forward", "`x`", "rank 4"],
    );
    assert_error(
        ops::conv2d_forward(
            &be,
            &z(&[2, 2, 2, 3]),
            &z(&[4, 7, 7, 3]),
            &mut z(&[2, 1, 1, 4]),
            g,
        ),
        &["conv2d_forward", "`x`", "7x7"],
    );
    assert_error(
        ops::conv2d_backward_data(&be, &z(&[2, 3, 3, 4]), &w, &mut z(&[2, 5, 5, 3]), g),
        &["conv2d_backward_data", "`dy`", "[2, 5, 5, 4]"],
    );
    assert_error(
        ops::conv2d_backward_data(&be, &z(&[2, 5, 5, 4]), &w, &mut z(&[2, 5, 5, 2]), g),
        &["conv2d_backward_data", "`w`", "input channels of dx"],
    );
    assert_error(
        ops::conv2d_backward_data(
            &be,
            &z(&[2, 1, 1, 4]),
            &z(&[4, 7, 7, 3]),
            &mut z(&[2, 2, 2, 3]),
            g,
        ),
        &["conv2d_backward_data", "`dx`", "7x7"],
    );
    assert_error(
        ops::conv2d_backward_filter(&be, &x, &z(&[2, 5, 5, 4]), &mut z(&[4, 3, 3, 5]), g),
        &["conv2d_backward_filter", "`dw`"],
    );

    // Batch norm.
    let c = |v: f64| filled(&be, &[3], v);
    let (mut mean, mut inv_std, mut rm, mut rv) = (c(0.0), c(0.0), c(0.0), c(1.0));
    assert_error(
        ops::batch_norm_forward_train(
            &be,
            &x,
            &filled(&be, &[4], 1.0),
            &c(0.0),
            &mut z(&[2, 5, 5, 3]),
            &mut mean,
            &mut inv_std,
            &mut rm,
            &mut rv,
            bn_config(false),
        ),
        &["batch_norm_forward_train", "`gamma`", "[4]", "[3]"],
    );
    assert_error(
        ops::batch_norm_forward_train(
            &be,
            &z(&[1, 1, 1, 3]),
            &c(1.0),
            &c(0.0),
            &mut z(&[1, 1, 1, 3]),
            &mut mean,
            &mut inv_std,
            &mut rm,
            &mut rv,
            bn_config(false),
        ),
        &[
            "batch_norm_forward_train",
            "more than one value per channel",
        ],
    );
    let bad_momentum = BatchNormConfig {
        momentum: 1.5,
        ..bn_config(false)
    };
    assert_error(
        ops::batch_norm_forward_train(
            &be,
            &x,
            &c(1.0),
            &c(0.0),
            &mut z(&[2, 5, 5, 3]),
            &mut mean,
            &mut inv_std,
            &mut rm,
            &mut rv,
            bad_momentum,
        ),
        &["batch_norm_forward_train", "momentum"],
    );
    assert_error(
        ops::batch_norm_forward_infer(
            &be,
            &x,
            &c(1.0),
            &c(0.0),
            &rm,
            &filled(&be, &[2], 1.0),
            &mut z(&[2, 5, 5, 3]),
            bn_config(false),
        ),
        &["batch_norm_forward_infer", "`running_var`"],
    );
    let saved = BatchNormSaved {
        mean: &mean,
        inv_std: &inv_std,
        beta: &c(0.0),
    };
    assert_error(
        ops::batch_norm_backward(
            &be,
            &x,
            &z(&[2, 5, 5, 3]),
            &z(&[2, 5, 4, 3]),
            &c(1.0),
            saved,
            &mut z(&[2, 5, 5, 3]),
            &mut c(0.0),
            &mut c(0.0),
            false,
        ),
        &["batch_norm_backward", "`dy`", "[2, 5, 4, 3]"],
    );

    // Residual add and the option-A shortcut.
    assert_error(
        ops::add_forward(&be, &x, &z(&[2, 5, 5, 4]), &mut z(&[2, 5, 5, 3]), true),
        &["add_forward", "`b`"],
    );
    assert_error(
        ops::add_backward(&be, &x, &x, &mut z(&[2, 5, 5]), true),
        &["add_backward", "`dsum`"],
    );
    assert_error(
        ops::shortcut_a_forward(&be, &x, &mut z(&[2, 3, 3, 2]), 2),
        &["shortcut_a_forward", "narrow 3 channels to 2"],
    );
    assert_error(
        ops::shortcut_a_forward(&be, &x, &mut z(&[2, 2, 2, 6]), 2),
        &["shortcut_a_forward", "`y`", "[2, 3, 3, 6]"],
    );
    assert_error(
        ops::shortcut_a_forward(&be, &x, &mut z(&[2, 5, 5, 6]), 0),
        &["shortcut_a_forward", "stride"],
    );
    assert_error(
        ops::shortcut_a_backward(&be, &z(&[2, 3, 3, 6]), &mut z(&[2, 7, 7, 3]), 2),
        &["shortcut_a_backward", "`dy`", "[2, 4, 4, 6]"],
    );

    // Pooling.
    assert_error(
        ops::global_avg_pool_forward(&be, &x, &mut z(&[2, 4])),
        &["global_avg_pool_forward", "`y`"],
    );
    assert_error(
        ops::global_avg_pool_backward(&be, &z(&[3, 3]), &mut z(&[2, 5, 5, 3])),
        &["global_avg_pool_backward", "`dy`"],
    );
    assert_error(
        ops::max_pool_forward(&be, &x, &mut z(&[2, 2, 2, 3]), RESNET_POOL),
        &["max_pool_forward", "`y`", "[2, 3, 3, 3]"],
    );
    let bad_pool = PoolGeometry {
        window: 3,
        stride: 2,
        pad: 3,
    };
    assert_error(
        ops::max_pool_forward(&be, &x, &mut z(&[2, 5, 5, 3]), bad_pool),
        &["max_pool_forward", "pad 3"],
    );
    assert_error(
        ops::max_pool_backward(
            &be,
            &x,
            &z(&[2, 3, 3, 3]),
            &mut z(&[2, 5, 5, 2]),
            RESNET_POOL,
        ),
        &["max_pool_backward", "`dx`"],
    );

    // Linear.
    let (xl, wl, bl) = (z(&[2, 7]), z(&[5, 7]), z(&[5]));
    assert_error(
        ops::linear_forward(&be, &xl, &z(&[5, 6]), &bl, &mut z(&[2, 5])),
        &["linear_forward", "`w`", "[5, 6]", "[out, 7]"],
    );
    assert_error(
        ops::linear_forward(&be, &xl, &wl, &z(&[4]), &mut z(&[2, 5])),
        &["linear_forward", "`b`"],
    );
    assert_error(
        ops::linear_backward(
            &be,
            &xl,
            &wl,
            &z(&[2, 5]),
            Some(&mut z(&[2, 6])),
            &mut z(&[5, 7]),
            &mut z(&[5]),
        ),
        &["linear_backward", "`dx`"],
    );

    // Loss.
    let logits = z(&[2, 10]);
    assert_error(
        ops::softmax_cross_entropy(&be, &logits, &[3, 10], &mut z(&[2, 10])),
        &["softmax_cross_entropy", "label 10", "10 classes"],
    );
    assert_error(
        ops::softmax_cross_entropy(&be, &logits, &[3], &mut z(&[2, 10])),
        &["softmax_cross_entropy", "1 labels for a batch of 2"],
    );
    assert_error(
        ops::softmax_cross_entropy(&be, &logits, &[3, 4], &mut z(&[2, 9])),
        &["softmax_cross_entropy", "`dlogits`"],
    );

    // SGD.
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    assert_error(
        ops::sgd_update(&be, &mut z(&[5]), &z(&[4]), &mut z(&[5]), cfg),
        &["sgd_update", "`g`"],
    );
    assert_error(
        ops::sgd_update(&be, &mut z(&[5]), &z(&[5]), &mut z(&[6]), cfg),
        &["sgd_update", "`v`"],
    );
    let nan_lr = SgdConfig {
        lr: f64::NAN,
        ..cfg
    };
    assert_error(
        ops::sgd_update(&be, &mut z(&[5]), &z(&[5]), &mut z(&[5]), nan_lr),
        &["sgd_update", "non-finite"],
    );
}
