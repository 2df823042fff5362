// Expert streaming through a byte-budgeted arena (issue 7): the output is the
// resident output bit for bit at every budget, errors name the minimum budget
// and the tensor whose read failed, resident memory stays within the budget,
// and the policy / prefetch statistics mean what they say.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "ncas/format/gguf_writer.hpp"
#include "ncas/memory/page_cache.hpp"
#include "ncas/ncas.hpp"
#include "support/errors.hpp"
#include "support/golden.hpp"

using test_errors::error_of;

namespace {

using namespace ncas;

// A scratch file per test, removed at the end.
struct temp_file {
    std::string path = ::testing::TempDir() + "ncas_stream_" + std::to_string(::getpid()) + "_" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".gguf";
    ~temp_file() { std::remove(path.c_str()); }
};

// Logits of every position ([T, V]) for tokens run through a fresh session.
std::vector<float> run(const model_core& m, std::span<const int32_t> tokens, session_params p, bool batched = true,
                       std::optional<expert_stats>* stats = nullptr) {
    session s(m, p);
    const int64_t V = m.config().n_vocab;
    std::vector<float> out(tokens.size() * size_t(V));
    s.evaluate(tokens, [&](int64_t i, std::span<const float> l) { std::copy(l.begin(), l.end(), out.begin() + i * V); },
               batched);
    if (stats) *stats = s.expert_stats();
    return out;
}

// ---- a synthetic model whose expert bytes dominate --------------------------

struct synthetic_dims {
    int64_t D = 256, L = 4, E = 8, k = 2, F = 512, V = 64, H = 2, d = 16, ctx = 64;
    weight_type type = weight_type::f32;
    // An attack on the arena: token t's embedding is the unit vector e_t and every layer's
    // gate scores experts 2t, 2t+1 (mod E) highest on it, so consecutive tokens of
    // 0, 1, 2, ... need disjoint experts and a batch of E/2 tokens needs all of them.
    bool rotating_gate = false;
    int64_t expert_bytes() const { return L * E * 2 * F * row_bytes(type, D); }  // up + down, row lengths D and F
};

// Small random weights (uniform ±scale), from a seed per tensor so files are reproducible.
gguf_writer::tensor_fill random_fill(weight_type type, int64_t row_len, float scale, uint64_t seed) {
    return [=](std::span<std::byte> dst) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
        std::vector<float> row(static_cast<size_t>(row_len));
        const int64_t rb = row_bytes(type, row_len);
        for (size_t at = 0; at < dst.size(); at += size_t(rb)) {
            for (float& v : row) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                v = scale * (float(s >> 40) / float(1 << 24) * 2.0f - 1.0f);
            }
            quantize_row(type, row.data(), dst.data() + at, row_len);
        }
    };
}
gguf_writer::tensor_fill ones() {
    return [](std::span<std::byte> dst) {
        for (size_t i = 0; i < dst.size(); i += 4) { const float one = 1.0f; std::memcpy(dst.data() + i, &one, 4); }
    };
}

