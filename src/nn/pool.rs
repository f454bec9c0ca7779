//! Pooling layers: global average pooling (NHWC to `[N, C]`, before the classifier) and the 3x3
//! stride-2 max pool of the ImageNet stem. The math is stated on the backend ops.

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

impl<B: Backend> Layer<B> for MaxPool2d<B> {
    fn forward(&mut self, be: &B, x: &Tensor<B>, _mode: Mode) -> Result<()> {
        if let Some(xs) = x.shape().dims4() {
            let ys = ops::max_pool_output_shape("max_pool_forward", &xs, self.geom)?;
            self.out.ensure_shape(be, &ys)?;
        }
        ops::max_pool_forward(be, x, &mut self.out, self.geom)
    }

    fn output(&self) -> &Tensor<B> {
        &self.out
    }

    fn backward(&mut self, be: &B, x: &Tensor<B>, dy: &Tensor<B>) -> Result<()> {
        self.dx.ensure_shape(be, x.dims())?;
        ops::max_pool_backward(be, x, dy, &mut self.dx, self.geom)
    }

    fn input_grad(&self) -> &Tensor<B> {
        &self.dx
    }
}
