//! The library's error type: every variant names the tensor, file or setting at fault, so the CLI can
//! print it as one line.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A tensor passed to an op has the wrong shape for the op or for its companions.
    #[error("{op}: tensor `{tensor}` has shape {actual:?}, expected {expected}")]
    Shape {
        op: &'static str,
        tensor: &'static str,
        actual: Vec<usize>,
        expected: String,
    },
    /// An op was given arguments that make no sense (a zero stride, a label out of range, ...).
    #[error("{op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
    /// A model description that cannot be built.
    #[error("model `{model}`: {message}")]
    Model { model: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for the common "this op got a nonsense argument" error.
pub fn invalid(op: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidArgument {
        op,
        message: message.into(),
    }
}
