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
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ncas/cpu/forward.hpp"
#include "ncas/cpu/kv_cache.hpp"
#include "ncas/cpu/thread_pool.hpp"
#include "ncas/session_base.hpp"
#include "ncas/session_params.hpp"

namespace ncas {

class session : public session_base<session, session_params> {
public:
    explicit session(const model_core& m, session_params p = {})
        : session_base(m, with_threads(p), std::numeric_limits<int64_t>::max()), pool_(p_.n_threads), cache_(m.config(), p_.n_ctx, p_.kv_type),
          arena_(make_expert_arena(m, p_, {}, &pool_)),
          forward_(m.config(), m.weights(), p_.n_batch, p_.n_ctx, pool_.size(), expert_source(m, arena_.get()),
                   arena_ && p_.expert_prefetch ? expert_prefetch([a = arena_.get()](int64_t l, std::span<const int32_t> e) {
                       a->prefetch(l, e);
                   }) : expert_prefetch()) {}

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

    // Empties the cache, lets fill() write it (a saved state: ncas/state.hpp), and then holds n_past tokens.
    void restore(int64_t n_past, const std::function<void(kv_cache&)>& fill) {
        rewind(0);
        if (n_past < 0 || n_past > n_ctx())
            throw error("restore: " + std::to_string(n_past) + " tokens do not fit in the context of " + std::to_string(n_ctx()));
        try {
            fill(cache_);
        } catch (...) {
            cache_.truncate(0);
            throw;
        }
        set_n_past(n_past);
    }

private:
    friend session_base;
    void run_batch(std::span<const int32_t> tokens, bool all_logits, float* out) {
        forward_.forward(pool_, tokens, int32_t(n_past()), cache_, out, all_logits);
    }
    void truncate(int64_t n_past) { cache_.truncate(int32_t(n_past)); }

    static session_params with_threads(session_params p) {
        if (p.n_threads < 0) throw error("thread count must not be negative");
        if (p.n_threads == 0) p.n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
        return p;
    }

    static expert_provider expert_source(const model_core& m, expert_arena* a) {
        if (a) return a->provider();
        return {[&w = m.weights()](int64_t l, int32_t e) { return resident_expert(w.layers[size_t(l)], e); }};
    }

    thread_pool pool_;
    kv_cache cache_;
    std::unique_ptr<expert_arena> arena_;  // expert streaming; null: resident experts
    cpu::transformer forward_;
};

}  // namespace ncas
