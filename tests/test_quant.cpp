// Weight-type conversions and ggml block layouts against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ncas/format/quant.hpp"

using namespace ncas;

TEST(f16, known_values) {
    EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
    EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
    EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
    EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
}

TEST(f16, every_value_round_trips) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // nan payloads
        ASSERT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h) << std::hex << h;
    }
}

TEST(f16, rounds_to_nearest_even) {
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // halfway, to even (down)
    EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // halfway, to even (up)
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds past the largest half: inf
    EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);             // halfway to the smallest subnormal: even
    EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
    EXPECT_EQ(f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);         // 1.5 subnormal steps, to even
}

TEST(bf16, known_values_and_rounding) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(bf16_to_f32(0xc0a0), -5.0f);
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // halfway, to even
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);
    EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
}

TEST(q8_0, block_by_hand) {
    // amax 127/64 gives d = 1/64 exactly (f16 0x2400); q = round(x·64), halves away from zero.
    float x[32] = {127.0f / 64, -0.5f, 3.0f / 128, -3.0f / 128};
    block_q8_0 b;
    quantize_row(weight_type::q8_0, x, &b, 32);
    EXPECT_EQ(b.d, 0x2400);
    EXPECT_EQ(b.q[0], 127);
    EXPECT_EQ(b.q[1], -32);
    EXPECT_EQ(b.q[2], 2);
    EXPECT_EQ(b.q[3], -2);
    for (int j = 4; j < 32; ++j) EXPECT_EQ(b.q[j], 0);
    unsigned char raw[34];
    std::memcpy(raw, &b, 34);  // the stored bytes, as ggml lays them out
    EXPECT_EQ(raw[0], 0x00);
    EXPECT_EQ(raw[1], 0x24);
    EXPECT_EQ(raw[2], 0x7f);
    EXPECT_EQ(raw[3], 0xe0);
    float y[32];
    dequantize_row(weight_type::q8_0, &b, y, 32);
    EXPECT_EQ(y[0], 127.0f / 64);
    EXPECT_EQ(y[1], -0.5f);
    EXPECT_EQ(y[2], 1.0f / 32);
    EXPECT_EQ(y[3], -1.0f / 32);
}

TEST(q4_0, block_by_hand) {
    // The largest magnitude is −1, so d = −1/−8 = 0.125 (f16 0x3000); q = min(15, ⌊x·8 + 8.5⌋).
    float x[32] = {};
    x[0] = -1.0f, x[1] = 0.875f, x[2] = 0.5f, x[16] = 0.25f, x[17] = -0.5f;
    block_q4_0 b;
    quantize_row(weight_type::q4_0, x, &b, 32);
    EXPECT_EQ(b.d, 0x3000);
    EXPECT_EQ(b.qs[0], 0xa0);  // q0 = 0 low, q16 = 10 high
    EXPECT_EQ(b.qs[1], 0x4f);  // q1 = 15, q17 = 4
    EXPECT_EQ(b.qs[2], 0x8c);  // q2 = 12, q18 = 8
    for (int j = 3; j < 16; ++j) EXPECT_EQ(b.qs[j], 0x88);
    float y[32];
    dequantize_row(weight_type::q4_0, &b, y, 32);
    EXPECT_EQ(y[0], -1.0f);
    EXPECT_EQ(y[1], 0.875f);
    EXPECT_EQ(y[2], 0.5f);
    EXPECT_EQ(y[16], 0.25f);
    EXPECT_EQ(y[17], -0.5f);
    EXPECT_EQ(y[31], 0.0f);
}

