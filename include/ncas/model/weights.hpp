#pragma once
// From a parsed GGUF file to a model_config and the weights bound by name, with
// every shape and type checked against the config (docs/spec.md §2). Matrices are used
// in place; the small f32 vectors (norms, λ, routers) are copied out.
#include <cmath>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ncas/config.hpp"
#include "ncas/format/gguf.hpp"
#include "ncas/memory/expert_source.hpp"
#include "ncas/tensor.hpp"

namespace ncas {

// ---- config ---------------------------------------------------------------

inline void check_special_ids(const gguf_file& f, int64_t n_vocab);

inline model_config read_config(const gguf_file& f) {
    const std::string arch = f.get_string("general.architecture");
    model_config c;
    if (arch == "ncas-diffmoe") c.arch = architecture::ncas_diffmoe;
    else if (arch == "llama") c.arch = architecture::llama;
    else f.fail("unknown architecture '" + arch + "' (ncas runs ncas-diffmoe and llama)");
    const std::string p = arch + ".";
    const bool diff = c.arch == architecture::ncas_diffmoe;

    auto dim = [&](const std::string& key, int64_t dflt = -1) {
        const std::string k = p + key;
        if (const gguf_value* v = f.find(k); v && v->type == gguf_type::array)
            f.fail("metadata key '" + k + "' is an array; ncas needs one value for all layers");
        const uint64_t v = dflt < 0 ? f.get_uint(k) : f.get_uint(k, uint64_t(dflt));
        if (v == 0 || v > (uint64_t(1) << 31)) f.fail("metadata key '" + k + "' = " + std::to_string(v) + " is out of range");
        return int64_t(v);
    };
    c.n_embd = dim("embedding_length");
    c.n_layer = dim("block_count");
    // Each layer is several tensors: a count beyond the file's tensors is refused here,
    // before anything is sized by it (a block_count of 5·10^8 once allocated 2 GB of λ_init).
    if (uint64_t(c.n_layer) > f.tensors().size())
        f.fail("metadata key '" + p + "block_count' = " + std::to_string(c.n_layer) + " is more layers than the file's " +
               std::to_string(f.tensors().size()) + " tensors can hold");
    c.n_head = dim("attention.head_count");
    c.n_head_kv = dim("attention.head_count_kv", c.n_head);
    c.n_ff = dim("feed_forward_length");
    c.n_ctx = dim("context_length");
    c.n_maps = diff ? 2 : 1;
    c.head_k = dim("attention.key_length", c.n_embd / c.n_head / c.n_maps);
    c.head_v = dim("attention.value_length", c.n_maps * c.head_k);
    c.n_expert = f.has(p + "expert_count") ? dim("expert_count") : 1;
    // A file with experts says how many a token uses: a silent default of 1 would run top-1 routing.
    if (c.n_expert > 1 && !f.has(p + "expert_used_count"))
        f.fail("missing metadata key '" + p + "expert_used_count' for " + std::to_string(c.n_expert) + " experts");
    c.n_expert_used = f.has(p + "expert_used_count") ? dim("expert_used_count") : 1;
    if (f.has(p + "vocab_size")) c.n_vocab = dim("vocab_size");
    else if (f.has("tokenizer.ggml.tokens")) c.n_vocab = int64_t(f.get_array("tokenizer.ggml.tokens").size());
    else f.fail("no vocab_size and no tokenizer.ggml.tokens: the vocabulary size is unknown");

    if (c.n_head % c.n_head_kv) f.fail("head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
                                       std::to_string(c.n_head_kv));
    if (diff && c.head_v != 2 * c.head_k)
        f.fail("value_length " + std::to_string(c.head_v) + " must be twice key_length " + std::to_string(c.head_k));
    if (c.head_k % 2) f.fail("key_length " + std::to_string(c.head_k) + " must be even for RoPE pairs");
    if (c.n_expert_used > c.n_expert)
        f.fail("expert_used_count " + std::to_string(c.n_expert_used) + " exceeds expert_count " + std::to_string(c.n_expert));

    // Floats that must be finite (and positive, where `positive`): a NaN or an infinity
    // would make every RoPE angle, norm or MoD decision meaningless.
    // `as_f32`: the engine computes with the value as a float, so it must be one after rounding.
    auto real = [&](const std::string& key, double dflt, bool positive, bool as_f32) {
        const double v = f.get_float(p + key, dflt), used = as_f32 ? double(float(v)) : v;
        if (!std::isfinite(used) || (positive && !(used > 0)))
            f.fail("metadata key '" + p + key + "' = " + std::to_string(v) + " is not " +
                   (positive ? "a finite positive number" : "a finite number"));
        return used;
    };
    c.norm_eps = float(real("attention.layer_norm_rms_epsilon", 1e-5, true, true));
    c.rope_theta = real("rope.freq_base", 10000.0, true, false);
    c.expert_weights_norm = f.get_bool(p + "expert_weights_norm", true);

    const std::string kind = f.get_string(p + "ffn_kind", diff ? "gelu" : "swiglu");
    if (kind == "gelu") c.ffn = ffn_kind::gelu;
    else if (kind == "swiglu") c.ffn = ffn_kind::swiglu;
    else f.fail("unknown ffn_kind '" + kind + "' (expected gelu or swiglu)");

    c.mod_threshold = float(real("mod.threshold", 0.0, false, true));
    const std::string scale = f.get_string(p + "mod.scale", "sigmoid");
    if (scale == "sigmoid") c.scale = mod_scale::sigmoid;
    else if (scale == "raw") c.scale = mod_scale::raw;
    else if (scale == "none") c.scale = mod_scale::none;
    else f.fail("unknown mod.scale '" + scale + "' (expected sigmoid, raw or none)");

    if (f.has(p + "attention.lambda_init")) {
        const std::vector<double> li = f.get_floats(p + "attention.lambda_init");
        if (int64_t(li.size()) != c.n_layer)
            f.fail("attention.lambda_init has " + std::to_string(li.size()) + " values for " + std::to_string(c.n_layer) + " layers");
        for (size_t l = 0; l < li.size(); ++l)
            if (!std::isfinite(float(li[l])))
                f.fail("attention.lambda_init[" + std::to_string(l) + "] = " + std::to_string(li[l]) + " is not a finite number");
        c.lambda_init.assign(li.begin(), li.end());
    } else {
        for (int64_t l = 0; l < c.n_layer; ++l) c.lambda_init.push_back(float(0.8 - 0.6 * std::exp(-0.3 * double(l))));
    }
    check_special_ids(f, c.n_vocab);
    return c;
}

// Every special token id the file names (tokenizer.ggml.bos_token_id, eos, unknown,
// padding, ...) lies inside the vocabulary: an eos outside it would never end a generation.
inline void check_special_ids(const gguf_file& f, int64_t n_vocab) {
    for (const auto& [key, v] : f.metadata()) {
        if (!key.starts_with("tokenizer.ggml.") || !key.ends_with("_token_id")) continue;
        const uint64_t id = f.get_uint(key);
        if (id >= uint64_t(n_vocab))
            f.fail("metadata key '" + key + "' = " + std::to_string(id) + " is outside the vocabulary of " +
                   std::to_string(n_vocab) + " tokens");
    }
}

// ---- weights --------------------------------------------------------------

// One layer's tensors; the expert tensors hold E slabs each (ncas/tensor.hpp).
struct layer_weights {
    std::vector<float> attn_norm, ffn_norm;  // [D]
    weight_matrix wq, wk, wv, wo;            // [q_dim, D], [k_dim, D], [v_dim, D], [D, attn_dim]
    float lambda = 0.0f;                     // λ_l (differential only)
    float lambda_init = 0.0f;
    std::vector<float> sub_norm;             // [dv] or empty
    std::vector<float> lambda_exp;           // [E] or empty
    weight_matrix gate_inp;                  // [E, D]; no data when E == 1 without a gate
    expert_tensor up, gate, down;            // [F, D] ×E, [F, D] ×E (swiglu), [D, F] ×E
    std::vector<float> mod_router;           // [D] or empty
};

// Expert e's slabs where they lie in memory (null for a model that streams its experts).
inline expert_slabs resident_expert(const layer_weights& w, int32_t e) {
    return {w.up.slab_of(e), w.gate.slab_of(e), w.down.slab_of(e)};
}

struct model_weights {
    weight_matrix token_embd;        // [V, D]
    weight_matrix output;            // [V, D] (token_embd when tied)
    std::vector<float> output_norm;  // [D]
    std::vector<layer_weights> layers;
};

// Where a tensor's bytes live: the mapped file, or memory the loader filled.
// Returns null for tensors the caller does not hold (streamed experts).
using tensor_resolver = std::function<const std::byte*(const tensor_info&)>;

class weight_binder {
public:
    weight_binder(const gguf_file& f, const model_config& c, tensor_resolver resolve)
        : f_(f), c_(c), resolve_(std::move(resolve)) {}

