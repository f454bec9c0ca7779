//! The index helpers of the tensor-core convolutions' loaders, through the self-test kernels of
//! `kernels/conv_index_selftest.cu`: `FastDivmod` (division by a launch-constant divisor as a
//! multiply-high and a shift) against Rust's `/` and `%`, and `TcTapWalk` (a reduction index and its
//! element offset carried forward slice by slice) against splitting each index anew. Integers: exact.

use super::{driver, DeviceVec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::launch::KernelArgs;

fn launch(kernel: &str, grid: u32, block: u32, mut args: KernelArgs) {
    let mut params = args.params();
    // SAFETY: each caller passes the kernel's documented parameters (conv_index_selftest.cu) with
    // buffers sized for `count` or `steps`.
    unsafe {
        driver()
            .launch(kernel, (grid, 1, 1), (block, 1, 1), 0, &mut params)
            .and_then(|()| driver().synchronize())
    }
    .unwrap_or_else(|e| panic!("{kernel}: {e}"));
}

/// `(n, d)` pairs: every divisor up to 4096 with the numerators around its multiples and at the ends of
/// the range, and random divisors and numerators up to 2^31 - 1.
fn divmod_cases() -> Vec<(i32, i32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut cases = Vec::new();
    for d in 1..=4096i32 {
        for n in [
            0,
            1,
            d - 1,
            d,
            d + 1,
            7 * d - 1,
            7 * d,
            i32::MAX,
            i32::MAX - 1,
            i32::MAX - d,
        ] {
            cases.push((n.max(0), d));
        }
        cases.push((rng.random_range(0..=i32::MAX), d));
    }
    for _ in 0..20_000 {
        let d = match rng.random_range(0..3) {
            0 => rng.random_range(1..=1 << 16),
            1 => 1 << rng.random_range(0..31),
            _ => rng.random_range(1..=i32::MAX),
        };
        let n = rng.random_range(0..=i32::MAX);
        cases.push((n, d));
        cases.push(((n / d) * d, d));
        cases.push((((n / d) * d - 1).max(0), d));
    }
    cases
}

#[test]
fn fast_divmod_equals_division_on_every_small_divisor_and_random_large_ones() {
    let cases = divmod_cases();
    let n: Vec<i32> = cases.iter().map(|c| c.0).collect();
    let d: Vec<i32> = cases.iter().map(|c| c.1).collect();
    let (dn, dd) = (DeviceVec::new(&n), DeviceVec::new(&d));
    let (dq, dr) = (
        DeviceVec::new(&vec![-1i32; n.len()]),
        DeviceVec::new(&vec![-1i32; n.len()]),
    );
    let args = KernelArgs::new()
        .ptr(dn.ptr)
        .ptr(dd.ptr)
        .ptr(dq.ptr)
        .ptr(dr.ptr)
        .int(n.len());
    launch("conv_selftest_fast_divmod", 64, 256, args);
    let (q, r) = (dq.to_host(), dr.to_host());
    for (i, &(n, d)) in cases.iter().enumerate() {
        assert_eq!((q[i], r[i]), (n / d, n % d), "{n} divmod {d}");
    }
}

/// An `int` parameter that may be negative (`KernelArgs::int` takes sizes): the kernel reads the
/// low 4 bytes of the argument's little-endian word, which are the i32's two's complement.
fn signed_int(args: KernelArgs, v: i32) -> KernelArgs {
    args.u64(v as u32 as usize)
}

/// What the walk should hold at reduction index `kr`: (outer, middle, channel, offset).
fn split(kr: i32, shape: [i32; 5]) -> [i32; 4] {
    let [mid, inner, cs, ms, os] = shape;
    let (om, channel) = (kr / inner, kr % inner);
    let (outer, middle) = (om / mid, om % mid);
    [
        outer,
        middle,
        channel,
        outer * os + middle * ms + channel * cs,
    ]
}

#[test]
fn tap_walk_equals_splitting_each_index_anew() {
    // (kr0, step, [mid, inner, channel_stride, middle_stride, outer_stride]): the forward's taps
    // (S = 3, C = 64; 1x1; C = 8 with several wraps a step), the backward-data's (negative strides,
    // K = 16 < step) and its weight rows (channel stride R S C), and one with inner = 1.
    let cases: [(i32, i32, [i32; 5]); 6] = [
        (24, 32, [3, 64, 1, 64, 56 * 64]),
        (8, 32, [1, 256, 1, 256, 256]),
        (0, 32, [7, 8, 1, 8, 230 * 8]),
        (40, 32, [2, 16, 1, -16, -28 * 16]),
        (17, 32, [2, 24, 9 * 64, 2 * 64, 2 * 3 * 64]),
        (3, 5, [4, 1, 1, 10, 100]),
    ];
    let steps = 40usize;
    for (kr0, step, shape) in cases {
        let out = DeviceVec::new(&vec![i32::MIN; 4 * steps]);
        let [mid, inner, cs, ms, os] = shape;
        let mut args = KernelArgs::new();
        for v in [kr0, step, steps as i32, mid, inner, cs, ms, os] {
            args = signed_int(args, v);
        }
        let args = args.ptr(out.ptr);
        launch("conv_selftest_tap_walk", 1, 32, args);
        let got = out.to_host();
        for t in 0..steps {
            let kr = kr0 + t as i32 * step;
            assert_eq!(
                got[4 * t..4 * t + 4],
                split(kr, shape),
                "walk {shape:?} from {kr0} by {step}: at kr = {kr}"
            );
        }
    }
}
