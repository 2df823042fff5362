// Tests for include/ncas/text/sampler.hpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ncas/text/sampler.hpp"
#include "support/errors.hpp"

using test_errors::error_of;

// Count heap allocations, to check that sample() makes none once warm.
namespace {
std::atomic<long> g_allocations{0};
}
__attribute__((noinline)) void* operator new(std::size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using ncas::sampler;
using ncas::sampler_params;

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// Regularized upper incomplete gamma function Q(a, x) (series and continued
// fraction as in Numerical Recipes), for chi-square p-values.
double gamma_q(double a, double x) {
    if (x <= 0) return 1.0;
    const double gln = std::lgamma(a);
    if (x < a + 1) {
        double ap = a, sum = 1.0 / a, del = sum;
        for (int n = 0; n < 10000; ++n) {
            ap += 1;
            del *= x / ap;
            sum += del;
            if (std::fabs(del) < std::fabs(sum) * 1e-15) break;
        }
        return 1.0 - sum * std::exp(-x + a * std::log(x) - gln);
    }
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 10000; ++i) {
        const double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (std::fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (std::fabs(c) < tiny) c = tiny;
        d = 1 / d;
        const double del = d * c;
        h *= del;
        if (std::fabs(del - 1) < 1e-15) break;
    }
    return std::exp(-x + a * std::log(x) - gln) * h;
}

// Pearson's chi-square goodness-of-fit p-value of counts against probs
// (categories with probability 0 must have count 0, else p = 0).
double chi_square_p(const std::vector<long>& counts, const std::vector<double>& probs) {
    long n = 0;
    for (long c : counts) n += c;
    double stat = 0;
    int df = -1;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (probs[i] == 0) {
            if (counts[i] != 0) return 0;
            continue;
        }
        const double e = probs[i] * static_cast<double>(n);
        stat += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
        ++df;
    }
    return gamma_q(df / 2.0, stat / 2.0);
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
    double m = -INFINITY;
    for (float l : logits) m = std::max(m, static_cast<double>(l));
    std::vector<double> p(logits.size());
    double total = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        p[i] = logits[i] == neg_inf ? 0 : std::exp((logits[i] - m) / temperature);
        total += p[i];
    }
    for (auto& v : p) v /= total;
    return p;
}

std::vector<long> draw_counts(sampler& s, const std::vector<float>& logits, int n) {
    std::vector<long> counts(logits.size(), 0);
    for (int k = 0; k < n; ++k) ++counts[static_cast<std::size_t>(s.sample(logits))];
    return counts;
}

std::set<int32_t> candidate_ids(const sampler& s) {
    std::set<int32_t> ids;
    for (const auto& c : s.candidates()) ids.insert(c.id);
    return ids;
}

// ----------------------------------------------------------------- tests

TEST(Statistics, GammaQMatchesClosedForms) {
    // df = 2: p = exp(-x/2); df = 1: p = erfc(sqrt(x/2)).
    for (double x : {0.1, 1.0, 3.0, 10.0, 40.0}) {
        EXPECT_NEAR(gamma_q(1.0, x / 2), std::exp(-x / 2), 1e-12);
        EXPECT_NEAR(gamma_q(0.5, x / 2), std::erfc(std::sqrt(x / 2)), 1e-10);
    }
}

TEST(Xoshiro, ReferenceSequences) {
    // splitmix64 from seed 1234567: the published test sequence.
    uint64_t state = 1234567;
    for (uint64_t want : {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull,
                          4593380528125082431ull, 16408922859458223821ull})
        EXPECT_EQ(ncas::splitmix64(state), want);
    // xoshiro256** seeded by splitmix64, computed independently (Python,
    // from the reference C code): pinned, so that any change to the
    // generator, which would change every seeded run, is noticed.
    ncas::xoshiro256ss z(0);
    for (uint64_t want : {11091344671253066420ull, 13793997310169335082ull, 1900383378846508768ull,
                          7684712102626143532ull})
        EXPECT_EQ(z.next(), want);
    ncas::xoshiro256ss r(1234567);
    for (uint64_t want : {3504822795582309479ull, 1819558768956484042ull, 1250851346055027673ull,
                          16940231675099994102ull})
        EXPECT_EQ(r.next(), want);
    for (int i = 0; i < 100000; ++i) {
        const double u = r.next_double();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
    }
}

