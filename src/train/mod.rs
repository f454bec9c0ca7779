//! The training loop: the paper's recipe on a backend, with logging, evaluation, atomic checkpoints,
//! exact resume, Ctrl-C handling and divergence detection.
//!
//! Determinism: the data order of epoch `e` is a permutation drawn from `(seed, e)` and the
//! augmentation of iteration `i` from `(seed, i)`, so the whole run is a function of its config and
//! the checkpointed state (weights, momentum, BN statistics, data cursor, schedule state). A run
//! resumed from a checkpoint reproduces the uninterrupted run bit for bit on the same machine.

mod bucketed;
mod config;
pub mod conv_tuning;
mod device_feed;
mod feed;
mod nccl_buckets;
pub mod nccl_replicas;
mod progress;
pub mod replicas;
mod run_dir;
pub mod step_graph;

pub use config::{DataSpec, DeviceChoice, Recipe, TrainConfig};
pub use feed::default_workers;
pub use run_dir::{latest_checkpoint, read_state, RunState};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::cuda_info::{self, GpuReadiness};
use crate::backend::gpu::{DynDriver, GpuBackend};
use crate::backend::{Backend, Precision, SgdConfig};
use crate::checkpoint;
use crate::data::batch::{DataCursor, MeanImage};
use crate::data::{self, DataSets};
use crate::dist::launch::{self, GpuComms};
use crate::error::{Error, Result};
use crate::models::{ModelConfig, Network};
use crate::nn::ShortcutOption;
use crate::ops;
use crate::optim::{LrSchedule, Sgd};
use crate::tensor::Tensor;
use conv_tuning::check_conv_tuning;
use device_feed::DeviceBatches;
use progress::{Interval, Progress};
use replicas::{train_replicas, Replica, ReplicaOptions};
use step_graph::{GraphedStep, StepRun};

/// How a run ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// All iterations done; the final test error.
    Finished { test_err: f64, run_dir: PathBuf },
    /// Stopped by Ctrl-C after saving a checkpoint.
    Interrupted { run_dir: PathBuf },
}

/// Opens the dataset a config names.
pub fn open_data(spec: &DataSpec, seed: u64) -> Result<DataSets> {
    match spec {
        &DataSpec::Synthetic { train, test } => Ok(DataSets::Fixed(data::synthetic::splits_sized(
            seed, train, test,
        ))),
        DataSpec::Cifar10(dir) => Ok(DataSets::Fixed(data::cifar10::splits(dir)?)),
        DataSpec::ImageNet(dir) => Ok(DataSets::Folders(std::sync::Arc::new(
            data::imagenet::ImageNet::open(dir)?,
        ))),
    }
}

/// The network a config describes, for a dataset with `classes` classes.
pub fn model_config(cfg: &TrainConfig, classes: usize) -> Result<ModelConfig> {
    let mut model = ModelConfig::from_name(&cfg.model, classes)?;
    match cfg.shortcut {
        None => {}
        Some('A') => model = model.with_shortcut(ShortcutOption::A),
        Some('B') => model = model.with_shortcut(ShortcutOption::B),
        Some(other) => {
            return Err(Error::Config(format!(
                "--shortcut {other}: expected A or B"
            )))
        }
    }
    model.with_variant(cfg.variant)
}

/// The backend a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The CUDA kernels on GPU 0, through the CUDA driver.
    Cuda,
    /// The CUDA kernels run on the host by the emulator (slow; for checking the kernels).
    Emulator,
}

/// Resolves the requested device: `auto` is CUDA when the driver reports a GPU and this binary
/// carries kernels for it, else the CPU. Whether an explicit `cuda` really opens is found out when the
/// backend is created, with the driver's own reason.
pub fn select_device(device: DeviceChoice, gpus: usize) -> Result<Device> {
    if gpus > 1 {
        crate::dist::gpus::check(gpus)?;
    }
    Ok(match device {
        DeviceChoice::Cuda => Device::Cuda,
        DeviceChoice::Emu => Device::Emulator,
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto => match cuda_info::gpu_readiness(0) {
            GpuReadiness::Ready => Device::Cuda,
            GpuReadiness::NoGpu => Device::Cpu,
            GpuReadiness::Unusable(why) => {
                eprintln!("warning: --device auto runs on the CPU: {why}");
                Device::Cpu
            }
        },
    })
}

