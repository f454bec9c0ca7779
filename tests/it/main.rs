//! The integration tests that run on the CPU (and the emulator where a test needs a GPU backend
//! in passing), as modules of one test program: one link of the crate instead of one per file, and
//! their tests run in parallel. The GPU kernel suites stay programs of their own (`tests/*.rs`): a
//! GPU machine runs them by name (`tools/device-check.sh`), and CI runs them again under
//! AddressSanitizer (`.ci/run`).

mod common;

mod bench_cli;
mod bench_profiled;
mod bench_shapes;
mod checkpoint;
mod cli;
mod cli_data;
mod data_cifar;
mod data_imagenet;
mod data_synthetic;
mod device_images;
mod fused_ops;
mod golden;
mod gradcheck;
mod info;
/// build.rs's checks on ptxas's report (spills, a short register hand-over) and its reading of each
/// kernel's launch limits, with their unit tests on hand-written report lines and PTX: a build
/// script's own tests never run. Named as build.rs names them, since each refers to the other.
#[allow(dead_code)]
#[path = "../../build/kernel_limits.rs"]
mod kernel_limits;
mod models;
mod nccl_ffi;
#[allow(dead_code)]
#[path = "../../build/nvcc.rs"]
mod nvcc;
mod plot;
mod rendezvous;
mod replicas;
mod replicas_cli;
mod variant;
