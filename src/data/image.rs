//! Decoding image files into 8-bit RGB: JPEG (baseline and progressive, grayscale, YCbCr, CMYK and
//! YCCK) with zune-jpeg, and PNG (any bit depth, palette, grey, with or without alpha) with `png`.
//! The format is told by the file's first bytes, not its name, so a mislabelled file still decodes
//! and a file that is neither fails with a message naming it.
//!
//! Decoding is strict: a damaged file (cut short by an interrupted download, a corrupt Huffman or
//! deflate stream, a PNG chunk with a wrong checksum, a missing end marker) is an error, as in
//! Pillow, rather than an image whose missing part the decoder filled with grey. Callers treat it
//! like any unreadable file: skipped, named once and counted.

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
    // Strict mode makes an invalid Huffman code, a marker where none belongs or data running out
    // before the last row of blocks an error; but zune-jpeg fills data missing from the last row
    // with grey and does not ask for the end marker, so the marker walk checks the file is whole.
    check_jpeg_complete(bytes)?;
    // Whatever the file's colour space (grey, YCbCr, CMYK, YCCK), ask for RGB: zune-jpeg converts.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
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

/// Checks that a JPEG's marker structure runs to its end-of-image marker (0xFFD9): a file cut
/// anywhere (in a header segment, inside the scan, just before the marker) lacks it. Segments are
/// skipped by their length, so an EXIF thumbnail's own end marker is not taken for the image's;
/// inside entropy-coded data a 0xFF byte is always followed by 0x00 (stuffing), a restart marker or
/// a real marker, so scanning for 0xFF finds the markers there. Bytes after the end marker are
/// allowed: cameras append trailers and Ultra HDR files a second image, and the image is whole.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    const TRUNCATED: &str = "truncated: the data ends before the end-of-image marker";
    let mut pos = 2; // after SOI
    loop {
        // The next marker: 0xFF, any number of 0xFF fill bytes, then the marker's code.
        let rest = bytes.get(pos..).unwrap_or_default();
        let ff = pos + rest.iter().position(|&b| b == 0xff).ok_or(TRUNCATED)?;
        let code_at = ff
            + bytes[ff..]
                .iter()
                .position(|&b| b != 0xff)
                .ok_or(TRUNCATED)?;
        let code = bytes[code_at];
        pos = code_at + 1;
        match code {
            0xd9 => return Ok(()),
            // Stuffing inside entropy-coded data, restart markers, TEM, SOI: no length follows.
            0x00 | 0x01 | 0xd0..=0xd8 => {}
            _ => pos += jpeg_segment_length(bytes, pos, code)?,
        }
    }
}

/// The length of the segment whose 2-byte big-endian length field starts at `pos` (the field
/// counts itself), checked to lie within the file.
fn jpeg_segment_length(bytes: &[u8], pos: usize, code: u8) -> std::result::Result<usize, String> {
    let field = bytes
        .get(pos..pos + 2)
        .ok_or("truncated: the data ends inside a segment header")?;
    let length = usize::from(u16::from_be_bytes([field[0], field[1]]));
    if length < 2 {
        return Err(format!("marker 0xFF{code:02X} has a length of {length}"));
    }
    if pos + length > bytes.len() {
        return Err(format!(
            "truncated: the data ends inside the segment of marker 0xFF{code:02X}"
        ));
    }
    Ok(length)
}

fn decode_png(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Check the zlib stream's Adler-32 as well as every chunk's CRC (the crate skips Adler-32 by
    // default).
    decoder.ignore_checksums(false);
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
    // Read on to IEND: a file cut after its pixel data, or with a bad checksum on a chunk after it
    // (IEND, a trailing text chunk), is damaged too.
    reader
        .finish()
        .map_err(|e| format!("after the image data: {e}"))?;
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
