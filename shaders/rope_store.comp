#version 450
#extension GL_GOOGLE_include_directive : require
// For each routed token: RoPE on every half-head of q (in place) and k, over
// interleaved pairs (2i, 2i+1) with the session's cos/sin table; the rotated k
// and v become row kv_base + slot of the layer's cache, with the position. A
// q8_0 or q4_0 cache: the rotated k goes back into k and kv_quant.comp stores
// the blocks (here only the position).
// Grid: (ceil(max(q_dim, k_dim, v_dim) / 2 / WG), n_max).
#include "common.glsl"
#include "kv_blocks.glsl"

layout(constant_id = 1) const uint KV_TYPE = 0;  // 0 f32, 1 f16, 2 q8_0, 3 q4_0

layout(std430, binding = 0) buffer q_buf { float q[]; };
layout(std430, binding = 1) buffer k_buf { float k[]; };
layout(std430, binding = 2) readonly buffer v_buf { float v[]; };
layout(std430, binding = 3) readonly buffer rope_buf { float rope[]; };  // cos [n_ctx, d/2], then sin
layout(std430, binding = 4) writeonly buffer kc_buf { uint k_cache[]; };
layout(std430, binding = 5) writeonly buffer vc_buf { uint v_cache[]; };
layout(std430, binding = 6) writeonly buffer pos_buf { uint cache_pos[]; };  // [L, n_ctx]
layout(std430, binding = 7) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { rope_store_pc p; };

// Stores the pair (a, b) as values 2·pair and 2·pair + 1 of a cache.
#define STORE_PAIR(cache, pair, a, b) \
    if (KV_TYPE == 1u) cache[pair] = packHalf2x16(vec2(a, b)); \
    else cache[2u * (pair)] = floatBitsToUint(a), cache[2u * (pair) + 1u] = floatBitsToUint(b);

void main() {
    const uint slot = gl_WorkGroupID.y, pr = gl_GlobalInvocationID.x;  // pr: pair index
    const uint routed_at = p.route_at + 2u, pos_at = routed_at + 2u * p.batch;
    if (slot >= ctrl[p.route_at]) return;
    const uint pos = ctrl[pos_at + slot], row = ctrl[p.route_at + 1u] + slot;
    const uint half_k = p.head_k / 2u, i = pr % half_k;
    const float c = rope[pos * half_k + i], s = rope[(p.n_ctx + pos) * half_k + i];
    if (2u * pr < p.q_dim) {
        const uint at = slot * p.q_dim + 2u * pr;
        const float a = q[at], b = q[at + 1u];
        q[at] = a * c - b * s;
        q[at + 1u] = a * s + b * c;
    }
    if (2u * pr < p.k_dim) {
        const uint at = slot * p.k_dim + 2u * pr;
        const float a = k[at], b = k[at + 1u];
        if (KV_TYPE >= KV_Q8_0) {
            k[at] = a * c - b * s;
            k[at + 1u] = a * s + b * c;
        } else {
            STORE_PAIR(k_cache, row * p.k_dim / 2u + pr, a * c - b * s, a * s + b * c)
        }
    }
    if (KV_TYPE < KV_Q8_0 && 2u * pr < p.v_dim) {
        const uint at = slot * p.v_dim + 2u * pr;
        STORE_PAIR(v_cache, row * p.v_dim / 2u + pr, v[at], v[at + 1u])
    }
    if (pr == 0u) cache_pos[p.layer * p.n_ctx + row] = pos;
}
