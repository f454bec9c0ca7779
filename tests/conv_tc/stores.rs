//! The two ways the bf16 tensor-core convolutions store their output (kernels/conv_tc_epilogue.cuh):
//! the staged store (the block's tile through shared memory, then 16-byte stores of 8 channels),
//! taken when the output's row length (forward: K, backward-data: C) is a multiple of 8 and the
//! output (and addend) pointers are 16-byte aligned; else the pair / element stores straight from
//! the mma fragments.
//!
//! Every case runs each launch twice or three times: with its output (and addend) at an element
//! offset of 8 in its allocation (16 bytes: the pointers stay 16-byte aligned, so a row length that
//! is a multiple of 8 takes the staged store) and of 4 (8 bytes: never 16-byte aligned, so always
//! the pair stores; the inputs stay aligned for the loaders), each output between poisoned (NaN)
//! guard elements that must stay untouched, every output element poisoned first.
//! Both runs must match the f64 reference (the tolerance of the parent module) and each other bit
//! for bit: the two paths round the same fp32 values once.
//!
//! Shapes: N = 1 or 2 with M = N*P*Q (forward) or the stride-2 phases' pixel counts (backward-data)
//! below or between every tile's BM; row lengths 24 (the last column block of every tile holds
//! chunks past the end), 8 (one chunk), 20 and 12 (pairs, 4-byte stores), 21 and 3 (odd: 2-byte
//! stores).

use super::*;

/// Poisoned elements after an output.
const GUARD: usize = 40;
/// Element offsets of the tensors in their allocations: 16 bytes (aligned) and 8 bytes (not).
const ALIGNED: usize = 8;
const UNALIGNED: usize = 4;

/// A bf16 tensor at element `offset` of a poisoned allocation with `GUARD` poisoned elements after.
struct Placed {
    buf: DeviceVec<u16>,
    offset: usize,
    len: usize,
}

impl Placed {
    /// The tensor holds `values`, or NaN where `values` is None (an output).
    fn new(values: Option<&[u16]>, len: usize, offset: usize) -> Self {
        let mut host = vec![BF16_NAN; offset + len + GUARD];
        if let Some(v) = values {
            host[offset..offset + len].copy_from_slice(v);
        }
        Placed {
            buf: DeviceVec::new(&host),
            offset,
            len,
        }
    }

    fn ptr(&self) -> DevicePtr {
        self.buf.ptr + 2 * self.offset as u64
    }

    /// The tensor, after checking that the guards on both sides are still poisoned.
    fn read(&self, what: &str) -> Vec<u16> {
        let host = self.buf.to_host();
        let (before, rest) = host.split_at(self.offset);
        let (out, after) = rest.split_at(self.len);
        for (i, &b) in before.iter().chain(after).enumerate() {
            assert_eq!(b, BF16_NAN, "{what}: guard element {i} was written");
        }
        out.to_vec()
    }
}

/// Runs the forward launch `l` with y at element `offset` (x and w aligned: the vector loader's
/// cp.async needs them so); checks y against the reference.
fn forward_placed(s: &ConvShape, l: &TcLaunch, seed: u64, offset: usize) -> Vec<u16> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = random_bf16(&mut rng, len(s.x));
    let w = random_bf16(&mut rng, len(s.w));
    let dx = Placed::new(Some(&bits(&x)), len(s.x), ALIGNED);
    let dw = Placed::new(Some(&bits(&w)), len(s.w), ALIGNED);
    let dy = Placed::new(None, len(s.y), offset);
    let args = KernelArgs::new().ptr(dx.ptr()).ptr(dw.ptr()).ptr(dy.ptr());
    run(l, args.value(&s.dims()));
    let what = format!("{} on {:?} {:?} at offset {offset}", l.kernel, s.x, s.w);
    let y = dy.read(&what);
    check(&what, &to_f64(&y), &forward_reference(s, &x, &w), true);
    y
}

