//! The narrow seam under the GPU backend: device memory and kernel launches.
//!
//! [`GpuBackend`](super::backend::GpuBackend) holds every line of launch code (grid and block sizes,
//! shared memory, workspaces, argument lists) and talks to the device only through [`Driver`]. Two
//! drivers implement it:
//!
//! - [`EmuDriver`]: device memory is host memory, a launch runs the kernel in the host emulator
//!   ([`super::emu`]). Needs no GPU, so CI exercises all the launch code with it.
//! - [`CudaDriver`](super::cuda_driver::CudaDriver): cudarc's driver API, the fatbins that build.rs
//!   embedded (`super::embedded`), stream-ordered allocation, copies and `cuLaunchKernel` on one
//!   stream.
//!
//! [`DynDriver`] picks one of them at run time by name (`emu`, `cuda`, `cuda:N`), so that the trainer
//! and the tests need one instantiation of the backend for both.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::cuda_driver::CudaDriver;
use super::embedded;
use super::emu;
use super::kernel_limits::{self, KernelLimits};
use super::tensor_map::{TensorMapBytes, TiledMap2d};
use super::tensor_map_im2col::Im2colMap;
use crate::backend::KernelTime;
use crate::error::{Error, Result};

/// A device address, as CUDA's `CUdeviceptr` (a plain host address under the emulator). Kernel
/// arguments that are pointers are passed as this value.
pub type DevicePtr = u64;

/// A captured graph, as its driver numbers it ([`Driver::end_capture`]).
pub type GraphId = u64;

