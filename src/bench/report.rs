//! The benchmark's result: a text table for people and one JSON object for scripts.

use std::fmt::Write;

use serde::Serialize;

use super::profiled::{FamilyTimes, OpFamily};
use super::BenchConfig;
use crate::backend::{ConvTuningRecord, DeviceCounts, KernelRow, Precision};
use crate::models::Variant;

/// Figures of one `resnet-cuda bench` run. Times in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// `paper` or `torchvision` (where the bottleneck nets downsample; see `--variant`).
    pub variant: String,
    /// The backend's own name, such as `cpu-f32`.
    pub device: String,
    /// `bf16` (mixed precision) or `f32` (see `--precision`).
    pub precision: String,
    pub threads: usize,
    pub batch_size: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Median over the timed steps.
    pub ms_per_step: f64,
    pub min_ms_per_step: f64,
    /// `batch_size * 1000 / ms_per_step`.
    pub images_per_sec: f64,
    /// Every timed step, in order.
    pub step_ms: Vec<f64>,
    /// Process CPU time (all threads) per timed step, mean; `None` where the OS does not say.
    pub cpu_ms_per_step: Option<f64>,
    /// `batch_size * 1000 * threads / cpu_ms_per_step`: the throughput if every thread had a core to
    /// itself, an estimate for a shared machine. It errs low: CPU time also counts the threads'
    /// spinning while they wait for work.
    pub cpu_bound_images_per_sec: Option<f64>,
    /// Kernel launches the host issued per timed step, one by one (`None` on the CPU; 0 when the
    /// step replays a CUDA graph).
    pub kernel_launches_per_step: Option<f64>,
    /// Captured-graph replays per timed step (`None` on the CPU): 1 with `--cuda-graph on`.
    pub graph_replays_per_step: Option<f64>,
    /// Kernels (and on a GPU, graph copy and memset nodes) a timed step ran, one by one or inside
    /// its graph: the eager step's launch count (`None` on the CPU).
    pub kernels_per_step: Option<f64>,
    /// Whether the timed steps replayed a captured graph.
    pub cuda_graph: bool,
    /// Times per timed step the host waited for the device inside the step (synchronisations and
    /// device-to-host reads such as the loss), not counting the benchmark's own synchronisation that
    /// ends each timed step (`None` on the CPU).
    pub host_syncs_per_step: Option<f64>,
    /// Device allocations per timed step (`None` on the CPU).
    pub allocations_per_step: Option<f64>,
    /// Per op family, per step, from the separate synchronised pass.
    pub per_layer_type_ms: FamilyTimes,
    pub profile_iters: usize,
    /// Per kernel, from the same pass, each launch timed on the device by itself (a GPU backend;
    /// `None` on the CPU; on the emulator, host time), the most expensive first.
    pub per_kernel: Option<Vec<KernelRow>>,
    /// The sum of `per_kernel`'s times: the device's busy time in a step, without the gaps between
    /// kernels, which `ms_per_step` includes.
    pub kernel_ms_per_step: Option<f64>,
    /// The 1, 5 and 15 minute load averages when the run ended (`None` where unknown): on a shared
    /// machine the figures mean little without it.
    pub load_average: Option<[f64; 3]>,
    /// What the timed backend's convolution tuning timed and kept (`--conv-tuning on` on a GPU
    /// backend), in the order it tuned; empty otherwise.
    pub conv_tuning: Vec<ConvTuningRecord>,
}

/// What the separate synchronised pass measured, per step.
pub(super) struct Breakdown {
    pub per_layer_type_ms: FamilyTimes,
    /// Each kernel's launches, timed one by one (a GPU backend).
    pub per_kernel: Option<Vec<KernelRow>>,
}

/// The system load averages from `/proc/loadavg` (Linux only).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

