//! Hopper's tensor memory accelerator and shared-memory barriers (`kernels/tma.cuh`) through the
//! self-test kernel of `kernels/tma_selftest_sm90a.cu`: tiled 2-D loads of every swizzle, boxes
//! inside, across and outside the tensor's edges, and two phases of one mbarrier, against a scalar
//! Rust reference of the shared-memory bytes (exact: a copy moves bits); and deliberately wrong uses
//! that the emulator must catch (a read before the wait, fewer bytes announced than delivered, an
//! arrival that never comes).
//!
//! The device is `RESNET_TEST_DRIVER`'s (tests/sm90/mod.rs): on a GPU the correct uses run there, with
//! the driver's own tensor maps (`cuTensorMapEncodeTiled`), and must give the reference's bytes. That
//! is what checks the emulator's reading of the PTX ISA (`kernels/emu/emu_tma.h`); the wrong uses
//! always run on the emulator. The im2col mode, a convolution's A tile a copy: `im2col.rs`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::gpu::launch::KernelArgs;
use resnet_cuda::backend::gpu::tensor_map::{TiledMap2d, TmaSwizzle};
use resnet_cuda::backend::gpu::{Driver, EmuDriver};

mod building_blocks;
#[path = "tma/im2col.rs"]
mod im2col;
mod sm90;
use building_blocks::{launch_on, DeviceVec};
use sm90::driver;

const KERNEL: &str = "tma_selftest_load_2d";
const THREADS: u32 = 128;
/// The tensor: ROWS rows of COLS 16-bit words, rows STRIDE words apart (padding included).
const ROWS: usize = 40;
const COLS: usize = 100;
const STRIDE: usize = 112;

/// A tensor of distinct random words, uploaded, and a map of it with `box_dims` and `swizzle`.
struct Tensor<'d> {
    words: Vec<u16>,
    buffer: DeviceVec<'d, u16>,
}

impl<'d> Tensor<'d> {
    fn new(driver: &'d dyn Driver, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Nonzero and never 0xffff, so that neither the zero fill nor the emulator's poison can pass
        // for data.
        let words: Vec<u16> = (0..ROWS * STRIDE)
            .map(|_| rng.random_range(1..0xffff))
            .collect();
        let buffer = DeviceVec::new(driver, &words);
        Tensor { words, buffer }
    }

    fn map(&self, box_dims: [u32; 2], swizzle: TmaSwizzle) -> TiledMap2d {
        TiledMap2d {
            global: self.buffer.ptr,
            element_bytes: 2,
            dims: [COLS as u64, ROWS as u64],
            row_stride_bytes: (STRIDE * 2) as u64,
            box_dims,
            swizzle,
        }
    }

    /// The shared-memory words a copy of `map`'s box at (x, y) leaves in a tile at shared-window
    /// address `window`: row r's element c at byte r * row bytes + 2c, then the swizzle's XOR of the
    /// address bits [4, 4 + b) with bits [7, 7 + b), zeros outside the tensor.
    fn reference(&self, map: &TiledMap2d, x: i64, y: i64, window: usize) -> Vec<u16> {
        let [bw, bh] = map.box_dims.map(|d| d as usize);
        let bits = match map.swizzle {
            TmaSwizzle::None => 0,
            TmaSwizzle::B32 => 1,
            TmaSwizzle::B64 => 2,
            TmaSwizzle::B128 => 3,
        };
        let mut out = vec![0u16; bw * bh];
        for r in 0..bh {
            for c in 0..bw {
                let linear = window + r * bw * 2 + c * 2;
                let swizzled = (linear ^ (((linear >> 7) & ((1 << bits) - 1)) << 4)) - window;
                let (gx, gy) = (x + c as i64, y + r as i64);
                if (0..COLS as i64).contains(&gx) && (0..ROWS as i64).contains(&gy) {
                    out[swizzled / 2] = self.words[gy as usize * STRIDE + gx as usize];
                }
            }
        }
        out
    }
}

/// Uploads `map`'s tensor map as `driver` encodes it.
fn upload_map<'d>(driver: &'d dyn Driver, map: &TiledMap2d) -> DeviceVec<'d, u64> {
    let bytes = driver.encode_tensor_map_2d(map).unwrap().0;
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    DeviceVec::new(driver, &words)
}

