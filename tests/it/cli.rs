//! The command line end to end, on small synthetic runs: wiring, metrics, checkpoints, exact resume,
//! `--init`, eval against the run's own log, divergence, and every bad input giving a one-line error
//! without a backtrace.

use std::path::Path;
use std::process::Output;

use resnet_cuda::checkpoint::safetensors::SafeTensors;
use serde_json::Value;

/// A tiny synthetic set: 256 training and 96 test images, batch 16.
const DATA: &str = "synthetic:256:96";

use crate::common::runs;
use crate::common::runs::cli;
use runs::{interrupt_once_training, latest, metrics, stderr};

fn train(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap().to_string();
    let mut args = vec!["train", "--log-every", "1", "--out", &out];
    // Defaults a test may override.
    for (flag, value) in [
        ("--model", "resnet8"),
        ("--batch-size", "16"),
        ("--data", DATA),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    cli().args(&args).output().expect("the binary runs")
}

fn tensor(checkpoint: &Path, name: &str) -> Vec<f32> {
    let file = SafeTensors::read(&checkpoint.join("model.safetensors")).unwrap();
    file.f32_values(file.get(name).unwrap()).unwrap()
}

/// Asserts a failure with a short message naming `culprit`, and no panic.
fn assert_clean_failure(o: &Output, culprit: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        err.contains(culprit),
        "stderr should name {culprit:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "a panic: {err}"
    );
    let first_error_line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(
        first_error_line.contains(culprit),
        "the error line should name {culprit:?}: {err}"
    );
    // One cause said once: an error that is both in the message and the chain's next link reads
    // "x: No such file or directory (os error 2): No such file or directory (os error 2)".
    let parts: Vec<&str> = first_error_line.split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "the error line repeats itself: {err}"
    );
}

#[test]
fn a_short_run_logs_evaluates_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(
        &run,
        &["--iters", "6", "--eval-every", "3", "--save-every", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .lines()
            .next()
            .unwrap()
            .starts_with("device: cpu"),
        "{}",
        stderr(&o)
    );
    let m = metrics(&run);
    let train_iters: Vec<u64> = m
        .iter()
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["iter"].as_u64().unwrap())
        .collect();
    assert_eq!(train_iters, [1, 2, 3, 4, 5, 6]);
    for v in m.iter().filter(|v| v.get("loss").is_some()) {
        for key in ["epoch", "lr", "loss", "train_err", "img_per_s"] {
            assert!(
                v.get(key).is_some_and(|x| x.is_number()),
                "missing {key} in {v}"
            );
        }
    }
    let evals: Vec<u64> = m
        .iter()
        .filter(|v| v.get("test_err").is_some())
        .map(|v| v["iter"].as_u64().unwrap())
        .collect();
    assert_eq!(evals, [3, 6]);
    assert!(m.iter().any(|v| v.get("test_top5_err").is_some()));
    assert_eq!(latest(&run), run.join("checkpoints/iter-00000006"));
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "preprocess.safetensors",
        "run_state.json",
    ] {
        assert!(latest(&run).join(f).exists(), "{f} missing");
    }
    // The synthetic default schedule divides the rate at 50% and 75% of the run.
    let lrs: Vec<f64> = m.iter().filter_map(|v| v.get("lr")?.as_f64()).collect();
    assert_eq!(lrs[0], 0.1);
    assert!((lrs[5] - 0.001).abs() < 1e-12, "{lrs:?}");
}

