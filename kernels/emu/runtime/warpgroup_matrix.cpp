// warpgroup_matrix.cpp: wgmma.fence / mma_async / commit_group / wait_group (.sync.aligned) for a
// warpgroup of 128 threads, and fence.proxy.async.shared::cta, by the PTX ISA (9.7.15, "Asynchronous
// Warpgroup Level Matrix Multiply-Accumulate Instructions"). Only what wgmma.cuh emits is emulated:
// .m64nNk16.f32.bf16.bf16 with A and B from shared memory (descriptors), scale-d 1, no negation, each
// operand K-major (imm-trans 0) or MN-major (imm-trans 1).
//
// Descriptors (9.7.15.5.1.2.2): start, LBO, SBO = field << 4; base offset (bits 49-51) must be 0;
// swizzle in bits 62-63: S = 16 (none), 128, 64, 32 bytes for modes 0..3, b = 0, 3, 2, 1. Every
// operand is read as 16-byte chunks of 8 elements consecutive along its major dimension, at window
// address a, and then (swizzled) a ^= ((a >> 7) & (2^b - 1)) << 4 (CuTe's Swizzle<b, 4, 3>):
//   K-major, chunk (row r, k chunk c in {0, 1}: k = 8c .. 8c + 7), rows 0..63 for A (m), 0..N-1 for B (n):
//     no swizzle:  start + (r / 8) SBO + c LBO + 16 (r % 8)
//     swizzled:    start + (r / 8) SBO + S (r % 8) + 16 c
//   MN-major (9.7.15.5.1.2.1.3 "Canonical Layouts", ((T,W,m),(8,k)):((1,T,LBO),(WT,SBO)) in elements,
//   T = 8, W = S / 16; no swizzle ((T,1,m),(8,k)):((1,T,SBO),(T,LBO))), chunk (k row k = 0..15, MN
//   chunk c: m or n = 8c .. 8c + 7):
//     no swizzle:  start + c SBO + (k / 8) LBO + 16 (k % 8)
//     swizzled:    start + (c / W) LBO + (k / 8) SBO + S (k % 8) + 16 (c % W)
// A swizzled operand's start may not put the part of an atom row it reads across the row's end.
//
// D fragments (9.7.15.5.1.1.1): thread i of the warpgroup, w = i / 32, g = (i % 32) / 4, t = i % 4:
//   d[4j + h] = D[16w + g + 8 (h / 2)][8j + 2t + h % 2]     (h = 0..3, j < N/8)
//
// What is checked, each failing the launch with a message naming the rule:
// - collectives: the rendezvous (block.cpp) gathers all 128 threads; here their operands must agree
//   (N, descriptors, transposes, wait counts);
// - wgmma.fence: an mma_async whose accumulators no in-flight op targets (the start of a chain) must
//   come after a wgmma.fence that follows the last wait_group that wrote those registers (or any
//   fence, for registers no wgmma wrote yet): the kernel may have read or written them since. Ops of
//   the same shape on the same registers chain without a fence (PTX: "an ordering guarantee is
//   provided by default"); an op whose registers partly overlap an in-flight op's is an error.
//   Register accesses themselves are invisible here, so a write after the fence goes unseen;
// - asynchrony: D = A B + C is computed at issue, where C is the registers or, when chaining, the
//   in-flight result; the registers then read NaN until a wait_group retires the op. wait_group N
//   retires the oldest committed groups until N remain; before writing an op's result it compares
//   the shared bytes the op read with their values at issue: a change means the kernel overwrote an
//   operand while the hardware could still be reading it;
// - proxies: cp.async (non-bulk) writes through the generic proxy; a wgmma reads through the async
//   proxy, so a fence.proxy.async must lie on the path between the two (PTX memory model,
//   "Proxy-preserved base causality order"): by the writing thread after its cp.async.wait_group, or
//   by a thread of the reading warpgroup after a __syncthreads that followed the write. A chunk a
//   wgmma reads with neither is an error. Ordinary stores need the same fence; they are tracked
//   where a kernel says it made them (note_generic_shared_store: the in-place operand rewrites);
// - a thread that returns while its warpgroup has ops issued or committed and not retired.
//
// Arithmetic: every product of two bf16 is exact in f32; each element is C plus the 16 products
// added in k order, one fused multiply-add each (the same order as warp_matrix.cpp's mma). The
// hardware's order and internal rounding are unspecified, so a GPU agrees to a few units in the
// last place; a reference doing the same fused multiply-adds agrees with the emulator exactly.
#include "warpgroup_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <vector>

