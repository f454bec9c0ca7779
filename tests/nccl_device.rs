//! NCCL on a real GPU, with a communicator of one rank: the binding, the side stream, its events,
//! the scratch buffer and the polled wait all run for real, which nothing else does on one GPU
//! (`--gpus N` needs N > 1 GPUs, and NCCL refuses two ranks on one GPU).
//!
//! Not selected by `cargo test`: these need a GPU and NCCL, and would fail without them. On a GPU
//! machine: `cargo test --test nccl_device -- --ignored` (`tools/device-check.sh` runs them).

use std::sync::Arc;
use std::time::Duration;

use resnet_cuda::backend::gpu::CudaDriver;
use resnet_cuda::dist::nccl::find_installed;
use resnet_cuda::dist::nccl_comm::{LocalFailure, NcclComm};
use resnet_cuda::dist::nccl_ffi::Nccl;
use resnet_cuda::dist::Collective;

fn one_rank(driver: &CudaDriver) -> NcclComm<'_> {
    let path = find_installed().unwrap_or_else(|e| panic!("{e}"));
    let nccl = Arc::new(Nccl::load(&path).unwrap_or_else(|e| panic!("{e}")));
    let id = nccl.unique_id().expect("a unique id");
    NcclComm::init(
        nccl,
        &id,
        0,
        1,
        driver,
        Duration::from_secs(60),
        Arc::new(LocalFailure::default()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs a GPU and NCCL: cargo test --test nccl_device -- --ignored"]
fn one_rank_all_reduce_broadcast_and_barrier_return_the_input() {
    let driver = CudaDriver::new(0).unwrap_or_else(|e| panic!("{e}"));
    let comm = one_rank(&driver);
    assert_eq!((comm.rank(), comm.world_size()), (0, 1));
    // A sum over one rank is the buffer itself, bit for bit; sizes cross the scratch buffer's
    // growth (one element, then a megabyte).
    for len in [1usize, 1000, 1 << 18] {
        let want: Vec<f32> = (0..len).map(|i| (i as f32).sin()).collect();
        let mut buf = want.clone();
        comm.all_reduce_sum(&mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf, want, "all-reduce of {len}");
        comm.broadcast(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buf, want, "broadcast of {len}");
    }
    comm.barrier().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[ignore = "needs a GPU and NCCL: cargo test --test nccl_device -- --ignored"]
fn an_aborted_communicator_fails_with_the_reason() {
    let driver = CudaDriver::new(0).unwrap_or_else(|e| panic!("{e}"));
    let comm = one_rank(&driver);
    comm.abort("stopped by the test");
    let err = comm
        .all_reduce_sum(&mut [1.0])
        .expect_err("an aborted communicator refuses work");
    assert!(err.to_string().contains("stopped by the test"), "{err}");
}
