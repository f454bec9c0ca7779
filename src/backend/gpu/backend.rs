//! The GPU backend: one implementation of [`Backend`] over any [`Driver`].
//!
//! The launch decisions are shared by the CUDA and emulator drivers: which kernels run, their grid,
//! block and shared-memory sizes, the workspaces they need and their argument lists. This file holds
//! the backend, its launch and workspace helpers and the `Backend` implementation, which dispatches on
//! the precision; the op families live beside it: `memory.rs`, `convolution.rs` (f32) and
//! `bf16_convolution.rs`, `batch_norm.rs` and `memory_bound.rs` (add, shortcut, pooling; both
//! precisions through a table of kernels), `image_batch.rs` (batches built from bytes), `head.rs`
//! (the classifier's GEMM), `loss_record.rs`, `optimiser.rs` (SGD) and `graph.rs`. The kernels are
//! in `kernels/*.cu`; each launch names its kernel and file, whose header states the math.
//!
//! Workspaces (batch-norm partial sums, labels, per-sample losses) come from a small pool of device
//! buffers kept by the backend, so a training step with a fixed batch shape allocates nothing after its
//! first step. Ops run in stream order, so one workspace per op at a time is enough.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::batch_norm::StatisticsSource;
use super::bf16_launch::{self as bf16_plan, Launch};
use super::buffer::Allocation;
pub use super::buffer::DeviceBuffer;
use super::conv_plan::ConvShape;
use super::conv_tc_plan::{self, TcFamily};
use super::conv_tuning::{tuning_from_env, ConvTuner};
use super::conv_tuning_file::TuningFile;
use super::convolution::{conv_shape, dims4, direct_conv_args};
use super::head::Gemm;
use super::optimiser::SgdTable;

use super::bf16_convolution::BnGradInput;
use super::cuda_driver::CudaDriver;
use super::driver::{open_driver, DevicePtr, Driver, DynDriver, EmuDriver};
use super::launch::{grid_1d, KernelArgs};
use super::launch_constants::LOSS_REDUCE_THREADS;
use super::loss_record::GpuLossRecord;
use crate::backend::{
    no_conv_stats, Backend, BatchNormConfig, BatchNormSaved, BnGradMask, BnMap, Conv2dGeometry,
    ConvTuningRecord, DType, DeviceCounters, DeviceCounts, KernelTime, PoolGeometry, Precision,
    RecordedLosses, SgdConfig, SgdTensors, StepGraph,
};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const F32: usize = std::mem::size_of::<f32>();
/// Workspace sub-allocations start at multiples of this many bytes.
const WORKSPACE_ALIGN: usize = 256;
/// A kernel every build of the wgmma family has: where it is missing, none are.
const WGMMA_PROBE_KERNEL: &str = "conv2d_wgmma_forward_128x128_bf16";

