//! The testing views of an ImageNet image (`eval --crops`), as in the paper (sec. 3.4 and 4.1):
//!
//! - `center`: the shorter side resized to 256, the central 224x224 crop;
//! - `10`: the standard 10-crop: from the same 256 image, the four corner 224x224 crops and the
//!   central one, and the mirror images of all five;
//! - `multiscale`: the fully-convolutional form: the whole image with its shorter side resized to
//!   each of 224, 256, 384, 480 and 640, and the mirror image at each scale.
//!
//! The network's softmax scores are averaged over an image's views.

use std::fmt;
use std::str::FromStr;

use super::image::RgbImage;
use super::imagenet_augment::CROP;
use super::resize::{crop, resize_shorter_side};
use crate::error::{Error, Result};

/// The shorter side an image is resized to before the `center` and `10` crops.
pub const TEST_SIDE: usize = 256;
/// The shorter sides of the `multiscale` views.
pub const MULTISCALE_SIDES: [usize; 5] = [224, 256, 384, 480, 640];

/// Which views `eval` averages over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Crops {
    #[default]
    Center,
    Ten,
    Multiscale,
}

impl Crops {
    /// Views per image.
    pub fn views_per_image(self) -> usize {
        match self {
            Crops::Center => 1,
            Crops::Ten => 10,
            Crops::Multiscale => 2 * MULTISCALE_SIDES.len(),
        }
    }
}

impl FromStr for Crops {
    type Err = Error;
    fn from_str(s: &str) -> Result<Crops> {
        match s {
            "center" => Ok(Crops::Center),
            "10" => Ok(Crops::Ten),
            "multiscale" => Ok(Crops::Multiscale),
            _ => Err(Error::Config(format!(
                "--crops {s:?}: expected `center`, `10` or `multiscale`"
            ))),
        }
    }
}

impl fmt::Display for Crops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Crops::Center => "center",
            Crops::Ten => "10",
            Crops::Multiscale => "multiscale",
        })
    }
}

/// Top-left corners `(y, x)` of the five `size x size` crops of an `h x w` image: top-left,
/// top-right, bottom-left, bottom-right, centre (the centre rounded towards the top-left).
pub fn five_crop_corners(h: usize, w: usize, size: usize) -> [(usize, usize); 5] {
    let (dy, dx) = (h - size, w - size);
    [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy / 2, dx / 2)]
}

/// The views of `image` for `crops`, in a fixed order (for `10`: the five crops of
/// [`five_crop_corners`], then their mirrors; for `multiscale`: each side of [`MULTISCALE_SIDES`],
/// the image then its mirror).
pub fn eval_views(image: &RgbImage, crops: Crops) -> Result<Vec<RgbImage>> {
    match crops {
        Crops::Center => {
            let resized = resize_shorter_side(image, TEST_SIDE)?;
            let (y, x) = five_crop_corners(resized.height, resized.width, CROP)[4];
            Ok(vec![crop(&resized, y, x, CROP, CROP, false)])
        }
        Crops::Ten => {
            let resized = resize_shorter_side(image, TEST_SIDE)?;
            let corners = five_crop_corners(resized.height, resized.width, CROP);
            Ok([false, true]
                .iter()
                .flat_map(|&flip| {
                    let resized = &resized;
                    corners
                        .iter()
                        .map(move |&(y, x)| crop(resized, y, x, CROP, CROP, flip))
                })
                .collect())
        }
        Crops::Multiscale => {
            let mut views = Vec::with_capacity(2 * MULTISCALE_SIDES.len());
            for side in MULTISCALE_SIDES {
                let resized = resize_shorter_side(image, side)?;
                let mirrored = crop(&resized, 0, 0, resized.height, resized.width, true);
                views.push(resized);
                views.push(mirrored);
            }
            Ok(views)
        }
    }
}
