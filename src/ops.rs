//! Checked entry points to the backend ops.
//!
//! Every layer calls these rather than the raw [`Backend`] methods: each checks the shapes and
//! arguments of its tensors once for all backends and returns an error that names the op and the tensor
//! at fault, so a bad call can never reach a kernel and touch memory outside a buffer.

use crate::backend::{
    Backend, BatchNormConfig, BatchNormSaved, BnGradMask, BnMap, Conv2dGeometry, DType, Element,
    LossStats, PoolGeometry, SgdConfig, SgdTensors,
};
use crate::data::device_images::{BatchDraws, DeviceImages};
use crate::error::{invalid, Error, Result};
use crate::tensor::Tensor;

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

fn check_bn_config(op: &'static str, cfg: &BatchNormConfig) -> Result<()> {
    if cfg.eps.is_nan() || cfg.eps <= 0.0 || !(0.0..=1.0).contains(&cfg.momentum) {
        return Err(invalid(
            op,
            format!(
                "eps must be > 0 and momentum in [0, 1], got eps {} momentum {}",
                cfg.eps, cfg.momentum
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_train<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    gamma: &Tensor<B>,
    beta: &Tensor<B>,
    y: &mut Tensor<B>,
    save_mean: &mut Tensor<B>,
    save_inv_std: &mut Tensor<B>,
    running_mean: &mut Tensor<B>,
    running_var: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_forward_train";
    check_bn_config(OP, &cfg)?;
    let per_channel = [
        gamma,
        beta,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
    ];
    check_bn_train_shapes(be, OP, x, per_channel)?;
    expect_shape(OP, "y", y, x.dims())?;
    be.batch_norm_forward_train(
        x,
        gamma,
        beta,
        y,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
        cfg,
    )
}

/// The shapes training-mode batch norm needs: `x` NHWC with more than one value per channel, and
/// gamma, beta, save_mean, save_inv_std, running_mean and running_var of `C` values each.
fn check_bn_train_shapes<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    per_channel: [&Tensor<B>; 6],
) -> Result<()> {
    let [n, h, w, c] = expect_rank4(op, "x", x)?;
    expect_nonempty(op, "x", x)?;
    if n * h * w < 2 {
        return Err(invalid(
            op,
            "training-mode batch norm needs more than one value per channel",
        ));
    }
    let names = [
        "gamma",
        "beta",
        "save_mean",
        "save_inv_std",
        "running_mean",
        "running_var",
    ];
    for (name, t) in names.into_iter().zip(per_channel) {
        expect_shape(op, name, t, &[c])?;
    }
    expect_activations(be, op, &[("x", x)])?;
    // save_mean and save_inv_std are outputs; the running statistics are read too.
    let read = [0, 1, 4, 5].map(|i| (names[i], per_channel[i]));
    expect_masters(be, op, &read)
}

/// `out = batch_norm_forward_train(x) + residual` (then ReLU when `cfg.relu`); see the backend op.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_forward_train<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    gamma: &Tensor<B>,
    beta: &Tensor<B>,
    residual: &Tensor<B>,
    scratch: &mut Tensor<B>,
    out: &mut Tensor<B>,
    save_mean: &mut Tensor<B>,
    save_inv_std: &mut Tensor<B>,
    running_mean: &mut Tensor<B>,
    running_var: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_add_forward_train";
    check_bn_config(OP, &cfg)?;
    let per_channel = [
        gamma,
        beta,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
    ];
    check_bn_train_shapes(be, OP, x, per_channel)?;
    for (name, t) in [("residual", residual), ("scratch", scratch), ("out", out)] {
        expect_shape(OP, name, t, x.dims())?;
    }
    expect_activations(be, OP, &[("residual", residual)])?;
    be.batch_norm_add_forward_train(
        x,
        gamma,
        beta,
        residual,
        scratch,
        out,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
        cfg,
    )
}

/// Training-mode batch norm (with `residual`: `+ residual`, then ReLU when `cfg.relu`) with the
/// statistics partials that `conv2d_forward_with_stats` wrote with `x`; see the backend op.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_train_from_stats<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    stats: &Tensor<B>,
    gamma: &Tensor<B>,
    beta: &Tensor<B>,
    residual: Option<&Tensor<B>>,
    out: &mut Tensor<B>,
    save_mean: &mut Tensor<B>,
    save_inv_std: &mut Tensor<B>,
    running_mean: &mut Tensor<B>,
    running_var: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_forward_train_from_stats";
    let per_channel = [
        gamma,
        beta,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
    ];
    let named = residual.map(|r| ("residual", r));
    check_bn_train_from_stats(be, OP, &cfg, x, stats, per_channel, named, out)?;
    be.batch_norm_forward_train_from_stats(
        x,
        stats,
        gamma,
        beta,
        residual,
        out,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
        cfg,
    )
}

/// `batch_norm_forward_train_from_stats` without its output: the statistics and running averages
/// only; see `Backend::batch_norm_statistics_from_stats`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_statistics_from_stats<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    stats: &Tensor<B>,
    save_mean: &mut Tensor<B>,
    save_inv_std: &mut Tensor<B>,
    running_mean: &mut Tensor<B>,
    running_var: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_statistics_from_stats";
    check_bn_config(OP, &cfg)?;
    let xs = expect_rank4(OP, "x", x)?;
    let per_channel = [
        ("save_mean", &*save_mean),
        ("save_inv_std", &*save_inv_std),
        ("running_mean", &*running_mean),
        ("running_var", &*running_var),
    ];
    for (name, t) in per_channel {
        expect_shape(OP, name, t, &[xs[3]])?;
    }
    expect_masters(be, OP, &per_channel)?;
    expect_activations(be, OP, &[("x", x)])?;
    expect_conv_stats(be, OP, stats, &xs)?;
    expect_masters(be, OP, &[("stats", stats)])?;
    be.batch_norm_statistics_from_stats(
        x,
        stats,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
        cfg,
    )
}