/// The GPU backend over driver `D`, computing in `precision` (see [`Precision`]).
pub struct GpuBackend<D: Driver> {
    pub(super) driver: Arc<D>,
    /// Reusable workspaces, see the module doc.
    workspaces: Mutex<Vec<Allocation<D>>>,
    pub(super) convs: ConvKernels,
    pub(super) counters: DeviceCounters,
    pub(super) precision: Precision,
    /// The bf16 convolutions' kernel family (`RESNET_TC_KERNELS`, read when the backend is made; a
    /// bad value is reported by the first bf16 convolution).
    pub(super) tc_family: std::result::Result<TcFamily, String>,
    /// Whether bf16 backward-data convolutions compute the backward sums of the BN before them
    /// (`Backend::conv2d_bn_grad_len`): on, unless `RESNET_FUSE_BN_GRAD=0` when the backend is made
    /// (to measure what the fusion is worth).
    pub(super) fuse_bn_grad: bool,
    /// Whether a bf16 convolution after a BN + ReLU inside a block applies that BN as it loads its
    /// input (`Backend::conv2d_bn_input_fusion`), and so do a block's end to its shortcut's BN and
    /// the stem's max pool to the stem's: on, unless `RESNET_FUSE_BN_INPUT=0` when the backend is
    /// made (to measure what the fusion is worth).
    pub(super) fuse_bn_input: bool,
    /// Whether the convolutions fed by TMA on both operands run with their producer
    /// (`TcLaunch::producer_threads`): on, unless `RESNET_TMA_PRODUCER=0` when the backend is made (to
    /// time the pipeline without it, whose blocks are smaller: kernels/conv_wgmma.cuh).
    pub(super) tma_producer: bool,
    /// Whether the bf16 convolutions are tuned (`RESNET_CONV_TUNING`, read when the backend is
    /// made; a bad value is reported by the first bf16 convolution), and what the tuner chose
    /// (conv_tuning.rs).
    pub(super) conv_tuning: std::result::Result<bool, String>,
    pub(super) tuner: ConvTuner,
    /// Where the tuning's choices are kept between processes (`RESNET_CONV_TUNING_FILE`), if
    /// anywhere (conv_tuning_file.rs).
    pub(super) tuning_file: Option<TuningFile>,
    /// Whether kernel timing is on for a profile (`Backend::set_kernel_timing`): the tuner then
    /// leaves the timing records alone.
    pub(super) kernel_timing: AtomicBool,
    /// The chunk table of the last `sgd_update_many`. The parameters of a training run never move,
    /// so it is built and uploaded once; a step only compares the parameter list.
    pub(super) sgd_table: Mutex<Option<SgdTable<D>>>,
    /// Graph capture state (see `graph.rs`): whether a capture is under way, how many captured
    /// graphs exist, and the workspaces outgrown while one did (a graph keeps using the addresses it
    /// captured, so they are freed only with the last graph).
    pub(super) capturing: AtomicBool,
    pub(super) graphs_alive: AtomicUsize,
    pub(super) retired_workspaces: Mutex<Vec<Allocation<D>>>,
    /// Uploads of at most `small_uploads::SLOT_BYTES` go through page-locked memory (made at the
    /// first), so that a step's per-step inputs never make the host wait.
    pub(super) small_uploads: Mutex<Option<super::small_uploads::SmallUploads<D>>>,
}

/// Which convolution kernels the backend launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernels {
    /// The tiled implicit-GEMM kernels (kernels/conv_*.cu): the fast path, and the default.
    ImplicitGemm,
    /// One thread per output element (kernels/direct_conv_reference.cu): slow and plain, kept as
    /// the GPU-side reference the fast f32 kernels are checked against. f32 only: in bf16 the
    /// tensor-core kernels always run (they are checked against an f64 reference in
    /// tests/conv_tc.rs instead).
    Reference,
}

impl GpuBackend<EmuDriver> {
    /// The backend on the host emulator: needs no GPU.
    pub fn emulator() -> Self {
        Self::new(EmuDriver::default())
    }
}

impl GpuBackend<CudaDriver> {
    /// The backend on GPU `ordinal`; a one-line error when there is no usable GPU or no kernels.
    pub fn cuda(ordinal: usize) -> Result<Self> {
        Ok(Self::new(CudaDriver::new(ordinal)?))
    }
}

impl GpuBackend<DynDriver> {
    /// The backend on the driver named `emu`, `cuda` or `cuda:N` (see [`open_driver`]).
    pub fn open(driver: &str) -> Result<Self> {
        Ok(Self::new(open_driver(driver)?))
    }
}

fn align_up(bytes: usize) -> usize {
    bytes.div_ceil(WORKSPACE_ALIGN) * WORKSPACE_ALIGN
}

fn dims2(t: &Tensor<impl Backend>) -> [usize; 2] {
    t.shape().dims2().expect("shape validated by ops")
}

impl<D: Driver> GpuBackend<D> {
    pub fn new(driver: D) -> Self {
        GpuBackend {
            driver: Arc::new(driver),
            workspaces: Mutex::new(Vec::new()),
            convs: ConvKernels::ImplicitGemm,
            counters: DeviceCounters::default(),
            sgd_table: Mutex::new(None),
            precision: Precision::F32,
            tc_family: TcFamily::from_env(),
            fuse_bn_grad: std::env::var_os("RESNET_FUSE_BN_GRAD").is_none_or(|v| v != "0"),
            fuse_bn_input: std::env::var_os("RESNET_FUSE_BN_INPUT").is_none_or(|v| v != "0"),
            tma_producer: std::env::var_os("RESNET_TMA_PRODUCER").is_none_or(|v| v != "0"),
            conv_tuning: tuning_from_env(),
            tuner: ConvTuner::default(),
            tuning_file: std::env::var_os("RESNET_CONV_TUNING_FILE")
                .map(|p| TuningFile::new(p.into())),
            kernel_timing: AtomicBool::new(false),
            capturing: AtomicBool::new(false),
            graphs_alive: AtomicUsize::new(0),
            retired_workspaces: Mutex::new(Vec::new()),
            small_uploads: Mutex::new(None),
        }
    }

