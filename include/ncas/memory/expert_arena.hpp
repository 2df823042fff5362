#pragma once
// Expert weights streamed from the file through a fixed byte budget.
//
// One allocation of `budget` bytes is cut into equal slots; a slot holds one
// expert of one layer: its up [+ gate] and down slabs, each read with pread
// (optionally O_DIRECT) from the GGUF file, never through a mapping, so the
// resident expert memory is the arena and nothing else.
//
//   slot layout   [ up | gate (swiglu) | down ]   each part rounded up to 4 KiB,
//                 plus 4 KiB when O_DIRECT reads a block-aligned range around it
//   slot states   empty -> queued (prefetch or read-ahead posted) -> loading -> ready
//                 empty -> loading (a miss reads on the caller's thread) -> ready
//
// acquire(layer, e) is the MoE's expert_provider: a hit returns at once; a miss
// reads its own slab on the calling thread (it never waits behind queued
// prefetches: a queued prefetch of the wanted slab is taken over); a slab the
// I/O thread is reading is waited for. The slabs returned stay valid until the
// next acquire() — moe() finishes an expert's matmuls before asking for the next.
//
// will_use(layer, experts) is told, once a layer is routed, which experts it
// will acquire: the missing ones after the first are read on the I/O thread
// while the first is read or computed (with O_DIRECT or prefetch on).
//
// prefetch(layer, experts) guesses the next layer's experts (the transformer
// applies that layer's gate to the current hidden state) and posts their reads
// to a background thread while the current layer computes. A prefetch never
// evicts a slab of the current layer or of the layer it prefetches for, nor one
// the policy ranks above the guessed expert.
//
// Which slab a miss evicts: first slabs of other layers, then those of the next
// layer (the prefetched one; layer 0 after the last), then the current layer's;
// within a group the policy (expert_policy.hpp) decides. Slabs being read are
// never evicted.
//
// Slots elsewhere (the Vulkan backend's device buffer): constructed with a
// slot_loader, the arena allocates no memory and keeps only the bookkeeping
// (which expert each slot holds, the policy, the statistics). acquire_slot()
// returns a slot index; a miss calls loader(slot, layer, e) on the caller's
// thread, which fills the slot (e.g. read_expert() into a staging buffer, then
// a copy). There is no prefetch: the loader runs where the caller records work.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ncas/cpu/thread_pool.hpp"
#include "ncas/memory/aligned_buffer.hpp"
#include "ncas/memory/expert_policy.hpp"
#include "ncas/memory/expert_stats.hpp"
#include "ncas/memory/io_thread.hpp"
#include "ncas/memory/mapped_file.hpp"
#include "ncas/memory/expert_source.hpp"

namespace ncas {

struct expert_arena_options {
    int64_t budget = 0;                                 // bytes of expert weights held in memory
    eviction_policy policy = eviction_policy::lfu_distance;
    bool prefetch = true;                               // prefetch() guesses, will_use() read-ahead
                                                        // (false: demand only; O_DIRECT still reads ahead)
    bool direct_io = false;                             // O_DIRECT reads: bypass the page cache (cold reads)
    int64_t age_every = 0;                              // lfu policies: uses between halvings; 0: 4·(L·E)
    // The compute threads, idle while the caller waits on a miss: a demand read is
    // split across them (copying from the page cache is CPU-bound; two readers
    // halve a miss). Null: the calling thread reads alone.
    thread_pool* pool = nullptr;
};

class expert_arena {
public:
    static constexpr int64_t page = 4096;  // slot alignment, and the O_DIRECT block we read around a slab
    // Fills slot `slot` with expert e of `layer` (slots held outside the arena).
    using slot_loader = std::function<void(int32_t slot, int64_t layer, int32_t e)>;
    // Where an expert's slabs start inside its slot (bytes); -1: the tensor does not exist.
    struct slot_offsets {
        int64_t up = -1, gate = -1, down = -1;
    };

