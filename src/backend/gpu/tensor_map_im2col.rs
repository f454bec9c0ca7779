//! Tensor maps for the tensor memory accelerator's im2col loads (`kernels/tma.cuh`,
//! `tma_load_im2col_4d`: `cp.async.bulk.tensor.4d ... .im2col`), the copy that can bring a
//! convolution's A tile (output pixels by one tap's input channels) without any thread computing
//! an address: docs/plans/hopper-tma.md.
//!
//! The walk, as the PTX ISA's im2col mode describes it and as the emulator implements it
//! (`kernels/emu/runtime/mbarrier.cpp`): an NHWC tensor of bf16; for a copy at coordinates
//! (c, w, h, n) with filter offsets (off_w, off_h), each image's pixel box is rows
//! `lower[0] + off_h .. H + upper[0] + off_h` (half-open) by columns `lower[1] + off_w .. W +
//! upper[1] + off_w`, stepped by `stride`. The copy loads `pixels_per_column` pixels, the first
//! at (n, h + off_h, w + off_w), each next one `stride[1]` further along the row, wrapping to the
//! box's first column of the next row (`stride[0]` down), and from the box's last row to its first
//! row of the next image; of each pixel `channels_per_pixel` channels from c, one pixel a row of
//! the shared-memory tile (with the map's swizzle), zeros wherever the element lies outside the
//! tensor (padding, channels past C, images past N). [`Im2colMap::for_convolution`] sets the box
//! so that consecutive pixels are a convolution's consecutive output pixels at one tap: the GEMM
//! rows m0.. of a forward's A operand. Whether a GPU walks exactly so (in particular past the
//! last image, and the order of the corners' two coordinates, W first as CUTLASS passes them) is
//! what `tests/tma.rs`'s im2col test checks on the device.

use crate::{Error, Result};

use super::driver::DevicePtr;
use super::tensor_map::{TensorMapBytes, TmaSwizzle};

/// An im2col map over the bf16 NHWC tensor `nhwc` at `global`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Im2colMap {
    pub global: DevicePtr,
    pub nhwc: [usize; 4],
    /// The pixel box for filter offset (0, 0): its first (row, column), relative to (0, 0) ...
    pub lower: [i32; 2],
    /// ... and its end (row, column), exclusive, relative to (H, W).
    pub upper: [i32; 2],
    /// Rows and columns from one pixel to the next (a convolution's stride).
    pub stride: [u32; 2],
    pub channels_per_pixel: u32,
    pub pixels_per_column: u32,
    pub swizzle: TmaSwizzle,
}

/// What one copy brings: `pixels` rows of `channels` channels, stored with `swizzle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Im2colBox {
    pub channels: u32,
    pub pixels: u32,
    pub swizzle: TmaSwizzle,
}

/// `TmaIm2colMap::magic` in `kernels/emu/emu_tma.h` ("I2CM").
const EMU_IM2COL_MAGIC: u32 = 0x4d43_3249;

impl Im2colMap {
    /// The map whose copy at coordinates `(c0, q*stride - pad, p*stride - pad, n)` with offsets
    /// `(s, r)` loads the input of output pixels (n, p, q).. at filter tap (r, s): channels
    /// `c0 .. c0 + channels` of each, `pixels` output pixels in the order of N*P*Q (the box's; a
    /// convolution of `r_s` = (R, S) taps, `stride`, `pad`, whose output is P x Q).
    pub fn for_convolution(
        global: DevicePtr,
        nhwc: [usize; 4],
        r_s: [usize; 2],
        (stride, pad): (usize, usize),
        tile: Im2colBox,
    ) -> Self {
        let [_, h, w, _] = nhwc;
        let out = |extent: usize, taps: usize| (extent + 2 * pad - taps) / stride + 1;
        let (p, q) = (out(h, r_s[0]), out(w, r_s[1]));
        // The box holds exactly P (Q) positions a stride apart from -pad: its end, relative to H
        // (W), is (P - 1) * stride + 1 - H - pad.
        let end = |positions: usize, extent: usize| {
            ((positions - 1) * stride + 1) as i32 - extent as i32 - pad as i32
        };
        Im2colMap {
            global,
            nhwc,
            lower: [-(pad as i32), -(pad as i32)],
            upper: [end(p, h), end(q, w)],
            stride: [stride as u32, stride as u32],
            channels_per_pixel: tile.channels,
            pixels_per_column: tile.pixels,
            swizzle: tile.swizzle,
        }
    }

