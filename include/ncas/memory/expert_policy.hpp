#pragma once
// Which resident expert slab to give up when the arena needs a slot.
//
// Keys are (layer, expert) pairs flattened to layer·E + expert. The policy keeps
// per-key state that outlives eviction (a frequency must survive the slab
// leaving memory, or "hot" could never be learned under a small budget).
//
//   lru           evict the slab whose last use is oldest.
//   lfu_aged      evict the slab used least often, counts halved every `age_every`
//                 uses so yesterday's favourites fade; ties go to the older last use.
//                 Hot experts stay pinned in effect, and the cyclic layer order
//                 (every layer once per token) no longer defeats the cache the way
//                 it defeats LRU when the budget is below one token's working set.
//   lfu_distance  the aged count divided by how many layers away the slab's layer
//                 is from the one computing now (layers run in a cycle, so the
//                 layer just finished is the farthest: Belady's choice for a
//                 cyclic trace, weighted by how likely the expert is to be used).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ncas/error.hpp"

namespace ncas {

enum class eviction_policy { lru, lfu_aged, lfu_distance };

constexpr std::string_view policy_name(eviction_policy p) {
    return p == eviction_policy::lru ? "lru" : p == eviction_policy::lfu_aged ? "lfu-aged" : "lfu-distance";
}

inline eviction_policy parse_eviction_policy(std::string_view s) {
    for (eviction_policy p : {eviction_policy::lru, eviction_policy::lfu_aged, eviction_policy::lfu_distance})
        if (s == policy_name(p)) return p;
    throw error("unknown eviction policy '" + std::string(s) + "' (expected lru, lfu-aged or lfu-distance)");
}

class expert_policy {
public:
    // Keys layer·n_expert + expert; age_every: uses between two halvings of every count; 0 picks 4·keys.
    expert_policy(eviction_policy kind, int64_t n_layer, int64_t n_expert, int64_t age_every = 0)
        : kind_(kind), n_layer_(n_layer), n_expert_(n_expert),
          age_every_(age_every > 0 ? age_every : 4 * n_layer * n_expert), last_use_(size_t(n_layer * n_expert)),
          count_(size_t(n_layer * n_expert)) {}

    eviction_policy kind() const { return kind_; }

    // A demand use of key (hit or miss).
    void use(int64_t key) {
        last_use_[size_t(key)] = ++tick_;
        ++count_[size_t(key)];
        if (kind_ != eviction_policy::lru && ++since_ageing_ >= age_every_) {
            for (uint32_t& c : count_) c /= 2;
            since_ageing_ = 0;
        }
    }
    // A slab that arrived by prefetch: recent (so LRU keeps it until used), not more frequent.
    void prefetched(int64_t key) { last_use_[size_t(key)] = ++tick_; }

    // True when a should be evicted before b while layer `now` computes.
    bool evict_before(int64_t a, int64_t b, int64_t now) const {
        const size_t i = size_t(a), j = size_t(b);
        if (kind_ == eviction_policy::lfu_aged && count_[i] != count_[j]) return count_[i] < count_[j];
        if (kind_ == eviction_policy::lfu_distance) {
            // count_a / dist_a < count_b / dist_b, with the count + 1 so unused slabs still rank by distance
            const uint64_t wa = uint64_t(count_[i] + 1) * distance(b, now), wb = uint64_t(count_[j] + 1) * distance(a, now);
            if (wa != wb) return wa < wb;
        }
        return last_use_[i] < last_use_[j];
    }

    uint32_t count(int64_t key) const { return count_[size_t(key)]; }

private:
    // Layers from `now` until key's layer runs again: 1 for the next layer, n_layer for `now` itself.
    uint64_t distance(int64_t key, int64_t now) const {
        return uint64_t(((key / n_expert_ - now - 1) % n_layer_ + n_layer_) % n_layer_ + 1);
    }

    eviction_policy kind_;
    int64_t n_layer_, n_expert_;
    int64_t age_every_;
    uint64_t tick_ = 0;
    int64_t since_ageing_ = 0;
    std::vector<uint64_t> last_use_;  // [keys] tick of the last use
    std::vector<uint32_t> count_;     // [keys] uses, halved every age_every_ uses
};

}  // namespace ncas
