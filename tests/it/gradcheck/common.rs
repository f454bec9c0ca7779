//! Helpers shared by the gradient checks: seeded random data, tensors on the CPU backends, a
//! central-difference gradient checker, direct (loop-nest) reference formulas, and the f32-against-f64
//! comparison.
//!
//! Every test builds its own data from a fixed seed, so a failure reproduces exactly.

// Each test module uses its own subset of these helpers.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{Backend, Element};
use resnet_cuda::tensor::Tensor;

/// The reference backend in double precision: what every gradient check runs on.
pub type Cpu = CpuBackend<f64>;
/// The training backend, checked against [`Cpu`].
pub type Cpu32 = CpuBackend<f32>;

/// A deterministic random generator for one test.
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values drawn uniformly from `[lo, hi)`.
pub fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `len` values from `[lo, hi)`, each with a random sign: their magnitudes stay at least `lo`.
pub fn signed_away_from_zero(rng: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| {
            let magnitude = rng.random_range(lo..hi);
            if rng.random::<f64>() < 0.5 {
                -magnitude
            } else {
                magnitude
            }
        })
        .collect()
}

/// A random permutation of `0..len` (Fisher-Yates), as f64.
pub fn permutation(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..len).map(|i| i as f64).collect();
    for i in (1..len).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

/// Runs `f` in a rayon pool of `threads` threads. The CPU backend chooses its work split from the
/// thread count (the convolution splits the batch across threads when `N >= threads`, otherwise it
/// runs one parallel GEMM), so tests that must cover a given path pin the count instead of
/// inheriting the host's.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon thread pool")
        .install(f)
}

pub fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// A tensor holding `data`.
pub fn tensor<B: Backend>(be: &B, dims: &[usize], data: &[B::Elem]) -> Tensor<B> {
    Tensor::from_slice(be, dims, data).expect("tensor from a slice of the right length")
}

/// A tensor filled with `value`. Outputs are pre-filled with garbage this way, so that a test also
/// proves an op overwrites its output rather than accumulating into it.
pub fn filled<B: Backend>(be: &B, dims: &[usize], value: f64) -> Tensor<B> {
    tensor(be, dims, &vec![B::Elem::of(value); numel(dims)])
}

/// The garbage value outputs start with (see [`filled`]).
pub const GARBAGE: f64 = 777.0;

/// An output tensor pre-filled with [`GARBAGE`].
pub fn output<B: Backend>(be: &B, dims: &[usize]) -> Tensor<B> {
    filled(be, dims, GARBAGE)
}

/// The contents of a tensor.
pub fn read<B: Backend>(be: &B, t: &Tensor<B>) -> Vec<B::Elem> {
    t.to_vec(be).expect("download")
}

/// The flat NHWC (or KRSC) index of `i` in a tensor of dimensions `d`.
pub fn at4(d: [usize; 4], i: [usize; 4]) -> usize {
    ((i[0] * d[1] + i[1]) * d[2] + i[2]) * d[3] + i[3]
}

pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Asserts `max |actual - expected| <= rel_tol * max |expected|` (a direct formula against the op).
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], rel_tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = max_abs(expected).max(f64::MIN_POSITIVE);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= rel_tol * scale,
            "{what}: element {i} is {a}, expected {e} (tolerance {rel_tol} x {scale})"
        );
    }
}

/// Perturbation of each parameter in central differences. The checks use parameters of size O(1)
/// (uniform draws in a few units), so an absolute step is also a relative one.
pub const STEP: f64 = 1e-5;

/// Largest accepted relative gradient error (the metric is described at [`check_gradient`]).
///
/// Why 1e-6: in f64 the central difference `(L(p+h) - L(p-h)) / 2h` has a truncation error of
/// `h^2/6 |L'''|`, about 1e-11 for these smooth ops with `h = 1e-5` (exactly zero for the ops that are
/// linear in the perturbed tensor: convolution, linear, pooling, add), and a rounding error of about
/// `eps |y| sqrt(T) / h` for `T` outputs touched by the perturbation, since we difference the op's
/// outputs before weighting them (see [`numerical_gradient`]) and untouched outputs cancel exactly:
/// 2e-16 * O(1) * 10 / 1e-5, a few 1e-10 absolute. Against gradients of size O(1) that is ~1e-10
/// relative; against the floor (1e-2 of the largest gradient) a few 1e-8. Measured worst errors
/// over the whole suite are about 1e-8 (softmax, batch norm) and 3e-9 (convolution). 1e-6 is well
/// above that noise and far below what any real bug produces (a wrong index, a missing term or a
/// wrong scale gives errors of order 1e-2 to 1).
pub const GRAD_TOLERANCE: f64 = 1e-6;