namespace emu {
namespace {

constexpr unsigned kWarpgroupThreads = 128;
constexpr unsigned kMaxWarpgroups = 1024 / kWarpgroupThreads;

// One issued wgmma.mma_async.
struct Op {
    int n = 0;
    float* d[kWarpgroupThreads];             // each thread's accumulators
    std::vector<float> tile;                 // D, 64 x n row-major
    std::vector<const unsigned char*> read;  // the 16-byte chunks of A and B it read
    std::vector<unsigned char> snapshot;     // their bytes at issue
};

// A range of accumulators a wait_group wrote, and when (an event number of the warpgroup).
struct Written {
    const float* d;
    int count;
    unsigned long long event;
};

struct Warpgroup {
    std::vector<Op*> open;                // issued since the last commit
    std::deque<std::vector<Op*>> groups;  // committed and not retired, oldest first
    unsigned long long events = 0;        // counts fences and waits
    unsigned long long fence_event = 0;   // the event number of the last wgmma.fence (0: none yet)
    std::vector<Written> written[kWarpgroupThreads];
    int registers = 0;  // a thread's count after the last setmaxnreg (0: as launched)
};

// The last cp.async landing in each 16-byte chunk of dynamic shared memory.
struct Landing {
    unsigned long long seq;  // < State::block_first_seq: none in this block
    unsigned writer;         // thread index
    unsigned generation;     // barrier generation when it landed
};

struct State {
    unsigned char* dynamic = nullptr;
    std::size_t dynamic_bytes = 0;
    unsigned num_threads = 0;
    Warpgroup warpgroups[kMaxWarpgroups];
    std::vector<std::unique_ptr<Op>> ops;  // every Op this worker made
    std::vector<Op*> free_ops;
    Op* issuing = nullptr;  // taken by an mma_async that has not listed it yet (a failed one keeps it)
    // Proxy tracking. Sequence numbers grow across blocks, so records of earlier blocks need no reset.
    std::vector<Landing> landings;
    unsigned long long next_seq = 1;
    unsigned long long block_first_seq = 1;
    std::vector<unsigned long long> thread_fence_seq;  // next_seq at the thread's last proxy fence
    long long warpgroup_fence_generation[kMaxWarpgroups];  // -1: no proxy fence in this block
    // The block's setmaxnreg: the first warpgroup to run an inc (-1: none), and whether any ran a dec.
    int first_inc_warpgroup = -1;
    bool any_dec = false;
};

thread_local State state;
// Whether this worker's block issued any wgmma op: thread exits of other kernels cost one test.
__thread bool ops_used = false;

[[noreturn]] void fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
void fail(const char* format, ...) {
    char buf[512];
    va_list args;
    va_start(args, format);
    std::vsnprintf(buf, sizeof buf, format, args);
    va_end(args);
    kernel_error(buf);
}

Op* new_op() {
    if (state.free_ops.empty()) {
        state.ops.push_back(std::make_unique<Op>());
        return state.ops.back().get();
    }
    Op* op = state.free_ops.back();
    state.free_ops.pop_back();
    return op;
}

void release_op(Op* op) { state.free_ops.push_back(op); }

bool overlaps(const float* a, int a_count, const float* b, int b_count) { return a < b + b_count && b < a + a_count; }

// Element (row, column) of D that register `i` of warpgroup thread `t` holds.
inline void fragment_position(unsigned t, int i, int* row, int* col) {
    const unsigned w = t / 32, g = (t % 32) / 4, q = t % 4;
    const int h = i % 4, j = i / 4;
    *row = static_cast<int>(16 * w + g) + 8 * (h / 2);
    *col = 8 * j + static_cast<int>(2 * q) + h % 2;
}

const char* swizzle_name(unsigned s) {
    switch (s) {
    case 0: return "no swizzle";
    case 1: return "128-byte swizzle";
    case 2: return "64-byte swizzle";
    default: return "32-byte swizzle";
    }
}

// The elements of one 16-byte chunk of operand `which`, for messages: "A (K-major) m 3, k 0..7" or
// "B (N-major) n 8..15, k 3".
struct ChunkName {
    char text[64];
    ChunkName(const char* which, bool mn_major, int mn, int k) {
        const char* dim = which[0] == 'A' ? "m" : "n";
        if (mn_major) {
            std::snprintf(text, sizeof text, "%s (%s-major) %s %d..%d, k %d", which, which[0] == 'A' ? "M" : "N", dim,
                          mn, mn + 7, k);
        } else {
            std::snprintf(text, sizeof text, "%s (K-major) %s %d, k %d..%d", which, dim, mn, k, k + 7);
        }
    }
};

// Reads the operand `desc` describes: `rows` MN elements (64 for A, N for B) by k16, K-major or
// MN-major, into values[mn * mn_stride + k * k_stride] (k = 0..15), recording the chunks in `op` and
// checking each against the proxy-fence rule for readers in `warpgroup`.
void read_operand(const char* which, std::uint64_t desc, int rows, bool mn_major, unsigned warpgroup, Op* op,
                  float* values, int mn_stride, int k_stride) {
    const unsigned swizzle = static_cast<unsigned>(desc >> 62);
    const unsigned base_offset = static_cast<unsigned>(desc >> 49) & 7;
    // Bits 14-15, 30-31, 46-48 and 52-61 are not fields.
    constexpr std::uint64_t reserved = 0x3ull << 14 | 0x3ull << 30 | 0x7ull << 46 | 0x3ffull << 52;
    if (desc & reserved) {
        fail("wgmma.mma_async: descriptor of %s 0x%016llx sets reserved bits", which,
             static_cast<unsigned long long>(desc));
    }
    if (base_offset != 0) {
        fail("wgmma.mma_async: descriptor of %s has base offset %u; the emulator supports only 0 (the operand's "
             "swizzle pattern starting at a multiple of its repeat in the shared window)",
             which, base_offset);
    }
    const std::uint32_t start = static_cast<std::uint32_t>(desc & 0x3fff) << 4;
    const std::uint32_t lbo = static_cast<std::uint32_t>(desc >> 16 & 0x3fff) << 4;
    const std::uint32_t sbo = static_cast<std::uint32_t>(desc >> 32 & 0x3fff) << 4;
    // Row width of the swizzle atom (S) and the XOR mask: 128, 64, 32 bytes for modes 1, 2, 3.
    const std::uint32_t row_bytes = swizzle == 0 ? 16 : 256u >> swizzle;
    const std::uint32_t mask = swizzle == 0 ? 0 : (row_bytes / 16) - 1;
    const char* const layout = mn_major ? (which[0] == 'A' ? "M-major" : "N-major") : "K-major";
    // Bytes of one atom row the operand uses: a k16 slice (K-major), or its MN chunks in a panel.
    const std::uint32_t used = mn_major ? 16u * std::min(static_cast<std::uint32_t>(rows / 8), row_bytes / 16) : 32u;
    if (swizzle != 0 && start % row_bytes + used > row_bytes) {
        fail("wgmma.mma_async: %s %s starts at window address 0x%x, %u bytes into a %u-byte row of its %s atom: the "
             "%u bytes it reads of each row would cross into the next row",
             layout, which, start, start % row_bytes, row_bytes, swizzle_name(swizzle), used);
    }
    const std::uint32_t window_end = kDynamicSharedWindowOffset + static_cast<std::uint32_t>(state.dynamic_bytes);
    // MN-major: chunks per k row, and chunks per panel (an atom row) when swizzled.
    const int mn_chunks = rows / 8;
    const std::uint32_t panel_chunks = row_bytes / 16;
    const int element_stride = mn_major ? mn_stride : k_stride;
    for (int i = 0; i < 2 * rows; ++i) {
        // The chunk holds elements (mn, k) .. along the major dimension: mn .. mn + 7 (MN-major) or
        // k .. k + 7 (K-major).
        int mn, k;
        std::uint32_t a;
        if (!mn_major) {
            const int r = i / 2, c = i % 2;
            mn = r;
            k = 8 * c;
            if (swizzle == 0) {
                a = start + static_cast<std::uint32_t>(r / 8) * sbo + static_cast<std::uint32_t>(c) * lbo +
                    16u * static_cast<std::uint32_t>(r % 8);
            } else {
                a = start + static_cast<std::uint32_t>(r / 8) * sbo + row_bytes * static_cast<std::uint32_t>(r % 8) +
                    16u * static_cast<std::uint32_t>(c);
            }
        } else {
            k = i / mn_chunks;
            const std::uint32_t c = static_cast<std::uint32_t>(i % mn_chunks);
            mn = 8 * static_cast<int>(c);
            const std::uint32_t kg = static_cast<std::uint32_t>(k / 8), kr = static_cast<std::uint32_t>(k % 8);
            if (swizzle == 0) {
                a = start + c * sbo + kg * lbo + 16u * kr;
            } else {
                a = start + (c / panel_chunks) * lbo + kg * sbo + row_bytes * kr + 16u * (c % panel_chunks);
            }
        }
        a ^= ((a >> 7) & mask) << 4;
        if (a < kDynamicSharedWindowOffset || a + 16 > window_end) {
            fail("wgmma.mma_async: %s is at window address 0x%x, outside the block's %zu bytes of dynamic shared "
                 "memory (window 0x%x..0x%x)",
                 ChunkName(which, mn_major, mn, k).text, a, state.dynamic_bytes, kDynamicSharedWindowOffset,
                 window_end);
        }
        const std::size_t offset = a - kDynamicSharedWindowOffset;
        const Landing& l = state.landings[offset / 16];
        if (l.seq >= state.block_first_seq && state.thread_fence_seq[l.writer] <= l.seq &&
            state.warpgroup_fence_generation[warpgroup] <= static_cast<long long>(l.generation)) {
            fail("wgmma.mma_async: %s (window address 0x%x) was written by cp.async or a store without "
                 "fence.proxy.async before wgmma reads it (thread %u's write: a fence by that thread after its "
                 "cp.async.wait_group or store, or by this warpgroup after a __syncthreads that followed it, "
                 "orders the generic-proxy write before the async-proxy read)",
                 ChunkName(which, mn_major, mn, k).text, a, l.writer);
        }
        const unsigned char* p = state.dynamic + offset;
        op->read.push_back(p);
        op->snapshot.insert(op->snapshot.end(), p, p + 16);
        std::uint16_t bits[8];
        std::memcpy(bits, p, 16);
        float* out = values + mn * mn_stride + k * k_stride;
        for (int e = 0; e < 8; ++e) out[e * element_stride] = bfloat16_to_float(bfloat16{bits[e]});
    }
}

// tile[i][j] += sum_k a[i][k] b[k][j] for a 64 x 16, b 16 x N (row-major), one fused multiply-add
// per k in order. N is a constant and the pointers restricted so that the loop along j vectorizes
// (gcc's -O2 cost model takes only loops without run-time checks or remainders).
template <int N>
void multiply_fixed(const float* __restrict a, const float* __restrict b, float* __restrict tile) {
    for (int i = 0; i < 64; ++i) {
        float* __restrict drow = tile + i * N;
        for (int k = 0; k < 16; ++k) {
            const float aik = a[i * 16 + k];
            const float* __restrict brow = b + k * N;
            for (int j = 0; j < N; ++j) drow[j] = std::fma(aik, brow[j], drow[j]);
        }
    }
}

void multiply(int n, const float* a, const float* b, float* tile) {
    switch (n) {
    case 16: multiply_fixed<16>(a, b, tile); return;
    case 32: multiply_fixed<32>(a, b, tile); return;
    case 64: multiply_fixed<64>(a, b, tile); return;
    case 128: multiply_fixed<128>(a, b, tile); return;
    case 256: multiply_fixed<256>(a, b, tile); return;
    default: break;
    }
    for (int i = 0; i < 64; ++i) {
        for (int k = 0; k < 16; ++k) {
            for (int j = 0; j < n; ++j) tile[i * n + j] = std::fma(a[i * 16 + k], b[k * n + j], tile[i * n + j]);
        }
    }
}

// The newest in-flight op (uncommitted or committed) whose accumulators for thread t overlap
// [d, d + count), or null.
Op* in_flight_on(Warpgroup& wg, unsigned t, const float* d, int count) {
    for (auto it = wg.open.rbegin(); it != wg.open.rend(); ++it) {
        if (overlaps((*it)->d[t], (*it)->n / 2, d, count)) return *it;
    }
    for (auto g = wg.groups.rbegin(); g != wg.groups.rend(); ++g) {
        for (auto it = g->rbegin(); it != g->rend(); ++it) {
            if (overlaps((*it)->d[t], (*it)->n / 2, d, count)) return *it;
        }
    }
    return nullptr;
}

void mma_async(unsigned q, ThreadContext* threads) {
    Warpgroup& wg = state.warpgroups[q];
    const WgmmaLane& first = *reinterpret_cast<const WgmmaLane*>(static_cast<std::uintptr_t>(threads[0].offered));
    const int n = first.n;
    for (unsigned t = 1; t < kWarpgroupThreads; ++t) {
        const WgmmaLane& x = *reinterpret_cast<const WgmmaLane*>(static_cast<std::uintptr_t>(threads[t].offered));
        if (x.n != n || x.a_desc != first.a_desc || x.b_desc != first.b_desc || x.a_mn_major != first.a_mn_major ||
            x.b_mn_major != first.b_mn_major) {
            fail("wgmma.mma_async: the threads of warpgroup %u disagree (thread %u: n%d, descriptors 0x%016llx, "
                 "0x%016llx, transposes %d %d; thread %u: n%d, 0x%016llx, 0x%016llx, %d %d): shape, descriptors and "
                 "transposes must be the same in all 128",
                 q, threads[0].linear, n, static_cast<unsigned long long>(first.a_desc),
                 static_cast<unsigned long long>(first.b_desc), first.a_mn_major, first.b_mn_major, threads[t].linear,
                 x.n, static_cast<unsigned long long>(x.a_desc), static_cast<unsigned long long>(x.b_desc),
                 x.a_mn_major, x.b_mn_major);
        }
    }
    if (n < 8 || n > 256 || n % 8 != 0) fail("wgmma.mma_async: n%d is not a shape of m64nNk16", n);
    ops_used = true;
    const int regs = n / 2;

    Op* op = new_op();
    state.issuing = op;
    op->n = n;
    op->read.clear();
    op->snapshot.clear();
    op->tile.assign(static_cast<std::size_t>(64) * n, 0.0f);
    // A as a[m][k], B as b[k][n], whichever way they are stored.
    float a[64 * 16], b[16 * 256];
    read_operand("A", first.a_desc, 64, first.a_mn_major, q, op, a, 16, 1);
    read_operand("B", first.b_desc, n, first.b_mn_major, q, op, b, 1, n);

    // C: each thread's registers, or the result of the in-flight op its registers chain on.
    float* tile = op->tile.data();
    for (unsigned t = 0; t < kWarpgroupThreads; ++t) {
        const WgmmaLane& x = *reinterpret_cast<const WgmmaLane*>(static_cast<std::uintptr_t>(threads[t].offered));
        op->d[t] = x.d;
        const Op* prev = in_flight_on(wg, t, x.d, regs);
        if (prev && (prev->d[t] != x.d || prev->n != n)) {
            fail("wgmma.mma_async: thread %u's accumulators overlap those of an in-flight wgmma of shape n%d at a "
                 "different register offset: only wgmmas of the same shape on the same registers chain without a "
                 "wait_group",
                 threads[t].linear, prev->n);
        }
        if (!prev) {
            unsigned long long last_write = 0;
            for (const Written& w : wg.written[t]) {
                if (overlaps(w.d, w.count, x.d, regs) && w.event > last_write) last_write = w.event;
            }
            if (wg.fence_event == 0 || wg.fence_event < last_write) {
                fail("wgmma.fence missing: thread %u issues wgmma.mma_async on accumulators %s without a "
                     "wgmma.fence since %s (the fence orders the warpgroup's register accesses before the wgmma's)",
                     threads[t].linear, last_write ? "that a wgmma.wait_group wrote" : "it set",
                     last_write ? "that wait_group" : "the kernel started");
            }
        }
        for (int i = 0; i < regs; ++i) {
            int row, col;
            fragment_position(t, i, &row, &col);
            tile[row * n + col] = prev ? prev->tile[static_cast<std::size_t>(row) * n + col] : x.d[i];
        }
    }
    multiply(n, a, b, tile);  // D = A B + C
    // Poison: until a wait_group retires the op, the registers hold no defined value.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (unsigned t = 0; t < kWarpgroupThreads; ++t) {
        for (int i = 0; i < regs; ++i) op->d[t][i] = nan;
    }
    wg.open.push_back(op);
    state.issuing = nullptr;
}

void poison_in_flight(Warpgroup& wg) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto poison = [&](const Op* op) {
        for (unsigned t = 0; t < kWarpgroupThreads; ++t) {
            for (int i = 0; i < op->n / 2; ++i) op->d[t][i] = nan;
        }
    };
    for (const auto& g : wg.groups) {
        for (const Op* op : g) poison(op);
    }
    for (const Op* op : wg.open) poison(op);
}

