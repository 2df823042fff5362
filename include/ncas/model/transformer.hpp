#pragma once
// The forward pass (docs/spec.md §1) over a batch of consecutive tokens, layer by layer:
//
//   x = token_embd[token]                                   [T, D]
//   per layer: MoD decision -> routed tokens R              (all tokens without a router)
//              h = x_R + attention(RMSNorm(x_R))            [|R|, D]
//              y = h + moe(RMSNorm(h))
//              x_R = x_R + s·(y − x_R)                       (s = 1 without a router)
//   logits = output · RMSNorm(x)                            [T or 1, V]
#include <span>
#include <vector>

#include "ncas/model/attention.hpp"
#include "ncas/model/moe.hpp"

namespace ncas {

// What one run of the model did: per-layer MoD and expert counts, for stats and tests.
struct run_stats {
    std::vector<int64_t> tokens_in;    // [L] tokens offered to each layer
    std::vector<int64_t> tokens_kept;  // [L] tokens the layer processed (routed by MoD)
    std::vector<int64_t> expert_use;   // [L, E] tokens per expert
    explicit run_stats(const model_dims& m = {})
        : tokens_in(size_t(m.n_layer)), tokens_kept(size_t(m.n_layer)), expert_use(size_t(m.n_layer * m.n_expert)) {}
};

// Told which experts of a layer the next MoE will probably use (expert streaming
// starts reading them while the current layer computes).
using expert_prefetch = std::function<void(int64_t layer, std::span<const int32_t> experts)>;

class transformer {
public:
    // Buffers for batches of up to `batch` tokens and a cache of `n_ctx` positions.
    transformer(const model_config& c, const model_weights& w, int64_t batch, int64_t n_ctx, int n_threads,
                expert_provider experts, expert_prefetch prefetch = {})
        : c_(c), w_(w), batch_(batch), experts_(std::move(experts)), prefetch_(std::move(prefetch)),
          rope_(n_ctx, c.head_k, c.rope_theta),
          attn_(c, batch, n_ctx, n_threads), moe_(c, batch), stats_(c),
          x_(size_t(batch * c.n_embd)), xr_(x_.size()), xn_(x_.size()), h_(x_.size()),
          lambda_t_(size_t(batch)), pos_(size_t(batch)), routed_(size_t(batch)), s_(size_t(batch)) {
        if (prefetch_) guess_.resize(x_.size());
    }

    int64_t batch() const { return batch_; }
    const run_stats& stats() const { return stats_; }
    void reset_stats() { stats_ = run_stats(c_); }

    // Runs tokens[0..T) at positions pos0.. (T <= batch), appending to the cache.
    // Writes logits of every position ([T, V]) when all_logits, else of the last ([V]).
    void forward(thread_pool& pool, std::span<const int32_t> tokens, int32_t pos0, kv_cache& cache, float* logits,
                 bool all_logits) {
        const int64_t T = int64_t(tokens.size()), D = c_.n_embd;
        for (int64_t t = 0; t < T; ++t)
            dequantize_row(w_.token_embd.type, w_.token_embd.row(tokens[size_t(t)]), x_.data() + t * D, D);

        for (int64_t l = 0; l < c_.n_layer; ++l) layer(pool, l, T, pos0, cache);

        const int64_t first = all_logits ? 0 : T - 1;
        for (int64_t t = first; t < T; ++t)
            cpu::kernels().rms_norm(x_.data() + t * D, w_.output_norm.data(), xn_.data() + (t - first) * D, D, c_.norm_eps);
        cpu::matmul(pool, w_.output, xn_.data(), T - first, logits);
    }

private:
    void layer(thread_pool& pool, int64_t l, int64_t T, int32_t pos0, kv_cache& cache) {
        const layer_weights& w = w_.layers[size_t(l)];
        const int64_t D = c_.n_embd;
        const bool has_router = !w.mod_router.empty();

        // Mixture-of-Depths: a token enters the layer when its router score is above the threshold.
        int64_t n = 0;
        for (int64_t t = 0; t < T; ++t) {
            float s = 1.0f;
            if (has_router) {
                const float r = cpu::dot(w.mod_router.data(), x_.data() + t * D, D);
                if (r <= c_.mod_threshold) continue;
                s = c_.scale == mod_scale::sigmoid ? cpu::sigmoid(r) : c_.scale == mod_scale::raw ? r : 1.0f;
            }
            routed_[size_t(n)] = int32_t(t), s_[size_t(n)] = s, pos_[size_t(n)] = pos0 + int32_t(t);
            std::copy_n(x_.data() + t * D, D, xr_.data() + n * D);
            ++n;
        }
        stats_.tokens_in[size_t(l)] += T;
        stats_.tokens_kept[size_t(l)] += n;
        if (n == 0) return;

        // h = x + attention(RMSNorm(x))
        for (int64_t i = 0; i < n; ++i)
            cpu::kernels().rms_norm(xr_.data() + i * D, w.attn_norm.data(), xn_.data() + i * D, D, c_.norm_eps);
        for (int64_t i = 0; i < n; ++i) lambda_t_[size_t(i)] = w.lambda;
        if (!w.lambda_exp.empty()) {  // expert-conditional λ: the layer's gate on the attention input
            moe_route(pool, c_, w, xn_.data(), n, true, moe_);
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < c_.n_expert_used; ++j) {
                    const size_t at = size_t(i * c_.n_expert_used + j);
                    lambda_t_[size_t(i)] += moe_.weights[at] * w.lambda_exp[size_t(moe_.ids[at])];
                }
        }
        attention(pool, c_, w, l, xn_.data(), pos_.data(), lambda_t_.data(), n, cache, rope_, attn_);
        cpu::matmul(pool, w.wo, attn_.o.data(), n, h_.data());
        for (int64_t i = 0; i < n * D; ++i) h_[size_t(i)] += xr_[size_t(i)];
        if (prefetch_ && l + 1 < c_.n_layer) predict_experts(pool, l + 1, n);