/// Runs the backward-data launch `l` with dx at element offset `dx_offset` and the addend at
/// `addend_offset` (dy and w aligned); checks dx against the reference.
fn backward_data_placed(
    s: &ConvShape,
    l: &TcLaunch,
    add: bool,
    seed: u64,
    (dx_offset, addend_offset): (usize, usize),
) -> Vec<u16> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dy = random_bf16(&mut rng, len(s.y));
    let w = random_bf16(&mut rng, len(s.w));
    let addend = random_bf16(&mut rng, len(s.x));
    let ddy = Placed::new(Some(&bits(&dy)), len(s.y), ALIGNED);
    let dw = Placed::new(Some(&bits(&w)), len(s.w), ALIGNED);
    let dadd = Placed::new(Some(&bits(&addend)), len(s.x), addend_offset);
    let ddx = Placed::new(None, len(s.x), dx_offset);
    let mut args = KernelArgs::new()
        .ptr(ddy.ptr())
        .ptr(dw.ptr())
        .ptr(ddx.ptr());
    if add {
        args = args.ptr(dadd.ptr());
    }
    run(l, args.value(&s.dims()));
    let what = format!(
        "{} on {:?} {:?} stride {}, dx at offset {dx_offset}, addend at {addend_offset}",
        l.kernel, s.x, s.w, s.geom.stride
    );
    let dx = ddx.read(&what);
    let reference = backward_data_reference(s, &dy, &w, add.then_some(addend.as_slice()));
    check(&what, &to_f64(&dx), &reference, true);
    dx
}

#[test]
fn forward_stores_staged_and_in_pairs() {
    for (i, s) in [
        // M = 49 (N = 1): K = 24 staged when aligned; K = 20 pairs; K = 21 single elements.
        shape([1, 7, 7, 16], [24, 3, 3, 16], 1, 1),
        shape([1, 7, 7, 16], [20, 3, 3, 16], 1, 1),
        shape([1, 7, 7, 16], [21, 3, 3, 16], 1, 1),
        // M = 25, K = 8: one chunk a row, staged.
        shape([1, 9, 9, 16], [8, 3, 3, 16], 2, 1),
        // C = 12 (the general loader only), K = 24 staged; M = 98 across two 64-row tiles.
        shape([2, 7, 7, 12], [24, 1, 1, 12], 1, 0),
    ]
    .iter()
    .enumerate()
    {
        for tile in every_tile() {
            for &general in tile.loaders() {
                if !general && !conv_tc_plan::forward_vectorizable(s) {
                    continue;
                }
                let l = conv_tc_plan::forward_with(s, tile, general);
                let seed = 1300 + i as u64;
                let staged = forward_placed(s, &l, seed, ALIGNED);
                let pairs = forward_placed(s, &l, seed, UNALIGNED);
                assert!(
                    staged == pairs,
                    "{} on {:?} {:?}: the aligned and unaligned outputs differ",
                    l.kernel,
                    s.x,
                    s.w
                );
            }
        }
    }
}

#[test]
fn backward_data_stores_staged_and_in_pairs() {
    for (i, s) in [
        // Stride 2 on 9 x 9: phases of 5x5, 5x4, 4x5, 4x4 pixels (M = 50, 40, 40, 32 at N = 2).
        // C = 8: staged when aligned; C = 12: pairs.
        shape([2, 9, 9, 8], [16, 3, 3, 8], 2, 1),
        shape([2, 9, 9, 12], [16, 3, 3, 12], 2, 1),
        // N = 1, C = 24: the last column block of every tile holds chunks past C.
        shape([1, 9, 9, 24], [16, 3, 3, 24], 2, 1),
        // 1x1 stride 2, odd H: the odd phases have no taps and store zeros (or the addend), staged.
        shape([1, 7, 7, 8], [16, 1, 1, 8], 2, 0),
        // The C = 3 stem's dx: single elements.
        shape([1, 11, 11, 3], [16, 7, 7, 3], 2, 3),
    ]
    .iter()
    .enumerate()
    {
        for tile in every_tile() {
            for &general in tile.loaders() {
                if !general && !conv_tc_plan::backward_vectorizable(s) {
                    continue;
                }
                for add in [false, true] {
                    let l = conv_tc_plan::backward_data_with(s, add, tile, general);
                    let seed = 1400 + i as u64;
                    let staged = backward_data_placed(s, &l, add, seed, (ALIGNED, ALIGNED));
                    let mut placements = vec![(UNALIGNED, ALIGNED)];
                    if add {
                        // dx aligned but the addend not: the pair stores too.
                        placements.push((ALIGNED, UNALIGNED));
                    }
                    for p in placements {
                        let pairs = backward_data_placed(s, &l, add, seed, p);
                        assert!(
                            staged == pairs,
                            "{} on {:?} {:?}: dx differs with (dx, addend) at offsets {p:?}",
                            l.kernel,
                            s.x,
                            s.w
                        );
                    }
                }
            }
        }
    }
}
