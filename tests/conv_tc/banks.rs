//! Shared-memory bank conflicts of the tensor-core convolutions, as the emulator counts them
//! (`resnet_cuda::backend::gpu::emu::bank_conflicts`, model in kernels/emu/runtime/bank_conflicts.h):
//! every `ldmatrix` of the mma.sync main loop (MK / NK tiles by `.x4`, KM / KN tiles by `.x4.trans`,
//! each 8x8 matrix one request) and every 16-byte `cp.async` into shared memory (loaders, and the
//! staged epilogue's addend; one request per quarter warp) must take one wavefront: no excess.
//! Every kernel the plan can launch is checked (every tile of `TcTile::ALL` and `TcTile::HOPPER`,
//! every loader, forward, forward with statistics, backward-data with and without the addend,
//! backward-filter with 1 and 3 splits) on three shapes: partial tiles on both axes with 24 and 40
//! channels, 64 channels, and 128 channels into 136. The Hopper tiles read their operands with
//! wgmma (no `ldmatrix`); their cp.async stores into the MN-major panels (`TcWgmmaLoop::kn_offset`)
//! are checked like the others. Each launch's results are also checked against the reference.
//!
//! The counts exist only in the emulator: on a GPU driver these tests return at once.

use super::*;
use resnet_cuda::backend::gpu::emu::{self, BankConflicts};

fn on_emulator() -> bool {
    driver().name() == "emu"
}

fn bank_shapes() -> [ConvShape; 3] {
    [
        every_tile_shape(),
        shape([2, 8, 8, 64], [64, 3, 3, 64], 1, 1),
        shape([1, 6, 6, 128], [136, 3, 3, 128], 1, 1),
    ]
}

/// Forward with statistics, results unchecked (conv_tc/statistics.rs checks them).
fn run_forward_stats(s: &ConvShape, tile: TcTile, general: bool, seed: u64) -> &'static str {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (l, part) = conv_tc_plan::forward_stats_with(s, tile, general);
    let x = DeviceVec::new(&bits(&random_bf16(&mut rng, len(s.x))));
    let w = DeviceVec::new(&bits(&random_bf16(&mut rng, len(s.w))));
    let y = DeviceVec::new(&vec![BF16_NAN; len(s.y)]);
    let stats = DeviceVec::new(&vec![f32::NAN; part.floats()]);
    run(
        &l,
        KernelArgs::new()
            .ptr(x.ptr)
            .ptr(w.ptr)
            .ptr(y.ptr)
            .ptr(stats.ptr)
            .value(&s.dims()),
    );
    l.kernel
}

/// One launch (or a backward-filter's partial and reduce) and its counts.
struct Counted {
    what: String,
    tile: TcTile,
    general: bool,
    counts: BankConflicts,
}

/// Runs every planned kernel of `tile` and `general` on `s`; returns each run's counts.
fn count_every_pass(s: &ConvShape, tile: TcTile, general: bool) -> Vec<Counted> {
    let mut out = Vec::new();
    let mut note = |what: String| {
        out.push(Counted {
            what: format!("{what} on {:?} {:?} stride {}", s.x, s.w, s.geom.stride),
            tile,
            general,
            counts: emu::bank_conflicts(),
        })
    };
    emu::bank_conflicts(); // this thread's earlier launches
    let l = conv_tc_plan::forward_with(s, tile, general);
    check_forward(s, &l, 1200);
    note(l.kernel.to_string());
    let kernel = run_forward_stats(s, tile, general, 1201);
    note(kernel.to_string());
    for add in [false, true] {
        let l = conv_tc_plan::backward_data_with(s, add, tile, general);
        check_backward_data(s, &l, add, 1202);
        note(l.kernel.to_string());
    }
    for splits in [1, 3] {
        let f = conv_tc_plan::backward_filter_with(s, tile, general, splits);
        check_backward_filter(s, &f, 1203);
        note(format!("{} (splits {splits})", f.partial.kernel));
    }
    out
}

#[test]
fn tensor_core_convolutions_are_free_of_bank_conflicts() {
    if !on_emulator() {
        return;
    }
    let mut failures = Vec::new();
    for s in bank_shapes() {
        for tile in TcTile::ALL.into_iter().chain(TcTile::HOPPER) {
            for &general in tile.loaders() {
                for c in count_every_pass(&s, tile, general) {
                    let k = c.counts;
                    if k.ldmatrix_excess != 0 || k.cp_async_excess != 0 {
                        failures.push(format!(
                            "{}: ldmatrix {} excess wavefronts over {} matrices, cp.async {} over {} \
                             requests",
                            c.what,
                            k.ldmatrix_excess,
                            k.ldmatrix_matrices,
                            k.cp_async_excess,
                            k.cp_async_requests
                        ));
                    }
                    // The counts saw the instructions at all: mma.sync tiles read every operand with
                    // ldmatrix, wgmma tiles none; vector loaders stage with cp.async.
                    if c.tile.is_hopper() {
                        assert_eq!(k.ldmatrix_matrices, 0, "{}", c.what);
                    } else {
                        assert!(k.ldmatrix_matrices > 0, "{}: no ldmatrix counted", c.what);
                    }
                    if !c.general {
                        assert!(k.cp_async_requests > 0, "{}: no cp.async counted", c.what);
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bank conflicts:\n{}",
        failures.join("\n")
    );
}

/// The counts of one launch worked out by hand, so that the test above cannot pass by counting too
/// little: conv2d_tc_forward_64x64_bf16 on M = 50 rows, K = 40 columns (one block), R S C = 216 (7
/// slices of 32). Per slice each of the 4 warps (32 x 32: 2 A and 2 B ldmatrix.x4 per 16-deep step,
/// two steps) loads 32 matrices, 128 in all; the A and B tiles are 64 rows of 4 chunks, 256 cp.async
/// each, 512 a slice = 64 quarter-warp requests. The wgmma 64 x 64 tile loads the same tiles, with no
/// ldmatrix.
#[test]
fn bank_counts_of_one_launch_are_exact() {
    if !on_emulator() {
        return;
    }
    let s = every_tile_shape();
    emu::bank_conflicts();
    check_forward(
        &s,
        &conv_tc_plan::forward_with(&s, TcTile::T64x64, false),
        1210,
    );
    assert_eq!(
        emu::bank_conflicts(),
        BankConflicts {
            ldmatrix_matrices: 7 * 128,
            ldmatrix_excess: 0,
            cp_async_requests: 7 * 64,
            cp_async_excess: 0,
        }
    );
    check_forward(
        &s,
        &conv_tc_plan::forward_with(&s, TcTile::H64x64, false),
        1211,
    );
    assert_eq!(
        emu::bank_conflicts(),
        BankConflicts {
            ldmatrix_matrices: 0,
            ldmatrix_excess: 0,
            cp_async_requests: 7 * 64,
            cp_async_excess: 0,
        }
    );
}
