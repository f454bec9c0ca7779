//! The tensor-core building blocks of `kernels/tensor_core.cuh` (bf16 rounding, `mma.m16n8k16`,
//! `ldmatrix`, `cp.async`) through the self-test kernels of `kernels/tensor_core_selftest.cu`, each
//! against a scalar Rust reference on random inputs, plus deliberately wrong kernels that the
//! emulator must catch, and the emulator's counts of shared-memory bank conflicts (`ldmatrix` per
//! 8x8 matrix, 16-byte `cp.async` per quarter warp) on patterns with known costs.
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`, so that a GPU checks the emulator's semantics against the hardware. The tests
//! of misuse (a read before `cp.async.wait_group`, a partial warp at `mma` or `ldmatrix`, a
//! misaligned row address) always use the emulator: on a GPU such kernels are undefined behaviour.
//!
//! Tolerances: bf16 rounding, `ldmatrix` and `cp.async` move or round bits and are compared exactly.
//! `mma` is exact against the reference under the emulator, which documents its order (see
//! [`mma_reference`]); on a GPU, whose summation order and internal rounding are unspecified, see
//! [`mma_tolerance`].

use std::sync::OnceLock;

use half::bf16;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::emu::{self, BankConflicts};
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{Driver, DynDriver, EmuDriver};

mod building_blocks;
use building_blocks::{launch_on, DeviceVec};

/// The device the kernels run on, and whether it is the emulator.
fn driver() -> &'static DynDriver {
    static DRIVER: OnceLock<DynDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
        open_driver(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
    })
}

fn on_emulator() -> bool {
    driver().name() == "emu"
}

fn launch(kernel: &str, args: KernelArgs) {
    launch_on(driver(), kernel, 32, 0, args).unwrap_or_else(|e| panic!("{kernel}: {e}"));
}

/// A random bf16 with a random exponent in [2^-6, 2^6) and either sign: products and sums then span
/// many binades, so a different summation order than the reference's would change low bits.
fn random_bf16(rng: &mut ChaCha8Rng) -> bf16 {
    let mantissa: f32 = rng.random_range(1.0..2.0);
    let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    bf16::from_f32(sign * mantissa * 2f32.powi(rng.random_range(-6..6)))
}

/// Two bf16 in one register as the hardware packs them: the first in the low half.
fn pair(first: bf16, second: bf16) -> u32 {
    u32::from(first.to_bits()) | u32::from(second.to_bits()) << 16
}

#[test]
fn bf16_rounds_to_nearest_even_like_half() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        1.0e-40,                     // subnormal
        1.0 + 1.0 / 256.0,           // exactly halfway between two bf16, even below: rounds down
        1.0 + 3.0 / 256.0,           // halfway, even above: rounds up
        -(1.0 + 3.0 / 256.0),        //   and the same with a sign
        f32::from_bits(0x7f7f_ffff), // rounds up to infinity
    ];
    x.extend((0..10_000).map(|_| f32::from_bits(rng.random())));
    let n = x.len();
    let dx = DeviceVec::new(driver(), &x);
    let bits = DeviceVec::new(driver(), &vec![0u16; n]);
    let back = DeviceVec::new(driver(), &vec![0f32; n]);
    launch(
        "tc_selftest_bf16_round",
        KernelArgs::new()
            .ptr(dx.ptr)
            .ptr(bits.ptr)
            .ptr(back.ptr)
            .int(n),
    );
    let (bits, back) = (bits.to_host(), back.to_host());
    for i in 0..n {
        let expected = bf16::from_f32(x[i]);
        if x[i].is_nan() {
            // Only NaN-ness is specified: the payload of a converted NaN differs between the hardware
            // (canonical 0x7fff) and the emulator (the input's top bits, quieted).
            assert!(
                bf16::from_bits(bits[i]).is_nan() && back[i].is_nan(),
                "x[{i}] = NaN"
            );
        } else {
            // Exact: rounding to nearest even is fully specified.
            assert_eq!(bits[i], expected.to_bits(), "x[{i}] = {:e}", x[i]);
            assert_eq!(back[i].to_bits(), expected.to_f32().to_bits(), "x[{i}]");
        }
    }
}

/// The ReLU in the conversion (cvt.rn.relu.bf16x2.f32 and .bf16.f32): max(x, 0) rounded to nearest
/// even, a NaN as the canonical NaN 0x7fff (the PTX ISA's words for .relu), both halves of a pair in
/// the right place. `-0.0` becoming +0 is the emulator's reading of "clamps the result to 0 if
/// negative"; a GPU run of this test is what confirms it.
#[test]
fn bf16_relu_conversion_clamps_in_the_rounding() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1.5,
        -1.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        -1.0e-40,             // negative subnormal: rounds to -0 in bf16, then clamps
        1.0e-40,              // positive subnormal: kept
        -(1.0 + 3.0 / 256.0), // halfway, negative
        1.0 + 3.0 / 256.0,    // halfway: rounds up
    ];
    x.extend((0..10_000).map(|_| f32::from_bits(rng.random())));
    let n = x.len();
    let dx = DeviceVec::new(driver(), &x);
    let pairs = DeviceVec::new(driver(), &vec![0xdead_beefu32; n / 2]);
    let singles = DeviceVec::new(driver(), &vec![0xbeefu16; n]);
    launch(
        "tc_selftest_bf16_relu_round",
        KernelArgs::new()
            .ptr(dx.ptr)
            .ptr(pairs.ptr)
            .ptr(singles.ptr)
            .int(n),
    );
    let expected = |v: f32| -> u16 {
        if v.is_nan() {
            return 0x7fff;
        }
        let rounded = bf16::from_f32(v).to_bits();
        if rounded & 0x8000 != 0 {
            0
        } else {
            rounded
        }
    };
    let (pairs, singles) = (pairs.to_host(), singles.to_host());
    for i in 0..n {
        assert_eq!(
            singles[i],
            expected(x[i]),
            "single x[{i}] = {:e} ({:#010x})",
            x[i],
            x[i].to_bits()
        );
    }
    for i in 0..n / 2 {
        let want = u32::from(expected(x[2 * i])) | u32::from(expected(x[2 * i + 1])) << 16;
        assert_eq!(
            pairs[i],
            want,
            "pair {i}: ({:e}, {:e})",
            x[2 * i],
            x[2 * i + 1]
        );
    }
}

/// D = A B + C for A 16x16, B 16x8, C 16x8 (row-major), in the emulator's documented order: for each
/// element, starting from C, one fused multiply-add per k = 0..15. Each product of two bf16 is exact
/// in f32, so each step is one rounding of an exact sum, the same in Rust and in C++.
fn mma_reference(a: &[bf16], b: &[bf16], c: &[f32]) -> Vec<f32> {
    let mut d = vec![0.0f32; 16 * 8];
    for i in 0..16 {
        for j in 0..8 {
            d[i * 8 + j] = (0..16).fold(c[i * 8 + j], |acc, k| {
                a[i * 16 + k].to_f32().mul_add(b[k * 8 + j].to_f32(), acc)
            });
        }
    }
    d
}

/// How far a result may be from [`mma_reference`]. The emulator: 0 (same operations, same order).
/// A GPU: the products are exact but the tensor core adds them in an unspecified order, aligning to
/// the largest exponent and truncating, so each of the at most 17 additions may lose about one unit
/// in the last place of the running magnitude, which is at most `S = |c| + sum |a b|`: we allow
/// `32 * 2^-23 * S`, a safe margin over `17 * 2^-23 * S`.
fn mma_tolerance(a: &[bf16], b: &[bf16], c: &[f32], i: usize, j: usize) -> f32 {
    if on_emulator() {
        return 0.0;
    }
    let s = (0..16).fold(c[i * 8 + j].abs(), |s, k| {
        s + (a[i * 16 + k].to_f32() * b[k * 8 + j].to_f32()).abs()
    });
    32.0 * f32::EPSILON * s
}

fn random_mma_inputs(rng: &mut ChaCha8Rng) -> (Vec<bf16>, Vec<bf16>, Vec<f32>) {
    let a = (0..16 * 16).map(|_| random_bf16(rng)).collect();
    let b = (0..16 * 8).map(|_| random_bf16(rng)).collect();
    let c = (0..16 * 8)
        .map(|_| rng.random_range(-8.0f32..8.0))
        .collect();
    (a, b, c)
}

#[test]
fn mma_fragments_of_every_lane_and_register() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..4 {
        let (a, b, c) = random_mma_inputs(&mut rng);
        // The registers each lane owns, by the PTX ISA (g = lane / 4, t = lane % 4).
        let (mut fa, mut fb, mut fc) = (vec![0u32; 128], vec![0u32; 64], vec![0f32; 128]);
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            let a_at = |r: usize, k: usize| pair(a[r * 16 + k], a[r * 16 + k + 1]);
            fa[4 * l..4 * l + 4].copy_from_slice(&[
                a_at(g, 2 * t),
                a_at(g + 8, 2 * t),
                a_at(g, 2 * t + 8),
                a_at(g + 8, 2 * t + 8),
            ]);
            let b_at = |k: usize, n: usize| pair(b[k * 8 + n], b[(k + 1) * 8 + n]);
            fb[2 * l..2 * l + 2].copy_from_slice(&[b_at(2 * t, g), b_at(2 * t + 8, g)]);
            fc[4 * l..4 * l + 4].copy_from_slice(&[
                c[g * 8 + 2 * t],
                c[g * 8 + 2 * t + 1],
                c[(g + 8) * 8 + 2 * t],
                c[(g + 8) * 8 + 2 * t + 1],
            ]);
        }
        let (da, db, dc) = (
            DeviceVec::new(driver(), &fa),
            DeviceVec::new(driver(), &fb),
            DeviceVec::new(driver(), &fc),
        );
        let dd = DeviceVec::new(driver(), &[f32::NAN; 128]);
        launch(
            "tc_selftest_mma_fragments",
            KernelArgs::new()
                .ptr(da.ptr)
                .ptr(db.ptr)
                .ptr(dc.ptr)
                .ptr(dd.ptr),
        );
        let d = dd.to_host();
        let expected = mma_reference(&a, &b, &c);
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            let owned = [
                (g, 2 * t),
                (g, 2 * t + 1),
                (g + 8, 2 * t),
                (g + 8, 2 * t + 1),
            ];
            for (reg, &(i, j)) in owned.iter().enumerate() {
                let (got, want) = (d[4 * l + reg], expected[i * 8 + j]);
                assert!(
                    (got - want).abs() <= mma_tolerance(&a, &b, &c, i, j),
                    "lane {l} d{reg} = D[{i}][{j}] = {got:e}, expected {want:e}"
                );
            }
        }
    }
}

#[test]
fn mma_tile_through_cp_async_and_ldmatrix() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..4 {
        let (a, b, c) = random_mma_inputs(&mut rng);
        let bits = |v: &[bf16]| v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>();
        let (da, db, dc) = (
            DeviceVec::new(driver(), &bits(&a)),
            DeviceVec::new(driver(), &bits(&b)),
            DeviceVec::new(driver(), &c),
        );
        let dd = DeviceVec::new(driver(), &[f32::NAN; 128]);
        launch(
            "tc_selftest_mma_tile",
            KernelArgs::new()
                .ptr(da.ptr)
                .ptr(db.ptr)
                .ptr(dc.ptr)
                .ptr(dd.ptr),
        );
        let d = dd.to_host();
        let expected = mma_reference(&a, &b, &c);
        for i in 0..16 {
            for j in 0..8 {
                let (got, want) = (d[i * 8 + j], expected[i * 8 + j]);
                assert!(
                    (got - want).abs() <= mma_tolerance(&a, &b, &c, i, j),
                    "D[{i}][{j}] = {got:e}, expected {want:e}"
                );
            }
        }
    }
}

/// Runs tc_selftest_ldmatrix on `driver`; returns the 4 registers of every lane (unwritten ones keep
/// the sentinel 0xdeadbeef).
fn ldmatrix_on(
    driver: &dyn Driver,
    tile: &[u16],
    perm: &[i32],
    matrices: usize,
    trans: bool,
    byte_offset: usize,
) -> Result<Vec<u32>, String> {
    let (dt, dp) = (DeviceVec::new(driver, tile), DeviceVec::new(driver, perm));
    let out = DeviceVec::new(driver, &[0xdead_beefu32; 128]);
    launch_on(
        driver,
        "tc_selftest_ldmatrix",
        32,
        0,
        KernelArgs::new()
            .ptr(dt.ptr)
            .ptr(dp.ptr)
            .int(matrices)
            .int(usize::from(trans))
            .int(byte_offset)
            .ptr(out.ptr),
    )?;
    Ok(out.to_host())
}

#[test]
fn ldmatrix_every_shape_with_and_without_trans() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let tile: Vec<u16> = (0..32 * 8).map(|_| rng.random()).collect();
    // Lanes point at shuffled rows, so that a wrong lane-to-row assignment shows.
    let mut perm: Vec<i32> = (0..32).collect();
    perm.shuffle(&mut rng);
    for matrices in [1usize, 2, 4] {
        for trans in [false, true] {
            let out = ldmatrix_on(driver(), &tile, &perm, matrices, trans, 0).unwrap();
            // Matrix m, row r is the shared row that lane 8m + r points at.
            let m_at = |m: usize, r: usize, col: usize| tile[perm[8 * m + r] as usize * 8 + col];
            for l in 0..32 {
                let (g, t) = (l / 4, l % 4);
                for reg in 0..4 {
                    let expected = if reg >= matrices {
                        0xdead_beef
                    } else if trans {
                        u32::from(m_at(reg, 2 * t, g)) | u32::from(m_at(reg, 2 * t + 1, g)) << 16
                    } else {
                        u32::from(m_at(reg, g, 2 * t)) | u32::from(m_at(reg, g, 2 * t + 1)) << 16
                    };
                    // Exact: ldmatrix moves bits.
                    assert_eq!(
                        out[4 * l + reg],
                        expected,
                        ".x{matrices} trans={trans}: lane {l} register {reg}"
                    );
                }
            }
        }
    }
}

/// 16 bytes of a cp.async destination: the first `n` bytes of `src`, then zeros.
fn zero_filled(src: &[u8], n: usize) -> Vec<u8> {
    let mut v = src[..n].to_vec();
    v.resize(16, 0);
    v
}

#[test]
fn cp_async_zero_fill_and_group_waits() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // Nonzero source bytes, so that zero fill cannot pass for copied data.
    let src: Vec<u8> = (0..1024).map(|_| rng.random_range(1..=254)).collect();
    // Every lane gets a size from this cycle, the three that matter (0, 4, 16) and some others.
    let sizes = [0, 4, 16, 1, 7, 8, 15, 12];
    let src_bytes: Vec<i32> = (0..64)
        .map(|i| sizes[(i * 3 + i / 8) % sizes.len()])
        .collect();
    for mode in [0usize, 1] {
        let (ds, dn) = (
            DeviceVec::new(driver(), &src),
            DeviceVec::new(driver(), &src_bytes),
        );
        let mid = DeviceVec::new(driver(), &[0u8; 1024]);
        let out = DeviceVec::new(driver(), &[0u8; 1024]);
        launch(
            "tc_selftest_cp_async",
            KernelArgs::new()
                .ptr(ds.ptr)
                .ptr(dn.ptr)
                .int(mode)
                .ptr(mid.ptr)
                .ptr(out.ptr),
        );
        let (mid, out) = (mid.to_host(), out.to_host());
        for chunk in 0..64 {
            let n = src_bytes[chunk] as usize;
            let expected = zero_filled(&src[16 * chunk..], n);
            let bytes = |v: &[u8]| v[16 * chunk..16 * chunk + 16].to_vec();
            assert_eq!(
                bytes(&out),
                expected,
                "mode {mode}, chunk {chunk}, {n} bytes"
            );
            let second_group_pending = mode == 0 && chunk >= 32;
            if !second_group_pending {
                // Mode 0: wait_group<1> retired the older group; mode 1: wait_all retired both,
                // including the uncommitted copy.
                assert_eq!(
                    bytes(&mid),
                    expected,
                    "mode {mode}, chunk {chunk} after the wait"
                );
            } else if on_emulator() {
                // Still pending after wait_group<1>: the emulator shows its poison. (A GPU may have
                // landed it already; reading it there is a race.)
                assert_eq!(
                    bytes(&mid),
                    vec![0xff; 16],
                    "chunk {chunk} read while pending"
                );
            }
        }
    }
}

// ---- misuse the emulator must catch (always on the emulator) ----

#[test]
fn a_read_before_wait_group_sees_poison() {
    let emu = EmuDriver::default();
    let src: Vec<f32> = (0..128).map(|i| i as f32).collect();
    let ds = DeviceVec::new(&emu, &src);
    let out = DeviceVec::new(&emu, &[0f32; 128]);
    launch_on(
        &emu,
        "tc_selftest_cp_async_no_wait",
        32,
        0,
        KernelArgs::new().ptr(ds.ptr).ptr(out.ptr),
    )
    .unwrap();
    for (i, v) in out.to_host().iter().enumerate() {
        // 0xffffffff: the poison, a NaN, so any arithmetic on it shows too.
        assert_eq!(v.to_bits(), 0xffff_ffff, "out[{i}] = {v}");
    }
}

/// A zero-fill copy (src_size 0) reads no source byte, but its source address is still an operand the
/// hardware requires aligned: kernels pass the tensor's base for it, never an out-of-range address.
#[test]
fn cp_async_from_a_misaligned_source_is_an_error_even_when_it_reads_nothing() {
    let emu = EmuDriver::default();
    let src = DeviceVec::new(&emu, &[0u8; 1040]);
    let src_bytes = DeviceVec::new(&emu, &[0i32; 64]);
    let mid = DeviceVec::new(&emu, &[0u8; 1024]);
    let out = DeviceVec::new(&emu, &[0u8; 1024]);
    let args = |offset: u64| {
        KernelArgs::new()
            .ptr(src.ptr + offset)
            .ptr(src_bytes.ptr)
            .int(1)
            .ptr(mid.ptr)
            .ptr(out.ptr)
    };
    let e = launch_on(&emu, "tc_selftest_cp_async", 32, 0, args(8)).unwrap_err();
    assert!(e.contains("must be 16-byte aligned"), "{e}");
    launch_on(&emu, "tc_selftest_cp_async", 32, 0, args(16)).unwrap();
    assert_eq!(out.to_host(), vec![0u8; 1024], "zero fill");
}

#[test]
fn mma_in_half_a_warp_is_an_error() {
    let emu = EmuDriver::default();
    let out = DeviceVec::new(&emu, &[0f32; 32]);
    let e = launch_on(
        &emu,
        "tc_selftest_mma_half_warp",
        32,
        0,
        KernelArgs::new().ptr(out.ptr),
    )
    .unwrap_err();
    // Which side is reported depends on the schedule: lanes 16-31 return while lanes 0-15 wait
    // (round-robin, first-ahead), or lanes 0-15 arrive after 16-31 returned (last-ahead).
    assert!(
        e.contains("mma.sync.aligned.m16n8k16")
            && (e.contains("thread returned") || e.contains("already returned"))
            && e.contains("tc_selftest_mma_half_warp"),
        "{e}"
    );
}

#[test]
fn ldmatrix_in_a_partial_warp_is_an_error() {
    let emu = EmuDriver::default();
    let out = DeviceVec::new(&emu, &[0u32; 16]);
    let e = launch_on(
        &emu,
        "tc_selftest_ldmatrix_partial_warp",
        16,
        0,
        KernelArgs::new().ptr(out.ptr),
    )
    .unwrap_err();
    assert!(
        e.contains("ldmatrix") && e.contains("last warp has only lanes 0x0000ffff"),
        "{e}"
    );
}

#[test]
fn ldmatrix_of_a_misaligned_row_is_an_error() {
    let tile = vec![0u16; 32 * 8];
    let perm: Vec<i32> = (0..32).collect();
    let emu = EmuDriver::default();
    let e = ldmatrix_on(&emu, &tile, &perm, 4, false, 2).unwrap_err();
    assert!(e.contains("not 16-byte aligned"), "{e}");
    // A failed launch leaves the emulator usable.
    ldmatrix_on(&emu, &tile, &perm, 4, false, 0).unwrap();
}

// ---- bank conflicts (the emulator's counts; always on the emulator) ----

/// Runs tc_selftest_bank_access on the emulator: lane l's copy k goes to shared byte `copies[k][l]`
/// (none where `None`), then ldmatrix.x`matrices` (0: none) reads lane l's row at shared byte
/// `rows[l]`. Returns the launch's bank-conflict counts.
fn bank_access(
    copies: [[Option<usize>; 32]; 2],
    rows: [usize; 32],
    matrices: usize,
) -> BankConflicts {
    let emu = EmuDriver::default();
    let src: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    let dst: Vec<i32> = copies
        .iter()
        .flatten()
        .map(|d| d.map_or(-1, |d| d as i32))
        .collect();
    let row: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
    let (ds, dd, dr) = (
        DeviceVec::new(&emu, &src),
        DeviceVec::new(&emu, &dst),
        DeviceVec::new(&emu, &row),
    );
    let out = DeviceVec::new(&emu, &[0u32; 128]);
    emu::bank_conflicts(); // forget this thread's earlier launches
    launch_on(
        &emu,
        "tc_selftest_bank_access",
        32,
        0,
        KernelArgs::new()
            .ptr(ds.ptr)
            .ptr(dd.ptr)
            .ptr(dr.ptr)
            .int(matrices)
            .ptr(out.ptr),
    )
    .unwrap();
    emu::bank_conflicts()
}

const NO_COPIES: [[Option<usize>; 32]; 2] = [[None; 32]; 2];

fn ldmatrix_counts(matrices: u64, excess: u64) -> BankConflicts {
    BankConflicts {
        ldmatrix_matrices: matrices,
        ldmatrix_excess: excess,
        ..BankConflicts::default()
    }
}

fn cp_async_counts(requests: u64, excess: u64) -> BankConflicts {
    BankConflicts {
        cp_async_requests: requests,
        cp_async_excess: excess,
        ..BankConflicts::default()
    }
}

#[test]
fn ldmatrix_bank_conflicts_are_counted_per_matrix() {
    // Consecutive 16-byte rows: each matrix's 8 rows fill one 128-byte line, conflict-free.
    let contiguous: [usize; 32] = std::array::from_fn(|l| 16 * l);
    assert_eq!(bank_access(NO_COPIES, contiguous, 4), ldmatrix_counts(4, 0));
    // 8 rows at a 128-byte stride (unswizzled rows of 64 bf16): all in banks 0-3, 8 wavefronts a
    // matrix, 7 more than ideal, for each of the 4 matrices.
    let strided: [usize; 32] = std::array::from_fn(|l| 128 * (l % 8) + 16 * (l / 8));
    assert_eq!(bank_access(NO_COPIES, strided, 4), ldmatrix_counts(4, 28));
    // The same rows XOR-swizzled (chunk ^ row % 8, conv_tc.cuh's tc_swizzle): conflict-free.
    let swizzled: [usize; 32] = std::array::from_fn(|l| 128 * (l % 8) + 16 * ((l / 8) ^ (l % 8)));
    assert_eq!(bank_access(NO_COPIES, swizzled, 4), ldmatrix_counts(4, 0));
    // .x1 reads only lanes 0-7's addresses: the strided ones of lanes 8-31 do not count.
    assert_eq!(bank_access(NO_COPIES, strided, 1), ldmatrix_counts(1, 7));
    let mut mixed = strided;
    mixed[..8].copy_from_slice(&contiguous[..8]);
    assert_eq!(bank_access(NO_COPIES, mixed, 1), ldmatrix_counts(1, 0));
    // .x2: matrix 0 two-way (rows 0-3 of two lines: 2 distinct rows in each bank group), matrix 1
    // one row eight times (a broadcast: one wavefront).
    let two_way: [usize; 32] = std::array::from_fn(|l| {
        if l < 8 {
            128 * (l / 4) + 16 * (l % 4)
        } else {
            1024
        }
    });
    assert_eq!(bank_access(NO_COPIES, two_way, 2), ldmatrix_counts(2, 1));
}

#[test]
fn cp_async_bank_conflicts_are_counted_per_quarter_warp() {
    let none = [None; 32];
    let rows = [0usize; 32];
    // Lanes 0-7 store 16 bytes at a 128-byte stride: one quarter-warp request of 8 wavefronts.
    let strided: [Option<usize>; 32] = std::array::from_fn(|l| (l < 8).then_some(128 * l));
    assert_eq!(bank_access([strided, none], rows, 0), cp_async_counts(1, 7));
    // All 32 lanes at consecutive 16-byte chunks: 4 requests (one per quarter), conflict-free.
    let contiguous: [Option<usize>; 32] = std::array::from_fn(|l| Some(16 * l));
    assert_eq!(
        bank_access([contiguous, none], rows, 0),
        cp_async_counts(4, 0)
    );
    // Copy 0 of every lane conflict-free; copy 1 only by lanes 8-15, at a 256-byte stride: the lanes
    // without a second copy take no part, so 4 + 1 requests, the last 8-way.
    let second: [Option<usize>; 32] =
        std::array::from_fn(|l| (8..16).contains(&l).then_some(2048 + 256 * (l % 8)));
    assert_eq!(
        bank_access([contiguous, second], rows, 0),
        cp_async_counts(5, 7)
    );
    // Two lanes of a quarter in one bank group (lanes 3 and 7: 48 and 176), the rest apart: 2-way.
    let two_way: [Option<usize>; 32] =
        std::array::from_fn(|l| (l < 8).then_some(if l == 7 { 176 } else { 16 * l }));
    assert_eq!(bank_access([two_way, none], rows, 0), cp_async_counts(1, 1));
}
