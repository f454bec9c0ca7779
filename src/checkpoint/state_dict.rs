//! The network as a torchvision state dict: names, layouts, order, and the checks a file must pass
//! before anything of the network is overwritten.
//!
//! Order: for each module in definition order, `weight`, `bias`, then for a BatchNorm2d
//! `running_mean`, `running_var`, `num_batches_tracked` (what `Module.state_dict()` yields). The
//! network visits parameters in that order already; a BN's buffers follow its `bias`.
//!
//! Layout: convolution weights (rank 4) are KRSC (= O, H, W, I) on the device and OIHW in the file;
//! every other tensor has the same layout in both.

use super::safetensors::{Dtype, OutTensor, SafeTensors};
use crate::backend::{Backend, Element};
use crate::error::{Error, Result};
use crate::models::Network;
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

pub(crate) const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// What the file must hold for one tensor: name, dtype and shape (file layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// KRSC dims to OIHW dims; other ranks unchanged.
pub(crate) fn file_shape(device: &[usize]) -> Vec<usize> {
    match *device {
        [k, r, s, c] => vec![k, c, r, s],
        _ => device.to_vec(),
    }
}

/// Device values (KRSC for rank 4) to file values (OIHW), as f32.
pub(crate) fn to_file_layout<E: Element>(device_dims: &[usize], values: &[E]) -> Vec<f32> {
    match *device_dims {
        [k, r, s, c] => {
            let mut out = vec![0f32; values.len()];
            for ki in 0..k {
                for ri in 0..r {
                    for si in 0..s {
                        for ci in 0..c {
                            out[((ki * c + ci) * r + ri) * s + si] =
                                values[((ki * r + ri) * s + si) * c + ci].f64() as f32;
                        }
                    }
                }
            }
            out
        }
        _ => values.iter().map(|v| v.f64() as f32).collect(),
    }
}

/// File values (OIHW for rank 4) to device values (KRSC), for a tensor of device dims `device_dims`.
pub(crate) fn from_file_layout<E: Element>(device_dims: &[usize], values: &[f32]) -> Vec<E> {
    match *device_dims {
        [k, r, s, c] => {
            let mut out = vec![E::default(); values.len()];
            for ki in 0..k {
                for ci in 0..c {
                    for ri in 0..r {
                        for si in 0..s {
                            out[((ki * r + ri) * s + si) * c + ci] =
                                E::of(values[((ki * c + ci) * r + ri) * s + si] as f64);
                        }
                    }
                }
            }
            out
        }
        _ => values.iter().map(|&v| E::of(v as f64)).collect(),
    }
}

/// One state-dict slot of the network.
enum Slot {
    /// A parameter, by its index in `visit_params` order.
    Param(usize),
    /// A BN's running mean, running variance or counter, by the BN's index in `visit_batch_norms` order.
    RunningMean(usize),
    RunningVar(usize),
    BatchesTracked(usize),
}

/// The network's state dict layout: every tensor's name, dtype, file shape, device shape and where it
/// lives, in torchvision order.
pub(crate) struct Layout {
    pub expected: Vec<Expected>,
    device_dims: Vec<Vec<usize>>,
    slots: Vec<Slot>,
    /// Parameter names and device dims, in parameter order.
    pub params: Vec<(String, Vec<usize>)>,
    num_bns: usize,
}

impl Layout {
    pub fn of<B: Backend>(net: &mut Network<B>) -> Result<Layout> {
        let params = net.param_shapes();
        let mut bns: Vec<(String, usize)> = Vec::new();
        net.visit_batch_norms(&mut |bn| bns.push((bn.name.clone(), bn.running_mean.numel())));
        let bn_by_bias: HashMap<String, usize> = bns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (format!("{name}.bias"), i))
            .collect();

