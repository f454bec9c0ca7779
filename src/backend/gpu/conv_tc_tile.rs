//! The tensor-core convolutions' CTA tiles (`TcTile*` in kernels/conv_tc.cuh and
//! kernels/conv_wgmma.cuh): each one's shape, warps, pipeline stages and shared memory, and the
//! kernel family (mma.sync or Hopper's wgmma) that picks among them. The plan (conv_tc_plan/)
//! chooses a tile per shape.

/// The wgmma main loop's alignment slack (kWgmmaSmemAlign).
const WGMMA_SMEM_ALIGN: usize = 1024;

/// The CTA tile configurations (`TcTile*` in kernels/conv_tc.cuh; BK = 32 for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcTile {
    /// 128 x 128, 8 warps of 64 x 32, 3 stages, 49152 bytes: the big layers.
    T128x128,
    /// 64 x 64, 4 warps of 32 x 32, 4 stages, 32768 bytes: 64-channel layers, small grids.
    T64x64,
    /// 128 x 32, 4 warps of 32 x 32, 4 stages, 40960 bytes: 32-channel outputs (CIFAR).
    T128x32,
    /// 64 x 16, 4 warps of 16 x 16, 4 stages, 20480 bytes: 16-channel outputs (CIFAR).
    T64x16,
    /// 32 x 64, 4 warps of 16 x 32, 4 stages, 24576 bytes: backward-filter with K <= 32 (its M axis).
    T32x64,
    /// 128 x 128, 4 warps of 64 x 64, 4 stages, 65536 bytes (an opt-in above 48 KiB): CUTLASS's sm80
    /// workhorse shape, fewer ldmatrix per mma than `T128x128`'s 64 x 32 warp tiles, at about 250
    /// registers a thread. In the sweep only, until an H200 shows where it wins.
    T128x128W64,
    /// Hopper (sm_90a, `wgmma`; kernels/conv_wgmma.cuh): 128 x 128, two warpgroups of 64 x 128, 4
    /// stages plus 1 KiB of alignment, 66560 bytes (an opt-in). Its kernels load on compute
    /// capability 9.0 alone ([`TcTile::HOPPER`]).
    H128x128,
    /// Hopper: 128 x 256, two warpgroups of 64 x 256 (128 accumulators a thread), 99328 bytes: the
    /// widest outputs.
    H128x256,
    /// Hopper: 64 x 128, one warpgroup, 50176 bytes: more blocks for smaller layers.
    H64x128,
    /// Hopper: 128 x 64, two warpgroups of 64 x 64, 50176 bytes: 64-channel outputs.
    H128x64,
    /// Hopper: 64 x 64, one warpgroup, 33792 bytes (no opt-in): 64-channel outputs, small grids.
    H64x64,
    /// Hopper: 128 x 128 in 64-deep slices (half the barriers and waits a multiply), 3 stages, 99328
    /// bytes.
    H128x128K64,
    /// Hopper: 128 x 256 in 64-deep slices, 3 stages, 148480 bytes.
    H128x256K64,
}

impl TcTile {
    /// The mma.sync tiles (sm_80 and newer).
    pub const ALL: [TcTile; 6] = [
        TcTile::T128x128,
        TcTile::T64x64,
        TcTile::T128x32,
        TcTile::T64x16,
        TcTile::T32x64,
        TcTile::T128x128W64,
    ];

    /// The wgmma tiles (kernels/conv_wgmma_*_sm90a.cu, every pass, vector loader only), present on a
    /// GPU of compute capability 9.0 and in the emulator (`Driver::has_kernel` says). The plan does
    /// not pick them yet: the tile sweep (`benches/tc_tiles.rs`) measures them against the mma.sync
    /// tiles.
    pub const HOPPER: [TcTile; 7] = [
        TcTile::H128x128,
        TcTile::H128x256,
        TcTile::H64x128,
        TcTile::H128x64,
        TcTile::H64x64,
        TcTile::H128x128K64,
        TcTile::H128x256K64,
    ];

