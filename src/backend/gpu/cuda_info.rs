//! What this machine offers the GPU backend, for `resnet-cuda info`: whether the CUDA driver library can
//! be loaded and, if so, its version and every GPU (name, compute capability, memory).
//!
//! Only queries that need no context are made (`cuInit`, `cuDeviceGet*`), and the library is looked
//! for (`is_culib_present`) before any of them: cudarc panics when a driver call is made without one.

use std::fmt::Write as _;

use cudarc::driver::{result, sys};

use super::embedded::{self, KernelFit};

/// The oldest driver API the embedded kernels need: CUDA 13.0, drivers of the R580 series.
pub const MIN_DRIVER_VERSION: i32 = 13000;

/// One GPU as the driver reports it.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (u32, u32),
    pub memory_bytes: usize,
    pub multiprocessors: u32,
}

/// The result of probing for the CUDA driver.
#[derive(Clone, Debug)]
pub enum DriverStatus {
    /// The driver library could not be loaded; `reason` says why.
    NotFound { reason: String },
    /// The library loaded but the driver could not be used (`cuInit` or a device query failed).
    Unusable {
        version: Option<i32>,
        reason: String,
    },
    /// The driver works; `version` as `cuDriverGetVersion` gives it (13000 for CUDA 13.0).
    Found { version: i32, gpus: Vec<GpuInfo> },
}

/// Probes the driver. Never panics on a machine without one.
pub fn probe() -> DriverStatus {
    // SAFETY: only tries to open the library (dlopen); no driver call is made.
    if !unsafe { sys::is_culib_present() } {
        return DriverStatus::NotFound {
            reason: why_not_loadable(),
        };
    }
    if let Err(e) = result::init() {
        return DriverStatus::Unusable {
            version: driver_version(),
            reason: format!("cuInit failed: {e}"),
        };
    }
    let version = driver_version().unwrap_or(0);
    let gpus = result::device::get_count().and_then(|n| (0..n).map(gpu_info).collect());
    match gpus {
        Ok(gpus) => DriverStatus::Found { version, gpus },
        Err(e) => DriverStatus::Unusable {
            version: Some(version),
            reason: format!("querying the GPUs failed: {e}"),
        },
    }
}

/// Whether GPU `ordinal` can run the embedded kernels, and when not, whether there is a GPU at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuReadiness {
    Ready,
    /// No driver library, or no GPU `ordinal`: nothing to say about a GPU.
    NoGpu,
    /// A GPU is there (or a driver that failed to answer), but it cannot be used; the text says why
    /// and how to fix it, in one line.
    Unusable(String),
}

/// Whether GPU `ordinal` exists under a recent enough driver and the embedded kernels fit it, and if
/// not, why (see [`GpuReadiness`]).
pub fn gpu_readiness(ordinal: usize) -> GpuReadiness {
    readiness_of(probe(), ordinal, embedded::fit)
}

/// [`gpu_readiness`] for a given probe result and kernel fit (`embedded::fit` in the binary).
fn readiness_of(
    status: DriverStatus,
    ordinal: usize,
    fit: impl Fn(u32, u32) -> KernelFit,
) -> GpuReadiness {
    let rebuild = format!("rebuild with the kernels: {}", embedded::HOW_TO_GET);
    match status {
        DriverStatus::NotFound { .. } => GpuReadiness::NoGpu,
        DriverStatus::Unusable { reason, .. } => {
            GpuReadiness::Unusable(format!("the CUDA driver does not answer ({reason})"))
        }
        DriverStatus::Found { version, gpus } => {
            let Some(gpu) = gpus.get(ordinal) else {
                return GpuReadiness::NoGpu;
            };
            if version < MIN_DRIVER_VERSION {
                return GpuReadiness::Unusable(format!(
                    "{} has driver CUDA {}, older than the {} the kernels need; update the NVIDIA driver",
                    gpu.name,
                    version_string(version),
                    version_string(MIN_DRIVER_VERSION)
                ));
            }
            let (major, minor) = gpu.capability;
            match fit(major, minor) {
                KernelFit::Cubin(_) | KernelFit::Ptx(_) => GpuReadiness::Ready,
                KernelFit::Absent => GpuReadiness::Unusable(format!(
                    "{} is present but this binary was built without the CUDA kernels (nvcc was not \
                     found at build time); {rebuild}",
                    gpu.name
                )),
                KernelFit::TooOld => GpuReadiness::Unusable(format!(
                    "{} (sm_{major}{minor}) is older than every architecture the kernels were built for \
                     ({})",
                    gpu.name,
                    embedded::ARCHS.join(", ")
                )),
            }
        }
    }
}