/// The checks of a training-mode batch norm of `x` that takes its statistics from a convolution's
/// `stats` and writes `out`, with the tensor summed in (named) when given; returns x's shape.
#[allow(clippy::too_many_arguments)]
fn check_bn_train_from_stats<B: Backend>(
    be: &B,
    op: &'static str,
    cfg: &BatchNormConfig,
    x: &Tensor<B>,
    stats: &Tensor<B>,
    per_channel: [&Tensor<B>; 6],
    residual: Option<(&'static str, &Tensor<B>)>,
    out: &Tensor<B>,
) -> Result<[usize; 4]> {
    check_bn_config(op, cfg)?;
    check_bn_train_shapes(be, op, x, per_channel)?;
    expect_shape(op, "out", out, x.dims())?;
    if let Some((name, residual)) = residual {
        expect_shape(op, name, residual, x.dims())?;
        expect_activations(be, op, &[(name, residual)])?;
    }
    let xs = expect_rank4(op, "x", x)?;
    expect_conv_stats(be, op, stats, &xs)?;
    expect_masters(be, op, &[("stats", stats)])?;
    Ok(xs)
}

/// `batch_norm_forward_train_from_stats` with the residual `BN_r(r)`, the batch norm `r_bn` applied
/// to `r` as it is read; see `Backend::batch_norm_add_bn_forward_train_from_stats`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_bn_forward_train_from_stats<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    stats: &Tensor<B>,
    gamma: &Tensor<B>,
    beta: &Tensor<B>,
    r: &Tensor<B>,
    r_bn: BnMap<'_, B>,
    out: &mut Tensor<B>,
    save_mean: &mut Tensor<B>,
    save_inv_std: &mut Tensor<B>,
    running_mean: &mut Tensor<B>,
    running_var: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_add_bn_forward_train_from_stats";
    let per_channel = [
        gamma,
        beta,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
    ];
    let xs = check_bn_train_from_stats(be, OP, &cfg, x, stats, per_channel, Some(("r", r)), out)?;
    expect_bn_channels(be, OP, xs[3], r_bn.gamma, &r_bn.saved)?;
    if !be.batch_norm_residual_bn_fusion() {
        return Err(invalid(
            OP,
            format!(
                "{} does not apply a residual's batch norm as it reads it \
                 (batch_norm_residual_bn_fusion is false)",
                be.name()
            ),
        ));
    }
    be.batch_norm_add_bn_forward_train_from_stats(
        x,
        stats,
        gamma,
        beta,
        r,
        r_bn,
        out,
        save_mean,
        save_inv_std,
        running_mean,
        running_var,
        cfg,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_infer<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    gamma: &Tensor<B>,
    beta: &Tensor<B>,
    running_mean: &Tensor<B>,
    running_var: &Tensor<B>,
    y: &mut Tensor<B>,
    cfg: BatchNormConfig,
) -> Result<()> {
    const OP: &str = "batch_norm_forward_infer";
    check_bn_config(OP, &cfg)?;
    let [_, _, _, c] = expect_rank4(OP, "x", x)?;
    expect_shape(OP, "y", y, x.dims())?;
    for (name, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ] {
        expect_shape(OP, name, t, &[c])?;
    }
    expect_activations(be, OP, &[("x", x)])?;
    expect_masters(
        be,
        OP,
        &[
            ("gamma", gamma),
            ("beta", beta),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
    )?;
    be.batch_norm_forward_infer(x, gamma, beta, running_mean, running_var, y, cfg)
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    y: &Tensor<B>,
    dy: &Tensor<B>,
    gamma: &Tensor<B>,
    saved: BatchNormSaved<'_, B>,
    dx: &mut Tensor<B>,
    dgamma: &mut Tensor<B>,
    dbeta: &mut Tensor<B>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "batch_norm_backward";
    check_batch_norm_backward(
        be,
        OP,
        x,
        &[("y", y), ("dy", dy)],
        gamma,
        &saved,
        dx,
        dgamma,
        dbeta,
    )?;
    if relu {
        // `y` is the forward's output, the ReLU's mask for a backend that reads it (the CPU and GPU
        // backends recompute it from `x` and `saved` instead); without a ReLU it is meaningless (a
        // fused forward may not even have written it).
        expect_activations(be, OP, &[("y", y)])?;
    }
    be.batch_norm_backward(x, y, dy, gamma, saved, dx, dgamma, dbeta, relu)
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

/// `batch_norm_backward` with its sums from the `partials` that
/// `conv2d_backward_data_with_bn_grad` wrote with `dy`; see the backend op.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_from_partials<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    dy: &Tensor<B>,
    partials: &Tensor<B>,
    gamma: &Tensor<B>,
    saved: BatchNormSaved<'_, B>,
    dx: &mut Tensor<B>,
    dgamma: &mut Tensor<B>,
    dbeta: &mut Tensor<B>,
    relu: bool,
) -> Result<()> {
    const OP: &str = "batch_norm_backward_from_partials";
    check_batch_norm_backward(be, OP, x, &[("dy", dy)], gamma, &saved, dx, dgamma, dbeta)?;
    // Two sums per partition and channel; the partition count is the convolution's business.
    let c = gamma.numel();
    if partials.dims().len() != 1 || partials.numel() == 0 || partials.numel() % (2 * c) != 0 {
        return Err(invalid(
            OP,
            format!(
                "partials has shape {:?}; expected a positive multiple of 2 x {c} values",
                partials.dims()
            ),
        ));
    }
    expect_masters(be, OP, &[("partials", partials)])?;
    be.batch_norm_backward_from_partials(x, dy, partials, gamma, saved, dx, dgamma, dbeta, relu)
}

/// Backward of `out = relu(BN(x) + residual)` (see `Backend::batch_norm_add_relu_backward`): `dsum`
/// receives the gradient of the sum, `dx`, `dgamma` and `dbeta` BN's.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_add_relu_backward<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    out: &Tensor<B>,
    dout: &Tensor<B>,
    gamma: &Tensor<B>,
    saved: BatchNormSaved<'_, B>,
    dx: &mut Tensor<B>,
    dsum: &mut Tensor<B>,
    dgamma: &mut Tensor<B>,
    dbeta: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "batch_norm_add_relu_backward";
    let inputs = [("out", out), ("dout", dout)];
    check_batch_norm_backward(be, OP, x, &inputs, gamma, &saved, dx, dgamma, dbeta)?;
    expect_activations(be, OP, &[("out", out)])?;
    expect_shape(OP, "dsum", dsum, x.dims())?;
    be.batch_norm_add_relu_backward(x, out, dout, gamma, saved, dx, dsum, dgamma, dbeta)
}

/// The checks both batch-norm backward ops share: `x` and `inputs` (the same shape as `x`) and `dx`
/// activations of one shape, the per-channel tensors f32 masters of `x`'s channel count. The last
/// of `inputs` is the incoming gradient, always read.
#[allow(clippy::too_many_arguments)]
fn check_batch_norm_backward<B: Backend>(
    be: &B,
    op: &'static str,
    x: &Tensor<B>,
    inputs: &[(&'static str, &Tensor<B>)],
    gamma: &Tensor<B>,
    saved: &BatchNormSaved<'_, B>,
    dx: &Tensor<B>,
    dgamma: &Tensor<B>,
    dbeta: &Tensor<B>,
) -> Result<()> {
    let [_, _, _, c] = expect_rank4(op, "x", x)?;
    expect_nonempty(op, "x", x)?;
    for &(name, t) in inputs {
        expect_shape(op, name, t, x.dims())?;
    }
    expect_shape(op, "dx", dx, x.dims())?;
    expect_shape(op, "dgamma", dgamma, &[c])?;
    expect_shape(op, "dbeta", dbeta, &[c])?;
    let gradient = inputs.last().expect("the incoming gradient");
    expect_activations(be, op, &[("x", x), *gradient])?;
    expect_bn_channels(be, op, c, gamma, saved)
}

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

/// `max_pool_backward(relu(BN(x)), dy, dx)`: `dx` with respect to BN's output
/// (`Backend::max_pool_backward_bn_input`).
pub fn max_pool_backward_bn_input<B: Backend>(
    be: &B,
    x: &Tensor<B>,
    bn: BnMap<'_, B>,
    dy: &Tensor<B>,
    dx: &mut Tensor<B>,
    geom: PoolGeometry,
) -> Result<()> {
    const OP: &str = "max_pool_backward_bn_input";
    let xs = check_max_pool_backward(be, OP, x, dy, dx, geom)?;
    expect_pool_bn_input(be, OP, &xs, &bn)?;
    be.max_pool_backward_bn_input(x, bn, dy, dx, geom)
}

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

/// Checks `labels` against `classes` and writes them into `dst` (`[labels.len()]`) as the class
/// indices [`Backend::softmax_cross_entropy`] reads. A plain upload: no host synchronisation.
pub fn upload_labels<B: Backend>(
    be: &B,
    labels: &[u32],
    classes: usize,
    dst: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "upload_labels";
    expect_shape(OP, "labels", dst, &[labels.len()])?;
    check_labels(OP, labels, classes)?;
    let values: Vec<B::Elem> = labels.iter().map(|&l| B::Elem::of(f64::from(l))).collect();
    dst.copy_from_slice(be, &values)
}

/// A batch built on the device from stored images: see [`Backend::image_batch`]. `x` is
/// `[B, H, W, 3]` with `B` the draws' batch and `H x W` the images' size, `mean` `[H, W, 3]`,
/// `labels` `[B]`; the draws were checked when they were filled.
pub fn image_batch<B: Backend>(
    be: &B,
    images: &DeviceImages<B>,
    draws: &BatchDraws<B>,
    mean: &Tensor<B>,
    x: &mut Tensor<B>,
    labels: &mut Tensor<B>,
) -> Result<()> {
    const OP: &str = "image_batch";
    let (b, h, w) = (draws.batch(), images.height, images.width);
    expect_shape(OP, "x", x, &[b, h, w, 3])?;
    expect_shape(OP, "mean", mean, &[h, w, 3])?;
    expect_shape(OP, "labels", labels, &[b])?;
    expect_masters(be, OP, &[("draws", &draws.table), ("mean", mean)])?;
    be.image_batch(&images.store, images.len(), &draws.table, mean, x, labels)
}

fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l as usize >= classes) {
        Some(bad) => Err(invalid(
            op,
            format!("label {bad} is out of range for {classes} classes"),
        )),
        None => Ok(()),
    }
}

/// The loss on the device: see [`Backend::softmax_cross_entropy`]. `labels` is `[N]`, from
/// [`upload_labels`].
pub fn softmax_cross_entropy_recorded<B: Backend>(
    be: &B,
    logits: &Tensor<B>,
    labels: &Tensor<B>,
    dlogits: &mut Tensor<B>,
    record: &mut B::LossRecord,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    let [n, _] = expect_rank2(OP, "logits", logits)?;
    expect_nonempty(OP, "logits", logits)?;
    if labels.dims() != [n] {
        return Err(invalid(
            OP,
            format!("labels {:?} for a batch of {n}", labels.dims()),
        ));
    }
    expect_shape(OP, "dlogits", dlogits, logits.dims())?;
    expect_masters(be, OP, &[("logits", logits), ("labels", labels)])?;
    be.softmax_cross_entropy(logits, labels, dlogits, record)
}

/// Mean softmax cross-entropy of `logits` against host `labels`, read back at once (one host
/// synchronisation): uploads the labels and runs the device op on a record of its own. For tests
/// and one-off uses; a training step uses [`softmax_cross_entropy_recorded`].
pub fn softmax_cross_entropy<B: Backend>(
    be: &B,
    logits: &Tensor<B>,
    labels: &[u32],
    dlogits: &mut Tensor<B>,
) -> Result<LossStats> {
    const OP: &str = "softmax_cross_entropy";
    let [n, classes] = expect_rank2(OP, "logits", logits)?;
    expect_nonempty(OP, "logits", logits)?;
    if labels.len() != n {
        return Err(invalid(
            OP,
            format!("{} labels for a batch of {n}", labels.len()),
        ));
    }
    check_labels(OP, labels, classes)?;
    expect_shape(OP, "dlogits", dlogits, logits.dims())?;
    let mut on_device = Tensor::zeros(be, [n])?;
    upload_labels(be, labels, classes, &mut on_device)?;
    let mut record = be.loss_record(1)?;
    softmax_cross_entropy_recorded(be, logits, &on_device, dlogits, &mut record)?;
    read_loss_stats(be, &mut record)
}

/// The one step `record` holds, read back (a host synchronisation).
pub fn read_loss_stats<B: Backend>(be: &B, record: &mut B::LossRecord) -> Result<LossStats> {
    let read = be.read_loss_record(record)?;
    match read.steps.as_slice() {
        [one] => Ok(*one),
        steps => Err(invalid(
            "read_loss_stats",
            format!("the record holds {} steps, not one", steps.len()),
        )),
    }
}

pub fn sgd_update<B: Backend>(
    be: &B,
    w: &mut Tensor<B>,
    g: &Tensor<B>,
    v: &mut Tensor<B>,
    cfg: SgdConfig,
) -> Result<()> {
    const OP: &str = "sgd_update";
    expect_shape(OP, "g", g, w.dims())?;
    expect_shape(OP, "v", v, w.dims())?;
    if !cfg.lr.is_finite() || !cfg.momentum.is_finite() || !cfg.weight_decay.is_finite() {
        return Err(invalid(
            OP,
            format!("non-finite hyper-parameter in {cfg:?}"),
        ));
    }
    expect_masters(be, OP, &[("w", w), ("g", g), ("v", v)])?;
    be.sgd_update(w, g, v, cfg)
}

/// Every parameter's `g` and `v` shaped as its `w`, and finite hyper-parameters.
fn check_sgd_params<B: Backend>(
    op: &'static str,
    params: &[SgdTensors<'_, B>],
    cfg: SgdConfig,
) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        if p.g.dims() != p.w.dims() || p.v.dims() != p.w.dims() {
            return Err(invalid(
                op,
                format!(
                    "parameter {i}: g {:?} and v {:?} must have w's shape {:?}",
                    p.g.dims(),
                    p.v.dims(),
                    p.w.dims()
                ),
            ));
        }
    }
    if !cfg.lr.is_finite() || !cfg.momentum.is_finite() || !cfg.weight_decay.is_finite() {
        return Err(invalid(
            op,
            format!("non-finite hyper-parameter in {cfg:?}"),
        ));
    }
    Ok(())
}

