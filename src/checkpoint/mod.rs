//! Checkpoints: a folder that PyTorch can read and a crash cannot tear.
//!
//! ```text
//! <dir>/model.safetensors       the torchvision state dict of the network (see below)
//! <dir>/optimizer.safetensors   SGD momentum buffers `{param}.momentum_buffer` (absent when saved
//!                               without an optimizer; no tensors when it had not stepped yet)
//! <dir>/preprocess.safetensors  `mean_image`, [H, W, 3] f32, the per-pixel mean that is subtracted
//!                               (absent when saved without one)
//! <dir>/run_state.json          whatever the trainer hands over: config, iteration, epoch, learning-rate
//!                               state, RNG state, data position
//! ```
//!
//! `model.safetensors` holds exactly what `torchvision.models.resnetN().state_dict()` holds, so
//! `load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts it: every parameter
//! under its torchvision name, and for every BatchNorm2d `running_mean`, `running_var` (f32) and
//! `num_batches_tracked` (an i64 scalar of shape `[]`). Convolution weights are OIHW in every file (the
//! device keeps them KRSC); linear weights are `[out, in]`; everything is f32 whatever the backend's
//! element type. The metadata holds `format = pt` (as PyTorch's `save_file` writes), the model name,
//! `state_dict_order`: the names in `state_dict()` order, comma-separated, and for a bottleneck net
//! its `variant` (see [`VARIANT_KEY`]). In the data buffer the
//! i64 counters come first (so every tensor is aligned to its element size), then the f32 tensors in
//! state-dict order. The CIFAR nets use the same naming.
//!
//! Momentum buffers have their parameter's file layout (OIHW for convolutions). Loading validates every
//! file completely (header, sizes, every expected key with its dtype and shape, no unexpected key)
//! before it changes anything, so a failed load leaves the network and optimizer as they were.

mod atomic;
pub mod safetensors;
mod state_dict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use self::safetensors::{OutTensor, SafeTensors};
use self::state_dict::{momentum_name, read_momentum, Layout};
use crate::backend::Backend;
use crate::error::{io_error, Error, Result};
use crate::models::{BlockKind, Network};
use crate::optim::Sgd;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const PREPROCESS_FILE: &str = "preprocess.safetensors";
pub const RUN_STATE_FILE: &str = "run_state.json";
/// Every file a checkpoint folder may hold.
pub const FILE_NAMES: [&str; 4] = [MODEL_FILE, OPTIMIZER_FILE, PREPROCESS_FILE, RUN_STATE_FILE];
/// The tensor of `preprocess.safetensors`.
pub const MEAN_IMAGE: &str = "mean_image";
/// The metadata key of `model.safetensors` that lists the tensors in state-dict order.
pub const ORDER_KEY: &str = "state_dict_order";
/// The metadata key of `model.safetensors` that names the variant of a bottleneck net (`paper` or
/// `torchvision`). The run's variant lives in `run_state.json`, which `eval` and `--resume` read; this
/// copy lets `--init`, which reads weights only, refuse weights of the other variant (the same names and
/// shapes, so nothing else would notice). Files without it (PyTorch's, older ones) are not checked.
pub const VARIANT_KEY: &str = "variant";

pub use crate::data::batch::MeanImage;

/// What [`load`] returns besides the restored network and optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedCheckpoint {
    pub mean_image: Option<MeanImage>,
    pub run_state: serde_json::Value,
}