        let mut layout = Layout {
            expected: Vec::new(),
            device_dims: Vec::new(),
            slots: Vec::new(),
            params: params.clone(),
            num_bns: bns.len(),
        };
        let mut emitted = vec![false; bns.len()];
        for (i, (name, dims)) in params.iter().enumerate() {
            layout.push(name.clone(), Dtype::F32, dims.clone(), Slot::Param(i));
            if let Some(&b) = bn_by_bias.get(name) {
                let (bn, channels) = &bns[b];
                layout.push(
                    format!("{bn}.running_mean"),
                    Dtype::F32,
                    vec![*channels],
                    Slot::RunningMean(b),
                );
                layout.push(
                    format!("{bn}.running_var"),
                    Dtype::F32,
                    vec![*channels],
                    Slot::RunningVar(b),
                );
                layout.push(
                    format!("{bn}.{NUM_BATCHES_TRACKED}"),
                    Dtype::I64,
                    vec![],
                    Slot::BatchesTracked(b),
                );
                emitted[b] = true;
            }
        }
        if let Some(b) = emitted.iter().position(|e| !e) {
            return Err(Error::Checkpoint {
                path: Default::default(),
                message: format!(
                    "internal: batch norm `{}` has no `bias` parameter to place its buffers after",
                    bns[b].0
                ),
            });
        }
        Ok(layout)
    }

    fn push(&mut self, name: String, dtype: Dtype, device_dims: Vec<usize>, slot: Slot) {
        self.expected.push(Expected {
            name,
            dtype,
            shape: file_shape(&device_dims),
        });
        self.device_dims.push(device_dims);
        self.slots.push(slot);
    }

    /// The network's state, downloaded, in file layout and order.
    pub fn gather<B: Backend>(&self, be: &B, net: &mut Network<B>) -> Result<Vec<OutTensor>> {
        let mut param_values: Vec<Vec<B::Elem>> = Vec::with_capacity(self.params.len());
        let mut outcome = Ok(());
        net.visit_params(&mut |p| {
            if outcome.is_ok() {
                match p.value.to_vec(be) {
                    Ok(v) => param_values.push(v),
                    Err(e) => outcome = Err(e),
                }
            }
        });
        outcome?;
        let mut bn_values: Vec<BnState<B::Elem>> = Vec::new();
        let mut outcome = Ok(());
        net.visit_batch_norms(&mut |bn| {
            if outcome.is_ok() {
                match (bn.running_mean.to_vec(be), bn.running_var.to_vec(be)) {
                    (Ok(mean), Ok(var)) => bn_values.push(BnState {
                        mean,
                        var,
                        tracked: bn.num_batches_tracked,
                    }),
                    (Err(e), _) | (_, Err(e)) => outcome = Err(e),
                }
            }
        });
        outcome?;
        let mut out = Vec::with_capacity(self.slots.len());
        for ((slot, exp), dims) in self.slots.iter().zip(&self.expected).zip(&self.device_dims) {
            let t = match *slot {
                Slot::Param(i) => OutTensor::f32(
                    &exp.name,
                    exp.shape.clone(),
                    &to_file_layout(dims, &param_values[i]),
                ),
                Slot::RunningMean(b) => OutTensor::f32(
                    &exp.name,
                    exp.shape.clone(),
                    &to_file_layout(dims, &bn_values[b].mean),
                ),
                Slot::RunningVar(b) => OutTensor::f32(
                    &exp.name,
                    exp.shape.clone(),
                    &to_file_layout(dims, &bn_values[b].var),
                ),
                Slot::BatchesTracked(b) => {
                    OutTensor::i64(&exp.name, vec![], &[bn_values[b].tracked])
                }
            };
            out.push(t);
        }
        Ok(out)
    }

    /// Checks `file` against the layout and converts every tensor to device values, touching nothing
    /// of the network.
    pub fn read<B: Backend>(&self, file: &SafeTensors) -> Result<StagedState<B>> {
        check_keys(file, &self.expected)?;
        let mut params = vec![Vec::new(); self.params.len()];
        let mut bns: Vec<BnState<B::Elem>> =
            (0..self.num_bns).map(|_| BnState::default()).collect();
        for ((slot, exp), dims) in self.slots.iter().zip(&self.expected).zip(&self.device_dims) {
            let entry = file.get(&exp.name).expect("checked present");
            match *slot {
                Slot::Param(i) => params[i] = from_file_layout(dims, &file.f32_values(entry)?),
                Slot::RunningMean(b) => {
                    bns[b].mean = from_file_layout(dims, &file.f32_values(entry)?)
                }
                Slot::RunningVar(b) => {
                    bns[b].var = from_file_layout(dims, &file.f32_values(entry)?)
                }
                Slot::BatchesTracked(b) => bns[b].tracked = file.i64_values(entry)?[0],
            }
        }
        Ok(StagedState { params, bns })
    }
}

