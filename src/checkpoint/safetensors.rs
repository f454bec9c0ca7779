//! The safetensors file format, read and written by hand so that every error names the file and the
//! tensor at fault.
//!
//! Layout: an 8-byte little-endian `u64` N, then N bytes of UTF-8 JSON (the header), then the data
//! buffer. The header is an object mapping each tensor name to
//! `{"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [begin, end]}` (offsets into the data
//! buffer, end exclusive) plus an optional `"__metadata__"` object of string to string. Tensor data is
//! row-major, little-endian; the tensors tile the buffer exactly, with no gaps or overlaps.
//!
//! The writer pads the header with spaces so the data starts 8-byte aligned, as the reference
//! implementation does, and lays the data out in the order it is given.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{io_error, Error, Result};

/// The largest header the reader accepts (the reference implementation's limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// An element type of the format. Only `F32` and `I64` are written; the others are recognised so that
/// a file holding them is rejected with a message naming the dtype rather than as unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    const ALL: [Dtype; 15] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E5M2,
        Dtype::F8E4M3,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// The name in the header, such as `F32`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E5M2 | Dtype::F8E4M3 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    fn parse(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the data buffer.
    pub begin: usize,
    pub end: usize,
}

/// A parsed, validated safetensors file held in memory.
#[derive(Debug)]
pub struct SafeTensors {
    pub path: PathBuf,
    /// The `__metadata__` object (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// Every tensor, in the order of its data in the file.
    pub entries: Vec<Entry>,
    data: Vec<u8>,
    data_start: usize,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl SafeTensors {
    /// Reads and validates a file.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(bad(path, "file does not exist"));
        }
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        Self::parse(path, bytes)
    }

    /// Validates `bytes` as a safetensors file (`path` is only used in messages): the header length,
    /// the JSON, every entry's dtype, shape and byte range, and that the tensors tile the data buffer
    /// exactly.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let total = bytes.len() as u64;
        if total < 8 {
            return Err(bad(
                path,
                format!(
                    "not a safetensors file: {total} bytes, shorter than the 8-byte header length"
                ),
            ));
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(path, format!("corrupt safetensors header: declared length {header_len} bytes exceeds the limit of {MAX_HEADER_BYTES}")));
        }
        if header_len > total - 8 {
            return Err(bad(
                path,
                format!("truncated or corrupt: the header declares {header_len} bytes but only {} follow the length field", total - 8),
            ));
        }
        let data_start = 8 + header_len as usize;
        let header_bytes = &bytes[8..data_start];
        let header_text = std::str::from_utf8(header_bytes)
            .map_err(|e| bad(path, format!("corrupt safetensors header: not UTF-8 ({e})")))?;
        if !header_text.trim_start().starts_with('{') {
            return Err(bad(
                path,
                "corrupt safetensors header: it does not start with a JSON object",
            ));
        }
        let header: serde_json::Value = serde_json::from_str(header_text).map_err(|e| {
            bad(
                path,
                format!("corrupt safetensors header: invalid JSON ({e})"),
            )
        })?;
        let object = header
            .as_object()
            .ok_or_else(|| bad(path, "corrupt safetensors header: not a JSON object"))?;
        let data_len = bytes.len() - data_start;

        let mut metadata = BTreeMap::new();
        let mut entries = Vec::with_capacity(object.len());
        for (name, value) in object {
            if name == "__metadata__" {
                let map = value.as_object().ok_or_else(|| {
                    bad(
                        path,
                        "corrupt safetensors header: `__metadata__` is not an object",
                    )
                })?;
                for (k, v) in map {
                    let v = v.as_str().ok_or_else(|| {
                        bad(
                            path,
                            format!("corrupt safetensors header: metadata `{k}` is not a string"),
                        )
                    })?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            entries.push(parse_entry(path, name, value, data_len)?);
        }

        // The tensors must tile the data buffer: sorted by offset, each starts where the last ended.
        entries.sort_by_key(|e| (e.begin, e.end));
        let mut cursor = 0;
        for e in &entries {
            if e.begin != cursor {
                let what = if e.begin < cursor {
                    "overlaps the tensor before it"
                } else {
                    "leaves a gap before it"
                };
                return Err(bad(path, format!("corrupt safetensors header: tensor `{}` at byte {} {what} (expected offset {cursor})", e.name, e.begin)));
            }
            cursor = e.end;
        }
        if cursor != data_len {
            return Err(bad(
                path,
                format!("truncated or corrupt: the tensors cover {cursor} bytes of data but the file holds {data_len} after the header"),
            ));
        }
        Ok(SafeTensors {
            path: path.to_path_buf(),
            metadata,
            entries,
            data: bytes,
            data_start,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The raw little-endian bytes of an entry of this file.
    pub fn bytes(&self, entry: &Entry) -> &[u8] {
        &self.data[self.data_start + entry.begin..self.data_start + entry.end]
    }

    /// The values of an `F32` entry.
    pub fn f32_values(&self, entry: &Entry) -> Result<Vec<f32>> {
        self.expect_dtype(entry, Dtype::F32)?;
        Ok(self
            .bytes(entry)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// The values of an `I64` entry.
    pub fn i64_values(&self, entry: &Entry) -> Result<Vec<i64>> {
        self.expect_dtype(entry, Dtype::I64)?;
        Ok(self
            .bytes(entry)
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    fn expect_dtype(&self, entry: &Entry, dtype: Dtype) -> Result<()> {
        if entry.dtype != dtype {
            return Err(bad(
                &self.path,
                format!(
                    "tensor `{}` has dtype {}, expected {dtype}",
                    entry.name, entry.dtype
                ),
            ));
        }
        Ok(())
    }
}

fn parse_entry(
    path: &Path,
    name: &str,
    value: &serde_json::Value,
    data_len: usize,
) -> Result<Entry> {
    let corrupt = |what: &str| {
        bad(
            path,
            format!("corrupt safetensors header: tensor `{name}`: {what}"),
        )
    };
    let object = value
        .as_object()
        .ok_or_else(|| corrupt("the entry is not an object"))?;
    let dtype_name = object
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| corrupt("no `dtype` string"))?;
    let dtype = Dtype::parse(dtype_name)
        .ok_or_else(|| corrupt(&format!("unknown dtype `{dtype_name}`")))?;
    let shape_json = object
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| corrupt("no `shape` array"))?;
    let shape = shape_json
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| corrupt("`shape` holds something other than non-negative integers"))?;
    let offsets = object
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .ok_or_else(|| corrupt("no `data_offsets` array"))?;
    let (begin, end) = match offsets.as_slice() {
        [b, e] => match (
            b.as_u64().and_then(|b| usize::try_from(b).ok()),
            e.as_u64().and_then(|e| usize::try_from(e).ok()),
        ) {
            (Some(b), Some(e)) => (b, e),
            _ => return Err(corrupt("`data_offsets` are not non-negative integers")),
        },
        _ => return Err(corrupt("`data_offsets` is not a pair")),
    };
    if begin > end || end > data_len {
        return Err(bad(
            path,
            format!("truncated or corrupt: tensor `{name}` spans bytes {begin}..{end} but the data buffer holds {data_len} bytes"),
        ));
    }
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt("the shape overflows"))?;
    if end - begin != expected {
        return Err(corrupt(&format!(
            "shape {shape:?} of {dtype} needs {expected} bytes but `data_offsets` span {}",
            end - begin
        )));
    }
    Ok(Entry {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// A tensor to write: its name, dtype, shape and little-endian bytes.
#[derive(Clone, Debug)]
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        OutTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data,
        }
    }

    pub fn i64(name: impl Into<String>, shape: Vec<usize>, values: &[i64]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        OutTensor {
            name: name.into(),
            dtype: Dtype::I64,
            shape,
            data,
        }
    }
}

/// Serialises `tensors` (data in the given order) with `metadata`. `path` only names the file in the
/// error returned for duplicate names or a data length that does not match a shape.
pub fn serialize(
    path: &Path,
    tensors: &[OutTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let map = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".to_string(), serde_json::Value::Object(map));
    }
    let mut seen = HashSet::new();
    let mut offset = 0usize;
    for t in tensors {
        if t.name == "__metadata__" || !seen.insert(t.name.as_str()) {
            return Err(bad(
                path,
                format!("cannot write tensor `{}`: the name is taken", t.name),
            ));
        }
        let numel: usize = t.shape.iter().product();
        if numel * t.dtype.size() != t.data.len() {
            return Err(bad(
                path,
                format!(
                    "cannot write tensor `{}`: {} bytes do not fit shape {:?} of {}",
                    t.name,
                    t.data.len(),
                    t.shape,
                    t.dtype
                ),
            ));
        }
        let end = offset + t.data.len();
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header_bytes =
        serde_json::to_vec(&serde_json::Value::Object(header)).expect("a JSON map serialises");
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}
