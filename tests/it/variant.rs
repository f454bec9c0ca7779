//! `--variant paper|torchvision`: torchvision's own bottleneck (from its resnet50) computes the same
//! function as ours built as the torchvision variant and a different one built as the paper's; the
//! variant is kept in checkpoints so `eval` and `--resume` use it unasked; `summary` names it; and the
//! flag is refused where torchvision defines no such net.
//!
//! The fixture is written by tools/torchvision_logits_fixture.py (see there why it is one block).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::runs::cli;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::checkpoint::safetensors::SafeTensors;
use resnet_cuda::models::{ModelConfig, Variant};
use resnet_cuda::nn::{Block, BlockSpec, BottleneckStride, Layer, Mode, ShortcutOption};
use resnet_cuda::tensor::Tensor;
use resnet_cuda::train::{self, TrainConfig};

use crate::common::layout;
use layout::{nchw_to_nhwc, oihw_to_krsc};

type Cpu = CpuBackend<f32>;

const FIXTURE: &str = "tests/fixtures/torchvision_resnet50_layer2_0.safetensors";

fn values(file: &SafeTensors, name: &str) -> Vec<f32> {
    let entry = file
        .get(name)
        .unwrap_or_else(|| panic!("fixture lacks `{name}`"));
    file.f32_values(entry).unwrap()
}

/// resnet50's `layer2.0` built our way with the stride at `stride_at`, holding the fixture's weights
/// and BN statistics, run in eval mode on the fixture's input: the output as NCHW.
fn our_block_output(file: &SafeTensors, stride_at: BottleneckStride) -> Vec<f32> {
    let be = Cpu::new();
    let spec = BlockSpec {
        in_ch: 256,
        out_ch: 512,
        stride: 2,
        shortcut: Some(ShortcutOption::B),
    };
    let mut block = Block::bottleneck(
        &be,
        "layer2.0",
        spec,
        stride_at,
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap();
    let mut loaded = 0;
    block.visit_params(&mut |p| {
        let v = values(file, &p.name);
        let v = match *p.value.dims() {
            [k, r, s, c] => oihw_to_krsc(&v, [k, r, s, c]),
            _ => v,
        };
        p.value.copy_from_slice(&be, &v).unwrap();
        loaded += 1;
    });
    block.visit_batch_norms(&mut |bn| {
        let mean = values(file, &format!("{}.running_mean", bn.name));
        let var = values(file, &format!("{}.running_var", bn.name));
        bn.running_mean.copy_from_slice(&be, &mean).unwrap();
        bn.running_var.copy_from_slice(&be, &var).unwrap();
    });
    // Three conv + BN units and the projection: 4 convolution weights, 4 BN weights and biases.
    assert_eq!(loaded, 12);

    let input = file.get("input").unwrap();
    let dims: [usize; 4] = input.shape.clone().try_into().unwrap();
    let x = Tensor::from_slice(
        &be,
        [dims[0], dims[2], dims[3], dims[1]],
        &nchw_to_nhwc(&file.f32_values(input).unwrap(), dims),
    )
    .unwrap();
    block.forward(&be, &x, Mode::Eval).unwrap();
    let y = block.output();
    let [n, h, w, c] = y.shape().dims4().unwrap();
    let nhwc = y.to_vec(&be).unwrap();
    // Back to NCHW to compare with the file.
    let mut nchw = vec![0.0; nhwc.len()];
    for ni in 0..n {
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    nchw[((ni * c + ci) * h + hi) * w + wi] =
                        nhwc[((ni * h + hi) * w + wi) * c + ci];
                }
            }
        }
    }
    nchw
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output sizes differ");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn torchvision_bottleneck_matches_the_torchvision_variant_only() {
    let file = SafeTensors::read(Path::new(FIXTURE)).unwrap();
    let theirs = values(&file, "output");
    assert_eq!(theirs.len(), 2 * 512 * 5 * 5);
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));

    // Tolerance: the reference is f64 rounded to f32; ours accumulates in f32. The longest reduction
    // is the 3x3 convolution's, K = 128 * 9 = 1152 products; a dot product of K terms in f32 is off
    // by at most about K * eps relative to the sum of its terms' magnitudes (worst case; rounding
    // errors usually cancel towards sqrt(K) * eps), and BN and the ReLUs do not amplify that beyond
    // the output's own scale here (BN scales are in [0.5, 1.5] over variances in [0.5, 2]). So allow
    // K * eps of the output's largest magnitude: ~1.4e-4 relative.
    let k = (128 * 9) as f32;
    let tol = k * f32::EPSILON * scale;

    let torchvision = our_block_output(&file, BottleneckStride::On3x3);
    let diff_tv = max_abs_diff(&torchvision, &theirs);
    let paper = our_block_output(&file, BottleneckStride::OnReduce);
    let diff_paper = max_abs_diff(&paper, &theirs);
    println!(
        "max |y| {scale}; torchvision variant off by {diff_tv}, paper variant by {diff_paper}; tolerance {tol}"
    );
    assert!(
        diff_tv <= tol,
        "the torchvision variant differs from torchvision by {diff_tv} (> {tol})"
    );
    // The paper's block sees the input subsampled before the 3x3 (it reads a quarter of the pixels
    // the torchvision one reads): a different function, off by a sizeable fraction of the output.
    assert!(
        diff_paper > 0.1 * scale && diff_paper > 1000.0 * tol,
        "the paper variant should compute a different function, yet differs by only {diff_paper}"
    );
}

