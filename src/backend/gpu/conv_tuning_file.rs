//! The convolution tuning's choices kept in a file (a training run's `conv-tuning.json` with
//! `--conv-tuning on`, see `train::conv_tuning`; or `RESNET_CONV_TUNING_FILE=PATH` with
//! `RESNET_CONV_TUNING=1`; see conv_tuning.rs): a pass of a shape the file has a choice for runs that
//! launch without timing anything, and each new choice is added to the file. So a second process on
//! the same machine (a resumed run, the next benchmark, every rank of a multi-process run that
//! shares the file) runs the launches the first one chose, and computes the same bits.
//!
//! The file is JSON, `{"version": 1, "choices": {"forward_stats x [..] w [..] stride 1 pad 1":
//! "conv2d_...", ...}}`: one entry per pass and shape, the launch named as the tuning records name
//! it (the kernel, and a backward-filter's split: `z4`). A choice that is not among the current
//! candidates (another kernel family, an older build) is tuned again and replaced. It belongs to one
//! GPU model: timings from another say nothing here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{io_error, Error, Result};

const VERSION: u32 = 1;

#[derive(Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    choices: BTreeMap<String, String>,
}

/// The file and its choices, read at the first lookup.
pub(super) struct TuningFile {
    path: PathBuf,
    choices: Mutex<Option<BTreeMap<String, String>>>,
}

impl TuningFile {
    pub(super) fn new(path: PathBuf) -> Self {
        TuningFile {
            path,
            choices: Mutex::new(None),
        }
    }

    /// The launch the file names for `key` (a pass and shape), if any.
    pub(super) fn get(&self, key: &str) -> Result<Option<String>> {
        let mut choices = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        if choices.is_none() {
            *choices = Some(read(&self.path)?);
        }
        Ok(choices.as_ref().and_then(|c| c.get(key).cloned()))
    }

    /// Keeps `launch` for `key` and writes the file again, whole: to a temporary name of this
    /// writer's own, then renamed over it, so a reader never sees half of it. Writers sharing the
    /// file (the replicas of a run) may each replace the other's latest entries; what is lost is only
    /// tuned again by a later process.
    pub(super) fn put(&self, key: String, launch: String) -> Result<()> {
        let mut guard = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        let choices = match guard.take() {
            Some(c) => c,
            None => read(&self.path)?,
        };
        let choices = guard.insert(choices);
        choices.insert(key, launch);
        let contents = Contents {
            version: VERSION,
            choices: choices.clone(),
        };
        let text = serde_json::to_string_pretty(&contents).expect("choices serialise");
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text).map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_error(&self.path))
    }
}

/// The choices in `path`; none when it does not exist yet.
fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let bad = |message: String| {
        Error::Config(format!(
            "convolution tuning file {}: {message} (delete it to tune again)",
            path.display()
        ))
    };
    let contents: Contents =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a tuning file: {e}")))?;
    if contents.version != VERSION {
        return Err(bad(format!(
            "version {}, expected {VERSION}",
            contents.version
        )));
    }
    Ok(contents.choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_survive_a_new_reader_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tuning.json");
        let file = TuningFile::new(path.clone());
        assert_eq!(file.get("forward x").unwrap(), None);
        file.put("forward x".into(), "conv2d_a".into()).unwrap();
        file.put("backward_filter x".into(), "conv2d_b z4".into())
            .unwrap();
        let again = TuningFile::new(path.clone());
        assert_eq!(again.get("forward x").unwrap().as_deref(), Some("conv2d_a"));
        assert_eq!(
            again.get("backward_filter x").unwrap().as_deref(),
            Some("conv2d_b z4")
        );
        // A new choice keeps the others.
        again.put("forward y".into(), "conv2d_c".into()).unwrap();
        let third = TuningFile::new(path.clone());
        assert_eq!(third.get("forward x").unwrap().as_deref(), Some("conv2d_a"));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left: {names:?}");

        std::fs::write(&path, "{\"version\": 1, \"choices\": [").unwrap();
        let err = TuningFile::new(path.clone())
            .get("x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("convolution tuning file") && err.contains("tuning.json"),
            "{err}"
        );
        std::fs::write(&path, "{\"version\": 7, \"choices\": {}}").unwrap();
        let err = TuningFile::new(path).get("x").unwrap_err().to_string();
        assert!(err.contains("version 7"), "{err}");
    }
}
