//! The plan's unit tests.

use super::backward_filter::FILTER_MAX_SPLITS;
use super::*;
use crate::backend::gpu::tensor_map::TmaSwizzle;
use crate::backend::Conv2dGeometry;

fn shape(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> ConvShape {
    let geom = Conv2dGeometry::new(stride, pad);
    let p = geom.output_extent(x[1], w[1]).unwrap();
    let q = geom.output_extent(x[2], w[2]).unwrap();
    ConvShape {
        x,
        w,
        y: [x[0], p, q, w[0]],
        geom,
    }
}

#[test]
fn shared_memory_matches_the_kernel_configs_and_only_w64_opts_in() {
    assert_eq!(TcTile::T128x128.shared_bytes(), 49152);
    assert_eq!(TcTile::T64x64.shared_bytes(), 32768);
    assert_eq!(TcTile::T128x32.shared_bytes(), 40960);
    assert_eq!(TcTile::T64x16.shared_bytes(), 20480);
    assert_eq!(TcTile::T32x64.shared_bytes(), 24576);
    assert_eq!(TcTile::T128x128W64.shared_bytes(), 65536);
    assert_eq!(TcTile::H128x128.shared_bytes(), 66560);
    assert_eq!(TcTile::H128x256.shared_bytes(), 99328);
    assert_eq!(TcTile::H64x128.shared_bytes(), 50176);
    assert_eq!(TcTile::H128x64.shared_bytes(), 50176);
    assert_eq!(TcTile::H64x64.shared_bytes(), 33792);
    assert_eq!(TcTile::H128x128K64.shared_bytes(), 99328);
    assert_eq!(TcTile::H128x256K64.shared_bytes(), 148480);
    let s = shape([8, 56, 56, 256], [512, 1, 1, 256], 1, 0);
    assert!(!forward(&s).needs_shared_opt_in());
    assert!(forward_with(&s, TcTile::T128x128W64, false).needs_shared_opt_in());
    for tile in TcTile::HOPPER {
        let opt_in = tile != TcTile::H64x64;
        assert_eq!(forward_with(&s, tile, false).needs_shared_opt_in(), opt_in);
    }
}

#[test]
fn the_wgmma_family_keeps_the_statistics_partition_and_falls_back_for_general_shapes() {
    for s in [
        shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1),
        shape([8, 56, 56, 64], [64, 1, 1, 64], 1, 0),
        shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1),
        shape([128, 16, 16, 32], [32, 3, 3, 32], 1, 1),
        shape([1, 7, 7, 2048], [512, 1, 1, 2048], 1, 0),
    ] {
        let mma = forward_stats(&s);
        let wg = forward_stats_for(&s, TcFamily::Wgmma);
        assert!(wg.kernel.starts_with("conv2d_wgmma_"), "{}", wg.kernel);
        // Same rows per block, hence the same partitions (grid.x) for batch norm.
        assert_eq!(wg.grid.0, mma.grid.0, "{:?}", s);
        assert!(backward_data_for(&s, false, TcFamily::Wgmma)
            .kernel
            .starts_with("conv2d_wgmma_"));
        let f = backward_filter_for(&s, TcFamily::Wgmma);
        assert!(f.partial.kernel.starts_with("conv2d_wgmma_"));
    }
    // C = 3: the general loaders, which only mma.sync has.
    let stem = shape([1, 17, 17, 3], [16, 7, 7, 3], 2, 3);
    assert_eq!(
        forward_for(&stem, TcFamily::Wgmma).kernel,
        forward(&stem).kernel
    );
    assert_eq!(TcFamily::default(), TcFamily::MmaSync);
}

/// The block of a TMA-fed launch whose plain wgmma launch has `plain_block`: the same, plus the
/// producer where the kernel has one (both operands by TMA: kernels/conv_wgmma.cuh), a warp on a
/// tile at most 128 wide, a warpgroup on the 128x256 tiles.
fn fed_block(plain_block: (u32, u32, u32), fed_kernel: &str) -> (u32, u32, u32) {
    let tile = TcTile::HOPPER
        .into_iter()
        .find(|t| {
            let name = t.name().trim_start_matches("wgmma");
            fed_kernel.ends_with(&format!("_{name}_bf16"))
        })
        .unwrap_or_else(|| panic!("no Hopper tile for {fed_kernel}"));
    let both = fed_kernel.contains("_pointwise_") || fed_kernel.contains("_im2col_");
    let extra = match (both, tile.bn()) {
        (false, _) => 0,
        (true, 0..=128) => 32,
        (true, _) => 128,
    };
    (plain_block.0 + extra, plain_block.1, plain_block.2)
}

