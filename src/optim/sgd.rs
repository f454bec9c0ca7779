//! SGD exactly as PyTorch defines it, on every parameter (the paper decays all of them):
//! `v = momentum v + (g + weight_decay w)`, `w -= lr v`, with `v` starting at zero.

use crate::backend::{Backend, SgdConfig};
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

    /// Applies one update to every parameter of `net` with its current gradients.
    pub fn step(&mut self, be: &B, net: &mut Network<B>) -> Result<()> {
        let mut index = 0;
        let mut outcome = Ok(());
        let cfg = self.config;
        let velocity = &mut self.velocity;
        net.visit_params(&mut |p| {
            if outcome.is_err() {
                return;
            }
            outcome = (|| {
                if velocity.len() == index {
                    velocity.push(Tensor::zeros(be, p.value.shape().clone())?);
                }
                ops::sgd_update(be, &mut p.value, &p.grad, &mut velocity[index], cfg)
            })();
            index += 1;
        });
        outcome
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