/// Device memory, copies and kernel launches on one in-order stream. Every operation is ordered after
/// the ones issued before it; [`Driver::synchronize`] waits for all of them.
pub trait Driver: Send + Sync + 'static {
    /// A short name for messages, such as `emu`.
    fn name(&self) -> String;

    /// `bytes` of device memory (at least 256-byte aligned), contents unspecified. `bytes > 0`.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr>;

    /// Frees memory from [`Driver::alloc`]. Work already issued may still use it: the free is ordered
    /// after that work on the stream (as `cuMemFreeAsync`; the emulator's work is already done).
    ///
    /// # Safety
    /// `ptr` came from `alloc(bytes)` of this driver, is freed once, and no work is issued on it after.
    unsafe fn free(&self, ptr: DevicePtr, bytes: usize);

    /// Copies `bytes` from host `src` to device `dst`.
    ///
    /// # Safety
    /// `src` is valid for `bytes` reads and `dst` for `bytes` writes.
    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()>;

    /// Copies `bytes` from device `src` to host `dst`; the data is in `dst` when this returns.
    ///
    /// # Safety
    /// `src` is valid for `bytes` reads and `dst` for `bytes` writes.
    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()>;

    /// Copies `bytes` from device `src` to device `dst` (the ranges do not overlap).
    ///
    /// # Safety
    /// Both ranges are valid device memory for `bytes`.
    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()>;

    /// Sets `bytes` of device memory at `dst` to zero.
    ///
    /// # Safety
    /// `dst` is valid device memory for `bytes` writes.
    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()>;

    /// Launches `kernel` (its `extern "C"` name) over `grid` blocks of `block` threads with
    /// `shared_bytes` of dynamic shared memory. `params[i]` points at the value of the kernel's
    /// parameter `i`, exactly as for `cuLaunchKernel`.
    ///
    /// # Safety
    /// Each `params[i]` points at a live value of the kernel's parameter type `i`; every device pointer
    /// among them is valid for every access the kernel makes.
    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()>;

    /// Lets `kernel` launch with up to `bytes` of dynamic shared memory. A block has 48 KiB without
    /// this; above it a kernel must opt in first, up to the device's maximum (227 KiB on sm_90):
    /// `cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)` on a GPU, and the
    /// emulator enforces the same rule.
    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()>;

    /// Whether `kernel` can be launched here: every kernel on the emulator; on a GPU, those of the
    /// modules its compute capability loads (the `*_sm90a.cu` ones only on 9.0).
    fn has_kernel(&self, kernel: &str) -> bool;

    /// The limits `kernel` was compiled with ([`KernelLimits`]): on a GPU the driver's own
    /// attributes of the loaded kernel, on the emulator those build.rs read from nvcc's output, which
    /// it enforces (an error in a build without nvcc, which has none).
    fn kernel_limits(&self, kernel: &str) -> Result<KernelLimits>;

    /// Waits until every operation issued so far has finished.
    fn synchronize(&self) -> Result<()>;

    /// A tensor map for `cp.async.bulk.tensor.2d` (`kernels/tma.cuh`) over `map`'s tensor, to
    /// upload to device memory: `cuTensorMapEncodeTiled` on a GPU of compute capability 9.0 or
    /// newer, the emulator's own layout under the emulator ([`TiledMap2d::emulator_map`]); both
    /// check [`TiledMap2d::validate`] first.
    fn encode_tensor_map_2d(&self, map: &TiledMap2d) -> Result<TensorMapBytes> {
        map.validate()?;
        Err(Error::Device {
            device: self.name(),
            message: "this driver has no tensor memory accelerator".into(),
        })
    }

    /// A tensor map for `tma_load_im2col_4d` (`kernels/tma.cuh`) over `map`'s NHWC tensor:
    /// `cuTensorMapEncodeIm2col` on a GPU of compute capability 9.0 or newer, the emulator's own
    /// layout under the emulator ([`Im2colMap::emulator_map`]); both check [`Im2colMap::validate`]
    /// first.
    fn encode_tensor_map_im2col(&self, map: &Im2colMap) -> Result<TensorMapBytes> {
        map.validate()?;
        Err(Error::Device {
            device: self.name(),
            message: "this driver has no tensor memory accelerator".into(),
        })
    }

    /// Starts (`on`) or stops timing each kernel launch by itself, for
    /// [`Driver::take_kernel_times`]: on a GPU with a pair of events around it, which serialises
    /// it with its neighbours (no programmatic launch overlap while timing); on the emulator with
    /// the host clock. Launches inside a capture are not timed.
    fn set_kernel_timing(&self, on: bool) -> Result<()>;

    /// The launches timed since timing began or the last take, in issue order; waits for them.
    fn take_kernel_times(&self) -> Result<Vec<KernelTime>>;

    /// Starts capturing this driver's stream: until [`Driver::end_capture`], kernel launches,
    /// device-to-device copies and memsets issued on it are recorded into a graph instead of run
    /// (CUDA's `cuStreamBeginCapture`, in thread-local mode). Work that touches host memory (a
    /// copy to or from the host, a synchronisation) fails while capturing, as it does on a GPU,
    /// and so does an allocation: a captured step must find every buffer it needs already there.
    fn begin_capture(&self) -> Result<()> {
        Err(Error::Device {
            device: self.name(),
            message: "this driver cannot capture graphs".into(),
        })
    }

    /// Ends the capture begun by [`Driver::begin_capture`] and returns the recorded work as a
    /// graph ready to launch, and the number of kernels in it. On an error the capture is over too.
    fn end_capture(&self) -> Result<(GraphId, usize)> {
        Err(Error::Device {
            device: self.name(),
            message: "this driver cannot capture graphs".into(),
        })
    }

    /// Runs a captured graph on the stream, ordered like any other work: every recorded operation
    /// again, in order, with the arguments it was captured with (so with the same device addresses:
    /// what the graph reads must be refilled in place between launches).
    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        Err(Error::Device {
            device: self.name(),
            message: format!("no graph {graph}: this driver cannot capture graphs"),
        })
    }

    /// Frees a graph from [`Driver::end_capture`]; launches already issued still run.
    fn destroy_graph(&self, _graph: GraphId) {}

    /// Host memory for uploads the host does not wait for ([`Driver::upload_ahead`]):
    /// `bytes` (> 0) of it, page-locked on a GPU so that the copy engine reads it while the host
    /// goes on. Refused while capturing.
    fn alloc_staging(&self, bytes: usize) -> Result<Staging>;

    /// Frees memory from [`Driver::alloc_staging`] once the last upload from it has finished.
    ///
    /// # Safety
    /// `staging` came from this driver's `alloc_staging` and is freed once.
    unsafe fn free_staging(&self, staging: &Staging);

    /// Copies the first `bytes` of `staging` to device `dst`, ordered on the stream like any other
    /// op, without the host waiting for it: [`Driver::wait_staging`] does, before the host writes
    /// `staging` again.
    ///
    /// # Safety
    /// `bytes <= staging.bytes`, and `dst` is valid device memory for `bytes` writes.
    unsafe fn upload_staged(&self, staging: &Staging, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees.
        unsafe { self.copy_host_to_device(staging.ptr, dst, bytes) }
    }

    /// Marks device memory `landing` free for [`Driver::upload_ahead`] as of everything issued to
    /// the stream so far, its allocation included: the next upload into it starts after that. Call
    /// it once a landing buffer is allocated; [`Driver::land_upload`] marks it free again. A
    /// driver has one landing buffer at a time. The emulator checks the order of the three calls
    /// (on a GPU a wrong order is a race between the streams, which no test there could be sure to
    /// see): each upload into a buffer marked free, each landing after an upload.
    fn mark_landing_free(&self, landing: DevicePtr) -> Result<()>;

    /// Starts copying the first `bytes` of `staging` to device memory `landing` on a copy stream of
    /// its own, so that the copy overlaps what the stream runs meanwhile (the step before): it waits
    /// only until the stream passed the last [`Driver::mark_landing_free`] or
    /// [`Driver::land_upload`] of `landing`. The stream sees the bytes only through `land_upload`;
    /// [`Driver::wait_staging`] says when `staging` has been read. Under the emulator, with one
    /// stream, the copy is done when this returns.
    ///
    /// # Safety
    /// `bytes <= staging.bytes`, and `landing` is valid device memory for `bytes` writes that
    /// nothing but these three calls uses.
    unsafe fn upload_ahead(
        &self,
        staging: &Staging,
        landing: DevicePtr,
        bytes: usize,
    ) -> Result<()>;

    /// Orders the stream after the last [`Driver::upload_ahead`] and copies `bytes` from `landing`
    /// to `dst` on it (device to device: 38 MB, an ImageNet batch of 256, in about 25 us), then
    /// marks `landing` free for the next upload.
    ///
    /// # Safety
    /// `landing` and `dst` are valid device memory for `bytes`, and do not overlap.
    unsafe fn land_upload(&self, landing: DevicePtr, dst: DevicePtr, bytes: usize) -> Result<()>;

    /// Waits until the last upload from `staging` has read it. Refused while capturing (on a GPU
    /// a wait for the host is no graph node).
    fn wait_staging(&self, staging: &Staging) -> Result<()>;

    /// The CUDA driver underneath, when this is one: what NCCL needs (a second stream on the same
    /// GPU, its context). `None` for the emulator.
    fn as_cuda(&self) -> Option<&CudaDriver> {
        None
    }
}