void retire(Warpgroup& wg, Op* op, unsigned long long event) {
    for (std::size_t c = 0; c < op->read.size(); ++c) {
        if (std::memcmp(op->read[c], op->snapshot.data() + 16 * c, 16) != 0) {
            const std::size_t offset = static_cast<std::size_t>(op->read[c] - state.dynamic);
            fail("shared memory read by an in-flight wgmma was overwritten before its wait_group (window address "
                 "0x%zx, %s): the hardware may read its operands until the wait_group that retires it",
                 kDynamicSharedWindowOffset + offset, c < 128 ? "operand A" : "operand B");
        }
    }
    const int regs = op->n / 2;
    for (unsigned t = 0; t < kWarpgroupThreads; ++t) {
        float* d = op->d[t];
        for (int i = 0; i < regs; ++i) {
            int row, col;
            fragment_position(t, i, &row, &col);
            d[i] = op->tile[static_cast<std::size_t>(row) * op->n + col];
        }
        std::vector<Written>& written = wg.written[t];
        bool found = false;
        for (Written& w : written) {
            if (w.d == d && w.count == regs) {
                w.event = event;
                found = true;
                break;
            }
        }
        if (!found) written.push_back(Written{d, regs, event});
    }
    release_op(op);
}

// The registers of an SM (65536 32-bit registers: H100, H200), all a block's threads may hold.
constexpr long long kSmRegisters = 65536;