TEST(q5_0, block_by_hand) {
    // The largest magnitude is −2, so d = −2/−16 = 0.125 (f16 0x3000), 1/d = 8;
    // q = min(31, ⌊x·8 + 16.5⌋): the 5th bit of element j is bit j of qh.
    float x[32] = {};
    x[0] = -2.0f, x[1] = 1.875f, x[2] = 0.5f, x[3] = 2.0f / 16, x[16] = -0.25f, x[17] = 1.0f, x[31] = -0.1875f;
    block_q5_0 b;
    quantize_row(weight_type::q5_0, x, &b, 32);
    EXPECT_EQ(b.d, 0x3000);
    // q0 = 0, q1 = 31, q2 = 20, q3 = 17, q16 = 14, q17 = 24, q31 = ⌊−1.5 + 16.5⌋ = 15; the rest 16.
    EXPECT_EQ(b.qs[0], 0xe0);  // q0 = 0 low, q16 = 14 high
    EXPECT_EQ(b.qs[1], 0x8f);  // q1 = 31 → 15, q17 = 24 → 8
    EXPECT_EQ(b.qs[2], 0x04);  // q2 = 20 → 4, q18 = 16 → 0
    EXPECT_EQ(b.qs[3], 0x01);  // q3 = 17 → 1
    EXPECT_EQ(b.qs[15], 0xf0);  // q15 = 16 → 0, q31 = 15
    // 5th bits: every element but 0 (q 0), 16 (14) and 31 (15); as a little-endian uint32.
    const uint32_t bits = 0xffffffffu & ~(1u << 0) & ~(1u << 16) & ~(1u << 31);
    EXPECT_EQ(b.qh[0], uint8_t(bits));
    EXPECT_EQ(b.qh[1], uint8_t(bits >> 8));
    EXPECT_EQ(b.qh[2], uint8_t(bits >> 16));
    EXPECT_EQ(b.qh[3], uint8_t(bits >> 24));
    unsigned char raw[22];
    std::memcpy(raw, &b, 22);  // d, qh, qs: ggml's order
    EXPECT_EQ(raw[1], 0x30);
    EXPECT_EQ(raw[2], 0xfe);
    EXPECT_EQ(raw[6], 0xe0);
    float y[32];
    dequantize_row(weight_type::q5_0, &b, y, 32);
    EXPECT_EQ(y[0], -2.0f);
    EXPECT_EQ(y[1], 1.875f);
    EXPECT_EQ(y[2], 0.5f);
    EXPECT_EQ(y[3], 0.125f);
    EXPECT_EQ(y[16], -0.25f);
    EXPECT_EQ(y[17], 1.0f);
    EXPECT_EQ(y[31], -0.125f);
    EXPECT_EQ(y[30], 0.0f);
}

TEST(q5_1, block_by_hand) {
    // min −1, max 2.875: d = 3.875 / 31 = 0.125, m = −1; q = ⌊(x + 1)·8 + 0.5⌋.
    float x[32];
    for (float& v : x) v = 0.0f;
    x[0] = -1.0f, x[1] = 2.875f, x[5] = 0.5f, x[16] = 1.0f, x[20] = -0.96875f;
    block_q5_1 b;
    quantize_row(weight_type::q5_1, x, &b, 32);
    EXPECT_EQ(b.d, 0x3000);
    EXPECT_EQ(b.m, 0xbc00);
    // q0 = 0, q1 = 31, q5 = 12, q16 = 16, q20 = ⌊0.25 + 0.5⌋ = 0; zeros: 8.
    EXPECT_EQ(b.qs[0], 0x00);  // q0 = 0, q16 = 16 → 0 (bit 16 set)
    EXPECT_EQ(b.qs[1], 0x8f);  // q1 = 31 → 15, q17 = 8
    EXPECT_EQ(b.qs[4], 0x08);  // q4 = 8, q20 = 0
    EXPECT_EQ(b.qs[5], 0x8c);  // q5 = 12, q21 = 8
    const uint32_t bits = (1u << 1) | (1u << 16);
    uint32_t got;
    std::memcpy(&got, b.qh, 4);
    EXPECT_EQ(got, bits);
    unsigned char raw[24];
    std::memcpy(raw, &b, 24);  // d, m, qh, qs: ggml's order
    EXPECT_EQ(raw[3], 0xbc);
    EXPECT_EQ(raw[4], 0x02);
    EXPECT_EQ(raw[9], 0x8f);
    float y[32];
    dequantize_row(weight_type::q5_1, &b, y, 32);
    EXPECT_EQ(y[0], -1.0f);
    EXPECT_EQ(y[1], 2.875f);
    EXPECT_EQ(y[5], 0.5f);
    EXPECT_EQ(y[16], 1.0f);
    EXPECT_EQ(y[20], -1.0f);
    EXPECT_EQ(y[2], 0.0f);
}

