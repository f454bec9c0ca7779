pub mod backend;
pub mod cuda_info;
pub mod driver;
pub mod embedded;
pub mod emu;
pub mod launch;

pub use backend::{DeviceBuffer, GpuBackend};
pub use driver::{DevicePtr, Driver, EmuDriver};
