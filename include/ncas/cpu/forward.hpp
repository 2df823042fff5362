#pragma once
// The CPU backend's verbs of the forward pass (model/forward.hpp has the order):
// activations in host memory, matrix products through cpu::matmul on the
// session's thread pool, the KV cache of cpu/kv_cache.hpp.
//
// Attention (docs/spec.md §1.1; llama files: one map, no λ):
//   q = Wq·xn -> M·H maps of d     k = Wk·xn -> M·Hkv maps of d     v = Wv·xn -> Hkv heads of dv
//   head h reads kv head g = h / (H/Hkv); map m of q head h pairs with map m of kv head g
// The MoE (§1.2) is batched: tokens are grouped by expert so each chosen expert's
// weights are read once a batch, and an expert no token chose is never touched
// (it may not be resident).
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "ncas/cpu/kv_cache.hpp"
#include "ncas/cpu/matmul.hpp"
#include "ncas/memory/expert_source.hpp"
#include "ncas/model/forward.hpp"
#include "ncas/model/rope.hpp"

namespace ncas::cpu {

// The attention verbs as functions of their inputs (tests/vk/test_vk_ops.cpp runs them
// as the reference for the Vulkan kernels).

// q, k, v = Wq·xn, Wk·xn, Wv·xn for the n rows of xn ([n, D]).
inline void attention_qkv(thread_pool& pool, const layer_weights& w, const float* xn, int64_t n, float* q, float* k,
                          float* v) {
    cpu::matmul(pool, w.wq, xn, n, q);
    cpu::matmul(pool, w.wk, xn, n, k);
    cpu::matmul(pool, w.wv, xn, n, v);
}

// RoPE on every d-wide map of q and k at the tokens' positions; appends k and v to the layer's cache.
inline void rope_store(const model_config& c, int64_t layer, const rope_table& rope, const int32_t* pos, int64_t n,
                       float* q, float* k, const float* v, kv_cache& cache) {
    const int64_t d = c.head_k, qd = c.q_dim(), kd = c.k_dim(), vd = c.v_dim();
    const kernel_table& kern = cpu::kernels();
    for (int64_t i = 0; i < n; ++i) {
        const float *cs = rope.cos_at(pos[i]), *sn = rope.sin_at(pos[i]);
        for (int64_t m = 0; m < qd / d; ++m) kern.rope(q + i * qd + m * d, cs, sn, d);
        for (int64_t m = 0; m < kd / d; ++m) kern.rope(k + i * kd + m * d, cs, sn, d);
        cache.append(layer, k + i * kd, v + i * vd, pos[i]);
    }
}

// Attention reads the cache in chunks of attn_chunk rows (rows [c·C, (c+1)·C) of the
// layer, the last chunk shorter): a constant, so the split never depends on the thread
// count or on how the tokens were batched.
inline constexpr int64_t attn_chunk = 256;
// A prompt's queries a task (per head) reading each chunk of the cache once.
inline constexpr int64_t attn_queries = 16;

// o = (softmax(q₀K₀ᵀ/√d) − λ_t·softmax(q₁K₁ᵀ/√d))·V per head [then sub-norm · (1 − λ_init)]
// for the n tokens just stored after the layer's `before` cached rows; scores: per thread scratch
// (grown to attn_queries·M·(before + n) floats where a prompt needs it).
//
// For each query (token i, head h) over its R = before + i + 1 causal rows, chunk by chunk:
//  1. scores of the chunk's rows, per map m: max_mc and x = exp(s − max_mc), sum_mc = Σ x
//     (the softmax kernel's own first steps, softmax_exp);
//  2. merged in chunk order: M_m = max_c max_mc, S_m = Σ_c sum_mc · exp(max_mc − M_m),
//     a_mc = exp(max_mc − M_m) · (1 / S_m); the chunk's weights x_0·a_0c − λ_t·(x_1·a_1c),
//     and its partial value sum P_c = Σ_j w_j·V_j;
//  3. o = P_0 + P_1 + ... in chunk order.
// With one chunk (R <= 256) this is the unchunked softmax bit for bit (a = 1 / S).
// Decode (n = 1) runs the steps as three parallel passes over (chunk, block of heads) tasks,
// so a deep cache is split across threads by chunk and head; a prompt (n > 1) runs them in
// order per (head, token) task. Both compute each chunk, merge and sum the same way, so
// prefill, decode and every thread count give the same bits.
inline void attend(thread_pool& pool, const model_config& c, const layer_weights& w, int64_t layer, const float* q,
                   const float* lambda_t, int64_t n, int64_t before, const kv_cache& cache,
                   std::vector<std::vector<float>>& scores_of_thread, float* out) {
    const int64_t M = c.n_maps, d = c.head_k, dv = c.head_v, H = c.n_head, group = c.n_head / c.n_head_kv;
    const int64_t qd = c.q_dim();
    const kernel_table& kern = cpu::kernels();
    const float scale = float(1.0 / std::sqrt(double(d)));
    const weight_type kv_type = cache.type();
    const bool blocks_kv = traits_of(kv_type).block_values > 1;  // q8_0 / q4_0: read in place by attn_*_q
    const int64_t k_stride = cache.k_row_bytes(), v_stride = cache.v_row_bytes();
    constexpr int64_t C = attn_chunk;
    const auto chunks_of = [](int64_t rows) { return (rows + C - 1) / C; };

    // Step 1 for chunk ch of query (i, h): e = the chunk's x ([M, nr]), st = {max_m, sum_m} a map.
    const auto chunk_stats = [&](float* e, int64_t nr, float* st) {
        for (int64_t m = 0; m < M; ++m) st[2 * m + 1] = kern.softmax_exp(e + m * nr, nr, &st[2 * m]);
    };
    const auto score_chunk = [&](int64_t i, int64_t h, int64_t ch, int64_t rows, float* e, float* st) {
        const int64_t g = h / group, r0 = ch * C, nr = std::min(C, rows - r0);
        // One pass over the cached keys scores both maps: head g's maps are adjacent in a K row.
        if (blocks_kv)
            kern.attn_scores_q(kv_type, cache.k_row(layer, r0), k_stride, M * g * d, nr, q + i * qd + M * h * d, M, d,
                               scale, e);
        else
            kern.attn_scores(kv_type, cache.k_row(layer, r0) + row_bytes(kv_type, M * g * d), k_stride, nr,
                             q + i * qd + M * h * d, M, d, scale, e);
        chunk_stats(e, nr, st);
    };
    // Step 2's weights for chunk ch, given all the query's chunk stats (st: [chunks][M][2]), in e[0, nr).
    const auto weigh_chunk = [&](int64_t i, int64_t ch, int64_t rows, float* e, const float* st) {
        const int64_t nr = std::min(C, rows - ch * C), nc = chunks_of(rows);
        for (int64_t m = 0; m < M; ++m) {
            float mx = st[2 * m];
            for (int64_t k = 1; k < nc; ++k) mx = std::max(mx, st[k * 2 * M + 2 * m]);
            float sum = 0.0f;
            for (int64_t k = 0; k < nc; ++k) sum += st[k * 2 * M + 2 * m + 1] * std::exp(st[k * 2 * M + 2 * m] - mx);
            const float a = std::exp(st[ch * 2 * M + 2 * m] - mx) * (1.0f / sum);
            float* x = e + m * nr;
            for (int64_t j = 0; j < nr; ++j) x[j] *= a;
        }
        if (M == 2) {  // fold the two maps: a_0 − λ_t·a_1
            const float lt = lambda_t[i];
            for (int64_t j = 0; j < nr; ++j) e[j] -= lt * e[nr + j];
        }
    };
    // Step 2's sums P_ch of `heads` heads from head h (K/V head h / group; heads > 1 only
    // without GQA, where they are adjacent in a V row): weights e + k·es, sums into p + k·ps.
    const auto value_sums = [&](int64_t h, int64_t heads, int64_t ch, int64_t rows, const float* e, int64_t es, float* p,
                                int64_t ps) {
        const int64_t g = h / group, r0 = ch * C, nr = std::min(C, rows - r0);
        if (blocks_kv) kern.attn_values_q(kv_type, cache.v_row(layer, r0), v_stride, g * dv, nr, heads, e, es, dv, p, ps);
        else
            kern.attn_values(kv_type, cache.v_row(layer, r0) + row_bytes(kv_type, g * dv), v_stride, nr, heads, e, es, dv,
                             p, ps);
    };
    const auto sub_norm = [&](float* o) {
        if (!w.sub_norm.empty()) {
            kern.rms_norm(o, w.sub_norm.data(), o, dv, 1e-5f);
            for (int64_t e = 0; e < dv; ++e) o[e] *= 1.0f - w.lambda_init;
        }
    };

    if (n == 1) {  // decode: (chunk, heads) tasks, the chunks' scores, stats and sums kept between passes
        const int64_t rows = before + 1, nc = chunks_of(rows);
        thread_local std::vector<float> xs, sts, parts;  // the calling thread's; the pool's threads write them
        xs.resize(size_t(H * M * rows)), sts.resize(size_t(H * nc * 2 * M)), parts.resize(size_t(H * nc * dv));
        float *x0 = xs.data(), *st0 = sts.data(), *p0 = parts.data();
        // Chunk-major: chunk ch's scores are [H][M][nr] (head h's maps contiguous, as score_chunk writes them).
        const auto x_of = [&](int64_t h, int64_t ch) { return x0 + ch * C * H * M + h * M * std::min(C, rows - ch * C); };
        // A task is a chunk's rows for a block of heads. A cache row holds every head's keys
        // side by side, so a block's keys are one contiguous span of each row: read row after
        // row, the span streams from memory (per head, it would be a few hundred bytes every
        // few kilobytes, a new page each row, which the prefetchers do not follow). With
        // one K head per query head, a block's scores are one kernel call (its heads' maps
        // in a row); with GQA, a call per head. Blocks are as large as the thread count
        // allows (at least 4 tasks a thread); every score, stat and sum is computed as per
        // head, so the blocking changes no bit. The tasks are shared as the matmuls' rows are
        // (parallel_pieces): each thread starts on its own contiguous share and, when done, takes
        // the last tasks of the others', so a thread the host slows for a moment is not waited
        // for at every layer; a task's results do not depend on the thread that runs it.
        const int64_t blocks = std::clamp<int64_t>((4 * pool.size() + nc - 1) / nc, 1, H);
        const auto heads_of = [&](int64_t b) { return std::pair{b * H / blocks, (b + 1) * H / blocks}; };
        pool.parallel_pieces(nc * blocks, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t ch = t / blocks, r0 = ch * C, nr = std::min(C, rows - r0);
                const auto [h0, h1] = heads_of(t % blocks);
                if (group == 1) {
                    float* e = x_of(h0, ch);
                    if (blocks_kv)
                        kern.attn_scores_q(kv_type, cache.k_row(layer, r0), k_stride, M * h0 * d, nr, q + M * h0 * d,
                                           M * (h1 - h0), d, scale, e);
                    else
                        kern.attn_scores(kv_type, cache.k_row(layer, r0) + row_bytes(kv_type, M * h0 * d), k_stride, nr,
                                         q + M * h0 * d, M * (h1 - h0), d, scale, e);
                    for (int64_t h = h0; h < h1; ++h)
                        for (int64_t m = 0; m < M; ++m) {
                            float* st = st0 + (h * nc + ch) * 2 * M;
                            st[2 * m + 1] = kern.softmax_exp(x_of(h, ch) + m * nr, nr, &st[2 * m]);
                        }
                } else {
                    for (int64_t h = h0; h < h1; ++h) score_chunk(0, h, ch, rows, x_of(h, ch), st0 + (h * nc + ch) * 2 * M);
                }
            }
        });
        pool.parallel_pieces(nc * blocks, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t ch = t / blocks, nr = std::min(C, rows - ch * C);
                const auto [h0, h1] = heads_of(t % blocks);
                for (int64_t h = h0; h < h1; ++h) weigh_chunk(0, ch, rows, x_of(h, ch), st0 + h * nc * 2 * M);
                if (group == 1)
                    value_sums(h0, h1 - h0, ch, rows, x_of(h0, ch), M * nr, p0 + (h0 * nc + ch) * dv, nc * dv);
                else
                    for (int64_t h = h0; h < h1; ++h) value_sums(h, 1, ch, rows, x_of(h, ch), 0, p0 + (h * nc + ch) * dv, 0);
            }
        });
        pool.parallel_for(H, [&](int64_t h0, int64_t h1) {
            for (int64_t h = h0; h < h1; ++h) {
                float* o = out + h * dv;
                const float* p = p0 + h * nc * dv;
                std::copy(p, p + dv, o);
                for (int64_t ch = 1; ch < nc; ++ch)
                    for (int64_t e = 0; e < dv; ++e) o[e] += p[ch * dv + e];
                sub_norm(o);
            }
        });
        return;
    }
    // A prompt: one task per (head, block of attn_queries tokens), each output written by
    // exactly one thread. Within a task the chunks are the outer loop, and the block's
    // queries read each chunk in one kernel call (attn_scores_n, attn_values_n): each step
    // of 16 rows is read from memory once and, while in L1, converted or widened once for
    // all of them; each query still runs its own chunks, merge and sums in the order
    // above. Head-major, so a thread's contiguous share holds whole heads (a causal token's
    // cost grows with its position; token-major shares would give the last thread the
    // longest rows).
    constexpr int64_t Qb = attn_queries;
    const int64_t blocks_of_n = (n + Qb - 1) / Qb, nc_max = chunks_of(before + n);
    pool.parallel_for(blocks_of_n * H, [&](int64_t t0, int64_t t1, int thread) {
        std::vector<float>& xs = scores_of_thread[size_t(thread)];  // [query][chunks][M, nr]
        if (int64_t(xs.size()) < Qb * M * (before + n)) xs.resize(size_t(Qb * M * (before + n)));
        std::vector<float> st(size_t(Qb * nc_max * 2 * M)), part(size_t(Qb * dv));
        int64_t nrs[Qb];  // the kernels' arguments: the active queries' rows of the chunk, and their buffers
        float* xp[Qb];
        const float* wp[Qb];
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t h = task / blocks_of_n, i0 = (task % blocks_of_n) * Qb, nq = std::min(Qb, n - i0);
            const auto x_of = [&](int64_t k, int64_t ch) { return xs.data() + k * M * (before + n) + ch * C * M; };
            const auto st_of = [&](int64_t k) { return st.data() + k * nc_max * 2 * M; };
            const auto out_of = [&](int64_t k) { return out + (i0 + k) * c.attn_dim() + h * dv; };
            // causal: query i reads the cached rows up to its own, before + i + 1; the queries
            // that read chunk ch are k0 .. nq - 1
            const int64_t nc = chunks_of(before + i0 + nq);
            const auto first_reading = [&](int64_t ch) {
                int64_t k0 = 0;
                while (ch >= chunks_of(before + i0 + k0 + 1)) ++k0;
                return k0;
            };
            const auto nr_of = [&](int64_t k, int64_t ch) { return std::min(C, before + i0 + k + 1 - ch * C); };
            for (int64_t ch = 0; ch < nc; ++ch) {  // the block's queries together: the chunk's rows read once for all
                const int64_t k0 = first_reading(ch);
                for (int64_t k = k0; k < nq; ++k) nrs[k - k0] = nr_of(k, ch), xp[k - k0] = x_of(k, ch);
                kern.attn_scores_n(kv_type, cache.k_row(layer, ch * C), k_stride, M * (h / group) * d, nq - k0, nrs,
                                   q + (i0 + k0) * qd + M * h * d, qd, M, d, scale, xp);
                for (int64_t k = k0; k < nq; ++k) chunk_stats(x_of(k, ch), nr_of(k, ch), st_of(k) + ch * 2 * M);
            }
            for (int64_t ch = 0; ch < nc; ++ch) {
                const int64_t k0 = first_reading(ch);
                for (int64_t k = k0; k < nq; ++k) {
                    weigh_chunk(i0 + k, ch, before + i0 + k + 1, x_of(k, ch), st_of(k));
                    nrs[k - k0] = nr_of(k, ch), wp[k - k0] = x_of(k, ch);
                    xp[k - k0] = ch == 0 ? out_of(k) : part.data() + k * dv;
                }
                kern.attn_values_n(kv_type, cache.v_row(layer, ch * C), v_stride, (h / group) * dv, nq - k0, nrs, wp, dv, xp);
                if (ch > 0)
                    for (int64_t k = k0; k < nq; ++k)
                        for (int64_t e = 0; e < dv; ++e) out_of(k)[e] += part[size_t(k * dv + e)];
            }
            for (int64_t k = 0; k < nq; ++k) sub_norm(out_of(k));
        }
    }, std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, Qb * (before + n) * (M * d + dv))));
}

