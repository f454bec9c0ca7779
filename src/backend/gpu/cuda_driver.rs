//! The CUDA driver: [`Driver`] on a real GPU through cudarc's thin driver-API wrappers.
//!
//! - The driver library is loaded at run time (cudarc's `dynamic-loading`); [`CudaDriver::new`] looks
//!   for it with `is_culib_present` first, because cudarc panics when a driver call is made without it.
//! - One [`CudaDevice`] per GPU holds the retained primary context and the kernel modules (every
//!   embedded fatbin, loaded once per context, whatever number of drivers share the GPU); each
//!   [`CudaDriver`] adds its own non-blocking stream, so replicas or tests on one GPU do not serialise
//!   on each other.
//! - Memory comes from the stream-ordered allocator (`cuMemAllocAsync` / `cuMemFreeAsync`) of the
//!   device's default pool, whose release threshold is raised so that freed blocks stay cached across
//!   synchronisations (a training step then allocates nothing from the OS after its first run).
//! - Every call makes the context current on the calling thread first, so a driver may be used from
//!   any thread (one at a time: the backend's ops are issued by one thread).

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::sync::{Arc, Mutex, Weak};

use cudarc::driver::result::{self, stream::StreamKind, DriverError};
use cudarc::driver::sys;

use super::copy_stream::CopyStream;
use super::cuda_info::{self, version_string, DriverStatus, MIN_DRIVER_VERSION};
use super::cuda_kernel_timer::CudaKernelTimer;
use super::driver::{DevicePtr, Driver, GraphId, Staging};
use super::embedded::{self, KernelFit};
use super::kernel_limits::KernelLimits;
use super::side_stream::SideStream;
use super::tensor_map::{TensorMapBytes, TiledMap2d, TmaSwizzle};
use super::tensor_map_im2col::Im2colMap;
use crate::backend::KernelTime;
use crate::error::{Error, Result};