// setmaxnreg.inc / .dec N (emu_wgmma.h): the whole warpgroup with one N; an inc may not lower the
// count it set last, nor a dec raise it (the PTX ISA leaves both undefined); and the warpgroups whose
// counts are known must fit the SM's registers together. (The count a launch gives is ptxas's choice,
// which the host cannot know: a warpgroup that never set one is left out of the sum.) An inc takes its
// registers from the block's own pool, which only the block's decs fill (all the block was given at
// launch is its warps' already): a block with an inc and no dec fails when it ends
// (wgmma_block_finished), as the inc would wait forever on the GPU.
void set_max_registers(unsigned q, ThreadContext* threads, bool increase) {
    Warpgroup& wg = state.warpgroups[q];
    const char* name = increase ? "setmaxnreg.inc" : "setmaxnreg.dec";
    const int count = threads[0].op_arg;
    for (unsigned t = 1; t < kWarpgroupThreads; ++t) {
        if (threads[t].op_arg != count) {
            fail("%s: the threads of warpgroup %u ask for different counts (%d, and %d in thread %u)", name, q, count,
                 threads[t].op_arg, threads[t].linear);
        }
    }
    if (wg.registers != 0 && (increase ? count < wg.registers : count > wg.registers)) {
        fail("%s %d by warpgroup %u, which holds %d registers a thread: an %s must not %s the count", name, count, q,
             wg.registers, increase ? "inc" : "dec", increase ? "lower" : "raise");
    }
    wg.registers = count;
    if (increase && state.first_inc_warpgroup < 0) state.first_inc_warpgroup = static_cast<int>(q);
    if (!increase) state.any_dec = true;
    long long total = 0;
    for (unsigned g = 0; g < state.num_threads / kWarpgroupThreads && g < kMaxWarpgroups; ++g) {
        total += static_cast<long long>(state.warpgroups[g].registers) * kWarpgroupThreads;
    }
    if (total > kSmRegisters) {
        fail("%s %d by warpgroup %u: the block's warpgroups would hold %lld registers, more than an SM's %lld "
             "(the inc would wait forever)",
             name, count, q, total, kSmRegisters);
    }
}