void write_synthetic(const std::string& path, const synthetic_dims& m) {
    gguf_writer w;
    const std::string a = "ncas-diffmoe.";
    w.set_string("general.architecture", "ncas-diffmoe");
    w.set_uint32(a + "context_length", uint32_t(m.ctx));
    w.set_uint32(a + "embedding_length", uint32_t(m.D));
    w.set_uint32(a + "block_count", uint32_t(m.L));
    w.set_uint32(a + "vocab_size", uint32_t(m.V));
    w.set_uint32(a + "feed_forward_length", uint32_t(m.F));
    w.set_uint32(a + "attention.head_count", uint32_t(m.H));
    w.set_uint32(a + "attention.key_length", uint32_t(m.d));
    w.set_uint32(a + "attention.value_length", uint32_t(2 * m.d));
    w.set_uint32(a + "expert_count", uint32_t(m.E));
    w.set_uint32(a + "expert_used_count", uint32_t(m.k));
    const float sD = 1.0f / std::sqrt(float(m.D)), sF = 1.0f / std::sqrt(float(m.F));
    uint64_t seed = 1;
    auto mat = [&](const std::string& name, int64_t cols, std::vector<int64_t> ne, weight_type t, float scale) {
        w.add_tensor(name, t, std::move(ne), random_fill(t, cols, scale, seed++));
    };
    // Row r of a [cols, rows] f32 tensor holds value(r, c) at column c.
    auto rows_of = [](int64_t cols, auto value) {
        return [=](std::span<std::byte> dst) {
            for (size_t i = 0; i < dst.size() / 4; ++i) {
                const float v = value(int64_t(i) / cols, int64_t(i) % cols);
                std::memcpy(dst.data() + 4 * i, &v, 4);
            }
        };
    };
    if (m.rotating_gate)
        w.add_tensor("token_embd.weight", weight_type::f32, {m.D, m.V},
                     rows_of(m.D, [](int64_t t, int64_t c) { return c == t ? 1.0f : 0.0f; }));
    else
        mat("token_embd.weight", m.D, {m.D, m.V}, weight_type::f32, 1.0f);
    w.add_tensor("output_norm.weight", weight_type::f32, {m.D}, ones());
    const int64_t qk = 2 * m.H * m.d, v = m.H * 2 * m.d;
    for (int64_t l = 0; l < m.L; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        w.add_tensor(b + "attn_norm.weight", weight_type::f32, {m.D}, ones());
        mat(b + "attn_q.weight", m.D, {m.D, qk}, weight_type::f32, sD);
        mat(b + "attn_k.weight", m.D, {m.D, qk}, weight_type::f32, sD);
        mat(b + "attn_v.weight", m.D, {m.D, v}, weight_type::f32, sD);
        mat(b + "attn_output.weight", v, {v, m.D}, weight_type::f32, 1.0f / std::sqrt(float(v)));
        mat(b + "attn_lambda.weight", 1, {1}, weight_type::f32, 0.5f);
        w.add_tensor(b + "ffn_norm.weight", weight_type::f32, {m.D}, ones());
        if (m.rotating_gate)
            w.add_tensor(b + "ffn_gate_inp.weight", weight_type::f32, {m.D, m.E}, rows_of(m.D, [E = m.E](int64_t e, int64_t c) {
                return c < 64 && (e == 2 * c % E || e == (2 * c + 1) % E) ? 10.0f : 0.0f;
            }));
        else
            mat(b + "ffn_gate_inp.weight", m.D, {m.D, m.E}, weight_type::f32, 4 * sD);
        mat(b + "ffn_up_exps.weight", m.D, {m.D, m.F, m.E}, m.type, sD);
        mat(b + "ffn_down_exps.weight", m.F, {m.F, m.D, m.E}, m.type, sF);
    }
    w.write_file(path);
}

std::vector<int32_t> some_tokens(int64_t n, int64_t V) {
    std::vector<int32_t> t;
    for (int64_t i = 0; i < n; ++i) t.push_back(int32_t((i * 37 + 11) % V));
    return t;
}

// ---- bit-identical to resident on every tiny model, at every budget ---------

class streamed_tiny : public ::testing::TestWithParam<std::string> {};

TEST_P(streamed_tiny, any_budget_gives_the_resident_bits) {
    const auto g = test_golden::load(GetParam());
    const auto resident = model::load(g.model_path);
    const auto streamed = model::load(g.model_path, {.stream_experts = true});
    const auto want_batched = run(resident, g.tokens, {.n_threads = 1, .n_batch = 4});
    const auto want_single = run(resident, g.tokens, {.n_threads = 1}, false);

    const int64_t min = expert_arena::min_budget(streamed, false), slot = expert_arena::slot_bytes(streamed, false);
    const int64_t full = expert_arena::full_budget(streamed, false);
    for (int64_t budget : {min, min + slot, (min + full) / 2, full})
        for (eviction_policy policy : {eviction_policy::lru, eviction_policy::lfu_aged, eviction_policy::lfu_distance})
            for (bool prefetch : {false, true}) {
                const session_params p{.n_threads = 1, .n_batch = 4, .expert_budget = budget,
                                       .expert_policy = policy, .expert_prefetch = prefetch};
                const std::string what = "budget " + std::to_string(budget) + " policy " +
                                         std::string(policy_name(policy)) + (prefetch ? " prefetch" : "");
                std::optional<expert_stats> st;
                EXPECT_EQ(run(streamed, g.tokens, p, true, &st), want_batched) << what;
                ASSERT_TRUE(st);
                EXPECT_GT(st->total().requests, 0) << what;
                EXPECT_EQ(run(streamed, g.tokens, p, false), want_single) << what << " token by token";
            }
    // The arena also serves a mapped model (reads still go through pread), and O_DIRECT reads give the same bits.
    EXPECT_EQ(run(resident, g.tokens, {.n_threads = 1, .n_batch = 4, .expert_budget = min}), want_batched);
    EXPECT_EQ(run(streamed, g.tokens, {.n_threads = 1, .n_batch = 4,
                                       .expert_budget = expert_arena::min_budget(streamed, true),
                                       .expert_direct_io = true}),
              want_batched);
}

