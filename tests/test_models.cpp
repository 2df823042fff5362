// Every tiny model against the float64 reference's golden logits (docs/spec.md §4),
// through every path: one batch, token by token, small batches, any thread
// count, an f16 cache, rewinding. Also the MoD cache lengths and the experts
// the gates chose, which pin the routing rules exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ncas/ncas.hpp"
#include "support/golden.hpp"
#include "support/errors.hpp"

using test_errors::error_of;

namespace {

using test_golden::golden;

using test_golden::relative_error;

// Runs the golden tokens through a fresh session and returns [T, V] logits.
std::vector<float> run(const ncas::model& m, const golden& g, ncas::session_params p, bool batched = true,
                       ncas::session** keep = nullptr) {
    static std::unique_ptr<ncas::session> last;
    last = std::make_unique<ncas::session>(m, p);
    if (keep) *keep = last.get();
    return test_golden::evaluate(*last, g, batched);
}

class tiny_model : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        g = test_golden::load(GetParam());
        m = std::make_unique<ncas::model>(ncas::model::load(g.model_path));
    }
    golden g;
    std::unique_ptr<ncas::model> m;
};

TEST_P(tiny_model, batched_prefill_matches_reference) {
    ncas::session* s = nullptr;
    const auto logits = run(*m, g, {.n_threads = 2}, true, &s);
    EXPECT_LE(relative_error(logits, g), g.tolerance);
    // MoD: each layer's cache holds exactly the tokens the reference routed into it.
    for (size_t l = 0; l < g.mod_kept.size(); ++l) EXPECT_EQ(s->cache().rows(int64_t(l)), g.mod_kept[l]) << "layer " << l;
    // MoE: per layer, how many tokens each expert served.
    const int64_t E = m->config().n_expert;
    for (size_t l = 0; l < g.expert_use.size(); ++l)
        for (int64_t e = 0; e < E; ++e) {
            const int64_t want = size_t(e) < g.expert_use[l].size() ? g.expert_use[l][size_t(e)] : 0;
            EXPECT_EQ(s->stats().expert_use[l * size_t(E) + size_t(e)], want) << "layer " << l << " expert " << e;
        }
}

TEST_P(tiny_model, token_by_token_matches_reference) {
    EXPECT_LE(relative_error(run(*m, g, {.n_threads = 1}, false), g), g.tolerance);
}

TEST_P(tiny_model, batches_that_split_the_prompt_match_reference) {
    EXPECT_LE(relative_error(run(*m, g, {.n_threads = 2, .n_batch = 5}), g), g.tolerance);
}

TEST_P(tiny_model, thread_count_changes_no_bit) {
    const auto one = run(*m, g, {.n_threads = 1});
    for (int threads : {2, 3, 5}) EXPECT_EQ(run(*m, g, {.n_threads = threads}), one) << threads << " threads";
}

TEST_P(tiny_model, f16_cache_within_f16_bound) {
    EXPECT_LE(relative_error(run(*m, g, {.n_threads = 2, .kv_type = ncas::weight_type::f16}), g),
              std::max(g.tolerance, 1e-3));
}

// A quantised cache (docs/spec.md §4): within 2e-2·max|logit| of the reference run with
// K and V rounded through the same block format, through one batch and token by token;
// the thread count and the batching change no bit.
TEST_P(tiny_model, quantised_cache_matches_the_rounded_reference) {
    for (auto kv : {ncas::weight_type::q8_0, ncas::weight_type::q4_0}) {
        const std::string name = kv == ncas::weight_type::q8_0 ? "q8_0" : "q4_0";
        const golden gq = test_golden::with_kv_logits(g, name);
        ncas::session* s = nullptr;
        const auto batched = run(*m, gq, {.n_threads = 2, .kv_type = kv}, true, &s);
        EXPECT_EQ(s->cache().type(), kv);
        for (size_t l = 0; l < gq.mod_kept.size(); ++l)
            EXPECT_EQ(s->cache().rows(int64_t(l)), gq.mod_kept[l]) << name << " layer " << l;
        EXPECT_LE(relative_error(batched, gq), 2e-2) << name;
        EXPECT_EQ(run(*m, gq, {.n_threads = 1, .kv_type = kv}, false), batched) << name << " token by token";
        EXPECT_EQ(run(*m, gq, {.n_threads = 3, .n_batch = 5, .kv_type = kv}), batched) << name << " 3 threads, batches of 5";
        ncas::session r(*m, {.n_threads = 2, .n_batch = 1, .kv_type = kv});
        test_golden::expect_rewind_reproduces_tail(r, gq);
    }
}

TEST_P(tiny_model, rewind_then_decode_reproduces_the_tail) {
    ncas::session s(*m, {.n_threads = 2, .n_batch = 1});
    test_golden::expect_rewind_reproduces_tail(s, g);
}

INSTANTIATE_TEST_SUITE_P(golden, tiny_model, ::testing::ValuesIn(test_golden::all_models()),
                         [](const auto& info) { return info.param; });

// ---- API errors --------------------------------------------------------------

std::string base_path() { return test_golden::data_dir() + "/tiny/base_f32.gguf"; }

TEST(session_errors, prompt_longer_than_context_is_refused) {
    const auto m = ncas::model::load(base_path());
    ncas::session s(m, {.n_ctx = 8});
    const std::vector<int32_t> prompt(9, 1);
    EXPECT_NE(error_of([&] { s.prefill(prompt); }).find("do not fit in the context"), std::string::npos);
    s.prefill(std::span(prompt).first(8));
    EXPECT_NE(error_of([&] { s.decode(1); }).find("8 of 8 positions"), std::string::npos);
}

TEST(session_errors, bad_tokens_and_params_are_refused) {
    const auto m = ncas::model::load(base_path());
    ncas::session s(m);
    EXPECT_NE(error_of([&] { s.decode(int32_t(m.config().n_vocab)); }).find("outside the vocabulary"), std::string::npos);
    EXPECT_NE(error_of([&] { s.decode(-1); }).find("outside the vocabulary"), std::string::npos);
    EXPECT_NE(error_of([&] { s.rewind(3); }).find("holds 0 tokens"), std::string::npos);
    EXPECT_NE(error_of([&] { ncas::session(m, {.n_ctx = 1 << 20}); }).find("the model supports"), std::string::npos);
    EXPECT_NE(error_of([&] { ncas::session(m, {.kv_type = ncas::weight_type::bf16}); }).find("KV cache type"),
              std::string::npos);
    EXPECT_EQ(s.n_past(), 0);  // nothing was consumed by the refused calls
}

TEST(presets, a_file_of_other_dimensions_is_refused_by_name) {
    const std::string e = error_of([] { (void)ncas::basic_model<ncas::preset_pi_p>::load(base_path()); });
    EXPECT_NE(e.find("does not match preset PI-P: embedding_length is 32, the preset has 2592"), std::string::npos) << e;
    EXPECT_NO_THROW((void)ncas::basic_model<ncas::dynamic_config>::load(base_path()));
}

}  // namespace
