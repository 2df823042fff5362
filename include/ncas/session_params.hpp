#pragma once
// What a session of any backend is configured with, and the expert arena those
// parameters ask for. The CPU session (session.hpp) and the Vulkan session
// (vk/session.hpp) both take these.
#include <algorithm>
#include <memory>
#include <string>

#include "ncas/cpu/thread_pool.hpp"
#include "ncas/memory/expert_arena.hpp"
#include "ncas/model/model.hpp"

namespace ncas {

// The fields marked CPU are the CPU backend's: the Vulkan session ignores them
// (and refuses direct I/O, which its staging reads cannot do).
struct session_params {
    int64_t n_ctx = 0;                       // 0: the model's context length
    int n_threads = 0;                       // CPU: compute threads; 0: all hardware threads
    int64_t n_batch = 64;                    // tokens per forward pass during prefill
    weight_type kv_type = weight_type::f32;  // f32, f16, q8_0 or q4_0 (Vulkan: f32 or f16)
    // Expert streaming: bytes of expert slabs held in memory (an expert_arena; on
    // Vulkan, device slots); 0 uses the model's resident experts. Required for a
    // model loaded with stream_experts.
    int64_t expert_budget = 0;
    eviction_policy expert_policy = eviction_policy::lfu_distance;
    bool expert_prefetch = true;    // CPU: guess the next layer's experts and read them in the background
    bool expert_direct_io = false;  // CPU: O_DIRECT slab reads (cold: no page cache)
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

}  // namespace ncas