INSTANTIATE_TEST_SUITE_P(golden, streamed_tiny, ::testing::ValuesIn(test_golden::all_models()),
                         [](const auto& info) { return info.param; });

// ---- errors -------------------------------------------------------------------

std::string base_path() { return test_golden::data_dir() + "/tiny/base_f32.gguf"; }

TEST(streaming_errors, a_budget_below_one_layers_top_k_names_the_minimum) {
    const auto m = model::load(base_path(), {.stream_experts = true});
    const int64_t min = expert_arena::min_budget(m, false);
    EXPECT_EQ(min, m.config().n_expert_used * expert_arena::slot_bytes(m, false));
    const std::string e = error_of([&] { session s(m, {.expert_budget = min - 1}); });
    EXPECT_HAS(e, "too small");
    EXPECT_HAS(e, "at least " + std::to_string(min) + " bytes");
    EXPECT_HAS(e, base_path());
    EXPECT_NO_THROW(session(m, {.expert_budget = min}));
    // A streamed model has no resident experts: a session must say how much to hold.
    EXPECT_HAS(error_of([&] { session s(m); }), "set an expert budget (at least " + std::to_string(min) + " bytes)");
}

TEST(streaming_errors, budgets_parse_as_the_command_line_writes_them) {
    const auto m = model::load(base_path(), {.stream_experts = true});
    auto parse = [&](const char* s) { return expert_arena::parse_budget(s, m, false); };
    const int64_t full = expert_arena::full_budget(m, false);
    EXPECT_EQ(parse("min"), expert_arena::min_budget(m, false));
    EXPECT_EQ(parse("full"), full);
    EXPECT_EQ(parse("100%"), full);
    EXPECT_EQ(parse("25%"), int64_t(double(full) * 25 / 100));
    EXPECT_EQ(parse("512M"), int64_t(512) << 20);
    EXPECT_EQ(parse("1.5G"), int64_t(3) << 29);
    EXPECT_EQ(parse("64KiB"), 65536);
    EXPECT_EQ(parse("123456"), 123456);
    for (const char* bad : {"", "12X", "-5", "G", "1e30"}) EXPECT_HAS(error_of([&] { parse(bad); }), "expert budget '");
}

TEST(streaming_errors, a_streamed_load_reads_no_expert_bytes) {
    const auto m = model::load(base_path(), {.stream_experts = true});
    EXPECT_TRUE(m.streams_experts());
    int64_t experts = 0;
    for (const auto& t : m.file().tensors()) experts += is_expert_tensor(t.name) ? int64_t(t.bytes) : 0;
    EXPECT_GT(experts, 0);
    for (const auto& l : m.weights().layers) EXPECT_EQ(l.up.data, nullptr);
    EXPECT_LE(m.resident_weight_bytes(), int64_t(m.file().file_size()) - experts);
}

TEST(streaming_errors, a_file_truncated_after_loading_names_the_file_and_tensor) {
    temp_file f;
    std::filesystem::copy_file(base_path(), f.path);
    const auto m = model::load(f.path, {.stream_experts = true});
    // Cut the file inside the last expert tensor; everything else is already in memory.
    const tensor_info* last = nullptr;
    for (const auto& t : m.file().tensors())
        if (is_expert_tensor(t.name) && (!last || t.offset > last->offset)) last = &t;
    ASSERT_NE(last, nullptr);
    const auto g = test_golden::load("base_f32");
    const int64_t full = expert_arena::full_budget(m, false);
    auto opened_before = std::make_unique<session>(m, session_params{.n_threads = 1, .expert_budget = full});
    std::filesystem::resize_file(f.path, last->offset + 8);
    auto evaluate = [&](session& s) { s.evaluate(g.tokens, [](int64_t, std::span<const float>) {}); };
    // The file shrank under an open arena (pread returns 0; the failed prefetch read is retried by the demand that reports it) ...
    const std::string during = error_of([&] { evaluate(*opened_before); });
    // ... or before the arena opened it (the read is past the end).
    const std::string before = error_of([&] {
        session s(m, {.n_threads = 1, .expert_budget = full, .expert_prefetch = false});
        evaluate(s);
    });
    for (const std::string& e : {during, before}) {
        EXPECT_HAS(e, f.path + ": reading expert ");
        EXPECT_HAS(e, " of tensor '" + last->name + "'");
    }
    EXPECT_HAS(during, "unexpected end of file");
    EXPECT_HAS(before, "past the end of the file");
}