class transformer {
public:
    // Buffers for batches of up to `batch` tokens and a cache of `n_ctx` positions.
    transformer(const model_config& c, const model_weights& w, int64_t batch, int64_t n_ctx, int n_threads,
                expert_provider experts, expert_prefetch prefetch = {})
        : c_(c), w_(w), batch_(batch), experts_(std::move(experts)), prefetch_(std::move(prefetch)),
          rope_(n_ctx, c.head_k, c.rope_theta), stats_(c), x_(size_t(batch * c.n_embd)), xr_(x_.size()),
          xn_(x_.size()), h_(x_.size()), lambda_t_(size_t(batch)), pos_(size_t(batch)), routed_(size_t(batch)),
          s_(size_t(batch)), q_(size_t(batch * c.q_dim())), k_(size_t(batch * c.k_dim())), v_(size_t(batch * c.v_dim())),
          o_(size_t(batch * c.attn_dim())), scores_(size_t(n_threads), std::vector<float>(size_t(c.n_maps * n_ctx))),
          gate_logits_(size_t(batch * c.n_expert)), ids_(size_t(batch * c.n_expert_used)), weights_(ids_.size()),
          rows_(size_t(batch)), used_(size_t(c.n_expert)), scale_(size_t(batch)), ex_(x_.size()),
          up_(size_t(batch * c.n_ff)), gate_(up_.size()), out_(x_.size()) {
        if (prefetch_) guess_.resize(x_.size());
    }

