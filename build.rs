//! Compiles the CUDA kernels in `kernels/*.cu` (see DESIGN.md, "Kernels and build.rs").
//!
//! 1. Always: every `.cu` as host C++17, with the emulator's header force-included, plus the
//!    emulator runtime (`kernels/emu/runtime/*.cpp`), into one static library. It is linked with
//!    `+whole-archive` because kernels register themselves from static initializers that nothing
//!    references.
//! 2. When nvcc is found (see [`find_nvcc`]: `NVCC`, `$CUDA_HOME/bin`, `PATH`, `/usr/local/cuda/bin`,
//!    the `tools/install-nvcc.sh` cache, or fetched by that script on a machine with an NVIDIA
//!    driver): every `.cu` to a fatbin
//!    with cubins for `CUDA_ARCHS` (default `80;90`) and PTX of the lowest, embedded through
//!    `$OUT_DIR/kernels_embedded.rs`. Files named `*_sm90a.cu` (Hopper's wgmma) get an sm_90a cubin
//!    alone, when `CUDA_ARCHS` has 90. A register spill on sm_90 or newer, or ptxas serialising
//!    wgmma, fails the build. Without nvcc
//!    that file lists no fatbins and one `cargo:warning` says how to get nvcc.
//!
//! AddressSanitizer: `RESNET_EMU_ASAN=1` builds the emulator and kernels with `-fsanitize=address`
//! (the fibers carry ASan's switch annotations) and `-fsanitize=alignment` (a misaligned vector
//! access, a fault on a GPU, stops the test), and links gcc's shared `libasan` ahead of the other
//! shared libraries. The Rust code is not instrumented, but its heap goes through malloc, so a kernel
//! reading past a Vec is reported with the kernel's source line. A separate target folder keeps the
//! instrumented build from replacing the normal one:
//!
//! ```text
//! RESNET_EMU_ASAN=1 CARGO_TARGET_DIR=target/asan cargo test --test emulator
//! ```
//!
//! Should ASan ever complain that its runtime "does not come first in initial library list", preload
//! it for the test binaries only (not for cargo and rustc) with
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$(gcc -print-file-name=libasan.so)"`.
//! Static `__shared__` arrays are thread-local variables, which ASan gives no redzones, so overruns
//! of those go unseen; dynamic shared memory is checked against the size the launch asked for.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = root.join("kernels");

    // A directory here makes cargo rescan everything under it.
    println!("cargo:rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_ARCHS",
        "PATH",
        "RESNET_EMU_ASAN",
        "RESNET_NVCC_FETCH",
        "RESNET_NVCC_CACHE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let cu_files = files_with_extension(&kernels, "cu");
    build_emulator(&kernels, &cu_files);
    let constants = launch_constants_source(&kernels.join("launch_constants.h"));
    fs::write(out_dir.join("launch_constants.rs"), constants).expect("write launch_constants.rs");

    let embedded = match find_nvcc(&root) {
        Some(nvcc) => {
            let archs = cuda_archs();
            let fatbins = compile_fatbins(&nvcc, &kernels, &cu_files, &archs, &out_dir);
            embedded_source(&fatbins, &archs)
        }
        None if env::var("NVCC").is_ok_and(|v| v == "none") => {
            println!(
                "cargo:warning=NVCC=none: the CUDA kernels are not embedded (the CPU and emulator \
                 backends work)"
            );
            embedded_source(&[], &[])
        }
        None => {
            println!(
                "cargo:warning=nvcc not found (looked at $NVCC, $CUDA_HOME/bin, PATH, /usr/local/cuda/bin \
                 and the tools/install-nvcc.sh cache): the CUDA kernels are not embedded, so the GPU cannot \
                 be used; the CPU and emulator backends work. To get them: run tools/install-nvcc.sh, then \
                 rebuild."
            );
            embedded_source(&[], &[])
        }
    };
    fs::write(out_dir.join("kernels_embedded.rs"), embedded).expect("write kernels_embedded.rs");
}

