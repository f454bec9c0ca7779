//! Launch geometry of the bf16 memory-bound kernels (`kernels/batch_norm_bf16.cu`,
//! `elementwise_bf16.cu`, `pool_bf16.cu`, `shortcut_bf16.cu`) and of the multi-tensor SGD launch.
//! Pure functions of the shapes: no driver, nothing cached.
//!
//! A thread of the channel-wise kernels owns a *group* of channels: 8 (one 16-byte vector of bf16)
//! when 8 divides the channel count, else 1 ([`channel_group`]). Blocks have at most
//! [`BF16_THREADS`] threads: `tx` lanes over channel groups (at most [`MAX_GROUP_LANES`]) and `ty`
//! over rows, images or image columns. Every kernel loops over what its grid does not cover, so the
//! geometry decides speed, never correctness; the one exception is the batch-norm partition count,
//! `grid.y` of the statistics kernels, which the f32 finalize kernels must be given as `P`.
//!
//! | kernel | function | block | grid |
//! |---|---|---|---|
//! | `batch_norm_partial_sum_bf16`, `_partial_sqdev_bf16`, `batch_norm_backward_partial_bf16` | [`batch_norm_partial`]`(M, C)` | (tx, ty) | (groups/tx, P = [`batch_norm_partitions`]`(M)`) |
//! | `batch_norm_finalize_mean_f32`, `_var_f32`, `batch_norm_backward_finalize_f32` (reused) | [`batch_norm_finalize`]`(C)` | 128 | C |
//! | `batch_norm_normalize_bf16`, `_normalize_add_bf16`, `batch_norm_backward_data_bf16` | [`rows_channels`]`(M, C)` | (tx, ty) | (groups/tx, rows/ty capped) |
//! | `global_avg_pool_forward_bf16` | [`rows_channels`]`(N, C)` | (tx, ty) | (groups/tx, N/ty) |
//! | `global_avg_pool_backward_bf16` | [`global_avg_pool_backward`]`(N, HW, C)` | (tx, ty) | (groups/tx, N) |
//! | `max_pool_forward_bf16`, `max_pool_forward_bnrelu_bf16`, `max_pool_argmax_bf16`, `max_pool_argmax_bnrelu_bf16` | [`max_pool_forward`]`(N, P, Q, C)` | (tx, ty) | (Q/ty, P, N) |
//! | `max_pool_backward_bf16` | [`max_pool_backward`]`(N, H, W, C)` | (tx, ty) | (W/ty, H, N) |
//! | `max_pool_backward_bnrelu_sums_bf16` | [`max_pool_backward_sums`]`(N, H, W, C)` | (C/8, ty) | (W/ty, H, min(N, 16)) |
//! | `shortcut_a_forward_bf16` | [`shortcut_a_forward`]`(N, P, Q, Cin, Cout)` | (tx, ty) | (Q/ty, P, N) |
//! | `shortcut_a_backward_bf16` | [`shortcut_a_backward`]`(N, H, W, Cin, Cout)` | (tx, ty) | (W/ty, H, N) |
//! | `add_forward_bf16`, `add_backward_bf16`, `cast_f32_to_bf16`, `cast_bf16_to_f32` | [`elementwise`]`(n)` | 256 | n/8/256, capped |
//! | `sgd_update_chunks_f32` (with or without bf16 copies) | [`sgd_chunks`]`(chunks)` | 256 | chunks |
//! | `channels_pad_bf16`, `channels_unpad_f32` | [`channel_rows`]`(rows or elements)` | 256 | items/256, capped |
//!
//! (`a/b` is `ceil(a / b)`; `groups` = C / [`channel_group`]`(C)`; `M` = N H W rows of `x[M, C]`.)
//! Dynamic shared memory is 0 for all: the statistics kernels use static shared arrays (8 KiB, 16 KiB
//! for the backward's two sums) sized for [`BF16_THREADS`] threads.
//!
//! Statistics workspace: the partial kernels write `partial[q][P][C]` floats (q < 1 for the forward
//! sums, q < 2 for the backward), [`batch_norm_partial_floats`].

