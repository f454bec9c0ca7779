//! Batches built on the GPU from bytes (`--device-data`, kernels/input.cu) against the host's batch
//! assembly: a fixed-size set kept there with the CIFAR augmentation, and the ImageNet loader's
//! views streamed with their colour shifts; and runs trained from them against runs trained from
//! host batches.
//!
//! Which driver runs the GPU side: `RESNET_TEST_DRIVER`, `emu` (the host emulator, the default, what
//! CI runs) or `cuda` / `cuda:N` (a real GPU). Selected without a usable GPU, every test here fails
//! with the driver's reason; it never passes without having run.
//!
//! Every comparison is bit for bit: the kernel computes `pixel / 255 - mean` with the same two
//! IEEE roundings as the host and otherwise moves values; in bf16 it rounds that value once to
//! nearest even, as the host batch's cast to the activation type does.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::{Driver, DynDriver, EmuDriver, GpuBackend};
use resnet_cuda::backend::{Backend, DType, Precision};
use resnet_cuda::data::augment::CropFlip;
use resnet_cuda::data::batch::{fill_batch_with_views, DataCursor, MeanImage};
use resnet_cuda::data::device_images::{BatchDraws, DeviceImages};
use resnet_cuda::data::imagenet::ImageNet;
use resnet_cuda::data::imagenet_augment::CROP;
use resnet_cuda::data::loader::{Batch, Loader, LoaderConfig};
use resnet_cuda::data::synthetic;
use resnet_cuda::eval::{evaluate, evaluate_on_device};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

type Gpu = GpuBackend<DynDriver>;

fn driver_name() -> String {
    std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into())
}

/// `--device` for the trainer: the GPU when the tests run on CUDA, else the emulator.
fn gpu_device() -> &'static str {
    if driver_name().starts_with("cuda") {
        "cuda"
    } else {
        "emu"
    }
}

fn gpu(precision: Precision) -> Gpu {
    let name = driver_name();
    GpuBackend::open(&name)
        .unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"))
        .with_precision(precision)
}

