#version 450
#extension GL_GOOGLE_include_directive : require
// variants: small_storage
// Prefill: a workgroup computes a tile of TR rows × TT slots. Per step of 32
// columns it dequantises the weight tile once into shared memory and reuses it
// for every slot of the tile. Grid: (ceil(rows / TR), ceil(n_max / TT)).
#include "common.glsl"
#include "weights.glsl"
#include "matmul_io.glsl"

layout(constant_id = 2) const uint TR = 32;  // rows per tile
layout(constant_id = 3) const uint TT = 16;  // slots per tile
const uint KB = 32;                          // columns per step
const uint PER_THREAD = TR * TT / WG;        // outputs per thread

shared float w_tile[TR][KB + 1];
shared float x_tile[TT][KB + 1];

void main() {
    const uint lid = gl_LocalInvocationIndex;
    const uint r0 = gl_WorkGroupID.x * TR, s0 = gl_WorkGroupID.y * TT;
    const uint n_slots = active_slots();
    if (s0 >= n_slots) return;  // uniform: the whole workgroup leaves before any barrier
    const uint row_bytes = weight_row_bytes(p.cols);

    // Thread lid owns row (lid % TR) for slots (lid / TR) + u · (WG / TR).
    const uint my_r = lid % TR, my_s = lid / TR, s_step = WG / TR;
    float acc[PER_THREAD];
    for (uint u = 0; u < PER_THREAD; ++u) acc[u] = 0.0;

    for (uint k0 = 0; k0 < p.cols; k0 += KB) {
        const uint kn = min(KB, p.cols - k0);
        if (K_QUANT) {  // weight tile, eight values a thread (kn == KB: rows are whole super-blocks)
            for (uint e = lid; e < TR * KB / 8u; e += WG) {
                const uint tr = e / (KB / 8u), c = (e % (KB / 8u)) * 8u;
                vec4 a = vec4(0.0), b = vec4(0.0);
                if (r0 + tr < p.rows) kq_weight8(p.w_offset + (r0 + tr) * row_bytes, k0 + c, a, b);
                w_tile[tr][c] = a.x, w_tile[tr][c + 1u] = a.y, w_tile[tr][c + 2u] = a.z, w_tile[tr][c + 3u] = a.w;
                w_tile[tr][c + 4u] = b.x, w_tile[tr][c + 5u] = b.y, w_tile[tr][c + 6u] = b.z, w_tile[tr][c + 7u] = b.w;
            }
        } else {
            for (uint e = lid; e < TR * KB / 4u; e += WG) {  // weight tile, four values a thread
                const uint tr = e / (KB / 4u), c = (e % (KB / 4u)) * 4u;
                vec4 v = vec4(0.0);
                if (r0 + tr < p.rows && c < kn) v = weight4(p.w_offset + (r0 + tr) * row_bytes, k0 + c);
                w_tile[tr][c] = v.x, w_tile[tr][c + 1u] = v.y, w_tile[tr][c + 2u] = v.z, w_tile[tr][c + 3u] = v.w;
            }
        }
        for (uint e = lid; e < TT * KB; e += WG) {
            const uint ts = e / KB, c = e % KB;
            x_tile[ts][c] = s0 + ts < n_slots && c < kn ? x[x_row(s0 + ts) * p.cols + k0 + c] : 0.0;
        }
        barrier();
        for (uint u = 0; u < PER_THREAD; ++u) {
            const uint ts = my_s + u * s_step;
            float part = 0.0;
            for (uint c = 0; c < KB; ++c) part += w_tile[my_r][c] * x_tile[ts][c];
            acc[u] += part;
        }
        barrier();
    }
    for (uint u = 0; u < PER_THREAD; ++u) {
        const uint slot = s0 + my_s + u * s_step;
        if (r0 + my_r < p.rows && slot < n_slots) store(slot, r0 + my_r, acc[u]);
    }
}
