//! Layout conversions between PyTorch's tensors (NCHW activations, OIHW convolution weights) and ours
//! (NHWC, KRSC), written out plainly for the tests that compare against PyTorch's files. Included
//! with `#[path]` by the test files that use it; each uses only part of it.
#![allow(dead_code)]

/// NCHW (PyTorch) to NHWC (ours).
pub fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for ni in 0..n {
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    out[((ni * h + hi) * w + wi) * c + ci] = x[((ni * c + ci) * h + hi) * w + wi];
                }
            }
        }
    }
    out
}

/// OIHW (PyTorch) to KRSC (ours) for a convolution weight of our dims `[k, r, s, c]`.
pub fn oihw_to_krsc(x: &[f32], [k, r, s, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for ki in 0..k {
        for ci in 0..c {
            for ri in 0..r {
                for si in 0..s {
                    out[((ki * r + ri) * s + si) * c + ci] = x[((ki * c + ci) * r + ri) * s + si];
                }
            }
        }
    }
    out
}

/// KRSC (ours, dims `[k, r, s, c]`) to OIHW (PyTorch).
pub fn krsc_to_oihw(x: &[f32], [k, r, s, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for ki in 0..k {
        for ri in 0..r {
            for si in 0..s {
                for ci in 0..c {
                    out[((ki * c + ci) * r + ri) * s + si] = x[((ki * r + ri) * s + si) * c + ci];
                }
            }
        }
    }
    out
}
