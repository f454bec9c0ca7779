//! The paper's ImageNet training augmentation (sec. 3.4): the shorter side is resized to a length
//! drawn uniformly from `[256, 480]` (scale augmentation, after Simonyan and Zisserman), a 224x224
//! crop is taken at a uniform position, mirrored with probability one half, and AlexNet's PCA colour
//! augmentation is applied.
//!
//! PCA colour augmentation (Krizhevsky et al. 2012, sec. 4.1): with `lambda_i` and `p_i` the
//! eigenvalues and eigenvectors of the 3x3 covariance of ImageNet RGB pixels (on the `[0, 1]`
//! scale), each image gets `alpha_i ~ N(0, 0.1^2)` and every one of its pixels is shifted by
//! `sum_i p_i * alpha_i * lambda_i`. The constants are the standard ones (fb.resnet.torch, and
//! torchvision's reference scripts).

use rand::RngCore;

use super::{below, unit_f32};

/// The side of a training crop.
pub const CROP: usize = 224;
/// The range of the shorter side after scale augmentation, inclusive.
pub const SCALE_RANGE: (usize, usize) = (256, 480);
/// Standard deviation of the PCA colour coefficients `alpha`.
pub const PCA_STD: f32 = 0.1;
/// Eigenvalues of the ImageNet RGB covariance (pixels on `[0, 1]`), largest first.
pub const PCA_EIGENVALUES: [f32; 3] = [0.2175, 0.0188, 0.0045];
/// The matching eigenvectors as columns: `PCA_EIGENVECTORS[channel][i]` is component `channel` (R,
/// G, B) of eigenvector `i`.
pub const PCA_EIGENVECTORS: [[f32; 3]; 3] = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
];

/// One drawn training view of an image of a given size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleCropParams {
    /// The length the shorter side is resized to.
    pub short_side: usize,
    /// Top-left corner of the crop in the resized image.
    pub y0: usize,
    pub x0: usize,
    pub flip: bool,
    /// The PCA coefficients `alpha`.
    pub alpha: [f32; 3],
}

impl ScaleCropParams {
    /// The colour shift this view adds to every pixel (`[0, 1]` scale): `sum_i p_i alpha_i lambda_i`.
    pub fn rgb_shift(&self) -> [f32; 3] {
        pca_shift(self.alpha)
    }
}

/// `sum_i p_i * alpha_i * lambda_i` for each of R, G, B.
pub fn pca_shift(alpha: [f32; 3]) -> [f32; 3] {
    let mut shift = [0f32; 3];
    for (c, s) in shift.iter_mut().enumerate() {
        *s = (0..3)
            .map(|i| PCA_EIGENVECTORS[c][i] * alpha[i] * PCA_EIGENVALUES[i])
            .sum();
    }
    shift
}

/// Draws a view of an `h x w` image: the scale, then the crop position in the image resized to it,
/// then the mirror bit, then the three PCA coefficients, all from `rng`'s stream.
pub fn draw(rng: &mut (impl RngCore + ?Sized), h: usize, w: usize) -> ScaleCropParams {
    let (lo, hi) = SCALE_RANGE;
    let short_side = lo + below(rng, hi - lo + 1);
    let (rh, rw) = super::resize::shorter_side_size(h, w, short_side);
    let y0 = below(rng, rh - CROP + 1);
    let x0 = below(rng, rw - CROP + 1);
    let flip = rng.next_u32() >> 31 == 1;
    let alpha = [0; 3].map(|_: u8| PCA_STD * standard_normal(rng));
    ScaleCropParams {
        short_side,
        y0,
        x0,
        flip,
        alpha,
    }
}

/// A standard normal draw by Box-Muller from two uniforms of `rng`'s raw stream (written here, like
/// [`below`], so that views depend only on the stream): `sqrt(-2 ln u1) cos(2 pi u2)`, `u1` in
/// `(0, 1]`.
fn standard_normal(rng: &mut (impl RngCore + ?Sized)) -> f32 {
    let u1 = 1.0 - unit_f32(rng);
    let u2 = unit_f32(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}