#[test]
fn the_variant_sets_the_bottleneck_stride_of_every_imagenet_residual_net() {
    for name in ["resnet50", "resnet101", "resnet152"] {
        let paper = ModelConfig::from_name(name, 1000).unwrap();
        assert_eq!(
            paper.variant(),
            Variant::Paper,
            "the default is the paper's"
        );
        assert_eq!(paper.bottleneck_stride, BottleneckStride::OnReduce);
        let tv = paper.with_variant(Variant::Torchvision).unwrap();
        assert_eq!(tv.bottleneck_stride, BottleneckStride::On3x3);
        assert_eq!(tv.variant(), Variant::Torchvision);
        assert!(
            tv.describe().contains("torchvision variant"),
            "{}",
            tv.describe()
        );
    }
    // torchvision's resnet18/34 are the paper's nets: accepted, nothing to name.
    let r18 = ModelConfig::from_name("resnet18", 1000)
        .unwrap()
        .with_variant(Variant::Torchvision)
        .unwrap();
    assert_eq!(r18.describe(), "resnet18");
    // torchvision defines no CIFAR and no plain nets: the flag can only be a mistake there.
    for name in ["resnet20", "cifar-resnet50", "plain18"] {
        let err = ModelConfig::from_name(name, 10)
            .unwrap()
            .with_variant(Variant::Torchvision)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--variant torchvision") && err.contains(name) && !err.contains('\n'),
            "{err}"
        );
        // `paper` is the default, and so always fine.
        ModelConfig::from_name(name, 10)
            .unwrap()
            .with_variant(Variant::Paper)
            .unwrap();
    }
    let err = "v1.5".parse::<Variant>().unwrap_err().to_string();
    assert!(err.contains("expected paper or torchvision"), "{err}");
}

