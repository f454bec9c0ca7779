//! The im2col mode (`tma_load_im2col_4d`, `tma_selftest_load_im2col`): one copy a convolution's A
//! tile, output pixels m0.. at one filter tap by a run of input channels, against the scalar
//! reference of what a convolution needs there (exact: a copy moves bits). The maps are
//! `Im2colMap::for_convolution`'s. The cases cover 3x3 stride 1 and 2 with padding, a 1x1 of stride 2,
//! a 1x3 filter on a non-square input (whose box corners differ in H and W: the driver takes them W
//! first, CUTLASS's order, which only a GPU can confirm), tiles that wrap from row to row and image
//! to image, tiles that run past the last image (zeros, by the PTX ISA's out-of-bounds rule), and
//! channel runs that end past C. On the emulator this checks its walk (kernels/emu/runtime/
//! mbarrier.cpp) against the reference; on a GPU (the device script's `test-tma`) it checks that the
//! hardware walks as the emulator does, before any convolution kernel relies on it.

use super::*;
use resnet_cuda::backend::gpu::tensor_map_im2col::{Im2colBox, Im2colMap};

const IM2COL_KERNEL: &str = "tma_selftest_load_im2col";

/// A convolution's input and geometry: x NHWC, (R, S) taps, stride, padding.
#[derive(Clone, Copy, Debug)]
struct Conv {
    nhwc: [usize; 4],
    taps: [usize; 2],
    stride: usize,
    pad: usize,
}

impl Conv {
    /// The output's rows and columns (P, Q).
    fn out(&self) -> [usize; 2] {
        let [_, h, w, _] = self.nhwc;
        let o = |extent: usize, taps: usize| (extent + 2 * self.pad - taps) / self.stride + 1;
        [o(h, self.taps[0]), o(w, self.taps[1])]
    }

    /// What the A tile of output pixels m0.. at tap (r, s) and channels c0.. holds, as a tile at
    /// shared-window address `window` stores it: row i is output pixel m0 + i's input pixel at the
    /// tap (zeros in the padding, past C and past the last output pixel), the swizzle applied.
    fn reference(
        &self,
        x: &[u16],
        m0: usize,
        tap: [usize; 2],
        c0: usize,
        tile: Im2colBox,
        window: usize,
    ) -> Vec<u16> {
        let [n_images, h, w, c] = self.nhwc;
        let [p_out, q_out] = self.out();
        let channels = tile.channels as usize;
        let bits = match tile.swizzle {
            TmaSwizzle::None => 0,
            TmaSwizzle::B32 => 1,
            TmaSwizzle::B64 => 2,
            TmaSwizzle::B128 => 3,
        };
        let mut out = vec![0u16; channels * tile.pixels as usize];
        for i in 0..tile.pixels as usize {
            let m = m0 + i;
            let (n, p, q) = (m / (p_out * q_out), m / q_out % p_out, m % q_out);
            let hh = (p * self.stride + tap[0]) as i64 - self.pad as i64;
            let ww = (q * self.stride + tap[1]) as i64 - self.pad as i64;
            if n >= n_images || !(0..h as i64).contains(&hh) || !(0..w as i64).contains(&ww) {
                continue;
            }
            for k in 0..channels.min(c.saturating_sub(c0)) {
                let linear = window + (i * channels + k) * 2;
                let swizzled = (linear ^ (((linear >> 7) & ((1 << bits) - 1)) << 4)) - window;
                out[swizzled / 2] = x[((n * h + hh as usize) * w + ww as usize) * c + c0 + k];
            }
        }
        out
    }
}

