//! Launch timing on the CUDA driver (`Driver::set_kernel_timing`): a pair of events recorded on the
//! stream around each launch, and the time between them read once the launches are done. The
//! events are made as needed and kept for the next round, so a timed step allocates nothing after
//! the first.

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::backend::KernelTime;

#[derive(Default)]
pub(super) struct CudaKernelTimer {
    /// Launch `i` is timed by events `2i` (before) and `2i + 1` (after).
    events: Vec<sys::CUevent>,
    /// The kernels timed since the last take, in issue order.
    kernels: Vec<String>,
}

impl CudaKernelTimer {
    /// Records the start of the next launch on `stream`. A launch that then fails is simply not
    /// timed: the next one records over the same event.
    pub(super) fn before(&mut self, stream: sys::CUstream) -> Result<(), DriverError> {
        let first = 2 * self.kernels.len();
        while self.events.len() < first + 2 {
            self.events
                .push(result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)?);
        }
        // SAFETY: the event was made above in the bound context; the stream is live.
        unsafe { result::event::record(self.events[first], stream) }
    }

    /// Records the end of `kernel`'s launch, issued since [`Self::before`].
    pub(super) fn after(&mut self, kernel: &str, stream: sys::CUstream) -> Result<(), DriverError> {
        let end = self.events[2 * self.kernels.len() + 1];
        // SAFETY: as in `before`.
        unsafe { result::event::record(end, stream) }?;
        self.kernels.push(kernel.to_string());
        Ok(())
    }

    /// Every launch timed since the last take, waiting for the last of them; emptied.
    pub(super) fn take(&mut self) -> Result<Vec<KernelTime>, DriverError> {
        let kernels = std::mem::take(&mut self.kernels);
        let Some(last) = kernels.len().checked_sub(1) else {
            return Ok(Vec::new());
        };
        // SAFETY: the events are live and were recorded in issue order on one stream, so the last
        // one completing means every one has.
        unsafe { result::event::synchronize(self.events[2 * last + 1]) }?;
        kernels
            .into_iter()
            .enumerate()
            .map(|(i, kernel)| {
                // SAFETY: both events are live and complete.
                let ms =
                    unsafe { result::event::elapsed(self.events[2 * i], self.events[2 * i + 1]) }?;
                Ok(KernelTime {
                    kernel,
                    ms: f64::from(ms),
                })
            })
            .collect()
    }

    /// Destroys the events; the context must be bound and the stream idle.
    pub(super) fn destroy(&mut self) {
        for event in self.events.drain(..) {
            // SAFETY: made by `before`, destroyed once.
            let _ = unsafe { result::event::destroy(event) };
        }
        self.kernels.clear();
    }
}
