#pragma once
// Weight types and their storage, bit for bit as ggml lays them out, so files
// written by llama.cpp's tools load unchanged and weights are used in place.
//
//   F32   4 bytes / value
//   F16   IEEE half, 2 bytes / value
//   BF16  upper half of an f32, 2 bytes / value
//   Q8_0  blocks of 32: f16 scale d, int8 q[32];            x = d * q
//   Q4_0  blocks of 32: f16 scale d, uint8 qs[16];          x = d * (nibble - 8)
//         element j (j < 16) is the low nibble of qs[j], element j + 16 its high nibble
//   Q5_0  blocks of 32: f16 d, uint8 qh[4], uint8 qs[16];   x = d * (q - 16)
//   Q5_1  blocks of 32: f16 d, f16 m, uint8 qh[4], qs[16];  x = d * q + m
//         q = nibble | bit << 4: nibbles as Q4_0's, the 5th bit of element j is
//         bit j of qh read as a little-endian uint32
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "ncas/error.hpp"

namespace ncas {

enum class weight_type : uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_k = 12, q5_k = 13, q6_k = 14, bf16 = 30 };

inline constexpr int64_t quant_block = 32;  // values per Q8_0 / Q4_0 / Q5_0 / Q5_1 block

struct block_q8_0 {
    uint16_t d;  // f16 scale
    int8_t q[quant_block];
};
struct block_q4_0 {
    uint16_t d;  // f16 scale
    uint8_t qs[quant_block / 2];
};
struct block_q5_0 {
    uint16_t d;      // f16 scale
    uint8_t qh[4];   // the 5th bits, bit j for element j (a little-endian uint32)
    uint8_t qs[quant_block / 2];
};
struct block_q5_1 {
    uint16_t d;      // f16 scale
    uint16_t m;      // f16 minimum
    uint8_t qh[4];
    uint8_t qs[quant_block / 2];
};
static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q4_0) == 18, "ggml block layouts");
static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24, "ggml block layouts");
static_assert(alignof(block_q5_0) == 2 && alignof(block_q5_1) == 2, "ggml block layouts");

// K-quant super-blocks of 256 values (layouts and rounding: the K-quant section below).
inline constexpr int64_t qk_k = 256;

struct block_q6_K {
    uint8_t ql[qk_k / 2];
    uint8_t qh[qk_k / 4];
    int8_t scales[qk_k / 16];
    uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210, "ggml block_q6_K layout");

struct block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q4_K) == 144, "ggml block_q4_K layout");

struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[qk_k / 8];
    uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q5_K) == 176, "ggml block_q5_K layout");

struct type_traits {
    std::string_view name;
    int64_t block_values;  // values per block (1 for plain floats)
    int64_t block_bytes;   // bytes per block
};

// The traits of a ggml type id, or nothing when the id is not one ncas reads.
constexpr std::optional<type_traits> traits_of(uint32_t id) {
    switch (static_cast<weight_type>(id)) {
        case weight_type::f32: return type_traits{"F32", 1, 4};
        case weight_type::f16: return type_traits{"F16", 1, 2};
        case weight_type::bf16: return type_traits{"BF16", 1, 2};
        case weight_type::q8_0: return type_traits{"Q8_0", quant_block, sizeof(block_q8_0)};
        case weight_type::q4_0: return type_traits{"Q4_0", quant_block, sizeof(block_q4_0)};
        case weight_type::q5_0: return type_traits{"Q5_0", quant_block, sizeof(block_q5_0)};
        case weight_type::q5_1: return type_traits{"Q5_1", quant_block, sizeof(block_q5_1)};
        case weight_type::q4_k: return type_traits{"Q4_K", qk_k, sizeof(block_q4_K)};
        case weight_type::q5_k: return type_traits{"Q5_K", qk_k, sizeof(block_q5_K)};
        case weight_type::q6_k: return type_traits{"Q6_K", qk_k, sizeof(block_q6_K)};
    }
    return std::nullopt;
}

constexpr type_traits traits_of(weight_type t) { return *traits_of(static_cast<uint32_t>(t)); }
constexpr std::string_view type_name(weight_type t) { return traits_of(t).name; }
constexpr bool is_k_quant(weight_type t) {
    return t == weight_type::q4_k || t == weight_type::q5_k || t == weight_type::q6_k;
}

