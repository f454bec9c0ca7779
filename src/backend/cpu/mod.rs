//! The CPU backend: the reference every other backend is tested against, and a usable engine.
//!
//! Generic over the element type, so gradient checks run the very same code in f64. Buffers are plain
//! `Vec<T>`; work is spread over rayon's thread pool. Every reduction splits its work into pieces
//! fixed by the shape (and the thread count) and combines them in a fixed order, so results are
//! bit-reproducible from run to run.

mod batch_norm;
mod bn_rows;
mod bn_stats;
mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_avx2;
#[cfg(target_arch = "x86_64")]
mod conv_direct;
#[cfg(all(test, target_arch = "x86_64"))]
mod conv_direct_tests;
#[cfg(target_arch = "x86_64")]
mod conv_filter;
#[cfg(target_arch = "x86_64")]
mod conv_pass;
mod elementwise;
mod image_batch;
mod linear;
mod loss;
pub mod matmul;
mod pool;
#[cfg(target_arch = "x86_64")]
mod scratch;
#[cfg(target_arch = "x86_64")]
mod winograd;
#[cfg(all(test, target_arch = "x86_64"))]
mod winograd_tests;
#[cfg(target_arch = "x86_64")]
mod winograd_transforms;

use std::marker::PhantomData;
use std::sync::Mutex;

use crate::backend::{
    Backend, BatchNormConfig, BatchNormSaved, Conv2dGeometry, Element, LossStats, PoolGeometry,
    RecordedLosses, SgdConfig, SgdTensors,
};
use crate::error::Result;
use crate::tensor::Tensor;
use conv::ConvDims;

/// The CPU backend over element type `T` (f32 for training, f64 for gradient checks).
/// The CPU's loss record: the statistics themselves, in host memory (which is the CPU's device
/// memory), so reading it costs nothing.
#[derive(Debug, Default)]
pub struct CpuLossRecord {
    recorded: RecordedLosses,
}

pub struct CpuBackend<T: Element> {
    /// Scratch buffers (im2col columns), reused across calls so a step does not allocate them anew.
    workspaces: Mutex<Vec<Vec<T>>>,
    _elem: PhantomData<T>,
}

impl<T: Element> Default for CpuBackend<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend {
            workspaces: Mutex::new(Vec::new()),
            _elem: PhantomData,
        }
    }

    /// Runs `f` on a scratch buffer of `len` elements taken from the pool (contents unspecified).
    fn with_workspace<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut buf = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, T::zero());
        }
        let out = f(&mut buf[..len]);
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
        out
    }
}

impl<T: Element> Backend for CpuBackend<T> {
    type Elem = T;
    type Buffer = Vec<T>;
    type LossRecord = CpuLossRecord;
    type ImageStore = image_batch::CpuImages;

    fn name(&self) -> String {
        format!("cpu-{}", std::any::type_name::<T>())
    }

    fn alloc_zeros(&self, len: usize) -> Result<Vec<T>> {
        Ok(vec![T::zero(); len])
    }

