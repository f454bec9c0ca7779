//! The training step without the host in the loop: its loss stays on the device (read when wanted,
//! a non-finite one skipping the update there), and the whole step is captured once as a graph and
//! replayed.
//!
//! Which driver runs the GPU side: `RESNET_TEST_DRIVER`, `emu` (the host emulator, the default, what
//! CI runs) or `cuda` / `cuda:N` (a real GPU, where the graph is a CUDA graph). Selected without a
//! usable GPU, every test here fails with the driver's reason; it never passes without having run.
//!
//! A replayed step is compared with an eager one bit for bit: both run the same kernels on the same
//! data in the same order, so nothing may differ.

use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::{Driver, DynDriver, GpuBackend};
use resnet_cuda::backend::{Backend, DeviceCounts, Precision, SgdConfig};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::ops;
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;
use resnet_cuda::train::step_graph::GraphedStep;

type Gpu = GpuBackend<DynDriver>;

fn driver_name() -> String {
    std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into())
}

/// The GPU backend on the driver `RESNET_TEST_DRIVER` names (default `emu`).
fn gpu(precision: Precision) -> Gpu {
    let name = driver_name();
    GpuBackend::open(&name)
        .unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
        .with_precision(precision)
}

const SGD: SgdConfig = SgdConfig {
    lr: 0.05,
    momentum: 0.9,
    weight_decay: 1e-4,
};

/// A network training on one backend as the trainer does: inputs uploaded to fixed buffers, the
/// loss left in a record, the guarded update, the step run through a [`GraphedStep`].
struct Run {
    be: Gpu,
    net: Network<Gpu>,
    sgd: Sgd<Gpu>,
    x: Tensor<Gpu>,
    labels: Tensor<Gpu>,
    record: <Gpu as Backend>::LossRecord,
    graph: GraphedStep,
    classes: usize,
}

impl Run {
    fn new(config: ModelConfig, n: usize, side: usize, precision: Precision, graph: bool) -> Run {
        Run::on(gpu(precision), config, n, side, graph)
    }

    /// [`Run::new`] on the backend `be`.
    fn on(be: Gpu, config: ModelConfig, n: usize, side: usize, graph: bool) -> Run {
        let classes = config.num_classes;
        let net = Network::new(&be, config, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let x = Tensor::zeros(&be, [n, side, side, 3]).unwrap();
        let labels = Tensor::zeros(&be, [n]).unwrap();
        let record = be.loss_record(8).unwrap();
        let graph = GraphedStep::new(&be, graph);
        Run {
            be,
            net,
            sgd: Sgd::new(SGD),
            x,
            labels,
            record,
            graph,
            classes,
        }
    }

    /// One training step on `pixels` and `labels`.
    fn step(&mut self, pixels: &[f32], labels: &[u32]) {
        self.x.copy_from_slice(&self.be, pixels).unwrap();
        ops::upload_labels(&self.be, labels, self.classes, &mut self.labels).unwrap();
        self.sgd.prepare_lr(&self.be).unwrap();
        let (be, net, sgd, x, l, record) = (
            &self.be,
            &mut self.net,
            &mut self.sgd,
            &self.x,
            &self.labels,
            &mut self.record,
        );
        self.graph
            .run(be, || {
                net.forward_backward_recorded(be, x, l, record)?;
                sgd.step_guarded(be, net, record)
            })
            .unwrap();
    }

    /// Every parameter, momentum and batch-norm running statistic, in order.
    fn state(&mut self) -> Vec<(String, Vec<u32>)> {
        let be = &self.be;
        let mut out = Vec::new();
        let bits = |t: &Tensor<Gpu>| -> Vec<u32> {
            t.to_vec(be).unwrap().iter().map(|v| v.to_bits()).collect()
        };
        self.net.visit_params(&mut |p| {
            out.push((p.name.clone(), bits(&p.value)));
            out.push((format!("{} grad", p.name), bits(&p.grad)));
        });
        self.net.visit_batch_norms(&mut |bn| {
            out.push(("running mean".into(), bits(&bn.running_mean)));
            out.push(("running var".into(), bits(&bn.running_var)));
        });
        for (i, v) in self.sgd.velocity().iter().enumerate() {
            out.push((format!("momentum {i}"), bits(v)));
        }
        out
    }

    fn counts(&self) -> DeviceCounts {
        self.be.device_counts().unwrap()
    }
}

/// `steps` batches of random images and labels.
fn batches(steps: usize, n: usize, side: usize, classes: usize) -> Vec<(Vec<f32>, Vec<u32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..steps)
        .map(|_| {
            let pixels = (0..n * side * side * 3)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let labels = (0..n)
                .map(|_| rng.random_range(0..classes as u32))
                .collect();
            (pixels, labels)
        })
        .collect()
}