    model_weights bind(model_config& c_out) const {
        const int64_t D = c_.n_embd, V = c_.n_vocab;
        model_weights w;
        w.token_embd = matrix("token_embd.weight", D, V);
        w.output = f_.find_tensor("output.weight") ? matrix("output.weight", D, V) : w.token_embd;
        c_out.tied_output = !f_.find_tensor("output.weight");
        w.output_norm = vec("output_norm.weight", D);
        c_out.n_mod_layers = 0;
        for (int64_t l = 0; l < c_.n_layer; ++l) {
            w.layers.push_back(layer(l));
            c_out.n_mod_layers += !w.layers.back().mod_router.empty();
        }
        check_all_used();
        return w;
    }

private:
    const tensor_info& need(const std::string& name) const {
        const tensor_info* t = f_.find_tensor(name);
        if (!t) f_.fail("missing tensor '" + name + "'");
        used_[size_t(t - f_.tensors().data())] = true;
        return *t;
    }
    // A tensor that nothing read means the file describes another model than the one
    // bound (more layers than block_count, both λ forms, a gate for a gelu FFN ...).
    void check_all_used() const {
        std::string unused;
        int64_t n = 0;
        for (size_t i = 0; i < used_.size(); ++i)
            if (!used_[i] && ++n <= 8) unused += (n > 1 ? ", '" : "'") + f_.tensors()[i].name + "'";
        if (n) f_.fail(std::to_string(n) + " tensor" + (n > 1 ? "s" : "") + " that the model does not use: " + unused +
                       (n > 8 ? ", ..." : ""));
    }
    // f32 values that enter every token's computation: a NaN or infinity there is a broken file.
    void check_finite(const std::string& name, std::span<const float> v) const {
        for (size_t i = 0; i < v.size(); ++i)
            if (!std::isfinite(v[i])) f_.fail("tensor '" + name + "' has a non-finite value at element " + std::to_string(i));
    }
    void check_shape(const tensor_info& t, std::initializer_list<int64_t> ne) const {
        bool ok = t.n_dims <= int(ne.size());
        int i = 0;
        for (int64_t n : ne) ok = ok && t.ne[i++] == n;
        if (ok) return;
        std::string want = "[";
        i = 0;
        for (int64_t n : ne) want += (i++ ? ", " : "") + std::to_string(n);
        f_.fail("tensor '" + t.name + "' has shape " + t.shape_string() + ", expected " + want + "]");
    }
    const std::byte* data(const tensor_info& t) const { return resolve_(t); }

