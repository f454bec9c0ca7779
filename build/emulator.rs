//! The emulator: every `kernels/*.cu` as host C++17 with the emulator's header force-included, plus
//! the emulator runtime (`kernels/emu/runtime/*.cpp`), into one static library, compiled a file per
//! job (build/jobs.rs) and archived. It is linked with `+whole-archive` because kernels register
//! themselves from static initializers that nothing references.

use std::env;
use std::path::{Path, PathBuf};

use crate::cache::Key;
use crate::jobs::Job;

pub struct Emulator {
    build: cc::Build,
    sources: Vec<PathBuf>,
    asan: bool,
}

/// The archive's name for `cc` and its file name in `OUT_DIR`.
const LIBRARY: &str = "resnet_cuda_emu";
pub const LIBRARY_FILE: &str = "libresnet_cuda_emu.a";

impl Emulator {
    pub fn configure(kernels: &Path, cu_files: &[PathBuf], runtime: &[PathBuf]) -> Emulator {
        let emu = kernels.join("emu");
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
            // nvcc contracts a * b + c into a fused multiply-add in device code by default
            // (--fmad=true); contracting on the host too gives the emulator the hardware's roundings,
            // so a kernel that must match the CPU bit for bit is proven to in CI. Without FMA on the
            // host, contraction is impossible and the flag changes nothing.
            .flag("-ffp-contract=fast")
            .link_lib_modifier("+whole-archive");
        if host_has_fma() {
            build.flag("-mfma");
        }
        let asan = env::var("RESNET_EMU_ASAN").is_ok_and(|v| v == "1");
        if asan {
            // Alignment too (UndefinedBehaviorSanitizer's check, fatal at the first report): on a
            // GPU a 16-byte vector load from an address that is not a multiple of 16 is a fault
            // ("misaligned address"), while x86 would read it happily; this makes the emulator as
            // strict.
            build
                .flag("-fsanitize=address,alignment")
                .flag("-fno-sanitize-recover=alignment")
                .flag("-fno-omit-frame-pointer");
        }
        Emulator {
            build,
            sources: cu_files.iter().chain(runtime).cloned().collect(),
            asan,
        }
    }

    /// The compiler and every argument it gets (environment's CXXFLAGS included) and the target.
    pub fn add_to_key(&self, key: &mut Key) {
        let compiler = self.build.get_compiler();
        key.add_program(compiler.path())
            .add(compiler.args())
            .add(env::var("TARGET").ok());
    }

    /// One job per source file, with the file; each gives its object files.
    pub fn jobs(&self) -> Vec<(&Path, Job<'_, Vec<PathBuf>>)> {
        self.sources
            .iter()
            .map(|source| {
                let mut build = self.build.clone();
                build.file(source);
                let job: Job<'_, Vec<PathBuf>> = Box::new(move || {
                    build
                        .try_compile_intermediates()
                        .map_err(|e| format!("the emulator's {}: {e}", source.display()))
                });
                (source.as_path(), job)
            })
            .collect()
    }

    /// The static library of `objects`, in `OUT_DIR`.
    pub fn archive(&self, objects: &[PathBuf]) -> PathBuf {
        self.build.create_archive(LIBRARY, objects)
    }

    /// Links `library` into the crate (under ASan, after gcc's shared sanitizer runtimes).
    pub fn link(&self, library: &Path) {
        // The sanitizer runtimes ahead of every other library (ASan must come first).
        if self.asan {
            println!("cargo:rustc-link-lib=dylib=asan");
            println!("cargo:rustc-link-lib=dylib=ubsan");
        }
        cc::emit_link_directives(&self.build, library);
    }
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
