//! The convolution kernels of `kernels/conv_*.cu`, launched directly (every variant, every split),
//! against the CPU reference (`CpuBackend::<f32>` through `resnet_cuda::ops::conv2d_*`).
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`; selected without a usable GPU, the tests fail with the driver's reason. The two
//! tests about the emulator itself (its `__trap()` report and its kernel registry) always use it: a
//! trap on a real GPU would take down the context every other test shares.
//!
//! Tolerance: `max |kernel - reference| <= 8 * f32::EPSILON * sqrt(L) * max |reference|`, with `L` the
//! reduction length (`R*S*C` forward, `R*S*K` backward-data, `N*P*Q` backward-filter): the two sides
//! sum the same products in different orders, and random-sign rounding errors grow like `sqrt(L)`.
//!
//! Launch contract (all kernels: block (256, 1, 1), dynamic shared bytes 0, 16640 bytes of static shared
//! memory; `ConvDims` is the `#[repr(C)]` struct of 11 `i32` below, passed by value; `V` is one of
//! `3x3_s1`, `3x3_s2`, `1x1_s1`, `1x1_s2` (which require exactly that R = S and stride, any pad) or
//! `general` (any R, S, stride, pad)):
//!
//! | kernel                                 | grid                                   | params                                   | workspace bytes     |
//! |----------------------------------------|----------------------------------------|------------------------------------------|---------------------|
//! | `conv2d_forward_V_f32`                 | (ceil(N*P*Q/64), ceil(K/64), 1)        | (x, w, y, ConvDims)                      | 0                   |
//! | `conv2d_backward_data_V_f32`           | (ceil(N*ceil(H/stride)*ceil(W/stride)/64), ceil(C/64), stride*stride) | (dy, w, dx, ConvDims)                    | 0                   |
//! | `conv2d_backward_data_add_V_f32`       | as above                               | (dy, w, dx, addend, ConvDims): dx + addend | 0                 |
//! | `conv2d_backward_filter_partial_V_f32` | (ceil(K/64), ceil(R*S*C/64), Z)        | (x, dy, workspace, ConvDims)             | Z*K*R*S*C*4         |
//! | `conv2d_backward_filter_reduce_f32`    | any 1-D (grid-stride), e.g. (ceil(count/256), 1, 1) | (workspace, dw, Z: i32, count: u64 = K*R*S*C) | (reads the above) |
//!
//! `Z` (the split count of backward-filter's N*P*Q reduction) is `gridDim.z`; with `Z = 1` the partial
//! kernel may write straight into `dw` and the reduce is skipped. Every output element is written, so
//! outputs need no zeroing; the tests fill them with NaN to prove it. A specialised kernel launched on
//! another R, S or stride calls `__trap()`.

use std::ffi::c_void;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::gpu::conv_plan::ConvDims;
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::{emu, DevicePtr, Driver, DynDriver};
use resnet_cuda::backend::Conv2dGeometry;
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

const TILE: usize = 64;
const THREADS: u32 = 256;

/// The device the kernels run on.
fn driver() -> &'static DynDriver {
    static DRIVER: OnceLock<DynDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
        open_driver(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
    })
}

/// Device memory holding f32 values, freed on drop.
struct DeviceVec {
    ptr: DevicePtr,
    len: usize,
}

impl DeviceVec {
    fn from(host: &[f32]) -> Self {
        let bytes = std::mem::size_of_val(host);
        let ptr = driver().alloc(bytes.max(4)).unwrap();
        // SAFETY: `ptr` was just allocated with room for `host`.
        unsafe { driver().copy_host_to_device(host.as_ptr() as *const u8, ptr, bytes) }.unwrap();
        DeviceVec {
            ptr,
            len: host.len(),
        }
    }

    /// `len` NaNs: outputs start poisoned, so an element a kernel forgets to write shows.
    fn nans(len: usize) -> Self {
        Self::from(&vec![f32::NAN; len])
    }

    fn to_host(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.len];
        // SAFETY: both ranges hold `len` f32.
        unsafe {
            driver().copy_device_to_host(self.ptr, out.as_mut_ptr() as *mut u8, self.len * 4)
        }
        .unwrap();
        out
    }
}