/// Whether GPU `ordinal` can run the embedded kernels ([`gpu_readiness`] is `Ready`).
pub fn gpu_ready(ordinal: usize) -> bool {
    gpu_readiness(ordinal) == GpuReadiness::Ready
}

fn driver_version() -> Option<i32> {
    let mut v = 0;
    // SAFETY: the library is present (checked by the caller); cuDriverGetVersion needs no cuInit.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().ok()?;
    Some(v)
}

fn gpu_info(ordinal: i32) -> Result<GpuInfo, result::DriverError> {
    use sys::CUdevice_attribute::*;
    let dev = result::device::get(ordinal)?;
    // SAFETY: `dev` comes from cuDeviceGet.
    let attr = |a| unsafe { result::device::get_attribute(dev, a) };
    Ok(GpuInfo {
        ordinal: ordinal as usize,
        name: result::device::get_name(dev)?,
        capability: (
            attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
            attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
        ),
        // SAFETY: as above.
        memory_bytes: unsafe { result::device::total_mem(dev)? },
        multiprocessors: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
    })
}

/// The loader's message for the driver's own soname (`libcuda.so.1`), the name every driver install
/// provides, with the other names cudarc tried.
fn why_not_loadable() -> String {
    let names = cudarc::get_lib_name_candidates("cuda");
    let soname = format!(
        "{}cuda{}.1",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    // SAFETY: loading a shared library runs its initializers; this is the library the driver API would
    // load anyway, and it failed to load a moment ago.
    let detail = match unsafe { libloading::Library::new(&soname) } {
        Err(e) => {
            // libloading's own message is "dlopen failed"; the loader's reason is its source.
            let reason = std::error::Error::source(&e).map_or(e.to_string(), |r| r.to_string());
            format!("{soname} could not be loaded ({reason})")
        }
        Ok(_) => {
            format!("{soname} loads, but the library could not be loaded under the names tried")
        }
    };
    format!(
        "{detail}, nor any of the other {} names cudarc looks for: no NVIDIA driver is installed \
         here, or its library is not on the loader's path (LD_LIBRARY_PATH)",
        names.len().saturating_sub(1)
    )
}

/// `major.minor` from a `cuDriverGetVersion` number (13000 -> "13.0").
pub fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The report `resnet-cuda info` prints: the CPU backend, the emulator, the embedded kernels, the driver
/// and every GPU.
pub fn report(cpu_threads: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "resnet-cuda {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        s,
        "cpu backend: available, {cpu_threads} thread{}",
        if cpu_threads == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "emulator: built in (the CUDA kernels compiled for the host; the tests run them)"
    );
    if embedded::present() {
        let stems: Vec<&str> = embedded::FATBINS.iter().map(|(stem, _)| *stem).collect();
        let _ = writeln!(
            s,
            "cuda kernels: embedded for {} (cubins, plus PTX of {}); {} files: {}",
            embedded::ARCHS.join(", "),
            embedded::ARCHS
                .first()
                .map_or(String::new(), |a| a.replace("sm_", "compute_")),
            stems.len(),
            stems.join(", ")
        );
    } else {
        let _ = writeln!(
            s,
            "cuda kernels: absent (this binary was built without nvcc); to get them, {}",
            embedded::HOW_TO_GET
        );
    }
    match probe() {
        DriverStatus::NotFound { reason } => {
            let _ = writeln!(s, "cuda driver: no CUDA driver found: {reason}");
        }
        DriverStatus::Unusable { version, reason } => {
            let v = version.map_or(String::new(), |v| format!(" (CUDA {})", version_string(v)));
            let _ = writeln!(s, "cuda driver: found{v} but not usable: {reason}");
        }
        DriverStatus::Found { version, gpus } => {
            let too_old = if version < MIN_DRIVER_VERSION {
                format!(
                    "; too old for the kernels, which need CUDA {} (an R580 driver or newer)",
                    version_string(MIN_DRIVER_VERSION)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "cuda driver: CUDA {}, {} GPU{}{too_old}",
                version_string(version),
                gpus.len(),
                if gpus.len() == 1 { "" } else { "s" }
            );
            for g in &gpus {
                let (major, minor) = g.capability;
                let fit = match embedded::fit(major, minor) {
                    KernelFit::Cubin(a) => format!("kernels: {a} cubin"),
                    KernelFit::Ptx(p) => format!("kernels: JIT from {p} PTX"),
                    KernelFit::TooOld => "kernels: none fit, the device is too old".to_string(),
                    KernelFit::Absent => "kernels: absent".to_string(),
                };
                let pdl = if programmatic_launch(major, minor) {
                    "on"
                } else {
                    "off"
                };
                let _ = writeln!(
                    s,
                    "  gpu {}: {}, compute capability {major}.{minor}, {:.1} GiB, {} SMs; {fit}{}; \
                     programmatic dependent launch {pdl}",
                    g.ordinal,
                    g.name,
                    g.memory_bytes as f64 / (1u64 << 30) as f64,
                    g.multiprocessors,
                    hopper_kernels(major, minor)
                );
            }
        }
    }
    s
}

/// ", and sm_90a (wgmma)" where the binary carries Hopper-only kernels that this device loads.
fn hopper_kernels(major: u32, minor: u32) -> &'static str {
    let carried = embedded::FATBINS
        .iter()
        .any(|(stem, _)| embedded::is_hopper_only(stem));
    let fits = !matches!(
        embedded::fit(major, minor),
        KernelFit::TooOld | KernelFit::Absent
    );
    if carried && fits && embedded::loads_on("_sm90a", major, minor) {
        " and sm_90a (wgmma)"
    } else {
        ""
    }
}

