// Expert streaming on the Vulkan backend (issue #7): experts held in device
// slots within a byte budget give the resident Vulkan backend's logits bit for
// bit at every budget from the minimum to all experts, batched and token by
// token, under each eviction policy; the statistics count what was read; the
// budget errors are the CPU arena's (a too-small budget names the minimum).
// Validation layer on (any message fails the test).
#include <numeric>

#include "support/golden.hpp"
#include "vk_support.hpp"
#include "support/errors.hpp"

using test_errors::error_of;

namespace {

using namespace vk_test;
namespace vk = ncas::vk;
using ncas::eviction_policy;
using ncas::expert_arena;

// The golden tokens batched (n_batch 4), then again token by token after a rewind
// to 0 (the slots stay warm): both logits [T, V], and the streaming statistics.
struct streamed_run {
    std::vector<float> batched, single;
    std::optional<ncas::expert_stats> stats;
};
streamed_run run(const ncas::model_core& m, const test_golden::golden& g, ncas::session_params p,
                 const std::shared_ptr<vk::context>& ctx) {
    p.n_batch = 4;
    vk::session s(m, p, ctx);
    streamed_run out;
    out.batched = test_golden::evaluate(s, g);
    out.stats = s.expert_stats();
    s.reset();
    out.single = test_golden::evaluate(s, g, false);
    return out;
}

class vk_streamed : public vk_fixture, public ::testing::WithParamInterface<std::string> {
protected:
    void SetUp() override {
        vk_fixture::SetUp();
        if (IsSkipped()) return;
        ctx = context_for(config::best);
    }
    std::shared_ptr<vk::context> ctx;
};

TEST_P(vk_streamed, any_budget_gives_the_resident_bits) {
    const auto g = test_golden::load(GetParam());
    const auto resident = ncas::model::load(g.model_path);
    const auto streamed = ncas::model::load(g.model_path, {.stream_experts = true});
    const streamed_run want = run(resident, g, {}, ctx);
    ASSERT_FALSE(want.stats);  // no budget: every expert resident, nothing streamed

    const int64_t min = expert_arena::min_budget(streamed, false), slot = expert_arena::slot_bytes(streamed, false);
    const int64_t full = expert_arena::full_budget(streamed, false);
    struct setting {
        int64_t budget;
        eviction_policy policy;
    };
    std::vector<setting> settings;
    for (eviction_policy p : {eviction_policy::lru, eviction_policy::lfu_aged, eviction_policy::lfu_distance})
        settings.push_back({min, p});  // the policy decides only when slots are short
    for (int64_t b : {min + slot, (min + full) / 2, full}) settings.push_back({b, eviction_policy::lfu_distance});
    for (const setting& st : settings) {
        const std::string what = "budget " + std::to_string(st.budget) + " policy " + std::string(ncas::policy_name(st.policy));
        const streamed_run got = run(streamed, g, {.expert_budget = st.budget, .expert_policy = st.policy}, ctx);
        EXPECT_EQ(got.batched, want.batched) << what;
        EXPECT_EQ(got.single, want.single) << what << " token by token";
        ASSERT_TRUE(got.stats) << what;
        const auto t = got.stats->total();
        EXPECT_GT(t.requests, 0) << what;
        EXPECT_GT(t.bytes_read, 0) << what;  // the slots start empty
        EXPECT_EQ(t.prefetch_issued, 0) << what;  // the Vulkan backend does not prefetch
        EXPECT_EQ(got.stats->n_slots, std::min(st.budget / slot, streamed.config().n_layer * streamed.config().n_expert));
    }
    // A mapped model streams too when given a budget.
    EXPECT_EQ(run(resident, g, {.expert_budget = min}, ctx).batched, want.batched);
}

// Every model but the single-type K-quant ones: k256_mix streams all three K types
// (and Q8_0) through the same slots, at a quarter of their time (the asan stage's long pole).
std::vector<std::string> streamed_models() {
    std::vector<std::string> out;
    for (const std::string& name : test_golden::all_models())
        if (name.rfind("k256_", 0) != 0 || name == "k256_mix") out.push_back(name);
    return out;
}

INSTANTIATE_TEST_SUITE_P(golden, vk_streamed, ::testing::ValuesIn(streamed_models()),
                         [](const auto& info) { return info.param; });

// ---- the other device paths, statistics, errors --------------------------------------

class vk_streaming : public vk_fixture {};

std::string base_path() { return test_golden::data_dir() + "/tiny/base_f32.gguf"; }

TEST_F(vk_streaming, word_loads_and_staged_buffers_give_the_resident_bits) {
    const auto g = test_golden::load("base_q8_0");
    const auto m = ncas::model::load(g.model_path, {.stream_experts = true});
    const auto resident = ncas::model::load(g.model_path);
    for (config c : {config::plain, config::staged}) {  // staged: the routing is read back through a copy
        auto ctx = context_for(c);
        if (!ctx) continue;
        const streamed_run want = run(resident, g, {}, ctx);
        const streamed_run got = run(m, g, {.expert_budget = expert_arena::min_budget(m, false)}, ctx);
        EXPECT_EQ(got.batched, want.batched) << config_name(c);
        EXPECT_EQ(got.single, want.single) << config_name(c);
    }
}

TEST_F(vk_streaming, statistics_count_requests_hits_and_bytes) {
    const auto g = test_golden::load("base_f32");
    const auto m = ncas::model::load(g.model_path, {.stream_experts = true});
    const auto& c = m.config();
    int64_t expert_bytes = 0;  // one expert of layer 0: up + down (+ gate)
    for (const ncas::expert_tensor* t : {&m.weights().layers[0].up, &m.weights().layers[0].gate, &m.weights().layers[0].down})
        expert_bytes += t->rows ? t->slab_bytes() : 0;
    vk::session s(m, {.expert_budget = expert_arena::full_budget(m, false)}, context_for(config::best));
    for (int32_t t : g.tokens) s.decode(t);
    const ncas::run_stats rs = s.stats();
    auto st = s.expert_stats();
    ASSERT_TRUE(st);
    ASSERT_EQ(int64_t(st->layers.size()), c.n_layer);
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const auto& ls = st->layers[size_t(l)];
        // Token by token, a layer asks for each routed token's k experts once.
        EXPECT_EQ(ls.requests, rs.tokens_kept[size_t(l)] * c.n_expert_used) << "layer " << l;
        // Every slab is read at most once: the budget holds every expert.
        EXPECT_EQ(ls.bytes_read, ls.misses() * expert_bytes) << "layer " << l;
    }
    EXPECT_LT(st->hit_rate(), 1.0);
    // Again after a reset: everything is resident now.
    s.reset();
    s.reset_stats();
    for (int32_t t : g.tokens) s.decode(t);
    st = s.expert_stats();
    EXPECT_EQ(st->total().bytes_read, 0);
    EXPECT_EQ(st->total().hits, st->total().requests);
    EXPECT_GT(st->total().requests, 0);
    EXPECT_EQ(st->hit_rate(), 1.0);
}