/// Host memory for uploads the host does not wait for (see [`Driver::alloc_staging`]).
#[derive(Debug)]
pub struct Staging {
    pub ptr: *mut u8,
    pub bytes: usize,
    /// The driver's marker of the last upload from it (a CUDA event; unused by the emulator).
    pub event: u64,
}

// SAFETY: the memory is owned by whoever holds the `Staging` and the event is a driver handle usable
// from any thread once its context is bound, which the CUDA driver does first.
unsafe impl Send for Staging {}
// SAFETY: as above; shared references only read the handle values.
unsafe impl Sync for Staging {}

/// The host emulator as a device: memory is host memory, launches run synchronously on the CPU.
///
/// Graph capture records each launch (its kernel, geometry and a copy of its arguments) and each
/// device copy and memset, then replays them in order; each driver keeps its own recordings, as each
/// CUDA driver has its own stream.
#[derive(Debug, Default)]
pub struct EmuDriver {
    /// The operations recorded since `begin_capture`, while capturing.
    capturing: Mutex<Option<Vec<EmuOp>>>,
    graphs: Mutex<BTreeMap<GraphId, Arc<Vec<EmuOp>>>>,
    next_graph: AtomicU64,
    /// The landing buffer of uploads ahead and whether it holds an upload not yet landed
    /// (`Driver::mark_landing_free`).
    landing: Mutex<Option<(DevicePtr, bool)>>,
    /// Allocations freed while capturing, freed at `end_capture`, which then fails: on a GPU such
    /// a free is a graph node of memory the graph does not own, and it invalidates the capture.
    freed_in_capture: Mutex<Vec<(DevicePtr, usize)>>,
    /// Whether launches are timed (`Driver::set_kernel_timing`), and their times so far.
    timing: AtomicBool,
    kernel_times: Mutex<Vec<KernelTime>>,
}

