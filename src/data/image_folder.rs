//! The folder layout torchvision's `ImageFolder` reads: `SPLIT/<class>/<image>`, classes in sorted
//! name order (label = position in that order), images in sorted name order within a class.
//!
//! Files are not filtered by extension: anything in a class folder is taken as an image, so a stray
//! non-image file is found when it is decoded (and skipped with a warning) rather than silently.
//! Hidden files (names starting with `.`) are ignored.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_error, Error, Result};

/// One split: its class names and every image with its label.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub dir: PathBuf,
    /// Class names, sorted; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Every image and its label, by class then name.
    pub images: Vec<(PathBuf, u32)>,
}

fn data_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The visible entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links, as datasets are often trees of links.
        let is_dir = path.is_dir();
        entries.push((name, path, is_dir));
    }
    entries.sort();
    Ok(entries)
}

impl ImageFolder {
    /// Scans `dir` (such as `DATA/train`). Errors name the folder: a missing split folder, a split
    /// with no class folder, a class folder with no file.
    pub fn scan(dir: &Path) -> Result<ImageFolder> {
        if !dir.is_dir() {
            return Err(data_error(
                dir,
                "the split folder is missing (expected <class>/<image> folders inside)",
            ));
        }
        let mut classes = Vec::new();
        let mut images = Vec::new();
        for (name, class_dir, is_dir) in sorted_entries(dir)? {
            if !is_dir {
                continue;
            }
            let label = classes.len() as u32;
            let before = images.len();
            for (_, file, is_dir) in sorted_entries(&class_dir)? {
                if !is_dir {
                    images.push((file, label));
                }
            }
            if images.len() == before {
                return Err(data_error(&class_dir, "the class folder holds no image"));
            }
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(data_error(dir, "no class folder found"));
        }
        Ok(ImageFolder {
            dir: dir.to_path_buf(),
            classes,
            images,
        })
    }

    /// Relabels this split's images with the labels of `classes` (the training split's), so that a
    /// validation split missing some classes still uses the training labels. Errors on a class the
    /// training split does not have.
    pub fn relabel(&mut self, classes: &[String]) -> Result<()> {
        let mut map = Vec::with_capacity(self.classes.len());
        for name in &self.classes {
            match classes.binary_search(name) {
                Ok(label) => map.push(label as u32),
                Err(_) => {
                    return Err(data_error(
                        &self.dir.join(name),
                        "this class is not in the training split",
                    ))
                }
            }
        }
        for (_, label) in &mut self.images {
            *label = map[*label as usize];
        }
        self.classes = classes.to_vec();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}