TEST(Greedy, PicksArgmaxAndLowestIdOnTies) {
    sampler s({.temperature = 0.0f});
    EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -2.0f, 2.9f}), 1);
    EXPECT_EQ(s.sample(std::vector<float>{1.0f, 5.0f, 5.0f, 5.0f}), 1);
    EXPECT_EQ(s.sample(std::vector<float>{7.0f, 7.0f}), 0);
    EXPECT_EQ(s.sample(std::vector<float>{neg_inf, neg_inf, -1e30f}), 2);
    EXPECT_EQ(s.sample(std::vector<float>{-5.0f}), 0);
    ASSERT_EQ(s.candidates().size(), 1u);
    EXPECT_EQ(s.candidates()[0].prob, 1.0f);
}

TEST(TopK, OneEqualsGreedy) {
    std::mt19937 rng(5);
    sampler greedy({.temperature = 0.0f});
    sampler k1({.temperature = 1.3f, .top_k = 1, .seed = 9});
    for (int trial = 0; trial < 500; ++trial) {
        std::vector<float> logits(50);
        // Few distinct values, so ties are common.
        for (auto& l : logits) l = static_cast<float>(static_cast<int>(rng() % 7)) * 0.5f;
        EXPECT_EQ(k1.sample(logits), greedy.sample(logits));
    }
}

TEST(TopK, KeepsTheKHighestWithLowIdsOnTies) {
    sampler s({.top_k = 3});
    const std::vector<float> logits = {1.0f, 4.0f, 2.0f, 4.0f, 2.0f, 0.0f, 2.0f};
    (void)s.sample(logits);
    EXPECT_EQ(candidate_ids(s), (std::set<int32_t>{1, 3, 2}));
    sampler big({.top_k = 100});
    (void)big.sample(logits);
    EXPECT_EQ(big.candidates().size(), logits.size());
}

TEST(Seeded, SequenceIsReproducible) {
    const std::vector<float> logits = {0.5f, 1.5f, -0.3f, 2.0f, 1.0f, 0.0f, -1.0f, 0.7f};
    const sampler_params p{.temperature = 0.9f, .top_k = 6, .top_p = 0.95f, .min_p = 0.02f, .seed = 12345};
    sampler a(p), b(p);
    std::vector<int32_t> sa, sb;
    for (int i = 0; i < 2000; ++i) {
        sa.push_back(a.sample(logits));
        sb.push_back(b.sample(logits));
    }
    EXPECT_EQ(sa, sb);
    // reseed restarts the sequence; another seed gives another sequence.
    a.reseed(12345);
    std::vector<int32_t> again;
    for (int i = 0; i < 2000; ++i) again.push_back(a.sample(logits));
    EXPECT_EQ(again, sa);
    sampler c({.temperature = 0.9f, .top_k = 6, .top_p = 0.95f, .min_p = 0.02f, .seed = 54321});
    std::vector<int32_t> sc;
    for (int i = 0; i < 2000; ++i) sc.push_back(c.sample(logits));
    EXPECT_NE(sc, sa);
}

// Frequencies over many draws follow softmax(logits / T): Pearson's
// chi-square test at significance 1e-4. The same counts must fail the test
// against a different temperature, so the test has the power to notice.
TEST(Distribution, FrequenciesMatchSoftmax) {
    const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, neg_inf, 1.5f};
    const int n = 200000;
    for (const float t : {1.0f, 0.7f, 2.5f}) {
        sampler s({.temperature = t, .seed = 2024});
        const auto counts = draw_counts(s, logits, n);
        const auto probs = softmax(logits, t);
        const double p = chi_square_p(counts, probs);
        EXPECT_GT(p, 1e-4) << "temperature " << t;
        EXPECT_EQ(counts[6], 0) << "a -inf logit was drawn";
        EXPECT_LT(chi_square_p(counts, softmax(logits, t * 1.1)), 1e-4) << "temperature " << t;
        // The probabilities the sampler reports are the softmax.
        for (const auto& c : s.candidates())
            EXPECT_NEAR(c.prob, probs[static_cast<std::size_t>(c.id)], 1e-6) << c.id;
    }
}

// Probabilities 1/2, 1/4, 1/8, 1/16, 1/16.
const std::vector<float> halves = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.0625f),
                                   std::log(0.0625f)};

