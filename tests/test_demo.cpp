// The shipped demo model against the PyTorch model it was trained as
// (tools/eval.py wrote the goldens): the tokenizer gives the same prompt ids,
// greedy continuations are the same 32 tokens, and the held-out perplexity
// agrees within 1%; and the Q8_0 file against the float64 reference on its own
// weights (issue: demo model; docs/spec.md §4).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>

#include "ncas/ncas.hpp"
#include "support/golden.hpp"

namespace {

std::string models_dir() { return test_golden::data_dir() + "/../../models/"; }

std::vector<int32_t> greedy(const ncas::model& m, const std::vector<int32_t>& prompt, int n,
                            ncas::weight_type kv = ncas::weight_type::f32) {
    ncas::session s(m, {.n_ctx = int64_t(prompt.size()) + n, .n_threads = 2, .kv_type = kv});
    return test_golden::greedy(s, prompt, n);
}

const test_json::value& cases(const test_json::value& golden) { return golden["cases"]; }

TEST(demo_model, prompts_tokenize_to_the_training_tokenizers_ids) {
    const auto m = ncas::model::load(models_dir() + "demo-f32.gguf");
    const test_json::value g = test_json::parse_file(test_golden::data_dir() + "/demo_greedy.json");
    for (const auto& c : cases(g).arr())
        EXPECT_EQ(m.tokenizer().encode(c["prompt"].str(), g["bos_prepended"].boolean()), c["prompt_ids"].list<int32_t>())
            << c["prompt"].str();
}

TEST(demo_model, greedy_continuations_equal_pytorch) {
    const auto m = ncas::model::load(models_dir() + "demo-f32.gguf");
    const test_json::value g = test_json::parse_file(test_golden::data_dir() + "/demo_greedy.json");
    const int n = int(g["n_predict"].integer());
    ASSERT_GE(n, 32);
    for (const auto& c : cases(g).arr())
        EXPECT_EQ(greedy(m, c["prompt_ids"].list<int32_t>(), n), c["continuation_ids"].list<int32_t>()) << c["prompt"].str();
}

TEST(demo_model, heldout_perplexity_within_one_percent_of_pytorch) {
    const auto m = ncas::model::load(models_dir() + "demo-f32.gguf");
    const test_json::value stats = test_json::parse_file(models_dir() + "demo_stats.json");
    std::ifstream in(models_dir() + "heldout.ids");
    std::vector<int32_t> ids{std::istream_iterator<int32_t>(in), {}};
    ASSERT_EQ(int64_t(ids.size()), stats["heldout"]["tokens"].integer());
    // tools/eval.py's protocol: consecutive windows of the context, each from an empty cache,
    // every token but a window's first predicted.
    const int64_t ctx = m.config().n_ctx;
    ncas::session s(m, {.n_ctx = ctx, .n_threads = 2, .n_batch = ctx});
    double nll = 0;
    int64_t n = 0;
    for (size_t w = 0; w < ids.size(); w += size_t(ctx)) {
        const std::span<const int32_t> win(ids.data() + w, std::min(ids.size() - w, size_t(ctx)));
        s.reset();
        s.evaluate(win, [&](int64_t i, std::span<const float> l) {
            if (i + 1 >= int64_t(win.size())) return;
            double mx = l[0], sum = 0;
            for (float v : l) mx = std::max(mx, double(v));
            for (float v : l) sum += std::exp(double(v) - mx);
            nll += mx + std::log(sum) - double(l[size_t(win[size_t(i + 1)])]);
            ++n;
        });
    }
    EXPECT_EQ(n, stats["heldout"]["predicted"].integer());
    const double ppl = std::exp(nll / double(n)), torch_ppl = stats["heldout"]["ppl"].num();
    EXPECT_NEAR(ppl / torch_ppl, 1.0, 0.01) << "ncas " << ppl << " vs PyTorch " << torch_ppl;
}

// docs/spec.md §4: a Q8_0 file gives the greedy tokens of the float64 reference run on
// its own dequantised weights (tools/make_demo_goldens.py), for 32 steps.
TEST(demo_model, q8_0_greedy_equals_the_reference_on_its_weights) {
    const auto q8 = ncas::model::load(models_dir() + "demo-q8_0.gguf");
    const test_json::value g = test_json::parse_file(test_golden::data_dir() + "/demo_q8_0_greedy.json");
    for (const auto& c : cases(g).arr())
        EXPECT_EQ(greedy(q8, c["prompt_ids"].list<int32_t>(), 32), c["continuation_ids"].list<int32_t>())
            << c["prompt"].str();
}

// docs/spec.md §4: a q8_0 or q4_0 KV cache gives the greedy tokens of the float64
// reference run with K and V rounded through the same blocks (tools/make_demo_goldens.py), for 32 steps.
TEST(demo_model, quantised_kv_cache_greedy_equals_the_rounded_reference) {
    const auto m = ncas::model::load(models_dir() + "demo-f32.gguf");
    const test_json::value g = test_json::parse_file(test_golden::data_dir() + "/demo_kv_greedy.json");
    for (auto kv : {ncas::weight_type::q8_0, ncas::weight_type::q4_0}) {
        const std::string name = kv == ncas::weight_type::q8_0 ? "q8_0" : "q4_0";
        for (const auto& c : g[name].arr())
            EXPECT_EQ(greedy(m, c["prompt_ids"].list<int32_t>(), 32, kv), c["continuation_ids"].list<int32_t>())
                << name << ": " << c["prompt"].str();
    }
}

}  // namespace
