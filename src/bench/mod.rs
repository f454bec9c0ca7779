//! End-to-end training-step benchmark (`resnet-cuda bench`) and the tools the criterion benchmarks
//! share with it.
//!
//! The headline figure is the median wall time of full training steps (forward, loss, backward, SGD,
//! then a device synchronisation) on a synthetic batch that is already on the device, so no data
//! loading is measured. The per-layer-type breakdown comes from a second, separate pass through the
//! [`Profiled`] decorator, whose per-op synchronisations would otherwise slow the headline down; on
//! a GPU backend the same pass times every kernel launch by itself (`Backend::set_kernel_timing`).

mod cpu_time;
mod plan;
mod profiled;
mod report;
mod shape_recorder;
mod shapes;

pub use cpu_time::process_cpu_ms;
pub use plan::{BenchDevice, KernelPlan, CPU_IMAGENET_BATCH, MODEL_BATCHES};
pub use profiled::{FamilyTimes, OpFamily, Profiled};
use report::Breakdown;
pub use report::{load_average, BenchReport};
pub use shape_recorder::{ConvShape, RecordedOp, ShapeRecorder};
pub use shapes::{bench_model_config, ModelShapes};

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::cpu::CpuBackend;
use crate::backend::{kernel_rows, Backend, DeviceCounts, Precision, SgdConfig};
use crate::error::{Error, Result};
use crate::models::{Network, Variant};
use crate::ops;
use crate::optim::Sgd;
use crate::tensor::Tensor;
use crate::train::conv_tuning::{check_conv_tuning, with_conv_tuning};
use crate::train::step_graph::GraphedStep;
use crate::train::{open_gpu, resolve_precision, select_device, Device, DeviceChoice};

/// What to benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    pub model: String,
    /// Where the bottleneck nets downsample: the variants differ in the 3x3 convolutions' shapes, so
    /// in their cost.
    pub variant: Variant,
    pub batch_size: usize,
    pub device: DeviceChoice,
    /// `--precision`; `None`: the device's default (see `train::resolve_precision`).
    pub precision: Option<Precision>,
    /// Replay each step as one captured graph where the backend can (the first runs eagerly).
    pub cuda_graph: bool,
    /// `--conv-tuning on`: the GPU backend times every candidate kernel of each convolution pass at
    /// its first call and keeps the fastest (`train::conv_tuning`); off, `RESNET_CONV_TUNING` says.
    pub conv_tuning: bool,
    /// Timed steps; the headline is their median.
    pub iters: usize,
    /// Untimed steps first (caches, allocations, lazily built state).
    pub warmup: usize,
    /// Steps of the separate profiled pass (after one untimed step of its own).
    pub profile_iters: usize,
}

