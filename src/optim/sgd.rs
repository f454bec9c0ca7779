//! SGD exactly as PyTorch defines it, on every parameter (the paper decays all of them):
//! `v = momentum v + (g + weight_decay w)`, `w -= lr v`, with `v` starting at zero.

use crate::backend::{Backend, SgdConfig, SgdTensors};
use crate::error::Result;
use crate::models::Network;
use crate::ops;
use crate::tensor::Tensor;

pub struct Sgd<B: Backend> {
    pub config: SgdConfig,
    /// One momentum buffer per parameter, in the network's parameter order.
    velocity: Vec<Tensor<B>>,
}

impl<B: Backend> Sgd<B> {
    pub fn new(config: SgdConfig) -> Self {
        Sgd {
            config,
            velocity: Vec::new(),
        }
    }

    /// Applies one update to every parameter of `net` with its current gradients, all in one
    /// `sgd_update_many` (one launch on a GPU).
    pub fn step(&mut self, be: &B, net: &mut Network<B>) -> Result<()> {
        let mut params = Vec::new();
        net.visit_params(&mut |p| params.push(p));
        for p in &params[self.velocity.len().min(params.len())..] {
            self.velocity
                .push(Tensor::zeros(be, p.value.shape().clone())?);
        }
        let mut tensors: Vec<SgdTensors<'_, B>> = params
            .into_iter()
            .zip(self.velocity.iter_mut())
            .map(|(p, v)| SgdTensors {
                w: &mut p.value,
                g: &p.grad,
                v,
            })
            .collect();
        ops::sgd_update_many(be, &mut tensors, self.config)
    }

    /// The momentum buffers, in parameter order (empty before the first step).
    pub fn velocity(&self) -> &[Tensor<B>] {
        &self.velocity
    }

    /// The momentum buffers, to restore them from a checkpoint: empty (the next step starts them at
    /// zero) or one per parameter, in parameter order, shaped like it.
    pub fn velocity_mut(&mut self) -> &mut Vec<Tensor<B>> {
        &mut self.velocity
    }
}