// Bytes of a row of n values; n must be a whole number of blocks (checked by the loader).
constexpr int64_t row_bytes(weight_type t, int64_t n) {
    const type_traits tr = traits_of(t);
    return n / tr.block_values * tr.block_bytes;
}

// The values one KV cache row of n values stores: a quantised cache (q8_0, q4_0)
// holds a row in whole blocks of 32 along the head dimension, zero-padded at the
// row's end when n is not a multiple of 32 (a map of d = 72 values then spans
// parts of three or four blocks: the blocks follow the row, not the maps).
constexpr int64_t kv_row_values(weight_type kv_type, int64_t n) {
    const int64_t b = traits_of(kv_type).block_values;
    return (n + b - 1) / b * b;
}
// The widest head (d, dv) a quantised cache's attention kernels take (their buffers are on the stack).
inline constexpr int64_t kv_quant_max_head = 512;
// Bytes of one cache row of n values.
constexpr int64_t kv_row_bytes(weight_type kv_type, int64_t n) { return row_bytes(kv_type, kv_row_values(kv_type, n)); }

// Parses "f32", "Q8_0", ... (case-insensitive) as used on command lines.
inline weight_type parse_weight_type(std::string_view s) {
    for (weight_type t : {weight_type::f32, weight_type::f16, weight_type::bf16, weight_type::q8_0,
                          weight_type::q4_0}) {
        std::string_view n = type_name(t);
        if (n.size() == s.size() &&
            std::equal(n.begin(), n.end(), s.begin(), [](char a, char b) { return a == (b & ~0x20) || a == b; }))
            return t;
    }
    throw error("unknown weight type '" + std::string(s) + "' (expected f32, f16, bf16, q8_0 or q4_0)");
}

// ---- scalar conversions -------------------------------------------------

constexpr float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);  // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;  // signed zero
    } else {          // subnormal: renormalise
        exp = 113;
        while (!(man & 0x400u)) { man <<= 1; --exp; }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

// Round to nearest even, as numpy and the F16C instructions do.
constexpr uint16_t f32_to_f16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past 65504: inf
    if (ax < 0x38800000u) {                                    // result is subnormal or zero
        if (ax < 0x33000000u) return sign;
        const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;  // 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return uint16_t(sign | r);
    }
    uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
}

constexpr float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

constexpr uint16_t f32_to_bf16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet nan
    return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---- rows ---------------------------------------------------------------
//
// Quantisation gives the same bytes on every machine (ggml's reference,
// tools/quantize.py): every product is rounded to float32 before it is added.
// Where FMA is baseline (ARM64, x86-64-v3 builds) GCC fuses a·b + c into one
// FMA, even across statements, and clang within an expression; that changes
// rare quants and scale searches. Both are turned off from here to the end of
// this header: GCC by an optimize region, clang by a pragma at the start of
// each function (NCAS_EXACT_FLOAT, undefined again at the end).
#if defined(__clang__)
#define NCAS_EXACT_FLOAT _Pragma("clang fp contract(off)")
#else
#define NCAS_EXACT_FLOAT
#if defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
#endif

// Q5_0 / Q5_1 and the K-quant rows (defined with their algorithms below).
inline void quantize_row_q5_0(const float* x, block_q5_0* y, int64_t n);
inline void quantize_row_q5_1(const float* x, block_q5_1* y, int64_t n);
inline void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t n);
inline void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t n);
inline void quantize_row_q4_k(const float* x, block_q4_K* y, int64_t n);
inline void quantize_row_q5_k(const float* x, block_q5_K* y, int64_t n);
inline void quantize_row_q6_k(const float* x, block_q6_K* y, int64_t n);
inline void dequantize_row_q4_k(const block_q4_K* x, float* y, int64_t n);
inline void dequantize_row_q5_k(const block_q5_K* x, float* y, int64_t n);
inline void dequantize_row_q6_k(const block_q6_K* x, float* y, int64_t n);