/// Gradients below this fraction of the largest one are judged against that floor instead of their
/// own size: an element whose true derivative is 0 (or 1e-9) cannot be checked to 1e-6 of itself,
/// only to 1e-6 of the floor, an absolute bound of 1e-8 times the gradient's scale, which still
/// catches any real bug in a small element.
pub const GRAD_FLOOR_FRACTION: f64 = 1e-2;

/// `d/dp_j sum_i outputs(p)_i weights_i` by central differences, for every `j`.
///
/// `outputs(p_j + h) - outputs(p_j - h)` is formed elementwise before the weighted sum: outputs that
/// the perturbation does not touch cancel exactly instead of adding rounding noise of the size of the
/// whole loss. The divisor is the step actually taken, `(p + h) - (p - h)` in floating point.
pub fn numerical_gradient(
    params: &[f64],
    weights: &[f64],
    mut outputs: impl FnMut(&[f64]) -> Vec<f64>,
) -> Vec<f64> {
    let mut p = params.to_vec();
    (0..params.len())
        .map(|j| {
            let original = params[j];
            let (plus, minus) = (original + STEP, original - STEP);
            p[j] = plus;
            let y_plus = outputs(&p);
            p[j] = minus;
            let y_minus = outputs(&p);
            p[j] = original;
            assert_eq!(y_plus.len(), weights.len(), "one weight per output");
            let dl: f64 = y_plus
                .iter()
                .zip(&y_minus)
                .zip(weights)
                .map(|((a, b), r)| (a - b) * r)
                .sum();
            dl / (plus - minus)
        })
        .collect()
}

/// The worst element of a gradient comparison.
#[derive(Debug)]
pub struct GradientReport {
    pub worst_error: f64,
    pub worst_index: usize,
    pub scale: f64,
}

/// Checks `analytic = dL/dp` at `params`, with `L(p) = sum_i outputs(p)_i weights_i`.
///
/// The loss weights `weights` are fixed random numbers (the `dy` handed to the backward op), so every
/// output contributes with its own coefficient and a transposed or misrouted gradient cannot cancel.
/// Every element of `params` is perturbed. Per element the error is
/// `|num - ana| / max(|num|, |ana|, floor)` with `floor = GRAD_FLOOR_FRACTION * max_j max(|num_j|,
/// |ana_j|)`; the check fails when any error exceeds [`GRAD_TOLERANCE`].
pub fn check_gradient(
    what: &str,
    params: &[f64],
    weights: &[f64],
    analytic: &[f64],
    outputs: impl FnMut(&[f64]) -> Vec<f64>,
) -> GradientReport {
    assert_eq!(
        analytic.len(),
        params.len(),
        "{what}: one gradient per parameter"
    );
    let numerical = numerical_gradient(params, weights, outputs);
    compare_gradients(what, &numerical, analytic)
}

/// The comparison half of [`check_gradient`], for numerical gradients obtained otherwise.
pub fn compare_gradients(what: &str, numerical: &[f64], analytic: &[f64]) -> GradientReport {
    assert_eq!(numerical.len(), analytic.len(), "{what}: lengths");
    let scale = max_abs(numerical).max(max_abs(analytic));
    assert!(
        scale > 0.0 && scale.is_finite(),
        "{what}: gradient scale {scale}: a check of an all-zero (or non-finite) gradient proves nothing"
    );
    let floor = GRAD_FLOOR_FRACTION * scale;
    let mut report = GradientReport {
        worst_error: 0.0,
        worst_index: 0,
        scale,
    };
    for (i, (&num, &ana)) in numerical.iter().zip(analytic).enumerate() {
        let err = (num - ana).abs() / num.abs().max(ana.abs()).max(floor);
        assert!(
            err.is_finite() && err <= GRAD_TOLERANCE,
            "{what}: element {i}: numerical {num:e}, analytic {ana:e}, error {err:e} > {GRAD_TOLERANCE:e} \
             (gradient scale {scale:e})"
        );
        if err > report.worst_error {
            report.worst_error = err;
            report.worst_index = i;
        }
    }
    println!(
        "{what}: {} elements, worst error {:.2e} (scale {scale:.2e})",
        numerical.len(),
        report.worst_error
    );
    report
}

