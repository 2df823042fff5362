#pragma once
// The forward pass (docs/spec.md §1), written once for every backend.
//
// A backend runs a batch of T consecutive tokens at positions p0…p0+T−1 as a
// *pass*: an object that owns the batch's activations and implements the verbs
// below. run_forward calls them in the model's order; a backend never restates
// the order, it only says how each step is computed on its hardware (the CPU:
// cpu/forward.hpp; Vulkan: vk/forward.hpp).
//
//   x = token_embd[token]                                    [T, D]        embed()
//   for each layer l:
//     R = tokens whose MoD score router·x > threshold        (all tokens   route(l) -> false: none
//         x_R, their positions and mix factors s               without one)    entered, skip the layer
//     xn = RMSNorm(x_R; attn_norm)                           [n, D]        norm(l, attention)
//     λ_t = λ_l (+ Σ_e ĝ_e·λexp_e, the layer's gate on xn)   [n]           lambda(l)
//     q, k, v = Wq·xn, Wk·xn, Wv·xn                                        qkv(l)
//     RoPE(q), RoPE(k); the layer's cache += (k, v, position)              rope_store(l)
//     o = (softmax(q₀K₀ᵀ/√d) − λ_t·softmax(q₁K₁ᵀ/√d))·V      [n, attn_dim]  attend(l)
//         per head over the cached rows up to the token [then sub-norm · (1 − λ_init)]
//     h = x_R + Wo·o                                         [n, D]        project(l)
//     (the next layer's experts may be guessed from h)                     lookahead(l + 1)
//     xn = RMSNorm(h; ffn_norm)                                            norm(l, ffn)
//     top-k of softmax(W_gate·xn), ties to the lower index   [n, k]        gate(l)
//     h += Σ_e ĝ_e·FFN_e(xn), each chosen expert read once a batch          experts(l)
//     x_R ← x_R + s·(h − x_R)   (x_R = h without a router or with scale none)   mix(l)
//   logits = output · RMSNorm(x; output_norm)                [T or 1, V]   logits(all)
//
// A new model feature goes here once (a verb or a flag of layer_plan) and into
// each backend's verb once; docs/architecture.md walks through an example.
#include <concepts>
#include <cstdint>
#include <vector>

#include "ncas/cpu/ops.hpp"
#include "ncas/model/weights.hpp"

namespace ncas {

// What one layer of this model does: the choices the forward pass makes per layer.
struct layer_plan {
    int64_t index = 0;
    bool mod = false;         // a Mixture-of-Depths router picks the tokens that enter
    bool mix = false;         // x_R ← x_R + s·(h − x_R); false: x_R = h
    bool lambda_exp = false;  // λ_t adds the expert-conditional term (needs the gate on the attention input)
    bool gate = false;        // a gate routes tokens to experts; false: E = 1, every token to expert 0 at weight 1

    static layer_plan of(const model_config& c, const model_weights& w, int64_t l) {
        const layer_weights& lw = w.layers[size_t(l)];
        const bool mod = !lw.mod_router.empty();
        return {.index = l, .mod = mod, .mix = mod && c.scale != mod_scale::none, .lambda_exp = !lw.lambda_exp.empty(),
                .gate = lw.gate_inp.data != nullptr};
    }
};

enum class norm_site { attention, ffn };  // RMSNorm(x_R; attn_norm) or RMSNorm(h; ffn_norm)

// The verbs a backend's pass implements (see the top of this file).
template <class P>
concept forward_pass = requires(P& p, const layer_plan& l, norm_site s, bool all) {
    p.embed();
    { p.route(l) } -> std::same_as<bool>;
    p.norm(l, s);
    p.lambda(l);
    p.qkv(l);
    p.rope_store(l);
    p.attend(l);
    p.project(l);
    p.lookahead(l);
    p.gate(l);
    p.experts(l);
    p.mix(l);
    p.logits(all);
};

// Runs one batch through the model: the order of docs/spec.md §1.
template <forward_pass P>
void run_forward(P& p, const model_config& c, const model_weights& w, bool all_logits) {
    p.embed();
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const layer_plan lp = layer_plan::of(c, w, l);
        if (!p.route(lp)) continue;
        p.norm(lp, norm_site::attention);
        p.lambda(lp);
        p.qkv(lp);
        p.rope_store(lp);
        p.attend(lp);
        p.project(lp);
        if (l + 1 < c.n_layer) p.lookahead(layer_plan::of(c, w, l + 1));
        p.norm(lp, norm_site::ffn);
        p.gate(lp);
        p.experts(lp);
        p.mix(lp);
    }
    p.logits(all_logits);
}

// The routing rules both backends implement (the Vulkan backend in shaders/route.comp
// and shaders/moe_route.comp, checked against these by tests/vk/test_vk_ops.cpp).

// A token's MoD mix factor s from its router score r (> threshold: it entered).
inline float mod_factor(mod_scale scale, float r) {
    return scale == mod_scale::sigmoid ? cpu::sigmoid(r) : scale == mod_scale::raw ? r : 1.0f;
}

// Top-k of softmax(logits): ids in descending probability, ties to the lower
// expert index; weights renormalised over the k when `renorm`.
inline void route_top_k(float* logits, int64_t E, int64_t k, bool renorm, int32_t* ids, float* weights) {
    cpu::softmax(logits, E);
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
        int32_t best = -1;
        for (int32_t e = 0; e < E; ++e) {
            bool taken = false;
            for (int64_t i = 0; i < j; ++i) taken |= ids[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;  // strict >: lower index wins ties
        }
        ids[j] = best;
        sum += weights[j] = logits[best];
    }
    if (renorm)
        for (int64_t j = 0; j < k; ++j) weights[j] /= sum;
}

// What one run of the model did: per-layer MoD and expert counts, for stats and tests.
struct run_stats {
    std::vector<int64_t> tokens_in;    // [L] tokens offered to each layer
    std::vector<int64_t> tokens_kept;  // [L] tokens the layer processed (routed by MoD)
    std::vector<int64_t> expert_use;   // [L, E] tokens per expert
    explicit run_stats(const model_dims& m = {})
        : tokens_in(size_t(m.n_layer)), tokens_kept(size_t(m.n_layer)), expert_use(size_t(m.n_layer * m.n_expert)) {}
};

}  // namespace ncas
