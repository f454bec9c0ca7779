//! Pooling: global average, and max (also over a batch norm's output computed from its input).

use super::{
    expect_activations, expect_bn_channels, expect_masters, expect_nonempty, expect_partials,
    expect_rank4, expect_shape,
};
use crate::backend::{Backend, BnMap, PoolGeometry};
use crate::error::{invalid, Error, Result};
use crate::tensor::Tensor;

pub fn global_avg_pool_forward<B: Backend>(be: &B, x: &Tensor<B>, y: &mut Tensor<B>) -> Result<()> {
    const OP: &str = "global_avg_pool_forward";
    let [n, _, _, c] = expect_rank4(OP, "x", x)?;
    expect_nonempty(OP, "x", x)?;
    expect_shape(OP, "y", y, &[n, c])?;
    expect_activations(be, OP, &[("x", x)])?;
    be.global_avg_pool_forward(x, y)
}

pub fn global_avg_pool_backward<B: Backend>(
    be: &B,
    dy: &Tensor<B>,
    dx: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "global_avg_pool_backward";
    let [n, _, _, c] = expect_rank4(OP, "dx", dx)?;
    expect_nonempty(OP, "dx", dx)?;
    expect_shape(OP, "dy", dy, &[n, c])?;
    expect_masters(be, OP, &[("dy", dy)])?;
    be.global_avg_pool_backward(dy, dx)
}

/// The output shape of a max pool of `x: [N, H, W, C]`.
pub fn max_pool_output_shape(
    op: &'static str,
    x: &[usize; 4],
    geom: PoolGeometry,
) -> Result<[usize; 4]> {
    if geom.stride == 0 || geom.window == 0 || geom.pad >= geom.window {
        return Err(invalid(
            op,
            format!(
                "window {}, stride {}, pad {} is not a valid pool",
                geom.window, geom.stride, geom.pad
            ),
        ));
    }
    let [n, h, w, c] = *x;
    match (geom.output_extent(h), geom.output_extent(w)) {
        (Some(p), Some(q)) if n * c > 0 => Ok([n, p, q, c]),
        _ => Err(Error::Shape {
            op,
            tensor: "x",
            actual: x.to_vec(),
            expected: format!("a non-empty input that fits a {0}x{0} window", geom.window),
        }),
    }
}

/// The checks of a max pool forward (plain or through a BN): returns x's shape.
fn check_max_pool_forward<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    y: &Tensor<B>,
    geom: PoolGeometry,
) -> Result<[usize; 4]> {
    let xs = expect_rank4(op, "x", x)?;
    expect_shape(op, "y", y, &max_pool_output_shape(op, &xs, geom)?)?;
    expect_activations(be, op, &[("x", x)])?;
    Ok(xs)
}

/// The checks of a max pool backward (plain or through a BN): returns x's shape.
fn check_max_pool_backward<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    dy: &Tensor<B>,
    dx: &Tensor<B>,
    geom: PoolGeometry,
) -> Result<[usize; 4]> {
    let xs = expect_rank4(op, "x", x)?;
    expect_shape(op, "dy", dy, &max_pool_output_shape(op, &xs, geom)?)?;
    expect_shape(op, "dx", dx, x.dims())?;
    expect_activations(be, op, &[("x", x), ("dy", dy)])?;
    Ok(xs)
}

pub fn max_pool_forward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    y: &mut Tensor<B>,
    geom: PoolGeometry,
) -> Result<()> {
    check_max_pool_forward(be, "max_pool_forward", x, y, geom)?;
    be.max_pool_forward(x, y, geom)
}

pub fn max_pool_backward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    dy: &Tensor<B>,
    dx: &mut Tensor<B>,
    geom: PoolGeometry,
) -> Result<()> {
    check_max_pool_backward(be, "max_pool_backward", x, dy, dx, geom)?;
    be.max_pool_backward(x, dy, dx, geom)
}

/// The checks of the BN-input max pools: `x`'s channels are `bn`'s, and the backend pools through a
/// batch norm.
fn expect_pool_bn_input<B: Backend>(
    be: &B,
    op: &'static str,
    xs: &[usize; 4],
    bn: &BnMap<'_, B>,
) -> Result<()> {
    expect_bn_channels(be, op, xs[3], bn.gamma, &bn.saved)?;
    if !be.max_pool_bn_input_fusion() {
        return Err(invalid(
            op,
            format!(
                "{} does not apply batch norm as max pooling reads its input: \
                 max_pool_bn_input_fusion is false",
                be.name()
            ),
        ));
    }
    Ok(())
}

/// `max_pool_forward(relu(BN(x)), y)` with BN's output computed from its input `x` as the windows
/// read it (`Backend::max_pool_forward_bn_input`).
pub fn max_pool_forward_bn_input<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    bn: BnMap<'_, B>,
    y: &mut Tensor<B>,
    geom: PoolGeometry,
) -> Result<()> {
    const OP: &str = "max_pool_forward_bn_input";
    let xs = check_max_pool_forward(be, OP, x, y, geom)?;
    expect_pool_bn_input(be, OP, &xs, &bn)?;
    be.max_pool_forward_bn_input(x, bn, y, geom)
}

/// `max_pool_backward(relu(BN(x)), dy, dx)`: `dx` with respect to BN's output; with `partials`
/// (`Backend::max_pool_bn_grad_len` values), also that BN's backward partial sums
/// (`Backend::max_pool_backward_bn_input`).
pub fn max_pool_backward_bn_input<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    bn: BnMap<'_, B>,
    dy: &Tensor<B>,
    dx: &mut Tensor<B>,
    partials: Option<&mut Tensor<B>>,
    geom: PoolGeometry,
) -> Result<()> {
    const OP: &str = "max_pool_backward_bn_input";
    let xs = check_max_pool_backward(be, OP, x, dy, dx, geom)?;
    expect_pool_bn_input(be, OP, &xs, &bn)?;
    if let Some(partials) = &partials {
        let len = be.max_pool_bn_grad_len(&xs, geom);
        let missing = "batch-norm backward sums in this max pool (max_pool_bn_grad_len is None)";
        expect_partials(be, OP, "partials", partials, len, missing)?;
    }
    be.max_pool_backward_bn_input(x, bn, dy, dx, partials, geom)
}
