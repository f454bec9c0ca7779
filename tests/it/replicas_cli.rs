//! `--replicas N` end to end: a failing replica stops the run with its error (and the last good
//! checkpoint survives), a replica run resumes exactly, and checkpoints move between replica counts.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use resnet_cuda::checkpoint::safetensors::SafeTensors;
use serde_json::Value;

use crate::common::runs;
use runs::{interrupt_once_training, latest, metrics, stderr};

fn train(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let out = out.to_str().unwrap();
    let mut cmd = Command::cargo_bin("resnet-cuda").expect("the binary is built");
    cmd.env("RAYON_NUM_THREADS", "2")
        // A hang would otherwise wait half an hour; the runs below take a second.
        .env("RESNET_CUDA_COLLECTIVE_TIMEOUT", "120");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut args = vec!["train", "--log-every", "1", "--out", out];
    // Defaults a test may override.
    for (flag, value) in [
        ("--model", "resnet8"),
        ("--batch-size", "8"),
        ("--data", "synthetic:64:16"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    cmd.args(&args).output().expect("the binary runs")
}

/// Every tensor of a checkpoint's model file (weights, BN statistics), as raw bytes by name.
fn weights(checkpoint: &Path) -> Vec<(String, Vec<u8>)> {
    let file = SafeTensors::read(&checkpoint.join("model.safetensors")).unwrap();
    let mut out: Vec<_> = file
        .entries
        .iter()
        .map(|e| (e.name.clone(), file.bytes(e).to_vec()))
        .collect();
    out.sort();
    out
}

/// Asserts two checkpoints hold the same tensors, bit for bit; names the first that differs.
fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "tensor {name} differs");
    }
}

fn train_iters(run: &Path) -> Vec<u64> {
    metrics(run)
        .iter()
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["iter"].as_u64().unwrap())
        .collect()
}

fn assert_fails_with(o: &Output, expected: &str) {
    assert!(!o.status.success(), "the run succeeded: {}", stderr(o));
    let err = stderr(o);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(last, format!("error: {expected}"), "{err}");
}

#[test]
fn a_failing_replica_stops_the_others_and_the_process_exits_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(
        &run,
        &[
            "--replicas",
            "3",
            "--batch-size",
            "6",
            "--iters",
            "5",
            "--save-every",
            "1",
        ],
        &[("RESNET_CUDA_INJECT_REPLICA_FAULT", "1:2")],
    );
    // The others were released by the failure, not by the collective timeout.
    assert_fails_with(&o, "replica 1: injected fault at iteration 2");
    // Iterations 1 and 2 finished and were saved; the failed third step wrote nothing.
    assert!(
        latest(&run).ends_with("iter-00000002"),
        "{:?}",
        latest(&run)
    );
    assert_eq!(train_iters(&run), vec![1, 2]);
}

#[test]
fn a_panicking_replica_stops_the_others_and_the_process_exits_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        &dir.path().join("run"),
        &["--replicas", "2", "--iters", "4"],
        &[("RESNET_CUDA_INJECT_REPLICA_FAULT", "0:1:panic")],
    );
    assert_fails_with(&o, "replica 0: panicked: injected panic at iteration 1");
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(&dir.path().join("run"), &["--replicas", "3"], &[]);
    assert_fails_with(
        &o,
        "--batch-size: 8 images do not split evenly among --replicas 3",
    );
}

#[test]
fn a_bucket_size_that_is_not_positive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        &dir.path().join("run"),
        &["--replicas", "2", "--bucket-mb", "0"],
        &[],
    );
    assert_fails_with(&o, "--bucket-mb: must be a positive number, got 0");
}

