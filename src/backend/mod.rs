//! The one seam between the model and the devices.
//!
//! `Backend` is a trait of coarse ops: exactly what a ResNet training step needs. Its methods are raw:
//! they trust that shapes were validated. Callers go through [`crate::ops`], which checks every shape
//! and argument once for all backends and names the tensor at fault, so no backend can read or write
//! out of bounds because of a bad call.

mod conv_tuning;
pub mod cpu;
mod device_counts;
mod dtype;
mod element;
pub mod gpu;
mod kernel_times;

pub use conv_tuning::ConvTuningRecord;
pub use device_counts::{DeviceCounters, DeviceCounts};
pub use dtype::{DType, Precision};
pub use element::Element;
pub use kernel_times::{kernel_rows, KernelRow, KernelTime};

/// Floats per sample in [`Backend::image_batch`]'s draw table: image, dy, dx, mirror and the
/// three channels' colour shift (kernels/launch_constants.h).
pub const IMAGE_DRAW_WIDTH: usize = gpu::launch_constants::IMAGE_DRAW_WIDTH as usize;

use crate::error::Result;
use crate::tensor::Tensor;

/// Stride and zero padding of a 2-D convolution; the kernel size comes from the weight's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dGeometry {
    pub fn new(stride: usize, pad: usize) -> Self {
        Conv2dGeometry { stride, pad }
    }

    /// Output extent along one axis: `floor((in + 2 pad - k) / stride) + 1`, or `None` when the
    /// kernel does not fit.
    pub fn output_extent(&self, input: usize, kernel: usize) -> Option<usize> {
        let padded = input + 2 * self.pad;
        if self.stride == 0 || padded < kernel {
            return None;
        }
        Some((padded - kernel) / self.stride + 1)
    }
}

/// Window, stride and padding of a max pool (ResNet's is 3, 2, 1). Padding never wins the max.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub window: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolGeometry {
    pub fn output_extent(&self, input: usize) -> Option<usize> {
        Conv2dGeometry::new(self.stride, self.pad).output_extent(input, self.window)
    }
}

/// Batch-norm constants. PyTorch's conventions: `eps = 1e-5`, `momentum = 0.1` with
/// `running = (1 - momentum) running + momentum batch`, and the unbiased batch variance in the running
/// variance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    pub eps: f64,
    pub momentum: f64,
    pub relu: bool,
}

/// SGD hyper-parameters, PyTorch's update: `v = momentum v + (g + weight_decay w)`, `w -= lr v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// What softmax cross-entropy reports besides the logit gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossStats {
    /// Mean over the batch of `-log softmax(logits)[label]`.
    pub loss: f64,
    /// Samples whose label has the largest logit.
    pub top1_correct: usize,
    /// Samples whose label is among the five largest logits.
    pub top5_correct: usize,
}

/// The loss statistics of the steps since a [`LossRecord`](Backend::LossRecord) was last read
/// ([`Backend::read_loss_record`]), oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordedLosses {
    pub steps: Vec<LossStats>,
    /// Index in `steps` of the first step whose loss was not finite. From that step on, every
    /// guarded SGD update ([`Backend::sgd_update_many_guarded`]) was skipped on the device.
    pub first_non_finite: Option<usize>,
}

/// A training step captured once and replayed as one launch ([`Backend::end_graph_capture`]): a CUDA
/// graph on a GPU, a recording under the emulator. It replays the ops exactly as they were issued,
/// with the same device addresses, so every buffer the step used must stay where it is while the
/// graph exists (a shape change, which reallocates, calls for a new capture).
#[derive(Debug, PartialEq, Eq)]
pub struct StepGraph {
    /// The driver's number for it.
    pub id: u64,
    /// Kernels a replay runs (its copies and memsets not counted, on a GPU as in the emulator).
    pub nodes: usize,
}

/// What batch norm's backward pass reads of its training-mode forward: the per-channel statistics
/// it saved and the shift `beta` it applied. With `gamma`, they give the value the fused ReLU
/// clamped, `gamma (x - mean) inv_std + beta`, whose sign is the ReLU's mask: a backend may take
/// the mask from it (reading `x`) rather than from `y`.
pub struct BatchNormSaved<'a, B: Backend> {
    pub mean: &'a Tensor<B>,
    pub inv_std: &'a Tensor<B>,
    pub beta: &'a Tensor<B>,
}