TEST(TopP, KeepsSmallestPrefixReachingP) {
    auto kept = [](float top_p, int32_t top_k = 0) {
        sampler s({.top_k = top_k, .top_p = top_p});
        (void)s.sample(halves);
        return candidate_ids(s);
    };
    using S = std::set<int32_t>;
    EXPECT_EQ(kept(0.4f), S{0});
    EXPECT_EQ(kept(0.7f), (S{0, 1}));
    EXPECT_EQ(kept(0.8f), (S{0, 1, 2}));
    EXPECT_EQ(kept(0.9f), (S{0, 1, 2, 3}));  // ties at the end: lower id first
    EXPECT_EQ(kept(0.99f), (S{0, 1, 2, 3, 4}));
    EXPECT_EQ(kept(1.0f), (S{0, 1, 2, 3, 4}));
    // After top_k = 2 the probabilities are renormalized to 2/3, 1/3, so
    // 0.6 is reached by token 0 alone (it would not be without top_k).
    EXPECT_EQ(kept(0.6f, 2), S{0});
    EXPECT_EQ(kept(0.6f), (S{0, 1}));
}

TEST(TopP, DrawsOnlyFromNucleusWithRenormalizedFrequencies) {
    sampler s({.top_p = 0.8f, .seed = 77});
    const auto counts = draw_counts(s, halves, 100000);
    EXPECT_EQ(counts[3], 0);
    EXPECT_EQ(counts[4], 0);
    const std::vector<double> probs = {4.0 / 7, 2.0 / 7, 1.0 / 7, 0, 0};
    EXPECT_GT(chi_square_p(counts, probs), 1e-4);
}

TEST(MinP, KeepsTokensAtLeastMinPTimesTheBest) {
    auto kept = [](float min_p) {
        sampler s({.min_p = min_p});
        (void)s.sample(halves);
        return candidate_ids(s);
    };
    using S = std::set<int32_t>;
    EXPECT_EQ(kept(0.6f), S{0});               // 0.25 < 0.6 * 0.5
    EXPECT_EQ(kept(0.45f), (S{0, 1}));         // 0.25 >= 0.225 > 0.125
    EXPECT_EQ(kept(0.2f), (S{0, 1, 2}));       // 0.125 >= 0.1 > 0.0625
    EXPECT_EQ(kept(0.1f), (S{0, 1, 2, 3, 4}));
    EXPECT_EQ(kept(1.0f), S{0});               // only the best
    // Frequencies: drawn only among the kept, renormalized.
    sampler s({.min_p = 0.2f, .seed = 5});
    const auto counts = draw_counts(s, halves, 100000);
    EXPECT_GT(chi_square_p(counts, {4.0 / 7, 2.0 / 7, 1.0 / 7, 0, 0}), 1e-4);
}

TEST(MinP, IsComputedBeforeTemperature) {
    // min_p uses the temperature-1 probabilities: a high temperature does not
    // bring back what min_p removed.
    sampler s({.temperature = 5.0f, .min_p = 0.45f});
    (void)s.sample(halves);
    EXPECT_EQ(candidate_ids(s), (std::set<int32_t>{0, 1}));
}

TEST(RepetitionPenalty, ChangesTheRightLogits) {
    const std::vector<float> logits = {2.0f, -2.0f, 0.5f, 1.0f, -1.0f, 0.0f};
    const std::vector<int32_t> recent = {0, 1, 1, 4, 5};
    sampler s({.temperature = 0.0f, .repetition_penalty = 2.0f, .repetition_last_n = 4});
    (void)s.sample(logits, recent);
    // Window = {1, 1, 4, 5}: token 1 penalized once, 0 is outside it, 0 stays 0.
    EXPECT_EQ(std::vector<float>(s.penalized_logits().begin(), s.penalized_logits().end()),
              (std::vector<float>{2.0f, -4.0f, 0.5f, 1.0f, -2.0f, 0.0f}));
    sampler all({.temperature = 0.0f, .repetition_penalty = 2.0f, .repetition_last_n = -1});
    (void)all.sample(logits, recent);
    EXPECT_EQ(all.penalized_logits()[0], 1.0f);
    sampler off({.temperature = 0.0f, .repetition_penalty = 2.0f, .repetition_last_n = 0});
    (void)off.sample(logits, recent);
    EXPECT_EQ(off.penalized_logits()[1], -2.0f);
    sampler less({.temperature = 0.0f, .repetition_penalty = 0.5f, .repetition_last_n = -1});
    (void)less.sample(logits, recent);  // a penalty below 1 favours repeats
    EXPECT_EQ(less.penalized_logits()[0], 4.0f);
    EXPECT_EQ(less.penalized_logits()[1], -1.0f);
    // The input is never modified.
    EXPECT_EQ(logits[1], -2.0f);
}