    int64_t batch() const { return batch_; }
    const run_stats& stats() const { return stats_; }
    void reset_stats() { stats_ = run_stats(c_); }

    // Runs tokens[0..T) at positions pos0.. (T <= batch), appending to the cache.
    // Writes logits of every position ([T, V]) when all_logits, else of the last ([V]).
    void forward(thread_pool& pool, std::span<const int32_t> tokens, int32_t pos0, kv_cache& cache, float* logits,
                 bool all_logits) {
        pass p{*this, pool, cache, tokens, pos0, logits};
        run_forward(p, c_, w_, all_logits);
    }

private:
    // One batch: the verbs of model/forward.hpp over this transformer's buffers.
    struct pass {
        transformer& t;
        thread_pool& pool;
        kv_cache& cache;
        std::span<const int32_t> tokens;
        int32_t pos0;
        float* out;
        int64_t n = 0;  // tokens routed into the current layer

        const model_config& c() const { return t.c_; }
        const layer_weights& w(const layer_plan& l) const { return t.w_.layers[size_t(l.index)]; }
        int64_t T() const { return int64_t(tokens.size()); }

        void embed() {
            const int64_t D = c().n_embd;
            for (int64_t i = 0; i < T(); ++i)
                dequantize_row(t.w_.token_embd.type, t.w_.token_embd.row(tokens[size_t(i)]), t.x_.data() + i * D, D);
        }

