// mbarrier.cpp: shared-memory barriers and the tiled bulk tensor copies that complete on them
// (emu_tma.h states the semantics). One block runs at a time on a worker thread, so the state is
// per worker and reset at each block's start.
#include "mbarrier.h"

#include "../cuda_emu.h"
#include "block.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace emu {
namespace {

struct PendingCopy {
    unsigned char* dst;
    std::vector<unsigned char> data;  // the box as it will land (swizzled, zeros out of bounds)
};

struct Barrier {
    const void* addr;
    unsigned expected;  // arrivals per phase (init's count)
    unsigned pending;   // arrivals still to come in the current phase
    long long tx;       // transaction bytes expected and not yet delivered
    unsigned phase;     // parity of the current (incomplete) phase
    std::vector<PendingCopy> copies;
};

thread_local std::vector<Barrier> barriers;

template <class... Args>
[[noreturn]] void fail(const char* format, Args... args) {
    char buf[384];
    std::snprintf(buf, sizeof buf, format, args...);
    kernel_error(buf);
}

Barrier& find(const void* bar, const char* what) {
    for (Barrier& b : barriers) {
        if (b.addr == bar) return b;
    }
    fail("%s on the mbarrier at %p, which no mbarrier.init of this block set up", what, bar);
}

void check_aligned(const void* bar) {
    if (reinterpret_cast<std::uintptr_t>(bar) % 8 != 0) fail("mbarrier at %p is not 8-byte aligned", bar);
}

// Completes the current phase when nothing is pending: the parity flips and the waiters wake.
void complete_if_done(Barrier& b) {
    if (b.pending != 0 || b.tx != 0) return;
    b.phase ^= 1u;
    b.pending = b.expected;
    current_block_runner()->wake_mbarrier_waiters(b.addr);
}

// Lands every copy issued on `b` so far and counts its bytes as delivered.
bool deliver(Barrier& b) {
    if (b.copies.empty()) return false;
    for (PendingCopy& c : b.copies) {
        std::memcpy(c.dst, c.data.data(), c.data.size());
        note_async_proxy_shared_write(c.dst, c.data.size());
        b.tx -= static_cast<long long>(c.data.size());
    }
    b.copies.clear();
    if (b.tx < 0) {
        fail("mbarrier at %p: bulk copies delivered %lld bytes more than its expect_tx announced in this phase",
             b.addr, -b.tx);
    }
    complete_if_done(b);
    return true;
}

}  // namespace

void mbarrier_block_start() { barriers.clear(); }

bool mbarrier_deliver_all() {
    bool any = false;
    // Indexed: a delivery wakes fibers but runs none, so the vector does not change meanwhile.
    for (std::size_t i = 0; i < barriers.size(); ++i) any = deliver(barriers[i]) || any;
    return any;
}

void mbarrier_init(std::uint64_t* bar, unsigned count) {
    check_aligned(bar);
    if (count == 0 || count >= (1u << 20)) fail("mbarrier.init with count %u (1 to 2^20 - 1)", count);
    for (Barrier& b : barriers) {
        if (b.addr != bar) continue;
        if (!b.copies.empty()) fail("mbarrier.init on the mbarrier at %p while bulk copies complete on it", bar);
        b = Barrier{bar, count, count, 0, 0, {}};
        return;
    }
    barriers.push_back(Barrier{bar, count, count, 0, 0, {}});
}

void mbarrier_arrive(std::uint64_t* bar, unsigned tx_bytes) {
    Barrier& b = find(bar, tx_bytes ? "mbarrier.arrive.expect_tx" : "mbarrier.arrive");
    b.tx += tx_bytes;
    if (b.pending == 0) fail("mbarrier at %p: more arrivals than its count in one phase", bar);
    --b.pending;
    complete_if_done(b);
}

void mbarrier_wait_parity(std::uint64_t* bar, unsigned parity) {
    if (parity > 1) fail("mbarrier.try_wait.parity with parity %u (0 or 1)", parity);
    for (;;) {
        // Looked up again after each wake: other threads may have initialised barriers meanwhile.
        Barrier& b = find(bar, "mbarrier.try_wait.parity");
        deliver(b);
        if (b.phase != parity) return;
        current_block_runner()->wait_on_mbarrier(bar);
    }
}