impl BenchConfig {
    fn validate(&self) -> Result<()> {
        bench_model_config(&self.model)?.with_variant(self.variant)?;
        for (flag, value) in [
            ("--batch-size", self.batch_size),
            ("--iters", self.iters),
            ("--profile-iters", self.profile_iters),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{flag} 0: must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Benchmarks the training step on the device the config asks for (chosen exactly as `train` does).
pub fn run(cfg: &BenchConfig) -> Result<BenchReport> {
    cfg.validate()?;
    let device = select_device(cfg.device, 1)?;
    let precision = resolve_precision(cfg.precision, device)?;
    check_conv_tuning(cfg.conv_tuning, device, precision)?;
    // No tuning file: a benchmark times its own choices (RESNET_CONV_TUNING_FILE still names one).
    let gpu =
        |driver| open_gpu(driver, precision).map(|g| with_conv_tuning(g, cfg.conv_tuning, None));
    match device {
        Device::Cpu => run_on(|| Ok(CpuBackend::<f32>::new()), cfg, precision),
        Device::Emulator => run_on(|| gpu("emu"), cfg, precision),
        Device::Cuda => run_on(|| gpu("cuda"), cfg, precision),
    }
}

/// One network, optimiser and resident synthetic batch on a backend.
struct StepRunner<B: Backend<Elem = f32>> {
    net: Network<B>,
    sgd: Sgd<B>,
    x: Tensor<B>,
    labels: Tensor<B>,
    /// Where the steps leave their loss statistics; read (and emptied) as each step finishes.
    losses: B::LossRecord,
    graph: GraphedStep,
}

impl<B: Backend<Elem = f32>> StepRunner<B> {
    /// Same seed every time, so the timed and the profiled pass run identical networks and data.
    fn new(be: &B, cfg: &BenchConfig) -> Result<Self> {
        let config = bench_model_config(&cfg.model)?.with_variant(cfg.variant)?;
        let (side, classes) = (config.image_size(), config.num_classes);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let net = Network::new(be, config, &mut rng)?;
        let n = cfg.batch_size;
        let pixels: Vec<f32> = (0..n * side * side * 3)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let labels: Vec<u32> = (0..n)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        let mut x = Tensor::from_slice(be, [n, side, side, 3], &pixels)?;
        // The trainer's batches arrive in the activation type (built on the device, see
        // `data::device_images`), so the timed step does not cast its input either.
        be.to_activation_dtype(&mut x)?;
        let mut labels_on_device = Tensor::zeros(be, [n])?;
        ops::upload_labels(be, &labels, classes, &mut labels_on_device)?;
        let sgd = Sgd::new(SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
        });
        Ok(StepRunner {
            net,
            sgd,
            x,
            labels: labels_on_device,
            losses: be.loss_record(1)?,
            graph: GraphedStep::new(be, cfg.cuda_graph),
        })
    }

    /// One full training step, finished on the device when this returns.
    fn step(&mut self, be: &B) -> Result<()> {
        self.issue(be)?;
        self.finish(be)
    }

    /// The step's work, issued as the trainer issues it (and on the GPU, possibly not finished):
    /// no host synchronisation inside.
    fn issue(&mut self, be: &B) -> Result<()> {
        self.sgd.prepare_lr(be)?;
        let (net, sgd, x, labels, losses) = (
            &mut self.net,
            &mut self.sgd,
            &self.x,
            &self.labels,
            &mut self.losses,
        );
        // The bench saves nothing, so a replay's missing batch counts do not matter.
        self.graph
            .run(be, || {
                net.forward_backward_recorded(be, x, labels, losses)?;
                sgd.step_guarded(be, net, losses)
            })
            .map(|_| ())
    }

    /// Waits for the step: reading its loss does, and empties the record for the next.
    fn finish(&mut self, be: &B) -> Result<()> {
        be.read_loss_record(&mut self.losses).map(|_| ())
    }
}

fn run_on<B: Backend<Elem = f32>>(
    make: impl Fn() -> Result<B>,
    cfg: &BenchConfig,
    precision: Precision,
) -> Result<BenchReport> {
    // The timed backend outlives its network, so that the profiled pass's backend can take over its
    // convolution tuning's choices (--conv-tuning on) and run the launches it timed.
    let be = make()?;
    let (device, step_ms, cpu_ms, counts, warmup, tuning) = {
        let mut runner = StepRunner::new(&be, cfg)?;
        for _ in 0..cfg.warmup {
            runner.step(&be)?;
        }
        // With the graph on, the timed steps are replays only: the eager first step and the
        // capture, if `--warmup` did not cover them, are warm-up too (the report counts them).
        let mut warmup = cfg.warmup;
        while runner.graph.steps_before_replay() > 0 {
            runner.step(&be)?;
            warmup += 1;
        }
        let mut step_ms = Vec::with_capacity(cfg.iters);
        let cpu_start = process_cpu_ms();
        // Counted around the step's own work only: the synchronisation that ends each timed step
        // belongs to the benchmark, not to training.
        let mut counts: Option<DeviceCounts> = be.device_counts().map(|_| DeviceCounts::default());
        for _ in 0..cfg.iters {
            let start = Instant::now();
            let before = be.device_counts();
            runner.issue(&be)?;
            if let (Some(total), Some(before), Some(after)) =
                (counts.as_mut(), before, be.device_counts())
            {
                *total = total.plus(&after.since(&before));
            }
            runner.finish(&be)?;
            step_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let cpu_ms = cpu_start
            .zip(process_cpu_ms())
            .map(|(start, end)| (end - start) / cfg.iters as f64);
        let name = be.name();
        runner.graph.release(&be);
        let tuning = be.conv_tuning_records();
        (name, step_ms, cpu_ms, counts, warmup, tuning)
    };
    // The timed network is dropped before the profiled one is built, so both never share memory.
    // The same pass times every kernel by itself where the backend can (a GPU backend): a table of
    // where the device's time goes, and, against the headline, what the gaps between kernels cost.
    let inner = make()?;
    inner.adopt_conv_tuning(&be);
    drop(be);
    let profiled = Profiled::new(inner);
    let mut runner = StepRunner::new(&profiled, cfg)?;
    runner.step(&profiled)?;
    profiled.reset();
    let timing = profiled.set_kernel_timing(true)?;
    for _ in 0..cfg.profile_iters {
        runner.step(&profiled)?;
    }
    let per_step = profiled.times().divided_by(cfg.profile_iters as f64);
    let kernels = if timing {
        profiled.set_kernel_timing(false)?;
        let times = profiled.take_kernel_times()?;
        Some(kernel_rows(&times, cfg.profile_iters))
    } else {
        None
    };
    let breakdown = Breakdown {
        per_layer_type_ms: per_step,
        per_kernel: kernels,
    };
    let cfg = BenchConfig {
        warmup,
        ..cfg.clone()
    };
    let mut report = BenchReport::new(&cfg, precision, device, step_ms, cpu_ms, counts, breakdown);
    report.conv_tuning = tuning;
    Ok(report)
}
