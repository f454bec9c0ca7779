//! `Profiled<B>`: a [`Backend`] decorator that times every op of the backend it wraps and adds the
//! time to the op's family (convolution, batch norm, elementwise, other).
//!
//! Each op is forwarded to the inner backend and followed by `synchronize`, so the time charged to
//! an op is the time until its results are ready, even on an asynchronous device. Those
//! synchronisations slow the step down, which is why the benchmark measures its headline figure on
//! the bare backend and uses this decorator only in a separate pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::backend::{
    Backend, BatchNormConfig, BatchNormSaved, BnGradMask, BnMap, Conv2dGeometry, ConvTuningRecord,
    DType, DeviceCounts, KernelTime, PoolGeometry, RecordedLosses, SgdConfig, SgdTensors,
};
use crate::error::Result;
use crate::tensor::Tensor;

/// The op families of the per-layer-type table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpFamily {
    /// Convolution forward, backward-data, backward-filter.
    Conv,
    /// Batch norm (with its fused ReLU) forward and backward.
    BatchNorm,
    /// Residual add (+ReLU), shortcut A, copies.
    Elementwise,
    /// Pooling, the classifier, the loss and the SGD update.
    Other,
}

impl OpFamily {
    pub const ALL: [OpFamily; 4] = [
        OpFamily::Conv,
        OpFamily::BatchNorm,
        OpFamily::Elementwise,
        OpFamily::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OpFamily::Conv => "conv",
            OpFamily::BatchNorm => "bn",
            OpFamily::Elementwise => "elementwise",
            OpFamily::Other => "other (pool, linear, loss, sgd)",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Milliseconds spent in each op family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FamilyTimes {
    pub conv_ms: f64,
    pub bn_ms: f64,
    pub elementwise_ms: f64,
    pub other_ms: f64,
}

impl FamilyTimes {
    pub fn get(&self, family: OpFamily) -> f64 {
        match family {
            OpFamily::Conv => self.conv_ms,
            OpFamily::BatchNorm => self.bn_ms,
            OpFamily::Elementwise => self.elementwise_ms,
            OpFamily::Other => self.other_ms,
        }
    }

    pub fn total_ms(&self) -> f64 {
        self.conv_ms + self.bn_ms + self.elementwise_ms + self.other_ms
    }

    /// Every figure divided by `n` (per step from a sum over `n` steps).
    pub fn divided_by(&self, n: f64) -> Self {
        FamilyTimes {
            conv_ms: self.conv_ms / n,
            bn_ms: self.bn_ms / n,
            elementwise_ms: self.elementwise_ms / n,
            other_ms: self.other_ms / n,
        }
    }
}

/// The decorator; see the module doc.
pub struct Profiled<B: Backend> {
    inner: B,
    /// Nanoseconds per family, indexed by `OpFamily::index`. Atomics because `Backend` is `Sync`.
    nanos: [AtomicU64; 4],
}

impl<B: Backend> Profiled<B> {
    pub fn new(inner: B) -> Self {
        Profiled {
            inner,
            nanos: Default::default(),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The time charged to each family since creation or the last reset.
    pub fn times(&self) -> FamilyTimes {
        let ms = |f: OpFamily| self.nanos[f.index()].load(Ordering::Relaxed) as f64 / 1e6;
        FamilyTimes {
            conv_ms: ms(OpFamily::Conv),
            bn_ms: ms(OpFamily::BatchNorm),
            elementwise_ms: ms(OpFamily::Elementwise),
            other_ms: ms(OpFamily::Other),
        }
    }

    pub fn reset(&self) {
        for n in &self.nanos {
            n.store(0, Ordering::Relaxed);
        }
    }

    /// Runs `op` on the inner backend, waits for it, and charges the elapsed time to `family`.
    fn timed<R>(&self, family: OpFamily, op: impl FnOnce(&B) -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let out = op(&self.inner)?;
        self.inner.synchronize()?;
        let nanos = start.elapsed().as_nanos() as u64;
        self.nanos[family.index()].fetch_add(nanos, Ordering::Relaxed);
        Ok(out)
    }

    /// Runs an untimed call and waits for it, so its device work is not charged to the next op.
    fn untimed<R>(&self, op: impl FnOnce(&B) -> Result<R>) -> Result<R> {
        let out = op(&self.inner)?;
        self.inner.synchronize()?;
        Ok(out)
    }
}

/// The inner backend's view of a tensor of the decorator (same buffer, same layout).
fn inner<B: Backend>(t: &Tensor<Profiled<B>>) -> &Tensor<B> {
    t.view_as()
}

fn inner_saved<'a, B: Backend>(saved: BatchNormSaved<'a, Profiled<B>>) -> BatchNormSaved<'a, B> {
    BatchNormSaved {
        mean: inner(saved.mean),
        inv_std: inner(saved.inv_std),
        beta: inner(saved.beta),
    }
}

fn inner_bn_map<'a, B: Backend>(bn: BnMap<'a, Profiled<B>>) -> BnMap<'a, B> {
    BnMap {
        gamma: inner(bn.gamma),
        saved: inner_saved(bn.saved),
    }
}

