//! The host emulator against plain Rust: the self-test kernels of `kernels/emu_selftest.cu` (barriers,
//! static and dynamic shared memory, warp shuffles and votes, atomics, thread indexing, error paths)
//! and the elementwise kernels of `kernels/elementwise.cu`.
//!
//! Inputs are small integers wherever the kernel sums, so that every float sum is exact whatever the
//! summation order and the comparisons can be exact.

use std::ffi::c_void;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::emu;
use resnet_cuda::backend::gpu::kernel_limits::KernelLimits;

/// The `params` entry for one kernel argument: a pointer to the argument's value.
fn arg<T>(value: &T) -> *mut c_void {
    value as *const T as *mut c_void
}

fn launch(
    kernel: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared: u32,
    params: &mut [*mut c_void],
) -> Result<(), String> {
    // SAFETY: every test passes pointers to values of the kernel's parameter types, and buffers
    // large enough for every index the kernel touches.
    unsafe { emu::launch(kernel, grid, block, shared, params) }
}

fn small_ints(rng: &mut ChaCha8Rng, n: usize, lo: i32, hi: i32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..=hi) as f32).collect()
}

fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Result<Vec<f32>, String> {
    let mut c = vec![f32::NAN; m * n];
    let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
    let grid = (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1);
    launch(
        "emu_selftest_sgemm_f32",
        grid,
        (16, 16, 1),
        0,
        &mut [arg(&pa), arg(&pb), arg(&pc), arg(&mi), arg(&ni), arg(&ki)],
    )?;
    Ok(c)
}

fn sgemm_reference(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
        }
    }
    c
}

#[test]
fn tiled_sgemm_matches_on_ragged_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (m, n, k) in [(37, 45, 29), (1, 1, 1), (16, 16, 16), (17, 3, 33)] {
        let a = small_ints(&mut rng, m * k, -3, 3);
        let b = small_ints(&mut rng, k * n, -3, 3);
        let c = sgemm(m, n, k, &a, &b).unwrap();
        // Exact: integer products and sums below 2^24.
        assert_eq!(c, sgemm_reference(m, n, k, &a, &b), "{m}x{n}x{k}");
    }
}

#[test]
fn tiled_sgemm_256_cubed() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let s = 256;
    let a: Vec<f32> = (0..s * s).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let b: Vec<f32> = (0..s * s).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let c = sgemm(s, s, s, &a, &b).unwrap();
    let r = sgemm_reference(s, s, s, &a, &b);
    // Same summation order as the reference; 1e-5 absolute covers a compiler that fuses into FMAs.
    for (i, (x, y)) in c.iter().zip(&r).enumerate() {
        assert!((x - y).abs() <= 1e-5, "C[{i}] = {x}, expected {y}");
    }
}

#[test]
fn shuffle_block_reduction() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (block, n) in [(256u32, 1000usize), (96, 96 * 7 + 5), (32, 31)] {
        let x = small_ints(&mut rng, n, -100, 100);
        let blocks = n.div_ceil(block as usize);
        let mut sums = vec![f32::NAN; blocks];
        let (px, ps, ni) = (x.as_ptr(), sums.as_mut_ptr(), n as i32);
        launch(
            "emu_selftest_block_sum_f32",
            (blocks as u32, 1, 1),
            (block, 1, 1),
            0,
            &mut [arg(&px), arg(&ps), arg(&ni)],
        )
        .unwrap();
        let expected: Vec<f32> = x.chunks(block as usize).map(|c| c.iter().sum()).collect();
        assert_eq!(sums, expected, "block {block}, n {n}");
    }
}

