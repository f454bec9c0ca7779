//! The fully connected layer.

use super::{expect_masters, expect_rank2, expect_shape};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn check_linear<B: Backend>(op: &'static str, x: &Tensor<B>, w: &Tensor<B>) -> Result<[usize; 3]> {
    let [n, fin] = expect_rank2(op, "x", x)?;
    let [fout, win] = expect_rank2(op, "w", w)?;
    if win != fin || n == 0 || fout == 0 {
        return Err(Error::Shape {
            op,
            tensor: "w",
            actual: w.dims().to_vec(),
            expected: format!("[out, {fin}] with out > 0 and a non-empty x"),
        });
    }
    Ok([n, fin, fout])
}

pub fn linear_forward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    w: &Tensor<B>,
    b: &Tensor<B>,
    y: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "linear_forward";
    let [n, _, fout] = check_linear(OP, x, w)?;
    expect_shape(OP, "b", b, &[fout])?;
    expect_shape(OP, "y", y, &[n, fout])?;
    expect_masters(be, OP, &[("x", x), ("w", w), ("b", b)])?;
    be.linear_forward(x, w, b, y)
}

pub fn linear_backward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    w: &Tensor<B>,
    dy: &Tensor<B>,
    dx: Option<&mut Tensor<B>>,
    dw: &mut Tensor<B>,
    db: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "linear_backward";
    let [n, _, fout] = check_linear(OP, x, w)?;
    expect_shape(OP, "dy", dy, &[n, fout])?;
    if let Some(dx) = dx.as_deref() {
        expect_shape(OP, "dx", dx, x.dims())?;
    }
    expect_shape(OP, "dw", dw, w.dims())?;
    expect_shape(OP, "db", db, &[fout])?;
    expect_masters(be, OP, &[("x", x), ("w", w), ("dy", dy)])?;
    be.linear_backward(x, w, dy, dx, dw, db)
}