/// One operation of an emulated graph.
#[derive(Debug)]
enum EmuOp {
    Launch {
        kernel: String,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        /// The arguments' bytes, each argument starting on its own 8-byte word.
        words: Vec<u64>,
        /// Each argument's first word in `words`.
        starts: Vec<usize>,
    },
    Copy {
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    },
    Zero {
        dst: DevicePtr,
        bytes: usize,
    },
}

impl EmuDriver {
    /// Records `op` when capturing; otherwise hands it back to be run now.
    fn record(&self, op: EmuOp) -> Option<EmuOp> {
        match self
            .capturing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(ops) => {
                ops.push(op);
                None
            }
            None => Some(op),
        }
    }

    fn is_capturing(&self) -> bool {
        self.capturing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Moves the landing protocol from `from` (`landing` free: false; uploaded: true) to `to`, or
    /// says which call came out of order.
    fn landing_step(&self, landing: DevicePtr, what: &str, from: bool, to: bool) -> Result<()> {
        let mut state = self.landing.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            Some((p, uploaded)) if p == landing && uploaded == from => {
                *state = Some((landing, to));
                Ok(())
            }
            _ => Err(Error::Device {
                device: "emu".into(),
                message: format!(
                    "{what} of landing buffer {landing:#x} out of order (state: {:?}): uploads \
                     ahead go mark_landing_free, then upload_ahead and land_upload in turn",
                    *state
                ),
            }),
        }
    }

    /// An error for `what`, which a captured step must not do.
    fn refuse_in_capture(&self, what: &str) -> Result<()> {
        if self.is_capturing() {
            return Err(Error::Device {
                device: "emu".into(),
                message: format!(
                    "{what} while capturing a graph (a captured step may not touch host memory, \
                     wait for the device or allocate)"
                ),
            });
        }
        Ok(())
    }

    /// Runs one operation.
    ///
    /// # Safety
    /// As for the driver call the operation stands for, with the pointers it holds.
    unsafe fn run(&self, op: &EmuOp) -> Result<()> {
        match op {
            EmuOp::Launch {
                kernel,
                grid,
                block,
                shared_bytes,
                words,
                starts,
            } => {
                // The kernel reads its arguments through pointers, so it gets its own copy.
                let mut words = words.clone();
                let base = words.as_mut_ptr();
                let mut params: Vec<*mut c_void> = starts
                    .iter()
                    // SAFETY: every start indexes into `words`.
                    .map(|&i| unsafe { base.add(i) } as *mut c_void)
                    .collect();
                // SAFETY: the arguments were the kernel's when recorded; the caller vouches for the
                // memory they point at.
                unsafe { emu::launch(kernel, *grid, *block, *shared_bytes, &mut params) }.map_err(
                    |message| Error::InvalidArgument {
                        op: "emulator launch",
                        message,
                    },
                )
            }
            // SAFETY: the caller's guarantees, as for copy_device_to_device and memset_zero.
            EmuOp::Copy { src, dst, bytes } => unsafe {
                std::ptr::copy_nonoverlapping(*src as *const u8, *dst as *mut u8, *bytes);
                Ok(())
            },
            // SAFETY: as above.
            EmuOp::Zero { dst, bytes } => unsafe {
                std::ptr::write_bytes(*dst as *mut u8, 0, *bytes);
                Ok(())
            },
        }
    }
}

/// Alignment of emulator allocations (what `cuMemAlloc` guarantees, and more than any vector load).
const EMU_ALIGN: usize = 256;