/// A GPU's context and kernels, shared by every [`CudaDriver`] on it.
struct CudaDevice {
    ordinal: usize,
    name: String,
    device: sys::CUdevice,
    context: sys::CUcontext,
    modules: Vec<(&'static str, sys::CUmodule)>,
    /// Every kernel of every module, by `extern "C"` name, enumerated once when the modules load.
    /// Enumerating (rather than asking each module for a name until one has it) keeps the driver free
    /// of failed calls: compute-sanitizer counts every `CUDA_ERROR_NOT_FOUND` as an error.
    functions: HashMap<String, sys::CUfunction>,
    /// Whether kernels launch with programmatic dependent launch (see [`CudaDriver::launch`]):
    /// where the loaded kernels wait for the previous one (`cuda_info::waits_for_previous_grid`),
    /// unless `RESNET_PDL=0`.
    programmatic_launch: bool,
}

// SAFETY: driver-API handles are plain identifiers valid in every thread of the process; each use
// first binds the context to the calling thread (`bind`).
unsafe impl Send for CudaDevice {}
// SAFETY: as above; nothing in `CudaDevice` is mutated after `open`.
unsafe impl Sync for CudaDevice {}

/// The devices opened so far, by ordinal; weak, so a device closes when its last driver is dropped.
static OPEN_DEVICES: Mutex<BTreeMap<usize, Weak<CudaDevice>>> = Mutex::new(BTreeMap::new());

/// A driver-API error, as one line naming the GPU and the operation.
fn cuda_error(device: &str, what: &str, e: DriverError) -> Error {
    Error::Device {
        device: device.to_string(),
        message: format!("{what} failed: {e}"),
    }
}

/// Every kernel (`CUfunction`) a loaded module defines.
fn module_functions(
    module: sys::CUmodule,
) -> std::result::Result<Vec<sys::CUfunction>, DriverError> {
    let mut count: std::ffi::c_uint = 0;
    // SAFETY: `module` is loaded; the count is written to a local.
    unsafe { sys::cuModuleGetFunctionCount(&mut count, module) }.result()?;
    let mut functions = vec![std::ptr::null_mut(); count as usize];
    // SAFETY: `functions` has room for `count` handles.
    unsafe { sys::cuModuleEnumerateFunctions(functions.as_mut_ptr(), count, module) }.result()?;
    Ok(functions)
}

/// One attribute of `function` (`cuFuncGetAttribute`); a negative value reads as 0.
fn function_attribute(
    function: sys::CUfunction,
    which: sys::CUfunction_attribute,
) -> std::result::Result<u32, DriverError> {
    let mut value: std::ffi::c_int = 0;
    // SAFETY: `function` belongs to a loaded module; the attribute is written to a local.
    unsafe { sys::cuFuncGetAttribute(&mut value, which, function) }
        .result()
        .map(|()| u32::try_from(value).unwrap_or(0))
}

/// What the driver says limits a launch of `function`: its most threads a block and its static
/// shared memory (the attributes [`KernelLimits`] mirrors).
fn function_limits(function: sys::CUfunction) -> std::result::Result<KernelLimits, DriverError> {
    use sys::CUfunction_attribute::{
        CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
    };
    Ok(KernelLimits {
        max_threads: function_attribute(function, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        static_shared_bytes: function_attribute(function, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)?,
    })
}

/// Why the driver would refuse a launch of `function` with `block` and `shared_bytes`, as a clause
/// for the error ("" when it is within the kernel's limits, or they cannot be read): the usual
/// `CUDA_ERROR_INVALID_VALUE` says neither.
fn beyond_limits(function: sys::CUfunction, block: (u32, u32, u32), shared_bytes: u32) -> String {
    let mut why = String::new();
    let threads = block.0 * block.1 * block.2;
    if let Ok(limits) = function_limits(function) {
        if threads > limits.max_threads {
            why += &format!(
                "; a block of {threads} threads where it takes at most {} (its __launch_bounds__ \
                 or its registers)",
                limits.max_threads
            );
        }
    }
    let dynamic = function_attribute(
        function,
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
    );
    if let Some(dynamic) = dynamic.ok().filter(|&limit| shared_bytes > limit) {
        why += &format!(
            "; more dynamic shared memory than its limit of {dynamic} bytes \
             (Driver::set_max_dynamic_shared raises it)"
        );
    }
    why
}

/// How much the L2 cache fetches from memory for a TMA copy's request: whole 128-byte lines rather
/// than the 32-byte sectors it asks for (CUTLASS's default for its maps). Our boxes' rows are 64 or
/// 128 bytes of one row of a tile whose next rows the next copies read, so the line is used. A hint:
/// what a copy moves is the same under any setting.
const TMA_L2_PROMOTION: sys::CUtensorMapL2promotion =
    sys::CUtensorMapL2promotion_enum::CU_TENSOR_MAP_L2_PROMOTION_L2_128B;

/// The `extern "C"` name of a kernel.
fn function_name(function: sys::CUfunction) -> std::result::Result<String, DriverError> {
    let mut name: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: `function` belongs to a loaded module; the driver returns a NUL-terminated string it owns
    // for the module's life, copied here at once.
    unsafe { sys::cuFuncGetName(&mut name, function) }.result()?;
    // SAFETY: non-null and NUL-terminated after a successful call.
    Ok(unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned())
}

impl CudaDevice {
    /// Opens GPU `ordinal` (or returns the already open one).
    fn open(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let mut open = OPEN_DEVICES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dev) = open.get(&ordinal).and_then(Weak::upgrade) {
            return Ok(dev);
        }
        let dev = Arc::new(Self::open_new(ordinal)?);
        open.insert(ordinal, Arc::downgrade(&dev));
        Ok(dev)
    }

    fn open_new(ordinal: usize) -> Result<CudaDevice> {
        let label = format!("cuda:{ordinal}");
        let unusable = |message: String| Error::Device {
            device: label.clone(),
            message,
        };
        let gpus = match cuda_info::probe() {
            DriverStatus::NotFound { reason } => {
                return Err(unusable(format!("no CUDA driver found: {reason}")))
            }
            DriverStatus::Unusable { reason, .. } => {
                return Err(unusable(format!("the CUDA driver is not usable: {reason}")))
            }
            DriverStatus::Found { version, .. } if version < MIN_DRIVER_VERSION => {
                return Err(unusable(format!(
                    "the CUDA driver is {} but the kernels need {} (an R580 driver or newer)",
                    version_string(version),
                    version_string(MIN_DRIVER_VERSION)
                )))
            }
            DriverStatus::Found { gpus, .. } => gpus,
        };
        let Some(info) = gpus.get(ordinal) else {
            return Err(unusable(format!(
                "there {} only {} GPU{} here",
                if gpus.len() == 1 { "is" } else { "are" },
                gpus.len(),
                if gpus.len() == 1 { "" } else { "s" }
            )));
        };
        let (major, minor) = info.capability;
        match embedded::fit(major, minor) {
            KernelFit::Cubin(_) | KernelFit::Ptx(_) => {}
            KernelFit::Absent => {
                return Err(unusable(format!(
                    "this binary was built without the CUDA kernels; {}",
                    embedded::HOW_TO_GET
                )))
            }
            KernelFit::TooOld => {
                return Err(unusable(format!(
                    "{} (compute capability {major}.{minor}) is older than every architecture the \
                     kernels were built for ({})",
                    info.name,
                    embedded::ARCHS.join(", ")
                )))
            }
        }

        let err = |what: &str| {
            let label = label.clone();
            let what = what.to_string();
            move |e: DriverError| cuda_error(&label, &what, e)
        };
        let device = result::device::get(ordinal as i32).map_err(err("cuDeviceGet"))?;
        // SAFETY: `device` came from cuDeviceGet; the retain is released in Drop.
        let context = unsafe { result::primary_ctx::retain(device) }
            .map_err(err("retaining the primary context"))?;
        let mut opened = CudaDevice {
            ordinal,
            name: info.name.clone(),
            device,
            context,
            modules: Vec::new(),
            functions: HashMap::new(),
            programmatic_launch: cuda_info::programmatic_launch(major, minor),
        };
        opened.bind()?;
        // Keep freed memory in the pool: the default threshold (0) returns it to the OS at every
        // synchronisation, which would make each step allocate afresh.
        // SAFETY: `device` is valid; the attribute's value type is cuuint64_t.
        unsafe {
            let pool = result::device::get_default_mem_pool(device)
                .map_err(err("cuDeviceGetDefaultMemPool"))?;
            let mut threshold: u64 = u64::MAX;
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut c_void,
            )
            .map_err(err("setting the memory pool's release threshold"))?;
        }
        for (stem, image) in embedded::FATBINS {
            if !embedded::loads_on(stem, major, minor) {
                // An sm_90a cubin elsewhere: its kernels are absent here (`has_kernel` says so),
                // and nothing picks them by default.
                continue;
            }
            // The driver reads the fatbin header as 8-byte words; `include_bytes!` data is only
            // byte-aligned, so hand it an aligned copy.
            let mut aligned = vec![0u64; image.len().div_ceil(8)];
            // SAFETY: `aligned` holds at least `image.len()` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    image.as_ptr(),
                    aligned.as_mut_ptr() as *mut u8,
                    image.len(),
                )
            };
            // SAFETY: a fatbin nvcc produced (build.rs), in memory that outlives the call (the driver
            // copies what it needs).
            let module = unsafe { result::module::load_data(aligned.as_ptr() as *const c_void) }
                .map_err(err(&format!("loading the kernels of {stem}.cu")))?;
            opened.modules.push((stem, module));
            for function in module_functions(module).map_err(err(&format!("listing {stem}.cu")))? {
                opened.functions.insert(
                    function_name(function).map_err(err("cuFuncGetName"))?,
                    function,
                );
            }
        }
        Ok(opened)
    }

    /// Makes this device's context current on the calling thread.
    fn bind(&self) -> Result<()> {
        // SAFETY: the context is retained for the life of `self`.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| cuda_error(&self.label(), "cuCtxSetCurrent", e))
    }

    fn label(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.name)
    }

    /// The kernel named `name`, from whichever module defines it.
    fn function(&self, name: &str) -> Result<sys::CUfunction> {
        if let Some(&f) = self.functions.get(name) {
            return Ok(f);
        }
        Err(Error::Device {
            device: self.label(),
            message: format!(
                "no embedded kernel is named {name} (modules: {})",
                self.modules
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a failing unload at exit changes nothing.
        let _ = self.bind();
        for (_, module) in self.modules.drain(..) {
            // SAFETY: loaded by `open_new`, unloaded once; no driver (hence no stream) is left.
            let _ = unsafe { result::module::unload(module) };
        }
        // SAFETY: retained once in `open_new`.
        let _ = unsafe { result::primary_ctx::release(self.device) };
    }
}

/// [`Driver`] on one GPU: its own stream on the device's shared context and kernels.
pub struct CudaDriver {
    device: Arc<CudaDevice>,
    stream: sys::CUstream,
    /// Instantiated graphs by id ([`Driver::end_capture`]); destroyed with the driver at the latest.
    graphs: Mutex<BTreeMap<GraphId, GraphExec>>,
    next_graph: std::sync::atomic::AtomicU64,
    /// Uploads that overlap the computation ([`Driver::upload_ahead`]), made at the first.
    copy: Mutex<Option<CopyStream>>,
    /// Between `begin_capture` and `end_capture`: the calls the emulator refuses then are refused
    /// here too, by the same rule, rather than left to what CUDA happens to allow in a capture.
    capturing: std::sync::atomic::AtomicBool,
    /// Allocations freed while capturing: freed at `end_capture`, which then fails.
    freed_in_capture: Mutex<Vec<DevicePtr>>,
    /// Whether launches are timed (`Driver::set_kernel_timing`); read on every launch, so the
    /// timer's lock is taken only when they are.
    timing: std::sync::atomic::AtomicBool,
    timer: Mutex<CudaKernelTimer>,
}

/// An executable graph (`CUgraphExec`).
struct GraphExec(sys::CUgraphExec);

// SAFETY: see `CudaDevice`; the stream handle is likewise usable from any thread with the context bound.
unsafe impl Send for CudaDriver {}
// SAFETY: as above.
unsafe impl Sync for CudaDriver {}

impl CudaDriver {
    /// A driver on GPU `ordinal`, with a stream of its own. A clear error, never a panic, when there
    /// is no CUDA driver, no such GPU, or no kernel built for it.
    pub fn new(ordinal: usize) -> Result<CudaDriver> {
        let device = CudaDevice::open(ordinal)?;
        device.bind()?;
        let stream = result::stream::create(StreamKind::NonBlocking)
            .map_err(|e| cuda_error(&device.label(), "cuStreamCreate", e))?;
        Ok(CudaDriver {
            device,
            stream,
            graphs: Mutex::new(BTreeMap::new()),
            next_graph: std::sync::atomic::AtomicU64::new(1),
            copy: Mutex::new(None),
            capturing: std::sync::atomic::AtomicBool::new(false),
            freed_in_capture: Mutex::new(Vec::new()),
            timing: std::sync::atomic::AtomicBool::new(false),
            timer: Mutex::new(CudaKernelTimer::default()),
        })
    }

    fn check(&self, what: &str, r: std::result::Result<(), DriverError>) -> Result<()> {
        r.map_err(|e| self.error(what, e))
    }

    fn error(&self, what: &str, e: DriverError) -> Error {
        cuda_error(&self.device.label(), what, e)
    }

    /// An error for `what` while capturing: the emulator's rule (`EmuDriver::refuse_in_capture`).
    fn refuse_in_capture(&self, what: &str) -> Result<()> {
        if self.capturing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Device {
                device: self.device.label(),
                message: format!(
                    "{what} while capturing a graph (a captured step may not touch host memory, \
                     wait for the device or allocate)"
                ),
            });
        }
        Ok(())
    }

    /// Runs `f` on the copy stream (made at the first use) with the context bound, outside a
    /// capture (`what` names the call in the refusal).
    fn on_copy_stream(
        &self,
        what: &str,
        f: impl FnOnce(&CopyStream) -> std::result::Result<(), (&'static str, DriverError)>,
    ) -> Result<()> {
        self.refuse_in_capture(what)?;
        self.device.bind()?;
        let mut copy = self.copy.lock().unwrap_or_else(|e| e.into_inner());
        let copy = match &mut *copy {
            Some(c) => c,
            None => copy.insert(CopyStream::new().map_err(|(what, e)| self.error(what, e))?),
        };
        f(copy).map_err(|(what, e)| self.error(what, e))
    }

    /// The kernel nodes of `graph` (its copies and memsets left out), as the emulator counts a
    /// recording's launches: what `bench` reports as a step's kernels.
    fn count_kernel_nodes(&self, graph: sys::CUgraph) -> Result<usize> {
        let mut count: usize = 0;
        // SAFETY: `graph` is a valid graph; a null node array asks for the count only.
        let r = unsafe { sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count) };
        self.check("counting a graph's nodes", r.result())?;
        let mut nodes: Vec<sys::CUgraphNode> = vec![std::ptr::null_mut(); count];
        // SAFETY: `nodes` has room for `count` handles.
        let r = unsafe { sys::cuGraphGetNodes(graph, nodes.as_mut_ptr(), &mut count) };
        self.check("listing a graph's nodes", r.result())?;
        let mut kernels = 0;
        for &node in &nodes[..count] {
            let mut kind = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
            // SAFETY: `node` belongs to `graph`; the type is written to a local.
            let r = unsafe { sys::cuGraphNodeGetType(node, &mut kind) };
            self.check("reading a graph node's type", r.result())?;
            kernels += usize::from(kind == sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL);
        }
        Ok(kernels)
    }

    /// A second stream on this GPU, ordered against this driver's stream by events (for
    /// communication that overlaps the computation). It must not outlive this driver.
    pub fn side_stream(&self) -> Result<SideStream> {
        self.device.bind()?;
        SideStream::new(self.device.label(), self.device.context, self.stream)
    }

    /// Makes this GPU's context current on the calling thread (libraries that use the CUDA
    /// runtime, such as NCCL, pick the GPU from it).
    pub fn make_current(&self) -> Result<()> {
        self.device.bind()
    }
}