    /// Whether this is a wgmma tile ([`TcTile::HOPPER`]).
    pub const fn is_hopper(self) -> bool {
        matches!(
            self,
            TcTile::H128x128
                | TcTile::H128x256
                | TcTile::H64x128
                | TcTile::H128x64
                | TcTile::H64x64
                | TcTile::H128x128K64
                | TcTile::H128x256K64
        )
    }

    /// The loaders the tile has kernels for: the vector one (`false`) always, the general one
    /// (`true`, element gathers for C or K not a multiple of 8) on all but `T128x128W64`, where it
    /// would spill registers and would serve only the C = 3 stems, which never take that tile.
    pub const fn loaders(self) -> &'static [bool] {
        match self {
            TcTile::T128x128
            | TcTile::T64x64
            | TcTile::T128x32
            | TcTile::T64x16
            | TcTile::T32x64 => &[false, true],
            _ => &[false],
        }
    }

    /// The tile's part of its kernels' names (`conv2d_tc_forward_{name}_bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            TcTile::T128x128 => "128x128",
            TcTile::T64x64 => "64x64",
            TcTile::T128x32 => "128x32",
            TcTile::T64x16 => "64x16",
            TcTile::T32x64 => "32x64",
            TcTile::T128x128W64 => "128x128w64",
            TcTile::H128x128 => "wgmma128x128",
            TcTile::H128x256 => "wgmma128x256",
            TcTile::H64x128 => "wgmma64x128",
            TcTile::H128x64 => "wgmma128x64",
            TcTile::H64x64 => "wgmma64x64",
            TcTile::H128x128K64 => "wgmma128x128k64",
            TcTile::H128x256K64 => "wgmma128x256k64",
        }
    }

    /// (BM, BN, threads, pipeline stages, reduction slice depth BK).
    const fn params(self) -> (usize, usize, u32, usize, usize) {
        match self {
            TcTile::T128x128 => (128, 128, 256, 3, 32),
            TcTile::T64x64 => (64, 64, 128, 4, 32),
            TcTile::T128x32 => (128, 32, 128, 4, 32),
            TcTile::T64x16 => (64, 16, 128, 4, 32),
            TcTile::T32x64 => (32, 64, 128, 4, 32),
            TcTile::T128x128W64 => (128, 128, 128, 4, 32),
            TcTile::H128x128 => (128, 128, 256, 4, 32),
            TcTile::H128x256 => (128, 256, 256, 4, 32),
            TcTile::H64x128 => (64, 128, 128, 4, 32),
            TcTile::H128x64 => (128, 64, 256, 4, 32),
            TcTile::H64x64 => (64, 64, 128, 4, 32),
            TcTile::H128x128K64 => (128, 128, 256, 3, 64),
            TcTile::H128x256K64 => (128, 256, 256, 3, 64),
        }
    }

    pub const fn bm(self) -> usize {
        self.params().0
    }

    pub const fn bn(self) -> usize {
        self.params().1
    }

    pub const fn threads(self) -> u32 {
        self.params().2
    }

    /// The reduction elements of one pipeline slice (BK): 32, or 64 for the `k64` wgmma tiles.
    pub const fn bk(self) -> usize {
        self.params().4
    }

    /// Dynamic shared memory: stages * (BM + BN) * BK bf16, plus for the wgmma tiles the room to
    /// move the pipeline to a 1024-byte boundary (`wgmma_smem_bytes` in kernels/conv_wgmma.cuh).
    pub const fn shared_bytes(self) -> u32 {
        let (bm, bn, _, stages, bk) = self.params();
        let slack = if self.is_hopper() {
            WGMMA_SMEM_ALIGN
        } else {
            0
        };
        (stages * (bm + bn) * bk * 2 + slack) as u32
    }

    pub(super) const fn index(self) -> usize {
        match self {
            TcTile::T128x128 => 0,
            TcTile::T64x64 => 1,
            TcTile::T128x32 => 2,
            TcTile::T64x16 => 3,
            TcTile::T32x64 => 4,
            TcTile::T128x128W64 => 5,
            TcTile::H128x128 => 0,
            TcTile::H128x256 => 1,
            TcTile::H64x128 => 2,
            TcTile::H128x64 => 3,
            TcTile::H64x64 => 4,
            TcTile::H128x128K64 => 5,
            TcTile::H128x256K64 => 6,
        }
    }
}