use super::launch_constants::{BATCH_NORM_FINALIZE_THREADS, BF16_CHANNEL_GROUP, BF16_THREADS};
use super::sgd_chunks::SGD_CHUNK_THREADS;

/// Most lanes of a block across channel groups: a warp's worth, so that wide layers (C = 2048: 256
/// groups) still spread over several blocks and rows.
pub const MAX_GROUP_LANES: usize = 32;

/// Most blocks of a [`rows_channels`] launch: about eight resident 256-thread blocks on each of an
/// H200's 132 SMs, twice over. Each thread then walks several rows, so its channels' scale, shift or
/// backward coefficients are formed once and reused.
pub const MAX_ROW_BLOCKS: usize = 2048;

/// Most blocks of an [`elementwise`] launch (the loop covers the rest).
pub const MAX_ELEMENTWISE_BLOCKS: usize = 1 << 16;

/// The hardware's limit on `grid.y` and `grid.z`.
const MAX_GRID_YZ: usize = 65535;

/// Grid, block and dynamic shared memory of one launch, as `cuLaunchKernel` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl Launch {
    fn new(grid: (usize, usize, usize), block: (usize, usize)) -> Self {
        let dim = |v: usize| u32::try_from(v.max(1)).expect("launch dimension fits in u32");
        Launch {
            grid: (dim(grid.0), dim(grid.1), dim(grid.2)),
            block: (dim(block.0), dim(block.1), 1),
            shared_bytes: 0,
        }
    }

    /// Threads per block.
    pub fn threads(&self) -> u32 {
        self.block.0 * self.block.1 * self.block.2
    }

    /// Blocks in the grid.
    pub fn blocks(&self) -> usize {
        self.grid.0 as usize * self.grid.1 as usize * self.grid.2 as usize
    }
}

/// Channels a thread handles together for rows of `c` channels: 8 (a 16-byte vector) when 8 divides
/// `c`, else 1. The kernels choose the same way.
pub fn channel_group(c: usize) -> usize {
    let group = BF16_CHANNEL_GROUP as usize;
    if c % group == 0 {
        group
    } else {
        1
    }
}

/// Block (tx, ty) for `groups` channel groups per row: tx lanes over the groups, ty = the rest of
/// [`BF16_THREADS`] over rows.
fn group_block(groups: usize) -> (usize, usize) {
    let tx = groups.clamp(1, MAX_GROUP_LANES);
    (tx, BF16_THREADS as usize / tx)
}

/// Partitions of the rows for the batch-norm channel reductions, fixed by `m` (so results are
/// reproducible): about 256 rows each, at most 1024 (the GPU backend's f32 rule).
pub fn batch_norm_partitions(m: usize) -> usize {
    m.div_ceil(256).clamp(1, 1024)
}

/// Floats of the statistics workspace: `slots` sums (1 forward, 2 backward) x P partitions x `c`.
pub fn batch_norm_partial_floats(m: usize, c: usize, slots: usize) -> usize {
    slots * batch_norm_partitions(m) * c
}

/// The statistics kernels over `x[m, c]`: `grid.y` is the partition count P to pass to the finalize
/// kernels (= [`batch_norm_partitions`]`(m)`).
pub fn batch_norm_partial(m: usize, c: usize) -> Launch {
    let groups = c / channel_group(c);
    let block = group_block(groups);
    Launch::new(
        (groups.div_ceil(block.0), batch_norm_partitions(m), 1),
        block,
    )
}

/// The f32 finalize kernels the bf16 statistics reuse: one block of 128 threads per channel.
pub fn batch_norm_finalize(c: usize) -> Launch {
    Launch::new((c, 1, 1), (BATCH_NORM_FINALIZE_THREADS as usize, 1))
}

/// A thread per channel group walking rows of `x[m, c]`: BN normalize, normalize_add and backward
/// data (m = n / c), and global average pooling's forward (m = N images).
pub fn rows_channels(m: usize, c: usize) -> Launch {
    let groups = c / channel_group(c);
    let block = group_block(groups);
    let grid_x = groups.div_ceil(block.0);
    let grid_y = m
        .div_ceil(block.1)
        .min((MAX_ROW_BLOCKS / grid_x).max(1))
        .min(MAX_GRID_YZ);
    Launch::new((grid_x, grid_y, 1), block)
}

