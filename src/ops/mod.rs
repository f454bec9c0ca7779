//! Checked entry points to the backend ops.
//!
//! Every layer calls these rather than the raw [`Backend`] methods: each checks the shapes and
//! arguments of its tensors once for all backends and returns an error that names the op and the tensor
//! at fault, so a bad call can never reach a kernel and touch memory outside a buffer.

use crate::backend::{Backend, BatchNormSaved, DType, Element};
use crate::error::{invalid, Error, Result};
use crate::tensor::Tensor;

mod batch_norm;
mod conv;
mod input;
mod linear;
mod loss;
mod pool;
mod residual;
mod sgd;

pub use batch_norm::*;
pub use conv::*;
pub use input::*;
pub use linear::*;
pub use loss::*;
pub use pool::*;
pub use residual::*;
pub use sgd::*;

fn expect_shape<B: Backend>(
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
    expected: &[usize],
) -> Result<()> {
    if t.dims() != expected {
        return Err(Error::Shape {
            op,
            tensor: name,
            actual: t.dims().to_vec(),
            expected: format!("{expected:?}"),
        });
    }
    Ok(())
}

/// Element types, as the backend stores them (see [`DType`]): an op reads activations and their
/// gradients in the backend's activation type, and parameters, their gradients, statistics and the
/// classifier's head in `Elem` (f32). Outputs need no check: the op writes them in its own type.
fn expect_dtype<B: Backend>(
    be: &B,
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
    allowed: &[DType],
) -> Result<()> {
    let actual = be.dtype(t.buf());
    if allowed.contains(&actual) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
    Err(Error::ElementType {
        op,
        tensor: name,
        actual,
        expected: names.join(" or "),
    })
}

/// Each named tensor holds an activation (or an activation's gradient).
fn expect_activations<B: Backend>(
    be: &B,
    op: &'static str,
    tensors: &[(&'static str, &Tensor<B>)],
) -> Result<()> {
    let act = be.activation_dtype();
    for &(name, t) in tensors {
        expect_dtype(be, op, name, t, &[act])?;
    }
    Ok(())
}

/// Each named tensor holds `Elem` values: a parameter, a statistic, or the classifier's head.
fn expect_masters<B: Backend>(
    be: &B,
    op: &'static str,
    tensors: &[(&'static str, &Tensor<B>)],
) -> Result<()> {
    for &(name, t) in tensors {
        expect_dtype(be, op, name, t, &[B::Elem::DTYPE])?;
    }
    Ok(())
}

/// A convolution's input: an activation, or the network's input image, which arrives in `Elem`.
fn expect_conv_input<B: Backend>(
    be: &B,
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
) -> Result<()> {
    expect_dtype(be, op, name, t, &[be.activation_dtype(), B::Elem::DTYPE])
}

fn expect_rank4<B: Backend>(
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
) -> Result<[usize; 4]> {
    t.shape().dims4().ok_or_else(|| Error::Shape {
        op,
        tensor: name,
        actual: t.dims().to_vec(),
        expected: "rank 4 (NHWC or KRSC)".into(),
    })
}

fn expect_rank2<B: Backend>(
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
) -> Result<[usize; 2]> {
    t.shape().dims2().ok_or_else(|| Error::Shape {
        op,
        tensor: name,
        actual: t.dims().to_vec(),
        expected: "rank 2 ([N, features])".into(),
    })
}

fn expect_nonempty<B: Backend>(op: &'static str, name: &'static str, t: &Tensor<B>) -> Result<()> {
    if t.numel() == 0 {
        return Err(Error::Shape {
            op,
            tensor: name,
            actual: t.dims().to_vec(),
            expected: "a non-empty tensor".into(),
        });
    }
    Ok(())
}

/// `stats` is a buffer of batch-norm statistics partials for a convolution output of shape `y`:
/// the backend computes them in its convolutions, and `stats` has the length it asks for.
fn expect_conv_stats<B: Backend>(
    be: &B,
    op: &'static str,
    stats: &Tensor<B>,
    y: &[usize; 4],
) -> Result<()> {
    let len = be.conv2d_stats_len(y);
    let missing = "batch-norm statistics in its convolutions (conv2d_stats_len is None)";
    expect_partials(be, op, "stats", stats, len, missing)
}

/// A buffer of partials the backend sized as `len` (`None`: it does not compute `what`).
fn expect_partials<B: Backend>(
    be: &B,
    op: &'static str,
    name: &'static str,
    t: &Tensor<B>,
    len: Option<usize>,
    what: &str,
) -> Result<()> {
    match len {
        Some(len) => expect_shape(op, name, t, &[len]),
        None => Err(invalid(
            op,
            format!("{} does not compute {what}", be.name()),
        )),
    }
}

/// The per-channel tensors of a training batch norm's backward: f32 masters of `c` values.
fn expect_bn_channels<B: Backend>(
    be: &B,
    op: &'static str,
    c: usize,
    gamma: &Tensor<B>,
    saved: &BatchNormSaved<'_, B>,
) -> Result<()> {
    let per_channel = [
        ("gamma", gamma),
        ("save_mean", saved.mean),
        ("save_inv_std", saved.inv_std),
        ("beta", saved.beta),
    ];
    for (name, t) in per_channel {
        expect_shape(op, name, t, &[c])?;
    }
    expect_masters(be, op, &per_channel)
}

pub fn copy<B: Backend>(be: &B, src: &Tensor<B>, dst: &mut Tensor<B>) -> Result<()> {
    expect_shape("copy", "dst", dst, src.dims())?;
    be.copy(src, dst)
}
