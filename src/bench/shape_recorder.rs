//! `ShapeRecorder`: a backend that computes nothing and remembers the shape of every op it is asked
//! to run. Running a network's forward pass on it walks the real model code (the same layers, the
//! same strides and paddings) in a few milliseconds, which is how the benchmarks learn the layer
//! shapes of a model instead of keeping a hand-written list that could drift from `src/models`.

use std::sync::Mutex;

use crate::backend::{
    Backend, BatchNormConfig, BatchNormSaved, Conv2dGeometry, LossStats, PoolGeometry,
    RecordedLosses, SgdConfig, SgdTensors,
};
use crate::error::Result;
use crate::tensor::Tensor;

/// A convolution's problem size: input `[batch, height, width, in_channels]`, weight
/// `[out_channels, kernel, kernel, in_channels]`, stride and zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvShape {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    pub fn geometry(&self) -> Conv2dGeometry {
        Conv2dGeometry::new(self.stride, self.pad)
    }

    /// Output `[batch, P, Q, out_channels]`.
    pub fn output_dims(&self) -> [usize; 4] {
        let g = self.geometry();
        let extent = |i| g.output_extent(i, self.kernel).unwrap_or(0);
        [
            self.batch,
            extent(self.height),
            extent(self.width),
            self.out_channels,
        ]
    }

    /// Floating-point operations of one pass (forward, backward-data and backward-filter each do
    /// the same multiply-adds): `2 N P Q K R S C`.
    pub fn flops(&self) -> u64 {
        let [n, p, q, k] = self.output_dims();
        2 * (n * p * q * k * self.kernel * self.kernel * self.in_channels) as u64
    }

    /// The same problem at another batch size.
    pub fn with_batch(self, batch: usize) -> Self {
        ConvShape { batch, ..self }
    }

    /// A short name such as `n32_56x56_c64_k64_3x3_s1`.
    pub fn label(&self) -> String {
        format!(
            "n{}_{}x{}_c{}_k{}_{}x{}_s{}",
            self.batch,
            self.height,
            self.width,
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.kernel,
            self.stride
        )
    }
}

/// One op call, as far as the benchmarks care about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedOp {
    Conv(ConvShape),
    /// Training-mode batch norm on an NHWC activation, with or without its fused ReLU.
    BatchNorm {
        dims: [usize; 4],
        relu: bool,
    },
    /// Residual add, with or without ReLU.
    Add {
        dims: [usize; 4],
        relu: bool,
    },
    MaxPool {
        dims: [usize; 4],
        geom: PoolGeometry,
    },
    GlobalAvgPool {
        dims: [usize; 4],
    },
    SoftmaxCrossEntropy {
        batch: usize,
        classes: usize,
    },
}

/// The dry backend; see the module doc.
#[derive(Default)]
pub struct ShapeRecorder {
    ops: Mutex<Vec<RecordedOp>>,
}

fn dims4(t: &Tensor<ShapeRecorder>) -> [usize; 4] {
    t.shape().dims4().unwrap_or_default()
}

impl ShapeRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every op recorded so far, in call order.
    pub fn ops(&self) -> Vec<RecordedOp> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, op: RecordedOp) -> Result<()> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        Ok(())
    }
}

impl Backend for ShapeRecorder {
    type Elem = f32;
    /// No storage at all: the recorder never reads or writes data.
    type Buffer = ();
    /// The number of loss computations since the last read.
    type LossRecord = usize;
    /// Nothing is stored.
    type ImageStore = ();

    fn name(&self) -> String {
        "shape-recorder".into()
    }

    fn alloc_zeros(&self, _len: usize) -> Result<()> {
        Ok(())
    }

    fn upload(&self, _src: &[f32], _dst: &mut ()) -> Result<()> {
        Ok(())
    }

    fn download(&self, _src: &(), dst: &mut [f32]) -> Result<()> {
        dst.fill(0.0);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn copy(&self, _src: &Tensor<Self>, _dst: &mut Tensor<Self>) -> Result<()> {
        Ok(())
    }

    fn upload_images(&self, _pixels: &[u8], _labels: &[u32]) -> Result<()> {
        Ok(())
    }

    fn refill_images(&self, _images: &mut (), _pixels: &[u8], _labels: &[u32]) -> Result<()> {
        Ok(())
    }

    fn image_batch(
        &self,
        _images: &(),
        _count: usize,
        _draws: &Tensor<Self>,
        _mean: &Tensor<Self>,
        _x: &mut Tensor<Self>,
        _labels: &mut Tensor<Self>,
    ) -> Result<()> {
        Ok(())
    }

    fn conv2d_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let [batch, height, width, in_channels] = dims4(x);
        let [out_channels, kernel, _, _] = dims4(w);
        self.record(RecordedOp::Conv(ConvShape {
            batch,
            height,
            width,
            in_channels,
            out_channels,
            kernel,
            stride: geom.stride,
            pad: geom.pad,
        }))
    }

