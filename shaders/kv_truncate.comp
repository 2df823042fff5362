#version 450
#extension GL_GOOGLE_include_directive : require
// Rewind: each layer keeps its cached rows at positions < n_past (rows are in
// position order). Grid: (ceil(n_layer / WG)).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer pos_buf { uint cache_pos[]; };  // [L, n_ctx]
layout(std430, binding = 1) buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { kv_truncate_pc p; };

void main() {
    const uint l = gl_GlobalInvocationID.x;
    if (l >= p.n_layer) return;
    uint n = ctrl[p.kv_len_at + l];
    while (n > 0u && cache_pos[l * p.n_ctx + n - 1u] >= p.n_past) --n;
    ctrl[p.kv_len_at + l] = n;
}