fn inner_mut<B: Backend>(t: &mut Tensor<Profiled<B>>) -> &mut Tensor<B> {
    t.view_as_mut()
}

impl<B: Backend> Backend for Profiled<B> {
    type Elem = B::Elem;
    type Buffer = B::Buffer;
    type LossRecord = B::LossRecord;
    type ImageStore = B::ImageStore;

    fn name(&self) -> String {
        format!("profiled {}", self.inner.name())
    }

    fn dtype(&self, buf: &Self::Buffer) -> DType {
        self.inner.dtype(buf)
    }

    fn activation_dtype(&self) -> DType {
        self.inner.activation_dtype()
    }

    fn to_activation_dtype(&self, t: &mut Tensor<Self>) -> Result<()> {
        self.untimed(|b| b.to_activation_dtype(inner_mut(t)))
    }

    fn alloc_zeros(&self, len: usize) -> Result<Self::Buffer> {
        self.untimed(|b| b.alloc_zeros(len))
    }

    fn upload(&self, src: &[Self::Elem], dst: &mut Self::Buffer) -> Result<()> {
        self.untimed(|b| b.upload(src, dst))
    }

    fn download(&self, src: &Self::Buffer, dst: &mut [Self::Elem]) -> Result<()> {
        self.untimed(|b| b.download(src, dst))
    }

    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    fn device_counts(&self) -> Option<DeviceCounts> {
        self.inner.device_counts()
    }

    fn set_kernel_timing(&self, on: bool) -> Result<bool> {
        self.inner.set_kernel_timing(on)
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.inner.take_kernel_times()
    }

    fn conv_tuning_records(&self) -> Vec<ConvTuningRecord> {
        self.inner.conv_tuning_records()
    }

    fn adopt_conv_tuning(&self, other: &Self) {
        self.inner.adopt_conv_tuning(&other.inner)
    }

    fn copy(&self, src: &Tensor<Self>, dst: &mut Tensor<Self>) -> Result<()> {
        self.timed(OpFamily::Elementwise, |b| {
            b.copy(inner(src), inner_mut(dst))
        })
    }

    fn builds_batches_on_device(&self) -> bool {
        self.inner.builds_batches_on_device()
    }

    fn upload_images(&self, pixels: &[u8], labels: &[u32]) -> Result<Self::ImageStore> {
        self.untimed(|b| b.upload_images(pixels, labels))
    }

    fn refill_images(
        &self,
        images: &mut Self::ImageStore,
        pixels: &[u8],
        labels: &[u32],
    ) -> Result<()> {
        self.untimed(|b| b.refill_images(images, pixels, labels))
    }

