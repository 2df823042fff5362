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
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "ncas/error.hpp"

namespace ncas {

enum class weight_type : uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30 };

inline constexpr int64_t quant_block = 32;  // values per Q8_0 / Q4_0 block

struct block_q8_0 {
    uint16_t d;  // f16 scale
    int8_t q[quant_block];
};
struct block_q4_0 {
    uint16_t d;  // f16 scale
    uint8_t qs[quant_block / 2];
};
static_assert(sizeof(block_q8_0) == 34 && sizeof(block_q4_0) == 18, "ggml block layouts");

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
    }
    return std::nullopt;
}

constexpr type_traits traits_of(weight_type t) { return *traits_of(static_cast<uint32_t>(t)); }
constexpr std::string_view type_name(weight_type t) { return traits_of(t).name; }

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

// Dequantises n values (n a multiple of the type's block) from src into dst.
inline void dequantize_row(weight_type t, const void* src, float* dst, int64_t n) {
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
    }
}

// Quantises n f32 values into blocks of type t with ggml's rounding (used by
// tests and by the synthetic-model generator of the benchmark).
inline void quantize_row(weight_type t, const float* src, void* dst, int64_t n) {
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
                float amax = 0, max = 0;  // the value of largest magnitude, with its sign
                for (int j = 0; j < quant_block; ++j)
                    if (std::abs(src[j]) > amax) { amax = std::abs(src[j]); max = src[j]; }
                const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
                b[i].d = f32_to_f16(d);
                for (int j = 0; j < quant_block / 2; ++j) {
                    const int lo = std::min(15, int(src[j] * id + 8.5f));
                    const int hi = std::min(15, int(src[j + quant_block / 2] * id + 8.5f));
                    b[i].qs[j] = uint8_t(lo | (hi << 4));
                }
            }
            return;
        }
    }
}

}  // namespace ncas
