//! Convolution tuning, cuDNN's benchmark mode for the bf16 tensor-core convolutions
//! (`RESNET_CONV_TUNING=1`; off by default). The first time the backend runs a pass of a shape, it
//! times every launch that can compute it (`conv_tc_plan::launch_candidates` /
//! `filter_candidates`: the plan's first) on the call's own operands, one warm-up run then the
//! median of [`TIMED_RUNS`], each run's launches timed on the device by themselves, and keeps the
//! fastest for the rest of the process. The call ends by running the winner once more, so its
//! outputs are the winner's, as every later call's will be. A candidate's outputs never feed its
//! inputs (a pass reads x, w, dy, an addend, BN's saved statistics; it writes y, dx, dw, partials),
//! so running it several times computes the same thing each time.
//!
//! Why off by default: the plan is a pure function of the shape, so a shape computes the same bits
//! on every GPU and in the emulator, run after run. A timed choice depends on the device and on the
//! noise of the measurement, as cuDNN's does: two runs (or two replicas) may pick different tiles
//! and round differently. On, it finds on each GPU the launches a tile sweep would, inside the real
//! step, and `bench` reports what it chose (`Backend::conv_tuning_records`).
//!
//! With `RESNET_CONV_TUNING_FILE=PATH` the choices also go to a file, and a pass the file has a
//! choice for takes it without timing anything (conv_tuning_file.rs): the next process on the
//! machine, a resumed run say, computes the same bits.
//!
//! A pass is not tuned while a graph is being captured (timing makes the host wait, which a capture
//! refuses; the capture records the launch chosen already, or the plan's) nor while kernel timing
//! is on for a profile (whose records the tuner would consume); it is tuned at its next eager call.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::backend::GpuBackend;
use super::conv_plan::ConvShape;
use super::conv_tc_plan::{self as plan, TcFamily, TcFilterLaunch, TcLaunch, TcPass};
use super::driver::Driver;
use crate::backend::ConvTuningRecord;
use crate::error::{Error, Result};

/// Timed runs of each candidate after its warm-up; the median counts.
pub const TIMED_RUNS: usize = 3;

/// `RESNET_CONV_TUNING`: unset, `0` or `off` (the default), `1` or `on`; anything else is an error
/// the first bf16 convolution reports.
pub(super) fn tuning_from_env() -> std::result::Result<bool, String> {
    parse_tuning(std::env::var("RESNET_CONV_TUNING").ok().as_deref())
}

fn parse_tuning(value: Option<&str>) -> std::result::Result<bool, String> {
    match value {
        None | Some("0") | Some("off") => Ok(false),
        Some("1") | Some("on") => Ok(true),
        Some(other) => Err(format!(
            "RESNET_CONV_TUNING={other:?}: expected `1` (time every candidate kernel of each \
             convolution once and keep the fastest) or `0` (the plan's kernels, the default)"
        )),
    }
}

/// The choices made so far, and their records.
#[derive(Default)]
pub(super) struct ConvTuner {
    launches: Mutex<HashMap<(TcPass, ConvShape), TcLaunch>>,
    filters: Mutex<HashMap<(TcPass, ConvShape), TcFilterLaunch>>,
    records: Mutex<Vec<ConvTuningRecord>>,
}

impl ConvTuner {
    pub(super) fn records(&self) -> Vec<ConvTuningRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes over the choices `from` has made (not its records: nothing was timed here), so that
    /// both run the same launches for every pass `from` tuned; the others are still tuned here.
    pub(super) fn adopt(&self, from: &ConvTuner) {
        fn copy<T: Clone>(to: &Mutex<T>, from: &Mutex<T>) {
            let value = from.lock().unwrap_or_else(|e| e.into_inner()).clone();
            *to.lock().unwrap_or_else(|e| e.into_inner()) = value;
        }
        copy(&self.launches, &from.launches);
        copy(&self.filters, &from.filters);
    }
}

