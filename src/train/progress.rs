//! Progress reporting: an `indicatif` bar when stderr is a terminal, plain log lines otherwise, and
//! `metrics.jsonl` in the run folder (one JSON object per logged interval and per evaluation).

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::error::{io_error, Result};

/// Training statistics accumulated over one logging interval.
#[derive(Default)]
pub struct Interval {
    pub loss_sum: f64,
    pub wrong: usize,
    pub images: usize,
    pub steps: usize,
    pub seconds: f64,
}

impl Interval {
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }

    pub fn train_err(&self) -> f64 {
        self.wrong as f64 / self.images.max(1) as f64
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

pub struct Progress {
    bar: Option<ProgressBar>,
    metrics: File,
    metrics_path: std::path::PathBuf,
}

impl Progress {
    /// Opens (appending, so a resumed run continues the same file) `metrics.jsonl` in `run_dir`.
    pub fn new(run_dir: &Path, start_iter: u64, total_iters: u64) -> Result<Self> {
        let metrics_path = run_dir.join("metrics.jsonl");
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(io_error(&metrics_path))?;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total_iters);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .expect("a valid template"),
            );
            bar.set_position(start_iter);
            bar
        });
        Ok(Progress {
            bar,
            metrics,
            metrics_path,
        })
    }

    /// Prints a line above the bar (or to stderr without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn advance(&self, iter: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(iter);
        }
    }

    fn append(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.metrics, "{value}").map_err(io_error(&self.metrics_path))
    }

    /// Logs one training interval ending at iteration `iter` (1-based count of steps done).
    pub fn log_train(&mut self, iter: u64, epoch: u64, lr: f64, s: &Interval) -> Result<()> {
        let msg = format!(
            "iter {iter} epoch {epoch} lr {lr:.4} loss {:.4} train err {:.2}% {:.0} img/s",
            s.loss(),
            100.0 * s.train_err(),
            s.images_per_second()
        );
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None => eprintln!("{msg}"),
        }
        self.append(json!({
            "iter": iter, "epoch": epoch, "lr": lr, "loss": s.loss(),
            "train_err": s.train_err(), "img_per_s": s.images_per_second(),
        }))
    }

    pub fn log_eval(&mut self, iter: u64, top1_err: f64, top5_err: f64) -> Result<()> {
        self.println(&format!(
            "iter {iter}: test error {:.2}% (top-5 {:.2}%)",
            100.0 * top1_err,
            100.0 * top5_err
        ));
        self.append(json!({ "iter": iter, "test_err": top1_err, "test_top5_err": top5_err }))
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
