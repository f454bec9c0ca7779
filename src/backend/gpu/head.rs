//! The classifier head's matrix products on the GPU: `gemm_f32` (kernels/gemm.cu), which the linear
//! layer's forward and backward launch.

use super::backend::GpuBackend;
use super::driver::{DevicePtr, Driver};
use super::launch::KernelArgs;
use super::launch_constants::GEMM_TILE;
use crate::error::Result;

/// One `gemm_f32` launch: `C[m, n] = op(A)[m, k] op(B)[k, n] (+ bias)`, see kernels/gemm.cu.
pub(super) struct Gemm {
    pub(super) a: DevicePtr,
    pub(super) b: DevicePtr,
    pub(super) c: DevicePtr,
    /// 0 for none.
    pub(super) bias: DevicePtr,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) trans_a: bool,
    pub(super) trans_b: bool,
}

impl<D: Driver> GpuBackend<D> {
    /// Block (16, 16), grid (ceil(n/16), ceil(m/16)): one 16x16 tile of C per block.
    pub(super) fn gemm(&self, g: Gemm) -> Result<()> {
        let grid = (
            g.n.div_ceil(GEMM_TILE as usize) as u32,
            g.m.div_ceil(GEMM_TILE as usize) as u32,
            1,
        );
        self.launch(
            "gemm_f32",
            grid,
            (GEMM_TILE, GEMM_TILE, 1),
            0,
            KernelArgs::new()
                .ptr(g.a)
                .ptr(g.b)
                .ptr(g.c)
                .ptr(g.bias)
                .int(g.m)
                .int(g.n)
                .int(g.k)
                .int(usize::from(g.trans_a))
                .int(usize::from(g.trans_b)),
        )
    }
}
