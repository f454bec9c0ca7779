//! resnet-cuda: the residual networks of He et al. (2015), trained on hand-written kernels.
//!
//! The model code ([`nn`], [`models`]) is generic over a [`backend::Backend`]; [`ops`] is the checked
//! door to the backends' kernels.

pub mod backend;
pub mod error;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;

pub use error::{Error, Result};
