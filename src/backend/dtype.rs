//! Element types of device buffers, and the precision a run computes in.
//!
//! Why a runtime element type on the buffer, rather than a second element type on [`Backend`]: the
//! layers, the trainer, checkpoints and the data-parallel code are generic over one `Backend` and
//! should not have to know which of their tensors are bf16. With the type on the buffer, a layer
//! allocates its tensors as today; the backend decides, op by op, which type it writes (activations and
//! their gradients in the activation type, everything else in f32), and [`crate::ops`] checks that each
//! op's inputs have a type the op accepts, naming the tensor at fault. Uploads and downloads stay in the
//! backend's `Elem` (f32): a bf16 buffer converts on the way, so tests and checkpoints see f32 values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What one element of a buffer is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    /// bfloat16: f32's exponent range with an 8-bit significand; rounded to nearest even from f32.
    Bf16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F32 => 4,
            DType::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The precision a run computes in (`--precision`).
///
/// `Bf16` is mixed precision as PyTorch's autocast defines it for convolutional nets: activations and
/// their gradients stored in bf16, convolutions on bf16 operands (the weights through a bf16 copy of the
/// f32 master) with f32 accumulation; master weights, gradients, momentum, batch-norm statistics and
/// parameters, the classifier and the loss in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The element type activations and their gradients are stored in.
    pub fn activation_dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::Bf16,
        }
    }

    pub fn name(self) -> &'static str {
        self.activation_dtype().name()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::Config(format!(
                "--precision {other}: expected bf16 or f32"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_and_names_its_activation_type() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!(Precision::Bf16.activation_dtype().size(), 2);
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("--precision fp16"), "{err}");
    }
}
