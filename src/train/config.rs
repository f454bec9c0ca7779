//! Everything a training run is told, with the paper's recipe as the defaults for each kind of data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::Precision;
use crate::error::{Error, Result};
use crate::models::{ModelConfig, Variant};
use crate::optim::ScheduleKind;

/// Which backend runs the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// CUDA when a usable GPU and kernels are present, else the CPU.
    Auto,
    Cpu,
    Cuda,
    /// The CUDA kernels run in the host emulator (for checking, slow).
    Emu,
}

/// Where the images come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataSpec {
    /// The built-in synthetic set: `train` and `test` images (50,000 and 10,000 by default).
    Synthetic {
        train: usize,
        test: usize,
    },
    Cifar10(PathBuf),
    ImageNet(PathBuf),
}

impl DataSpec {
    /// Parses `synthetic`, `synthetic:TRAIN:TEST` (image counts, for quick runs), `cifar10:DIR` or
    /// `imagenet:DIR`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "--data {s:?}: expected `synthetic`, `synthetic:TRAIN:TEST`, `cifar10:DIR` or `imagenet:DIR`"
            ))
        };
        match s.split_once(':') {
            None if s == "synthetic" => Ok(DataSpec::Synthetic {
                train: crate::data::synthetic::TRAIN_LEN,
                test: crate::data::synthetic::TEST_LEN,
            }),
            Some(("synthetic", sizes)) => {
                let (train, test) = sizes.split_once(':').ok_or_else(bad)?;
                let count = |v: &str| {
                    v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                        Error::Config(format!(
                            "--data {s:?}: TRAIN and TEST of `synthetic:TRAIN:TEST` are image \
                             counts of at least 1, got {v:?}"
                        ))
                    })
                };
                Ok(DataSpec::Synthetic {
                    train: count(train)?,
                    test: count(test)?,
                })
            }
            Some(("cifar10", dir)) if !dir.is_empty() => Ok(DataSpec::Cifar10(dir.into())),
            Some(("imagenet", dir)) if !dir.is_empty() => Ok(DataSpec::ImageNet(dir.into())),
            _ => Err(bad()),
        }
    }

    /// The short name used in run folders.
    pub fn name(&self) -> &'static str {
        match self {
            DataSpec::Synthetic { .. } => "synthetic",
            DataSpec::Cifar10(_) => "cifar10",
            DataSpec::ImageNet(_) => "imagenet",
        }
    }

    pub fn is_imagenet(&self) -> bool {
        matches!(self, DataSpec::ImageNet(_))
    }
}

/// The complete description of a run; saved in every checkpoint so `--resume` needs nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: String,
    pub data: DataSpec,
    pub device: DeviceChoice,
    pub gpus: usize,
    /// Data-parallel replicas on the CPU or the emulator, each on its own thread with its own slice
    /// of every global batch (1: the plain single-replica loop). Absent in older checkpoints.
    #[serde(default = "one_replica")]
    pub replicas: usize,
    /// `A` or `B`; `None` takes the model's default (A for CIFAR nets, B for ImageNet nets).
    pub shortcut: Option<char>,
    /// Where a downsampling bottleneck puts its stride (`--variant`). Absent in older checkpoints,
    /// which were all built as the paper's: the default.
    #[serde(default)]
    pub variant: Variant,
    /// `--precision`; `None` takes the device's default (bf16 on GPUs, f32 on the CPU; see
    /// `train::resolve_precision`). Not part of the network: a resume may change it. Absent in
    /// older checkpoints.
    #[serde(default)]
    pub precision: Option<Precision>,
    /// `--cuda-graph on|off`: replay each training step as one captured graph on a GPU backend
    /// (ignored elsewhere). Not part of the network: a resume may change it. Absent in older
    /// checkpoints: on.
    #[serde(default = "default_on")]
    pub cuda_graph: bool,
    /// `--device-data on|off`: on a GPU backend, build the batches there from bytes: a fixed-size
    /// set (both splits) kept on each GPU, ImageNet views sent as bytes (see `train::device_feed`).
    /// Not part of the network: a resume may change it. Absent in older checkpoints: on.
    #[serde(default = "default_on")]
    pub device_data: bool,
    /// `--conv-tuning on|off`: on a GPU backend in bf16, time every kernel that can compute each
    /// convolution pass once and keep the fastest, the choices kept in the run folder (see
    /// `train::conv_tuning`). Not part of the network: a resume may change it. Absent in older
    /// checkpoints: off.
    #[serde(default)]
    pub conv_tuning: bool,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub iters: u64,
    pub schedule: ScheduleKind,
    pub warmup_iters: u64,
    pub warmup_lr: f64,
    pub augment: bool,
    pub shuffle: bool,
    pub seed: u64,
    pub eval_every: u64,
    pub log_every: u64,
    pub save_every: u64,
    pub out: PathBuf,
    pub init: Option<PathBuf>,
    /// Decode threads of the ImageNet loader (`--workers`); `None`: [`super::default_workers`].
    /// It does not change the batches, only how fast they come.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Megabytes of gradients per all-reduce bucket among replicas (`--bucket-mb`); `None`:
    /// [`super::replicas::DEFAULT_BUCKET_MB`]. Like `workers` it changes how fast a step runs, never
    /// its result (see `train::bucketed`).
    #[serde(default)]
    pub bucket_mb: Option<f64>,
}

