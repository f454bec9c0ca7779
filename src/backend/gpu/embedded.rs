//! The CUDA kernels build.rs compiled with nvcc: one fatbin per `kernels/*.cu`, with cubins for
//! [`ARCHS`] and PTX of the lowest of them. Both lists are empty when nvcc was not found at build time
//! (see DESIGN.md, "Kernels and build.rs").

include!(concat!(env!("OUT_DIR"), "/kernels_embedded.rs"));

/// How to get the kernels into a binary built without them.
pub const HOW_TO_GET: &str =
    "run tools/install-nvcc.sh, then rebuild with NVCC set to the path it \
                              prints: NVCC=$(tools/install-nvcc.sh) cargo build --release";

/// Whether this binary carries the CUDA kernels.
pub fn present() -> bool {
    !FATBINS.is_empty()
}

/// The fatbin compiled from `kernels/<stem>.cu`.
pub fn fatbin(stem: &str) -> Option<&'static [u8]> {
    FATBINS.iter().find(|(s, _)| *s == stem).map(|(_, b)| *b)
}

/// Whether `kernels/<stem>.cu` is Hopper-only (its name ends in `_sm90a`): build.rs gave it a cubin
/// for sm_90a alone, which loads on a device of compute capability 9.0 exactly. Keep in step with
/// build.rs's `is_hopper_only`.
pub fn is_hopper_only(stem: &str) -> bool {
    stem.ends_with("_sm90a")
}

/// Whether the module of `kernels/<stem>.cu` can load on a device of compute capability
/// `major.minor`, given that the device fits the kernels at all ([`fit`]): the Hopper-only modules
/// only on 9.0, the others everywhere.
pub fn loads_on(stem: &str, major: u32, minor: u32) -> bool {
    !is_hopper_only(stem) || (major, minor) == (9, 0)
}

/// How the embedded kernels would run on a GPU of compute capability `major.minor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelFit {
    /// A cubin built for `sm_XY` with the same major and a minor no higher than the device's.
    Cubin(String),
    /// No cubin fits, but the PTX of the lowest architecture is JIT-compiled by the driver.
    Ptx(String),
    /// The device is older than every architecture the kernels were built for.
    TooOld,
    /// The binary carries no kernels.
    Absent,
}

/// Picks what the driver would load on a device of compute capability `major.minor`: the newest
/// compatible cubin (same major, minor not above the device's), else the PTX when the device is at least
/// its architecture.
pub fn fit(major: u32, minor: u32) -> KernelFit {
    fit_among(ARCHS, major, minor)
}

/// The number of an architecture name: 90 for `sm_90`, `sm_90a` or `compute_90`.
pub fn arch_number(arch: &str) -> Option<u32> {
    let (_, digits) = arch.split_once('_')?;
    digits
        .trim_end_matches(|c: char| c.is_ascii_lowercase())
        .parse()
        .ok()
}

fn fit_among(archs: &[&str], major: u32, minor: u32) -> KernelFit {
    let parsed: Vec<(&str, u32, u32)> = archs
        .iter()
        .filter_map(|a| {
            let n = arch_number(a)?;
            Some((*a, n / 10, n % 10))
        })
        .collect();
    let Some(&(lowest, lmaj, lmin)) = parsed.iter().min_by_key(|(_, ma, mi)| (*ma, *mi)) else {
        return KernelFit::Absent;
    };
    // An arch-specific cubin ("sm_90a") runs only on exactly that device; skip those when choosing.
    let cubin = parsed
        .iter()
        .filter(|(a, ma, mi)| {
            !a.ends_with(|c: char| c.is_ascii_lowercase()) && *ma == major && *mi <= minor
        })
        .max_by_key(|(_, _, mi)| *mi);
    if let Some((a, _, _)) = cubin {
        return KernelFit::Cubin(a.to_string());
    }
    if (major, minor) >= (lmaj, lmin) {
        KernelFit::Ptx(lowest.replace("sm_", "compute_"))
    } else {
        KernelFit::TooOld
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_follow_cuda_compatibility_rules() {
        let archs = ["sm_80", "sm_90"];
        assert_eq!(fit_among(&archs, 8, 0), KernelFit::Cubin("sm_80".into()));
        assert_eq!(fit_among(&archs, 8, 6), KernelFit::Cubin("sm_80".into()));
        assert_eq!(fit_among(&archs, 9, 0), KernelFit::Cubin("sm_90".into()));
        assert_eq!(
            fit_among(&archs, 12, 0),
            KernelFit::Ptx("compute_80".into())
        );
        assert_eq!(fit_among(&archs, 7, 5), KernelFit::TooOld);
        assert_eq!(fit_among(&[], 9, 0), KernelFit::Absent);
        assert_eq!(
            fit_among(&["sm_90a"], 9, 0),
            KernelFit::Ptx("compute_90a".into())
        );
    }

    #[test]
    fn hopper_only_modules_load_on_compute_capability_9_0_alone() {
        assert!(loads_on("conv_tc_forward", 8, 0));
        assert!(loads_on("conv_tc_forward", 10, 0));
        assert!(loads_on("conv_wgmma_forward_sm90a", 9, 0));
        assert!(!loads_on("conv_wgmma_forward_sm90a", 8, 9));
        assert!(!loads_on("conv_wgmma_forward_sm90a", 10, 0));
        assert!(!loads_on("conv_wgmma_forward_sm90a", 12, 0));
    }

    #[test]
    fn lists_agree() {
        assert_eq!(present(), !ARCHS.is_empty());
    }
}