/// Files in `dir` (not recursive) ending in `.ext`, sorted so that builds are reproducible.
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn build_emulator(kernels: &Path, cu_files: &[PathBuf]) {
    let emu = kernels.join("emu");
    let runtime = files_with_extension(&emu.join("runtime"), "cpp");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        // The emulator must be fast in debug builds too: kernels are its hot loops.
        .opt_level(2)
        .include(kernels)
        .include(&emu)
        // gcc would take `.cu` for a linker input; this applies to every source after it.
        .flag("-x")
        .flag("c++")
        .flag("-include")
        .flag(emu.join("cuda_emu.h").to_str().expect("UTF-8 path"))
        // CUDA code reinterprets freely (float4 loads of float arrays); nvcc tolerates it.
        .flag("-fno-strict-aliasing")
        // `#pragma unroll` means something to nvcc only.
        .flag("-Wno-unknown-pragmas")
        .flag("-pthread")
        // nvcc contracts a * b + c into a fused multiply-add in device code by default (--fmad=true);
        // contracting on the host too gives the emulator the hardware's roundings, so a kernel that
        // must match the CPU bit for bit is proven to in CI. Without FMA on the host, contraction is
        // impossible and the flag changes nothing.
        .flag("-ffp-contract=fast")
        .files(cu_files)
        .files(&runtime)
        .link_lib_modifier("+whole-archive");
    if host_has_fma() {
        build.flag("-mfma");
    }
    if env::var("RESNET_EMU_ASAN").is_ok_and(|v| v == "1") {
        // Alignment too (UndefinedBehaviorSanitizer's check, fatal at the first report): on a GPU a
        // 16-byte vector load from an address that is not a multiple of 16 is a fault ("misaligned
        // address"), while x86 would read it happily; this makes the emulator as strict.
        build
            .flag("-fsanitize=address,alignment")
            .flag("-fno-sanitize-recover=alignment")
            .flag("-fno-omit-frame-pointer");
        println!("cargo:rustc-link-lib=dylib=asan");
        println!("cargo:rustc-link-lib=dylib=ubsan");
    }
    build.compile("resnet_cuda_emu");
}

/// `pub const NAME: u32 = value;` for every `constexpr int kName = value;` line of
/// kernels/launch_constants.h (kConvThreads -> CONV_THREADS). Any other non-blank line that is not a
/// comment or preprocessor directive is an error, so a constant cannot be missed.
fn launch_constants_source(header: &Path) -> String {
    let text = fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", header.display()));
    let mut out = String::from("// Generated by build.rs from kernels/launch_constants.h.\n");
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .strip_prefix("constexpr int k")
            .and_then(|rest| rest.strip_suffix(';'))
            .and_then(|rest| rest.split_once('='))
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(_, value)| value.parse::<u32>().is_ok());
        let Some((name, value)) = parsed else {
            panic!(
                "{}: expected `constexpr int kName = <integer>;`, found `{line}`",
                header.display()
            );
        };
        let mut rust_name = String::new();
        for (i, ch) in name.chars().enumerate() {
            if ch.is_ascii_uppercase() && i > 0 {
                rust_name.push('_');
            }
            rust_name.push(ch.to_ascii_uppercase());
        }
        let _ = writeln!(out, "pub const {rust_name}: u32 = {value};");
    }
    out
}

