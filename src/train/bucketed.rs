//! A replica's training step with its gradients all-reduced in buckets while backward runs.
//!
//! Forward and the loss run as usual; the loss statistics leave first, in a small all-reduce of
//! their own. Backward then runs layer by layer from the classifier down; after each layer its
//! parameter gradients are copied into their buckets' host buffers (`dist::buckets`), and every
//! bucket that is now complete goes to the replica's communication thread (`dist::comm_thread`),
//! which sums it across the replicas while backward continues. Once backward is done the step
//! waits for every bucket and writes `sum / world_size` back into each gradient.
//!
//! The result is bit for bit the one of summing all gradients in one buffer after backward: the
//! host all-reduce adds each element across ranks in rank order whatever buffer it sits in, and the
//! division by the world size is the same one f32 operation per element, so only how the elements
//! are grouped into messages changes, never the arithmetic.

use crate::backend::{Backend, LossStats};
use crate::dist::buckets::BucketPlan;
use crate::dist::comm_thread::CommThread;
use crate::error::Result;
use crate::models::Network;
use crate::nn::Mode;
use crate::tensor::Tensor;

use super::replicas::GradientSync;

/// The host path of a replica's gradients: buckets summed by its communication thread.
pub(super) struct HostGradients {
    comm: CommThread,
    /// Bucket size in elements.
    cap: usize,
    world_size: usize,
    /// Planned at the first step, from the network.
    buckets: Option<BucketedGradients>,
}

impl HostGradients {
    pub fn new(comm: CommThread, cap: usize, world_size: usize) -> Self {
        HostGradients {
            comm,
            cap,
            world_size,
            buckets: None,
        }
    }
}

impl<B: Backend<Elem = f32>> GradientSync<B> for HostGradients {
    fn forward_backward(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        x: &Tensor<B>,
        labels: &[u32],
    ) -> Result<LossStats> {
        let cap = self.cap;
        let buckets = self
            .buckets
            .get_or_insert_with(|| BucketedGradients::new(net, cap));
        buckets.forward_backward(be, net, x, labels, &mut self.comm, self.world_size)
    }
}

/// The tag of the loss statistics' all-reduce (bucket tags are bucket numbers).
const STATS_TAG: usize = usize::MAX;

/// The buckets of one replica's network and their host buffers, reused every step.
struct BucketedGradients {
    plan: BucketPlan,
    /// Each bucket's buffer while it is home; empty while it is with the communication thread.
    buffers: Vec<Vec<f32>>,
    stats: Vec<f32>,
}

impl BucketedGradients {
    /// The buckets of `net`'s gradients, closed at `cap` elements.
    pub fn new<B: Backend<Elem = f32>>(net: &mut Network<B>, cap: usize) -> Self {
        let sizes: Vec<Vec<usize>> = (0..net.num_layers())
            .map(|i| net.layer_param_sizes(i))
            .collect();
        let plan = BucketPlan::new(&sizes, cap);
        let buffers = plan.bucket_lens().iter().map(|&n| vec![0.0; n]).collect();
        BucketedGradients {
            plan,
            buffers,
            stats: Vec::with_capacity(3),
        }
    }