/// A device: memory plus the op set of a ResNet training step. Raw methods, see the module doc.
///
/// Layouts: activations `[N, H, W, C]`, convolution weights `[K, R, S, C]`, linear weights
/// `[out, in]` (PyTorch's), per-channel vectors `[C]`.
pub trait Backend: Sized + Send + Sync + 'static {
    type Elem: Element;
    type Buffer: Send + Sync;
    /// Where [`Backend::softmax_cross_entropy`] leaves each step's loss statistics: device memory
    /// on a GPU, so that a training step needs no host synchronisation; the host reads them when it
    /// needs them ([`Backend::read_loss_record`]), and the guarded SGD update reads its
    /// non-finite-loss flag there.
    type LossRecord: Send + Sync;
    /// A dataset's images kept on the device as bytes, with their labels
    /// ([`Backend::upload_images`]), so that each batch is built there ([`Backend::image_batch`])
    /// from a table of draws a few bytes long instead of crossing from the host as floats.
    type ImageStore: Send + Sync;

    /// A short human name, such as `cpu-f32`.
    fn name(&self) -> String;

    /// The element type `buf` holds now (see [`DType`]): `Elem`'s on a backend that stores one type.
    fn dtype(&self, _buf: &Self::Buffer) -> DType {
        Self::Elem::DTYPE
    }
    /// The element type the ops store activations and their gradients in: `Elem`'s, or bf16 on a
    /// GPU backend computing in mixed precision. Parameters, gradients of parameters, statistics and
    /// the classifier's head stay in `Elem`.
    fn activation_dtype(&self) -> DType {
        Self::Elem::DTYPE
    }

    /// Converts `t` to the activation type (see [`Backend::activation_dtype`]), so that uploaded
    /// values can stand for an activation or an activation's gradient; nothing to do on a backend
    /// that stores one type.
    fn to_activation_dtype(&self, _t: &mut Tensor<Self>) -> Result<()> {
        Ok(())
    }

    fn alloc_zeros(&self, len: usize) -> Result<Self::Buffer>;
    fn upload(&self, src: &[Self::Elem], dst: &mut Self::Buffer) -> Result<()>;
    fn download(&self, src: &Self::Buffer, dst: &mut [Self::Elem]) -> Result<()>;
    /// Waits until every op issued so far has finished.
    fn synchronize(&self) -> Result<()>;

    /// Kernel launches, host synchronisations and allocations so far, on a device backend that
    /// counts them (the GPU backend); `None` for the CPU.
    fn device_counts(&self) -> Option<DeviceCounts> {
        None
    }
    /// Starts (`on`) or stops timing every kernel launch by itself on the device, for
    /// [`Backend::take_kernel_times`]; returns whether this backend can (a GPU backend; the CPU
    /// cannot). Timing serialises each launch with its neighbours, so a timed step runs slower.
    fn set_kernel_timing(&self, _on: bool) -> Result<bool> {
        Ok(false)
    }
    /// The launches timed since timing began or the last take, in issue order; waits for the
    /// device.
    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        Ok(Vec::new())
    }
    /// What the backend's convolution tuning timed and kept so far, in the order it tuned
    /// (`RESNET_CONV_TUNING=1` on a GPU backend); empty where it does not tune.
    fn conv_tuning_records(&self) -> Vec<ConvTuningRecord> {
        Vec::new()
    }
    /// Takes over the choices `other`'s convolution tuning has made, so that this backend runs
    /// the same launches for those passes without timing them (a GPU backend; nothing elsewhere).
    fn adopt_conv_tuning(&self, _other: &Self) {}
    /// Whether [`Backend::begin_graph_capture`] can work here (a GPU backend: CUDA or the
    /// emulator).
    fn supports_graphs(&self) -> bool {
        false
    }
    /// Starts capturing: the ops issued from now until [`Backend::end_graph_capture`] are recorded,
    /// not run. They must not touch host memory or allocate (a capture fails if they do): inputs are
    /// uploaded to their buffers before, results read after.
    fn begin_graph_capture(&self) -> Result<()> {
        Err(crate::error::Error::Config(format!(
            "{} cannot capture a step as a graph",
            self.name()
        )))
    }
    /// Ends the capture and returns the graph, not yet run. After a failed capture nothing was run
    /// either, and the backend is out of capture mode.
    fn end_graph_capture(&self) -> Result<StepGraph> {
        Err(crate::error::Error::Config(format!(
            "{} cannot capture a step as a graph",
            self.name()
        )))
    }
    /// Runs a captured graph once, in stream order with the ops around it.
    fn replay_graph(&self, _graph: &StepGraph) -> Result<()> {
        Err(crate::error::Error::Config(format!(
            "{} cannot replay a graph",
            self.name()
        )))
    }
    /// Frees a graph (launches already issued still run).
    fn drop_graph(&self, _graph: StepGraph) {}

    /// Whether training batches should be built on this device from images uploaded once
    /// ([`Backend::upload_images`]) rather than on the host: true on a GPU, where it takes the
    /// host's decoding, normalisation and upload out of every step.
    fn builds_batches_on_device(&self) -> bool {
        false
    }
    /// Keeps `labels.len()` images on the device: `pixels` is `[count, H, W, 3]` u8 (HWC each),
    /// `labels[i]` image `i`'s class.
    fn upload_images(&self, pixels: &[u8], labels: &[u32]) -> Result<Self::ImageStore>;
    /// Replaces the images and labels of `images` with as many others (a batch that changes every
    /// step, such as the ImageNet loader's decoded views).
    fn refill_images(
        &self,
        images: &mut Self::ImageStore,
        pixels: &[u8],
        labels: &[u32],
    ) -> Result<()>;
    /// Builds a batch `x: [B, H, W, 3]` and its `labels: [B]` (exact floats, as
    /// `ops::upload_labels` stores them) from the `count` images of `images`. Row `b` of
    /// `draws: [B, IMAGE_DRAW_WIDTH]` holds an image index `i`, a crop offset `(dy, dx)` and a
    /// mirror flag `f` (exact integers), and a colour shift `s`; with
    /// `x' = (f ? W - 1 - x : x) + dx` and `y' = y + dy`,
    /// `x[b, y, x, c] = (images[i, y', x', c] / 255 + s[c]) - mean[y', x', c]` where `(y', x')`
    /// lies in the image and 0 elsewhere, and `labels[b] = label[i]`: the paper's CIFAR
    /// pad-crop-mirror augmentation after normalisation, plain normalisation with
    /// `(i, 0, 0, 0, 0, 0, 0)`, an ImageNet view with its PCA colour shift. The values equal the
    /// host's (`data::batch::fill_batch_with_views`, `data::imagenet::normalise_view`) bit for
    /// bit, stored in the activation type.
    fn image_batch(
        &self,
        images: &Self::ImageStore,
        count: usize,
        draws: &Tensor<Self>,
        mean: &Tensor<Self>,
        x: &mut Tensor<Self>,
        labels: &mut Tensor<Self>,
    ) -> Result<()>;

    /// `dst = src` (same element count).
    fn copy(&self, src: &Tensor<Self>, dst: &mut Tensor<Self>) -> Result<()>;

    /// `y[n,p,q,k] = sum_{r,s,c} x[n, p*stride - pad + r, q*stride - pad + s, c] * w[k,r,s,c]`
    /// (out-of-range input reads are zero).
    fn conv2d_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()>;
    /// `dx = d(loss)/dx` given `dy`: the transpose of the forward map, applied to `dy`.
    fn conv2d_backward_data(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()>;
    /// `dx = conv2d_backward_data(dy, w) + addend`: the input gradient of a residual block's first
    /// convolution with the shortcut's gradient summed in. Bit-identical to the two ops it stands
    /// for; a backend that cannot fuse them runs them (the default), with `scratch` (shaped as
    /// `dx`) holding the convolution's part. Its contents afterwards are unspecified.
    fn conv2d_backward_data_add(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        addend: &Tensor<Self>,
        scratch: &mut Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        self.conv2d_backward_data(dy, w, scratch, geom)?;
        self.add_forward(scratch, addend, dx, false)
    }
    /// `dw[k,r,s,c] = sum_{n,p,q} dy[n,p,q,k] * x[n, p*stride - pad + r, q*stride - pad + s, c]`.
    fn conv2d_backward_filter(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()>;

    // Batch-norm statistics from the convolution's epilogue (a conv -> training-mode BN pair).
    // Three ops rather than one conv+BN op: the convolution and the batch norm stay separate calls
    // (each layer keeps calling its own op), and what passes between them is one buffer of
    // statistics partials that the layer owns, sized by `conv2d_stats_len` and allocated once, so
    // a step (a captured graph) allocates nothing. A backend without the fusion (the default: the
    // CPU, the f32 GPU path) answers `None` and its layers run the plain ops, paying nothing. The
    // layout of the partials is the backend's business; `ops` checks their length and type.

    /// The number of `Elem` values of the statistics partials [`Backend::conv2d_forward_with_stats`]
    /// writes for a convolution whose output has shape `y` (NHWC), or `None` (the default) when
    /// this backend does not compute batch-norm statistics in its convolutions: BN then reads its
    /// input for them.
    fn conv2d_stats_len(&self, _y: &[usize; 4]) -> Option<usize> {
        None
    }
    /// `conv2d_forward`, and from the same pass the per-channel batch-norm statistics partials of
    /// `y` as stored, into `stats` (`conv2d_stats_len(y)` values), for
    /// [`Backend::batch_norm_forward_train_from_stats`] on `y`. Only for a backend whose
    /// `conv2d_stats_len` is `Some` (the default is an error).
    fn conv2d_forward_with_stats(
        &self,
        _x: &Tensor<Self>,
        _w: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        _stats: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Err(no_conv_stats(self))
    }
    /// `batch_norm_forward_train` (without `residual`) or `batch_norm_add_forward_train` (with it:
    /// `out = BN(x) + residual`, then ReLU when `cfg.relu`) with the same outputs, but the batch
    /// statistics taken from `stats`, which `conv2d_forward_with_stats` wrote as it wrote `x`,
    /// rather than from reading `x`. Only for a backend whose `conv2d_stats_len` is `Some` (the
    /// default is an error).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_forward_train_from_stats(
        &self,
        _x: &Tensor<Self>,
        _stats: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _beta: &Tensor<Self>,
        _residual: Option<&Tensor<Self>>,
        _out: &mut Tensor<Self>,
        _save_mean: &mut Tensor<Self>,
        _save_inv_std: &mut Tensor<Self>,
        _running_mean: &mut Tensor<Self>,
        _running_var: &mut Tensor<Self>,
        _cfg: BatchNormConfig,
    ) -> Result<()> {
        Err(no_conv_stats(self))
    }

    // Batch-norm backward partials from the convolution's backward-data epilogue (a BN, its ReLU,
    // then a convolution: BN's output gradient is the convolution's input gradient): the
    // convolution writes that gradient, already masked by the ReLU, and from the same pass BN's
    // per-channel sums of it, so BN's backward does not read the gradient for them (nor, at a
    // residual block's end, the block's output for the mask). As with the forward statistics, two
    // ops that each layer keeps calling, joined by one buffer of partials (sized by
    // `conv2d_bn_grad_len`, owned by the BN's layer); a backend without the fusion answers `None`
    // and the plain ops run.

    /// The number of `Elem` values of the partials [`Backend::conv2d_backward_data_with_bn_grad`]
    /// writes for a convolution with weights `w` and geometry `geom` whose input (BN's output) has
    /// shape `x`, or `None` (the default) when this backend does not fuse them for that shape.
    fn conv2d_bn_grad_len(
        &self,
        _x: &[usize; 4],
        _w: &[usize; 4],
        _geom: Conv2dGeometry,
    ) -> Option<usize> {
        None
    }
    /// `g = (conv2d_backward_data(dy, w) [+ addend]) * mask -> dz` (the addend summed in before the
    /// one rounding, as `conv2d_backward_data_add` does; the mask exact: `g` is the sum or `+0`),
    /// and, from the same pass, into `partials` (`conv2d_bn_grad_len` values), the backward partial
    /// sums of the training-mode batch norm (input `bn_x`, its forward's `saved` statistics and
    /// `gamma`) whose output gradient `g` is, for [`Backend::batch_norm_backward_from_partials`].
    /// Only for a backend whose `conv2d_bn_grad_len` is `Some` for the shape (the default is an
    /// error).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward_data_with_bn_grad(
        &self,
        _dy: &Tensor<Self>,
        _w: &Tensor<Self>,
        _addend: Option<&Tensor<Self>>,
        _dz: &mut Tensor<Self>,
        _bn_x: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _saved: BatchNormSaved<'_, Self>,
        _mask: BnGradMask<'_, Self>,
        _partials: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Err(no_bn_grad_fusion(self))
    }
    /// `batch_norm_backward(x, dy, ...)` (no `y`: BN's own ReLU mask comes from `x` and `saved`)
    /// with its per-channel sums taken from `partials`, which
    /// `conv2d_backward_data_with_bn_grad` wrote as it wrote `dy`. Only for a backend whose
    /// `conv2d_bn_grad_len` is `Some` (the default is an error).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward_from_partials(
        &self,
        _x: &Tensor<Self>,
        _dy: &Tensor<Self>,
        _partials: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _saved: BatchNormSaved<'_, Self>,
        _dx: &mut Tensor<Self>,
        _dgamma: &mut Tensor<Self>,
        _dbeta: &mut Tensor<Self>,
        _relu: bool,
    ) -> Result<()> {
        Err(no_bn_grad_fusion(self))
    }

    // Batch norm's normalise + ReLU in the next convolution's operand load (a conv -> BN + ReLU ->
    // conv chain inside a residual block): the first BN computes its statistics only
    // (`batch_norm_statistics_from_stats`), and the convolution after it reads BN's input `x` and
    // applies BN's affine map and ReLU as it stages its operand, in its forward and again in its
    // backward-filter, so that BN's output is never stored. Its backward-data needs no input; BN's
    // backward takes its ReLU mask from `x` (a backend offering this must: `y` is never written).
    // A backend without the fusion (the default) answers `false` and the plain ops run.

    /// Whether this backend runs a convolution with weights `w` and geometry `geom` on the output,
    /// of shape `x`, of a training-mode batch norm with ReLU, applied as it loads (the default: no).
    fn conv2d_bn_input_fusion(
        &self,
        _x: &[usize; 4],
        _w: &[usize; 4],
        _geom: Conv2dGeometry,
    ) -> bool {
        false
    }
    /// `conv2d_forward_with_stats(relu(BN(x)), w)` where `BN` is the training-mode batch norm of
    /// `bn` (its forward's saved statistics and parameters), its output computed from `x` as the
    /// convolution loads it and never stored; bit for bit the convolution of the stored output.
    /// Only where `conv2d_bn_input_fusion` is true (the default is an error).
    fn conv2d_forward_with_stats_bn_input(
        &self,
        _x: &Tensor<Self>,
        _bn: BnMap<'_, Self>,
        _w: &Tensor<Self>,
        _y: &mut Tensor<Self>,
        _stats: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Err(no_bn_input_fusion(self))
    }
    /// `conv2d_backward_filter(relu(BN(x)), dy)` with BN's output computed from `x` as loaded, as
    /// [`Backend::conv2d_forward_with_stats_bn_input`]. Only where `conv2d_bn_input_fusion` is true
    /// (the default is an error).
    fn conv2d_backward_filter_bn_input(
        &self,
        _x: &Tensor<Self>,
        _bn: BnMap<'_, Self>,
        _dy: &Tensor<Self>,
        _dw: &mut Tensor<Self>,
        _geom: Conv2dGeometry,
    ) -> Result<()> {
        Err(no_bn_input_fusion(self))
    }
    /// `batch_norm_forward_train_from_stats` without the output: the batch statistics (`save_mean`,
    /// `save_inv_std`) and the running averages only, for a batch norm whose output the next
    /// convolution computes as it loads it. Only for a backend whose `conv2d_stats_len` is `Some`
    /// (the default is an error).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_statistics_from_stats(
        &self,
        _x: &Tensor<Self>,
        _stats: &Tensor<Self>,
        _save_mean: &mut Tensor<Self>,
        _save_inv_std: &mut Tensor<Self>,
        _running_mean: &mut Tensor<Self>,
        _running_var: &mut Tensor<Self>,
        _cfg: BatchNormConfig,
    ) -> Result<()> {
        Err(no_conv_stats(self))
    }

    /// Whether this backend's block end can apply its shortcut's batch norm as it reads the
    /// shortcut's convolution output ([`Backend::batch_norm_add_bn_forward_train_from_stats`]), so
    /// that the shortcut's BN computes its statistics only (`batch_norm_statistics_from_stats`);
    /// the default: no.
    fn batch_norm_residual_bn_fusion(&self) -> bool {
        false
    }
    /// `batch_norm_forward_train_from_stats` with the residual `BN_r(r)`: the training-mode batch
    /// norm `r_bn` (no ReLU) of `r`, computed from `r` as it is read and rounded as BN_r's forward
    /// would have stored it, so bit for bit BN_r's normalising pass followed by this op. Only where
    /// `batch_norm_residual_bn_fusion` is true (the default is an error).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_add_bn_forward_train_from_stats(
        &self,
        _x: &Tensor<Self>,
        _stats: &Tensor<Self>,
        _gamma: &Tensor<Self>,
        _beta: &Tensor<Self>,
        _r: &Tensor<Self>,
        _r_bn: BnMap<'_, Self>,
        _out: &mut Tensor<Self>,
        _save_mean: &mut Tensor<Self>,
        _save_inv_std: &mut Tensor<Self>,
        _running_mean: &mut Tensor<Self>,
        _running_var: &mut Tensor<Self>,
        _cfg: BatchNormConfig,
    ) -> Result<()> {
        Err(no_residual_bn_fusion(self))
    }

    /// Training-mode batch norm over N, H, W per channel:
    /// `y = gamma (x - mean) / sqrt(var + eps) + beta` (then `max(y, 0)` when `cfg.relu`), with the
    /// biased batch variance; writes `save_mean`, `save_inv_std = 1/sqrt(var + eps)` and updates the
    /// running statistics (unbiased variance).
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;
    /// `out = batch_norm_forward_train(x) + residual`, then `max(out, 0)` when `cfg.relu`: the end
    /// of a residual block, the ReLU after the sum rather than inside BN. Statistics as
    /// `batch_norm_forward_train`. Bit-identical to the two ops it stands for; a backend that
    /// cannot fuse them runs them (the default), with `scratch` (shaped as `x`) holding BN's output.
    /// Its contents afterwards are unspecified.
    #[allow(clippy::too_many_arguments)]
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
        let bn_cfg = BatchNormConfig { relu: false, ..cfg };
        self.batch_norm_forward_train(
            x,
            gamma,
            beta,
            scratch,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            bn_cfg,
        )?;
        self.add_forward(scratch, residual, out, cfg.relu)
    }
    /// Inference-mode batch norm with the running statistics (then ReLU when `cfg.relu`).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_forward_infer(
        &self,
        x: &Tensor<Self>,
        gamma: &Tensor<Self>,
        beta: &Tensor<Self>,
        running_mean: &Tensor<Self>,
        running_var: &Tensor<Self>,
        y: &mut Tensor<Self>,
        cfg: BatchNormConfig,
    ) -> Result<()>;
    /// Backward of training-mode batch norm (and of its fused ReLU when `relu`, masking `dy` by
    /// `y > 0`, equivalently by `gamma xhat + beta > 0`: see `BatchNormSaved`). With
    /// `g = dy * [y > 0]`, `xhat = (x - mean) inv_std`, `M = N H W`:
    /// `dbeta = sum g`, `dgamma = sum g xhat`, `dx = gamma inv_std / M (M g - dbeta - xhat dgamma)`.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;

    /// Backward of `out = relu(BN(x) + residual)`, the end of a residual block (its forward:
    /// `batch_norm_add_forward_train` with the ReLU): `dsum = dout * [out > 0]`, the gradient of
    /// the sum and so of `residual`, and BN's backward of `dsum` (no ReLU of its own) into `dx`,
    /// `dgamma` and `dbeta`. The default is `add_backward`, then `batch_norm_backward`; a GPU
    /// backend does both in BN's two passes, with the same result bit for bit.
    #[allow(clippy::too_many_arguments)]
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
        self.add_backward(out, dout, dsum, true)?;
        self.batch_norm_backward(x, out, dsum, gamma, saved, dx, dgamma, dbeta, false)
    }

    /// `y = a + b`, then `max(y, 0)` when `relu`.
    fn add_forward(
        &self,
        a: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()>;
    /// Backward of `add_forward`: both inputs receive `dy * [y > 0]` (or `dy` without ReLU).
    fn add_backward(
        &self,
        y: &Tensor<Self>,
        dy: &Tensor<Self>,
        dsum: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()>;

    /// Option-A shortcut: `y[n,p,q,c] = x[n, p*stride, q*stride, c]` for `c < C_in`, zero for the added
    /// channels.
    fn shortcut_a_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()>;
    /// Its transpose: `dx[n, p*stride, q*stride, c] = dy[n,p,q,c]`, zero elsewhere.
    fn shortcut_a_backward(
        &self,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()>;

    /// `y[n,c] = mean_{h,w} x[n,h,w,c]`.
    fn global_avg_pool_forward(&self, x: &Tensor<Self>, y: &mut Tensor<Self>) -> Result<()>;
    /// `dx[n,h,w,c] = dy[n,c] / (H W)`.
    fn global_avg_pool_backward(&self, dy: &Tensor<Self>, dx: &mut Tensor<Self>) -> Result<()>;

    /// `y[n,p,q,c] = max` over the window of in-range `x`.
    fn max_pool_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()>;
    /// Routes each `dy` to the first maximum of its window (row-major order), summing where windows
    /// overlap.
    fn max_pool_backward(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()>;

    // Max pooling of a training-mode batch norm's output with its ReLU (the ImageNet stem: conv ->
    // BN + ReLU -> max pool), computed from BN's input `x` at each tap as the windows read it, so
    // that BN's output is never stored (BN computes its statistics only,
    // `batch_norm_statistics_from_stats`). BN's backward takes its ReLU mask from `x`, as for a
    // convolution applying it: a backend offering this must, `y` being never written. A backend
    // without the fusion (the default) answers `false`.

    /// Whether this backend pools a training-mode batch norm's output as it reads it (default: no).
    fn max_pool_bn_input_fusion(&self) -> bool {
        false
    }
    /// `max_pool_forward(relu(BN(x)))`, `BN` as in `bn`; bit for bit the pooling of the stored
    /// output. Only where `max_pool_bn_input_fusion` is true (the default is an error).
    fn max_pool_forward_bn_input(
        &self,
        _x: &Tensor<Self>,
        _bn: BnMap<'_, Self>,
        _y: &mut Tensor<Self>,
        _geom: PoolGeometry,
    ) -> Result<()> {
        Err(no_bn_input_fusion(self))
    }
    /// The length of the `partials` that `max_pool_backward_bn_input` can fill for an input of
    /// shape `x`, or `None` where it cannot (the default).
    fn max_pool_bn_grad_len(&self, _x: &[usize; 4], _geom: PoolGeometry) -> Option<usize> {
        None
    }
    /// `max_pool_backward(relu(BN(x)), dy)`: `dx` is the gradient with respect to BN's output (what
    /// BN's backward takes). With `partials` (`max_pool_bn_grad_len` values), also that BN's
    /// backward partial sums from the same pass, for [`Backend::batch_norm_backward_from_partials`],
    /// as `conv2d_backward_data_with_bn_grad` gives them (`dx` itself stays unmasked). Only where
    /// `max_pool_bn_input_fusion` is true (default: an error).
    fn max_pool_backward_bn_input(
        &self,
        _x: &Tensor<Self>,
        _bn: BnMap<'_, Self>,
        _dy: &Tensor<Self>,
        _dx: &mut Tensor<Self>,
        _partials: Option<&mut Tensor<Self>>,
        _geom: PoolGeometry,
    ) -> Result<()> {
        Err(no_bn_input_fusion(self))
    }

    /// `y = x w^T + b` with `x: [N, in]`, `w: [out, in]`, `b: [out]`.
    fn linear_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
    ) -> Result<()>;
    /// `dx = dy w` (when asked), `dw = dy^T x`, `db = sum_n dy`.
    fn linear_backward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: Option<&mut Tensor<Self>>,
        dw: &mut Tensor<Self>,
        db: &mut Tensor<Self>,
    ) -> Result<()>;

    /// A loss record with room for `capacity` steps between two reads (at least 1).
    fn loss_record(&self, capacity: usize) -> Result<Self::LossRecord>;
    /// Mean softmax cross-entropy of `logits: [N, classes]` against `labels: [N]` (class indices,
    /// held as exact floats, uploaded by `ops::upload_labels`); writes
    /// `dlogits = (softmax(logits) - onehot(label)) / N` and appends the step's [`LossStats`] to
    /// `record` without waiting for the device. A label out of range gives a NaN loss.
    fn softmax_cross_entropy(
        &self,
        logits: &Tensor<Self>,
        labels: &Tensor<Self>,
        dlogits: &mut Tensor<Self>,
        record: &mut Self::LossRecord,
    ) -> Result<()>;
    /// Waits for the device and returns the statistics `record` received since its last read (at
    /// most its capacity: more is an error), then empties it, clearing its non-finite flag.
    fn read_loss_record(&self, record: &mut Self::LossRecord) -> Result<RecordedLosses>;

    /// One SGD step on one parameter: `v = momentum v + (g + wd w)`, `w -= lr v`.
    fn sgd_update(
        &self,
        w: &mut Tensor<Self>,
        g: &Tensor<Self>,
        v: &mut Tensor<Self>,
        cfg: SgdConfig,
    ) -> Result<()>;
    /// `sgd_update` on every parameter of `params`, bit-identical to one call each (the default). A
    /// device backend does them all in one launch: a training step has one update per parameter
    /// tensor, 60 to 160 of them in the ResNets, each too small to be worth a launch of its own.
    fn sgd_update_many(&self, params: &mut [SgdTensors<'_, Self>], cfg: SgdConfig) -> Result<()> {
        for p in params.iter_mut() {
            self.sgd_update(p.w, p.g, p.v, cfg)?;
        }
        Ok(())
    }
    /// `sgd_update_many` with the learning rate read from `lr` (`[1]`, on the device) rather than
    /// `cfg.lr`, and nothing done when `guard` has recorded a non-finite loss since its last read:
    /// the device decides, so the step needs no host synchronisation, and a schedule change is a
    /// write to `lr`, not a different launch. Bit-identical to `sgd_update_many` with that rate.
    fn sgd_update_many_guarded(
        &self,
        params: &mut [SgdTensors<'_, Self>],
        cfg: SgdConfig,
        lr: &Tensor<Self>,
        guard: &Self::LossRecord,
    ) -> Result<()>;
}

/// The error of the statistics ops on a backend whose `conv2d_stats_len` is `None`.
pub(crate) fn no_conv_stats<B: Backend>(be: &B) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "{} does not compute batch-norm statistics in its convolutions",
        be.name()
    ))
}