#[test]
fn the_tma_family_feeds_the_forward_by_tma_and_leaves_the_rest_to_wgmma() {
    for s in [
        shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1),
        shape([8, 56, 56, 256], [512, 1, 1, 256], 2, 0),
        shape([8, 56, 56, 64], [64, 1, 1, 64], 1, 0),
        shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1),
        shape([1, 7, 7, 2048], [512, 1, 1, 2048], 1, 0),
    ] {
        for stats in [false, true] {
            let (wg, tma) = if stats {
                let f = |family| forward_stats_for(&s, family);
                (f(TcFamily::Wgmma), f(TcFamily::WgmmaTma))
            } else {
                let f = |family| forward_for(&s, family);
                (f(TcFamily::Wgmma), f(TcFamily::WgmmaTma))
            };
            let op = if stats { "forward_stats" } else { "forward" };
            let pointwise = is_pointwise(&s);
            // The tile's depth: 64 for the k64 tiles.
            let bk = if wg.kernel.contains("k64") { 64 } else { 32 };
            let im2col = !pointwise && s.x[3] % bk == 0;
            let plain = format!("conv2d_wgmma_{op}_");
            let fed = match (pointwise, im2col) {
                (true, _) => format!("conv2d_wgmma_tma_pointwise_{op}_"),
                (false, true) => format!("conv2d_wgmma_tma_im2col_{op}_"),
                (false, false) => format!("conv2d_wgmma_tma_{op}_"),
            };
            assert_eq!(wg.kernel.replacen(&plain, &fed, 1), tma.kernel);
            // The im2col map: x's geometry, BM pixels by BK channels, a valid map.
            let x_map = tma.a_im2col.map(|a| a.im2col_map(0x7f00_0010_0000));
            assert_eq!(x_map.is_some(), im2col);
            if let Some(m) = x_map {
                assert_eq!(m.nhwc, s.x);
                assert_eq!(m.pixels_per_column as usize, wg.block.0 as usize / 2);
                assert_eq!(m.channels_per_pixel, bk as u32);
                m.validate().unwrap();
            }
            assert_eq!(
                (fed_block(wg.block, tma.kernel), wg.grid),
                (tma.block, tma.grid)
            );
            assert_eq!(tma.shared_bytes, wg.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
            let map = tma.b_map.expect("a TMA launch has a weight map");
            assert_eq!((map.rows, map.depth), (s.w[0], s.w[1] * s.w[2] * s.w[3]));
            let [n, h, w, c] = s.x;
            let input = tma.a_map.map(|m| (m.rows, m.depth, m.box_rows));
            let tile_rows = wg.block.0 as usize / 2; // BM: two threads a row
            assert_eq!(input, pointwise.then_some((n * h * w, c, tile_rows as u32)));
            assert!(wg.b_map.is_none() && wg.a_map.is_none());
            assert!(wg.tensor_maps(0x1000, 0x2000).next().is_none());
            // The maps are ones the CUDA driver takes (at any 16-byte aligned addresses), the
            // weights' first.
            let maps: Vec<TiledMap2d> = tma
                .tensor_maps(0x7f00_0000_0100, 0x7f00_0010_0000)
                .collect();
            assert_eq!(maps.len(), 1 + usize::from(pointwise));
            assert_eq!(maps[0].global, 0x7f00_0000_0100);
            for m in &maps {
                m.validate().unwrap();
            }
        }
        // The forward whose input is a BN's output, likewise, where it exists (C <= 512).
        let fused = forward_stats_bnrelu_for(&s, TcFamily::WgmmaTma);
        let plain = forward_stats_bnrelu_for(&s, TcFamily::Wgmma);
        assert_eq!(fused.is_some(), s.x[3] <= 512);
        assert_eq!(fused.is_some(), plain.is_some());
        if let (Some(fused), Some(plain)) = (fused, plain) {
            assert!(
                fused.kernel.starts_with("conv2d_wgmma_tma_"),
                "{}",
                fused.kernel
            );
            assert_eq!(
                (fused.grid, fused.block),
                (plain.grid, fed_block(plain.block, fused.kernel))
            );
            assert_eq!(
                fused.shared_bytes,
                plain.shared_bytes + WGMMA_TMA_BARRIER_BYTES
            );
            assert_eq!(fused.a_map.is_some(), is_pointwise(&s));
            assert!(fused.b_map.is_some());
        }
        for add in [false, true] {
            let (wg, tma) = (
                backward_data_for(&s, add, TcFamily::Wgmma),
                backward_data_for(&s, add, TcFamily::WgmmaTma),
            );
            if backward_data_pointwise_applies(&s) {
                let fed = wg
                    .kernel
                    .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_pointwise_", 1);
                assert_eq!(tma.kernel, fed);
                assert_eq!(
                    (tma.grid, tma.block),
                    (wg.grid, fed_block(wg.block, tma.kernel))
                );
                assert_eq!(tma.shared_bytes, wg.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
                let maps: Vec<TiledMap2d> = tma.tensor_maps(0x1000, 0x2000).collect();
                assert_eq!(maps.len(), 2);
                // w's panels: 64 input channels by BK output channels, the 128-byte swizzle.
                assert_eq!(maps[0].dims, [s.w[3] as u64, s.w[0] as u64]);
                assert_eq!(maps[0].box_dims[0], 64);
                assert_eq!(maps[0].swizzle, TmaSwizzle::B128);
                assert_eq!(
                    maps[1].dims,
                    [s.y[3] as u64, (s.y[0] * s.y[1] * s.y[2]) as u64]
                );
                for m in &maps {
                    m.validate().unwrap();
                }
                let bn = backward_data_bn_for(&s, TcFamily::WgmmaTma).unwrap();
                assert!(bn
                    .kernel
                    .starts_with("conv2d_wgmma_tma_pointwise_backward_data_bn_"));
            } else if s.geom.stride == 1 && s.w[0] % 32 == 0 {
                // Stride 1, K a multiple of the (32-deep) tile's depth: dy through an im2col
                // map, w's panels over its [K][R*S*C] view.
                let fed = wg
                    .kernel
                    .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_im2col_", 1);
                assert_eq!(tma.kernel, fed);
                assert_eq!(
                    (tma.grid, tma.block),
                    (wg.grid, fed_block(wg.block, tma.kernel))
                );
                let maps: Vec<TiledMap2d> = tma.tensor_maps(0x1000, 0x2000).collect();
                assert_eq!(maps.len(), 1);
                assert_eq!(
                    maps[0].dims,
                    [(s.w[1] * s.w[2] * s.w[3]) as u64, s.w[0] as u64]
                );
                let dy = tma.a_im2col.expect("dy's im2col map").im2col_map(0x2000);
                assert_eq!((dy.nhwc, dy.lower), (s.y, [-1, -1]));
                dy.validate().unwrap();
                let bn = backward_data_bn_for(&s, TcFamily::WgmmaTma).unwrap();
                assert!(bn
                    .kernel
                    .starts_with("conv2d_wgmma_tma_im2col_backward_data_bn_"));
            } else {
                assert_eq!(tma, wg);
            }
        }
        let (wg, tma) = (
            backward_filter_for(&s, TcFamily::Wgmma),
            backward_filter_for(&s, TcFamily::WgmmaTma),
        );
        let (wg_bn, tma_bn) = (
            backward_filter_bnrelu_for(&s, TcFamily::Wgmma).unwrap(),
            backward_filter_bnrelu_for(&s, TcFamily::WgmmaTma).unwrap(),
        );
        if is_pointwise(&s) {
            for (wg, tma) in [(wg, tma), (wg_bn, tma_bn)] {
                let fed =
                    wg.partial
                        .kernel
                        .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_pointwise_", 1);
                assert_eq!(tma.partial.kernel, fed);
                // The same split, workspace and reduce: only the partial kernel is fed.
                assert_eq!(
                    (tma.splits, tma.workspace_bytes),
                    (wg.splits, wg.workspace_bytes)
                );
                assert_eq!(tma.reduce, wg.reduce);
                let (p, q) = (tma.partial, wg.partial);
                assert_eq!((p.grid, p.block), (q.grid, fed_block(q.block, p.kernel)));
                assert_eq!(p.shared_bytes, q.shared_bytes + WGMMA_TMA_BARRIER_BYTES);
                // x's panels (64 input channels by BK pixels), then dy's: the 128-byte swizzle.
                let maps: Vec<TiledMap2d> = p.tensor_maps(0x1000, 0x2000).collect();
                let pixels = (s.x[0] * s.x[1] * s.x[2]) as u64;
                assert_eq!(maps[0].global, 0x1000);
                assert_eq!(maps[0].dims, [s.x[3] as u64, pixels]);
                assert_eq!(maps[1].dims, [s.y[3] as u64, pixels]);
                for m in &maps {
                    assert_eq!(m.box_dims[0], 64);
                    assert_eq!(m.swizzle, TmaSwizzle::B128);
                    m.validate().unwrap();
                }
            }
        } else if s.x[3] % 64 == 0 {
            // x through an im2col map (64-channel panels, BK pixels), dy's tiled panels.
            for (wg, tma) in [(wg, tma), (wg_bn, tma_bn)] {
                let fed =
                    wg.partial
                        .kernel
                        .replacen("conv2d_wgmma_", "conv2d_wgmma_tma_im2col_", 1);
                assert_eq!(tma.partial.kernel, fed);
                assert_eq!((tma.splits, tma.reduce), (wg.splits, wg.reduce));
                let maps: Vec<TiledMap2d> = tma.partial.tensor_maps(0x1000, 0x2000).collect();
                assert_eq!(maps.len(), 1);
                assert_eq!(maps[0].global, 0x2000);
                maps[0].validate().unwrap();
                let x = tma
                    .partial
                    .b_im2col
                    .expect("x's im2col map")
                    .im2col_map(0x1000);
                assert_eq!((x.nhwc, x.channels_per_pixel), (s.x, 64));
                x.validate().unwrap();
            }
        } else {
            assert_eq!((tma, tma_bn), (wg, wg_bn));
        }
    }
    // Every Hopper tile's boxes: BK x BN of w, BK x BM of a pointwise x, the swizzle of their
    // rows.
    let s = shape([2, 14, 14, 64], [256, 1, 1, 64], 1, 0);
    for tile in TcTile::HOPPER {
        let maps: Vec<TiledMap2d> = forward_tma_with(&s, tile, true)
            .tensor_maps(0x1000, 0x2000)
            .collect();
        assert_eq!(maps[0].box_dims, [tile.bk() as u32, tile.bn() as u32]);
        assert_eq!(maps[1].box_dims, [tile.bk() as u32, tile.bm() as u32]);
        for m in &maps {
            assert_eq!(m.swizzle.bytes() as usize, 2 * tile.bk());
            m.validate().unwrap();
        }
    }
    // The stem (C = 3) takes mma.sync's general loader, as with Wgmma.
    let stem = shape([1, 17, 17, 3], [16, 7, 7, 3], 2, 3);
    assert_eq!(forward_for(&stem, TcFamily::WgmmaTma), forward(&stem));
}

#[test]
fn hopper_tiles_name_their_wgmma_kernels() {
    let s = shape([2, 14, 14, 64], [256, 3, 3, 64], 1, 1);
    for tile in TcTile::HOPPER {
        let (bm, t) = (tile.bm(), tile.name().trim_start_matches("wgmma"));
        let name = |op: &str| format!("conv2d_wgmma_{op}_{t}_bf16");
        let launch = forward_with(&s, tile, false);
        assert_eq!(launch.kernel, name("forward"));
        assert_eq!(launch.block, (2 * bm as u32, 1, 1));
        let stats = forward_stats_with(&s, tile, false).0;
        assert_eq!(stats.kernel, name("forward_stats"));
        let data = backward_data_with(&s, false, tile, false).kernel;
        assert_eq!(data, name("backward_data"));
        let add = backward_data_with(&s, true, tile, false).kernel;
        assert_eq!(add, name("backward_data_add"));
        let filter = backward_filter_with(&s, tile, false, 2);
        assert_eq!(filter.partial.kernel, name("backward_filter"));
        assert_eq!(filter.reduce.unwrap().kernel, FILTER_REDUCE_KERNEL);
    }
}

#[test]
fn grids_cover_every_output() {
    for s in [
        shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1),
        shape([3, 57, 57, 40], [24, 3, 3, 40], 2, 1),
        shape([1, 7, 7, 512], [2048, 1, 1, 512], 1, 0),
        shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3),
    ] {
        let f = forward(&s);
        let [n, p, q, k] = s.y;
        let tile = TcTile::ALL
            .into_iter()
            .find(|t| f.block.0 == t.threads() && f.shared_bytes == t.shared_bytes())
            .unwrap();
        assert!(f.grid.0 as usize * tile.bm() >= n * p * q);
        assert!(f.grid.1 as usize * tile.bn() >= k);
        assert_eq!(f.grid.2, 1);
        let d = backward_data(&s, false);
        let st = s.geom.stride;
        assert_eq!(d.grid.2 as usize, st * st);
        let [_, h, w, c] = s.x;
        let tile = TcTile::ALL
            .into_iter()
            .find(|t| d.shared_bytes == t.shared_bytes())
            .unwrap();
        assert!(d.grid.0 as usize * tile.bm() >= n * h.div_ceil(st) * w.div_ceil(st));
        assert!(d.grid.1 as usize * tile.bn() >= c);
        let b = backward_filter(&s);
        let tile = TcTile::ALL
            .into_iter()
            .find(|t| b.partial.shared_bytes == t.shared_bytes())
            .unwrap();
        assert!(b.partial.grid.0 as usize * tile.bm() >= s.w[0]);
        assert!(b.partial.grid.1 as usize * tile.bn() >= s.w[1] * s.w[2] * s.w[3]);
        assert_eq!(b.partial.grid.2 as usize, b.splits);
    }
}