/// Four steps eagerly and through the graph (eager, captured, replayed, replayed), each on new
/// data: the losses and every tensor of the state agree bit for bit after every step.
fn replay_equals_eager(config: ModelConfig, n: usize, side: usize, precision: Precision) {
    let data = batches(4, n, side, config.num_classes);
    let mut eager = Run::new(config.clone(), n, side, precision, false);
    let mut graphed = Run::new(config, n, side, precision, true);
    for (step, (pixels, labels)) in data.iter().enumerate() {
        let before = graphed.counts();
        eager.step(pixels, labels);
        graphed.step(pixels, labels);
        let replays = graphed.counts().since(&before).graph_launches;
        // Step 0 is eager; step 1 is captured, then run as its graph; later ones are replays.
        assert_eq!(replays, u64::from(step >= 1), "{precision} step {step}");
        let (a, b) = (eager.state(), graphed.state());
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{precision} step {step}: {name} differs");
        }
    }
    let losses_eager = eager.be.read_loss_record(&mut eager.record).unwrap();
    let losses_graphed = graphed.be.read_loss_record(&mut graphed.record).unwrap();
    assert_eq!(losses_eager.steps.len(), 4);
    assert_eq!(losses_eager, losses_graphed, "{precision}");
    assert!(losses_eager.steps.iter().all(|s| s.loss.is_finite()));
    graphed.graph.release(&graphed.be);
}

#[test]
fn a_replayed_resnet8_step_equals_an_eager_step_bit_for_bit() {
    for precision in [Precision::F32, Precision::Bf16] {
        let config = ModelConfig::from_name("resnet8", 10).unwrap();
        replay_equals_eager(config, 3, 8, precision);
    }
}

#[test]
fn a_replayed_bottleneck_step_equals_an_eager_step_bit_for_bit() {
    for precision in [Precision::F32, Precision::Bf16] {
        let mut config = ModelConfig::from_name("resnet50", 7).unwrap();
        config.stage_blocks = vec![1, 1];
        config.stage_channels = vec![32, 64];
        replay_equals_eager(config, 2, 16, precision);
    }
}

/// With convolution tuning on, the first (eager) step times the candidates and keeps its choices;
/// the capture records the chosen launches, and the replays equal eager steps with the same choices
/// bit for bit, the tuning step itself included (each candidate's runs leave the winner's outputs).
#[test]
fn a_tuned_step_is_captured_with_its_choices_and_replays_bit_for_bit() {
    use resnet_cuda::backend::gpu::conv_tc_plan::TcFamily;
    // The emulator tunes over every family (the most candidates); a GPU over mma.sync, so that a
    // fault of the wgmma kernels (their own tests run apart there) cannot take this file's other
    // tests down with it.
    let tuned = || {
        let be = gpu(Precision::Bf16);
        let family = if be.driver().name() == "emu" {
            TcFamily::WgmmaTma
        } else {
            TcFamily::MmaSync
        };
        be.with_tc_family(family).with_conv_tuning(true)
    };
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    let (n, side) = (3, 8);
    let data = batches(4, n, side, config.num_classes);
    let mut eager = Run::on(tuned(), config.clone(), n, side, false);
    let mut graphed = Run::on(tuned(), config, n, side, true);
    let mut tuned_at_first = 0;
    for (step, (pixels, labels)) in data.iter().enumerate() {
        eager.step(pixels, labels);
        if step == 0 {
            tuned_at_first = eager.be.conv_tuning_records().len();
            assert!(tuned_at_first > 0);
            graphed.be.adopt_conv_tuning(&eager.be);
        }
        let before = graphed.counts();
        graphed.step(pixels, labels);
        let replays = graphed.counts().since(&before).graph_launches;
        assert_eq!(replays, u64::from(step >= 1), "step {step}");
        let (a, b) = (eager.state(), graphed.state());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "step {step}: {name} differs");
        }
    }
    // Every pass of every shape was tuned at step 0, once.
    assert_eq!(eager.be.conv_tuning_records().len(), tuned_at_first);
    assert!(
        graphed.be.conv_tuning_records().is_empty(),
        "it adopted them all"
    );
    graphed.graph.release(&graphed.be);
}

