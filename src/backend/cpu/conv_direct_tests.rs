//! The direct f32 convolution against the f64 im2col path (which f64 always takes), over shapes that
//! exercise every branch: odd sizes, strides 1-3, padding 0-3, kernels 1-7, channel counts that are
//! and are not multiples of 16, empty backward-data phases, batches that split unevenly.

use super::conv::ConvDims;
use super::CpuBackend;
use crate::backend::Conv2dGeometry;

/// Deterministic values in [-1, 1).
pub(super) fn values(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Round to f32 so both precisions see the same inputs.
            f64::from(((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32)
        })
        .collect()
}

pub(super) fn assert_close(what: &str, got: &[f32], want: &[f64], reduction: usize) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let bound = 8.0 * f64::from(f32::EPSILON) * (reduction as f64).sqrt() * scale;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= bound,
            "{what}: element {i}: {g} vs {w} (bound {bound:e})"
        );
    }
}

/// `[n, h, w, c, k, r, stride, pad]`.
fn check(case: [usize; 8]) {
    let [n, h, w, c, k, r, stride, pad] = case;
    let geom = Conv2dGeometry::new(stride, pad);
    let p = geom.output_extent(h, r).expect("kernel fits");
    let q = geom.output_extent(w, r).expect("kernel fits");
    let d = ConvDims::new(&[n, h, w, c], &[k, r, r, c], &[n, p, q, k], geom);
    let (xl, wl, yl) = (n * h * w * c, k * r * r * c, n * p * q * k);
    let (x, wt, dy) = (values(xl, 1), values(wl, 2), values(yl, 3));
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (b32, b64) = (CpuBackend::<f32>::new(), CpuBackend::<f64>::new());

    let (mut y32, mut y64) = (vec![0.0f32; yl], vec![0.0f64; yl]);
    b32.conv_forward(&d, &f32s(&x), &f32s(&wt), &mut y32);
    b64.conv_forward(&d, &x, &wt, &mut y64);
    assert_close(&format!("forward {case:?}"), &y32, &y64, r * r * c);

    let (mut dx32, mut dx64) = (vec![f32::NAN; xl], vec![0.0f64; xl]);
    b32.conv_backward_data(&d, &f32s(&dy), &f32s(&wt), &mut dx32);
    b64.conv_backward_data(&d, &dy, &wt, &mut dx64);
    assert_close(&format!("backward-data {case:?}"), &dx32, &dx64, r * r * k);

    let (mut dw32, mut dw64) = (vec![f32::NAN; wl], vec![0.0f64; wl]);
    b32.conv_backward_filter(&d, &f32s(&x), &f32s(&dy), &mut dw32);
    b64.conv_backward_filter(&d, &x, &dy, &mut dw64);
    assert_close(
        &format!("backward-filter {case:?}"),
        &dw32,
        &dw64,
        n * p * q,
    );

    // Bit-reproducible from run to run.
    let mut again = vec![0.0f32; wl];
    b32.conv_backward_filter(&d, &f32s(&x), &f32s(&dy), &mut again);
    assert_eq!(dw32, again, "backward-filter {case:?} reproducible");
}

pub(super) fn on_two_threads(f: impl FnOnce() + Send) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a rayon thread pool")
        .install(f);
}

#[test]
fn direct_conv_matches_f64() {
    on_two_threads(|| {
        for case in [
            [2, 7, 5, 16, 16, 3, 1, 1],
            [3, 9, 9, 3, 16, 3, 1, 1],
            [2, 9, 8, 16, 32, 3, 2, 1],
            [3, 8, 9, 32, 16, 3, 2, 1],
            [1, 9, 9, 16, 16, 7, 2, 3],
            [2, 11, 7, 16, 16, 1, 2, 0],
            [2, 7, 7, 16, 32, 5, 1, 2],
            [2, 7, 7, 16, 16, 3, 1, 0],
            [2, 10, 7, 16, 16, 3, 3, 1],
            [2, 6, 6, 16, 16, 2, 2, 0],
            [5, 5, 5, 16, 16, 3, 1, 1],
            [2, 6, 6, 5, 16, 3, 1, 1],
            [1, 4, 4, 16, 16, 3, 1, 1],
            [2, 3, 3, 16, 16, 3, 2, 1],
            [4, 12, 12, 64, 64, 3, 1, 1],
        ] {
            check(case);
        }
    });
}
