//! nvcc: where it is found, which architectures it compiles for, and one kernel file's fatbin (with
//! the build's checks on ptxas's report: no local memory (spills, stack frames) on sm_90 or newer, no
//! serialised wgmma), and the generated source that embeds the fatbins and their kernels' launch
//! limits (build/kernel_limits.rs).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where nvcc is looked for, in order: `NVCC` (a path, or a name to look up on PATH; `none` builds
/// without kernels), `$CUDA_HOME/bin/nvcc`, `nvcc` on PATH, `/usr/local/cuda/bin/nvcc` (where the
/// toolkit installs, often not on PATH), and the cache `tools/install-nvcc.sh` fills. When none is
/// there but the machine has an NVIDIA driver, the pinned compiler is fetched with
/// `tools/install-nvcc.sh` (unless `RESNET_NVCC_FETCH=0`), so that `cargo build` on a GPU machine
/// gives a binary that uses its GPU. An explicit `NVCC` that does not exist is an error rather than a
/// silent fallback.
pub fn find_nvcc(root: &Path) -> Option<PathBuf> {
    if let Some(v) = env::var_os("NVCC").filter(|v| !v.is_empty()) {
        if v == "none" {
            return None;
        }
        let p = PathBuf::from(&v);
        let found = if p.components().count() > 1 {
            Some(p.clone()).filter(|p| p.is_file())
        } else {
            on_path(&v)
        };
        return Some(
            found.unwrap_or_else(|| panic!("NVCC={} is not an nvcc executable", p.display())),
        );
    }
    let cuda_home = env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin").join("nvcc"));
    let found = cuda_home
        .filter(|p| p.is_file())
        .or_else(|| on_path("nvcc".as_ref()))
        .or_else(|| Some(PathBuf::from("/usr/local/cuda/bin/nvcc")).filter(|p| p.is_file()))
        .or_else(|| install_nvcc_cache().filter(|p| p.is_file()));
    if found.is_some() || env::var("RESNET_NVCC_FETCH").is_ok_and(|v| v == "0") {
        return found;
    }
    let driver = nvidia_driver_present()?;
    println!(
        "cargo:warning=nvcc not found, but this machine has an NVIDIA driver ({driver}): fetching the \
         pinned CUDA compiler with tools/install-nvcc.sh (RESNET_NVCC_FETCH=0 turns this off)"
    );
    let out = Command::new(root.join("tools/install-nvcc.sh"))
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            Some(p).filter(|p| p.is_file())
        }
        Ok(o) => {
            println!("cargo:warning=tools/install-nvcc.sh failed ({})", o.status);
            None
        }
        Err(e) => {
            println!("cargo:warning=tools/install-nvcc.sh could not run: {e}");
            None
        }
    }
}

/// The nvcc `tools/install-nvcc.sh` installs (its folder: `$RESNET_NVCC_CACHE`, default
/// `~/.cache/resnet-cuda/nvcc-13.0`).
fn install_nvcc_cache() -> Option<PathBuf> {
    let cache = env::var_os("RESNET_NVCC_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/resnet-cuda/nvcc-13.0"))
        })?;
    Some(cache.join("nvidia/cu13/bin/nvcc"))
}

/// The NVIDIA driver's evidence on this machine (its kernel module's version file, or the user-space
/// library in a usual folder), if any.
fn nvidia_driver_present() -> Option<String> {
    let candidates = [
        "/proc/driver/nvidia/version",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
        "/usr/local/nvidia/lib64/libcuda.so.1",
        "/usr/lib/wsl/lib/libcuda.so.1",
    ];
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

fn on_path(name: &std::ffi::OsStr) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Architectures from `CUDA_ARCHS` ("80;90", also "sm_80,sm_90" or "8.0 9.0"), sorted, deduplicated.
pub fn cuda_archs() -> Vec<String> {
    let spec = env::var("CUDA_ARCHS").unwrap_or_else(|_| "80;90".to_string());
    let mut archs: Vec<String> = spec
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let a = s
                .trim_start_matches("sm_")
                .trim_start_matches("compute_")
                .replace('.', "");
            let digits = a.trim_end_matches(|c: char| c.is_ascii_lowercase());
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                panic!("CUDA_ARCHS entry {s:?} is not an architecture like 80 or 90a");
            }
            a
        })
        .collect();
    archs.sort_by_key(|a| arch_number(a));
    archs.dedup();
    assert!(!archs.is_empty(), "CUDA_ARCHS names no architecture");
    archs
}

