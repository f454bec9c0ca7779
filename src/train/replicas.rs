//! Data-parallel training: N replica threads, each with its own backend instance, network and slice
//! of every global batch, kept in step by a [`Collective`] (the host group here; NCCL for GPUs in
//! `super::nccl_replicas`), with the gradients summed in buckets while backward runs
//! ([`GradientSync`]).
//!
//! Per step, replica `r` of `N` takes images `[r B/N, (r+1) B/N)` of the global batch `B` (the same
//! indices and augmentation draws the single-replica loop would use), computes its gradient `g_r` of
//! the mean loss over its slice, and every replica then holds `g = (sum_r g_r) / N`, the gradient of the
//! mean loss over the whole batch (batch norm aside: its statistics are per slice, as in the paper).
//! The identical SGD step on identical weights keeps the replicas bit-identical.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::backend::{Backend, LossStats};
use crate::data::batch::MeanImage;
use crate::dist::buckets::cap_elements;
use crate::dist::comm_thread::CommThread;
use crate::dist::{broadcast_f64, Collective, HostGroup, HostMember};
use crate::error::{panic_message, Error, Result};
use crate::models::Network;
use crate::tensor::Tensor;

use super::bucketed::HostGradients;
use super::{Outcome, TrainConfig};

/// The environment variable that injects a replica fault, for tests: `RANK:ITERATION` makes replica
/// `RANK` fail with an error at the start of that (0-based) iteration, `RANK:ITERATION:panic` panic.
pub const FAULT_ENV: &str = "RESNET_CUDA_INJECT_REPLICA_FAULT";
/// Seconds a replica waits in a collective before declaring the missing replicas lost (default 1800:
/// rank 0 evaluates while the others wait, and a CPU evaluation can take minutes).
pub const TIMEOUT_ENV: &str = "RESNET_CUDA_COLLECTIVE_TIMEOUT";

/// A deliberate failure, to test that one replica's failure stops the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub rank: usize,
    pub iteration: u64,
    pub panic: bool,
}

impl Fault {
    /// Reads [`FAULT_ENV`]; `None` when unset.
    pub fn from_env() -> Result<Option<Fault>> {
        let Ok(spec) = std::env::var(FAULT_ENV) else {
            return Ok(None);
        };
        let bad = || {
            Error::Config(format!(
                "{FAULT_ENV}={spec:?}: expected RANK:ITERATION[:panic]"
            ))
        };
        let mut parts = spec.split(':');
        let rank = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let iteration = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let panic = match parts.next() {
            None => false,
            Some("panic") => true,
            Some(_) => return Err(bad()),
        };
        Ok(Some(Fault {
            rank,
            iteration,
            panic,
        }))
    }
}

/// How replicas run, beyond the training config.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// How long a replica waits for the others in one collective.
    pub timeout: Duration,
    pub fault: Option<Fault>,
}

impl ReplicaOptions {
    /// The options the environment asks for ([`TIMEOUT_ENV`], [`FAULT_ENV`]).
    pub fn from_env() -> Result<Self> {
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Err(_) => Duration::from_secs(1800),
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    Error::Config(format!("{TIMEOUT_ENV}={v:?}: expected a number of seconds"))
                })?,
        };
        Ok(ReplicaOptions {
            timeout,
            fault: Fault::from_env()?,
        })
    }
}

/// A finished replica run: rank 0's outcome and every replica's final parameters (flattened in
/// parameter order), which are bit-identical when all went well.
pub struct ReplicaRun {
    pub outcome: Outcome,
    pub weights: Vec<Vec<f32>>,
}

/// Runs `cfg.replicas` replicas, one thread each, replica `r` on the backend `make_backend(r)`
/// returns. If
/// any replica fails (an error or a panic), the others stop at their next collective and the result
/// is the first failure, naming its replica.
pub fn train_replicas<B, F>(
    cfg: &TrainConfig,
    resume: Option<super::RunState>,
    stop: &AtomicBool,
    options: &ReplicaOptions,
    make_backend: F,
) -> Result<ReplicaRun>
where
    B: Backend<Elem = f32>,
    F: Fn(usize) -> Result<B> + Sync,
{
    let members = HostGroup::members(cfg.replicas, options.timeout);
    let results = on_replica_threads(members, HostMember::rank, |member| {
        let (cfg, resume) = (cfg.clone(), resume.clone());
        run_one(member, cfg, resume, stop, options.fault, &make_backend)
    });
    collect_run(results)
}

