//! Batch-norm backward sums from the tensor-core backward-data's epilogue: the
//! `conv2d_{tc,wgmma}_backward_data_bn_*` kernels (kernels/conv_tc_bn_grad.cuh). u = 2^-24 below.
//!
//! For every tile with the kernel (the tiles backward-data's plan picks, both families), on shapes
//! with stride-2 phases of different sizes (3x3, grids with blocks past a phase's rows) and phases
//! no tap reaches (1x1, odd H), M not a multiple of BM, C not a multiple of BN and N = 1, with each
//! mask (none; BN's own ReLU, from its affine map of x; a block's end, y > 0) and with and without
//! the addend, outputs poisoned with NaN first:
//! - the stored gradient: bit for bit what the plain backward-data kernel of the same tile (with
//!   the addend) writes, with +0 where the mask is off (the same main loop and rounding; the mask is
//!   exact).
//! - the partials, summed over the P partitions in f64, against the exact sums from that stored
//!   gradient g and x: per channel `S = sum g` and `T = sum g (x - mean)`. The kernel's are fp32
//!   sums whose addition chains are shorter than the M rows (a thread's chunks, then the row lanes,
//!   per partition), each addition off by at most u times a partial sum, so
//!   `|S - S_ref| <= (M + 2) u sum|g|`; T's terms carry two more roundings (x - mean, the product),
//!   `|T - T_ref| <= (M + 4) u sum|g (x - mean)|`. BN's input x is drawn so that no
//!   `x scale + shift` lies within 1/16 of the kink at zero (`bn_input_off_the_kink`): the f64
//!   reference's mask is then the kernel's, whatever its fp32 rounding.
//! - every partial written: none left NaN, a block past its class's rows included (zeros).

use super::*;
use resnet_cuda::backend::gpu::conv_tc_plan::TcFamily;

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// BN parameters for `c` channels: (mean, inv_std, gamma, beta) in f32.
struct BnParams {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl BnParams {
    fn new(rng: &mut ChaCha8Rng, c: usize) -> Self {
        let mut draw =
            |lo: f32, hi: f32| -> Vec<f32> { (0..c).map(|_| rng.random_range(lo..hi)).collect() };
        BnParams {
            mean: draw(-0.5, 0.5),
            inv_std: draw(0.5, 2.0),
            gamma: draw(0.5, 1.5),
            beta: draw(-0.5, 0.5),
        }
    }

    /// BN's affine map of `x` in channel `c`, exactly (f64): the sign the ReLU takes.
    fn affine(&self, x: f64, c: usize) -> f64 {
        let scale = f64::from(self.gamma[c]) * f64::from(self.inv_std[c]);
        (x - f64::from(self.mean[c])) * scale + f64::from(self.beta[c])
    }
}

/// BN's input for `dims` (NHWC, channels last): bf16 values in [-2, 2) whose affine map lies at
/// least 1/16 from zero, so no fp32 rounding can move them across the ReLU's kink.
fn bn_input_off_the_kink(rng: &mut ChaCha8Rng, dims: [usize; 4], bn: &BnParams) -> Vec<bf16> {
    let c = dims[3];
    (0..len(dims))
        .map(|i| loop {
            let v = bf16::from_f32(rng.random_range(-2.0f32..2.0));
            if bn.affine(f64::from(v.to_f32()), i % c).abs() >= 1.0 / 16.0 {
                break v;
            }
        })
        .collect()
}

/// The shapes: 3x3 stride 2 on a 17 x 17 input (phases of 162, 144 and 128 rows: the grid, sized
/// for the largest, has blocks past the smallest's rows for BM = 64 and 128; C = 24 across a 16- or
/// 64-wide tile), 1x1 stride 2 on an odd side (phases no tap reaches), 3x3 stride 1 at N = 1, and a
/// 1x1 whose M is not a multiple of 128.
fn bn_grad_shapes() -> Vec<ConvShape> {
    vec![
        shape([2, 17, 17, 24], [40, 3, 3, 24], 2, 1),
        shape([2, 7, 7, 32], [64, 1, 1, 32], 2, 0),
        shape([1, 6, 6, 16], [16, 3, 3, 16], 1, 1),
        shape([3, 7, 7, 64], [16, 1, 1, 64], 1, 0),
    ]
}

/// The kernels' `mask` argument (kernels/conv_tc_bn_grad.cuh, TcBnMask).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Mask {
    None = 0,
    FromY = 1,
    FromAffine = 2,
}

