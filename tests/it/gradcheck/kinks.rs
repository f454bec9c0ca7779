//! Finite differences that tolerate ReLU kinks, for layers and networks with ReLUs inside.
//!
//! Perturbing one parameter of a block moves many pre-activations (through convolutions and BN's
//! batch statistics); when one of them crosses zero within the step, the loss has a kink there and
//! no finite difference approximates the derivative. Such a point is recognised by its one-sided
//! differences disagreeing: for a smooth loss `(L(p+h) - L(p)) - (L(p) - L(p-h)) = h^2 L''`, tiny,
//! while a kink leaves a jump of the size of the slope change times the distance past the kink. Those
//! elements are skipped, counted, and may be at most a few percent of those checked; every other
//! element must meet the tolerance of `common::check_gradient`.

use super::common::{compare_gradients, seeded, STEP};
use rand::seq::index::sample;

/// Which elements of a parameter to perturb.
#[derive(Clone, Copy)]
pub enum Sampling {
    All,
    /// A fixed random subset of at most this many elements (large tensors of whole networks).
    AtMost(usize, u64),
}

/// The largest fraction of checked elements that may sit on a kink.
const MAX_KINK_FRACTION: f64 = 0.05;

/// A one-sided difference pair is a kink when the two differ by more than this fraction of the
/// larger gradient scale; for a smooth loss they differ by `h L''`, about 1e-5 of the scale.
const KINK_THRESHOLD: f64 = 1e-3;

/// Checks `analytic = d/dp sum_i outputs(p)_i weights_i` on the sampled elements of `params`.
pub fn check_robust(
    what: &str,
    params: &[f64],
    weights: &[f64],
    analytic: &[f64],
    sampling: Sampling,
    mut outputs: impl FnMut(&[f64]) -> Vec<f64>,
) {
    assert_eq!(
        params.len(),
        analytic.len(),
        "{what}: one gradient per parameter"
    );
    let indices: Vec<usize> = match sampling {
        Sampling::All => (0..params.len()).collect(),
        Sampling::AtMost(k, seed) if k < params.len() => {
            let mut v = sample(&mut seeded(seed), params.len(), k).into_vec();
            v.sort_unstable();
            v
        }
        Sampling::AtMost(..) => (0..params.len()).collect(),
    };
    let mut p = params.to_vec();
    let base = outputs(&p);
    let mut numerical = Vec::new();
    let mut checked_analytic = Vec::new();
    let mut one_sided = Vec::new();
    for &j in &indices {
        let original = params[j];
        p[j] = original + STEP;
        let y_plus = outputs(&p);
        p[j] = original - STEP;
        let y_minus = outputs(&p);
        p[j] = original;
        // Differences of outputs before weighting: untouched outputs cancel exactly.
        let diff = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .zip(weights)
                .map(|((a, b), r)| (a - b) * r)
                .sum()
        };
        let right = diff(&y_plus, &base) / STEP;
        let left = diff(&base, &y_minus) / STEP;
        numerical.push(diff(&y_plus, &y_minus) / (2.0 * STEP));
        one_sided.push((left, right));
        checked_analytic.push(analytic[j]);
    }
    let scale = numerical
        .iter()
        .chain(&checked_analytic)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let smooth: Vec<usize> = (0..numerical.len())
        .filter(|&i| (one_sided[i].1 - one_sided[i].0).abs() <= KINK_THRESHOLD * scale)
        .collect();
    let kinks = numerical.len() - smooth.len();
    assert!(
        (kinks as f64) <= MAX_KINK_FRACTION * numerical.len() as f64,
        "{what}: {kinks} of {} elements sit on a ReLU kink, too many to trust the check",
        numerical.len()
    );
    let num: Vec<f64> = smooth.iter().map(|&i| numerical[i]).collect();
    let ana: Vec<f64> = smooth.iter().map(|&i| checked_analytic[i]).collect();
    compare_gradients(what, &num, &ana);
    if kinks > 0 {
        println!("{what}: skipped {kinks} element(s) on a ReLU kink");
    }
}