    /// The same backend computing in `precision`: with `Bf16`, activations and their gradients are
    /// stored in bf16 and convolutions run on the tensor cores (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The same backend with convolution tuning on or off (see conv_tuning.rs).
    pub fn with_conv_tuning(mut self, on: bool) -> Self {
        self.conv_tuning = Ok(on);
        self
    }

    /// The same backend keeping its tuning's choices in the file `path` (see
    /// conv_tuning_file.rs).
    pub fn with_conv_tuning_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tuning_file = Some(TuningFile::new(path.into()));
        self
    }

    /// The same backend running its bf16 convolutions on the tensor-core kernels of `family`.
    pub fn with_tc_family(mut self, family: TcFamily) -> Self {
        self.tc_family = Ok(family);
        self
    }

    /// The same backend with the BN backward sums in the backward-data convolutions on or off
    /// (see `fuse_bn_grad`).
    pub fn with_bn_grad_fusion(mut self, on: bool) -> Self {
        self.fuse_bn_grad = on;
        self
    }

    /// The same backend with BN + ReLU applied in the next convolution's operand load on or off
    /// (see `fuse_bn_input`).
    pub fn with_bn_input_fusion(mut self, on: bool) -> Self {
        self.fuse_bn_input = on;
        self
    }

    /// The bf16 convolutions' kernel family; an error names a bad `RESNET_TC_KERNELS`, or the wgmma
    /// family on a device without its kernels (compute capability 9.0 and the emulator have them).
    pub(super) fn tc_family(&self) -> Result<TcFamily> {
        let family = self.tc_family.clone().map_err(Error::Config)?;
        if family.is_hopper() && !self.driver.has_kernel(WGMMA_PROBE_KERNEL) {
            return Err(Error::Config(format!(
                "the wgmma convolution kernels (RESNET_TC_KERNELS={}) are not on {}: they need \
                 compute capability 9.0 (an H100 or H200) and a build for sm_90a",
                if family.weights_by_tma() {
                    "wgmma-tma"
                } else {
                    "wgmma"
                },
                self.driver.name()
            )));
        }
        Ok(family)
    }

    /// The same backend launching `convs` for every convolution.
    pub fn with_conv_kernels(mut self, convs: ConvKernels) -> Self {
        self.convs = convs;
        self
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    pub(super) fn alloc_bytes(&self, bytes: usize) -> Result<Allocation<D>> {
        let ptr = if bytes == 0 {
            0
        } else {
            if self.capturing.load(Ordering::Relaxed) {
                // On a GPU the allocation would become part of the graph (a new address at every
                // replay); a captured step must find its buffers allocated by an eager step.
                return Err(Error::Device {
                    device: self.driver.name(),
                    message: format!(
                        "allocating {bytes} bytes while capturing a graph: the step's buffers \
                         must exist before its capture (run it eagerly once first)"
                    ),
                });
            }
            self.counters.allocation();
            self.driver.alloc(bytes)?
        };
        Ok(Allocation {
            ptr,
            bytes,
            driver: self.driver.clone(),
        })
    }

    /// Launches `kernel`; see the module doc of `kernels/<file>.cu` for its parameters.
    pub(super) fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        mut args: KernelArgs,
    ) -> Result<()> {
        let mut params = args.params();
        self.counters.launch();
        // SAFETY: every call site passes the kernel's parameters in order with their exact types,
        // device pointers of tensors whose shapes `ops` validated against each other (so every index
        // the kernel computes is in bounds) and workspaces sized for the launch.
        unsafe {
            self.driver
                .launch(kernel, grid, block, shared_bytes, &mut params)
        }
    }

    /// A launch with the geometry a plan gave (`bf16_launch`, `batch_norm`).
    pub(super) fn launch_planned(&self, kernel: &str, l: Launch, args: KernelArgs) -> Result<()> {
        self.launch(kernel, l.grid, l.block, l.shared_bytes, args)
    }

    /// A 1-D grid-stride launch over `n` items.
    pub(super) fn launch_1d(&self, kernel: &str, n: usize, args: KernelArgs) -> Result<()> {
        let (grid, block) = grid_1d(n);
        self.launch(kernel, grid, block, 0, args)
    }

    /// Runs `f` with a device workspace of at least `bytes` bytes (contents unspecified).
    pub(super) fn with_workspace<R>(
        &self,
        bytes: usize,
        f: impl FnOnce(DevicePtr) -> Result<R>,
    ) -> Result<R> {
        let bytes = align_up(bytes.max(1));
        let pooled = self
            .workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let buf = match pooled {
            Some(b) if b.bytes >= bytes => b,
            pooled => {
                let bigger = match self.alloc_bytes(bytes) {
                    Ok(b) => b,
                    Err(e) => {
                        // (Refused while capturing.) The smaller buffer goes back, not freed: a
                        // free inside a capture would invalidate it on a GPU.
                        if let Some(small) = pooled {
                            self.workspaces
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(small);
                        }
                        return Err(e);
                    }
                };
                if let Some(small) = pooled {
                    if self.graphs_alive.load(Ordering::Relaxed) > 0 {
                        // A captured graph may use it: freed with the last graph, not now.
                        self.retired_workspaces
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(small);
                    }
                }
                bigger
            }
        };
        let out = f(buf.ptr);
        self.workspaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
        out
    }
}

