//! Batches built on the GPU from images kept there (`--device-data`, kernels/input.cu) against the
//! host's batch assembly, and a run trained from them against one trained from host batches.
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

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::{DynDriver, GpuBackend};
use resnet_cuda::backend::{Backend, DType, Precision};
use resnet_cuda::data::augment::CropFlip;
use resnet_cuda::data::batch::{fill_batch_with_views, MeanImage};
use resnet_cuda::data::device_images::{BatchDraws, DeviceImages};
use resnet_cuda::data::synthetic;
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

type Gpu = GpuBackend<DynDriver>;

fn driver_name() -> String {
    std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into())
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
    x.copy_from_slice(&be, &vec![f32::NAN; n * h * w * 3]).unwrap();
    let mut labels = Tensor::zeros(&be, [n]).unwrap();
    ops::image_batch(&be, &images, &draws, &mean_t, &mut x, &mut labels).unwrap();
    let dtype = be.dtype(x.buf());
    let device_x = x.to_vec(&be).unwrap();
    let device_labels = labels.to_vec(&be).unwrap().iter().map(|&l| l as u32).collect();

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
    assert_eq!(dtype, DType::Bf16, "the batch is written in the activation type");
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

/// Trains resnet8 for 6 steps of 4 (augmented, shuffled, graphs on) with `--device-data on|off`,
/// evaluating after 3 and 6 on a test split of 10 (a partial last batch); returns the final
/// checkpoint's files and the logged test errors.
fn run(dir: &Path, device_data: &str) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    let out = dir.join(device_data);
    let device = if driver_name().starts_with("cuda") {
        "cuda"
    } else {
        "emu"
    };
    let o = cli()
        .args(["train", "--device", device, "--device-data", device_data])
        .args(["--model", "resnet8", "--batch-size", "4", "--data", "synthetic:32:10"])
        .args(["--iters", "6", "--eval-every", "3", "--log-every", "3"])
        .args(["--out", out.to_str().unwrap()])
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

#[test]
fn a_run_on_device_batches_equals_a_run_on_host_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (model_on, optimizer_on, evals_on) = run(dir.path(), "on");
    let (model_off, optimizer_off, evals_off) = run(dir.path(), "off");
    assert_eq!(evals_on.len(), 2, "{evals_on:?}");
    assert_eq!(evals_on, evals_off);
    assert!(model_on == model_off, "the weights differ");
    assert!(optimizer_on == optimizer_off, "the momentum differs");
}