        // Mixture-of-Depths: a token enters when its router score is above the threshold.
        bool route(const layer_plan& l) {
            const int64_t D = c().n_embd;
            const layer_weights& lw = w(l);
            n = 0;
            for (int64_t i = 0; i < T(); ++i) {
                float s = 1.0f;
                if (l.mod) {
                    const float r = cpu::dot(lw.mod_router.data(), t.x_.data() + i * D, D);
                    if (r <= c().mod_threshold) continue;
                    s = mod_factor(c().scale, r);
                }
                t.routed_[size_t(n)] = int32_t(i), t.s_[size_t(n)] = s, t.pos_[size_t(n)] = pos0 + int32_t(i);
                std::copy_n(t.x_.data() + i * D, D, t.xr_.data() + n * D);
                ++n;
            }
            t.stats_.tokens_in[size_t(l.index)] += T();
            t.stats_.tokens_kept[size_t(l.index)] += n;
            return n > 0;
        }

        void norm(const layer_plan& l, norm_site site) {
            const int64_t D = c().n_embd;
            const bool attn = site == norm_site::attention;
            const float* x = attn ? t.xr_.data() : t.h_.data();
            const float* g = attn ? w(l).attn_norm.data() : w(l).ffn_norm.data();
            for (int64_t i = 0; i < n; ++i) cpu::kernels().rms_norm(x + i * D, g, t.xn_.data() + i * D, D, c().norm_eps);
        }