/// Runs `run(replica)` for every replica on a thread of its own, named `replica-{rank}`, and
/// returns the results in order. `run` catches its own panics (`panic_to_error`).
pub(super) fn on_replica_threads<R: Send, T: Send>(
    replicas: Vec<R>,
    rank: impl Fn(&R) -> usize,
    run: impl Fn(R) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .into_iter()
            .map(|replica| {
                let run = &run;
                std::thread::Builder::new()
                    .name(format!("replica-{}", rank(&replica)))
                    .spawn_scoped(s, move || run(replica))
                    .map_err(|e| Error::Config(format!("cannot start a replica thread: {e}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h?.join()
                    .unwrap_or_else(|_| unreachable!("replica threads catch their panics"))
            })
            .collect()
    })
}

/// The run of replicas whose threads returned `results` (in rank order): the first failure, or the
/// first replica's outcome and everyone's weights.
pub(super) fn collect_run(results: Vec<Result<(Outcome, Vec<f32>)>>) -> Result<ReplicaRun> {
    let mut outcome = None;
    let mut weights = Vec::new();
    for result in results {
        let (o, w) = result?;
        outcome.get_or_insert(o);
        weights.push(w);
    }
    Ok(ReplicaRun {
        outcome: outcome.expect("at least one replica"),
        weights,
    })
}

/// One replica's thread: train, and on failure tell the group (the first failure wins, so every
/// replica then reports the same one).
fn run_one<B: Backend<Elem = f32>>(
    member: HostMember,
    cfg: TrainConfig,
    resume: Option<super::RunState>,
    stop: &AtomicBool,
    fault: Option<Fault>,
    make_backend: &(impl Fn(usize) -> Result<B> + Sync),
) -> Result<(Outcome, Vec<f32>)> {
    let rank = member.rank();
    // The scope joins the replica's communication thread; the group is aborted on failure before
    // the scope ends, which releases that thread if it is blocked in a collective.
    std::thread::scope(|scope| {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let be = make_backend(rank)?;
            let comm = CommThread::spawn(scope, &member)?;
            let cap = cap_elements(cfg.bucket_mb.unwrap_or(DEFAULT_BUCKET_MB));
            let gradients = HostGradients::new(comm, cap, member.world_size());
            run_trainer(&be, &member, Box::new(gradients), cfg, resume, stop, fault)
        }));
        tell_group(&member, rank, panic_to_error(rank, result))
    })
}

/// Trains one replica on `be` in `group`, its gradients summed by `gradients`: rank 0's outcome and
/// this replica's final parameters.
pub(super) fn run_trainer<'g, B: Backend<Elem = f32>>(
    be: &'g B,
    group: &'g dyn Collective,
    gradients: Box<dyn GradientSync<B> + 'g>,
    cfg: TrainConfig,
    resume: Option<super::RunState>,
    stop: &AtomicBool,
    fault: Option<Fault>,
) -> Result<(Outcome, Vec<f32>)> {
    let replica = Replica::new(group, gradients, fault);
    let mut trainer = super::Trainer::new(be, cfg, resume, Some(replica))?;
    let outcome = trainer.run(stop)?;
    let weights = flat_params(be, &mut trainer.net)?;
    Ok((outcome, weights))
}

/// A replica thread's result with a panic turned into an error naming the replica.
pub(super) fn panic_to_error<T>(rank: usize, result: std::thread::Result<Result<T>>) -> Result<T> {
    result.unwrap_or_else(|payload| {
        Err(Error::Replica {
            rank,
            message: format!("panicked: {}", panic_message(&*payload)),
        })
    })
}

/// On failure, tells the group (the first failure wins, so every replica then reports the same
/// one) and returns the group's first failure.
pub(super) fn tell_group<T>(group: &dyn Collective, rank: usize, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        match e {
            // Every replica sees the same all-reduced loss and stops at the same step: no one
            // replica is at fault, and no one waits in a collective.
            Error::Diverged { .. } => return result,
            Error::Replica { rank: r, message } if *r == rank => group.abort(message),
            // Another replica's failure reached us through a collective: it is already recorded.
            Error::Replica { .. } => {}
            other => group.abort(&other.to_string()),
        }
    }
    result.map_err(|e| match group.failure() {
        Some((rank, message)) => Error::Replica { rank, message },
        None => e,
    })
}

/// The parameters of `net`, flattened in parameter order.
pub fn flat_params<B: Backend<Elem = f32>>(be: &B, net: &mut Network<B>) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut outcome = Ok(());
    net.visit_params(&mut |p| {
        if outcome.is_ok() {
            outcome = p.value.to_vec(be).map(|v| out.extend(v));
        }
    });
    outcome.map(|()| out)
}

/// Gradient buckets of this many megabytes unless `--bucket-mb` says otherwise (PyTorch DDP's
/// default `bucket_cap_mb`).
pub const DEFAULT_BUCKET_MB: f64 = 25.0;

/// How a replica's training step sums its gradients with the other replicas': on the host through
/// a communication thread (`super::bucketed`), or on the GPU with NCCL (`super::nccl_buckets`).
pub(super) trait GradientSync<B: Backend>: Send {
    /// Forward, loss and backward on this replica's slice `x`, after which every gradient of `net`
    /// is the mean over the replicas and the statistics are those of the whole global batch (mean
    /// loss, summed counts).
    fn forward_backward(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        x: &Tensor<B>,
        labels: &[u32],
    ) -> Result<LossStats>;
}

