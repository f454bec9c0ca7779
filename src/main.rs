//! The `resnet-cuda` command line. Thin: it parses, then calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::models::{ModelConfig, Network};

#[derive(Parser)]
#[command(
    name = "resnet-cuda",
    version,
    about = "Train the residual networks of He et al. (2015)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layers' parameter names and shapes, and its parameter count.
    Summary {
        /// resnet20, resnet56, resnet110, plain20, resnet18, resnet50, ...
        #[arg(long, default_value = "resnet20")]
        model: String,
        /// Number of classes of the classifier.
        #[arg(long, default_value_t = 10)]
        classes: usize,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Summary { model, classes } => {
            let be = CpuBackend::<f32>::new();
            let config = ModelConfig::from_name(&model, classes)?;
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
            let mut net = Network::new(&be, config, &mut rng)?;
            for (name, shape) in net.param_shapes() {
                println!("{name:<40} {shape:?}");
            }
            println!("{model}: {} parameters", net.num_params());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