#[test]
fn ballot_and_atomic_popcount() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 1000usize;
    let flags: Vec<i32> = (0..n).map(|_| i32::from(rng.random_bool(0.3))).collect();
    let blocks = n.div_ceil(128);
    let warps = blocks * 4;
    let mut ballots = vec![0xdead_beefu32; warps];
    let mut total = 0u32;
    let (pf, pb, pt, ni) = (
        flags.as_ptr(),
        ballots.as_mut_ptr(),
        &mut total as *mut u32,
        n as i32,
    );
    launch(
        "emu_selftest_ballot",
        (blocks as u32, 1, 1),
        (128, 1, 1),
        0,
        &mut [arg(&pf), arg(&pb), arg(&pt), arg(&ni)],
    )
    .unwrap();
    for (w, &ballot) in ballots.iter().enumerate() {
        let expected = (0..32)
            .filter(|l| flags.get(w * 32 + l).is_some_and(|&f| f != 0))
            .fold(0u32, |acc, l| acc | 1 << l);
        assert_eq!(ballot, expected, "warp {w}");
    }
    assert_eq!(total, flags.iter().filter(|&&f| f != 0).count() as u32);
}

#[test]
fn atomics_from_many_blocks() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 20_000usize;
    let x: Vec<i32> = (0..n).map(|_| rng.random_range(-1000..=1000)).collect();
    let (mut fsum, mut dsum, mut isum, mut umask) = (0f32, 0f64, 0i32, 0u32);
    let (mut imax, mut imin, mut ticket) = (i32::MIN, i32::MAX, 0u32);
    let mut order = vec![-1i32; n];
    let px = x.as_ptr();
    let ni = n as i32;
    let (pf, pd, pi, pu) = (
        &mut fsum as *mut f32,
        &mut dsum as *mut f64,
        &mut isum as *mut i32,
        &mut umask as *mut u32,
    );
    let (pmax, pmin, pt, po) = (
        &mut imax as *mut i32,
        &mut imin as *mut i32,
        &mut ticket as *mut u32,
        order.as_mut_ptr(),
    );
    launch(
        "emu_selftest_atomics",
        (13, 1, 1),
        (64, 1, 1),
        0,
        &mut [
            arg(&px),
            arg(&ni),
            arg(&pf),
            arg(&pd),
            arg(&pi),
            arg(&pu),
            arg(&pmax),
            arg(&pmin),
            arg(&pt),
            arg(&po),
        ],
    )
    .unwrap();
    let sum: i32 = x.iter().sum();
    // Exact: every partial sum of these integers is below 2^24 in magnitude.
    assert_eq!(fsum, sum as f32);
    assert_eq!(dsum, f64::from(sum));
    assert_eq!(isum, sum);
    assert_eq!(umask, x.iter().fold(0u32, |m, &v| m | 1 << (v & 31)));
    assert_eq!(imax, *x.iter().max().unwrap());
    assert_eq!(imin, *x.iter().min().unwrap());
    assert_eq!(ticket, n as u32);
    let mut seen = order.clone();
    seen.sort_unstable();
    assert!(
        seen.iter().enumerate().all(|(i, &v)| v == i as i32),
        "tickets are not a permutation"
    );
}

#[test]
fn dynamic_shared_memory_is_per_block() {
    let n = 1000usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    for block in [128usize, 1024] {
        let mut y = vec![f32::NAN; n];
        let (px, py, ni) = (x.as_ptr(), y.as_mut_ptr(), n as i32);
        let blocks = n.div_ceil(block);
        launch(
            "emu_selftest_reverse_dynamic",
            (blocks as u32, 1, 1),
            (block as u32, 1, 1),
            (block * 4) as u32,
            &mut [arg(&px), arg(&py), arg(&ni)],
        )
        .unwrap();
        for (i, &v) in y.iter().enumerate() {
            let (b, t) = (i / block, i % block);
            let src = b * block + block - 1 - t;
            let expected = if src < n { src as f32 } else { -1.0 };
            assert_eq!(v, expected, "block size {block}, y[{i}]");
        }
    }
}

