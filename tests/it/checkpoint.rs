//! Checkpoints: exact round trips, torchvision's state-dict names and shapes, loading a bare
//! `model.safetensors`, every kind of bad file rejected with an error that names it, and atomic saves.
//!
//! Two ignored tests cross-check with real PyTorch (see tools/torchvision_state_dict.py):
//! `RESNET_CUDA_TORCH_DIR=/tmp/x cargo test --test checkpoint torch_export -- --ignored`, then
//! `python tools/torchvision_state_dict.py verify /tmp/x`, then
//! `RESNET_CUDA_TORCH_DIR=/tmp/x cargo test --test checkpoint torch_import -- --ignored`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{Backend, Element, SgdConfig};
use resnet_cuda::checkpoint::safetensors::{serialize, Dtype, OutTensor, SafeTensors};
use resnet_cuda::checkpoint::{self, MeanImage, MODEL_FILE, OPTIMIZER_FILE, ORDER_KEY};
use resnet_cuda::models::{ModelConfig, Network};
use resnet_cuda::nn::{Mode, ShortcutOption};
use resnet_cuda::optim::Sgd;
use resnet_cuda::tensor::Tensor;

use crate::common::layout;
use layout::nchw_to_nhwc;

type Cpu = CpuBackend<f32>;

/// A fresh folder under the system temp folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "resnet-cuda-checkpoint-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sgd_config() -> SgdConfig {
    SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
    }
}

/// A CIFAR resnet8 with projection shortcuts, so that `downsample` convolutions and BNs exist.
fn small_net<B: Backend>(be: &B, seed: u64) -> Network<B> {
    let config = ModelConfig::from_name("resnet8", 10)
        .unwrap()
        .with_shortcut(ShortcutOption::B);
    Network::new(be, config, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

/// Runs `steps` SGD steps on random data so weights, BN statistics, counters and momentum all move.
fn train<B: Backend>(be: &B, net: &mut Network<B>, sgd: &mut Sgd<B>, steps: usize, side: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let n = 4;
    let pixels: Vec<B::Elem> = (0..n * side * side * 3)
        .map(|_| B::Elem::of(rng.random_range(-1.0..1.0)))
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let x = Tensor::from_slice(be, [n, side, side, 3], &pixels).unwrap();
    for _ in 0..steps {
        net.forward_backward(be, &x, &labels).unwrap();
        sgd.step(be, net).unwrap();
    }
}

/// Every parameter, running statistic and counter of a network, by name, as f64.
fn snapshot<B: Backend>(be: &B, net: &mut Network<B>) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    net.visit_params(&mut |p| {
        out.insert(
            p.name.clone(),
            p.value
                .to_vec(be)
                .unwrap()
                .iter()
                .map(|v| v.f64())
                .collect(),
        );
    });
    net.visit_batch_norms(&mut |bn| {
        out.insert(
            format!("{}.running_mean", bn.name),
            bn.running_mean
                .to_vec(be)
                .unwrap()
                .iter()
                .map(|v| v.f64())
                .collect(),
        );
        out.insert(
            format!("{}.running_var", bn.name),
            bn.running_var
                .to_vec(be)
                .unwrap()
                .iter()
                .map(|v| v.f64())
                .collect(),
        );
        out.insert(
            format!("{}.num_batches_tracked", bn.name),
            vec![bn.num_batches_tracked as f64],
        );
    });
    out
}

fn velocity<B: Backend>(be: &B, sgd: &Sgd<B>) -> Vec<Vec<f64>> {
    sgd.velocity()
        .iter()
        .map(|v| v.to_vec(be).unwrap().iter().map(|x| x.f64()).collect())
        .collect()
}

fn mean_image() -> (Vec<f32>, [usize; 3]) {
    (
        (0..32 * 32 * 3)
            .map(|i| (i as f32 * 0.37).sin() * 100.0 + 120.0)
            .collect(),
        [32, 32, 3],
    )
}

/// A trained resnet8 saved with optimizer, mean image and run state into `dir`.
fn saved_checkpoint(be: &Cpu, dir: &Path) -> (Network<Cpu>, Sgd<Cpu>) {
    let mut net = small_net(be, 1);
    let mut sgd = Sgd::new(sgd_config());
    train(be, &mut net, &mut sgd, 2, 32);
    let (mean, dims) = mean_image();
    let state = serde_json::json!({ "iteration": 2 });
    checkpoint::save(dir, be, &mut net, Some(&sgd), Some((&mean, dims)), &state).unwrap();
    (net, sgd)
}

/// Rewrites a safetensors file through `edit`, which may drop, add or change tensors.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<OutTensor>)) {
    let file = SafeTensors::read(path).unwrap();
    let mut tensors: Vec<OutTensor> = file
        .entries
        .iter()
        .map(|e| OutTensor {
            name: e.name.clone(),
            dtype: e.dtype,
            shape: e.shape.clone(),
            data: file.bytes(e).to_vec(),
        })
        .collect();
    edit(&mut tensors);
    std::fs::write(path, serialize(path, &tensors, &file.metadata).unwrap()).unwrap();
}

