//! Compiles the CUDA kernels in `kernels/*.cu` (see DESIGN.md, "Kernels and build.rs").
//!
//! 1. Always: every `.cu` as host C++17, with the emulator's header force-included, plus the
//!    emulator runtime (`kernels/emu/runtime/*.cpp`), into one static library (build/emulator.rs).
//! 2. When nvcc is found (see [`nvcc::find_nvcc`]: `NVCC`, `$CUDA_HOME/bin`, `PATH`, `/usr/local/cuda/bin`,
//!    the `tools/install-nvcc.sh` cache, or fetched by that script on a machine with an NVIDIA
//!    driver): every `.cu` to a fatbin
//!    with cubins for `CUDA_ARCHS` (default `80;90`) and PTX of the lowest, embedded through
//!    `$OUT_DIR/kernels_embedded.rs`. Files named `*_sm90a.cu` (Hopper's wgmma) get an sm_90a cubin
//!    alone, when `CUDA_ARCHS` has 90. Local memory on sm_90 or newer (a register spill or a stack
//!    frame), or ptxas serialising wgmma, fails the build. Each kernel's launch limits (its most
//!    threads a block, its static shared memory) are read from nvcc's PTX and ptxas's report and
//!    embedded too, for the emulator to enforce (build/kernel_limits.rs). Without nvcc
//!    that file lists no fatbins and one `cargo:warning` says how to get nvcc.
//!
//! The compiles of both run at once on cargo's job count (build/jobs.rs), the longest first, and
//! what they make is cached by content (build/cache.rs), so that `cargo clippy` then `cargo test`
//! (two runs of this script in one profile folder) compile the kernels once.
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

#[path = "build/cache.rs"]
mod cache;
#[path = "build/emulator.rs"]
mod emulator;
#[path = "build/jobs.rs"]
mod jobs;
#[path = "build/kernel_limits.rs"]
mod kernel_limits;
#[path = "build/launch_constants.rs"]
mod launch_constants;
#[path = "build/nvcc.rs"]
mod nvcc;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use cache::{BuildCache, Key};
use emulator::{Emulator, LIBRARY_FILE};
use jobs::Job;

