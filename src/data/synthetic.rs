//! The built-in synthetic dataset: 32x32 RGB images of ten kinds of figure, drawn on the fly.
//!
//! Every image is a pure function of `(seed, split, index)`: a per-image ChaCha8 stream seeded from a
//! hash of the three decides everything, so any image can be made in any order, on any thread, with no
//! files. The class of an image is its figure:
//!
//! | label | class              | what defines it                                                     |
//! |-------|--------------------|---------------------------------------------------------------------|
//! | 0     | disk               | a filled circle                                                     |
//! | 1     | ring               | a circle outline (annulus)                                          |
//! | 2     | square outline     | the outline of a square at any rotation                             |
//! | 3     | triangle           | a filled equilateral triangle at any rotation                       |
//! | 4     | cross              | two crossing bars (`+` or `x` or between)                           |
//! | 5     | dot cluster        | 5 to 9 small dots scattered in a round area                         |
//! | 6     | horizontal stripes | a disk- or square-shaped patch of stripes within 15° of horizontal  |
//! | 7     | vertical stripes   | the same, within 15° of vertical                                    |
//! | 8     | diagonal stripes   | the same, within 12° of either diagonal                             |
//! | 9     | checkerboard       | a patch of checkerboard at any rotation                             |
//!
//! Nothing but the figure carries the class: background (a random colour ramp), figure colour,
//! position, size, rotation, stroke width, stripe period and phase are drawn independently of it, and
//! every image has per-pixel noise and 0 to 4 small clutter marks (short bars, blobs, small squares),
//! some drawn over the figure. The figures are small (4 to 13 pixels in radius) and the colour
//! contrast can be low, so the task needs a convolutional net that looks at shape, while colour and
//! pixel statistics alone are near chance (see `tests/it/data_synthetic.rs`).
//!
//! Measured learnability (`examples/synthetic_probe.rs`, seed 0, CPU backend): resnet20, batch 128,
//! SGD lr 0.1 divided by 10 at iterations 750 and 1125, momentum 0.9, weight decay 1e-4, the paper's
//! augmentation, 1,500 iterations. Test accuracy (first 2,000 test images): 48% at iteration 250,
//! 65% at 500, 81% at 750, 94% at 1,000, 95% at 1,250; at 1,500, 95.2% on all 10,000. The training
//! accuracy stays near chance for the first 100 iterations. Generation takes about 13 µs an image on
//! one core.
//!
//! Labels are balanced: each aligned block of ten indices holds each class exactly once, in an order
//! hashed from `(seed, split, block)`.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{below, mix_seed, unit_f32, Dataset, Splits};
use crate::error::{invalid, Result};

/// Height and width of every image.
pub const SIDE: usize = 32;
/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Images in the training split of [`splits`].
pub const TRAIN_LEN: usize = 50_000;
/// Images in the test split of [`splits`].
pub const TEST_LEN: usize = 10_000;

/// The class names, by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "disk",
    "ring",
    "square outline",
    "triangle",
    "cross",
    "dot cluster",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
];

