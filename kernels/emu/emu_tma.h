// emu_tma.h: host implementations of Hopper's shared-memory barriers (mbarrier) and of the tensor
// memory accelerator's tiled loads (cp.async.bulk.tensor), which kernels reach through tma.cuh (its
// host side calls these; nvcc sees inline PTX instead). runtime/mbarrier.cpp implements them.
//
// mbarrier (PTX ISA 9.7.13.15): an object in shared memory with a current phase (parity 0 first), an
// expected arrival count set by init, the arrivals still pending in this phase and a transaction
// count (bytes expected by expect_tx, less bytes delivered by complete_tx). The phase completes when
// no arrival and no transaction byte is pending: the parity flips, the pending arrivals reset to the
// expected count. try_wait.parity(p) is true once the phase of parity p has completed, i.e. while the
// current phase's parity is not p (so a wait for parity 1 on a fresh barrier passes at once, as on the
// hardware). The emulator keeps the state beside the shared memory, keyed by the object's address; a
// thread that waits for an incomplete phase blocks (runtime/block.cpp) until an arrival or a copy
// completes it, and a block whose threads all wait with nothing to complete fails as a deadlock.
//
// cp.async.bulk.tensor.2d (9.7.9.25.5, tiled mode): copies a box of box[1] rows of box[0] elements
// from the global tensor the tensor map describes, starting at element coordinates (x, y) (x along
// the contiguous dimension; either may be negative or past the end), into shared memory at `dst`,
// rows stored one after another (box[0] * element bytes each), elements outside the tensor as zeros,
// and the map's swizzle applied to the shared-window address (bits [4, 4 + b) ^= bits [7, 7 + b),
// b = 1, 2, 3 for the 32-, 64- and 128-byte swizzles, as wgmma reads them). On completion it
// performs complete_tx(box bytes) on `bar`. Here the source is read at issue and the destination
// holds 0xff bytes until the copy completes, which happens when a thread waits on `bar`, or when
// every thread of the block waits: so a thread that reads the tile without waiting sees the poison.
// The rules the hardware states for a tiled map (the driver's, for cuTensorMapEncodeTiled) are
// checked where the map is made (src/backend/gpu/tensor_map.rs); the launch fails on a destination
// not 128-byte aligned in the window, or a barrier not 8-byte aligned.
//
// Tensor map: on a GPU an opaque 128-byte CUtensorMap made by the driver; here a TmaTiledMap made
// by the emulator's driver (tensor_map.rs writes the same layout), read by the copy.
#ifndef RESNET_CUDA_EMU_TMA_H
#define RESNET_CUDA_EMU_TMA_H

#include <cstdint>

namespace emu {

// The emulator's tensor map, 2-D tiled mode (tensor_map.rs's EmuTiledMap has the same layout).
struct TmaTiledMap {
    std::uint32_t magic;           // kTmaTiledMagic
    std::uint32_t element_bytes;   // 1, 2, 4 or 8
    std::uint32_t swizzle_bytes;   // 0 (none), 32, 64 or 128
    std::uint32_t reserved;
    std::uint64_t global_address;  // element (0, 0)
    std::uint64_t dims[2];         // elements along x (contiguous), rows along y
    std::uint64_t row_stride;      // bytes from one row to the next
    std::uint32_t box[2];          // elements along x, rows along y
    std::uint64_t unused[9];       // to 128 bytes, the size of a CUtensorMap
};
static_assert(sizeof(TmaTiledMap) == 128, "a tensor map is 128 bytes");
constexpr std::uint32_t kTmaTiledMagic = 0x544d3244u;  // "D2MT"

// The emulator's im2col map, 4-D NHWC (tensor_map_im2col.rs's emulator_map writes this layout).
// cp.async.bulk.tensor.4d in im2col mode (9.7.9.25.5 and 5.5.4 of the PTX ISA; the walk as
// tensor_map_im2col.rs states it): pixels_per_column pixels, the first at (n, h + off_h, w + off_w),
// each next one stride[0] further along the row of the pixel box, which for the offsets spans
// columns lower[0] + off_w .. W + upper[0] + off_w (exclusive) and rows likewise in H; past its last
// column the walk goes to its first column of the next row (stride[1] down), past its last row to
// its first row of the next image. Of each pixel channels_per_pixel channels from c, one pixel a row
// of the tile, zeros outside the tensor (padding, channels past C, images past N), the swizzle as
// the tiled mode's. Landing, poison and alignment as tma_load_2d.
struct TmaIm2colMap {
    std::uint32_t magic;           // kTmaIm2colMagic
    std::uint32_t element_bytes;   // 2
    std::uint32_t swizzle_bytes;   // 0 (none), 32, 64 or 128
    std::uint32_t reserved;
    std::uint64_t global_address;  // element (c, w, h, n) = 0
    std::uint64_t dims[4];         // C, W, H, N (packed NHWC)
    std::int32_t lower[2];         // the pixel box's first column and row for offsets 0 (W, H)
    std::int32_t upper[2];         // its end, exclusive, relative to (W, H)
    std::uint32_t stride[2];       // columns and rows from one pixel to the next (W, H)
    std::uint32_t channels_per_pixel;
    std::uint32_t pixels_per_column;
    std::uint64_t unused[5];       // to 128 bytes
};
static_assert(sizeof(TmaIm2colMap) == 128, "a tensor map is 128 bytes");
constexpr std::uint32_t kTmaIm2colMagic = 0x4d433249u;  // "I2CM"

// Runtime entry points (runtime/mbarrier.cpp).
void mbarrier_init(std::uint64_t* bar, unsigned count);
// expect_tx(tx_bytes) (when > 0), then one arrival.
void mbarrier_arrive(std::uint64_t* bar, unsigned tx_bytes);
// Blocks the calling thread until the phase of parity `parity` has completed.
void mbarrier_wait_parity(std::uint64_t* bar, unsigned parity);
void tma_load_2d(void* dst, const void* map, int x, int y, std::uint64_t* bar);
void tma_load_im2col_4d(void* dst, const void* map, int c, int w, int h, int n, std::uint16_t off_w,
                        std::uint16_t off_h, std::uint64_t* bar);

}  // namespace emu

#endif