impl Drop for DeviceVec {
    fn drop(&mut self) {
        // SAFETY: allocated by `from` with this size; launches using it were synchronised.
        unsafe { driver().free(self.ptr, (self.len * 4).max(4)) }
    }
}

fn launch(kernel: &str, grid: (u32, u32, u32), mut args: KernelArgs) {
    let mut params = args.params();
    // SAFETY: every call passes the kernel's parameters in order with their types, and buffers sized
    // for every index the kernel touches (the shapes of the contract above).
    unsafe {
        driver()
            .launch(kernel, grid, (THREADS, 1, 1), 0, &mut params)
            .and_then(|()| driver().synchronize())
    }
    .unwrap_or_else(|e| panic!("{kernel}: {e}"));
}

/// One convolution shape.
#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    r: usize,
    s: usize,
    stride: usize,
    pad: usize,
}

impl Case {
    const fn new(
        name: &'static str,
        [n, h, w, c]: [usize; 4],
        [k, r, s]: [usize; 3],
        stride: usize,
        pad: usize,
    ) -> Self {
        Case {
            name,
            n,
            h,
            w,
            c,
            k,
            r,
            s,
            stride,
            pad,
        }
    }

    fn geom(&self) -> Conv2dGeometry {
        Conv2dGeometry::new(self.stride, self.pad)
    }

    fn p(&self) -> usize {
        self.geom().output_extent(self.h, self.r).unwrap()
    }

    fn q(&self) -> usize {
        self.geom().output_extent(self.w, self.s).unwrap()
    }

    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }

    fn w_shape(&self) -> [usize; 4] {
        [self.k, self.r, self.s, self.c]
    }

    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.p(), self.q(), self.k]
    }

    fn dims(&self) -> ConvDims {
        let i = |v: usize| i32::try_from(v).unwrap();
        ConvDims {
            n: i(self.n),
            h: i(self.h),
            w: i(self.w),
            c: i(self.c),
            k: i(self.k),
            r: i(self.r),
            s: i(self.s),
            p: i(self.p()),
            q: i(self.q()),
            stride: i(self.stride),
            pad: i(self.pad),
        }
    }

    /// The kernel variants that accept this shape: its specialisation, if any, and `general`.
    fn variants(&self) -> Vec<&'static str> {
        let special = match (self.r, self.s, self.stride) {
            (3, 3, 1) => Some("3x3_s1"),
            (3, 3, 2) => Some("3x3_s2"),
            (1, 1, 1) => Some("1x1_s1"),
            (1, 1, 2) => Some("1x1_s2"),
            _ => None,
        };
        special.into_iter().chain(["general"]).collect()
    }
}