/// A state read from a file and checked, ready to be uploaded.
pub(crate) struct StagedState<B: Backend> {
    params: Vec<Vec<B::Elem>>,
    bns: Vec<BnState<B::Elem>>,
}

/// A batch norm's running statistics and counter, on the host.
#[derive(Default)]
struct BnState<E> {
    mean: Vec<E>,
    var: Vec<E>,
    tracked: i64,
}

impl<B: Backend> StagedState<B> {
    /// Uploads the state into the network it was checked against.
    pub fn apply(self, be: &B, net: &mut Network<B>) -> Result<()> {
        let mut outcome = Ok(());
        let mut params = self.params.into_iter();
        net.visit_params(&mut |p| {
            if outcome.is_ok() {
                outcome = p
                    .value
                    .copy_from_slice(be, &params.next().expect("one value per parameter"));
            }
        });
        outcome?;
        let mut outcome = Ok(());
        let mut bns = self.bns.into_iter();
        net.visit_batch_norms(&mut |bn| {
            if outcome.is_ok() {
                let state = bns.next().expect("one state per batch norm");
                outcome = bn
                    .running_mean
                    .copy_from_slice(be, &state.mean)
                    .and_then(|_| bn.running_var.copy_from_slice(be, &state.var));
                bn.num_batches_tracked = state.tracked;
            }
        });
        outcome
    }
}

/// Momentum buffers as device tensors, checked against the parameters, from `file` (which holds either
/// no tensor at all, for an optimizer that had not stepped yet, or one buffer per parameter).
pub(crate) fn read_momentum<B: Backend>(
    be: &B,
    file: &SafeTensors,
    params: &[(String, Vec<usize>)],
) -> Result<Vec<Tensor<B>>> {
    if file.entries.is_empty() {
        return Ok(Vec::new());
    }
    let expected: Vec<Expected> = params
        .iter()
        .map(|(name, dims)| Expected {
            name: momentum_name(name),
            dtype: Dtype::F32,
            shape: file_shape(dims),
        })
        .collect();
    check_keys(file, &expected)?;
    let mut host = Vec::with_capacity(params.len());
    for (exp, (_, dims)) in expected.iter().zip(params) {
        let entry = file.get(&exp.name).expect("checked present");
        host.push(from_file_layout::<B::Elem>(dims, &file.f32_values(entry)?));
    }
    host.into_iter()
        .zip(params)
        .map(|(values, (_, dims))| Tensor::from_slice(be, dims.as_slice(), &values))
        .collect()
}

/// The momentum buffer of a parameter, as named in `optimizer.safetensors`.
pub(crate) fn momentum_name(param: &str) -> String {
    format!("{param}.momentum_buffer")
}

/// Every expected key present with its dtype and shape, and nothing else: one error listing every
/// problem otherwise.
pub(crate) fn check_keys(file: &SafeTensors, expected: &[Expected]) -> Result<()> {
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for exp in expected {
        match file.get(&exp.name) {
            None => missing.push(exp.name.as_str()),
            Some(entry) => {
                if entry.dtype != exp.dtype {
                    problems.push(format!(
                        "tensor `{}` has dtype {}, expected {}",
                        exp.name, entry.dtype, exp.dtype
                    ));
                } else if entry.shape != exp.shape {
                    problems.push(format!(
                        "tensor `{}` has shape {:?}, expected {:?}",
                        exp.name, entry.shape, exp.shape
                    ));
                }
            }
        }
    }
    let known: HashSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let mut unexpected: Vec<&str> = file
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    unexpected.sort_unstable();
    if !missing.is_empty() {
        problems.insert(
            0,
            format!("missing {} tensor(s): {}", missing.len(), list(&missing)),
        );
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "unexpected {} tensor(s) this model does not have: {}",
            unexpected.len(),
            list(&unexpected)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems.len().min(8);
    let mut message = problems[..shown].join("; ");
    if problems.len() > shown {
        message.push_str(&format!("; and {} more problem(s)", problems.len() - shown));
    }
    Err(Error::Checkpoint {
        path: file.path.clone(),
        message,
    })
}

fn list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    s
}