/// Which stream of images: the training and test splits share no image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn tag(self) -> u64 {
        match self {
            Split::Train => 0x0074_7261_696e,
            Split::Test => 0x7465_7374,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// `len` images of one split of the synthetic data for one seed.
#[derive(Clone, Debug)]
pub struct SyntheticDataset {
    seed: u64,
    split: Split,
    len: usize,
}

/// The standard synthetic splits: 50,000 training and 10,000 test images from `seed`.
pub fn splits(seed: u64) -> Splits {
    splits_sized(seed, TRAIN_LEN, TEST_LEN)
}

/// The first `train` and `test` images of the synthetic splits of `seed` (for quick runs and tests).
pub fn splits_sized(seed: u64, train: usize, test: usize) -> Splits {
    Splits {
        train: Box::new(SyntheticDataset::new(seed, Split::Train, train)),
        test: Box::new(SyntheticDataset::new(seed, Split::Test, test)),
        name: "synthetic".to_string(),
    }
}

impl SyntheticDataset {
    /// The first `len` images of the `split` stream of `seed`. A shorter dataset is a prefix of a
    /// longer one with the same seed and split.
    pub fn new(seed: u64, split: Split, len: usize) -> Self {
        SyntheticDataset { seed, split, len }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn split(&self) -> Split {
        self.split
    }

    /// The label of image `index` (defined for any index, also past `len`).
    pub fn label(&self, index: usize) -> u32 {
        let block = (index / NUM_CLASSES) as u64;
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, self.split.tag(), 0x1abe1, block]));
        let mut perm: [u32; NUM_CLASSES] = std::array::from_fn(|i| i as u32);
        for i in (1..NUM_CLASSES).rev() {
            perm.swap(i, below(&mut rng, i + 1));
        }
        perm[index % NUM_CLASSES]
    }

    /// Draws image `index` (HWC RGB, `32 * 32 * 3` bytes) into `out` and returns its label; defined for
    /// any index, also past `len`. Panics if `out` has another length ([`Dataset::load`] checks).
    pub fn render(&self, index: usize, out: &mut [u8]) -> u32 {
        assert_eq!(out.len(), SIDE * SIDE * 3, "output buffer size");
        let label = self.label(index);
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, self.split.tag(), index as u64]));
        draw_image(label as usize, &mut rng, out);
        label
    }
}

impl Dataset for SyntheticDataset {
    fn len(&self) -> usize {
        self.len
    }

    fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    fn image_size(&self) -> (usize, usize) {
        (SIDE, SIDE)
    }

    fn load(&self, index: usize, out: &mut [u8]) -> Result<u32> {
        if index >= self.len {
            return Err(invalid(
                "synthetic load",
                format!(
                    "index {index} is past the end of the {} split ({} images)",
                    self.split.name(),
                    self.len
                ),
            ));
        }
        if out.len() != SIDE * SIDE * 3 {
            return Err(invalid(
                "synthetic load",
                format!(
                    "output buffer holds {} bytes, an image needs {}",
                    out.len(),
                    SIDE * SIDE * 3
                ),
            ));
        }
        Ok(self.render(index, out))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic {} ({} images, seed {})",
            self.split.name(),
            self.len,
            self.seed
        )
    }
}

// ---------------------------------------------------------------------------------------------------
// Drawing.

type Rgb = [f32; 3];

fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * unit_f32(rng)
}

fn random_colour(rng: &mut ChaCha8Rng) -> Rgb {
    [unit_f32(rng), unit_f32(rng), unit_f32(rng)]
}

fn distance(a: Rgb, b: Rgb) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Coverage of a pixel by a figure whose signed distance (negative inside) at the pixel centre is `d`:
/// a one-pixel-wide linear ramp, a cheap antialiasing.
fn coverage(d: f32) -> f32 {
    (0.5 - d).clamp(0.0, 1.0)
}

fn length(x: f32, y: f32) -> f32 {
    (x * x + y * y).sqrt()
}

/// Signed distance to an axis-aligned box of half-sizes `(bx, by)` centred at the origin.
fn box_sdf(x: f32, y: f32, bx: f32, by: f32) -> f32 {
    let dx = x.abs() - bx;
    let dy = y.abs() - by;
    length(dx.max(0.0), dy.max(0.0)) + dx.max(dy).min(0.0)
}

/// Signed distance to an equilateral triangle with side `2 r`, centred at the origin, apex up.
fn triangle_sdf(x: f32, y: f32, r: f32) -> f32 {
    const K: f32 = 1.732_050_8; // sqrt(3)
    let mut px = x.abs() - r;
    let mut py = -y + r / K;
    if px + K * py > 0.0 {
        let (nx, ny) = ((px - K * py) * 0.5, (-K * px - py) * 0.5);
        px = nx;
        py = ny;
    }
    px -= px.clamp(-2.0 * r, 0.0);
    -length(px, py) * py.signum()
}

