// Reading stored weights (binding 0) in their ggml layouts: F32, F16, BF16,
// Q8_0 (blocks of 32: f16 d, int8 q[32]) and Q4_0 (f16 d, uint8 qs[16]; element
// j < 16 is the low nibble of qs[j], j + 16 its high nibble). Q blocks are 34
// and 18 bytes, so they are only 2-byte aligned: with 16/8-bit storage the
// kernel loads halves and bytes directly, otherwise it extracts them from words.
#ifdef SMALL_STORAGE
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#endif

layout(constant_id = 1) const uint WTYPE = 0;  // ggml type id
const uint T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_BF16 = 30;

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

// Bytes of a row of n values (n a multiple of 32 for the Q types).
uint weight_row_bytes(uint n) {
    if (WTYPE == T_F32) return n * 4u;
    if (WTYPE == T_F16 || WTYPE == T_BF16) return n * 2u;
    if (WTYPE == T_Q8_0) return n / 32u * 34u;
    return n / 32u * 18u;
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
    const uint j = i & 31u;
    if (WTYPE == T_Q8_0) {
        const uint blk = row + (i >> 5) * 34u;
        const float d = unpackHalf2x16(ld_u16(blk)).x;
        const uint q = blk + 2u + j;
        return d * vec4(ld_i8(q), ld_i8(q + 1u), ld_i8(q + 2u), ld_i8(q + 3u));
    }
    // Q4_0
    const uint blk = row + (i >> 5) * 18u;
    const float d = unpackHalf2x16(ld_u16(blk)).x;
    const uint q = blk + 2u + (j & 15u);
    const uint bytes = ld_u16(q) | (ld_u16(q + 2u) << 16);
    const uint nib = j < 16u ? bytes : bytes >> 4;
    return d * (vec4(nib & 15u, (nib >> 8) & 15u, (nib >> 16) & 15u, (nib >> 24) & 15u) - 8.0);
}
