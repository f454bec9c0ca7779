//! What `--gpus N` runs on, decided once per process before any replica starts.
//!
//! - NCCL found: one communicator over all GPUs of the run. In a single process its id is made
//!   here; in a launch of several processes (torchrun or Slurm, [`WorldEnv`]) global rank 0 makes
//!   it and the TCP rendezvous hands it to the others, and the process of rank `r` runs global
//!   ranks `r * gpus .. (r + 1) * gpus` of `processes * gpus` on its machine's GPUs from
//!   `local_rank * gpus` (one process per machine: local rank 0, GPUs from 0).
//! - NCCL missing on one machine: a one-line warning, and the gradients are summed through host
//!   memory (slower, same result up to summation order).
//! - NCCL missing in a multi-process launch: an error, since host memory does not span machines.

use std::sync::Arc;
use std::time::Duration;

use super::nccl::find_installed;
use super::nccl_ffi::{Nccl, UniqueId};
use super::rendezvous::WorldEnv;
use crate::error::{Error, Result};

/// This process's part of an NCCL world.
pub struct NcclWorld {
    pub nccl: Arc<Nccl>,
    /// Made by global rank 0.
    pub id: UniqueId,
    /// The global rank of this process's first GPU (`rank * gpus`).
    pub first_rank: usize,
    /// The ordinal of this process's first GPU on its machine (`local_rank * gpus`).
    pub first_gpu: usize,
    /// All GPUs of all processes.
    pub world_size: usize,
}

/// How the replicas of `--gpus N` sum their gradients.
pub enum GpuComms {
    Nccl(NcclWorld),
    /// Through host memory, among the threads of this process (no NCCL here).
    HostStaged,
}

/// Whether this process runs the `--gpus` path: several GPUs, or one CUDA GPU (`--device cuda`) in a
/// launch of several processes. Other runs ignore the launch variables: Slurm sets `SLURM_NTASKS` in
/// every job step, and a CPU run inside one must stay a CPU run.
pub fn wanted(gpus: usize, cuda: bool) -> Result<bool> {
    if gpus > 1 {
        return Ok(true);
    }
    Ok(cuda && WorldEnv::from_env()?.is_some_and(|w| w.world_size > 1))
}

/// Checks this machine can run `--gpus gpus` (`super::gpus::check`), loads NCCL and, in a
/// multi-process launch, meets the other processes (waiting at most `timeout`).
pub fn prepare(gpus: usize, timeout: Duration) -> Result<GpuComms> {
    let world = WorldEnv::from_env()?.filter(|w| w.world_size > 1);
    let first_gpu = world.as_ref().map_or(0, |w| w.local_rank * gpus);
    super::gpus::check_from(first_gpu, gpus)?;
    let nccl = find_installed().and_then(|path| Nccl::load(&path));
    let nccl = match (nccl, &world) {
        (Ok(nccl), _) => Arc::new(nccl),
        (Err(e), None) => {
            eprintln!("warning: {e}; summing gradients through host memory instead (slower)");
            return Ok(GpuComms::HostStaged);
        }
        (Err(e), Some(w)) => {
            return Err(Error::Config(format!(
                "--gpus {gpus} in a launch of {} processes needs NCCL: {e}",
                w.world_size
            )))
        }
    };
    let Some(w) = world else {
        let id = nccl.unique_id()?;
        return Ok(GpuComms::Nccl(NcclWorld {
            nccl,
            id,
            first_rank: 0,
            first_gpu: 0,
            world_size: gpus,
        }));
    };
    let blob = match w.rank {
        0 => id_blob(gpus, &nccl.unique_id()?),
        _ => Vec::new(),
    };
    let blob = w.rendezvous(&blob, timeout)?;
    let id = read_id_blob(&blob, gpus, w.rank)?;
    Ok(GpuComms::Nccl(NcclWorld {
        nccl,
        id,
        first_rank: w.rank * gpus,
        first_gpu,
        world_size: w.world_size * gpus,
    }))
}

/// What rank 0 sends: its GPU count (every process must run as many) and the NCCL id.
fn id_blob(gpus: usize, id: &UniqueId) -> Vec<u8> {
    let mut blob = (gpus as u32).to_le_bytes().to_vec();
    blob.extend(id.to_bytes());
    blob
}

/// The NCCL id from rank 0's blob, checking that rank 0 runs as many GPUs as this process.
fn read_id_blob(blob: &[u8], gpus: usize, rank: usize) -> Result<UniqueId> {
    let Some((count, id)) = blob.split_first_chunk::<4>() else {
        return Err(Error::Rendezvous(format!(
            "rank {rank}: rank 0 sent {} bytes, not a GPU count and an NCCL id",
            blob.len()
        )));
    };
    let theirs = u32::from_le_bytes(*count) as usize;
    if theirs != gpus {
        return Err(Error::Rendezvous(format!(
            "rank {rank} runs --gpus {gpus} but rank 0 runs --gpus {theirs}: every process must \
             run the same number"
        )));
    }
    UniqueId::from_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_blob_carries_the_gpu_count_and_the_id() {
        let mut id = UniqueId { internal: [0; 128] };
        id.internal[0] = 42;
        id.internal[127] = -3;
        let blob = id_blob(4, &id);
        assert_eq!(read_id_blob(&blob, 4, 1).unwrap().internal, id.internal);
        let err = read_id_blob(&blob, 8, 2).unwrap_err().to_string();
        assert!(
            err.contains("rank 2 runs --gpus 8 but rank 0 runs --gpus 4"),
            "{err}"
        );
        assert!(read_id_blob(&blob[..3], 4, 1).is_err());
    }
}
