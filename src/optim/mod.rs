//! Optimisation: SGD with momentum and weight decay.

mod sgd;

pub use sgd::Sgd;
