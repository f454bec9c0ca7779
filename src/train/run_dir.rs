//! The run folder: `metrics.jsonl`, `checkpoints/iter-NNNNNNNN/` and the `latest` link to the newest
//! checkpoint (replaced atomically, so it always names a complete checkpoint).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::data::batch::DataCursor;
use crate::error::{io_error, Error, Result};
use crate::optim::LrSchedule;

/// What a checkpoint records about the run beyond the tensors: enough to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub config: TrainConfig,
    /// Iterations completed.
    pub iteration: u64,
    pub cursor: DataCursor,
    pub schedule: LrSchedule,
}

/// Creates the run folder (and its parents); refuses a folder that already holds a run.
pub fn create(run_dir: &Path) -> Result<()> {
    if run_dir.join("latest").exists() {
        return Err(Error::Config(format!(
            "--out {}: already holds a run; pass --resume {0} to continue it, or choose another --out",
            run_dir.display()
        )));
    }
    fs::create_dir_all(run_dir.join("checkpoints")).map_err(io_error(run_dir))?;
    // Prove it is writable now rather than at the first checkpoint.
    let probe = run_dir.join(".write-test");
    fs::write(&probe, b"").map_err(io_error(run_dir))?;
    fs::remove_file(&probe).map_err(io_error(&probe))
}

pub fn checkpoint_dir(run_dir: &Path, iteration: u64) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("iter-{iteration:08}"))
}

/// Points `run_dir/latest` at `checkpoint` (a relative symlink, swapped in by rename).
pub fn point_latest(run_dir: &Path, checkpoint: &Path) -> Result<()> {
    let target = checkpoint.strip_prefix(run_dir).unwrap_or(checkpoint);
    let tmp = run_dir.join(".latest.tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_error(&tmp))?;
    fs::rename(&tmp, run_dir.join("latest")).map_err(io_error(run_dir.join("latest")))
}

/// The checkpoint `run_dir/latest` names.
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    let link = run_dir.join("latest");
    let target = fs::read_link(&link).map_err(|e| Error::Checkpoint {
        path: run_dir.to_path_buf(),
        message: format!("no `latest` checkpoint in this run folder ({e})"),
    })?;
    Ok(run_dir.join(target))
}

/// Reads a checkpoint's `run_state.json`.
pub fn read_state(checkpoint: &Path) -> Result<RunState> {
    let (path, text) = crate::checkpoint::read_run_state_text(checkpoint)?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path,
        message: format!("invalid run state: {e}"),
    })
}

/// Removes all but the newest `keep` checkpoints (never the one `latest` names).
pub fn prune(run_dir: &Path, keep: usize) -> Result<()> {
    let dir = run_dir.join("checkpoints");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(io_error(&dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("iter-") && !n.contains(".tmp"))
        .collect();
    names.sort();
    let latest = latest_checkpoint(run_dir).ok();
    for name in names.iter().rev().skip(keep) {
        let path = dir.join(name);
        if Some(&path) != latest.as_ref() {
            fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
    }
    Ok(())
}