/// `bytes` (> 0) of zeroed host memory in [`emu_layout`], freed with `dealloc` in the same layout;
/// `op` names the allocation in the out-of-memory error.
fn host_alloc_zeroed(op: &'static str, bytes: usize) -> Result<*mut u8> {
    let layout = emu_layout(bytes)?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(Error::InvalidArgument {
            op,
            message: format!("out of host memory allocating {bytes} bytes"),
        });
    }
    Ok(ptr)
}

fn emu_layout(bytes: usize) -> Result<Layout> {
    Layout::from_size_align(bytes.max(1), EMU_ALIGN).map_err(|e| Error::InvalidArgument {
        op: "emu alloc",
        message: format!("{bytes} bytes: {e}"),
    })
}

impl Driver for EmuDriver {
    fn name(&self) -> String {
        "emu".into()
    }

    fn mark_landing_free(&self, landing: DevicePtr) -> Result<()> {
        self.refuse_in_capture("marking a landing buffer free")?;
        *self.landing.lock().unwrap_or_else(|e| e.into_inner()) = Some((landing, false));
        Ok(())
    }

    unsafe fn upload_ahead(
        &self,
        staging: &Staging,
        landing: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        self.refuse_in_capture("uploading ahead")?;
        self.landing_step(landing, "upload_ahead", false, true)?;
        // SAFETY: the caller's guarantees.
        unsafe { self.copy_host_to_device(staging.ptr, landing, bytes) }
    }

    unsafe fn land_upload(&self, landing: DevicePtr, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.refuse_in_capture("landing an upload")?;
        self.landing_step(landing, "land_upload", true, false)?;
        // SAFETY: the caller's guarantees.
        unsafe { self.copy_device_to_device(landing, dst, bytes) }
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.refuse_in_capture("an allocation")?;
        Ok(host_alloc_zeroed("emu alloc", bytes)? as DevicePtr)
    }