    /// The CUDA driver's rules for `cuTensorMapEncodeIm2col` that apply here (rank 4, no
    /// interleave): a 16-byte aligned address, dimensions of 1 to 2^32, strides multiples of 16
    /// (C % 8 == 0), corners within -128 ..= 127 and a box of non-zero area, 1 to 256 channels a
    /// pixel in rows of a multiple of 16 bytes no wider than the swizzle span, 1 to 1024 pixels,
    /// traversal strides of 1 to 8.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| {
            Err(Error::InvalidArgument {
                op: "im2col tensor map",
                message: format!("{self:?}: {why} (cuTensorMapEncodeIm2col's rules)"),
            })
        };
        let [_, h, w, c] = self.nhwc;
        if self.global % 16 != 0 {
            return bad("the global address is not 16-byte aligned".into());
        }
        if self.nhwc.iter().any(|&d| d == 0 || d as u64 > 1 << 32) {
            return bad("a dimension outside 1 ..= 2^32".into());
        }
        if (c * 2) % 16 != 0 {
            return bad(format!(
                "{c} channels: pixels not a multiple of 16 bytes apart"
            ));
        }
        if self.strides_bytes().iter().any(|&s| s >= 1 << 40) {
            return bad("a stride of 2^40 bytes or more".into());
        }
        if self
            .lower
            .iter()
            .chain(&self.upper)
            .any(|&v| !(-128..=127).contains(&v))
        {
            return bad("a corner outside -128 ..= 127".into());
        }
        let rows = h as i64 + i64::from(self.upper[0]) - i64::from(self.lower[0]);
        let cols = w as i64 + i64::from(self.upper[1]) - i64::from(self.lower[1]);
        if rows < 1 || cols < 1 {
            return bad("a pixel box of zero area".into());
        }
        if !(1..=256).contains(&self.channels_per_pixel) {
            return bad("channels a pixel outside 1 ..= 256".into());
        }
        let row_bytes = self.channels_per_pixel * 2;
        if row_bytes % 16 != 0 {
            return bad(format!(
                "pixel rows of {row_bytes} bytes (a multiple of 16)"
            ));
        }
        if self.swizzle != TmaSwizzle::None && row_bytes > self.swizzle.bytes() {
            return bad(format!(
                "pixel rows of {row_bytes} bytes, wider than the {}-byte swizzle",
                self.swizzle.bytes()
            ));
        }
        if !(1..=1024).contains(&self.pixels_per_column) {
            return bad("pixels a column outside 1 ..= 1024".into());
        }
        if self.stride.iter().any(|&s| !(1..=8).contains(&s)) {
            return bad("a traversal stride outside 1 ..= 8".into());
        }
        Ok(())
    }

    /// The driver's `globalDim`, innermost first: C, W, H, N.
    pub fn dims_cwhn(&self) -> [u64; 4] {
        let [n, h, w, c] = self.nhwc;
        [c as u64, w as u64, h as u64, n as u64]
    }

    /// The driver's `globalStrides` in bytes: from one pixel, row and image to the next.
    pub fn strides_bytes(&self) -> [u64; 3] {
        let [_, h, w, c] = self.nhwc;
        let pixel = c as u64 * 2;
        [pixel, pixel * w as u64, pixel * (w * h) as u64]
    }

    /// Bytes one copy moves (and announces to its mbarrier).
    pub fn box_bytes(&self) -> usize {
        self.channels_per_pixel as usize * self.pixels_per_column as usize * 2
    }

    /// The emulator's map (`kernels/emu/emu_tma.h`, `TmaIm2colMap`), after [`Self::validate`].
    pub fn emulator_map(&self) -> Result<TensorMapBytes> {
        self.validate()?;
        let mut b = [0u8; 128];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &EMU_IM2COL_MAGIC.to_le_bytes());
        put(4, &2u32.to_le_bytes());
        put(8, &self.swizzle.bytes().to_le_bytes());
        put(16, &self.global.to_le_bytes());
        for (i, d) in self.dims_cwhn().iter().enumerate() {
            put(24 + 8 * i, &d.to_le_bytes());
        }
        // Corners and strides W first, as the driver takes them.
        put(56, &self.lower[1].to_le_bytes());
        put(60, &self.lower[0].to_le_bytes());
        put(64, &self.upper[1].to_le_bytes());
        put(68, &self.upper[0].to_le_bytes());
        put(72, &self.stride[1].to_le_bytes());
        put(76, &self.stride[0].to_le_bytes());
        put(80, &self.channels_per_pixel.to_le_bytes());
        put(84, &self.pixels_per_column.to_le_bytes());
        Ok(TensorMapBytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(channels: u32, pixels: u32, swizzle: TmaSwizzle) -> Im2colBox {
        Im2colBox {
            channels,
            pixels,
            swizzle,
        }
    }

    fn map() -> Im2colMap {
        let t = tile(32, 128, TmaSwizzle::B64);
        Im2colMap::for_convolution(0x1000, [2, 56, 56, 64], [3, 3], (1, 1), t)
    }

    #[test]
    fn a_convolution_box_holds_its_output_pixels() {
        // 3x3, stride 1, pad 1: the box runs from -1 to H + pad - (R - 1) = H - 1, exclusive: H
        // positions. Stride 2: 28 outputs of a 56-pixel row, the box 55 wide from -1.
        assert_eq!((map().lower, map().upper), ([-1, -1], [-1, -1]));
        let t = tile(64, 64, TmaSwizzle::B128);
        let s2 = Im2colMap::for_convolution(0, [1, 56, 56, 64], [3, 3], (2, 1), t);
        assert_eq!(s2.upper, [-2, -2]);
        let s2_1x1 = Im2colMap::for_convolution(0, [1, 56, 56, 64], [1, 1], (2, 0), t);
        assert_eq!((s2_1x1.lower, s2_1x1.upper), ([0, 0], [-1, -1]));
        for m in [map(), s2, s2_1x1] {
            m.validate().unwrap();
        }
    }

    #[test]
    fn a_valid_map_passes_and_each_broken_rule_is_named() {
        map().validate().unwrap();
        let broken = [
            (
                Im2colMap {
                    global: 0x1008,
                    ..map()
                },
                "16-byte aligned",
            ),
            (
                Im2colMap {
                    nhwc: [2, 56, 56, 12],
                    ..map()
                },
                "12 channels",
            ),
            (
                Im2colMap {
                    lower: [-200, -1],
                    ..map()
                },
                "-128 ..= 127",
            ),
            (
                Im2colMap {
                    upper: [-57, -1],
                    ..map()
                },
                "zero area",
            ),
            (
                Im2colMap {
                    channels_per_pixel: 4,
                    ..map()
                },
                "8 bytes",
            ),
            (
                Im2colMap {
                    channels_per_pixel: 64,
                    ..map()
                },
                "64-byte swizzle",
            ),
            (
                Im2colMap {
                    pixels_per_column: 2000,
                    ..map()
                },
                "1 ..= 1024",
            ),
            (
                Im2colMap {
                    stride: [9, 1],
                    ..map()
                },
                "1 ..= 8",
            ),
        ];
        for (m, why) in broken {
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn the_emulator_layout_puts_each_field_where_emu_tma_h_reads_it() {
        let m = Im2colMap {
            nhwc: [3, 5, 7, 16],
            lower: [-1, -2],
            upper: [1, -3],
            stride: [2, 1],
            channels_per_pixel: 16,
            pixels_per_column: 40,
            ..map()
        };
        let b = m.emulator_map().unwrap().0;
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let i32_at = |i: usize| i32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        assert_eq!(u32_at(0), EMU_IM2COL_MAGIC);
        assert_eq!((u32_at(4), u32_at(8), u64_at(16)), (2, 64, 0x1000));
        assert_eq!(
            (u64_at(24), u64_at(32), u64_at(40), u64_at(48)),
            (16, 7, 5, 3)
        );
        assert_eq!(
            (i32_at(56), i32_at(60), i32_at(64), i32_at(68)),
            (-2, -1, -3, 1)
        );
        assert_eq!((u32_at(72), u32_at(76)), (1, 2));
        assert_eq!((u32_at(80), u32_at(84)), (16, 40));
    }
}
