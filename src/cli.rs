//! Command-line definitions and their dispatch to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::backend::{Backend, Precision};
use resnet_cuda::data::batch::MeanImage;
use resnet_cuda::data::eval_views::Crops;
use resnet_cuda::data::DataSets;
use resnet_cuda::models::{Network, Variant};
use resnet_cuda::optim::ScheduleKind;
use resnet_cuda::train::{self, DataSpec, Device, DeviceChoice, Outcome, Recipe, TrainConfig};
use resnet_cuda::{checkpoint, eval, Error};

#[derive(Parser)]
#[command(
    name = "resnet-cuda",
    version,
    about = "Train the residual networks of He et al. (2015), \"Deep Residual Learning for Image Recognition\"",
    long_about = "Train the residual networks of He et al. (2015) with the paper's recipe.\n\n\
                  Quick start: `resnet-cuda train` trains resnet20 on a built-in synthetic dataset."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network (defaults: resnet20 on the built-in synthetic set, the paper's recipe).
    Train(Box<TrainArgs>),
    /// Top-1 and top-5 error of a checkpoint on the test split.
    Eval(EvalArgs),
    /// Plot training error (thin) and test error (bold) against iterations, one colour per run,
    /// like Figure 6 of the paper.
    Plot {
        /// Run folders (each holds a metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The PNG to write.
        #[arg(short, long, default_value = "curves.png")]
        out: PathBuf,
    },
    /// Print a model's parameter names and shapes, and its parameter count.
    Summary {
        /// resnet20, resnet56, resnet110, plain20, resnet18, resnet50, ...
        #[arg(long, default_value = "resnet20")]
        model: String,
        /// Number of classes of the classifier.
        #[arg(long, default_value_t = 10)]
        classes: usize,
        /// paper or torchvision (see `train --variant`); named in the output for bottleneck nets.
        #[arg(long, default_value = "paper")]
        variant: String,
    },
    /// Print the backends available here: CPU threads, the embedded CUDA kernels and their
    /// architectures, the CUDA driver and each GPU.
    Info,
    /// Training-step throughput on a synthetic batch already on the device (no data loading):
    /// images/s, ms/step and the time per layer type.
    Bench(BenchArgs),
    /// Measure the ImageNet training pipeline (decode, resize, crop and mirror into bytes; the
    /// normalisation comes after, on the device or the host): images per second and per second
    /// per decode thread.
    DataBench(DataBenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Any model `train` accepts (resnet20, resnet56, resnet50, ...).
    #[arg(long, default_value = "resnet20")]
    model: String,
    /// paper or torchvision, as for `train`.
    #[arg(long, default_value = "paper")]
    variant: String,
    /// Images per step. Default: 128 for CIFAR nets, 256 for ImageNet nets.
    #[arg(long)]
    batch_size: Option<usize>,
    /// The device, chosen as `train` chooses it.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Timed steps (the figure is their median).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed steps before the timed ones (with the graph on, at least the eager first step and
    /// the capture).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Steps of the separate, synchronised per-layer-type pass.
    #[arg(long, default_value_t = 3)]
    profile_iters: usize,
    /// bf16 (mixed precision; the default on GPUs) or f32 (the CPU's only precision).
    #[arg(long)]
    precision: Option<String>,
    /// Replay each timed step as one captured graph (GPU backends; the first step runs eagerly).
    #[arg(long, value_enum, default_value = "on")]
    cuda_graph: OnOff,
    /// on: time every kernel that can compute each convolution pass at its first call (a warm-up
    /// step) and keep the fastest, as `train --conv-tuning on`; the report says what moved. GPU
    /// backends in bf16.
    #[arg(long, value_enum, default_value = "off")]
    conv_tuning: OnOff,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DataBenchArgs {
    /// `imagenet:DIR`.
    #[arg(long)]
    data: String,
    /// Decode threads. Default: every core.
    #[arg(long)]
    workers: Option<usize>,
    /// Images to put through each measurement.
    #[arg(long, default_value_t = 1024)]
    images: usize,
    /// Images per loader batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `--cuda-graph`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
    Emu,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Step,
    Plateau,
}

#[derive(Clone, Copy, ValueEnum)]
enum AugmentArg {
    Paper,
    None,
}

#[derive(Args)]
struct TrainArgs {
    /// Model: resnetD / plainD with D = 6n+2 for CIFAR-style data (resnet20, resnet56, resnet110, ...),
    /// resnet18/34/50/101/152 and plain18/34 for ImageNet.
    #[arg(long, default_value = "resnet20")]
    model: String,
    /// `synthetic`, `synthetic:TRAIN:TEST` (a smaller synthetic set), `cifar10:DIR` or `imagenet:DIR`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// auto: a CUDA GPU when one is usable, else the CPU; emu runs the CUDA kernels in the emulator.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Number of GPUs (data-parallel replicas).
    #[arg(long, default_value_t = 1)]
    gpus: usize,
    /// bf16: mixed precision (bf16 activations and tensor-core convolutions, f32 master weights,
    /// statistics and loss; the default on GPUs) or f32. The CPU computes in f32 only.
    #[arg(long)]
    precision: Option<String>,
    /// on: on a GPU backend, capture the training step once as a graph and replay it every
    /// iteration (the first step, and the first after each evaluation, run eagerly). Default on.
    #[arg(long, value_enum)]
    cuda_graph: Option<OnOff>,
    /// on: on a GPU backend, keep a fixed-size dataset (synthetic, CIFAR-10) on each GPU as bytes,
    /// uploaded once, and build each batch there (normalisation and the paper's augmentation; the
    /// same batches as the host builds); ImageNet views go up as bytes. Default on.
    #[arg(long, value_enum)]
    device_data: Option<OnOff>,
    /// on: on a GPU in bf16, time every kernel that can compute each convolution pass at its first
    /// call and keep the fastest (cuDNN's benchmark mode); the choices are kept in the run folder's
    /// conv-tuning.json, so --resume computes with the same kernels. Default off: the plan's
    /// kernels, which compute the same bits on every GPU.
    #[arg(long, value_enum)]
    conv_tuning: Option<OnOff>,
    /// Data-parallel replicas on --device cpu or emu (one thread each, --batch-size split evenly
    /// among them). On --resume, changes the replica count of the run. Default 1.
    #[arg(long)]
    replicas: Option<usize>,
    /// Shortcut option when a block changes shape: A (zero-padding identity) or B (projection).
    /// Default: A for the CIFAR nets, B for the ImageNet nets.
    #[arg(long)]
    shortcut: Option<char>,
    /// Where ResNet-50/101/152 downsample in a bottleneck: `paper` (default; stride on the first 1x1,
    /// as the paper's models) or `torchvision` (stride on the 3x3, "v1.5"; use it with torchvision
    /// weights in --init). Recorded in checkpoints, so `eval` and --resume need not be told.
    #[arg(long)]
    variant: Option<String>,
    /// Images per step (all GPUs together). Default 128 (CIFAR, synthetic) or 256 (ImageNet).
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    lr: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Training iterations. Default: 1500 (synthetic), 64000 (cifar10), 600000 (imagenet).
    #[arg(long, conflicts_with = "epochs")]
    iters: Option<u64>,
    /// Training length in epochs of the training split, instead of --iters.
    #[arg(long)]
    epochs: Option<u64>,
    /// Iterations at which the learning rate is divided by 10 (comma-separated).
    /// Default: 50% and 75% of the run (synthetic), 32000,48000 (cifar10).
    #[arg(long, value_delimiter = ',')]
    lr_milestones: Option<Vec<u64>>,
    /// step: divide at the milestones; plateau: divide when the test error stops improving.
    /// Default: step, plateau for ImageNet.
    #[arg(long, value_enum)]
    lr_schedule: Option<ScheduleArg>,
    /// Evaluations without improvement before the plateau schedule divides the rate.
    #[arg(long, default_value_t = 3)]
    patience: u32,
    /// Warm-up: train at --warmup-lr until the training error is below 80%, for at most this many
    /// iterations. Default: 2000 for resnet110 and deeper CIFAR nets (the paper), else 0.
    #[arg(long)]
    warmup_iters: Option<u64>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.01)]
    warmup_lr: f64,
    /// paper: the paper's augmentation for the dataset; none: the images as they are.
    #[arg(long, value_enum, default_value = "paper")]
    augment: AugmentArg,
    /// Keep the dataset's order instead of shuffling every epoch.
    #[arg(long)]
    no_shuffle: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate on the test split every this many iterations (and at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Save a checkpoint every this many iterations (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 1000)]
    save_every: u64,
    /// Run folder. Default: runs/<model>-<data>-<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start from these weights only: a checkpoint folder or a bare model.safetensors.
    #[arg(long, conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue the run in this folder exactly where its latest checkpoint left it (other flags are
    /// taken from the run, except --iters, which may extend it, and --workers, --bucket-mb,
    /// --precision, --cuda-graph, --device-data and --conv-tuning, which may change).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Decode threads of the ImageNet loader (the batches do not depend on it).
    /// Default: the cores left after one per GPU, at least one.
    #[arg(long)]
    workers: Option<usize>,
    /// Megabytes of gradients per all-reduce among replicas (--replicas, --gpus): each bucket is
    /// summed as soon as backward has produced it, while backward goes on. Default 25 (as PyTorch
    /// DDP). The result does not depend on it.
    #[arg(long)]
    bucket_mb: Option<f64>,
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint folder (such as runs/NAME/latest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The data to evaluate on; default: the data the checkpoint was trained on.
    #[arg(long)]
    data: Option<String>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Testing views (ImageNet): center (256 resize, central 224 crop), 10 (corners, centre and
    /// mirrors), multiscale (whole image at shorter sides 224..640 and mirrors). CIFAR: center only.
    #[arg(long, default_value = "center")]
    crops: String,
    /// The device, chosen as `train` chooses it.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// bf16 (the default on GPUs) or f32, as for `train`.
    #[arg(long)]
    precision: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => run_train(*args),
        Command::Plot { runs, out } => {
            resnet_cuda::plot::plot_runs(&runs, &out)?;
            eprintln!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => run_eval(args),
        Command::Summary {
            model,
            classes,
            variant,
        } => {
            let be = CpuBackend::<f32>::new();
            let config = resnet_cuda::models::ModelConfig::from_name(&model, classes)?
                .with_variant(variant.parse()?)?;
            let described = config.describe();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
            let mut net = Network::new(&be, config, &mut rng)?;
            for (name, shape) in net.param_shapes() {
                println!("{name:<40} {shape:?}");
            }
            println!("{described}: {} parameters", net.num_params());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => run_bench(args),
        Command::DataBench(args) => run_data_bench(args),
        Command::Info => {
            let report = resnet_cuda::backend::gpu::cuda_info::report(rayon::current_num_threads());
            print!("{report}");
            println!("{}", nccl_line());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `info`'s line about NCCL, which `--gpus N` uses for its device-side all-reduce: loaded as
/// training loads it, so a library lacking a function is reported here too.
fn nccl_line() -> String {
    use resnet_cuda::dist::{nccl, nccl_ffi::Nccl};
    match nccl::find_installed() {
        Err(e) => format!("nccl: {e}"),
        Ok(path) => match Nccl::load(&path).and_then(|lib| lib.version()) {
            Ok(v) => format!(
                "nccl: {} (version {}.{}.{})",
                path.display(),
                v / 10000,
                v / 100 % 100,
                v % 100
            ),
            Err(e) => format!("nccl: {e}"),
        },
    }
}

/// Stops the run cleanly on the first Ctrl-C.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // Failing to install the handler only costs the clean stop; training still works.
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::SeqCst));
    flag
}

fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let (config, resume) = match &args.resume {
        Some(dir) => {
            let mut state = train::resume_state(dir)?;
            if let Some(iters) = args.iters {
                state.config.iters = iters;
            }
            if let Some(replicas) = args.replicas {
                state.config.replicas = replicas;
            }
            state.config.out = dir.clone();
            // The variant is part of the network the run trains: a resume continues that network.
            if let Some(v) = &args.variant {
                let asked: Variant = v.parse()?;
                if asked != state.config.variant {
                    return Err(Error::Config(format!(
                        "--variant {asked}: the run in {} was built as the {} variant; --resume continues it as it is",
                        dir.display(),
                        state.config.variant
                    ))
                    .into());
                }
            }
            if args.workers.is_some() {
                state.config.workers = args.workers;
            }
            if args.bucket_mb.is_some() {
                state.config.bucket_mb = args.bucket_mb;
            }
            if let Some(p) = &args.precision {
                state.config.precision = Some(p.parse()?);
            }
            if let Some(g) = args.cuda_graph {
                state.config.cuda_graph = g == OnOff::On;
            }
            if let Some(d) = args.device_data {
                state.config.device_data = d == OnOff::On;
            }
            if let Some(t) = args.conv_tuning {
                state.config.conv_tuning = t == OnOff::On;
            }
            (state.config.clone(), Some(state))
        }
        None => (train_config(&args)?, None),
    };
    let stop = interrupt_flag();
    match train::train(config, resume, &stop)? {
        Outcome::Finished { .. } => Ok(ExitCode::SUCCESS),
        Outcome::Interrupted { .. } => Ok(ExitCode::from(130)),
    }
}

fn train_config(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let data = DataSpec::parse(&a.data)?;
    let recipe = Recipe::for_data(&data, a.iters);
    let batch_size = a.batch_size.unwrap_or(recipe.batch_size);
    let iters = match a.epochs {
        Some(epochs) => {
            let train_len = train::open_data(&data, a.seed)?.train_len();
            if batch_size == 0 {
                return Err(Error::Config("--batch-size: must be at least 1".into()).into());
            }
            epochs * (train_len / batch_size).max(1) as u64
        }
        None => recipe.iters,
    };
    // The recipe again for the run's actual length: the synthetic milestones scale with it.
    let recipe = Recipe::for_data(&data, Some(iters));
    let default_schedule = if recipe.plateau {
        ScheduleArg::Plateau
    } else {
        ScheduleArg::Step
    };
    let schedule = match a.lr_schedule.unwrap_or(default_schedule) {
        ScheduleArg::Plateau => ScheduleKind::Plateau {
            patience: a.patience,
        },
        ScheduleArg::Step => ScheduleKind::Step {
            milestones: a.lr_milestones.clone().unwrap_or(recipe.milestones),
        },
    };
    let deep_cifar = !data.is_imagenet()
        && a.model
            .trim_start_matches("cifar-")
            .trim_start_matches("resnet")
            .parse::<usize>()
            .is_ok_and(|d| d >= 110);
    let warmup_iters = a.warmup_iters.unwrap_or(if deep_cifar { 2000 } else { 0 });
    let default_eval = match data {
        DataSpec::Synthetic { .. } => 500,
        DataSpec::Cifar10(_) => 1000,
        DataSpec::ImageNet(_) => 5000,
    };
    let out = match &a.out {
        Some(out) => out.clone(),
        None => {
            let time = chrono::Local::now().format("%Y%m%d-%H%M%S");
            Path::new("runs").join(format!("{}-{}-{time}", a.model, data.name()))
        }
    };
    let shortcut = match a.shortcut {
        None => None,
        Some(c) if c.eq_ignore_ascii_case(&'a') => Some('A'),
        Some(c) if c.eq_ignore_ascii_case(&'b') => Some('B'),
        Some(c) => return Err(Error::Config(format!("--shortcut {c}: expected A or B")).into()),
    };
    let device = match a.device {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Cuda => DeviceChoice::Cuda,
        DeviceArg::Emu => DeviceChoice::Emu,
    };
    let config = TrainConfig {
        model: a.model.clone(),
        data,
        device,
        gpus: a.gpus,
        replicas: a.replicas.unwrap_or(1),
        shortcut,
        batch_size,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        iters,
        schedule,
        warmup_iters,
        warmup_lr: a.warmup_lr,
        augment: matches!(a.augment, AugmentArg::Paper),
        shuffle: !a.no_shuffle,
        seed: a.seed,
        eval_every: a.eval_every.unwrap_or(default_eval),
        log_every: a.log_every,
        save_every: a.save_every,
        out,
        init: a.init.clone(),
        workers: a.workers,
        bucket_mb: a.bucket_mb,
        variant: match &a.variant {
            Some(v) => v.parse()?,
            None => Variant::default(),
        },
        precision: parse_precision(&a.precision)?,
        cuda_graph: a.cuda_graph != Some(OnOff::Off),
        device_data: a.device_data != Some(OnOff::Off),
        conv_tuning: a.conv_tuning == Some(OnOff::On),
    };
    config.validate()?;
    Ok(config)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let family = resnet_cuda::bench::bench_model_config(&args.model)?.family;
    let default_batch = match family {
        resnet_cuda::models::Family::Cifar => 128,
        resnet_cuda::models::Family::ImageNet => 256,
    };
    let config = resnet_cuda::bench::BenchConfig {
        variant: args.variant.parse()?,
        model: args.model,
        batch_size: args.batch_size.unwrap_or(default_batch),
        device: device_choice(args.device),
        precision: parse_precision(&args.precision)?,
        cuda_graph: args.cuda_graph == OnOff::On,
        conv_tuning: args.conv_tuning == OnOff::On,
        iters: args.iters,
        warmup: args.warmup,
        profile_iters: args.profile_iters,
    };
    let report = resnet_cuda::bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_precision(arg: &Option<String>) -> resnet_cuda::error::Result<Option<Precision>> {
    arg.as_deref().map(str::parse).transpose()
}

fn device_choice(arg: DeviceArg) -> DeviceChoice {
    match arg {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Cuda => DeviceChoice::Cuda,
        DeviceArg::Emu => DeviceChoice::Emu,
    }
}

fn run_eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        return Err(Error::Config("--batch-size: must be at least 1".into()).into());
    }
    let state = train::read_state(&args.checkpoint)?;
    let data = match &args.data {
        Some(d) => DataSpec::parse(d)?,
        None => state.config.data.clone(),
    };
    let crops: Crops = args.crops.parse()?;
    let data = train::open_data(&data, state.config.seed)?;
    let device = train::select_device(device_choice(args.device), 1)?;
    let precision = train::resolve_precision(parse_precision(&args.precision)?, device)?;
    let r = match device {
        Device::Cpu => evaluate_checkpoint(&CpuBackend::<f32>::new(), &args, &state, &data, crops)?,
        Device::Emulator => {
            let gpu = train::open_gpu("emu", precision)?;
            evaluate_checkpoint(&gpu, &args, &state, &data, crops)?
        }
        Device::Cuda => {
            let gpu = train::open_gpu("cuda", precision)?;
            evaluate_checkpoint(&gpu, &args, &state, &data, crops)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: top-1 error {:.2}%, top-5 error {:.2}% on {} test images ({crops} crops)",
            args.checkpoint.display(),
            100.0 * r.top1_err,
            100.0 * r.top5_err,
            r.images
        );
        if r.skipped > 0 {
            println!("{} unreadable test images skipped", r.skipped);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint's test error on backend `be`.
fn evaluate_checkpoint<B: Backend<Elem = f32>>(
    be: &B,
    args: &EvalArgs,
    state: &train::RunState,
    data: &DataSets,
    crops: Crops,
) -> resnet_cuda::Result<eval::EvalResult> {
    let model = train::model_config(&state.config, data.num_classes())?;
    let mut net = Network::new(
        be,
        model,
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
    )?;
    checkpoint::load_weights(&args.checkpoint, be, &mut net)?;
    let mean: MeanImage = checkpoint::load_mean_image(&args.checkpoint)?;
    match data {
        DataSets::Fixed(splits) if crops == Crops::Center => {
            eval::evaluate(be, &mut net, splits.test.as_ref(), &mean, args.batch_size)
        }
        DataSets::Fixed(_) => Err(Error::Config(format!(
            "--crops {crops}: only `center` (the whole image) applies to fixed-size data"
        ))),
        DataSets::Folders(f) => {
            eval::evaluate_folder(be, &mut net, f, &mean, crops, args.batch_size)
        }
    }
}

fn run_data_bench(args: DataBenchArgs) -> anyhow::Result<ExitCode> {
    let DataSets::Folders(data) = train::open_data(&DataSpec::parse(&args.data)?, 0)? else {
        return Err(Error::Config(format!(
            "--data {}: data-bench measures the ImageNet pipeline; give imagenet:DIR",
            args.data
        ))
        .into());
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || args.batch_size == 0 || args.images == 0 {
        return Err(Error::Config(
            "--workers, --batch-size and --images must be at least 1".into(),
        )
        .into());
    }
    let r = resnet_cuda::data::bench::data_bench(data, workers, args.images, args.batch_size)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "decode only:        {:8.1} images/s, {:7.1} images/s per core ({} threads)",
            r.decode_images_per_s,
            r.decode_per_core(),
            r.workers
        );
        println!(
            "training pipeline:  {:8.1} images/s, {:7.1} images/s per core (decode, scale, crop, mirror into bytes, PCA colour drawn; {} images)",
            r.pipeline_images_per_s,
            r.pipeline_per_core(),
            r.images
        );
    }
    Ok(ExitCode::SUCCESS)
}
