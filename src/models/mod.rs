//! The ResNet family and its plain twins, built from a name such as `resnet20` or `resnet50`.

mod network;
mod spec;

pub use network::Network;
pub use spec::{BlockKind, Family, ModelConfig, Variant};
