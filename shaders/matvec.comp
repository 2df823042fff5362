#version 450
#extension GL_GOOGLE_include_directive : require
// variants: subgroup small_storage
// Decode: one workgroup per (output row, slot); the threads stride over the
// row four values at a time and reduce. Grid: (min(rows, 65535), n_max, ceil(rows / 65535)).
#include "common.glsl"
#include "weights.glsl"
#include "matmul_io.glsl"

void main() {
    const uint r = gl_WorkGroupID.x + gl_WorkGroupID.z * 65535u, slot = gl_WorkGroupID.y;
    if (r >= p.rows || slot >= active_slots()) return;
    const uint row = p.w_offset + r * weight_row_bytes(p.cols);
    const uint xb = x_row(slot) * p.cols;
    float acc = 0.0;
    for (uint i = 4u * gl_LocalInvocationIndex; i < p.cols; i += 4u * WG)
        acc += dot(weight4(row, i), vec4(x[xb + i], x[xb + i + 1u], x[xb + i + 2u], x[xb + i + 3u]));
    acc = wg_sum(acc);
    if (gl_LocalInvocationIndex == 0u) store(slot, r, acc);
}
