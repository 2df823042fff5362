#version 450
#extension GL_GOOGLE_include_directive : require
// variants: subgroup
// Differential attention (docs/spec.md §1.1) for one (routed token, head) per workgroup,
// over the layer's cache rows 0 .. kv_base + slot (the rows before it and its own).
// Both softmax maps advance together in one pass over the cache, online (running
// max and sum per map); each thread then owns value elements e = lid + u·WG.
//   o_h = a1·V − λ_t · a2·V   [then RMSNorm(o_h; sub_norm) · (1 − λ_init)]
// Grid: (n_head, n_max).
#include "common.glsl"
#include "kv_blocks.glsl"

layout(constant_id = 1) const uint KV_TYPE = 0;  // 0 f32, 1 f16, 2 q8_0, 3 q4_0 (blocks read in place)
const uint MAX_U = 8;  // value elements per thread: head_v <= 8 · WG (checked by the host)

layout(std430, binding = 0) readonly buffer q_buf { float q[]; };
layout(std430, binding = 1) readonly buffer kc_buf { uint k_cache[]; };
layout(std430, binding = 2) readonly buffer vc_buf { uint v_cache[]; };
layout(std430, binding = 3) writeonly buffer o_buf { float o[]; };
layout(std430, binding = 4) readonly buffer sub_norm_buf { float sub_norm[]; };
layout(std430, binding = 5) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { attention_pc p; };

shared float p_map[2][WG];  // this chunk's unnormalised probabilities per map

uint cache_word(uint w, bool is_k) { return is_k ? k_cache[w] : v_cache[w]; }

// Value c of row `row` (rows of n values) of a cache.
float cache_at(uint row, uint n, uint c, bool is_k) {
    if (KV_TYPE < KV_Q8_0) {
        const uint idx = row * n + c;
        const uint w = cache_word(KV_TYPE == 1u ? idx >> 1 : idx, is_k);
        return KV_TYPE == 1u ? unpackHalf2x16(w)[idx & 1u] : uintBitsToFloat(w);
    }
    const uint at = (row * kv_blocks(n) + (c >> 5)) * kv_block_bytes(KV_TYPE), j = c & 31u;  // the block's byte
    const float d = unpackHalf2x16(cache_word(at >> 2, is_k) >> ((at & 2u) * 8u)).x;
    const uint qb = at + 2u + (KV_TYPE == KV_Q8_0 ? j : j & 15u);
    const uint byte = (cache_word(qb >> 2, is_k) >> ((qb & 3u) * 8u)) & 0xffu;
    if (KV_TYPE == KV_Q8_0) return d * float(int(byte << 24) >> 24);
    return d * float(int(j < 16u ? byte & 15u : byte >> 4) - 8);
}

void main() {
    const uint h = gl_WorkGroupID.x, slot = gl_WorkGroupID.y, lid = gl_LocalInvocationIndex;
    if (slot >= ctrl[p.route_at]) return;
    const uint g = h / p.group, d = p.head_k, dv = p.head_v, M = p.n_maps;
    const uint rows = ctrl[p.route_at + 1u] + slot + 1u;
    const uint q0 = slot * p.q_dim + M * h * d;  // q of map 0; map 1 follows

    float m_run[2] = float[2](-1.0 / 0.0, -1.0 / 0.0), l_run[2] = float[2](0.0, 0.0);
    float acc[2][MAX_U];
    for (uint u = 0; u < MAX_U; ++u) acc[0][u] = 0.0, acc[1][u] = 0.0;

    for (uint c0 = 0; c0 < rows; c0 += WG) {
        const uint j = c0 + lid, n_chunk = min(WG, rows - c0);
        for (uint m = 0; m < M; ++m) {
            float s = -1.0 / 0.0;
            if (j < rows) {
                s = 0.0;
                const uint kc = (M * g + m) * d;
                for (uint c = 0; c < d; ++c) s += q[q0 + m * d + c] * cache_at(j, p.k_dim, kc + c, true);
                s *= p.scale;
            }
            const float m_new = max(m_run[m], wg_max(s));
            const float pj = j < rows ? exp(s - m_new) : 0.0;
            const float corr = exp(m_run[m] - m_new);  // 0 on the first chunk
            p_map[m][lid] = pj;
            l_run[m] = l_run[m] * corr + wg_sum(pj);  // wg_sum's barrier publishes p_map
            m_run[m] = m_new;
            for (uint u = 0; u < MAX_U; ++u) {
                const uint e = lid + u * WG;
                if (e >= dv) break;
                float a = acc[m][u] * corr;
                for (uint jj = 0; jj < n_chunk; ++jj) a += p_map[m][jj] * cache_at(c0 + jj, p.v_dim, g * dv + e, false);
                acc[m][u] = a;
            }
        }
        barrier();  // p_map is rewritten by the next chunk
    }

    const float lt = p.lambda_at == NONE ? p.lambda : uintBitsToFloat(ctrl[p.lambda_at + slot]);
    float out_v[MAX_U];
    float ss = 0.0;
    for (uint u = 0; u < MAX_U; ++u) {
        const uint e = lid + u * WG;
        out_v[u] = 0.0;
        if (e >= dv) continue;
        out_v[u] = acc[0][u] / l_run[0];
        if (M == 2u) out_v[u] -= lt * acc[1][u] / l_run[1];
        ss += out_v[u] * out_v[u];
    }
    float scale = 1.0;
    if (p.has_sub_norm != 0u) scale = inversesqrt(wg_sum(ss) / float(dv) + 1e-5) * p.sub_scale;
    const uint ob = slot * p.n_head * dv + h * dv;
    for (uint u = 0; u < MAX_U; ++u) {
        const uint e = lid + u * WG;
        if (e >= dv) break;
        o[ob + e] = p.has_sub_norm != 0u ? out_v[u] * scale * sub_norm[e] : out_v[u];
    }
}