    expert_arena(const expert_layout& m, expert_arena_options o, slot_loader loader = {})
        : o_(with_loader(o, loader)), layout_(m), E_(layout_.n_expert), file_(m.path), loader_(std::move(loader)),
          policy_(o.policy, layout_.n_layer, layout_.n_expert, o.age_every), where_(size_t(layout_.n_layer * layout_.n_expert), -1),
          stats_(size_t(layout_.n_layer)) {
        if (o.direct_io) {
            try {
                direct_ = file_handle(m.path, O_DIRECT);
            } catch (const error& e) {
                throw error(std::string(e.what()) + " (O_DIRECT: the file system may not support direct reads)");
            }
        }
        const std::string& path = m.path;

        slot_bytes_ = slot_bytes(m, o.direct_io);
        const int64_t min = min_budget(m, o.direct_io);
        if (o.budget < min)
            throw error(path + ": expert budget of " + std::to_string(o.budget) + " bytes is too small: one layer's " +
                        std::to_string(layout_.n_expert_used) + " experts need at least " + std::to_string(min) +
                        " bytes (slots of " + std::to_string(slot_bytes_) + " bytes)");
        // No more slots than experts: a budget above the model's expert bytes is not allocated.
        const int64_t n = std::min(o.budget / slot_bytes_, layout_.n_layer * layout_.n_expert);
        capacity_ = n * slot_bytes_;
        slots_.resize(size_t(n));
        if (loader_) return;  // the slots live with the loader
        memory_ = aligned_buffer(size_t(capacity_), size_t(2) << 20);
        memory_.advise_huge_pages();
        for (int64_t i = 0; i < n; ++i) slots_[size_t(i)].mem = memory_.data() + i * slot_bytes_;
        io_ = std::make_unique<io_thread>();
    }
    ~expert_arena() { io_.reset(); }  // the reader stops before the slots go
    expert_arena(const expert_arena&) = delete;
    expert_arena& operator=(const expert_arena&) = delete;

    // Bytes of one slot (one expert of the largest layer, with alignment padding).
    static int64_t slot_bytes(const expert_layout& m, bool direct_io) {
        int64_t most = 0;
        for (const expert_layout::layer& w : m.layers) {
            int64_t b = 0;
            for (const expert_layout::tensor* t : {&w.up, &w.gate, &w.down})
                if (t->bytes) b += part_bytes(t->bytes, direct_io);
            most = std::max(most, b);
        }
        return most;
    }
    // The smallest budget that runs the model: one layer's top-k experts.
    static int64_t min_budget(const expert_layout& m, bool direct_io) {
        return m.n_expert_used * slot_bytes(m, direct_io);
    }
    // Every expert of the model resident: the budget beyond which nothing is gained.
    static int64_t full_budget(const expert_layout& m, bool direct_io) {
        return m.n_layer * m.n_expert * slot_bytes(m, direct_io);
    }

    // A budget as the command line writes it: bytes ("3000000000"), binary units
    // ("512M", "2.5G", "64K"), a share of all expert bytes ("25%"), "min" or "full".
    static int64_t parse_budget(std::string_view s, const expert_layout& m, bool direct_io) {
        const std::string text(s);
        auto bad = [&]() -> int64_t {
            throw error("expert budget '" + text + "': expected bytes, a size like 512M or 2G, a percentage, min or full");
        };
        if (s == "min") return min_budget(m, direct_io);
        if (s == "full") return full_budget(m, direct_io);
        size_t used = 0;
        double v = 0;
        try {
            v = std::stod(text, &used);
        } catch (const std::exception&) {
            return bad();
        }
        const std::string unit = text.substr(used);
        double scale = 1;
        if (unit == "%") scale = double(full_budget(m, direct_io)) / 100;
        else if (unit == "K" || unit == "KiB") scale = 1024.0;
        else if (unit == "M" || unit == "MiB") scale = 1024.0 * 1024;
        else if (unit == "G" || unit == "GiB") scale = 1024.0 * 1024 * 1024;
        else if (!unit.empty()) return bad();
        if (!(v >= 0) || v * scale > 9e18) return bad();
        return int64_t(v * scale);
    }

