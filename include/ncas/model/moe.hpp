#pragma once
// Sparse mixture of experts of one layer (docs/spec.md §1.2), batched: the tokens are
// grouped by expert so each selected expert's weights are read once per batch,
// and an expert no token selected is never touched (it may not be resident).
#include <functional>
#include <span>
#include <vector>

#include "ncas/cpu/matmul.hpp"
#include "ncas/model/weights.hpp"

namespace ncas {

// Top-k of softmax(logits): ids in descending probability, ties to the lower
// expert index; weights renormalised over the k when `renorm`.
inline void route_top_k(float* logits, int64_t E, int64_t k, bool renorm, int32_t* ids, float* weights) {
    cpu::softmax(logits, E);
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
        int32_t best = -1;
        for (int32_t e = 0; e < E; ++e) {
            bool taken = false;
            for (int64_t i = 0; i < j; ++i) taken |= ids[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;  // strict >: lower index wins ties
        }
        ids[j] = best;
        sum += weights[j] = logits[best];
    }
    if (renorm)
        for (int64_t j = 0; j < k; ++j) weights[j] /= sum;
}

// Where the MoE finds an expert's slab: resident weights, or an arena that
// streams them (get may block until the slab is loaded).
struct expert_slabs {
    const std::byte* up = nullptr;
    const std::byte* gate = nullptr;
    const std::byte* down = nullptr;
};
struct expert_provider {
    std::function<expert_slabs(int64_t layer, int32_t expert)> get;
    // Optional: once a layer is routed, the experts it will ask for, in that order
    // (a streaming source starts reading the later ones while the first compute).
    std::function<void(int64_t layer, std::span<const int32_t> experts)> will_use = {};
};

inline expert_slabs resident_expert(const layer_weights& w, int32_t e) {
    auto at = [e](const expert_tensor& t) { return t.data ? t.data + e * t.slab_bytes() : nullptr; };
    return {at(w.up), at(w.gate), at(w.down)};
}

struct moe_buffers {
    std::vector<float> logits;   // [B, E]
    std::vector<int32_t> ids;    // [B, k]
    std::vector<float> weights;  // [B, k]
    std::vector<int32_t> rows;   // [B] tokens of the current expert
    std::vector<int32_t> used;   // [E] experts the batch uses
    std::vector<float> scale;    // [B]
    std::vector<float> x, up, gate, out;  // [B, D], [B, F], [B, F], [B, D]

    moe_buffers(const model_dims& m, int64_t B)
        : logits(size_t(B * m.n_expert)), ids(size_t(B * m.n_expert_used)), weights(ids.size()), rows(size_t(B)),
          used(size_t(m.n_expert)), scale(size_t(B)), x(size_t(B * m.n_embd)), up(size_t(B * m.n_ff)),
          gate(up.size()), out(x.size()) {}
};

// Routes each of the n rows of hn ([n, D]) to its experts; writes the chosen ids
// into buf.ids ([n, k]). With E == 1 and no gate every token uses expert 0 at weight 1.
inline void moe_route(thread_pool& pool, const model_config& c, const layer_weights& w, const float* hn, int64_t n,
                      bool renorm, moe_buffers& buf) {
    const int64_t E = c.n_expert, k = c.n_expert_used;
    if (!w.gate_inp.data) {
        for (int64_t i = 0; i < n; ++i) buf.ids[size_t(i)] = 0, buf.weights[size_t(i)] = 1.0f;
        return;
    }
    cpu::matmul(pool, w.gate_inp, hn, n, buf.logits.data());
    for (int64_t i = 0; i < n; ++i)
        route_top_k(buf.logits.data() + i * E, E, k, renorm, buf.ids.data() + i * k, buf.weights.data() + i * k);
}

// y[i] += Σ_{e in TopK(i)} ĝ_e · FFN_e(hn[i])   for the n rows of hn ([n, D]); routes first.
inline void moe(thread_pool& pool, const model_config& c, const layer_weights& w, int64_t layer, const float* hn,
                int64_t n, float* y, const expert_provider& experts, moe_buffers& buf, int64_t* expert_use) {
    const int64_t D = c.n_embd, F = c.n_ff, k = c.n_expert_used;
    moe_route(pool, c, w, hn, n, c.expert_weights_norm, buf);
    if (experts.will_use) {
        std::vector<int32_t>& used = buf.used;  // the experts asked for below, in that order
        used.assign(size_t(c.n_expert), 0);
        for (int64_t i = 0; i < n * k; ++i) used[size_t(buf.ids[size_t(i)])] = 1;
        size_t u = 0;
        for (int32_t e = 0; e < c.n_expert; ++e)
            if (used[size_t(e)]) used[u++] = e;
        experts.will_use(layer, {used.data(), u});
    }
    for (int32_t e = 0; e < c.n_expert; ++e) {
        int64_t m = 0;  // tokens that chose e, in token order
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < k; ++j)
                if (buf.ids[size_t(i * k + j)] == e) {
                    buf.rows[size_t(m)] = int32_t(i), buf.scale[size_t(m)] = buf.weights[size_t(i * k + j)];
                    std::copy_n(hn + i * D, D, buf.x.data() + m * D);
                    ++m;
                }
        if (m == 0) continue;
        if (expert_use) expert_use[e] += m;
        const expert_slabs s = experts.get(layer, e);
        cpu::matmul(pool, w.up.slab(s.up), buf.x.data(), m, buf.up.data());
        if (c.ffn == ffn_kind::swiglu) {
            cpu::matmul(pool, w.gate.slab(s.gate), buf.x.data(), m, buf.gate.data());
            cpu::kernels().silu_mul(buf.up.data(), buf.gate.data(), m * F);
        } else {
            cpu::kernels().gelu(buf.up.data(), m * F);
        }
        cpu::matmul(pool, w.down.slab(s.down), buf.up.data(), m, buf.out.data());
        for (int64_t r = 0; r < m; ++r) {
            float* yr = y + buf.rows[size_t(r)] * D;
            const float* o = buf.out.data() + r * D;
            for (int64_t j = 0; j < D; ++j) yr[j] += buf.scale[size_t(r)] * o[j];
        }
    }
}

}  // namespace ncas
