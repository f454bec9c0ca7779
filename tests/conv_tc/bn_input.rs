//! Batch norm + ReLU applied as a tensor-core convolution stages its input: the
//! `conv2d_{tc,wgmma}_forward_stats_bnrelu_*` and `_backward_filter_bnrelu_*` kernels
//! (kernels/conv_tc_bn_input.cuh), which read BN's input x and compute z = relu(x scale + shift) in
//! shared memory, against the plain kernels of the same tile run on z stored.
//!
//! Exactness: the fused kernel's result must equal the plain kernel's on z bit for bit (the same
//! main loop and epilogue on the same staged bits). z is computed here on the host, so the data are
//! chosen to make every fp32 step of the map exact, whatever the device contracts into an fma: x
//! on a grid of 1/64 in (-2, 2) (7 significant bits, exact in bf16), gamma a multiple of 1/4 and
//! inv_std of 1/2 (scale = gamma inv_std: a few bits, a multiple of 1/8), mean and beta multiples
//! of 1/64 in (-1, 1); then mean scale, shift = beta - mean scale, x scale and x scale + shift are
//! all multiples of 2^-9 below 64 in magnitude: exact in fp32. The one rounding left, to bf16, is
//! to nearest even on both sides.
//!
//! What it catches: padding and rows or columns past the GEMM must stay zero (z's padding, not
//! relu(shift), positive in about half the channels here), each chunk mapped once with its own
//! channels' coefficients, and every stage of the pipeline mapped before it is read.

use super::*;
use resnet_cuda::backend::gpu::conv_tc_plan::TcFamily;

/// BN's statistics and parameters for `c` channels, and its input, on the exact grids above.
struct ExactBn {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl ExactBn {
    fn new(rng: &mut ChaCha8Rng, c: usize) -> Self {
        let mut grid = |step: f32, lo: i32, hi: i32| -> Vec<f32> {
            (0..c)
                .map(|_| rng.random_range(lo..hi) as f32 * step)
                .collect()
        };
        ExactBn {
            mean: grid(1.0 / 64.0, -63, 64),
            inv_std: grid(0.5, 1, 5),
            gamma: grid(0.25, 2, 7),
            beta: grid(1.0 / 64.0, -63, 64),
        }
    }

    /// BN's input: multiples of 1/64 in (-2, 2).
    fn input(rng: &mut ChaCha8Rng, n: usize) -> Vec<bf16> {
        (0..n)
            .map(|_| bf16::from_f32(rng.random_range(-127..128) as f32 / 64.0))
            .collect()
    }

    /// z = relu(x scale + shift), every fp32 step exact (module doc), rounded to bf16.
    fn apply(&self, x: &[bf16]) -> Vec<bf16> {
        let c = self.mean.len();
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let k = i % c;
                let scale = self.gamma[k] * self.inv_std[k];
                let shift = self.beta[k] - self.mean[k] * scale;
                bf16::from_f32((v.to_f32() * scale + shift).max(0.0))
            })
            .collect()
    }

    fn on_device(&self) -> [DeviceVec<f32>; 4] {
        [
            DeviceVec::new(&self.mean),
            DeviceVec::new(&self.inv_std),
            DeviceVec::new(&self.gamma),
            DeviceVec::new(&self.beta),
        ]
    }
}

/// Padding at both strides (3x3), 1x1 at stride 2, N = 1, C = 16 (a reduction slice of two taps),
/// C = 24 across 16- and 64-wide tiles, M (or the filter's N*P*Q) not a multiple of any tile, and
/// reductions long enough that every pipeline stage is reused.
pub(super) fn bn_input_shapes() -> Vec<ConvShape> {
    vec![
        shape([2, 9, 9, 24], [40, 3, 3, 24], 1, 1),
        shape([2, 9, 9, 16], [16, 3, 3, 16], 2, 1),
        shape([1, 7, 7, 64], [72, 1, 1, 64], 2, 0),
        shape([3, 5, 5, 32], [136, 3, 3, 32], 1, 1),
        // C = 16 again, over enough rows (N*P*Q = 288: 9 slices) that backward-filter's pipeline
        // reuses every stage.
        shape([2, 12, 12, 16], [16, 3, 3, 16], 1, 1),
    ]
}

fn args_with_bn(args: KernelArgs, bn: &[DeviceVec<f32>; 4]) -> KernelArgs {
    bn.iter().fold(args, |a, v| a.ptr(v.ptr))
}

/// The fused forward of `tile` on x against the plain statistics kernel of the same tile on z:
/// the same y and statistics partials, bit for bit.
fn check_forward_bn_input(s: &ConvShape, tile: TcTile, seed: u64) {
    let fused = conv_tc_plan::forward_stats_bnrelu_with(s, tile).unwrap();
    check_fused_forward(s, &fused, tile, seed);
}

