//! Batch norm, training and inference, forward and backward (also from a convolution's statistics
//! or backward sums, and fused with the residual add).

use super::{
    expect_activations, expect_bn_channels, expect_conv_stats, expect_masters, expect_nonempty,
    expect_rank4, expect_shape,
};
use crate::backend::{Backend, BatchNormConfig, BatchNormSaved, BnMap};
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

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