fn load_error(path: &Path, be: &Cpu) -> String {
    let mut net = small_net(be, 5);
    let err = checkpoint::load_weights(path, be, &mut net)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&path.display().to_string()) || err.contains(MODEL_FILE),
        "error should name the file: {err}"
    );
    err
}

#[test]
fn round_trip_restores_everything_exactly() {
    let be = Cpu::new();
    let tmp = TempDir::new("round-trip");
    let dir = tmp.join("latest");
    let (mut net, sgd) = saved_checkpoint(&be, &dir);

    let mut fresh = small_net(&be, 2);
    let mut fresh_sgd = Sgd::new(sgd_config());
    assert_ne!(
        snapshot(&be, &mut fresh),
        snapshot(&be, &mut net),
        "different seeds give different nets"
    );
    let loaded = checkpoint::load(&dir, &be, &mut fresh, &mut fresh_sgd).unwrap();

    let expected = snapshot(&be, &mut net);
    assert_eq!(snapshot(&be, &mut fresh), expected);
    assert_eq!(expected["bn1.num_batches_tracked"], vec![2.0]);
    assert_eq!(
        expected["layer2.0.downsample.1.num_batches_tracked"],
        vec![2.0]
    );
    assert_eq!(velocity(&be, &fresh_sgd), velocity(&be, &sgd));
    assert!(
        velocity(&be, &sgd).iter().flatten().any(|&v| v != 0.0),
        "momentum moved"
    );
    let (mean, dims) = mean_image();
    assert_eq!(
        loaded.mean_image,
        Some(MeanImage::from_parts(dims[0], dims[1], mean).unwrap())
    );
    assert_eq!(loaded.run_state, serde_json::json!({ "iteration": 2 }));

    // The restored pair trains on exactly as the original would.
    let mut sgd = sgd;
    train(&be, &mut net, &mut sgd, 1, 32);
    train(&be, &mut fresh, &mut fresh_sgd, 1, 32);
    assert_eq!(snapshot(&be, &mut fresh), snapshot(&be, &mut net));
}

#[test]
fn an_f64_network_round_trips_through_f32_files() {
    let be = CpuBackend::<f64>::new();
    let tmp = TempDir::new("f64");
    let dir = tmp.join("ckpt");
    let mut net = small_net(&be, 1);
    let mut sgd = Sgd::new(sgd_config());
    train(&be, &mut net, &mut sgd, 1, 16);
    checkpoint::save(
        &dir,
        &be,
        &mut net,
        Some(&sgd),
        None,
        &serde_json::Value::Null,
    )
    .unwrap();
    let mut fresh = small_net(&be, 2);
    let mut fresh_sgd = Sgd::new(sgd_config());
    let loaded = checkpoint::load(&dir, &be, &mut fresh, &mut fresh_sgd).unwrap();
    assert_eq!(loaded.mean_image, None);
    let rounded = |m: BTreeMap<String, Vec<f64>>| -> BTreeMap<String, Vec<f64>> {
        m.into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|x| x as f32 as f64).collect()))
            .collect()
    };
    assert_eq!(snapshot(&be, &mut fresh), rounded(snapshot(&be, &mut net)));
}