#[test]
fn warp_scan_xor_broadcast_votes() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (blocks, block) = (3usize, 128usize);
    let n = blocks * block;
    let x: Vec<i32> = (0..n).map(|_| rng.random_range(-10..=10)).collect();
    let mut out = vec![i32::MIN; 8 * n];
    let (px, po) = (x.as_ptr(), out.as_mut_ptr());
    launch(
        "emu_selftest_warp",
        (blocks as u32, 1, 1),
        (block as u32, 1, 1),
        0,
        &mut [arg(&px), arg(&po)],
    )
    .unwrap();
    for i in 0..n {
        let (warp, lane) = (i / 32, i % 32);
        let w = &x[warp * 32..warp * 32 + 32];
        let g = &w[lane / 8 * 8..lane / 8 * 8 + 8];
        let b = &x[i / block * block..(i / block + 1) * block];
        let expected = [
            w[..=lane].iter().sum::<i32>(),
            w.iter().sum(),
            w[warp % 32],
            g.iter().sum(),
            i32::from(w.iter().any(|&v| v > 5)),
            i32::from(w.iter().all(|&v| v > -100)),
            w.iter().sum(),
            b.iter().filter(|&&v| v > 0).count() as i32,
        ];
        assert_eq!(out[8 * i..8 * i + 8], expected, "thread {i}");
    }
}

#[test]
fn thread_and_block_indices_in_3d() {
    let (grid, block) = ((3u32, 2u32, 2u32), (5u32, 4u32, 3u32));
    let threads = (block.0 * block.1 * block.2) as usize;
    let blocks = (grid.0 * grid.1 * grid.2) as usize;
    let mut out = vec![u32::MAX; 4 * threads * blocks];
    let po = out.as_mut_ptr();
    launch("emu_selftest_index", grid, block, 0, &mut [arg(&po)]).unwrap();
    let pack = |x: u32, y: u32, z: u32| x | y << 10 | z << 20;
    for b in 0..blocks as u32 {
        let bid = pack(b % grid.0, b / grid.0 % grid.1, b / (grid.0 * grid.1));
        for t in 0..threads as u32 {
            let tid = pack(t % block.0, t / block.0 % block.1, t / (block.0 * block.1));
            let o = 4 * (b as usize * threads + t as usize);
            assert_eq!(
                out[o..o + 4],
                [
                    tid,
                    bid,
                    pack(block.0, block.1, block.2),
                    pack(grid.0, grid.1, grid.2)
                ],
                "block {b}, thread {t}"
            );
        }
    }
}

#[test]
fn elementwise_add_forward_and_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 10_007usize;
    let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let dy: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let n64 = n as u64;
    for relu in [0i32, 1] {
        let mut y = vec![f32::NAN; n];
        let (pa, pb, py) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr());
        // A grid smaller than n / block: the grid-stride loop must cover the rest.
        launch(
            "add_forward_f32",
            (7, 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&pa), arg(&pb), arg(&py), arg(&n64), arg(&relu)],
        )
        .unwrap();
        let expected: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(&a, &b)| if relu != 0 && a + b < 0.0 { 0.0 } else { a + b })
            .collect();
        // Exact: one f32 addition per element, as in the reference.
        assert_eq!(y, expected, "add_forward relu={relu}");

        let mut dsum = vec![f32::NAN; n];
        let (py, pdy, pds) = (y.as_ptr(), dy.as_ptr(), dsum.as_mut_ptr());
        launch(
            "add_backward_f32",
            (40, 1, 1),
            (256, 1, 1),
            0,
            &mut [arg(&py), arg(&pdy), arg(&pds), arg(&n64), arg(&relu)],
        )
        .unwrap();
        let expected: Vec<f32> = y
            .iter()
            .zip(&dy)
            .map(|(&y, &g)| if relu == 0 || y > 0.0 { g } else { 0.0 })
            .collect();
        assert_eq!(dsum, expected, "add_backward relu={relu}");
    }
}

