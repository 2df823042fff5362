#pragma once
// The golden data written by tools/make_tiny_models.py from the float64
// reference: a tiny model, a token sequence, the reference's logits at every
// position and what its MoD routers and MoE gates decided.
#include <cmath>
#include <fstream>
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

inline std::vector<std::string> all_models() {
    std::vector<std::string> names;
    const test_json::value index = test_json::parse_file(data_dir() + "/tiny/index.json");
    for (const auto& v : index["models"].arr()) names.push_back(v.str());
    return names;
}

}  // namespace test_golden