/// The precision a run on `device` computes in: the one asked for (`--precision`), else bf16 on a
/// GPU (CUDA or the emulator) and f32 on the CPU, whose backend computes in f32 only.
pub fn resolve_precision(asked: Option<Precision>, device: Device) -> Result<Precision> {
    match (device, asked) {
        (Device::Cpu, Some(Precision::Bf16)) => Err(Error::Config(
            "--precision bf16: the CPU backend computes in f32 only; bf16 (mixed precision) runs on \
             --device cuda or emu"
                .into(),
        )),
        (Device::Cpu, _) => Ok(Precision::F32),
        (_, asked) => Ok(asked.unwrap_or(Precision::Bf16)),
    }
}

/// The GPU backend on `driver` (`emu` or `cuda`) computing in `precision`, with a failure to open
/// it reported against the `--device` flag that asked for it.
pub fn open_gpu(driver: &str, precision: Precision) -> Result<GpuBackend<DynDriver>> {
    match GpuBackend::open(driver) {
        Ok(gpu) => Ok(gpu.with_precision(precision)),
        Err(Error::Device { device, message }) => Err(Error::Config(format!(
            "--device {driver}: {device}: {message}"
        ))),
        Err(other) => Err(other),
    }
}

/// Runs (or, with `resume`, continues) a training run. `stop` is polled after every step: when set,
/// the run saves a checkpoint and returns `Interrupted`. Every GPU run, emulated or real, single or
/// replicated, uses `GpuBackend<DynDriver>`, so the trainer is compiled for two backends only.
pub fn train(cfg: TrainConfig, resume: Option<RunState>, stop: &AtomicBool) -> Result<Outcome> {
    cfg.validate()?;
    if launch::wanted(cfg.gpus, cfg.device == DeviceChoice::Cuda)? {
        return train_on_gpus(cfg, resume, stop);
    }
    let device = select_device(cfg.device, cfg.gpus)?;
    let precision = resolve_precision(cfg.precision, device)?;
    check_conv_tuning(cfg.conv_tuning, device, precision)?;
    let tuned = |gpu| conv_tuning::for_run(gpu, &cfg, true);
    if cfg.replicas > 1 {
        let options = ReplicaOptions::from_env()?;
        let n = cfg.replicas;
        let run = match device {
            Device::Cpu => {
                eprintln!(
                    "device: cpu, {n} replicas ({} threads shared)",
                    rayon::current_num_threads()
                );
                train_replicas(&cfg, resume, stop, &options, |_| {
                    Ok(CpuBackend::<f32>::new())
                })?
            }
            Device::Emulator => {
                eprintln!(
                    "device: emu, {n} replicas (CUDA kernels in the host emulator), {precision}"
                );
                train_replicas(&cfg, resume, stop, &options, |_| {
                    open_gpu("emu", precision).map(tuned)
                })?
            }
            Device::Cuda => {
                return Err(Error::Config(format!(
                    "--replicas {n}: host replicas run on --device cpu or emu; on GPUs, --gpus N"
                )))
            }
        };
        return Ok(run.outcome);
    }
    let driver = match device {
        Device::Cpu => {
            eprintln!("device: cpu ({} threads)", rayon::current_num_threads());
            return Trainer::new(&CpuBackend::<f32>::new(), cfg, resume, None)?.run(stop);
        }
        Device::Emulator => {
            eprintln!(
                "device: emu (CUDA kernels in the host emulator; slow, for checking), {precision}"
            );
            "emu"
        }
        Device::Cuda => "cuda",
    };
    let gpu = tuned(open_gpu(driver, precision)?);
    if driver == "cuda" {
        eprintln!("device: {}, {precision}", gpu.driver().name());
    }
    let outcome = Trainer::new(&gpu, cfg, resume, None)?.run(stop);
    outcome
}