/// The fused forward launch `fused` (of `tile`; fed by TMA when it has tensor maps) against the
/// plain cp.async kernel of the same tile run on z stored.
pub(super) fn check_fused_forward(s: &ConvShape, fused: &TcLaunch, tile: TcTile, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bn = ExactBn::new(&mut rng, s.x[3]);
    let x = ExactBn::input(&mut rng, len(s.x));
    let z = bn.apply(&x);
    let w = random_bf16(&mut rng, len(s.w));
    let (plain, part) = conv_tc_plan::forward_stats_with(s, tile, false);
    let (dx, dz, dw) = (
        DeviceVec::new(&bits(&x)),
        DeviceVec::new(&bits(&z)),
        DeviceVec::new(&bits(&w)),
    );
    let outputs = || {
        (
            DeviceVec::new(&vec![BF16_NAN; len(s.y)]),
            DeviceVec::new(&vec![f32::NAN; part.floats()]),
        )
    };
    let ((y_fused, stats_fused), (y_plain, stats_plain)) = (outputs(), outputs());
    let args = |input: DevicePtr, y: DevicePtr, stats: DevicePtr| {
        KernelArgs::new().ptr(input).ptr(dw.ptr).ptr(y).ptr(stats)
    };
    let devices = bn.on_device();
    let fused_args =
        args_with_bn(args(dx.ptr, y_fused.ptr, stats_fused.ptr), &devices).value(&s.dims());
    run(fused, with_tensor_maps(fused, fused_args, dw.ptr, dx.ptr));
    run(
        &plain,
        args(dz.ptr, y_plain.ptr, stats_plain.ptr).value(&s.dims()),
    );
    let what = format!(
        "{} on {:?} {:?} stride {}",
        fused.kernel, s.x, s.w, s.geom.stride
    );
    let (a, b) = (y_fused.to_host(), y_plain.to_host());
    let differing = a.iter().zip(&b).filter(|(u, v)| u != v).count();
    assert_eq!(
        differing,
        0,
        "{what}: y differs from {} on z in {differing} of {}",
        plain.kernel,
        a.len()
    );
    let (a, b) = (stats_fused.to_host(), stats_plain.to_host());
    assert!(
        b.iter().all(|v| v.is_finite()),
        "{what}: the plain kernel left partials unwritten"
    );
    let differing = a
        .iter()
        .zip(&b)
        .filter(|(u, v)| u.to_bits() != v.to_bits())
        .count();
    assert_eq!(
        differing,
        0,
        "{what}: statistics differ in {differing} of {}",
        a.len()
    );
}

/// The fused backward-filter of `tile` (with `splits`) on x against the plain kernel of the same
/// tile and splits on z: the same dw, bit for bit.
fn check_backward_filter_bn_input(s: &ConvShape, tile: TcTile, splits: usize, seed: u64) {
    let fused = conv_tc_plan::backward_filter_bnrelu_with(s, tile, splits).unwrap();
    check_fused_backward_filter(s, &fused, tile, seed);
}

/// `fused` (a `_bnrelu_` backward-filter of `tile`, with its split) on x against the plain kernel
/// of the same tile and splits on z = relu(BN(x)) stored: the same dw, bit for bit.
pub(super) fn check_fused_backward_filter(
    s: &ConvShape,
    fused: &TcFilterLaunch,
    tile: TcTile,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bn = ExactBn::new(&mut rng, s.x[3]);
    let x = ExactBn::input(&mut rng, len(s.x));
    let z = bn.apply(&x);
    let dy = random_bf16(&mut rng, len(s.y));
    let splits = fused.splits;
    let plain = conv_tc_plan::backward_filter_with(s, tile, false, splits);
    let (dx, dz, ddy) = (
        DeviceVec::new(&bits(&x)),
        DeviceVec::new(&bits(&z)),
        DeviceVec::new(&bits(&dy)),
    );
    let devices = bn.on_device();
    let count = len(s.w);
    let dw_of = |f: &TcFilterLaunch, input: DevicePtr, with_bn: bool| -> Vec<f32> {
        let dw = DeviceVec::new(&vec![f32::NAN; count]);
        let workspace = DeviceVec::new(&vec![f32::NAN; f.workspace_bytes / 4]);
        let out = if f.splits > 1 { workspace.ptr } else { dw.ptr };
        let args = KernelArgs::new().ptr(input).ptr(ddy.ptr).ptr(out);
        let args = if with_bn {
            args_with_bn(args, &devices)
        } else {
            args
        };
        let args = with_tensor_maps(&f.partial, args.value(&s.dims()), input, ddy.ptr);
        run(&f.partial, args);
        if let Some(reduce) = &f.reduce {
            let args = KernelArgs::new()
                .ptr(workspace.ptr)
                .ptr(dw.ptr)
                .int(f.splits)
                .u64(count);
            run(reduce, args);
        }
        dw.to_host()
    };
    let a = dw_of(fused, dx.ptr, true);
    let b = dw_of(&plain, dz.ptr, false);
    let what = format!(
        "{} (splits {splits}) on {:?} {:?} stride {}",
        fused.partial.kernel, s.x, s.w, s.geom.stride
    );
    assert!(
        b.iter().all(|v| v.is_finite()),
        "{what}: the plain kernel left dw unwritten"
    );
    let differing = a
        .iter()
        .zip(&b)
        .filter(|(u, v)| u.to_bits() != v.to_bits())
        .count();
    assert_eq!(
        differing, 0,
        "{what}: dw differs from {} on z in {differing} of {count}",
        plain.partial.kernel
    );
}

