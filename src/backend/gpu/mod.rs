pub mod backend;
pub mod conv_plan;
pub mod conv_tc_plan;
pub mod cuda_driver;
pub mod cuda_info;
pub mod driver;
pub mod embedded;
pub mod emu;
pub mod launch;
pub mod launch_constants;
pub mod sgd_chunks;
pub mod side_stream;

pub use backend::{ConvKernels, DeviceBuffer, GpuBackend};
pub use cuda_driver::CudaDriver;
pub use driver::{DevicePtr, Driver, DynDriver, EmuDriver};
pub use side_stream::SideStream;