/// `--gpus N`, and every multi-process launch: one replica per GPU, with NCCL when it is here.
fn train_on_gpus(cfg: TrainConfig, resume: Option<RunState>, stop: &AtomicBool) -> Result<Outcome> {
    if cfg.replicas > 1 {
        return Err(Error::Config(format!(
            "--gpus {} with --replicas {}: --gpus N already runs one replica per GPU",
            cfg.gpus, cfg.replicas
        )));
    }
    let options = ReplicaOptions::from_env()?;
    let n = cfg.gpus;
    let precision = resolve_precision(cfg.precision, Device::Cuda)?;
    check_conv_tuning(cfg.conv_tuning, Device::Cuda, precision)?;
    let comms = launch::prepare(n, options.timeout)?;
    let cfg = TrainConfig { replicas: n, ..cfg };
    let run = match comms {
        GpuComms::HostStaged => {
            eprintln!(
                "device: {n} CUDA GPUs, one replica each (gradients summed through host memory)"
            );
            train_replicas(&cfg, resume, stop, &options, |rank| {
                let gpu = GpuBackend::open(&format!("cuda:{rank}"))?.with_precision(precision);
                Ok(conv_tuning::for_run(gpu, &cfg, true))
            })?
        }
        GpuComms::Nccl(world) => {
            if cfg.batch_size % world.world_size != 0 {
                return Err(Error::Config(format!(
                    "--batch-size: {} images do not split evenly among the {} GPUs of the launch",
                    cfg.batch_size, world.world_size
                )));
            }
            let version = world.nccl.version()?;
            eprintln!(
                "device: {n} CUDA GPUs (GPU {} on) as ranks {}..{} of {}, gradients averaged by \
                 NCCL {}.{}.{} ({})",
                world.first_gpu,
                world.first_rank,
                world.first_rank + n,
                world.world_size,
                version / 10000,
                version / 100 % 100,
                version % 100,
                world.nccl.path().display()
            );
            nccl_replicas::train_gpus(&cfg, resume, stop, &options, &world)?
        }
    };
    Ok(run.outcome)
}

/// The state of a run that has not started.
fn fresh_state(cfg: &TrainConfig) -> RunState {
    let schedule = LrSchedule::new(
        cfg.lr,
        cfg.schedule.clone(),
        cfg.warmup_lr,
        cfg.warmup_iters,
    );
    RunState {
        config: cfg.clone(),
        iteration: 0,
        cursor: DataCursor::default(),
        schedule,
    }
}

/// The loss statistics a single-replica run has left on the device and not yet read.
struct PendingLosses<B: Backend> {
    record: B::LossRecord,
    /// The iteration (0-based) of the record's first step.
    first_iteration: u64,
    /// Steps issued since the last read.
    unread: usize,
}

struct Trainer<'a, B: Backend<Elem = f32>> {
    be: &'a B,
    cfg: TrainConfig,
    feed: feed::Feed,
    mean: MeanImage,
    net: Network<B>,
    sgd: Sgd<B>,
    state: RunState,
    run_dir: PathBuf,
    /// This trainer's place among data-parallel replicas; `None` for a single replica.
    replica: Option<Replica<'a, B>>,
}