TEST(RepetitionPenalty, ChangesTheChoice) {
    const std::vector<float> logits = {3.0f, 2.9f};
    sampler s({.temperature = 0.0f, .repetition_penalty = 1.1f});
    EXPECT_EQ(s.sample(logits), 0);
    EXPECT_EQ(s.sample(logits, std::vector<int32_t>{0}), 1);  // 3 / 1.1 < 2.9
    // With a penalty that large, every finite logit stays finite.
    sampler huge({.repetition_penalty = 3e38f, .repetition_last_n = -1});
    const std::vector<float> big = {-1e10f, 1e-30f};
    EXPECT_NO_THROW((void)huge.sample(big, std::vector<int32_t>{0, 1}));
    for (float l : huge.penalized_logits()) EXPECT_TRUE(std::isfinite(l));
}

TEST(Sampler, NoAllocationOnceWarm) {
    std::vector<float> logits(50000);
    std::mt19937 rng(1);
    for (auto& l : logits) l = static_cast<float>(rng() % 1000) / 100.0f;
    const std::vector<int32_t> recent = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    for (const sampler_params p : {sampler_params{.temperature = 0.0f, .repetition_penalty = 1.2f},
                                   sampler_params{.top_k = 40, .top_p = 0.9f, .min_p = 0.05f,
                                                  .repetition_penalty = 1.2f, .seed = 3},
                                   sampler_params{.temperature = 0.8f, .top_p = 0.5f},
                                   sampler_params{.min_p = 0.1f}}) {
        sampler s(p);
        (void)s.sample(logits, recent);  // warm up: buffers grow here
        const long before = g_allocations.load();
        for (int i = 0; i < 20; ++i) (void)s.sample(logits, recent);
        EXPECT_EQ(g_allocations.load() - before, 0);
    }
}

TEST(Validation, BadParamsThrowNamingTheParam) {
    auto msg = [](sampler_params p) { return error_of([&] { sampler s(p); }); };
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_NE(msg({.temperature = -0.1f}).find("temperature"), std::string::npos);
    EXPECT_NE(msg({.temperature = nan}).find("temperature"), std::string::npos);
    EXPECT_NE(msg({.temperature = inf}).find("temperature"), std::string::npos);
    EXPECT_NE(msg({.top_k = -1}).find("top_k"), std::string::npos);
    EXPECT_NE(msg({.top_p = 0.0f}).find("top_p"), std::string::npos);
    EXPECT_NE(msg({.top_p = 1.01f}).find("top_p"), std::string::npos);
    EXPECT_NE(msg({.top_p = nan}).find("top_p"), std::string::npos);
    EXPECT_NE(msg({.min_p = -0.01f}).find("min_p"), std::string::npos);
    EXPECT_NE(msg({.min_p = 1.5f}).find("min_p"), std::string::npos);
    EXPECT_NE(msg({.repetition_penalty = 0.0f}).find("repetition_penalty"), std::string::npos);
    EXPECT_NE(msg({.repetition_penalty = -1.0f}).find("repetition_penalty"), std::string::npos);
    EXPECT_NE(msg({.repetition_penalty = inf}).find("repetition_penalty"), std::string::npos);
    EXPECT_NE(msg({.repetition_last_n = -2}).find("repetition_last_n"), std::string::npos);
    EXPECT_EQ(msg({}), "(no error)");
    sampler s;
    EXPECT_NE(error_of([&] { s.set_params({.top_p = 2.0f}); }).find("top_p"), std::string::npos);
    EXPECT_EQ(s.params().top_p, 1.0f);  // unchanged after the failed set
}

TEST(Validation, BadInputsThrow) {
    sampler s({.repetition_penalty = 1.3f});
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{}); }).find("no logits"), std::string::npos);
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{1.0f, std::nanf(""), 0.0f}); }).find("logit 1 is NaN"),
              std::string::npos);
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{0.0f, 0.0f, INFINITY}); }).find("logit 2 is +inf"),
              std::string::npos);
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{neg_inf, neg_inf}); }).find("-inf"), std::string::npos);
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{1, 2, 3}, std::vector<int32_t>{0, 3}); })
                  .find("recent token id 3"),
              std::string::npos);
    EXPECT_NE(error_of([&] { s.sample(std::vector<float>{1, 2, 3}, std::vector<int32_t>{-1}); })
                  .find("recent token id -1"),
              std::string::npos);
}

}  // namespace
