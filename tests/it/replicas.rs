//! Data-parallel replicas (`--replicas N`) against one replica that accumulates the gradients of the
//! same N micro-batches: after K steps every replica holds the same weights, bit for bit, and they
//! equal the accumulating replica's. The gradient buckets' size changes nothing, bit for bit.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::gpu::GpuBackend;
use resnet_cuda::backend::{Backend, SgdConfig};
use resnet_cuda::data::augment::CropFlip;
use resnet_cuda::data::batch::{fill_batch_with_views, DataCursor, MeanImage};
use resnet_cuda::data::{DataSets, Splits};
use resnet_cuda::models::Network;
use resnet_cuda::optim::{ScheduleKind, Sgd};
use resnet_cuda::tensor::Tensor;
use resnet_cuda::train::replicas::{flat_params, train_replicas, ReplicaOptions};
use resnet_cuda::train::{self, DataSpec, DeviceChoice, TrainConfig};

/// Weights may differ from the reference by this much relative to `1 + |w|`: the replicas sum the
/// same f32 gradients in the same (rank) order as the reference, so they should agree to the last
/// bit; the allowance only covers a kernel whose reduction order depended on the thread running it.
const TOLERANCE: f32 = 1e-6;

fn config(out: &Path, replicas: usize, batch_size: usize, iters: u64) -> TrainConfig {
    TrainConfig {
        model: "resnet8".into(),
        data: DataSpec::Synthetic { train: 48, test: 8 },
        device: DeviceChoice::Cpu,
        gpus: 1,
        replicas,
        shortcut: None,
        batch_size,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        iters,
        // No milestones and no warm-up: the rate is 0.1 throughout, as in the reference below.
        schedule: ScheduleKind::Step { milestones: vec![] },
        warmup_iters: 0,
        warmup_lr: 0.01,
        augment: true,
        shuffle: true,
        seed: 7,
        eval_every: 1000,
        log_every: 1000,
        save_every: 1000,
        out: out.to_path_buf(),
        init: None,
        workers: None,
        bucket_mb: None,
        variant: Default::default(),
        precision: None,
        cuda_graph: true,
        device_data: true,
        conv_tuning: false,
    }
}

/// The synthetic set's splits (a fixed-size set, read by index).
fn fixed_splits(cfg: &TrainConfig) -> Splits {
    match train::open_data(&cfg.data, cfg.seed).unwrap() {
        DataSets::Fixed(splits) => splits,
        DataSets::Folders(_) => unreachable!("the synthetic set is a fixed-size set"),
    }
}

/// One network stepping through the run `cfg` describes, but computing each step's gradient as the
/// mean of its `n` micro-batches' gradients (summed in micro-batch order, then divided by `n`).
fn accumulating_reference<B: Backend<Elem = f32>>(be: &B, cfg: &TrainConfig, n: usize) -> Vec<f32> {
    let data = fixed_splits(cfg);
    let model = train::model_config(cfg, data.train.num_classes()).unwrap();
    let mut net = Network::new(be, model, &mut ChaCha8Rng::seed_from_u64(cfg.seed)).unwrap();
    let mut sgd = Sgd::new(SgdConfig {
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
    });
    let mean = MeanImage::compute(data.train.as_ref()).unwrap();
    let (h, w) = data.train.image_size();
    let (batch, micro) = (cfg.batch_size, cfg.batch_size / n);
    let mut cursor = DataCursor::default();
    let mut pixels = vec![0f32; micro * h * w * 3];
    let mut labels = vec![0u32; micro];
    let mut x = Tensor::zeros(be, [micro, h, w, 3]).unwrap();
    for iter in 0..cfg.iters {
        let (indices, _) = cursor.next_batch_indices(data.train.len(), batch, cfg.seed, true);
        // The trainer's augmentation stream for iteration `iter`.
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed ^ iter.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let views = CropFlip::CIFAR.draw_batch(&mut rng, batch);
        let mut sum: Vec<f32> = Vec::new();
        for m in 0..n {
            let part = m * micro..(m + 1) * micro;
            fill_batch_with_views(
                data.train.as_ref(),
                &indices[part.clone()],
                &mean,
                Some((CropFlip::CIFAR.pad, &views[part])),
                &mut pixels,
                &mut labels,
            )
            .unwrap();
            x.copy_from_slice(be, &pixels).unwrap();
            net.forward_backward(be, &x, &labels).unwrap();
            let mut grads = Vec::new();
            net.visit_params(&mut |p| grads.extend(p.grad.to_vec(be).unwrap()));
            if sum.is_empty() {
                sum = grads;
            } else {
                sum.iter_mut().zip(&grads).for_each(|(s, g)| *s += g);
            }
        }
        let mut offset = 0;
        net.visit_params(&mut |p| {
            let g: Vec<f32> = sum[offset..offset + p.grad.numel()]
                .iter()
                .map(|v| v / n as f32)
                .collect();
            offset += g.len();
            p.grad.copy_from_slice(be, &g).unwrap();
        });
        sgd.step(be, &mut net).unwrap();
    }
    flat_params(be, &mut net).unwrap()
}