/// Signed distance to the segment from `(ax, ay)` to `(bx, by)` thickened by `half_width`.
fn segment_sdf(x: f32, y: f32, a: (f32, f32), b: (f32, f32), half_width: f32) -> f32 {
    let (px, py) = (x - a.0, y - a.1);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let h = ((px * dx + py * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    length(px - dx * h, py - dy * h) - half_width
}

/// A soft square wave along `u` (in periods): 1 on a `duty` fraction of each period, 0 elsewhere,
/// with one-pixel ramps between (`period` is in pixels).
fn square_wave(u: f32, period: f32, duty: f32) -> f32 {
    let tri = (2.0 * (u - u.floor()) - 1.0).abs(); // 1 at whole periods, 0 half way between
    ((tri - (1.0 - duty)) * period * 0.5 + 0.5).clamp(0.0, 1.0)
}

/// The patch a texture is drawn in.
#[derive(Clone, Copy)]
enum Region {
    Disk(f32),
    Square(f32),
}

impl Region {
    fn sdf(self, x: f32, y: f32) -> f32 {
        match self {
            Region::Disk(r) => length(x, y) - r,
            Region::Square(h) => box_sdf(x, y, h, h),
        }
    }

    fn extent(self) -> f32 {
        match self {
            Region::Disk(r) => r,
            Region::Square(h) => h * std::f32::consts::SQRT_2,
        }
    }
}

const MAX_DOTS: usize = 9;

#[derive(Clone, Copy)]
enum Figure {
    Disk {
        r: f32,
    },
    Ring {
        r: f32,
        half_width: f32,
    },
    SquareOutline {
        half: f32,
        half_width: f32,
    },
    Triangle {
        r: f32,
    },
    Cross {
        arm: f32,
        half_width: f32,
    },
    Dots {
        dots: [(f32, f32, f32); MAX_DOTS],
        count: usize,
        extent: f32,
    },
    /// Stripes with normal `(nx, ny)` (in image axes), `period` pixels apart.
    Stripes {
        region: Region,
        nx: f32,
        ny: f32,
        period: f32,
        phase: f32,
        duty: f32,
    },
    Checker {
        region: Region,
        period: f32,
        phase: (f32, f32),
        duty: f32,
    },
    /// A clutter bar from `a` to `b` (local coordinates).
    Bar {
        a: (f32, f32),
        b: (f32, f32),
        half_width: f32,
    },
}

/// A figure placed on the canvas: centre and rotation (local = rotate(-angle)(pixel - centre)).
struct Placed {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
    figure: Figure,
}

impl Figure {
    /// Radius of a disk around the centre that holds the whole figure.
    fn extent(&self) -> f32 {
        match *self {
            Figure::Disk { r } => r,
            Figure::Ring { r, half_width } => r + half_width,
            Figure::SquareOutline { half, half_width } => {
                (half + half_width) * std::f32::consts::SQRT_2
            }
            Figure::Triangle { r } => 2.0 * r / 1.732_050_8,
            Figure::Cross { arm, half_width } => length(arm, half_width),
            Figure::Dots { extent, .. } => extent,
            Figure::Stripes { region, .. } | Figure::Checker { region, .. } => region.extent(),
            Figure::Bar { a, b, half_width } => length(a.0, a.1).max(length(b.0, b.1)) + half_width,
        }
    }
}

/// The image being drawn, HWC RGB in `[0, 1]`.
struct Canvas {
    px: [f32; SIDE * SIDE * 3],
}

impl Canvas {
    /// Blends `colour` over the pixels the placed figure covers, by the figure's coverage of each
    /// pixel centre (looking only inside its bounding box).
    fn paint(&mut self, placed: &Placed, colour: Rgb) {
        // One specialised loop per kind of figure: the match stays out of the per-pixel work.
        match placed.figure {
            Figure::Disk { r } => {
                self.paint_with(placed, colour, |u, v, _, _| coverage(length(u, v) - r))
            }
            Figure::Ring { r, half_width } => self.paint_with(placed, colour, |u, v, _, _| {
                coverage((length(u, v) - r).abs() - half_width)
            }),
            Figure::SquareOutline { half, half_width } => {
                self.paint_with(placed, colour, |u, v, _, _| {
                    coverage(box_sdf(u, v, half, half).abs() - half_width)
                })
            }
            Figure::Triangle { r } => {
                self.paint_with(placed, colour, |u, v, _, _| coverage(triangle_sdf(u, v, r)))
            }
            Figure::Cross { arm, half_width } => self.paint_with(placed, colour, |u, v, _, _| {
                coverage(box_sdf(u, v, arm, half_width).min(box_sdf(u, v, half_width, arm)))
            }),
            Figure::Dots { dots, count, .. } => self.paint_with(placed, colour, |u, v, _, _| {
                let d = dots[..count]
                    .iter()
                    .map(|&(px, py, r)| length(u - px, v - py) - r)
                    .fold(f32::INFINITY, f32::min);
                coverage(d)
            }),
            Figure::Stripes {
                region,
                nx,
                ny,
                period,
                phase,
                duty,
            } => {
                self.paint_with(placed, colour, |u, v, dx, dy| {
                    let inside = coverage(region.sdf(u, v));
                    if inside == 0.0 {
                        return 0.0;
                    }
                    // Stripes are laid in image axes: their direction does not turn with the region.
                    inside * square_wave((dx * nx + dy * ny) / period + phase, period, duty)
                })
            }
            Figure::Checker {
                region,
                period,
                phase,
                duty,
            } => self.paint_with(placed, colour, |u, v, _, _| {
                let inside = coverage(region.sdf(u, v));
                if inside == 0.0 {
                    return 0.0;
                }
                let a = square_wave(u / period + phase.0, period, duty);
                let b = square_wave(v / period + phase.1, period, duty);
                inside * (a + b - 2.0 * a * b)
            }),
            Figure::Bar { a, b, half_width } => self.paint_with(placed, colour, |u, v, _, _| {
                coverage(segment_sdf(u, v, a, b, half_width))
            }),
        }
    }

    /// The pixel loop of [`Canvas::paint`]: `cover(u, v, dx, dy)` gets the pixel centre in the figure's
    /// rotated frame `(u, v)` and relative to its centre in image axes `(dx, dy)`.
    #[inline(always)]
    fn paint_with(
        &mut self,
        placed: &Placed,
        colour: Rgb,
        cover: impl Fn(f32, f32, f32, f32) -> f32,
    ) {
        let e = placed.figure.extent() + 1.0;
        let clip = |c: f32| (c.floor().max(0.0) as usize).min(SIDE);
        let (x0, x1) = (clip(placed.cx - e), clip(placed.cx + e + 1.0));
        let (y0, y1) = (clip(placed.cy - e), clip(placed.cy + e + 1.0));
        for y in y0..y1 {
            let dy = y as f32 + 0.5 - placed.cy;
            for x in x0..x1 {
                let dx = x as f32 + 0.5 - placed.cx;
                let (u, v) = (
                    placed.cos * dx + placed.sin * dy,
                    -placed.sin * dx + placed.cos * dy,
                );
                let t = cover(u, v, dx, dy);
                if t > 0.0 {
                    let p = &mut self.px[(y * SIDE + x) * 3..][..3];
                    for ch in 0..3 {
                        p[ch] += t * (colour[ch] - p[ch]);
                    }
                }
            }
        }
    }
}

/// Draws a random rotation.
fn rotation(rng: &mut ChaCha8Rng) -> (f32, f32) {
    let angle = uniform(rng, 0.0, std::f32::consts::TAU);
    (angle.cos(), angle.sin())
}

fn region(rng: &mut ChaCha8Rng) -> Region {
    let r = uniform(rng, 6.0, 13.0);
    if rng.next_u32() & 1 == 0 {
        Region::Disk(r)
    } else {
        Region::Square(r * 0.85)
    }
}

/// Stripes whose normal is at `angle` (radians, image axes, y down) give lines perpendicular to it.
fn stripes(rng: &mut ChaCha8Rng, angle: f32) -> Figure {
    let period = uniform(rng, 3.0, 6.5);
    Figure::Stripes {
        region: region(rng),
        nx: angle.cos(),
        ny: angle.sin(),
        period,
        phase: unit_f32(rng),
        duty: uniform(rng, 0.4, 0.6),
    }
}

/// The figure that defines class `label`, in local coordinates.
fn class_figure(label: usize, rng: &mut ChaCha8Rng) -> Figure {
    use std::f32::consts::{FRAC_PI_2, FRAC_PI_4};
    let deg = |d: f32| d.to_radians();
    match label {
        0 => Figure::Disk {
            r: uniform(rng, 4.0, 11.0),
        },
        1 => {
            let r = uniform(rng, 5.0, 12.0);
            Figure::Ring {
                r,
                half_width: uniform(rng, 0.7, (0.18 * r).max(0.9)),
            }
        }
        2 => {
            let half = uniform(rng, 5.0, 10.5);
            Figure::SquareOutline {
                half,
                half_width: uniform(rng, 0.7, (0.18 * half).max(0.9)),
            }
        }
        3 => Figure::Triangle {
            r: uniform(rng, 5.5, 11.5),
        },
        4 => {
            let arm = uniform(rng, 5.5, 12.0);
            Figure::Cross {
                arm,
                half_width: uniform(rng, 0.8, (0.22 * arm).max(1.0)),
            }
        }
        5 => {
            let extent = uniform(rng, 5.0, 11.0);
            let count = 5 + below(rng, MAX_DOTS - 4);
            let mut dots = [(0.0, 0.0, 0.0); MAX_DOTS];
            for dot in &mut dots[..count] {
                let radius = uniform(rng, 1.0, 1.8);
                let reach = (extent - radius) * unit_f32(rng).sqrt();
                let angle = uniform(rng, 0.0, std::f32::consts::TAU);
                *dot = (reach * angle.cos(), reach * angle.sin(), radius);
            }
            Figure::Dots {
                dots,
                count,
                extent,
            }
        }
        6 => {
            let angle = FRAC_PI_2 + deg(uniform(rng, -15.0, 15.0));
            stripes(rng, angle)
        }
        7 => {
            let angle = deg(uniform(rng, -15.0, 15.0));
            stripes(rng, angle)
        }
        8 => {
            let diagonal = if rng.next_u32() & 1 == 0 {
                FRAC_PI_4
            } else {
                -FRAC_PI_4
            };
            let angle = diagonal + deg(uniform(rng, -12.0, 12.0));
            stripes(rng, angle)
        }
        9 => Figure::Checker {
            region: region(rng),
            period: uniform(rng, 3.0, 6.0),
            phase: (unit_f32(rng), unit_f32(rng)),
            duty: uniform(rng, 0.4, 0.6),
        },
        _ => unreachable!("label {label} out of range"),
    }
}

/// A small mark that belongs to no class: a short bar, a blob or a small filled square.
fn clutter_figure(rng: &mut ChaCha8Rng) -> Figure {
    match below(rng, 3) {
        0 => {
            let half_len = uniform(rng, 1.5, 4.5);
            Figure::Bar {
                a: (-half_len, 0.0),
                b: (half_len, 0.0),
                half_width: uniform(rng, 0.5, 0.9),
            }
        }
        1 => Figure::Disk {
            r: uniform(rng, 0.8, 2.2),
        },
        _ => {
            let half = uniform(rng, 1.0, 2.3);
            Figure::Cross {
                arm: half,
                half_width: half,
            }
        }
    }
}

/// A centre for a figure of radius `extent`: mostly inside the image, a little clipping allowed.
fn place(rng: &mut ChaCha8Rng, figure: Figure) -> Placed {
    let margin = (0.75 * figure.extent()).min(SIDE as f32 / 2.0 - 1.0);
    let (cos, sin) = rotation(rng);
    Placed {
        cx: uniform(rng, margin, SIDE as f32 - margin),
        cy: uniform(rng, margin, SIDE as f32 - margin),
        cos,
        sin,
        figure,
    }
}

/// The weakest colour contrast between figure and background (Euclidean distance in RGB, `[0, 1]`).
const MIN_CONTRAST: f32 = 0.22;

/// Draws one image of class `label` from the per-image stream `rng` into `out` (HWC RGB u8).
fn draw_image(label: usize, rng: &mut ChaCha8Rng, out: &mut [u8]) {
    // Background: a linear ramp between two random colours in a random direction.
    let c0 = random_colour(rng);
    let c1: Rgb = std::array::from_fn(|ch| (c0[ch] + uniform(rng, -0.35, 0.35)).clamp(0.0, 1.0));
    let (ramp_cos, ramp_sin) = rotation(rng);
    let mut canvas = Canvas {
        px: [0.0; SIDE * SIDE * 3],
    };
    let half = SIDE as f32 / 2.0;
    for y in 0..SIDE {
        for x in 0..SIDE {
            let along = ((x as f32 + 0.5 - half) * ramp_cos + (y as f32 + 0.5 - half) * ramp_sin)
                / SIDE as f32;
            let t = (0.5 + along).clamp(0.0, 1.0);
            let p = &mut canvas.px[(y * SIDE + x) * 3..][..3];
            for ch in 0..3 {
                p[ch] = c0[ch] + t * (c1[ch] - c0[ch]);
            }
        }
    }
    let mid: Rgb = std::array::from_fn(|ch| 0.5 * (c0[ch] + c1[ch]));

    // The figure, in a colour that stands apart from the background.
    let mut fg = random_colour(rng);
    for _ in 0..16 {
        if distance(fg, mid) >= MIN_CONTRAST {
            break;
        }
        fg = random_colour(rng);
    }
    let figure = class_figure(label, rng);
    let figure = place(rng, figure);

    // Clutter, each mark under or over the figure.
    let clutter_count = below(rng, 5);
    let mut over = Vec::with_capacity(4);
    for _ in 0..clutter_count {
        let mark = clutter_figure(rng);
        let (cos, sin) = rotation(rng);
        let placed = Placed {
            cx: uniform(rng, 0.0, SIDE as f32),
            cy: uniform(rng, 0.0, SIDE as f32),
            cos,
            sin,
            figure: mark,
        };
        let colour = random_colour(rng);
        if rng.next_u32() & 1 == 0 {
            canvas.paint(&placed, colour);
        } else {
            over.push((placed, colour));
        }
    }
    canvas.paint(&figure, fg);
    for (placed, colour) in &over {
        canvas.paint(placed, *colour);
    }

    // Per-pixel noise: triangular (sum of two uniforms), standard deviation `sigma`, from a fast
    // generator seeded by the image's stream.
    let sigma = uniform(rng, 0.03, 0.15);
    let scale = sigma / (1.0f32 / 6.0).sqrt() / 65_535.0;
    let mut noise = WyRand(rng.next_u64());
    for (pair, dst) in canvas.px.chunks_exact(2).zip(out.chunks_exact_mut(2)) {
        let bits = noise.next();
        for k in 0..2 {
            let word = bits >> (32 * k);
            let n = ((word & 0xffff) + ((word >> 16) & 0xffff)) as f32 - 65_535.0;
            dst[k] = ((pair[k] + n * scale) * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// wyrand: a tiny, fast 64-bit generator, used only for pixel noise.
struct WyRand(u64);

impl WyRand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        (t >> 64) as u64 ^ t as u64
    }
}