    int64_t n_slots() const { return int64_t(slots_.size()); }
    int64_t slot_size() const { return slot_bytes_; }
    int64_t capacity_bytes() const { return capacity_; }

    expert_provider provider() {
        return {[this](int64_t layer, int32_t e) { return acquire(layer, e); },
                [this](int64_t layer, std::span<const int32_t> e) { will_use(layer, e); }};
    }

    // The layer is routed: it will acquire `experts`, in this order. The missing
    // ones after the first are read on the I/O thread while the caller reads the
    // first (or computes it, when it is resident), so a miss waits only for what
    // is left of its read. No guess: the reads are wanted. They take no slot from
    // the layer's own experts, and leave one for the first when it is missing.
    // Only where the I/O thread does not take CPU from the compute threads: with
    // O_DIRECT (the device fills the slot), or when background reads are allowed
    // (prefetch on). A page-cache copy on the I/O thread while both cores of a
    // 2-core machine compute measured slower (PI-P at 25%: 9.5-10.6 tok/s with
    // it, 11.9-14.4 without; docs/benchmarks.md).
    void will_use(int64_t layer, std::span<const int32_t> experts) {
        std::lock_guard lock(mu_);
        needed_.clear();
        for (int32_t e : experts) needed_.push_back(layer * E_ + e);
        if (!io_ || !(o_.direct_io || o_.prefetch) || experts.size() < 2) return;
        const bool first_missing = where_[size_t(needed_.front())] < 0;
        for (size_t j = 1; j < needed_.size(); ++j) {
            const int64_t key = needed_[j];
            if (where_[size_t(key)] >= 0) continue;
            const int32_t i = victim(layer, false, true);
            if (i < 0 || (first_missing && spare_slots() < 2)) return;
            assign(i, key, slot_state::queued);
            slots_[size_t(i)].ahead = true;
            ++stats_[size_t(layer)].read_ahead;
            io_->post([this, i, key] { background_load(i, key); });
        }
    }

    // The slabs of expert e of layer `layer`, read from the file when not resident.
    expert_slabs acquire(int64_t layer, int32_t e) {
        const int32_t i = acquire_slot(layer, e);
        const slot_offsets o = offsets(layer, e);
        std::byte* mem = slots_[size_t(i)].mem;  // fixed at construction
        auto at = [&](int64_t off) -> const std::byte* { return off < 0 ? nullptr : mem + off; };
        return {at(o.up), at(o.gate), at(o.down)};
    }

    // The slot holding expert e of `layer` once this returns (loaded on a miss).
    int32_t acquire_slot(int64_t layer, int32_t e) {
        const int64_t key = layer * E_ + e;
        expert_layer_stats& st = stats_[size_t(layer)];
        std::unique_lock lock(mu_);
        std::erase(needed_, key);  // asked for: no longer kept from eviction as announced
        policy_.use(key);
        ++st.requests;
        const auto t0 = clock::now();
        if (int32_t i = where_[size_t(key)]; i >= 0) {
            slot& s = slots_[size_t(i)];
            if (s.prefetched) s.prefetched = false, ++st.prefetch_used;
            if (s.state == slot_state::loading)  // the I/O thread is reading it
                loaded_.wait(lock, [&] { return s.key != key || s.state != slot_state::loading; });
            if (s.key == key && s.state == slot_state::ready) {
                if (!std::exchange(s.ahead, false)) ++st.hits;
                st.stall_seconds += seconds_since(t0);
                return i;
            }
            if (s.key == key && s.state == slot_state::queued) {  // not started: take it over
                if (std::exchange(s.ahead, false)) --st.read_ahead;  // read here after all
                s.state = slot_state::loading;
                return load_here(lock, i, layer, e, t0);
            }
            // Its prefetch failed (the slot was freed): read it ourselves.
        }
        int32_t i = victim(layer, false, true);
        while (i < 0 && (i = victim(layer, false, false)) < 0) loaded_.wait(lock);  // every slot is being read
        assign(i, key, slot_state::loading);
        return load_here(lock, i, layer, e, t0);
    }