// A block with a NaN or an infinity (a KV cache row of a corrupt model or state) reads
// back as NaN, whole, and leaves its neighbours as they were; rounding NaN to an integer
// is undefined behaviour (UBSan: fuzz_state's finding, tests/data/fuzz/state/regress_nan_cache_q8_0).
TEST(q8_0_q4_0, nonfinite_block_reads_back_nan) {
    for (const weight_type t : {weight_type::q8_0, weight_type::q4_0, weight_type::q5_0, weight_type::q5_1})
        for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()}) {
            std::vector<float> x(3 * quant_block);
            for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i)) * 3.0f;
            std::vector<float> clean_out(x.size()), out(x.size());
            std::vector<std::byte> q(size_t(row_bytes(t, int64_t(x.size()))));
            quantize_row(t, x.data(), q.data(), int64_t(x.size()));
            dequantize_row(t, q.data(), clean_out.data(), int64_t(x.size()));
            x[quant_block + 5] = bad;
            quantize_row(t, x.data(), q.data(), int64_t(x.size()));
            dequantize_row(t, q.data(), out.data(), int64_t(x.size()));
            for (int64_t i = 0; i < int64_t(x.size()); ++i) {
                if (i / quant_block == 1) EXPECT_TRUE(std::isnan(out[size_t(i)])) << type_name(t) << " value " << i;
                else EXPECT_EQ(out[size_t(i)], clean_out[size_t(i)]) << type_name(t) << " value " << i;
            }
        }
}

TEST(types, sizes_and_names) {
    EXPECT_EQ(row_bytes(weight_type::q4_0, 64), 36);
    EXPECT_EQ(row_bytes(weight_type::q8_0, 64), 68);
    EXPECT_EQ(row_bytes(weight_type::bf16, 64), 128);
    EXPECT_EQ(row_bytes(weight_type::q5_0, 64), 44);
    EXPECT_EQ(row_bytes(weight_type::q5_1, 64), 48);
    EXPECT_EQ(type_name(weight_type::q5_0), "Q5_0");
    EXPECT_EQ(type_name(weight_type::q5_1), "Q5_1");
    EXPECT_EQ(traits_of(6u)->block_values, 32);
    EXPECT_EQ(traits_of(7u)->block_bytes, 24);
    EXPECT_FALSE(traits_of(3u).has_value());  // Q4_1: not read by ncas
    EXPECT_EQ(parse_weight_type("q4_0"), weight_type::q4_0);
    EXPECT_EQ(parse_weight_type("BF16"), weight_type::bf16);
    EXPECT_THROW(parse_weight_type("q5_k"), ncas::error);
}

// ---- Q6_K: tools/kquants.py (numpy, from ggml's published algorithm) made
// tests/data/quant/q6_k_cases.bin; the C++ must give the same bytes.
namespace {

std::string q6k_data_path() {
#ifdef NCAS_TEST_DATA
    return std::string(NCAS_TEST_DATA) + "/quant/q6_k_cases.bin";
#else
    return "tests/data/quant/q6_k_cases.bin";
#endif
}

}  // namespace

TEST(q6_k, same_bytes_as_numpy_and_round_trip) {
    std::FILE* f = std::fopen(q6k_data_path().c_str(), "rb");
    ASSERT_NE(f, nullptr) << q6k_data_path();
    uint32_t rows = 0, n = 0;
    ASSERT_EQ(std::fread(&rows, 4, 1, f), 1u);
    ASSERT_EQ(std::fread(&n, 4, 1, f), 1u);
    ASSERT_EQ(n % ncas::qk_k, 0u);
    ASSERT_GE(rows, 5u);
    const size_t nb = n / ncas::qk_k;
    for (uint32_t r = 0; r < rows; ++r) {
        std::vector<float> x(n), y(n);
        std::vector<ncas::block_q6_K> want(nb), got(nb);
        ASSERT_EQ(std::fread(x.data(), 4, n, f), n);
        ASSERT_EQ(std::fread(want.data(), sizeof(ncas::block_q6_K), nb, f), nb);
        ncas::quantize_row_q6_k(x.data(), got.data(), n);
        for (size_t b = 0; b < nb; ++b)
            EXPECT_EQ(std::memcmp(&got[b], &want[b], sizeof got[b]), 0) << "row " << r << " block " << b;
        // Round trip: within half a step of each sub-block's scale, except where
        // the 6-bit range clips (then within the sub-block's largest |x|).
        ncas::dequantize_row_q6_k(got.data(), y.data(), n);
        double se = 0, sx = 0;
        for (size_t b = 0; b < nb; ++b) {
            const float d = ncas::f16_to_f32(got[b].d);
            for (int j = 0; j < 16; ++j) {
                const float step = std::fabs(d * float(got[b].scales[j]));
                float amax = 0;
                for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[b * 256 + size_t(j * 16 + i)]));
                for (int i = 0; i < 16; ++i) {
                    const size_t k = b * 256 + size_t(j * 16 + i);
                    const float err = std::fabs(y[k] - x[k]);
                    const bool clipped = std::fabs(x[k]) > 31.5f * step;
                    EXPECT_LE(err, clipped ? amax : 0.5f * step * 1.0001f + 1e-30f) << "row " << r << " value " << k;
                    se += double(err) * err;
                    sx += double(x[k]) * x[k];
                }
            }
        }
        if (sx > 0) { EXPECT_LT(std::sqrt(se / sx), 0.05) << "row " << r; }
    }
    std::fclose(f);
}