/// Names, shapes and order of `model.safetensors` against torchvision's own state dict
/// (tests/fixtures, written by tools/torchvision_state_dict.py from torchvision 0.29).
#[test]
fn model_file_is_torchvision_state_dict_for_resnet18_and_resnet50() {
    let be = Cpu::new();
    let tmp = TempDir::new("torchvision");
    for arch in ["resnet18", "resnet50"] {
        let fixture = std::fs::read_to_string(format!(
            "{}/tests/fixtures/torchvision_{arch}_state_dict.txt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let expected: Vec<&str> = fixture.lines().collect();

        let config = ModelConfig::from_name(arch, 1000).unwrap();
        let mut net = Network::new(&be, config, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let dir = tmp.join(arch);
        checkpoint::save(&dir, &be, &mut net, None, None, &serde_json::Value::Null).unwrap();
        let path = dir.join(MODEL_FILE);
        let file = SafeTensors::read(&path).unwrap();

        let order: Vec<&str> = file.metadata[ORDER_KEY].split(',').collect();
        assert_eq!(
            order.len(),
            file.entries.len(),
            "{arch}: the order lists every tensor once"
        );
        let ours: Vec<String> = order
            .iter()
            .map(|name| {
                let e = file
                    .get(name)
                    .unwrap_or_else(|| panic!("{arch}: `{name}` is in the order but not the file"));
                let want = if name.ends_with("num_batches_tracked") {
                    Dtype::I64
                } else {
                    Dtype::F32
                };
                assert_eq!(e.dtype, want, "{arch}: dtype of {name}");
                format!("{name} {:?}", e.shape)
            })
            .collect();
        assert_eq!(
            ours, expected,
            "{arch}: names, shapes and order must equal torchvision's state_dict"
        );
        assert_eq!(file.metadata["format"], "pt");

        // The reference implementation of the format reads the file and agrees on every tensor.
        let bytes = std::fs::read(&path).unwrap();
        let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(reference.len(), expected.len());
        for e in &file.entries {
            let view = reference.tensor(&e.name).unwrap();
            assert_eq!(view.shape(), e.shape.as_slice());
            assert_eq!(view.data(), file.bytes(e));
            assert_eq!(
                (data_start + e.begin) % e.dtype.size(),
                0,
                "{} is aligned",
                e.name
            );
        }
    }
}

/// Convolution weights go to the file as OIHW, the linear weight as [out, in], unchanged otherwise.
#[test]
fn weights_are_oihw_in_the_file() {
    let be = Cpu::new();
    let tmp = TempDir::new("oihw");
    let mut net = small_net(&be, 3);
    let dir = tmp.join("ckpt");
    checkpoint::save(&dir, &be, &mut net, None, None, &serde_json::Value::Null).unwrap();
    let file = SafeTensors::read(&dir.join(MODEL_FILE)).unwrap();
    let mut checked = 0;
    net.visit_params(&mut |p| {
        let device = p.value.to_vec(&be).unwrap();
        let entry = file.get(&p.name).unwrap();
        let stored = file.f32_values(entry).unwrap();
        match *p.value.dims() {
            [k, r, s, c] => {
                assert_eq!(entry.shape, vec![k, c, r, s], "{}", p.name);
                for (ki, ri, si, ci) in [
                    (0, 0, 0, 0),
                    (k - 1, r - 1, s - 1, c - 1),
                    (k / 2, r / 2, s - 1, c / 3),
                ] {
                    assert_eq!(
                        stored[((ki * c + ci) * r + ri) * s + si],
                        device[((ki * r + ri) * s + si) * c + ci],
                        "{}",
                        p.name
                    );
                }
                checked += 1;
            }
            _ => {
                assert_eq!(entry.shape, p.value.dims(), "{}", p.name);
                assert_eq!(stored, device, "{}", p.name);
            }
        }
    });
    assert!(checked >= 9, "resnet8 has at least 9 convolutions");
    assert_eq!(file.get("fc.weight").unwrap().shape, vec![10, 64]);
}

/// `--init`: a bare `model.safetensors`, its tensors in any order (PyTorch's writer sorts them).
#[test]
fn bare_model_file_initialises_a_network() {
    let be = Cpu::new();
    let tmp = TempDir::new("bare");
    let dir = tmp.join("ckpt");
    let (mut net, _) = saved_checkpoint(&be, &dir);
    let bare = tmp.join("exported.safetensors");
    std::fs::copy(dir.join(MODEL_FILE), &bare).unwrap();
    rewrite(&bare, |tensors| tensors.reverse());

    let mut fresh = small_net(&be, 4);
    checkpoint::load_weights(&bare, &be, &mut fresh).unwrap();
    assert_eq!(snapshot(&be, &mut fresh), snapshot(&be, &mut net));

    let mut from_folder = small_net(&be, 6);
    checkpoint::load_weights(&dir, &be, &mut from_folder).unwrap();
    assert_eq!(snapshot(&be, &mut from_folder), snapshot(&be, &mut net));
}

#[test]
fn truncated_files_are_rejected() {
    let be = Cpu::new();
    let tmp = TempDir::new("truncated");
    let dir = tmp.join("ckpt");
    saved_checkpoint(&be, &dir);
    let path = tmp.join("model.safetensors");
    let full = std::fs::read(dir.join(MODEL_FILE)).unwrap();
    for keep in [full.len() - 1, full.len() - 1000, full.len() / 2, 100, 7, 0] {
        std::fs::write(&path, &full[..keep]).unwrap();
        let err = load_error(&path, &be);
        assert!(
            err.contains("truncated") || err.contains("not a safetensors file"),
            "keep {keep}: {err}"
        );
    }
    // One byte too many is as wrong as one too few.
    let mut longer = full.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(load_error(&path, &be).contains("truncated or corrupt"));
}

#[test]
fn garbage_headers_are_rejected() {
    let be = Cpu::new();
    let tmp = TempDir::new("garbage");
    let dir = tmp.join("ckpt");
    saved_checkpoint(&be, &dir);
    let path = tmp.join("model.safetensors");
    let full = std::fs::read(dir.join(MODEL_FILE)).unwrap();

    let mut garbage = full.clone();
    garbage[8..40].copy_from_slice(b"this is not a JSON header at all");
    std::fs::write(&path, &garbage).unwrap();
    assert!(load_error(&path, &be).contains("corrupt safetensors header"));

    let mut huge = full.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(load_error(&path, &be).contains("corrupt safetensors header"));

    // A tensor whose byte range does not match its shape is named.
    let header_len = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&full[8..8 + header_len]).unwrap();
    let bad = header.replacen("\"shape\":[10,64]", "\"shape\":[10,65]", 1);
    assert_ne!(bad, header);
    let mut edited = full[..8].to_vec();
    edited.extend_from_slice(bad.as_bytes());
    edited.extend_from_slice(&full[8 + header_len..]);
    std::fs::write(&path, &edited).unwrap();
    let err = load_error(&path, &be);
    assert!(
        err.contains("`fc.weight`") && err.contains("needs 2600 bytes"),
        "{err}"
    );
}

#[test]
fn missing_wrong_and_unexpected_tensors_are_named() {
    let be = Cpu::new();
    let tmp = TempDir::new("keys");
    let dir = tmp.join("ckpt");
    saved_checkpoint(&be, &dir);
    let path = tmp.join("model.safetensors");
    let reset = || std::fs::copy(dir.join(MODEL_FILE), &path).unwrap();

    reset();
    rewrite(&path, |t| {
        t.retain(|t| t.name != "layer1.0.bn1.running_var")
    });
    let err = load_error(&path, &be);
    assert!(
        err.contains("missing 1 tensor(s): `layer1.0.bn1.running_var`"),
        "{err}"
    );

    reset();
    rewrite(&path, |t| {
        let fc = t.iter_mut().find(|t| t.name == "fc.weight").unwrap();
        fc.shape = vec![64, 10];
    });
    let err = load_error(&path, &be);
    assert!(
        err.contains("tensor `fc.weight` has shape [64, 10], expected [10, 64]"),
        "{err}"
    );

    reset();
    rewrite(&path, |t| {
        let n = t
            .iter_mut()
            .find(|t| t.name == "bn1.num_batches_tracked")
            .unwrap();
        *n = OutTensor::f32("bn1.num_batches_tracked", vec![2], &[2.0, 0.0]);
    });
    let err = load_error(&path, &be);
    assert!(
        err.contains("tensor `bn1.num_batches_tracked` has dtype F32, expected I64"),
        "{err}"
    );

    reset();
    rewrite(&path, |t| {
        t.push(OutTensor::f32("layer4.0.conv1.weight", vec![1], &[0.0]))
    });
    let err = load_error(&path, &be);
    assert!(
        err.contains("unexpected 1 tensor(s) this model does not have: `layer4.0.conv1.weight`"),
        "{err}"
    );

    // A checkpoint of another architecture: both lists, abbreviated.
    let mut resnet20 = Network::new(
        &be,
        ModelConfig::from_name("resnet20", 10).unwrap(),
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap();
    let err = checkpoint::load_weights(&dir, &be, &mut resnet20)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing") && err.contains("more)"), "{err}");
    assert!(
        err.contains("unexpected") && err.contains("`layer2.0.downsample.0.weight`"),
        "{err}"
    );
}

#[test]
fn a_failed_load_changes_nothing() {
    let be = Cpu::new();
    let tmp = TempDir::new("unchanged");
    let dir = tmp.join("ckpt");
    saved_checkpoint(&be, &dir);
    // Only the optimizer file is bad: the model file is valid, yet nothing may be applied.
    rewrite(&dir.join(OPTIMIZER_FILE), |t| {
        t.retain(|t| t.name != "fc.bias.momentum_buffer")
    });
    let mut net = small_net(&be, 8);
    let mut sgd = Sgd::new(sgd_config());
    train(&be, &mut net, &mut sgd, 1, 16);
    let (before, momentum) = (snapshot(&be, &mut net), velocity(&be, &sgd));
    let err = checkpoint::load(&dir, &be, &mut net, &mut sgd)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(OPTIMIZER_FILE) && err.contains("`fc.bias.momentum_buffer`"),
        "{err}"
    );
    assert_eq!(snapshot(&be, &mut net), before);
    assert_eq!(velocity(&be, &sgd), momentum);
}

#[test]
fn missing_checkpoints_are_errors() {
    let be = Cpu::new();
    let tmp = TempDir::new("missing");
    let mut net = small_net(&be, 1);
    let mut sgd = Sgd::new(sgd_config());
    let nowhere = tmp.join("no-such-checkpoint");
    for err in [
        checkpoint::load(&nowhere, &be, &mut net, &mut sgd)
            .unwrap_err()
            .to_string(),
        checkpoint::load_weights(&nowhere, &be, &mut net)
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            err.contains("no-such-checkpoint") && err.contains("does not exist"),
            "{err}"
        );
    }
    // A folder without the model file, or without the run state.
    let dir = tmp.join("ckpt");
    saved_checkpoint(&be, &dir);
    std::fs::remove_file(dir.join("run_state.json")).unwrap();
    let err = checkpoint::load(&dir, &be, &mut net, &mut sgd)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run_state.json") && err.contains("does not exist"),
        "{err}"
    );
    std::fs::remove_file(dir.join(MODEL_FILE)).unwrap();
    let err = checkpoint::load_weights(&dir, &be, &mut net)
        .unwrap_err()
        .to_string();
    assert!(err.contains(MODEL_FILE), "{err}");
    // A corrupt run state.
    let dir = tmp.join("ckpt2");
    saved_checkpoint(&be, &dir);
    std::fs::write(dir.join("run_state.json"), "{\"iteration\": ").unwrap();
    let err = checkpoint::load(&dir, &be, &mut net, &mut sgd)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run_state.json") && err.contains("corrupt JSON"),
        "{err}"
    );
}