// ---- policy -----------------------------------------------------------------------

// A synthetic model small enough to drive the arena by hand: L = 4, E = 8, k = 2.
struct small_arena_model {
    temp_file f;
    std::unique_ptr<model> m;
    small_arena_model() {
        write_synthetic(f.path, {.D = 64, .L = 4, .E = 8, .k = 2, .F = 64, .V = 32});
        m = std::make_unique<model>(model::load(f.path, {.stream_experts = true}));
    }
    expert_arena arena(int64_t slots, eviction_policy p, int64_t age_every = 0) const {
        return expert_arena(*m, {.budget = slots * expert_arena::slot_bytes(*m, false), .policy = p, .age_every = age_every});
    }
};

// Requests (layer 0 unless given) and whether each was a hit.
std::vector<bool> replay(expert_arena& a, std::initializer_list<int32_t> experts, int64_t layer = 0) {
    std::vector<bool> hits;
    for (int32_t e : experts) {
        const int64_t before = a.stats().layers[size_t(layer)].hits;
        a.acquire(layer, e);
        hits.push_back(a.stats().layers[size_t(layer)].hits > before);
    }
    return hits;
}

TEST(expert_policy_trace, lru_evicts_the_least_recently_used) {
    small_arena_model s;
    expert_arena a = s.arena(3, eviction_policy::lru);
    EXPECT_EQ(replay(a, {0, 1, 2, 0, 3}), (std::vector<bool>{false, false, false, true, false}));  // 3 evicts 1
    EXPECT_EQ(replay(a, {0, 2, 1}), (std::vector<bool>{true, true, false}));
}

TEST(expert_policy_trace, lfu_keeps_the_frequent_where_lru_drops_it) {
    small_arena_model s;
    for (auto [p, keeps_hot] : {std::pair{eviction_policy::lru, false}, std::pair{eviction_policy::lfu_aged, true}}) {
        expert_arena a = s.arena(3, p);
        replay(a, {0, 0, 0, 0, 1, 2, 3});  // 0 is hot but least recent when 3 arrives
        EXPECT_EQ(replay(a, {0}), std::vector<bool>{keeps_hot}) << policy_name(p);
    }
}

TEST(expert_policy_trace, distance_evicts_the_layer_visited_last_in_the_cycle) {
    small_arena_model s;
    for (auto [p, second_hit] : {std::pair{eviction_policy::lru, false}, std::pair{eviction_policy::lfu_distance, true}}) {
        expert_arena a = s.arena(3, p);
        for (int64_t l = 0; l < 4; ++l) a.acquire(l, 0);  // layer 3 evicts layer 1 (oldest) or 2 (visited last)
        const int64_t hits = a.stats().total().hits;
        a.acquire(0, 0), a.acquire(1, 0);              // the next token
        EXPECT_EQ(a.stats().total().hits - hits, second_hit ? 2 : 1) << policy_name(p);
    }
}

TEST(expert_policy_trace, ageing_lets_a_formerly_hot_expert_go) {
    small_arena_model s;
    // Counts halve every 4 uses: 0's early popularity fades while 1 and 2 keep being used.
    expert_arena a = s.arena(3, eviction_policy::lfu_aged, 4);
    replay(a, {0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2});
    EXPECT_EQ(replay(a, {3, 1, 2, 0}), (std::vector<bool>{false, true, true, false}));  // 3 took 0's slot
    expert_arena never_aged = s.arena(3, eviction_policy::lfu_aged, 1 << 30);
    replay(never_aged, {0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2});
    EXPECT_EQ(replay(never_aged, {3, 0}), (std::vector<bool>{false, true}));
}