/// Shapes chosen for ragged tiles (nothing a multiple of 64, most channel counts not multiples of 4),
/// stride 2 on odd and even inputs, batch 1, the 7x7/2 stem with 3 input channels, 1x1 projections,
/// strides beyond the kernel and inputs too small for some of backward-data's residue classes.
const CASES: &[Case] = &[
    Case::new(
        "3x3 s1 p1, K over two column tiles",
        [2, 9, 7, 5],
        [70, 3, 3],
        1,
        1,
    ),
    Case::new("3x3 s1 p0, batch 1, C=3", [1, 6, 8, 3], [4, 3, 3], 1, 0),
    Case::new(
        "3x3 s2 p1, even input, batch 1",
        [1, 10, 10, 6],
        [10, 3, 3],
        2,
        1,
    ),
    Case::new("3x3 s2 p1, odd input", [2, 9, 11, 7], [9, 3, 3], 2, 1),
    Case::new(
        "1x1 s1 p0 (plain GEMM), C over two K-slices tiles",
        [3, 5, 5, 67],
        [9, 1, 1],
        1,
        0,
    ),
    Case::new(
        "1x1 s2 p0 projection, odd input",
        [2, 9, 9, 12],
        [20, 1, 1],
        2,
        0,
    ),
    Case::new(
        "1x1 s2 p0 projection, even input, K=66",
        [1, 8, 6, 10],
        [66, 1, 1],
        2,
        0,
    ),
    Case::new("7x7 s2 p3 stem, C=3", [2, 15, 15, 3], [66, 7, 7], 2, 3),
    Case::new(
        "5x3 s3 p1, non-square kernel",
        [2, 11, 10, 5],
        [6, 5, 3],
        3,
        1,
    ),
    Case::new("2x2 s2 p0", [1, 7, 8, 9], [5, 2, 2], 2, 0),
    Case::new(
        "3x3 s2 p1, several tiles per class",
        [2, 20, 18, 5],
        [9, 3, 3],
        2,
        1,
    ),
    Case::new("3x3 s2 p2", [1, 7, 6, 4], [6, 3, 3], 2, 2),
    Case::new(
        "3x3 s2 p1 on a 1x2 input (empty class)",
        [2, 1, 2, 5],
        [7, 3, 3],
        2,
        1,
    ),
    Case::new(
        "1x1 s3 p0 (stride beyond the kernel)",
        [1, 7, 8, 4],
        [5, 1, 1],
        3,
        0,
    ),
];

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// `8 eps sqrt(L) max|reference|`, the module doc's bound.
fn assert_close(got: &[f32], want: &[f32], reduction: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = 8.0 * f32::EPSILON * (reduction as f32).sqrt() * scale;
    let (worst, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0.0f32), |(bi, be), (i, e)| {
            // NaN (an element the kernel never wrote) must fail.
            if e.is_nan() || e > be {
                (i, if e.is_nan() { f32::INFINITY } else { e })
            } else {
                (bi, be)
            }
        });
    assert!(
        err <= tol,
        "{what}: max abs error {err} at {worst} (got {}, want {}) exceeds {tol}",
        got[worst],
        want[worst]
    );
}

struct Reference {
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
}

fn reference(case: &Case, seed: u64) -> Reference {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random(&mut rng, numel(case.x_shape()));
    let w = random(&mut rng, numel(case.w_shape()));
    let dy = random(&mut rng, numel(case.y_shape()));
    let be = CpuBackend::<f32>::new();
    let xt = Tensor::from_slice(&be, case.x_shape(), &x).unwrap();
    let wt = Tensor::from_slice(&be, case.w_shape(), &w).unwrap();
    let dyt = Tensor::from_slice(&be, case.y_shape(), &dy).unwrap();
    let mut yt = Tensor::zeros(&be, case.y_shape()).unwrap();
    let mut dxt = Tensor::zeros(&be, case.x_shape()).unwrap();
    let mut dwt = Tensor::zeros(&be, case.w_shape()).unwrap();
    ops::conv2d_forward(&be, &xt, &wt, &mut yt, case.geom()).unwrap();
    ops::conv2d_backward_data(&be, &dyt, &wt, &mut dxt, case.geom()).unwrap();
    ops::conv2d_backward_filter(&be, &xt, &dyt, &mut dwt, case.geom()).unwrap();
    Reference {
        x,
        w,
        dy,
        y: yt.to_vec(&be).unwrap(),
        dx: dxt.to_vec(&be).unwrap(),
        dw: dwt.to_vec(&be).unwrap(),
    }
}

fn grid(rows: usize, cols: usize, z: usize) -> (u32, u32, u32) {
    (
        rows.div_ceil(TILE) as u32,
        cols.div_ceil(TILE) as u32,
        z as u32,
    )
}

fn forward(variant: &str, case: &Case, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (x, w) = (DeviceVec::from(x), DeviceVec::from(w));
    let y = DeviceVec::nans(numel(case.y_shape()));
    launch(
        &format!("conv2d_forward_{variant}_f32"),
        grid(case.n * case.p() * case.q(), case.k, 1),
        KernelArgs::new()
            .ptr(x.ptr)
            .ptr(w.ptr)
            .ptr(y.ptr)
            .value(&case.dims()),
    );
    y.to_host()
}

fn backward_data(variant: &str, case: &Case, dy: &[f32], w: &[f32]) -> Vec<f32> {
    backward_data_with(variant, case, dy, w, None)
}