    fn upload(&self, src: &[T], dst: &mut Vec<T>) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &Vec<T>, dst: &mut [T]) -> Result<()> {
        dst.copy_from_slice(src);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn copy(&self, src: &Tensor<Self>, dst: &mut Tensor<Self>) -> Result<()> {
        dst.buf_mut().copy_from_slice(src.buf());
        Ok(())
    }

    fn upload_images(&self, pixels: &[u8], labels: &[u32]) -> Result<Self::ImageStore> {
        self.store_images(pixels, labels)
    }

    fn refill_images(
        &self,
        images: &mut Self::ImageStore,
        pixels: &[u8],
        labels: &[u32],
    ) -> Result<()> {
        self.refill_stored_images(images, pixels, labels)
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
        self.gather_image_batch(images, count, draws, mean, x, labels)
    }

    fn conv2d_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let d = ConvDims::new(x.dims(), w.dims(), y.dims(), geom);
        self.conv_forward(&d, x.buf(), w.buf(), y.buf_mut());
        Ok(())
    }

    fn conv2d_backward_data(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let d = ConvDims::new(dx.dims(), w.dims(), dy.dims(), geom);
        self.conv_backward_data(&d, dy.buf(), w.buf(), dx.buf_mut());
        Ok(())
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
        let d = ConvDims::new(dx.dims(), w.dims(), dy.dims(), geom);
        if self.conv_backward_data_add(&d, dy.buf(), w.buf(), addend.buf(), dx.buf_mut()) {
            return Ok(());
        }
        self.conv2d_backward_data(dy, w, scratch, geom)?;
        self.add_forward(scratch, addend, dx, false)
    }

    fn conv2d_backward_filter(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let d = ConvDims::new(x.dims(), dw.dims(), dy.dims(), geom);
        self.conv_backward_filter(&d, x.buf(), dy.buf(), dw.buf_mut());
        Ok(())
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
        batch_norm::forward_train(
            x.buf(),
            gamma.buf(),
            beta.buf(),
            None,
            y.buf_mut(),
            save_mean.buf_mut(),
            save_inv_std.buf_mut(),
            running_mean.buf_mut(),
            running_var.buf_mut(),
            cfg,
        );
        Ok(())
    }

    fn batch_norm_add_forward_train(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        residual: &Tensor<Self>,
        _scratch: &mut Tensor<Self>,
        out: &mut Tensor<Self>,
        save_mean: &mut Tensor<Self>,
        save_inv_std: &mut Tensor<Self>,
        running_mean: &mut Tensor<Self>,
        running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        batch_norm::forward_train(
            x.buf(),
            gamma.buf(),
            beta.buf(),
            Some(residual.buf()),
            out.buf_mut(),
            save_mean.buf_mut(),
            save_inv_std.buf_mut(),
            running_mean.buf_mut(),
            running_var.buf_mut(),
            cfg,
        );
        Ok(())
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
        batch_norm::forward_infer(
            x.buf(),
            gamma.buf(),
            beta.buf(),
            running_mean.buf(),
            running_var.buf(),
            y.buf_mut(),
            cfg,
        );
        Ok(())
    }

    fn batch_norm_backward(
        &self,
        x: &Tensor<Self>,
        // The ReLU's mask comes from `x` and the forward's affine map instead: see `batch_norm`.
        _y: &Tensor<Self>,
        dy: &Tensor<Self>,
        gamma: &Tensor<Self>,
        saved: BatchNormSaved<'_, Self>,
        dx: &mut Tensor<Self>,
        dgamma: &mut Tensor<Self>,
        dbeta: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        batch_norm::backward(
            batch_norm::BackwardInputs {
                x: x.buf(),
                dy: dy.buf(),
                gamma: gamma.buf(),
                beta: saved.beta.buf(),
                mean: saved.mean.buf(),
                inv_std: saved.inv_std.buf(),
                relu,
            },
            dx.buf_mut(),
            dgamma.buf_mut(),
            dbeta.buf_mut(),
        );
        Ok(())
    }

    fn add_forward(
        &self,
        a: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        elementwise::add(a.buf(), b.buf(), y.buf_mut(), relu);
        Ok(())
    }

    fn add_backward(
        &self,
        y: &Tensor<Self>,
        dy: &Tensor<Self>,
        dsum: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        elementwise::add_backward(y.buf(), dy.buf(), dsum.buf_mut(), relu);
        Ok(())
    }

    fn shortcut_a_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        let (xd, yd) = (dims4(x), dims4(y));
        elementwise::shortcut_a_forward(x.buf(), xd, y.buf_mut(), yd, stride);
        Ok(())
    }

    fn shortcut_a_backward(
        &self,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        let (yd, xd) = (dims4(dy), dims4(dx));
        elementwise::shortcut_a_backward(dy.buf(), yd, dx.buf_mut(), xd, stride);
        Ok(())
    }

    fn global_avg_pool_forward(&self, x: &Tensor<Self>, y: &mut Tensor<Self>) -> Result<()> {
        pool::global_avg_forward(x.buf(), dims4(x), y.buf_mut());
        Ok(())
    }

    fn global_avg_pool_backward(&self, dy: &Tensor<Self>, dx: &mut Tensor<Self>) -> Result<()> {
        let xd = dims4(dx);
        pool::global_avg_backward(dy.buf(), dx.buf_mut(), xd);
        Ok(())
    }

    fn max_pool_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        let yd = dims4(y);
        pool::max_forward(x.buf(), dims4(x), y.buf_mut(), yd, geom);
        Ok(())
    }

    fn max_pool_backward(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        pool::max_backward(x.buf(), dims4(x), dy.buf(), dims4(dy), dx.buf_mut(), geom);
        Ok(())
    }

    fn linear_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
    ) -> Result<()> {
        let [n, fin] = dims2(x);
        linear::forward(x.buf(), w.buf(), b.buf(), y.buf_mut(), n, fin, b.numel());
        Ok(())
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
        let [n, fin] = dims2(x);
        let fout = db.numel();
        linear::backward(
            x.buf(),
            w.buf(),
            dy.buf(),
            dx.map(|t| t.buf_mut().as_mut_slice()),
            dw.buf_mut(),
            db.buf_mut(),
            [n, fin, fout],
        );
        Ok(())
    }

    fn loss_record(&self, _capacity: usize) -> Result<CpuLossRecord> {
        Ok(CpuLossRecord::default())
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Tensor<Self>,
        labels: &Tensor<Self>,
        dlogits: &mut Tensor<Self>,
        record: &mut CpuLossRecord,
    ) -> Result<()> {
        let [_, classes] = dims2(logits);
        // Labels are class indices held as floats; one that is not gives a NaN loss, as on the GPU.
        let indices: Option<Vec<u32>> = labels
            .buf()
            .iter()
            .map(|l| {
                let v = l.f64();
                (v >= 0.0 && v < classes as f64 && v.fract() == 0.0).then_some(v as u32)
            })
            .collect();
        let stats = match indices {
            Some(indices) => {
                loss::softmax_cross_entropy(logits.buf(), &indices, dlogits.buf_mut(), classes)
            }
            None => {
                dlogits.buf_mut().fill(T::of(0.0));
                LossStats {
                    loss: f64::NAN,
                    top1_correct: 0,
                    top5_correct: 0,
                }
            }
        };
        if !stats.loss.is_finite() && record.recorded.first_non_finite.is_none() {
            record.recorded.first_non_finite = Some(record.recorded.steps.len());
        }
        record.recorded.steps.push(stats);
        Ok(())
    }

    fn read_loss_record(&self, record: &mut CpuLossRecord) -> Result<RecordedLosses> {
        Ok(std::mem::take(&mut record.recorded))
    }

    fn sgd_update_many_guarded(
        &self,
        params: &mut [SgdTensors<'_, Self>],
        cfg: SgdConfig,
        lr: &Tensor<Self>,
        guard: &CpuLossRecord,
    ) -> Result<()> {
        if guard.recorded.first_non_finite.is_some() {
            return Ok(());
        }
        let cfg = SgdConfig {
            lr: lr.buf()[0].f64(),
            ..cfg
        };
        self.sgd_update_many(params, cfg)
    }

    fn sgd_update(
        &self,
        w: &mut Tensor<Self>,
        g: &Tensor<Self>,
        v: &mut Tensor<Self>,
        cfg: SgdConfig,
    ) -> Result<()> {
        elementwise::sgd_update(w.buf_mut(), g.buf(), v.buf_mut(), cfg);
        Ok(())
    }
}

fn dims4<T: Element>(t: &Tensor<CpuBackend<T>>) -> [usize; 4] {
    t.shape().dims4().expect("shape validated by ops")
}

fn dims2<T: Element>(t: &Tensor<CpuBackend<T>>) -> [usize; 2] {
    t.shape().dims2().expect("shape validated by ops")
}