    // Starts reading the given experts of `layer` in the background (a guess; acquire() decides).
    void prefetch(int64_t layer, std::span<const int32_t> experts) {
        if (!o_.prefetch) return;
        std::lock_guard lock(mu_);
        // Guesses for other layers than this one and the current are stale: give their slots back.
        for (slot& s : slots_)
            if (s.state == slot_state::queued && s.key / E_ != layer - 1 && s.key / E_ != layer) release(s);
        expert_layer_stats& st = stats_[size_t(layer)];
        for (int32_t e : experts) {
            const int64_t key = layer * E_ + e;
            if (where_[size_t(key)] >= 0) continue;  // resident or on its way
            // A guess may displace only a slab the policy values less than the guessed expert itself
            // (LRU: one not used since the guess was; LFU: one used less often): a wrong guess
            // must not push out the slabs the coming layers need.
            const int32_t i = victim(layer - 1, true);
            const slot* v = i >= 0 ? &slots_[size_t(i)] : nullptr;
            if (!v || (v->state != slot_state::empty && !policy_.evict_before(v->key, key, layer - 1))) {
                ++st.prefetch_dropped;
                continue;
            }
            assign(i, key, slot_state::queued);
            slots_[size_t(i)].prefetched = true;
            policy_.prefetched(key);
            ++st.prefetch_issued;
            io_->post([this, i, key] { background_load(i, key); });
        }
    }

    expert_stats stats() const {
        std::lock_guard lock(mu_);
        expert_stats s;
        s.budget_bytes = o_.budget, s.slot_bytes = slot_bytes_, s.n_slots = n_slots();
        s.policy = std::string(policy_name(o_.policy));
        s.prefetch = o_.prefetch, s.direct_io = o_.direct_io;
        s.layers = stats_;
        return s;
    }
    void reset_stats() {
        std::lock_guard lock(mu_);
        std::fill(stats_.begin(), stats_.end(), expert_layer_stats{});
    }

    // Waits until no background read is queued or running (tests, benchmarks).
    void wait_idle() {
        std::unique_lock lock(mu_);
        loaded_.wait(lock, [&] {
            return std::none_of(slots_.begin(), slots_.end(), [](const slot& s) {
                return s.state == slot_state::queued || s.state == slot_state::loading;
            });
        });
    }

private:
    using clock = std::chrono::steady_clock;
    enum class slot_state { empty, queued, loading, ready };

    struct slot {
        std::byte* mem = nullptr;
        int64_t key = -1;
        slot_state state = slot_state::empty;
        bool prefetched = false;  // loaded by a guess and not asked for since
        bool ahead = false;       // read ahead by will_use: a miss, though acquire() finds it in a slot
    };
    using part = expert_layout::tensor;
    using layer_parts = expert_layout::layer;