/// The backward-data kernel, or with `addend` its `_add_` twin.
fn backward_data_with(
    variant: &str,
    case: &Case,
    dy: &[f32],
    w: &[f32],
    addend: Option<&[f32]>,
) -> Vec<f32> {
    let (dy, w) = (DeviceVec::from(dy), DeviceVec::from(w));
    let addend = addend.map(DeviceVec::from);
    let dx = DeviceVec::nans(numel(case.x_shape()));
    let args = KernelArgs::new().ptr(dy.ptr).ptr(w.ptr).ptr(dx.ptr);
    let (kernel, args) = match &addend {
        None => (format!("conv2d_backward_data_{variant}_f32"), args),
        Some(a) => (
            format!("conv2d_backward_data_add_{variant}_f32"),
            args.ptr(a.ptr),
        ),
    };
    launch(
        &kernel,
        grid(
            case.n * case.h.div_ceil(case.stride) * case.w.div_ceil(case.stride),
            case.c,
            case.stride * case.stride,
        ),
        args.value(&case.dims()),
    );
    dx.to_host()
}

/// Partial kernel over `splits` blocks in z into a workspace, then the reduce; with `splits == 1`
/// and `direct`, the partial kernel writes `dw` itself.
fn backward_filter(
    variant: &str,
    case: &Case,
    x: &[f32],
    dy: &[f32],
    splits: usize,
    direct: bool,
) -> Vec<f32> {
    let count = numel(case.w_shape());
    let (x, dy) = (DeviceVec::from(x), DeviceVec::from(dy));
    let dw = DeviceVec::nans(count);
    let kernel = format!("conv2d_backward_filter_partial_{variant}_f32");
    let g = grid(case.k, case.r * case.s * case.c, splits);
    let partial = |out: DevicePtr| {
        KernelArgs::new()
            .ptr(x.ptr)
            .ptr(dy.ptr)
            .ptr(out)
            .value(&case.dims())
    };
    if direct {
        assert_eq!(splits, 1);
        launch(&kernel, g, partial(dw.ptr));
        return dw.to_host();
    }
    let workspace = DeviceVec::nans(splits * count);
    launch(&kernel, g, partial(workspace.ptr));
    // A grid smaller than count / 256: the grid-stride loop covers the rest.
    let blocks = count.div_ceil(THREADS as usize).min(3) as u32;
    launch(
        "conv2d_backward_filter_reduce_f32",
        (blocks, 1, 1),
        KernelArgs::new()
            .ptr(workspace.ptr)
            .ptr(dw.ptr)
            .int(splits)
            .u64(count),
    );
    dw.to_host()
}

#[test]
fn forward_matches_reference() {
    for (i, case) in CASES.iter().enumerate() {
        let re = reference(case, 100 + i as u64);
        for variant in case.variants() {
            let y = forward(variant, case, &re.x, &re.w);
            let what = format!("forward {variant} on {} {case:?}", case.name);
            assert_close(&y, &re.y, case.r * case.s * case.c, &what);
        }
    }
}

#[test]
fn backward_data_matches_reference() {
    for (i, case) in CASES.iter().enumerate() {
        let re = reference(case, 200 + i as u64);
        for variant in case.variants() {
            let dx = backward_data(variant, case, &re.dy, &re.w);
            let what = format!("backward_data {variant} on {} {case:?}", case.name);
            assert_close(&dx, &re.dx, case.r * case.s * case.k, &what);
        }
    }
}