    /// Forward in training mode, loss and backward on `x`, after which every gradient of `net` is
    /// the mean over the `world_size` replicas and the statistics are those of the global batch
    /// (mean loss, summed counts).
    pub fn forward_backward<B: Backend<Elem = f32>>(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        x: &Tensor<B>,
        labels: &[u32],
        comm: &mut CommThread,
        world_size: usize,
    ) -> Result<LossStats> {
        net.forward(be, x, Mode::Train)?;
        let mut stats = net.loss(be, labels)?;
        let mut flat_stats = std::mem::take(&mut self.stats);
        flat_stats.clear();
        flat_stats.extend([
            stats.loss as f32,
            stats.top1_correct as f32,
            stats.top5_correct as f32,
        ]);
        comm.all_reduce(STATS_TAG, flat_stats)?;

        let (plan, buffers) = (&self.plan, &mut self.buffers);
        net.backward_with(be, x, &mut |layer, done| {
            let mut param = plan.layer_params(layer).start;
            let mut copied = Ok(());
            done.visit_params(&mut |p| {
                let slot = plan.slot(param);
                param += 1;
                if copied.is_ok() {
                    let dst = &mut buffers[slot.bucket][slot.offset..slot.offset + slot.len];
                    copied = be.download(p.grad.buf(), dst);
                }
            });
            copied?;
            for bucket in plan.ready_after(layer) {
                comm.all_reduce(bucket, std::mem::take(&mut buffers[bucket]))?;
            }
            Ok(())
        })?;

        while comm.in_flight() > 0 {
            let (tag, buf) = comm.wait()?;
            match tag {
                STATS_TAG => self.stats = buf,
                bucket => self.buffers[bucket] = buf,
            }
        }
        let n = world_size as f32;
        // Counts up to 2^24 are exact in f32.
        stats.loss = f64::from(self.stats[0] / n);
        stats.top1_correct = self.stats[1] as usize;
        stats.top5_correct = self.stats[2] as usize;
        let (plan, buffers) = (&self.plan, &mut self.buffers);
        let mut param = 0;
        let mut written = Ok(());
        net.visit_params(&mut |p| {
            let slot = plan.slot(param);
            param += 1;
            if written.is_ok() {
                let g = &mut buffers[slot.bucket][slot.offset..slot.offset + slot.len];
                g.iter_mut().for_each(|v| *v /= n);
                written = p.grad.copy_from_slice(be, g);
            }
        });
        written.map(|()| stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::dist::{Collective, HostGroup, HostMember};
    use crate::models::ModelConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A group member that records the length of every all-reduce it makes.
    struct Recording {
        inner: HostMember,
        lens: Mutex<Vec<usize>>,
    }

    impl Collective for Recording {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn world_size(&self) -> usize {
            self.inner.world_size()
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
            self.lens.lock().unwrap().push(buf.len());
            self.inner.all_reduce_sum(buf)
        }
        fn broadcast(&self, buf: &mut [f32]) -> Result<()> {
            self.inner.broadcast(buf)
        }
        fn barrier(&self) -> Result<()> {
            self.inner.barrier()
        }
        fn abort(&self, reason: &str) {
            self.inner.abort(reason)
        }
        fn failure(&self) -> Option<(usize, String)> {
            self.inner.failure()
        }
    }

    fn grads(be: &CpuBackend<f32>, net: &mut Network<CpuBackend<f32>>) -> Vec<u32> {
        let mut out = Vec::new();
        net.visit_params(&mut |p| {
            out.extend(p.grad.to_vec(be).unwrap().iter().map(|v| v.to_bits()))
        });
        out
    }

    /// A group of one told to divide by two: the bucketed step must leave exactly (bit for bit,
    /// halving is exact) half the gradients of a plain backward, so every slot went back to its
    /// own parameter. The statistics leave first, then the buckets in the plan's order and sizes.
    #[test]
    fn buckets_leave_in_plan_order_and_land_back_on_their_parameters() {
        let be = CpuBackend::<f32>::new();
        let model = ModelConfig::from_name("resnet8", 10).unwrap();
        let mut net = Network::new(&be, model, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let x: Vec<f32> = (0..2 * 32 * 32 * 3)
            .map(|i| ((i % 29) as f32 - 14.0) / 14.0)
            .collect();
        let x = Tensor::from_slice(&be, [2, 32, 32, 3], &x).unwrap();
        let labels = [3, 7];
        let plain_stats = net.forward_backward(&be, &x, &labels).unwrap();
        let plain = grads(&be, &mut net);

        let member = HostGroup::members(1, Duration::from_secs(30)).remove(0);
        let group = Recording {
            inner: member,
            lens: Mutex::new(Vec::new()),
        };
        // 2,000 elements: several buckets, some holding several parameters.
        let cap = 2_000;
        std::thread::scope(|s| {
            let comm = CommThread::spawn(s, &group).unwrap();
            let mut host = HostGradients::new(comm, cap, 2);
            let stats = host.forward_backward(&be, &mut net, &x, &labels).unwrap();
            assert_eq!(stats.loss, f64::from(plain_stats.loss as f32 / 2.0));
            let lens = host.buckets.as_ref().unwrap().plan.bucket_lens().to_vec();
            assert!(lens.len() > 3, "only {} buckets", lens.len());
            let mut expected = vec![3];
            expected.extend(lens);
            assert_eq!(*group.lens.lock().unwrap(), expected);
        });
        let halved: Vec<u32> = plain
            .iter()
            .map(|&b| (f32::from_bits(b) / 2.0).to_bits())
            .collect();
        assert!(
            halved != plain,
            "the test cannot tell halved gradients apart"
        );
        assert!(
            grads(&be, &mut net) == halved,
            "a gradient landed on the wrong parameter"
        );
    }
}
