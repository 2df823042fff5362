#pragma once
// Synthetic models for the benchmark: random weights of exactly a preset's
// shape, written once to a cache file so full-size presets can be measured on
// any machine. An ncas-diffmoe file (λ vectors, sub-norm, MoD routers on odd
// layers) or a llama-architecture Mixtral-style file with the same expert bytes.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <ncas/format/gguf_writer.hpp>
#include <ncas/ncas.hpp>

#include "progress.hpp"

namespace ncas::cli {

struct synthetic_spec {
    model_dims dims;
    std::string preset;
    weight_type type = weight_type::q4_0;
    int64_t n_vocab = 32000;
    bool llama = false;  // Mixtral-style: swiglu experts with F·2/3 so an expert has the same bytes

    std::string file_name() const {
        std::string t(type_name(type));
        for (char& c : t) c = char(std::tolower(c));
        return preset + (llama ? "-llama" : "") + "-" + t + "-v" + std::to_string(n_vocab) + ".gguf";
    }
};

// Uniform values in [-a, a], from a fixed seed: fast enough for billions of weights.
class uniform_stream {
public:
    explicit uniform_stream(uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ull + 1) {}
    void fill(float* out, int64_t n, float a) {
        for (int64_t i = 0; i < n; ++i) {
            s_ ^= s_ << 13, s_ ^= s_ >> 7, s_ ^= s_ << 17;
            out[i] = a * (float(int32_t(s_ >> 32)) * (1.0f / 2147483648.0f));
        }
    }

private:
    uint64_t s_;
};

inline std::string write_synthetic(const synthetic_spec& spec, const std::string& dir, progress_mode progress) {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    const std::string path = (fs::path(dir) / spec.file_name()).string();
    if (fs::exists(path)) return path;

    model_dims m = spec.dims;
    const bool llama = spec.llama;
    const std::string a = llama ? "llama" : "ncas-diffmoe";
    const int64_t D = m.n_embd, V = spec.n_vocab, E = m.n_expert, d = m.head_k, dv = m.head_v;
    const int64_t F = llama ? m.n_ff * 2 / 3 / quant_block * quant_block : m.n_ff;
    gguf_writer w;
    w.set_string("general.architecture", a);
    w.set_string("general.name", "synthetic " + spec.preset);
    w.set_uint32(a + ".context_length", uint32_t(m.n_ctx));
    w.set_uint32(a + ".embedding_length", uint32_t(D));
    w.set_uint32(a + ".block_count", uint32_t(m.n_layer));
    w.set_uint32(a + ".feed_forward_length", uint32_t(F));
    w.set_uint32(a + ".attention.head_count", uint32_t(m.n_head));
    w.set_uint32(a + ".attention.head_count_kv", uint32_t(m.n_head_kv));
    w.set_uint32(a + ".attention.key_length", uint32_t(llama ? dv : d));
    w.set_uint32(a + ".attention.value_length", uint32_t(dv));
    w.set_uint32(a + ".expert_count", uint32_t(E));
    w.set_uint32(a + ".expert_used_count", uint32_t(m.n_expert_used));
    w.set_uint32(a + ".vocab_size", uint32_t(V));
    w.set_float32(a + ".rope.freq_base", llama ? 10000.0f : 31415.926f);
    if (!llama) w.set_string(a + ".ffn_kind", "gelu");

    int64_t total_bytes = 0, seed = 1;
    auto add = [&](const std::string& name, weight_type t, std::vector<int64_t> ne, float scale) {
        const int64_t cols = ne[0];
        total_bytes += int64_t(gguf_writer::tensor_bytes(t, ne));
        w.add_tensor(name, t, ne, [t, cols, scale, s = seed++](std::span<std::byte> dst) {
            uniform_stream rng{uint64_t(s)};
            std::vector<float> row(static_cast<size_t>(cols));
            const int64_t rb = row_bytes(t, cols);
            for (int64_t r = 0; r < int64_t(dst.size()) / rb; ++r) {
                if (scale == 0) std::fill(row.begin(), row.end(), 1.0f);
                else rng.fill(row.data(), cols, scale);
                quantize_row(t, row.data(), dst.data() + r * rb, cols);
            }
        });
    };
    const weight_type t = spec.type, f32 = weight_type::f32;
    const float sD = std::sqrt(3.0f / float(D)), sF = std::sqrt(3.0f / float(F)), sA = std::sqrt(3.0f / float(m.attn_dim()));
    add("token_embd.weight", t, {D, V}, 1.0f);
    add("output_norm.weight", f32, {D}, 0);
    add("output.weight", t, {D, V}, sD);
    for (int64_t l = 0; l < m.n_layer; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_norm.weight", f32, {D}, 0);
        add(b + "ffn_norm.weight", f32, {D}, 0);
        add(b + "attn_q.weight", t, {D, m.q_dim()}, sD);
        add(b + "attn_k.weight", t, {D, m.k_dim()}, sD);
        add(b + "attn_v.weight", t, {D, m.v_dim()}, sD);
        add(b + "attn_output.weight", t, {m.attn_dim(), D}, sA);
        add(b + "ffn_gate_inp.weight", f32, {D, E}, sD);
        add(b + "ffn_up_exps.weight", t, {D, F, E}, sD);
        add(b + "ffn_down_exps.weight", t, {F, D, E}, sF);
        if (llama) {
            add(b + "ffn_gate_exps.weight", t, {D, F, E}, sD);
        } else {
            for (const char* n : {"q1", "k1", "q2", "k2"}) add(b + "attn_lambda_" + n + ".weight", f32, {d}, 0.1f);
            add(b + "attn_sub_norm.weight", f32, {dv}, 0);
            if (l % 2) add(b + "mod_router.weight", f32, {D}, sD);  // threshold 0: about half the tokens skip
        }
    }
    const std::string tmp = path + ".part";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw error(tmp + ": cannot create: " + std::strerror(errno));
    int64_t done = 0;
    bool ok = true;
    {
        progress_bar bar("writing " + spec.file_name(), total_bytes >> 20, "MiB", progress);
        w.write([&](std::span<const std::byte> bytes) {
            ok = ok && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
            done += int64_t(bytes.size());
            bar.update(std::min(done, total_bytes) >> 20);
        });
    }
    ok = std::fclose(f) == 0 && ok;
    if (!ok) { std::remove(tmp.c_str()); throw error(tmp + ": write failed (disk full?)"); }
    fs::rename(tmp, path);
    return path;
}

}  // namespace ncas::cli
