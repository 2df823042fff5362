#pragma once
// Which resident expert slab to give up when the arena needs a slot.
//
// Keys are (layer, expert) pairs flattened to layer·E + expert. The policy keeps
// per-key state that outlives eviction (a frequency must survive the slab
// leaving memory, or "hot" could never be learned under a small budget).
//
//   lru       evict the slab whose last use is oldest.
//   lfu_aged  evict the slab used least often, counts halved every `age_every`
//             uses so yesterday's favourites fade; ties go to the older last use.
//             Hot experts stay pinned in effect, and the cyclic layer order
//             (every layer once per token) no longer defeats the cache the way
//             it defeats LRU when the budget is below one token's working set.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ncas/error.hpp"

namespace ncas {

enum class eviction_policy { lru, lfu_aged };

constexpr std::string_view policy_name(eviction_policy p) { return p == eviction_policy::lru ? "lru" : "lfu-aged"; }

inline eviction_policy parse_eviction_policy(std::string_view s) {
    if (s == "lru") return eviction_policy::lru;
    if (s == "lfu-aged" || s == "lfu_aged" || s == "lfu") return eviction_policy::lfu_aged;
    throw error("unknown eviction policy '" + std::string(s) + "' (expected lru or lfu-aged)");
}

class expert_policy {
public:
    // age_every: uses between two halvings of every count (lfu_aged); 0 picks 4·n_keys.
    expert_policy(eviction_policy kind, int64_t n_keys, int64_t age_every = 0)
        : kind_(kind), age_every_(age_every > 0 ? age_every : 4 * n_keys), last_use_(size_t(n_keys)),
          count_(size_t(n_keys)) {}

    eviction_policy kind() const { return kind_; }

    // A demand use of key (hit or miss).
    void use(int64_t key) {
        last_use_[size_t(key)] = ++tick_;
        ++count_[size_t(key)];
        if (kind_ == eviction_policy::lfu_aged && ++since_ageing_ >= age_every_) {
            for (uint32_t& c : count_) c /= 2;
            since_ageing_ = 0;
        }
    }
    // A slab that arrived by prefetch: recent (so LRU keeps it until used), not more frequent.
    void prefetched(int64_t key) { last_use_[size_t(key)] = ++tick_; }

    // True when a should be evicted before b.
    bool evict_before(int64_t a, int64_t b) const {
        const size_t i = size_t(a), j = size_t(b);
        if (kind_ == eviction_policy::lfu_aged && count_[i] != count_[j]) return count_[i] < count_[j];
        return last_use_[i] < last_use_[j];
    }

    uint32_t count(int64_t key) const { return count_[size_t(key)]; }

private:
    eviction_policy kind_;
    int64_t age_every_;
    uint64_t tick_ = 0;
    int64_t since_ageing_ = 0;
    std::vector<uint64_t> last_use_;  // [keys] tick of the last use
    std::vector<uint32_t> count_;     // [keys] uses, halved every age_every_ uses
};

}  // namespace ncas
