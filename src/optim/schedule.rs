//! Learning-rate schedules of the paper, with their state kept serialisable so a resumed run continues
//! exactly.
//!
//! - step: `lr = base / 10^k` where `k` counts the milestones (iterations) passed (CIFAR: 32k, 48k);
//! - plateau: divide by 10 whenever the test error has not improved for `patience` evaluations
//!   (ImageNet: "divided by 10 when the error plateaus");
//! - warm-up (ResNet-110): `warmup_lr` until the training error falls below 80%, for at most
//!   `warmup_iters` iterations, then the schedule above.

use serde::{Deserialize, Serialize};

/// Training error below which the warm-up ends (the paper's 80%).
pub const WARMUP_EXIT_ERROR: f64 = 0.8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScheduleKind {
    Step { milestones: Vec<u64> },
    Plateau { patience: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub kind: ScheduleKind,
    pub warmup_lr: f64,
    pub warmup_iters: u64,
    /// Whether the warm-up has ended (by the error criterion or the iteration cap).
    pub warmup_done: bool,
    /// Plateau state: divisions by 10 so far, best test error, evaluations without improvement.
    pub plateau_drops: u32,
    pub best_test_err: Option<f64>,
    pub evals_without_improvement: u32,
}

impl LrSchedule {
    pub fn new(base_lr: f64, kind: ScheduleKind, warmup_lr: f64, warmup_iters: u64) -> Self {
        LrSchedule {
            base_lr,
            kind,
            warmup_lr,
            warmup_iters,
            warmup_done: warmup_iters == 0,
            plateau_drops: 0,
            best_test_err: None,
            evals_without_improvement: 0,
        }
    }

    /// The learning rate for iteration `iter` (0-based).
    pub fn lr_at(&mut self, iter: u64) -> f64 {
        if !self.warmup_done && iter >= self.warmup_iters {
            self.warmup_done = true;
        }
        if !self.warmup_done {
            return self.warmup_lr;
        }
        let drops = match &self.kind {
            ScheduleKind::Step { milestones } => {
                milestones.iter().filter(|&&m| iter >= m).count() as i32
            }
            ScheduleKind::Plateau { .. } => self.plateau_drops as i32,
        };
        self.base_lr * 10f64.powi(-drops)
    }

    /// Reports the training error of the last logged interval: ends the warm-up once it is below 80%.
    pub fn observe_train_error(&mut self, train_err: f64) {
        if !self.warmup_done && train_err < WARMUP_EXIT_ERROR {
            self.warmup_done = true;
        }
    }

    /// Reports a test error; the plateau schedule divides the rate when it stops improving.
    pub fn observe_test_error(&mut self, test_err: f64) {
        let ScheduleKind::Plateau { patience } = self.kind else {
            return;
        };
        match self.best_test_err {
            Some(best) if test_err >= best => {
                self.evals_without_improvement += 1;
                if self.evals_without_improvement >= patience {
                    self.plateau_drops += 1;
                    self.evals_without_improvement = 0;
                }
            }
            _ => {
                self.best_test_err = Some(test_err);
                self.evals_without_improvement = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_schedule_divides_at_milestones() {
        let mut s = LrSchedule::new(
            0.1,
            ScheduleKind::Step {
                milestones: vec![32_000, 48_000],
            },
            0.0,
            0,
        );
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(31_999), 0.1);
        assert!((s.lr_at(32_000) - 0.01).abs() < 1e-15);
        assert!((s.lr_at(48_000) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn warmup_ends_at_80_percent_error_or_cap() {
        let mut s = LrSchedule::new(0.1, ScheduleKind::Step { milestones: vec![] }, 0.01, 400);
        assert_eq!(s.lr_at(0), 0.01);
        s.observe_train_error(0.85);
        assert_eq!(s.lr_at(100), 0.01);
        s.observe_train_error(0.79);
        assert_eq!(s.lr_at(101), 0.1);
        let mut capped = LrSchedule::new(0.1, ScheduleKind::Step { milestones: vec![] }, 0.01, 400);
        assert_eq!(capped.lr_at(399), 0.01);
        assert_eq!(capped.lr_at(400), 0.1);
    }

    #[test]
    fn plateau_divides_after_patience_evaluations() {
        let mut s = LrSchedule::new(0.1, ScheduleKind::Plateau { patience: 2 }, 0.0, 0);
        s.observe_test_error(0.5);
        s.observe_test_error(0.4);
        s.observe_test_error(0.45);
        assert_eq!(s.lr_at(10), 0.1);
        s.observe_test_error(0.41);
        assert!((s.lr_at(11) - 0.01).abs() < 1e-15);
    }
}
