//! resnet-cuda: the residual networks of He et al. (2015), trained on hand-written kernels.
//!
//! The model code ([`nn`], [`models`]) is generic over a [`backend::Backend`]; [`ops`] is the checked
//! door to the backends' kernels.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod dist;
pub mod error;
pub mod eval;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod plot;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