void wait_group(unsigned q, ThreadContext* threads) {
    Warpgroup& wg = state.warpgroups[q];
    const int pending = threads[0].op_arg;
    for (unsigned t = 1; t < kWarpgroupThreads; ++t) {
        if (threads[t].op_arg != pending) {
            fail("wgmma.wait_group: the threads of warpgroup %u wait with different counts (%d, and %d in thread %u)",
                 q, pending, threads[t].op_arg, threads[t].linear);
        }
    }
    const unsigned long long event = ++wg.events;
    bool retired = false;
    while (wg.groups.size() > static_cast<std::size_t>(pending)) {
        // Retired in place: a failing check abandons this fiber, and whatever is still listed in the
        // state is released at the next block's start (a local copy would leak).
        std::vector<Op*>& group = wg.groups.front();
        while (!group.empty()) {
            Op* op = group.front();
            retire(wg, op, event);
            group.erase(group.begin());
            retired = true;
        }
        wg.groups.pop_front();
    }
    // A retired op may have written registers a later in-flight op chains on: those stay undefined.
    if (retired) poison_in_flight(wg);
}

}  // namespace

const char* warpgroup_op_name(WarpgroupOp op) {
    switch (op) {
    case WarpgroupOp::fence: return "wgmma.fence.sync.aligned";
    case WarpgroupOp::mma_async: return "wgmma.mma_async.sync.aligned";
    case WarpgroupOp::commit: return "wgmma.commit_group.sync.aligned";
    case WarpgroupOp::wait: return "wgmma.wait_group.sync.aligned";
    case WarpgroupOp::setmaxnreg_inc: return "setmaxnreg.inc.sync.aligned";
    case WarpgroupOp::setmaxnreg_dec: return "setmaxnreg.dec.sync.aligned";
    }
    return "a warpgroup instruction";
}

