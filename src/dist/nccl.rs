//! Finding NCCL. cudarc loads it under the names `libnccl.so`, `libnccl.so.13`, ... while NCCL ships
//! as `libnccl.so.2` (Debian's libnccl2, the nvidia-nccl-cu13 wheel, NVIDIA's tarballs), so it is
//! looked for here, by file, in the places it is usually installed and where an environment variable
//! says, with an error that lists where it looked.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file or folder to look in first.
pub const NCCL_ENV: &str = "RESNET_CUDA_NCCL";
/// The file names looked for in each folder, in order.
pub const FILE_NAMES: [&str; 2] = ["libnccl.so.2", "libnccl.so"];
/// Where the system's Pythons keep their packages (`python3.X/site-packages` or `dist-packages`).
pub const PYTHON_LIBS: [&str; 2] = ["/usr/local/lib", "/usr/lib"];
/// Folders where packages install NCCL.
pub const SYSTEM_DIRS: [&str; 8] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/opt/nccl/lib",
];

/// A place looked in, and why it was looked in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub dir: PathBuf,
    pub source: String,
}

/// Every folder to look in, in order: `$RESNET_CUDA_NCCL` (a folder, or its file's folder),
/// `$NCCL_HOME/lib`, `$CUDA_HOME/lib64`, each `LD_LIBRARY_PATH` entry, the nvidia-nccl wheel in the
/// active virtual environment, in `~/.local` and under each of `python_libs`, then `system_dirs`.
pub fn places(
    var: &dyn Fn(&str) -> Option<String>,
    python_libs: &[&str],
    system_dirs: &[&str],
) -> Vec<Place> {
    let mut out = Vec::new();
    let mut add = |dir: PathBuf, source: &str| {
        if !dir.as_os_str().is_empty() && !out.iter().any(|p: &Place| p.dir == dir) {
            out.push(Place {
                dir,
                source: source.to_string(),
            });
        }
    };
    if let Some(v) = var("NCCL_HOME") {
        add(Path::new(&v).join("lib"), "$NCCL_HOME/lib");
    }
    if let Some(v) = var("CUDA_HOME") {
        add(Path::new(&v).join("lib64"), "$CUDA_HOME/lib64");
    }
    if let Some(v) = var("LD_LIBRARY_PATH") {
        for dir in v.split(':') {
            add(dir.into(), "LD_LIBRARY_PATH");
        }
    }
    // The nvidia-nccl wheel: in the active virtual environment, the user's site and the system's
    // Pythons (where an image with PyTorch has it).
    let mut wheel_roots: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(v) = var("VIRTUAL_ENV") {
        wheel_roots.push((
            Path::new(&v).join("lib"),
            "the nvidia-nccl wheel in $VIRTUAL_ENV",
        ));
    }
    if let Some(h) = var("HOME") {
        wheel_roots.push((
            Path::new(&h).join(".local/lib"),
            "the nvidia-nccl wheel in ~/.local",
        ));
    }
    for lib in python_libs {
        wheel_roots.push((lib.into(), "the nvidia-nccl wheel of the system's Python"));
    }
    for (lib, source) in wheel_roots {
        for dir in wheel_dirs(&lib) {
            add(dir, source);
        }
    }
    for dir in system_dirs {
        add(dir.into(), "system");
    }
    out
}

/// The NCCL library file: `$RESNET_CUDA_NCCL` when set (it must name the file or a folder holding
/// it), else the first of [`FILE_NAMES`] in [`places`].
pub fn find(
    var: &dyn Fn(&str) -> Option<String>,
    python_libs: &[&str],
    system_dirs: &[&str],
) -> Result<PathBuf> {
    if let Some(v) = var(NCCL_ENV) {
        let p = PathBuf::from(&v);
        if p.is_file() {
            return Ok(p);
        }
        if let Some(f) = first_file_in(&p) {
            return Ok(f);
        }
        return Err(Error::Config(format!(
            "{NCCL_ENV}={v}: neither an NCCL library file nor a folder holding {}",
            FILE_NAMES.join(" or ")
        )));
    }
    let places = places(var, python_libs, system_dirs);
    if let Some(f) = places.iter().find_map(|p| first_file_in(&p.dir)) {
        return Ok(f);
    }
    let mut sources: Vec<&str> = Vec::new();
    for p in &places {
        if !sources.contains(&p.source.as_str()) && p.source != "system" {
            sources.push(&p.source);
        }
    }
    sources.push("the system folders (/usr/lib/x86_64-linux-gnu, /usr/local/cuda/lib64, ...)");
    Err(Error::Config(format!(
        "NCCL not found: looked for {} in {} ({} folders); install it (Debian: libnccl2; pip: \
         nvidia-nccl-cu13) or set {NCCL_ENV} to its file or folder",
        FILE_NAMES.join(" and "),
        sources.join(", "),
        places.len()
    )))
}

/// [`find`] in this process's environment and the usual system folders.
pub fn find_installed() -> Result<PathBuf> {
    find(&|n| std::env::var(n).ok(), &PYTHON_LIBS, &SYSTEM_DIRS)
}

