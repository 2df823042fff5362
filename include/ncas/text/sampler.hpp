#pragma once
// Next-token sampler: repetition penalty, top-k, top-p, min-p, temperature,
// with a seeded random generator of its own (xoshiro256**), so a seed gives
// the same tokens with every compiler and standard library.
//
// One call of sample() does, in this order (llama.cpp's order):
//  1. repetition penalty (CTRL / llama.cpp style) on the distinct ids among
//     the last `repetition_last_n` entries of `recent`: a positive logit is
//     divided by the penalty, a negative one multiplied by it (each distinct
//     id once, however often it occurs);
//  2. temperature 0: the highest logit wins, ties going to the lowest id;
//     no random number is drawn;
//  3. top_k: keep the k highest logits (ties: lower ids first);
//  4. top_p: with p = softmax of the logits kept so far (temperature 1),
//     keep the smallest set of most likely tokens whose p sums to >= top_p;
//  5. min_p: keep tokens with p >= min_p * (largest p);
//  6. draw from softmax(logit / temperature) over what is left.
// Tokens whose logit is -inf are never drawn. After the first call with a
// given vocabulary size, sample() allocates nothing.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "ncas/error.hpp"

namespace ncas {

struct sampler_params {
    float temperature = 1.0f;         // >= 0; 0 = greedy
    int32_t top_k = 0;                // >= 0; 0 = off
    float top_p = 1.0f;               // in (0, 1]; 1 = off
    float min_p = 0.0f;               // in [0, 1]; 0 = off
    float repetition_penalty = 1.0f;  // > 0; 1 = off
    int32_t repetition_last_n = 64;   // ids of `recent` looked at: -1 = all, 0 = none
    uint64_t seed = 0;
};

// splitmix64 (Steele, Lea and Flood; Vigna's reference code): advances
// state and returns the next output.
constexpr uint64_t splitmix64(uint64_t& state) noexcept {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// xoshiro256** 1.0 (Blackman and Vigna), its state filled by splitmix64(seed).
class xoshiro256ss {
public:
    explicit xoshiro256ss(uint64_t seed = 0) noexcept { reseed(seed); }

    void reseed(uint64_t seed) noexcept {
        for (auto& s : s_) s = splitmix64(seed);
    }

    uint64_t next() noexcept {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, 1), 53 random bits.
    double next_double() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    static uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

class sampler {
public:
    struct candidate {
        int32_t id;
        float logit;  // after the repetition penalty
        float prob;   // probability it had in the final draw
    };

    explicit sampler(const sampler_params& params = {}) : params_(validated(params)), rng_(params.seed) {}

    const sampler_params& params() const noexcept { return params_; }

    // New parameters; the random state carries on unless the seed changed.
    void set_params(const sampler_params& params) {
        const bool reseed = params.seed != params_.seed;
        params_ = validated(params);
        if (reseed) rng_.reseed(params_.seed);
    }

    // Restarts the random sequence from a seed.
    void reseed(uint64_t seed) noexcept {
        params_.seed = seed;
        rng_.reseed(seed);
    }

    // Picks the next token id from one row of logits. `recent` holds the ids
    // produced so far (oldest first), for the repetition penalty.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> recent = {}) {
        const std::size_t n = logits.size();
        if (n == 0) throw error("sampler: no logits given");
        if (n > static_cast<std::size_t>(std::numeric_limits<int32_t>::max()))
            throw error("sampler: more than 2^31-1 logits");
        bool any_finite = false;
        for (std::size_t i = 0; i < n; ++i) {
            const float l = logits[i];
            if (std::isnan(l) || l == std::numeric_limits<float>::infinity())
                throw error("sampler: logit " + std::to_string(i) + " is " + (std::isnan(l) ? "NaN" : "+inf"));
            any_finite = any_finite || l != -std::numeric_limits<float>::infinity();
        }
        if (!any_finite) throw error("sampler: every logit is -inf, nothing can be sampled");

        logits_.assign(logits.begin(), logits.end());
        apply_repetition_penalty(recent);

        if (params_.temperature == 0.0f) {
            std::size_t best = 0;
            for (std::size_t i = 1; i < n; ++i)
                if (logits_[i] > logits_[best]) best = i;
            cand_.clear();
            cand_.push_back({static_cast<int32_t>(best), logits_[best], 1.0f});
            return static_cast<int32_t>(best);
        }

        cand_.clear();
        for (std::size_t i = 0; i < n; ++i)
            if (logits_[i] != -std::numeric_limits<float>::infinity())
                cand_.push_back({static_cast<int32_t>(i), logits_[i], 0.0f});

        // Highest logit first, ties by lower id: a total order, so the kept
        // set does not depend on how the sort goes about it.
        const auto before = [](const candidate& a, const candidate& b) {
            return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
        };
        // The draw walks the candidates in id order, or in `before` order once
        // a truncation has sorted them; either way in an order that does not
        // depend on the standard library.
        if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < cand_.size()) {
            std::nth_element(cand_.begin(), cand_.begin() + params_.top_k, cand_.end(), before);
            cand_.resize(static_cast<std::size_t>(params_.top_k));
            std::sort(cand_.begin(), cand_.end(), before);
        }
        if (params_.top_p < 1.0f) {
            std::sort(cand_.begin(), cand_.end(), before);
            const double m = cand_.front().logit;
            double total = 0;
            for (const auto& c : cand_) total += std::exp(static_cast<double>(c.logit) - m);
            const double target = static_cast<double>(params_.top_p) * total;
            double cum = 0;
            std::size_t keep = cand_.size();
            for (std::size_t i = 0; i < cand_.size(); ++i) {
                cum += std::exp(static_cast<double>(cand_[i].logit) - m);
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            cand_.resize(keep);
        }
        if (params_.min_p > 0.0f) {
            double m = -std::numeric_limits<double>::infinity();
            for (const auto& c : cand_) m = std::max(m, static_cast<double>(c.logit));
            const double min_p = params_.min_p;
            // p_i / p_max = exp(l_i - l_max); the most likely token always stays.
            const auto drop = [&](const candidate& c) { return std::exp(static_cast<double>(c.logit) - m) < min_p; };
            cand_.erase(std::remove_if(cand_.begin(), cand_.end(), drop), cand_.end());
        }

        double m = -std::numeric_limits<double>::infinity();
        for (const auto& c : cand_) m = std::max(m, static_cast<double>(c.logit));
        const double inv_t = 1.0 / static_cast<double>(params_.temperature);
        double total = 0;
        weights_.resize(cand_.size());
        for (std::size_t i = 0; i < cand_.size(); ++i) {
            weights_[i] = std::exp((static_cast<double>(cand_[i].logit) - m) * inv_t);
            total += weights_[i];
        }
        for (std::size_t i = 0; i < cand_.size(); ++i) cand_[i].prob = static_cast<float>(weights_[i] / total);

        const double u = rng_.next_double() * total;
        double cum = 0;
        for (std::size_t i = 0; i < cand_.size(); ++i) {
            cum += weights_[i];
            if (u < cum) return cand_[i].id;
        }
        // Rounding left u at the very top: the last token with any weight.
        for (std::size_t i = cand_.size(); i-- > 0;)
            if (weights_[i] > 0) return cand_[i].id;
        return cand_.front().id;
    }

    // The tokens the last sample() chose among, with their probabilities
    // (for temperature 0: the chosen token alone). Valid until the next call.
    std::span<const candidate> candidates() const noexcept { return cand_; }

    // The logits of the last sample() after the repetition penalty.
    std::span<const float> penalized_logits() const noexcept { return logits_; }

private:
    static sampler_params validated(const sampler_params& p) {
        const auto num = [](float v) { return std::to_string(v); };
        if (!(p.temperature >= 0.0f) || std::isinf(p.temperature))
            throw error("sampler: temperature must be finite and >= 0 (0 = greedy), got " + num(p.temperature));
        if (p.top_k < 0) throw error("sampler: top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
        if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
            throw error("sampler: top_p must be in (0, 1] (1 = off), got " + num(p.top_p));
        if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
            throw error("sampler: min_p must be in [0, 1] (0 = off), got " + num(p.min_p));
        if (!(p.repetition_penalty > 0.0f) || std::isinf(p.repetition_penalty))
            throw error("sampler: repetition_penalty must be finite and > 0 (1 = off), got " +
                        num(p.repetition_penalty));
        if (p.repetition_last_n < -1)
            throw error("sampler: repetition_last_n must be >= -1 (-1 = all, 0 = off), got " +
                        std::to_string(p.repetition_last_n));
        return p;
    }

    void apply_repetition_penalty(std::span<const int32_t> recent) {
        if (params_.repetition_penalty == 1.0f || params_.repetition_last_n == 0 || recent.empty()) return;
        const std::size_t n = logits_.size();
        std::size_t window = recent.size();
        if (params_.repetition_last_n > 0) window = std::min(window, static_cast<std::size_t>(params_.repetition_last_n));
        const auto ids = recent.last(window);
        if (seen_.size() < n) seen_.resize(n, 0);
        if (++stamp_ == 0) {  // wrapped: forget every old mark
            std::fill(seen_.begin(), seen_.end(), 0u);
            stamp_ = 1;
        }
        const float pen = params_.repetition_penalty;
        for (const int32_t id : ids) {
            if (id < 0 || static_cast<std::size_t>(id) >= n)
                throw error("sampler: recent token id " + std::to_string(id) + " is outside the " +
                            std::to_string(n) + " logits");
            auto& mark = seen_[static_cast<std::size_t>(id)];
            if (mark == stamp_) continue;  // each distinct id once
            mark = stamp_;
            float& l = logits_[static_cast<std::size_t>(id)];
            if (l == -std::numeric_limits<float>::infinity()) continue;
            // Clamped so that an extreme penalty cannot turn a finite logit
            // into an infinity.
            l = std::clamp(l > 0.0f ? l / pen : l * pen, std::numeric_limits<float>::lowest(),
                           std::numeric_limits<float>::max());
        }
    }

    sampler_params params_;
    xoshiro256ss rng_;
    std::vector<float> logits_;
    std::vector<candidate> cand_;
    std::vector<double> weights_;
    std::vector<uint32_t> seen_;
    uint32_t stamp_ = 0;
};

}  // namespace ncas