    fn set_kernel_timing(&self, on: bool) -> Result<()> {
        self.timing.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Launches run when issued: their times are final already.
    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        Ok(std::mem::take(
            &mut *self.kernel_times.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Plain host memory: the emulator's copies are done when they return.
    fn alloc_staging(&self, bytes: usize) -> Result<Staging> {
        self.refuse_in_capture("pinning host memory")?;
        Ok(Staging {
            ptr: host_alloc_zeroed("staging alloc", bytes)?,
            bytes,
            event: 0,
        })
    }

    unsafe fn free_staging(&self, staging: &Staging) {
        let layout = emu_layout(staging.bytes).expect("the layout was valid when allocated");
        // SAFETY: the caller guarantees it came from `alloc_staging`, hence this layout.
        unsafe { dealloc(staging.ptr, layout) }
    }

    /// Every emulated upload has finished when it returns: nothing to wait for.
    fn wait_staging(&self, _staging: &Staging) -> Result<()> {
        self.refuse_in_capture("waiting for an upload")
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: usize) {
        if self.is_capturing() {
            self.freed_in_capture
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((ptr, bytes));
            return;
        }
        let layout = emu_layout(bytes).expect("the layout was valid when allocated");
        // SAFETY: the caller guarantees `ptr` came from `alloc(bytes)`, hence this layout.
        unsafe { dealloc(ptr as *mut u8, layout) }
    }

    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        self.refuse_in_capture("a copy from host memory")?;
        // SAFETY: the caller guarantees both ranges; host and "device" allocations never overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()> {
        self.refuse_in_capture("a copy to host memory")?;
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst, bytes) };
        Ok(())
    }

    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        match self.record(EmuOp::Copy { src, dst, bytes }) {
            // SAFETY: the caller guarantees both ranges are valid and disjoint.
            Some(op) => unsafe { self.run(&op) },
            None => Ok(()),
        }
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()> {
        match self.record(EmuOp::Zero { dst, bytes }) {
            // SAFETY: the caller guarantees the range.
            Some(op) => unsafe { self.run(&op) },
            None => Ok(()),
        }
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        if !self.is_capturing() {
            let start = self
                .timing
                .load(Ordering::Relaxed)
                .then(std::time::Instant::now);
            // SAFETY: the caller's guarantees are exactly emu::launch's.
            unsafe { emu::launch(kernel, grid, block, shared_bytes, params) }.map_err(
                |message| Error::InvalidArgument {
                    op: "emulator launch",
                    message,
                },
            )?;
            if let Some(start) = start {
                self.kernel_times
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(KernelTime {
                        kernel: kernel.to_string(),
                        ms: start.elapsed().as_secs_f64() * 1e3,
                    });
            }
            return Ok(());
        }
        // Copy each argument's bytes now, as cuLaunchKernel does when it records a kernel node:
        // the caller's argument list is gone by the time the graph runs.
        let sizes = emu::param_sizes(kernel).map_err(|message| Error::InvalidArgument {
            op: "emulator capture",
            message,
        })?;
        if sizes.len() != params.len() {
            return Err(Error::InvalidArgument {
                op: "emulator capture",
                message: format!(
                    "kernel '{kernel}' takes {} parameters, the launch passed {}",
                    sizes.len(),
                    params.len()
                ),
            });
        }
        let mut words = Vec::new();
        let mut starts = Vec::with_capacity(sizes.len());
        for (&size, &p) in sizes.iter().zip(params.iter()) {
            let start = words.len();
            starts.push(start);
            words.resize(start + (size as usize).div_ceil(8).max(1), 0u64);
            // SAFETY: the caller guarantees `p` points at a live value of the parameter's type,
            // `size` bytes; the words just added hold at least as many.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    p as *const u8,
                    words[start..].as_mut_ptr() as *mut u8,
                    size as usize,
                )
            };
        }
        self.record(EmuOp::Launch {
            kernel: kernel.to_string(),
            grid,
            block,
            shared_bytes,
            words,
            starts,
        });
        Ok(())
    }

    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        emu::set_max_dynamic_shared(kernel, bytes).map_err(|message| Error::InvalidArgument {
            op: "emulator shared memory opt-in",
            message,
        })
    }

    fn has_kernel(&self, kernel: &str) -> bool {
        emu::param_sizes(kernel).is_ok()
    }

    fn kernel_limits(&self, kernel: &str) -> Result<KernelLimits> {
        kernel_limits::compiled(kernel).ok_or_else(|| Error::Device {
            device: self.name(),
            message: format!(
                "no compiled limits for kernel {kernel}: this binary was built without nvcc ({})",
                embedded::HOW_TO_GET
            ),
        })
    }

    fn encode_tensor_map_2d(&self, map: &TiledMap2d) -> Result<TensorMapBytes> {
        map.emulator_map()
    }

    fn encode_tensor_map_im2col(&self, map: &Im2colMap) -> Result<TensorMapBytes> {
        map.emulator_map()
    }

    fn synchronize(&self) -> Result<()> {
        self.refuse_in_capture("a synchronisation")
    }

    fn begin_capture(&self) -> Result<()> {
        let mut capturing = self.capturing.lock().unwrap_or_else(|e| e.into_inner());
        if capturing.is_some() {
            return Err(Error::Device {
                device: "emu".into(),
                message: "a capture is already under way".into(),
            });
        }
        *capturing = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&self) -> Result<(GraphId, usize)> {
        let ops = self
            .capturing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::Device {
                device: "emu".into(),
                message: "end of a capture that was not begun".into(),
            })?;
        let freed = std::mem::take(
            &mut *self
                .freed_in_capture
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if !freed.is_empty() {
            for &(ptr, bytes) in &freed {
                // SAFETY: each came to `free` from `alloc(bytes)`; no graph was made to use it.
                unsafe { self.free(ptr, bytes) };
            }
            return Err(Error::Device {
                device: "emu".into(),
                message: format!(
                    "{} allocation(s) freed while capturing a graph (on a GPU a free in a capture \
                     must be of the graph's own memory; this one invalidates the capture)",
                    freed.len()
                ),
            });
        }
        let kernels = ops
            .iter()
            .filter(|op| matches!(op, EmuOp::Launch { .. }))
            .count();
        let id = self.next_graph.fetch_add(1, Ordering::Relaxed);
        self.graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(ops));
        Ok((id, kernels))
    }

    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        self.refuse_in_capture("a graph launch")?;
        let ops = self
            .graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&graph)
            .cloned()
            .ok_or_else(|| Error::Device {
                device: "emu".into(),
                message: format!("no graph {graph}"),
            })?;
        for op in ops.iter() {
            // SAFETY: each operation was valid when captured, and the graph's owner keeps the
            // memory it names alive while the graph exists (the Driver contract of a graph).
            unsafe { self.run(op)? };
        }
        Ok(())
    }

    fn destroy_graph(&self, graph: GraphId) {
        self.graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&graph);
    }
}