/// Builds an augmented batch of 16 (repeated images, both mirror states) on the device and on the
/// host; returns the device's values, its element type, and the host's values and labels.
fn device_and_host_batch(precision: Precision) -> (Vec<f32>, Vec<u32>, DType, Vec<f32>, Vec<u32>) {
    let be = gpu(precision);
    let ds = synthetic::splits_sized(17, 24, 4).train;
    let mean = MeanImage::compute(ds.as_ref()).unwrap();
    let images = DeviceImages::upload(&be, ds.as_ref()).unwrap();
    let mut mean_t = Tensor::zeros(&be, mean.shape()).unwrap();
    mean_t.copy_from_slice(&be, &mean.data).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 16;
    let indices: Vec<usize> = (0..n).map(|_| rng.random_range(0..images.len())).collect();
    let views = CropFlip::CIFAR.draw_batch(&mut rng, n);
    assert!(views.iter().any(|v| v.flip) && views.iter().any(|v| !v.flip));

    let mut draws = BatchDraws::new(&be, n).unwrap();
    draws.fill(&be, &images, &indices, Some(&views)).unwrap();
    let (h, w) = (mean.height, mean.width);
    let mut x = Tensor::zeros(&be, [n, h, w, 3]).unwrap();
    // Poisoned, so that an element the kernel does not write fails the comparison.
    x.copy_from_slice(&be, &vec![f32::NAN; n * h * w * 3])
        .unwrap();
    let mut labels = Tensor::zeros(&be, [n]).unwrap();
    ops::image_batch(&be, &images, &draws, &mean_t, &mut x, &mut labels).unwrap();
    let dtype = be.dtype(x.buf());
    let device_x = x.to_vec(&be).unwrap();
    let device_labels = labels
        .to_vec(&be)
        .unwrap()
        .iter()
        .map(|&l| l as u32)
        .collect();

    let mut host_x = vec![0f32; n * h * w * 3];
    let mut host_labels = vec![0u32; n];
    let pad = CropFlip::CIFAR.pad;
    fill_batch_with_views(
        ds.as_ref(),
        &indices,
        &mean,
        Some((pad, &views)),
        &mut host_x,
        &mut host_labels,
    )
    .unwrap();
    (device_x, device_labels, dtype, host_x, host_labels)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn an_f32_device_batch_equals_the_host_batch_bit_for_bit() {
    let (x, labels, dtype, host_x, host_labels) = device_and_host_batch(Precision::F32);
    assert_eq!(dtype, DType::F32);
    assert_eq!(labels, host_labels);
    assert_eq!(bits(&x), bits(&host_x));
}

#[test]
fn a_bf16_device_batch_is_the_host_batch_rounded_once() {
    let (x, labels, dtype, host_x, host_labels) = device_and_host_batch(Precision::Bf16);
    assert_eq!(
        dtype,
        DType::Bf16,
        "the batch is written in the activation type"
    );
    assert_eq!(labels, host_labels);
    let rounded: Vec<f32> = host_x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
    assert_eq!(bits(&x), bits(&rounded));
}

/// The `resnet-cuda` binary: this build's, or `RESNET_CLI` (the device bundle's copy on a GPU
/// machine).
fn cli() -> Command {
    let path =
        std::env::var("RESNET_CLI").unwrap_or_else(|_| env!("CARGO_BIN_EXE_resnet-cuda").into());
    let mut cmd = Command::new(path);
    cmd.env("RAYON_NUM_THREADS", "2");
    cmd
}

/// Trains resnet8 with `--device-data on|off` on `data` for `iters` steps of `batch` (augmented,
/// shuffled, graphs on), evaluating every `eval_every`; returns the final checkpoint's files and
/// the logged test errors.
fn run(
    dir: &Path,
    device_data: &str,
    data: &str,
    (batch, iters, eval_every): (usize, usize, usize),
    extra: &[&str],
) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    let out = dir.join(device_data);
    let o = cli()
        .args(["train", "--device-data", device_data])
        .args(["--model", "resnet8", "--data", data, "--workers", "2"])
        .args([
            "--batch-size",
            &batch.to_string(),
            "--iters",
            &iters.to_string(),
        ])
        .args(["--eval-every", &eval_every.to_string(), "--log-every", "1"])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "--device-data {device_data}: {stderr}");
    assert_eq!(
        stderr.contains("data on the device"),
        device_data == "on",
        "--device-data {device_data}: {stderr}"
    );
    let ckpt = out.join("latest");
    let evals = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("test_err"))
        .map(str::to_string)
        .collect();
    (
        std::fs::read(ckpt.join("model.safetensors")).unwrap(),
        std::fs::read(ckpt.join("optimizer.safetensors")).unwrap(),
        evals,
    )
}

/// The two runs of `data` on `device` (with the `extra` flags) end with the same weights, momentum
/// and test errors.
fn runs_agree(
    device: &str,
    data: &str,
    steps: (usize, usize, usize),
    evaluations: usize,
    extra: &[&str],
) {
    let extra = [&["--device", device], extra].concat();
    let extra = extra.as_slice();
    let dir = tempfile::tempdir().unwrap();
    let (model_on, optimizer_on, evals_on) = run(dir.path(), "on", data, steps, extra);
    let (model_off, optimizer_off, evals_off) = run(dir.path(), "off", data, steps, extra);
    assert_eq!(evals_on.len(), evaluations, "{evals_on:?}");
    assert_eq!(evals_on, evals_off);
    assert!(model_on == model_off, "the weights differ");
    assert!(optimizer_on == optimizer_off, "the momentum differs");
}

/// Six steps of 4 on a synthetic set, evaluated after 3 and 6 on a test split of 10 (a partial
/// last batch).
#[test]
fn a_run_on_device_batches_equals_a_run_on_host_batches() {
    runs_agree(gpu_device(), "synthetic:32:10", (4, 6, 3), 2, &[]);
}

/// The same with two data-parallel replicas, each keeping the set on its own device and building
/// its half of every batch there.
#[test]
fn replicas_on_device_batches_equal_replicas_on_host_batches() {
    // `--replicas` runs on the CPU or the emulator (`--gpus` is the GPUs' form, with NCCL), so on
    // a GPU machine this runs the emulator too.
    runs_agree("emu", "synthetic:32:10", (4, 4, 4), 1, &["--replicas", "2"]);
}