const MASKS: [Mask; 3] = [Mask::None, Mask::FromY, Mask::FromAffine];

/// Runs the `_bn_` kernel `l` on `s` (outputs poisoned; its tensor maps appended if it is fed by
/// TMA) and checks it as the module says.
pub(super) fn check_bn_grad(
    s: &ConvShape,
    l: &TcLaunch,
    tile: TcTile,
    mask: Mask,
    add: bool,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = s.x[3];
    let bn = BnParams::new(&mut rng, c);
    let dy = random_bf16(&mut rng, len(s.y));
    let w = random_bf16(&mut rng, len(s.w));
    let x = bn_input_off_the_kink(&mut rng, s.x, &bn);
    // A block's output: a ReLU's, half of it zeros.
    let y: Vec<bf16> = random_bf16(&mut rng, len(s.x))
        .into_iter()
        .map(|v| v.max(bf16::ZERO))
        .collect();
    let addend = random_bf16(&mut rng, len(s.x));
    let (ddy, dw, dx_bn, dy_bn, dadd) = (
        DeviceVec::new(&bits(&dy)),
        DeviceVec::new(&bits(&w)),
        DeviceVec::new(&bits(&x)),
        DeviceVec::new(&bits(&y)),
        DeviceVec::new(&bits(&addend)),
    );
    let (mean, inv_std, gamma, beta) = (
        DeviceVec::new(&bn.mean),
        DeviceVec::new(&bn.inv_std),
        DeviceVec::new(&bn.gamma),
        DeviceVec::new(&bn.beta),
    );
    let floats = conv_tc_plan::bn_grad_partials(l, c);
    let partials = DeviceVec::new(&vec![f32::NAN; floats]);
    let dz = DeviceVec::new(&vec![BF16_NAN; len(s.x)]);
    let args = KernelArgs::new()
        .ptr(ddy.ptr)
        .ptr(dw.ptr)
        .ptr(dz.ptr)
        .ptr(if add { dadd.ptr } else { 0 })
        .ptr(dx_bn.ptr)
        .ptr(mean.ptr)
        .ptr(inv_std.ptr)
        .ptr(gamma.ptr)
        .ptr(beta.ptr)
        .int(mask as usize)
        .ptr(if mask == Mask::FromY { dy_bn.ptr } else { 0 })
        .ptr(partials.ptr)
        .value(&s.dims());
    run(l, with_tensor_maps(l, args, dw.ptr, ddy.ptr));
    let what = format!(
        "{} on {:?} {:?} stride {} ({mask:?} mask, addend {add})",
        l.kernel, s.x, s.w, s.geom.stride
    );

    // Whether element i's gradient passes the mask (exactly: x is off the kink, y exact).
    let passes = |i: usize| match mask {
        Mask::None => true,
        Mask::FromY => y[i].to_f32() > 0.0,
        Mask::FromAffine => bn.affine(f64::from(x[i].to_f32()), i % c) > 0.0,
    };
    // The stored gradient: the plain kernel's bits, +0 where masked.
    let plain = conv_tc_plan::backward_data_with(s, add, tile, false);
    let dz_plain = DeviceVec::new(&vec![BF16_NAN; len(s.x)]);
    let mut args = KernelArgs::new().ptr(ddy.ptr).ptr(dw.ptr).ptr(dz_plain.ptr);
    if add {
        args = args.ptr(dadd.ptr);
    }
    run(&plain, args.value(&s.dims()));
    let expected: Vec<u16> = dz_plain
        .to_host()
        .iter()
        .enumerate()
        .map(|(i, &b)| if passes(i) { b } else { 0 })
        .collect();
    let g_bits = dz.to_host();
    if let Some(i) = (0..g_bits.len()).find(|&i| g_bits[i] != expected[i]) {
        panic!(
            "{what}: element {i} stored {:#06x}, expected {:#06x} ({}'s, masked)",
            g_bits[i], expected[i], plain.kernel
        );
    }

    // The partials against the exact sums of g and g (x - mean) over the rows.
    let partials = partials.to_host();
    assert!(
        partials.iter().all(|v| v.is_finite()),
        "{what}: a partial was not written"
    );
    let p_count = floats / (2 * c);
    let rows = len(s.x) / c;
    let g = to_f64(&g_bits);
    for ch in 0..c {
        let (mut s_ref, mut s_abs, mut t_ref, mut t_abs) = (0.0, 0.0, 0.0, 0.0);
        for m in 0..rows {
            let (xv, gv) = (f64::from(x[m * c + ch].to_f32()), g[m * c + ch]);
            let term = gv * (xv - f64::from(bn.mean[ch]));
            s_ref += gv;
            s_abs += gv.abs();
            t_ref += term;
            t_abs += term.abs();
        }
        let sum = |q: usize| -> f64 {
            (0..p_count)
                .map(|p| f64::from(partials[(q * c + ch) * p_count + p]))
                .sum()
        };
        let (s_got, t_got) = (sum(0), sum(1));
        let n = rows as f64;
        let (tol_s, tol_t) = ((n + 2.0) * U * s_abs, (n + 4.0) * U * t_abs);
        assert!(
            (s_got - s_ref).abs() <= tol_s,
            "{what}: channel {ch}: sum g {s_got:e}, reference {s_ref:e} (tolerance {tol_s:e})"
        );
        assert!(
            (t_got - t_ref).abs() <= tol_t,
            "{what}: channel {ch}: sum g (x - mean) {t_got:e}, reference {t_ref:e} \
             (tolerance {tol_t:e})"
        );
    }
}