namespace {

// Bits of the 32-, 64- and 128-byte swizzles: address bits [4, 4 + bits) ^= bits [7, 7 + bits).
unsigned swizzle_bits(std::uint32_t swizzle_bytes) {
    return swizzle_bytes == 128 ? 3 : swizzle_bytes == 64 ? 2 : swizzle_bytes == 32 ? 1 : 0;
}

// Where byte `offset` of a box stored from window address `window` lands, relative to `window`.
std::size_t swizzled(std::uint32_t window, std::size_t offset, unsigned bits) {
    const std::uint32_t linear = window + static_cast<std::uint32_t>(offset);
    return (linear ^ (((linear >> 7) & ((1u << bits) - 1)) << 4)) - window;
}

// A bulk copy's destination checked, the box `copy` holds left to land on `bar`, `dst` poisoned.
void issue(void* dst, std::uint64_t* bar, PendingCopy copy) {
    const std::uint32_t window = shared_window_address(dst);
    if (window % 128 != 0) fail("cp.async.bulk.tensor destination at window address 0x%x is not 128-byte aligned", window);
    Barrier& b = find(bar, "cp.async.bulk.tensor");
    std::memset(dst, 0xff, copy.data.size());  // poison until delivered
    b.copies.push_back(std::move(copy));
}

}  // namespace

void tma_load_2d(void* dst, const void* map_ptr, int x, int y, std::uint64_t* bar) {
    TmaTiledMap map;
    std::memcpy(&map, map_ptr, sizeof map);
    if (map.magic != kTmaTiledMagic) {
        fail("cp.async.bulk.tensor.2d with a tensor map at %p that the emulator's driver did not make "
             "(Driver::encode_tensor_map_2d)",
             map_ptr);
    }
    const std::uint32_t window = shared_window_address(dst);
    const std::size_t eb = map.element_bytes;
    const std::size_t row_bytes = map.box[0] * eb;
    const unsigned bits = swizzle_bits(map.swizzle_bytes);
    PendingCopy copy{static_cast<unsigned char*>(dst), std::vector<unsigned char>(row_bytes * map.box[1], 0)};
    const auto* global = reinterpret_cast<const unsigned char*>(static_cast<std::uintptr_t>(map.global_address));
    for (std::uint32_t r = 0; r < map.box[1]; ++r) {
        const long long gy = static_cast<long long>(y) + r;
        for (std::uint32_t c = 0; c < map.box[0]; ++c) {
            const long long gx = static_cast<long long>(x) + c;
            if (gx < 0 || gy < 0 || gx >= static_cast<long long>(map.dims[0]) || gy >= static_cast<long long>(map.dims[1])) {
                continue;  // out of the tensor: zero
            }
            std::memcpy(copy.data.data() + swizzled(window, r * row_bytes + c * eb, bits),
                        global + gy * map.row_stride + gx * eb, eb);
        }
    }
    issue(dst, bar, std::move(copy));
}

void tma_load_im2col_4d(void* dst, const void* map_ptr, int c, int w, int h, int n, std::uint16_t off_w,
                        std::uint16_t off_h, std::uint64_t* bar) {
    TmaIm2colMap map;
    std::memcpy(&map, map_ptr, sizeof map);
    if (map.magic != kTmaIm2colMagic) {
        fail("cp.async.bulk.tensor.4d.im2col with a tensor map at %p that the emulator's driver did not make "
             "(Driver::encode_tensor_map_im2col)",
             map_ptr);
    }
    const std::uint32_t window = shared_window_address(dst);
    const long long C = static_cast<long long>(map.dims[0]), W = static_cast<long long>(map.dims[1]);
    const long long H = static_cast<long long>(map.dims[2]), N = static_cast<long long>(map.dims[3]);
    const std::size_t row_bytes = map.channels_per_pixel * std::size_t{2};
    const unsigned bits = swizzle_bits(map.swizzle_bytes);
    PendingCopy copy{static_cast<unsigned char*>(dst),
                     std::vector<unsigned char>(row_bytes * map.pixels_per_column, 0)};
    const auto* global = reinterpret_cast<const unsigned char*>(static_cast<std::uintptr_t>(map.global_address));
    // The pixel box for these offsets: columns [w_lo, w_end), rows [h_lo, h_end).
    const long long w_lo = map.lower[0] + off_w, w_end = W + map.upper[0] + off_w;
    const long long h_lo = map.lower[1] + off_h, h_end = H + map.upper[1] + off_h;
    long long pw = static_cast<long long>(w) + off_w, ph = static_cast<long long>(h) + off_h, pn = n;
    for (std::uint32_t i = 0; i < map.pixels_per_column; ++i) {
        const bool inside = pn >= 0 && pn < N && ph >= 0 && ph < H && pw >= 0 && pw < W;
        for (std::uint32_t k = 0; inside && k < map.channels_per_pixel; ++k) {
            const long long ch = static_cast<long long>(c) + k;
            if (ch < 0 || ch >= C) continue;  // out of the tensor: zero
            std::memcpy(copy.data.data() + swizzled(window, i * row_bytes + k * 2, bits),
                        global + (((pn * H + ph) * W + pw) * C + ch) * 2, 2);
        }
        pw += map.stride[0];
        if (pw >= w_end) {
            pw = w_lo;
            ph += map.stride[1];
            if (ph >= h_end) {
                ph = h_lo;
                ++pn;
            }
        }
    }
    issue(dst, bar, std::move(copy));
}

}  // namespace emu