fn arch_number(arch: &str) -> u32 {
    arch.trim_end_matches(|c: char| c.is_ascii_lowercase())
        .parse()
        .unwrap_or(0)
}

/// One fatbin to make: `kernels/<stem>.cu` to `<out_dir>/<stem>.fatbin`.
pub struct Fatbin {
    pub stem: String,
    pub source: PathBuf,
}

impl Fatbin {
    pub fn file_name(&self) -> String {
        format!("{}.fatbin", self.stem)
    }

    /// Its kernels' launch limits (build/kernel_limits.rs), beside it.
    pub fn limits_file_name(&self) -> String {
        format!("{}.limits", self.stem)
    }

    /// Where nvcc keeps its intermediate files (the PTX the limits are read from) while compiling it.
    pub fn keep_dir(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(format!("{}.keep", self.stem))
    }
}

/// The fatbins for `cu_files`: every file, except the Hopper-only ones (wgmma) when `archs` has no 90.
pub fn fatbins(cu_files: &[PathBuf], archs: &[String]) -> Vec<Fatbin> {
    let hopper_wanted = archs.iter().any(|a| arch_number(a) == 90);
    cu_files
        .iter()
        .map(|cu| Fatbin {
            stem: cu
                .file_stem()
                .expect("file stem")
                .to_string_lossy()
                .into_owned(),
            source: cu.clone(),
        })
        .filter(|f| hopper_wanted || !is_hopper_only(&f.stem))
        .collect()
}

/// nvcc's arguments for `fatbin` except the output and input paths: cubins for `archs` and PTX of
/// the lowest, or, for a Hopper-only file (wgmma), a cubin for sm_90a alone, which runs on compute
/// capability 9.0 exactly and nowhere else (no PTX: an sm_90a PTX would not JIT for a newer device
/// either). nvcc needs the explicit -gencode form: `-arch=sm_90a` has been seen to emit plain sm_90
/// code.
pub fn arguments(fatbin: &Fatbin, kernels: &Path, archs: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["-fatbin", "-std=c++17", "-O3", "-Xptxas", "-v"]
        .map(String::from)
        .to_vec();
    if is_hopper_only(&fatbin.stem) {
        args.push("-gencode=arch=compute_90a,code=sm_90a".to_string());
    } else {
        args.extend(
            archs
                .iter()
                .map(|a| format!("-gencode=arch=compute_{a},code=sm_{a}")),
        );
        let lowest = &archs[0];
        args.push(format!(
            "-gencode=arch=compute_{lowest},code=compute_{lowest}"
        ));
    }
    args.push("-I".to_string());
    args.push(kernels.to_str().expect("UTF-8 kernels path").to_string());
    args
}

/// Runs nvcc for one file, keeping its intermediate files in [`Fatbin::keep_dir`] (emptied first);
/// returns ptxas's report. The error is the whole message the build fails with.
pub fn compile(
    nvcc: &Path,
    fatbin: &Fatbin,
    args: &[String],
    out_dir: &Path,
) -> Result<String, String> {
    let cu = &fatbin.source;
    let keep = fatbin.keep_dir(out_dir);
    let _ = std::fs::remove_dir_all(&keep);
    std::fs::create_dir_all(&keep).map_err(|e| format!("{}: {e}", keep.display()))?;
    let output = Command::new(nvcc)
        .args(args)
        .arg("--keep")
        .arg("--keep-dir")
        .arg(&keep)
        .arg("-o")
        .arg(out_dir.join(fatbin.file_name()))
        .arg(cu)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!("nvcc failed on {}:\n{log}", cu.display()));
    }
    if let Some(local) = find_local_memory(&log) {
        return Err(format!(
            "{}: {local}; a kernel must not use local memory on sm_90 or newer\n{log}",
            cu.display()
        ));
    }
    if let Some(short) = find_short_register_handover(&log) {
        return Err(format!("{}: {short}\n{log}", cu.display()));
    }
    // ptxas falls back to serialising wgmma (each waits for the one before: a fraction of the
    // tensor cores' speed) when the pipeline is not one it can keep asynchronous, and says so only
    // in an advisory line. That is a build error here, like a spill.
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("wgmma.mma_async instructions are serialized"))
    {
        return Err(format!("{}: {}\n{log}", cu.display(), line.trim()));
    }
    Ok(log)
}

