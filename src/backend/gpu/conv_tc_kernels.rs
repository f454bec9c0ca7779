//! The tensor-core convolutions' kernel names, per pass and tile: the tables the plan
//! (conv_tc_plan/) looks a launch's kernel up in.

use super::conv_tc_tile::TcTile;

/// Kernel names of one pass (look up with [`kernel_of`]): the mma.sync tiles' indexed
/// [general as usize][tile.index()], the wgmma tiles' by tile.index() (vector loader only).
pub(super) struct PassKernels {
    mma: [[&'static str; 6]; 2],
    wgmma: [&'static str; 7],
}
/// The entry of a tile without a general loader ([`TcTile::loaders`]).
const NO_KERNEL: &str = "";
pub(super) const FORWARD_KERNELS: PassKernels = PassKernels {
    mma: [
        [
            "conv2d_tc_forward_128x128_bf16",
            "conv2d_tc_forward_64x64_bf16",
            "conv2d_tc_forward_128x32_bf16",
            "conv2d_tc_forward_64x16_bf16",
            "conv2d_tc_forward_32x64_bf16",
            "conv2d_tc_forward_128x128w64_bf16",
        ],
        [
            "conv2d_tc_forward_general_128x128_bf16",
            "conv2d_tc_forward_general_64x64_bf16",
            "conv2d_tc_forward_general_128x32_bf16",
            "conv2d_tc_forward_general_64x16_bf16",
            "conv2d_tc_forward_general_32x64_bf16",
            NO_KERNEL,
        ],
    ],
    wgmma: [
        "conv2d_wgmma_forward_128x128_bf16",
        "conv2d_wgmma_forward_128x256_bf16",
        "conv2d_wgmma_forward_64x128_bf16",
        "conv2d_wgmma_forward_128x64_bf16",
        "conv2d_wgmma_forward_64x64_bf16",
        "conv2d_wgmma_forward_128x128k64_bf16",
        "conv2d_wgmma_forward_128x256k64_bf16",
    ],
};
pub(super) const FORWARD_STATS_KERNELS: PassKernels = PassKernels {
    mma: [
        [
            "conv2d_tc_forward_stats_128x128_bf16",
            "conv2d_tc_forward_stats_64x64_bf16",
            "conv2d_tc_forward_stats_128x32_bf16",
            "conv2d_tc_forward_stats_64x16_bf16",
            "conv2d_tc_forward_stats_32x64_bf16",
            "conv2d_tc_forward_stats_128x128w64_bf16",
        ],
        [
            "conv2d_tc_forward_stats_general_128x128_bf16",
            "conv2d_tc_forward_stats_general_64x64_bf16",
            "conv2d_tc_forward_stats_general_128x32_bf16",
            "conv2d_tc_forward_stats_general_64x16_bf16",
            "conv2d_tc_forward_stats_general_32x64_bf16",
            NO_KERNEL,
        ],
    ],
    wgmma: [
        "conv2d_wgmma_forward_stats_128x128_bf16",
        "conv2d_wgmma_forward_stats_128x256_bf16",
        "conv2d_wgmma_forward_stats_64x128_bf16",
        "conv2d_wgmma_forward_stats_128x64_bf16",
        "conv2d_wgmma_forward_stats_64x64_bf16",
        "conv2d_wgmma_forward_stats_128x128k64_bf16",
        "conv2d_wgmma_forward_stats_128x256k64_bf16",
    ],
};
pub(super) const BACKWARD_DATA_KERNELS: PassKernels = PassKernels {
    mma: [
        [
            "conv2d_tc_backward_data_128x128_bf16",
            "conv2d_tc_backward_data_64x64_bf16",
            "conv2d_tc_backward_data_128x32_bf16",
            "conv2d_tc_backward_data_64x16_bf16",
            "conv2d_tc_backward_data_32x64_bf16",
            "conv2d_tc_backward_data_128x128w64_bf16",
        ],
        [
            "conv2d_tc_backward_data_general_128x128_bf16",
            "conv2d_tc_backward_data_general_64x64_bf16",
            "conv2d_tc_backward_data_general_128x32_bf16",
            "conv2d_tc_backward_data_general_64x16_bf16",
            "conv2d_tc_backward_data_general_32x64_bf16",
            NO_KERNEL,
        ],
    ],
    wgmma: [
        "conv2d_wgmma_backward_data_128x128_bf16",
        "conv2d_wgmma_backward_data_128x256_bf16",
        "conv2d_wgmma_backward_data_64x128_bf16",
        "conv2d_wgmma_backward_data_128x64_bf16",
        "conv2d_wgmma_backward_data_64x64_bf16",
        "conv2d_wgmma_backward_data_128x128k64_bf16",
        "conv2d_wgmma_backward_data_128x256k64_bf16",
    ],
};
pub(super) const BACKWARD_DATA_ADD_KERNELS: PassKernels = PassKernels {
    mma: [
        [
            "conv2d_tc_backward_data_add_128x128_bf16",
            "conv2d_tc_backward_data_add_64x64_bf16",
            "conv2d_tc_backward_data_add_128x32_bf16",
            "conv2d_tc_backward_data_add_64x16_bf16",
            "conv2d_tc_backward_data_add_32x64_bf16",
            "conv2d_tc_backward_data_add_128x128w64_bf16",
        ],
        [
            "conv2d_tc_backward_data_add_general_128x128_bf16",
            "conv2d_tc_backward_data_add_general_64x64_bf16",
            "conv2d_tc_backward_data_add_general_128x32_bf16",
            "conv2d_tc_backward_data_add_general_64x16_bf16",
            "conv2d_tc_backward_data_add_general_32x64_bf16",
            NO_KERNEL,
        ],
    ],
    wgmma: [
        "conv2d_wgmma_backward_data_add_128x128_bf16",
        "conv2d_wgmma_backward_data_add_128x256_bf16",
        "conv2d_wgmma_backward_data_add_64x128_bf16",
        "conv2d_wgmma_backward_data_add_128x64_bf16",
        "conv2d_wgmma_backward_data_add_64x64_bf16",
        "conv2d_wgmma_backward_data_add_128x128k64_bf16",
        "conv2d_wgmma_backward_data_add_128x256k64_bf16",
    ],
};
pub(super) const BACKWARD_FILTER_KERNELS: PassKernels = PassKernels {
    mma: [
        [
            "conv2d_tc_backward_filter_128x128_bf16",
            "conv2d_tc_backward_filter_64x64_bf16",
            "conv2d_tc_backward_filter_128x32_bf16",
            "conv2d_tc_backward_filter_64x16_bf16",
            "conv2d_tc_backward_filter_32x64_bf16",
            "conv2d_tc_backward_filter_128x128w64_bf16",
        ],
        [
            "conv2d_tc_backward_filter_general_128x128_bf16",
            "conv2d_tc_backward_filter_general_64x64_bf16",
            "conv2d_tc_backward_filter_general_128x32_bf16",
            "conv2d_tc_backward_filter_general_64x16_bf16",
            "conv2d_tc_backward_filter_general_32x64_bf16",
            NO_KERNEL,
        ],
    ],
    wgmma: [
        "conv2d_wgmma_backward_filter_128x128_bf16",
        "conv2d_wgmma_backward_filter_128x256_bf16",
        "conv2d_wgmma_backward_filter_64x128_bf16",
        "conv2d_wgmma_backward_filter_128x64_bf16",
        "conv2d_wgmma_backward_filter_64x64_bf16",
        "conv2d_wgmma_backward_filter_128x128k64_bf16",
        "conv2d_wgmma_backward_filter_128x256k64_bf16",
    ],
};
/// The forward kernels fed by TMA (kernels/conv_wgmma_tma_sm90a.cu), by Hopper tile index.
pub(super) const FORWARD_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_forward_128x128_bf16",
    "conv2d_wgmma_tma_forward_128x256_bf16",
    "conv2d_wgmma_tma_forward_64x128_bf16",
    "conv2d_wgmma_tma_forward_128x64_bf16",
    "conv2d_wgmma_tma_forward_64x64_bf16",
    "conv2d_wgmma_tma_forward_128x128k64_bf16",
    "conv2d_wgmma_tma_forward_128x256k64_bf16",
];
pub(super) const FORWARD_STATS_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_forward_stats_128x128_bf16",
    "conv2d_wgmma_tma_forward_stats_128x256_bf16",
    "conv2d_wgmma_tma_forward_stats_64x128_bf16",
    "conv2d_wgmma_tma_forward_stats_128x64_bf16",
    "conv2d_wgmma_tma_forward_stats_64x64_bf16",
    "conv2d_wgmma_tma_forward_stats_128x128k64_bf16",
    "conv2d_wgmma_tma_forward_stats_128x256k64_bf16",
];

/// The forward kernels with both operands fed by TMA, for pointwise shapes (1x1, stride 1, no
/// padding), by Hopper tile index.
pub(super) const FORWARD_POINTWISE_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_pointwise_forward_128x128_bf16",
    "conv2d_wgmma_tma_pointwise_forward_128x256_bf16",
    "conv2d_wgmma_tma_pointwise_forward_64x128_bf16",
    "conv2d_wgmma_tma_pointwise_forward_128x64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_64x64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_128x128k64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_128x256k64_bf16",
];
pub(super) const FORWARD_STATS_POINTWISE_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_pointwise_forward_stats_128x128_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_128x256_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_64x128_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_128x64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_64x64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_128x128k64_bf16",
    "conv2d_wgmma_tma_pointwise_forward_stats_128x256k64_bf16",
];

