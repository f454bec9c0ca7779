//! The training loop: the paper's recipe on a backend, with logging, evaluation, atomic checkpoints,
//! exact resume, Ctrl-C handling and divergence detection.
//!
//! Determinism: the data order of epoch `e` is a permutation drawn from `(seed, e)` and the
//! augmentation of iteration `i` from `(seed, i)`, so the whole run is a function of its config and
//! the checkpointed state (weights, momentum, BN statistics, data cursor, schedule state). A run
//! resumed from a checkpoint reproduces the uninterrupted run bit for bit on the same machine.

mod config;
mod feed;
mod progress;
mod run_dir;

pub use config::{DataSpec, DeviceChoice, Recipe, TrainConfig};
pub use feed::default_workers;
pub use run_dir::{latest_checkpoint, read_state, RunState};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, SgdConfig};
use crate::checkpoint;
use crate::data::batch::{DataCursor, MeanImage};
use crate::data::{self, DataSets};
use crate::error::{Error, Result};
use crate::models::{ModelConfig, Network};
use crate::nn::ShortcutOption;
use crate::optim::{LrSchedule, Sgd};
use crate::tensor::Tensor;
use progress::{Interval, Progress};

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
    Ok(model)
}

/// The backend a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The CUDA kernels run on the host by the emulator (slow; for checking the kernels).
    Emulator,
}

/// Checks that the requested device exists in this build and on this machine.
pub fn select_device(device: DeviceChoice, gpus: usize) -> Result<Device> {
    const NO_GPU: &str = "the CUDA driver backend is not built yet (the kernels run only in the \
                          emulator: --device emu); use --device cpu";
    if gpus > 1 {
        return Err(Error::Config(format!(
            "--gpus {gpus}: data-parallel replicas are not built yet, and no CUDA GPU is usable here ({NO_GPU})"
        )));
    }
    match device {
        DeviceChoice::Cuda => Err(Error::Config(format!("--device cuda: {NO_GPU}"))),
        DeviceChoice::Emu => Ok(Device::Emulator),
        DeviceChoice::Auto | DeviceChoice::Cpu => Ok(Device::Cpu),
    }
}

/// Runs (or, with `resume`, continues) a training run. `stop` is polled after every step: when set,
/// the run saves a checkpoint and returns `Interrupted`.
pub fn train(cfg: TrainConfig, resume: Option<RunState>, stop: &AtomicBool) -> Result<Outcome> {
    cfg.validate()?;
    match select_device(cfg.device, cfg.gpus)? {
        Device::Cpu => {
            eprintln!("device: cpu ({} threads)", rayon::current_num_threads());
            Trainer::new(&CpuBackend::<f32>::new(), cfg, resume)?.run(stop)
        }
        Device::Emulator => {
            eprintln!("device: emu (CUDA kernels in the host emulator; slow, for checking)");
            Trainer::new(&GpuBackend::emulator(), cfg, resume)?.run(stop)
        }
    }
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
}