/// Which tensor-core kernels a GPU backend launches: a choice the user makes
/// (`RESNET_TC_KERNELS`, [`TcFamily::from_env`]), never the device, so a shape computes the same
/// bits on every GPU that runs the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TcFamily {
    /// mma.sync (sm_80 and newer): the default.
    #[default]
    MmaSync,
    /// Hopper's wgmma (compute capability 9.0 only), where the shape takes the 16-byte loaders;
    /// the mma.sync kernels for the rest (the general loaders).
    Wgmma,
    /// [`TcFamily::Wgmma`] with the forward's weights brought by the tensor memory accelerator
    /// (`conv2d_wgmma_tma_forward*`, kernels/conv_wgmma_tma_sm90a.cu): the same tiles and
    /// the same bits; the other passes as `Wgmma`.
    WgmmaTma,
}

impl TcFamily {
    /// `RESNET_TC_KERNELS`: `mma` (or unset), `wgmma` or `wgmma-tma`; anything else is a one-line
    /// error.
    pub fn from_env() -> std::result::Result<Self, String> {
        Self::parse(std::env::var("RESNET_TC_KERNELS").ok().as_deref())
    }

    /// [`TcFamily::from_env`] of the variable's value (`None`: unset).
    fn parse(value: Option<&str>) -> std::result::Result<Self, String> {
        match value {
            None | Some("mma") => Ok(TcFamily::MmaSync),
            Some("wgmma") => Ok(TcFamily::Wgmma),
            Some("wgmma-tma") => Ok(TcFamily::WgmmaTma),
            Some(other) => Err(format!(
                "RESNET_TC_KERNELS={other:?}: expected `mma` (the default), `wgmma` or `wgmma-tma` \
                 (both compute capability 9.0)"
            )),
        }
    }

    /// Whether this family's kernels are Hopper's (compute capability 9.0 and the emulator only).
    pub fn is_hopper(self) -> bool {
        matches!(self, TcFamily::Wgmma | TcFamily::WgmmaTma)
    }

    /// Whether the forward's weights come by TMA (`TcLaunch::b_map`).
    pub fn weights_by_tma(self) -> bool {
        self == TcFamily::WgmmaTma
    }

    /// The tile of this family standing in for the mma.sync `tile` of a GEMM with `cols` columns: a
    /// wgmma tile with the same rows per block (BM: 128, or 64 for the narrower ones), so a forward's
    /// statistics partition does not change with the family, 64 columns wide for at most 64 columns
    /// and 128 otherwise; `tile` itself for MmaSync and for the general loaders.
    pub(super) fn tile(self, tile: TcTile, general: bool, cols: usize) -> TcTile {
        match self {
            TcFamily::Wgmma | TcFamily::WgmmaTma if !general => {
                match (tile.bm() >= 128, cols <= 64) {
                    (true, true) => TcTile::H128x64,
                    (true, false) => TcTile::H128x128,
                    (false, true) => TcTile::H64x64,
                    (false, false) => TcTile::H64x128,
                }
            }
            _ => tile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_variable_names_three_families_and_refuses_the_rest() {
        assert_eq!(TcFamily::parse(None), Ok(TcFamily::MmaSync));
        assert_eq!(TcFamily::parse(Some("mma")), Ok(TcFamily::MmaSync));
        assert_eq!(TcFamily::parse(Some("wgmma")), Ok(TcFamily::Wgmma));
        assert_eq!(TcFamily::parse(Some("wgmma-tma")), Ok(TcFamily::WgmmaTma));
        let e = TcFamily::parse(Some("tma")).unwrap_err();
        assert!(e.starts_with("RESNET_TC_KERNELS=\"tma\""), "{e}");
        assert!(TcFamily::WgmmaTma.is_hopper() && TcFamily::WgmmaTma.weights_by_tma());
        assert!(TcFamily::Wgmma.is_hopper() && !TcFamily::Wgmma.weights_by_tma());
        assert!(!TcFamily::MmaSync.is_hopper());
    }
}