#[test]
fn optimizer_state_is_optional_and_may_be_empty() {
    let be = Cpu::new();
    let tmp = TempDir::new("optimizer");
    let mut net = small_net(&be, 1);
    let mut trained_sgd = Sgd::new(sgd_config());
    train(&be, &mut net, &mut trained_sgd, 1, 16);

    // Saved before the first step: no buffers, and loading clears any the optimizer had.
    let dir = tmp.join("unstepped");
    checkpoint::save(
        &dir,
        &be,
        &mut net,
        Some(&Sgd::new(sgd_config())),
        None,
        &serde_json::Value::Null,
    )
    .unwrap();
    assert!(SafeTensors::read(&dir.join(OPTIMIZER_FILE))
        .unwrap()
        .entries
        .is_empty());
    let mut other = small_net(&be, 2);
    let mut stepped = Sgd::new(sgd_config());
    train(&be, &mut other, &mut stepped, 1, 16);
    checkpoint::load(&dir, &be, &mut other, &mut stepped).unwrap();
    assert!(stepped.velocity().is_empty());

    // Saved without an optimizer: no file; loading clears the buffers too.
    let dir = tmp.join("weights-only");
    checkpoint::save(&dir, &be, &mut net, None, None, &serde_json::json!({})).unwrap();
    assert!(!dir.join(OPTIMIZER_FILE).exists());
    checkpoint::load(&dir, &be, &mut other, &mut trained_sgd).unwrap();
    assert!(trained_sgd.velocity().is_empty());
}

