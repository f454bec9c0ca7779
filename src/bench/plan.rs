//! What the kernel microbenchmarks (`benches/kernels.rs`) run: every distinct layer shape of the
//! models and batch sizes of the issue, taken from the model code through the [`ShapeRecorder`]
//! walk, never from a hand-kept list.
//!
//! [`ShapeRecorder`]: super::ShapeRecorder

use super::shape_recorder::ConvShape;
use super::shapes::ModelShapes;
use crate::backend::PoolGeometry;
use crate::error::{Error, Result};

/// The models and per-device batch sizes the issue asks for: resnet50 at 32 (one GPU's share of a
/// 256 batch on 8 GPUs) and 256, resnet20 at 128.
pub const MODEL_BATCHES: [(&str, usize); 3] =
    [("resnet50", 32), ("resnet50", 256), ("resnet20", 128)];

/// On the CPU the ImageNet shapes run at this batch instead: a batch-256 resnet50 convolution takes
/// seconds per call on two cores, which would make `cargo bench` take hours. FLOP/s at batch 2 is
/// within a few percent of larger batches for these layers (every spatial map is at least 7x7, so
/// the kernels' tiles stay full). CIFAR shapes keep their batch.
pub const CPU_IMAGENET_BATCH: usize = 2;

/// The device the kernel benchmarks run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchDevice {
    Cpu,
    Cuda,
}

impl BenchDevice {
    /// Reads `RESNET_BENCH_DEVICE` (`cpu` when unset). The emulator is refused: it proves kernel
    /// logic, and its timings mean nothing.
    pub fn from_env() -> Result<Self> {
        let value = std::env::var("RESNET_BENCH_DEVICE").unwrap_or_default();
        match value.to_ascii_lowercase().as_str() {
            "" | "cpu" => Ok(BenchDevice::Cpu),
            "cuda" => Ok(BenchDevice::Cuda),
            "emu" => Err(Error::Config(
                "RESNET_BENCH_DEVICE=emu: the emulator is for checking kernels, not timing them; \
                 use cpu or cuda"
                    .into(),
            )),
            other => Err(Error::Config(format!(
                "RESNET_BENCH_DEVICE={other}: expected cpu or cuda"
            ))),
        }
    }

    /// The batch a model's shapes are benchmarked at on this device.
    pub fn batch_for(self, model: &str, batch: usize) -> usize {
        match self {
            BenchDevice::Cuda => batch,
            BenchDevice::Cpu if model.starts_with("resnet50") => batch.min(CPU_IMAGENET_BATCH),
            BenchDevice::Cpu => batch,
        }
    }
}

/// Every distinct shape of every op family over [`MODEL_BATCHES`], each once, in first-use order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelPlan {
    /// `(model, shape)`: the model names the benchmark.
    pub convs: Vec<(&'static str, ConvShape)>,
    pub batch_norms: Vec<(&'static str, [usize; 4], bool)>,
    pub adds: Vec<(&'static str, [usize; 4], bool)>,
    pub max_pools: Vec<(&'static str, [usize; 4], PoolGeometry)>,
    pub global_pools: Vec<(&'static str, [usize; 4])>,
    pub losses: Vec<(&'static str, usize, usize)>,
    /// `(model, learnable scalars)`: one SGD step over all of a model's parameters.
    pub sgd: Vec<(&'static str, usize)>,
}

fn push_distinct<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl KernelPlan {
    pub fn for_device(device: BenchDevice) -> Result<Self> {
        let mut plan = KernelPlan::default();
        for (model, batch) in MODEL_BATCHES {
            let s = ModelShapes::of(model, device.batch_for(model, batch))?;
            for c in s.convs {
                push_distinct(&mut plan.convs, (model, c));
            }
            for (dims, relu) in s.batch_norms {
                push_distinct(&mut plan.batch_norms, (model, dims, relu));
            }
            for (dims, relu) in s.adds {
                push_distinct(&mut plan.adds, (model, dims, relu));
            }
            for (dims, geom) in s.max_pools {
                push_distinct(&mut plan.max_pools, (model, dims, geom));
            }
            for dims in s.global_pools {
                push_distinct(&mut plan.global_pools, (model, dims));
            }
            for (n, classes) in s.losses {
                push_distinct(&mut plan.losses, (model, n, classes));
            }
            push_distinct(&mut plan.sgd, (model, s.num_params));
        }
        Ok(plan)
    }
}