        // λ_t = λ_l, plus Σ ĝ_e λexp_e of the layer's gate on the attention input.
        void lambda(const layer_plan& l) {
            const layer_weights& lw = w(l);
            std::fill_n(t.lambda_t_.begin(), n, lw.lambda);
            if (!l.lambda_exp) return;
            route_experts(lw, t.xn_.data(), n, true);
            const int64_t k = c().n_expert_used;
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < k; ++j)
                    t.lambda_t_[size_t(i)] += t.weights_[size_t(i * k + j)] * lw.lambda_exp[size_t(t.ids_[size_t(i * k + j)])];
        }

        void qkv(const layer_plan& l) { attention_qkv(pool, w(l), t.xn_.data(), n, t.q_.data(), t.k_.data(), t.v_.data()); }

        void rope_store(const layer_plan& l) {
            rows_before = cache.rows(l.index);
            cpu::rope_store(c(), l.index, t.rope_, t.pos_.data(), n, t.q_.data(), t.k_.data(), t.v_.data(), cache);
        }
        int64_t rows_before = 0;  // the layer's cache rows before this batch

        void attend(const layer_plan& l) {
            cpu::attend(pool, c(), w(l), l.index, t.q_.data(), t.lambda_t_.data(), n, rows_before, cache, t.scores_,
                        t.o_.data());
        }

