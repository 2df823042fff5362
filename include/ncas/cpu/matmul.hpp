#pragma once
// Matrix products against stored weights, split across the pool by output rows
// (each output is computed by one thread, in one order: thread-count invariant).
#include "ncas/cpu/ops.hpp"
#include "ncas/cpu/thread_pool.hpp"

namespace ncas::cpu {

// y[t, n] = Σ_k W[n, k] · x[t, k]   for t < T;  x is [T, W.cols], y is [T, W.rows]
inline void matmul(thread_pool& pool, const weight_matrix& w, const float* x, int64_t T, float* y) {
    pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const std::byte* row = w.row(r);
            for (int64_t t = 0; t < T; ++t) y[t * w.rows + r] = dot_row(w.type, row, x + t * w.cols, w.cols);
        }
    });
}

}  // namespace ncas::cpu