// Dequantises n values (n a multiple of the type's block) from src into dst.
inline void dequantize_row(weight_type t, const void* src, float* dst, int64_t n) {
    NCAS_EXACT_FLOAT
    switch (t) {
        case weight_type::f32: std::memcpy(dst, src, size_t(n) * 4); return;
        case weight_type::f16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
            return;
        }
        case weight_type::bf16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
            return;
        }
        case weight_type::q8_0: {
            const auto* b = static_cast<const block_q8_0*>(src);
            for (int64_t i = 0; i < n / quant_block; ++i, dst += quant_block) {
                const float d = f16_to_f32(b[i].d);
                for (int j = 0; j < quant_block; ++j) dst[j] = d * float(b[i].q[j]);
            }
            return;
        }
        case weight_type::q4_0: {
            const auto* b = static_cast<const block_q4_0*>(src);
            for (int64_t i = 0; i < n / quant_block; ++i, dst += quant_block) {
                const float d = f16_to_f32(b[i].d);
                for (int j = 0; j < quant_block / 2; ++j) {
                    dst[j] = d * float((b[i].qs[j] & 0x0f) - 8);
                    dst[j + quant_block / 2] = d * float((b[i].qs[j] >> 4) - 8);
                }
            }
            return;
        }
        case weight_type::q5_0: return dequantize_row_q5_0(static_cast<const block_q5_0*>(src), dst, n);
        case weight_type::q5_1: return dequantize_row_q5_1(static_cast<const block_q5_1*>(src), dst, n);
        case weight_type::q4_k: return dequantize_row_q4_k(static_cast<const block_q4_K*>(src), dst, n);
        case weight_type::q5_k: return dequantize_row_q5_k(static_cast<const block_q5_K*>(src), dst, n);
        case weight_type::q6_k: return dequantize_row_q6_k(static_cast<const block_q6_K*>(src), dst, n);
    }
}

// A Q8_0 / Q4_0 block of 32 values with a NaN or an infinity (ggml's reference
// rounds NaN to an integer: undefined behaviour) gets scale NaN and zero quants,
// so it reads back as NaN and the fault reaches the logits (where the sampler
// refuses it). Files never hold such blocks (`ncas quantize` refuses non-finite
// weights); a KV cache row does when a corrupt model or state makes NaN activations.
inline bool nonfinite_block(const float* x, uint16_t& d, void* quants, size_t quant_bytes) {
    NCAS_EXACT_FLOAT
    float zero = 0.0f;  // Σ x·0: NaN when any value is NaN or infinite
    for (int j = 0; j < quant_block; ++j) zero += x[j] * 0.0f;
    if (zero == 0.0f) return false;
    d = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
    std::memset(quants, 0, quant_bytes);
    return true;
}

// Quantises n f32 values into blocks of type t with ggml's rounding (used by
// the KV cache, `ncas quantize`, tests and the synthetic-model generator of the benchmark).
inline void quantize_row(weight_type t, const float* src, void* dst, int64_t n) {
    NCAS_EXACT_FLOAT
    switch (t) {
        case weight_type::f32: std::memcpy(dst, src, size_t(n) * 4); return;
        case weight_type::f16: {
            auto* d = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
            return;
        }
        case weight_type::bf16: {
            auto* d = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
            return;
        }
        case weight_type::q8_0: {
            auto* b = static_cast<block_q8_0*>(dst);
            for (int64_t i = 0; i < n / quant_block; ++i, src += quant_block) {
                if (nonfinite_block(src, b[i].d, b[i].q, sizeof b[i].q)) continue;
                float amax = 0;
                for (int j = 0; j < quant_block; ++j) amax = std::max(amax, std::abs(src[j]));
                const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
                b[i].d = f32_to_f16(d);
                for (int j = 0; j < quant_block; ++j) b[i].q[j] = int8_t(std::round(src[j] * id));  // roundf: half away from zero, as ggml
            }
            return;
        }
        case weight_type::q4_0: {
            auto* b = static_cast<block_q4_0*>(dst);
            for (int64_t i = 0; i < n / quant_block; ++i, src += quant_block) {
                if (nonfinite_block(src, b[i].d, b[i].qs, sizeof b[i].qs)) continue;
                float amax = 0, max = 0;  // the value of largest magnitude, with its sign
                for (int j = 0; j < quant_block; ++j)
                    if (std::abs(src[j]) > amax) { amax = std::abs(src[j]); max = src[j]; }
                const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
                b[i].d = f32_to_f16(d);
                // x·id is rounded to f32 before the + 8.5 (no FMA, see above).
                for (int j = 0; j < quant_block / 2; ++j) {
                    const float xl = src[j] * id, xh = src[j + quant_block / 2] * id;
                    const int lo = std::min(15, int(xl + 8.5f));
                    const int hi = std::min(15, int(xh + 8.5f));
                    b[i].qs[j] = uint8_t(lo | (hi << 4));
                }
            }
            return;
        }
        case weight_type::q5_0: return quantize_row_q5_0(src, static_cast<block_q5_0*>(dst), n);
        case weight_type::q5_1: return quantize_row_q5_1(src, static_cast<block_q5_1*>(dst), n);
        case weight_type::q4_k: return quantize_row_q4_k(src, static_cast<block_q4_K*>(dst), n);
        case weight_type::q5_k: return quantize_row_q5_k(src, static_cast<block_q5_K*>(dst), n);
        case weight_type::q6_k: return quantize_row_q6_k(src, static_cast<block_q6_K*>(dst), n);
    }
}