impl<D: Driver> Backend for GpuBackend<D> {
    type Elem = f32;
    type Buffer = DeviceBuffer<D>;
    type LossRecord = GpuLossRecord<D>;
    type ImageStore = super::image_batch::GpuImages<D>;

    fn name(&self) -> String {
        format!("gpu-{}-{}", self.driver.name(), self.precision)
    }

    fn dtype(&self, buf: &DeviceBuffer<D>) -> DType {
        buf.dtype
    }

    fn activation_dtype(&self) -> DType {
        self.precision.activation_dtype()
    }

    fn to_activation_dtype(&self, t: &mut Tensor<Self>) -> Result<()> {
        self.cast_to_activation_dtype(t)
    }

    fn alloc_zeros(&self, len: usize) -> Result<DeviceBuffer<D>> {
        self.buffer_zeros(len)
    }

    fn upload(&self, src: &[f32], dst: &mut DeviceBuffer<D>) -> Result<()> {
        self.buffer_upload(src, dst)
    }

    fn download(&self, src: &DeviceBuffer<D>, dst: &mut [f32]) -> Result<()> {
        self.buffer_download(src, dst)
    }

    fn synchronize(&self) -> Result<()> {
        self.counters.host_sync();
        self.driver.synchronize()
    }

    fn device_counts(&self) -> Option<DeviceCounts> {
        Some(self.counters.snapshot())
    }

    fn set_kernel_timing(&self, on: bool) -> Result<bool> {
        self.driver.set_kernel_timing(on)?;
        self.kernel_timing.store(on, Ordering::Relaxed);
        Ok(true)
    }

    fn conv_tuning_records(&self) -> Vec<ConvTuningRecord> {
        self.tuner.records()
    }

    fn adopt_conv_tuning(&self, other: &Self) {
        self.tuner.adopt(&other.tuner)
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.driver.take_kernel_times()
    }

    fn copy(&self, src: &Tensor<Self>, dst: &mut Tensor<Self>) -> Result<()> {
        self.tensor_copy(src, dst)
    }

    fn builds_batches_on_device(&self) -> bool {
        true
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

    fn supports_graphs(&self) -> bool {
        true
    }

    fn begin_graph_capture(&self) -> Result<()> {
        self.graph_capture_begin()
    }

    fn end_graph_capture(&self) -> Result<StepGraph> {
        self.graph_capture_end()
    }

    fn replay_graph(&self, graph: &StepGraph) -> Result<()> {
        self.graph_replay(graph)
    }

    fn drop_graph(&self, graph: StepGraph) {
        self.graph_drop(graph)
    }

    // Convolutions: the implicit-GEMM kernels of kernels/conv_{forward,backward_data,
    // backward_filter}.cu, launched as `conv_plan` decides; or, when asked for
    // (`with_conv_kernels(ConvKernels::Reference)`), the one-thread-per-output kernels of
    // kernels/direct_conv_reference.cu.
    fn conv2d_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let shape = conv_shape(x, w, y, geom);
        if self.precision == Precision::Bf16 {
            return self.conv2d_forward_bf16(&shape, x, w, y, None);
        }
        let args = KernelArgs::new()
            .ptr(x.buf().ptr())
            .ptr(w.buf().ptr())
            .ptr(y.buf().ptr());
        let fast = (shape.forward_kernel(), shape.forward_grid());
        self.launch_conv_pass(&shape, args, "direct_conv_forward_f32", y.numel(), fast)
    }

