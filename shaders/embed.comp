#version 450
#extension GL_GOOGLE_include_directive : require
// variants: small_storage
// x[t] = token_embd[tokens[t]], dequantised. Grid: (ceil(n_embd / 4 / WG), n_tokens).
#include "common.glsl"
#include "weights.glsl"

layout(std430, binding = 1) writeonly buffer x_buf { float x[]; };
layout(std430, binding = 2) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { embed_pc p; };

void main() {
    const uint t = gl_WorkGroupID.y, i = 4u * gl_GlobalInvocationID.x;
    if (t >= p.n_tokens || i >= p.n_embd) return;
    const vec4 v = weight4(ctrl[p.tokens_at + t] * weight_row_bytes(p.n_embd), i);
    const uint o = t * p.n_embd + i;
    x[o] = v.x, x[o + 1u] = v.y, x[o + 2u] = v.z, x[o + 3u] = v.w;
}