// ---- The command line: the variant travels in the checkpoint. ----

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("resnet-cuda-variant-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A failure whose error is one line (progress lines such as `device: cpu` may come before it)
/// naming `culprit`, and no panic.
fn assert_one_line_failure(o: &Output, culprit: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert!(
        errors[0].contains(culprit),
        "the error should name {culprit:?}: {err}"
    );
    assert_eq!(
        err.trim_end().lines().last(),
        Some(errors[0]),
        "the error ends stderr: {err}"
    );
}

#[test]
fn summary_names_the_variant() {
    let o = cli()
        .args(["summary", "--model", "resnet50", "--variant", "torchvision"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.trim().lines().last().unwrap();
    assert!(
        last.starts_with(
            "resnet50 (torchvision variant: downsampling stride on the 3x3 convolution)"
        ),
        "{last}"
    );
    let o = cli()
        .args(["summary", "--model", "resnet50"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("resnet50 (paper variant: downsampling stride on the first 1x1"),
        "{out}"
    );

    let o = cli()
        .args(["summary", "--model", "resnet20", "--variant", "torchvision"])
        .output()
        .unwrap();
    assert_one_line_failure(&o, "--variant torchvision");
    let o = cli()
        .args(["summary", "--model", "resnet50", "--variant", "v2"])
        .output()
        .unwrap();
    assert_one_line_failure(&o, "--variant v2");
}

#[test]
fn a_torchvision_run_evaluates_and_resumes_as_torchvision_unasked() {
    let dir = TempDir::new("run");
    let run = dir.0.join("run");
    let run_s = run.to_str().unwrap();
    // The smallest resnet50 run there is: 32x32 synthetic images, two iterations of batch 2.
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            "resnet50",
            "--data",
            "synthetic:8:4",
            "--batch-size",
            "2",
            "--eval-every",
            "100",
            "--out",
            run_s,
        ];
        args.extend_from_slice(extra);
        cli().args(&args).output().unwrap()
    };
    let o = train(&["--variant", "torchvision", "--iters", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let latest = run.join("latest");
    let state = train::read_state(&latest).unwrap();
    assert_eq!(state.config.variant, Variant::Torchvision);
    let model = train::model_config(&state.config, 10).unwrap();
    assert_eq!(model.bottleneck_stride, BottleneckStride::On3x3);

    let o = cli()
        .args(["eval", "--checkpoint", latest.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // A resume that asks for the other variant is refused; one that says nothing continues it.
    let o = cli()
        .args([
            "train",
            "--resume",
            run_s,
            "--iters",
            "2",
            "--variant",
            "paper",
        ])
        .output()
        .unwrap();
    assert_one_line_failure(&o, "--variant paper");
    let o = cli()
        .args(["train", "--resume", run_s, "--iters", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let state = train::read_state(&latest).unwrap();
    assert_eq!(state.config.variant, Variant::Torchvision);
    assert_eq!(state.config.iters, 2);

    // `--init` reads the weights only; their file names the variant, and a paper net refuses them.
    let other = dir.0.join("other");
    let o = cli()
        .args([
            "train",
            "--model",
            "resnet50",
            "--data",
            "synthetic:8:4",
            "--batch-size",
            "2",
            "--iters",
            "1",
            "--out",
            other.to_str().unwrap(),
            "--init",
            latest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_one_line_failure(&o, "torchvision variant");
    assert!(
        stderr(&o).contains("--variant torchvision"),
        "{}",
        stderr(&o)
    );
}

/// Checkpoints from before `--variant` have no such field: they were the paper's nets.
#[test]
fn an_old_run_state_without_a_variant_is_the_papers() {
    let mut cfg = serde_json::to_value(TrainConfig {
        variant: Variant::Torchvision,
        ..default_config()
    })
    .unwrap();
    assert_eq!(cfg["variant"], "torchvision");
    cfg.as_object_mut().unwrap().remove("variant");
    let old: TrainConfig = serde_json::from_value(cfg).unwrap();
    assert_eq!(old.variant, Variant::Paper);
}

fn default_config() -> TrainConfig {
    let data = train::DataSpec::parse("synthetic").unwrap();
    let recipe = train::Recipe::for_data(&data, Some(10));
    TrainConfig {
        model: "resnet50".into(),
        data,
        device: train::DeviceChoice::Cpu,
        gpus: 1,
        replicas: 1,
        shortcut: None,
        variant: Variant::Paper,
        precision: None,
        cuda_graph: true,
        device_data: true,
        conv_tuning: false,
        batch_size: recipe.batch_size,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        iters: recipe.iters,
        schedule: resnet_cuda::optim::ScheduleKind::Step {
            milestones: recipe.milestones,
        },
        warmup_iters: 0,
        warmup_lr: 0.01,
        augment: true,
        shuffle: true,
        seed: 0,
        eval_every: 10,
        log_every: 10,
        save_every: 10,
        out: PathBuf::from("unused"),
        init: None,
        workers: None,
        bucket_mb: None,
    }
}
