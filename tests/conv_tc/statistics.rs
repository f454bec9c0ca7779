//! Batch-norm statistics from the tensor-core forward convolution's epilogue: the
//! `conv2d_tc_forward_stats_*` kernels (kernels/conv_tc_stats.cuh), and training batch norm taking
//! its statistics from them (`batch_norm_finalize_tiles_f32`, through the checked ops of the bf16
//! backend) instead of reading its input. u = 2^-24 below.
//!
//! 1. The partials against an f64 reference computed from the bf16 `y` the kernel wrote (`y` and
//!    the partials poisoned with NaN first), for every tile and loader, on shapes with M not a
//!    multiple of BM, K not a multiple of BN and N = 1, on centred data and on data whose channel
//!    means lie ~100 standard deviations off zero. Per tile of n rows and channel:
//!    - the sum S: `|S - S_ref| <= (n + 2) u sum|y|`. S is an fp32 sum of the n values whose
//!      addition chains are shorter than n (each thread's 2 MI rows, then the row lanes in order),
//!      each addition off by at most u times a partial sum, itself at most sum|y|.
//!    - the squared deviations Q, taken about the tile's fp32 mean b = fl(S / n) rather than the
//!      exact mean mu: `sum (y - b)^2 = Q_ref + n (b - mu)^2` exactly, with |b - mu| <= d =
//!      (tol_S + u |S|) / n; each term is within 3u relative (the subtraction, the square) and
//!      their sum within n u: `|Q - Q_ref| <= n d^2 + (n + 5) u (Q_ref + n d^2)`.
//!    - `y` itself: bit for bit what the kernel without statistics writes.
//! 2. The fused path (`conv2d_forward_with_stats`, `batch_norm_forward_train_from_stats`) against
//!    the unfused one (`conv2d_forward`, `batch_norm_[add_]forward_train`), on every planned tile:
//!    the same `y` bit for bit, and per channel (`ChannelTolerance` computes the bounds):
//!    - save_mean within `2^-14 mean|y|`: both are fp32 sums of the same values whose addition
//!      chains are under 512 long (unfused: at most ~33 rows a thread, a tree, then P/128 partials
//!      and two short trees; fused: at most 36 in the kernel, then the same finalize trees), so
//!      each is within 2^-15 mean|y| of the exact mean.
//!    - the variance within `tol_v = (800 + 80 max|y| / sigma) u` relative, seen through
//!      save_inv_std (half of it) and running_var. Unfused: each term (y - a)^2 within 3u, their
//!      sum (all terms >= 0) within 512 u. Fused: Q_p within (BM + 5) u; the between-tile terms
//!      (S_p - n_p a)^2 / n_p inherit S_p's error, at most 40 u sum_p|y| (chains <= 36 deep),
//!      which over all tiles is at most 80 u max|y| / sigma relative (Cauchy-Schwarz, twice:
//!      sum_p |S_p - n_p a| <= sum_p sqrt(n_p T_p) <= sqrt(M sum (y - a)^2), T_p the tile's
//!      sum of (y - a)^2); the finalize's own sums add < 512 u.
//!    - running_mean, running_var: momentum times the above plus 2^-23 relative (f32 rounding).
//!    - the normalised output: the fp32 values differ by at most
//!      `|gamma| inv_std (|y - a| tol_inv_std + tol_mean) + 8 u (|y scale| + |shift| + |residual|)`,
//!      and each side's bf16 rounding (8 significant bits) adds up to 2^-8 of its value.
//! 3. Determinism: the same launch twice gives bit-identical partials, and the fused batch norm
//!    bit-identical statistics.
//! 4. The layers use it: a bf16 ConvBn training forward launches the convolution, one finalize and
//!    one normalising pass (3 kernels, not 6); f32 and inference keep the plain ops.