    /// In bf16 only: the tensor-core forward kernels' `_stats_` instances (see
    /// `conv_tc_plan::TcStatsPartition` for the layout).
    fn conv2d_stats_len(&self, y: &[usize; 4]) -> Option<usize> {
        (self.precision == Precision::Bf16)
            .then(|| conv_tc_plan::forward_stats_partition(*y).floats())
    }

    fn conv2d_forward_with_stats(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stats: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        if self.precision != Precision::Bf16 {
            return Err(no_conv_stats(self));
        }
        let shape = conv_shape(x, w, y, geom);
        self.conv2d_forward_bf16(&shape, x, w, y, Some(stats))
    }

    /// In bf16, for the shapes whose backward-data takes the vector loader: the `_bn_` kernels
    /// (`conv_tc_plan::backward_data_bn_for`).
    fn conv2d_bn_grad_len(
        &self,
        x: &[usize; 4],
        w: &[usize; 4],
        geom: Conv2dGeometry,
    ) -> Option<usize> {
        if self.precision != Precision::Bf16 || !self.fuse_bn_grad {
            return None;
        }
        let y = crate::ops::conv2d_output_shape("conv2d_bn_grad_len", x, w, geom).ok()?;
        let shape = ConvShape {
            x: *x,
            w: *w,
            y,
            geom,
        };
        let launch = conv_tc_plan::backward_data_bn_for(&shape, self.tc_family().ok()?)?;
        Some(conv_tc_plan::bn_grad_partials(&launch, x[3]))
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
        if self
            .conv2d_bn_grad_len(&dims4(dz), &dims4(w), geom)
            .is_none()
        {
            return Err(crate::backend::no_bn_grad_fusion(self));
        }
        let shape = conv_shape(dz, w, dy, geom);
        let bn = BnGradInput {
            x: bn_x,
            gamma,
            saved,
            mask,
        };
        self.conv2d_backward_data_bn_bf16(&shape, dy, w, addend, dz, &bn, partials)
    }

    /// In bf16, for the shapes whose forward and backward-filter take the vector loaders: the
    /// `_bnrelu_` kernels (`conv_tc_plan::forward_stats_bnrelu_for`, `backward_filter_bnrelu_for`).
    fn conv2d_bn_input_fusion(&self, x: &[usize; 4], w: &[usize; 4], geom: Conv2dGeometry) -> bool {
        if self.precision != Precision::Bf16 || !self.fuse_bn_input {
            return false;
        }
        let (Ok(y), Ok(family)) = (
            crate::ops::conv2d_output_shape("conv2d_bn_input_fusion", x, w, geom),
            self.tc_family(),
        ) else {
            return false;
        };
        let shape = ConvShape {
            x: *x,
            w: *w,
            y,
            geom,
        };
        conv_tc_plan::forward_stats_bnrelu_for(&shape, family).is_some()
            && conv_tc_plan::backward_filter_bnrelu_for(&shape, family).is_some()
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
        if !self.conv2d_bn_input_fusion(&dims4(x), &dims4(w), geom) {
            return Err(crate::backend::no_bn_input_fusion(self));
        }
        let shape = conv_shape(x, w, y, geom);
        self.conv2d_forward_bnrelu_bf16(&shape, x, &bn, w, y, stats)
    }

