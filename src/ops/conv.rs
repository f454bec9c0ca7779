//! Convolutions: forward (with BN statistics, with BN + ReLU applied to the input), backward-data
//! (with the residual addend, with BN's backward sums), backward-filter.

use super::{
    expect_activations, expect_bn_channels, expect_conv_input, expect_conv_stats, expect_masters,
    expect_partials, expect_rank4, expect_shape,
};
use crate::backend::{Backend, BatchNormSaved, BnGradMask, BnMap, Conv2dGeometry};
use crate::error::{invalid, Error, Result};
use crate::tensor::Tensor;

/// The output shape `[N, P, Q, K]` of a convolution of `x: [N, H, W, C]` with `w: [K, R, S, C]`.
pub fn conv2d_output_shape(
    op: &'static str,
    x: &[usize; 4],
    w: &[usize; 4],
    geom: Conv2dGeometry,
) -> Result<[usize; 4]> {
    conv2d_output_shape_named(op, ("x", x), ("w", w), geom)
}

/// [`conv2d_output_shape`] with the names the op gives its input-shaped and weight-shaped tensors
/// (`dx` in backward-data, `dw` in backward-filter), so that errors name the tensor actually passed.
fn conv2d_output_shape_named(
    op: &'static str,
    (x_name, x): (&'static str, &[usize; 4]),
    (w_name, w): (&'static str, &[usize; 4]),
    geom: Conv2dGeometry,
) -> Result<[usize; 4]> {
    let [n, h, wd, c] = *x;
    let [k, r, s, wc] = *w;
    if wc != c {
        return Err(Error::Shape {
            op,
            tensor: w_name,
            actual: w.to_vec(),
            expected: format!("[K, R, S, {c}] (input channels of {x_name})"),
        });
    }
    if geom.stride == 0 {
        return Err(invalid(op, "stride must be at least 1"));
    }
    let p = geom.output_extent(h, r);
    let q = geom.output_extent(wd, s);
    match (p, q) {
        (Some(p), Some(q)) if n > 0 && k > 0 && c > 0 => Ok([n, p, q, k]),
        _ => Err(Error::Shape {
            op,
            tensor: x_name,
            actual: x.to_vec(),
            expected: format!(
                "a non-empty input at least as large as the {r}x{s} kernel after padding {}",
                geom.pad
            ),
        }),
    }
}

pub fn conv2d_forward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    w: &Tensor<B>,
    y: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    check_conv2d_forward(be, "conv2d_forward", x, w, y, geom)?;
    be.conv2d_forward(x, w, y, geom)
}

/// The forward convolution's checks; returns the output shape.
fn check_conv2d_forward<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    w: &Tensor<B>,
    y: &Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<[usize; 4]> {
    let xs = expect_rank4(op, "x", x)?;
    let ws = expect_rank4(op, "w", w)?;
    let ys = conv2d_output_shape(op, &xs, &ws, geom)?;
    expect_shape(op, "y", y, &ys)?;
    expect_conv_input(be, op, "x", x)?;
    expect_masters(be, op, &[("w", w)])?;
    Ok(ys)
}

/// `conv2d_forward` plus the batch-norm statistics partials of `y` into `stats`; see the backend op.
pub fn conv2d_forward_with_stats<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    w: &Tensor<B>,
    y: &mut Tensor<B>,
    stats: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_forward_with_stats";
    let ys = check_conv2d_forward(be, OP, x, w, y, geom)?;
    expect_conv_stats(be, OP, stats, &ys)?;
    be.conv2d_forward_with_stats(x, w, y, stats, geom)
}

/// The convolution of `relu(BN(x))` with `w`, plus its output's statistics partials, BN's output
/// computed from `x` as loaded; see `Backend::conv2d_forward_with_stats_bn_input`.
pub fn conv2d_forward_with_stats_bn_input<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    bn: BnMap<'_, B>,
    w: &Tensor<B>,
    y: &mut Tensor<B>,
    stats: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_forward_with_stats_bn_input";
    let ys = check_conv2d_forward(be, OP, x, w, y, geom)?;
    expect_activations(be, OP, &[("x", x)])?;
    expect_bn_input(be, OP, x, w, &bn, geom)?;
    expect_conv_stats(be, OP, stats, &ys)?;
    be.conv2d_forward_with_stats_bn_input(x, bn, w, y, stats, geom)
}

/// `bn` holds a batch norm over `x`'s channels, and the backend applies it as this convolution
/// loads `x`.
fn expect_bn_input<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    w: &Tensor<B>,
    bn: &BnMap<'_, B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    let (xs, ws) = (expect_rank4(op, "x", x)?, expect_rank4(op, "w", w)?);
    expect_bn_channels(be, op, xs[3], bn.gamma, &bn.saved)?;
    if !be.conv2d_bn_input_fusion(&xs, &ws, geom) {
        return Err(invalid(
            op,
            format!(
                "{} does not apply batch norm as this convolution loads its input (x {xs:?}, w \
                 {ws:?}): conv2d_bn_input_fusion is false",
                be.name()
            ),
        ));
    }
    Ok(())
}

