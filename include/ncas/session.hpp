#pragma once
// The API a host application uses: a session holds one conversation's cache
// and runs prefill (a prompt, in batches) and decode (one token at a time).
//
//   auto m = ncas::model::load("model.gguf");
//   ncas::session s(m, {.n_threads = 2});
//   std::span<const float> logits = s.prefill(prompt_ids);   // [V] of the last token
//   logits = s.decode(next_id);                               // [V]
//
// Experts streamed through a byte budget (model loaded with stream_experts):
//   auto m = ncas::model::load("model.gguf", {.stream_experts = true});
//   ncas::session s(m, {.expert_budget = 2ll << 30});          // 2 GiB of expert slabs
//   std::puts(s.expert_stats()->report().c_str());
#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ncas/cpu/thread_pool.hpp"
#include "ncas/memory/expert_arena.hpp"
#include "ncas/model/model.hpp"
#include "ncas/model/transformer.hpp"

namespace ncas {

struct session_params {
    int64_t n_ctx = 0;                       // 0: the model's context length
    int n_threads = 0;                       // 0: all hardware threads
    int64_t n_batch = 64;                    // tokens per forward pass during prefill
    weight_type kv_type = weight_type::f32;  // f32 or f16
    // Expert streaming: bytes of expert slabs held in memory (an expert_arena);
    // 0 uses the model's resident experts. Required for a model loaded with stream_experts.
    int64_t expert_budget = 0;
    eviction_policy expert_policy = eviction_policy::lfu_distance;
    bool expert_prefetch = true;   // guess the next layer's experts and read them in the background
    bool expert_direct_io = false; // O_DIRECT slab reads (cold: no page cache)
};

class session {
public:
    explicit session(const model_core& m, session_params p = {})
        : m_(m), p_(resolve(m, p)), pool_(p_.n_threads), cache_(m.config(), p_.n_ctx, p_.kv_type),
          arena_(make_arena(m, p_)),
          forward_(m.config(), m.weights(), p_.n_batch, p_.n_ctx, pool_.size(), expert_source(m, arena_.get()),
                   arena_ && p_.expert_prefetch ? expert_prefetch([a = arena_.get()](int64_t l, std::span<const int32_t> e) {
                       a->prefetch(l, e);
                   }) : expert_prefetch()),
          logits_(size_t(m.config().n_vocab)) {}

    const model_core& model() const { return m_; }
    const session_params& params() const { return p_; }
    int64_t n_ctx() const { return p_.n_ctx; }
    int64_t n_past() const { return n_past_; }
    int64_t n_vocab() const { return m_.config().n_vocab; }
    const kv_cache& cache() const { return cache_; }
    const run_stats& stats() const { return forward_.stats(); }
    void reset_stats() {
        forward_.reset_stats();
        if (arena_) arena_->reset_stats();
    }
    // What expert streaming did (hit rate, bytes read, prefetch accuracy, I/O stalls); none without a budget.
    std::optional<ncas::expert_stats> expert_stats() const {
        return arena_ ? std::optional(arena_->stats()) : std::nullopt;
    }
    const expert_arena* arena() const { return arena_.get(); }

    // Runs the tokens after the cached ones; returns the logits of the last.
    std::span<const float> prefill(std::span<const int32_t> tokens) {
        check(tokens);
        if (tokens.empty()) throw error("prefill: no tokens given");
        for (size_t i = 0; i < tokens.size(); i += size_t(p_.n_batch)) {
            const auto part = tokens.subspan(i, std::min(tokens.size() - i, size_t(p_.n_batch)));
            forward_.forward(pool_, part, int32_t(n_past_), cache_, logits_.data(), false);
            n_past_ += int64_t(part.size());
        }
        return logits_;
    }

    std::span<const float> decode(int32_t token) { return prefill(std::span<const int32_t>(&token, 1)); }