void wgmma_block_start(unsigned num_threads, void* dynamic, std::size_t dynamic_bytes) {
    state.num_threads = num_threads;
    state.dynamic = static_cast<unsigned char*>(dynamic);
    state.dynamic_bytes = dynamic ? dynamic_bytes : 0;
    const std::size_t chunks = (state.dynamic_bytes + 15) / 16;
    if (state.landings.size() < chunks) state.landings.resize(chunks, Landing{0, 0, 0});
    if (state.thread_fence_seq.size() < num_threads) state.thread_fence_seq.resize(num_threads, 0);
    state.block_first_seq = state.next_seq;
    for (long long& g : state.warpgroup_fence_generation) g = -1;
    for (Warpgroup& wg : state.warpgroups) wg.registers = 0;
    state.first_inc_warpgroup = -1;
    state.any_dec = false;
    if (!ops_used) return;
    // A failed block may have left operations in flight.
    if (state.issuing) release_op(state.issuing);
    state.issuing = nullptr;
    for (Warpgroup& wg : state.warpgroups) {
        for (Op* op : wg.open) release_op(op);
        for (auto& g : wg.groups) {
            for (Op* op : g) release_op(op);
        }
        wg.open.clear();
        wg.groups.clear();
        wg.events = 0;
        wg.fence_event = 0;
        for (auto& w : wg.written) w.clear();
    }
    ops_used = false;
}

