//! Weight initialisation, as the paper and PyTorch do it.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// He et al. (2015) "Delving deep into rectifiers", normal, fan-out mode: `N(0, 2 / (K R S))` for a
/// `[K, R, S, C]` convolution weight (torchvision's `kaiming_normal_(mode="fan_out")`).
pub fn he_normal_fan_out(rng: &mut impl Rng, k: usize, r: usize, s: usize, c: usize) -> Vec<f64> {
    let std = (2.0 / (k * r * s) as f64).sqrt();
    let normal = Normal::new(0.0, std).expect("a positive standard deviation");
    (0..k * r * s * c).map(|_| normal.sample(rng)).collect()
}

/// PyTorch's default for `nn.Linear` weight and bias: `U(-1/sqrt(in), 1/sqrt(in))`.
pub fn pytorch_linear_default(rng: &mut impl Rng, len: usize, fan_in: usize) -> Vec<f64> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let uniform = Uniform::new_inclusive(-bound, bound).expect("a valid range");
    (0..len).map(|_| uniform.sample(rng)).collect()
}