    fn image_batch(
        &self,
        images: &Self::ImageStore,
        count: usize,
        draws: &Tensor<Self>,
        mean: &Tensor<Self>,
        x: &mut Tensor<Self>,
        labels: &mut Tensor<Self>,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.image_batch(
                images,
                count,
                inner(draws),
                inner(mean),
                inner_mut(x),
                inner_mut(labels),
            )
        })
    }

    fn conv2d_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_forward(inner(x), inner(w), inner_mut(y), geom)
        })
    }

    fn conv2d_stats_len(&self, y: &[usize; 4]) -> Option<usize> {
        self.inner.conv2d_stats_len(y)
    }

    fn conv2d_forward_with_stats(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stats: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        // Timed as a convolution: the statistics ride on its epilogue.
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_forward_with_stats(inner(x), inner(w), inner_mut(y), inner_mut(stats), geom)
        })
    }

    fn conv2d_bn_input_fusion(&self, x: &[usize; 4], w: &[usize; 4], geom: Conv2dGeometry) -> bool {
        self.inner.conv2d_bn_input_fusion(x, w, geom)
    }

    fn conv2d_forward_with_stats_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stats: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let bn = inner_bn_map(bn);
        // Timed as a convolution: BN's map rides on its operand load.
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_forward_with_stats_bn_input(
                inner(x),
                bn,
                inner(w),
                inner_mut(y),
                inner_mut(stats),
                geom,
            )
        })
    }

    fn conv2d_backward_filter_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let bn = inner_bn_map(bn);
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_backward_filter_bn_input(inner(x), bn, inner(dy), inner_mut(dw), geom)
        })
    }

    fn batch_norm_residual_bn_fusion(&self) -> bool {
        self.inner.batch_norm_residual_bn_fusion()
    }

    fn batch_norm_add_bn_forward_train_from_stats(
        &self,
        x: &Tensor<Self>,
        stats: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        r: &Tensor<Self>,
        r_bn: BnMap<'_, Self>,
        out: &mut Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        let r_bn = inner_bn_map(r_bn);
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_add_bn_forward_train_from_stats(
                inner(x),
                inner(stats),
                inner(gamma),
                inner(beta),
                inner(r),
                r_bn,
                inner_mut(out),
                inner_mut(save_mean),
                inner_mut(save_inv_std),
                inner_mut(running_mean),
                inner_mut(running_var),
                cfg,
            )
        })
    }

    fn batch_norm_statistics_from_stats(
        &self,
        x: &Tensor<Self>,
        stats: &Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_statistics_from_stats(
                inner(x),
                inner(stats),
                inner_mut(save_mean),
                inner_mut(save_inv_std),
                inner_mut(running_mean),
                inner_mut(running_var),
                cfg,
            )
        })
    }

    fn conv2d_bn_grad_len(
        &self,
        x: &[usize; 4],
        w: &[usize; 4],
        geom: Conv2dGeometry,
    ) -> Option<usize> {
        self.inner.conv2d_bn_grad_len(x, w, geom)
    }

    fn conv2d_backward_data_with_bn_grad(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        addend: Option<&Tensor<Self>>,
        dz: &mut Tensor<Self>,
        bn_x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        saved: BatchNormSaved<'_, Self>,
        mask: BnGradMask<'_, Self>,
        partials: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let saved = inner_saved(saved);
        let mask = match mask {
            BnGradMask::None => BnGradMask::None,
            BnGradMask::Own => BnGradMask::Own,
            BnGradMask::Output(y) => BnGradMask::Output(inner(y)),
        };
        // Timed as a convolution: the BN sums ride on its epilogue.
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_backward_data_with_bn_grad(
                inner(dy),
                inner(w),
                addend.map(inner),
                inner_mut(dz),
                inner(bn_x),
                inner(gamma),
                saved,
                mask,
                inner_mut(partials),
                geom,
            )
        })
    }

    fn conv2d_backward_data(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_backward_data(inner(dy), inner(w), inner_mut(dx), geom)
        })
    }

    fn conv2d_backward_data_add(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        addend: &Tensor<Self>,
        scratch: &mut Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        // Timed as a convolution: the sum rides on its output pass (unfused, an elementwise op).
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_backward_data_add(
                inner(dy),
                inner(w),
                inner(addend),
                inner_mut(scratch),
                inner_mut(dx),
                geom,
            )
        })
    }

    fn conv2d_backward_filter(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        self.timed(OpFamily::Conv, |b| {
            b.conv2d_backward_filter(inner(x), inner(dy), inner_mut(dw), geom)
        })
    }

    fn batch_norm_forward_train(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        y: &mut Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_forward_train(
                inner(x),
                inner(gamma),
                inner(beta),
                inner_mut(y),
                inner_mut(save_mean),
                inner_mut(save_inv_std),
                inner_mut(running_mean),
                inner_mut(running_var),
                cfg,
            )
        })
    }

    fn batch_norm_add_forward_train(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        residual: &Tensor<Self>,
        scratch: &mut Tensor<Self>,
        out: &mut Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        // Timed as BN: the sum rides on its normalising pass (unfused, an elementwise op).
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_add_forward_train(
                inner(x),
                inner(gamma),
                inner(beta),
                inner(residual),
                inner_mut(scratch),
                inner_mut(out),
                inner_mut(save_mean),
                inner_mut(save_inv_std),
                inner_mut(running_mean),
                inner_mut(running_var),
                cfg,
            )
        })
    }

    fn batch_norm_forward_train_from_stats(
        &self,
        x: &Tensor<Self>,
        stats: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        residual: Option<&Tensor<Self>>,
        out: &mut Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_forward_train_from_stats(
                inner(x),
                inner(stats),
                inner(gamma),
                inner(beta),
                residual.map(inner),
                inner_mut(out),
                inner_mut(save_mean),
                inner_mut(save_inv_std),
                inner_mut(running_mean),
                inner_mut(running_var),
                cfg,
            )
        })
    }

    fn batch_norm_forward_infer(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        running_mean: &Tensor<Self>,
        running_var: &Tensor<Self>,
        y: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_forward_infer(
                inner(x),
                inner(gamma),
                inner(beta),
                inner(running_mean),
                inner(running_var),
                inner_mut(y),
                cfg,
            )
        })
    }

    fn batch_norm_backward_from_partials(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        partials: &Tensor<Self>,
        gamma: &Tensor<Self>,
        saved: BatchNormSaved<'_, Self>,
        dx: &mut Tensor<Self>,
        dgamma: &mut Tensor<Self>,
        dbeta: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        let saved = inner_saved(saved);
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_backward_from_partials(
                inner(x),
                inner(dy),
                inner(partials),
                inner(gamma),
                saved,
                inner_mut(dx),
                inner_mut(dgamma),
                inner_mut(dbeta),
                relu,
            )
        })
    }

    fn batch_norm_backward(
        &self,
        x: &Tensor<Self>,
        y: &Tensor<Self>,
        dy: &Tensor<Self>,
        gamma: &Tensor<Self>,
        saved: BatchNormSaved<'_, Self>,
        dx: &mut Tensor<Self>,
        dgamma: &mut Tensor<Self>,
        dbeta: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        let saved = inner_saved(saved);
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_backward(
                inner(x),
                inner(y),
                inner(dy),
                inner(gamma),
                saved,
                inner_mut(dx),
                inner_mut(dgamma),
                inner_mut(dbeta),
                relu,
            )
        })
    }

    fn batch_norm_add_relu_backward(
        &self,
        x: &Tensor<Self>,
        out: &Tensor<Self>,
        dout: &Tensor<Self>,
        gamma: &Tensor<Self>,
        saved: BatchNormSaved<'_, Self>,
        dx: &mut Tensor<Self>,
        dsum: &mut Tensor<Self>,
        dgamma: &mut Tensor<Self>,
        dbeta: &mut Tensor<Self>,
    ) -> Result<()> {
        let saved = inner_saved(saved);
        self.timed(OpFamily::BatchNorm, |b| {
            b.batch_norm_add_relu_backward(
                inner(x),
                inner(out),
                inner(dout),
                inner(gamma),
                saved,
                inner_mut(dx),
                inner_mut(dsum),
                inner_mut(dgamma),
                inner_mut(dbeta),
            )
        })
    }

    fn add_forward(
        &self,
        a: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        self.timed(OpFamily::Elementwise, |be| {
            be.add_forward(inner(a), inner(b), inner_mut(y), relu)
        })
    }

    fn add_backward(
        &self,
        y: &Tensor<Self>,
        dy: &Tensor<Self>,
        dsum: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        self.timed(OpFamily::Elementwise, |b| {
            b.add_backward(inner(y), inner(dy), inner_mut(dsum), relu)
        })
    }

    fn shortcut_a_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        self.timed(OpFamily::Elementwise, |b| {
            b.shortcut_a_forward(inner(x), inner_mut(y), stride)
        })
    }

    fn shortcut_a_backward(
        &self,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        self.timed(OpFamily::Elementwise, |b| {
            b.shortcut_a_backward(inner(dy), inner_mut(dx), stride)
        })
    }

    fn global_avg_pool_forward(&self, x: &Tensor<Self>, y: &mut Tensor<Self>) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.global_avg_pool_forward(inner(x), inner_mut(y))
        })
    }

    fn global_avg_pool_backward(&self, dy: &Tensor<Self>, dx: &mut Tensor<Self>) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.global_avg_pool_backward(inner(dy), inner_mut(dx))
        })
    }

    fn max_pool_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.max_pool_forward(inner(x), inner_mut(y), geom)
        })
    }

    fn max_pool_backward(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.max_pool_backward(inner(x), inner(dy), inner_mut(dx), geom)
        })
    }

    fn max_pool_bn_input_fusion(&self) -> bool {
        self.inner.max_pool_bn_input_fusion()
    }

    fn max_pool_forward_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let bn = inner_bn_map(bn);
        // Timed as pooling: BN's map rides on its window reads.
        self.timed(OpFamily::Other, |b| {
            b.max_pool_forward_bn_input(inner(x), bn, inner_mut(y), geom)
        })
    }

    fn max_pool_bn_grad_len(&self, x: &[usize; 4], geom: PoolGeometry) -> Option<usize> {
        self.inner.max_pool_bn_grad_len(x, geom)
    }

    fn max_pool_backward_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        partials: Option<&mut Tensor<Self>>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let bn = inner_bn_map(bn);
        let partials = partials.map(inner_mut);
        self.timed(OpFamily::Other, |b| {
            b.max_pool_backward_bn_input(inner(x), bn, inner(dy), inner_mut(dx), partials, geom)
        })
    }

    fn linear_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        bias: &Tensor<Self>,
        y: &mut Tensor<Self>,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.linear_forward(inner(x), inner(w), inner(bias), inner_mut(y))
        })
    }

    fn linear_backward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: Option<&mut Tensor<Self>>,
        dw: &mut Tensor<Self>,
        db: &mut Tensor<Self>,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.linear_backward(
                inner(x),
                inner(w),
                inner(dy),
                dx.map(inner_mut),
                inner_mut(dw),
                inner_mut(db),
            )
        })
    }

    fn loss_record(&self, capacity: usize) -> Result<B::LossRecord> {
        self.untimed(|b| b.loss_record(capacity))
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Tensor<Self>,
        labels: &Tensor<Self>,
        dlogits: &mut Tensor<Self>,
        record: &mut B::LossRecord,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.softmax_cross_entropy(inner(logits), inner(labels), inner_mut(dlogits), record)
        })
    }

    fn read_loss_record(&self, record: &mut B::LossRecord) -> Result<RecordedLosses> {
        self.untimed(|b| b.read_loss_record(record))
    }

    fn sgd_update_many_guarded(
        &self,
        params: &mut [SgdTensors<'_, Self>],
        cfg: SgdConfig,
        lr: &Tensor<Self>,
        guard: &B::LossRecord,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            let mut inner_params: Vec<SgdTensors<'_, B>> = params
                .iter_mut()
                .map(|p| SgdTensors {
                    w: inner_mut(p.w),
                    g: inner(p.g),
                    v: inner_mut(p.v),
                })
                .collect();
            b.sgd_update_many_guarded(&mut inner_params, cfg, inner(lr), guard)
        })
    }

    fn sgd_update(
        &self,
        w: &mut Tensor<Self>,
        g: &Tensor<Self>,
        v: &mut Tensor<Self>,
        cfg: SgdConfig,
    ) -> Result<()> {
        self.timed(OpFamily::Other, |b| {
            b.sgd_update(inner_mut(w), inner(g), inner_mut(v), cfg)
        })
    }
}