#[test]
fn the_statistics_partition_follows_the_forward_grid() {
    for s in [
        shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1),
        shape([3, 57, 57, 40], [24, 3, 3, 40], 2, 1),
        shape([64, 28, 28, 128], [512, 1, 1, 128], 1, 0),
        shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3),
        shape([1, 1, 1, 8], [16, 1, 1, 8], 1, 0),
    ] {
        let planned = forward(&s);
        let stats = forward_stats(&s);
        let part = forward_stats_partition(s.y);
        assert_eq!(stats.grid, planned.grid);
        assert_eq!(
            (stats.block, stats.shared_bytes),
            (planned.block, planned.shared_bytes)
        );
        assert_eq!(
            stats.kernel.replace("forward_stats_", "forward_"),
            planned.kernel
        );
        assert_eq!(part.partitions(), stats.grid.0 as usize);
        assert_eq!(part.floats(), 2 * part.partitions() * s.y[3]);
        let [n, p, q, _] = s.y;
        assert_eq!(part.rows, n * p * q);
        assert!(part.tile_rows * (part.partitions() - 1) < part.rows);
    }
}

#[test]
fn small_channel_counts_get_narrow_tiles() {
    // CIFAR resnet stage 1 (16 channels) and 2 (32 channels) at batch 128.
    let k16 = shape([128, 32, 32, 16], [16, 3, 3, 16], 1, 1);
    assert_eq!(forward(&k16).kernel, "conv2d_tc_forward_64x16_bf16");
    // Backward-filter's M axis is K: 16 output channels take the 32-row tile.
    assert_eq!(
        backward_filter(&k16).partial.kernel,
        "conv2d_tc_backward_filter_32x64_bf16"
    );
    assert_eq!(
        backward_data(&k16, true).kernel,
        "conv2d_tc_backward_data_add_64x16_bf16"
    );
    let k32 = shape([128, 16, 16, 32], [32, 3, 3, 32], 1, 1);
    assert_eq!(forward(&k32).kernel, "conv2d_tc_forward_128x32_bf16");
    // resnet50 at batch 64: a wide layer with many pixels takes the big tile.
    let big = shape([64, 28, 28, 128], [512, 1, 1, 128], 1, 0);
    assert_eq!(forward(&big).kernel, "conv2d_tc_forward_128x128_bf16");
    // ... and one whose 128x128 grid would not fill a wave takes 64x64.
    let late = shape([8, 7, 7, 512], [512, 3, 3, 512], 1, 1);
    assert_eq!(forward(&late).kernel, "conv2d_tc_forward_64x64_bf16");
}