/// Direct convolution: `y[n,p,q,k] = sum_{r,s,c} x[n, p stride - pad + r, q stride - pad + s, c]
/// w[k,r,s,c]`, reads outside the image being zero. Returns `y` and its dimensions.
pub fn conv2d_reference(
    x: &[f64],
    xd: [usize; 4],
    w: &[f64],
    wd: [usize; 4],
    stride: usize,
    pad: usize,
) -> (Vec<f64>, [usize; 4]) {
    let [n, h, wi, c] = xd;
    let [k, r, s, wc] = wd;
    assert_eq!(wc, c);
    let yd = [
        n,
        (h + 2 * pad - r) / stride + 1,
        (wi + 2 * pad - s) / stride + 1,
        k,
    ];
    let mut y = vec![0.0; numel(&yd)];
    for ni in 0..n {
        for p in 0..yd[1] {
            for q in 0..yd[2] {
                for ki in 0..k {
                    let mut acc = 0.0;
                    for ri in 0..r {
                        for si in 0..s {
                            let ih = (p * stride + ri) as isize - pad as isize;
                            let iw = (q * stride + si) as isize - pad as isize;
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= wi as isize {
                                continue;
                            }
                            for ci in 0..c {
                                acc += x[at4(xd, [ni, ih as usize, iw as usize, ci])]
                                    * w[at4(wd, [ki, ri, si, ci])];
                            }
                        }
                    }
                    y[at4(yd, [ni, p, q, ki])] = acc;
                }
            }
        }
    }
    (y, yd)
}

/// Rounds f64 data to f32: the inputs of the f32-against-f64 comparisons. The f64 reference then runs
/// on `to_f64(to_f32(data))`, exactly the same numbers.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Asserts that an f32 result matches its f64 reference computed on the same (f32-representable)
/// inputs: `max |got - reference| <= 8 f32::EPSILON sqrt(reduction_len) max |reference|`.
///
/// Why this bound: each output is a reduction of `reduction_len` products. Rounding each partial sum to
/// f32 adds an error of at most `eps/2` of the running sum; with random-sign inputs these errors add
/// like a random walk, so the total grows as `eps sqrt(L)` times the size of the terms, which is at most
/// the size of the largest output. The GEMM's blocked summation usually does better; the factor 8 is
/// headroom for the few roundings that are not part of the reduction (the final store, BN's scale and
/// shift). An indexing or algorithmic bug gives errors of the size of the values themselves, orders of
/// magnitude above this bound. Returns the measured error as a fraction of the bound.
pub fn assert_f32_matches(what: &str, got: &[f32], reference: &[f64], reduction_len: usize) -> f64 {
    assert_eq!(got.len(), reference.len(), "{what}: length");
    let scale = max_abs(reference);
    let bound = 8.0 * f64::from(f32::EPSILON) * (reduction_len as f64).sqrt() * scale;
    let worst = got
        .iter()
        .zip(reference)
        .map(|(&g, &r)| (f64::from(g) - r).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= bound,
        "{what}: f32 differs from the f64 reference by {worst:e}, more than the bound {bound:e} \
         (reduction length {reduction_len}, max |reference| {scale:e})"
    );
    println!(
        "{what}: f32 error {worst:.2e}, bound {bound:.2e} ({:.3} of it)",
        worst / bound
    );
    worst / bound
}

/// Asserts that `result` is an error whose message contains every one of `needles`.
pub fn assert_error<T: std::fmt::Debug>(result: resnet_cuda::Result<T>, needles: &[&str]) {
    match result {
        Ok(v) => panic!("expected an error mentioning {needles:?}, got Ok({v:?})"),
        Err(e) => {
            let message = e.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "error message {message:?} does not mention {needle:?}"
                );
            }
        }
    }
}