void complete_warpgroup_op(WarpgroupOp op, unsigned warpgroup, ThreadContext* threads) {
    Warpgroup& wg = state.warpgroups[warpgroup];
    switch (op) {
    case WarpgroupOp::fence:
        wg.fence_event = ++wg.events;
        ops_used = true;
        break;
    case WarpgroupOp::mma_async:
        mma_async(warpgroup, threads);
        break;
    case WarpgroupOp::commit:
        wg.groups.push_back(std::move(wg.open));
        wg.open.clear();
        ops_used = true;
        break;
    case WarpgroupOp::wait:
        wait_group(warpgroup, threads);
        break;
    case WarpgroupOp::setmaxnreg_inc:
    case WarpgroupOp::setmaxnreg_dec:
        set_max_registers(warpgroup, threads, op == WarpgroupOp::setmaxnreg_inc);
        break;
    }
}

bool wgmma_block_finished(std::string* error) {
    if (state.first_inc_warpgroup < 0 || state.any_dec) return true;
    char buf[400];
    std::snprintf(buf, sizeof buf,
                  "setmaxnreg.inc by warpgroup %d in a block of %u threads where no warpgroup ran setmaxnreg.dec: an "
                  "inc takes its registers from the block's own pool, which only a dec fills (PTX ISA, setmaxnreg), "
                  "so on the GPU it waits forever",
                  state.first_inc_warpgroup, state.num_threads);
    *error = buf;
    return false;
}

