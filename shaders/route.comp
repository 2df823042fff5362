#version 450
#extension GL_GOOGLE_include_directive : require
// Mixture-of-Depths for one layer (docs/spec.md §1.3), one workgroup: each thread scores
// its tokens (router · x, summed in order like the CPU), then thread 0 compacts
// the routed tokens in order and reserves their rows in the layer's KV cache.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer x_buf { float x[]; };
layout(std430, binding = 1) readonly buffer router_buf { float router[]; };
layout(std430, binding = 2) buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { route_pc p; };

void main() {
    const uint n_at = p.route_at, base_at = p.route_at + 1u;
    const uint routed_at = p.route_at + 2u, s_at = routed_at + p.batch, pos_at = s_at + p.batch;
    for (uint t = gl_LocalInvocationIndex; t < p.n_tokens; t += WG) {
        float s = 1.0;
        bool keep = true;
        if (p.has_router != 0u) {
            float r = 0.0;
            for (uint i = 0; i < p.n_embd; ++i) r += router[i] * x[t * p.n_embd + i];
            keep = r > p.threshold;
            s = p.scale_mode == 0u ? 1.0 / (1.0 + exp(-r)) : p.scale_mode == 1u ? r : 1.0;
        }
        ctrl[s_at + t] = floatBitsToUint(s);
        ctrl[pos_at + t] = keep ? 1u : 0u;  // flag, replaced by the position below
    }
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex != 0u) return;
    uint n = 0;
    for (uint t = 0; t < p.n_tokens; ++t) {  // in place: n <= t, so nothing unread is overwritten
        if (ctrl[pos_at + t] == 0u) continue;
        ctrl[routed_at + n] = t;
        ctrl[s_at + n] = ctrl[s_at + t];
        ctrl[pos_at + n] = p.pos0 + t;
        ++n;
    }
    ctrl[n_at] = n;
    ctrl[base_at] = ctrl[p.kv_len_at + p.layer];
    ctrl[p.kv_len_at + p.layer] += n;
    ctrl[p.kept_at + p.layer] += n;
}