/// Whether `kernels/<stem>.cu` uses sm_90a-only instructions (wgmma): its name ends in `_sm90a`.
/// Keep in step with `embedded::is_hopper_only`.
fn is_hopper_only(stem: &str) -> bool {
    stem.ends_with("_sm90a")
}

/// The kernel and architecture of ptxas's "Compiling entry function 'F' for 'sm_NN'" line.
pub fn entry_function(line: &str) -> Option<(&str, &str)> {
    let rest = line.split("Compiling entry function '").nth(1)?;
    let mut parts = rest.split('\'');
    Some((parts.next().unwrap_or(""), parts.nth(1).unwrap_or("")))
}

/// Reads `ptxas -v` output: each "Compiling entry function 'F' for 'sm_NN'" is followed by lines like
/// "N bytes stack frame, S bytes spill stores, L bytes spill loads". Returns the first kernel with
/// local memory on an architecture of 90 or newer: a spill, or a stack frame (an array indexed by a
/// value the compiler cannot resolve, which then lives in local memory: every access a round trip
/// through L1, in a loop that was meant to run from registers).
fn find_local_memory(log: &str) -> Option<String> {
    let mut function = String::new();
    let mut arch = String::new();
    for line in log.lines() {
        if let Some((name, on)) = entry_function(line) {
            function = name.to_string();
            arch = on.to_string();
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            function = rest.trim().to_string();
        }
        if line.contains("bytes spill stores") {
            let number_before = |what: &str| -> u64 {
                let head = line.split(what).next().unwrap_or("");
                head.rsplit(|c: char| c == ',' || c.is_whitespace())
                    .find(|s| !s.is_empty())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            };
            let (stack, stores, loads) = (
                number_before(" bytes stack frame"),
                number_before(" bytes spill stores"),
                number_before(" bytes spill loads"),
            );
            let is_new_arch = arch_number(arch.trim_start_matches("sm_")) >= 90;
            if is_new_arch && (stack > 0 || stores > 0 || loads > 0) {
                return Some(format!(
                    "ptxas reports a {stack}-byte stack frame, {stores} bytes spill stores and {loads} bytes spill loads in {function} for {arch}"
                ));
            }
        }
    }
    None
}

/// The registers a thread of a kernel with a producer warpgroup must start with (kernels/conv_wgmma.cuh,
/// Registers): its 384 threads' count must cover what the hand-over leaves, the producer's 128 at
/// `kWgmmaProducerRegisters` (24) and the consumers' 256 at `kWgmmaConsumerRegisters` (240), or
/// the consumers' `setmaxnreg.inc` waits forever for registers the block's pool never gets.
const HANDOVER_ENTRY_REGISTERS: u64 = (128 * 24 + 256 * 240) / 384;

/// Whether entry function `name` is one with a producer warpgroup: both operands by TMA
/// (`_pointwise_`, `_im2col_`) on a 128x256 tile.
fn hands_registers_over(name: &str) -> bool {
    name.starts_with("conv2d_wgmma_tma_")
        && (name.contains("_pointwise_") || name.contains("_im2col_"))
        && name.contains("_128x256")
}

/// Reads `ptxas -v` output ("Compiling entry function 'F' for 'sm_NN'", then "Used N registers"):
/// the first kernel with a producer warpgroup that starts with fewer registers than its hand-over
/// needs, which would hang on a GPU.
fn find_short_register_handover(log: &str) -> Option<String> {
    let mut function = String::new();
    for line in log.lines() {
        if let Some((name, _)) = entry_function(line) {
            function = name.to_string();
        } else if let Some(rest) = line.split("Used ").nth(1) {
            let used: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if hands_registers_over(&function) && used < HANDOVER_ENTRY_REGISTERS {
                return Some(format!(
                    "ptxas gives {function} {used} registers a thread, fewer than the \
                     {HANDOVER_ENTRY_REGISTERS} its setmaxnreg hand-over needs (kernels/conv_wgmma.cuh, \
                     Registers): its consumers' setmaxnreg.inc would wait forever"
                ));
            }
        }
    }
    None
}

