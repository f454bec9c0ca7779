//! What a backend's convolution tuning decided (`RESNET_CONV_TUNING=1` on a GPU backend; see
//! `gpu/conv_tuning.rs`): one record per pass and shape it timed, for `bench` to report.

use serde::Serialize;

/// The timing of one convolution pass of one shape: the plan's launch against the fastest of the
/// candidates, each the median of its timed runs on the device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConvTuningRecord {
    /// The pass with its fusions (`forward_stats`, `backward_data_bn`, ...).
    pub pass: String,
    /// `x [N, H, W, C] w [K, R, S, C] stride s pad p`.
    pub shape: String,
    /// How many launches were timed (the plan's included).
    pub candidates: usize,
    /// The plan's launch (its kernel, and for backward-filter its split: `z4`) and its time.
    pub planned: String,
    pub planned_ms: f64,
    /// The launch kept for the rest of the process and its time.
    pub chosen: String,
    pub chosen_ms: f64,
    /// The candidates left out because a run of theirs failed, each with its error (the plan's
    /// failing fails the call instead).
    pub failed: Vec<String>,
}