        // h = x_R + Wo·o
        void project(const layer_plan& l) {
            cpu::matmul(pool, w(l).wo, t.o_.data(), n, t.h_.data());
            for (int64_t i = 0; i < n * c().n_embd; ++i) t.h_[size_t(i)] += t.xr_[size_t(i)];
        }

        // With expert streaming: guesses layer `next`'s experts from the n hidden rows h
        // (before this layer's MoE, so the reads overlap its compute): that layer's MoD
        // router and gate applied to RMSNorm(h; next ffn_norm). Writes only the routing
        // scratch, which gate() rewrites.
        void lookahead(const layer_plan& next) {
            if (!t.prefetch_) return;
            const layer_weights& lw = w(next);
            const int64_t D = c().n_embd;
            int64_t m = 0;
            for (int64_t i = 0; i < n; ++i) {
                const float* h = t.h_.data() + i * D;
                if (next.mod && cpu::dot(lw.mod_router.data(), h, D) <= c().mod_threshold) continue;
                cpu::kernels().rms_norm(h, lw.ffn_norm.data(), t.guess_.data() + m++ * D, D, c().norm_eps);
            }
            if (m == 0) return;
            route_experts(lw, t.guess_.data(), m, true);
            std::vector<bool> used(size_t(c().n_expert));
            t.guess_ids_.clear();
            for (int64_t i = 0; i < m * c().n_expert_used; ++i)
                if (const int32_t e = t.ids_[size_t(i)]; !used[size_t(e)]) used[size_t(e)] = true, t.guess_ids_.push_back(e);
            t.prefetch_(next.index, t.guess_ids_);
        }

        void gate(const layer_plan& l) { route_experts(w(l), t.xn_.data(), n, c().expert_weights_norm); }

        // h[i] += Σ_{e in TopK(i)} ĝ_e · FFN_e(xn[i]), expert by expert.
        void experts(const layer_plan& l) {
            const model_config& cc = c();
            const layer_weights& lw = w(l);
            const int64_t D = cc.n_embd, F = cc.n_ff, k = cc.n_expert_used;
            if (t.experts_.will_use) {
                std::vector<int32_t>& used = t.used_;  // the experts asked for below, in that order
                used.assign(size_t(cc.n_expert), 0);
                for (int64_t i = 0; i < n * k; ++i) used[size_t(t.ids_[size_t(i)])] = 1;
                size_t u = 0;
                for (int32_t e = 0; e < cc.n_expert; ++e)
                    if (used[size_t(e)]) used[u++] = e;
                t.experts_.will_use(l.index, {used.data(), u});
            }
            int64_t* use = t.stats_.expert_use.data() + l.index * cc.n_expert;
            for (int32_t e = 0; e < cc.n_expert; ++e) {
                int64_t m = 0;  // tokens that chose e, in token order
                for (int64_t i = 0; i < n; ++i)
                    for (int64_t j = 0; j < k; ++j)
                        if (t.ids_[size_t(i * k + j)] == e) {
                            t.rows_[size_t(m)] = int32_t(i), t.scale_[size_t(m)] = t.weights_[size_t(i * k + j)];
                            std::copy_n(t.xn_.data() + i * D, D, t.ex_.data() + m * D);
                            ++m;
                        }
                if (m == 0) continue;
                use[e] += m;
                const expert_slabs s = t.experts_.get(l.index, e);
                cpu::matmul(pool, lw.up.slab(s.up), t.ex_.data(), m, t.up_.data());
                if (cc.ffn == ffn_kind::swiglu) {
                    cpu::matmul(pool, lw.gate.slab(s.gate), t.ex_.data(), m, t.gate_.data());
                    cpu::kernels().silu_mul(t.up_.data(), t.gate_.data(), m * F);
                } else {
                    cpu::kernels().gelu(t.up_.data(), m * F);
                }
                cpu::matmul(pool, lw.down.slab(s.down), t.up_.data(), m, t.out_.data());
                for (int64_t r = 0; r < m; ++r) {
                    float* y = t.h_.data() + t.rows_[size_t(r)] * D;
                    const float* o = t.out_.data() + r * D;
                    for (int64_t j = 0; j < D; ++j) y[j] += t.scale_[size_t(r)] * o[j];
                }
            }
        }

