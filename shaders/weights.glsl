// Reading stored weights (binding 0) in their ggml layouts: F32, F16, BF16,
// Q8_0 (blocks of 32: f16 d, int8 q[32]) and Q4_0 (f16 d, uint8 qs[16]; element
// j < 16 is the low nibble of qs[j], j + 16 its high nibble). Q blocks are 34
// and 18 bytes, so they are only 2-byte aligned: with 16/8-bit storage the
// kernel loads halves and bytes directly, otherwise it extracts them from words.
// Q5_0 (22 bytes: f16 d, qh[4], qs[16]) and Q5_1 (24: f16 d, f16 m, qh[4], qs[16]) hold 5-bit
// quants: nibbles as Q4_0's, the 5th bit of element j bit j of qh (a little-endian word);
// x = d·(q − 16) and x = d·q + m.
// The K-quants come in super-blocks of 256 values (ggml's layouts, see
// include/ncas/format/quant.hpp): Q4_K (144 bytes: f16 d, f16 dmin, scales[12]
// with 8 six-bit scales and mins, qs[128]), Q5_K (176: as Q4_K with qh[32], the
// fifth bits, before qs) and Q6_K (210: ql[128], qh[64], int8 scales[16], f16 d).
// Q6_K rows (and any K row inside an expert slab) may be only 2-byte aligned; the
// quants are read as 32-bit words (ld_u32: one load when 4-aligned, two otherwise).
#ifdef SMALL_STORAGE
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#endif

layout(constant_id = 1) const uint WTYPE = 0;  // ggml type id
const uint T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30;
const bool K_QUANT = WTYPE == T_Q4_K || WTYPE == T_Q5_K || WTYPE == T_Q6_K;

layout(std430, binding = 0) readonly buffer weight_words { uint w32[]; };
#ifdef SMALL_STORAGE
layout(std430, binding = 0) readonly buffer weight_halves { uint16_t w16[]; };
layout(std430, binding = 0) readonly buffer weight_bytes { int8_t w8[]; };
uint ld_u16(uint b) { return uint(w16[b >> 1]); }
int ld_i8(uint b) { return int(w8[b]); }
#else
uint ld_u16(uint b) { return (w32[b >> 2] >> ((b & 2u) * 8u)) & 0xffffu; }
int ld_i8(uint b) { return bitfieldExtract(int(w32[b >> 2]), int((b & 3u) * 8u), 8); }
#endif
uint ld_u8(uint b) { return (w32[b >> 2] >> ((b & 3u) * 8u)) & 0xffu; }
uint ld_u32(uint b) {  // b even, all four bytes in the tensor (its binding ends with the word of its last byte)
    const uint w = b >> 2;
    return (b & 2u) == 0u ? w32[w] : (w32[w] >> 16) | (w32[w + 1u] << 16);
}
vec4 bytes4(uint w) { return vec4(w & 0xffu, (w >> 8) & 0xffu, (w >> 16) & 0xffu, w >> 24); }

// Bytes of a row of n values (n a multiple of 32 for the Q types, of 256 for the K types).
uint weight_row_bytes(uint n) {
    if (WTYPE == T_F32) return n * 4u;
    if (WTYPE == T_F16 || WTYPE == T_BF16) return n * 2u;
    if (WTYPE == T_Q8_0) return n / 32u * 34u;
    if (WTYPE == T_Q5_0) return n / 32u * 22u;
    if (WTYPE == T_Q5_1) return n / 32u * 24u;
    if (WTYPE == T_Q4_K) return n / 256u * 144u;
    if (WTYPE == T_Q5_K) return n / 256u * 176u;
    if (WTYPE == T_Q6_K) return n / 256u * 210u;
    return n / 32u * 18u;
}

// Q4_K / Q5_K: scale and min of sub-block j (0..7) from the scales[12] at byte s
// (ggml's get_scale_min_k4).
uvec2 kq_scale_min(uint s, uint j) {
    if (j < 4u) return uvec2(ld_u8(s + j) & 63u, ld_u8(s + j + 4u) & 63u);
    const uint a = ld_u8(s + j + 4u);
    return uvec2((a & 15u) | ((ld_u8(s + j - 4u) >> 6) << 4), (a >> 4) | ((ld_u8(s + j) >> 6) << 4));
}

// K types: the byte where the super-block holding value i of the row at byte `row` starts.
uint kq_block(uint row, uint i) {
    return row + (i >> 8) * (WTYPE == T_Q4_K ? 144u : WTYPE == T_Q5_K ? 176u : 210u);
}

// Q4_K / Q5_K: sub-block j (32 values) of the super-block at byte blk: the factors
// d·scale and dmin·min, and the quants of values l..l+3 (l a multiple of 4) as four bytes.
vec2 kq_factors(uint blk, uint j) {
    const vec2 dm = unpackHalf2x16(ld_u32(blk));
    const uvec2 sm = kq_scale_min(blk + 4u, j);
    return vec2(dm.x * float(sm.x), dm.y * float(sm.y));
}
uint kq_quants4(uint blk, uint j, uint l) {
    const uint qs = WTYPE == T_Q4_K ? 16u : 48u;
    uint q = (ld_u32(blk + qs + 32u * (j >> 1) + l) >> (4u * (j & 1u))) & 0x0f0f0f0fu;
    if (WTYPE == T_Q5_K) q |= ((ld_u32(blk + 16u + l) >> j) & 0x01010101u) << 4;
    return q;
}

