//! Optimisation: SGD with momentum and weight decay, and the paper's learning-rate schedules.

mod schedule;
mod sgd;

pub use schedule::{LrSchedule, ScheduleKind, WARMUP_EXIT_ERROR};
pub use sgd::Sgd;