impl<'a, B: Backend<Elem = f32>> Trainer<'a, B> {
    fn new(
        be: &'a B,
        cfg: TrainConfig,
        resume: Option<RunState>,
        mut replica: Option<Replica<'a, B>>,
    ) -> Result<Self> {
        // Among replicas, rank 0 alone creates the run folder, reads --init and computes the mean
        // image; the others receive the mean image and the weights from it.
        let leader = replica.as_ref().is_none_or(Replica::is_leader);
        let data = feed::Feed::new(open_data(&cfg.data, cfg.seed)?);
        let model = model_config(&cfg, data.data.num_classes())?;
        let mut net = Network::new(be, model, &mut ChaCha8Rng::seed_from_u64(cfg.seed))?;
        let mut sgd = Sgd::new(SgdConfig {
            lr: cfg.lr,
            momentum: cfg.momentum,
            weight_decay: cfg.weight_decay,
        });
        let run_dir = cfg.out.clone();
        let (state, mean) = match resume {
            Some(state) => {
                let dir = latest_checkpoint(&run_dir)?;
                let loaded = checkpoint::load(&dir, be, &mut net, &mut sgd)?;
                let mean = loaded.mean_image.ok_or_else(|| Error::Checkpoint {
                    path: dir.clone(),
                    message: "has no mean image".into(),
                })?;
                eprintln!(
                    "resuming {} from iteration {}",
                    run_dir.display(),
                    state.iteration
                );
                (state, mean)
            }
            None if !leader => {
                let replica = replica.as_ref().expect("only replicas follow a leader");
                let (h, w) = data.data.view_size();
                let mut mean = MeanImage::from_parts(h, w, vec![0.0; h * w * 3])?;
                replica.broadcast_mean(&mut mean)?;
                (fresh_state(&cfg), mean)
            }
            None => {
                run_dir::create(&run_dir)?;
                if let Some(init) = &cfg.init {
                    checkpoint::load_weights(init, be, &mut net)?;
                    eprintln!("initial weights from {}", init.display());
                }
                let mut mean = data.mean_image(&run_dir)?;
                if let Some(replica) = &replica {
                    replica.broadcast_mean(&mut mean)?;
                }
                (fresh_state(&cfg), mean)
            }
        };
        if let Some(replica) = &mut replica {
            replica.broadcast_weights(be, &mut net)?;
        }
        if leader {
            eprintln!(
                "{}: {} parameters; data: {}; {} iterations of batch {}",
                cfg.model,
                net.num_params(),
                data.data.describe(),
                cfg.iters,
                cfg.batch_size
            );
        }
        Ok(Trainer {
            be,
            cfg,
            feed: data,
            mean,
            net,
            sgd,
            state,
            run_dir,
            replica,
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<Outcome> {
        let (h, w) = self.feed.data.view_size();
        let batch = self.cfg.batch_size;
        if self.feed.data.train_len() < batch {
            return Err(Error::Config(format!(
                "--batch-size {batch}: larger than the training split ({} images)",
                self.feed.data.train_len()
            )));
        }
        let leader = self.replica.as_ref().is_none_or(Replica::is_leader);
        // This replica's images of each global batch (all of it for a single replica).
        let (rank, world) = self.replica.as_ref().map_or((0, 1), Replica::place);
        let shard = data::loader::shard(batch, rank, world)?;
        if self.state.iteration < self.cfg.iters {
            self.feed.start(
                &self.cfg,
                &self.state.cursor,
                self.state.iteration,
                (rank, world),
            )?;
        }
        let local = shard.len();
        let mut pixels = vec![0f32; local * h * w * 3];
        let mut labels = vec![0u32; local];
        let mut x = Tensor::zeros(self.be, [local, h, w, 3])?;
        let mut progress = match leader {
            true => Some(Progress::new(
                &self.run_dir,
                self.state.iteration,
                self.cfg.iters,
            )?),
            false => None,
        };
        let mut interval = Interval::default();
        let mut last_test_err = f64::NAN;
        let classes = self.net.config.num_classes;
        let mut labels_on_device = Tensor::zeros(self.be, [local])?;
        let mut device = match self.state.iteration < self.cfg.iters {
            true => DeviceBatches::open(
                self.be,
                &self.cfg,
                &self.feed.data,
                &self.mean,
                local,
                leader,
            )?,
            false => None,
        };
        // Read at every log line, evaluation and checkpoint at least, so it never holds more
        // steps than the shortest of those periods.
        let capacity = self
            .cfg
            .log_every
            .min(self.cfg.eval_every)
            .min(self.cfg.save_every);
        let mut losses = PendingLosses {
            record: self.be.loss_record(capacity as usize)?,
            first_iteration: self.state.iteration,
            unread: 0,
        };
        let graphed = self.cfg.cuda_graph && self.replica.is_none();
        let mut graph = GraphedStep::new(self.be, graphed);
        while self.state.iteration < self.cfg.iters {
            let started = Instant::now();
            let iter = self.state.iteration;
            if let Some(r) = &self.replica {
                r.maybe_fail(iter)?;
            }
            let lr = self.state.schedule.lr_at(iter);
            let epoch = match &mut device {
                // The batch is built on the device, by the step's first op.
                Some(d) => self.feed.next_on_device(
                    self.be,
                    &self.cfg,
                    &mut self.state.cursor,
                    iter,
                    shard.clone(),
                    d,
                    &mut labels,
                )?,
                None => {
                    let epoch = self.feed.next(
                        &self.cfg,
                        &mut self.state.cursor,
                        iter,
                        &self.mean,
                        shard.clone(),
                        &mut pixels,
                        &mut labels,
                    )?;
                    x.copy_from_slice(self.be, &pixels)?;
                    epoch
                }
            };
            self.sgd.config.lr = lr;
            match &mut self.replica {
                Some(r) => {
                    // Replicas combine their statistics on the host anyway, so they read them at
                    // once and decide there; their batch is built eagerly.
                    if let Some(d) = &device {
                        d.build(self.be, &mut x, &mut labels_on_device)?;
                    }
                    let stats = r.forward_backward(self.be, &mut self.net, &x, &labels)?;
                    if !stats.loss.is_finite() {
                        if let Some(p) = &progress {
                            p.finish();
                        }
                        return Err(Error::Diverged {
                            iteration: iter + 1,
                            loss: stats.loss,
                        });
                    }
                    self.sgd.step(self.be, &mut self.net)?;
                    interval.loss_sum += stats.loss;
                    interval.wrong += batch - stats.top1_correct;
                }
                None => {
                    // Nothing here waits for the device: the loss goes to `losses.record` and a
                    // non-finite one makes the update skip itself there; the host looks when it
                    // needs the values (`resolve_losses`).
                    // The inputs go to their fixed buffers first: a captured step reads them
                    // there, and so does the rate of the guarded update.
                    if device.is_none() {
                        ops::upload_labels(self.be, &labels, classes, &mut labels_on_device)?;
                    }
                    self.sgd.prepare_lr(self.be)?;
                    let (be, net, sgd, record) =
                        (self.be, &mut self.net, &mut self.sgd, &mut losses.record);
                    let (x, labels_on_device, device) = (&mut x, &mut labels_on_device, &device);
                    let ran = graph.run(be, || {
                        if let Some(d) = device {
                            d.build(be, x, labels_on_device)?;
                        }
                        net.forward_backward_recorded(be, x, labels_on_device, record)?;
                        sgd.step_guarded(be, net, record)
                    })?;
                    // Batch norm counts its training batches as its forward is called; a replayed
                    // step calls no forward, and a failed capture called it once too often.
                    match ran {
                        StepRun::Issued => {}
                        StepRun::Replayed => net.count_training_batches(1),
                        StepRun::IssuedTwice => net.count_training_batches(-1),
                    }
                    losses.unread += 1;
                }
            }
            self.state.iteration += 1;
            let done = self.state.iteration;
            interval.images += batch;
            interval.steps += 1;
            interval.seconds += started.elapsed().as_secs_f64();
            if let Some(p) = &progress {
                p.advance(done);
            }
            let last = done == self.cfg.iters;
            let evaluating = done % self.cfg.eval_every == 0 || last;
            if done % self.cfg.log_every == 0
                || last
                || evaluating
                || done % self.cfg.save_every == 0
                || stop.load(Ordering::SeqCst)
            {
                self.resolve_losses(&mut losses, &mut interval, batch, &progress)?;
            }
            if done % self.cfg.log_every == 0 || last {
                if let Some(p) = &mut progress {
                    p.log_train(done, epoch, lr, &interval)?;
                }
                self.state
                    .schedule
                    .observe_train_error(interval.train_err());
                interval = Interval::default();
            }
            let mut agreed_stop = None;
            if let Some(r) = &mut self.replica {
                // Rank 0 decides whether Ctrl-C stops the run, so that every replica stops together.
                let stopping = r.agree_to_stop(stop.load(Ordering::SeqCst))?;
                if evaluating || done % self.cfg.save_every == 0 || last || stopping {
                    r.average_batch_norms(self.be, &mut self.net)?;
                }
                agreed_stop = Some(stopping);
            }
            if evaluating {
                let mut test_err = f64::NAN;
                if let Some(p) = &mut progress {
                    let on_device = device
                        .as_ref()
                        .and_then(|d| d.evaluate(self.be, &mut self.net, batch, graphed));
                    let r = match on_device {
                        Some(r) => r?,
                        None => self
                            .feed
                            .evaluate(self.be, &mut self.net, &self.mean, batch)?,
                    };
                    p.log_eval(done, r.top1_err, r.top5_err)?;
                    test_err = r.top1_err;
                }
                if let Some(r) = &self.replica {
                    test_err = r.share_test_error(test_err)?;
                }
                // The evaluation's batches (a partial last one) reshaped the layers' tensors.
                graph.invalidate(self.be);
                self.state.schedule.observe_test_error(test_err);
                last_test_err = test_err;
            }
            let interrupted = agreed_stop.unwrap_or_else(|| stop.load(Ordering::SeqCst));
            if leader && (done % self.cfg.save_every == 0 || last || interrupted) {
                // Never a checkpoint of a step whose loss has not been looked at (Ctrl-C may have
                // come after the check above).
                self.resolve_losses(&mut losses, &mut interval, batch, &progress)?;
                self.save()?;
            }
            if interrupted {
                graph.release(self.be);
                if let Some(p) = &progress {
                    p.finish();
                }
                if leader {
                    eprintln!(
                        "interrupted at iteration {done}; checkpoint saved, resume with --resume {}",
                        self.run_dir.display()
                    );
                }
                return Ok(Outcome::Interrupted {
                    run_dir: self.run_dir.clone(),
                });
            }
        }
        graph.release(self.be);
        if let Some(p) = &progress {
            p.finish();
        }
        self.feed.report_skipped();
        if last_test_err.is_nan() {
            // Resumed at the very end: evaluate once so the outcome is meaningful.
            if let Some(r) = &mut self.replica {
                r.average_batch_norms(self.be, &mut self.net)?;
            }
            if leader {
                last_test_err = self
                    .feed
                    .evaluate(self.be, &mut self.net, &self.mean, batch)?
                    .top1_err;
            }
        }
        let tuned = self.be.conv_tuning_records();
        if leader && !tuned.is_empty() {
            let moved = tuned.iter().filter(|r| r.chosen != r.planned).count();
            eprintln!(
                "convolution tuning: {} passes timed, {moved} on another launch than the plan's",
                tuned.len()
            );
        }
        if leader {
            eprintln!(
                "done: test error {:.2}% after {} iterations; run folder {}",
                100.0 * last_test_err,
                self.cfg.iters,
                self.run_dir.display()
            );
        }
        Ok(Outcome::Finished {
            test_err: last_test_err,
            run_dir: self.run_dir.clone(),
        })
    }

    /// Reads the statistics of the steps issued since the last read into `interval` (one host
    /// synchronisation; nothing when there are none). A non-finite loss among them stops the run
    /// with the iteration that had it: the device skipped its update and every later one, and no
    /// checkpoint was written after it, since every save reads first.
    fn resolve_losses(
        &self,
        losses: &mut PendingLosses<B>,
        interval: &mut Interval,
        batch: usize,
        progress: &Option<Progress>,
    ) -> Result<()> {
        if losses.unread == 0 {
            return Ok(());
        }
        let read = self.be.read_loss_record(&mut losses.record)?;
        for (k, stats) in read.steps.iter().enumerate() {
            if read.first_non_finite == Some(k) {
                if let Some(p) = progress {
                    p.finish();
                }
                return Err(Error::Diverged {
                    iteration: losses.first_iteration + k as u64 + 1,
                    loss: stats.loss,
                });
            }
            interval.loss_sum += stats.loss;
            interval.wrong += batch - stats.top1_correct;
        }
        losses.first_iteration += read.steps.len() as u64;
        losses.unread = 0;
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        let state = serde_json::to_value(&self.state).expect("the run state serialises");
        let dir = run_dir::checkpoint_dir(&self.run_dir, self.state.iteration);
        let mean = (
            self.mean.data.as_slice(),
            [self.mean.height, self.mean.width, 3],
        );
        checkpoint::save(
            &dir,
            self.be,
            &mut self.net,
            Some(&self.sgd),
            Some(mean),
            &state,
        )?;
        run_dir::point_latest(&self.run_dir, &dir)?;
        run_dir::prune(&self.run_dir, 3)
    }
}

/// Loads the run state of `run_dir`'s newest checkpoint, for `--resume`.
pub fn resume_state(run_dir: &Path) -> Result<RunState> {
    run_dir::read_state(&latest_checkpoint(run_dir)?)
}