#[test]
fn resume_reproduces_the_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
    let common = [
        "--lr-milestones",
        "3,5",
        "--eval-every",
        "100",
        "--save-every",
        "100",
    ];
    let o = train(&whole, &[&["--iters", "6"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(&split, &[&["--iters", "3"][..], &common].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli()
        .args(["train", "--resume", split.to_str().unwrap(), "--iters", "6"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));

    let losses = |run: &Path| -> Vec<(u64, f64)> {
        metrics(run)
            .iter()
            .filter(|v| v.get("loss").is_some())
            .map(|v| (v["iter"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(losses(&whole), losses(&split), "losses differ");
    let (a, b) = (latest(&whole), latest(&split));
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap(),
        "weights differ after resuming"
    );
    assert_eq!(
        std::fs::read(a.join("optimizer.safetensors")).unwrap(),
        std::fs::read(b.join("optimizer.safetensors")).unwrap(),
        "momentum differs after resuming"
    );
}

#[test]
fn init_loads_weights_only_and_eval_reproduces_the_logged_error() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let o = train(&first, &["--iters", "4", "--eval-every", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // eval on the checkpoint gives exactly the test error the run logged at its last iteration.
    let o = cli()
        .args([
            "eval",
            "--checkpoint",
            latest(&first).to_str().unwrap(),
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let logged = metrics(&first)
        .iter()
        .rev()
        .find_map(|v| v.get("test_err")?.as_f64())
        .unwrap();
    assert_eq!(r["top1_err"].as_f64().unwrap(), logged);
    assert_eq!(r["images"].as_u64().unwrap(), 96);

    // --init: the weights of the first run, but a fresh run (iteration 0, fresh momentum).
    let init = latest(&first);
    let tiny_step = [
        "--iters",
        "1",
        "--lr",
        "1e-12",
        "--weight-decay",
        "0",
        "--init",
        init.to_str().unwrap(),
    ];
    let o = train(&second, &tiny_step);
    assert!(o.status.success(), "{}", stderr(&o));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(latest(&second).join("run_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["iteration"], 1);
    let (w0, w1) = (
        tensor(&init, "layer1.0.conv1.weight"),
        tensor(&latest(&second), "layer1.0.conv1.weight"),
    );
    let max_diff = w0
        .iter()
        .zip(&w1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff < 1e-6,
        "weights moved by {max_diff} with lr 1e-12: --init did not load them"
    );
}

#[test]
fn a_diverging_run_stops_with_the_iteration_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // lr 1e30 with weight decay overflows the weights to infinity within two steps.
    let o = train(
        &run,
        &[
            "--iters",
            "20",
            "--lr",
            "1e30",
            "--save-every",
            "1",
            "--eval-every",
            "100",
        ],
    );
    assert_clean_failure(&o, "iteration");
    assert!(stderr(&o).contains("diverged"), "{}", stderr(&o));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(latest(&run).join("run_state.json")).unwrap(),
    )
    .unwrap();
    let saved = state["iteration"].as_u64().unwrap();
    assert!(
        (1..20).contains(&saved),
        "latest checkpoint at iteration {saved}"
    );
    assert!(
        stderr(&o).contains(&format!("iteration {}", saved + 1)),
        "{}",
        stderr(&o)
    );
}

/// `--device cuda` trains where a GPU and kernels for it are present, and otherwise stops with one
/// line that says why (here: no driver, or a binary built without nvcc).
#[test]
fn device_cuda_trains_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        &dir.path().join("run"),
        &["--device", "cuda", "--iters", "2", "--eval-every", "2"],
    );
    if resnet_cuda::backend::gpu::cuda_info::gpu_ready(0) {
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).starts_with("device: cuda:0"), "{}", stderr(&o));
    } else {
        assert_clean_failure(&o, "--device cuda");
        assert_eq!(
            stderr(&o)
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{}",
            stderr(&o)
        );
    }
}

/// `eval --device emu` runs the checkpoint through the CUDA kernels (in the emulator) and agrees with
/// the CPU: the same images, and top-1 errors at most one image apart (an argmax between two logits
/// closer than the backends' rounding differences may fall either way). `--device cuda` evaluates
/// on a GPU where there is one, and is otherwise a one-line error.
#[test]
fn eval_runs_on_the_device_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(train(&run, &["--iters", "2", "--eval-every", "2"])
        .status
        .success());
    let eval = |device: &str| {
        cli()
            .args(["eval", "--checkpoint", latest(&run).to_str().unwrap()])
            .args(["--batch-size", "32", "--json", "--device", device])
            // f32 on both, so that only summation order separates them.
            .args(["--precision", "f32"])
            .output()
            .unwrap()
    };
    let result = |o: &Output| -> Value {
        assert!(o.status.success(), "{}", stderr(o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (cpu, emu) = (result(&eval("cpu")), result(&eval("emu")));
    assert_eq!(cpu["images"], emu["images"]);
    let images = cpu["images"].as_f64().unwrap();
    let gap = (cpu["top1_err"].as_f64().unwrap() - emu["top1_err"].as_f64().unwrap()).abs();
    assert!(gap * images <= 1.0 + 1e-9, "cpu {cpu} emu {emu}");
    let o = eval("cuda");
    if resnet_cuda::backend::gpu::cuda_info::gpu_ready(0) {
        result(&o);
    } else {
        assert_clean_failure(&o, "--device cuda");
    }
}

/// `--precision`: a type the engine does not have, and bf16 on the CPU (which computes in f32 only),
/// are one-line errors that name the flag.
#[test]
fn precisions_the_device_cannot_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = train(&out, &["--precision", "fp8", "--device", "cpu"]);
    assert_clean_failure(&o, "--precision fp8");
    let o = train(&out, &["--precision", "bf16", "--device", "cpu"]);
    assert_clean_failure(&o, "--precision bf16");
    assert!(stderr(&o).contains("f32 only"), "{}", stderr(&o));
}

/// `--conv-tuning on` where there is nothing to choose between (the CPU backend, an f32 run on a
/// GPU backend) is a one-line error naming the flag, for `train` and `bench`, before a run folder
/// exists.
#[test]
fn conv_tuning_where_nothing_is_tuned_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = train(&out, &["--conv-tuning", "on", "--device", "cpu"]);
    assert_clean_failure(&o, "--conv-tuning on");
    assert!(stderr(&o).contains("CPU backend"), "{}", stderr(&o));
    let o = train(
        &out,
        &[
            "--conv-tuning",
            "on",
            "--device",
            "emu",
            "--precision",
            "f32",
        ],
    );
    assert_clean_failure(&o, "--conv-tuning on");
    assert!(stderr(&o).contains("f32"), "{}", stderr(&o));
    assert!(!out.exists(), "a refused run made its folder");
    let o = cli()
        .args(["bench", "--device", "cpu", "--conv-tuning", "on"])
        .output()
        .unwrap();
    assert_clean_failure(&o, "--conv-tuning on");
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let run = |extra: &[&str]| train(&out, extra);
    assert_clean_failure(&run(&["--model", "resnet21"]), "resnet21");
    assert_clean_failure(&run(&["--model", "vgg16"]), "vgg16");
    assert_clean_failure(&run(&["--batch-size", "0"]), "--batch-size");
    assert_clean_failure(&run(&["--lr", "-1"]), "--lr");
    assert_clean_failure(&run(&["--iters", "0"]), "--iters");
    assert_clean_failure(&run(&["--data", "mnist"]), "mnist");
    assert_clean_failure(&run(&["--data", "synthetic:10:0"]), "at least 1, got \"0\"");
    assert_clean_failure(&run(&["--gpus", "2"]), "--gpus 2");
    assert_clean_failure(&run(&["--shortcut", "C"]), "--shortcut");
    // An --out below a regular file cannot be created.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let o = train(&file.join("run"), &["--iters", "1"]);
    assert_clean_failure(&o, file.to_str().unwrap());

    let missing = dir.path().join("missing");
    let o = cli()
        .args(["eval", "--checkpoint", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, missing.to_str().unwrap());
    let o = cli()
        .args(["train", "--resume", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, missing.to_str().unwrap());
    let o = train(&out, &["--data", &format!("cifar10:{}", missing.display())]);
    assert_clean_failure(&o, "data_batch_1.bin");
    // A file, and a folder without a run state, are not checkpoints.
    let o = cli()
        .args(["eval", "--checkpoint", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, "not a checkpoint folder");
    let o = cli()
        .args(["eval", "--checkpoint", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, "run_state.json");

    // A corrupt checkpoint: truncate the model file of a real one.
    let good = dir.path().join("good");
    assert!(train(&good, &["--iters", "1"]).status.success());
    let model = latest(&good).join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let o = cli()
        .args(["eval", "--checkpoint", latest(&good).to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&o, "model.safetensors");
    // A run folder that already holds a run is not overwritten.
    assert_clean_failure(&train(&good, &["--iters", "1"]), "--resume");
}

#[test]
fn ctrl_c_finishes_the_step_saves_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = interrupt_once_training(
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("resnet-cuda"))
            .args([
                "train",
                "--model",
                "resnet8",
                "--data",
                DATA,
                "--batch-size",
                "16",
                "--iters",
                "100000",
            ])
            .args([
                "--log-every",
                "1",
                "--eval-every",
                "100000",
                "--save-every",
                "100000",
                "--out",
            ])
            .arg(&run),
        &run,
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(latest(&run).join("run_state.json")).unwrap(),
    )
    .unwrap();
    let logged = metrics(&run)
        .iter()
        .filter_map(|v| v.get("loss").map(|_| v["iter"].as_u64().unwrap()))
        .max()
        .unwrap();
    assert_eq!(
        state["iteration"].as_u64().unwrap(),
        logged,
        "the checkpoint holds the last finished step"
    );
}

/// `--device emu` trains through the CUDA kernels in the host emulator. With `--precision f32` its
/// losses follow the CPU backend's to 1e-4 relative after three SGD steps (f32 kernels against the
/// f32 reference); in bf16, the emulator's default, to 2e-2 (bf16 activations: see
/// tests/mixed_precision.rs), and the run says it computes in bf16.
#[test]
fn the_emulator_device_trains_like_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let losses = |device: &str, precision: Option<&str>| -> Vec<f64> {
        let run = dir
            .path()
            .join(format!("{device}-{}", precision.unwrap_or("default")));
        let mut extra = vec![
            "--device",
            device,
            "--data",
            "synthetic:64:32",
            "--batch-size",
            "8",
            "--iters",
            "3",
        ];
        if let Some(p) = precision {
            extra.extend(["--precision", p]);
        }
        let o = train(&run, &extra);
        assert!(o.status.success(), "{}", stderr(&o));
        let first_line = stderr(&o).lines().next().unwrap_or_default().to_string();
        assert!(
            first_line.starts_with(&format!("device: {device}")),
            "{first_line}"
        );
        if device == "emu" {
            let said = precision.unwrap_or("bf16");
            assert!(first_line.ends_with(said), "{first_line}");
        }
        metrics(&run)
            .iter()
            .filter_map(|v| v.get("loss")?.as_f64())
            .collect()
    };
    let cpu = losses("cpu", None);
    assert_eq!(cpu.len(), 3);
    for (precision, rel) in [(Some("f32"), 1e-4), (None, 2e-2)] {
        let emu = losses("emu", precision);
        assert_eq!(emu.len(), 3);
        for (c, e) in cpu.iter().zip(&emu) {
            assert!(
                (c - e).abs() <= rel * c.abs(),
                "{precision:?}: cpu {cpu:?} vs emu {emu:?}"
            );
        }
    }
}