/// The wheel's library folders that exist under a Python library folder `lib`: for each
/// `python*` in it, `site-packages` or `dist-packages`, then `nvidia/nccl/lib` (the CUDA 12 wheels)
/// or `nvidia/cu13/lib` (the CUDA 13 ones).
fn wheel_dirs(lib: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    let mut pythons: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    let mut dirs = Vec::new();
    for python in pythons {
        for packages in ["site-packages", "dist-packages"] {
            for wheel in ["nvidia/nccl/lib", "nvidia/cu13/lib"] {
                let dir = python.join(packages).join(wheel);
                if dir.is_dir() {
                    dirs.push(dir);
                }
            }
        }
    }
    dirs
}

fn first_file_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// NCCL's version (`ncclGetVersion`: 22703 for 2.27.3) from the library file at `path`.
pub fn version(path: &Path) -> Result<i32> {
    let bad = |why: String| Error::Config(format!("NCCL at {}: {why}", path.display()));
    // SAFETY: loading NCCL runs its initialisers, as using it would; `ncclGetVersion` has the
    // signature `ncclResult_t ncclGetVersion(int *version)` in every NCCL 2 release and needs no GPU.
    unsafe {
        let lib = libloading::Library::new(path).map_err(|e| {
            let reason = std::error::Error::source(&e).map_or(e.to_string(), |r| r.to_string());
            bad(format!("cannot be loaded ({reason})"))
        })?;
        let get: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> = lib
            .get(b"ncclGetVersion\0")
            .map_err(|_| bad("has no ncclGetVersion: not an NCCL library".into()))?;
        let mut v = 0;
        match get(&mut v) {
            0 => Ok(v),
            code => Err(bad(format!("ncclGetVersion failed with code {code}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |n| map.get(n).cloned()
    }

    #[test]
    fn finds_the_versioned_file_where_the_variable_or_a_path_says() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libnccl.so.2");
        std::fs::write(&lib, b"not really").unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        for var in [NCCL_ENV, "LD_LIBRARY_PATH"] {
            let found = find(&lookup(&[(var, format!("/nonexistent:{d}"))]), &[], &[]);
            if var == NCCL_ENV {
                // The variable names one place, and that one is wrong.
                assert!(found.unwrap_err().to_string().contains(NCCL_ENV));
            } else {
                assert_eq!(found.unwrap(), lib);
            }
        }
        assert_eq!(
            find(&lookup(&[(NCCL_ENV, d.clone())]), &[], &[]).unwrap(),
            lib
        );
        let file = lib.to_str().unwrap().to_string();
        assert_eq!(find(&lookup(&[(NCCL_ENV, file)]), &[], &[]).unwrap(), lib);
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("lib")).unwrap();
        std::fs::write(home.join("lib/libnccl.so"), b"").unwrap();
        let h = home.to_str().unwrap().to_string();
        assert_eq!(
            find(&lookup(&[("NCCL_HOME", h)]), &[], &[&d]).unwrap(),
            home.join("lib/libnccl.so"),
            "$NCCL_HOME comes before the system folders"
        );
        assert_eq!(find(&lookup(&[]), &[], &[&d]).unwrap(), lib);
    }

    #[test]
    fn finds_the_wheel_of_a_virtual_environment_or_of_the_system_python() {
        let dir = tempfile::tempdir().unwrap();
        // A CUDA 13 wheel in a virtual environment, a CUDA 12 one in a Debian-style system Python.
        let venv = dir.path().join("venv");
        let cu13 = venv.join("lib/python3.12/site-packages/nvidia/cu13/lib");
        let system = dir.path().join("usr/lib");
        let cu12 = system.join("python3/dist-packages/nvidia/nccl/lib");
        for d in [&cu13, &cu12] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("libnccl.so.2"), b"").unwrap();
        }
        let venv_var = [("VIRTUAL_ENV", venv.to_str().unwrap().to_string())];
        let system_lib = system.to_str().unwrap();
        assert_eq!(
            find(&lookup(&venv_var), &[system_lib], &[]).unwrap(),
            cu13.join("libnccl.so.2"),
            "the virtual environment comes first"
        );
        assert_eq!(
            find(&lookup(&[]), &[system_lib], &[]).unwrap(),
            cu12.join("libnccl.so.2")
        );
        let err = find(&lookup(&[]), &["/nonexistent"], &[]).unwrap_err();
        assert!(err.to_string().contains("NCCL not found"), "{err}");
    }

    #[test]
    fn absent_nccl_is_one_line_naming_what_was_looked_for() {
        let err = find(
            &lookup(&[("LD_LIBRARY_PATH", "/nonexistent".into())]),
            &[],
            &["/also/not"],
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains('\n'), "{err}");
        for part in ["libnccl.so.2", "LD_LIBRARY_PATH", NCCL_ENV, "2 folders"] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_library_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libnccl.so.2");
        std::fs::write(&lib, b"not an ELF file").unwrap();
        let err = version(&lib).unwrap_err().to_string();
        assert!(
            err.contains("cannot be loaded") && err.contains("libnccl.so.2"),
            "{err}"
        );
    }
}
