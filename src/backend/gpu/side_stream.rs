//! A second stream on a GPU, beside a [`CudaDriver`](super::CudaDriver)'s own (compute) stream,
//! for work that should overlap the computation, such as NCCL's all-reduces of gradient buckets.
//!
//! The two streams are ordered by events, never by synchronising the host:
//! [`SideStream::after_compute`] makes the side stream wait for everything the compute stream has
//! been given so far (say, the kernels that wrote a bucket), and [`SideStream::compute_after`]
//! makes the compute stream wait for everything given to the side stream (the all-reduces, before
//! SGD reads their results). [`SideStream::is_idle`] lets the host poll, so that a caller can
//! give up after a timeout instead of blocking forever.

use std::ffi::c_void;

use cudarc::driver::result::{self, stream::StreamKind, DriverError};
use cudarc::driver::sys;

use crate::error::{Error, Result};

/// The side stream and the two events that order it against the compute stream.
pub struct SideStream {
    label: String,
    context: sys::CUcontext,
    compute: sys::CUstream,
    side: sys::CUstream,
    /// Recorded on the compute stream, waited for by the side stream.
    compute_done: sys::CUevent,
    /// Recorded on the side stream, waited for by the compute stream.
    side_done: sys::CUevent,
}

// SAFETY: driver-API handles are plain identifiers usable from any thread once the context is bound,
// which every method does first.
unsafe impl Send for SideStream {}
// SAFETY: as above; no method mutates host state.
unsafe impl Sync for SideStream {}

impl SideStream {
    /// A side stream for `compute` on `context`, which the caller has made current. `label` names
    /// the GPU in errors.
    pub(super) fn new(
        label: String,
        context: sys::CUcontext,
        compute: sys::CUstream,
    ) -> Result<SideStream> {
        let err = |what: &str| {
            let (label, what) = (label.clone(), what.to_string());
            move |e: DriverError| Error::Device {
                device: label,
                message: format!("{what} failed: {e}"),
            }
        };
        let side = result::stream::create(StreamKind::NonBlocking)
            .map_err(err("creating the communication stream"))?;
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING;
        // On an error, what was made before it is destroyed (just made, idle).
        let compute_done = match result::event::create(flags) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: see above.
                let _ = unsafe { result::stream::destroy(side) };
                return Err(err("cuEventCreate")(e));
            }
        };
        let side_done = match result::event::create(flags) {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: see above.
                unsafe {
                    let _ = result::event::destroy(compute_done);
                    let _ = result::stream::destroy(side);
                }
                return Err(err("cuEventCreate")(e));
            }
        };
        Ok(SideStream {
            label,
            context,
            compute,
            side,
            compute_done,
            side_done,
        })
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: the context is retained by the driver this stream belongs to, which outlives it.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| self.error("cuCtxSetCurrent", e))
    }

    fn error(&self, what: &str, e: DriverError) -> Error {
        Error::Device {
            device: self.label.clone(),
            message: format!("{what} failed: {e}"),
        }
    }

    /// The side stream's handle, as NCCL takes it (`cudaStream_t` is `CUstream`).
    pub fn raw(&self) -> *mut c_void {
        self.side as *mut c_void
    }

    /// Work given to the side stream from now on starts after all work given to the compute stream
    /// so far.
    pub fn after_compute(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: both streams and the event are live; recording and waiting are stream-ordered.
        unsafe {
            result::event::record(self.compute_done, self.compute)
                .map_err(|e| self.error("recording an event on the compute stream", e))?;
            result::stream::wait_event(
                self.side,
                self.compute_done,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
            .map_err(|e| self.error("making the communication stream wait", e))
        }
    }

    /// Work given to the compute stream from now on starts after all work given to the side stream
    /// so far.
    pub fn compute_after(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: as above.
        unsafe {
            result::event::record(self.side_done, self.side)
                .map_err(|e| self.error("recording an event on the communication stream", e))?;
            result::stream::wait_event(
                self.compute,
                self.side_done,
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
            .map_err(|e| self.error("making the compute stream wait", e))
        }
    }

    /// Whether all work given to the side stream has finished (an error if some of it failed).
    pub fn is_idle(&self) -> Result<bool> {
        self.bind()?;
        // SAFETY: the stream is live.
        match unsafe { sys::cuStreamQuery(self.side) } {
            sys::CUresult::CUDA_SUCCESS => Ok(true),
            sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            other => Err(self.error("querying the communication stream", DriverError(other))),
        }
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a broken context is reported by the driver's next call.
        let _ = self.bind();
        // SAFETY: created in `new`, destroyed once; the stream's work is waited for first.
        unsafe {
            let _ = result::stream::synchronize(self.side);
            let _ = result::stream::destroy(self.side);
            let _ = result::event::destroy(self.compute_done);
            let _ = result::event::destroy(self.side_done);
        }
    }
}