// Decode-like traces: every token visits the layers in order and takes 2 of 8
// experts each. The budget holds 40% of the experts, less than one token's
// cyclic working set (LRU then evicts exactly the slab needed soonest).
std::array<double, 3> hit_rates(const small_arena_model& s, std::initializer_list<double> skew) {
    std::mt19937 rng(7);
    std::discrete_distribution<int32_t> pick(skew);
    std::vector<std::pair<int64_t, int32_t>> trace;
    for (int token = 0; token < 400; ++token)
        for (int64_t l = 0; l < 4; ++l) {
            const int32_t a = pick(rng);
            int32_t b = pick(rng);
            while (b == a) b = pick(rng);
            trace.emplace_back(l, a), trace.emplace_back(l, b);
        }
    std::array<double, 3> rate{};
    for (eviction_policy p : {eviction_policy::lru, eviction_policy::lfu_aged, eviction_policy::lfu_distance}) {
        expert_arena a = s.arena(13, p);
        for (auto [l, e] : trace) a.acquire(l, e);
        rate[size_t(p)] = a.stats().hit_rate();
    }
    std::printf("hit rates with 13 of 32 slots: lru %.3f, lfu-aged %.3f, lfu-distance %.3f\n", rate[0], rate[1], rate[2]);
    return rate;
}

TEST(expert_policy_trace, frequency_beats_lru_when_routing_is_skewed) {
    small_arena_model s;
    const auto rate = hit_rates(s, {30, 20, 12, 8, 5, 3, 2, 1});
    EXPECT_GT(rate[1], rate[0] + 0.1);
    EXPECT_GT(rate[2], rate[0] + 0.1);
}

TEST(expert_policy_trace, distance_beats_frequency_when_routing_is_even) {
    small_arena_model s;
    const auto rate = hit_rates(s, {12, 11, 10, 9, 8, 7, 6, 5});
    EXPECT_GT(rate[2], rate[1]);
    EXPECT_GT(rate[2], rate[0]);
}

// ---- prefetch -------------------------------------------------------------------

TEST(expert_prefetch, accuracy_counts_prefetched_slabs_that_were_then_used) {
    small_arena_model s;
    expert_arena a = s.arena(6, eviction_policy::lru);
    const int64_t slab = expert_arena::slot_bytes(*s.m, false);  // f32 64×64: page multiples, no padding
    a.acquire(0, 0), a.acquire(0, 1);
    const int32_t guess[] = {2, 3, 4};
    a.prefetch(1, guess);
    a.wait_idle();
    a.acquire(1, 2), a.acquire(1, 5);  // 2 was guessed right, 5 was not guessed
    const expert_stats st = a.stats();
    EXPECT_EQ(st.layers[1].prefetch_issued, 3);
    EXPECT_EQ(st.layers[1].prefetch_used, 1);
    EXPECT_EQ(st.layers[1].requests, 2);
    EXPECT_EQ(st.layers[1].hits, 1);
    EXPECT_EQ(st.layers[1].bytes_read, 4 * slab);  // 3 prefetched + 1 miss
    EXPECT_DOUBLE_EQ(st.prefetch_accuracy(), 1.0 / 3.0);
    // A guess that is already resident reads nothing and is not counted.
    a.prefetch(1, guess);
    a.wait_idle();
    EXPECT_EQ(a.stats().layers[1].prefetch_issued, 3);
}

TEST(expert_prefetch, never_evicts_the_current_or_next_layers_slabs) {
    small_arena_model s;
    expert_arena a = s.arena(3, eviction_policy::lru);
    a.acquire(0, 0), a.acquire(0, 1), a.acquire(1, 0);  // every slot: layer 0 (current) or 1 (next)
    const int32_t guess[] = {4, 5};
    a.prefetch(1, guess);
    a.wait_idle();
    EXPECT_EQ(a.stats().layers[1].prefetch_dropped, 2);
    EXPECT_EQ(a.stats().layers[1].prefetch_issued, 0);
    EXPECT_EQ(replay(a, {0, 1}), (std::vector<bool>{true, true}));  // layer 0 still all there
}

// ---- read-ahead within a routed layer ----------------------------------------------