/// A launch the tuner can run and name: a single kernel, or a backward-filter's partial kernel and
/// reduce.
pub(super) trait Candidate: Copy {
    /// The plan's launch for `pass` of `shape` (`None`: the plan has no kernel for it).
    fn planned(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Option<Self>;
    /// Every launch for it, the plan's first.
    fn candidates(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Vec<Self>;
    fn kernels(&self) -> impl Iterator<Item = &'static str>;
    fn label(&self) -> String;
    fn cached(tuner: &ConvTuner) -> &Mutex<HashMap<(TcPass, ConvShape), Self>>;
}

impl Candidate for TcLaunch {
    fn planned(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Option<Self> {
        plan::planned_launch(pass, shape, family)
    }
    fn candidates(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Vec<Self> {
        plan::launch_candidates(pass, shape, family)
    }
    fn kernels(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.kernel)
    }
    fn label(&self) -> String {
        self.kernel.to_string()
    }
    fn cached(tuner: &ConvTuner) -> &Mutex<HashMap<(TcPass, ConvShape), Self>> {
        &tuner.launches
    }
}

impl Candidate for TcFilterLaunch {
    fn planned(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Option<Self> {
        plan::planned_filter_launch(pass, shape, family)
    }
    fn candidates(pass: TcPass, shape: &ConvShape, family: TcFamily) -> Vec<Self> {
        plan::filter_candidates(pass, shape, family)
    }
    fn kernels(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.partial.kernel).chain(self.reduce.map(|r| r.kernel))
    }
    fn label(&self) -> String {
        format!("{} z{}", self.partial.kernel, self.splits)
    }
    fn cached(tuner: &ConvTuner) -> &Mutex<HashMap<(TcPass, ConvShape), Self>> {
        &tuner.filters
    }
}

/// `x [N, H, W, C] w [K, R, S, C] stride s pad p`.
fn shape_label(shape: &ConvShape) -> String {
    format!(
        "x {:?} w {:?} stride {} pad {}",
        shape.x, shape.w, shape.geom.stride, shape.geom.pad
    )
}

impl<D: Driver> GpuBackend<D> {
    /// Runs `pass` of `shape` as `run` launches it (a [`TcLaunch`], or a [`TcFilterLaunch`] for
    /// a backward-filter pass): the plan's launch for `family`, or with tuning on the tuned one
    /// (module doc).
    pub(super) fn run_tc_pass<L: Candidate>(
        &self,
        pass: TcPass,
        shape: &ConvShape,
        family: TcFamily,
        run: impl Fn(&L) -> Result<()>,
    ) -> Result<()> {
        if !self.conv_tuning()? {
            let launch = L::planned(pass, shape, family)
                .unwrap_or_else(|| panic!("{}: the plan has no kernel for {shape:?}", pass.name()));
            return run(&launch);
        }
        self.run_tuned(pass, shape, family, run)
    }

    fn conv_tuning(&self) -> Result<bool> {
        self.conv_tuning.clone().map_err(Error::Config)
    }

    fn run_tuned<L: Candidate>(
        &self,
        pass: TcPass,
        shape: &ConvShape,
        family: TcFamily,
        run: impl Fn(&L) -> Result<()>,
    ) -> Result<()> {
        let key = (pass, *shape);
        let cached = L::cached(&self.tuner)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        if let Some(chosen) = cached {
            return run(&chosen);
        }
        // The plan's launch whatever this device has (a missing kernel fails its launch with the
        // driver's error, as untuned), the others where the device has their kernels.
        let candidates: Vec<L> = L::candidates(pass, shape, family)
            .into_iter()
            .enumerate()
            .filter(|(i, c)| *i == 0 || c.kernels().all(|k| self.driver.has_kernel(k)))
            .map(|(_, c)| c)
            .collect();
        let planned = *candidates
            .first()
            .unwrap_or_else(|| panic!("{}: the plan has no kernel for {shape:?}", pass.name()));
        let keep = |chosen: L| {
            L::cached(&self.tuner)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, chosen);
        };
        let file_key = format!("{} {}", pass.name(), shape_label(shape));
        if let Some(file) = &self.tuning_file {
            let kept = file.get(&file_key)?;
            if let Some(chosen) = candidates.iter().find(|c| Some(c.label()) == kept) {
                keep(*chosen);
                return run(chosen);
            }
        }
        let can_time =
            !self.capturing.load(Ordering::Relaxed) && !self.kernel_timing.load(Ordering::Relaxed);
        if !can_time {
            return run(&planned);
        }
        let timed = self.time_candidates(&candidates, &run)?;
        // The plan's launch must run; another that fails to is left out and named in the record.
        let mut times = Vec::with_capacity(candidates.len());
        let mut failed = Vec::new();
        for (i, (c, t)) in candidates.iter().zip(timed).enumerate() {
            match t {
                Ok(ms) => times.push(ms),
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    failed.push(format!("{}: {e}", c.label()));
                    times.push(f64::INFINITY);
                }
            }
        }
        let planned_ms = times[0];
        // The first of the fastest: the plan's launch wins ties.
        let best = (0..candidates.len())
            .min_by(|&a, &b| times[a].total_cmp(&times[b]))
            .expect("the plan's launch is a candidate");
        let chosen = candidates[best];
        run(&chosen)?;
        keep(chosen);
        if let Some(file) = &self.tuning_file {
            file.put(file_key, chosen.label())?;
        }
        self.tuner
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ConvTuningRecord {
                pass: pass.name().to_string(),
                shape: shape_label(shape),
                candidates: candidates.len(),
                planned: planned.label(),
                planned_ms,
                chosen: chosen.label(),
                chosen_ms: times[best],
                failed,
            });
        Ok(())
    }

    /// Each candidate's device time in ms: a warm-up run, then the median of [`TIMED_RUNS`] runs,
    /// a run's launches summed; or the error that stopped it (a launch the device refuses, such
    /// as one asking more shared memory than it has, leaves the stream usable for the next). Kernel
    /// timing is on only for this, and off again after it, error or not.
    fn time_candidates<L: Candidate>(
        &self,
        candidates: &[L],
        run: &impl Fn(&L) -> Result<()>,
    ) -> Result<Vec<Result<f64>>> {
        self.driver.set_kernel_timing(true)?;
        let time = |c: &L| -> Result<f64> {
            let warm_up = run(c);
            // The records of a failed run are dropped with it.
            self.driver.take_kernel_times()?;
            warm_up?;
            let mut runs = [0.0; TIMED_RUNS];
            for ms in &mut runs {
                run(c)?;
                *ms = self.driver.take_kernel_times()?.iter().map(|t| t.ms).sum();
            }
            runs.sort_by(f64::total_cmp);
            Ok(runs[TIMED_RUNS / 2])
        };
        let timed = candidates.iter().map(time).collect();
        self.driver.set_kernel_timing(false)?;
        Ok(timed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tuning_variable_is_off_unless_set_and_refuses_nonsense() {
        assert_eq!(parse_tuning(None), Ok(false));
        assert_eq!(parse_tuning(Some("0")), Ok(false));
        assert_eq!(parse_tuning(Some("off")), Ok(false));
        assert_eq!(parse_tuning(Some("1")), Ok(true));
        assert_eq!(parse_tuning(Some("on")), Ok(true));
        let err = parse_tuning(Some("yes")).unwrap_err();
        assert!(
            err.contains("RESNET_CONV_TUNING") && err.contains("yes"),
            "{err}"
        );
    }
}
