//! The SGD update (one tensor, or many in one launch, optionally guarded by the loss record).

use super::{expect_masters, expect_shape};
use crate::backend::{Backend, SgdConfig, SgdTensors};
use crate::error::{invalid, Result};
use crate::tensor::Tensor;

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
