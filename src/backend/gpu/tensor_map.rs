//! Tensor maps for the tensor memory accelerator's tiled 2-D loads (`kernels/tma.cuh`,
//! `cp.async.bulk.tensor.2d`): a 2-D tensor in device memory, the box one copy moves and the
//! shared-memory swizzle it is stored with.
//!
//! On a GPU the map is the driver's opaque 128-byte `CUtensorMap` (`cuTensorMapEncodeTiled`); under
//! the emulator it is [`TiledMap2d::emulator_map`]'s layout, which `kernels/emu/emu_tma.h`
//! (`TmaTiledMap`) reads. Either way the caller uploads the 128 bytes to device memory and passes
//! their address to the kernel; both drivers apply [`TiledMap2d::validate`] first, the rules the
//! CUDA driver documents for a tiled map, so that a map the emulator takes is one a GPU takes.

use crate::{Error, Result};

use super::driver::DevicePtr;

/// How a copy stores each row of its box in shared memory: the 16-byte chunks of the shared-window
/// address bits 4-6 XORed with bits 7-9 (the 128-byte swizzle; 64 and 32 use 2 and 1 bits), the
/// patterns wgmma's descriptors read (`kernels/wgmma.cuh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmaSwizzle {
    None,
    B32,
    B64,
    B128,
}

impl TmaSwizzle {
    /// Bytes of the swizzle span (0 for none): a box row may not be wider.
    pub fn bytes(self) -> u32 {
        match self {
            TmaSwizzle::None => 0,
            TmaSwizzle::B32 => 32,
            TmaSwizzle::B64 => 64,
            TmaSwizzle::B128 => 128,
        }
    }
}

/// A 2-D tensor of `dims[1]` rows of `dims[0]` elements of `element_bytes` each, rows
/// `row_stride_bytes` apart from `global`, and the box a copy moves: `box_dims[1]` rows of
/// `box_dims[0]` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TiledMap2d {
    pub global: DevicePtr,
    pub element_bytes: u32,
    pub dims: [u64; 2],
    pub row_stride_bytes: u64,
    pub box_dims: [u32; 2],
    pub swizzle: TmaSwizzle,
}

/// A tensor map's 128 bytes, aligned as CUDA 13's `CUtensorMap` is: 128 bytes (CUDA 12 declared
/// 64, which `cuTensorMapEncode*` requires of the map it writes; 128 satisfies both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(128))]
pub struct TensorMapBytes(pub [u8; 128]);

/// `TmaTiledMap::magic` in `kernels/emu/emu_tma.h`.
const EMU_TILED_MAGIC: u32 = 0x544d_3244;

impl TiledMap2d {
    /// The CUDA driver's rules for `cuTensorMapEncodeTiled` that apply to a 2-D map without
    /// interleave: a 16-byte aligned address, dimensions of 1 to 2^32 elements, a row stride that is
    /// a multiple of 16 below 2^40 and holds a row, box dimensions of 1 to 256 with rows of a multiple
    /// of 16 bytes, no wider than the swizzle span.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| {
            Err(Error::InvalidArgument {
                op: "tensor map",
                message: format!("{self:?}: {why} (cuTensorMapEncodeTiled's rules)"),
            })
        };
        if ![1, 2, 4, 8].contains(&self.element_bytes) {
            return bad(format!(
                "elements of {} bytes (1, 2, 4 or 8)",
                self.element_bytes
            ));
        }
        if self.global % 16 != 0 {
            return bad("the global address is not 16-byte aligned".into());
        }
        if self.dims.iter().any(|&d| d == 0 || d > 1 << 32) {
            return bad("a dimension outside 1 ..= 2^32".into());
        }
        if self.row_stride_bytes % 16 != 0 || self.row_stride_bytes >= 1 << 40 {
            return bad("the row stride is not a multiple of 16 below 2^40".into());
        }
        if self.row_stride_bytes < self.dims[0] * u64::from(self.element_bytes) {
            return bad("the row stride is shorter than a row".into());
        }
        if self.box_dims.iter().any(|&b| b == 0 || b > 256) {
            return bad("a box dimension outside 1 ..= 256".into());
        }
        let row_bytes = self.box_dims[0] * self.element_bytes;
        if row_bytes % 16 != 0 {
            return bad(format!("box rows of {row_bytes} bytes (a multiple of 16)"));
        }
        if self.swizzle != TmaSwizzle::None && row_bytes > self.swizzle.bytes() {
            return bad(format!(
                "box rows of {row_bytes} bytes, wider than the {}-byte swizzle",
                self.swizzle.bytes()
            ));
        }
        Ok(())
    }

    /// Bytes one copy moves (and announces to its mbarrier): the whole box.
    pub fn box_bytes(&self) -> usize {
        self.box_dims[0] as usize * self.box_dims[1] as usize * self.element_bytes as usize
    }

    /// The emulator's map (`kernels/emu/emu_tma.h`, `TmaTiledMap`), after [`Self::validate`].
    pub fn emulator_map(&self) -> Result<TensorMapBytes> {
        self.validate()?;
        let mut b = [0u8; 128];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &EMU_TILED_MAGIC.to_le_bytes());
        put(4, &self.element_bytes.to_le_bytes());
        put(8, &self.swizzle.bytes().to_le_bytes());
        put(16, &self.global.to_le_bytes());
        put(24, &self.dims[0].to_le_bytes());
        put(32, &self.dims[1].to_le_bytes());
        put(40, &self.row_stride_bytes.to_le_bytes());
        put(48, &self.box_dims[0].to_le_bytes());
        put(52, &self.box_dims[1].to_le_bytes());
        Ok(TensorMapBytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> TiledMap2d {
        TiledMap2d {
            global: 0x1000,
            element_bytes: 2,
            dims: [100, 30],
            row_stride_bytes: 208,
            box_dims: [64, 8],
            swizzle: TmaSwizzle::B128,
        }
    }

    #[test]
    fn a_valid_map_passes_and_each_broken_rule_is_named() {
        assert!(map().validate().is_ok());
        let broken = [
            (
                TiledMap2d {
                    global: 0x1008,
                    ..map()
                },
                "16-byte aligned",
            ),
            (
                TiledMap2d {
                    row_stride_bytes: 200,
                    ..map()
                },
                "multiple of 16",
            ),
            (
                TiledMap2d {
                    row_stride_bytes: 96,
                    ..map()
                },
                "shorter than a row",
            ),
            (
                TiledMap2d {
                    box_dims: [4, 8],
                    ..map()
                },
                "box rows of 8 bytes",
            ),
            (
                TiledMap2d {
                    box_dims: [64, 300],
                    ..map()
                },
                "box dimension",
            ),
            (
                TiledMap2d {
                    swizzle: TmaSwizzle::B64,
                    ..map()
                },
                "wider than the 64-byte swizzle",
            ),
            (
                TiledMap2d {
                    element_bytes: 3,
                    ..map()
                },
                "elements of 3 bytes",
            ),
        ];
        for (m, why) in broken {
            let e = m.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn the_emulator_layout_puts_each_field_where_emu_tma_h_reads_it() {
        let b = map().emulator_map().unwrap().0;
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        assert_eq!(u32_at(0), EMU_TILED_MAGIC);
        assert_eq!((u32_at(4), u32_at(8)), (2, 128));
        assert_eq!((u64_at(16), u64_at(24), u64_at(32)), (0x1000, 100, 30));
        assert_eq!((u64_at(40), u32_at(48), u32_at(52)), (208, 64, 8));
    }
}