TEST_F(vk_streaming, a_budget_below_one_layers_top_k_names_the_minimum) {
    const auto m = ncas::model::load(base_path(), {.stream_experts = true});
    auto ctx = context_for(config::best);
    const int64_t min = expert_arena::min_budget(m, false);
    const std::string e = error_of([&] { vk::session s(m, {.expert_budget = min - 1}, ctx); });
    EXPECT_HAS(e, "too small");
    EXPECT_HAS(e, "at least " + std::to_string(min) + " bytes");
    EXPECT_HAS(e, base_path());
    EXPECT_NO_THROW(vk::session(m, {.expert_budget = min}, ctx));
    EXPECT_HAS(error_of([&] { vk::session s(m, {}, ctx); }), "set an expert budget (at least " + std::to_string(min) + " bytes)");
    EXPECT_HAS(error_of([&] { vk::session s(m, {.expert_budget = min, .expert_direct_io = true}, ctx); }), "O_DIRECT");
}

TEST_F(vk_streaming, the_backend_hook_streams_on_vulkan) {
    const auto g = test_golden::load("base_q8_0");
    const auto m = ncas::model::load(g.model_path, {.stream_experts = true});
    ncas::backend_options gpu, cpu;
    gpu.name = "vulkan", gpu.vk = options(config::best);
    const ncas::session_params p{.n_threads = 1, .expert_budget = expert_arena::min_budget(m, false)};
    auto a = ncas::make_session(m, p, gpu), b = ncas::make_session(m, p, cpu);
    const std::vector<int32_t> prompt{0, 17, 42};
    EXPECT_EQ(test_golden::greedy(*a, prompt, 16), test_golden::greedy(*b, prompt, 16));
    ASSERT_TRUE(a->expert_stats());
    EXPECT_GT(a->expert_stats()->total().requests, 0);
}

}  // namespace
