//! One GPU's place in an NCCL communicator: device all-reduces on a side stream of the replica's
//! GPU, waited for with a timeout, and the [`Collective`] operations on host slices through a
//! device scratch buffer (for the rare exchanges: weights, mean image, stop flag, test error).
//!
//! Waiting: the host never blocks in CUDA or NCCL while a collective may hang. It polls the side
//! stream (`cuStreamQuery`) and, between polls, `ncclCommGetAsyncError` and the failures of the
//! other replicas of this process; on an NCCL error, on a local failure or after the timeout it
//! aborts the communicator (`ncclCommAbort`, which also releases the kernels NCCL left waiting on
//! the GPU) and returns an error naming the rank and NCCL's message. Replicas on other machines
//! then see their own collective fail (NCCL reports the lost peer) or time out.
//!
//! `ncclCommInitRank` itself blocks until every rank has joined; a rank that never comes leaves the
//! others waiting there (the launcher's own timeout, or Ctrl-C, ends that).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::nccl_ffi::{Nccl, RawComm, ReduceOp, UniqueId, NCCL_IN_PROGRESS, NCCL_SUCCESS};
use super::Collective;
use crate::backend::gpu::{CudaDriver, DevicePtr, Driver, SideStream};
use crate::error::{Error, Result};

/// The first failure among the replicas of this process, shared by their communicators so that a
/// replica waiting in a collective stops as soon as another one fails.
#[derive(Default)]
pub struct LocalFailure(Mutex<Option<(usize, String)>>);

impl LocalFailure {
    pub fn record(&self, rank: usize, reason: &str) {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert((rank, reason.to_string()));
    }

    pub fn get(&self) -> Option<(usize, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A device buffer for host-slice collectives, grown as needed.
struct Scratch {
    ptr: DevicePtr,
    bytes: usize,
}

/// One rank's communicator on its GPU.
pub struct NcclComm<'d> {
    nccl: Arc<Nccl>,
    /// Null once aborted.
    comm: Mutex<RawComm>,
    rank: usize,
    world_size: usize,
    driver: &'d CudaDriver,
    stream: SideStream,
    timeout: Duration,
    local: Arc<LocalFailure>,
    scratch: Mutex<Scratch>,
}

// SAFETY: the communicator handle is used under its mutex or by the one thread issuing this rank's
// operations; NCCL communicators may be used from any thread that has the GPU's context current,
// which every call here makes so first.
unsafe impl Send for NcclComm<'_> {}
// SAFETY: as above.
unsafe impl Sync for NcclComm<'_> {}

impl<'d> NcclComm<'d> {
    /// Joins communicator `id` as `rank` of `world_size` on `driver`'s GPU. Blocks until every
    /// rank has joined.
    pub fn init(
        nccl: Arc<Nccl>,
        id: &UniqueId,
        rank: usize,
        world_size: usize,
        driver: &'d CudaDriver,
        timeout: Duration,
        local: Arc<LocalFailure>,
    ) -> Result<NcclComm<'d>> {
        driver.make_current()?;
        let stream = driver.side_stream()?;
        // SAFETY: the GPU's context was made current above.
        let comm =
            unsafe { nccl.comm_init_rank(id, world_size, rank) }.map_err(|e| Error::Replica {
                rank,
                message: format!("{e} on {}", driver.name()),
            })?;
        Ok(NcclComm {
            nccl,
            comm: Mutex::new(comm),
            rank,
            world_size,
            driver,
            stream,
            timeout,
            local,
            scratch: Mutex::new(Scratch { ptr: 0, bytes: 0 }),
        })
    }

    fn raw(&self) -> Result<RawComm> {
        let comm = *self.comm.lock().unwrap_or_else(|e| e.into_inner());
        if comm.is_null() {
            return Err(self.failed("the NCCL communicator was aborted".into()));
        }
        Ok(comm)
    }

    fn failed(&self, message: String) -> Error {
        match self.local.get() {
            Some((rank, message)) => Error::Replica { rank, message },
            None => Error::Replica {
                rank: self.rank,
                message,
            },
        }
    }

    /// Aborts the communicator (once) and records `reason` as this rank's failure.
    fn abort_with(&self, reason: &str) {
        self.local.record(self.rank, reason);
        let mut comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        if !comm.is_null() {
            let _ = self.driver.make_current();
            // SAFETY: live until now; nulled so that it is never used again.
            unsafe { self.nccl.comm_abort(*comm) };
            *comm = std::ptr::null_mut();
        }
    }

    /// Makes the side stream wait for the work issued so far on the compute stream: call before
    /// issuing collectives on buffers the compute stream wrote.
    pub fn after_compute(&self) -> Result<()> {
        self.stream.after_compute()
    }

    /// Issues, on the side stream, the all-reduce of `count` f32 at `ptr` in place.
    ///
    /// # Safety
    /// `ptr` is device memory of `count` f32 on this GPU that nothing else touches until
    /// [`NcclComm::wait`] has returned.
    pub unsafe fn issue_all_reduce(
        &self,
        ptr: DevicePtr,
        count: usize,
        op: ReduceOp,
    ) -> Result<()> {
        let comm = self.raw()?;
        self.driver.make_current()?;
        // SAFETY: the caller's guarantees; the communicator and the stream are live.
        let code = unsafe {
            self.nccl
                .all_reduce(ptr, ptr, count, op, comm, self.stream.raw())
        };
        self.check_issue("ncclAllReduce", code)
    }

