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

TEST(types, sizes_and_names) {
    EXPECT_EQ(row_bytes(weight_type::q4_0, 64), 36);
    EXPECT_EQ(row_bytes(weight_type::q8_0, 64), 68);
    EXPECT_EQ(row_bytes(weight_type::bf16, 64), 128);
    EXPECT_FALSE(traits_of(3u).has_value());  // Q4_1: not read by ncas
    EXPECT_EQ(parse_weight_type("q4_0"), weight_type::q4_0);
    EXPECT_EQ(parse_weight_type("BF16"), weight_type::bf16);
    EXPECT_THROW(parse_weight_type("q5_k"), ncas::error);
}