impl Drop for CudaDriver {
    fn drop(&mut self) {
        let _ = self.device.bind();
        // SAFETY: the stream was created in `new` and is destroyed once, after its work is done.
        unsafe {
            // The copy stream first: its last landing may still be queued on the compute stream.
            drop(
                self.copy
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
            );
            let _ = result::stream::synchronize(self.stream);
            self.timer
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .destroy();
            let graphs = std::mem::take(self.graphs.get_mut().unwrap_or_else(|e| e.into_inner()));
            for (_, exec) in graphs {
                // The stream is idle: no launch of the graph is pending.
                let _ = sys::cuGraphExecDestroy(exec.0);
            }
            let _ = result::stream::destroy(self.stream);
        }
    }
}

impl Driver for CudaDriver {
    fn name(&self) -> String {
        self.device.label()
    }

    fn as_cuda(&self) -> Option<&CudaDriver> {
        Some(self)
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.refuse_in_capture("an allocation")?;
        self.device.bind()?;
        // SAFETY: the stream is live. The memory is ordered on it; another stream using it (NCCL's,
        // the copy stream) first waits for an event recorded on it after the allocation.
        unsafe { result::malloc_async(self.stream, bytes) }.map_err(|e| {
            cuda_error(
                &self.device.label(),
                &format!("allocating {bytes} bytes"),
                e,
            )
        })
    }

