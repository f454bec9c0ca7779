//! Resizing RGB images with fast_image_resize. The filter is bilinear (triangle) convolution, as
//! torchvision's default `Resize` (bilinear with antialiasing): when shrinking, the library widens
//! the kernel by the scale factor, so every source pixel contributes (antialiasing, as Pillow does)
//! instead of a few samples aliasing fine texture. Bilinear's support is half Catmull-Rom's, which
//! makes the resize, the largest cost after decoding, about twice as fast.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::image::RgbImage;
use crate::error::{invalid, Result};

/// The filter used for every resize.
const ALGORITHM: ResizeAlg = ResizeAlg::Convolution(FilterType::Bilinear);

/// The size `(height, width)` of `(h, w)` with its shorter side scaled to `side`, keeping the aspect
/// ratio (the longer side rounded to the nearest pixel, at least `side`).
pub fn shorter_side_size(h: usize, w: usize, side: usize) -> (usize, usize) {
    let scale = |long: usize, short: usize| {
        ((long as f64 * side as f64 / short as f64).round() as usize).max(side)
    };
    if h <= w {
        (side, scale(w, h))
    } else {
        (scale(h, w), side)
    }
}

/// `image` resized to exactly `height x width`. An image already that size is copied unchanged.
pub fn resize(image: &RgbImage, height: usize, width: usize) -> Result<RgbImage> {
    if (image.height, image.width) == (height, width) {
        return Ok(image.clone());
    }
    let bad = |e: String| invalid("resize", e);
    let src = ImageRef::new(
        image.width as u32,
        image.height as u32,
        &image.data,
        PixelType::U8x3,
    )
    .map_err(|e| bad(e.to_string()))?;
    let mut dst = Image::new(width as u32, height as u32, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ALGORITHM))
        .map_err(|e| bad(e.to_string()))?;
    RgbImage::new(width, height, dst.into_vec())
}

/// `image` with its shorter side resized to `side` (see [`shorter_side_size`]).
pub fn resize_shorter_side(image: &RgbImage, side: usize) -> Result<RgbImage> {
    let (h, w) = shorter_side_size(image.height, image.width, side);
    resize(image, h, w)
}

/// The `size x size` region of `image` whose top-left pixel is `(y0, x0)`, mirrored left to right
/// when `flip`. Panics if the region leaves the image (callers compute it from the image's size).
pub fn crop(
    image: &RgbImage,
    y0: usize,
    x0: usize,
    size_h: usize,
    size_w: usize,
    flip: bool,
) -> RgbImage {
    assert!(
        y0 + size_h <= image.height && x0 + size_w <= image.width,
        "crop {size_h}x{size_w} at ({y0}, {x0}) leaves the {}x{} image",
        image.height,
        image.width
    );
    let mut data = Vec::with_capacity(size_h * size_w * 3);
    for y in y0..y0 + size_h {
        let row = &image.data[(y * image.width + x0) * 3..][..size_w * 3];
        if flip {
            for px in row.chunks_exact(3).rev() {
                data.extend_from_slice(px);
            }
        } else {
            data.extend_from_slice(row);
        }
    }
    RgbImage {
        width: size_w,
        height: size_h,
        data,
    }
}

/// The `out_h x out_w` crop at `(y0, x0)` of `image` resized to `(rh, rw)`: the whole image is
/// resized, then cropped. (Resampling only the region under the crop with fast_image_resize's
/// source-crop option would be cheaper, but fast_image_resize 5.5 overflows on some fractional crop
/// boxes; see `every_drawn_training_crop_can_be_resampled` in `tests/it/data_imagenet.rs`.)
pub fn resize_crop(
    image: &RgbImage,
    (rh, rw): (usize, usize),
    (y0, x0): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Result<RgbImage> {
    if y0 + out_h > rh || x0 + out_w > rw {
        return Err(invalid(
            "resize",
            format!("a {out_h}x{out_w} crop at ({y0}, {x0}) leaves the {rh}x{rw} image"),
        ));
    }
    let resized = resize(image, rh, rw)?;
    Ok(crop(&resized, y0, x0, out_h, out_w, false))
}
