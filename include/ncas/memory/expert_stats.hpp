#pragma once
// What the expert arena did, per layer: how often a needed slab was already in
// memory, what was read, how good the prefetch guesses were and how long the
// compute thread waited for I/O. `generate --stats` and the benchmark print it.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ncas {

struct expert_layer_stats {
    int64_t requests = 0;           // slabs the MoE asked for
    int64_t hits = 0;               // ... already resident or being read by a prefetch
    int64_t bytes_read = 0;         // by demand misses and prefetches
    int64_t prefetch_issued = 0;    // slabs a prefetch asked to load (not resident then)
    int64_t prefetch_used = 0;      // ... that a request then asked for before eviction
    int64_t prefetch_dropped = 0;   // guesses with no free slot to load into
    int64_t read_ahead = 0;         // misses of a routed layer read on the I/O thread while an earlier expert ran
    double stall_seconds = 0;       // compute thread waiting for slab reads

    int64_t misses() const { return requests - hits; }
    expert_layer_stats& operator+=(const expert_layer_stats& o) {
        requests += o.requests, hits += o.hits, bytes_read += o.bytes_read;
        prefetch_issued += o.prefetch_issued, prefetch_used += o.prefetch_used, prefetch_dropped += o.prefetch_dropped;
        read_ahead += o.read_ahead;
        stall_seconds += o.stall_seconds;
        return *this;
    }
};

struct expert_stats {
    int64_t budget_bytes = 0, slot_bytes = 0, n_slots = 0;
    std::string policy;
    bool prefetch = false, direct_io = false;
    std::vector<expert_layer_stats> layers;  // [L]

    expert_layer_stats total() const {
        expert_layer_stats t;
        for (const auto& l : layers) t += l;
        return t;
    }
    static double ratio(int64_t a, int64_t b) { return b ? double(a) / double(b) : 0.0; }
    double hit_rate() const { const auto t = total(); return ratio(t.hits, t.requests); }
    double prefetch_accuracy() const { const auto t = total(); return ratio(t.prefetch_used, t.prefetch_issued); }

    // A table: one line per layer and a total line.
    std::string report() const {
        std::string out;
        char line[256];
        std::snprintf(line, sizeof line, "experts: %lld slots of %.2f MiB (budget %.2f MiB), policy %s, prefetch %s, %s reads\n",
                      (long long)n_slots, double(slot_bytes) / 1048576.0, double(budget_bytes) / 1048576.0,
                      policy.c_str(), prefetch ? "on" : "off", direct_io ? "O_DIRECT" : "buffered");
        out += line;
        out += "layer  requests  hit-rate  read-MiB  prefetch  pf-used  pf-acc  dropped  ahead  stall-ms\n";
        auto row = [&](const char* name, const expert_layer_stats& s) {
            std::snprintf(line, sizeof line,
                          "%5s  %8lld  %7.1f%%  %8.1f  %8lld  %7lld  %5.1f%%  %7lld  %5lld  %8.2f\n", name,
                          (long long)s.requests, 100 * ratio(s.hits, s.requests), double(s.bytes_read) / 1048576.0,
                          (long long)s.prefetch_issued, (long long)s.prefetch_used,
                          100 * ratio(s.prefetch_used, s.prefetch_issued), (long long)s.prefetch_dropped,
                          (long long)s.read_ahead, 1e3 * s.stall_seconds);
            out += line;
        };
        for (size_t l = 0; l < layers.size(); ++l) row(std::to_string(l).c_str(), layers[l]);
        row("all", total());
        return out;
    }
};

}  // namespace ncas