/// A steady-state resnet20 step: no host synchronisation, no allocation; with the graph, one graph
/// launch and no kernel launched on its own; without, the kernels one by one.
#[test]
fn a_steady_resnet20_step_never_waits_for_the_device_nor_allocates() {
    let (n, side) = (2, 32);
    let config = ModelConfig::from_name("resnet20", 10).unwrap();
    let data = batches(4, n, side, 10);
    for graph in [true, false] {
        let mut run = Run::new(config.clone(), n, side, Precision::Bf16, graph);
        for (pixels, labels) in &data[..3] {
            run.step(pixels, labels);
        }
        let (pixels, labels) = &data[3];
        let before = run.counts();
        run.step(pixels, labels);
        let step = run.counts().since(&before);
        assert_eq!(step.host_syncs, 0, "graph {graph}: {step:?}");
        assert_eq!(step.allocations, 0, "graph {graph}: {step:?}");
        if graph {
            assert_eq!((step.graph_launches, step.launches), (1, 0), "{step:?}");
            assert!(step.graph_nodes > 60, "{step:?}");
        } else {
            assert_eq!(step.graph_launches, 0, "{step:?}");
            assert!(step.launches > 60, "{step:?}");
        }
        let losses = run.be.read_loss_record(&mut run.record).unwrap();
        assert_eq!(losses.steps.len(), 4);
        assert_eq!(losses.first_non_finite, None);
        run.graph.release(&run.be);
    }
}

/// A NaN in the input makes the loss NaN: the update skips itself on the device for that step and
/// every later one until the record is read, and the record names the step.
#[test]
fn a_non_finite_loss_skips_the_update_on_the_device() {
    let (n, side) = (2, 8);
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    let data = batches(5, n, side, 10);
    for graph in [true, false] {
        let mut run = Run::new(config.clone(), n, side, Precision::F32, graph);
        for (pixels, labels) in &data[..2] {
            run.step(pixels, labels);
        }
        let good = run.be.read_loss_record(&mut run.record).unwrap();
        assert_eq!((good.steps.len(), good.first_non_finite), (2, None));
        let weights = |run: &mut Run| -> Vec<(String, Vec<u32>)> {
            run.state()
                .into_iter()
                .filter(|(name, _)| !name.ends_with("grad") && !name.starts_with("running"))
                .collect()
        };
        let before = weights(&mut run);
        let (mut poisoned, labels) = data[2].clone();
        poisoned[7] = f32::NAN;
        run.step(&poisoned, &labels);
        // A good batch after it: still skipped, the flag holds until the host has looked.
        run.step(&data[3].0, &data[3].1);
        assert!(before == weights(&mut run), "graph {graph}: the update ran");
        let read = run.be.read_loss_record(&mut run.record).unwrap();
        assert_eq!(read.steps.len(), 2);
        assert!(read.steps[0].loss.is_nan(), "{read:?}");
        assert_eq!(read.first_non_finite, Some(0), "graph {graph}");
        // Read, the flag is clear: the next update runs.
        run.step(&data[4].0, &data[4].1);
        assert!(
            before != weights(&mut run),
            "graph {graph}: no update after the read"
        );
        run.graph.release(&run.be);
    }
}