/// The forward kernels with the input through an im2col map (C % BK == 0), by Hopper tile index.
pub(super) const FORWARD_IM2COL_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_im2col_forward_128x128_bf16",
    "conv2d_wgmma_tma_im2col_forward_128x256_bf16",
    "conv2d_wgmma_tma_im2col_forward_64x128_bf16",
    "conv2d_wgmma_tma_im2col_forward_128x64_bf16",
    "conv2d_wgmma_tma_im2col_forward_64x64_bf16",
    "conv2d_wgmma_tma_im2col_forward_128x128k64_bf16",
    "conv2d_wgmma_tma_im2col_forward_128x256k64_bf16",
];
pub(super) const FORWARD_STATS_IM2COL_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_im2col_forward_stats_128x128_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_128x256_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_64x128_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_128x64_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_64x64_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_128x128k64_bf16",
    "conv2d_wgmma_tma_im2col_forward_stats_128x256k64_bf16",
];

/// Backward-data with both operands fed by TMA, for pointwise shapes, by Hopper tile index.
pub(super) const BACKWARD_DATA_POINTWISE_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_pointwise_backward_data_128x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_128x256_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_64x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_128x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_64x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_128x128k64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_128x256k64_bf16",
];
pub(super) const BACKWARD_DATA_ADD_POINTWISE_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_pointwise_backward_data_add_128x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_128x256_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_64x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_128x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_64x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_128x128k64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_data_add_128x256k64_bf16",
];