impl<'a, B: Backend<Elem = f32>> Trainer<'a, B> {
    fn new(be: &'a B, cfg: TrainConfig, resume: Option<RunState>) -> Result<Self> {
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
            None => {
                run_dir::create(&run_dir)?;
                if let Some(init) = &cfg.init {
                    checkpoint::load_weights(init, be, &mut net)?;
                    eprintln!("initial weights from {}", init.display());
                }
                let mean = data.mean_image(&run_dir)?;
                let schedule = LrSchedule::new(
                    cfg.lr,
                    cfg.schedule.clone(),
                    cfg.warmup_lr,
                    cfg.warmup_iters,
                );
                (
                    RunState {
                        config: cfg.clone(),
                        iteration: 0,
                        cursor: DataCursor::default(),
                        schedule,
                    },
                    mean,
                )
            }
        };
        eprintln!(
            "{}: {} parameters; data: {}; {} iterations of batch {}",
            cfg.model,
            net.num_params(),
            data.data.describe(),
            cfg.iters,
            cfg.batch_size
        );
        Ok(Trainer {
            be,
            cfg,
            feed: data,
            mean,
            net,
            sgd,
            state,
            run_dir,
        })
    }

    fn run(mut self, stop: &AtomicBool) -> Result<Outcome> {
        let (h, w) = self.feed.data.view_size();
        let batch = self.cfg.batch_size;
        if self.feed.data.train_len() < batch {
            return Err(Error::Config(format!(
                "--batch-size {batch}: larger than the training split ({} images)",
                self.feed.data.train_len()
            )));
        }
        if self.state.iteration < self.cfg.iters {
            self.feed.start(
                &self.cfg,
                &self.mean,
                &self.state.cursor,
                self.state.iteration,
            )?;
        }
        let mut pixels = vec![0f32; batch * h * w * 3];
        let mut labels = vec![0u32; batch];
        let mut x = Tensor::zeros(self.be, [batch, h, w, 3])?;
        let mut progress = Progress::new(&self.run_dir, self.state.iteration, self.cfg.iters)?;
        let mut interval = Interval::default();
        let mut last_test_err = f64::NAN;
        while self.state.iteration < self.cfg.iters {
            let started = Instant::now();
            let iter = self.state.iteration;
            let lr = self.state.schedule.lr_at(iter);
            let epoch = self.feed.next(
                &self.cfg,
                &mut self.state.cursor,
                iter,
                &self.mean,
                &mut pixels,
                &mut labels,
            )?;
            x.copy_from_slice(self.be, &pixels)?;
            let stats = self.net.forward_backward(self.be, &x, &labels)?;
            if !stats.loss.is_finite() {
                progress.finish();
                return Err(Error::Diverged {
                    iteration: iter + 1,
                    loss: stats.loss,
                });
            }
            self.sgd.config.lr = lr;
            self.sgd.step(self.be, &mut self.net)?;
            self.state.iteration += 1;
            let done = self.state.iteration;
            interval.loss_sum += stats.loss;
            interval.wrong += batch - stats.top1_correct;
            interval.images += batch;
            interval.steps += 1;
            interval.seconds += started.elapsed().as_secs_f64();
            progress.advance(done);
            let last = done == self.cfg.iters;
            if done % self.cfg.log_every == 0 || last {
                progress.log_train(done, epoch, lr, &interval)?;
                self.state
                    .schedule
                    .observe_train_error(interval.train_err());
                interval = Interval::default();
            }
            if done % self.cfg.eval_every == 0 || last {
                let r = self
                    .feed
                    .evaluate(self.be, &mut self.net, &self.mean, batch)?;
                progress.log_eval(done, r.top1_err, r.top5_err)?;
                self.state.schedule.observe_test_error(r.top1_err);
                last_test_err = r.top1_err;
            }
            let interrupted = stop.load(Ordering::SeqCst);
            if done % self.cfg.save_every == 0 || last || interrupted {
                self.save()?;
            }
            if interrupted {
                progress.finish();
                eprintln!(
                    "interrupted at iteration {done}; checkpoint saved, resume with --resume {}",
                    self.run_dir.display()
                );
                return Ok(Outcome::Interrupted {
                    run_dir: self.run_dir,
                });
            }
        }
        progress.finish();
        self.feed.report_skipped();
        if last_test_err.is_nan() {
            // Resumed at the very end: evaluate once so the outcome is meaningful.
            last_test_err = self
                .feed
                .evaluate(self.be, &mut self.net, &self.mean, batch)?
                .top1_err;
        }
        eprintln!(
            "done: test error {:.2}% after {} iterations; run folder {}",
            100.0 * last_test_err,
            self.cfg.iters,
            self.run_dir.display()
        );
        Ok(Outcome::Finished {
            test_err: last_test_err,
            run_dir: self.run_dir,
        })
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
