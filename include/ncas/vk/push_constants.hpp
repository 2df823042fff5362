#pragma once
// The C++ mirror of shaders/push_constants.h (see there for what each field
// means). Every offset and size is checked against what glslang reported when
// the SPIR-V was generated, so a change on one side only fails to compile.
#include <cstddef>
#include <cstdint>

#include "ncas/vk/generated/push_constant_layout.hpp"

namespace ncas::vk {

inline constexpr uint32_t none = 0xffffffffu;  // NONE in the shaders: "not used"

struct matmul_pc {
    uint32_t rows = 0;
    uint32_t cols = 0;
    uint32_t w_offset = 0;
    uint32_t n_max = 0;
    uint32_t count_at = 0;
    uint32_t x_index_at = 0;
    uint32_t y_index_at = 0;
    uint32_t scale_at = 0;
    uint32_t accumulate = 0;
};
struct rms_norm_pc {
    uint32_t n = 0;
    uint32_t n_max = 0;
    uint32_t count_at = 0;
    uint32_t index_at = 0;
    uint32_t src_row0 = 0;
    float eps = 0;
};
struct embed_pc {
    uint32_t n_embd = 0;
    uint32_t n_tokens = 0;
    uint32_t tokens_at = 0;
};
struct route_pc {
    uint32_t n_embd = 0;
    uint32_t n_tokens = 0;
    uint32_t pos0 = 0;
    uint32_t layer = 0;
    uint32_t has_router = 0;
    uint32_t scale_mode = 0;
    float threshold = 0;
    uint32_t batch = 0;
    uint32_t route_at = 0;
    uint32_t kv_len_at = 0;
    uint32_t kept_at = 0;
};
struct rope_store_pc {
    uint32_t q_dim = 0;
    uint32_t k_dim = 0;
    uint32_t v_dim = 0;
    uint32_t head_k = 0;
    uint32_t n_max = 0;
    uint32_t batch = 0;
    uint32_t route_at = 0;
    uint32_t n_ctx = 0;
    uint32_t layer = 0;
};
struct attention_pc {
    uint32_t n_head = 0;
    uint32_t group = 0;
    uint32_t n_maps = 0;
    uint32_t head_k = 0;
    uint32_t head_v = 0;
    uint32_t q_dim = 0;
    uint32_t k_dim = 0;
    uint32_t v_dim = 0;
    uint32_t n_max = 0;
    uint32_t batch = 0;
    uint32_t route_at = 0;
    uint32_t lambda_at = 0;
    uint32_t has_sub_norm = 0;
    float lambda = 0;
    float scale = 0;
    float sub_scale = 0;
};
struct moe_route_pc {
    uint32_t n_expert = 0;
    uint32_t k = 0;
    uint32_t n_max = 0;
    uint32_t count_at = 0;
    uint32_t renorm = 0;
    uint32_t has_gate = 0;
    uint32_t lambda_mode = 0;
    uint32_t batch = 0;
    uint32_t moe_at = 0;
    uint32_t use_at = 0;
    float lambda = 0;
};
struct ffn_act_pc {
    uint32_t n_ff = 0;
    uint32_t n_max = 0;
    uint32_t count_at = 0;
    uint32_t swiglu = 0;
};
struct residual_pc {
    uint32_t n_embd = 0;
    uint32_t n_max = 0;
    uint32_t batch = 0;
    uint32_t route_at = 0;
    uint32_t mode = 0;
    uint32_t lerp = 0;
};
struct kv_truncate_pc {
    uint32_t n_layer = 0;
    uint32_t n_ctx = 0;
    uint32_t kv_len_at = 0;
    uint32_t n_past = 0;
};
struct read_sum_pc {
    uint32_t n_vec4 = 0;
};

// ---- checks against the generated layout ------------------------------------

#define NCAS_VK_CHECK_MEMBER(s, m) static_assert(offsetof(s, m) == glsl_layout::s::m, #s "." #m " differs from the GLSL layout")
#define NCAS_VK_CHECK_SIZE(s) static_assert(sizeof(s) == glsl_layout::s::size && sizeof(s) <= 128, #s " differs from the GLSL block")
NCAS_VK_CHECK_SIZE(matmul_pc);
NCAS_VK_CHECK_MEMBER(matmul_pc, rows);
NCAS_VK_CHECK_MEMBER(matmul_pc, cols);
NCAS_VK_CHECK_MEMBER(matmul_pc, w_offset);
NCAS_VK_CHECK_MEMBER(matmul_pc, n_max);
NCAS_VK_CHECK_MEMBER(matmul_pc, count_at);
NCAS_VK_CHECK_MEMBER(matmul_pc, x_index_at);
NCAS_VK_CHECK_MEMBER(matmul_pc, y_index_at);
NCAS_VK_CHECK_MEMBER(matmul_pc, scale_at);
NCAS_VK_CHECK_MEMBER(matmul_pc, accumulate);
NCAS_VK_CHECK_SIZE(rms_norm_pc);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, n);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, n_max);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, count_at);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, index_at);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, src_row0);
NCAS_VK_CHECK_MEMBER(rms_norm_pc, eps);
NCAS_VK_CHECK_SIZE(embed_pc);
NCAS_VK_CHECK_MEMBER(embed_pc, n_embd);
NCAS_VK_CHECK_MEMBER(embed_pc, n_tokens);
NCAS_VK_CHECK_MEMBER(embed_pc, tokens_at);
NCAS_VK_CHECK_SIZE(route_pc);
NCAS_VK_CHECK_MEMBER(route_pc, n_embd);
NCAS_VK_CHECK_MEMBER(route_pc, n_tokens);
NCAS_VK_CHECK_MEMBER(route_pc, pos0);
NCAS_VK_CHECK_MEMBER(route_pc, layer);
NCAS_VK_CHECK_MEMBER(route_pc, has_router);
NCAS_VK_CHECK_MEMBER(route_pc, scale_mode);
NCAS_VK_CHECK_MEMBER(route_pc, threshold);
NCAS_VK_CHECK_MEMBER(route_pc, batch);
NCAS_VK_CHECK_MEMBER(route_pc, route_at);
NCAS_VK_CHECK_MEMBER(route_pc, kv_len_at);
NCAS_VK_CHECK_MEMBER(route_pc, kept_at);
NCAS_VK_CHECK_SIZE(rope_store_pc);
NCAS_VK_CHECK_MEMBER(rope_store_pc, q_dim);
NCAS_VK_CHECK_MEMBER(rope_store_pc, k_dim);
NCAS_VK_CHECK_MEMBER(rope_store_pc, v_dim);
NCAS_VK_CHECK_MEMBER(rope_store_pc, head_k);
NCAS_VK_CHECK_MEMBER(rope_store_pc, batch);
NCAS_VK_CHECK_MEMBER(rope_store_pc, route_at);
NCAS_VK_CHECK_MEMBER(rope_store_pc, n_ctx);
NCAS_VK_CHECK_MEMBER(rope_store_pc, layer);
NCAS_VK_CHECK_SIZE(attention_pc);
NCAS_VK_CHECK_MEMBER(attention_pc, n_head);
NCAS_VK_CHECK_MEMBER(attention_pc, group);
NCAS_VK_CHECK_MEMBER(attention_pc, n_maps);
NCAS_VK_CHECK_MEMBER(attention_pc, head_k);
NCAS_VK_CHECK_MEMBER(attention_pc, head_v);
NCAS_VK_CHECK_MEMBER(attention_pc, q_dim);
NCAS_VK_CHECK_MEMBER(attention_pc, k_dim);
NCAS_VK_CHECK_MEMBER(attention_pc, v_dim);
NCAS_VK_CHECK_MEMBER(attention_pc, route_at);
NCAS_VK_CHECK_MEMBER(attention_pc, lambda_at);
NCAS_VK_CHECK_MEMBER(attention_pc, has_sub_norm);
NCAS_VK_CHECK_MEMBER(attention_pc, lambda);
NCAS_VK_CHECK_MEMBER(attention_pc, scale);
NCAS_VK_CHECK_MEMBER(attention_pc, sub_scale);
NCAS_VK_CHECK_SIZE(moe_route_pc);
NCAS_VK_CHECK_MEMBER(moe_route_pc, n_expert);
NCAS_VK_CHECK_MEMBER(moe_route_pc, k);
NCAS_VK_CHECK_MEMBER(moe_route_pc, n_max);
NCAS_VK_CHECK_MEMBER(moe_route_pc, count_at);
NCAS_VK_CHECK_MEMBER(moe_route_pc, renorm);
NCAS_VK_CHECK_MEMBER(moe_route_pc, has_gate);
NCAS_VK_CHECK_MEMBER(moe_route_pc, lambda_mode);
NCAS_VK_CHECK_MEMBER(moe_route_pc, batch);
NCAS_VK_CHECK_MEMBER(moe_route_pc, moe_at);
NCAS_VK_CHECK_MEMBER(moe_route_pc, use_at);
NCAS_VK_CHECK_MEMBER(moe_route_pc, lambda);
NCAS_VK_CHECK_SIZE(ffn_act_pc);
NCAS_VK_CHECK_MEMBER(ffn_act_pc, n_ff);
NCAS_VK_CHECK_MEMBER(ffn_act_pc, n_max);
NCAS_VK_CHECK_MEMBER(ffn_act_pc, count_at);
NCAS_VK_CHECK_MEMBER(ffn_act_pc, swiglu);
NCAS_VK_CHECK_SIZE(residual_pc);
NCAS_VK_CHECK_MEMBER(residual_pc, n_embd);
NCAS_VK_CHECK_MEMBER(residual_pc, batch);
NCAS_VK_CHECK_MEMBER(residual_pc, route_at);
NCAS_VK_CHECK_MEMBER(residual_pc, mode);
NCAS_VK_CHECK_MEMBER(residual_pc, lerp);
NCAS_VK_CHECK_SIZE(kv_truncate_pc);
NCAS_VK_CHECK_MEMBER(kv_truncate_pc, n_layer);
NCAS_VK_CHECK_MEMBER(kv_truncate_pc, n_ctx);
NCAS_VK_CHECK_MEMBER(kv_truncate_pc, kv_len_at);
NCAS_VK_CHECK_MEMBER(kv_truncate_pc, n_past);
NCAS_VK_CHECK_SIZE(read_sum_pc);
NCAS_VK_CHECK_MEMBER(read_sum_pc, n_vec4);
#undef NCAS_VK_CHECK_MEMBER
#undef NCAS_VK_CHECK_SIZE

}  // namespace ncas::vk