/// Whether kernels on a GPU of compute capability `major.minor` launch with programmatic dependent
/// launch (`CudaDriver::launch`): where the code the driver loads there waits for the kernel before
/// it ([`waits_for_previous_grid`]), unless `RESNET_PDL=0`.
pub fn programmatic_launch(major: u32, minor: u32) -> bool {
    waits_for_previous_grid(&embedded::fit(major, minor))
        && std::env::var_os("RESNET_PDL").is_none_or(|v| v != "0")
}

/// Whether the kernels of `fit` wait for the previous grid before touching memory. Every kernel
/// starts with `grid_dependency_sync()` (kernels/common.cuh), but it emits `griddepcontrol.wait`
/// only where `__CUDA_ARCH__ >= 900`: a cubin or PTX built for 9.0 or newer. A newer GPU that
/// JIT-compiles the sm_80 PTX (Blackwell with the default `CUDA_ARCHS=80;90`, or a build with
/// `CUDA_ARCHS=80` alone) runs kernels without the wait, and launched programmatically they would
/// read what the kernel before them has not yet written.
pub fn waits_for_previous_grid(fit: &KernelFit) -> bool {
    match fit {
        KernelFit::Cubin(a) | KernelFit::Ptx(a) => {
            embedded::arch_number(a).is_some_and(|n| n >= 90)
        }
        KernelFit::TooOld | KernelFit::Absent => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> GpuInfo {
        GpuInfo {
            ordinal: 0,
            name: "NVIDIA H200".into(),
            capability: (9, 0),
            memory_bytes: 140 << 30,
            multiprocessors: 132,
        }
    }

    fn found(version: i32) -> DriverStatus {
        DriverStatus::Found {
            version,
            gpus: vec![h200()],
        }
    }

    fn unusable_text(r: GpuReadiness) -> String {
        match r {
            GpuReadiness::Unusable(why) => why,
            other => panic!("expected Unusable, got {other:?}"),
        }
    }

    #[test]
    fn the_wgmma_kernels_are_reported_on_compute_capability_9_0_only() {
        let carried = embedded::FATBINS
            .iter()
            .any(|(stem, _)| embedded::is_hopper_only(stem));
        assert_eq!(hopper_kernels(9, 0).is_empty(), !carried);
        assert_eq!(hopper_kernels(8, 0), "");
        assert_eq!(hopper_kernels(10, 0), "");
    }

    #[test]
    fn programmatic_launch_only_where_the_loaded_kernels_wait_for_the_previous_one() {
        assert!(waits_for_previous_grid(&KernelFit::Cubin("sm_90".into())));
        assert!(waits_for_previous_grid(&KernelFit::Cubin("sm_100".into())));
        assert!(waits_for_previous_grid(&KernelFit::Ptx(
            "compute_90".into()
        )));
        // JIT from sm_80 PTX (a Blackwell GPU with CUDA_ARCHS=80;90): no griddepcontrol.wait.
        assert!(!waits_for_previous_grid(&KernelFit::Ptx(
            "compute_80".into()
        )));
        assert!(!waits_for_previous_grid(&KernelFit::Cubin("sm_86".into())));
        assert!(!waits_for_previous_grid(&KernelFit::TooOld));
        assert!(!waits_for_previous_grid(&KernelFit::Absent));
    }

    #[test]
    fn no_driver_or_no_such_gpu_is_silent() {
        let cubin = |_, _| KernelFit::Cubin("sm_90".into());
        let not_found = DriverStatus::NotFound {
            reason: "no libcuda".into(),
        };
        assert_eq!(readiness_of(not_found, 0, cubin), GpuReadiness::NoGpu);
        assert_eq!(readiness_of(found(13000), 1, cubin), GpuReadiness::NoGpu);
        assert_eq!(readiness_of(found(13000), 0, cubin), GpuReadiness::Ready);
    }

    #[test]
    fn a_gpu_without_kernels_names_the_gpu_and_the_fix() {
        let why = unusable_text(readiness_of(found(13000), 0, |_, _| KernelFit::Absent));
        assert!(why.contains("NVIDIA H200"), "{why}");
        assert!(why.contains("built without the CUDA kernels"), "{why}");
        assert!(why.contains("tools/install-nvcc.sh"), "{why}");
        assert!(!why.contains('\n'), "one line: {why}");
    }

    #[test]
    fn an_old_driver_or_gpu_or_a_failing_driver_is_explained() {
        let cubin = |_, _| KernelFit::Cubin("sm_90".into());
        let why = unusable_text(readiness_of(found(12040), 0, cubin));
        assert!(
            why.contains("12.4") && why.contains("update the NVIDIA driver"),
            "{why}"
        );
        let why = unusable_text(readiness_of(found(13000), 0, |_, _| KernelFit::TooOld));
        assert!(why.contains("sm_90") && why.contains("older"), "{why}");
        let failing = DriverStatus::Unusable {
            version: None,
            reason: "cuInit failed: CUDA_ERROR_NO_DEVICE".into(),
        };
        let why = unusable_text(readiness_of(failing, 0, cubin));
        assert!(why.contains("CUDA_ERROR_NO_DEVICE"), "{why}");
    }
}