/// Nothing in a captured step may touch host memory or allocate: an upload inside a capture is
/// refused, and the backend is out of capture mode afterwards.
#[test]
fn a_capture_refuses_host_memory_and_allocation() {
    let be = gpu(Precision::F32);
    let mut t = Tensor::zeros(&be, [4]).unwrap();
    be.begin_graph_capture().unwrap();
    let upload = t.copy_from_slice(&be, &[1.0; 4]);
    let alloc = Tensor::<Gpu>::zeros(&be, [4]);
    let graph = be.end_graph_capture();
    assert!(upload.is_err(), "an upload was captured");
    assert!(alloc.is_err(), "an allocation was captured");
    // On a GPU the refused copy invalidates the capture; the emulator keeps what was recorded.
    if let Ok(graph) = graph {
        be.drop_graph(graph);
    }
    t.copy_from_slice(&be, &[2.0; 4]).unwrap();
    assert_eq!(t.to_vec(&be).unwrap(), vec![2.0; 4]);
}

/// Staging memory (page-locked on a GPU) is neither made nor waited for inside a capture: both
/// are host calls, no graph node; outside it both work again.
#[test]
fn a_capture_refuses_staging_memory() {
    let be = gpu(Precision::F32);
    let driver = be.driver();
    let staging = driver.alloc_staging(64).unwrap();
    be.begin_graph_capture().unwrap();
    let alloc = driver.alloc_staging(64);
    let wait = driver.wait_staging(&staging);
    let graph = be.end_graph_capture();
    assert!(alloc.is_err(), "staging memory was allocated in a capture");
    assert!(wait.is_err(), "a capture waited for an upload");
    if let Ok(graph) = graph {
        be.drop_graph(graph);
    }
    driver.wait_staging(&staging).unwrap();
    // SAFETY: allocated above by this driver, freed once, no upload reads it.
    unsafe { driver.free_staging(&staging) };
}

/// A buffer freed while capturing fails the capture, on the emulator as on a GPU (where the free
/// would be a graph node of memory the graph does not own); the backend works on afterwards.
#[test]
fn a_buffer_freed_in_a_capture_fails_it() {
    let be = gpu(Precision::F32);
    let doomed = Tensor::zeros(&be, [4]).unwrap();
    let mut kept = Tensor::zeros(&be, [4]).unwrap();
    be.begin_graph_capture().unwrap();
    drop(doomed);
    let graph = be.end_graph_capture();
    assert!(graph.is_err(), "a capture with a free in it ended well");
    kept.copy_from_slice(&be, &[3.0; 4]).unwrap();
    assert_eq!(kept.to_vec(&be).unwrap(), vec![3.0; 4]);
}

/// The `resnet-cuda` binary: this build's, or `RESNET_CLI` (the device bundle's copy on a GPU
/// machine, where the build's path does not exist).
fn cli() -> Command {
    let path =
        std::env::var("RESNET_CLI").unwrap_or_else(|_| env!("CARGO_BIN_EXE_resnet-cuda").into());
    let mut cmd = Command::new(path);
    cmd.env("RAYON_NUM_THREADS", "2");
    cmd
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The trainer on the GPU backend with the graph: a diverging run stops with the usual one-line
/// error naming the iteration whose loss was not finite, and keeps the checkpoint before it.
#[test]
fn a_diverging_graphed_run_stops_at_the_right_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = cli()
        .args([
            "train",
            "--device",
            if driver_name().starts_with("cuda") {
                "cuda"
            } else {
                "emu"
            },
            "--cuda-graph",
            "on",
            "--model",
            "resnet8",
            "--batch-size",
            "4",
            "--data",
            "synthetic:32:8",
            "--iters",
            "12",
            "--lr",
            "1e30",
            "--log-every",
            "1",
            "--save-every",
            "1",
            "--eval-every",
            "100",
            "--out",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the loss is") && last.contains("diverged"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let latest = std::fs::read_link(run.join("latest"))
        .map(|p| if p.is_absolute() { p } else { run.join(p) })
        .unwrap_or_else(|_| run.join("latest"));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&latest).join("run_state.json")).unwrap(),
    )
    .unwrap();
    let saved = state["iteration"].as_u64().unwrap();
    assert!((1..12).contains(&saved), "latest checkpoint at {saved}");
    assert!(
        last.contains(&format!("iteration {}", saved + 1)),
        "the error names the step after the last checkpoint: {err}"
    );
}

