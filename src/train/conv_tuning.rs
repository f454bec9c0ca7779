//! `--conv-tuning on` (`train`, `bench`): the GPU backend times every kernel that can compute each
//! convolution pass at its first call and keeps the fastest (cuDNN's benchmark mode;
//! `backend/gpu/conv_tuning.rs`). Off by default: the plan's kernels are a function of the shape
//! alone, so a shape computes the same bits on every GPU and in the emulator, and a timed choice
//! does not.
//!
//! A training run keeps its choices in its run folder (`conv-tuning.json`), and the flag is part of
//! its saved config: so `--resume` takes the same kernels without timing them again, and the resumed
//! run computes what the uninterrupted one would have. `RESNET_CONV_TUNING_FILE`, where set, names
//! the file instead (one file shared by several runs on a machine, as the device check does).

use std::path::Path;

use super::{Device, TrainConfig};
use crate::backend::gpu::{Driver, GpuBackend};
use crate::backend::Precision;
use crate::error::{Error, Result};

/// The file in a run folder that keeps its convolution tuning's choices.
pub const TUNING_FILE: &str = "conv-tuning.json";

/// Rejects `--conv-tuning on` where there is nothing to choose between: the CPU backend, and f32 on
/// a GPU (the tuning chooses among the bf16 tensor-core kernels).
pub fn check_conv_tuning(on: bool, device: Device, precision: Precision) -> Result<()> {
    match (on, device, precision) {
        (false, ..) => Ok(()),
        (true, Device::Cpu, _) => Err(Error::Config(
            "--conv-tuning on: the CPU backend has one kernel per convolution; tuning chooses among \
             the GPU's tensor-core kernels (--device cuda or emu)"
                .into(),
        )),
        (true, _, Precision::F32) => Err(Error::Config(
            "--conv-tuning on: tuning chooses among the bf16 tensor-core kernels, and this run \
             computes in f32 (--precision bf16, the GPU's default, or --conv-tuning off)"
                .into(),
        )),
        (true, _, Precision::Bf16) => Ok(()),
    }
}

/// `gpu` tuning its convolutions when `on` (else as `RESNET_CONV_TUNING` says), its choices kept in
/// `file` where given, unless `RESNET_CONV_TUNING_FILE` names another.
pub fn with_conv_tuning<D: Driver>(
    gpu: GpuBackend<D>,
    on: bool,
    file: Option<&Path>,
) -> GpuBackend<D> {
    if !on {
        return gpu;
    }
    let gpu = gpu.with_conv_tuning(true);
    match file {
        Some(path) if std::env::var_os("RESNET_CONV_TUNING_FILE").is_none() => {
            gpu.with_conv_tuning_file(path)
        }
        _ => gpu,
    }
}

/// `gpu` as a run with `cfg` takes it: tuning with `--conv-tuning on`, its choices kept in the run
/// folder's file where `writes_run_folder` (the process that writes the folder: rank 0's; another
/// machine's need not see it, and tunes for itself).
pub fn for_run<D: Driver>(
    gpu: GpuBackend<D>,
    cfg: &TrainConfig,
    writes_run_folder: bool,
) -> GpuBackend<D> {
    let file = cfg.out.join(TUNING_FILE);
    with_conv_tuning(
        gpu,
        cfg.conv_tuning,
        writes_run_folder.then_some(file.as_path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_is_refused_where_nothing_is_tuned() {
        for (device, precision, flag_named) in [
            (Device::Cpu, Precision::F32, true),
            (Device::Emulator, Precision::F32, true),
            (Device::Cuda, Precision::F32, true),
            (Device::Emulator, Precision::Bf16, false),
            (Device::Cuda, Precision::Bf16, false),
        ] {
            assert!(check_conv_tuning(false, device, precision).is_ok());
            match check_conv_tuning(true, device, precision) {
                Err(e) => assert!(flag_named && e.to_string().contains("--conv-tuning on")),
                Ok(()) => assert!(!flag_named, "{device:?} {precision}"),
            }
        }
    }
}
