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

#include "ncas/cpu/thread_pool.hpp"
#include "ncas/memory/expert_arena.hpp"
#include "ncas/model/model.hpp"
#include "ncas/model/transformer.hpp"
#include "ncas/session_base.hpp"

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

// The expert arena a session's parameters ask for (both backends); null without a
// budget. The Vulkan backend passes a loader: its slots are on the device.
inline std::unique_ptr<expert_arena> make_expert_arena(const model_core& m, const session_params& p,
                                                       expert_arena::slot_loader loader = {},
                                                       thread_pool* pool = nullptr) {
    if (p.expert_budget < 0) throw error("expert budget must not be negative");
    if (p.expert_budget == 0) {
        if (m.streams_experts())
            throw error(m.path() + ": loaded with streamed experts: set an expert budget (at least " +
                        std::to_string(expert_arena::min_budget(m, p.expert_direct_io)) + " bytes)");
        return nullptr;
    }
    return std::make_unique<expert_arena>(m,
                                          expert_arena_options{.budget = p.expert_budget,
                                                               .policy = p.expert_policy,
                                                               .prefetch = p.expert_prefetch,
                                                               .direct_io = p.expert_direct_io,
                                                               .pool = pool},
                                          std::move(loader));
}

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
    transformer forward_;
};

}  // namespace ncas