/// Runs the self-test kernel in `mode` and returns its `out` (`tiles` tiles' words) and the
/// shared-window address of its tiles.
fn run(
    driver: &dyn Driver,
    map: &TiledMap2d,
    x: i64,
    y: i64,
    mode: usize,
    tiles: usize,
) -> Result<(Vec<u16>, usize), String> {
    let device_map = upload_map(driver, map);
    let words = map.box_bytes() / 2;
    let out = DeviceVec::new(driver, &vec![0x5a5au16; tiles * words]);
    let window = DeviceVec::new(driver, &[0xdead_beefu32]);
    let args = KernelArgs::new()
        .ptr(device_map.ptr)
        .ptr(out.ptr)
        // `int` parameters: the word's low 4 bytes, two's complement.
        .u64(x as i32 as u32 as usize)
        .u64(y as i32 as u32 as usize)
        .int(map.box_bytes())
        .int(mode)
        .ptr(window.ptr);
    let shared = (tiles * map.box_bytes() + 16) as u32;
    launch_on(driver, KERNEL, THREADS, shared, args)?;
    let window = window.to_host()[0] as usize;
    // The copy's destination must be 128-byte aligned (and the rule keeps the swizzle's rows whole).
    assert_eq!(
        window % 128,
        0,
        "dynamic shared memory at window address {window:#x}"
    );
    Ok((out.to_host(), window))
}

#[test]
fn tiled_loads_equal_the_reference_for_every_swizzle_and_edge() {
    let dr = driver();
    let tensor = Tensor::new(dr, 1);
    // Box rows at most the swizzle span: 48 bytes unswizzled, 32, 64, 128.
    let boxes = [
        ([24, 5], TmaSwizzle::None),
        ([16, 8], TmaSwizzle::B32),
        ([32, 8], TmaSwizzle::B64),
        ([64, 8], TmaSwizzle::B128),
        ([64, 16], TmaSwizzle::B128),
    ];
    // Inside, at the origin, across the low and the high edges, and wholly outside.
    let corners = [(0, 0), (13, 7), (-5, -3), (90, 36), (-70, 2), (3, 45)];
    for (box_dims, swizzle) in boxes {
        let map = tensor.map(box_dims, swizzle);
        for (x, y) in corners {
            let (got, window) = run(dr, &map, x, y, 0, 1).unwrap();
            let want = tensor.reference(&map, x, y, window);
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            assert!(
                first.is_none(),
                "box {box_dims:?} {swizzle:?} at ({x}, {y}), tile at window {window:#x}: word {} is \
                 {:#06x}, expected {:#06x}; first 16 words {:04x?}, expected {:04x?}",
                first.unwrap(),
                got[first.unwrap()],
                want[first.unwrap()],
                &got[..16.min(got.len())],
                &want[..16.min(want.len())]
            );
        }
    }
}

#[test]
fn one_barrier_serves_two_phases() {
    let dr = driver();
    let tensor = Tensor::new(dr, 2);
    let map = tensor.map([64, 8], TmaSwizzle::B128); // 1024 bytes: the second tile keeps the pattern
    let (got, window) = run(dr, &map, 20, 10, 4, 2).unwrap();
    let (first, second) = got.split_at(map.box_bytes() / 2);
    assert_eq!(
        first,
        tensor.reference(&map, 20, 10, window),
        "phase 0 (parity 0)"
    );
    let second_window = window + map.box_bytes();
    assert_eq!(
        second,
        tensor.reference(&map, 20, 11, second_window),
        "phase 1 (parity 1)"
    );
}

#[test]
fn encoding_checks_the_drivers_rules_on_every_driver() {
    let dr = driver();
    let tensor = Tensor::new(dr, 3);
    let too_wide = tensor.map([64, 8], TmaSwizzle::B64);
    let e = dr.encode_tensor_map_2d(&too_wide).unwrap_err().to_string();
    assert!(e.contains("wider than the 64-byte swizzle"), "{e}");
}

/// Runs a wrong `mode` on the emulator: on a GPU it is undefined behaviour.
fn misuse(mode: usize) -> Result<(Vec<u16>, Vec<u16>), String> {
    let emu = EmuDriver::default();
    let tensor = Tensor::new(&emu, 4);
    let map = tensor.map([32, 8], TmaSwizzle::B64);
    let (got, window) = run(&emu, &map, 1, 2, mode, 1)?;
    Ok((got, tensor.reference(&map, 1, 2, window)))
}

#[test]
fn a_tile_read_before_the_wait_is_poison() {
    let (got, want) = misuse(1).unwrap();
    assert!(
        got.iter().all(|&w| w == 0xffff) && want.iter().all(|&w| w != 0xffff),
        "read before mbarrier_wait_parity: expected the emulator's 0xffff poison, got {:?}",
        &got[..8]
    );
    // The same kernel waits first in mode 0: the difference is the wait alone.
    let (got, want) = misuse(0).unwrap();
    assert_eq!(got, want);
}

#[test]
fn delivering_more_bytes_than_announced_is_an_error() {
    let e = misuse(2).unwrap_err();
    assert!(
        e.contains("more than its expect_tx announced") && e.contains(KERNEL),
        "{e}"
    );
}

#[test]
fn a_phase_missing_an_arrival_is_a_deadlock() {
    let e = misuse(3).unwrap_err();
    assert!(
        e.contains("deadlock") && e.contains("on an mbarrier phase"),
        "{e}"
    );
}
