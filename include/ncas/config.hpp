#pragma once
// Model configuration: the run-time config read from a file, the paper's three
// presets as compile-time types, and the parameter / memory accounting both use.
//
// One vocabulary for sizes, used everywhere:
//   D  n_embd      residual width           H   n_head      attention heads
//   L  n_layer     layers                   Hkv n_head_kv   key/value heads (GQA)
//   V  n_vocab     vocabulary               d   head_k      width of one attention map's q/k
//   F  n_ff        expert FFN width         dv  head_v      value width per head (2d differential)
//   E  n_expert    experts per layer        k   n_expert_used
//   M  n_maps      attention maps per head: 2 differential, 1 standard (llama)
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ncas/format/quant.hpp"

namespace ncas {

enum class architecture { ncas_diffmoe, llama };
enum class ffn_kind { gelu, swiglu };
enum class mod_scale { sigmoid, raw, none };

constexpr std::string_view arch_name(architecture a) { return a == architecture::llama ? "llama" : "ncas-diffmoe"; }

// The integer shape of a model: a literal type, so presets and their accounting are constexpr.
struct model_dims {
    architecture arch = architecture::ncas_diffmoe;
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
    int64_t head_k = 0, head_v = 0, n_maps = 2;
    int64_t n_ff = 0, n_expert = 1, n_expert_used = 1, n_ctx = 0;
    ffn_kind ffn = ffn_kind::gelu;
    bool tied_output = true;
    int64_t n_mod_layers = 0;  // layers with a MoD router (one D-vector each)

