//! Decoding image files into 8-bit RGB: JPEG (baseline and progressive, grayscale, YCbCr, CMYK and
//! YCCK) with zune-jpeg, and PNG (any bit depth, palette, grey, with or without alpha) with `png`.
//! The format is told by the file's first bytes, not its name, so a mislabelled file still decodes
//! and a file that is neither fails with a message naming it.

use std::path::Path;

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::{Error, Result};

/// An 8-bit RGB image, HWC (`height * width * 3` bytes, row after row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// An image from its pixels, checking the size.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
        if data.len() != width * height * 3 || width == 0 || height == 0 {
            return Err(crate::error::invalid(
                "rgb image",
                format!(
                    "{} bytes do not make a {width}x{height} RGB image",
                    data.len()
                ),
            ));
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The RGB value of pixel `(y, x)`.
    pub fn pixel(&self, y: usize, x: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// The largest side accepted, so that a corrupt header cannot ask for gigabytes.
pub const MAX_SIDE: usize = 16_384;

const JPEG_MAGIC: &[u8] = &[0xff, 0xd8, 0xff];
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Reads and decodes the image file `path` to RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(crate::error::io_error(path))?;
    decode_rgb(&bytes, path)
}

/// Decodes the bytes of a JPEG or PNG file to RGB; `path` only names the file in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let fail = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let image = if bytes.starts_with(JPEG_MAGIC) {
        decode_jpeg(bytes).map_err(|e| fail(format!("corrupt JPEG: {e}")))?
    } else if bytes.starts_with(PNG_MAGIC) {
        decode_png(bytes).map_err(|e| fail(format!("corrupt PNG: {e}")))?
    } else {
        return Err(fail("not a JPEG or PNG image".into()));
    };
    if image.width == 0 || image.height == 0 {
        return Err(fail("the image is empty".into()));
    }
    Ok(image)
}

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    // Whatever the file's colour space (grey, YCbCr, CMYK, YCCK), ask for RGB: zune-jpeg converts.
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let data = decoder.decode().map_err(|e| format!("{e:?}"))?;
    let info = decoder.info().ok_or("no image header")?;
    let (width, height) = (info.width as usize, info.height as usize);
    if data.len() != width * height * 3 {
        return Err(format!(
            "decoded {} bytes for a {width}x{height} image",
            data.len()
        ));
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

fn decode_png(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Palettes and low bit depths become 8-bit samples, 16-bit samples are cut to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let (width, height) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "{width}x{height} is larger than {MAX_SIDE} pixels a side"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or("the image is too large")?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let samples = frame.color_type.samples();
    let line = frame.line_size;
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = &buf[y * line..][..width * samples];
        for px in row.chunks_exact(samples) {
            match samples {
                // Grey, grey + alpha: the grey value on all three channels; alpha is dropped.
                1 | 2 => data.extend_from_slice(&[px[0], px[0], px[0]]),
                _ => data.extend_from_slice(&px[..3]),
            }
        }
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}
