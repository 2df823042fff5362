#pragma once
// Differential attention of one layer for the n tokens routed into it (docs/spec.md §1.1).
// Standard attention (llama files) is the same code with one map and no λ.
//
//   q = Wq·xn -> M·H maps of d     k = Wk·xn -> M·Hkv maps of d     v = Wv·xn -> Hkv heads of dv
//   head h reads kv head g = h / (H/Hkv); map m of q head h pairs with map m of kv head g
//   a_m = softmax(q_m · K_mᵀ / √d) over the cached rows at positions <= the query's
//   o_h = (a_0 − λ_t·a_1) · V_g      [then sub-norm · (1 − λ_init)]
#include <cmath>
#include <vector>

#include "ncas/cpu/matmul.hpp"
#include "ncas/model/kv_cache.hpp"
#include "ncas/model/rope.hpp"
#include "ncas/model/weights.hpp"

namespace ncas {

struct attention_buffers {
    std::vector<float> q, k, v, o;       // [B, q_dim], [B, k_dim], [B, v_dim], [B, attn_dim]
    std::vector<std::vector<float>> tl;  // per thread: scores [M, n_ctx]

    attention_buffers(const model_dims& m, int64_t batch, int64_t n_ctx, int n_threads)
        : q(size_t(batch * m.q_dim())), k(size_t(batch * m.k_dim())), v(size_t(batch * m.v_dim())),
          o(size_t(batch * m.attn_dim())),
          tl(size_t(n_threads), std::vector<float>(size_t(m.n_maps * n_ctx))) {}
};

// xn: [n, D] normalised inputs of the routed tokens, pos: their positions,
// lambda_t: per-token λ (differential only). Appends their K/V rows to the
// layer's cache, leaves the attention output in buf.o ([n, attn_dim]).
inline void attention(thread_pool& pool, const model_config& c, const layer_weights& w, int64_t layer,
                      const float* xn, const int32_t* pos, const float* lambda_t, int64_t n, kv_cache& cache,
                      const rope_table& rope, attention_buffers& buf) {
    const int64_t M = c.n_maps, d = c.head_k, dv = c.head_v, H = c.n_head, group = c.n_head / c.n_head_kv;
    const int64_t qd = c.q_dim(), kd = c.k_dim(), vd = c.v_dim();
    float* q = buf.q.data();
    float* k = buf.k.data();
    float* v = buf.v.data();
    cpu::matmul(pool, w.wq, xn, n, q);
    cpu::matmul(pool, w.wk, xn, n, k);
    cpu::matmul(pool, w.wv, xn, n, v);

    const cpu::kernel_table& kern = cpu::kernels();
    const int64_t rows_before = cache.rows(layer);
    for (int64_t i = 0; i < n; ++i) {
        const float *cs = rope.cos_at(pos[i]), *sn = rope.sin_at(pos[i]);
        for (int64_t m = 0; m < qd / d; ++m) kern.rope(q + i * qd + m * d, cs, sn, d);
        for (int64_t m = 0; m < kd / d; ++m) kern.rope(k + i * kd + m * d, cs, sn, d);
        cache.append(layer, k + i * kd, v + i * vd, pos[i]);
    }

    const float scale = float(1.0 / std::sqrt(double(d)));
    const weight_type kv_type = cache.type();
    const int64_t k_stride = row_bytes(kv_type, kd), v_stride = row_bytes(kv_type, vd);
    // One task per (head, token): each output is written by exactly one thread. Head-major,
    // so a thread's contiguous share holds whole heads (a causal token's cost grows with its
    // position; token-major shares would give the last thread the longest rows) and
    // consecutive tasks reread the same head's keys from cache.
    pool.parallel_for(n * H, [&](int64_t t0, int64_t t1, int thread) {
        float* scores = buf.tl[size_t(thread)].data();  // [M, rows]
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t h = task / n, i = task % n, g = h / group;
            const int64_t rows = rows_before + i + 1;  // causal: cached rows up to this token's own
            // One pass over the cached keys scores both maps: head g's maps are adjacent in a K row.
            kern.attn_scores(kv_type, cache.k_row(layer, 0) + row_bytes(kv_type, M * g * d), k_stride, rows,
                             q + i * qd + M * h * d, M, d, scale, scores);
            for (int64_t m = 0; m < M; ++m) kern.softmax(scores + m * rows, rows);
            if (M == 2) {  // fold the two maps: a_0 − λ_t·a_1
                const float lt = lambda_t[i];
                for (int64_t j = 0; j < rows; ++j) scores[j] -= lt * scores[rows + j];
            }
            float* o = buf.o.data() + i * c.attn_dim() + h * dv;
            kern.attn_values(kv_type, cache.v_row(layer, 0) + row_bytes(kv_type, g * dv), v_stride, rows, scores, dv, o);
            if (!w.sub_norm.empty()) {
                kern.rms_norm(o, w.sub_norm.data(), o, dv, 1e-5f);
                for (int64_t e = 0; e < dv; ++e) o[e] *= 1.0f - w.lambda_init;
            }
        }
    }, std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, (rows_before + n) * (M * d + dv))));
}

}  // namespace ncas
