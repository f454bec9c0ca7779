//! The residual join: the add and the option-A shortcut (identity, subsampled, zero-padded channels).

use super::{expect_activations, expect_rank4, expect_shape};
use crate::backend::Backend;
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

pub fn add_forward<B: Backend>(
    be: &B,
    a: &Tensor<B>,
    b: &Tensor<B>,
    y: &mut Tensor<B>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "add_forward";
    expect_shape(OP, "b", b, a.dims())?;
    expect_shape(OP, "y", y, a.dims())?;
    expect_activations(be, OP, &[("a", a), ("b", b)])?;
    be.add_forward(a, b, y, relu)
}

pub fn add_backward<B: Backend>(
    be: &B,
    y: &Tensor<B>,
    dy: &Tensor<B>,
    dsum: &mut Tensor<B>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "add_backward";
    expect_shape(OP, "dy", dy, y.dims())?;
    expect_shape(OP, "dsum", dsum, y.dims())?;
    expect_activations(be, OP, &[("y", y), ("dy", dy)])?;
    be.add_backward(y, dy, dsum, relu)
}

/// The output shape of an option-A shortcut: spatially subsampled by `stride`, channels widened.
pub fn shortcut_a_output_shape(x: &[usize; 4], out_channels: usize, stride: usize) -> [usize; 4] {
    let [n, h, w, _] = *x;
    [n, h.div_ceil(stride), w.div_ceil(stride), out_channels]
}

/// Checks an input-shaped and an output-shaped tensor of shortcut A, named as the op calls them (`x`
/// and `y` forward, `dx` and `dy` backward).
fn check_shortcut_a<B: Backend>(
    op: &'static str,
    (x_name, x): (&'static str, &Tensor<B>),
    (y_name, y): (&'static str, &Tensor<B>),
    stride: usize,
) -> Result<()> {
    if stride == 0 {
        return Err(invalid(op, "stride must be at least 1"));
    }
    let xs = expect_rank4(op, x_name, x)?;
    let ys = expect_rank4(op, y_name, y)?;
    if ys[3] < xs[3] {
        return Err(invalid(
            op,
            format!("cannot narrow {} channels to {}", xs[3], ys[3]),
        ));
    }
    expect_shape(op, y_name, y, &shortcut_a_output_shape(&xs, ys[3], stride))
}

pub fn shortcut_a_forward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    y: &mut Tensor<B>,
    stride: usize,
) -> Result<()> {
    check_shortcut_a("shortcut_a_forward", ("x", x), ("y", y), stride)?;
    expect_activations(be, "shortcut_a_forward", &[("x", x)])?;
    be.shortcut_a_forward(x, y, stride)
}

pub fn shortcut_a_backward<B: Backend>(
    be: &B,
    dy: &Tensor<B>,
    dx: &mut Tensor<B>,
    stride: usize,
) -> Result<()> {
    check_shortcut_a("shortcut_a_backward", ("dx", dx), ("dy", dy), stride)?;
    expect_activations(be, "shortcut_a_backward", &[("dy", dy)])?;
    be.shortcut_a_backward(dy, dx, stride)
}
