//! What the CLI tests need to start the binary and to look at a run: its stderr, its `latest`
//! checkpoint, its metrics, and a training process interrupted by Ctrl-C once it is under way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `resnet-cuda` binary with its thread count pinned: a run's results are deterministic per
/// thread count, so every run of a test uses the same.
pub fn cli() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("resnet-cuda").expect("the binary is built");
    cmd.env("RAYON_NUM_THREADS", "2");
    cmd
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The checkpoint folder the run's `latest` link names.
pub fn latest(run: &Path) -> PathBuf {
    run.join(std::fs::read_link(run.join("latest")).expect("latest names a checkpoint"))
}

/// Every line of the run's `metrics.jsonl`.
pub fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts `train` (whose run folder is `run`), waits until it has logged two steps, sends it SIGINT
/// and returns how it ended.
pub fn interrupt_once_training(train: &mut Command, run: &Path) -> Output {
    let child = train.stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < 2 {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}