TEST(q6_k, block_layout_by_hand) {
    // 256 values q - 32 with q = i % 64 on sub-block scales 1: d = 1/iscale...
    // Check dequantisation of a hand-made block: ql/qh bit positions and scales.
    ncas::block_q6_K b{};
    b.d = ncas::f32_to_f16(0.5f);
    for (int j = 0; j < 16; ++j) b.scales[j] = int8_t(j - 8);
    // value 0 (first half, l = 0, q1): low nibble of ql[0], bits 0-1 of qh[0]; value 64 (q3): high nibble of ql[0], bits 4-5.
    b.ql[0] = 0x3A;      // q1 low = 0xA, q3 low = 0x3
    b.qh[0] = 0x21;      // q1 high = 1, q3 high = 2
    b.ql[32 + 5] = 0x70; // value 32+5 (q2) low = 0, value 96+5 (q4) low = 7
    b.qh[5] = 0xC0;      // q4 high = 3 (bits 6-7), q2 high = 0
    b.ql[64 + 1] = 0x0F; // second half, value 128+1 low = 15
    b.qh[32 + 1] = 0x02; // high = 2
    std::vector<float> y(256);
    ncas::dequantize_row_q6_k(&b, y.data(), 256);
    EXPECT_EQ(y[0], 0.5f * float(0 - 8) * float(0x1A - 32));
    EXPECT_EQ(y[64], 0.5f * float(4 - 8) * float(0x23 - 32));
    EXPECT_EQ(y[37], 0.5f * float(2 - 8) * float(0x00 - 32));
    EXPECT_EQ(y[101], 0.5f * float(6 - 8) * float(0x37 - 32));
    EXPECT_EQ(y[129], 0.5f * float(8 - 8) * float(0x2F - 32));
    EXPECT_EQ(y[128 + 64 + 1], 0.5f * float(12 - 8) * float(0x00 - 32));
}

