//! A cache of the build script's outputs (the nvcc fatbins, the emulator's static library), keyed by
//! everything they are made from: the contents of every file under `kernels/` and of the build
//! script itself, the compiler's path, size and modification time, and the exact arguments. `cargo
//! clippy` and `cargo test` run the build script separately (their units differ), and so do the
//! release and bench builds that follow a test; with the cache, whichever runs second copies the
//! outputs instead of compiling every kernel again (about 160 s of CI's two cores each time).
//!
//! The cache lives beside cargo's own build outputs (`<target>/<profile>/build/resnet-cuda-cache`),
//! so `cargo clean` removes it; `RESNET_BUILD_CACHE=0` turns it off. An entry is written whole under
//! a temporary name and renamed into place, so a build that dies half-way, or two that race, leave
//! no partial entry; only outputs that passed every check of the build (no local memory, no
//! serialised wgmma) are stored. Each kind keeps its few most recently used entries.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Entries kept per kind (the newest by use): enough for a debug, an ASan and a bench build.
const KEEP: usize = 4;

pub struct BuildCache {
    root: PathBuf,
}

/// What an output is made from; [`Key::finish`] names its cache entry.
pub struct Key(Vec<DefaultHasher>);

impl Key {
    /// Two independently seeded 64-bit hashes: a 128-bit name, so distinct inputs never share one.
    pub fn new(kind: &str) -> Key {
        let mut hashers = vec![DefaultHasher::new(), DefaultHasher::new()];
        for (seed, h) in hashers.iter_mut().enumerate() {
            (seed, kind).hash(h);
        }
        Key(hashers)
    }

    pub fn add(&mut self, part: impl Hash) -> &mut Key {
        for h in &mut self.0 {
            part.hash(h);
        }
        self
    }

    /// Every file under `dir` (recursively, in sorted order): its path relative to `dir` and its bytes.
    pub fn add_tree(&mut self, dir: &Path) -> &mut Key {
        for file in files_under(dir) {
            let bytes =
                fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let relative = file.strip_prefix(dir).unwrap_or(&file).to_path_buf();
            self.add((relative, bytes));
        }
        self
    }

    /// A program's identity: its path, size and modification time (a reinstalled compiler at the
    /// same path is a different key).
    pub fn add_program(&mut self, program: &Path) -> &mut Key {
        let meta = fs::metadata(program).ok();
        let modified = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
        self.add((program, meta.map(|m| m.len()), modified))
    }

    fn finish(&self) -> String {
        self.0
            .iter()
            .map(|h| format!("{:016x}", h.finish()))
            .collect()
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries =
            fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

impl BuildCache {
    /// The cache for this build's profile, from `OUT_DIR` (`<target>/<profile>/build/<unit>/out`);
    /// `None` when `RESNET_BUILD_CACHE=0` or `OUT_DIR` is not laid out as cargo lays it out.
    pub fn for_out_dir(out_dir: &Path) -> Option<BuildCache> {
        if env::var("RESNET_BUILD_CACHE").is_ok_and(|v| v == "0") {
            return None;
        }
        let build_dir = out_dir.parent()?.parent()?;
        (build_dir.file_name()? == "build").then(|| BuildCache {
            root: build_dir.join("resnet-cuda-cache"),
        })
    }

    fn entry(&self, kind: &str, key: &Key) -> PathBuf {
        self.root.join(format!("{kind}-{}", key.finish()))
    }

    /// Copies the entry's `files` into `dest` and says whether it could (all of them were there).
    pub fn restore(&self, kind: &str, key: &Key, files: &[String], dest: &Path) -> bool {
        let entry = self.entry(kind, key);
        let complete = entry.join(".complete");
        if !complete.is_file() {
            return false;
        }
        let copied = files
            .iter()
            .all(|f| fs::copy(entry.join(f), dest.join(f)).is_ok());
        if copied {
            // Most recently used: what pruning keeps.
            let _ = fs::write(&complete, b"");
        }
        copied
    }

    /// Stores `files` (found in `src`) as the entry for `key`, then prunes the kind's older entries.
    /// A failure to write is not an error: the build's outputs are already in place.
    pub fn store(&self, kind: &str, key: &Key, files: &[String], src: &Path) {
        let entry = self.entry(kind, key);
        let staging = self
            .root
            .join(format!(".staging-{kind}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let written = fs::create_dir_all(&staging).is_ok()
            && files
                .iter()
                .all(|f| fs::copy(src.join(f), staging.join(f)).is_ok())
            && fs::write(staging.join(".complete"), b"").is_ok();
        if !written || fs::rename(&staging, &entry).is_err() {
            // Another build stored the same entry first, or the disk refused: leave it be.
            let _ = fs::remove_dir_all(&staging);
        }
        self.prune(kind);
    }

    fn prune(&self, kind: &str) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let prefix = format!("{kind}-");
        let mut found: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|p| {
                let used = fs::metadata(p.join(".complete"))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (used, p)
            })
            .collect();
        found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        for (_, old) in found.into_iter().skip(KEEP) {
            let _ = fs::remove_dir_all(old);
        }
    }
}