impl BenchReport {
    pub(super) fn new(
        cfg: &BenchConfig,
        precision: Precision,
        device: String,
        step_ms: Vec<f64>,
        cpu_ms_per_step: Option<f64>,
        step_counts: Option<DeviceCounts>,
        breakdown: Breakdown,
    ) -> Self {
        let Breakdown {
            per_layer_type_ms,
            per_kernel,
        } = breakdown;
        let steps = step_ms.len().max(1) as f64;
        let per_step = |n: u64| n as f64 / steps;
        let ms_per_step = median(&step_ms);
        let threads = rayon::current_num_threads();
        BenchReport {
            model: cfg.model.clone(),
            variant: cfg.variant.name().to_string(),
            device,
            precision: precision.name().to_string(),
            threads,
            batch_size: cfg.batch_size,
            warmup: cfg.warmup,
            iters: cfg.iters,
            ms_per_step,
            min_ms_per_step: step_ms.iter().copied().fold(f64::INFINITY, f64::min),
            images_per_sec: cfg.batch_size as f64 * 1e3 / ms_per_step,
            step_ms,
            cpu_ms_per_step,
            cpu_bound_images_per_sec: cpu_ms_per_step
                .filter(|&ms| ms > 0.0)
                .map(|ms| cfg.batch_size as f64 * 1e3 * threads as f64 / ms),
            kernel_launches_per_step: step_counts.map(|c| per_step(c.launches)),
            graph_replays_per_step: step_counts.map(|c| per_step(c.graph_launches)),
            kernels_per_step: step_counts.map(|c| per_step(c.launches + c.graph_nodes)),
            cuda_graph: step_counts.is_some_and(|c| c.graph_launches > 0),
            host_syncs_per_step: step_counts.map(|c| per_step(c.host_syncs)),
            allocations_per_step: step_counts.map(|c| per_step(c.allocations)),
            per_layer_type_ms,
            profile_iters: cfg.profile_iters,
            kernel_ms_per_step: per_kernel
                .as_ref()
                .map(|rows| rows.iter().map(|r| r.ms_per_step).sum()),
            per_kernel,
            load_average: load_average(),
            conv_tuning: Vec::new(),
        }
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let load = match self.load_average {
            Some([a, b, c]) => format!("load average {a:.2}, {b:.2}, {c:.2}"),
            None => "load average unknown".into(),
        };
        // The default (paper) variant goes unsaid, as in `summary`.
        let model = if self.variant == Variant::Paper.name() {
            self.model.clone()
        } else {
            format!("{} ({} variant)", self.model, self.variant)
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{model} training step, batch {}, on {} ({} CPU threads; {load})",
            self.batch_size, self.device, self.threads
        );
        let _ = writeln!(
            out,
            "  {:.1} ms/step (median of {} steps after {} warm-up; min {:.1} ms)  {:.1} images/s",
            self.ms_per_step, self.iters, self.warmup, self.min_ms_per_step, self.images_per_sec
        );
        if let (Some(cpu), Some(rate)) = (self.cpu_ms_per_step, self.cpu_bound_images_per_sec) {
            let _ = writeln!(
                out,
                "  process CPU time {cpu:.1} ms/step over {} threads: {rate:.1} images/s if each \
                 thread had a core to itself (an estimate for a shared machine; errs low)",
                self.threads
            );
        }
        if let (Some(launches), Some(syncs), Some(allocs)) = (
            self.kernel_launches_per_step,
            self.host_syncs_per_step,
            self.allocations_per_step,
        ) {
            let graphs = self.graph_replays_per_step.unwrap_or(0.0);
            let kernels = self.kernels_per_step.unwrap_or(launches);
            let _ = writeln!(
                out,
                "  per step: {launches:.0} kernel launches and {graphs:.0} graph replays ({kernels:.0} \
                 kernels in all), {syncs:.0} host synchronisations inside the step, {allocs:.0} \
                 device allocations"
            );
        }
        let _ = writeln!(
            out,
            "time per layer type, ms per step (a separate pass of {} steps that synchronises after \
             every op; it does not slow the figures above):",
            self.profile_iters
        );
        let total = self.per_layer_type_ms.total_ms();
        for family in OpFamily::ALL {
            let ms = self.per_layer_type_ms.get(family);
            let _ = writeln!(
                out,
                "  {:<32} {ms:9.2} ms {:5.1}%",
                family.label(),
                100.0 * ms / total.max(f64::MIN_POSITIVE)
            );
        }
        let _ = writeln!(out, "  {:<32} {total:9.2} ms", "total");
        if let (Some(rows), Some(busy)) = (&self.per_kernel, self.kernel_ms_per_step) {
            self.kernel_table(&mut out, rows, busy);
        }
        if !self.conv_tuning.is_empty() {
            self.tuning_table(&mut out);
        }
        out
    }

    /// The passes where the convolution tuning kept another launch than the plan's, with both
    /// times, and the sums over all tuned passes.
    fn tuning_table(&self, out: &mut String) {
        const SHOWN: usize = 24;
        let records = &self.conv_tuning;
        let changed: Vec<&ConvTuningRecord> =
            records.iter().filter(|r| r.chosen != r.planned).collect();
        let planned: f64 = records.iter().map(|r| r.planned_ms).sum();
        let chosen: f64 = records.iter().map(|r| r.chosen_ms).sum();
        let _ = writeln!(
            out,
            "convolution tuning: {} passes timed, {} on another launch than \
             the plan's; one call of each: {chosen:.3} ms against the plan's {planned:.3} ms",
            records.len(),
            changed.len()
        );
        for r in changed.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} {}: {} {:.3} ms -> {} {:.3} ms ({} candidates)",
                r.pass, r.shape, r.planned, r.planned_ms, r.chosen, r.chosen_ms, r.candidates
            );
        }
        if changed.len() > SHOWN {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists all)",
                changed.len() - SHOWN
            );
        }
        for r in records {
            for failure in &r.failed {
                let _ = writeln!(out, "  left out of {} {}: {failure}", r.pass, r.shape);
            }
        }
    }

    /// The most expensive kernels of a step, each launch timed by itself, and the rest in one line.
    fn kernel_table(&self, out: &mut String, rows: &[KernelRow], busy: f64) {
        const SHOWN: usize = 24;
        let calls: f64 = rows.iter().map(|r| r.calls_per_step).sum();
        let _ = writeln!(
            out,
            "time per kernel, ms per step (the same pass, each launch timed on the device by \
             itself): {calls:.0} launches, {busy:.3} ms busy against {:.3} ms a timed step",
            self.ms_per_step
        );
        let share = |ms: f64| 100.0 * ms / busy.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "  {:<52} {:>6} {:>12} {:>6}",
            "kernel", "calls", "time", "share"
        );
        for r in rows.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {:<52} {:6.1} {:9.3} ms {:5.1}%",
                r.kernel,
                r.calls_per_step,
                r.ms_per_step,
                share(r.ms_per_step)
            );
        }
        if rows.len() > SHOWN {
            let rest = &rows[SHOWN..];
            let ms: f64 = rest.iter().map(|r| r.ms_per_step).sum();
            let n: f64 = rest.iter().map(|r| r.calls_per_step).sum();
            let label = format!("{} other kernels", rest.len());
            let _ = writeln!(out, "  {label:<52} {n:6.1} {ms:9.3} ms {:5.1}%", share(ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
