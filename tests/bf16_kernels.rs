//! The bf16 memory-bound kernels (kernels/batch_norm_bf16.cu, elementwise_bf16.cu, pool_bf16.cu,
//! shortcut_bf16.cu) and the SGD kernel's bf16 weight copy, each launched with the geometry of
//! `bf16_launch` on random inputs that are exactly bf16-representable, against host references.
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`. Outputs start poisoned (bf16 NaN 0x7fc0, f32 NaN), so an element a kernel fails
//! to write fails its check. Shapes take C = 3, 5, 8, 16, 24, 64 (the scalar and the 16-byte paths),
//! row counts that are multiples of nothing, N = 1, and views one element off 16-byte alignment (the
//! vector width's scalar fallback).
//!
//! Tolerances:
//! - Exact (bits): casts, add (+relu), add backward, the shortcut, max pooling forward and backward,
//!   global average pooling's backward, and the SGD update and its copy. Each is data movement or one
//!   rounding of an exactly computed fp32 value (the inputs keep sums exact in fp32), so the reference
//!   is `half`'s round-to-nearest-even of the f32 result.
//! - BN normalize_add_bn (a shortcut's BN applied as it is read): bit for bit normalize, then
//!   normalize_add, on the same device.
//! - BN normalize, normalize_add, backward data: at most 1 bf16 ulp from `half`'s rounding of the
//!   same f32 expression evaluated without FMA (nvcc and the emulator may contract it), or, where the
//!   expression cancels, within 2^-20 of the sum of its terms' magnitudes.
//! - BN statistics (fp32 sums over `L = M` rows): |sum - exact| <= L * 2^-24 * sum |term| + 2^-24
//!   |exact| (recursive summation's worst case, any order); the finalized mean and 1/sqrt(var + eps)
//!   within 1e-5 relative of f64.
//! - Global average pooling's fp32 output: |y - exact| <= (HW + 1) * 2^-24 * mean |x|.

use std::sync::OnceLock;

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::bf16_launch::{self, Launch};
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::sgd_chunks::{
    sgd_chunk_table, sgd_chunk_table_with_copies, SgdParam, SgdParamWithCopy, SGD_CHUNK,
    WORDS_PER_CHUNK,
};
use resnet_cuda::backend::gpu::{DevicePtr, Driver, DynDriver};

const POISON: bf16 = bf16::from_bits(0x7fc0);
const EPS32: f64 = f32::EPSILON as f64 / 2.0;

fn driver() -> &'static DynDriver {
    static DRIVER: OnceLock<DynDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
        open_driver(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
    })
}

/// Device memory holding a copy of `host` (plain values), freed on drop. `at(k)` is the address of
/// element `k`, for views that start off 16-byte alignment.
struct DeviceVec<T: Copy> {
    ptr: DevicePtr,
    host: Vec<T>,
}

impl<T: Copy> DeviceVec<T> {
    fn bytes(&self) -> usize {
        std::mem::size_of_val(self.host.as_slice()).max(16)
    }

    fn new(host: &[T]) -> Self {
        let mut v = DeviceVec {
            ptr: 0,
            host: host.to_vec(),
        };
        v.ptr = driver().alloc(v.bytes()).unwrap();
        // SAFETY: `ptr` was just allocated with room for `host`.
        unsafe {
            driver().copy_host_to_device(
                host.as_ptr() as *const u8,
                v.ptr,
                std::mem::size_of_val(host),
            )
        }
        .unwrap();
        v
    }

    fn filled(value: T, n: usize) -> Self {
        Self::new(&vec![value; n])
    }

    fn at(&self, k: usize) -> DevicePtr {
        self.ptr + (k * std::mem::size_of::<T>()) as DevicePtr
    }

    fn to_host(&self) -> Vec<T> {
        let mut out = self.host.clone();
        // SAFETY: both ranges hold `host.len()` values of T.
        unsafe {
            driver().copy_device_to_host(
                self.ptr,
                out.as_mut_ptr() as *mut u8,
                std::mem::size_of_val(out.as_slice()),
            )
        }
        .unwrap();
        out
    }
}

impl<T: Copy> Drop for DeviceVec<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this size; every launch using it was synchronised.
        unsafe { driver().free(self.ptr, self.bytes()) }
    }
}

fn launch(kernel: &str, l: Launch, mut args: KernelArgs) {
    let mut params = args.params();
    // SAFETY: each call passes the kernel's parameters in order with their types (the kernel's
    // extern "C" signature) and buffers sized for every index it touches.
    unsafe {
        driver()
            .launch(kernel, l.grid, l.block, l.shared_bytes, &mut params)
            .and_then(|()| driver().synchronize())
    }
    .unwrap_or_else(|e| panic!("{kernel}: {e}"));
}

/// A bf16 with a random exponent in [2^lo, 2^hi) and either sign.
fn random_bf16(rng: &mut ChaCha8Rng, lo: i32, hi: i32) -> bf16 {
    let mantissa: f32 = rng.random_range(1.0..2.0);
    let sign = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    bf16::from_f32(sign * mantissa * 2f32.powi(rng.random_range(lo..hi)))
}

fn random_vec(rng: &mut ChaCha8Rng, n: usize, lo: i32, hi: i32) -> Vec<bf16> {
    (0..n).map(|_| random_bf16(rng, lo, hi)).collect()
}

fn random_f32(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A view of `data` on the device starting `offset` elements into its buffer (0 or 1: aligned or
/// misaligned for 16-byte accesses); returns the buffer and the view's address.
fn upload_at<T: Copy + Default>(data: &[T], offset: usize) -> (DeviceVec<T>, DevicePtr) {
    let mut host = vec![T::default(); offset];
    host.extend_from_slice(data);
    let v = DeviceVec::new(&host);
    let ptr = v.at(offset);
    (v, ptr)
}

fn poisoned_at(n: usize, offset: usize) -> (DeviceVec<bf16>, DevicePtr) {
    upload_at(&vec![POISON; n], offset)
}

fn download_at<T: Copy>(v: &DeviceVec<T>, offset: usize) -> Vec<T> {
    v.to_host()[offset..].to_vec()
}

fn assert_bits_eq(got: &[bf16], want: &[bf16], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}[{i}]: got {g}, want {w}");
    }
}

/// Distance in bf16 steps between two finite values (0 when equal, 1 for neighbours).
fn ulp_distance(a: bf16, b: bf16) -> u32 {
    let key = |x: bf16| {
        let bits = i32::from(x.to_bits());
        if bits & 0x8000 != 0 {
            -(bits & 0x7fff)
        } else {
            bits
        }
    };
    key(a).abs_diff(key(b))
}

/// Within 1 ulp of `want`, or within 2^-20 `magnitude` where the expression cancels.
fn assert_close(got: &[bf16], want: &[bf16], magnitude: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let ok = !got[i].is_nan()
            && (ulp_distance(got[i], want[i]) <= 1
                || (got[i].to_f32() - want[i].to_f32()).abs() <= magnitude[i] * 2f32.powi(-20));
        assert!(ok, "{what}[{i}]: got {}, want {}", got[i], want[i]);
    }
}

const CHANNELS: [usize; 6] = [3, 5, 8, 16, 24, 64];
/// Rows for each of CHANNELS: multiples of nothing, one a single row.
const ROWS: [usize; 6] = [301, 77, 1, 129, 43, 37];

// ---- casts, add -------------------------------------------------------------------------------------

#[test]
fn casts_round_to_nearest_even_and_widen_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (n, offset) in [(1, 0), (8, 0), (203, 0), (203, 1)] {
        let mut x: Vec<f32> = (0..n).map(|_| f32::from_bits(rng.random())).collect();
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NAN,
            1.0e-40,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            f32::from_bits(0x7f7f_ffff),
        ];
        for (xi, s) in x.iter_mut().zip(specials) {
            *xi = s;
        }
        let (src, src_ptr) = upload_at(&x, offset);
        let (dst, dst_ptr) = poisoned_at(n, offset);
        launch(
            "cast_f32_to_bf16",
            bf16_launch::elementwise(n),
            KernelArgs::new().ptr(src_ptr).ptr(dst_ptr).u64(n),
        );
        let got = download_at(&dst, offset);
        for i in 0..n {
            let want = bf16::from_f32(x[i]);
            if x[i].is_nan() {
                assert!(got[i].is_nan(), "cast[{i}] of NaN");
            } else {
                assert_eq!(got[i].to_bits(), want.to_bits(), "cast[{i}] of {:e}", x[i]);
            }
        }
        drop(src);

        let b = random_vec(&mut rng, n, -20, 20);
        let (src, src_ptr) = upload_at(&b, offset);
        let (wide, wide_ptr) = upload_at(&vec![f32::NAN; n], offset);
        launch(
            "cast_bf16_to_f32",
            bf16_launch::elementwise(n),
            KernelArgs::new().ptr(src_ptr).ptr(wide_ptr).u64(n),
        );
        let got = download_at(&wide, offset);
        for i in 0..n {
            assert_eq!(got[i].to_bits(), b[i].to_f32().to_bits(), "widen[{i}]");
        }
        drop(src);
    }
}

#[test]
fn add_and_its_backward_are_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (n, offset) in [(1, 0), (13, 0), (64, 0), (1001, 0), (1001, 1)] {
        // Exponents within 12 binades: every fp32 sum is exact, so the result is one rounding.
        let a = random_vec(&mut rng, n, -6, 6);
        let b = random_vec(&mut rng, n, -6, 6);
        let (da, pa) = upload_at(&a, offset);
        let (db, pb) = upload_at(&b, offset);
        for relu in [0, 1] {
            let (y, py) = poisoned_at(n, offset);
            launch(
                "add_forward_bf16",
                bf16_launch::elementwise(n),
                KernelArgs::new().ptr(pa).ptr(pb).ptr(py).u64(n).int(relu),
            );
            let want: Vec<bf16> = (0..n)
                .map(|i| {
                    let s = a[i].to_f32() + b[i].to_f32();
                    assert_eq!(f64::from(s), a[i].to_f64() + b[i].to_f64());
                    bf16::from_f32(if relu == 1 && s < 0.0 { 0.0 } else { s })
                })
                .collect();
            let y_host = download_at(&y, offset);
            assert_bits_eq(&y_host, &want, &format!("add n={n} relu={relu}"));

            let dy = random_vec(&mut rng, n, -6, 6);
            let (ddy, pdy) = upload_at(&dy, offset);
            let (ds, pds) = poisoned_at(n, offset);
            launch(
                "add_backward_bf16",
                bf16_launch::elementwise(n),
                KernelArgs::new().ptr(py).ptr(pdy).ptr(pds).u64(n).int(relu),
            );
            let want: Vec<bf16> = (0..n)
                .map(|i| {
                    if relu == 0 || y_host[i].to_f32() > 0.0 {
                        dy[i]
                    } else {
                        bf16::ZERO
                    }
                })
                .collect();
            assert_bits_eq(
                &download_at(&ds, offset),
                &want,
                &format!("add_backward n={n} relu={relu}"),
            );
            drop(ddy);
        }
        drop((da, db));
    }
}

// ---- batch norm ---------------------------------------------------------------------------------------

/// Sum over the P partitions of slot `q` of a `[q][P][C]` partial buffer, per channel.
fn reduce_partials(partial: &[f32], q: usize, p: usize, c: usize) -> Vec<f64> {
    (0..c)
        .map(|ch| {
            (0..p)
                .map(|k| f64::from(partial[(q * p + k) * c + ch]))
                .sum()
        })
        .collect()
}

fn assert_sum_close(got: f64, exact: f64, abs_sum: f64, len: usize, what: &str) {
    let bound = len as f64 * EPS32 * abs_sum + EPS32 * exact.abs();
    assert!(
        (got - exact).abs() <= bound,
        "{what}: got {got}, exact {exact}, bound {bound}"
    );
}

#[test]
fn batch_norm_statistics_match_f64_and_feed_the_f32_finalize() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (&c, &m) in CHANNELS.iter().zip(&ROWS) {
        let x = random_vec(&mut rng, m * c, -4, 4);
        let dx = DeviceVec::new(&x);
        let l = bf16_launch::batch_norm_partial(m, c);
        let p = l.grid.1 as usize;
        assert_eq!(p, bf16_launch::batch_norm_partitions(m));
        let partial = DeviceVec::filled(f32::NAN, bf16_launch::batch_norm_partial_floats(m, c, 1));
        launch(
            "batch_norm_partial_sum_bf16",
            l,
            KernelArgs::new().ptr(dx.ptr).int(m).int(c).ptr(partial.ptr),
        );
        let first = partial.to_host();
        let sums = reduce_partials(&first, 0, p, c);
        for ch in 0..c {
            let col = (0..m).map(|r| x[r * c + ch].to_f64());
            let (exact, abs): (f64, f64) = col.fold((0.0, 0.0), |(s, a), v| (s + v, a + v.abs()));
            assert_sum_close(sums[ch], exact, abs, m, &format!("sum C={c} M={m} c={ch}"));
        }
        // Deterministic: a second run gives the same bits.
        launch(
            "batch_norm_partial_sum_bf16",
            l,
            KernelArgs::new().ptr(dx.ptr).int(m).int(c).ptr(partial.ptr),
        );
        let again = partial.to_host();
        assert!(first
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()));

        // The f32 finalize kernels complete what the bf16 partial kernels started.
        let mean = DeviceVec::filled(f32::NAN, c);
        launch(
            "batch_norm_finalize_mean_f32",
            bf16_launch::batch_norm_finalize(c),
            KernelArgs::new()
                .ptr(partial.ptr)
                .int(p)
                .int(m)
                .int(c)
                .ptr(mean.ptr),
        );
        launch(
            "batch_norm_partial_sqdev_bf16",
            l,
            KernelArgs::new()
                .ptr(dx.ptr)
                .ptr(mean.ptr)
                .int(m)
                .int(c)
                .ptr(partial.ptr),
        );
        let sq = reduce_partials(&partial.to_host(), 0, p, c);
        let mean_host = mean.to_host();
        let (inv_std, running_mean) = (DeviceVec::filled(f32::NAN, c), DeviceVec::filled(0f32, c));
        let running_var = DeviceVec::filled(1f32, c);
        launch(
            "batch_norm_finalize_var_f32",
            bf16_launch::batch_norm_finalize(c),
            KernelArgs::new()
                .ptr(partial.ptr)
                .int(p)
                .int(m)
                .int(c)
                .ptr(mean.ptr)
                .f64(1e-5)
                .f64(0.1)
                .ptr(inv_std.ptr)
                .ptr(running_mean.ptr)
                .ptr(running_var.ptr),
        );
        let inv_std = inv_std.to_host();
        for ch in 0..c {
            let col: Vec<f64> = (0..m).map(|r| x[r * c + ch].to_f64()).collect();
            let exact_mean = col.iter().sum::<f64>() / m as f64;
            let scale = col.iter().map(|v| v.abs()).sum::<f64>() / m as f64;
            assert!(
                (f64::from(mean_host[ch]) - exact_mean).abs() <= (m + 2) as f64 * EPS32 * scale,
                "mean C={c} c={ch}"
            );
            // The squared deviations from the mean the kernel was given (fp32).
            let mu = f64::from(mean_host[ch]);
            let dev: Vec<f64> = col.iter().map(|v| (v - mu) * (v - mu)).collect();
            let exact = dev.iter().sum::<f64>();
            // Each term (x - mean)^2 rounds twice more (the difference, the square).
            assert_sum_close(sq[ch], exact, exact, m + 3, &format!("sqdev C={c} c={ch}"));
            let want = 1.0 / (exact / m as f64 + 1e-5).sqrt();
            assert!(
                (f64::from(inv_std[ch]) - want).abs() <= 1e-5 * want,
                "inv_std C={c} c={ch}: {} vs {want}",
                inv_std[ch]
            );
        }
    }
}

/// ReLU's mask in the backward kernels (`mask` of batch_norm_backward_partial_bf16): none, `y > 0`,
/// or the sign of the forward's affine map of `x`.
const MASKS: [usize; 3] = [0, 1, 2];

/// The forward's value `x scale + shift` of element `i` (f64, from the f32 scale and shift the
/// kernels form), which BN's own ReLU clamps.
fn bn_forward_value(x: &[bf16], params: &[Vec<f32>; 4], i: usize) -> f64 {
    let [mean, inv_std, gamma, beta] = params;
    let ch = i % mean.len();
    let s = gamma[ch] * inv_std[ch];
    let t = beta[ch] - mean[ch] * s;
    x[i].to_f64() * f64::from(s) + f64::from(t)
}

/// Random bf16 inputs of a batch norm with `params`, each redrawn until its forward value is well
/// away from zero (1e-3 of its terms' size; the kernel's fp32 rounding is 1e-7 of it), so the ReLU
/// mask cannot flip between the kernel's fused multiply-adds and this f64 reference.
fn bn_inputs_off_the_relu_kink(
    rng: &mut ChaCha8Rng,
    n: usize,
    params: &[Vec<f32>; 4],
) -> Vec<bf16> {
    let mut x = random_vec(rng, n, -4, 4);
    for i in 0..n {
        loop {
            let v = bn_forward_value(&x, params, i);
            let ch = i % params[0].len();
            let s = f64::from(params[2][ch] * params[1][ch]).abs();
            let size = (x[i].to_f64().abs() + f64::from(params[0][ch]).abs()) * s
                + f64::from(params[3][ch]).abs();
            if v.abs() > 1e-3 * size {
                break;
            }
            x[i] = random_bf16(rng, -4, 4);
        }
    }
    x
}

#[test]
fn batch_norm_backward_partial_matches_f64() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (&c, &m) in CHANNELS.iter().zip(&ROWS) {
        let n = m * c;
        let params = random_bn_params(&mut rng, c);
        let x = bn_inputs_off_the_relu_kink(&mut rng, n, &params);
        let (y, dy) = (
            random_vec(&mut rng, n, -4, 4),
            random_vec(&mut rng, n, -4, 4),
        );
        let mean = &params[0];
        let (dx, dyv, ddy) = (DeviceVec::new(&x), DeviceVec::new(&y), DeviceVec::new(&dy));
        let dparams = params.each_ref().map(|v| DeviceVec::new(v));
        let l = bf16_launch::batch_norm_partial(m, c);
        let p = l.grid.1 as usize;
        for mask in MASKS {
            let partial =
                DeviceVec::filled(f32::NAN, bf16_launch::batch_norm_partial_floats(m, c, 2));
            let mut args = KernelArgs::new().ptr(dx.ptr).ptr(dyv.ptr).ptr(ddy.ptr);
            for d in &dparams {
                args = args.ptr(d.ptr);
            }
            launch(
                "batch_norm_backward_partial_bf16",
                l,
                args.int(m).int(c).int(mask).ptr(partial.ptr),
            );
            let host = partial.to_host();
            let (sum_g, sum_gx) = (
                reduce_partials(&host, 0, p, c),
                reduce_partials(&host, 1, p, c),
            );
            for ch in 0..c {
                let (mut g_sum, mut g_abs, mut gx_sum, mut gx_abs) = (0.0, 0.0, 0.0, 0.0);
                for r in 0..m {
                    let i = r * c + ch;
                    let keep = match mask {
                        0 => true,
                        1 => y[i].to_f32() > 0.0,
                        _ => bn_forward_value(&x, &params, i) > 0.0,
                    };
                    let g = if keep { dy[i].to_f64() } else { 0.0 };
                    // The kernel forms x - mean in fp32.
                    let xm = f64::from(x[i].to_f32() - mean[ch]);
                    g_sum += g;
                    g_abs += g.abs();
                    gx_sum += g * xm;
                    gx_abs += (g * xm).abs();
                }
                let what = format!("C={c} M={m} mask={mask} c={ch}");
                assert_sum_close(sum_g[ch], g_sum, g_abs, m, &format!("sum g {what}"));
                // Each term g (x - mean) rounds once more (the product; the difference is in xm).
                assert_sum_close(sum_gx[ch], gx_sum, gx_abs, m + 2, &format!("sum gx {what}"));
            }
        }
    }
}

/// BN's per-channel parameters: mean, inv_std, gamma, beta.
fn random_bn_params(rng: &mut ChaCha8Rng, c: usize) -> [Vec<f32>; 4] {
    [
        random_f32(rng, c, -1.0, 1.0),
        random_f32(rng, c, 0.2, 3.0),
        random_f32(rng, c, -2.0, 2.0),
        random_f32(rng, c, -1.0, 1.0),
    ]
}

#[test]
fn batch_norm_normalize_and_normalize_add_are_within_one_ulp() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let cases = CHANNELS.iter().zip(&ROWS).map(|(&c, &m)| (c, m, 0));
    for (c, m, offset) in cases.chain([(16, 29, 1), (64, 5, 1)]) {
        let n = m * c;
        let x = random_vec(&mut rng, n, -4, 4);
        let residual = random_vec(&mut rng, n, -4, 4);
        let [mean, inv_std, gamma, beta] = random_bn_params(&mut rng, c);
        let (_x, px) = upload_at(&x, offset);
        let (_r, pr) = upload_at(&residual, offset);
        let params = [&mean, &inv_std, &gamma, &beta].map(|v| DeviceVec::new(v));
        for relu in [0, 1] {
            for add in [false, true] {
                let (out, pout) = poisoned_at(n, offset);
                let mut args = KernelArgs::new().ptr(px);
                for p in &params {
                    args = args.ptr(p.ptr);
                }
                let kernel = if add {
                    args = args.ptr(pr);
                    "batch_norm_normalize_add_bf16"
                } else {
                    "batch_norm_normalize_bf16"
                };
                let args = args.ptr(pout).u64(n).int(c).int(relu);
                launch(kernel, bf16_launch::rows_channels(m, c), args);
                let mut want = Vec::with_capacity(n);
                let mut magnitude = Vec::with_capacity(n);
                for i in 0..n {
                    let ch = i % c;
                    let s = gamma[ch] * inv_std[ch];
                    let t = beta[ch] - mean[ch] * s;
                    let xv = x[i].to_f32();
                    let mut v = xv * s + t;
                    let mut mag = (xv * s).abs() + t.abs() + beta[ch].abs() + (mean[ch] * s).abs();
                    if add {
                        v += residual[i].to_f32();
                        mag += residual[i].to_f32().abs();
                    }
                    if relu == 1 && v < 0.0 {
                        v = 0.0;
                    }
                    want.push(bf16::from_f32(v));
                    magnitude.push(mag);
                }
                let what = format!("{kernel} C={c} M={m} relu={relu} offset={offset}");
                assert_close(&download_at(&out, offset), &want, &magnitude, &what);
            }
        }
    }
}

/// `batch_norm_normalize_add_bn_bf16` (a block's end with its projection shortcut's BN applied as
/// the shortcut is read) is bit for bit the two kernels it replaces: the shortcut BN's
/// `batch_norm_normalize_bf16` (no ReLU) stored, then `batch_norm_normalize_add_bf16` reading it,
/// on the same device: it rounds the shortcut's BN output to bf16 as that store would. Aligned and
/// misaligned views (the vector and element paths), channel counts with and without groups of 8.
#[test]
fn batch_norm_normalize_add_bn_is_normalize_then_normalize_add() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let cases = CHANNELS.iter().zip(&ROWS).map(|(&c, &m)| (c, m, 0));
    for (c, m, offset) in cases.chain([(16, 29, 1), (64, 5, 1)]) {
        let n = m * c;
        let x = random_vec(&mut rng, n, -4, 4);
        let r = random_vec(&mut rng, n, -4, 4);
        let bn = random_bn_params(&mut rng, c).map(|v| DeviceVec::new(&v));
        let r_bn = random_bn_params(&mut rng, c).map(|v| DeviceVec::new(&v));
        let (_x, px) = upload_at(&x, offset);
        let (_r, pr) = upload_at(&r, offset);
        let rows = || bf16_launch::rows_channels(m, c);
        let with = |args: KernelArgs, params: &[DeviceVec<f32>; 4]| {
            params.iter().fold(args, |a, p| a.ptr(p.ptr))
        };
        for relu in [0, 1] {
            // The two passes: the shortcut's BN output stored, then the block's end.
            let (_sc, psc) = poisoned_at(n, offset);
            let args = with(KernelArgs::new().ptr(pr), &r_bn)
                .ptr(psc)
                .u64(n)
                .int(c)
                .int(0);
            launch("batch_norm_normalize_bf16", rows(), args);
            let (two, ptwo) = poisoned_at(n, offset);
            let args = with(KernelArgs::new().ptr(px), &bn)
                .ptr(psc)
                .ptr(ptwo)
                .u64(n)
                .int(c)
                .int(relu);
            launch("batch_norm_normalize_add_bf16", rows(), args);
            // The one pass.
            let (one, pone) = poisoned_at(n, offset);
            let args = with(with(KernelArgs::new().ptr(px), &bn).ptr(pr), &r_bn)
                .ptr(pone)
                .u64(n)
                .int(c)
                .int(relu);
            launch("batch_norm_normalize_add_bn_bf16", rows(), args);
            let what =
                format!("batch_norm_normalize_add_bn_bf16 C={c} M={m} relu={relu} offset={offset}");
            let want = download_at(&two, offset);
            assert!(
                want.iter().all(|v| !v.is_nan()),
                "{what}: the two passes left outputs unwritten"
            );
            assert_bits_eq(&download_at(&one, offset), &want, &what);
        }
    }
}

#[test]
fn batch_norm_backward_data_is_within_one_ulp() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let cases = CHANNELS.iter().zip(&ROWS).map(|(&c, &m)| (c, m, 0));
    for (c, m, offset) in cases.chain([(24, 17, 1)]) {
        let n = m * c;
        let params = random_bn_params(&mut rng, c);
        let x = bn_inputs_off_the_relu_kink(&mut rng, n, &params);
        let dy = random_vec(&mut rng, n, -4, 4);
        let mean = &params[0];
        let coef = random_f32(&mut rng, 3 * c, -1.0, 1.0);
        let (_x, px) = upload_at(&x, offset);
        let (_dy, pdy) = upload_at(&dy, offset);
        let dparams = params.each_ref().map(|v| DeviceVec::new(v));
        let dcoef = DeviceVec::new(&coef);
        // relu: the mask is the sign of the forward's affine map of x (y is not an argument).
        for relu in [0, 1] {
            let (out, pout) = poisoned_at(n, offset);
            let mut args = KernelArgs::new().ptr(px).ptr(pdy);
            for d in &dparams {
                args = args.ptr(d.ptr);
            }
            launch(
                "batch_norm_backward_data_bf16",
                bf16_launch::rows_channels(m, c),
                args.ptr(dcoef.ptr).ptr(pout).u64(n).int(c).int(relu),
            );
            let mut want = Vec::with_capacity(n);
            let mut magnitude = Vec::with_capacity(n);
            for i in 0..n {
                let ch = i % c;
                let (k0, k1, k2) = (coef[ch], coef[c + ch], coef[2 * c + ch]);
                let g = if relu == 0 || bn_forward_value(&x, &params, i) > 0.0 {
                    dy[i].to_f32()
                } else {
                    0.0
                };
                let d = x[i].to_f32() - mean[ch];
                want.push(bf16::from_f32(k1 * g - k2 * d - k0));
                magnitude.push(
                    (k1 * g).abs()
                        + (k2 * d).abs()
                        + k0.abs()
                        + k2.abs() * (x[i].to_f32().abs() + mean[ch].abs()),
                );
            }
            let what = format!("backward_data C={c} M={m} relu={relu} offset={offset}");
            assert_close(&download_at(&out, offset), &want, &magnitude, &what);
        }
    }
}

// ---- shortcut, pooling ---------------------------------------------------------------------------------

#[test]
fn shortcut_a_moves_bits_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (N, H, W, Cin, Cout, stride)
    for (n, h, w, cin, cout, stride) in [
        (1usize, 5usize, 7usize, 3, 5, 2usize),
        (2, 8, 8, 16, 32, 2),
        (2, 6, 5, 8, 8, 1),
        (1, 3, 3, 24, 64, 2),
        (1, 4, 4, 8, 12, 2),
    ] {
        let (p, q) = (h.div_ceil(stride), w.div_ceil(stride));
        let x = random_vec(&mut rng, n * h * w * cin, -8, 8);
        let dx_in = DeviceVec::new(&x);
        let y = DeviceVec::filled(POISON, n * p * q * cout);
        let shape = |args: KernelArgs| {
            args.int(n)
                .int(h)
                .int(w)
                .int(cin)
                .int(p)
                .int(q)
                .int(cout)
                .int(stride)
        };
        launch(
            "shortcut_a_forward_bf16",
            bf16_launch::shortcut_a_forward(n, p, q, cin, cout),
            shape(KernelArgs::new().ptr(dx_in.ptr).ptr(y.ptr)),
        );
        let mut want = vec![bf16::ZERO; n * p * q * cout];
        for b in 0..n {
            for i in 0..p {
                for j in 0..q {
                    for c in 0..cin {
                        want[((b * p + i) * q + j) * cout + c] =
                            x[((b * h + i * stride) * w + j * stride) * cin + c];
                    }
                }
            }
        }
        let what = format!("shortcut forward {n}x{h}x{w} {cin}->{cout} /{stride}");
        assert_bits_eq(&y.to_host(), &want, &what);

        let dy = random_vec(&mut rng, n * p * q * cout, -8, 8);
        let ddy = DeviceVec::new(&dy);
        let dx = DeviceVec::filled(POISON, n * h * w * cin);
        launch(
            "shortcut_a_backward_bf16",
            bf16_launch::shortcut_a_backward(n, h, w, cin, cout),
            shape(KernelArgs::new().ptr(ddy.ptr).ptr(dx.ptr)),
        );
        let mut want = vec![bf16::ZERO; n * h * w * cin];
        for b in 0..n {
            for i in (0..h).step_by(stride) {
                for j in (0..w).step_by(stride) {
                    for c in 0..cin {
                        want[((b * h + i) * w + j) * cin + c] =
                            dy[((b * p + i / stride) * q + j / stride) * cout + c];
                    }
                }
            }
        }
        assert_bits_eq(&dx.to_host(), &want, &what.replace("forward", "backward"));
    }
}

/// The first maximum (row-major taps) of window (i, j) of channel c of image b, as a flat pixel.
#[allow(clippy::too_many_arguments)]
fn window_argmax(
    x: &[bf16],
    dims: [usize; 4],
    b: usize,
    i: usize,
    j: usize,
    c: usize,
    window: usize,
    stride: usize,
    pad: usize,
) -> usize {
    let [_, h, w, ch] = dims;
    let mut best: Option<(usize, f32)> = None;
    for di in 0..window {
        for dj in 0..window {
            let (hh, ww) = (
                (i * stride + di) as isize - pad as isize,
                (j * stride + dj) as isize - pad as isize,
            );
            if hh < 0 || ww < 0 || hh as usize >= h || ww as usize >= w {
                continue;
            }
            let at = hh as usize * w + ww as usize;
            let v = x[(b * h * w + at) * ch + c].to_f32();
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((at, v));
            }
        }
    }
    best.expect("every window has a tap").0
}

/// The pool kernels' trailing parameters: N, H, W, C, P, Q, window, stride, pad.
/// What a max pool's taps workspace holds before its argmax pass: no window has a tap 0xee (238 >
/// 15 x 15), so a tap left unwritten sends no gradient and fails the backward's comparison.
const TAP_POISON: u8 = 0xee;

fn pool_shape(args: KernelArgs, x: [usize; 4], pq: [usize; 2], geom: [usize; 3]) -> KernelArgs {
    x.into_iter()
        .chain(pq)
        .chain(geom)
        .fold(args, |a, v| a.int(v))
}

#[test]
fn max_pool_forward_and_backward_are_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // (N, H, W, C, window, stride, pad)
    for (n, h, w, c, window, stride, pad) in [
        (1, 7, 9, 3, 3, 2, 1),
        (2, 8, 8, 16, 3, 2, 1),
        (1, 5, 5, 8, 2, 2, 0),
        (1, 6, 6, 24, 3, 1, 1),
        (1, 4, 5, 5, 3, 1, 0),
    ] {
        let p = (h + 2 * pad - window) / stride + 1;
        let q = (w + 2 * pad - window) / stride + 1;
        // Few distinct values, so that windows hold ties and the first maximum must win.
        let x: Vec<bf16> = (0..n * h * w * c)
            .map(|_| bf16::from_f32(rng.random_range(-4i32..4) as f32 * 0.25))
            .collect();
        let dims = [n, h, w, c];
        let dxin = DeviceVec::new(&x);
        let y = DeviceVec::filled(POISON, n * p * q * c);
        let shape = |args| pool_shape(args, [n, h, w, c], [p, q], [window, stride, pad]);
        launch(
            "max_pool_forward_bf16",
            bf16_launch::max_pool_forward(n, p, q, c),
            shape(KernelArgs::new().ptr(dxin.ptr).ptr(y.ptr)),
        );
        let mut want = vec![bf16::ZERO; n * p * q * c];
        for b in 0..n {
            for i in 0..p {
                for j in 0..q {
                    for ch in 0..c {
                        let at = window_argmax(&x, dims, b, i, j, ch, window, stride, pad);
                        want[((b * p + i) * q + j) * c + ch] = x[(b * h * w + at) * c + ch];
                    }
                }
            }
        }
        let what = format!("max pool {n}x{h}x{w}x{c} k{window} s{stride} p{pad}");
        assert_bits_eq(&y.to_host(), &want, &format!("{what} forward"));

        // Gradients within 8 binades: the fp32 sum of up to 9 of them is exact.
        let dy = random_vec(&mut rng, n * p * q * c, -4, 4);
        let ddy = DeviceVec::new(&dy);
        let dx = DeviceVec::filled(POISON, n * h * w * c);
        let taps = DeviceVec::filled(TAP_POISON, n * p * q * c);
        launch(
            "max_pool_argmax_bf16",
            bf16_launch::max_pool_forward(n, p, q, c),
            shape(KernelArgs::new().ptr(dxin.ptr).ptr(taps.ptr)),
        );
        launch(
            "max_pool_backward_bf16",
            bf16_launch::max_pool_backward(n, h, w, c),
            shape(KernelArgs::new().ptr(taps.ptr).ptr(ddy.ptr).ptr(dx.ptr)),
        );
        let mut exact = vec![0f64; n * h * w * c];
        for b in 0..n {
            for i in 0..p {
                for j in 0..q {
                    for ch in 0..c {
                        let at = window_argmax(&x, dims, b, i, j, ch, window, stride, pad);
                        exact[(b * h * w + at) * c + ch] +=
                            dy[((b * p + i) * q + j) * c + ch].to_f64();
                    }
                }
            }
        }
        let want: Vec<bf16> = exact
            .iter()
            .map(|&s| {
                assert_eq!(f64::from(s as f32), s, "the test keeps sums exact in fp32");
                bf16::from_f32(s as f32)
            })
            .collect();
        assert_bits_eq(&dx.to_host(), &want, &format!("{what} backward"));
    }
}

/// `max_pool_forward_bnrelu_bf16` and the backward's `max_pool_argmax_bnrelu_bf16` (the ImageNet
/// stem's pool computing BN + ReLU at each tap from BN's input) are bit for bit the pair they
/// replace: `batch_norm_normalize_bf16` with ReLU stored, then `max_pool_forward_bf16` and
/// `max_pool_argmax_bf16` reading it (each backward then `max_pool_backward_bf16` over its taps), on
/// the same device. gamma takes both signs, so the map is not monotone (a window's maximum of z need
/// not sit at its maximum of x), and the ReLU's zeros give windows with ties (the first maximum
/// must win in both). Aligned and misaligned views (the vector and element paths), C with and
/// without groups of 8.
#[test]
fn max_pool_through_bn_is_normalize_then_max_pool() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    // (N, H, W, C, window, stride, pad, offset)
    for (n, h, w, c, window, stride, pad, offset) in [
        (1, 7, 9, 3, 3, 2, 1, 0),
        (2, 12, 10, 64, 3, 2, 1, 0),
        (2, 8, 8, 16, 3, 2, 1, 1),
        (1, 6, 6, 24, 3, 1, 1, 0),
        (1, 5, 5, 8, 2, 2, 0, 0),
    ] {
        let (p, q) = (
            (h + 2 * pad - window) / stride + 1,
            (w + 2 * pad - window) / stride + 1,
        );
        let (len, pooled) = (n * h * w * c, n * p * q * c);
        let x = random_vec(&mut rng, len, -4, 4);
        let dy = random_vec(&mut rng, pooled, -4, 4);
        let bn = random_bn_params(&mut rng, c).map(|v| DeviceVec::new(&v));
        let (_x, px) = upload_at(&x, offset);
        let (_dy, pdy) = upload_at(&dy, offset);
        let with_bn = |args: KernelArgs| bn.iter().fold(args, |a, p| a.ptr(p.ptr));
        let shape = |args| pool_shape(args, [n, h, w, c], [p, q], [window, stride, pad]);
        let (forward, backward) = (
            bf16_launch::max_pool_forward(n, p, q, c),
            bf16_launch::max_pool_backward(n, h, w, c),
        );
        // The pair: BN + ReLU stored as z, then the pools of z.
        let (_z, pz) = poisoned_at(len, offset);
        let args = with_bn(KernelArgs::new().ptr(px))
            .ptr(pz)
            .u64(len)
            .int(c)
            .int(1);
        launch(
            "batch_norm_normalize_bf16",
            bf16_launch::rows_channels(len / c, c),
            args,
        );
        let (y_two, py_two) = poisoned_at(pooled, offset);
        let args = shape(KernelArgs::new().ptr(pz).ptr(py_two));
        launch("max_pool_forward_bf16", forward, args);
        let (dx_two, pdx_two) = poisoned_at(len, offset);
        let taps_two = DeviceVec::filled(TAP_POISON, pooled);
        launch(
            "max_pool_argmax_bf16",
            forward,
            shape(KernelArgs::new().ptr(pz).ptr(taps_two.ptr)),
        );
        let args = shape(KernelArgs::new().ptr(taps_two.ptr).ptr(pdy).ptr(pdx_two));
        launch("max_pool_backward_bf16", backward, args);
        // The pools through BN.
        let (y_one, py_one) = poisoned_at(pooled, offset);
        let args = shape(with_bn(KernelArgs::new().ptr(px)).ptr(py_one));
        launch("max_pool_forward_bnrelu_bf16", forward, args);
        let (dx_one, pdx_one) = poisoned_at(len, offset);
        let taps_one = DeviceVec::filled(TAP_POISON, pooled);
        let args = shape(with_bn(KernelArgs::new().ptr(px)).ptr(taps_one.ptr));
        launch("max_pool_argmax_bnrelu_bf16", forward, args);
        let args = shape(KernelArgs::new().ptr(taps_one.ptr).ptr(pdy).ptr(pdx_one));
        launch("max_pool_backward_bf16", backward, args);

        let what =
            format!("max pool through BN {n}x{h}x{w}x{c} k{window} s{stride} p{pad} +{offset}");
        for (one, two, pass) in [(&y_one, &y_two, "forward"), (&dx_one, &dx_two, "backward")] {
            let want = download_at(two, offset);
            assert!(
                want.iter().all(|v| !v.is_nan()),
                "{what} {pass}: the pair left outputs unwritten"
            );
            assert_bits_eq(&download_at(one, offset), &want, &format!("{what} {pass}"));
        }
    }
}

/// The stem's max pool through BN with that BN's backward sums from the same pass
/// (`max_pool_backward_bnrelu_sums_bf16`): its `dx` is bit for bit the plain BN-input pool's, and
/// its `[2][C][P]` partials (P the launch's blocks), added up, are the f64 sums over every pixel of
/// `g = dz [BN(x) > 0]` and `g (x - mean)`, with `dz` as stored. Tolerance: fp32 additions in some
/// order, a partial's then the partials' (at most M terms each way: M eps sum|terms|, one more
/// rounding per term for the product and the difference, as for the separate pass above). Inputs
/// kept off ReLU's kink, so the mask cannot flip between the kernel's fma and the f64 reference;
/// partials and `dx` poisoned first, so an unwritten one fails. The last shape has more images than
/// the grid has blocks along them: a block walks several.
#[test]
fn max_pool_through_bn_with_sums_gives_the_bns_backward_sums() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    // (N, H, W, C, window, stride, pad, offset)
    for (n, h, w, c, window, stride, pad, offset) in [
        (1, 7, 9, 3, 3, 2, 1, 0),
        (3, 12, 10, 64, 3, 2, 1, 0),
        (2, 8, 8, 16, 3, 2, 1, 1),
        (20, 6, 6, 24, 3, 1, 1, 0),
    ] {
        let (p, q) = (
            (h + 2 * pad - window) / stride + 1,
            (w + 2 * pad - window) / stride + 1,
        );
        let (len, pooled) = (n * h * w * c, n * p * q * c);
        let params = random_bn_params(&mut rng, c);
        let x = bn_inputs_off_the_relu_kink(&mut rng, len, &params);
        let dy = random_vec(&mut rng, pooled, -4, 4);
        let bn = params.each_ref().map(|v| DeviceVec::new(v));
        let (_x, px) = upload_at(&x, offset);
        let (_dy, pdy) = upload_at(&dy, offset);
        let with_bn = |args: KernelArgs| bn.iter().fold(args, |a, p| a.ptr(p.ptr));
        let shape = |args| pool_shape(args, [n, h, w, c], [p, q], [window, stride, pad]);

        let (dx_plain, pdx_plain) = poisoned_at(len, offset);
        let taps = DeviceVec::filled(TAP_POISON, pooled);
        let args = shape(with_bn(KernelArgs::new().ptr(px)).ptr(taps.ptr));
        launch(
            "max_pool_argmax_bnrelu_bf16",
            bf16_launch::max_pool_forward(n, p, q, c),
            args,
        );
        let args = shape(KernelArgs::new().ptr(taps.ptr).ptr(pdy).ptr(pdx_plain));
        let plain = bf16_launch::max_pool_backward(n, h, w, c);
        launch("max_pool_backward_bf16", plain, args);
        let (dx_sums, pdx_sums) = poisoned_at(len, offset);
        let l = bf16_launch::max_pool_backward_sums(n, h, w, c).expect("a lane per group");
        let parts = l.blocks();
        let partial = DeviceVec::filled(f32::NAN, 2 * c * parts);
        let args = with_bn(KernelArgs::new().ptr(px))
            .ptr(taps.ptr)
            .ptr(pdy)
            .ptr(pdx_sums)
            .ptr(partial.ptr);
        launch("max_pool_backward_bnrelu_sums_bf16", l, shape(args));

        let what = format!("max pool sums {n}x{h}x{w}x{c} k{window} s{stride} p{pad} +{offset}");
        let dz = download_at(&dx_plain, offset);
        assert!(dz.iter().all(|v| !v.is_nan()), "{what}: dx unwritten");
        assert_bits_eq(&download_at(&dx_sums, offset), &dz, &what);
        let partial = partial.to_host();
        assert!(
            partial.iter().all(|v| v.is_finite()),
            "{what}: a partial unwritten"
        );
        for (ch, &mean) in params[0].iter().enumerate() {
            let (mut g_sum, mut g_abs, mut gx_sum, mut gx_abs) = (0.0, 0.0, 0.0, 0.0);
            for i in (ch..len).step_by(c) {
                let keep = bn_forward_value(&x, &params, i) > 0.0;
                let g = if keep { dz[i].to_f64() } else { 0.0 };
                // The kernel forms x - mean in fp32.
                let xm = f64::from(x[i].to_f32() - mean);
                g_sum += g;
                g_abs += g.abs();
                gx_sum += g * xm;
                gx_abs += (g * xm).abs();
            }
            let got = |q: usize| -> f64 {
                let at = (q * c + ch) * parts;
                partial[at..at + parts].iter().map(|&v| f64::from(v)).sum()
            };
            let m = n * h * w;
            assert_sum_close(got(0), g_sum, g_abs, m, &format!("sum g {what} c={ch}"));
            assert_sum_close(
                got(1),
                gx_sum,
                gx_abs,
                m + 2,
                &format!("sum gx {what} c={ch}"),
            );
        }
    }
}

#[test]
fn global_avg_pool_forward_is_accurate_and_backward_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // (N, HW, C)
    for (n, hw, c) in [(1, 9, 3), (3, 16, 8), (2, 49, 24), (5, 4, 5), (2, 7, 64)] {
        let x = random_vec(&mut rng, n * hw * c, -4, 4);
        let dxin = DeviceVec::new(&x);
        let y = DeviceVec::filled(f32::NAN, n * c);
        launch(
            "global_avg_pool_forward_bf16",
            bf16_launch::rows_channels(n, c),
            KernelArgs::new()
                .ptr(dxin.ptr)
                .ptr(y.ptr)
                .int(n)
                .int(hw)
                .int(c),
        );
        let y = y.to_host();
        for b in 0..n {
            for ch in 0..c {
                let col = (0..hw).map(|k| x[(b * hw + k) * c + ch].to_f64());
                let (s, a) = col.fold((0.0, 0.0), |(s, a): (f64, f64), v| (s + v, a + v.abs()));
                let (exact, mean_abs) = (s / hw as f64, a / hw as f64);
                let got = f64::from(y[b * c + ch]);
                let bound = (hw + 1) as f64 * EPS32 * mean_abs;
                assert!(
                    (got - exact).abs() <= bound,
                    "gap forward N={n} HW={hw} C={c} [{b},{ch}]: {got} vs {exact}"
                );
            }
        }

        let dy = random_f32(&mut rng, n * c, -2.0, 2.0);
        let inv_hw = (1.0 / hw as f64) as f32;
        let ddy = DeviceVec::new(&dy);
        let dx = DeviceVec::filled(POISON, n * hw * c);
        launch(
            "global_avg_pool_backward_bf16",
            bf16_launch::global_avg_pool_backward(n, hw, c),
            KernelArgs::new()
                .ptr(ddy.ptr)
                .ptr(dx.ptr)
                .int(n)
                .int(hw)
                .int(c)
                .f32(inv_hw),
        );
        let want: Vec<bf16> = (0..n * hw * c)
            .map(|i| {
                let (b, ch) = (i / (hw * c), i % c);
                bf16::from_f32(dy[b * c + ch] * inv_hw)
            })
            .collect();
        assert_bits_eq(
            &dx.to_host(),
            &want,
            &format!("gap backward N={n} HW={hw} C={c}"),
        );
    }
}

// ---- SGD with a bf16 copy ------------------------------------------------------------------------------

/// One parameter's host state: w, g, v.
struct HostParam {
    w: Vec<f32>,
    g: Vec<f32>,
    v: Vec<f32>,
}

/// PyTorch's SGD step, every operation rounded on its own (the kernel's _rn intrinsics).
fn sgd_reference(p: &HostParam, lr: f32, momentum: f32, decay: f32) -> (Vec<f32>, Vec<f32>) {
    let mut w = p.w.clone();
    let mut v = p.v.clone();
    for i in 0..w.len() {
        let decayed = p.g[i] + decay * w[i];
        v[i] = momentum * v[i] + decayed;
        w[i] -= lr * v[i];
    }
    (w, v)
}

#[test]
fn sgd_chunks_write_the_bf16_copy_and_leave_the_f32_update_unchanged() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    // A parameter spanning two chunks with a copy, one without, a small one with.
    let lens = [SGD_CHUNK + 37, 300, 5];
    let with_copy = [true, false, true];
    let host: Vec<HostParam> = lens
        .iter()
        .map(|&len| HostParam {
            w: random_f32(&mut rng, len, -1.0, 1.0),
            g: random_f32(&mut rng, len, -1.0, 1.0),
            v: random_f32(&mut rng, len, -0.5, 0.5),
        })
        .collect();
    let (lr, momentum, decay) = (0.1f32, 0.9f32, 5e-4f32);

    // Runs one sgd_update_chunks_f32 launch on fresh copies of the state; `copies` selects the table
    // (None: the plain table). Returns (w, v, copy) per parameter.
    type Run = Vec<(Vec<f32>, Vec<f32>, Vec<bf16>)>;
    let run = |copies: Option<&[bool]>| -> Run {
        let dev: Vec<_> = host
            .iter()
            .map(|p| {
                (
                    DeviceVec::new(&p.w),
                    DeviceVec::new(&p.g),
                    DeviceVec::new(&p.v),
                    DeviceVec::filled(POISON, p.w.len()),
                )
            })
            .collect();
        let params: Vec<SgdParam> = dev
            .iter()
            .zip(&lens)
            .map(|((w, g, v, _), &len)| SgdParam {
                w: w.ptr,
                g: g.ptr,
                v: v.ptr,
                len,
            })
            .collect();
        let table = match copies {
            None => sgd_chunk_table(&params),
            Some(flags) => {
                let entries: Vec<SgdParamWithCopy> = params
                    .iter()
                    .zip(&dev)
                    .zip(flags)
                    .map(|((&param, d), &copy)| SgdParamWithCopy {
                        param,
                        w_copy: if copy { d.3.ptr } else { 0 },
                    })
                    .collect();
                sgd_chunk_table_with_copies(&entries)
            }
        };
        let chunks = table.len() / WORDS_PER_CHUNK;
        let dtable = DeviceVec::new(&table);
        launch(
            "sgd_update_chunks_f32",
            bf16_launch::sgd_chunks(chunks),
            KernelArgs::new()
                .ptr(dtable.ptr)
                .int(chunks)
                .f32(lr)
                .f32(momentum)
                .f32(decay),
        );
        dev.iter()
            .map(|(w, _, v, c)| (w.to_host(), v.to_host(), c.to_host()))
            .collect()
    };

    let plain = run(None);
    let copied = run(Some(&with_copy));
    for (k, p) in host.iter().enumerate() {
        let (want_w, want_v) = sgd_reference(p, lr, momentum, decay);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&plain[k].0),
            bits(&want_w),
            "param {k}: w without copies"
        );
        assert_eq!(
            bits(&plain[k].1),
            bits(&want_v),
            "param {k}: v without copies"
        );
        assert_eq!(
            bits(&copied[k].0),
            bits(&want_w),
            "param {k}: w with copies"
        );
        assert_eq!(
            bits(&copied[k].1),
            bits(&want_v),
            "param {k}: v with copies"
        );
        // The plain table writes no copy; a null copy pointer neither.
        assert!(plain[k].2.iter().all(|c| c.to_bits() == POISON.to_bits()));
        if with_copy[k] {
            let want: Vec<bf16> = want_w.iter().map(|&x| bf16::from_f32(x)).collect();
            assert_bits_eq(&copied[k].2, &want, &format!("param {k}: copy"));
        } else {
            assert!(copied[k].2.iter().all(|c| c.to_bits() == POISON.to_bits()));
        }
    }
}