/// The tiles with a `_bn_` kernel among those this driver runs (`every_tile`).
fn bn_grad_tiles() -> Vec<TcTile> {
    let probe = bn_grad_shapes()[0];
    every_tile()
        .into_iter()
        .filter(|&t| conv_tc_plan::backward_data_bn_with(&probe, t).is_some())
        .collect()
}

#[test]
fn backward_data_bn_every_tile() {
    let tiles = bn_grad_tiles();
    // The four the mma.sync plan picks, and the four wgmma stand-ins where those kernels exist.
    assert!(tiles.len() >= 4, "{tiles:?}");
    for (i, s) in bn_grad_shapes().iter().enumerate() {
        for &tile in &tiles {
            let l = conv_tc_plan::backward_data_bn_with(s, tile).unwrap();
            for mask in MASKS {
                for add in [false, true] {
                    check_bn_grad(s, &l, tile, mask, add, 1700 + i as u64);
                }
            }
        }
    }
}

#[test]
fn backward_data_bn_as_planned() {
    for (i, s) in bn_grad_shapes().iter().enumerate() {
        let l = conv_tc_plan::backward_data_bn_for(s, TcFamily::MmaSync).unwrap();
        let plain = conv_tc_plan::backward_data(s, false);
        assert_eq!(
            (l.grid, l.block, l.shared_bytes),
            (plain.grid, plain.block, plain.shared_bytes),
            "{}: the plain kernel's launch",
            l.kernel
        );
        let tile = TcTile::ALL
            .into_iter()
            .find(|&t| conv_tc_plan::backward_data_bn_with(s, t) == Some(l))
            .unwrap();
        check_bn_grad(s, &l, tile, MASKS[i % 3], i % 2 == 1, 1800 + i as u64);
    }
    // Shapes the general loader takes have no fused kernel.
    let odd = shape([1, 5, 5, 12], [16, 3, 3, 12], 1, 1);
    assert_eq!(
        conv_tc_plan::backward_data_bn_for(&odd, TcFamily::MmaSync),
        None
    );
}
