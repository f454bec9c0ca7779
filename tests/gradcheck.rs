#[path = "gradcheck/common.rs"]
mod common;
#[path = "gradcheck/kinks.rs"]
mod kinks;
#[path = "gradcheck/layers.rs"]
mod layers;
#[path = "gradcheck/networks.rs"]
mod networks;
#[path = "gradcheck/ops.rs"]
mod ops;