TEST(expert_read_ahead, a_layers_later_misses_are_read_ahead_and_still_count_as_misses) {
    small_arena_model s;
    expert_arena a = s.arena(6, eviction_policy::lru);
    const int64_t slab = expert_arena::slot_bytes(*s.m, false);
    a.acquire(0, 0);
    const int32_t used[] = {0, 3, 5};  // 0 resident; 3 and 5 missing
    a.will_use(0, used);
    a.wait_idle();
    EXPECT_EQ(a.stats().layers[0].read_ahead, 2);
    EXPECT_EQ(replay(a, {0, 3, 5}), (std::vector<bool>{true, false, false}));
    EXPECT_EQ(a.stats().layers[0].bytes_read, 3 * slab);  // 0 on demand, 3 and 5 ahead: nothing twice
    EXPECT_EQ(replay(a, {3, 5}), (std::vector<bool>{true, true}));  // then they are plain hits
}

TEST(expert_read_ahead, leaves_a_slot_for_the_first_expert_and_keeps_the_ones_announced) {
    small_arena_model s;
    expert_arena a = s.arena(2, eviction_policy::lru);  // the minimum: k = 2 slots
    a.acquire(1, 6), a.acquire(1, 7);
    const int32_t used[] = {0, 1, 2, 3};  // a prefill batch using four experts, none resident
    a.will_use(0, used);
    EXPECT_EQ(a.stats().layers[0].read_ahead, 1) << "one slot stays free for expert 0";
    a.wait_idle();
    EXPECT_EQ(replay(a, {0, 1, 2, 3}), (std::vector<bool>{false, false, false, false}));
    EXPECT_EQ(a.stats().layers[0].requests, 4);
    // Now 2 and 3 are resident. A resident expert the layer announced is not
    // evicted by the reads ahead of it, however the policy ranks it.
    const int32_t next[] = {3, 5, 6};  // 3 resident (LRU would drop it after 2), 5 and 6 missing
    a.will_use(0, next);
    a.wait_idle();
    EXPECT_EQ(a.stats().layers[0].read_ahead, 2) << "5 into 2's slot; no slot left for 6";
    EXPECT_EQ(replay(a, {3, 5, 6}), (std::vector<bool>{true, false, false}));
}

TEST(expert_read_ahead, is_off_without_direct_reads_or_prefetch) {
    small_arena_model s;
    expert_arena a(*s.m, {.budget = 6 * expert_arena::slot_bytes(*s.m, false), .prefetch = false});
    const int32_t used[] = {1, 2};
    a.will_use(0, used);
    a.wait_idle();
    EXPECT_EQ(a.stats().layers[0].read_ahead, 0);
    EXPECT_EQ(replay(a, {1, 2}), (std::vector<bool>{false, false}));
}

// ---- the memory bound -------------------------------------------------------------

// A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: peak since the last reset_peak()).
int64_t status_kib(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
    return -1;
}
void reset_peak() {
    std::ofstream("/proc/self/clear_refs") << "5";
    if (status_kib("VmHWM:") > status_kib("VmRSS:") + 1024) GTEST_SKIP() << "this kernel does not reset VmHWM";
}