/// A driver chosen at run time: `Box<dyn Driver>` forwards every call.
pub type DynDriver = Box<dyn Driver>;

/// Opens the driver named `emu`, `cuda` (GPU 0) or `cuda:N`.
pub fn open_driver(name: &str) -> Result<DynDriver> {
    match name {
        "emu" => Ok(Box::new(EmuDriver::default())),
        "cuda" => Ok(Box::new(CudaDriver::new(0)?)),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Ok(Box::new(CudaDriver::new(ordinal)?)),
            _ => Err(Error::Config(format!(
                "driver {name:?}: expected `emu`, `cuda` or `cuda:N` (a GPU number)"
            ))),
        },
    }
}

impl Driver for DynDriver {
    fn name(&self) -> String {
        (**self).name()
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        (**self).alloc(bytes)
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: usize) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).free(ptr, bytes) }
    }

    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_host_to_device(src, dst, bytes) }
    }

    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_device_to_host(src, dst, bytes) }
    }

    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).copy_device_to_device(src, dst, bytes) }
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).memset_zero(dst, bytes) }
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).launch(kernel, grid, block, shared_bytes, params) }
    }

    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        (**self).set_max_dynamic_shared(kernel, bytes)
    }

    fn has_kernel(&self, kernel: &str) -> bool {
        (**self).has_kernel(kernel)
    }

    fn kernel_limits(&self, kernel: &str) -> Result<KernelLimits> {
        (**self).kernel_limits(kernel)
    }

    fn encode_tensor_map_2d(&self, map: &TiledMap2d) -> Result<TensorMapBytes> {
        (**self).encode_tensor_map_2d(map)
    }

    fn encode_tensor_map_im2col(&self, map: &Im2colMap) -> Result<TensorMapBytes> {
        (**self).encode_tensor_map_im2col(map)
    }

    fn synchronize(&self) -> Result<()> {
        (**self).synchronize()
    }

    fn set_kernel_timing(&self, on: bool) -> Result<()> {
        (**self).set_kernel_timing(on)
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        (**self).take_kernel_times()
    }

    fn begin_capture(&self) -> Result<()> {
        (**self).begin_capture()
    }

    fn end_capture(&self) -> Result<(GraphId, usize)> {
        (**self).end_capture()
    }

    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        (**self).launch_graph(graph)
    }

    fn destroy_graph(&self, graph: GraphId) {
        (**self).destroy_graph(graph)
    }

    fn alloc_staging(&self, bytes: usize) -> Result<Staging> {
        (**self).alloc_staging(bytes)
    }

    unsafe fn free_staging(&self, staging: &Staging) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).free_staging(staging) }
    }

    unsafe fn upload_staged(&self, staging: &Staging, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).upload_staged(staging, dst, bytes) }
    }

    fn mark_landing_free(&self, landing: DevicePtr) -> Result<()> {
        (**self).mark_landing_free(landing)
    }

    unsafe fn upload_ahead(
        &self,
        staging: &Staging,
        landing: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).upload_ahead(staging, landing, bytes) }
    }

    unsafe fn land_upload(&self, landing: DevicePtr, dst: DevicePtr, bytes: usize) -> Result<()> {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { (**self).land_upload(landing, dst, bytes) }
    }

    fn wait_staging(&self, staging: &Staging) -> Result<()> {
        (**self).wait_staging(staging)
    }

    fn as_cuda(&self) -> Option<&CudaDriver> {
        (**self).as_cuda()
    }
}