fn one_replica() -> usize {
    1
}

/// The recipe's values for a kind of data, before the user's overrides.
pub struct Recipe {
    pub batch_size: usize,
    pub iters: u64,
    /// Iterations at which the rate is divided by 10 (synthetic: 50% and 75% of `iters`).
    pub milestones: Vec<u64>,
    pub plateau: bool,
}

impl Recipe {
    /// The paper's recipe: CIFAR batch 128, lr 0.1 divided at 32k and 48k, stop at 64k; ImageNet
    /// batch 256, plateau schedule, 600k iterations. The synthetic set's default run is short: 1,500
    /// iterations, divided at 50% and 75%.
    pub fn for_data(data: &DataSpec, iters_override: Option<u64>) -> Recipe {
        match data {
            DataSpec::Synthetic { .. } => {
                let iters = iters_override.unwrap_or(1_500);
                Recipe {
                    batch_size: 128,
                    iters,
                    milestones: vec![iters / 2, iters * 3 / 4],
                    plateau: false,
                }
            }
            DataSpec::Cifar10(_) => Recipe {
                batch_size: 128,
                iters: iters_override.unwrap_or(64_000),
                milestones: vec![32_000, 48_000],
                plateau: false,
            },
            DataSpec::ImageNet(_) => Recipe {
                batch_size: 256,
                iters: iters_override.unwrap_or(600_000),
                milestones: vec![],
                plateau: true,
            },
        }
    }
}

impl TrainConfig {
    /// Rejects nonsense values with a message that names the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, why: String| Err(Error::Config(format!("{flag}: {why}")));
        if self.batch_size == 0 {
            return bad("--batch-size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "--lr",
                format!("must be a positive number, got {}", self.lr),
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(
                "--momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "--weight-decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if !(self.warmup_lr.is_finite() && self.warmup_lr >= 0.0) {
            return bad(
                "--warmup-lr",
                format!("must be >= 0, got {}", self.warmup_lr),
            );
        }
        if self.iters == 0 {
            return bad("--iters", "must be at least 1".into());
        }
        for (flag, v) in [
            ("--eval-every", self.eval_every),
            ("--log-every", self.log_every),
            ("--save-every", self.save_every),
        ] {
            if v == 0 {
                return bad(flag, "must be at least 1".into());
            }
        }
        if self.workers == Some(0) {
            return bad("--workers", "must be at least 1".into());
        }
        if let Some(mb) = self.bucket_mb.filter(|mb| !(mb.is_finite() && *mb > 0.0)) {
            return bad(
                "--bucket-mb",
                format!("must be a positive number, got {mb}"),
            );
        }
        if self.gpus == 0 {
            return bad("--gpus", "must be at least 1".into());
        }
        if self.replicas == 0 {
            return bad("--replicas", "must be at least 1".into());
        }
        if self.batch_size % self.replicas != 0 {
            return bad(
                "--batch-size",
                format!(
                    "{} images do not split evenly among --replicas {}",
                    self.batch_size, self.replicas
                ),
            );
        }
        // Checked here, before a run folder is made, rather than when the network is built; a bad
        // model name is left to that later check, which names it.
        if let Ok(model) = ModelConfig::from_name(&self.model, 1) {
            model.with_variant(self.variant)?;
        }
        if let ScheduleKind::Plateau { patience: 0 } = self.schedule {
            return bad("--patience", "must be at least 1".into());
        }
        Ok(())
    }
}

fn default_on() -> bool {
    true
}