/// An ImageNet-style folder of `per_class` training and one validation image in each of two
/// classes, 40 to 60 pixels a side, as JPEGs.
fn write_folder(root: &Path, per_class: usize) {
    for (split, n) in [("train", per_class), ("val", 1)] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let (w, h) = (40 + 10 * (i % 3), 60 - 10 * (i % 2));
                let seed = 7 * c + i;
                let pixels: Vec<u8> = (0..w * h)
                    .flat_map(|p| {
                        let (y, x) = (p / w, p % w);
                        [
                            (x * 255 / w + seed * 40) % 256,
                            (y * 255 / h + seed * 90) % 256,
                            seed * 70 % 256,
                        ]
                        .map(|v| v as u8)
                    })
                    .collect();
                let mut bytes = Vec::new();
                jpeg_encoder::Encoder::new(&mut bytes, 95)
                    .encode(&pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
                    .unwrap();
                std::fs::write(dir.join(format!("{i}.jpg")), bytes).unwrap();
            }
        }
    }
}

/// The loader's batches of views (scale, crop, mirror and PCA colour drawn) sent as bytes and
/// normalised on the device, against `Batch::normalise` on the host: five batches through one
/// store, so that both of its staging buffers are used and then reused, all issued before any is
/// read back, as a training loop issues them. On a GPU each upload runs on the copy stream, ahead of
/// the batch before it; a landing out of order would show as a batch built from the wrong bytes.
#[test]
fn streamed_imagenet_batches_equal_the_host_batches() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 3);
    let data = Arc::new(ImageNet::open(dir.path()).unwrap());
    let cfg = LoaderConfig::new(4, 3, true, true, 2);
    let mut loader = Loader::start(data, cfg, DataCursor::default(), 0).unwrap();
    let batches: Vec<Batch> = (0..5).map(|_| loader.next_batch().unwrap()).collect();
    assert_ne!(batches[0].pixels, batches[1].pixels);
    let side = CROP;
    let mean = MeanImage::from_parts(
        side,
        side,
        (0..side * side * 3)
            .map(|i| (i % 251) as f32 / 251.0)
            .collect(),
    )
    .unwrap();
    for precision in [Precision::F32, Precision::Bf16] {
        let be = gpu(precision);
        let n = batches[0].labels.len();
        let mut images = DeviceImages::from_bytes(
            &be,
            &vec![0; batches[0].pixels.len()],
            vec![0; n],
            (side, side),
            "a batch".into(),
        )
        .unwrap();
        let mut draws = BatchDraws::new(&be, n).unwrap();
        let mut mean_t = Tensor::zeros(&be, mean.shape()).unwrap();
        mean_t.copy_from_slice(&be, &mean.data).unwrap();
        let slots: Vec<usize> = (0..n).collect();
        let mut built = Vec::new();
        for batch in &batches {
            let mut x = Tensor::zeros(&be, [n, side, side, 3]).unwrap();
            let mut labels = Tensor::zeros(&be, [n]).unwrap();
            x.copy_from_slice(&be, &vec![f32::NAN; n * side * side * 3])
                .unwrap();
            images.refill(&be, &batch.pixels, &batch.labels).unwrap();
            draws
                .fill_shifted(&be, &images, &slots, None, Some(&batch.shifts))
                .unwrap();
            ops::image_batch(&be, &images, &draws, &mean_t, &mut x, &mut labels).unwrap();
            built.push((x, labels));
        }
        for (k, (batch, (x, labels))) in batches.iter().zip(&built).enumerate() {
            let got: Vec<u32> = labels
                .to_vec(&be)
                .unwrap()
                .iter()
                .map(|&l| l as u32)
                .collect();
            assert_eq!(got, batch.labels, "{precision}, batch {k}");
            let mut host = vec![0f32; batch.pixels.len()];
            batch.normalise(&mean, &mut host).unwrap();
            if precision == Precision::Bf16 {
                host.iter_mut()
                    .for_each(|v| *v = bf16::from_f32(*v).to_f32());
            }
            let device = x.to_vec(&be).unwrap();
            assert_eq!(bits(&device), bits(&host), "{precision}, batch {k}");
        }
    }
}

/// Two steps of 2 on a folder: the loader's views streamed as bytes train the same network as the
/// host's normalised views (evaluation runs on the host path in both).
#[test]
fn a_run_on_streamed_imagenet_batches_equals_a_run_on_host_batches() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 2);
    let data = format!("imagenet:{}", dir.path().display());
    runs_agree(gpu_device(), &data, (2, 2, 2), 1, &[]);
}