/// Global average pooling's backward, `dy[n, c]` (fp32) to `dx[n, hw, c]`: a thread per channel
/// group and image, its ty lanes over the image's pixels.
pub fn global_avg_pool_backward(n: usize, hw: usize, c: usize) -> Launch {
    let groups = c / channel_group(c);
    let (tx, ty) = group_block(groups);
    let ty = ty.min(hw.max(1));
    Launch::new((groups.div_ceil(tx), n.min(MAX_GRID_YZ), 1), (tx, ty))
}

/// A thread per pixel of `[n, rows, cols]` images with `groups` channel groups a pixel
/// (kernels/pixels_bf16.cuh).
fn pixels(n: usize, rows: usize, cols: usize, groups: usize) -> Launch {
    let (tx, ty) = group_block(groups);
    let ty = ty.min(cols.max(1));
    Launch::new(
        (cols.div_ceil(ty), rows.min(MAX_GRID_YZ), n.min(MAX_GRID_YZ)),
        (tx, ty),
    )
}

/// The input batch from stored images (kernels/input.cu), one thread per pixel of `[n, h, w]`
/// (its three channels are not worth a vector).
pub fn image_batch(n: usize, h: usize, w: usize) -> Launch {
    pixels(n, h, w, 1)
}

/// Max pooling's forward (and the backward's argmax pass), one thread per output pixel of
/// `y[n, p, q, c]`.
pub fn max_pool_forward(n: usize, p: usize, q: usize, c: usize) -> Launch {
    pixels(n, p, q, c / channel_group(c))
}

/// Max pooling's backward, one thread per input pixel of `dx[n, h, w, c]`.
pub fn max_pool_backward(n: usize, h: usize, w: usize, c: usize) -> Launch {
    pixels(n, h, w, c / channel_group(c))
}

/// Images a block of the BN-sums max-pool backward walks at most (its grid's z): each block writes
/// one partial per channel, so this bounds P (at batch 256 of 112 x 112 stem outputs, 7168).
const POOL_SUMS_IMAGE_BLOCKS: usize = 16;

/// Max pooling's backward with its BN's backward sums (`max_pool_backward_bnrelu_sums_bf16`): as
/// [`max_pool_backward`] but one lane per channel group, which the kernel needs (`None` when the
/// groups outnumber [`MAX_GROUP_LANES`]), and at most [`POOL_SUMS_IMAGE_BLOCKS`] blocks along the
/// images. The kernel's partition count P is the grid's block count.
pub fn max_pool_backward_sums(n: usize, h: usize, w: usize, c: usize) -> Option<Launch> {
    let groups = c / channel_group(c);
    if groups > MAX_GROUP_LANES {
        return None;
    }
    // group_block gives every group its lane (groups <= MAX_GROUP_LANES).
    Some(pixels(n.min(POOL_SUMS_IMAGE_BLOCKS), h, w, groups))
}

/// The shortcut's channel group: 8 only when it divides both channel counts (as the kernels decide).
fn shortcut_group(cin: usize, cout: usize) -> usize {
    channel_group(cin).min(channel_group(cout))
}

/// The option-A shortcut's forward, one thread per output pixel of `y[n, p, q, cout]`.
pub fn shortcut_a_forward(n: usize, p: usize, q: usize, cin: usize, cout: usize) -> Launch {
    pixels(n, p, q, cout / shortcut_group(cin, cout))
}

/// The option-A shortcut's backward, one thread per input pixel of `dx[n, h, w, cin]`.
pub fn shortcut_a_backward(n: usize, h: usize, w: usize, cin: usize, cout: usize) -> Launch {
    pixels(n, h, w, cin / shortcut_group(cin, cout))
}

/// The flat kernels over `n` elements (add, add backward, casts): a thread per 8-element vector.
pub fn elementwise(n: usize) -> Launch {
    let threads = BF16_THREADS as usize;
    let vectors = n.div_ceil(BF16_CHANNEL_GROUP as usize);
    Launch::new(
        (
            vectors.div_ceil(threads).clamp(1, MAX_ELEMENTWISE_BLOCKS),
            1,
            1,
        ),
        (threads, 1),
    )
}