    constexpr int64_t q_dim() const { return n_maps * n_head * head_k; }      // Wq rows
    constexpr int64_t k_dim() const { return n_maps * n_head_kv * head_k; }   // Wk rows, one K row of the cache
    constexpr int64_t v_dim() const { return n_head_kv * head_v; }            // Wv rows, one V row of the cache
    constexpr int64_t attn_dim() const { return n_head * head_v; }            // Wo columns
    constexpr int64_t expert_matrices() const { return ffn == ffn_kind::swiglu ? 3 : 2; }
};

// ---- accounting (all constexpr) -----------------------------------------

struct param_counts {
    int64_t embedding;  // token_embd (+ output when untied)
    int64_t attention;  // all layers: Wq Wk Wv Wo, norms, λ, sub-norm
    int64_t experts;    // all layers, all experts
    int64_t routing;    // MoE gates and MoD routers
    int64_t other;      // output norm
    constexpr int64_t total() const { return embedding + attention + experts + routing + other; }
};

constexpr int64_t params_per_expert(const model_dims& m) { return m.expert_matrices() * m.n_embd * m.n_ff; }

constexpr param_counts count_params(const model_dims& m) {
    const int64_t D = m.n_embd;
    const int64_t lambda = m.n_maps == 2 ? 4 * m.head_k + m.head_v + m.n_expert : 0;  // λ vectors, sub-norm, expert λ
    const int64_t attn_layer = D * (m.q_dim() + m.k_dim() + m.v_dim()) + m.attn_dim() * D + 2 * D + lambda;
    const int64_t gate = m.n_expert > 1 ? D * m.n_expert : 0;
    return {m.n_vocab * D * (m.tied_output ? 1 : 2), m.n_layer * attn_layer,
            m.n_layer * m.n_expert * params_per_expert(m), m.n_layer * gate + m.n_mod_layers * D, D};
}

// Parameters a token touches when every layer processes it: all but the unused experts.
constexpr int64_t active_params(const model_dims& m) {
    return count_params(m).total() - m.n_layer * (m.n_expert - m.n_expert_used) * params_per_expert(m);
}

// Bytes of one expert (its up [+ gate] and down matrices) stored as type t.
constexpr int64_t expert_bytes(const model_dims& m, weight_type t) {
    return (m.expert_matrices() - 1) * m.n_ff * row_bytes(t, m.n_embd) + m.n_embd * row_bytes(t, m.n_ff);
}

// Bytes of all weights with matrices of type t (vectors stay f32).
constexpr int64_t weight_bytes(const model_dims& m, weight_type t) {
    const param_counts p = count_params(m);
    const int64_t D = m.n_embd;
    const int64_t vectors = m.n_layer * (2 * D + (m.n_maps == 2 ? 4 * m.head_k + m.head_v + m.n_expert : 0)) + D +
                            p.routing;
    const int64_t matrices = p.total() - vectors - m.n_layer * m.n_expert * params_per_expert(m);
    return vectors * 4 + matrices / traits_of(t).block_values * traits_of(t).block_bytes +
           m.n_layer * m.n_expert * expert_bytes(m, t);
}

// KV cache bytes per token per layer that processes it, and for a whole context.
constexpr int64_t kv_bytes_per_token(const model_dims& m, weight_type kv_type) {
    return m.n_layer * (kv_row_bytes(kv_type, m.k_dim()) + kv_row_bytes(kv_type, m.v_dim()));
}
constexpr int64_t kv_bytes(const model_dims& m, int64_t n_ctx, weight_type kv_type) {
    return n_ctx * kv_bytes_per_token(m, kv_type);
}

// ---- run-time config ------------------------------------------------------

struct model_config : model_dims {
    double rope_theta = 10000.0;
    float norm_eps = 1e-5f;
    bool expert_weights_norm = true;
    float mod_threshold = 0.0f;
    mod_scale scale = mod_scale::sigmoid;
    std::vector<float> lambda_init;  // per layer
};

// ---- presets: the paper's table (docs/spec.md §3) --------------------------

// A preset fixes the dimensions; vocabulary, GQA ratio, output tying and the MoD
// layer set come from the file (counts below use vocabulary 0 and no routers).
constexpr model_dims preset_dims(int64_t D, int64_t L, int64_t H, int64_t d, int64_t E, int64_t k, int64_t F,
                                 int64_t ctx) {
    model_dims m;
    m.n_embd = D, m.n_layer = L, m.n_head = H, m.n_head_kv = H, m.head_k = d, m.head_v = 2 * d;
    m.n_expert = E, m.n_expert_used = k, m.n_ff = F, m.n_ctx = ctx;
    return m;
}

struct preset_pi {
    static constexpr std::string_view name = "PI";
    static constexpr model_dims dims = preset_dims(4608, 54, 36, 64, 9, 2, 15360, 32768);
    static constexpr double claimed_params = 54e9;
};
struct preset_pi_s {
    static constexpr std::string_view name = "PI-S";
    static constexpr model_dims dims = preset_dims(3456, 36, 27, 64, 6, 2, 10240, 16384);
    static constexpr double claimed_params = 18e9;
};
struct preset_pi_p {
    static constexpr std::string_view name = "PI-P";
    static constexpr model_dims dims = preset_dims(2592, 27, 18, 72, 4, 2, 6912, 8192);
    static constexpr double claimed_params = 4.8e9;
};
// A config read from the file, with no compile-time expectations.
struct dynamic_config {
    static constexpr std::string_view name = "file";
};

template <class P>
concept preset = requires { P::dims; P::name; };

// Checks the paper's table is self-consistent: the heads tile the residual
// width exactly, and the computed size is where docs/spec.md §3 says it is.
template <preset P>
constexpr bool preset_is_consistent() {
    constexpr model_dims m = P::dims;
    return m.attn_dim() == m.n_embd && m.head_v == 2 * m.head_k && m.n_expert_used <= m.n_expert &&
           m.n_embd % quant_block == 0 && m.n_ff % quant_block == 0;
}
static_assert(preset_is_consistent<preset_pi>() && preset_is_consistent<preset_pi_s>() &&
              preset_is_consistent<preset_pi_p>());
// 2-matrix experts: PI is ≈74B, not the claimed 54B; PI-S ≈18B and PI-P ≈5B agree (docs/spec.md §3).
static_assert(count_params(preset_pi::dims).total() / 1'000'000'000 == 73);
static_assert(count_params(preset_pi_s::dims).total() / 1'000'000'000 == 17);
static_assert(count_params(preset_pi_p::dims).total() / 100'000'000 == 45);
static_assert(active_params(preset_pi_p::dims) / 100'000'000 == 26);
// One PI-P expert at Q4_0: 2 · 2592 · 6912 values at 18 bytes / 32 = 20.2 MB.
static_assert(expert_bytes(preset_pi_p::dims, weight_type::q4_0) == 2 * 2592 * 6912 / 32 * 18);
// PI-P at Q4_0 is the ~2.7 GB file the benchmark generates (vocabulary excluded).
static_assert(weight_bytes(preset_pi_p::dims, weight_type::q4_0) / 100'000'000 == 25);
static_assert(kv_bytes_per_token(preset_pi_p::dims, weight_type::f16) == 27 * (2592 + 2592) * 2);
// A q8_0 cache: 34 bytes a block of 32; PI-P's 8k context in 1.22 GB (issue #20's bound: 1.25 GB).
static_assert(kv_bytes_per_token(preset_pi_p::dims, weight_type::q8_0) == 27 * (81 + 81) * 34);
static_assert(kv_bytes(preset_pi_p::dims, 8192, weight_type::q8_0) <= 1'250'000'000);

}  // namespace ncas