        // x = x + s·(y − x); without a router (or with scale none) x = y exactly.
        void mix(const layer_plan& l) {
            const int64_t D = c().n_embd;
            for (int64_t i = 0; i < n; ++i) {
                float* x = t.x_.data() + t.routed_[size_t(i)] * D;
                const float* y = t.h_.data() + i * D;
                if (!l.mix) std::copy_n(y, D, x);
                else for (int64_t j = 0; j < D; ++j) x[j] += t.s_[size_t(i)] * (y[j] - x[j]);
            }
        }

        void logits(bool all) {
            const int64_t D = c().n_embd, first = all ? 0 : T() - 1;
            for (int64_t i = first; i < T(); ++i)
                cpu::kernels().rms_norm(t.x_.data() + i * D, t.w_.output_norm.data(), t.xn_.data() + (i - first) * D, D,
                                        c().norm_eps);
            cpu::matmul(pool, t.w_.output, t.xn_.data(), T() - first, out);
        }

        // Routes each of the m rows of xn ([m, D]) to its experts: ids_ and weights_ ([m, k]).
        // Without a gate (E = 1) every token uses expert 0 at weight 1.
        void route_experts(const layer_weights& lw, const float* xn, int64_t m, bool renorm) {
            const int64_t E = c().n_expert, k = c().n_expert_used;
            if (!lw.gate_inp.data) {
                for (int64_t i = 0; i < m; ++i) t.ids_[size_t(i)] = 0, t.weights_[size_t(i)] = 1.0f;
                return;
            }
            cpu::matmul(pool, lw.gate_inp, xn, m, t.gate_logits_.data());
            for (int64_t i = 0; i < m; ++i)
                route_top_k(t.gate_logits_.data() + i * E, E, k, renorm, t.ids_.data() + i * k, t.weights_.data() + i * k);
        }
    };

    const model_config& c_;
    const model_weights& w_;
    int64_t batch_;
    expert_provider experts_;
    expert_prefetch prefetch_;
    rope_table rope_;
    run_stats stats_;
    std::vector<float> x_, xr_, xn_, h_;          // [B, D] residual, routed residual, normed, hidden
    std::vector<float> lambda_t_;                 // [B]
    std::vector<int32_t> pos_, routed_;           // [B]
    std::vector<float> s_;                        // [B] MoD mix factors
    std::vector<float> q_, k_, v_, o_;            // [B, q_dim], [B, k_dim], [B, v_dim], [B, attn_dim]
    std::vector<std::vector<float>> scores_;      // per thread: [M, n_ctx]
    std::vector<float> gate_logits_;              // [B, E]
    std::vector<int32_t> ids_;                    // [B, k] chosen experts
    std::vector<float> weights_;                  // [B, k] their weights
    std::vector<int32_t> rows_;                   // [B] tokens of the current expert
    std::vector<int32_t> used_;                   // [E] experts the batch uses
    std::vector<float> scale_;                    // [B]
    std::vector<float> ex_, up_, gate_, out_;     // [B, D], [B, F], [B, F], [B, D]
    std::vector<float> guess_;                    // [B, D] normed rows for lookahead (with a prefetch hook)
    std::vector<int32_t> guess_ids_;              // experts guessed for the next layer
};

}  // namespace ncas::cpu