/// `sgd_update` on every parameter of `params` (checked as `sgd_update` checks each).
pub fn sgd_update_many<B: Backend>(
    be: &B,
    params: &mut [SgdTensors<'_, B>],
    cfg: SgdConfig,
) -> Result<()> {
    const OP: &str = "sgd_update_many";
    check_sgd_params(OP, params, cfg)?;
    for p in params.iter() {
        expect_masters(be, OP, &[("w", &*p.w), ("g", p.g), ("v", &*p.v)])?;
    }
    be.sgd_update_many(params, cfg)
}

/// [`Backend::sgd_update_many_guarded`]: checked as `sgd_update_many` (whose `cfg.lr` is ignored),
/// with `lr` a one-element tensor.
pub fn sgd_update_many_guarded<B: Backend>(
    be: &B,
    params: &mut [SgdTensors<'_, B>],
    cfg: SgdConfig,
    lr: &Tensor<B>,
    guard: &B::LossRecord,
) -> Result<()> {
    const OP: &str = "sgd_update_many_guarded";
    expect_shape(OP, "lr", lr, &[1])?;
    expect_masters(be, OP, &[("lr", lr)])?;
    // The rate in `cfg` is not used; any finite value passes the shared checks.
    check_sgd_params(OP, params, SgdConfig { lr: 0.0, ..cfg })?;
    for p in params.iter() {
        expect_masters(be, OP, &[("w", &*p.w), ("g", p.g), ("v", &*p.v)])?;
    }
    be.sgd_update_many_guarded(params, cfg, lr, guard)
}

pub fn copy<B: Backend>(be: &B, src: &Tensor<B>, dst: &mut Tensor<B>) -> Result<()> {
    expect_shape("copy", "dst", dst, src.dims())?;
    be.copy(src, dst)
}
