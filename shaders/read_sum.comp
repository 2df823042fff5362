#version 450
#extension GL_GOOGLE_include_directive : require
// Device read bandwidth (ncas bench): each workgroup sums one contiguous block
// of the buffer, its invocations reading consecutive 16-byte words (coalesced
// on a GPU; on a CPU device such as lavapipe each thread streams one block),
// and adds the sum to `total`: no load can be dropped, and the host checks that
// every word was read once (the sum, mod 2^32).
// Grid: (any number of groups); the binding holds n_vec4 uvec4s.
#include "common.glsl"

layout(std430, binding = 0) readonly buffer data_buf { uvec4 data[]; };
layout(std430, binding = 1) buffer total_buf { uint total; };
layout(push_constant) uniform pc_block { read_sum_pc p; };

void main() {
    const uint block = (p.n_vec4 + gl_NumWorkGroups.x - 1u) / gl_NumWorkGroups.x;
    const uint begin = gl_WorkGroupID.x * block, end = min(begin + block, p.n_vec4);
    uvec4 acc = uvec4(0u);
    for (uint i = begin + gl_LocalInvocationIndex; i < end; i += WG) acc += data[i];
    atomicAdd(total, acc.x + acc.y + acc.z + acc.w);
}