/// What a compile job gives.
enum Made {
    Fatbin,
    Objects(Vec<PathBuf>),
}

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
        "RESNET_BUILD_CACHE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let cu_files = files_with_extension(&kernels, "cu");
    let runtime = files_with_extension(&kernels.join("emu").join("runtime"), "cpp");
    let constants = launch_constants::launch_constants_source(&kernels.join("launch_constants.h"));
    fs::write(out_dir.join("launch_constants.rs"), constants).expect("write launch_constants.rs");

    let cache = BuildCache::for_out_dir(&out_dir);
    // Every output depends on all of kernels/ (headers included) and on this script.
    let sources_key = |kind: &str| {
        let mut key = Key::new(kind);
        key.add_tree(&kernels)
            .add_tree(&root.join("build"))
            .add(fs::read(root.join("build.rs")).ok());
        key
    };
    let restored = |kind: &str, key: &Key, files: &[String]| {
        cache
            .as_ref()
            .is_some_and(|c| c.restore(kind, key, files, &out_dir))
    };

    let emulator = Emulator::configure(&kernels, &cu_files, &runtime);
    let mut emulator_key = sources_key("emulator");
    emulator.add_to_key(&mut emulator_key);
    let library = [LIBRARY_FILE.to_string()];
    let emulator_cached = restored("emulator", &emulator_key, &library);

    let nvcc = find_nvcc_or_say_why(&root);
    let (archs, fatbins) = match &nvcc {
        Some(_) => {
            let archs = nvcc::cuda_archs();
            let fatbins = nvcc::fatbins(&cu_files, &archs);
            (archs, fatbins)
        }
        None => (Vec::new(), Vec::new()),
    };
    let arguments: Vec<Vec<String>> = fatbins
        .iter()
        .map(|f| nvcc::arguments(f, &kernels, &archs))
        .collect();
    let fatbin_files: Vec<String> = fatbins
        .iter()
        .flat_map(|f| [f.file_name(), f.limits_file_name()])
        .collect();
    let mut fatbins_key = sources_key("fatbins");
    if let Some(nvcc) = &nvcc {
        fatbins_key.add_program(nvcc).add(&arguments);
    }
    let fatbins_cached = nvcc.is_none() || restored("fatbins", &fatbins_key, &fatbin_files);

    // The compiles still to do, the longest first: nvcc's tensor-core convolutions (tens of
    // seconds each), then the emulator's, then the rest.
    let mut work: Vec<(bool, Job<'_, Made>)> = Vec::new();
    if let (Some(nvcc), false) = (&nvcc, fatbins_cached) {
        let out_dir = out_dir.as_path();
        for (fatbin, args) in fatbins.iter().zip(&arguments) {
            let job = Box::new(move || {
                let log = nvcc::compile(nvcc, fatbin, args, out_dir)?;
                let keep = fatbin.keep_dir(out_dir);
                let limits = out_dir.join(fatbin.limits_file_name());
                kernel_limits::write_limits(&log, &keep, &limits)
                    .map_err(|e| format!("{}: {e}", fatbin.source.display()))?;
                let _ = fs::remove_dir_all(&keep);
                Ok(Made::Fatbin)
            });
            work.push((is_long(&fatbin.source), job));
        }
    }
    if !emulator_cached {
        for (source, job) in emulator.jobs() {
            work.push((is_long(source), Box::new(move || job().map(Made::Objects))));
        }
    }
    work.sort_by_key(|(long, _)| !long);
    let results = jobs::run(
        work.into_iter().map(|(_, job)| job).collect(),
        jobs::workers(),
    );

    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(Made::Objects(o)) => objects.extend(o),
            Ok(Made::Fatbin) => {}
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        panic!("{}", errors.join("\n\n"));
    }

    if !emulator_cached {
        emulator.archive(&objects);
        if let Some(c) = &cache {
            c.store("emulator", &emulator_key, &library, &out_dir);
        }
    }
    emulator.link(&out_dir.join(LIBRARY_FILE));
    if !fatbins_cached {
        if let Some(c) = &cache {
            c.store("fatbins", &fatbins_key, &fatbin_files, &out_dir);
        }
    }
    // `cfg(resnet_kernels_compiled)`: the kernels and their limits are embedded, so the tests that
    // check the limits (tests/kernels.rs) can run; without nvcc they are not selected.
    println!("cargo:rustc-check-cfg=cfg(resnet_kernels_compiled)");
    if nvcc.is_some() {
        println!("cargo:rustc-cfg=resnet_kernels_compiled");
    }
    let embedded = nvcc::embedded_source(&fatbins, &out_dir, &archs);
    fs::write(out_dir.join("kernels_embedded.rs"), embedded).expect("write kernels_embedded.rs");
}

/// nvcc, or `None` with a `cargo:warning` saying why the kernels are not embedded.
fn find_nvcc_or_say_why(root: &Path) -> Option<PathBuf> {
    let nvcc = nvcc::find_nvcc(root);
    if nvcc.is_none() {
        if env::var("NVCC").is_ok_and(|v| v == "none") {
            println!(
                "cargo:warning=NVCC=none: the CUDA kernels are not embedded (the CPU and emulator \
                 backends work)"
            );
        } else {
            println!(
                "cargo:warning=nvcc not found (looked at $NVCC, $CUDA_HOME/bin, PATH, /usr/local/cuda/bin \
                 and the tools/install-nvcc.sh cache): the CUDA kernels are not embedded, so the GPU cannot \
                 be used; the CPU and emulator backends work. To get them: run tools/install-nvcc.sh, then \
                 rebuild."
            );
        }
    }
    nvcc
}

/// The tensor-core convolutions (`conv_tc*`, `conv_wgmma*`): the files that take longest to compile,
/// by far, for nvcc and for the host compiler alike.
fn is_long(source: &Path) -> bool {
    let name = source.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("conv_tc") || name.starts_with("conv_wgmma")
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
