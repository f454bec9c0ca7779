//! Writing a checkpoint folder so that a crash at any moment leaves either the old checkpoint or the
//! new one, never a mixture or a torn file.
//!
//! 1. The files go into the sibling `<name>.tmp`; each is fsynced, then the folder itself.
//! 2. With no checkpoint at `<name>` yet, `<name>.tmp` is renamed to `<name>`.
//!    Otherwise the old one is renamed to `<name>.old`, the new one to `<name>`, and `<name>.old` is
//!    removed. POSIX has no portable atomic swap of two folders, so between the two renames `<name>`
//!    is briefly absent; both complete checkpoints exist then, and loading a missing `<name>` says
//!    that `<name>.old` is there.
//! 3. The parent folder is fsynced so the renames themselves are durable.
//!
//! A stale `<name>.tmp` or `<name>.old` left by a crash is removed by the next save. Folders are only
//! ever removed when they hold nothing but checkpoint files, so a mistyped path cannot delete a folder
//! of other data.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::FILE_NAMES;
use crate::error::{io_error, Error, Result};

/// The sibling `<name><suffix>` of `dir`.
pub(crate) fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir.file_name().ok_or_else(|| Error::Checkpoint {
        path: dir.to_path_buf(),
        message: "a checkpoint path must end in a folder name".into(),
    })?;
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(dir.with_file_name(name))
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `files` (name, contents) as the folder `dir`, replacing an older checkpoint there.
pub(crate) fn write_folder(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let tmp = sibling(dir, ".tmp")?;
    let old = sibling(dir, ".old")?;
    let parent = parent_of(dir);
    fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    // Refuse early, before writing anything, to replace something that is not a checkpoint.
    if fs::symlink_metadata(dir).is_ok() {
        check_is_checkpoint_folder(dir)?;
    }
    remove_checkpoint_folder(&tmp)?;

    fs::create_dir(&tmp).map_err(io_error(&tmp))?;
    for (name, contents) in files {
        let path = tmp.join(name);
        let mut file = File::create(&path).map_err(io_error(&path))?;
        file.write_all(contents).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
    }
    sync_dir(&tmp)?;

    if fs::symlink_metadata(dir).is_ok() {
        remove_checkpoint_folder(&old)?;
        fs::rename(dir, &old).map_err(io_error(dir))?;
        if let Err(e) = fs::rename(&tmp, dir) {
            // Put the old checkpoint back; the new one stays in `<name>.tmp`.
            let _ = fs::rename(&old, dir);
            return Err(Error::Io {
                path: dir.to_path_buf(),
                cause: e,
            });
        }
        sync_dir(&parent)?;
        // The new checkpoint is in place and durable; failing to delete the old one costs only disk
        // space (the next save removes it), so it is not reported as a failed save.
        let _ = remove_checkpoint_folder(&old);
    } else {
        fs::rename(&tmp, dir).map_err(io_error(dir))?;
        sync_dir(&parent)?;
        // A crash between the two renames of an earlier save leaves `<name>.old`; it is superseded now.
        let _ = remove_checkpoint_folder(&old);
    }
    Ok(())
}

/// Errors unless `dir` is a folder holding only checkpoint files.
fn check_is_checkpoint_folder(dir: &Path) -> Result<()> {
    let not_ours = |message: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    if !fs::symlink_metadata(dir).map_err(io_error(dir))?.is_dir() {
        return Err(not_ours(
            "exists and is not a checkpoint folder; refusing to replace it".into(),
        ));
    }
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let is_file = entry.file_type().map_err(io_error(entry.path()))?.is_file();
        if !is_file || !FILE_NAMES.iter().any(|f| name == *f) {
            return Err(not_ours(format!(
                "holds `{}`, which is not part of a checkpoint; refusing to replace the folder",
                name.to_string_lossy()
            )));
        }
    }
    Ok(())
}

/// Removes `dir` if it exists and holds only checkpoint files; a no-op when it does not exist.
fn remove_checkpoint_folder(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    check_is_checkpoint_folder(dir)?;
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        fs::remove_file(&path).map_err(io_error(&path))?;
    }
    fs::remove_dir(dir).map_err(io_error(dir))
}

/// Makes a folder's entries durable (a no-op where folders cannot be opened, as on Windows).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