    unsafe fn free(&self, ptr: DevicePtr, _bytes: usize) {
        if self.capturing.load(std::sync::atomic::Ordering::Relaxed) {
            // Captured, the free would be a graph node of memory the graph does not own, which
            // CUDA refuses ("must be passed the address of a graph allocation"): it waits for
            // `end_capture`, which then fails, as the emulator's does.
            self.freed_in_capture
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ptr);
            return;
        }
        // A free cannot report an error; a failure here means the context is already broken, which
        // the next synchronising call reports.
        let _ = self.device.bind();
        // SAFETY: the caller guarantees `ptr` came from `alloc` and is freed once; the free is
        // ordered after the work already issued on the stream.
        let _ = unsafe { result::free_async(ptr, self.stream) };
    }

    unsafe fn copy_host_to_device(
        &self,
        src: *const u8,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        self.refuse_in_capture("a copy from host memory")?;
        self.device.bind()?;
        // From pageable memory the call returns once `src` has been read or staged, so the caller
        // may reuse it at once; it may first wait for the stream (CUDA's notes on API
        // synchronisation say such a copy "might be synchronous with respect to host").
        // SAFETY: the caller guarantees both ranges.
        let r = unsafe { sys::cuMemcpyHtoDAsync_v2(dst, src as *const c_void, bytes, self.stream) };
        self.check("copying to the device", r.result())
    }

    unsafe fn copy_device_to_host(&self, src: DevicePtr, dst: *mut u8, bytes: usize) -> Result<()> {
        self.refuse_in_capture("a copy to host memory")?;
        self.device.bind()?;
        // SAFETY: the caller guarantees both ranges; the synchronisation below makes the data land
        // in `dst` before this returns.
        let r = unsafe { sys::cuMemcpyDtoHAsync_v2(dst as *mut c_void, src, bytes, self.stream) };
        self.check("copying to the host", r.result())?;
        self.synchronize()
    }

    unsafe fn copy_device_to_device(
        &self,
        src: DevicePtr,
        dst: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        self.device.bind()?;
        // SAFETY: the caller guarantees both ranges.
        let r = unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream) };
        self.check("copying on the device", r)
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.device.bind()?;
        // SAFETY: the caller guarantees the range.
        let r = unsafe { result::memset_d8_async(dst, 0, bytes, self.stream) };
        self.check("zeroing device memory", r)
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        self.device.bind()?;
        let f = self.device.function(kernel)?;
        let timed = self.timing.load(std::sync::atomic::Ordering::Relaxed)
            && !self.capturing.load(std::sync::atomic::Ordering::Relaxed);
        let mut timer = timed.then(|| self.timer.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(timer) = timer.as_mut() {
            self.check("recording a timing event", timer.before(self.stream))?;
        }
        let r = if self.device.programmatic_launch {
            // Programmatic dependent launch: the kernel may be scheduled before the previous one on
            // the stream has finished; it waits for it in its first statement,
            // grid_dependency_sync() (kernels/common.cuh), which every kernel calls and the
            // emulator checks. What this saves is the gap between kernels, most of a small one's
            // time; captured into a graph, the dependency becomes a programmatic edge.
            let mut attribute = sys::CUlaunchAttribute {
                id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
                pad: [0; 4],
                value: sys::CUlaunchAttributeValue {
                    programmaticStreamSerializationAllowed: 1,
                },
            };
            let config = sys::CUlaunchConfig {
                gridDimX: grid.0,
                gridDimY: grid.1,
                gridDimZ: grid.2,
                blockDimX: block.0,
                blockDimY: block.1,
                blockDimZ: block.2,
                sharedMemBytes: shared_bytes,
                hStream: self.stream,
                attrs: &mut attribute,
                numAttrs: 1,
            };
            // SAFETY: as below; the config and its one attribute live across the call.
            unsafe {
                sys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut())
                    .result()
            }
        } else {
            // SAFETY: the caller guarantees the parameters match the kernel's and every pointer
            // is valid.
            unsafe { result::launch_kernel(f, grid, block, shared_bytes, self.stream, params) }
        };
        // The message is built only on failure: this is every kernel launch's path.
        r.map_err(|e| {
            let what = format!(
                "launching {kernel} (grid {grid:?}, block {block:?}, {shared_bytes} bytes of \
                 dynamic shared memory{})",
                beyond_limits(f, block, shared_bytes)
            );
            cuda_error(&self.device.label(), &what, e)
        })?;
        if let Some(timer) = timer.as_mut() {
            self.check("recording a timing event", timer.after(kernel, self.stream))?;
        }
        Ok(())
    }

    fn set_kernel_timing(&self, on: bool) -> Result<()> {
        self.timing.store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn take_kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.refuse_in_capture("reading kernel times")?;
        self.device.bind()?;
        let mut timer = self.timer.lock().unwrap_or_else(|e| e.into_inner());
        timer
            .take()
            .map_err(|e| self.error("reading kernel times", e))
    }

    fn alloc_staging(&self, bytes: usize) -> Result<Staging> {
        self.refuse_in_capture("pinning host memory")?;
        self.device.bind()?;
        let label = self.device.label();
        // SAFETY: a plain page-locked allocation in the bound context; freed in `free_staging`.
        let ptr = unsafe { result::malloc_host(bytes, 0) }
            .map_err(|e| cuda_error(&label, &format!("pinning {bytes} bytes of host memory"), e))?;
        // Blocking sync: `wait_staging` then sleeps instead of spinning a core the data loader's
        // decoders could use.
        let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
            | sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC as u32;
        let mut event: sys::CUevent = std::ptr::null_mut();
        // SAFETY: writes the new event to a local (cudarc's `event::create` takes one flag only).
        let created = unsafe { sys::cuEventCreate(&mut event, flags) }.result();
        let event = match created.map(|()| event) {
            Ok(event) => event,
            Err(e) => {
                // SAFETY: just allocated, never used.
                let _ = unsafe { result::free_host(ptr) };
                return Err(cuda_error(&label, "cuEventCreate", e));
            }
        };
        Ok(Staging {
            ptr: ptr.cast(),
            bytes,
            event: event as usize as u64,
        })
    }

    unsafe fn free_staging(&self, staging: &Staging) {
        // Errors cannot be reported here; a broken context shows at the next synchronising call.
        let _ = self.device.bind();
        let event = staging.event as usize as sys::CUevent;
        // SAFETY: the event and the memory came from `alloc_staging`; the synchronisation makes
        // sure no upload still reads the memory when it is freed.
        unsafe {
            let _ = result::event::synchronize(event);
            let _ = result::event::destroy(event);
            let _ = result::free_host(staging.ptr.cast());
        }
    }

    unsafe fn upload_staged(&self, staging: &Staging, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.refuse_in_capture("a copy from host memory")?;
        self.device.bind()?;
        // From page-locked memory the copy is truly asynchronous: the copy engine reads `staging`
        // when the stream reaches it, and the event recorded after it says when it has.
        // SAFETY: the caller guarantees both ranges.
        let r = unsafe {
            sys::cuMemcpyHtoDAsync_v2(dst, staging.ptr as *const c_void, bytes, self.stream)
        };
        self.check("copying staged bytes to the device", r.result())?;
        // SAFETY: the event and the stream are live.
        let r =
            unsafe { result::event::record(staging.event as usize as sys::CUevent, self.stream) };
        self.check("cuEventRecord", r)
    }

    fn mark_landing_free(&self, _landing: DevicePtr) -> Result<()> {
        self.on_copy_stream("marking a landing buffer free", |copy| {
            copy.mark_landing_free(self.stream)
        })
    }

    unsafe fn upload_ahead(
        &self,
        staging: &Staging,
        landing: DevicePtr,
        bytes: usize,
    ) -> Result<()> {
        self.on_copy_stream("uploading ahead", |copy| {
            // SAFETY: the caller's guarantees; the context is bound.
            unsafe { copy.upload(staging, landing, bytes) }
        })
    }

    unsafe fn land_upload(&self, landing: DevicePtr, dst: DevicePtr, bytes: usize) -> Result<()> {
        self.on_copy_stream("landing an upload", |copy| {
            // SAFETY: the caller's guarantees; the context is bound.
            unsafe { copy.land(self.stream, landing, dst, bytes) }
        })
    }

    fn wait_staging(&self, staging: &Staging) -> Result<()> {
        self.refuse_in_capture("waiting for an upload")?;
        self.device.bind()?;
        // SAFETY: the event is live; an event never recorded counts as complete.
        let r = unsafe { result::event::synchronize(staging.event as usize as sys::CUevent) };
        self.check("waiting for an upload from staging memory", r)
    }

    fn has_kernel(&self, kernel: &str) -> bool {
        self.device.functions.contains_key(kernel)
    }

    fn encode_tensor_map_2d(&self, map: &TiledMap2d) -> Result<TensorMapBytes> {
        use sys::CUtensorMapDataType_enum as Data;
        map.validate()?;
        // Raw bits of the element size: a copy converts nothing, and zero bits are the fill.
        let data = match map.element_bytes {
            1 => Data::CU_TENSOR_MAP_DATA_TYPE_UINT8,
            2 => Data::CU_TENSOR_MAP_DATA_TYPE_UINT16,
            4 => Data::CU_TENSOR_MAP_DATA_TYPE_UINT32,
            _ => Data::CU_TENSOR_MAP_DATA_TYPE_UINT64,
        };
        let swizzle = cu_swizzle(map.swizzle);
        let mut out = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        let element_strides = [1u32, 1];
        // SAFETY: every array holds the rank's entries (globalStrides one fewer: the row stride), the
        // output is a CUtensorMap; the driver only records the address, nothing is read through it.
        let r = unsafe {
            sys::cuTensorMapEncodeTiled(
                out.as_mut_ptr(),
                data,
                2,
                map.global as *mut c_void,
                map.dims.as_ptr(),
                &map.row_stride_bytes,
                map.box_dims.as_ptr(),
                element_strides.as_ptr(),
                sys::CUtensorMapInterleave_enum::CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle,
                TMA_L2_PROMOTION,
                sys::CUtensorMapFloatOOBfill_enum::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        self.check("encoding a tensor map", r.result())?;
        Ok(map_bytes(out))
    }

    fn encode_tensor_map_im2col(&self, map: &Im2colMap) -> Result<TensorMapBytes> {
        map.validate()?;
        let mut out = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        let (dims, strides) = (map.dims_cwhn(), map.strides_bytes());
        // Corners and traversal strides innermost first (W, then H), as CUTLASS passes them; the
        // channels' stride is ignored by the driver.
        let lower = [map.lower[1], map.lower[0]];
        let upper = [map.upper[1], map.upper[0]];
        let element_strides = [1u32, map.stride[1], map.stride[0], 1];
        // SAFETY: every array holds the rank's entries (4; strides 3, corners 2), the output is a
        // CUtensorMap; the driver only records the address, nothing is read through it.
        let r = unsafe {
            sys::cuTensorMapEncodeIm2col(
                out.as_mut_ptr(),
                sys::CUtensorMapDataType_enum::CU_TENSOR_MAP_DATA_TYPE_UINT16,
                4,
                map.global as *mut c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                lower.as_ptr(),
                upper.as_ptr(),
                map.channels_per_pixel,
                map.pixels_per_column,
                element_strides.as_ptr(),
                sys::CUtensorMapInterleave_enum::CU_TENSOR_MAP_INTERLEAVE_NONE,
                cu_swizzle(map.swizzle),
                TMA_L2_PROMOTION,
                sys::CUtensorMapFloatOOBfill_enum::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        self.check("encoding an im2col tensor map", r.result())?;
        Ok(map_bytes(out))
    }

    fn kernel_limits(&self, kernel: &str) -> Result<KernelLimits> {
        self.device.bind()?;
        let f = self.device.function(kernel)?;
        function_limits(f).map_err(|e| {
            cuda_error(
                &self.device.label(),
                &format!("reading the attributes of {kernel}"),
                e,
            )
        })
    }

    fn set_max_dynamic_shared(&self, kernel: &str, bytes: u32) -> Result<()> {
        self.device.bind()?;
        let f = self.device.function(kernel)?;
        let value = i32::try_from(bytes).unwrap_or(i32::MAX);
        // SAFETY: `f` belongs to a module loaded for the life of the device; the attribute takes an int.
        let r = unsafe {
            sys::cuFuncSetAttribute(
                f,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                value,
            )
        };
        r.result().map_err(|e| {
            let what = format!("letting {kernel} use {bytes} bytes of dynamic shared memory");
            cuda_error(&self.device.label(), &what, e)
        })
    }

    fn begin_capture(&self) -> Result<()> {
        self.device.bind()?;
        // Thread-local mode: only this thread's calls that are unsafe during a capture (a
        // synchronous copy, a plain cuMemAlloc) fail; other threads (NCCL's, a data loader's) are
        // left alone. Everything issued on `self.stream` is recorded, not run.
        // SAFETY: the stream is live and not capturing (the backend begins one capture at a time).
        let r = unsafe {
            sys::cuStreamBeginCapture_v2(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        };
        self.check("beginning a stream capture", r.result())?;
        self.capturing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn end_capture(&self) -> Result<(GraphId, usize)> {
        self.capturing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        // The capture is ended even if binding the context fails (it is the stream's, which the
        // call names): a capture left open would record every later launch instead of running it.
        let bound = self.device.bind();
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        // SAFETY: the stream is capturing (begin_capture); the graph handle is written to a local.
        // An invalidated capture (an illegal call during it) is reported here and ends it.
        let r = unsafe { sys::cuStreamEndCapture(self.stream, &mut graph) };
        bound?;
        let freed = std::mem::take(
            &mut *self
                .freed_in_capture
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for &ptr in &freed {
            // SAFETY: each came to `free` from `alloc`, once; the stream is out of capture, so the
            // free is ordered after the work issued before the capture, as a free then would be.
            let _ = unsafe { result::free_async(ptr, self.stream) };
        }
        self.check("ending a stream capture", r.result())?;
        if !freed.is_empty() {
            // SAFETY: the graph was just captured and is not used again.
            let _ = unsafe { sys::cuGraphDestroy(graph) };
            return Err(Error::Device {
                device: self.device.label(),
                message: format!(
                    "{} allocation(s) freed while capturing a graph (a free in a capture must be \
                     of the graph's own memory)",
                    freed.len()
                ),
            });
        }
        let counted = self.count_kernel_nodes(graph);
        let mut exec: sys::CUgraphExec = std::ptr::null_mut();
        // SAFETY: `graph` is valid; the executable graph is independent of it once instantiated,
        // so the graph itself is destroyed right after.
        let instantiated = unsafe {
            let r = sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0);
            let _ = sys::cuGraphDestroy(graph);
            r
        };
        self.check("instantiating a captured graph", instantiated.result())?;
        let kernels = match counted {
            Ok(k) => k,
            Err(e) => {
                // SAFETY: instantiated above, never launched.
                let _ = unsafe { sys::cuGraphExecDestroy(exec) };
                return Err(e);
            }
        };
        let id = self
            .next_graph
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, GraphExec(exec));
        Ok((id, kernels))
    }

    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        self.refuse_in_capture("a graph launch")?;
        self.device.bind()?;
        let graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exec) = graphs.get(&graph) else {
            return Err(Error::Device {
                device: self.device.label(),
                message: format!("no graph {graph}"),
            });
        };
        // SAFETY: `exec` was instantiated in this context and is not destroyed while listed.
        let r = unsafe { sys::cuGraphLaunch(exec.0, self.stream) };
        self.check("launching a captured graph", r.result())
    }

    fn destroy_graph(&self, graph: GraphId) {
        let removed = self
            .graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&graph);
        if let Some(exec) = removed {
            let _ = self.device.bind();
            // SAFETY: removed from the list, so destroyed once. Launches already issued complete:
            // the driver defers the destruction of an executable graph that is still running.
            let _ = unsafe { sys::cuGraphExecDestroy(exec.0) };
        }
    }

    fn synchronize(&self) -> Result<()> {
        self.refuse_in_capture("a synchronisation")?;
        self.device.bind()?;
        // SAFETY: the stream is live. An error here is usually a kernel's (an out-of-bounds access, a
        // trap), reported at the first synchronisation after it; the context is then unusable.
        let r = unsafe { result::stream::synchronize(self.stream) };
        self.check("waiting for the GPU (a kernel may have failed)", r)
    }
}

/// The driver's swizzle of a tensor map.
fn cu_swizzle(swizzle: TmaSwizzle) -> sys::CUtensorMapSwizzle {
    use sys::CUtensorMapSwizzle_enum as Swizzle;
    match swizzle {
        TmaSwizzle::None => Swizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
        TmaSwizzle::B32 => Swizzle::CU_TENSOR_MAP_SWIZZLE_32B,
        TmaSwizzle::B64 => Swizzle::CU_TENSOR_MAP_SWIZZLE_64B,
        TmaSwizzle::B128 => Swizzle::CU_TENSOR_MAP_SWIZZLE_128B,
    }
}

/// A tensor map the driver wrote, as bytes.
fn map_bytes(out: std::mem::MaybeUninit<sys::CUtensorMap>) -> TensorMapBytes {
    // SAFETY: the driver wrote the map (or the zeroed bytes remain: plain integers either way).
    let words = unsafe { out.assume_init() }.opaque;
    let mut bytes = [0u8; 128];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    TensorMapBytes(bytes)
}
