#version 450
#extension GL_GOOGLE_include_directive : require
// For each routed token: its k (already rotated by rope_store) and v rows become
// row kv_base + slot of the layer's q8_0 or q4_0 cache, one block per thread,
// rounded as format/quant.hpp's quantize_row does (docs/spec.md §4): q8_0
// d = max|x| / 127, q = round half away from zero; q4_0 d = (the value of largest
// magnitude) / −8, q = min(15, trunc(x/d + 8.5)); d stored as f16, nearest even.
// Neighbouring blocks share 32-bit words, so each 16-bit half is written with
// atomics (clear, then set): blocks of other rows and threads stay intact.
// Grid: (ceil((blocks of k_dim + blocks of v_dim) / WG), n_max).
#include "common.glsl"
#include "kv_blocks.glsl"

layout(constant_id = 1) const uint KV_TYPE = KV_Q8_0;

layout(std430, binding = 0) readonly buffer k_buf { float k[]; };
layout(std430, binding = 1) readonly buffer v_buf { float v[]; };
layout(std430, binding = 2) buffer kc_buf { uint k_cache[]; };
layout(std430, binding = 3) buffer vc_buf { uint v_cache[]; };
layout(std430, binding = 4) readonly buffer ctrl_buf { uint ctrl[]; };
layout(push_constant) uniform pc_block { kv_quant_pc p; };

// f32 -> f16 bits, round to nearest even (format/quant.hpp f32_to_f16, line for line).
uint f16_bits(float f) {
    const uint x = floatBitsToUint(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
    if (ax >= 0x477ff000u) return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u) return sign;
        const uint e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126u - e;
        uint r = m >> shift;
        const uint rem = m & ((1u << shift) - 1u), hf = 1u << (shift - 1u);
        if (rem > hf || (rem == hf && (r & 1u) != 0u)) ++r;
        return sign | r;
    }
    uint r = ax - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return sign | (r >> 13);
}

// std::round: half away from zero (exact: x - trunc(x) is representable).
float round_away(float x) {
    const float t = trunc(x);
    return abs(x - t) >= 0.5 ? t + sign(x) : t;
}

// Half-word h (16 bits) of a cache.
void put_half(bool is_k, uint h, uint val) {
    const uint w = h >> 1, sh = (h & 1u) * 16u;
    if (is_k) {
        atomicAnd(k_cache[w], ~(0xffffu << sh));
        atomicOr(k_cache[w], val << sh);
    } else {
        atomicAnd(v_cache[w], ~(0xffffu << sh));
        atomicOr(v_cache[w], val << sh);
    }
}

void main() {
    const uint slot = gl_WorkGroupID.y, b = gl_GlobalInvocationID.x;
    if (slot >= ctrl[p.route_at]) return;
    const uint nbk = kv_blocks(p.k_dim), nbv = kv_blocks(p.v_dim);
    if (b >= nbk + nbv) return;
    const bool is_k = b < nbk;
    const uint blk = is_k ? b : b - nbk, n = is_k ? p.k_dim : p.v_dim, nb = is_k ? nbk : nbv;
    const uint row = ctrl[p.route_at + 1u] + slot;
    float x[32];
    for (uint j = 0; j < 32u; ++j) {
        const uint c = blk * 32u + j;
        x[j] = c >= n ? 0.0 : is_k ? k[slot * n + c] : v[slot * n + c];
    }
    const uint h0 = (row * nb + blk) * (kv_block_bytes(KV_TYPE) / 2u);  // the block's first half-word
    if (KV_TYPE == KV_Q8_0) {
        float amax = 0.0;
        for (uint j = 0; j < 32u; ++j) amax = max(amax, abs(x[j]));
        const float d = amax / 127.0, id = d != 0.0 ? 1.0 / d : 0.0;
        put_half(is_k, h0, f16_bits(d));
        for (uint i = 0; i < 16u; ++i) {
            precise const float a = x[2u * i] * id, c = x[2u * i + 1u] * id;
            const uint lo = uint(int(round_away(a))) & 0xffu, hi = uint(int(round_away(c))) & 0xffu;
            put_half(is_k, h0 + 1u + i, lo | (hi << 8));
        }
    } else {
        float amax = 0.0, mx = 0.0;
        for (uint j = 0; j < 32u; ++j)
            if (abs(x[j]) > amax) amax = abs(x[j]), mx = x[j];
        const float d = mx / -8.0, id = d != 0.0 ? 1.0 / d : 0.0;
        put_half(is_k, h0, f16_bits(d));
        for (uint i = 0; i < 8u; ++i) {
            uint two = 0u;
            for (uint t = 0; t < 2u; ++t) {
                const uint j = 2u * i + t;
                precise const float lo_f = x[j] * id + 8.5, hi_f = x[j + 16u] * id + 8.5;
                const uint lo = uint(min(15, int(lo_f))), hi = uint(min(15, int(hi_f)));
                two |= (lo | (hi << 4)) << (8u * t);
            }
            put_half(is_k, h0 + 1u + i, two);
        }
    }
}
