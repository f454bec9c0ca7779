//! Whether `--gpus N` can run here, and if not, the one thing missing, as one line: a usable CUDA
//! driver, N GPUs, NCCL, and (until it lands) the CUDA driver backend itself.

use crate::backend::gpu::cuda_info::{self, DriverStatus};
use crate::error::{Error, Result};

use super::nccl;
use super::rendezvous::WorldEnv;

/// What this machine lacks for `--gpus gpus`, checked in the order a user would fix them.
pub fn check(gpus: usize) -> Result<()> {
    let error = |why: String| Error::Config(format!("--gpus {gpus}: {why}"));
    let fail = |why: String| Err(error(why));
    let cpu_hint = format!("(--device cpu --replicas {gpus} runs data parallelism on the CPU)");
    // A multi-node launch with a broken environment is reported before anything else is probed.
    let world = WorldEnv::from_env()?;
    match cuda_info::probe() {
        DriverStatus::NotFound { reason } => {
            return fail(format!("no usable CUDA GPU: {reason} {cpu_hint}"))
        }
        DriverStatus::Unusable { reason, .. } => {
            return fail(format!("the CUDA driver is unusable: {reason} {cpu_hint}"))
        }
        DriverStatus::Found { gpus: found, .. } if found.len() < gpus => {
            return fail(format!(
                "this machine has {} CUDA GPU{} {cpu_hint}",
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            ))
        }
        DriverStatus::Found { .. } => {}
    }
    let path = nccl::find_installed().map_err(|e| error(e.to_string()))?;
    nccl::version(&path).map_err(|e| error(e.to_string()))?;
    let node = match world {
        Some(w) if w.world_size > 1 => format!(" on node {} of {}", w.rank, w.world_size),
        _ => String::new(),
    };
    fail(format!(
        "{gpus} GPUs and NCCL ({}) are here{node}, but the CUDA driver backend is not built yet \
         {cpu_hint}",
        path.display()
    ))
}
