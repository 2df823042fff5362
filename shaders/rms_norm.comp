#version 450
#extension GL_GOOGLE_include_directive : require
// variants: subgroup
// One workgroup per slot. Grid: (n_max).
#include "common.glsl"

layout(std430, binding = 0) readonly buffer x_buf { float x[]; };
layout(std430, binding = 1) readonly buffer w_buf { float w[]; };
layout(std430, binding = 2) writeonly buffer y_buf { float y[]; };
layout(std430, binding = 3) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { rms_norm_pc p; };

void main() {
    const uint slot = gl_WorkGroupID.x;
    if (slot >= (p.count_at == NONE ? p.n_max : ctrl[p.count_at])) return;
    const uint src = (p.index_at == NONE ? p.src_row0 + slot : ctrl[p.index_at + slot]) * p.n;
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) ss += x[src + i] * x[src + i];
    const float scale = inversesqrt(wg_sum(ss) / float(p.n) + p.eps);
    for (uint i = gl_LocalInvocationIndex; i < p.n; i += WG) y[slot * p.n + i] = x[src + i] * scale * w[i];
}