    /// Issues, on the side stream, the broadcast of rank 0's `count` f32 at `ptr` in place.
    ///
    /// # Safety
    /// As [`NcclComm::issue_all_reduce`].
    pub unsafe fn issue_broadcast(&self, ptr: DevicePtr, count: usize) -> Result<()> {
        let comm = self.raw()?;
        self.driver.make_current()?;
        // SAFETY: as above.
        let code = unsafe {
            self.nccl
                .broadcast(ptr, ptr, count, 0, comm, self.stream.raw())
        };
        self.check_issue("ncclBroadcast", code)
    }

    fn check_issue(&self, what: &str, code: i32) -> Result<()> {
        if code == NCCL_SUCCESS || code == NCCL_IN_PROGRESS {
            return Ok(());
        }
        let reason = format!("{what}: {}", self.nccl.error_string(code));
        self.abort_with(&reason);
        Err(self.failed(reason))
    }

    /// Waits, polling, until everything issued on the side stream has finished, then orders the
    /// compute stream after it. On an NCCL error, another local replica's failure or after the
    /// timeout, aborts the communicator and returns the error.
    pub fn wait(&self, what: &str) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            match self.stream.is_idle() {
                Ok(true) => return self.stream.compute_after(),
                Ok(false) => {}
                Err(e) => {
                    self.abort_with(&e.to_string());
                    return Err(self.failed(e.to_string()));
                }
            }
            let comm = self.raw()?;
            // SAFETY: live (checked above).
            let code = unsafe { self.nccl.async_error(comm) };
            if code != NCCL_SUCCESS && code != NCCL_IN_PROGRESS {
                let reason = format!("NCCL {what} failed: {}", self.nccl.error_string(code));
                self.abort_with(&reason);
                return Err(self.failed(reason));
            }
            if let Some((rank, message)) = self.local.get() {
                self.abort_with(&message);
                return Err(Error::Replica { rank, message });
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "the NCCL {what} did not finish within {:.0} s (a rank is missing or stalled)",
                    self.timeout.as_secs_f64()
                );
                self.abort_with(&reason);
                return Err(self.failed(reason));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// `buf` through the scratch buffer: upload, `issue` on the side stream, wait, download.
    fn through_device(
        &self,
        what: &str,
        buf: &mut [f32],
        issue: impl FnOnce(DevicePtr, usize) -> Result<()>,
    ) -> Result<()> {
        let bytes = std::mem::size_of_val(buf).max(4);
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if scratch.bytes < bytes {
            if scratch.bytes > 0 {
                // SAFETY: allocated below with this size; the side stream is idle (every use waits).
                unsafe { self.driver.free(scratch.ptr, scratch.bytes) };
            }
            *scratch = Scratch { ptr: 0, bytes: 0 };
            let ptr = self.driver.alloc(bytes)?;
            *scratch = Scratch { ptr, bytes };
        }
        if buf.is_empty() {
            // A barrier: one value of no meaning. The side stream still waits for the compute
            // stream, on which the scratch buffer may just have been allocated (stream-ordered).
            self.after_compute()?;
            issue(scratch.ptr, 1)?;
            return self.wait(what);
        }
        // SAFETY: the scratch holds at least `bytes`; `buf` is valid host memory of that size.
        unsafe {
            self.driver.copy_host_to_device(
                buf.as_ptr() as *const u8,
                scratch.ptr,
                std::mem::size_of_val(buf),
            )?
        };
        self.after_compute()?;
        issue(scratch.ptr, buf.len())?;
        self.wait(what)?;
        // SAFETY: as above; the copy runs on the compute stream, which now waits for the side stream.
        unsafe {
            self.driver.copy_device_to_host(
                scratch.ptr,
                buf.as_mut_ptr() as *mut u8,
                std::mem::size_of_val(buf),
            )
        }
    }
}

impl Drop for NcclComm<'_> {
    fn drop(&mut self) {
        let _ = self.driver.make_current();
        let comm = *self.comm.get_mut().unwrap_or_else(|e| e.into_inner());
        if !comm.is_null() {
            // SAFETY: live; every operation was waited for (or the communicator was aborted).
            unsafe { self.nccl.comm_destroy(comm) };
        }
        let scratch = self.scratch.get_mut().unwrap_or_else(|e| e.into_inner());
        if scratch.bytes > 0 {
            // SAFETY: allocated by this driver with this size, freed once.
            unsafe { self.driver.free(scratch.ptr, scratch.bytes) };
        }
    }
}

impl Collective for NcclComm<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.through_device("all-reduce", buf, |ptr, n| {
            // SAFETY: the scratch buffer, used by nothing else until `wait` returns.
            unsafe { self.issue_all_reduce(ptr, n, ReduceOp::Sum) }
        })
    }

    fn broadcast(&self, buf: &mut [f32]) -> Result<()> {
        self.through_device("broadcast", buf, |ptr, n| {
            // SAFETY: as above.
            unsafe { self.issue_broadcast(ptr, n) }
        })
    }

    fn barrier(&self) -> Result<()> {
        self.through_device("barrier", &mut [], |ptr, n| {
            // SAFETY: as above.
            unsafe { self.issue_all_reduce(ptr, n, ReduceOp::Sum) }
        })
    }

    fn abort(&self, reason: &str) {
        self.abort_with(reason);
    }

    fn failure(&self) -> Option<(usize, String)> {
        self.local.get()
    }
}