    fn conv2d_backward_filter_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        if !self.conv2d_bn_input_fusion(&dims4(x), &dims4(dw), geom) {
            return Err(crate::backend::no_bn_input_fusion(self));
        }
        let shape = conv_shape(x, dw, dy, geom);
        self.conv2d_backward_filter_bnrelu_bf16(&shape, x, &bn, dy, dw)
    }

    fn conv2d_backward_data(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let shape = conv_shape(dx, w, dy, geom);
        if self.precision == Precision::Bf16 {
            return self.conv2d_backward_data_bf16(&shape, dy, w, None, dx);
        }
        if self.convs == ConvKernels::Reference {
            let args = KernelArgs::new()
                .ptr(dy.buf().ptr())
                .ptr(w.buf().ptr())
                .ptr(dx.buf().ptr());
            return self.launch_1d(
                "direct_conv_backward_data_f32",
                dx.numel(),
                direct_conv_args(args, &shape),
            );
        }
        self.launch_backward_data(&shape, dy, w, dx, None)
    }

    /// The implicit-GEMM kernel stores `dx + addend` as it writes `dx` (`scratch` is not touched);
    /// with the reference kernels, the two ops.
    fn conv2d_backward_data_add(
        &self,
        dy: &Tensor<Self>,
        w: &Tensor<Self>,
        addend: &Tensor<Self>,
        scratch: &mut Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let shape = conv_shape(dx, w, dy, geom);
        if self.precision == Precision::Bf16 {
            return self.conv2d_backward_data_bf16(&shape, dy, w, Some(addend), dx);
        }
        if self.convs == ConvKernels::Reference {
            self.conv2d_backward_data(dy, w, scratch, geom)?;
            return self.add_forward(scratch, addend, dx, false);
        }
        self.launch_backward_data(&shape, dy, w, dx, Some(addend))
    }

    fn conv2d_backward_filter(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dw: &mut Tensor<Self>,
        geom: Conv2dGeometry,
    ) -> Result<()> {
        let shape = conv_shape(x, dw, dy, geom);
        if self.precision == Precision::Bf16 {
            return self.conv2d_backward_filter_bf16(&shape, x, dy, dw);
        }
        if self.convs == ConvKernels::Reference {
            let args = KernelArgs::new()
                .ptr(x.buf().ptr())
                .ptr(dy.buf().ptr())
                .ptr(dw.buf().ptr());
            return self.launch_1d(
                "direct_conv_backward_filter_f32",
                dw.numel(),
                direct_conv_args(args, &shape),
            );
        }
        let kernel = shape.backward_filter_kernel();
        let splits = shape.backward_filter_splits();
        let partial = |out: DevicePtr| {
            let args = KernelArgs::new()
                .ptr(x.buf().ptr())
                .ptr(dy.buf().ptr())
                .ptr(out)
                .value(&shape.dims());
            self.launch_conv(kernel, shape.backward_filter_grid(splits), args)
        };
        if splits == 1 {
            // One split writes finished sums: the weight gradient itself is the workspace.
            return partial(dw.buf().ptr());
        }
        let count = shape.filter_len();
        self.with_workspace(splits * count * F32, |workspace| {
            partial(workspace)?;
            self.launch_1d(
                "conv2d_backward_filter_reduce_f32",
                count,
                KernelArgs::new()
                    .ptr(workspace)
                    .ptr(dw.buf().ptr())
                    .int(splits)
                    .u64(count),
            )
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
        self.batch_norm_train(
            x,
            StatisticsSource::Input,
            gamma,
            beta,
            None,
            y,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )
    }

    /// One normalising pass writes `relu(BN(x) + residual)`; `scratch` is not touched.
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
        self.batch_norm_train(
            x,
            StatisticsSource::Input,
            gamma,
            beta,
            Some(residual),
            out,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )
    }

    /// The finalize kernel merges the convolution's tile partials; then the usual normalising
    /// pass (with the residual and ReLU fused when asked).
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
        if self.precision != Precision::Bf16 {
            return Err(no_conv_stats(self));
        }
        self.batch_norm_train(
            x,
            StatisticsSource::ConvTiles(stats),
            gamma,
            beta,
            residual,
            out,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )
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
        if self.precision != Precision::Bf16 {
            return Err(no_conv_stats(self));
        }
        self.batch_norm_statistics_from_tiles(
            x,
            stats,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )
    }

    /// In bf16, with the fusion of BN into its reader on (`fuse_bn_input`).
    fn batch_norm_residual_bn_fusion(&self) -> bool {
        self.precision == Precision::Bf16 && self.fuse_bn_input
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
        if !self.batch_norm_residual_bn_fusion() {
            return Err(crate::backend::no_residual_bn_fusion(self));
        }
        self.batch_norm_statistics_from_tiles(
            x,
            stats,
            save_mean,
            save_inv_std,
            running_mean,
            running_var,
            cfg,
        )?;
        let (mean, inv_std) = (save_mean.buf().ptr(), save_inv_std.buf().ptr());
        let (r, r_bn) = (Some(r), Some(&r_bn));
        self.batch_norm_normalize(x, mean, inv_std, gamma, beta, r, r_bn, out, cfg.relu)
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
        self.batch_norm_infer(x, gamma, beta, running_mean, running_var, y, cfg)
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
        self.batch_norm_backward_pass(x, y, dy, gamma, saved, dx, dgamma, dbeta, relu, None, None)
    }

    /// The finalize kernel reduces the convolution's partials; then the usual data pass.
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
        if self.precision != Precision::Bf16 {
            return Err(crate::backend::no_bn_grad_fusion(self));
        }
        // `y` is not read: the sums are given, and the mask comes from `x` (ReluMask::FromAffine).
        self.batch_norm_backward_pass(
            x,
            x,
            dy,
            gamma,
            saved,
            dx,
            dgamma,
            dbeta,
            relu,
            None,
            Some(partials),
        )
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
        // BN's backward with its mask taken from `out` is exactly the pair's: its partials and
        // its data pass see g = dout [out > 0], which the data pass also stores as dsum.
        self.batch_norm_backward_pass(
            x,
            out,
            dout,
            gamma,
            saved,
            dx,
            dgamma,
            dbeta,
            true,
            Some(dsum),
            None,
        )
    }

    fn add_forward(
        &self,
        a: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        self.residual_add(false, a, b, y, relu)
    }

    fn add_backward(
        &self,
        y: &Tensor<Self>,
        dy: &Tensor<Self>,
        dsum: &mut Tensor<Self>,
        relu: bool,
    ) -> Result<()> {
        self.residual_add(true, y, dy, dsum, relu)
    }

    fn shortcut_a_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        self.shortcut_a(true, x, y, stride)
    }

    fn shortcut_a_backward(
        &self,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        stride: usize,
    ) -> Result<()> {
        self.shortcut_a(false, dy, dx, stride)
    }

    fn global_avg_pool_forward(&self, x: &Tensor<Self>, y: &mut Tensor<Self>) -> Result<()> {
        self.global_avg_pool_forward_any(x, y)
    }

    fn global_avg_pool_backward(&self, dy: &Tensor<Self>, dx: &mut Tensor<Self>) -> Result<()> {
        self.global_avg_pool_backward_any(dy, dx)
    }

    fn max_pool_forward(
        &self,
        x: &Tensor<Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        self.max_pool(x, None, None, y, geom)
    }

    fn max_pool_backward(
        &self,
        x: &Tensor<Self>,
        dy: &Tensor<Self>,
        dx: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        self.max_pool(x, None, Some(dy), dx, geom)
    }

    fn max_pool_bn_input_fusion(&self) -> bool {
        self.precision == Precision::Bf16 && self.fuse_bn_input
    }

    fn max_pool_forward_bn_input(
        &self,
        x: &Tensor<Self>,
        bn: BnMap<'_, Self>,
        y: &mut Tensor<Self>,
        geom: PoolGeometry,
    ) -> Result<()> {
        if !self.max_pool_bn_input_fusion() {
            return Err(crate::backend::no_bn_input_fusion(self));
        }
        self.max_pool(x, Some(&bn), None, y, geom)
    }

    /// Where the pool can take its BN's backward sums: the BN-input pool, with the backward-data
    /// sums fusion on (`RESNET_FUSE_BN_GRAD`), and a lane for each channel group.
    fn max_pool_bn_grad_len(&self, x: &[usize; 4], _geom: PoolGeometry) -> Option<usize> {
        if !self.max_pool_bn_input_fusion() || !self.fuse_bn_grad {
            return None;
        }
        let [n, h, w, c] = *x;
        let launch = bf16_plan::max_pool_backward_sums(n, h, w, c)?;
        Some(2 * c * launch.blocks())
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
        if !self.max_pool_bn_input_fusion() {
            return Err(crate::backend::no_bn_input_fusion(self));
        }
        match partials {
            None => self.max_pool(x, Some(&bn), Some(dy), dx, geom),
            Some(partials) => self.max_pool_with_bn_sums(x, &bn, dy, dx, partials, geom),
        }
    }

    fn linear_forward(
        &self,
        x: &Tensor<Self>,
        w: &Tensor<Self>,
        b: &Tensor<Self>,
        y: &mut Tensor<Self>,
    ) -> Result<()> {
        let [n, fin] = dims2(x);
        let fout = b.numel();
        // y[N, out] = x[N, in] w[out, in]^T + b
        self.gemm(Gemm {
            a: x.buf().ptr(),
            b: w.buf().ptr(),
            c: y.buf().ptr(),
            bias: b.buf().ptr(),
            m: n,
            n: fout,
            k: fin,
            trans_a: false,
            trans_b: true,
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
        let [n, fin] = dims2(x);
        let fout = db.numel();
        if let Some(dx) = dx {
            // dx[N, in] = dy[N, out] w[out, in]
            self.gemm(Gemm {
                a: dy.buf().ptr(),
                b: w.buf().ptr(),
                c: dx.buf().ptr(),
                bias: 0,
                m: n,
                n: fin,
                k: fout,
                trans_a: false,
                trans_b: false,
            })?;
        }
        // dw[out, in] = dy[N, out]^T x[N, in]
        self.gemm(Gemm {
            a: dy.buf().ptr(),
            b: x.buf().ptr(),
            c: dw.buf().ptr(),
            bias: 0,
            m: fout,
            n: fin,
            k: n,
            trans_a: true,
            trans_b: false,
        })?;
        self.launch_1d(
            "column_sum_f32",
            fout,
            KernelArgs::new()
                .ptr(dy.buf().ptr())
                .ptr(db.buf().ptr())
                .int(n)
                .int(fout),
        )
    }

    fn loss_record(&self, capacity: usize) -> Result<GpuLossRecord<D>> {
        self.new_loss_record(capacity)
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Tensor<Self>,
        labels: &Tensor<Self>,
        dlogits: &mut Tensor<Self>,
        record: &mut GpuLossRecord<D>,
    ) -> Result<()> {
        let [n, classes] = dims2(logits);
        // Workspace: per-sample loss, top-1, top-5 (f32, 3 N). The labels are already on the
        // device, so nothing here reads host memory (a captured step replays as it was captured).
        self.with_workspace(3 * n * F32, |per_sample| {
            self.launch_1d(
                "softmax_cross_entropy_per_sample_f32",
                n,
                KernelArgs::new()
                    .ptr(logits.buf().ptr())
                    .ptr(labels.buf().ptr())
                    .ptr(dlogits.buf().ptr())
                    .ptr(per_sample)
                    .int(n)
                    .int(classes),
            )?;
            self.launch(
                "softmax_cross_entropy_record",
                (1, 1, 1),
                (LOSS_REDUCE_THREADS, 1, 1),
                0,
                KernelArgs::new()
                    .ptr(per_sample)
                    .int(n)
                    .ptr(record.ptr())
                    .int(record.capacity),
            )
        })
    }

    fn read_loss_record(&self, record: &mut GpuLossRecord<D>) -> Result<RecordedLosses> {
        self.read_record(record)
    }

    fn sgd_update(
        &self,
        w: &mut Tensor<Self>,
        g: &Tensor<Self>,
        v: &mut Tensor<Self>,
        cfg: SgdConfig,
    ) -> Result<()> {
        w.buf_mut().f32_values_changed();
        self.launch_1d(
            "sgd_update_f32",
            w.numel(),
            KernelArgs::new()
                .ptr(w.buf().ptr())
                .ptr(g.buf().ptr())
                .ptr(v.buf().ptr())
                .u64(w.numel())
                .f32(cfg.lr as f32)
                .f32(cfg.momentum as f32)
                .f32(cfg.weight_decay as f32),
        )
    }

    fn sgd_update_many(&self, params: &mut [SgdTensors<'_, Self>], cfg: SgdConfig) -> Result<()> {
        self.sgd_update_chunks(params, cfg, None)
    }

    fn sgd_update_many_guarded(
        &self,
        params: &mut [SgdTensors<'_, Self>],
        cfg: SgdConfig,
        lr: &Tensor<Self>,
        guard: &GpuLossRecord<D>,
    ) -> Result<()> {
        self.sgd_update_chunks(params, cfg, Some((lr.buf().ptr(), guard.flag_ptr())))
    }
}