#[test]
fn bad_mean_images_are_rejected() {
    let be = Cpu::new();
    let tmp = TempDir::new("mean");
    let mut net = small_net(&be, 1);
    let err = checkpoint::save(
        &tmp.join("ckpt"),
        &be,
        &mut net,
        None,
        Some((&[0.0; 10], [2, 2, 3])),
        &serde_json::Value::Null,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("preprocess.safetensors") && err.contains("mean image"),
        "{err}"
    );
    assert!(!tmp.join("ckpt").exists(), "a failed save writes nothing");
}

#[test]
fn saves_are_atomic_and_replace_the_previous_checkpoint() {
    let be = Cpu::new();
    let tmp = TempDir::new("atomic");
    let dir = tmp.join("latest");
    let mut net = small_net(&be, 1);
    let mut sgd = Sgd::new(sgd_config());
    checkpoint::save(
        &dir,
        &be,
        &mut net,
        Some(&sgd),
        None,
        &serde_json::json!({ "iteration": 0 }),
    )
    .unwrap();
    assert_eq!(tmp.entries(), ["latest"]);

    // A crash mid-save left a partial temporary folder; the next save cleans it up and replaces the
    // old checkpoint.
    std::fs::create_dir(tmp.join("latest.tmp")).unwrap();
    std::fs::write(tmp.join("latest.tmp").join(MODEL_FILE), b"partial").unwrap();
    train(&be, &mut net, &mut sgd, 1, 16);
    checkpoint::save(
        &dir,
        &be,
        &mut net,
        Some(&sgd),
        None,
        &serde_json::json!({ "iteration": 1 }),
    )
    .unwrap();
    assert_eq!(
        tmp.entries(),
        ["latest"],
        "no temporary or old folder is left behind"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model.safetensors",
            "optimizer.safetensors",
            "run_state.json"
        ]
    );

    let mut fresh = small_net(&be, 2);
    let mut fresh_sgd = Sgd::new(sgd_config());
    let loaded = checkpoint::load(&dir, &be, &mut fresh, &mut fresh_sgd).unwrap();
    assert_eq!(loaded.run_state, serde_json::json!({ "iteration": 1 }));
    assert_eq!(snapshot(&be, &mut fresh), snapshot(&be, &mut net));

    // A crash between the two renames: the checkpoint sits at `latest.old`, and loading says so.
    std::fs::rename(&dir, tmp.join("latest.old")).unwrap();
    let err = checkpoint::load(&dir, &be, &mut fresh, &mut fresh_sgd)
        .unwrap_err()
        .to_string();
    assert!(err.contains("latest.old"), "{err}");
    checkpoint::save(&dir, &be, &mut net, None, None, &serde_json::Value::Null).unwrap();
    assert_eq!(tmp.entries(), ["latest"]);

    // A folder that is not a checkpoint is never replaced.
    let precious = tmp.join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), b"keep me").unwrap();
    let err = checkpoint::save(
        &precious,
        &be,
        &mut net,
        None,
        None,
        &serde_json::Value::Null,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("refusing"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(precious.join("notes.txt")).unwrap(),
        b"keep me"
    );
    assert!(!tmp.join("precious.tmp").exists());
}

