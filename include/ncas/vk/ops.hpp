#pragma once
// One call per kernel: each function fills the kernel's push constants from
// typed arguments and records the dispatch. Shapes are in the comments; every
// activation is f32, row-major, one row per token slot.
//
// A "slot" is a row of a batch the GPU decides at run time: the kernels read
// how many slots are active (count_at) and which rows they map to (*_index_at)
// from the control buffer, so no count ever travels back to the host.
#include <cmath>

#include "ncas/config.hpp"
#include "ncas/format/quant.hpp"
#include "ncas/vk/pipeline.hpp"

namespace ncas::vk {

// A weight matrix resident on the device: `rows` rows of `cols` values of `type`,
// row 0 at byte `offset` of `view`.
struct gpu_matrix {
    weight_type type = weight_type::f32;
    int64_t rows = 0, cols = 0;
    buffer_view view;
    uint32_t offset = 0;
};

// Which slots a matrix product runs over and where they read and write.
struct slots {
    uint32_t n_max = 1;            // slots dispatched (an upper bound on the active ones)
    uint32_t count_at = none;      // ctrl word holding the active count, or none: n_max
    uint32_t x_index_at = none;    // ctrl list slot -> x row, or none: identity
    uint32_t y_index_at = none;    // ctrl list slot -> y row, or none: identity
    uint32_t scale_at = none;      // ctrl list of f32 per-slot scales (accumulate only)
    bool accumulate = false;       // y += scale · W·x instead of y = W·x
};

// The push constants are filled with designated initializers, so a member the
// GLSL renamed, reordered or retyped fails to compile here once the headers are
// regenerated. A retyped one is a narrowing conversion, which GCC only warns
// about (clang and MSVC reject it): made an error for these functions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wnarrowing"
#endif
namespace ops {

inline constexpr uint32_t tile_rows = 32, tile_slots = 16, tile_wg = 64;  // matmul.comp's tile

// y[slot] (+)= W · x[slot]:   W [rows, cols], x [*, cols], y [*, rows].
// One slot: the matrix-vector kernel (decode); more: the tiled matrix-matrix kernel (prefill).
inline void matmul(recorder& r, const gpu_matrix& w, buffer_view x, buffer_view y, buffer_view ctrl, const slots& s) {
    const matmul_pc pc{.rows = uint32_t(w.rows),
                       .cols = uint32_t(w.cols),
                       .w_offset = w.offset,
                       .n_max = s.n_max,
                       .count_at = s.count_at,
                       .x_index_at = s.x_index_at,
                       .y_index_at = s.y_index_at,
                       .scale_at = s.scale_at,
                       .accumulate = s.accumulate ? 1u : 0u};
    const uint32_t type = uint32_t(w.type);
    if (s.n_max == 1) {
        constexpr uint32_t max_x = 65535;
        r.dispatch<shader_id::matvec>({type}, {w.view, x, y, ctrl}, pc, std::min<uint32_t>(uint32_t(w.rows), max_x), 1,
                                      div_up(uint64_t(w.rows), max_x));
    } else {
        r.dispatch<shader_id::matmul>({type, tile_rows, tile_slots}, {w.view, x, y, ctrl}, pc,
                                      div_up(uint64_t(w.rows), tile_rows), div_up(s.n_max, tile_slots), 1, tile_wg);
    }
}

// y[slot] = RMSNorm(x[src row]; w):   x [*, n], w [n], y [n_max, n].
inline void rms_norm(recorder& r, buffer_view x, buffer_view w, buffer_view y, buffer_view ctrl, uint32_t n, float eps,
                     uint32_t n_max, uint32_t count_at = none, uint32_t index_at = none, uint32_t src_row0 = 0) {
    r.dispatch<shader_id::rms_norm>(
        {}, {x, w, y, ctrl},
        {.n = n, .n_max = n_max, .count_at = count_at, .index_at = index_at, .src_row0 = src_row0, .eps = eps}, n_max);
}

// x[t] = token_embd[ctrl[tokens_at + t]]:   x [n_tokens, D].
inline void embed(recorder& r, const gpu_matrix& table, buffer_view x, buffer_view ctrl, uint32_t n_tokens, uint32_t tokens_at) {
    const uint32_t D = uint32_t(table.cols);
    r.dispatch<shader_id::embed>({uint32_t(table.type)}, {table.view, x, ctrl},
                                 {.n_embd = D, .n_tokens = n_tokens, .tokens_at = tokens_at},
                                 div_up(D / 4, r.kernels().ctx().workgroup_size()), n_tokens);
}

// Control-buffer records a layer's kernels share.
struct route_record {  // n, kv_base, routed[B], s[B], pos[B]
    uint32_t at = 0, batch = 0;
    uint32_t count() const { return at; }
    uint32_t routed() const { return at + 2; }
    uint32_t scale() const { return at + 2 + batch; }
    uint32_t pos() const { return at + 2 + 2 * batch; }
    static uint32_t words(uint32_t batch) { return 2 + 3 * batch; }
};
struct moe_record {  // count[E], rows[E, B], scale[E, B], ids[B, k], weights[B, k], lambda_t[B]
    uint32_t at = 0, batch = 0, n_expert = 0, k = 0;
    uint32_t count(uint32_t e) const { return at + e; }
    uint32_t rows(uint32_t e) const { return at + n_expert + e * batch; }
    uint32_t scale(uint32_t e) const { return at + n_expert + n_expert * batch + e * batch; }
    uint32_t lambda_t() const { return at + n_expert + 2 * n_expert * batch + 2 * batch * k; }
    static uint32_t words(uint32_t batch, uint32_t E, uint32_t k) { return E + 2 * E * batch + 2 * batch * k + batch; }
};

// Mixture-of-Depths for layer `layer` over x [n_tokens, D]: fills the route record,
// reserves the routed tokens' cache rows (ctrl[kv_len_at + layer]) and counts them.
struct route_args {
    uint32_t n_embd, n_tokens, pos0, layer;
    bool has_router;
    mod_scale scale;
    float threshold;
    uint32_t kv_len_at, kept_at;
};
inline void route(recorder& r, buffer_view x, buffer_view router, buffer_view ctrl, const route_record& rec, const route_args& a) {
    const uint32_t mode = a.scale == mod_scale::sigmoid ? 0u : a.scale == mod_scale::raw ? 1u : 2u;
    r.dispatch<shader_id::route>({}, {x, router, ctrl},
                                 {.n_embd = a.n_embd,
                                  .n_tokens = a.n_tokens,
                                  .pos0 = a.pos0,
                                  .layer = a.layer,
                                  .has_router = a.has_router ? 1u : 0u,
                                  .scale_mode = mode,
                                  .threshold = a.threshold,
                                  .batch = rec.batch,
                                  .route_at = rec.at,
                                  .kv_len_at = a.kv_len_at,
                                  .kept_at = a.kept_at},
                                 1);
}

// The layer's KV cache on the device.
struct gpu_cache_layer {
    buffer_view k, v, pos;  // [n_ctx, k_dim], [n_ctx, v_dim] as f32, packed f16 or q8_0 / q4_0 rows; positions [L, n_ctx]
    weight_type type = weight_type::f32;
    uint32_t n_ctx = 0, layer = 0;
};

// The kernels' KV_TYPE specialization constant (shaders/kv_blocks.glsl).
inline uint32_t kv_type_constant(weight_type t) {
    switch (t) {
        case weight_type::f32: return 0;
        case weight_type::f16: return 1;
        case weight_type::q8_0: return 2;
        case weight_type::q4_0: return 3;
        default: throw error("KV cache type " + std::string(type_name(t)) + " is not one the Vulkan backend stores (f32, f16, q8_0, q4_0)");
    }
}

// RoPE on q [n, q_dim] in place and on k [n, k_dim]; k and v [n, v_dim] appended to the cache
// (q8_0 / q4_0: k rotated in place, then kv_quant.comp writes the rows' blocks).
inline void rope_store(recorder& r, const model_dims& m, buffer_view q, buffer_view k, buffer_view v, buffer_view rope,
                       const gpu_cache_layer& c, buffer_view ctrl, const route_record& rec, uint32_t n_max) {
    const uint32_t widest = uint32_t(std::max({m.q_dim(), m.k_dim(), m.v_dim()}));
    const uint32_t kv = kv_type_constant(c.type);
    r.dispatch<shader_id::rope_store>({kv}, {q, k, v, rope, c.k, c.v, c.pos, ctrl},
                                      {.q_dim = uint32_t(m.q_dim()),
                                       .k_dim = uint32_t(m.k_dim()),
                                       .v_dim = uint32_t(m.v_dim()),
                                       .head_k = uint32_t(m.head_k),
                                       .batch = rec.batch,
                                       .route_at = rec.at,
                                       .n_ctx = c.n_ctx,
                                       .layer = c.layer},
                                      div_up(widest / 2, r.kernels().ctx().workgroup_size()), n_max);
    if (kv < 2) return;
    const uint64_t blocks = uint64_t(div_up(uint64_t(m.k_dim()), 32) + div_up(uint64_t(m.v_dim()), 32));
    r.dispatch<shader_id::kv_quant>({kv}, {k, v, c.k, c.v, ctrl},
                                    {.k_dim = uint32_t(m.k_dim()), .v_dim = uint32_t(m.v_dim()), .route_at = rec.at},
                                    div_up(blocks, r.kernels().ctx().workgroup_size()), n_max);
}

// o [n, attn_dim] = differential attention of q [n, q_dim] over the layer's cache.
struct attention_args {
    float lambda;              // λ_l (when lambda_at is none)
    uint32_t lambda_at;        // ctrl list of λ_t per slot, or none
    bool sub_norm;
    float lambda_init;
};
inline void attention(recorder& r, const model_dims& m, buffer_view q, const gpu_cache_layer& c, buffer_view o,
                      buffer_view sub_norm, buffer_view ctrl, const route_record& rec, uint32_t n_max, const attention_args& a) {
    const uint32_t wg = r.kernels().ctx().workgroup_size();
    if (m.head_v > 8 * int64_t(wg))
        throw error("Vulkan attention: head width " + std::to_string(m.head_v) + " exceeds 8 × workgroup size " + std::to_string(wg));
    const attention_pc pc{.n_head = uint32_t(m.n_head),
                          .group = uint32_t(m.n_head / m.n_head_kv),
                          .n_maps = uint32_t(m.n_maps),
                          .head_k = uint32_t(m.head_k),
                          .head_v = uint32_t(m.head_v),
                          .q_dim = uint32_t(m.q_dim()),
                          .k_dim = uint32_t(m.k_dim()),
                          .v_dim = uint32_t(m.v_dim()),
                          .route_at = rec.at,
                          .lambda_at = a.lambda_at,
                          .has_sub_norm = a.sub_norm ? 1u : 0u,
                          .lambda = a.lambda,
                          .scale = float(1.0 / std::sqrt(double(m.head_k))),
                          .sub_scale = 1.0f - a.lambda_init};
    r.dispatch<shader_id::attention>({kv_type_constant(c.type)}, {q, c.k, c.v, o, sub_norm, ctrl}, pc, uint32_t(m.n_head), n_max);
}

// Top-k routing of logits [n, E] (n = ctrl[count_at]): per-expert lists in the moe record
// and tokens per expert added at use_at; or, lambda_mode, λ_t = lambda + Σ ĝ·λ_exp.
struct moe_route_args {
    uint32_t n_max, count_at;
    bool renorm, has_gate, lambda_mode;
    uint32_t use_at;
    float lambda;
};
inline constexpr uint32_t max_experts = 64, max_experts_used = 8;  // moe_route.comp's arrays
inline void moe_route(recorder& r, buffer_view logits, buffer_view lambda_exp, buffer_view ctrl, const moe_record& rec,
                      const moe_route_args& a) {
    if (rec.n_expert > max_experts || rec.k > max_experts_used)
        throw error("Vulkan MoE routing handles up to " + std::to_string(max_experts) + " experts and top-" +
                    std::to_string(max_experts_used) + ", the model has " + std::to_string(rec.n_expert) + " and top-" +
                    std::to_string(rec.k));
    r.dispatch<shader_id::moe_route>({}, {logits, lambda_exp, ctrl},
                                     {.n_expert = rec.n_expert,
                                      .k = rec.k,
                                      .n_max = a.n_max,
                                      .count_at = a.count_at,
                                      .renorm = a.renorm ? 1u : 0u,
                                      .has_gate = a.has_gate ? 1u : 0u,
                                      .lambda_mode = a.lambda_mode ? 1u : 0u,
                                      .batch = rec.batch,
                                      .moe_at = rec.at,
                                      .use_at = a.use_at,
                                      .lambda = a.lambda},
                                     1);
}

// up [n, F] = gelu_tanh(up)  or  silu(gate) ⊙ up.
inline void ffn_act(recorder& r, buffer_view up, buffer_view gate, buffer_view ctrl, uint32_t n_ff, bool swiglu, uint32_t n_max,
                    uint32_t count_at) {
    r.dispatch<shader_id::ffn_act>({}, {up, gate, ctrl},
                                   {.n_ff = n_ff, .n_max = n_max, .count_at = count_at, .swiglu = swiglu ? 1u : 0u},
                                   div_up(n_ff, r.kernels().ctx().workgroup_size()), n_max);
}

// h[i] = x[routed[i]]   (before the layer)
inline void gather_residual(recorder& r, buffer_view x, buffer_view h, buffer_view ctrl, const route_record& rec, uint32_t D,
                            uint32_t n_max) {
    r.dispatch<shader_id::residual>({}, {x, h, ctrl}, {.n_embd = D, .batch = rec.batch, .route_at = rec.at, .mode = 0, .lerp = 0},
                                    div_up(D, r.kernels().ctx().workgroup_size()), n_max);
}
// x[routed[i]] = h[i], or x + s·(h − x) when lerp   (after the layer)
inline void scatter_residual(recorder& r, buffer_view x, buffer_view h, buffer_view ctrl, const route_record& rec, uint32_t D,
                             uint32_t n_max, bool lerp) {
    r.dispatch<shader_id::residual>({}, {x, h, ctrl},
                                    {.n_embd = D, .batch = rec.batch, .route_at = rec.at, .mode = 1, .lerp = lerp ? 1u : 0u},
                                    div_up(D, r.kernels().ctx().workgroup_size()), n_max);
}

// Each layer keeps its cached rows at positions < n_past.
inline void kv_truncate(recorder& r, buffer_view pos, buffer_view ctrl, uint32_t n_layer, uint32_t n_ctx, uint32_t kv_len_at,
                        uint32_t n_past) {
    r.dispatch<shader_id::kv_truncate>({}, {pos, ctrl},
                                       {.n_layer = n_layer, .n_ctx = n_ctx, .kv_len_at = kv_len_at, .n_past = n_past},
                                       div_up(n_layer, r.kernels().ctx().workgroup_size()));
}

}  // namespace ops
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}  // namespace ncas::vk
