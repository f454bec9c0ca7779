//! Hopper's `wgmma` building blocks of `kernels/wgmma.cuh` through the self-test kernels of
//! `kernels/wgmma_selftest_sm90a.cu`: a 64(W) x N x 32 GEMM for every swizzle mode and N = 64, 128,
//! 256, with each operand K-major or MN-major ("transposed"), against a scalar Rust reference on
//! random bf16 inputs, and deliberately wrong kernels that the emulator must catch.
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`. On a GPU the correct kernels run there and must match the reference, and the
//! GPU must have compute capability 9.0 (wgmma exists only on sm_90a): any other fails the tests
//! rather than passing them without running anything. The wrong kernels always use the emulator: on
//! a GPU they are undefined behaviour.
//!
//! Tolerance: under the emulator results are exact against [`gemm_reference`], which does the
//! emulator's documented operations (one fused multiply-add per k, k = 0..31, from C). On a GPU the
//! tensor core adds the exact bf16 products in an unspecified order with its own internal rounding:
//! each of the at most 2 x 17 additions of the two k16 steps may lose about one unit in the last
//! place of the running magnitude, which is at most `S = |c| + sum_k |a b|`; we allow
//! `48 * 2^-23 * S` (about 5.7e-6 S), a margin over 34 units.

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{Driver, EmuDriver};

mod building_blocks;
mod sm90;
use building_blocks::{launch_on, DeviceVec};
use sm90::{driver, on_emulator};

/// The reduction depth of every self-test kernel: two k16 steps.
const K: usize = 32;

/// The descriptor's swizzle codes, as the kernels take them, with names for messages.
const SWIZZLES: [(usize, &str); 4] = [(0, "none"), (1, "128B"), (2, "64B"), (3, "32B")];

/// A random bf16 with a random exponent in [2^-6, 2^6) and either sign: products and sums then span
/// many binades, so a different summation order than the reference's would change low bits.
fn random_bf16(rng: &mut ChaCha8Rng) -> bf16 {
    let mantissa: f32 = rng.random_range(1.0..2.0);
    let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    bf16::from_f32(sign * mantissa * 2f32.powi(rng.random_range(-6..6)))
}

/// Inputs of one GEMM: A (m x K), B transposed (n x K: `bt[j][k] = B[k][j]`), C (m x n).
struct Gemm {
    m: usize,
    n: usize,
    a: Vec<bf16>,
    bt: Vec<bf16>,
    c: Vec<f32>,
}

impl Gemm {
    fn random(rng: &mut ChaCha8Rng, m: usize, n: usize, with_c: bool) -> Self {
        let a = (0..m * K).map(|_| random_bf16(rng)).collect();
        let bt = (0..n * K).map(|_| random_bf16(rng)).collect();
        let c = (0..m * n)
            .map(|_| {
                if with_c {
                    rng.random_range(-8.0f32..8.0)
                } else {
                    0.0
                }
            })
            .collect();
        Gemm { m, n, a, bt, c }
    }

    fn bits(v: &[bf16]) -> Vec<u16> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The raw bits of the `rows` x K matrix `v` (row-major), or of its K x `rows` transpose when
    /// `transpose`: how a kernel with that operand MN-major takes it.
    fn bits_as(v: &[bf16], rows: usize, transpose: bool) -> Vec<u16> {
        if !transpose {
            return Self::bits(v);
        }
        (0..K * rows)
            .map(|i| v[(i % rows) * K + i / rows].to_bits())
            .collect()
    }

    /// D = A B + C, each element from C by one fused multiply-add per k = 0..31 in order: the
    /// emulator's operations (two chained k16 steps), so it agrees bit for bit.
    fn reference(&self) -> Vec<f32> {
        let mut d = vec![0.0f32; self.m * self.n];
        for i in 0..self.m {
            for j in 0..self.n {
                d[i * self.n + j] = (0..K).fold(self.c[i * self.n + j], |acc, k| {
                    self.a[i * K + k]
                        .to_f32()
                        .mul_add(self.bt[j * K + k].to_f32(), acc)
                });
            }
        }
        d
    }

    /// How far element (i, j) may be from [`Gemm::reference`]: 0 on the emulator, else the
    /// tensor-core bound of the module comment.
    fn tolerance(&self, i: usize, j: usize) -> f32 {
        if on_emulator() {
            return 0.0;
        }
        let s = (0..K).fold(self.c[i * self.n + j].abs(), |s, k| {
            s + (self.a[i * K + k].to_f32() * self.bt[j * K + k].to_f32()).abs()
        });
        48.0 * f32::EPSILON * s
    }

    fn check(&self, d: &[f32], what: &str) {
        let expected = self.reference();
        for i in 0..self.m {
            for j in 0..self.n {
                let (got, want) = (d[i * self.n + j], expected[i * self.n + j]);
                assert!(
                    (got - want).abs() <= self.tolerance(i, j),
                    "{what}: D[{i}][{j}] = {got:e}, expected {want:e}"
                );
            }
        }
    }
}

/// Which operands a GEMM kernel reads MN-major (wgmma's imm-trans-a, imm-trans-b).
#[derive(Clone, Copy, Debug)]
struct Majorness {
    a_mn: bool,
    b_mn: bool,
}

const K_MAJOR: Majorness = Majorness {
    a_mn: false,
    b_mn: false,
};

impl Majorness {
    /// The kernel name's suffix: `wgmma_selftest_gemm_n{n}{suffix}`.
    fn suffix(self) -> &'static str {
        match (self.a_mn, self.b_mn) {
            (false, false) => "",
            (true, false) => "_a_mn",
            (false, true) => "_b_mn",
            (true, true) => "_ab_mn",
        }
    }
}

/// Runs `wgmma_selftest_gemm_n{n}` (or its MN-major form, `major`) with `warpgroups` warpgroups and
/// swizzle code `swizzle` on random inputs, checks D and that the dynamic shared memory starts at a
/// 1024-byte multiple of the shared window.
fn gemm_case(
    rng: &mut ChaCha8Rng,
    n: usize,
    warpgroups: usize,
    swizzle: (usize, &str),
    major: Majorness,
) {
    let g = Gemm::random(rng, 64 * warpgroups, n, true);
    let dr = driver();
    let (da, db, dc) = (
        DeviceVec::new(dr, &Gemm::bits_as(&g.a, g.m, major.a_mn)),
        DeviceVec::new(dr, &Gemm::bits_as(&g.bt, n, major.b_mn)),
        DeviceVec::new(dr, &g.c),
    );
    // Poisoned, so that an element the kernel never writes cannot pass.
    let dd = DeviceVec::new(dr, &vec![f32::NAN; g.m * n]);
    let window = DeviceVec::new(dr, &[0xdead_beefu32]);
    let kernel = format!("wgmma_selftest_gemm_n{n}{}", major.suffix());
    let what = format!("{kernel}, {warpgroups} warpgroup(s), swizzle {}", swizzle.1);
    launch_on(
        dr,
        &kernel,
        (128 * warpgroups) as u32,
        (8192 * warpgroups + 128 * n) as u32,
        KernelArgs::new()
            .ptr(da.ptr)
            .ptr(db.ptr)
            .ptr(dc.ptr)
            .ptr(dd.ptr)
            .int(swizzle.0)
            .ptr(window.ptr),
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let window = window.to_host()[0];
    assert_eq!(
        window % 1024,
        0,
        "{what}: dynamic shared memory at shared-window address {window:#x}, not a multiple of 1024: \
         the swizzled layouts (and a descriptor base offset of 0) assume one"
    );
    g.check(&dd.to_host(), &what);
}

#[test]
fn gemm_n64_every_swizzle() {
    let mut rng = ChaCha8Rng::seed_from_u64(64);
    for swizzle in SWIZZLES {
        gemm_case(&mut rng, 64, 1, swizzle, K_MAJOR);
    }
}

#[test]
fn gemm_n128_every_swizzle() {
    let mut rng = ChaCha8Rng::seed_from_u64(128);
    for swizzle in SWIZZLES {
        gemm_case(&mut rng, 128, 1, swizzle, K_MAJOR);
    }
}

#[test]
fn gemm_n256_every_swizzle() {
    let mut rng = ChaCha8Rng::seed_from_u64(256);
    for swizzle in SWIZZLES {
        gemm_case(&mut rng, 256, 1, swizzle, K_MAJOR);
    }
}

#[test]
fn gemm_two_warpgroups_every_swizzle() {
    // Warpgroup 1 (threads 128-255) takes A rows 64-127 through descriptors of its own.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for swizzle in SWIZZLES {
        gemm_case(&mut rng, 128, 2, swizzle, K_MAJOR);
    }
}

// ---- MN-major operands (imm-trans 1): every N and swizzle, the 128-byte one in 64-element panels
// through wgmma_mn_major_descriptor ----

/// Every N and swizzle with one warpgroup, then N = 128 with two (warpgroup 1 reads A from its own
/// offset: the second 64-element panel with the 128-byte swizzle).
fn mn_major_cases(seed: u64, major: Majorness) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for n in [64, 128, 256] {
        for swizzle in SWIZZLES {
            gemm_case(&mut rng, n, 1, swizzle, major);
        }
    }
    for swizzle in SWIZZLES {
        gemm_case(&mut rng, 128, 2, swizzle, major);
    }
}

#[test]
fn gemm_b_mn_major_every_n_and_swizzle() {
    mn_major_cases(
        301,
        Majorness {
            a_mn: false,
            b_mn: true,
        },
    );
}

#[test]
fn gemm_a_mn_major_every_n_and_swizzle() {
    mn_major_cases(
        302,
        Majorness {
            a_mn: true,
            b_mn: false,
        },
    );
}

#[test]
fn gemm_both_mn_major_every_n_and_swizzle() {
    mn_major_cases(
        303,
        Majorness {
            a_mn: true,
            b_mn: true,
        },
    );
}

#[test]
fn an_mn_major_start_inside_an_atom_row_is_an_error() {
    let emu = EmuDriver::default();
    let d = DeviceVec::new(&emu, &[0.0f32; 128 * 32]);
    let e = launch_on(
        &emu,
        "wgmma_selftest_mn_misaligned",
        128,
        8192,
        KernelArgs::new().ptr(d.ptr),
    )
    .unwrap_err();
    assert!(
        e.contains("N-major B starts at window address")
            && e.contains("16 bytes into a 128-byte row of its 128-byte swizzle atom"),
        "{e}"
    );
}

// ---- wgmma_selftest_variant_<v>: correct variants on any driver, wrong ones on the emulator ----

/// Runs `wgmma_selftest_variant_{variant}` on `driver` with `threads` threads; returns (d, mid) or
/// the launch error.
fn variant_on(
    driver: &dyn Driver,
    g: &Gemm,
    variant: usize,
    threads: u32,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (da, db) = (
        DeviceVec::new(driver, &Gemm::bits(&g.a)),
        DeviceVec::new(driver, &Gemm::bits(&g.bt)),
    );
    let dd = DeviceVec::new(driver, &vec![f32::NAN; 64 * 64]);
    let mid = DeviceVec::new(driver, &[0.0f32; 128]);
    launch_on(
        driver,
        &format!("wgmma_selftest_variant_{variant}"),
        threads,
        8192 + 128 * 64,
        KernelArgs::new()
            .ptr(da.ptr)
            .ptr(db.ptr)
            .ptr(dd.ptr)
            .ptr(mid.ptr),
    )?;
    Ok((dd.to_host(), mid.to_host()))
}

fn variant_inputs(seed: u64) -> Gemm {
    Gemm::random(&mut ChaCha8Rng::seed_from_u64(seed), 64, 64, false)
}

#[test]
fn correct_variant_matches_the_reference() {
    let g = variant_inputs(10);
    let (d, _) = variant_on(driver(), &g, 0, 128).unwrap();
    g.check(&d, "variant 0");
}

#[test]
fn two_commit_groups_chain_and_wait_group_1_retires_only_the_first() {
    let g = variant_inputs(11);
    let (d, mid) = variant_on(driver(), &g, 7, 128).unwrap();
    g.check(&d, "variant 7");
    if on_emulator() {
        // After wait_group 1 the second group, which chains on the same registers, is in flight:
        // they read NaN. (On a GPU reading them then is a race.)
        assert!(mid.iter().all(|v| v.is_nan()), "{mid:?}");
    }
}

#[test]
fn a_proxy_fence_after_the_barrier_also_orders_cp_async_before_wgmma() {
    let g = variant_inputs(12);
    let (d, _) = variant_on(driver(), &g, 8, 128).unwrap();
    g.check(&d, "variant 8");
}

/// What kernels/conv_wgmma.cuh's producer warp relies on: a block of 160 threads whose fifth warp
/// returns after staging the tiles while warpgroup 0 multiplies, then waits at a __syncthreads that
/// the returned warp must not hold (since Volta a block barrier waits for the threads that have not
/// exited). On a GPU a hang here would be a timeout, a wrong layout a mismatch.
#[test]
fn a_warp_past_the_warpgroup_may_return_before_the_multiply() {
    let g = variant_inputs(13);
    let (d, _) = variant_on(driver(), &g, 12, 160).unwrap();
    g.check(&d, "variant 12 (160 threads, the fifth warp returned)");
}

/// The error of a wrong variant on the emulator, after checking that the correct one passes with the
/// same emulator (so that the error is the bug's).
fn misuse(variant: usize, threads: u32) -> String {
    let emu = EmuDriver::default();
    let g = variant_inputs(20 + variant as u64);
    let (d, _) = variant_on(&emu, &g, 0, 128).unwrap();
    g.check(&d, "variant 0 on the emulator");
    match variant_on(&emu, &g, variant, threads) {
        Ok(_) => panic!("variant {variant} with {threads} threads passed"),
        Err(e) => e,
    }
}

#[test]
fn accumulators_read_before_the_wait_are_nan() {
    let emu = EmuDriver::default();
    let g = variant_inputs(30);
    let (d, _) = variant_on(&emu, &g, 1, 128).unwrap();
    for (i, v) in d.iter().enumerate() {
        assert!(
            v.is_nan(),
            "D[{}][{}] = {v} read before wait_group",
            i / 64,
            i % 64
        );
    }
}

#[test]
fn overwriting_an_operand_before_the_wait_is_an_error() {
    let e = misuse(2, 128);
    assert!(
        e.contains(
            "shared memory read by an in-flight wgmma was overwritten before its wait_group"
        ) && e.contains("wgmma_selftest_variant_2"),
        "{e}"
    );
}

#[test]
fn cp_async_data_without_a_proxy_fence_is_an_error() {
    let e = misuse(3, 128);
    assert!(
        e.contains("written by cp.async or a store without fence.proxy.async before wgmma"),
        "{e}"
    );
}

/// The in-place operand rewrites of conv_tc_bn_input.cuh are ordinary stores: the emulator holds
/// them to the same fence as a cp.async landing.
#[test]
fn a_store_into_an_operand_without_a_proxy_fence_is_an_error() {
    let e = misuse(11, 128);
    assert!(
        e.contains("written by cp.async or a store without fence.proxy.async before wgmma")
            && e.contains("wgmma_selftest_variant_11"),
        "{e}"
    );
}

#[test]
fn a_wgmma_without_wgmma_fence_is_an_error() {
    let e = misuse(4, 128);
    assert!(e.contains("wgmma.fence missing"), "{e}");
}

#[test]
fn three_warps_of_a_warpgroup_are_an_error() {
    let e = misuse(5, 128);
    // Which side is reported depends on the schedule: warp 3 returns while the others wait
    // (round-robin, first-ahead), or the others arrive after warp 3 returned (last-ahead).
    assert!(
        e.contains("wgmma.fence.sync.aligned")
            && e.contains("warpgroup")
            && (e.contains("thread returned while") || e.contains("already returned")),
        "{e}"
    );
}

#[test]
fn an_operand_in_static_shared_memory_is_an_error() {
    let emu = EmuDriver::default();
    let out = DeviceVec::new(&emu, &[0u64; 128]);
    let e = launch_on(
        &emu,
        "wgmma_selftest_static_operand",
        128,
        0,
        KernelArgs::new().ptr(out.ptr),
    )
    .unwrap_err();
    assert!(
        e.contains("not in the block's dynamic shared memory"),
        "{e}"
    );
}

#[test]
fn a_block_of_96_threads_is_an_error() {
    let e = misuse(0, 96);
    assert!(e.contains("is not 4 whole warps of the block"), "{e}");
}

/// A block may have threads past its last whole warpgroup (conv_wgmma.cuh's producer warp), but
/// they may not execute a warpgroup instruction: here every thread of 160 does (variant 13: variant
/// 0's body in a kernel compiled for 160 threads, which variant 0's 128 would refuse to launch).
#[test]
fn a_partial_warpgroup_executing_wgmma_is_an_error() {
    let e = misuse(13, 160);
    assert!(
        e.contains("thread 128 of a block of 160") || e.contains("of a block of 160 threads"),
        "{e}"
    );
    assert!(e.contains("threads 128-255"), "{e}");
}

#[test]
fn returning_with_wgmma_in_flight_is_an_error() {
    let e = misuse(9, 128);
    assert!(
        e.contains("returned with 2 wgmma.mma_async operation(s) of its warpgroup in flight"),
        "{e}"
    );
}

#[test]
fn a_new_chain_after_wait_group_needs_a_new_wgmma_fence() {
    let e = misuse(10, 128);
    assert!(
        e.contains("wgmma.fence missing") && e.contains("that a wgmma.wait_group wrote"),
        "{e}"
    );
}

/// `wgmma_selftest_register_handover_{variant}` (384 threads) on `driver`: its `out`, or the error.
fn register_handover_on(driver: &dyn Driver, variant: usize) -> Result<Vec<i32>, String> {
    register_handover_with(driver, variant, 384)
}

/// The same launched with `threads` threads.
fn register_handover_with(
    driver: &dyn Driver,
    variant: usize,
    threads: u32,
) -> Result<Vec<i32>, String> {
    let out = DeviceVec::new(driver, &[0i32; 384]);
    launch_on(
        driver,
        &format!("wgmma_selftest_register_handover_{variant}"),
        threads,
        0,
        KernelArgs::new().ptr(out.ptr),
    )?;
    Ok(out.to_host())
}

/// The hand-over of conv_wgmma.cuh's 128x256 tiles (a producer warpgroup's `setmaxnreg.dec`, the
/// consumers' `.inc`) and `exit_thread` from inside a call: the producer's store before the exit
/// lands and the one after it never runs; the consumers pass a `__syncthreads` the exited
/// warpgroup does not hold. On a GPU this also shows that the counts fit (a wrong one hangs the inc:
/// the test then times out).
#[test]
fn a_producer_warpgroup_hands_its_registers_over_and_exits_from_a_call() {
    let out = register_handover_on(driver(), 0).unwrap();
    for (t, &v) in out.iter().enumerate() {
        let t = t as i32;
        let want = if t < 256 { 3 * t + 1 } else { -1 - t };
        assert_eq!(v, want, "out[{t}]");
    }
}

/// A wrong hand-over's error on the emulator, after the correct one passes there.
fn handover_misuse(variant: usize) -> String {
    let emu = EmuDriver::default();
    register_handover_on(&emu, 0).unwrap();
    match register_handover_on(&emu, variant) {
        Ok(_) => panic!("register hand-over variant {variant} passed"),
        Err(e) => e,
    }
}

/// The hand-over's kernel launched with its two consumer warpgroups only (256 threads): their incs
/// find no registers in the block's pool, which only a dec fills, and would wait forever on a GPU
/// (what `RESNET_TMA_PRODUCER=0` once launched for the 128x256 TMA-fed tiles).
#[test]
fn an_inc_in_a_block_without_a_dec_is_an_error() {
    let emu = EmuDriver::default();
    let e = register_handover_with(&emu, 0, 256).unwrap_err();
    assert!(
        // (which warpgroup incs first depends on the emulator's schedule)
        e.contains("setmaxnreg.inc by warpgroup ")
            && e.contains("in a block of 256 threads")
            && e.contains("no warpgroup ran setmaxnreg.dec"),
        "{e}"
    );
    register_handover_with(&emu, 0, 384).unwrap();
}

#[test]
fn registers_the_block_cannot_hold_are_an_error() {
    let e = handover_misuse(1);
    assert!(
        e.contains("would hold 66560 registers, more than an SM's 65536"),
        "{e}"
    );
}

#[test]
fn a_warpgroup_asking_different_register_counts_is_an_error() {
    let e = handover_misuse(2);
    assert!(
        e.contains("setmaxnreg.inc: the threads of warpgroup 0 ask for different counts"),
        "{e}"
    );
}

#[test]
fn an_inc_that_lowers_the_register_count_is_an_error() {
    let e = handover_misuse(3);
    assert!(
        e.contains("setmaxnreg.inc 232 by warpgroup") && e.contains("must not lower the count"),
        "{e}"
    );
}