fn torch_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("RESNET_CUDA_TORCH_DIR")
            .expect("set RESNET_CUDA_TORCH_DIR to a scratch folder"),
    )
}

/// Step 1 of the PyTorch cross-check: a trained resnet18 checkpoint, and eval-mode logits on a fixed
/// input, for tools/torchvision_state_dict.py to compare.
#[test]
#[ignore = "needs PyTorch; see the module comment"]
fn torch_export() {
    let be = Cpu::new();
    let dir = torch_dir();
    let mut net = Network::new(
        &be,
        ModelConfig::from_name("resnet18", 1000).unwrap(),
        &mut ChaCha8Rng::seed_from_u64(0),
    )
    .unwrap();
    let mut sgd = Sgd::new(sgd_config());
    train(&be, &mut net, &mut sgd, 1, 64);
    let _ = std::fs::remove_dir_all(dir.join("ours"));
    checkpoint::save(
        &dir.join("ours"),
        &be,
        &mut net,
        Some(&sgd),
        None,
        &serde_json::Value::Null,
    )
    .unwrap();

    let (n, c, h, w) = (2, 3, 64, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let nchw: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let x = Tensor::from_slice(&be, [n, h, w, c], &nchw_to_nhwc(&nchw, [n, c, h, w])).unwrap();
    let logits = net
        .forward(&be, &x, Mode::Eval)
        .unwrap()
        .to_vec(&be)
        .unwrap();
    let io = [
        OutTensor::f32("input", vec![n, c, h, w], &nchw),
        OutTensor::f32("logits", vec![n, 1000], &logits),
    ];
    let path = dir.join("ours_io.safetensors");
    std::fs::write(&path, serialize(&path, &io, &BTreeMap::new()).unwrap()).unwrap();
}

/// Step 3 of the PyTorch cross-check: torchvision's random resnet18 loads and gives torchvision's
/// logits.
#[test]
#[ignore = "needs PyTorch; see the module comment"]
fn torch_import() {
    let be = Cpu::new();
    let dir = torch_dir();
    let mut net = Network::new(
        &be,
        ModelConfig::from_name("resnet18", 1000).unwrap(),
        &mut ChaCha8Rng::seed_from_u64(1),
    )
    .unwrap();
    checkpoint::load_weights(&dir.join("torch").join(MODEL_FILE), &be, &mut net).unwrap();
    let mut tracked = Vec::new();
    net.visit_batch_norms(&mut |bn| tracked.push(bn.num_batches_tracked));
    assert!(tracked.iter().all(|&t| t == 1234));

    let io = SafeTensors::read(&dir.join("torch_io.safetensors")).unwrap();
    let input = io.get("input").unwrap();
    let dims: [usize; 4] = input.shape.clone().try_into().unwrap();
    let nchw = io.f32_values(input).unwrap();
    let x = Tensor::from_slice(
        &be,
        [dims[0], dims[2], dims[3], dims[1]],
        &nchw_to_nhwc(&nchw, dims),
    )
    .unwrap();
    let ours = net
        .forward(&be, &x, Mode::Eval)
        .unwrap()
        .to_vec(&be)
        .unwrap();
    let theirs = io.f32_values(io.get("logits").unwrap()).unwrap();
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(&theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("torchvision logits in our engine: max |logit| {scale}, max |difference| {diff}");
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "logits differ by {diff} (scale {scale})"
    );
}