/// The tiles with a `_bnrelu_` kernel for `pass` among those this driver runs (`every_tile`).
fn bn_input_tiles(has: impl Fn(TcTile) -> bool) -> Vec<TcTile> {
    every_tile().into_iter().filter(|&t| has(t)).collect()
}

#[test]
fn forward_bn_input_every_tile() {
    let probe = bn_input_shapes()[0];
    let tiles = bn_input_tiles(|t| conv_tc_plan::forward_stats_bnrelu_with(&probe, t).is_some());
    // The four the mma.sync plan picks, and the four wgmma stand-ins where those kernels exist.
    assert!(tiles.len() >= 4, "{tiles:?}");
    for (i, s) in bn_input_shapes().iter().enumerate() {
        for &tile in &tiles {
            check_forward_bn_input(s, tile, 2100 + i as u64);
        }
    }
}

#[test]
fn backward_filter_bn_input_every_tile_and_split() {
    let probe = bn_input_shapes()[0];
    let tiles =
        bn_input_tiles(|t| conv_tc_plan::backward_filter_bnrelu_with(&probe, t, 1).is_some());
    assert!(tiles.len() >= 3, "{tiles:?}");
    for (i, s) in bn_input_shapes().iter().enumerate() {
        for &tile in &tiles {
            // One split (the whole reduction, every pipeline stage reused), and three (ranges that
            // end inside a slice).
            for splits in [1, 3] {
                check_backward_filter_bn_input(s, tile, splits, 2200 + i as u64);
            }
        }
    }
}

#[test]
fn bn_input_as_planned() {
    for (i, s) in bn_input_shapes().iter().enumerate() {
        for family in [TcFamily::MmaSync, TcFamily::Wgmma] {
            let fused = conv_tc_plan::forward_stats_bnrelu_for(s, family).unwrap();
            let plain = conv_tc_plan::forward_stats_for(s, family);
            assert_eq!(
                (fused.grid, fused.block, fused.shared_bytes),
                (
                    plain.grid,
                    plain.block,
                    plain.shared_bytes + conv_tc_plan::BN_TABLE_BYTES
                ),
                "{}: the plain kernel's launch and the coefficient table",
                fused.kernel
            );
            let filter = conv_tc_plan::backward_filter_bnrelu_for(s, family).unwrap();
            let plain_filter = conv_tc_plan::backward_filter_for(s, family);
            assert_eq!(
                (filter.partial.grid, filter.splits, filter.reduce),
                (
                    plain_filter.partial.grid,
                    plain_filter.splits,
                    plain_filter.reduce
                ),
                "{}: the plain kernel's launch",
                filter.partial.kernel
            );
            // Run where this process runs the family's tiles (`every_tile`: the mma.sync ones
            // always; wgmma's where their kernels exist, unless RESNET_TEST_TILES leaves them out).
            let tile = every_tile()
                .into_iter()
                .find(|&t| conv_tc_plan::forward_stats_bnrelu_with(s, t) == Some(fused));
            match tile {
                Some(tile) => check_forward_bn_input(s, tile, 2300 + i as u64),
                None => assert!(
                    family == TcFamily::Wgmma || std::env::var_os("RESNET_TEST_TILES").is_some(),
                    "{}: not run",
                    fused.kernel
                ),
            }
        }
    }
    // More channels than the forward's coefficient table holds: no fused forward.
    let wide = shape([1, 4, 4, 520], [64, 1, 1, 520], 1, 0);
    assert_eq!(
        conv_tc_plan::forward_stats_bnrelu_for(&wide, TcFamily::MmaSync),
        None
    );
    // Shapes the general loader takes have no fused kernels.
    let odd = shape([1, 5, 5, 12], [16, 3, 3, 12], 1, 1);
    assert_eq!(
        conv_tc_plan::forward_stats_bnrelu_for(&odd, TcFamily::MmaSync),
        None
    );
    assert!(conv_tc_plan::backward_filter_bnrelu_for(&odd, TcFamily::MmaSync).is_none());
}