// Q4_K and Q5_K (scale and min per 32-value sub-block, `steps` quant levels - 1):
// the numpy quantiser's bytes from tests/data/quant/FILE, and the round-trip bound.
template <class Block, class Quantize, class Dequantize>
void check_k_min(const std::string& file, Quantize quantize, Dequantize dequantize, int steps, double max_rms) {
    const std::string path = q6k_data_path().substr(0, q6k_data_path().size() - std::string("q6_k_cases.bin").size()) +
                             file;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    ASSERT_NE(f, nullptr) << path;
    uint32_t rows = 0, n = 0;
    ASSERT_EQ(std::fread(&rows, 4, 1, f), 1u);
    ASSERT_EQ(std::fread(&n, 4, 1, f), 1u);
    ASSERT_EQ(n % ncas::qk_k, 0u);
    ASSERT_GE(rows, 5u);
    const size_t nb = n / ncas::qk_k;
    for (uint32_t r = 0; r < rows; ++r) {
        std::vector<float> x(n), y(n);
        std::vector<Block> want(nb), got(nb);
        ASSERT_EQ(std::fread(x.data(), 4, n, f), n);
        ASSERT_EQ(std::fread(want.data(), sizeof(Block), nb, f), nb);
        quantize(x.data(), got.data(), n);
        for (size_t b = 0; b < nb; ++b)
            EXPECT_EQ(std::memcmp(&got[b], &want[b], sizeof got[b]), 0) << "row " << r << " block " << b;
        // Round trip: every value within 1.5 steps of its 32-value sub-block's
        // range / steps, plus the rounding of the 6-bit scale (d/2 per step) and
        // of the 6-bit min (dmin/2); RMS under max_rms of the row's.
        dequantize(got.data(), y.data(), n);
        double se = 0, sx = 0;
        for (size_t k = 0; k < size_t(n); ++k) {
            const size_t s0 = k / 32 * 32;
            float lo = 0, hi = 0;
            for (size_t i = s0; i < s0 + 32; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
            const float d = ncas::f16_to_f32(got[k / 256].d), dmin = ncas::f16_to_f32(got[k / 256].dmin);
            EXPECT_LE(std::fabs(y[k] - x[k]), (hi - lo) / float(steps) * 1.5f + 0.5f * float(steps) * d + 0.5f * dmin + 1e-30f)
                << "row " << r << " value " << k;
            se += double(y[k] - x[k]) * (y[k] - x[k]);
            sx += double(x[k]) * x[k];
        }
        if (sx > 0) { EXPECT_LT(std::sqrt(se / sx), max_rms) << "row " << r; }
    }
    std::fclose(f);
}


TEST(q4_k, same_bytes_as_numpy_and_round_trip) {
    check_k_min<ncas::block_q4_K>("q4_k_cases.bin", ncas::quantize_row_q4_k, ncas::dequantize_row_q4_k, 15, 0.15);
}

TEST(q5_k, same_bytes_as_numpy_and_round_trip) {
    check_k_min<ncas::block_q5_K>("q5_k_cases.bin", ncas::quantize_row_q5_k, ncas::dequantize_row_q5_k, 31, 0.08);
}

// Q5_0 / Q5_1: tools/gguf.py's numpy bytes (tests/data/quant/q5_*_cases.bin), and
// the round trip: Q5_0 within half a step d/2 of each value (d = |the largest| / 16),
// but a whole step d on the side opposite the largest, where q clips at 31 (15·d),
// Q5_1 within d/2 plus the f16 rounding of d and m over 31 steps.
template <class Block>
void check_q5(const std::string& file, weight_type t) {
    const std::string path = q6k_data_path().substr(0, q6k_data_path().size() - std::string("q6_k_cases.bin").size()) +
                             file;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    ASSERT_NE(f, nullptr) << path;
    uint32_t rows = 0, n = 0;
    ASSERT_EQ(std::fread(&rows, 4, 1, f), 1u);
    ASSERT_EQ(std::fread(&n, 4, 1, f), 1u);
    ASSERT_EQ(n % 32, 0u);
    ASSERT_GE(rows, 5u);
    const size_t nb = n / 32;
    for (uint32_t r = 0; r < rows; ++r) {
        std::vector<float> x(n), y(n);
        std::vector<Block> want(nb), got(nb);
        ASSERT_EQ(std::fread(x.data(), 4, n, f), n);
        ASSERT_EQ(std::fread(want.data(), sizeof(Block), nb, f), nb);
        quantize_row(t, x.data(), got.data(), n);
        for (size_t b = 0; b < nb; ++b)
            EXPECT_EQ(std::memcmp(&got[b], &want[b], sizeof got[b]), 0) << type_name(t) << " row " << r << " block " << b;
        dequantize_row(t, got.data(), y.data(), n);
        for (size_t k = 0; k < size_t(n); ++k) {
            const size_t s0 = k / 32 * 32;
            float lo = x[s0], hi = x[s0], amax = 0;
            for (size_t i = s0; i < s0 + 32; ++i)
                lo = std::min(lo, x[i]), hi = std::max(hi, x[i]), amax = std::max(amax, std::fabs(x[i]));
            const float d = ncas::f16_to_f32(got[k / 32].d);
            float bound;
            if constexpr (sizeof(Block) == sizeof(block_q5_0)) {
                // d's f16 rounding moves a value by up to 16 of its ulps (2^-11 relative).
                const bool clipped = std::fabs(x[k]) > 15.5f * std::fabs(d);
                bound = (clipped ? 1.0f : 0.5f) * std::fabs(d) + amax * 0x1p-10f;
            } else {
                bound = 0.5f * d + (hi - lo) * 0x1p-10f + std::fabs(lo) * 0x1p-11f;
            }
            EXPECT_LE(std::fabs(y[k] - x[k]), bound * 1.0001f + 1e-30f) << type_name(t) << " row " << r << " value " << k;
        }
    }
    std::fclose(f);
}

TEST(q5_0, same_bytes_as_numpy_and_round_trip) { check_q5<block_q5_0>("q5_0_cases.bin", weight_type::q5_0); }
TEST(q5_1, same_bytes_as_numpy_and_round_trip) { check_q5<block_q5_1>("q5_1_cases.bin", weight_type::q5_1); }