    weight_matrix matrix(const std::string& name, int64_t cols, int64_t rows) const {
        const tensor_info& t = need(name);
        check_shape(t, {cols, rows});
        return {t.type, rows, cols, data(t)};
    }
    std::vector<float> vec(const std::string& name, int64_t n) const {
        const tensor_info& t = need(name);
        check_shape(t, {n});
        if (t.type != weight_type::f32) f_.fail("tensor '" + name + "' must be F32, is " + std::string(type_name(t.type)));
        const auto* p = reinterpret_cast<const float*>(data(t));
        if (!p) f_.fail("tensor '" + name + "' has no data");
        check_finite(name, {p, size_t(n)});
        return {p, p + n};
    }
    std::vector<float> opt_vec(const std::string& name, int64_t n) const {
        return f_.find_tensor(name) ? vec(name, n) : std::vector<float>{};
    }
    expert_tensor experts(const std::string& name, int64_t cols, int64_t rows, int64_t n) const {
        const tensor_info& t = need(name);
        check_shape(t, {cols, rows, n});
        return {t.type, rows, cols, data(t), t.offset};
    }

    layer_weights layer(int64_t l) const {
        const std::string b = "blk." + std::to_string(l) + ".";
        const int64_t D = c_.n_embd, F = c_.n_ff, E = c_.n_expert, d = c_.head_k;
        layer_weights w;
        w.attn_norm = vec(b + "attn_norm.weight", D);
        w.ffn_norm = vec(b + "ffn_norm.weight", D);
        w.wq = matrix(b + "attn_q.weight", D, c_.q_dim());
        w.wk = matrix(b + "attn_k.weight", D, c_.k_dim());
        w.wv = matrix(b + "attn_v.weight", D, c_.v_dim());
        w.wo = matrix(b + "attn_output.weight", c_.attn_dim(), D);
        w.lambda_init = c_.lambda_init[size_t(l)];

        if (c_.n_maps == 2) {
            bool any_vector = false;
            for (const char* n : {"q1", "k1", "q2", "k2"}) any_vector |= f_.find_tensor(b + "attn_lambda_" + n + ".weight") != nullptr;
            if (any_vector) {  // all four are then required
                // λ_l = exp(q1·k1) − exp(q2·k2) + λ_init, once at load, in double.
                const auto q1 = vec(b + "attn_lambda_q1.weight", d), k1 = vec(b + "attn_lambda_k1.weight", d);
                const auto q2 = vec(b + "attn_lambda_q2.weight", d), k2 = vec(b + "attn_lambda_k2.weight", d);
                double a = 0, c = 0;
                for (int64_t i = 0; i < d; ++i) a += double(q1[size_t(i)]) * k1[size_t(i)], c += double(q2[size_t(i)]) * k2[size_t(i)];
                w.lambda = float(std::exp(a) - std::exp(c) + double(w.lambda_init));
                if (!std::isfinite(w.lambda))
                    f_.fail("layer " + std::to_string(l) + ": lambda = exp(q1·k1) − exp(q2·k2) + lambda_init is not finite");
            } else if (f_.find_tensor(b + "attn_lambda.weight")) {
                w.lambda = vec(b + "attn_lambda.weight", 1)[0];
            } else {
                f_.fail("layer " + std::to_string(l) + " has neither attn_lambda_q1/k1/q2/k2 nor attn_lambda");
            }
            w.sub_norm = opt_vec(b + "attn_sub_norm.weight", c_.head_v);
            w.lambda_exp = opt_vec(b + "attn_lambda_exp.weight", E);
        }

        const bool has_gate = f_.find_tensor(b + "ffn_gate_inp.weight");
        if (E > 1 && !has_gate) f_.fail("missing tensor '" + b + "ffn_gate_inp.weight' for " + std::to_string(E) + " experts");
        if (has_gate) w.gate_inp = matrix(b + "ffn_gate_inp.weight", D, E);
        if (!w.lambda_exp.empty() && !has_gate)
            f_.fail("tensor '" + b + "attn_lambda_exp.weight' needs the layer's ffn_gate_inp");

        const bool swiglu = c_.ffn == ffn_kind::swiglu;
        if (f_.find_tensor(b + "ffn_up_exps.weight")) {
            w.up = experts(b + "ffn_up_exps.weight", D, F, E);
            w.down = experts(b + "ffn_down_exps.weight", F, D, E);
            if (swiglu) w.gate = experts(b + "ffn_gate_exps.weight", D, F, E);
        } else if (E == 1 && f_.find_tensor(b + "ffn_up.weight")) {  // dense FFN: one expert
            w.up = experts(b + "ffn_up.weight", D, F, 1);
            w.down = experts(b + "ffn_down.weight", F, D, 1);
            if (swiglu) w.gate = experts(b + "ffn_gate.weight", D, F, 1);
        } else {
            f_.fail("missing tensor '" + b + "ffn_up_exps.weight'");
        }
        if (!swiglu && (f_.find_tensor(b + "ffn_gate_exps.weight") || f_.find_tensor(b + "ffn_gate.weight")))
            f_.fail("layer " + std::to_string(l) + " has ffn gate tensors but ffn_kind is gelu");
        if (c_.arch == architecture::ncas_diffmoe) w.mod_router = opt_vec(b + "mod_router.weight", D);
        return w;
    }

    const gguf_file& f_;
    const model_config& c_;
    tensor_resolver resolve_;
    mutable std::vector<bool> used_ = std::vector<bool>(f_.tensors().size());  // [tensor] read by need()
};

}  // namespace ncas