/// Whether the emulator can be built with fused multiply-adds: the target is this x86-64 host (the
/// emulator runs where it is built) and its processor has FMA.
fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        env::var("TARGET").ok() == env::var("HOST").ok()
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where nvcc is looked for, in order: `NVCC` (a path, or a name to look up on PATH; `none` builds
/// without kernels), `$CUDA_HOME/bin/nvcc`, `nvcc` on PATH, `/usr/local/cuda/bin/nvcc` (where the
/// toolkit installs, often not on PATH), and the cache `tools/install-nvcc.sh` fills. When none is
/// there but the machine has an NVIDIA driver, the pinned compiler is fetched with
/// `tools/install-nvcc.sh` (unless `RESNET_NVCC_FETCH=0`), so that `cargo build` on a GPU machine
/// gives a binary that uses its GPU. An explicit `NVCC` that does not exist is an error rather than a
/// silent fallback.
fn find_nvcc(root: &Path) -> Option<PathBuf> {
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
fn cuda_archs() -> Vec<String> {
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

/// Compiles each `.cu` to `$OUT_DIR/<stem>.fatbin`; returns (stem, path) pairs.
fn compile_fatbins(
    nvcc: &Path,
    kernels: &Path,
    cu_files: &[PathBuf],
    archs: &[String],
    out_dir: &Path,
) -> Vec<(String, PathBuf)> {
    let mut gencode: Vec<String> = archs
        .iter()
        .map(|a| format!("-gencode=arch=compute_{a},code=sm_{a}"))
        .collect();
    let lowest = &archs[0];
    gencode.push(format!(
        "-gencode=arch=compute_{lowest},code=compute_{lowest}"
    ));
    // Hopper-only files (wgmma): a cubin for sm_90a alone, which runs on compute capability 9.0
    // exactly and nowhere else (no PTX: an sm_90a PTX would not JIT for a newer device either). nvcc
    // needs the explicit -gencode form: `-arch=sm_90a` has been seen to emit plain sm_90 code.
    let hopper_gencode = vec!["-gencode=arch=compute_90a,code=sm_90a".to_string()];
    let hopper_wanted = archs.iter().any(|a| arch_number(a) == 90);

    let mut fatbins = Vec::new();
    for cu in cu_files {
        let stem = cu
            .file_stem()
            .expect("file stem")
            .to_string_lossy()
            .into_owned();
        let hopper_only = is_hopper_only(&stem);
        if hopper_only && !hopper_wanted {
            continue;
        }
        let out = out_dir.join(format!("{stem}.fatbin"));
        let output = Command::new(nvcc)
            .args(["-fatbin", "-std=c++17", "-O3", "-Xptxas", "-v"])
            .args(if hopper_only {
                &hopper_gencode
            } else {
                &gencode
            })
            .arg("-I")
            .arg(kernels)
            .arg("-o")
            .arg(&out)
            .arg(cu)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            panic!("nvcc failed on {}:\n{log}", cu.display());
        }
        if let Some(spill) = find_spills(&log) {
            panic!(
                "{}: {spill}; a kernel must not spill registers on sm_90 or newer\n{log}",
                cu.display()
            );
        }
        // ptxas falls back to serialising wgmma (each waits for the one before: a fraction of the
        // tensor cores' speed) when the pipeline is not one it can keep asynchronous, and says so only
        // in an advisory line. That is a build error here, like a spill.
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("wgmma.mma_async instructions are serialized"))
        {
            panic!("{}: {}\n{log}", cu.display(), line.trim());
        }
        fatbins.push((stem, out));
    }
    fatbins
}

/// Whether `kernels/<stem>.cu` uses sm_90a-only instructions (wgmma): its name ends in `_sm90a`.
/// Keep in step with `embedded::is_hopper_only`.
fn is_hopper_only(stem: &str) -> bool {
    stem.ends_with("_sm90a")
}

/// Reads `ptxas -v` output: each "Compiling entry function 'F' for 'sm_NN'" is followed by lines like
/// "N bytes stack frame, S bytes spill stores, L bytes spill loads". Returns the first spill on an
/// architecture of 90 or newer.
fn find_spills(log: &str) -> Option<String> {
    let mut function = String::new();
    let mut arch = String::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let mut parts = rest.split('\'');
            function = parts.next().unwrap_or("").to_string();
            arch = parts.nth(1).unwrap_or("").to_string();
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
            let (stores, loads) = (
                number_before(" bytes spill stores"),
                number_before(" bytes spill loads"),
            );
            let is_new_arch = arch_number(arch.trim_start_matches("sm_")) >= 90;
            if is_new_arch && (stores > 0 || loads > 0) {
                return Some(format!(
                    "ptxas reports {stores} bytes spill stores and {loads} bytes spill loads in {function} for {arch}"
                ));
            }
        }
    }
    None
}

fn embedded_source(fatbins: &[(String, PathBuf)], archs: &[String]) -> String {
    let mut s = String::from(
        "// Generated by build.rs: the kernels of kernels/*.cu compiled by nvcc, one fatbin per file.\n\
         // Empty when nvcc was not found at build time.\n\n\
         /// (file stem, fatbin) for every kernels/*.cu.\n\
         pub const FATBINS: &[(&str, &[u8])] = &[\n",
    );
    for (stem, path) in fatbins {
        let path = path.to_str().expect("UTF-8 OUT_DIR");
        writeln!(s, "    ({stem:?}, include_bytes!({path:?})),").unwrap();
    }
    s.push_str("];\n\n/// The GPU architectures the fatbins carry cubins for (PTX of the first is included too).\n");
    let names: Vec<String> = archs
        .iter()
        .map(|a| format!("{:?}", format!("sm_{a}")))
        .collect();
    writeln!(s, "pub const ARCHS: &[&str] = &[{}];", names.join(", ")).unwrap();
    s
}