use super::*;
use resnet_cuda::backend::gpu::conv_tc_plan::TcStatsPartition;
use resnet_cuda::backend::gpu::GpuBackend;
use resnet_cuda::backend::{Backend, BatchNormConfig, Precision};
use resnet_cuda::nn::{ConvBn, ConvBnSpec, Layer, Mode};
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Random bf16 values in [lo, hi).
fn bf16_in(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<bf16> {
    (0..n)
        .map(|_| bf16::from_f32(rng.random_range(lo..hi)))
        .collect()
}

/// A convolution's inputs: centred (x and w uniform in [-1, 1)), or far off centre (x in [1, 1.25),
/// w in [0, 0.5): each output channel's mean is then tens to hundreds of standard deviations from
/// zero, where a one-pass sum of squares would cancel).
pub(super) fn conv_inputs(s: &ConvShape, off_centre: bool, seed: u64) -> (Vec<bf16>, Vec<bf16>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if off_centre {
        let x = bf16_in(&mut rng, len(s.x), 1.0, 1.25);
        (x, bf16_in(&mut rng, len(s.w), 0.0, 0.5))
    } else {
        let x = random_bf16(&mut rng, len(s.x));
        (x, random_bf16(&mut rng, len(s.w)))
    }
}

/// Launches the statistics kernel `l` on poisoned outputs; returns (y as bf16 bits, the partials).
pub(super) fn run_stats(
    s: &ConvShape,
    l: &TcLaunch,
    part: &TcStatsPartition,
    x: &[bf16],
    w: &[bf16],
) -> (Vec<u16>, Vec<f32>) {
    assert_eq!(l.grid.0 as usize, part.partitions(), "{}", l.kernel);
    let (dx, dw) = (DeviceVec::new(&bits(x)), DeviceVec::new(&bits(w)));
    let dy = DeviceVec::new(&vec![BF16_NAN; len(s.y)]);
    let stats = DeviceVec::new(&vec![f32::NAN; part.floats()]);
    let args = KernelArgs::new().ptr(dx.ptr).ptr(dw.ptr).ptr(dy.ptr);
    let args = args.ptr(stats.ptr).value(&s.dims());
    run(l, with_tensor_maps(l, args, dw.ptr, dx.ptr));
    (dy.to_host(), stats.to_host())
}

/// Checks the partials against the module's bounds, from `y` as written.
pub(super) fn check_partials(what: &str, part: &TcStatsPartition, y: &[u16], stats: &[f32]) {
    let (k, p_count) = (part.channels, part.partitions());
    assert_eq!(stats.len(), 2 * p_count * k, "{what}: length");
    let y = to_f64(y);
    for p in 0..p_count {
        let rows = p * part.tile_rows..((p + 1) * part.tile_rows).min(part.rows);
        let n = rows.len() as f64;
        for c in 0..k {
            let values = || rows.clone().map(|m| y[m * k + c]);
            let (s_ref, abs): (f64, f64) = (values().sum(), values().map(f64::abs).sum());
            let mu = s_ref / n;
            let q_ref: f64 = values().map(|v| (v - mu) * (v - mu)).sum();
            // [2][channels][partitions]
            let (s, q) = (
                f64::from(stats[c * p_count + p]),
                f64::from(stats[(k + c) * p_count + p]),
            );
            let tol_s = (n + 2.0) * U * abs;
            assert!(
                (s - s_ref).abs() <= tol_s,
                "{what}: tile {p} channel {c}: sum {s:e}, reference {s_ref:e} (tolerance {tol_s:e})"
            );
            let d = (tol_s + U * s_ref.abs()) / n;
            let tol_q = n * d * d + (n + 5.0) * U * (q_ref + n * d * d);
            assert!(
                (q - q_ref).abs() <= tol_q,
                "{what}: tile {p} channel {c}: squared deviations {q:e}, reference {q_ref:e} \
                 (tolerance {tol_q:e})"
            );
        }
    }
}

fn check_stats_launch(s: &ConvShape, tile: TcTile, general: bool, seed: u64) {
    for off_centre in [false, true] {
        let (x, w) = conv_inputs(s, off_centre, seed);
        let (l, part) = conv_tc_plan::forward_stats_with(s, tile, general);
        let (y, stats) = run_stats(s, &l, &part, &x, &w);
        let what = format!(
            "{} on {:?} {:?} (off centre {off_centre})",
            l.kernel, s.x, s.w
        );
        let plain = run_forward(s, &conv_tc_plan::forward_with(s, tile, general), &x, &w);
        assert!(y == plain, "{what}: y differs from the plain kernel's");
        check_partials(&what, &part, &y, &stats);
    }
}

/// M = 25 (N = 1, below every BM) and M = 338 (several tiles of every BM, the last one partial),
/// K = 40 and 24 (a partial column tile for every BN).
fn stats_shapes() -> [ConvShape; 2] {
    [
        shape([1, 9, 9, 24], [40, 3, 3, 24], 2, 1),
        shape([2, 13, 13, 16], [24, 3, 3, 16], 1, 1),
    ]
}

#[test]
fn forward_stats_every_tile_and_loader() {
    for (i, s) in stats_shapes().iter().enumerate() {
        for tile in every_tile() {
            for &general in tile.loaders() {
                check_stats_launch(s, tile, general, 1000 + i as u64);
            }
        }
    }
}

#[test]
fn forward_stats_as_planned() {
    // The C = 3 stem (7x7/2, general loader, 64x16), C = 12 (general), and a partition of one
    // partial tile.
    for (i, s) in [
        shape([1, 17, 17, 3], [16, 7, 7, 3], 2, 3),
        shape([1, 7, 7, 12], [20, 1, 1, 12], 2, 0),
        shape([2, 5, 5, 32], [24, 3, 3, 32], 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let (x, w) = conv_inputs(s, false, 1100 + i as u64);
        let l = conv_tc_plan::forward_stats(s);
        let part = conv_tc_plan::forward_stats_partition(s.y);
        let (y, stats) = run_stats(s, &l, &part, &x, &w);
        let what = format!("{} on {:?} {:?}", l.kernel, s.x, s.w);
        assert!(
            y == run_forward(s, &conv_tc_plan::forward(s), &x, &w),
            "{what}: y"
        );
        check_partials(&what, &part, &y, &stats);
    }
}

#[test]
fn forward_stats_are_deterministic() {
    let s = &stats_shapes()[1];
    for tile in [TcTile::T64x64, TcTile::T128x32] {
        let (x, w) = conv_inputs(s, true, 1200);
        let (l, part) = conv_tc_plan::forward_stats_with(s, tile, false);
        let first = run_stats(s, &l, &part, &x, &w);
        let second = run_stats(s, &l, &part, &x, &w);
        let as_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(first.0, second.0, "{}: y", l.kernel);
        assert_eq!(
            as_bits(&first.1),
            as_bits(&second.1),
            "{}: partials",
            l.kernel
        );
    }
}

// ---- batch norm from the partials, through the bf16 backend ---------------------------------------

type Gpu = GpuBackend<DynDriver>;

fn gpu(precision: Precision) -> Gpu {
    let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
    GpuBackend::open(&name)
        .unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
        .with_precision(precision)
}

fn values_of(v: &[bf16]) -> Vec<f32> {
    v.iter().map(|b| b.to_f32()).collect()
}

/// An activation holding `data` (bf16 values, exactly representable in either precision).
fn activation(be: &Gpu, dims: [usize; 4], data: &[f32]) -> Tensor<Gpu> {
    let mut t = Tensor::from_slice(be, dims, data).unwrap();
    be.to_activation_dtype(&mut t).unwrap();
    assert_eq!(be.dtype(t.buf()), be.activation_dtype());
    t
}

fn poisoned(be: &Gpu, dims: &[usize]) -> Tensor<Gpu> {
    let n = dims.iter().product();
    Tensor::from_slice(be, dims, &vec![f32::NAN; n]).unwrap()
}

/// The per-channel tensors and outputs of one training batch norm.
struct BnRun {
    y: Vec<f32>,
    out: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

/// The inputs of one conv -> BN case.
struct BnCase {
    s: ConvShape,
    x: Vec<f32>,
    w: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    residual: Option<Vec<f32>>,
    cfg: BatchNormConfig,
}

impl BnCase {
    fn new(s: ConvShape, off_centre: bool, residual: bool, relu: bool, seed: u64) -> BnCase {
        let (x, w) = conv_inputs(&s, off_centre, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        let k = s.w[0];
        let mut per_channel = |lo, hi| values_of(&bf16_in(&mut rng, k, lo, hi));
        let (gamma, beta) = (per_channel(0.5, 1.5), per_channel(-0.5, 0.5));
        let (running_mean, running_var) = (per_channel(-1.0, 1.0), per_channel(0.5, 2.0));
        let residual = residual.then(|| values_of(&bf16_in(&mut rng, len(s.y), -2.0, 2.0)));
        BnCase {
            s,
            x: values_of(&x),
            w: values_of(&w),
            gamma,
            beta,
            running_mean,
            running_var,
            residual,
            cfg: BatchNormConfig {
                eps: 1e-5,
                momentum: 0.1,
                relu,
            },
        }
    }

    /// conv -> BN on `be`, fused (statistics from the convolution) or not.
    fn run(&self, be: &Gpu, fused: bool) -> BnRun {
        let s = &self.s;
        let k = s.w[0];
        let x = activation(be, s.x, &self.x);
        let w = Tensor::from_slice(be, s.w, &self.w).unwrap();
        let mut y = poisoned(be, &s.y);
        let gamma = Tensor::from_slice(be, [k], &self.gamma).unwrap();
        let beta = Tensor::from_slice(be, [k], &self.beta).unwrap();
        let mut running_mean = Tensor::from_slice(be, [k], &self.running_mean).unwrap();
        let mut running_var = Tensor::from_slice(be, [k], &self.running_var).unwrap();
        let (mut mean, mut inv_std) = (poisoned(be, &[k]), poisoned(be, &[k]));
        let mut out = poisoned(be, &s.y);
        let residual = self.residual.as_ref().map(|r| activation(be, s.y, r));
        if fused {
            let len = be.conv2d_stats_len(&s.y).expect("the bf16 backend fuses");
            let mut stats = poisoned(be, &[len]);
            ops::conv2d_forward_with_stats(be, &x, &w, &mut y, &mut stats, s.geom).unwrap();
            ops::batch_norm_forward_train_from_stats(
                be,
                &y,
                &stats,
                &gamma,
                &beta,
                residual.as_ref(),
                &mut out,
                &mut mean,
                &mut inv_std,
                &mut running_mean,
                &mut running_var,
                self.cfg,
            )
            .unwrap();
        } else {
            ops::conv2d_forward(be, &x, &w, &mut y, s.geom).unwrap();
            match &residual {
                None => ops::batch_norm_forward_train(
                    be,
                    &y,
                    &gamma,
                    &beta,
                    &mut out,
                    &mut mean,
                    &mut inv_std,
                    &mut running_mean,
                    &mut running_var,
                    self.cfg,
                ),
                Some(r) => ops::batch_norm_add_forward_train(
                    be,
                    &y,
                    &gamma,
                    &beta,
                    r,
                    &mut poisoned(be, &s.y),
                    &mut out,
                    &mut mean,
                    &mut inv_std,
                    &mut running_mean,
                    &mut running_var,
                    self.cfg,
                ),
            }
            .unwrap();
        }
        let host = |t: &Tensor<Gpu>| t.to_vec(be).unwrap();
        BnRun {
            y: host(&y),
            out: host(&out),
            mean: host(&mean),
            inv_std: host(&inv_std),
            running_mean: host(&running_mean),
            running_var: host(&running_var),
        }
    }
}

/// One channel's bounds for comparing the two paths (module doc, item 2).
struct ChannelTolerance {
    mean: f64,
    /// Relative, on the biased variance.
    var: f64,
}

impl ChannelTolerance {
    /// From the channel's values `y` (its rows).
    fn new(y: &[f64]) -> ChannelTolerance {
        let m = y.len() as f64;
        let mu = y.iter().sum::<f64>() / m;
        let sigma = (y.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / m).sqrt();
        let max = y.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let mean_abs = y.iter().map(|v| v.abs()).sum::<f64>() / m;
        ChannelTolerance {
            mean: 2f64.powi(-14) * mean_abs + 2.0 * U * mu.abs(),
            var: (800.0 + 80.0 * max / sigma.max(f64::MIN_POSITIVE)) * U,
        }
    }
}

/// Compares the fused run with the unfused one by the module's bounds.
fn check_bn_runs(what: &str, case: &BnCase, fused: &BnRun, plain: &BnRun) {
    let k = case.s.w[0];
    let as_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(as_bits(&fused.y), as_bits(&plain.y), "{what}: conv outputs");
    let rows = plain.y.len() / k;
    let momentum = case.cfg.momentum;
    let mut tols = Vec::with_capacity(k);
    for c in 0..k {
        let y: Vec<f64> = (0..rows).map(|m| f64::from(plain.y[m * k + c])).collect();
        let tol = ChannelTolerance::new(&y);
        let var = 1.0 / f64::from(plain.inv_std[c]).powi(2) - case.cfg.eps;
        let near = |name: &str, a: f32, b: f32, tol: f64| {
            let (a, b) = (f64::from(a), f64::from(b));
            assert!(
                (a - b).abs() <= tol,
                "{what}: channel {c}: {name} fused {a:e}, unfused {b:e} (tolerance {tol:e})"
            );
        };
        near("save_mean", fused.mean[c], plain.mean[c], tol.mean);
        let inv_std = f64::from(plain.inv_std[c]);
        near(
            "save_inv_std",
            fused.inv_std[c],
            plain.inv_std[c],
            (tol.var / 2.0 + 2.0 * U) * inv_std,
        );
        let rm = f64::from(plain.running_mean[c]).abs();
        near(
            "running_mean",
            fused.running_mean[c],
            plain.running_mean[c],
            momentum * tol.mean + 2.0 * U * rm,
        );
        let unbiased = var * rows as f64 / (rows as f64 - 1.0);
        let rv = f64::from(plain.running_var[c]).abs();
        near(
            "running_var",
            fused.running_var[c],
            plain.running_var[c],
            momentum * unbiased * tol.var + 2.0 * U * rv,
        );
        tols.push(tol);
    }
    for (i, (&o_f, &o_u)) in fused.out.iter().zip(&plain.out).enumerate() {
        let c = i % k;
        let (y, a) = (f64::from(plain.y[i]), f64::from(plain.mean[c]));
        let gamma = f64::from(case.gamma[c]);
        let inv_std = f64::from(plain.inv_std[c]);
        let scale = gamma * inv_std;
        let shift = f64::from(case.beta[c]) - a * scale;
        let r = case
            .residual
            .as_ref()
            .map_or(0.0, |r| f64::from(r[i]).abs());
        let tol_inv_std = tols[c].var / 2.0 + 2.0 * U;
        let fp32 = gamma.abs() * inv_std * ((y - a).abs() * tol_inv_std + tols[c].mean)
            + 8.0 * U * ((y * scale).abs() + shift.abs() + r);
        let tol = fp32 + 2f64.powi(-8) * f64::from(o_f.abs() + o_u.abs());
        assert!(
            o_f.is_finite() && (f64::from(o_f) - f64::from(o_u)).abs() <= tol,
            "{what}: element {i}: fused {o_f:e}, unfused {o_u:e} (tolerance {tol:e})"
        );
    }
}

/// Shapes whose planned tiles are each of the five forward tiles' kinds: 64x16 (K = 16), 128x32
/// (K = 32; and the C = 3 stem, general loader), 64x64 (K = 40, M = 338: six tiles, the last of
/// 18 rows), 128x128 (K = 136 over 8448 rows: enough blocks for the big tile).
fn bn_shapes() -> Vec<ConvShape> {
    vec![
        shape([2, 8, 8, 16], [16, 3, 3, 16], 1, 1),
        shape([1, 9, 9, 16], [32, 3, 3, 16], 2, 1),
        shape([2, 11, 11, 3], [24, 3, 3, 3], 1, 1),
        shape([2, 13, 13, 16], [40, 3, 3, 16], 1, 1),
        shape([2, 66, 64, 8], [136, 1, 1, 8], 1, 0),
    ]
}

#[test]
fn batch_norm_from_conv_stats_matches_the_unfused_path() {
    let be = gpu(Precision::Bf16);
    for (i, s) in bn_shapes().into_iter().enumerate() {
        for (off_centre, residual, relu) in [
            (false, false, true),
            (true, false, false),
            (false, true, true),
            (true, true, false),
        ] {
            let case = BnCase::new(s, off_centre, residual, relu, 1300 + i as u64);
            let what = format!(
                "{} on {:?} {:?} (off centre {off_centre}, residual {residual}, relu {relu})",
                conv_tc_plan::forward_stats(&case.s).kernel,
                case.s.x,
                case.s.w
            );
            check_bn_runs(&what, &case, &case.run(&be, true), &case.run(&be, false));
        }
    }
}

#[test]
fn batch_norm_from_conv_stats_is_deterministic() {
    let be = gpu(Precision::Bf16);
    let case = BnCase::new(bn_shapes()[3], true, true, false, 1400);
    let (first, second) = (case.run(&be, true), case.run(&be, true));
    let as_bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for (name, a, b) in [
        ("out", &first.out, &second.out),
        ("save_mean", &first.mean, &second.mean),
        ("save_inv_std", &first.inv_std, &second.inv_std),
        ("running_mean", &first.running_mean, &second.running_mean),
        ("running_var", &first.running_var, &second.running_var),
    ] {
        assert_eq!(as_bits(a), as_bits(b), "{name}");
    }
}

#[test]
fn the_ops_refuse_a_backend_without_conv_stats_and_a_wrong_buffer() {
    let s = shape([1, 4, 4, 8], [8, 3, 3, 8], 1, 1);
    let f32_gpu = gpu(Precision::F32);
    assert_eq!(f32_gpu.conv2d_stats_len(&s.y), None);
    let x = Tensor::zeros(&f32_gpu, s.x).unwrap();
    let w = Tensor::zeros(&f32_gpu, s.w).unwrap();
    let mut y = Tensor::zeros(&f32_gpu, s.y).unwrap();
    let mut stats = Tensor::zeros(&f32_gpu, [64]).unwrap();
    let e = ops::conv2d_forward_with_stats(&f32_gpu, &x, &w, &mut y, &mut stats, s.geom)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not compute batch-norm statistics"), "{e}");

    let be = gpu(Precision::Bf16);
    let stats_len = be.conv2d_stats_len(&s.y).unwrap();
    let x = activation(&be, s.x, &vec![0.0; len(s.x)]);
    let w = Tensor::zeros(&be, s.w).unwrap();
    let mut y = Tensor::zeros(&be, s.y).unwrap();
    let mut short = Tensor::zeros(&be, [stats_len - 1]).unwrap();
    let e = ops::conv2d_forward_with_stats(&be, &x, &w, &mut y, &mut short, s.geom)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stats"), "{e}");
}

// ---- the layers ------------------------------------------------------------------------------------

/// Kernel launches of one ConvBn forward in `mode` (the second: the first makes the weight's bf16
/// copy and sizes the buffers).
fn conv_bn_launches(be: &Gpu, mode: Mode) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(1500);
    let spec = ConvBnSpec {
        in_ch: 16,
        out_ch: 16,
        kernel: 3,
        stride: 1,
        relu: true,
    };
    let mut unit = ConvBn::new(be, "conv1", "bn1", spec, &mut rng).unwrap();
    let dims = [2, 6, 6, 16];
    let data = values_of(&random_bf16(&mut rng, len(dims)));
    let x = activation(be, dims, &data);
    unit.forward(be, &x, mode).unwrap();
    let before = be.device_counts().unwrap();
    unit.forward(be, &x, mode).unwrap();
    be.device_counts().unwrap().since(&before).launches
}

#[test]
fn a_bf16_training_conv_bn_takes_its_statistics_from_the_convolution() {
    // conv (with statistics), finalize, normalise.
    assert_eq!(conv_bn_launches(&gpu(Precision::Bf16), Mode::Train), 3);
    // conv, partial sum, finalize mean, partial squared deviations, finalize variance, normalise.
    assert_eq!(conv_bn_launches(&gpu(Precision::F32), Mode::Train), 6);
    // conv, inference inv_std, normalise.
    assert_eq!(conv_bn_launches(&gpu(Precision::Bf16), Mode::Eval), 3);
}