// ---- Q5_0 / Q5_1 (blocks of 32, 5-bit quants) ------------------------------
//
// ggml's quantize_row_q5_0_ref / q5_1_ref and dequantize_row_q5_0 / q5_1, every
// operation in float32 in ggml's order (tools/gguf.py gives the same bytes).
//   Q5_0  d = (the value of largest magnitude, with its sign) / −16,
//         q = min(31, ⌊x·(1/d) + 16.5⌋)  (x·(1/d) rounded to f32 first)
//   Q5_1  d = (max − min) / 31, m = min, q = ⌊(x − min)·(1/d) + 0.5⌋
// A block with a NaN or an infinity reads back as NaN (nonfinite_block above).

namespace q5 {

// The 32 quants (0..31) of a block into its nibbles and 5th bits.
inline void pack(const int* q, uint8_t* qs, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < quant_block / 2; ++j) {
        qs[j] = uint8_t((q[j] & 0x0f) | ((q[j + quant_block / 2] & 0x0f) << 4));
        bits |= uint32_t((q[j] >> 4) & 1) << j;
        bits |= uint32_t((q[j + quant_block / 2] >> 4) & 1) << (j + quant_block / 2);
    }
    for (int k = 0; k < 4; ++k) qh[k] = uint8_t(bits >> (8 * k));
}

// Quant j (0..31) of a block's nibbles and 5th bits.
inline int quant(const uint8_t* qs, const uint8_t* qh, int j) {
    const uint32_t bits = uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
    const int nib = j < quant_block / 2 ? qs[j] & 0x0f : qs[j - quant_block / 2] >> 4;
    return nib | int((bits >> j) & 1) << 4;
}

}  // namespace q5

// n values (a multiple of 32) into n / 32 Q5_0 blocks.
inline void quantize_row_q5_0(const float* x, block_q5_0* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / quant_block; ++i, x += quant_block) {
        block_q5_0& b = y[i];
        if (nonfinite_block(x, b.d, b.qs, sizeof b.qs)) {
            std::memset(b.qh, 0, sizeof b.qh);
            continue;
        }
        float amax = 0, max = 0;  // the value of largest magnitude, with its sign
        for (int j = 0; j < quant_block; ++j)
            if (std::abs(x[j]) > amax) { amax = std::abs(x[j]); max = x[j]; }
        const float d = max / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b.d = f32_to_f16(d);
        int q[quant_block];
        for (int j = 0; j < quant_block; ++j) {
            const float v = x[j] * id;  // rounded to f32 before the + 16.5
            q[j] = std::min(31, int(v + 16.5f));
        }
        q5::pack(q, b.qs, b.qh);
    }
}

