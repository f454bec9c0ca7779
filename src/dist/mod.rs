//! Data parallelism: the collective operations replicas use to stay in step, their in-process host
//! implementation (threads) and their NCCL implementation (GPUs, `nccl_ffi`, `nccl_comm`), the
//! gradient buckets that overlap communication with backward (`buckets`, `comm_thread`), and the
//! rendezvous that lets several processes find each other (`rendezvous`, `launch`).
//!
//! Every replica holds the same weights; each computes the gradient of its own slice of the global
//! batch, the replicas sum those gradients (all-reduce), divide by the number of replicas and take the
//! same SGD step. Because `(1/N) * sum_r grad(loss_r)` is the gradient of the mean loss over the global
//! batch, the update equals one replica's update on the whole batch, up to batch norm, whose statistics
//! stay per replica (per micro-batch) as in the paper.

pub mod buckets;
pub mod comm_thread;
pub mod gpus;
mod host;
pub mod launch;
pub mod nccl;
pub mod nccl_comm;
pub mod nccl_ffi;
pub mod rendezvous;

pub use host::{HostGroup, HostMember};

use crate::error::Result;

/// The operations a group of `world_size` replicas perform together. Every member must call the same
/// operations in the same order with buffers of the same length; each call returns once every member
/// has made it, or with an error as soon as any member has failed (see [`Collective::abort`]).
/// `Sync`, because a replica's communication thread runs its all-reduces while the replica's own
/// thread may abort it (`comm_thread`).
pub trait Collective: Send + Sync {
    /// This member's index, `0..world_size`.
    fn rank(&self) -> usize;
    /// The number of members.
    fn world_size(&self) -> usize;
    /// `buf = sum over ranks r of buf_r`, the same bits on every rank (summed in rank order).
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// `buf = buf_0`: rank 0's buffer on every rank.
    fn broadcast(&self, buf: &mut [f32]) -> Result<()>;
    /// Returns once every member has reached it.
    fn barrier(&self) -> Result<()>;
    /// Marks this member as failed with `reason`: every member blocked in (or later entering) a
    /// collective returns an error naming this rank and the reason.
    fn abort(&self, reason: &str);
    /// The first failure recorded in the group (as far as this member knows): `(rank, reason)`.
    fn failure(&self) -> Option<(usize, String)>;
}

/// Rank 0's `value` on every rank, bit for bit (an `f64` travels as two `f32` bit patterns, since a
/// broadcast copies bits without arithmetic).
pub fn broadcast_f64(group: &dyn Collective, value: f64) -> Result<f64> {
    let bits = value.to_bits();
    let mut buf = [
        f32::from_bits((bits >> 32) as u32),
        f32::from_bits(bits as u32),
    ];
    group.broadcast(&mut buf)?;
    Ok(f64::from_bits(
        (u64::from(buf[0].to_bits()) << 32) | u64::from(buf[1].to_bits()),
    ))
}
