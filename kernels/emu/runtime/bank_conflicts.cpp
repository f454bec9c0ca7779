// bank_conflicts.cpp: the bank-conflict counters of ldmatrix and cp.async (model in bank_conflicts.h).
#include "bank_conflicts.h"

#include <algorithm>
#include <vector>

namespace emu {
namespace {

// One recorded cp.async: `key` = warp << 40 | k << 5 | lane, with k the lane's copy count since the
// last barrier, so that sorting by key puts each quarter-warp request (key >> 3) in one run.
struct CopyRecord {
    unsigned long long key;
    std::uintptr_t dst;
};

struct WorkerState {
    BankCounts counts;
    std::vector<unsigned> issued;  // per thread of the block: copies since the last flush
    std::vector<CopyRecord> copies;
};

thread_local WorkerState state;

}  // namespace

int wavefronts_16(const std::uintptr_t* addresses, int n) {
    // A 16-byte aligned access covers the 4 banks of 16-byte group (a / 16) % 8, one word in each; two
    // such accesses share a word exactly when their addresses are equal. So a group's wavefronts are
    // its distinct addresses.
    int per_group[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int wavefronts = 1;
    for (int i = 0; i < n; ++i) {
        bool repeat = false;
        for (int j = 0; j < i && !repeat; ++j) repeat = addresses[j] == addresses[i];
        if (repeat) continue;
        const int group = static_cast<int>((addresses[i] >> 4) & 7);
        wavefronts = std::max(wavefronts, ++per_group[group]);
    }
    return wavefronts;
}

void bank_note_ldmatrix_matrix(const std::uintptr_t rows[8]) {
    ++state.counts.ldmatrix_matrices;
    state.counts.ldmatrix_excess += static_cast<unsigned long long>(wavefronts_16(rows, 8) - 1);
}

void bank_block_start(unsigned num_threads) {
    if (state.issued.size() < num_threads) state.issued.resize(num_threads, 0);
    // A flush leaves every count at zero; only a block that failed between flushes leaves records.
    if (!state.copies.empty()) {
        state.copies.clear();
        std::fill(state.issued.begin(), state.issued.end(), 0u);
    }
}

void bank_note_cp_async(unsigned linear, unsigned warp, unsigned lane, const void* dst) {
    const unsigned k = state.issued[linear]++;
    state.copies.push_back(CopyRecord{static_cast<unsigned long long>(warp) << 40 |
                                          static_cast<unsigned long long>(k) << 5 | lane,
                                      reinterpret_cast<std::uintptr_t>(dst)});
}

void bank_flush_cp_async() {
    std::vector<CopyRecord>& copies = state.copies;
    if (copies.empty()) return;
    std::sort(copies.begin(), copies.end(),
              [](const CopyRecord& a, const CopyRecord& b) { return a.key < b.key; });
    for (std::size_t i = 0; i < copies.size();) {
        // One request: the lanes of one quarter warp with the same k (at most 8 records).
        const unsigned long long request = copies[i].key >> 3;
        std::uintptr_t dst[8];
        int n = 0;
        for (; i < copies.size() && copies[i].key >> 3 == request; ++i) {
            dst[n++] = copies[i].dst;
            const unsigned long long warp = copies[i].key >> 40, lane = copies[i].key & 31;
            state.issued[warp * 32 + lane] = 0;
        }
        ++state.counts.cp_async_requests;
        state.counts.cp_async_excess += static_cast<unsigned long long>(wavefronts_16(dst, n) - 1);
    }
    copies.clear();
}

BankCounts bank_take_worker_counts() {
    const BankCounts c = state.counts;
    state.counts = BankCounts{};
    return c;
}

}  // namespace emu