/// Batch norm's `num_batches_tracked` (saved in checkpoints, as PyTorch's state dict has it)
/// counts every training step, replayed ones included: a replay runs no layer code on the host.
#[test]
fn a_graphed_run_counts_every_training_batch() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = cli()
        .args(["train", "--device", gpu_device(), "--cuda-graph", "on"])
        .args([
            "--model",
            "resnet8",
            "--batch-size",
            "4",
            "--data",
            "synthetic:32:8",
        ])
        .args([
            "--iters",
            "5",
            "--eval-every",
            "100",
            "--out",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(run.join("latest/model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for name in [
        "bn1.num_batches_tracked",
        "layer3.0.bn2.num_batches_tracked",
    ] {
        let t = tensors.tensor(name).unwrap();
        let count = i64::from_le_bytes(t.data().try_into().unwrap());
        assert_eq!(count, 5, "{name}");
    }
}

/// `--device` for the trainer: the GPU when the tests run on CUDA, else the emulator.
fn gpu_device() -> &'static str {
    if driver_name().starts_with("cuda") {
        "cuda"
    } else {
        "emu"
    }
}

/// `bench --json` on the GPU backend: with the graph (the default), a steady step is one replay,
/// no kernel launched on its own, no host wait; with `--cuda-graph off`, the kernels one by one.
#[test]
fn bench_reports_one_graph_replay_and_no_host_sync_per_step() {
    let bench = |graph: &str| -> serde_json::Value {
        let o = cli()
            .args([
                "bench",
                "--model",
                "resnet8",
                "--batch-size",
                "2",
                "--device",
                if driver_name().starts_with("cuda") {
                    "cuda"
                } else {
                    "emu"
                },
                "--iters",
                "2",
                "--warmup",
                "2",
                "--profile-iters",
                "1",
                "--cuda-graph",
                graph,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let number = |v: &serde_json::Value, key: &str| {
        v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {v}"))
    };
    let on = bench("on");
    assert_eq!(number(&on, "graph_replays_per_step"), 1.0, "{on}");
    assert_eq!(number(&on, "kernel_launches_per_step"), 0.0, "{on}");
    assert_eq!(number(&on, "host_syncs_per_step"), 0.0, "{on}");
    assert_eq!(number(&on, "allocations_per_step"), 0.0, "{on}");
    assert_eq!(on["cuda_graph"], true, "{on}");
    let off = bench("off");
    assert_eq!(number(&off, "graph_replays_per_step"), 0.0, "{off}");
    assert_eq!(number(&off, "host_syncs_per_step"), 0.0, "{off}");
    assert_eq!(number(&off, "allocations_per_step"), 0.0, "{off}");
    let eager = number(&off, "kernel_launches_per_step");
    assert!(eager >= 21.0, "{off}");
    // The graph runs the kernels the eager step launches (under the emulator, exactly those).
    if !driver_name().starts_with("cuda") {
        assert_eq!(number(&on, "kernels_per_step"), eager, "{on} {off}");
    }
    // The profiled pass (eager) timed every launch of its step by itself: as many as the eager
    // step counts, each with a positive time, and their sum is the busy time reported.
    for v in [&on, &off] {
        let rows = v["per_kernel"].as_array().unwrap_or_else(|| panic!("{v}"));
        let calls: f64 = rows.iter().map(|r| number(r, "calls_per_step")).sum();
        assert_eq!(calls, eager, "{v}");
        assert!(rows.iter().all(|r| number(r, "ms_per_step") > 0.0), "{v}");
        let busy: f64 = rows.iter().map(|r| number(r, "ms_per_step")).sum();
        let reported = number(v, "kernel_ms_per_step");
        assert!((busy - reported).abs() <= 1e-9 * busy, "{v}");
    }
}