        // y = h + moe(RMSNorm(h))
        for (int64_t i = 0; i < n; ++i)
            cpu::kernels().rms_norm(h_.data() + i * D, w.ffn_norm.data(), xn_.data() + i * D, D, c_.norm_eps);
        moe(pool, c_, w, l, xn_.data(), n, h_.data(), experts_, moe_, stats_.expert_use.data() + l * c_.n_expert);

        // x = x + s·(y − x); without a router s = 1 and x = y exactly.
        for (int64_t i = 0; i < n; ++i) {
            float* x = x_.data() + routed_[size_t(i)] * D;
            const float* y = h_.data() + i * D;
            if (!has_router || c_.scale == mod_scale::none) std::copy_n(y, D, x);
            else for (int64_t j = 0; j < D; ++j) x[j] += s_[size_t(i)] * (y[j] - x[j]);
        }
    }

    // Guesses layer `next`'s experts from the n hidden rows h_ (before this layer's MoE,
    // so the reads overlap its compute): that layer's MoD router and gate applied to
    // RMSNorm(h; ffn_norm_next). Writes only moe_'s routing scratch, which moe() rewrites.
    void predict_experts(thread_pool& pool, int64_t next, int64_t n) {
        const layer_weights& w = w_.layers[size_t(next)];
        const int64_t D = c_.n_embd;
        int64_t m = 0;
        for (int64_t i = 0; i < n; ++i) {
            const float* h = h_.data() + i * D;
            if (!w.mod_router.empty() && cpu::dot(w.mod_router.data(), h, D) <= c_.mod_threshold) continue;
            cpu::kernels().rms_norm(h, w.ffn_norm.data(), guess_.data() + m++ * D, D, c_.norm_eps);
        }
        if (m == 0) return;
        moe_route(pool, c_, w, guess_.data(), m, true, moe_);
        std::vector<bool> used(size_t(c_.n_expert));
        guess_ids_.clear();
        for (int64_t i = 0; i < m * c_.n_expert_used; ++i)
            if (const int32_t e = moe_.ids[size_t(i)]; !used[size_t(e)]) used[size_t(e)] = true, guess_ids_.push_back(e);
        prefetch_(next, guess_ids_);
    }

    const model_config& c_;
    const model_weights& w_;
    int64_t batch_;
    expert_provider experts_;
    expert_prefetch prefetch_;
    std::vector<float> guess_;        // [B, D] normed rows for predict_experts (allocated with a prefetch hook)
    std::vector<int32_t> guess_ids_;  // experts guessed for the next layer
    rope_table rope_;
    attention_buffers attn_;
    moe_buffers moe_;
    run_stats stats_;
    std::vector<float> x_, xr_, xn_, h_;  // [B, D] residual, routed residual, normed, hidden
    std::vector<float> lambda_t_;         // [B]
    std::vector<int32_t> pos_, routed_;   // [B]
    std::vector<float> s_;                // [B]
};

}  // namespace ncas
