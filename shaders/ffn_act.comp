#version 450
#extension GL_GOOGLE_include_directive : require
// Expert FFN activation in place on the slots of one expert:
//   gelu: up = gelu_tanh(up)        swiglu: up = silu(gate) ⊙ up
// Grid: (ceil(n_ff / WG), n_max).
#include "common.glsl"

layout(std430, binding = 0) buffer up_buf { float up[]; };
layout(std430, binding = 1) readonly buffer gate_buf { float gate[]; };
layout(std430, binding = 2) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { ffn_act_pc p; };

void main() {
    const uint slot = gl_WorkGroupID.y, f = gl_GlobalInvocationID.x;
    if (f >= p.n_ff || slot >= (p.count_at == NONE ? p.n_max : ctrl[p.count_at])) return;
    const uint at = slot * p.n_ff + f;
    const float u = up[at];
    if (p.swiglu != 0u) {
        const float g = gate[at];
        up[at] = g / (1.0 + exp(-g)) * u;
    } else {
        const float c = 0.7978845608028654;  // sqrt(2/π)
        up[at] = 0.5 * u * (1.0 + tanh(c * (u + 0.044715 * u * u * u)));
    }
}
