//! The CIFAR-10 binary version: `data_batch_1.bin` ... `data_batch_5.bin` (training, 50,000 images)
//! and `test_batch.bin` (10,000). Each record is one label byte (0..=9) then 3,072 pixel bytes: the
//! 32x32 red plane, then green, then blue, row after row. The files are memory-mapped and checked
//! when opened (present, a whole number of records, every label below 10), so a bad file fails at
//! the start of a run with its name and the record at fault, never halfway through.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Dataset, Splits};
use crate::error::{io_error, Error, Result};

pub const SIDE: usize = 32;
pub const NUM_CLASSES: usize = 10;
const PLANE: usize = SIDE * SIDE;
/// Bytes per record: the label and three colour planes.
pub const RECORD: usize = 1 + 3 * PLANE;
/// The training files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";

/// One split: the records of one or more memory-mapped files, in file order.
pub struct Cifar10 {
    files: Vec<(PathBuf, Mmap)>,
    /// `starts[f]` is the index of the first record of file `f`; the last entry is the total.
    starts: Vec<usize>,
    name: String,
}

/// Opens `dir`'s training and test splits.
pub fn splits(dir: &Path) -> Result<Splits> {
    let train: Vec<PathBuf> = TRAIN_FILES.iter().map(|f| dir.join(f)).collect();
    Ok(Splits {
        train: Box::new(Cifar10::open(&train, "train")?),
        test: Box::new(Cifar10::open(&[dir.join(TEST_FILE)], "test")?),
        name: "cifar10".into(),
    })
}

impl Cifar10 {
    /// Maps and checks `files`; `split` names the split in descriptions.
    pub fn open(files: &[PathBuf], split: &str) -> Result<Cifar10> {
        let mut mapped = Vec::with_capacity(files.len());
        let mut starts = vec![0];
        for path in files {
            let bad = |message: String| Error::Data {
                path: path.clone(),
                message,
            };
            let file = File::open(path).map_err(io_error(path))?;
            // Safety: the map is read-only and private to this process; the dataset files are
            // not expected to change during a run (a concurrent truncation could fault, as with
            // any memory-mapped reader).
            let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
            if map.is_empty() || map.len() % RECORD != 0 {
                return Err(bad(format!(
                    "{} bytes is not a whole number of {RECORD}-byte records (truncated or not a CIFAR-10 binary file)",
                    map.len()
                )));
            }
            for (record, chunk) in map.chunks_exact(RECORD).enumerate() {
                if chunk[0] as usize >= NUM_CLASSES {
                    return Err(bad(format!(
                        "record {record} has label {}, not below {NUM_CLASSES}",
                        chunk[0]
                    )));
                }
            }
            starts.push(starts.last().expect("non-empty") + map.len() / RECORD);
            mapped.push((path.clone(), map));
        }
        Ok(Cifar10 {
            files: mapped,
            starts,
            name: split.to_string(),
        })
    }

    /// The bytes of record `index`.
    fn record(&self, index: usize) -> &[u8] {
        let f = self.starts.partition_point(|&s| s <= index) - 1;
        &self.files[f].1[(index - self.starts[f]) * RECORD..][..RECORD]
    }
}

impl Dataset for Cifar10 {
    fn len(&self) -> usize {
        *self.starts.last().expect("non-empty")
    }

    fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    fn image_size(&self) -> (usize, usize) {
        (SIDE, SIDE)
    }

    /// Interleaves the three planes into HWC.
    fn load(&self, index: usize, out: &mut [u8]) -> Result<u32> {
        if index >= self.len() || out.len() != 3 * PLANE {
            return Err(crate::error::invalid(
                "cifar10 load",
                format!("image {index} of {} into {} bytes", self.len(), out.len()),
            ));
        }
        let record = self.record(index);
        let (label, planes) = record.split_at(1);
        for (p, px) in out.chunks_exact_mut(3).enumerate() {
            px[0] = planes[p];
            px[1] = planes[PLANE + p];
            px[2] = planes[2 * PLANE + p];
        }
        Ok(label[0] as u32)
    }

    fn describe(&self) -> String {
        let dir = self
            .files
            .first()
            .and_then(|(p, _)| p.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("cifar10 {dir} ({} {} images)", self.len(), self.name)
    }
}