    static int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }
    static int64_t part_bytes(int64_t slab, bool direct_io) { return round_up(slab, page) + (direct_io ? page : 0); }
    static double seconds_since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }


    void assign(int32_t i, int64_t key, slot_state state) {
        slot& s = slots_[size_t(i)];
        if (s.key >= 0) release(s);
        s.key = key, s.state = state, s.prefetched = false, s.ahead = false;
        where_[size_t(key)] = i;
    }
    void release(slot& s) {
        where_[size_t(s.key)] = -1;
        s.key = -1, s.state = slot_state::empty, s.prefetched = false, s.ahead = false;
    }

    // The slot to load into while `layer` computes, or -1. Evicted first: other
    // layers' slabs, then the next layer's (needed soon), then this layer's. A
    // prefetch (for layer + 1) takes only empty slots and other layers' slabs.
    // keep_needed: nor the experts the layer announced (will_use) and has not asked for yet.
    int32_t victim(int64_t layer, bool for_prefetch, bool keep_needed = true) const {
        int32_t best = -1;
        int best_group = 0;
        for (int32_t i = 0; i < int32_t(slots_.size()); ++i) {
            const slot& s = slots_[size_t(i)];
            if (s.state == slot_state::empty) return i;
            if (s.state == slot_state::loading) continue;
            if (keep_needed && announced(s.key)) continue;
            const int64_t l = s.key / E_;
            const int group = l == layer ? 2 : l == (layer + 1) % layout_.n_layer ? 1 : 0;  // the last layer's next is 0
            if (for_prefetch && (group > 0 || s.state == slot_state::queued)) continue;
            if (best < 0 || group < best_group ||
                (group == best_group && policy_.evict_before(s.key, slots_[size_t(best)].key, layer)))
                best = i, best_group = group;
        }
        return best;
    }
    // Whether will_use announced `key` and acquire() has not asked for it yet.
    bool announced(int64_t key) const { return std::find(needed_.begin(), needed_.end(), key) != needed_.end(); }
    // Slots a miss could load into (empty, or holding no announced expert).
    int64_t spare_slots() const {
        return std::count_if(slots_.begin(), slots_.end(), [&](const slot& s) {
            return s.state == slot_state::empty || (s.state != slot_state::loading && !announced(s.key));
        });
    }

public:
    // Where expert e of `layer` has its slabs inside a slot (O_DIRECT: shifted by
    // the slab's offset within its first file block).
    slot_offsets offsets(int64_t layer, int32_t e) const {
        const layer_parts& p = layout_.layers[size_t(layer)];
        int64_t at = 0;
        auto next = [&](const part& t) -> int64_t {
            if (!t.bytes) return -1;
            const int64_t slab = at + (o_.direct_io ? int64_t((t.offset + uint64_t(e * t.bytes)) % page) : 0);
            at += part_bytes(t.bytes, o_.direct_io);
            return slab;
        };
        const int64_t up = next(p.up), gate = next(p.gate), down = next(p.down);
        return {up, gate, down};
    }

    // Reads expert e of `layer` into mem (slot_size() bytes, laid out as a slot; page-aligned
    // with O_DIRECT), split across `pool` when given; throws an error naming the file and tensor.
    void read_expert(std::byte* mem, int64_t layer, int32_t e, thread_pool* pool = nullptr) const {
        const layer_parts& p = layout_.layers[size_t(layer)];
        std::byte* at = mem;
        for (const part* t : {&p.up, &p.gate, &p.down}) {
            if (!t->bytes) continue;
            const uint64_t off = t->offset + uint64_t(e * t->bytes);
            try {
                read_part(off, t->bytes, at, pool);
            } catch (const error& err) {
                std::string why = err.what();
                if (why.starts_with(file_.path() + ": ")) why.erase(0, file_.path().size() + 2);
                throw error(file_.path() + ": reading expert " + std::to_string(e) + " of tensor '" + t->name + "' (" +
                            std::to_string(t->bytes) + " bytes at offset " + std::to_string(off) + "): " + why);
            }
            at += part_bytes(t->bytes, o_.direct_io);
        }
    }

