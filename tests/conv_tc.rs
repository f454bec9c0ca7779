//! The bf16 tensor-core convolutions of `kernels/conv_tc_*.cu`, launched as
//! `resnet_cuda::backend::gpu::conv_tc_plan` plans them (and with every tile configuration and loader
//! forced), each against a host f64 reference computed from the same bf16-rounded inputs.
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`.
//!
//! Tolerance, per element, with `S` the sum of the absolute values of the terms summed into that
//! element (every |a b| product, plus |addend|) and `L` the number of terms:
//!   bf16 outputs:  |out - ref| <= 2^-8 |ref| + (L + 2) 2^-22 S
//!   fp32 outputs:  |out - ref| <=             (L + 2) 2^-22 S
//! Why: the products of two bf16 are exact in fp32; each of the at most L + 1 fp32 additions (the
//! tensor core's, the pipeline's across slices, backward-filter's split reduce) loses at most one
//! unit in the last place of a running sum bounded by S: 2^-24 S when rounding to nearest, 2^-23 S
//! for the tensor core's truncating adds; we allow twice that (2^-22). A bf16 output then rounds once
//! more: 2^-9 relative to the fp32 value, allowed as 2^-8 |ref| (a factor 2 for the fp32 error it
//! scales). Also ||out - ref||_2 / ||ref||_2 <= 1e-2 over the tensor. Outputs are poisoned with NaN
//! first (bf16 0x7fc0, f32 NaN) so an element no thread writes fails.
//!
//! The forward's batch-norm statistics epilogue, and the batch norm that uses it, are tested in
//! `conv_tc/statistics.rs` (a module of this program, with its own tolerances), the backward-data's
//! batch-norm backward sums in `conv_tc/bn_grad.rs`, the batch norm + ReLU applied as forward and
//! backward-filter stage their input in `conv_tc/bn_input.rs`; the epilogue's two
//! output stores (staged 16-byte stores, or pairs from the fragments), each on aligned and unaligned
//! outputs between poisoned guards, in `conv_tc/stores.rs`. That every kernel's `ldmatrix` and
//! `cp.async` are free of shared-memory bank conflicts (the emulator counts them) in `conv_tc/banks.rs`.
//! The loaders' index helpers (fast division, the tap walk) in `conv_tc/indexing.rs`.

use std::sync::OnceLock;

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::conv_plan::ConvShape;
use resnet_cuda::backend::gpu::conv_tc_plan::{self, TcFilterLaunch, TcLaunch, TcTile};
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{DevicePtr, Driver, DynDriver};
use resnet_cuda::backend::Conv2dGeometry;

#[path = "conv_tc/banks.rs"]
mod banks;
#[path = "conv_tc/bn_grad.rs"]
mod bn_grad;
#[path = "conv_tc/bn_input.rs"]
mod bn_input;
#[path = "conv_tc/candidates.rs"]
mod candidates;
#[path = "conv_tc/indexing.rs"]
mod indexing;
#[path = "conv_tc/statistics.rs"]
mod statistics;
#[path = "conv_tc/stores.rs"]
mod stores;
#[path = "conv_tc/tma.rs"]
mod tma;

fn driver() -> &'static DynDriver {
    static DRIVER: OnceLock<DynDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
        open_driver(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
    })
}

/// Device memory holding a copy of plain values of type `T`, freed on drop.
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
                v.host.as_ptr() as *const u8,
                v.ptr,
                std::mem::size_of_val(host),
            )
        }
        .unwrap();
        v
    }

    fn to_host(&self) -> Vec<T> {
        let mut out = self.host.clone();
        let bytes = std::mem::size_of_val(out.as_slice());
        // SAFETY: both ranges hold `host.len()` values of T.
        unsafe { driver().copy_device_to_host(self.ptr, out.as_mut_ptr() as *mut u8, bytes) }
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

fn run(l: &TcLaunch, mut args: KernelArgs) {
    if l.needs_shared_opt_in() {
        driver()
            .set_max_dynamic_shared(l.kernel, l.shared_bytes)
            .unwrap();
    }
    let mut params = args.params();
    // SAFETY: each caller passes the kernel's documented parameters (conv_tc_plan's table) with
    // buffers sized for the shape.
    unsafe {
        driver()
            .launch(l.kernel, l.grid, l.block, l.shared_bytes, &mut params)
            .and_then(|()| driver().synchronize())
    }
    .unwrap_or_else(|e| panic!("{}: {e}", l.kernel));
}

/// `args` followed by the tensor maps a TMA-fed launch takes last (`TcLaunch::encode_maps`), over
/// the GEMM's B operand at `b` (w, or backward-filter's x) and its A operand at `a` (the forward's
/// x, the backward passes' dy); `args` unchanged for every other launch.
fn with_tensor_maps(l: &TcLaunch, mut args: KernelArgs, b: DevicePtr, a: DevicePtr) -> KernelArgs {
    for bytes in l.encode_maps(driver(), b, a) {
        args = args.tensor_map(&bytes.unwrap_or_else(|e| panic!("{}: {e}", l.kernel)));
    }
    args
}

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

fn random_bf16(rng: &mut ChaCha8Rng, len: usize) -> Vec<bf16> {
    (0..len)
        .map(|_| bf16::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

fn bits(v: &[bf16]) -> Vec<u16> {
    v.iter().map(|b| b.to_bits()).collect()
}

const BF16_NAN: u16 = 0x7fc0;

/// A reference: each element's exact value and the sum of its terms' absolute values.
struct Reference {
    value: Vec<f64>,
    abs: Vec<f64>,
    /// Terms per element (the reduction length, plus one for an addend).
    terms: usize,
}

/// Checks `out` against `reference` with the bound of the module comment.
fn check(what: &str, out: &[f64], reference: &Reference, bf16_out: bool) {
    assert_eq!(out.len(), reference.value.len(), "{what}: length");
    let l = reference.terms as f64;
    let (mut err2, mut ref2) = (0.0, 0.0);
    for (i, (&o, (&r, &s))) in out
        .iter()
        .zip(reference.value.iter().zip(&reference.abs))
        .enumerate()
    {
        let rounding = if bf16_out {
            2f64.powi(-8) * r.abs()
        } else {
            0.0
        };
        let tol = rounding + (l + 2.0) * 2f64.powi(-22) * s;
        assert!(
            (o - r).abs() <= tol,
            "{what}: element {i}: got {o:e}, reference {r:e} (tolerance {tol:e})"
        );
        err2 += (o - r) * (o - r);
        ref2 += r * r;
    }
    assert!(
        err2.sqrt() <= 1e-2 * ref2.sqrt(),
        "{what}: relative L2 error {:e}",
        (err2 / ref2).sqrt()
    );
}

fn forward_reference(s: &ConvShape, x: &[bf16], w: &[bf16]) -> Reference {
    let [n, h, wd, c] = s.x;
    let [k, r, ss, _] = s.w;
    let [_, p, q, _] = s.y;
    let (st, pad) = (s.geom.stride as isize, s.geom.pad as isize);
    let mut value = vec![0.0; n * p * q * k];
    let mut abs = vec![0.0; n * p * q * k];
    for ni in 0..n {
        for pi in 0..p {
            for qi in 0..q {
                for ki in 0..k {
                    let (mut v, mut a) = (0.0f64, 0.0f64);
                    for ri in 0..r {
                        let hi = pi as isize * st - pad + ri as isize;
                        if hi < 0 || hi >= h as isize {
                            continue;
                        }
                        for si in 0..ss {
                            let wi = qi as isize * st - pad + si as isize;
                            if wi < 0 || wi >= wd as isize {
                                continue;
                            }
                            let xb = ((ni * h + hi as usize) * wd + wi as usize) * c;
                            let wb = ((ki * r + ri) * ss + si) * c;
                            for ci in 0..c {
                                let t = x[xb + ci].to_f64() * w[wb + ci].to_f64();
                                v += t;
                                a += t.abs();
                            }
                        }
                    }
                    let o = ((ni * p + pi) * q + qi) * k + ki;
                    value[o] = v;
                    abs[o] = a;
                }
            }
        }
    }
    Reference {
        value,
        abs,
        terms: r * ss * c,
    }
}

fn backward_data_reference(
    s: &ConvShape,
    dy: &[bf16],
    w: &[bf16],
    addend: Option<&[bf16]>,
) -> Reference {
    let [n, h, wd, c] = s.x;
    let [k, r, ss, _] = s.w;
    let [_, p, q, _] = s.y;
    let (st, pad) = (s.geom.stride, s.geom.pad);
    let mut value = vec![0.0; n * h * wd * c];
    let mut abs = vec![0.0; n * h * wd * c];
    for ni in 0..n {
        for hi in 0..h {
            for wi in 0..wd {
                for ci in 0..c {
                    let o = ((ni * h + hi) * wd + wi) * c + ci;
                    let (mut v, mut a) = match addend {
                        Some(add) => (add[o].to_f64(), add[o].to_f64().abs()),
                        None => (0.0, 0.0),
                    };
                    for ri in 0..r {
                        let ph = hi + pad;
                        if ph < ri || (ph - ri) % st != 0 || (ph - ri) / st >= p {
                            continue;
                        }
                        let pi = (ph - ri) / st;
                        for si in 0..ss {
                            let pw = wi + pad;
                            if pw < si || (pw - si) % st != 0 || (pw - si) / st >= q {
                                continue;
                            }
                            let qi = (pw - si) / st;
                            for ki in 0..k {
                                let t = dy[((ni * p + pi) * q + qi) * k + ki].to_f64()
                                    * w[((ki * r + ri) * ss + si) * c + ci].to_f64();
                                v += t;
                                a += t.abs();
                            }
                        }
                    }
                    value[o] = v;
                    abs[o] = a;
                }
            }
        }
    }
    Reference {
        value,
        abs,
        terms: r * ss * k + usize::from(addend.is_some()),
    }
}

fn backward_filter_reference(s: &ConvShape, x: &[bf16], dy: &[bf16]) -> Reference {
    let [n, h, wd, c] = s.x;
    let [k, r, ss, _] = s.w;
    let [_, p, q, _] = s.y;
    let (st, pad) = (s.geom.stride as isize, s.geom.pad as isize);
    let mut value = vec![0.0; k * r * ss * c];
    let mut abs = vec![0.0; k * r * ss * c];
    for ni in 0..n {
        for pi in 0..p {
            for qi in 0..q {
                let dyb = ((ni * p + pi) * q + qi) * k;
                for ri in 0..r {
                    let hi = pi as isize * st - pad + ri as isize;
                    if hi < 0 || hi >= h as isize {
                        continue;
                    }
                    for si in 0..ss {
                        let wi = qi as isize * st - pad + si as isize;
                        if wi < 0 || wi >= wd as isize {
                            continue;
                        }
                        let xb = ((ni * h + hi as usize) * wd + wi as usize) * c;
                        for ki in 0..k {
                            let g = dy[dyb + ki].to_f64();
                            let ob = ((ki * r + ri) * ss + si) * c;
                            for ci in 0..c {
                                let t = g * x[xb + ci].to_f64();
                                value[ob + ci] += t;
                                abs[ob + ci] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    Reference {
        value,
        abs,
        terms: n * p * q,
    }
}

fn len(dims: [usize; 4]) -> usize {
    dims.iter().product()
}

fn to_f64(out: &[u16]) -> Vec<f64> {
    out.iter().map(|&b| bf16::from_bits(b).to_f64()).collect()
}

/// y (bf16 bits) from the forward launch `l` (without statistics) on `x` and `w`, y poisoned first.
fn run_forward(s: &ConvShape, l: &TcLaunch, x: &[bf16], w: &[bf16]) -> Vec<u16> {
    let (dx, dw) = (DeviceVec::new(&bits(x)), DeviceVec::new(&bits(w)));
    let dy = DeviceVec::new(&vec![BF16_NAN; len(s.y)]);
    let args = KernelArgs::new()
        .ptr(dx.ptr)
        .ptr(dw.ptr)
        .ptr(dy.ptr)
        .value(&s.dims());
    run(l, with_tensor_maps(l, args, dw.ptr, dx.ptr));
    dy.to_host()
}

fn check_forward(s: &ConvShape, l: &TcLaunch, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_bf16(&mut rng, len(s.x));
    let w = random_bf16(&mut rng, len(s.w));
    let y = run_forward(s, l, &x, &w);
    let what = format!("{} on {:?} {:?}", l.kernel, s.x, s.w);
    check(&what, &to_f64(&y), &forward_reference(s, &x, &w), true);
}

/// Runs backward-data launch `l` on random data from `seed`, checks dx against the reference and
/// returns its bits.
fn check_backward_data(s: &ConvShape, l: &TcLaunch, add: bool, seed: u64) -> Vec<u16> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dy = random_bf16(&mut rng, len(s.y));
    let w = random_bf16(&mut rng, len(s.w));
    let addend = random_bf16(&mut rng, len(s.x));
    let (ddy, dw, dadd) = (
        DeviceVec::new(&bits(&dy)),
        DeviceVec::new(&bits(&w)),
        DeviceVec::new(&bits(&addend)),
    );
    let ddx = DeviceVec::new(&vec![BF16_NAN; len(s.x)]);
    let mut args = KernelArgs::new().ptr(ddy.ptr).ptr(dw.ptr).ptr(ddx.ptr);
    if add {
        args = args.ptr(dadd.ptr);
    }
    run(
        l,
        with_tensor_maps(l, args.value(&s.dims()), dw.ptr, ddy.ptr),
    );
    let what = format!(
        "{} on {:?} {:?} stride {}",
        l.kernel, s.x, s.w, s.geom.stride
    );
    let reference = backward_data_reference(s, &dy, &w, add.then_some(addend.as_slice()));
    let dx = ddx.to_host();
    check(&what, &to_f64(&dx), &reference, true);
    dx
}

/// Runs `f` on random x and dy (from `seed`) and checks dw against the f64 reference; returns dw's
/// bits (for the bit-for-bit comparisons of `tma.rs`).
fn check_backward_filter(s: &ConvShape, f: &TcFilterLaunch, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_bf16(&mut rng, len(s.x));
    let dy = random_bf16(&mut rng, len(s.y));
    let (dx, ddy) = (DeviceVec::new(&bits(&x)), DeviceVec::new(&bits(&dy)));
    let count = len(s.w);
    let ddw = DeviceVec::new(&vec![f32::NAN; count]);
    let workspace = DeviceVec::new(&vec![f32::NAN; f.workspace_bytes / 4]);
    assert_eq!(f.partial.grid.2 as usize, f.splits);
    let out = if f.splits > 1 { workspace.ptr } else { ddw.ptr };
    let args = KernelArgs::new()
        .ptr(dx.ptr)
        .ptr(ddy.ptr)
        .ptr(out)
        .value(&s.dims());
    run(
        &f.partial,
        with_tensor_maps(&f.partial, args, dx.ptr, ddy.ptr),
    );
    if let Some(reduce) = &f.reduce {
        run(
            reduce,
            KernelArgs::new()
                .ptr(workspace.ptr)
                .ptr(ddw.ptr)
                .int(f.splits)
                .u64(count),
        );
    }
    let what = format!(
        "{} (splits {}) on {:?} {:?}",
        f.partial.kernel, f.splits, s.x, s.w
    );
    let dw = ddw.to_host();
    let out: Vec<f64> = dw.iter().map(|&v| f64::from(v)).collect();
    check(&what, &out, &backward_filter_reference(s, &x, &dy), false);
    dw.iter().map(|v| v.to_bits()).collect()
}

/// Shapes the plan sees in the nets, shrunk: every kernel size and stride, odd sizes, N = 1, stems.
fn plan_shapes() -> Vec<ConvShape> {
    vec![
        // CIFAR stage 1: 3x3, 16 channels (the 64x16 tile).
        shape([2, 8, 8, 16], [16, 3, 3, 16], 1, 1),
        // CIFAR downsampling 3x3/2 into 32 channels with odd H (128x32 tile), N = 1.
        shape([1, 9, 9, 16], [32, 3, 3, 16], 2, 1),
        // K = 24, H = W = 5.
        shape([2, 5, 5, 32], [24, 3, 3, 32], 1, 1),
        // 1x1 stride 2 projection, odd H: odd phases get no tap.
        shape([2, 7, 7, 32], [64, 1, 1, 32], 2, 0),
        // 1x1 stride 1 bottleneck reduce, H = W = 7, M not a tile multiple.
        shape([3, 7, 7, 64], [16, 1, 1, 64], 1, 0),
        // A wider layer: 128x128 is not picked at this size, so forced below.
        shape([1, 7, 7, 136], [72, 3, 3, 136], 1, 1),
        // The ImageNet stem, 7x7/2 pad 3, C = 3 (general).
        shape([1, 15, 15, 3], [16, 7, 7, 3], 2, 3),
        // The CIFAR stem, 3x3 pad 1, C = 3 (general).
        shape([2, 6, 6, 3], [16, 3, 3, 3], 1, 1),
    ]
}

#[test]
fn forward_as_planned() {
    for (i, s) in plan_shapes().iter().enumerate() {
        check_forward(s, &conv_tc_plan::forward(s), 100 + i as u64);
    }
}

#[test]
fn backward_data_as_planned() {
    for (i, s) in plan_shapes().iter().enumerate() {
        for add in [false, true] {
            check_backward_data(s, &conv_tc_plan::backward_data(s, add), add, 200 + i as u64);
        }
    }
}

#[test]
fn backward_filter_as_planned() {
    for (i, s) in plan_shapes().iter().enumerate() {
        check_backward_filter(s, &conv_tc_plan::backward_filter(s), 300 + i as u64);
    }
}

/// One shape every tile covers with partial tiles on both axes (M = 50, 40 channels), 3x3 stride 2
/// so that backward-data's phases differ in size.
fn every_tile_shape() -> ConvShape {
    shape([2, 9, 9, 24], [40, 3, 3, 24], 2, 1)
}

/// The tiles with kernels on this driver: every mma.sync tile, and Hopper's wgmma tiles where their
/// kernels exist (the emulator; a GPU of compute capability 9.0). `wgmma_every_tile_and_pass`
/// insists on the latter, so they are never skipped silently where they should run.
///
/// `RESNET_TEST_TILES` narrows the list to one family: `mma` or `wgmma` (whose kernels must then be
/// there). tools/device-check.sh runs the two apart on a GPU, so that a fault in one (a sticky CUDA
/// error ends the context every test of the process shares) cannot hide the other's results.
fn every_tile() -> Vec<TcTile> {
    let has = |t: TcTile| {
        let l = conv_tc_plan::forward_with(&every_tile_shape(), t, false);
        driver().has_kernel(l.kernel)
    };
    match std::env::var("RESNET_TEST_TILES").as_deref() {
        Ok("mma") => TcTile::ALL.to_vec(),
        Ok("wgmma") => {
            let missing: Vec<TcTile> = TcTile::HOPPER.into_iter().filter(|&t| !has(t)).collect();
            assert!(
                missing.is_empty(),
                "RESNET_TEST_TILES=wgmma: {missing:?} not loaded on {}",
                driver().name()
            );
            TcTile::HOPPER.to_vec()
        }
        Ok(other) => panic!("RESNET_TEST_TILES={other}: expected mma or wgmma"),
        Err(_) => TcTile::ALL
            .into_iter()
            .chain(TcTile::HOPPER.into_iter().filter(|&t| has(t)))
            .collect(),
    }
}

#[test]
fn forward_every_tile_and_loader() {
    let s = every_tile_shape();
    for tile in every_tile() {
        for &general in tile.loaders() {
            check_forward(&s, &conv_tc_plan::forward_with(&s, tile, general), 400);
        }
    }
}

/// Shapes that exercise the wgmma kernels' pipeline: partial tiles on both axes (M = 50, 40
/// channels, a reduction of 216 = 6.75 slices), a forward reduction of 36 slices (3x3, C = 128: the
/// 4-stage ring wraps nine times), 264 output channels (three column tiles of 128, two of 256, the
/// last partial; backward-filter's M), and N = 1 with 1x1 stride 2 (backward-data's odd phases
/// empty; a forward reduction of 16, half a slice).
fn wgmma_shapes() -> [ConvShape; 4] {
    [
        every_tile_shape(),
        shape([1, 6, 6, 128], [72, 3, 3, 128], 1, 1),
        shape([2, 5, 5, 32], [264, 1, 1, 32], 1, 0),
        shape([1, 9, 9, 16], [128, 1, 1, 16], 2, 0),
    ]
}

/// Fails, saying why, where the Hopper kernel `kernel` is not loaded: a test of the wgmma kernels
/// never passes by running nothing.
fn assert_hopper_kernel_loaded(kernel: &str) {
    assert!(
        driver().has_kernel(kernel),
        "{kernel} is not loaded on {}: the wgmma kernels need compute capability 9.0 (an H100 or \
         H200) or the emulator",
        driver().name()
    );
}

/// Hopper's wgmma kernels (kernels/conv_wgmma_*_sm90a.cu), every tile and pass, on
/// [`wgmma_shapes`].
#[test]
fn wgmma_every_tile_and_pass() {
    for (i, s) in wgmma_shapes().iter().enumerate() {
        for tile in TcTile::HOPPER {
            let l = conv_tc_plan::forward_with(s, tile, false);
            assert_hopper_kernel_loaded(l.kernel);
            let seed = 450 + i as u64;
            check_forward(s, &l, seed);
            for add in [false, true] {
                let l = conv_tc_plan::backward_data_with(s, add, tile, false);
                check_backward_data(s, &l, add, seed);
            }
            for splits in [1, 3] {
                let f = conv_tc_plan::backward_filter_with(s, tile, false, splits);
                check_backward_filter(s, &f, seed);
            }
        }
    }
}

#[test]
fn backward_data_every_tile_and_loader() {
    let s = every_tile_shape();
    for tile in every_tile() {
        for &general in tile.loaders() {
            for add in [false, true] {
                let l = conv_tc_plan::backward_data_with(&s, add, tile, general);
                check_backward_data(&s, &l, add, 500);
            }
        }
    }
}

#[test]
fn backward_filter_every_tile_loader_and_split() {
    let s = every_tile_shape();
    for tile in every_tile() {
        for &general in tile.loaders() {
            for splits in [1, 3] {
                let f = conv_tc_plan::backward_filter_with(&s, tile, general, splits);
                check_backward_filter(&s, &f, 600);
            }
        }
    }
    // More splits than 32-row slices: the last splits reduce nothing and must write zeros.
    let f = conv_tc_plan::backward_filter_with(&s, TcTile::T64x64, false, 6);
    check_backward_filter(&s, &f, 601);
}

#[test]
fn general_kernels_take_channel_counts_not_multiple_of_8() {
    // K = 20 (backward passes fall back), C = 12 (forward too), 1x1 stride 2 with odd H.
    for s in [
        shape([2, 7, 7, 16], [20, 3, 3, 16], 1, 1),
        shape([1, 7, 7, 12], [20, 1, 1, 12], 2, 0),
    ] {
        check_forward(&s, &conv_tc_plan::forward(&s), 700);
        check_backward_data(&s, &conv_tc_plan::backward_data(&s, true), true, 701);
        check_backward_filter(&s, &conv_tc_plan::backward_filter(&s), 702);
        assert!(conv_tc_plan::backward_data(&s, true)
            .kernel
            .contains("general"));
    }
}

#[test]
fn many_blocks_and_long_reductions() {
    // Several blocks along both GEMM axes for every tile and a reduction of dozens of slices, so the
    // pipeline's stage ring wraps many times (forward Kred = 9 * 72 = 648; backward-filter N*P*Q = 338).
    let s = shape([2, 13, 13, 72], [136, 3, 3, 72], 1, 1);
    for tile in [TcTile::T128x128, TcTile::T64x64] {
        check_forward(&s, &conv_tc_plan::forward_with(&s, tile, false), 800);
        check_backward_data(
            &s,
            &conv_tc_plan::backward_data_with(&s, true, tile, false),
            true,
            801,
        );
        for splits in [1, 2] {
            let f = conv_tc_plan::backward_filter_with(&s, tile, false, splits);
            check_backward_filter(&s, &f, 802);
        }
    }
    check_backward_filter(&s, &conv_tc_plan::backward_filter(&s), 803);
}

#[test]
fn resnet_layers_at_batch_one() {
    // Real layer shapes (batch 1): resnet50 conv2_x 3x3, a stride-2 3x3 of torchvision's bottleneck,
    // the 1x1 expansion of conv4_x, and the ImageNet stem on a 32x32 crop.
    for (i, s) in [
        shape([1, 56, 56, 64], [64, 3, 3, 64], 1, 1),
        shape([1, 28, 28, 128], [128, 3, 3, 128], 2, 1),
        shape([1, 14, 14, 256], [1024, 1, 1, 256], 1, 0),
        shape([1, 32, 32, 3], [64, 7, 7, 3], 2, 3),
    ]
    .iter()
    .enumerate()
    {
        let seed = 900 + 10 * i as u64;
        check_forward(s, &conv_tc_plan::forward(s), seed);
        check_backward_data(s, &conv_tc_plan::backward_data(s, true), true, seed + 1);
        check_backward_filter(s, &conv_tc_plan::backward_filter(s), seed + 2);
    }
}

#[test]
fn every_planned_kernel_is_registered() {
    let names = resnet_cuda::backend::gpu::emu::kernel_names();
    let s = every_tile_shape();
    let mut planned = vec![
        conv_tc_plan::FILTER_REDUCE_KERNEL,
        "batch_norm_finalize_tiles_f32",
    ];
    for tile in TcTile::ALL.into_iter().chain(TcTile::HOPPER) {
        for &general in tile.loaders() {
            planned.push(conv_tc_plan::forward_with(&s, tile, general).kernel);
            planned.push(conv_tc_plan::forward_stats_with(&s, tile, general).0.kernel);
            for add in [false, true] {
                planned.push(conv_tc_plan::backward_data_with(&s, add, tile, general).kernel);
            }
            planned.push(
                conv_tc_plan::backward_filter_with(&s, tile, general, 1)
                    .partial
                    .kernel,
            );
        }
    }
    for k in planned {
        assert!(names.iter().any(|n| n == k), "{k} is not registered");
    }
}

#[test]
fn vector_kernels_trap_on_unaligned_channels() {
    // On a GPU a trap would end the context: the emulator only.
    if driver().name() != "emu" {
        return;
    }
    let s = shape([1, 4, 4, 12], [16, 3, 3, 12], 1, 1);
    let buf = DeviceVec::new(&vec![0u16; 4096]);
    for l in [
        conv_tc_plan::forward_with(&s, TcTile::T64x64, false),
        conv_tc_plan::backward_data_with(&s, false, TcTile::T64x64, false),
        conv_tc_plan::backward_filter_with(&s, TcTile::T64x64, false, 1).partial,
    ] {
        let mut args = KernelArgs::new()
            .ptr(buf.ptr)
            .ptr(buf.ptr)
            .ptr(buf.ptr)
            .value(&s.dims());
        let mut params = args.params();
        // SAFETY: the kernels' parameter types; the buffer is larger than anything read before the
        // shape check traps.
        let e = unsafe {
            driver()
                .launch(l.kernel, l.grid, l.block, l.shared_bytes, &mut params)
                .and_then(|()| driver().synchronize())
        }
        .unwrap_err()
        .to_string();
        assert!(e.contains("__trap()"), "{}: {e}", l.kernel);
    }
}
