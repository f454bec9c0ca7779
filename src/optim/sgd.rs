//! SGD exactly as PyTorch defines it, on every parameter (the paper decays all of them):
//! `v = momentum v + (g + weight_decay w)`, `w -= lr v`, with `v` starting at zero.

use crate::backend::{Backend, Element, SgdConfig, SgdTensors};
use crate::error::Result;
use crate::models::Network;
use crate::ops;
use crate::tensor::Tensor;

pub struct Sgd<B: Backend> {
    pub config: SgdConfig,
    /// One momentum buffer per parameter, in the network's parameter order.
    velocity: Vec<Tensor<B>>,
    /// The learning rate as the guarded update reads it, on the device, with the value last
    /// written there: rewritten only when `config.lr` changes.
    lr_on_device: Option<(f64, Tensor<B>)>,
}

impl<B: Backend> Sgd<B> {
    pub fn new(config: SgdConfig) -> Self {
        Sgd {
            config,
            velocity: Vec::new(),
            lr_on_device: None,
        }
    }

    /// Applies one update to every parameter of `net` with its current gradients, all in one
    /// `sgd_update_many` (one launch on a GPU).
    pub fn step(&mut self, be: &B, net: &mut Network<B>) -> Result<()> {
        let config = self.config;
        self.with_tensors(be, net, |tensors| ops::sgd_update_many(be, tensors, config))
    }

    /// Writes `config.lr` to the device copy the guarded step reads, if it changed (the first
    /// call allocates it). [`Sgd::step_guarded`] does this itself; a caller that replays a
    /// captured step calls it before each replay, outside the captured work.
    pub fn prepare_lr(&mut self, be: &B) -> Result<()> {
        let lr = self.config.lr;
        match &mut self.lr_on_device {
            Some((written, _)) if *written == lr => {}
            Some((written, t)) => {
                t.copy_from_slice(be, &[B::Elem::of(lr)])?;
                *written = lr;
            }
            None => {
                self.lr_on_device = Some((lr, Tensor::from_slice(be, [1], &[B::Elem::of(lr)])?));
            }
        }
        Ok(())
    }

    /// [`Sgd::step`] decided on the device: the rate is read from device memory (written by
    /// [`Sgd::prepare_lr`]) and the update does nothing if `guard` has recorded a non-finite loss
    /// since it was last read. Needs no host synchronisation; bit-identical to `step` otherwise.
    pub fn step_guarded(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        guard: &B::LossRecord,
    ) -> Result<()> {
        self.prepare_lr(be)?;
        let config = self.config;
        let (_, lr) = self.lr_on_device.take().expect("prepared above");
        let outcome = self.with_tensors(be, net, |tensors| {
            ops::sgd_update_many_guarded(be, tensors, config, &lr, guard)
        });
        self.lr_on_device = Some((config.lr, lr));
        outcome
    }

    /// `f` on every parameter's value, gradient and momentum (the momentum made at zero on the
    /// first call).
    fn with_tensors(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        f: impl FnOnce(&mut [SgdTensors<'_, B>]) -> Result<()>,
    ) -> Result<()> {
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
        f(&mut tensors)
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