// 256 MiB of f32 experts (4 layers × 8 experts × 8 MiB) and 4.4 MiB of everything
// else, run with a budget of a quarter of the expert bytes. Resident memory must grow
// by no more than budget + non-expert weights + KV cache + 8 MiB of slack (activation
// buffers, thread stacks, allocator overhead: under 1 MiB measured);
// the same tokens through the mapped file grow it by the experts touched (several times more).
TEST(streaming_memory, peak_resident_memory_stays_within_the_budget) {
    temp_file f;
    const synthetic_dims d{.D = 1024, .L = 4, .E = 8, .k = 2, .F = 1024, .V = 64};
    write_synthetic(f.path, d);
    const int64_t experts = d.expert_bytes(), budget = experts / 4, slack = 8 << 20;
    const std::vector<int32_t> tokens = some_tokens(24, d.V);

    std::vector<float> streamed_logits;
    {
        ASSERT_NO_FATAL_FAILURE(reset_peak());
        if (::testing::Test::IsSkipped()) return;
        const int64_t before = status_kib("VmRSS:") * 1024;
        const auto m = model::load(f.path, {.stream_experts = true});
        std::optional<expert_stats> st;
        streamed_logits = run(m, tokens, {.n_ctx = 64, .n_threads = 2, .n_batch = 8, .expert_budget = budget}, true, &st);
        const int64_t peak = status_kib("VmHWM:") * 1024 - before;
        const int64_t kv = kv_bytes(m.config(), 64, weight_type::f32);
        const int64_t bound = budget + m.resident_weight_bytes() + kv + slack;
        std::printf("experts %.1f MiB, budget %.1f MiB, non-expert weights %.2f MiB, kv %.2f MiB, slack %.0f MiB\n"
                    "streamed: peak RSS growth %.1f MiB (bound %.1f MiB), read %.1f MiB, hit rate %.2f\n",
                    experts / 1048576.0, budget / 1048576.0, m.resident_weight_bytes() / 1048576.0, kv / 1048576.0,
                    slack / 1048576.0, peak / 1048576.0, bound / 1048576.0, st->total().bytes_read / 1048576.0,
                    st->hit_rate());
        std::fputs(st->report().c_str(), stdout);
        EXPECT_LE(peak, bound);
        EXPECT_GT(st->total().bytes_read, budget);  // it really streamed: more was read than fits
        EXPECT_LT(m.resident_weight_bytes(), experts / 20);  // the experts dominate the file
    }
    {
        ASSERT_NO_FATAL_FAILURE(reset_peak());
        if (::testing::Test::IsSkipped()) return;
        const int64_t before = status_kib("VmRSS:") * 1024;
        const auto m = model::load(f.path);
        EXPECT_EQ(run(m, tokens, {.n_ctx = 64, .n_threads = 2, .n_batch = 8}), streamed_logits);
        const int64_t peak = status_kib("VmHWM:") * 1024 - before;
        std::printf("mapped:   peak RSS growth %.1f MiB\n", peak / 1048576.0);
        EXPECT_GT(peak, 2 * budget);  // the measurement sees expert pages when they are resident
    }
}

// Budgets under attack: tokens that each need experts no earlier token used, one
// at a time and in batches that need every expert of a layer at once, through the
// smallest budget (one layer's top-k). The arena allocates no more than the budget,
// the run gives the resident bits, nearly every request misses (the attack works),
// and resident memory grows by no more than the budget, the non-expert weights,
// the KV cache and 8 MiB of slack.
TEST(streaming_memory, routing_every_token_elsewhere_stays_within_the_budget) {
    temp_file f;
    const synthetic_dims d{.D = 512, .L = 4, .E = 8, .k = 2, .F = 1024, .V = 64, .rotating_gate = true};
    write_synthetic(f.path, d);
    std::vector<int32_t> tokens;
    for (int32_t i = 0; i < 32; ++i) tokens.push_back(i);  // experts {0,1}, {2,3}, {4,5}, {6,7}, {0,1}, ...
    const auto mapped = model::load(f.path);
    for (bool batched : {false, true}) {
        const auto want = run(mapped, tokens, {.n_ctx = 64, .n_threads = 2, .n_batch = 8}, batched);
        ASSERT_NO_FATAL_FAILURE(reset_peak());
        if (::testing::Test::IsSkipped()) return;
        const int64_t before = status_kib("VmRSS:") * 1024;
        const auto m = model::load(f.path, {.stream_experts = true});
        const int64_t budget = expert_arena::min_budget(m, false), slack = 8 << 20;
        std::optional<expert_stats> st;
        EXPECT_EQ(run(m, tokens, {.n_ctx = 64, .n_threads = 2, .n_batch = 8, .expert_budget = budget}, batched, &st), want);
        const int64_t peak = status_kib("VmHWM:") * 1024 - before;
        const int64_t bound = budget + m.resident_weight_bytes() + kv_bytes(m.config(), 64, weight_type::f32) + slack;
        std::printf("%s: budget %.1f MiB (%lld slots), hit rate %.3f, read %.1f MiB, peak RSS growth %.1f MiB (bound %.1f)\n",
                    batched ? "batched" : "one at a time", budget / 1048576.0, (long long)st->n_slots, st->hit_rate(),
                    st->total().bytes_read / 1048576.0, peak / 1048576.0, bound / 1048576.0);
        EXPECT_LE(st->n_slots * st->slot_bytes, budget);
        EXPECT_LT(st->hit_rate(), 0.25) << "the routing did not move between experts: no attack";
        EXPECT_LE(peak, bound);
    }
}