    // Runs the tokens and hands the logits of every position to fn(index, logits[V]).
    // batched = false runs them one at a time (for comparing the two paths).
    void evaluate(std::span<const int32_t> tokens, const std::function<void(int64_t, std::span<const float>)>& fn,
                  bool batched = true) {
        check(tokens);
        const int64_t V = n_vocab(), step = batched ? p_.n_batch : 1;
        if (all_logits_.empty()) all_logits_.resize(size_t(p_.n_batch * V));
        for (size_t i = 0; i < tokens.size(); i += size_t(step)) {
            const auto part = tokens.subspan(i, std::min(tokens.size() - i, size_t(step)));
            forward_.forward(pool_, part, int32_t(n_past_), cache_, all_logits_.data(), true);
            n_past_ += int64_t(part.size());
            for (size_t t = 0; t < part.size(); ++t)
                fn(int64_t(i + t), std::span<const float>(all_logits_).subspan(t * size_t(V), size_t(V)));
        }
    }

    // Forgets every token from position n_past on (keeps the first n_past).
    void rewind(int64_t n_past) {
        if (n_past < 0 || n_past > n_past_)
            throw error("rewind to " + std::to_string(n_past) + ": the session holds " + std::to_string(n_past_) + " tokens");
        cache_.truncate(int32_t(n_past));
        n_past_ = n_past;
    }
    void reset() { rewind(0); }

private:
    static session_params resolve(const model_core& m, session_params p) {
        const int64_t model_ctx = m.config().n_ctx;
        if (p.n_ctx == 0) p.n_ctx = model_ctx;
        if (p.n_ctx < 1 || p.n_ctx > model_ctx)
            throw error("context of " + std::to_string(p.n_ctx) + " tokens: the model supports 1 to " + std::to_string(model_ctx));
        if (p.n_batch < 1) throw error("batch size must be at least 1, not " + std::to_string(p.n_batch));
        p.n_batch = std::min(p.n_batch, p.n_ctx);
        if (p.n_threads < 0) throw error("thread count must not be negative");
        if (p.n_threads == 0) p.n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
        return p;
    }

    static std::unique_ptr<expert_arena> make_arena(const model_core& m, const session_params& p) {
        if (p.expert_budget < 0) throw error("expert budget must not be negative");
        if (p.expert_budget == 0) {
            if (m.streams_experts())
                throw error(m.path() + ": loaded with streamed experts: set an expert budget (at least " +
                            std::to_string(expert_arena::min_budget(m, p.expert_direct_io)) + " bytes)");
            return nullptr;
        }
        return std::make_unique<expert_arena>(m, expert_arena_options{.budget = p.expert_budget,
                                                                      .policy = p.expert_policy,
                                                                      .prefetch = p.expert_prefetch,
                                                                      .direct_io = p.expert_direct_io});
    }
    static expert_provider expert_source(const model_core& m, expert_arena* a) {
        if (a) return a->provider();
        return [&w = m.weights()](int64_t l, int32_t e) { return resident_expert(w.layers[size_t(l)], e); };
    }

    void check(std::span<const int32_t> tokens) const {
        if (int64_t(tokens.size()) > p_.n_ctx - n_past_)
            throw error(std::to_string(tokens.size()) + " tokens do not fit in the context: " + std::to_string(n_past_) +
                        " of " + std::to_string(p_.n_ctx) + " positions are used");
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] < 0 || tokens[i] >= n_vocab())
                throw error("token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                            " is outside the vocabulary of " + std::to_string(n_vocab()));
    }

    const model_core& m_;
    session_params p_;
    thread_pool pool_;
    kv_cache cache_;
    std::unique_ptr<expert_arena> arena_;  // expert streaming; null: resident experts
    transformer forward_;
    std::vector<float> logits_;      // [V]
    std::vector<float> all_logits_;  // [n_batch, V], allocated on first evaluate()
    int64_t n_past_ = 0;
};

}  // namespace ncas