#[test]
fn backward_data_add_stores_the_sum_exactly() {
    // dx + addend, rounded once after the convolution's own result: bit-identical to the plain
    // kernel's output plus the addend, every variant, pixels no tap reaches included.
    for (i, case) in CASES.iter().enumerate() {
        let re = reference(case, 250 + i as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(260 + i as u64);
        let addend = random(&mut rng, numel(case.x_shape()));
        for variant in case.variants() {
            let plain = backward_data(variant, case, &re.dy, &re.w);
            let fused = backward_data_with(variant, case, &re.dy, &re.w, Some(&addend));
            for (j, ((f, p), a)) in fused.iter().zip(&plain).zip(&addend).enumerate() {
                assert_eq!(
                    f.to_bits(),
                    (p + a).to_bits(),
                    "backward_data_add {variant} on {} [{j}]",
                    case.name
                );
            }
        }
    }
}

#[test]
fn backward_filter_matches_reference_for_any_split() {
    for (i, case) in CASES.iter().enumerate() {
        let re = reference(case, 300 + i as u64);
        let npq = case.n * case.p() * case.q();
        // One split (direct and through the reduce), a few, and more than there are 16-deep slices
        // (so that some splits are empty and must write zeros).
        let many = npq.div_ceil(16) + 2;
        for variant in case.variants() {
            for (splits, direct) in [(1, true), (1, false), (3, false), (many, false)] {
                let dw = backward_filter(variant, case, &re.x, &re.dy, splits, direct);
                let what = format!(
                    "backward_filter {variant} splits {splits} direct {direct} on {} {case:?}",
                    case.name
                );
                assert_close(&dw, &re.dw, npq, &what);
            }
        }
    }
}

#[test]
fn backward_filter_is_deterministic() {
    let case = &CASES[0];
    let re = reference(case, 400);
    for splits in [1, 4] {
        let first = backward_filter("3x3_s1", case, &re.x, &re.dy, splits, false);
        for _ in 0..2 {
            let again = backward_filter("3x3_s1", case, &re.x, &re.dy, splits, false);
            assert!(
                first
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "splits {splits}: results differ between runs"
            );
        }
    }
}

#[test]
fn larger_3x3_with_many_tiles() {
    // 2 x 3 output tiles in forward, 70 channels each way, 630-long reductions.
    let case = Case::new(
        "3x3 s1 p1, 70 -> 70 channels",
        [1, 10, 9, 70],
        [70, 3, 3],
        1,
        1,
    );
    let re = reference(&case, 500);
    let rsc = case.r * case.s * case.c;
    assert_close(
        &forward("3x3_s1", &case, &re.x, &re.w),
        &re.y,
        rsc,
        "forward",
    );
    assert_close(
        &backward_data("3x3_s1", &case, &re.dy, &re.w),
        &re.dx,
        case.r * case.s * case.k,
        "backward_data",
    );
    let npq = case.n * case.p() * case.q();
    assert_close(
        &backward_filter("3x3_s1", &case, &re.x, &re.dy, 2, false),
        &re.dw,
        npq,
        "backward_filter",
    );
}

fn arg<T>(value: &T) -> *mut c_void {
    value as *const T as *mut c_void
}

#[test]
fn specialised_kernels_refuse_other_shapes() {
    // A 1x1 shape given to the 3x3 kernels: a trap, not a silently wrong answer.
    let case = &CASES[4];
    assert_eq!((case.r, case.s, case.stride), (1, 1, 1));
    let d = case.dims();
    let (x, w, mut out) = (vec![0.0f32; 4096], vec![0.0f32; 4096], vec![0.0f32; 4096]);
    let (px, pw, po) = (x.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    for op in ["forward", "backward_data", "backward_filter_partial"] {
        let kernel = format!("conv2d_{op}_3x3_s1_f32");
        let mut params = [arg(&px), arg(&pw), arg(&po), arg(&d)];
        // SAFETY: pointers to values of the kernel's parameter types; the buffers are larger than any
        // index the kernel computes before its shape check traps.
        let e = unsafe { emu::launch(&kernel, (1, 1, 1), (THREADS, 1, 1), 0, &mut params) }
            .unwrap_err();
        assert!(e.contains("__trap()"), "{kernel}: {e}");
    }
}

#[test]
fn every_conv_kernel_is_registered() {
    let names = emu::kernel_names();
    let mut expected = vec!["conv2d_backward_filter_reduce_f32".to_string()];
    for op in [
        "forward",
        "backward_data",
        "backward_data_add",
        "backward_filter_partial",
    ] {
        for v in ["3x3_s1", "3x3_s2", "1x1_s1", "1x1_s2", "general"] {
            expected.push(format!("conv2d_{op}_{v}_f32"));
        }
    }
    for k in &expected {
        assert!(names.contains(k), "{k} missing from {names:?}");
    }
}
