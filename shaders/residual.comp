#version 450
#extension GL_GOOGLE_include_directive : require
// The residual stream around a layer, for its routed tokens:
//   mode 0 (before):  h[i] = x[routed[i]]
//   mode 1 (after):   x[routed[i]] = h[i]                     (no router, or mod.scale none)
//                     x[routed[i]] += s[i] · (h[i] − x[routed[i]])
// Grid: (ceil(n_embd / WG), n_max).
#include "common.glsl"

layout(std430, binding = 0) buffer x_buf { float x[]; };
layout(std430, binding = 1) buffer h_buf { float h[]; };
layout(std430, binding = 2) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { residual_pc p; };

void main() {
    const uint slot = gl_WorkGroupID.y, i = gl_GlobalInvocationID.x;
    if (i >= p.n_embd || slot >= ctrl[p.route_at]) return;
    const uint xa = ctrl[p.route_at + 2u + slot] * p.n_embd + i, ha = slot * p.n_embd + i;
    if (p.mode == 0u) {
        h[ha] = x[xa];
    } else if (p.lerp == 0u) {
        x[xa] = h[ha];
    } else {
        const float s = uintBitsToFloat(ctrl[p.route_at + 2u + p.batch + slot]);
        x[xa] += s * (h[ha] - x[xa]);
    }
}
