//! The paper's CIFAR augmentation (sec. 4.2, after Lee et al.): pad the image with `pad` pixels of
//! zeros on each side, take a random crop of the original size, and mirror it horizontally with
//! probability one half.
//!
//! It runs on normalised images (`pixel / 255 - mean`), so the padding is zero in the mean-subtracted
//! space, as in the paper. A crop of the padded image is the original shifted by an offset
//! `(dy, dx)` in `[-pad, pad]` on each axis: output pixel `(y, x)` is input pixel `(y + dy, x + dx)`,
//! or zero where that lies outside the image. The mirror is applied to the crop. Nothing here assumes
//! CIFAR's size, so other datasets can reuse it.

use rand::RngCore;

use super::below;

/// One drawn view: the crop offset and whether to mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CropFlipParams {
    /// Vertical offset of the crop: output row `y` reads input row `y + dy`.
    pub dy: isize,
    /// Horizontal offset of the crop: before mirroring, output column `x` reads input column `x + dx`.
    pub dx: isize,
    /// Mirror the crop left to right.
    pub flip: bool,
}

impl CropFlipParams {
    /// The view that leaves the image as it is.
    pub const IDENTITY: CropFlipParams = CropFlipParams {
        dy: 0,
        dx: 0,
        flip: false,
    };
}

/// The augmentation's settings; [`CropFlip::draw`] makes a random view from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CropFlip {
    /// Zero padding on each side; offsets are drawn uniformly from `-pad..=pad`.
    pub pad: usize,
    /// Mirror with probability one half.
    pub flip: bool,
}

impl CropFlip {
    /// The paper's CIFAR augmentation: 4 pixels of padding and random mirroring.
    pub const CIFAR: CropFlip = CropFlip { pad: 4, flip: true };

    /// Draws one view: `dy`, then `dx`, then (when mirroring is on) the mirror bit, from `rng`'s raw
    /// stream, so the same stream always gives the same views.
    pub fn draw(&self, rng: &mut (impl RngCore + ?Sized)) -> CropFlipParams {
        let span = 2 * self.pad + 1;
        let dy = below(rng, span) as isize - self.pad as isize;
        let dx = below(rng, span) as isize - self.pad as isize;
        let flip = self.flip && rng.next_u32() >> 31 == 1;
        CropFlipParams { dy, dx, flip }
    }

    /// Draws `n` views one after another (see [`CropFlip::draw`]).
    pub fn draw_batch(&self, rng: &mut (impl RngCore + ?Sized), n: usize) -> Vec<CropFlipParams> {
        (0..n).map(|_| self.draw(rng)).collect()
    }
}

/// Writes the view `view` of the HWC image `src` (`h x w`, `c` channels) into `dst` (same size):
/// `dst[y][x] = src[y + dy][x' + dx]` with `x' = w - 1 - x` when mirroring and `x' = x` otherwise,
/// zero where the source pixel lies outside the image.
///
/// Panics if a buffer has the wrong length or an offset exceeds `pad` (the offsets come from
/// [`CropFlip::draw`], so that is a programming error, not bad data).
pub fn pad_crop_flip(
    src: &[f32],
    h: usize,
    w: usize,
    c: usize,
    pad: usize,
    view: CropFlipParams,
    dst: &mut [f32],
) {
    assert_eq!(
        src.len(),
        h * w * c,
        "pad_crop_flip: source holds {} values, expected {h}x{w}x{c}",
        src.len()
    );
    assert_eq!(
        dst.len(),
        src.len(),
        "pad_crop_flip: destination size differs from the source's"
    );
    assert!(
        view.dy.unsigned_abs() <= pad && view.dx.unsigned_abs() <= pad,
        "pad_crop_flip: offset ({}, {}) exceeds the padding {pad}",
        view.dy,
        view.dx
    );
    let row = w * c;
    // Output columns whose source column `x + dx` (before mirroring) lies inside the image.
    let x_lo = (-view.dx).clamp(0, w as isize) as usize;
    let x_hi = (w as isize - view.dx).clamp(0, w as isize) as usize;
    for y in 0..h {
        let out = &mut dst[y * row..][..row];
        let sy = y as isize + view.dy;
        if sy < 0 || sy >= h as isize {
            out.fill(0.0);
            continue;
        }
        let input = &src[sy as usize * row..][..row];
        if !view.flip {
            out[..x_lo * c].fill(0.0);
            if x_lo < x_hi {
                let sx_lo = (x_lo as isize + view.dx) as usize;
                out[x_lo * c..x_hi * c]
                    .copy_from_slice(&input[sx_lo * c..(sx_lo + x_hi - x_lo) * c]);
            }
            out[x_hi.max(x_lo) * c..].fill(0.0);
        } else {
            for x in 0..w {
                // Mirrored: output column x shows crop column w - 1 - x.
                let crop_x = w - 1 - x;
                let dst_px = &mut out[x * c..][..c];
                if crop_x >= x_lo && crop_x < x_hi {
                    let sx = (crop_x as isize + view.dx) as usize;
                    dst_px.copy_from_slice(&input[sx * c..][..c]);
                } else {
                    dst_px.fill(0.0);
                }
            }
        }
    }
}