/// Stride-1 backward-data with dy through an im2col map and w's panels by TMA, by Hopper tile index.
pub(super) const BACKWARD_DATA_IM2COL_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_im2col_backward_data_128x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_128x256_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_64x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_128x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_64x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_128x128k64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_128x256k64_bf16",
];
pub(super) const BACKWARD_DATA_ADD_IM2COL_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_im2col_backward_data_add_128x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_128x256_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_64x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_128x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_64x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_128x128k64_bf16",
    "conv2d_wgmma_tma_im2col_backward_data_add_128x256k64_bf16",
];

/// Backward-filter with dy's panels and x through an im2col map (C % 64 == 0), by Hopper tile index.
pub(super) const BACKWARD_FILTER_IM2COL_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_im2col_backward_filter_128x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_128x256_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_64x128_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_128x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_64x64_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_128x128k64_bf16",
    "conv2d_wgmma_tma_im2col_backward_filter_128x256k64_bf16",
];

/// Backward-filter with both operands fed by TMA, for pointwise shapes, by Hopper tile index.
pub(super) const BACKWARD_FILTER_POINTWISE_TMA_KERNELS: [&str; 7] = [
    "conv2d_wgmma_tma_pointwise_backward_filter_128x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_128x256_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_64x128_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_128x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_64x64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_128x128k64_bf16",
    "conv2d_wgmma_tma_pointwise_backward_filter_128x256k64_bf16",
];

/// The kernel of `tile` with the vector (`general == false`) or the general loader.
pub(super) fn kernel_of(table: &PassKernels, tile: TcTile, general: bool) -> &'static str {
    assert!(
        tile.loaders().contains(&general),
        "the {} tile has no general-loader kernels",
        tile.name()
    );
    if tile.is_hopper() {
        table.wgmma[tile.index()]
    } else {
        table.mma[usize::from(general)][tile.index()]
    }
}

/// The backward-filter reduce kernel (fp32 partials to fp32 dw).
pub const FILTER_REDUCE_KERNEL: &str = "conv2d_tc_backward_filter_reduce_bf16";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_the_tile_and_loader() {
        for tile in TcTile::ALL {
            let t = tile.name();
            for &general in tile.loaders() {
                let g = usize::from(general);
                let general = if general { "general_" } else { "" };
                let name = |op: &str| format!("conv2d_tc_{op}_{general}{t}_bf16");
                assert_eq!(FORWARD_KERNELS.mma[g][tile.index()], name("forward"));
                let stats = format!("conv2d_tc_forward_stats_{general}{t}_bf16");
                assert_eq!(FORWARD_STATS_KERNELS.mma[g][tile.index()], stats);
                assert_eq!(
                    BACKWARD_DATA_KERNELS.mma[g][tile.index()],
                    name("backward_data")
                );
                assert_eq!(
                    BACKWARD_DATA_ADD_KERNELS.mma[g][tile.index()],
                    name("backward_data_add")
                );
                assert_eq!(
                    BACKWARD_FILTER_KERNELS.mma[g][tile.index()],
                    name("backward_filter")
                );
            }
        }
    }
}