pub fn conv2d_backward_data<B: Backend>(
    be: &B,
    dy: &Tensor<B>,
    w: &Tensor<B>,
    dx: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_backward_data";
    let xs = expect_rank4(OP, "dx", dx)?;
    let ws = expect_rank4(OP, "w", w)?;
    let ys = conv2d_output_shape_named(OP, ("dx", &xs), ("w", &ws), geom)?;
    expect_shape(OP, "dy", dy, &ys)?;
    expect_activations(be, OP, &[("dy", dy)])?;
    expect_masters(be, OP, &[("w", w)])?;
    be.conv2d_backward_data(dy, w, dx, geom)
}

/// `dx = conv2d_backward_data(dy, w) + addend`; see the backend op.
pub fn conv2d_backward_data_add<B: Backend>(
    be: &B,
    dy: &Tensor<B>,
    w: &Tensor<B>,
    addend: &Tensor<B>,
    scratch: &mut Tensor<B>,
    dx: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_backward_data_add";
    let xs = expect_rank4(OP, "dx", dx)?;
    let ws = expect_rank4(OP, "w", w)?;
    let ys = conv2d_output_shape_named(OP, ("dx", &xs), ("w", &ws), geom)?;
    expect_shape(OP, "dy", dy, &ys)?;
    expect_shape(OP, "addend", addend, &xs)?;
    expect_shape(OP, "scratch", scratch, &xs)?;
    expect_activations(be, OP, &[("dy", dy), ("addend", addend)])?;
    expect_masters(be, OP, &[("w", w)])?;
    be.conv2d_backward_data_add(dy, w, addend, scratch, dx, geom)
}

pub fn conv2d_backward_filter<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    dy: &Tensor<B>,
    dw: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_backward_filter";
    let xs = expect_rank4(OP, "x", x)?;
    let ws = expect_rank4(OP, "dw", dw)?;
    let ys = conv2d_output_shape_named(OP, ("x", &xs), ("dw", &ws), geom)?;
    expect_shape(OP, "dy", dy, &ys)?;
    expect_conv_input(be, OP, "x", x)?;
    expect_activations(be, OP, &[("dy", dy)])?;
    be.conv2d_backward_filter(x, dy, dw, geom)
}

/// `conv2d_backward_filter(relu(BN(x)), dy)`, BN's output computed from `x` as loaded; see
/// `Backend::conv2d_backward_filter_bn_input`.
pub fn conv2d_backward_filter_bn_input<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    bn: BnMap<'_, B>,
    dy: &Tensor<B>,
    dw: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_backward_filter_bn_input";
    let xs = expect_rank4(OP, "x", x)?;
    let ws = expect_rank4(OP, "dw", dw)?;
    let ys = conv2d_output_shape_named(OP, ("x", &xs), ("dw", &ws), geom)?;
    expect_shape(OP, "dy", dy, &ys)?;
    expect_activations(be, OP, &[("x", x), ("dy", dy)])?;
    expect_masters(be, OP, &[("dw", dw)])?;
    expect_bn_input(be, OP, x, dw, &bn, geom)?;
    be.conv2d_backward_filter_bn_input(x, bn, dy, dw, geom)
}

/// `dz = (conv2d_backward_data(dy, w) [+ addend]) * mask` plus the backward partial sums of the
/// batch norm (input `bn_x`) whose output gradient `dz` is, into `partials`; see the backend op.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_data_with_bn_grad<B: Backend>(
    be: &B,
    dy: &Tensor<B>,
    w: &Tensor<B>,
    addend: Option<&Tensor<B>>,
    dz: &mut Tensor<B>,
    bn_x: &Tensor<B>,
    gamma: &Tensor<B>,
    saved: BatchNormSaved<'_, B>,
    mask: BnGradMask<'_, B>,
    partials: &mut Tensor<B>,
    geom: Conv2dGeometry,
) -> Result<()> {
    const OP: &str = "conv2d_backward_data_with_bn_grad";
    let xs = expect_rank4(OP, "dz", dz)?;
    let ws = expect_rank4(OP, "w", w)?;
    let ys = conv2d_output_shape_named(OP, ("dz", &xs), ("w", &ws), geom)?;
    expect_shape(OP, "dy", dy, &ys)?;
    expect_shape(OP, "bn_x", bn_x, &xs)?;
    expect_activations(be, OP, &[("dy", dy), ("bn_x", bn_x)])?;
    for (name, t) in [("addend", addend), ("y", mask_output(&mask))] {
        if let Some(t) = t {
            expect_shape(OP, name, t, &xs)?;
            expect_activations(be, OP, &[(name, t)])?;
        }
    }
    expect_masters(be, OP, &[("w", w)])?;
    expect_bn_channels(be, OP, xs[3], gamma, &saved)?;
    let len = be.conv2d_bn_grad_len(&xs, &ws, geom);
    let missing = "batch-norm backward sums in this convolution (conv2d_bn_grad_len is None)";
    expect_partials(be, OP, "partials", partials, len, missing)?;
    be.conv2d_backward_data_with_bn_grad(
        dy, w, addend, dz, bn_x, gamma, saved, mask, partials, geom,
    )
}

fn mask_output<'a, B: Backend>(mask: &BnGradMask<'a, B>) -> Option<&'a Tensor<B>> {
    match *mask {
        BnGradMask::Output(y) => Some(y),
        _ => None,
    }
}