#[test]
fn elementwise_sgd_update() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let n = 5000usize;
    let mut w: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let g: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let (lr, momentum, wd) = (0.1f32, 0.9f32, 1e-4f32);
    let (mut w_ref, mut v_ref) = (w.clone(), v.clone());
    for i in 0..n {
        v_ref[i] = momentum * v_ref[i] + (g[i] + wd * w_ref[i]);
        w_ref[i] -= lr * v_ref[i];
    }
    let n64 = n as u64;
    let (pw, pg, pv) = (w.as_mut_ptr(), g.as_ptr(), v.as_mut_ptr());
    launch(
        "sgd_update_f32",
        (8, 1, 1),
        (128, 1, 1),
        0,
        &mut [
            arg(&pw),
            arg(&pg),
            arg(&pv),
            arg(&n64),
            arg(&lr),
            arg(&momentum),
            arg(&wd),
        ],
    )
    .unwrap();
    // The same f32 operations in the same order; 1e-6 allows a compiler that fuses into FMAs.
    for i in 0..n {
        assert!(
            (v[i] - v_ref[i]).abs() <= 1e-6,
            "v[{i}] = {}, expected {}",
            v[i],
            v_ref[i]
        );
        assert!(
            (w[i] - w_ref[i]).abs() <= 1e-6,
            "w[{i}] = {}, expected {}",
            w[i],
            w_ref[i]
        );
    }
}

#[test]
fn launch_errors_name_the_problem() {
    let mut out = vec![0i32; 64];
    let po = out.as_mut_ptr();

    let e = launch("no_such_kernel", (1, 1, 1), (1, 1, 1), 0, &mut []).unwrap_err();
    assert!(e.contains("unknown kernel 'no_such_kernel'"), "{e}");

    let e = launch(
        "emu_selftest_trap",
        (1, 1, 1),
        (1025, 1, 1),
        0,
        &mut [arg(&po)],
    )
    .unwrap_err();
    assert!(e.contains("exceeds CUDA's limits"), "{e}");

    let e = launch("emu_selftest_trap", (1, 1, 1), (32, 1, 1), 0, &mut []).unwrap_err();
    assert!(e.contains("takes 1 parameters, the launch passed 0"), "{e}");

    let e = launch(
        "emu_selftest_trap",
        (1, 1, 1),
        (32, 1, 1),
        300 * 1024,
        &mut [arg(&po)],
    )
    .unwrap_err();
    assert!(e.contains("dynamic shared memory"), "{e}");
}

#[test]
fn kernel_failures_are_reported_and_the_emulator_recovers() {
    let mut out = vec![0i32; 64];
    let po = out.as_mut_ptr();

    let e = launch(
        "emu_selftest_exit_before_shuffle",
        (1, 1, 1),
        (32, 1, 1),
        0,
        &mut [arg(&po)],
    )
    .unwrap_err();
    // Which side is reported depends on the schedule: the shuffle waits for lane 0, which already
    // returned, or (last-ahead) lane 0 returns while the others wait for it.
    assert!(
        (e.contains("already returned") || e.contains("thread returned"))
            && e.contains("emu_selftest_exit_before_shuffle"),
        "{e}"
    );

    let e = launch(
        "emu_selftest_trap",
        (2, 1, 1),
        (32, 1, 1),
        0,
        &mut [arg(&po)],
    )
    .unwrap_err();
    assert!(
        e.contains("block (1,0,0), thread (3,0,0)") && e.contains("__trap()"),
        "{e}"
    );

    // A failed block leaves fibers abandoned mid-kernel; the next launches must not notice.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let a = small_ints(&mut rng, 40 * 40, -3, 3);
    let c = sgemm(40, 40, 40, &a, &a).unwrap();
    assert_eq!(c, sgemm_reference(40, 40, 40, &a, &a));
}

#[test]
fn registry_lists_the_kernels() {
    let names = emu::kernel_names();
    for k in [
        "add_backward_f32",
        "add_forward_f32",
        "emu_selftest_sgemm_f32",
        "sgd_update_f32",
    ] {
        assert!(names.iter().any(|n| n == k), "{k} missing from {names:?}");
    }
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "names are sorted and unique"
    );
    assert!(emu::worker_count() >= 1);
}

#[allow(dead_code)] // KERNEL_LIMITS: tests/kernels.rs checks it through the library
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels_embedded.rs"));
}

