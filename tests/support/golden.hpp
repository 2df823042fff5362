#pragma once
// The golden data written by tools/make_tiny_models.py from the float64
// reference: a tiny model, a token sequence, the reference's logits at every
// position and what its MoD routers and MoE gates decided.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "json.hpp"

namespace test_golden {

inline std::string data_dir() { return NCAS_TEST_DATA; }

struct golden {
    std::string name, model_path;
    std::vector<int32_t> tokens;
    int64_t n_vocab = 0;
    std::vector<int64_t> mod_kept;                // [L]
    std::vector<std::vector<int64_t>> expert_use; // [L][E] tokens per expert, from the reference's choices
    std::vector<float> logits;                    // [T, V]
    double max_abs_logit = 0, tolerance = 0;
};

inline golden load(const std::string& name) {
    const std::string dir = data_dir() + "/tiny/";
    const test_json::value j = test_json::parse_file(dir + name + ".json");
    golden g;
    g.name = name;
    g.model_path = dir + j["model"].str();
    g.tokens = j["tokens"].list<int32_t>();
    g.n_vocab = j["n_vocab"].integer();
    g.mod_kept = j["mod_kept"].list<int64_t>();
    for (const auto& layer : j["experts"].arr()) {
        std::vector<int64_t> use;
        for (const auto& tok : layer.arr()) {
            if (tok.is_null()) continue;
            for (const auto& e : tok.arr()) {
                if (size_t(e.integer()) >= use.size()) use.resize(size_t(e.integer()) + 1);
                ++use[size_t(e.integer())];
            }
        }
        g.expert_use.push_back(use);
    }
    g.max_abs_logit = j["max_abs_logit"].num();
    g.tolerance = j["tolerance"].num();
    g.logits.resize(g.tokens.size() * size_t(g.n_vocab));
    std::ifstream in(dir + name + ".logits.f32", std::ios::binary);
    in.read(reinterpret_cast<char*>(g.logits.data()), std::streamsize(g.logits.size() * 4));
    if (!in) throw std::runtime_error("short golden logits for " + name);
    return g;
}

// The reference with K and V rounded through a quantised cache's block format
// (tools/make_tiny_models.py writes kv/NAME.q8_0.logits.f32 and kv/NAME.q4_0.logits.f32):
// g with those logits, their max |logit| and the MoD counts of that run (kv/NAME.*.json).
inline golden with_kv_logits(golden g, const std::string& kv) {
    std::ifstream in(data_dir() + "/tiny/kv/" + g.name + "." + kv + ".logits.f32", std::ios::binary);
    in.read(reinterpret_cast<char*>(g.logits.data()), std::streamsize(g.logits.size() * 4));
    if (!in) throw std::runtime_error("short " + kv + " KV golden logits for " + g.name);
    const test_json::value j = test_json::parse_file(data_dir() + "/tiny/kv/" + g.name + "." + kv + ".json");
    g.mod_kept = j["mod_kept"].list<int64_t>();  // the rounded cache's outputs may route differently
    g.max_abs_logit = j["max_abs_logit"].num();
    return g;
}

inline std::vector<std::string> all_models() {
    std::vector<std::string> names;
    const test_json::value index = test_json::parse_file(data_dir() + "/tiny/index.json");
    for (const auto& v : index["models"].arr()) names.push_back(v.str());
    return names;
}

// ---- checks every backend's session runs the same way ----------------------

// Largest |ours − reference| over all positions, relative to max|reference logit|.
inline double relative_error(const std::vector<float>& ours, const golden& g) {
    double worst = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
        if (!std::isfinite(ours[i])) return INFINITY;
        worst = std::max(worst, std::abs(double(ours[i]) - double(g.logits[i])));
    }
    return worst / g.max_abs_logit;
}

// The golden tokens through s.evaluate: [T, V] logits.
template <class Session>
std::vector<float> evaluate(Session& s, const golden& g, bool batched = true) {
    std::vector<float> out(g.tokens.size() * size_t(g.n_vocab));
    s.evaluate(g.tokens, [&](int64_t i, std::span<const float> l) { std::copy(l.begin(), l.end(), out.begin() + i * g.n_vocab); },
               batched);
    return out;
}

// Ties go to the lower id, as in the references.
inline int32_t argmax(std::span<const float> l) { return int32_t(std::max_element(l.begin(), l.end()) - l.begin()); }

// Greedy decoding: the prompt, then `steps` tokens in all, each fed back.
template <class Session>
std::vector<int32_t> greedy(Session& s, std::span<const int32_t> prompt, int steps) {
    std::vector<int32_t> out{argmax(s.prefill(prompt))};
    while (int(out.size()) < steps) out.push_back(argmax(s.decode(out.back())));
    return out;
}

// Decodes the golden tokens one at a time, rewinds to half, decodes the rest
// again: the tail's logits must repeat bit for bit.
template <class Session>
void expect_rewind_reproduces_tail(Session& s, const golden& g) {
    std::vector<std::vector<float>> first;
    for (int32_t t : g.tokens) {
        auto l = s.decode(t);
        first.emplace_back(l.begin(), l.end());
    }
    const int64_t keep = int64_t(g.tokens.size()) / 2;
    s.rewind(keep);
    EXPECT_EQ(s.n_past(), keep);
    for (size_t i = size_t(keep); i < g.tokens.size(); ++i) {
        auto l = s.decode(g.tokens[i]);
        EXPECT_EQ(std::vector<float>(l.begin(), l.end()), first[i]) << "position " << i;
    }
}

}  // namespace test_golden