// Mixture-of-depths routing everything or nothing: every layer's cache holds exactly
// the rows of the tokens routed into it, never more than its capacity; the cache is
// the size the accounting states; a context filled to the last row still runs, and
// one token more is a clear error that leaves the cache as it was.
TEST(kv_budget, mod_routing_all_or_nothing_keeps_the_cache_within_its_bound) {
    const std::string base = test_golden::data_dir() + "/tiny/base_f32.gguf";
    std::ifstream in(base, std::ios::binary);
    const std::vector<char> raw{std::istreambuf_iterator<char>(in), {}};
    const std::span bytes(reinterpret_cast<const std::byte*>(raw.data()), raw.size());
    for (float threshold : {-1e30f, 1e30f}) {
        gguf_writer w = gguf_writer::copy_of(gguf_file::from_memory(base, bytes), bytes);
        w.set_float32("ncas-diffmoe.mod.threshold", threshold);
        temp_file f;
        w.write_file(f.path);
        const auto m = model::load(f.path);
        ASSERT_GT(m.config().n_mod_layers, 0) << "the tiny model has MoD layers";
        const int64_t ctx = 16;
        session s(m, {.n_ctx = ctx, .n_threads = 1, .n_batch = 5});
        EXPECT_EQ(s.cache().bytes(), kv_bytes(m.config(), ctx, weight_type::f32));
        std::vector<int32_t> tokens;
        for (int64_t i = 0; i < ctx; ++i) tokens.push_back(int32_t(i * 7 % m.config().n_vocab));
        s.prefill(std::span(tokens).first(ctx - 1));
        s.decode(tokens.back());  // the last row of the context
        for (int64_t l = 0; l < m.config().n_layer; ++l) {
            const bool routed = m.weights().layers[size_t(l)].mod_router.empty() || threshold < 0;
            EXPECT_EQ(s.cache().rows(l), routed ? ctx : 0) << "layer " << l << " threshold " << threshold;
            EXPECT_LE(s.cache().rows(l), s.cache().capacity());
        }
        EXPECT_HAS(error_of([&] { s.decode(tokens[0]); }), "do not fit in the context");
        for (int64_t l = 0; l < m.config().n_layer; ++l) EXPECT_LE(s.cache().rows(l), ctx);
        EXPECT_EQ(s.n_past(), ctx);
    }
}

// Slabs of a MiB and more are read by all the session's threads at once, in
// page-aligned pieces (buffered and O_DIRECT); the bytes must land where one
// reader would put them.
TEST(streaming_reads, slabs_split_across_threads_give_the_resident_bits) {
    temp_file f;
    const synthetic_dims d{.D = 512, .L = 2, .E = 4, .k = 2, .F = 1536, .V = 64};  // 3 MiB slabs: 3 pieces of 1 MiB
    write_synthetic(f.path, d);
    const std::vector<int32_t> tokens = some_tokens(12, d.V);
    const auto mapped = model::load(f.path);
    const auto want = run(mapped, tokens, {.n_ctx = 64, .n_threads = 3, .n_batch = 4});
    const auto m = model::load(f.path, {.stream_experts = true});
    for (bool direct : {false, true}) {
        const int64_t min = expert_arena::min_budget(m, direct);
        std::optional<expert_stats> st;
        std::vector<float> got;
        try {
            got = run(m, tokens, {.n_ctx = 64, .n_threads = 3, .n_batch = 4, .expert_budget = min,
                                  .expert_prefetch = false, .expert_direct_io = direct}, true, &st);
        } catch (const ncas::error& e) {
            if (direct && std::string(e.what()).find("O_DIRECT") != std::string::npos) {
                std::printf("skip O_DIRECT: %s\n", e.what());
                continue;
            }
            throw;
        }
        EXPECT_EQ(got, want) << (direct ? "O_DIRECT" : "buffered");
        EXPECT_GT(st->total().bytes_read, min) << "it streamed";
    }
}

TEST(disk_probe, a_file_under_one_request_is_refused_by_name) {
    temp_file f;
    {
        std::ofstream out(f.path, std::ios::binary);
        out << std::string(4096, 'x');
    }
    const std::string msg = error_of([&] { direct_read_gbs(f.path); });
    EXPECT_HAS(msg, f.path);
    EXPECT_TRUE(msg.find("too small to measure") != std::string::npos || msg.find("O_DIRECT") != std::string::npos) << msg;
    EXPECT_HAS(error_of([&] { direct_read_gbs(f.path + ".missing"); }), ".missing");
}

}  // namespace