fn options() -> ReplicaOptions {
    ReplicaOptions {
        timeout: Duration::from_secs(300),
        fault: None,
    }
}

fn assert_replicas_match_reference(weights: &[Vec<f32>], reference: &[f32]) {
    for (rank, w) in weights.iter().enumerate() {
        assert_eq!(
            w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            weights[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "replica {rank} differs from replica 0"
        );
    }
    assert_eq!(weights[0].len(), reference.len());
    let worst = weights[0]
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0f32, f32::max);
    eprintln!("replicas vs accumulating reference: worst relative difference {worst:e}");
    assert!(worst <= TOLERANCE, "worst relative difference {worst:e}");
    // The run moved the weights: a reference that did nothing would not match by accident.
    let init = {
        let be = CpuBackend::<f32>::new();
        let cfg = config(Path::new("unused"), 1, 12, 0);
        let data = fixed_splits(&cfg);
        let model = train::model_config(&cfg, data.train.num_classes()).unwrap();
        let mut net = Network::new(&be, model, &mut ChaCha8Rng::seed_from_u64(cfg.seed)).unwrap();
        flat_params(&be, &mut net).unwrap()
    };
    assert!(init.iter().zip(reference).any(|(a, b)| a != b));
}

fn cpu_replicas_match_accumulation(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("run"), n, 12, 3);
    let stop = AtomicBool::new(false);
    let run = train_replicas(&cfg, None, &stop, &options(), |_| {
        Ok(CpuBackend::<f32>::new())
    })
    .unwrap();
    assert_eq!(run.weights.len(), n);
    let reference = accumulating_reference(&CpuBackend::<f32>::new(), &cfg, n);
    assert_replicas_match_reference(&run.weights, &reference);
}

#[test]
fn two_cpu_replicas_equal_one_replica_accumulating_two_micro_batches() {
    cpu_replicas_match_accumulation(2);
}

#[test]
fn three_cpu_replicas_equal_one_replica_accumulating_three_micro_batches() {
    cpu_replicas_match_accumulation(3);
}

#[test]
fn two_emulator_replicas_equal_one_emulator_replica_accumulating() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("run"), 2, 4, 2);
    cfg.device = DeviceChoice::Emu;
    let stop = AtomicBool::new(false);
    let run = train_replicas(
        &cfg,
        None,
        &stop,
        &options(),
        |_| Ok(GpuBackend::emulator()),
    )
    .unwrap();
    let reference = accumulating_reference(&GpuBackend::emulator(), &cfg, 2);
    assert_replicas_match_reference(&run.weights, &reference);
}