#[test]
fn embedded_fatbins_agree_with_archs() {
    // Without nvcc nothing is embedded; with it, every kernels/*.cu has a fatbin.
    assert_eq!(embedded::FATBINS.is_empty(), embedded::ARCHS.is_empty());
    for (name, bytes) in embedded::FATBINS {
        assert!(!bytes.is_empty(), "{name}");
    }
}

#[test]
fn dynamic_shared_memory_above_48_kib_needs_the_kernel_to_opt_in() {
    // As on the hardware: 48 KiB without asking, up to 227 KiB after the opt-in, never more.
    let block = 1024usize;
    let n = block;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut y = vec![f32::NAN; n];
    let (px, py, ni) = (x.as_ptr(), y.as_mut_ptr(), n as i32);
    let run = |shared: u32| {
        launch(
            "emu_selftest_reverse_dynamic",
            (1, 1, 1),
            (block as u32, 1, 1),
            shared,
            &mut [arg(&px), arg(&py), arg(&ni)],
        )
    };
    run(48 * 1024).expect("48 KiB needs no opt-in");
    let err = run(64 * 1024).expect_err("64 KiB without opting in");
    assert!(
        err.contains("emu_selftest_reverse_dynamic") && err.contains("opt in"),
        "{err}"
    );
    emu::set_max_dynamic_shared("emu_selftest_reverse_dynamic", 64 * 1024).unwrap();
    run(64 * 1024).expect("64 KiB after opting in");
    assert_eq!(y[0], (n - 1) as f32);
    let err = run(96 * 1024).expect_err("above the opted-in limit");
    assert!(err.contains("65536"), "{err}");
    let err = emu::set_max_dynamic_shared("emu_selftest_reverse_dynamic", 228 * 1024).unwrap_err();
    assert!(err.contains("227 KiB"), "{err}");
    let err = emu::set_max_dynamic_shared("no_such_kernel", 1024).unwrap_err();
    assert!(err.contains("no_such_kernel"), "{err}");
}

#[test]
fn a_launch_beyond_its_kernels_compiled_limits_is_refused() {
    // The limits nvcc gives emu_selftest_bounded (__launch_bounds__(128), an 8 KiB static array),
    // set here so that the emulator's checks are tested without nvcc too. As on the hardware: no more
    // threads than the kernel was compiled for, and the static shared memory counts against both the
    // 48 KiB default and the 227 KiB opt-in.
    let kernel = "emu_selftest_bounded";
    let limits = KernelLimits {
        max_threads: 128,
        static_shared_bytes: 8192,
    };
    emu::set_kernel_limits(kernel, limits).unwrap();
    let mut out = vec![i32::MIN; 2 * 160];
    let po = out.as_mut_ptr();
    let run = |threads: u32, shared: u32| {
        launch(kernel, (2, 1, 1), (threads, 1, 1), shared, &mut [arg(&po)])
    };
    run(128, 40 * 1024).expect("the bound, with all the default leaves beside 8 KiB static");
    let expected: Vec<i32> = (0..256).map(|i| 128 - i % 128).collect();
    assert_eq!(out[..256], expected[..]);

    let err = run(160, 1024).expect_err("160 threads");
    assert!(
        err.contains(kernel) && err.contains("160 threads exceeds the 128"),
        "{err}"
    );
    let err = run(128, 40 * 1024 + 4).expect_err("48 KiB in all without opting in");
    assert!(err.contains("40964") && err.contains("opt in"), "{err}");
    let err = emu::set_max_dynamic_shared(kernel, 219 * 1024 + 4).unwrap_err();
    assert!(
        err.contains("8192 static") && err.contains("227 KiB"),
        "{err}"
    );
    emu::set_max_dynamic_shared(kernel, 219 * 1024).unwrap();
    run(128, 219 * 1024).expect("227 KiB in all after opting in");

    let err = emu::set_kernel_limits("no_such_kernel", limits).unwrap_err();
    assert!(err.contains("no_such_kernel"), "{err}");
}