/// The ReLU between a batch norm and the convolution whose backward-data computes the BN's backward
/// sums ([`Backend::conv2d_backward_data_with_bn_grad`]): what masks the BN's output gradient.
pub enum BnGradMask<'a, B: Backend> {
    /// No ReLU.
    None,
    /// BN's own ReLU: the sign of its forward affine map of `x` (see [`BatchNormSaved`]).
    Own,
    /// A residual block's end, `y = relu(BN(x) + s)`: `y > 0`, `y` given.
    Output(&'a Tensor<B>),
}

pub(crate) fn no_bn_grad_fusion<B: Backend>(be: &B) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "{} does not compute batch-norm backward sums in its convolutions",
        be.name()
    ))
}

/// A training-mode batch norm's affine map, `gamma (x - mean) inv_std + beta` from its forward's
/// saved statistics, for an op that applies it to BN's input as it reads it, instead of reading the
/// BN's stored output: a convolution, with BN's ReLU
/// ([`Backend::conv2d_forward_with_stats_bn_input`]), max pooling, likewise
/// ([`Backend::max_pool_forward_bn_input`]), or a block's end, to its shortcut
/// ([`Backend::batch_norm_add_bn_forward_train_from_stats`]).
pub struct BnMap<'a, B: Backend> {
    pub gamma: &'a Tensor<B>,
    pub saved: BatchNormSaved<'a, B>,
}

pub(crate) fn no_residual_bn_fusion<B: Backend>(be: &B) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "{} does not apply a residual's batch norm as a block's end reads it",
        be.name()
    ))
}

pub(crate) fn no_bn_input_fusion<B: Backend>(be: &B) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "{} does not apply batch norm as its convolutions or max pooling read their input",
        be.name()
    ))
}

/// One parameter's tensors for [`Backend::sgd_update_many`]: its value, gradient and momentum.
pub struct SgdTensors<'a, B: Backend> {
    pub w: &'a mut Tensor<B>,
    pub g: &'a Tensor<B>,
    pub v: &'a mut Tensor<B>,
}
