//! Pooling layers: global average pooling (NHWC to `[N, C]`, before the classifier) and the 3x3
//! stride-2 max pool of the ImageNet stem. The math is stated on the backend ops.

use super::conv_bn::{BnGradTarget, UnitInput};
use super::{Layer, Mode};
use crate::backend::{Backend, PoolGeometry};
use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

pub struct GlobalAvgPool<B: Backend> {
    out: Tensor<B>,
    dx: Tensor<B>,
}

impl<B: Backend> GlobalAvgPool<B> {
    pub fn new(be: &B) -> Result<Self> {
        Ok(GlobalAvgPool {
            out: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
        })
    }
}

impl<B: Backend> Layer<B> for GlobalAvgPool<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, _mode: Mode) -> Result<()> {
        let d = x.dims();
        if d.len() == 4 {
            self.out.ensure_shape(be, &[d[0], d[3]])?;
        }
        ops::global_avg_pool_forward(be, x, &mut self.out)
    }

    fn output(&self) -> &Tensor<B> {
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.dx.ensure_shape(be, x.dims())?;
        ops::global_avg_pool_backward(be, dy, &mut self.dx)
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }
}

pub struct MaxPool2d<B: Backend> {
    pub geom: PoolGeometry,
    out: Tensor<B>,
    dx: Tensor<B>,
}

impl<B: Backend> MaxPool2d<B> {
    pub fn new(be: &B, geom: PoolGeometry) -> Result<Self> {
        Ok(MaxPool2d {
            geom,
            out: Tensor::empty(be)?,
            dx: Tensor::empty(be)?,
        })
    }
}

impl<B: Backend> MaxPool2d<B> {
    /// Pools `input`: a tensor, or a BN's output with its ReLU left unstored, computed at each tap
    /// from that BN's input (`ops::max_pool_forward_bn_input`).
    pub fn forward_from(&mut self, be: &B, input: UnitInput<'_, B>) -> Result<()> {
        let x = match input {
            UnitInput::Tensor(x) | UnitInput::Unstored { x, .. } => x,
        };
        if let Some(xs) = x.shape().dims4() {
            let ys = ops::max_pool_output_shape("max_pool_forward", &xs, self.geom)?;
            self.out.ensure_shape(be, &ys)?;
        }
        match input {
            UnitInput::Tensor(x) => ops::max_pool_forward(be, x, &mut self.out, self.geom),
            UnitInput::Unstored { x, bn } => {
                let map = bn.relu_map("max_pool_forward_bn_input")?;
                ops::max_pool_forward_bn_input(be, x, map, &mut self.out, self.geom)
            }
        }
    }

    /// The backward of [`Self::forward_from`] with the same `input`: the input gradient is with
    /// respect to the pooled values (the BN's output, when it was left unstored).
    pub fn backward_from(&mut self, be: &B, input: UnitInput<'_, B>, dy: &Tensor<B>) -> Result<()> {
        self.dx.ensure_shape(be, input.dims())?;
        match input {
            UnitInput::Tensor(x) => ops::max_pool_backward(be, x, dy, &mut self.dx, self.geom),
            UnitInput::Unstored { x, bn } => {
                let map = bn.relu_map("max_pool_backward_bn_input")?;
                ops::max_pool_backward_bn_input(be, x, map, dy, &mut self.dx, None, self.geom)
            }
        }
    }

    /// [`Self::backward_from`] for the unstored output of the BN `target` names, where the backend
    /// can take that BN's backward sums from the same pass (`Backend::max_pool_bn_grad_len`): they go
    /// to the target's partials and set its flag, so that BN's backward reads this pool's input
    /// gradient once, in its data pass, as after a convolution's backward-data (`BnGradTarget`).
    /// Returns whether it could; when not, nothing ran.
    pub fn backward_with_bn_grad(
        &mut self,
        be: &B,
        target: BnGradTarget<'_, B>,
        dy: &Tensor<B>,
    ) -> Result<bool> {
        if !target.output_unstored || !target.bn.trained() {
            return Ok(false);
        }
        let Some(xs) = target.x.shape().dims4() else {
            return Ok(false);
        };
        let Some(len) = be.max_pool_bn_grad_len(&xs, self.geom) else {
            return Ok(false);
        };
        self.dx.ensure_shape(be, &xs)?;
        target.partials.ensure_shape(be, &[len])?;
        let map = target.bn.relu_map("max_pool_backward_bn_input")?;
        let partials = Some(&mut *target.partials);
        ops::max_pool_backward_bn_input(be, target.x, map, dy, &mut self.dx, partials, self.geom)?;
        *target.ready = true;
        Ok(true)
    }
}

impl<B: Backend> Layer<B> for MaxPool2d<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, _mode: Mode) -> Result<()> {
        self.forward_from(be, UnitInput::Tensor(x))
    }

    fn output(&self) -> &Tensor<B> {
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.backward_from(be, UnitInput::Tensor(x), dy)
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }
}
