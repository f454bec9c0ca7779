//! The Winograd path against the f64 im2col path, called directly (so a shape the path declines
//! cannot pass by falling through to the direct convolution): sides that are and are not
//! multiples of 4 (tiles hanging over the edge), images smaller than one tile, unequal channel
//! counts, blocks spanning several images in backward-filter, and more images than filter groups.
//!
//! Tolerance: the direct path's bound, `8 eps sqrt(reduction) max|want|`. F(4x4, 3x3)'s transforms
//! scale by up to 5 and 8 and divide by 6 and 24, so they add rounding of a fixed size per
//! element rather than error growing with the reduction; on these shapes the worst element uses a
//! third of the bound (measured), which leaves room without hiding a wrong coefficient (changing
//! one of `Aᵀ`'s 8s to 8.001 fails the forward check).

use super::conv::ConvDims;
use super::conv_direct_tests::{assert_close, on_two_threads, values};
use super::winograd;
use super::CpuBackend;
use crate::backend::Conv2dGeometry;

/// `[n, h, w, c, k]`, a 3x3 stride-1 pad-1 convolution.
fn check(case: [usize; 5]) {
    let [n, h, w, c, k] = case;
    let d = ConvDims::new(
        &[n, h, w, c],
        &[k, 3, 3, c],
        &[n, h, w, k],
        Conv2dGeometry::new(1, 1),
    );
    assert!(winograd::applies(&d), "{case:?} takes the Winograd path");
    let (xl, wl, yl) = (n * h * w * c, k * 9 * c, n * h * w * k);
    let (x, wt, dy) = (values(xl, 11), values(wl, 12), values(yl, 13));
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (x32, w32, dy32) = (f32s(&x), f32s(&wt), f32s(&dy));
    let reference = CpuBackend::<f64>::new();

    let (mut y32, mut y64) = (vec![f32::NAN; yl], vec![0.0f64; yl]);
    assert!(winograd::forward(&d, &x32, &w32, &mut y32));
    reference.conv_forward(&d, &x, &wt, &mut y64);
    assert_close(&format!("forward {case:?}"), &y32, &y64, 9 * c);

    let (mut dx32, mut dx64) = (vec![f32::NAN; xl], vec![0.0f64; xl]);
    assert!(winograd::backward_data(&d, &dy32, &w32, &mut dx32));
    reference.conv_backward_data(&d, &dy, &wt, &mut dx64);
    assert_close(&format!("backward-data {case:?}"), &dx32, &dx64, 9 * k);

    let (mut dw32, mut dw64) = (vec![f32::NAN; wl], vec![0.0f64; wl]);
    assert!(winograd::backward_filter(&d, &x32, &dy32, &mut dw32));
    reference.conv_backward_filter(&d, &x, &dy, &mut dw64);
    assert_close(
        &format!("backward-filter {case:?}"),
        &dw32,
        &dw64,
        n * h * w,
    );

    let mut again = vec![0.0f32; wl];
    winograd::backward_filter(&d, &x32, &dy32, &mut again);
    assert_eq!(dw32, again, "backward-filter {case:?} reproducible");
}

#[test]
fn winograd_matches_f64() {
    on_two_threads(|| {
        for case in [
            [2, 8, 8, 16, 16],
            [3, 7, 5, 16, 32],
            [2, 5, 9, 32, 16],
            [1, 1, 1, 16, 16],
            [2, 2, 3, 16, 16],
            [11, 6, 6, 16, 16],
            [2, 32, 32, 16, 16],
            [3, 9, 9, 64, 48],
        ] {
            check(case);
        }
    });
}

#[test]
fn winograd_declines_other_shapes() {
    let case = |x: [usize; 4], k: usize, r: usize, stride: usize, pad: usize| {
        let geom = Conv2dGeometry::new(stride, pad);
        let p = geom.output_extent(x[1], r).expect("kernel fits");
        let q = geom.output_extent(x[2], r).expect("kernel fits");
        winograd::applies(&ConvDims::new(&x, &[k, r, r, x[3]], &[x[0], p, q, k], geom))
    };
    assert!(case([2, 8, 8, 16], 16, 3, 1, 1));
    assert!(!case([2, 8, 8, 16], 16, 3, 2, 1), "stride 2");
    assert!(!case([2, 8, 8, 16], 16, 3, 1, 0), "no padding");
    assert!(!case([2, 8, 8, 16], 16, 5, 1, 1), "5x5");
    assert!(!case([2, 8, 8, 3], 16, 3, 1, 1), "3 input channels");
    assert!(!case([2, 8, 8, 16], 8, 3, 1, 1), "8 output channels");
}
