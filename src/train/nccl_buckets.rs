//! A GPU replica's gradients averaged with NCCL in buckets, overlapped with backward.
//!
//! The buckets are the host path's (`dist::buckets`), but live in device memory. After each
//! layer's backward its gradients are copied into their buckets on the compute stream; when a
//! bucket is complete the communication (side) stream is made to wait for the compute stream (an
//! event) and `ncclAllReduce` (average) of the bucket is issued on it, so the reduction runs while
//! the compute stream goes on with the earlier layers. After backward the host waits for the side
//! stream by polling, with the collective timeout (`dist::nccl_comm`), the compute stream is made
//! to wait for it, and the buckets are copied back into the gradients before SGD reads them.
//!
//! Unlike the host path, the result is not bit-identical to one replica accumulating micro-batches:
//! NCCL's ring and tree algorithms add the ranks' values in an order of their own (the same on
//! every rank, so the replicas stay identical to each other).

use crate::backend::gpu::{DeviceBuffer, DynDriver, GpuBackend};
use crate::backend::{Backend, LossStats};
use crate::dist::buckets::BucketPlan;
use crate::dist::nccl_comm::NcclComm;
use crate::dist::nccl_ffi::ReduceOp;
use crate::error::Result;
use crate::models::Network;
use crate::nn::Mode;
use crate::tensor::Tensor;

use super::replicas::GradientSync;

const F32: usize = std::mem::size_of::<f32>();

type Gpu = GpuBackend<DynDriver>;

/// The device buckets, planned at the first step.
struct DeviceBuckets {
    plan: BucketPlan,
    buckets: Vec<DeviceBuffer<DynDriver>>,
    /// Loss, top-1 and top-5 counts, summed across the ranks.
    stats: DeviceBuffer<DynDriver>,
}

/// The NCCL path of a replica's gradients.
pub(super) struct NcclGradients<'c> {
    comm: &'c NcclComm<'c>,
    /// Bucket size in elements.
    cap: usize,
    buckets: Option<DeviceBuckets>,
}

impl<'c> NcclGradients<'c> {
    pub fn new(comm: &'c NcclComm<'c>, cap: usize) -> Self {
        NcclGradients {
            comm,
            cap,
            buckets: None,
        }
    }
}

impl DeviceBuckets {
    fn new(be: &Gpu, net: &mut Network<Gpu>, cap: usize) -> Result<Self> {
        let sizes: Vec<Vec<usize>> = (0..net.num_layers())
            .map(|i| net.layer_param_sizes(i))
            .collect();
        let plan = BucketPlan::new(&sizes, cap);
        let buckets = plan
            .bucket_lens()
            .iter()
            .map(|&n| be.alloc_zeros(n))
            .collect::<Result<_>>()?;
        Ok(DeviceBuckets {
            plan,
            buckets,
            stats: be.alloc_zeros(3)?,
        })
    }
}

impl GradientSync<Gpu> for NcclGradients<'_> {
    fn forward_backward(
        &mut self,
        be: &Gpu,
        net: &mut Network<Gpu>,
        x: &Tensor<Gpu>,
        labels: &[u32],
    ) -> Result<LossStats> {
        if self.buckets.is_none() {
            self.buckets = Some(DeviceBuckets::new(be, net, self.cap)?);
        }
        let dev = self.buckets.as_mut().expect("planned above");
        let comm = self.comm;
        net.forward(be, x, Mode::Train)?;
        let mut stats = net.loss(be, labels)?;
        let host_stats = [
            stats.loss as f32,
            stats.top1_correct as f32,
            stats.top5_correct as f32,
        ];
        be.upload(&host_stats, &mut dev.stats)?;
        comm.after_compute()?;
        // SAFETY: the stats buffer is read back only after `comm.wait` below.
        unsafe { comm.issue_all_reduce(dev.stats.ptr(), 3, ReduceOp::Sum)? };

        let DeviceBuckets { plan, buckets, .. } = dev;
        let driver = be.driver();
        net.backward_with(be, x, &mut |layer, done| {
            let mut param = plan.layer_params(layer).start;
            let mut copied = Ok(());
            done.visit_params(&mut |p| {
                let slot = plan.slot(param);
                param += 1;
                if copied.is_ok() {
                    let dst = buckets[slot.bucket].ptr() + (slot.offset * F32) as u64;
                    // SAFETY: the gradient holds `len` f32 and the slot lies inside its bucket;
                    // the copy is ordered on the compute stream after the layer's kernels.
                    copied = unsafe {
                        driver.copy_device_to_device(p.grad.buf().ptr(), dst, slot.len * F32)
                    };
                }
            });
            copied?;
            let ready = plan.ready_after(layer);
            if !ready.is_empty() {
                comm.after_compute()?;
                for b in ready {
                    // SAFETY: nothing touches the bucket until `comm.wait` below.
                    unsafe {
                        comm.issue_all_reduce(buckets[b].ptr(), buckets[b].len(), ReduceOp::Avg)?
                    };
                }
            }
            Ok(())
        })?;

        comm.wait("gradient all-reduce")?;
        let mut summed = [0f32; 3];
        be.download(&dev.stats, &mut summed)?;
        let n = comm_world(comm) as f32;
        stats.loss = f64::from(summed[0] / n);
        stats.top1_correct = summed[1] as usize;
        stats.top5_correct = summed[2] as usize;
        let (plan, buckets) = (&dev.plan, &dev.buckets);
        let mut param = 0;
        let mut written = Ok(());
        net.visit_params(&mut |p| {
            let slot = plan.slot(param);
            param += 1;
            if written.is_ok() {
                let src = buckets[slot.bucket].ptr() + (slot.offset * F32) as u64;
                // SAFETY: as above; the compute stream now waits for the all-reduces.
                written = unsafe {
                    driver.copy_device_to_device(src, p.grad.buf().ptr(), slot.len * F32)
                };
            }
        });
        written.map(|()| stats)
    }
}

fn comm_world(comm: &NcclComm<'_>) -> usize {
    crate::dist::Collective::world_size(comm)
}
