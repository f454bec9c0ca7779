//! `resnet-cuda bench` end to end on a tiny problem (resnet8, batch 2): the JSON report carries every
//! field, positive and mutually consistent; the table says how the breakdown was measured; bad flags
//! and missing devices give one-line errors.

use assert_cmd::Command;
use serde_json::Value;

fn bench(args: &[&str]) -> std::process::Output {
    bench_with(&[], args)
}

/// `bench` with the environment variables `env` set.
fn bench_with(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::cargo_bin("resnet-cuda")
        .expect("the binary is built")
        .env("RAYON_NUM_THREADS", "2")
        .envs(env.iter().copied())
        .arg("bench")
        .args(args)
        .output()
        .expect("the binary runs")
}

const TINY: [&str; 12] = [
    "--model",
    "resnet8",
    "--batch-size",
    "2",
    "--device",
    "cpu",
    "--iters",
    "3",
    "--warmup",
    "1",
    "--profile-iters",
    "1",
];

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

#[test]
fn json_report_is_complete_and_consistent() {
    let out = bench(&[&TINY[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    let v: Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(v["model"], "resnet8");
    assert_eq!(v["variant"], "paper");
    assert_eq!(v["device"], "cpu-f32");
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["iters"], 3);
    assert_eq!(v["warmup"], 1);
    assert_eq!(v["profile_iters"], 1);
    assert!(v["threads"].as_u64().unwrap() >= 1);
    // The CPU counts no launches: the keys are there, as null.
    for key in [
        "kernel_launches_per_step",
        "host_syncs_per_step",
        "allocations_per_step",
    ] {
        assert_eq!(v.get(key), Some(&Value::Null), "{key} in {v}");
    }
    // Nothing tunes convolutions on the CPU.
    assert_eq!(v["conv_tuning"], serde_json::json!([]), "{v}");

    let ms = number(&v, "ms_per_step");
    let images = number(&v, "images_per_sec");
    assert!(ms > 0.0 && images > 0.0, "{v}");
    // images/s = batch * 1000 / (ms/step); only float rounding may separate the two.
    let expected = 2.0 * 1000.0 / ms;
    assert!(
        (images - expected).abs() <= 1e-9 * expected,
        "{images} vs {expected}"
    );

    // The headline is the median of the recorded steps, and the minimum is the smallest of them.
    let mut steps: Vec<f64> = v["step_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(steps.len(), 3);
    steps.sort_by(f64::total_cmp);
    assert_eq!(ms, steps[1]);
    assert_eq!(number(&v, "min_ms_per_step"), steps[0]);

    // The CPU-time estimate, where the OS reports CPU time, follows its own formula.
    if let Some(cpu) = v["cpu_ms_per_step"].as_f64() {
        let threads = v["threads"].as_f64().unwrap();
        let rate = number(&v, "cpu_bound_images_per_sec");
        let expected = 2.0 * 1000.0 * threads / cpu;
        assert!(
            cpu > 0.0 && (rate - expected).abs() <= 1e-9 * expected,
            "{v}"
        );
    }

    // Every layer type of resnet8 does some work, so each bucket is strictly positive.
    let per_type = &v["per_layer_type_ms"];
    for key in ["conv_ms", "bn_ms", "elementwise_ms", "other_ms"] {
        assert!(number(per_type, key) > 0.0, "{key} in {per_type}");
    }
    // The CPU has no kernels to time one by one.
    assert!(
        v["per_kernel"].is_null() && v["kernel_ms_per_step"].is_null(),
        "{v}"
    );
}

#[test]
fn table_states_how_the_breakdown_was_measured() {
    let out = bench(&TINY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "images/s",
        "ms/step",
        "separate pass",
        "conv",
        "bn",
        "elementwise",
        "other",
        "load average",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn bad_flags_and_absent_devices_are_one_line_errors() {
    // Where no GPU can run the kernels, asking for one is a one-line error naming the flag.
    if !resnet_cuda::backend::gpu::cuda_info::gpu_ready(0) {
        assert_one_line_error(&bench(&["--device", "cuda"]), "--device cuda");
    }
    assert_one_line_error(
        &bench(&["--batch-size", "0", "--device", "cpu"]),
        "--batch-size",
    );
    assert_one_line_error(&bench(&["--iters", "0", "--device", "cpu"]), "--iters");
    assert_one_line_error(
        &bench(&["--model", "resnet7", "--device", "cpu"]),
        "resnet7",
    );
}

/// One resnet8 step at batch 2 on the emulator, no warm-up asked for, as JSON.
const EMULATED_RESNET8: [&str; 13] = [
    "--model",
    "resnet8",
    "--batch-size",
    "2",
    "--device",
    "emu",
    "--iters",
    "1",
    "--warmup",
    "0",
    "--profile-iters",
    "1",
    "--json",
];

/// `bench` of [`EMULATED_RESNET8`] with `extra` flags; the report it printed.
fn emulated_resnet8_step(extra: &[&str]) -> Value {
    emulated_resnet8_step_with(&[], extra)
}

/// [`emulated_resnet8_step`] with the environment variables `env` set.
fn emulated_resnet8_step_with(env: &[(&str, &str)], extra: &[&str]) -> Value {
    let out = bench_with(env, &[&EMULATED_RESNET8[..], extra].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn emulator_device_runs_the_gpu_backend_through_the_profiler() {
    // The GPU backend's launch code is what `--device cuda` will run; the emulator drives it here.
    let v = emulated_resnet8_step(&["--cuda-graph", "off"]);
    assert!(v["device"].as_str().unwrap().contains("emu"), "{v}");
    assert_eq!(
        number(&v, "warmup"),
        0.0,
        "graph off: no warm-up added: {v}"
    );
    for key in ["conv_ms", "bn_ms", "elementwise_ms", "other_ms"] {
        assert!(number(&v["per_layer_type_ms"], key) > 0.0, "{key} in {v}");
    }
    // One timed step: whole counts. resnet8 alone has 7 convolutions, each with a forward and two
    // backward launches.
    let launches = number(&v, "kernel_launches_per_step");
    assert!(launches >= 21.0 && launches.fract() == 0.0, "{v}");
    // The step leaves its loss on the device: no host wait inside it. The benchmark's own wait at
    // the end of each step (reading that loss) is not counted.
    assert_eq!(number(&v, "host_syncs_per_step"), 0.0, "{v}");
    assert!(number(&v, "allocations_per_step").fract() == 0.0, "{v}");
}

/// `--conv-tuning on`: the report lists each pass the tuning timed (the plan's launch and the
/// winner, each with its time), and the profiled pass runs the winners; a nonsense value of the
/// environment's switch (`RESNET_CONV_TUNING`) is a one-line error naming the variable.
#[test]
fn tuned_convolutions_are_reported() {
    let env = [("RESNET_TC_KERNELS", "wgmma-tma")];
    let v = emulated_resnet8_step_with(&env, &["--conv-tuning", "on"]);
    let records = v["conv_tuning"].as_array().expect("a list");
    // resnet8's convolutions: at least a forward, a backward-data and a backward-filter.
    assert!(records.len() >= 3, "{v}");
    for r in records {
        assert!(r["candidates"].as_u64().unwrap() >= 2, "{r}");
        assert!(number(r, "chosen_ms") <= number(r, "planned_ms"), "{r}");
        assert!(r["planned"].as_str().unwrap().starts_with("conv2d_"), "{r}");
        assert_eq!(r["failed"], serde_json::json!([]), "{r}");
        // The profiled pass took over the timed pass's choices.
        let chosen = r["chosen"].as_str().unwrap().split(' ').next().unwrap();
        let profiled = v["per_kernel"].as_array().unwrap();
        assert!(
            profiled.iter().any(|k| k["kernel"] == chosen),
            "{chosen} not in the profiled step: {v}"
        );
    }
    let out = bench_with(&[("RESNET_CONV_TUNING", "maybe")], &EMULATED_RESNET8);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: RESNET_CONV_TUNING=\"maybe\"")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// With the graph on, the eager first step and the capture are warm-up even when `--warmup` is 0:
/// the timed steps are replays only, and the report counts the warm-up steps it added.
#[test]
fn graph_warm_up_covers_the_capture() {
    let v = emulated_resnet8_step(&[]);
    assert_eq!(number(&v, "warmup"), 2.0, "{v}");
    assert_eq!(number(&v, "kernel_launches_per_step"), 0.0, "{v}");
    assert_eq!(number(&v, "graph_replays_per_step"), 1.0, "{v}");
}