/// Bits of every replica's weights after a run with gradient buckets of `bucket_mb` megabytes.
fn weights_with_buckets(bucket_mb: f64) -> Vec<Vec<u32>> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir.path().join("run"), 2, 12, 3);
    cfg.bucket_mb = Some(bucket_mb);
    let stop = AtomicBool::new(false);
    let run = train_replicas(&cfg, None, &stop, &options(), |_| {
        Ok(CpuBackend::<f32>::new())
    })
    .unwrap();
    run.weights
        .iter()
        .map(|w| w.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// Tolerance: none. Every element of a gradient is summed across replicas in rank order and
/// divided by the replica count whichever bucket carries it, so the bucket size may change only
/// how the values travel, never a bit of the result. resnet8 has about 78k parameters (312 KB of
/// gradients): 1 KB buckets hold one parameter each (most are larger than 1 KB), 64 KB buckets
/// group several small ones, and 1000 MB holds them all in one bucket.
#[test]
fn bucket_sizes_give_bit_identical_weights() {
    let one_bucket = weights_with_buckets(1000.0);
    for mb in [0.001, 0.064] {
        let bucketed = weights_with_buckets(mb);
        for (rank, (a, b)) in bucketed.iter().zip(&one_bucket).enumerate() {
            assert!(
                a == b,
                "replica {rank}: --bucket-mb {mb} differs from one bucket"
            );
        }
    }
    // The replicas agree with each other and with one replica accumulating the micro-batches.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("run"), 2, 12, 3);
    let reference = accumulating_reference(&CpuBackend::<f32>::new(), &cfg, 2);
    let as_f32 = |bits: &Vec<u32>| bits.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>();
    let weights: Vec<Vec<f32>> = one_bucket.iter().map(as_f32).collect();
    assert_replicas_match_reference(&weights, &reference);
}

/// What bucketing relies on: `backward_with` reports every layer once, last layer first, right
/// after its backward, and the gradients it then sees are final (bit-equal to those after the whole
/// backward), so a bucket may leave as soon as its lowest layer is reported.
#[test]
fn backward_reports_each_layer_once_its_gradients_are_final() {
    use resnet_cuda::nn::Mode;
    let be = CpuBackend::<f32>::new();
    let cfg = config(Path::new("unused"), 1, 4, 1);
    let data = fixed_splits(&cfg);
    let model = train::model_config(&cfg, data.train.num_classes()).unwrap();
    let mut net = Network::new(&be, model, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    let (h, w) = data.train.image_size();
    let pixels: Vec<f32> = (0..4 * h * w * 3)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let x = Tensor::from_slice(&be, [4, h, w, 3], &pixels).unwrap();
    net.forward(&be, &x, Mode::Train).unwrap();
    net.loss(&be, &[0, 1, 2, 3]).unwrap();
    let mut seen: Vec<(usize, Vec<u32>)> = Vec::new();
    net.backward_with(&be, &x, &mut |layer, done| {
        let mut bits = Vec::new();
        done.visit_params(&mut |p| {
            bits.extend(p.grad.to_vec(&be).unwrap().iter().map(|v| v.to_bits()))
        });
        seen.push((layer, bits));
        Ok(())
    })
    .unwrap();
    let order: Vec<usize> = seen.iter().map(|(l, _)| *l).collect();
    assert_eq!(order, (0..net.num_layers()).rev().collect::<Vec<_>>());
    let mut final_bits = Vec::new();
    net.visit_params(&mut |p| {
        final_bits.extend(p.grad.to_vec(&be).unwrap().iter().map(|v| v.to_bits()))
    });
    // Layers in forward order, each layer's parameters as visit_params gives them.
    let reported: Vec<u32> = seen.iter().rev().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(reported.len(), final_bits.len());
    assert!(
        reported == final_bits,
        "a layer's gradients changed after it was reported"
    );
    assert!(final_bits.iter().any(|&b| b != 0), "no gradient at all");
}