private:
    static expert_arena_options with_loader(expert_arena_options o, const slot_loader& loader) {
        if (loader) o.prefetch = false;
        return o;
    }

    // One slab: the bytes [off, off + bytes) of the file at dst. O_DIRECT needs block-aligned
    // offset, length and memory: it reads the aligned range around the slab, dst at its start.
    // With a pool the range is split into page-aligned pieces, one per thread.
    void read_part(uint64_t off, int64_t bytes, std::byte* dst, thread_pool* pool) const {
        const uint64_t begin = o_.direct_io ? off / page * page : off;
        const uint64_t end = o_.direct_io ? uint64_t(round_up(int64_t(off) + bytes, page)) : off + uint64_t(bytes);
        auto piece = [&](uint64_t b, uint64_t e) {
            if (!o_.direct_io) return file_.read_at(b, {dst + (b - begin), size_t(e - b)});
            uint64_t done = 0;  // the last block may end past the end of the file: stop once the slab is in
            while (b + done < std::min(e, off + uint64_t(bytes))) {
                const ssize_t n = ::pread(direct_.fd(), dst + (b - begin) + done, size_t(e - b - done), off_t(b + done));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) throw error("O_DIRECT read failed at offset " + std::to_string(b + done) + ": " +
                                        (n == 0 ? std::string("unexpected end of file") : errno_text()));
                done += uint64_t(n);
            }
        };
        const int parts = pool && end - begin >= (uint64_t(1) << 20) ? pool->size() : 1;
        if (parts == 1) return piece(begin, end);
        const uint64_t step = uint64_t(round_up(int64_t(end - begin + uint64_t(parts) - 1) / parts, page));
        std::vector<std::exception_ptr> failed(static_cast<size_t>(parts));
        pool->parallel_for(parts, [&](int64_t p0, int64_t p1) {
            for (int64_t p = p0; p < p1; ++p) try {
                    const uint64_t b = begin + uint64_t(p) * step;
                    if (b < end) piece(b, std::min(end, b + step));
                } catch (...) {
                    failed[size_t(p)] = std::current_exception();
                }
        });
        for (const auto& f : failed)
            if (f) std::rethrow_exception(f);
    }

    // A miss read on the calling thread (slot i already marked loading for this key).
    int32_t load_here(std::unique_lock<std::mutex>& lock, int32_t i, int64_t layer, int32_t e, clock::time_point t0) {
        slot& s = slots_[size_t(i)];
        expert_layer_stats& st = stats_[size_t(layer)];
        lock.unlock();
        try {
            if (loader_) loader_(i, layer, e);
            else read_expert(s.mem, layer, e, o_.pool);
        } catch (...) {
            lock.lock();
            release(s);
            loaded_.notify_all();
            throw;
        }
        lock.lock();
        s.state = slot_state::ready;
        st.bytes_read += expert_bytes(layer);
        st.stall_seconds += seconds_since(t0);
        loaded_.notify_all();
        return i;
    }

    // A prefetch read on the I/O thread; skipped when the slot was taken over or freed meanwhile.
    void background_load(int32_t i, int64_t key) {
        slot& s = slots_[size_t(i)];
        {
            std::lock_guard lock(mu_);
            if (s.key != key || s.state != slot_state::queued) return;
            s.state = slot_state::loading;
        }
        const int64_t layer = key / E_;
        bool ok = true;
        try {
            read_expert(s.mem, layer, int32_t(key % E_));
        } catch (const error&) {
            ok = false;  // acquire() reads it again and reports the error
        }
        std::lock_guard lock(mu_);
        if (ok) {
            s.state = slot_state::ready;
            stats_[size_t(layer)].bytes_read += expert_bytes(layer);
        } else {
            if (s.prefetched) --stats_[size_t(layer)].prefetch_issued;
            release(s);
        }
        loaded_.notify_all();
    }

    int64_t expert_bytes(int64_t layer) const {
        const layer_parts& p = layout_.layers[size_t(layer)];
        return p.up.bytes + p.gate.bytes + p.down.bytes;
    }

    expert_arena_options o_;
    expert_layout layout_;
    int64_t E_;
    file_handle file_;    // buffered reads
    file_handle direct_;  // O_DIRECT reads (direct_io)
    slot_loader loader_;  // set: slots live elsewhere, memory_ is empty

    int64_t slot_bytes_ = 0, capacity_ = 0;
    aligned_buffer memory_;  // [slots, slot_bytes]

    mutable std::mutex mu_;  // guards everything below
    std::condition_variable loaded_;
    std::vector<slot> slots_;
    expert_policy policy_;
    std::vector<int32_t> where_;  // [L·E] slot of each expert, -1 when not resident
    std::vector<int64_t> needed_; // the keys will_use announced and acquire() has not asked for yet
    std::vector<expert_layer_stats> stats_;  // [L]
    std::unique_ptr<io_thread> io_;          // last: stopped first
};

}  // namespace ncas
