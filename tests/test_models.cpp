// Every tiny model against the float64 reference's golden logits (docs/spec.md §4),
// through every path: one batch, token by token, small batches, any thread
// count, an f16 cache, rewinding. Also the MoD cache lengths and the experts
// the gates chose, which pin the routing rules exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

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

// Attention over a cache of several chunks (cpu::attn_chunk rows each, the last one
// partial): a prompt in one batch, in batches, and token by token (decode's (head, chunk)
// tasks) give the same bits at 1, 2 and 3 threads, and agree with attention in double.
// Both λ forms (a fixed λ; λ per token), a sub-norm, GQA, a llama head, every cache type.
TEST(chunked_attention, prefill_batches_decode_and_threads_agree_bit_for_bit_and_with_double) {
    struct shape { int64_t M, H, Hkv, d; bool sub_norm, per_token; };
    for (const shape sh : {shape{2, 4, 2, 8, false, true}, shape{2, 2, 2, 16, true, false}, shape{1, 4, 1, 16, false, false}})
        for (ncas::weight_type kv : {ncas::weight_type::f32, ncas::weight_type::f16, ncas::weight_type::q8_0, ncas::weight_type::q4_0}) {
            SCOPED_TRACE(std::string(ncas::type_name(kv)) + " M " + std::to_string(sh.M) + " H " + std::to_string(sh.H));
            ncas::model_config c;
            c.n_embd = 32, c.n_layer = 1, c.n_head = sh.H, c.n_head_kv = sh.Hkv, c.n_maps = sh.M;
            c.head_k = sh.d, c.head_v = sh.M * sh.d;
            const int64_t T = 2 * ncas::cpu::attn_chunk + 90, n_ctx = T;  // three chunks
            std::mt19937 rng(uint32_t(5 + sh.d + sh.M));
            std::normal_distribution<float> nd(0.0f, 1.0f);
            std::vector<float> q(size_t(T * c.q_dim())), k(size_t(T * c.k_dim())), v(size_t(T * c.v_dim())), lt(static_cast<size_t>(T));
            for (auto& x : q) x = 2.0f * nd(rng);  // peaked maps: chunk maxima differ
            for (auto& x : k) x = nd(rng);
            for (auto& x : v) x = nd(rng);
            for (auto& x : lt) x = sh.per_token ? 0.3f + 0.1f * nd(rng) : 0.37f;
            ncas::layer_weights w;
            w.lambda_init = 0.2f;
            if (sh.sub_norm)
                for (int64_t e = 0; e < c.head_v; ++e) w.sub_norm.push_back(1.0f + 0.1f * nd(rng));
            ncas::kv_cache cache(c, n_ctx, kv);
            for (int64_t i = 0; i < T; ++i) cache.append(0, k.data() + i * c.k_dim(), v.data() + i * c.v_dim(), int32_t(i));
            const int64_t A = c.attn_dim();
            // Outputs of tokens [from, T) run in batches of `batch` (1: decode's path).
            const auto run_attend = [&](int threads, int64_t from, int64_t batch) {
                ncas::thread_pool pool(threads);
                std::vector<std::vector<float>> scores(size_t(threads), std::vector<float>(size_t(sh.M * n_ctx)));
                std::vector<float> out(size_t((T - from) * A));
                for (int64_t i = from; i < T; i += batch) {
                    const int64_t n = std::min(batch, T - i);
                    ncas::cpu::attend(pool, c, w, 0, q.data() + i * c.q_dim(), lt.data() + i, n, i, cache, scores,
                                      out.data() + (i - from) * A);
                }
                return out;
            };
            const int64_t from = T - 12;  // the tail: tokens in the third chunk
            const auto prefill = run_attend(1, 0, T);
            const std::vector<float> tail(prefill.begin() + from * A, prefill.end());
            for (int threads : {1, 2, 3}) {
                EXPECT_EQ(run_attend(threads, from, 1), tail) << "token by token, " << threads << " threads";
                EXPECT_EQ(run_attend(threads, from, 5), tail) << "batches of 5, " << threads << " threads";
            }
            EXPECT_EQ(run_attend(2, 0, T), prefill) << "one batch, 2 threads";
            // The first chunk's last token and the second's first decode as they prefill.
            for (int64_t i : {ncas::cpu::attn_chunk - 1, ncas::cpu::attn_chunk}) {
                const auto one = run_attend(2, i, 1);
                EXPECT_TRUE(std::equal(one.begin(), one.begin() + A, prefill.begin() + i * A)) << "token " << i;
            }
            if (sh.sub_norm) continue;
            // Double over the cache's own (rounded) rows, the last token.
            const int64_t i = T - 1, d = sh.d, dv = c.head_v;
            std::vector<float> kr(size_t(ncas::kv_row_values(kv, c.k_dim()))), vr(size_t(ncas::kv_row_values(kv, c.v_dim())));
            std::vector<double> kd(size_t(T * c.k_dim())), vd(size_t(T * c.v_dim()));
            for (int64_t j = 0; j < T; ++j) {
                ncas::dequantize_row(kv, cache.k_row(0, j), kr.data(), int64_t(kr.size()));
                ncas::dequantize_row(kv, cache.v_row(0, j), vr.data(), int64_t(vr.size()));
                std::copy_n(kr.begin(), c.k_dim(), kd.begin() + j * c.k_dim());
                std::copy_n(vr.begin(), c.v_dim(), vd.begin() + j * c.v_dim());
            }
            // A block cache's scores may use a 16-bit query (kv_blocks' idot: one scale a map),
            // which moves a score by at most ε = dq/2 · Σ|k| / √d; then each weight moves by at
            // most p·(e^{2ε} − 1) and the output by that times max|v|, per map.
            const bool blocks = kv == ncas::weight_type::q8_0 || kv == ncas::weight_type::q4_0;
            double err = 0, mag = 0, query_16 = 0, vmax = 0;
            for (double x : vd) vmax = std::max(vmax, std::abs(x));
            for (int64_t h = 0; h < sh.H; ++h) {
                const int64_t g = h / (sh.H / sh.Hkv);
                std::vector<double> p(static_cast<size_t>(T), 0.0);
                double head_16 = 0;
                for (int64_t m = 0; m < sh.M; ++m) {
                    std::vector<double> s(static_cast<size_t>(T));
                    double mx = -1e300, sum = 0, qmax = 0, kabs = 0;
                    for (int64_t e = 0; e < d; ++e) qmax = std::max(qmax, std::abs(double(q[size_t(i * c.q_dim() + (sh.M * h + m) * d + e)])));
                    for (int64_t j = 0; j < T; ++j) {
                        double t = 0, ka = 0;
                        for (int64_t e = 0; e < d; ++e) {
                            t += kd[size_t(j * c.k_dim() + (sh.M * g + m) * d + e)] * q[size_t(i * c.q_dim() + (sh.M * h + m) * d + e)];
                            ka += std::abs(kd[size_t(j * c.k_dim() + (sh.M * g + m) * d + e)]);
                        }
                        s[size_t(j)] = t / std::sqrt(double(d)), mx = std::max(mx, s[size_t(j)]);
                        kabs = std::max(kabs, ka);
                    }
                    const double eps16 = blocks ? qmax / 32767.0 / 2 * kabs / std::sqrt(double(d)) : 0.0;
                    head_16 += (m == 0 ? 1.0 : std::abs(double(lt[size_t(i)]))) * std::expm1(2 * eps16) * vmax;
                    for (auto& x : s) sum += (x = std::exp(x - mx));
                    for (int64_t j = 0; j < T; ++j) p[size_t(j)] += (m == 0 ? 1.0 : -double(lt[size_t(i)])) * s[size_t(j)] / sum;
                }
                for (int64_t e = 0; e < dv; ++e) {
                    double o = 0;
                    for (int64_t j = 0; j < T; ++j) o += p[size_t(j)] * vd[size_t(j * c.v_dim() + g * dv + e)];
                    err = std::max(err, std::abs(o - double(prefill[size_t(i * A + h * dv + e)])));
                    mag = std::max(mag, std::abs(o));
                }
                query_16 = std::max(query_16, head_16);
            }
            EXPECT_LE(err, 1e-5 * mag + query_16);
        }
}

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