/// `$OUT_DIR/kernels_embedded.rs`: every fatbin, embedded with `include_bytes!`, and the architectures.
pub fn embedded_source(fatbins: &[Fatbin], out_dir: &Path, archs: &[String]) -> String {
    let mut s = String::from(
        "// Generated by build.rs: the kernels of kernels/*.cu compiled by nvcc, one fatbin per file.\n\
         // Empty when nvcc was not found at build time.\n\n\
         /// (file stem, fatbin) for every kernels/*.cu.\n\
         pub const FATBINS: &[(&str, &[u8])] = &[\n",
    );
    for fatbin in fatbins {
        let (stem, path) = (&fatbin.stem, out_dir.join(fatbin.file_name()));
        let path = path.to_str().expect("UTF-8 OUT_DIR");
        writeln!(s, "    ({stem:?}, include_bytes!({path:?})),").unwrap();
    }
    s.push_str("];\n\n/// The GPU architectures the fatbins carry cubins for (PTX of the first is included too).\n");
    let names: Vec<String> = archs
        .iter()
        .map(|a| format!("{:?}", format!("sm_{a}")))
        .collect();
    writeln!(s, "pub const ARCHS: &[&str] = &[{}];", names.join(", ")).unwrap();
    s.push_str(
        "\n/// (kernel, most threads a block, static shared memory in bytes) for every kernel compiled, \
         over every\n/// architecture: build/kernel_limits.rs.\n\
         pub const KERNEL_LIMITS: &[(&str, u32, u32)] = &[\n",
    );
    for fatbin in fatbins {
        let path = out_dir.join(fatbin.limits_file_name());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for row in super::kernel_limits::embedded_rows(&text) {
            writeln!(s, "    {row},").unwrap();
        }
    }
    s.push_str("];\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ptxas's lines for one kernel, as `nvcc -Xptxas -v` prints them.
    fn report(function: &str, arch: &str, spill_stores: u32, registers: u32) -> String {
        format!(
            "ptxas info    : Compiling entry function '{function}' for '{arch}'\n\
             ptxas info    : Function properties for {function}\n    \
             0 bytes stack frame, {spill_stores} bytes spill stores, 0 bytes spill loads\n\
             ptxas info    : Used {registers} registers, used 1 barriers\n"
        )
    }

    #[test]
    fn a_producer_warpgroup_kernel_short_of_registers_fails_the_build() {
        const HANDOVER: &str = "conv2d_wgmma_tma_pointwise_backward_data_128x256_bf16";
        assert_eq!(HANDOVER_ENTRY_REGISTERS, 168);
        let fine = report(HANDOVER, "sm_90a", 0, 168)
            + &report("conv2d_wgmma_tma_forward_128x256_bf16", "sm_90a", 0, 120)
            + &report(
                "conv2d_wgmma_tma_im2col_forward_128x128_bf16",
                "sm_90a",
                0,
                96,
            );
        assert_eq!(find_short_register_handover(&fine), None);
        let short = fine
            + &report(
                "conv2d_wgmma_tma_im2col_forward_128x256k64_bf16",
                "sm_90a",
                0,
                160,
            );
        let e = find_short_register_handover(&short).expect("a short hand-over");
        assert!(
            e.contains("conv2d_wgmma_tma_im2col_forward_128x256k64_bf16 160 registers"),
            "{e}"
        );
    }

    #[test]
    fn local_memory_on_sm90_fails_the_build_and_on_sm80_does_not() {
        let kernel = "conv2d_tc_forward_128x128_bf16";
        assert_eq!(find_local_memory(&report(kernel, "sm_80", 8, 255)), None);
        let e = find_local_memory(&report(kernel, "sm_90", 8, 255)).expect("a spill");
        assert!(
            e.contains("8 bytes spill stores") && e.contains(kernel),
            "{e}"
        );
    }
}