/// `channels_pad_bf16` and `channels_unpad_f32` (kernels/channel_pad.cu) over `items` rows or
/// elements: a thread each, 256 a block, the grid capped (its loops cover the rest).
pub fn channel_rows(items: usize) -> Launch {
    let threads = BF16_THREADS as usize;
    Launch::new(
        (
            items.div_ceil(threads).clamp(1, MAX_ELEMENTWISE_BLOCKS),
            1,
            1,
        ),
        (threads, 1),
    )
}

/// `sgd_update_chunks_f32` over a table of `chunks` entries: a block per chunk.
pub fn sgd_chunks(chunks: usize) -> Launch {
    Launch::new((chunks, 1, 1), (SGD_CHUNK_THREADS as usize, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_vectors_only_when_8_divides_the_channels() {
        assert_eq!(channel_group(64), 8);
        assert_eq!(channel_group(24), 8);
        assert_eq!(channel_group(3), 1);
        assert_eq!(channel_group(12), 1);
        assert_eq!(shortcut_group(16, 32), 8);
        assert_eq!(shortcut_group(3, 16), 1);
    }

    #[test]
    fn blocks_stay_within_the_kernels_thread_budget() {
        for c in [1, 3, 5, 8, 16, 24, 64, 256, 512, 2048, 4096] {
            for m in [1, 7, 1000, 802_816] {
                for l in [
                    rows_channels(m, c),
                    batch_norm_partial(m, c),
                    global_avg_pool_backward(m.min(512), 49, c),
                    max_pool_forward(2, 3, 7, c),
                    max_pool_backward(2, 3, 7, c),
                    shortcut_a_forward(2, 3, 7, c, c),
                ] {
                    assert!(l.threads() <= BF16_THREADS, "{l:?}");
                    assert!(l.grid.1 as usize <= MAX_GRID_YZ && l.grid.2 as usize <= MAX_GRID_YZ);
                }
            }
        }
    }

    #[test]
    fn statistics_partitions_match_the_f32_rule() {
        // ResNet-50's first stage at batch 256: 256 * 56 * 56 rows of 64 channels.
        let l = batch_norm_partial(802_816, 64);
        assert_eq!(l.grid, (1, 1024, 1));
        assert_eq!(l.block, (8, 32, 1));
        assert_eq!(batch_norm_partitions(1), 1);
        assert_eq!(batch_norm_partitions(257), 2);
        assert_eq!(batch_norm_partial_floats(257, 16, 2), 2 * 2 * 16);
        // C = 2048: 256 groups over 8 blocks of 32 lanes.
        assert_eq!(batch_norm_partial(12_544, 2048).grid, (8, 49, 1));
    }

    #[test]
    fn row_launches_cover_every_group_and_cap_the_rows() {
        let l = rows_channels(802_816, 64);
        assert_eq!((l.grid, l.block), ((1, 2048, 1), (8, 32, 1)));
        let odd = rows_channels(10, 3);
        assert_eq!((odd.grid, odd.block), ((1, 1, 1), (3, 85, 1)));
        let wide = rows_channels(100, 4096);
        assert_eq!(wide.grid.0 * wide.block.0, 512);
    }

    #[test]
    fn pixel_launches_put_columns_in_blocks_and_rows_and_images_in_the_grid() {
        let l = shortcut_a_forward(128, 16, 16, 16, 32);
        assert_eq!((l.grid, l.block), ((1, 16, 128), (4, 16, 1)));
        let l = max_pool_forward(256, 56, 56, 64);
        assert_eq!((l.grid, l.block), ((2, 56, 256), (8, 32, 1)));
    }

    #[test]
    fn flat_launches_take_a_vector_per_thread() {
        assert_eq!(elementwise(0).grid, (1, 1, 1));
        assert_eq!(elementwise(2048).grid, (1, 1, 1));
        assert_eq!(elementwise(2049).grid, (2, 1, 1));
        assert_eq!(
            elementwise(usize::MAX / 4).grid.0 as usize,
            MAX_ELEMENTWISE_BLOCKS
        );
    }
}