/// A warp that stages its epilogue into shared memory the other warp still reads from: the
/// self-test kernel without its barrier must come out wrong under the two run-ahead schedules (each
/// lets one warp overwrite before the other reads, from either side), and right with the barrier
/// under all three. This is what makes `RESNET_EMU_SCHEDULE` worth running the kernel suites under.
#[test]
fn run_ahead_schedules_expose_a_missing_barrier() {
    let staged = |with_barrier: i32, schedule: emu::Schedule| {
        let mut out = vec![i32::MIN; 64];
        let po = out.as_mut_ptr();
        // SAFETY: the kernel writes out[0..64) and takes (int*, int).
        unsafe {
            emu::launch_scheduled(
                "emu_selftest_staging_hazard",
                (1, 1, 1),
                (64, 1, 1),
                0,
                &mut [arg(&po), arg(&with_barrier)],
                schedule,
            )
        }
        .unwrap();
        out
    };
    let expected: Vec<i32> = (0..64).map(|t| (t + 32) % 64).collect();
    for schedule in [
        emu::Schedule::RoundRobin,
        emu::Schedule::FirstAhead,
        emu::Schedule::LastAhead,
    ] {
        assert_eq!(
            staged(1, schedule),
            expected,
            "{schedule:?} with the barrier"
        );
    }
    // First-ahead: warp 0 finishes, staging writes included, before warp 1 reads warp 0's elements.
    let first = staged(0, emu::Schedule::FirstAhead);
    assert_eq!(first[..32], expected[..32]);
    assert_eq!(first[32..], [-1; 32]);
    // Last-ahead: the mirror image.
    let last = staged(0, emu::Schedule::LastAhead);
    assert_eq!(last[..32], [-1; 32]);
    assert_eq!(last[32..], expected[32..]);
}

/// A named barrier (`bar.sync 1, threads`, common.cuh's `named_barrier_sync`) orders the shared
/// memory of the threads that meet at it, under every schedule, while a warp that never reaches it
/// returns early (conv_wgmma.cuh's producer warp); a count of threads that never all arrive is a
/// deadlock the report names, and a count that is not whole warps an error.
#[test]
fn a_named_barrier_orders_the_threads_it_counts_and_no_others() {
    let run = |threads: i32, schedule: emu::Schedule| {
        let mut out = vec![i32::MIN; 96];
        let po = out.as_mut_ptr();
        // SAFETY: the kernel writes out[0..96) and takes (int*, int).
        unsafe {
            emu::launch_scheduled(
                "emu_selftest_named_barrier",
                (1, 1, 1),
                (96, 1, 1),
                0,
                &mut [arg(&po), arg(&threads)],
                schedule,
            )
        }
        .map(|()| out)
    };
    let expected: Vec<i32> = (0..96)
        .map(|t| if t < 64 { (t + 32) % 64 } else { t })
        .collect();
    for schedule in [
        emu::Schedule::RoundRobin,
        emu::Schedule::FirstAhead,
        emu::Schedule::LastAhead,
    ] {
        assert_eq!(run(64, schedule).unwrap(), expected, "{schedule:?}");
    }
    let e = run(96, emu::Schedule::RoundRobin).unwrap_err();
    assert!(
        e.contains("deadlock") && e.contains("64 at a named barrier"),
        "{e}"
    );
    let e = run(48, emu::Schedule::RoundRobin).unwrap_err();
    assert!(
        e.contains("bar.sync 1, 48") && e.contains("multiple of 32"),
        "{e}"
    );
}

/// Every kernel must call `grid_dependency_sync()` first (on a GPU it is launched with programmatic
/// dependent launch and would otherwise read its predecessor's output early): a launch in which a
/// thread returns without the call fails, naming the kernel and the thread.
#[test]
fn a_kernel_without_grid_dependency_sync_fails() {
    let mut out = vec![0i32; 32];
    let po = out.as_mut_ptr();
    let e = launch(
        "emu_selftest_no_grid_sync",
        (1, 1, 1),
        (32, 1, 1),
        0,
        &mut [arg(&po)],
    )
    .unwrap_err();
    assert!(
        e.contains("grid_dependency_sync()")
            && e.contains("emu_selftest_no_grid_sync")
            && e.contains("thread ("),
        "{e}"
    );
}
