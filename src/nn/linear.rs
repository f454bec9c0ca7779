//! The fully connected classifier: `y = x wᵀ + b`, with `w: [out, in]` as PyTorch stores it.
//! Backward: `dx = dy w`, `dw = dyᵀ x`, `db = sum_n dy`.

use rand::Rng;

use super::{init, Layer, Mode, Param};
use crate::backend::{Backend, Element};
use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

pub struct Linear<B: Backend> {
    pub weight: Param<B>,
    pub bias: Param<B>,
    out: Tensor<B>,
    dx: Tensor<B>,
    input_grad_needed: bool,
}

impl<B: Backend> Linear<B> {
    /// PyTorch's default initialisation: weight and bias uniform in `±1/sqrt(in)`.
    pub fn new(
        be: &B,
        name: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let to_elems = |v: Vec<f64>| v.into_iter().map(B::Elem::of).collect::<Vec<_>>();
        let w = to_elems(init::pytorch_linear_default(
            rng,
            out_features * in_features,
            in_features,
        ));
        let b = to_elems(init::pytorch_linear_default(rng, out_features, in_features));
        Ok(Linear {
            weight: Param::new(
                be,
                format!("{name}.weight"),
                Tensor::from_slice(be, [out_features, in_features], &w)?,
            )?,
            bias: Param::new(
                be,
                format!("{name}.bias"),
                Tensor::from_slice(be, [out_features], &b)?,
            )?,
            out: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
            input_grad_needed: true,
        })
    }
}

impl<B: Backend> Layer<B> for Linear<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, _mode: Mode) -> Result<()> {
        let n = x.dims().first().copied().unwrap_or(0);
        self.out.ensure_shape(be, &[n, self.bias.value.numel()])?;
        ops::linear_forward(be, x, &self.weight.value, &self.bias.value, &mut self.out)
    }

    fn output(&self) -> &Tensor<B> {
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        let dx = if self.input_grad_needed {
            self.dx.ensure_shape(be, x.dims())?;
            Some(&mut self.dx)
        } else {
            None
        };
        ops::linear_backward(
            be,
            x,
            &self.weight.value,
            dy,
            dx,
            &mut self.weight.grad,
            &mut self.bias.grad,
        )
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad_needed = needed;
    }

    fn visit_params<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.weight);
        f(&mut self.bias);
    }
}
