//! `--gpus N` with NCCL: one replica thread per local GPU, each joining the NCCL communicator as
//! global rank `first_rank + gpu` of `world_size` (several processes, one per machine, make one
//! world: `dist::launch`). Gradients are averaged on the GPUs in buckets overlapped with backward
//! (`super::nccl_buckets`); the rare host exchanges (weights, mean image, stop flag, test error,
//! batch-norm statistics) go through the same communicator (`dist::nccl_comm`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::gpu::{Driver, GpuBackend};
use crate::dist::buckets::cap_elements;
use crate::dist::launch::NcclWorld;
use crate::dist::nccl_comm::{LocalFailure, NcclComm};
use crate::error::{Error, Result};

use super::nccl_buckets::NcclGradients;
use super::replicas::{
    collect_run, on_replica_threads, panic_to_error, run_trainer, tell_group, ReplicaOptions,
    ReplicaRun, DEFAULT_BUCKET_MB,
};
use super::{Outcome, RunState, TrainConfig};

/// Trains `cfg.gpus` replicas, one per local GPU, in `world`.
pub fn train_gpus(
    cfg: &TrainConfig,
    resume: Option<RunState>,
    stop: &AtomicBool,
    options: &ReplicaOptions,
    world: &NcclWorld,
) -> Result<ReplicaRun> {
    let local = Arc::new(LocalFailure::default());
    let gpus: Vec<usize> = (0..cfg.gpus).collect();
    let results = on_replica_threads(
        gpus,
        |&gpu| world.first_rank + gpu,
        |gpu| {
            run_gpu(
                gpu,
                cfg.clone(),
                resume.clone(),
                stop,
                options,
                world,
                &local,
            )
        },
    );
    collect_run(results)
}

/// The replica on this process's GPU `gpu` (machine GPU `first_gpu + gpu`).
fn run_gpu(
    gpu: usize,
    cfg: TrainConfig,
    resume: Option<RunState>,
    stop: &AtomicBool,
    options: &ReplicaOptions,
    world: &NcclWorld,
    local: &Arc<LocalFailure>,
) -> Result<(Outcome, Vec<f32>)> {
    let rank = world.first_rank + gpu;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let precision = super::resolve_precision(cfg.precision, super::Device::Cuda)?;
        let be =
            GpuBackend::open(&format!("cuda:{}", world.first_gpu + gpu))?.with_precision(precision);
        let be = super::conv_tuning::for_run(be, &cfg, world.first_rank == 0);
        let cuda = be.driver().as_cuda().ok_or_else(|| Error::Replica {
            rank,
            message: format!("{} is not a CUDA device", be.driver().name()),
        })?;
        let comm = NcclComm::init(
            world.nccl.clone(),
            &world.id,
            rank,
            world.world_size,
            cuda,
            options.timeout,
            local.clone(),
        )?;
        let cap = cap_elements(cfg.bucket_mb.unwrap_or(DEFAULT_BUCKET_MB));
        let gradients = NcclGradients::new(&comm, cap);
        let result = run_trainer(
            &be,
            &comm,
            Box::new(gradients),
            cfg,
            resume,
            stop,
            options.fault,
        );
        tell_group(&comm, rank, result)
    }));
    let result = panic_to_error(rank, result);
    if let Err(e) = &result {
        // A panic, or a failure before the communicator existed: the other local replicas learn
        // of it at their next wait.
        if !matches!(e, Error::Diverged { .. }) {
            local.record(rank, &e.to_string());
        }
    }
    result.map_err(|e| match (&e, local.get()) {
        (Error::Diverged { .. }, _) | (_, None) => e,
        (_, Some((rank, message))) => Error::Replica { rank, message },
    })
}