/// Runs one copy of `map` for output pixel m0's tile at `tap` and channel c0; returns the tile's
/// words and its shared-window address.
fn run_im2col(
    driver: &dyn Driver,
    conv: &Conv,
    map: &Im2colMap,
    m0: usize,
    tap: [usize; 2],
    c0: usize,
) -> (Vec<u16>, usize) {
    let bytes = driver.encode_tensor_map_im2col(map).unwrap().0;
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let device_map = DeviceVec::new(driver, &words);
    let box_bytes = map.box_bytes();
    let out = DeviceVec::new(driver, &vec![0x5a5au16; box_bytes / 2]);
    let window = DeviceVec::new(driver, &[0xdead_beefu32]);
    // The copy's coordinates: the output pixel's window corner (p stride - pad, q stride - pad).
    let [p_out, q_out] = conv.out();
    let (n, p, q) = (m0 / (p_out * q_out), m0 / q_out % p_out, m0 % q_out);
    let corner = |o: usize| (o * conv.stride) as i64 - conv.pad as i64;
    let int = |v: i64| v as i32 as u32 as usize; // an `int` parameter: two's complement
    let args = KernelArgs::new()
        .ptr(device_map.ptr)
        .ptr(out.ptr)
        .int(c0)
        .u64(int(corner(q)))
        .u64(int(corner(p)))
        .int(n)
        .int(tap[1])
        .int(tap[0])
        .int(box_bytes)
        .ptr(window.ptr);
    launch_on(
        driver,
        IM2COL_KERNEL,
        THREADS,
        (box_bytes + 16) as u32,
        args,
    )
    .unwrap();
    (out.to_host(), window.to_host()[0] as usize)
}

#[test]
fn im2col_loads_bring_a_convolutions_a_tile() {
    let dr = driver();
    let tile = |channels, pixels, swizzle| Im2colBox {
        channels,
        pixels,
        swizzle,
    };
    let conv = |nhwc, taps, stride, pad| Conv {
        nhwc,
        taps,
        stride,
        pad,
    };
    // (convolution, box, first output pixel, tap, first channel)
    let s1 = conv([2, 5, 7, 32], [3, 3], 1, 1); // M = 70
    let s2 = conv([2, 9, 6, 64], [3, 3], 2, 1); // P = 5, Q = 3: M = 30
    let pointwise_s2 = conv([3, 6, 6, 16], [1, 1], 2, 0); // M = 27
    let wide = conv([2, 4, 9, 48], [1, 3], 1, 1); // P = 6, Q = 9: box corners differ in H and W
    let cases = [
        // Mid-row start, across rows and into the second image.
        (s1, tile(32, 64, TmaSwizzle::B64), 3, [0, 2], 0),
        (s1, tile(32, 64, TmaSwizzle::B64), 0, [1, 1], 0),
        // Past the last output pixel (rows 70..): zeros.
        (s1, tile(32, 64, TmaSwizzle::B64), 40, [2, 0], 0),
        (s2, tile(64, 32, TmaSwizzle::B128), 5, [2, 1], 0),
        (s2, tile(32, 16, TmaSwizzle::B64), 11, [0, 0], 32),
        (pointwise_s2, tile(16, 32, TmaSwizzle::B32), 0, [0, 0], 0),
        (wide, tile(32, 64, TmaSwizzle::B64), 7, [0, 2], 16),
        // Channels 32..63 of 48: the last 16 zeros.
        (wide, tile(32, 64, TmaSwizzle::None), 50, [0, 1], 32),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (conv, tile, m0, tap, c0) in cases {
        let x: Vec<u16> = (0..conv.nhwc.iter().product::<usize>())
            .map(|_| rng.random_range(1..0xffff))
            .collect();
        let dx = DeviceVec::new(dr, &x);
        let map =
            Im2colMap::for_convolution(dx.ptr, conv.nhwc, conv.taps, (conv.stride, conv.pad), tile);
        let (got, window) = run_im2col(dr, &conv, &map, m0, tap, c0);
        let want = conv.reference(&x, m0, tap, c0, tile, window);
        let channels = tile.channels as usize;
        let differing: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
        // On a mismatch, which pixel rows differ, and what the first such row held: the walk the
        // device took, to compare with tensor_map_im2col.rs's statement of it.
        assert!(
            differing.is_empty(),
            "{conv:?} box {tile:?} at output pixel {m0}, tap {tap:?}, channel {c0} (map {map:?}): \
             {} of {} words differ, in pixel rows {:?}; first such row {:04x?}, expected {:04x?}",
            differing.len(),
            want.len(),
            {
                let mut rows: Vec<usize> = differing.iter().map(|i| i / channels).collect();
                rows.dedup();
                rows
            },
            &got[differing[0] / channels * channels..][..channels],
            &want[differing[0] / channels * channels..][..channels],
        );
    }
}