// n values (a multiple of 32) into n / 32 Q5_1 blocks.
inline void quantize_row_q5_1(const float* x, block_q5_1* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / quant_block; ++i, x += quant_block) {
        block_q5_1& b = y[i];
        if (nonfinite_block(x, b.d, b.qs, sizeof b.qs)) {  // reads back NaN·q + 0
            b.m = 0;
            std::memset(b.qh, 0, sizeof b.qh);
            continue;
        }
        float min = std::numeric_limits<float>::max(), max = -std::numeric_limits<float>::max();
        for (int j = 0; j < quant_block; ++j) min = std::min(min, x[j]), max = std::max(max, x[j]);
        const float d = (max - min) / 31.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b.d = f32_to_f16(d);
        b.m = f32_to_f16(min);
        int q[quant_block];
        for (int j = 0; j < quant_block; ++j) {
            const float v = (x[j] - min) * id;  // each step rounded to f32
            q[j] = std::min(31, int(v + 0.5f));  // ggml's (uint8_t) cast: v + 0.5 < 32 (v ≤ 31·(1 + 2⁻²²))
        }
        q5::pack(q, b.qs, b.qh);
    }
}

// n / 32 Q5_0 blocks into n values.
inline void dequantize_row_q5_0(const block_q5_0* x, float* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / quant_block; ++i, y += quant_block) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < quant_block; ++j) y[j] = float(q5::quant(x[i].qs, x[i].qh, j) - 16) * d;
    }
}

// n / 32 Q5_1 blocks into n values.
inline void dequantize_row_q5_1(const block_q5_1* x, float* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / quant_block; ++i, y += quant_block) {
        const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
        for (int j = 0; j < quant_block; ++j) {
            const float p = float(q5::quant(x[i].qs, x[i].qh, j)) * d;
            y[j] = p + m;
        }
    }
}

// ---- K-quants (super-blocks of 256) --------------------------------------
//
// ggml's Q6_K, Q4_K and Q5_K, byte for byte: quantize_row_q6_K_ref (make_qx_quants'
// scale search), quantize_row_q4_K_ref and quantize_row_q5_K_ref
// (make_qkx2_quants' scale and min search), and their dequantisations, every operation in float32 in ggml's
// order (tools/kquants.py, numpy written from the same published algorithm,
// gives the same bytes; tests/test_quant.cpp). The matmul kernels read them in
// place: cpu/kernels/kquant_matmul.hpp, shaders/weights.glsl.
//   Q6_K  256 values: ql[128] low 4 bits, qh[64] high 2 bits, int8 scales[16]
//         (one per 16 values), f16 d;  x = d * scales[j] * (q - 32)
//   Q4_K  256 values: f16 d, f16 dmin, scales[12] (8 six-bit scales and 8
//         six-bit mins, one pair per 32 values), qs[128];  x = d*sc*q - dmin*m
//   Q5_K  as Q4_K with 5-bit quants: qh[32] (the 5th bits) before qs[128]