#[test]
fn odd_channel_counts_take_the_general_kernels() {
    let stem = shape([2, 224, 224, 3], [64, 7, 7, 3], 2, 3);
    assert_eq!(
        forward(&stem).kernel,
        "conv2d_tc_forward_general_64x64_bf16"
    );
    assert_eq!(
        backward_data(&stem, false).kernel,
        "conv2d_tc_backward_data_general_64x16_bf16"
    );
    assert_eq!(
        backward_filter(&stem).partial.kernel,
        "conv2d_tc_backward_filter_general_64x64_bf16"
    );
    // K = 20: forward still vectorizes (only C matters), the backward passes do not.
    let k20 = shape([2, 8, 8, 16], [20, 3, 3, 16], 1, 1);
    assert!(!forward(&k20).kernel.contains("general"));
    assert!(backward_data(&k20, false).kernel.contains("general"));
}

#[test]
fn filter_splits_fill_the_gpu_and_size_the_workspace() {
    // 64 x 576 -> 1 x 9 tiles of 64x64: 264 / 9 -> 30 splits.
    let s = shape([32, 56, 56, 64], [64, 3, 3, 64], 1, 1);
    let f = backward_filter(&s);
    assert_eq!(f.splits, 30);
    assert_eq!(f.workspace_bytes, 30 * 64 * 576 * 4);
    let reduce = f.reduce.unwrap();
    assert_eq!(reduce.kernel, FILTER_REDUCE_KERNEL);
    assert_eq!(reduce.grid, (144, 1, 1));
    // 512 x 4608 -> 4 x 36 = 144 tiles of 128x128: 2 splits.
    let deep = shape([32, 7, 7, 512], [512, 3, 3, 512], 1, 1);
    assert_eq!(backward_filter(&deep).splits, 2);
    // A tiny reduction (1*4*4 rows) is never split: no workspace, no reduce.
    let tiny = shape([1, 4, 4, 8], [8, 3, 3, 8], 1, 1);
    let t = backward_filter(&tiny);
    assert_eq!((t.splits, t.workspace_bytes, t.reduce), (1, 0, None));
    // The split count never exceeds its cap.
    let stem = shape([256, 224, 224, 3], [64, 7, 7, 3], 2, 3);
    assert_eq!(backward_filter(&stem).splits, FILTER_MAX_SPLITS);
}

/// `RESNET_TMA_PRODUCER=0` takes a producer warp out of a launch, never a producer warpgroup (the
/// 128x256 tiles' consumers take their registers from its `setmaxnreg.dec`: kernels/conv_wgmma.cuh).
#[test]
fn only_a_producer_warp_is_left_out() {
    let s = shape([8, 14, 14, 256], [256, 1, 1, 256], 1, 0);
    for tile in TcTile::HOPPER {
        let fed = forward_tma_fed(&s, tile, false, TcFeed::Pointwise);
        let plain = fed.without_producer();
        if tile.bn() > WGMMA_PRODUCER_WARP_MAX_TILE_N as usize {
            assert_eq!(fed.producer_threads, WGMMA_PRODUCER_WARPGROUP_THREADS);
            assert_eq!(plain, fed, "{}", tile.name());
        } else {
            assert_eq!(fed.producer_threads, WGMMA_PRODUCER_THREADS);
            assert_eq!(plain.producer_threads, 0);
            assert_eq!(plain.block.0, fed.block.0 - WGMMA_PRODUCER_THREADS);
        }
    }
}