fn error(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Saves the network, the optimizer's momentum (when given), the mean image (when given) and the run
/// state as the checkpoint folder `dir`, atomically replacing an older checkpoint there.
pub fn save<B: Backend>(
    dir: &Path,
    be: &B,
    net: &mut Network<B>,
    sgd: Option<&Sgd<B>>,
    mean_image: Option<(&[f32], [usize; 3])>,
    run_state: &serde_json::Value,
) -> Result<()> {
    let layout = Layout::of(net)?;
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut tensors = layout.gather(be, net)?;
    // i64 scalars first, then f32 in state-dict order: every tensor lands aligned to its element size.
    tensors.sort_by_key(|t| std::cmp::Reverse(t.dtype.size()));
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert("model".to_string(), net.config.name.clone());
    if net.config.block == BlockKind::Bottleneck {
        metadata.insert(VARIANT_KEY.to_string(), net.config.variant().to_string());
    }
    let order: Vec<&str> = layout.expected.iter().map(|e| e.name.as_str()).collect();
    metadata.insert(ORDER_KEY.to_string(), order.join(","));
    files.push((
        MODEL_FILE,
        safetensors::serialize(&dir.join(MODEL_FILE), &tensors, &metadata)?,
    ));

    if let Some(sgd) = sgd {
        let path = dir.join(OPTIMIZER_FILE);
        let velocity = sgd.velocity();
        if !velocity.is_empty() && velocity.len() != layout.params.len() {
            return Err(error(
                &path,
                format!(
                    "the optimizer has {} momentum buffers for {} parameters",
                    velocity.len(),
                    layout.params.len()
                ),
            ));
        }
        let mut buffers = Vec::with_capacity(velocity.len());
        for (v, (name, dims)) in velocity.iter().zip(&layout.params) {
            if v.dims() != dims.as_slice() {
                return Err(error(
                    &path,
                    format!(
                        "momentum of `{name}` has shape {:?}, its parameter {dims:?}",
                        v.dims()
                    ),
                ));
            }
            let values = state_dict::to_file_layout(dims, &v.to_vec(be)?);
            buffers.push(OutTensor::f32(
                momentum_name(name),
                state_dict::file_shape(dims),
                &values,
            ));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        metadata.insert("optimizer".to_string(), "sgd".to_string());
        metadata.insert("lr".to_string(), sgd.config.lr.to_string());
        metadata.insert("momentum".to_string(), sgd.config.momentum.to_string());
        metadata.insert(
            "weight_decay".to_string(),
            sgd.config.weight_decay.to_string(),
        );
        files.push((
            OPTIMIZER_FILE,
            safetensors::serialize(&path, &buffers, &metadata)?,
        ));
    }

    if let Some((data, dims)) = mean_image {
        let path = dir.join(PREPROCESS_FILE);
        if dims[2] != 3 || dims.iter().product::<usize>() != data.len() {
            return Err(error(
                &path,
                format!(
                    "the mean image has {} values for shape {dims:?}; expected [H, W, 3]",
                    data.len()
                ),
            ));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        metadata.insert("layout".to_string(), "HWC, RGB".to_string());
        files.push((
            PREPROCESS_FILE,
            safetensors::serialize(
                &path,
                &[OutTensor::f32(MEAN_IMAGE, dims.to_vec(), data)],
                &metadata,
            )?,
        ));
    }

    let mut json = serde_json::to_vec_pretty(run_state).map_err(|e| {
        error(
            &dir.join(RUN_STATE_FILE),
            format!("cannot serialise the run state: {e}"),
        )
    })?;
    json.push(b'\n');
    files.push((RUN_STATE_FILE, json));

    atomic::write_folder(dir, &files)
}

/// Loads the network's weights and BN statistics from a checkpoint folder or a bare `model.safetensors`
/// (such as one exported from PyTorch, keys in any order). The file must hold exactly this network's
/// state dict; on any error the network is unchanged.
pub fn load_weights<B: Backend>(path: &Path, be: &B, net: &mut Network<B>) -> Result<()> {
    if !path.exists() {
        return Err(missing(path));
    }
    let file = if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_path_buf()
    };
    let model = SafeTensors::read(&file)?;
    check_variant(&model, net)?;
    Layout::of(net)?.read::<B>(&model)?.apply(be, net)
}

/// Restores a checkpoint folder written by [`save`]: weights, BN statistics, momentum buffers (cleared
/// when the checkpoint has none), and returns the mean image and run state. Every file is validated
/// before anything is changed.
pub fn load<B: Backend>(
    dir: &Path,
    be: &B,
    net: &mut Network<B>,
    sgd: &mut Sgd<B>,
) -> Result<LoadedCheckpoint> {
    if !dir.exists() {
        return Err(missing(dir));
    }
    if !dir.is_dir() {
        return Err(not_a_folder(dir));
    }
    let layout = Layout::of(net)?;
    let model = SafeTensors::read(&dir.join(MODEL_FILE))?;
    check_variant(&model, net)?;
    let staged = layout.read::<B>(&model)?;
    drop(model);

    let optimizer_path = dir.join(OPTIMIZER_FILE);
    let velocity = if optimizer_path.exists() {
        read_momentum(be, &SafeTensors::read(&optimizer_path)?, &layout.params)?
    } else {
        Vec::new()
    };

    let preprocess_path = dir.join(PREPROCESS_FILE);
    let mean_image = if preprocess_path.exists() {
        Some(read_mean_image(&SafeTensors::read(&preprocess_path)?)?)
    } else {
        None
    };

    let (run_state_path, text) = read_run_state_text(dir)?;
    let run_state: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| error(&run_state_path, format!("corrupt JSON: {e}")))?;

    staged.apply(be, net)?;
    *sgd.velocity_mut() = velocity;
    Ok(LoadedCheckpoint {
        mean_image,
        run_state,
    })
}

/// Refuses a bottleneck net's weights saved from the other variant, when the file says which it is.
fn check_variant<B: Backend>(file: &SafeTensors, net: &Network<B>) -> Result<()> {
    let Some(saved) = file.metadata.get(VARIANT_KEY) else {
        return Ok(());
    };
    let ours = net.config.variant();
    if net.config.block == BlockKind::Bottleneck && saved != ours.name() {
        return Err(error(
            &file.path,
            format!(
                "holds the {saved} variant of its network, but this {} is the {ours} variant \
                 (--variant {saved} builds the network these weights compute)",
                net.config.name
            ),
        ));
    }
    Ok(())
}

fn read_mean_image(file: &SafeTensors) -> Result<MeanImage> {
    let entry = file
        .get(MEAN_IMAGE)
        .ok_or_else(|| error(&file.path, format!("missing tensor `{MEAN_IMAGE}`")))?;
    if let Some(other) = file.entries.iter().find(|e| e.name != MEAN_IMAGE) {
        return Err(error(
            &file.path,
            format!(
                "unexpected tensor `{}` (only `{MEAN_IMAGE}` belongs here)",
                other.name
            ),
        ));
    }
    let dims: [usize; 3] = match entry.shape.as_slice() {
        &[h, w, 3] => [h, w, 3],
        other => {
            return Err(error(
                &file.path,
                format!("tensor `{MEAN_IMAGE}` has shape {other:?}, expected [H, W, 3]"),
            ))
        }
    };
    MeanImage::from_parts(dims[0], dims[1], file.f32_values(entry)?)
        .map_err(|e| error(&file.path, e.to_string()))
}

/// The path and text of a checkpoint folder's `run_state.json`, with the same errors as [`load`]
/// for a folder or a file that does not exist.
pub fn read_run_state_text(dir: &Path) -> Result<(PathBuf, String)> {
    if !dir.exists() {
        return Err(missing(dir));
    }
    if !dir.is_dir() {
        return Err(not_a_folder(dir));
    }
    let path = dir.join(RUN_STATE_FILE);
    if !path.exists() {
        return Err(error(&path, "file does not exist"));
    }
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    Ok((path, text))
}

fn not_a_folder(path: &Path) -> Error {
    error(
        path,
        format!("is a file, not a checkpoint folder (a bare {MODEL_FILE} holds weights only)"),
    )
}

/// The error for a checkpoint path that does not exist, pointing at `<name>.old` when a save was
/// interrupted between its two renames.
fn missing(path: &Path) -> Error {
    let old: Option<PathBuf> = atomic::sibling(path, ".old").ok().filter(|p| p.is_dir());
    match old {
        Some(old) => error(
            path,
            format!(
                "does not exist, but {} does: a save was interrupted after moving the previous checkpoint aside; \
                 rename it back to use it",
                old.display()
            ),
        ),
        None => error(path, "does not exist"),
    }
}

/// Reads only the mean image of a checkpoint folder (what evaluation needs besides the weights).
pub fn load_mean_image(dir: &Path) -> Result<MeanImage> {
    let path = dir.join(PREPROCESS_FILE);
    if !path.exists() {
        return Err(error(
            &path,
            "file does not exist (the checkpoint has no mean image)",
        ));
    }
    read_mean_image(&SafeTensors::read(&path)?)
}