/// A run on device batches stopped after 3 steps and resumed to 6 ends as the run of 6 does: the
/// draws come from the saved data cursor and the iteration, as the host's batches do.
#[test]
fn a_resumed_run_on_device_batches_equals_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = resumed_run_equals_the_uninterrupted_run(dir.path(), &[], &[]);
    assert!(stderr.iter().all(|e| !e.contains("convolution tuning")));
}

/// The same with the convolutions tuned (`--conv-tuning on`): the run of 3 times them and keeps
/// its choices in its run folder (`conv-tuning.json`), its resumption (told nothing: the flag is in
/// the run's config) takes them from there, and the run of 6 is given the same file
/// (`RESNET_CONV_TUNING_FILE`), so the resumed run must compute what the uninterrupted one did.
#[test]
fn a_resumed_tuned_run_takes_its_choices_from_its_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("split").join("conv-tuning.json");
    let [whole, split, resumed] = resumed_run_equals_the_uninterrupted_run(
        dir.path(),
        &["--conv-tuning", "on"],
        &[("RESNET_CONV_TUNING_FILE", file.to_str().unwrap())],
    );
    // Only the first process timed anything (`train` reports a tuning that timed passes).
    assert!(split.contains("convolution tuning: "), "{split}");
    for stderr in [whole, resumed] {
        assert!(!stderr.contains("convolution tuning"), "{stderr}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"forward_stats x [4, 32, 32, 8]"), "{text}");
    // A resumption reads that file (a damaged one is named), and --conv-tuning off does not.
    std::fs::write(&file, "{").unwrap();
    let split = dir.path().join("split");
    let resume = |extra: &[&str]| {
        cli()
            .args(["train", "--resume", split.to_str().unwrap(), "--iters", "7"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = resume(&[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: convolution tuning file") && stderr.contains("conv-tuning.json"),
        "{stderr}"
    );
    let o = resume(&["--conv-tuning", "off"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs in `dir` of 3 steps (`split`, first) resumed to 6, and of 6 (`whole`, with the environment
/// `whole_env`), both started with `args`: the same weights. Returns the three processes' stderr
/// (the run of 6, of 3, the resumption).
fn resumed_run_equals_the_uninterrupted_run(
    dir: &Path,
    args: &[&str],
    whole_env: &[(&str, &str)],
) -> [String; 3] {
    let train = |out: &Path, iters: &str, env: &[(&str, &str)]| {
        let o = cli()
            .envs(env.iter().copied())
            .args(["train", "--device", gpu_device(), "--model", "resnet8"])
            .args([
                "--data",
                "synthetic:32:10",
                "--batch-size",
                "4",
                "--iters",
                iters,
            ])
            .args([
                "--lr-milestones",
                "3,5",
                "--eval-every",
                "100",
                "--save-every",
                "100",
            ])
            .args(args)
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        stderr
    };
    let (whole, split) = (dir.join("whole"), dir.join("split"));
    let split_stderr = train(&split, "3", &[]);
    let whole_stderr = train(&whole, "6", whole_env);
    let o = cli()
        .args(["train", "--resume", split.to_str().unwrap(), "--iters", "6"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming") && stderr.contains("data on the device"),
        "{stderr}"
    );
    let weights = |run: &Path| std::fs::read(run.join("latest/model.safetensors")).unwrap();
    assert!(
        weights(&whole) == weights(&split),
        "weights differ after resuming"
    );
    [whole_stderr, split_stderr, stderr]
}

/// The protocol of uploads ahead (`Driver::mark_landing_free`, `upload_ahead`, `land_upload`),
/// which the emulator checks because on a GPU a call out of order is a race between the copy
/// stream and the compute stream that no test there could be sure to catch: an upload needs the
/// landing buffer marked free (after its allocation, or by the last landing), a landing needs an
/// upload, and the bytes arrive.
#[test]
fn uploads_ahead_keep_their_order_in_the_emulator() {
    let emu = EmuDriver::default();
    let (landing, dst) = (emu.alloc(64).unwrap(), emu.alloc(64).unwrap());
    let staging = emu.alloc_staging(64).unwrap();
    let bytes: Vec<u8> = (0..64).collect();
    // SAFETY: staging holds 64 bytes; landing and dst are 64-byte allocations.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), staging.ptr, 64);
        let e = emu.upload_ahead(&staging, landing, 64).unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
        emu.mark_landing_free(landing).unwrap();
        assert!(
            emu.land_upload(landing, dst, 64).is_err(),
            "a landing with nothing uploaded"
        );
        for round in 0..2 {
            emu.upload_ahead(&staging, landing, 64).unwrap();
            assert!(
                emu.upload_ahead(&staging, landing, 64).is_err(),
                "round {round}: an upload over one not landed"
            );
            emu.land_upload(landing, dst, 64).unwrap();
            let mut back = vec![0u8; 64];
            emu.copy_device_to_host(dst, back.as_mut_ptr(), 64).unwrap();
            assert_eq!(back, bytes);
        }
        emu.free_staging(&staging);
        emu.free(landing, 64);
        emu.free(dst, 64);
    }
}

/// An evaluation of a test split kept on the device gives the host path's result, and both wait for
/// the device once, not once a batch: three batches of 16 (the last one partial) make 1 host
/// synchronisation; with the graph, the same result, its second batch captured and replayed.
#[test]
fn a_device_evaluation_equals_the_host_one_and_waits_once() {
    let be = gpu(Precision::Bf16);
    let ds = synthetic::splits_sized(23, 8, 40).test;
    let mean = MeanImage::compute(ds.as_ref()).unwrap();
    let images = DeviceImages::upload(&be, ds.as_ref()).unwrap();
    let mut mean_t = Tensor::zeros(&be, mean.shape()).unwrap();
    mean_t.copy_from_slice(&be, &mean.data).unwrap();
    let config = ModelConfig::from_name("resnet8", 10).unwrap();
    let mut net = Network::new(&be, config, &mut ChaCha8Rng::seed_from_u64(6)).unwrap();

    let before = be.device_counts().expect("a GPU backend counts");
    let on_device = evaluate_on_device(&be, &mut net, &images, &mean_t, 16, false).unwrap();
    let counts = be.device_counts().unwrap().since(&before);
    assert_eq!(counts.host_syncs, 1, "{counts:?}");
    assert_eq!(counts.graph_launches, 0, "{counts:?}");

    // With the graph: batch 1 eager, batch 2 captured and replayed, batch 3 (partial) eager.
    let before = be.device_counts().unwrap();
    let graphed = evaluate_on_device(&be, &mut net, &images, &mean_t, 16, true).unwrap();
    let counts = be.device_counts().unwrap().since(&before);
    assert_eq!(counts.graph_launches, 1, "{counts:?}");
    assert_eq!(counts.host_syncs, 1, "{counts:?}");
    assert_eq!(graphed, on_device);

    let before = be.device_counts().unwrap();
    let on_host = evaluate(&be, &mut net, ds.as_ref(), &mean, 16).unwrap();
    let counts = be.device_counts().unwrap().since(&before);
    assert_eq!(counts.host_syncs, 1, "the host path: {counts:?}");
    assert_eq!(on_device, on_host);
    assert_eq!(on_device.images, 40);
}

/// Small uploads go up through a ring of 16 page-locked slots without the host waiting: 40 of them
/// issued back to back, each into its own tensor, with no read in between (so on a GPU each slot is
/// written again while earlier copies may still be queued), all land with their own values. One
/// upload larger than a slot takes the pageable path beside them.
#[test]
fn small_uploads_in_flight_all_land() {
    let be = gpu(Precision::F32);
    let values =
        |k: usize, n: usize| -> Vec<f32> { (0..n).map(|i| (k * 1000 + i) as f32).collect() };
    let sizes = |k: usize| if k == 7 { 20_000 } else { 1 + 37 * k };
    let mut tensors = Vec::new();
    for k in 0..40 {
        let mut t = Tensor::zeros(&be, [sizes(k)]).unwrap();
        t.copy_from_slice(&be, &values(k, sizes(k))).unwrap();
        tensors.push(t);
    }
    for (k, t) in tensors.iter().enumerate() {
        assert_eq!(t.to_vec(&be).unwrap(), values(k, sizes(k)), "upload {k}");
    }
}