namespace kquant {

inline constexpr float group_max_eps = 1e-15f;

// ggml's nearest_int: round to nearest even by adding 1.5 * 2^23 (|v| < 2^22).
inline int nearest_int(float v) {
    NCAS_EXACT_FLOAT
    const float s = v + 12582912.0f;
    return int(std::bit_cast<int32_t>(s) & 0x007fffff) - 0x00400000;
}

// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL).
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    NCAS_EXACT_FLOAT
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < group_max_eps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    auto sums = [&](float iscale, float& sumlx, float& suml2, bool store) {
        sumlx = 0;
        suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
            if (store) L[i] = int8_t(l + nmax);
            const float w = x[i] * x[i];
            const float lf = float(l);
            const float wx = w * x[i];
            sumlx += wx * lf;
            const float wl = w * lf;
            suml2 += wl * lf;
        }
    };
    float sumlx, suml2;
    sums(float(-nmax) / max, sumlx, suml2, true);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float iscale = -(float(nmax) + 0.1f * float(is)) / max;
        sums(iscale, sumlx, suml2, false);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad = false).
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                              uint8_t* Laux, float rmin, float rdelta, int nstep) {
    NCAS_EXACT_FLOAT
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        const float wx = w * x[i];
        sum_x += wx;
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = float(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = uint8_t(std::max(0, std::min(nmax, l)));
        const float sl = scale * float(L[i]);
        float diff = sl + min;
        diff = diff - x[i];
        const float d2 = diff * diff;
        best_mad += weights[i] * d2;
    }
    for (int is = 0; is <= nstep; ++is) {
        const float r = rdelta * float(is);
        iscale = (rmin + r + float(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = uint8_t(l);
            const float wl = weights[i] * float(l);
            sum_l += wl;
            const float wll = wl * float(l);
            sum_l2 += wll;
            const float wlx = wl * x[i];
            sum_xl += wlx;
        }
        const float a = sum_w * sum_l2, b = sum_l * sum_l;
        const float D = a - b;
        if (D > 0) {
            const float p1 = sum_w * sum_xl, p2 = sum_x * sum_l;
            float this_scale = (p1 - p2) / D;
            const float p3 = sum_l2 * sum_x, p4 = sum_l * sum_xl;
            float this_min = (p3 - p4) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                const float sl = this_scale * float(Laux[i]);
                float diff = sl + this_min;
                diff = diff - x[i];
                const float d2 = diff * diff;
                mad += weights[i] * d2;
            }
            if (mad < best_mad) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

}  // namespace kquant

namespace kquant {

// quantize_row_q4_K_ref (nmax 15, rmin -1, 20 steps) and quantize_row_q5_K_ref
// (nmax 31, rmin -0.5, 15 steps): the same but for the quant width and the qh bits.
template <class Block, int nmax>
void quantize_row_qk_min(const float* x, Block* y, int64_t n, float rmin, int nstep) {
    NCAS_EXACT_FLOAT
    uint8_t L[qk_k], Laux[32];
    float weights[32], mins[qk_k / 32], scales[qk_k / 32];
    for (int64_t i = 0; i < n / qk_k; ++i, x += qk_k) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < qk_k / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) {
                const float sq = x[32 * j + l] * x[32 * j + l];
                sum_x2 += sq;
            }
            const float av_x = std::sqrt(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        Block& b = y[i];
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < qk_k / 32; ++j) {
            uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
            uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
            ls = std::min<uint8_t>(63, ls);
            lm = std::min<uint8_t>(63, lm);
            if (j < 4) {
                b.scales[j] = ls;
                b.scales[j + 4] = lm;
            } else {
                b.scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
                b.scales[j - 4] = uint8_t(b.scales[j - 4] | ((ls >> 4) << 6));
                b.scales[j - 0] = uint8_t(b.scales[j - 0] | ((lm >> 4) << 6));
            }
        }
        b.d = f32_to_f16(max_scale / 63.f);
        b.dmin = f32_to_f16(max_min / 63.f);
        for (int j = 0; j < qk_k / 32; ++j) {
            uint8_t sc, m;
            scale_min_k4(j, b.scales, sc, m);
            const float d = f16_to_f32(b.d) * float(sc);
            if (d == 0) continue;
            const float dm = f16_to_f32(b.dmin) * float(m);
            for (int ii = 0; ii < 32; ++ii) {
                const int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, l)));
            }
        }
        uint8_t* q = b.qs;
        if constexpr (nmax == 15) {
            for (int j = 0; j < qk_k; j += 64, q += 32)
                for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
        } else {
            std::memset(b.qh, 0, sizeof b.qh);
            uint8_t m1 = 1, m2 = 2;
            for (int j = 0; j < qk_k; j += 64, q += 32, m1 = uint8_t(m1 << 2), m2 = uint8_t(m2 << 2)) {
                for (int l = 0; l < 32; ++l) {
                    int l1 = L[j + l], l2 = L[j + l + 32];
                    if (l1 > 15) { l1 -= 16; b.qh[l] = uint8_t(b.qh[l] | m1); }
                    if (l2 > 15) { l2 -= 16; b.qh[l] = uint8_t(b.qh[l] | m2); }
                    q[l] = uint8_t(l1 | (l2 << 4));
                }
            }
        }
    }
}

}  // namespace kquant

