//! Per-kernel device times: every launch timed by itself, for the benchmark's table of where a
//! step's GPU time goes (`resnet-cuda bench`, "time per kernel").

use std::collections::BTreeMap;

use serde::Serialize;

/// One launch's time on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub ms: f64,
}

/// The launches of one kernel over some steps, per step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub calls_per_step: f64,
    pub ms_per_step: f64,
}

/// `times` (over `steps` steps) summed by kernel, per step, the most expensive first (ties by name,
/// so the order is the same every run).
pub fn kernel_rows(times: &[KernelTime], steps: usize) -> Vec<KernelRow> {
    let mut by_kernel: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for t in times {
        let entry = by_kernel.entry(&t.kernel).or_default();
        entry.0 += 1;
        entry.1 += t.ms;
    }
    let steps = steps.max(1) as f64;
    let mut rows: Vec<KernelRow> = by_kernel
        .into_iter()
        .map(|(kernel, (calls, ms))| KernelRow {
            kernel: kernel.to_string(),
            calls_per_step: calls as f64 / steps,
            ms_per_step: ms / steps,
        })
        .collect();
    rows.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_by_kernel_per_step_most_expensive_first() {
        let t = |kernel: &str, ms| KernelTime {
            kernel: kernel.into(),
            ms,
        };
        let times = [
            t("a", 1.0),
            t("b", 3.0),
            t("a", 1.5),
            t("c", 0.5),
            t("a", 0.5),
        ];
        let rows = kernel_rows(&times, 2);
        let kernels: Vec<&str> = rows.iter().map(|r| r.kernel.as_str()).collect();
        assert_eq!(kernels, ["a", "b", "c"]);
        assert_eq!(rows[0].calls_per_step, 1.5);
        assert_eq!(rows[0].ms_per_step, 1.5);
        assert_eq!(rows[1].ms_per_step, 1.5);
        assert_eq!(rows[2].calls_per_step, 0.5);
    }
}
