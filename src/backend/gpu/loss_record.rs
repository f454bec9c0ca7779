//! The GPU backend's loss record: device memory the loss kernel appends each step's statistics to
//! (kernels/softmax_cross_entropy.cu states the layout), so that a training step never waits for the
//! host to read its loss. The host reads it when it needs the values (a log line, a checkpoint, the
//! end of the run) with one synchronisation, and the guarded SGD kernel reads its non-finite flag.

use super::backend::GpuBackend;
use super::buffer::Allocation;
use super::driver::{DevicePtr, Driver};
use super::launch_constants::LOSS_RECORD_HEADER_WORDS;
use crate::backend::{LossStats, RecordedLosses};
use crate::error::{Error, Result};

const HEADER_BYTES: usize = LOSS_RECORD_HEADER_WORDS as usize * 4;
/// Bytes of one step's slot: loss, top-1 and top-5 counts as f32.
const SLOT_BYTES: usize = 3 * 4;

/// A loss record in device memory; see the module doc.
pub struct GpuLossRecord<D: Driver> {
    pub(super) mem: Allocation<D>,
    pub(super) capacity: usize,
}

impl<D: Driver> GpuLossRecord<D> {
    /// The header's address: the count, then the non-finite flag.
    pub(super) fn ptr(&self) -> DevicePtr {
        self.mem.ptr
    }

    /// The address of the flag the guarded SGD kernel reads (non-zero once a non-finite loss has
    /// been recorded since the last read).
    pub(super) fn flag_ptr(&self) -> DevicePtr {
        self.mem.ptr + 4
    }
}

impl<D: Driver> GpuBackend<D> {
    pub(super) fn new_loss_record(&self, capacity: usize) -> Result<GpuLossRecord<D>> {
        let capacity = capacity.max(1);
        let mem = self.alloc_bytes(HEADER_BYTES + capacity * SLOT_BYTES)?;
        // SAFETY: just allocated with this size; an all-zero header is an empty record.
        unsafe { self.driver.memset_zero(mem.ptr, mem.bytes)? };
        Ok(GpuLossRecord { mem, capacity })
    }

    pub(super) fn read_record(&self, record: &mut GpuLossRecord<D>) -> Result<RecordedLosses> {
        let mut header = [0u32; LOSS_RECORD_HEADER_WORDS as usize];
        self.counters.host_sync();
        // SAFETY: the record starts with its header.
        unsafe {
            self.driver.copy_device_to_host(
                record.ptr(),
                header.as_mut_ptr().cast(),
                HEADER_BYTES,
            )?
        };
        let (count, flag) = (header[0] as usize, header[1] as usize);
        if count > record.capacity {
            return Err(Error::InvalidArgument {
                op: "read_loss_record",
                message: format!(
                    "{count} steps recorded since the last read, but the record holds {}",
                    record.capacity
                ),
            });
        }
        let mut slots = vec![0f32; 3 * count];
        if count > 0 {
            // Ordered after the header's copy, which already waited for the device: no second wait.
            // SAFETY: `count <= capacity` slots follow the header.
            unsafe {
                self.driver.copy_device_to_host(
                    record.ptr() + HEADER_BYTES as DevicePtr,
                    slots.as_mut_ptr().cast(),
                    count * SLOT_BYTES,
                )?
            };
        }
        // An empty record for the steps to come; ordered before them on the stream.
        // SAFETY: the header is the record's first bytes.
        unsafe { self.driver.memset_zero(record.ptr(), HEADER_BYTES)? };
        Ok(RecordedLosses {
            steps: slots
                .chunks_exact(3)
                .map(|s| LossStats {
                    loss: f64::from(s[0]),
                    top1_correct: s[1] as usize,
                    top5_correct: s[2] as usize,
                })
                .collect(),
            first_non_finite: flag.checked_sub(1),
        })
    }
}