// n values (a multiple of 256) into n / 256 Q4_K / Q5_K blocks.
inline void quantize_row_q4_k(const float* x, block_q4_K* y, int64_t n) {
    kquant::quantize_row_qk_min<block_q4_K, 15>(x, y, n, -1.f, 20);
}
inline void quantize_row_q5_k(const float* x, block_q5_K* y, int64_t n) {
    kquant::quantize_row_qk_min<block_q5_K, 31>(x, y, n, -0.5f, 15);
}


// n / 256 Q4_K blocks into n values.
inline void dequantize_row_q4_k(const block_q4_K* x, float* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / qk_k; ++i) {
        const uint8_t* q = x[i].qs;
        const float d = f16_to_f32(x[i].d), min = f16_to_f32(x[i].dmin);
        int is = 0;
        for (int j = 0; j < qk_k; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            kquant::scale_min_k4(is + 0, x[i].scales, sc, m);
            const float d1 = d * float(sc), m1 = min * float(m);
            kquant::scale_min_k4(is + 1, x[i].scales, sc, m);
            const float d2 = d * float(sc), m2 = min * float(m);
            for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
        }
    }
}

// n / 256 Q5_K blocks into n values.
inline void dequantize_row_q5_k(const block_q5_K* x, float* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / qk_k; ++i) {
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        const float d = f16_to_f32(x[i].d), min = f16_to_f32(x[i].dmin);
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < qk_k; j += 64, ql += 32, is += 2, u1 = uint8_t(u1 << 2), u2 = uint8_t(u2 << 2)) {
            uint8_t sc, m;
            kquant::scale_min_k4(is + 0, x[i].scales, sc, m);
            const float d1 = d * float(sc), m1 = min * float(m);
            kquant::scale_min_k4(is + 1, x[i].scales, sc, m);
            const float d2 = d * float(sc), m2 = min * float(m);
            for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

// n values (a multiple of 256) into n / 256 Q6_K blocks.
inline void quantize_row_q6_k(const float* x, block_q6_K* y, int64_t n) {
    NCAS_EXACT_FLOAT
    int8_t L[qk_k];
    float scales[qk_k / 16];
    for (int64_t i = 0; i < n / qk_k; ++i, x += qk_k) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < qk_k / 16; ++ib) {
            const float scale = kquant::make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
        }
        block_q6_K& b = y[i];
        if (max_abs_scale < kquant::group_max_eps) {
            std::memset(&b, 0, sizeof b);
            b.d = f32_to_f16(0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        b.d = f32_to_f16(1 / iscale);
        for (int ib = 0; ib < qk_k / 16; ++ib) b.scales[ib] = int8_t(std::min(127, kquant::nearest_int(iscale * scales[ib])));
        for (int j = 0; j < qk_k / 16; ++j) {
            const float d = f16_to_f32(b.d) * float(b.scales[j]);
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = std::max(-32, std::min(31, kquant::nearest_int(x[16 * j + ii] / d)));
                L[16 * j + ii] = int8_t(l + 32);
            }
        }
        uint8_t* ql = b.ql;
        uint8_t* qh = b.qh;
        for (int j = 0; j < qk_k; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const auto q1 = uint8_t(L[j + l + 0] & 0xF), q2 = uint8_t(L[j + l + 32] & 0xF);
                const auto q3 = uint8_t(L[j + l + 64] & 0xF), q4 = uint8_t(L[j + l + 96] & 0xF);
                ql[l + 0] = uint8_t(q1 | (q3 << 4));
                ql[l + 32] = uint8_t(q2 | (q4 << 4));
                qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

// n / 256 Q6_K blocks into n values.
inline void dequantize_row_q6_k(const block_q6_K* x, float* y, int64_t n) {
    NCAS_EXACT_FLOAT
    for (int64_t i = 0; i < n / qk_k; ++i) {
        const float d = f16_to_f32(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int h = 0; h < qk_k; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * float(sc[is + 0]) * float(q1);
                y[l + 32] = d * float(sc[is + 2]) * float(q2);
                y[l + 64] = d * float(sc[is + 4]) * float(q3);
                y[l + 96] = d * float(sc[is + 6]) * float(q4);
            }
        }
    }
}

}  // namespace ncas

#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif
#undef NCAS_EXACT_FLOAT
