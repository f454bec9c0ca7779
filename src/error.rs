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
    /// A tensor passed to an op holds an element type the op does not take (see `backend::DType`).
    #[error("{op}: tensor `{tensor}` holds {actual}, expected {expected}")]
    ElementType {
        op: &'static str,
        tensor: &'static str,
        actual: crate::backend::DType,
        expected: String,
    },
    /// An op was given arguments that make no sense (a zero stride, a label out of range, ...).
    #[error("{op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
    /// A file or folder that cannot be read or written. The I/O error is part of the message and
    /// deliberately not the error's `source()`: the CLI prints the chain (`{:#}`), which would say
    /// it twice ("x: No such file or directory (os error 2): No such file or directory (os error 2)").
    #[error("{}: {cause}", path.display())]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    /// A checkpoint that is missing, torn, or does not match the model.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        path: std::path::PathBuf,
        message: String,
    },
    /// A dataset file or record that cannot be used.
    #[error("data {}: {message}", path.display())]
    Data {
        path: std::path::PathBuf,
        message: String,
    },
    /// A training setting that makes no sense (names the flag or field).
    #[error("{0}")]
    Config(String),
    /// A GPU (or the driver behind it) that cannot be used, or a device operation that failed.
    #[error("{device}: {message}")]
    Device { device: String, message: String },
    /// The training loss became NaN or infinite.
    #[error("the loss is {loss} at iteration {iteration}: training diverged (the last good checkpoint is kept)")]
    Diverged { iteration: u64, loss: f64 },
    /// A data-parallel replica failed (an error or a panic); every other replica stops with this too.
    #[error("replica {rank}: {message}")]
    Replica { rank: usize, message: String },
    /// Processes of a multi-process run could not find each other (names the variable or the rank).
    #[error("rendezvous: {0}")]
    Rendezvous(String),
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

/// Wraps an I/O error with the path it concerns.
pub fn io_error(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |cause| Error::Io { path, cause }
}

/// The text a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
