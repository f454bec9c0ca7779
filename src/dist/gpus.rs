//! Whether `--gpus N` can run here, and if not, the one thing missing, as one line: a usable CUDA
//! driver, N GPUs, and embedded kernels that fit each of them.
//!
//! NCCL is checked afterwards (`super::launch`): it is needed across machines, and on one machine
//! its absence only costs speed.

use crate::backend::gpu::cuda_info::{self, DriverStatus};
use crate::error::{Error, Result};

use super::rendezvous::WorldEnv;

/// What this machine lacks for `--gpus gpus`, checked in the order a user would fix them.
pub fn check(gpus: usize) -> Result<()> {
    check_from(0, gpus)
}

/// [`check`] for GPUs `first .. first + gpus` (a process of a multi-process launch with
/// `LOCAL_RANK` > 0 drives the GPUs after those of the processes before it on its machine).
pub fn check_from(first: usize, gpus: usize) -> Result<()> {
    let error = |why: String| {
        let local = match first {
            0 => String::new(),
            f => format!(" from GPU {f} (LOCAL_RANK)"),
        };
        Error::Config(format!("--gpus {gpus}{local}: {why}"))
    };
    let fail = |why: String| Err(error(why));
    let cpu_hint = format!("(--device cpu --replicas {gpus} runs data parallelism on the CPU)");
    // A multi-node launch with a broken environment is reported before anything else is probed.
    WorldEnv::from_env()?;
    match cuda_info::probe() {
        DriverStatus::NotFound { reason } => {
            return fail(format!("no usable CUDA GPU: {reason} {cpu_hint}"))
        }
        DriverStatus::Unusable { reason, .. } => {
            return fail(format!("the CUDA driver is unusable: {reason} {cpu_hint}"))
        }
        DriverStatus::Found { gpus: found, .. } if found.len() < first + gpus => {
            return fail(format!(
                "this machine has {} CUDA GPU{} {cpu_hint}",
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            ))
        }
        DriverStatus::Found { .. } => {}
    }
    match (first..first + gpus).find(|&i| !cuda_info::gpu_ready(i)) {
        Some(i) => fail(format!(
            "GPU {i} cannot run the embedded kernels (an older driver or GPU, or a binary built \
             without nvcc: `resnet-cuda info` says which)"
        )),
        None => Ok(()),
    }
}