/// Two replicas stopped after 3 steps and resumed reach the same weights as two replicas run
/// straight through, bit for bit; the same checkpoint also continues on one replica, and a
/// one-replica checkpoint continues on two.
#[test]
fn replica_checkpoints_resume_exactly_and_move_between_replica_counts() {
    let dir = tempfile::tempdir().unwrap();
    // Fixed milestones: the default ones scale with --iters, which differs between the runs.
    let common = [
        "--replicas",
        "2",
        "--save-every",
        "3",
        "--eval-every",
        "3",
        "--lr-milestones",
        "4",
    ];
    let straight = dir.path().join("straight");
    let o = train(&straight, &[&common[..], &["--iters", "6"]].concat(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let stopped = dir.path().join("stopped");
    let o = train(&stopped, &[&common[..], &["--iters", "3"]].concat(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let single = dir.path().join("single");
    copy_dir(&stopped, &single);
    let resume = |run: &Path, iters: &str, extra: &[&str]| {
        let run = run.to_str().unwrap();
        let mut args = vec!["--resume", run, "--iters", iters];
        args.extend_from_slice(extra);
        let o = train(Path::new(run), &args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    resume(&stopped, "6", &[]);
    assert_same_weights(&latest(&stopped), &latest(&straight));

    // N -> 1: the two-replica checkpoint continues on one replica from iteration 3.
    resume(&single, "6", &["--replicas", "1"]);
    assert_eq!(train_iters(&single), vec![1, 2, 3, 4, 5, 6]);
    assert!(weights(&latest(&single)) != weights(&latest(&stopped)));
    // 1 -> N: and that one-replica checkpoint continues on two.
    resume(&single, "8", &["--replicas", "2"]);
    assert_eq!(train_iters(&single), vec![1, 2, 3, 4, 5, 6, 7, 8]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), target).unwrap();
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Without enough GPUs, a driver or NCCL (or, for now, the CUDA backend), `--gpus 2` is one line
/// that names the flag and the missing piece, and points at the CPU replicas.
#[test]
fn gpus_beyond_what_is_here_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(&dir.path().join("run"), &["--gpus", "2"], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: --gpus 2: "), "{err}");
    assert!(lines[0].contains("--replicas 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every replica sees the same all-reduced loss, so a diverging run stops on all of them at the same
/// step with the trainer's own error, not a replica failure, and keeps the last good checkpoint.
#[test]
fn diverging_replicas_stop_together_with_the_divergence_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // lr 1e30 with weight decay overflows the weights within a few steps (as in tests/it/cli.rs).
    let extra = [
        "--replicas",
        "2",
        "--iters",
        "20",
        "--lr",
        "1e30",
        "--save-every",
        "1",
        "--eval-every",
        "100",
    ];
    let o = train(&run, &extra, &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the loss is") && last.contains("diverged"),
        "{err}"
    );
    assert!(latest(&run).exists(), "the last good checkpoint is kept");
}

/// Ctrl-C reaches rank 0, which decides for everyone: every replica finishes the step, rank 0 saves,
/// and the process exits 130 with the checkpoint at the last logged step.
#[test]
fn ctrl_c_stops_every_replica_after_the_step_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = interrupt_once_training(
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("resnet-cuda"))
            .env("RAYON_NUM_THREADS", "2")
            .args(["train", "--model", "resnet8", "--data", "synthetic:64:16"])
            .args(["--batch-size", "8", "--replicas", "2", "--iters", "100000"])
            .args([
                "--log-every",
                "1",
                "--eval-every",
                "100000",
                "--save-every",
                "100000",
            ])
            .arg("--out")
            .arg(&run),
        &run,
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(latest(&run).join("run_state.json")).unwrap(),
    )
    .unwrap();
    let logged = *train_iters(&run).last().unwrap();
    assert_eq!(state["iteration"].as_u64().unwrap(), logged);
}

/// A multi-node launch whose environment is wrong is told so before any GPU is looked for.
#[test]
fn gpus_with_a_broken_multi_node_environment_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        &dir.path().join("run"),
        &["--gpus", "2"],
        &[("WORLD_SIZE", "2"), ("RANK", "5"), ("MASTER_ADDR", "node0")],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "error: rendezvous: RANK=5 is not below WORLD_SIZE=2",
        "{err}"
    );
}

/// A torchrun-style launch of two processes is wired into train: on a machine without GPUs (or
/// without NCCL) it stops at the first thing missing, in one line naming it, and never gets as far
/// as the rendezvous (which would wait for the other process).
#[test]
fn a_multi_node_launch_without_gpus_or_nccl_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let launch = [
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29511"),
        ("RESNET_CUDA_NCCL", "/nonexistent/libnccl.so.2"),
        // A rendezvous that starts by mistake fails fast instead of waiting half an hour.
        ("RESNET_CUDA_COLLECTIVE_TIMEOUT", "5"),
    ];
    // One CUDA GPU per process is a multi-process run too.
    for gpus in ["2", "1"] {
        let run = dir.path().join(format!("run{gpus}"));
        let o = train(&run, &["--gpus", gpus, "--device", "cuda"], &launch);
        assert!(!o.status.success());
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        let line = lines[0];
        assert!(line.starts_with(&format!("error: --gpus {gpus}")), "{err}");
        assert!(
            line.contains("CUDA") || line.contains("RESNET_CUDA_NCCL"),
            "names neither the GPU nor NCCL: {err}"
        );
        assert!(
            !err.contains("not wired") && !err.contains("panicked"),
            "{err}"
        );
    }
    // A CPU run inside such a launch (Slurm sets SLURM_NTASKS in every job step) stays a CPU run.
    let o = train(
        &dir.path().join("cpu"),
        &["--device", "cpu", "--iters", "1", "--eval-every", "1"],
        &launch,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}
