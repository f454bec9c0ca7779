//! What the Hopper-only test suites (`tests/wgmma.rs`, `tests/tma.rs`) share: the device they run
//! on (their buffers and launches: `tests/building_blocks`).
//!
//! The device is the driver `RESNET_TEST_DRIVER` names: `emu` (the host emulator, the default) or
//! `cuda` / `cuda:N`, which must have compute capability 9.0 (the sm_90a kernels exist nowhere
//! else): any other GPU fails the tests rather than passing them without running anything.
#![allow(dead_code)] // each suite uses its part

use std::sync::OnceLock;

use resnet_cuda::backend::gpu::cuda_info::{self, DriverStatus};
use resnet_cuda::backend::gpu::driver::open_driver;
use resnet_cuda::backend::gpu::{Driver, DynDriver};

/// The device the kernels run on. A CUDA device must be of compute capability 9.0.
pub fn driver() -> &'static DynDriver {
    static DRIVER: OnceLock<DynDriver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let name = std::env::var("RESNET_TEST_DRIVER").unwrap_or_else(|_| "emu".into());
        let driver =
            open_driver(&name).unwrap_or_else(|e| panic!("RESNET_TEST_DRIVER={name}: {e}"));
        if driver.name() != "emu" {
            require_sm90(&name);
        }
        driver
    })
}

/// Panics unless the GPU `name` (`cuda` or `cuda:N`) has compute capability 9.0.
fn require_sm90(name: &str) {
    let ordinal: usize = name.strip_prefix("cuda:").map_or(0, |n| {
        n.parse()
            .expect("RESNET_TEST_DRIVER=cuda:N with N a GPU number")
    });
    let DriverStatus::Found { gpus, .. } = cuda_info::probe() else {
        panic!("RESNET_TEST_DRIVER={name}: the CUDA driver cannot be queried");
    };
    let gpu = gpus
        .iter()
        .find(|g| g.ordinal == ordinal)
        .unwrap_or_else(|| panic!("RESNET_TEST_DRIVER={name}: no GPU {ordinal}"));
    assert_eq!(
        gpu.capability,
        (9, 0),
        "wgmma needs compute capability 9.0 (sm_90a); GPU {ordinal} ({}) has {}.{}",
        gpu.name,
        gpu.capability.0,
        gpu.capability.1
    );
}

pub fn on_emulator() -> bool {
    driver().name() == "emu"
}