    fn conv2d_backward_data(
        &self,
        _dy: &Tensor<Self>,
        _w: &Tensor<Self>,
        _dx: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Ok(())
    }

    fn conv2d_backward_filter(
        &self,
        _x: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _dw: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Ok(())
    }

    fn batch_norm_forward_train(
        &self,
        x: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _beta: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        _save_mean: &mut Tensor<Self>,
        _save_inv_std: &mut Tensor<Self>,
        _running_mean: &mut Tensor<Self>,
        _running_var: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()> {
        self.record(RecordedOp::BatchNorm {
            dims: dims4(x),
            relu: cfg.relu,
        })
    }

    fn batch_norm_forward_infer(
        &self,
        _x: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _beta: &Tensor<Self>,
        _running_mean: &Tensor<Self>,
        _running_var: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        _cfg: BatchNormConfig,
    ) -> Result<()> {
        Ok(())
    }

    fn batch_norm_backward(
        &self,
        _x: &Tensor<Self>,
        _y: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _saved: BatchNormSaved<'_, Self>,
        _dx: &mut Tensor<Self>,
        _dgamma: &mut Tensor<Self>,
        _dbeta: &mut Tensor<Self>,
        _relu: bool,
    ) -> Result<()> {
        Ok(())
    }

    fn add_forward(
        &self,
        a: &Tensor<Self>,
        _b: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        self.record(RecordedOp::Add {
            dims: dims4(a),
            relu,
        })
    }

    fn add_backward(
        &self,
        _y: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _dsum: &mut Tensor<Self>,
        _relu: bool,
    ) -> Result<()> {
        Ok(())
    }

    fn shortcut_a_forward(
        &self,
        _x: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        _stride: usize,
    ) -> Result<()> {
        Ok(())
    }

    fn shortcut_a_backward(
        &self,
        _dy: &Tensor<Self>,
        _dx: &mut Tensor<Self>,
        _stride: usize,
    ) -> Result<()> {
        Ok(())
    }

    fn global_avg_pool_forward(&self, x: &Tensor<Self>, _y: &mut Tensor<Self>) -> Result<()> {
        self.record(RecordedOp::GlobalAvgPool { dims: dims4(x) })
    }

    fn global_avg_pool_backward(&self, _dy: &Tensor<Self>, _dx: &mut Tensor<Self>) -> Result<()> {
        Ok(())
    }

    fn max_pool_forward(
        &self,
        x: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        self.record(RecordedOp::MaxPool {
            dims: dims4(x),
            geom,
        })
    }

    fn max_pool_backward(
        &self,
        _x: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _dx: &mut Tensor<Self>,
        _geom: PoolGeometry,
    ) -> Result<()> {
        Ok(())
    }

    fn linear_forward(
        &self,
        _x: &Tensor<Self>,
        _w: &Tensor<Self>,
        _b: &Tensor<Self>,
        _y: &mut Tensor<Self>,
    ) -> Result<()> {
        Ok(())
    }

    fn linear_backward(
        &self,
        _x: &Tensor<Self>,
        _w: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _dx: Option<&mut Tensor<Self>>,
        _dw: &mut Tensor<Self>,
        _db: &mut Tensor<Self>,
    ) -> Result<()> {
        Ok(())
    }

    fn loss_record(&self, _capacity: usize) -> Result<usize> {
        Ok(0)
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Tensor<Self>,
        _labels: &Tensor<Self>,
        _dlogits: &mut Tensor<Self>,
        record: &mut usize,
    ) -> Result<()> {
        let [batch, classes] = logits.shape().dims2().unwrap_or_default();
        *record += 1;
        self.record(RecordedOp::SoftmaxCrossEntropy { batch, classes })
    }

    /// One all-zero entry per recorded step: nothing was computed.
    fn read_loss_record(&self, record: &mut usize) -> Result<RecordedLosses> {
        let steps = std::mem::take(record);
        Ok(RecordedLosses {
            steps: vec![
                LossStats {
                    loss: 0.0,
                    top1_correct: 0,
                    top5_correct: 0,
                };
                steps
            ],
            first_non_finite: None,
        })
    }

    fn sgd_update_many_guarded(
        &self,
        _params: &mut [SgdTensors<'_, Self>],
        _cfg: SgdConfig,
        _lr: &Tensor<Self>,
        _guard: &usize,
    ) -> Result<()> {
        Ok(())
    }

    fn sgd_update(
        &self,
        _w: &mut Tensor<Self>,
        _g: &Tensor<Self>,
        _v: &mut Tensor<Self>,
        _cfg: SgdConfig,
    ) -> Result<()> {
        Ok(())
    }
}
