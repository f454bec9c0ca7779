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

void tma_load_2d(void* dst, const void* map_ptr, int x, int y, std::uint64_t* bar) {
    TmaTiledMap map;
    std::memcpy(&map, map_ptr, sizeof map);
    if (map.magic != kTmaTiledMagic) {
        fail("cp.async.bulk.tensor.2d with a tensor map at %p that the emulator's driver did not make "
             "(Driver::encode_tensor_map_2d)",
             map_ptr);
    }
    const std::uint32_t window = shared_window_address(dst);
    if (window % 128 != 0) fail("cp.async.bulk.tensor destination at window address 0x%x is not 128-byte aligned", window);
    Barrier& b = find(bar, "cp.async.bulk.tensor");
    const std::size_t eb = map.element_bytes;
    const std::size_t row_bytes = map.box[0] * eb;
    const std::size_t bytes = row_bytes * map.box[1];
    // 32-, 64-, 128-byte swizzles: address bits [4, 4 + bits) ^= bits [7, 7 + bits).
    const unsigned bits = map.swizzle_bytes == 128 ? 3 : map.swizzle_bytes == 64 ? 2 : map.swizzle_bytes == 32 ? 1 : 0;
    PendingCopy copy{static_cast<unsigned char*>(dst), std::vector<unsigned char>(bytes, 0)};
    const auto* global = reinterpret_cast<const unsigned char*>(static_cast<std::uintptr_t>(map.global_address));
    for (std::uint32_t r = 0; r < map.box[1]; ++r) {
        const long long gy = static_cast<long long>(y) + r;
        for (std::uint32_t c = 0; c < map.box[0]; ++c) {
            const long long gx = static_cast<long long>(x) + c;
            const std::uint32_t linear = window + static_cast<std::uint32_t>(r * row_bytes + c * eb);
            const std::uint32_t swizzled = linear ^ (((linear >> 7) & ((1u << bits) - 1)) << 4);
            if (gx < 0 || gy < 0 || gx >= static_cast<long long>(map.dims[0]) || gy >= static_cast<long long>(map.dims[1])) {
                continue;  // out of the tensor: zero
            }
            std::memcpy(copy.data.data() + (swizzled - window), global + gy * map.row_stride + gx * eb, eb);
        }
    }
    std::memset(dst, 0xff, bytes);  // poison until delivered
    b.copies.push_back(std::move(copy));
}

}  // namespace emu
