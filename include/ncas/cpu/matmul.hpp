#pragma once
// Matrix products against stored weights, split across the pool by output rows
// (each output is computed by one thread, in one order: thread-count invariant).
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
    // A thread is worth waking for at least ~64K multiply-adds.
    const int64_t min_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, w.cols * T));
    pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1) { k.matmul_rows(w, x, xq, T, y, r0, r1); }, min_rows);
}

}  // namespace ncas::cpu