void wgmma_thread_exited(const ThreadContext* t) {
    if (!ops_used) return;
    const Warpgroup& wg = state.warpgroups[t->linear / kWarpgroupThreads];
    std::size_t in_flight = wg.open.size();
    for (const auto& g : wg.groups) in_flight += g.size();
    if (in_flight) {
        fail("the thread returned with %zu wgmma.mma_async operation(s) of its warpgroup in flight (%zu uncommitted): "
             "a wgmma.commit_group and a wgmma.wait_group must retire them first",
             in_flight, wg.open.size());
    }
}

void note_cp_async_landing(const void* dst) {
    const auto* p = static_cast<const unsigned char*>(dst);
    if (!state.dynamic || p < state.dynamic || p >= state.dynamic + state.dynamic_bytes) return;
    const std::size_t chunk = static_cast<std::size_t>(p - state.dynamic) / 16;
    state.landings[chunk] = Landing{state.next_seq++, emu_current_thread->linear, barrier_generation()};
}

void note_generic_shared_store(const void* dst) { note_cp_async_landing(dst); }

void note_async_proxy_shared_write(const void* dst, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(dst);
    if (!state.dynamic || p < state.dynamic || p >= state.dynamic + state.dynamic_bytes) return;
    const std::size_t first = static_cast<std::size_t>(p - state.dynamic) / 16;
    for (std::size_t c = first; c < first + (bytes + 15) / 16 && c < state.landings.size(); ++c) {
        state.landings[c] = Landing{0, 0, 0};  // seq 0 is below every block's first: no generic write
    }
}

void fence_proxy_async_shared() {
    const unsigned t = emu_current_thread->linear;
    state.thread_fence_seq[t] = state.next_seq;
    const unsigned q = t / kWarpgroupThreads;
    if (q < kMaxWarpgroups) state.warpgroup_fence_generation[q] = barrier_generation();
}

std::uint32_t shared_window_address(const void* p) {
    const auto* c = static_cast<const unsigned char*>(p);
    if (!state.dynamic || c < state.dynamic || c > state.dynamic + state.dynamic_bytes) {
        char buf[320];
        std::snprintf(buf, sizeof buf,
                      "shared-window address of %p, which is not in the block's dynamic shared memory (the emulator "
                      "maps only dynamic shared memory into the window: keep wgmma operands there, from "
                      "dynamic_shared_memory<T>())",
                      p);
        kernel_error(buf);
    }
    return kDynamicSharedWindowOffset + static_cast<std::uint32_t>(c - state.dynamic);
}

std::uint32_t wgmma_checked_start(const void* p, std::uint32_t leading_byte_offset, std::uint32_t stride_byte_offset) {
    const std::uint32_t start = shared_window_address(p);
    if (start % 16 != 0 || leading_byte_offset % 16 != 0 || stride_byte_offset % 16 != 0 ||
        leading_byte_offset >= (1u << 18) || stride_byte_offset >= (1u << 18)) {
        fail("wgmma descriptor: start (window address 0x%x), leading byte offset %u and stride byte offset %u must be "
             "multiples of 16 below 2^18 (the descriptor keeps bits 4-17)",
             start, leading_byte_offset, stride_byte_offset);
    }
    return start;
}

}  // namespace emu
