//! Whether `--gpus N` can run here, and if not, the one thing missing, as one line: a usable CUDA
//! driver, N GPUs, NCCL, and (until it lands) the multi-GPU trainer itself.

use crate::backend::gpu::cuda_info::{self, DriverStatus};
use crate::error::{Error, Result};

use super::nccl;

/// What this machine lacks for `--gpus gpus`, checked in the order a user would fix them.
pub fn check(gpus: usize) -> Result<()> {
    let error = |why: String| Error::Config(format!("--gpus {gpus}: {why}"));
    let fail = |why: String| Err(error(why));
    let cpu_hint = format!("(--device cpu --replicas {gpus} runs data parallelism on the CPU)");
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
    fail(format!(
        "{gpus} GPUs and NCCL ({}) are here, but the multi-GPU trainer (NCCL all-reduce of device \
         buffers) is not built yet {cpu_hint}",
        path.display()
    ))
}
