#pragma once
// Matrix products against stored weights, split across the pool by output rows
// (each output is computed by one thread, in one order, whichever thread and
// piece of rows it falls in: thread-count invariant).
#include <algorithm>
#include <vector>

#include "ncas/cpu/kernels.hpp"
#include "ncas/cpu/thread_pool.hpp"

namespace ncas::cpu {

// y[t, n] = Σ_k W[n, k] · x[t, k]   for t < T;  x is [T, W.cols], y is [T, W.rows]
inline void matmul(thread_pool& pool, const weight_matrix& w, const float* x, int64_t T, float* y) {
    const kernel_table& k = kernels();
    const act_rows* xq = nullptr;
    if (uses_int_dot(w.type)) {
        // Quantised once by the caller; grows to the largest batch, then never allocates again.
        thread_local act_rows scratch;
        scratch.quantize(w.type, x, T, w.cols, k.quantize_act);
        xq = &scratch;
    }
    // Rows are shared out in pieces of 256 (four streams of 64 rows in the decode
    // tile), fewer when that leaves a thread under four pieces; a piece is worth a
    // thread at ~64K multiply-adds. PI-P decode, 2 threads on a Xeon (ncas bench,
    // interleaved): llama file 16.6–16.9 tok/s against 15.9–16.6 split in halves,
    // ncas file 21.1–21.7 against 20.2–21.2. Scratch runs of its expert shapes from
    // DRAM: pieces of 64 or 1024 rows, or 64-row pieces at the ends of 256-row ones, were slower.
    const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, w.cols * T));
    const int64_t quarter = (w.rows + 4 * pool.size() - 1) / (4 * pool.size());
    const int64_t grain = std::max(min_rows, (std::min<int64_t>(256, quarter) + 3) / 4 * 4);
    pool.parallel_pieces(w.rows, grain, [&](int64_t r0, int64_t r1) { k.matmul_rows(w, x, xq, T, y, r0, r1); });
}

}  // namespace ncas::cpu