// Q6_K: values 32·g + l .. + 3 of half h (g 0..3, l a multiple of 4) of the super-block at byte
// blk: the factor d·scale and the quants (0..63, 32 is zero) as four bytes.
float q6_factor(uint blk, uint h, uint g, uint l) {
    const int sc = int(ld_u8(blk + 192u + 8u * h + 2u * g + l / 16u) << 24) >> 24;
    return unpackHalf2x16(ld_u16(blk + 208u)).x * float(sc);  // a half: a word could pass the end of the row
}
uint q6_quants4(uint blk, uint h, uint g, uint l) {
    const uint lo = (ld_u32(blk + 64u * h + 32u * (g & 1u) + l) >> (4u * (g >> 1))) & 0x0f0f0f0fu;
    const uint hi = (ld_u32(blk + 128u + 32u * h + l) >> (2u * g)) & 0x03030303u;
    return lo | (hi << 4);
}

// Values i..i+3 of the row starting at byte `row` (i a multiple of 4).
vec4 weight4(uint row, uint i) {
    if (WTYPE == T_F32) {
        const uint w = (row >> 2) + i;
        return vec4(uintBitsToFloat(w32[w]), uintBitsToFloat(w32[w + 1]), uintBitsToFloat(w32[w + 2]),
                    uintBitsToFloat(w32[w + 3]));
    }
    if (WTYPE == T_F16) {
        const uint w = (row >> 2) + i / 2u;
        return vec4(unpackHalf2x16(w32[w]), unpackHalf2x16(w32[w + 1]));
    }
    if (WTYPE == T_BF16) {
        const uint w = (row >> 2) + i / 2u;
        const uint a = w32[w], b = w32[w + 1];
        return vec4(uintBitsToFloat(a << 16), uintBitsToFloat(a & 0xffff0000u), uintBitsToFloat(b << 16),
                    uintBitsToFloat(b & 0xffff0000u));
    }
    if (WTYPE == T_Q4_K || WTYPE == T_Q5_K) {
        const uint blk = kq_block(row, i), k = i & 255u, j = k >> 5;
        const vec2 f = kq_factors(blk, j);
        return f.x * bytes4(kq_quants4(blk, j, k & 31u)) - f.y;
    }
    if (WTYPE == T_Q6_K) {
        const uint blk = kq_block(row, i), k = i & 255u, h = k >> 7, g = (k >> 5) & 3u, l = k & 31u;
        return q6_factor(blk, h, g, l) * (bytes4(q6_quants4(blk, h, g, l)) - 32.0);
    }
    const uint j = i & 31u;
    if (WTYPE == T_Q8_0) {
        const uint blk = row + (i >> 5) * 34u;
        const float d = unpackHalf2x16(ld_u16(blk)).x;
        const uint q = blk + 2u + j;
        return d * vec4(ld_i8(q), ld_i8(q + 1u), ld_i8(q + 2u), ld_i8(q + 3u));
    }
    if (WTYPE == T_Q5_0 || WTYPE == T_Q5_1) {
        const uint blk = row + (i >> 5) * (WTYPE == T_Q5_0 ? 22u : 24u), qh = WTYPE == T_Q5_0 ? 2u : 4u;
        const uint bytes = ld_u32(blk + qh + 4u + (j & 15u));  // qs: even offsets, within the block
        const uint nib = (j < 16u ? bytes : bytes >> 4) & 0x0f0f0f0fu;
        const uint hb = (ld_u32(blk + qh) >> j) & 15u;  // the 5th bits of values j..j+3, to bit 4 of each byte
        const uint q = nib | ((hb & 1u) << 4) | ((hb & 2u) << 11) | ((hb & 4u) << 18) | ((hb & 8u) << 25);
        if (WTYPE == T_Q5_0) return unpackHalf2x16(ld_u16(blk)).x * (bytes4(q) - 16.0);
        const vec2 dm = unpackHalf2x16(ld_u32(blk));
        return dm.x * bytes4(q) + dm.y;
    }
    // Q4_0
    const uint blk = row + (i >> 5) * 18u;
    const float d = unpackHalf2x16(ld_u16(blk)).x;
    const uint q = blk + 2u + (j & 15u);
    const uint bytes = ld_u16(q) | (ld_u16(q + 2u) << 16);
    const uint nib = j < 16u ? bytes : bytes >> 4;
    return d * (vec4(nib & 15u, (nib >> 8) & 15u, (nib >> 16) & 15u, (nib >> 24) & 15u) - 8.0);
}

// K types: values i..i+7 of the row at byte `row` (i a multiple of 8) into a and b, the
// sub-block's scale unpacked once; the same values weight4 gives.
void kq_weight8(uint row, uint i, out vec4 a, out vec4 b) {
    const uint blk = kq_block(row, i), k = i & 255u, l = k & 31u;
    if (WTYPE == T_Q6_K) {
        const uint h = k >> 7, g = (k >> 5) & 3u;
        const float f = q6_factor(blk, h, g, l);
        a = f * (bytes4(q6_quants4(blk, h, g, l)) - 32.0);
        b = f * (bytes4(q6_quants4(blk, h, g, l + 4u)) - 32.0);
    } else {
        const uint j = k >> 5;
        const vec2 f = kq_factors(blk, j);
        a = f.x * bytes4(kq_quants4(blk, j, l)) - f.y;
        b = f.x * bytes4(kq_quants4(blk, j, l + 4u)) - f.y;
    }
}
