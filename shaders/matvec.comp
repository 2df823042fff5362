#version 450
#extension GL_GOOGLE_include_directive : require
// variants: subgroup small_storage
// Decode: one workgroup per (output row, slot); the threads stride over the
// row four values at a time (K types: a sub-block of 32 at a time) and
// reduce. Grid: (min(rows, 65535), n_max, ceil(rows / 65535)).
#include "common.glsl"
#include "weights.glsl"
#include "matmul_io.glsl"

vec4 x4(uint at) { return vec4(x[at], x[at + 1u], x[at + 2u], x[at + 3u]); }

// K types: the dot product of values 32·u .. 32·u + 31 of the row (a sub-block: its scale
// and min unpacked once, its quants read as eight words) with x from xb, factored as
// d·scale·Σq·x − dmin·min·Σx (Q4_K, Q5_K) or d·scale·Σ(q − 32)·x per 16 values (Q6_K).
float kq_dot32(uint row, uint u, uint xb) {
    const uint blk = kq_block(row, 32u * u), j = u & 7u, c = xb + 32u * u;
    if (WTYPE == T_Q6_K) {
        const uint h = j >> 2, g = j & 3u;
        vec4 a = vec4(0.0), b = vec4(0.0);
        for (uint l = 0u; l < 16u; l += 4u) a += (bytes4(q6_quants4(blk, h, g, l)) - 32.0) * x4(c + l);
        for (uint l = 16u; l < 32u; l += 4u) b += (bytes4(q6_quants4(blk, h, g, l)) - 32.0) * x4(c + l);
        return q6_factor(blk, h, g, 0u) * (a.x + a.y + a.z + a.w) + q6_factor(blk, h, g, 16u) * (b.x + b.y + b.z + b.w);
    }
    const vec2 f = kq_factors(blk, j);
    vec4 qx = vec4(0.0), sx = vec4(0.0);
    for (uint l = 0u; l < 32u; l += 4u) {
        const vec4 xv = x4(c + l);
        qx += bytes4(kq_quants4(blk, j, l)) * xv;
        sx += xv;
    }
    return f.x * (qx.x + qx.y + qx.z + qx.w) - f.y * (sx.x + sx.y + sx.z + sx.w);
}

void main() {
    const uint r = gl_WorkGroupID.x + gl_WorkGroupID.z * 65535u, slot = gl_WorkGroupID.y;
    if (r >= p.rows || slot >= active_slots()) return;
    const uint row = p.w_offset + r * weight_row_bytes(p.cols);
    const uint xb = x_row(slot) * p.cols;
    float acc = 0.0;
    if (K_QUANT) {  // a thread a sub-block of 32 values
        for (uint u = gl_LocalInvocationIndex; u < p.cols / 32u; u += WG) acc += kq_dot32(row, u, xb);
    } else {
        for (uint i = 4u * gl_LocalInvocationIndex; i < p.cols; i += 4u * WG)
            acc += dot(weight4(row, i), vec4(x[xb + i], x[xb + i + 1u], x[xb + i + 2u], x[xb + i + 3u]));
    }
    acc = wg_sum(acc);
    if (gl_LocalInvocationIndex == 0u) store(slot, r, acc);
}