/// A replica's side of the group, as the trainer sees it.
pub(super) struct Replica<'g, B: Backend> {
    group: &'g dyn Collective,
    fault: Option<Fault>,
    /// Host staging for broadcasts and batch-norm statistics, reused.
    flat: Vec<f32>,
    gradients: Box<dyn GradientSync<B> + 'g>,
}

impl<'g, B: Backend<Elem = f32>> Replica<'g, B> {
    pub fn new(
        group: &'g dyn Collective,
        gradients: Box<dyn GradientSync<B> + 'g>,
        fault: Option<Fault>,
    ) -> Self {
        Replica {
            group,
            fault,
            flat: Vec::new(),
            gradients,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.group.rank() == 0
    }

    /// `(rank, world size)`: which slice of every global batch is this replica's
    /// (`data::loader::shard`).
    pub fn place(&self) -> (usize, usize) {
        (self.group.rank(), self.group.world_size())
    }

    /// Fails (or panics) here if a test asked this replica to at this iteration.
    pub fn maybe_fail(&self, iteration: u64) -> Result<()> {
        match self.fault {
            Some(f) if f.rank == self.group.rank() && f.iteration == iteration => {
                if f.panic {
                    panic!("injected panic at iteration {iteration}");
                }
                Err(Error::Replica {
                    rank: f.rank,
                    message: format!("injected fault at iteration {iteration}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Rank 0's mean image on every replica (`mean` is only read on rank 0).
    pub fn broadcast_mean(&self, mean: &mut MeanImage) -> Result<()> {
        self.group.broadcast(&mut mean.data)
    }

    /// Rank 0's parameters and batch-norm running statistics on every replica.
    pub fn broadcast_weights(&mut self, be: &B, net: &mut Network<B>) -> Result<()> {
        let group = self.group;
        each_state_tensor(be, net, &mut self.flat, |buf| group.broadcast(buf))
    }

    /// Replaces every replica's batch-norm running statistics by their mean over the replicas, so
    /// that evaluation and checkpoints see the statistics of all the data, not one slice.
    pub fn average_batch_norms(&mut self, be: &B, net: &mut Network<B>) -> Result<()> {
        let n = self.group.world_size() as f32;
        let (group, flat) = (self.group, &mut self.flat);
        let mut outcome = Ok(());
        net.visit_batch_norms(&mut |bn| {
            for t in [&mut bn.running_mean, &mut bn.running_var] {
                if outcome.is_ok() {
                    outcome = reduce_tensor(be, t, flat, |buf| {
                        group.all_reduce_sum(buf)?;
                        buf.iter_mut().for_each(|v| *v /= n);
                        Ok(())
                    });
                }
            }
        });
        outcome
    }

    /// Forward, loss and backward on this replica's slice `x`, with the gradients all-reduced in
    /// buckets while backward runs: afterwards every gradient is the mean over the replicas and the
    /// statistics are those of the whole global batch (mean loss, summed counts).
    pub fn forward_backward(
        &mut self,
        be: &B,
        net: &mut Network<B>,
        x: &Tensor<B>,
        labels: &[u32],
    ) -> Result<LossStats> {
        self.gradients.forward_backward(be, net, x, labels)
    }

    /// Rank 0's decision on every replica: whether Ctrl-C stops the run now.
    pub fn agree_to_stop(&self, stop: bool) -> Result<bool> {
        let mut flag = [if stop { 1.0 } else { 0.0 }];
        self.group.broadcast(&mut flag)?;
        Ok(flag[0] != 0.0)
    }

    /// Rank 0's test error on every replica, bit for bit (the plateau schedule compares it).
    pub fn share_test_error(&self, test_err: f64) -> Result<f64> {
        broadcast_f64(self.group, test_err)
    }
}

/// Applies `f` to a host copy of every parameter and batch-norm running statistic of `net`, writing
/// the result back.
fn each_state_tensor<B: Backend<Elem = f32>>(
    be: &B,
    net: &mut Network<B>,
    flat: &mut Vec<f32>,
    mut f: impl FnMut(&mut [f32]) -> Result<()>,
) -> Result<()> {
    let mut outcome = Ok(());
    net.visit_params(&mut |p| {
        if outcome.is_ok() {
            outcome = reduce_tensor(be, &mut p.value, flat, &mut f);
        }
    });
    net.visit_batch_norms(&mut |bn| {
        for t in [&mut bn.running_mean, &mut bn.running_var] {
            if outcome.is_ok() {
                outcome = reduce_tensor(be, t, flat, &mut f);
            }
        }
    });
    outcome
}

/// `t = f(t)` through the host buffer `flat`.
fn reduce_tensor<B: Backend<Elem = f32>>(
    be: &B,
    t: &mut Tensor<B>,
    flat: &mut Vec<f32>,
    mut f: impl FnMut(&mut [f32]) -> Result<()>,
) -> Result<()> {
    flat.clear();
    flat.extend(t.to_vec(be)?);
    f(flat)?;
    t.copy_from_slice(be, flat)
}
