#pragma once
// Q5_0 / Q5_1 matmul (blocks of 32 values, 5-bit quants: format/quant.hpp).
//
// Activations are the 16-bit integers of cpu/act_quant.hpp in natural order, with
// one int32 a 16 values: their sum (act_rows::corr), as for the K-quants. Per
// (row, token) and block b, the integer dot product of the unsigned quants
// (0..31) with the activations, dot_b = Σ q·a, and bsum_b = Σ a are exact, however
// an instruction set sums them. The floats then follow one order on every level,
// lane b mod 8 for block b, block after block along the row:
//   Q5_0  acc[b mod 8] = fma(float(dot_b − 16·bsum_b), d_b, acc[b mod 8])
//   Q5_1  acc[b mod 8] = fma(float(bsum_b), m_b, fma(float(dot_b), d_b, acc[b mod 8]))
// then the eight lanes are summed as a tree (j + 4, then + 2, then + 1) and the
// sum multiplied by the token's activation scale (kquant_matmul.hpp's scheme with
// blocks of 32 for sub-blocks: every level, thread split and token tile gives the
// same bits; tests/test_kernels.cpp checks it). A row's last group of 8 blocks may
// be partial: its missing lanes are left as they are.
// Loop order: token tiles of up to max_tile outside, rows inside, each row one
// sequential stream; a group of 8 blocks is unpacked once per tile.
#include "ncas/cpu/kernels/kquant_matmul.hpp"
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct q5_blocks;

// ---- scalar: the algorithm spelled out -------------------------------------------------

template <>
struct q5_blocks<scalar_tag> {
    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        constexpr int64_t bytes = t == weight_type::q5_0 ? sizeof(block_q5_0) : sizeof(block_q5_1);
        float acc[NT][8] = {};
        for (int64_t b = 0; b < nb; ++b) {
            const std::byte* blk = row + b * bytes;
            const uint8_t* qh;
            const uint8_t* qs;
            float d, m = 0.0f;
            if constexpr (t == weight_type::q5_0) {
                const auto& w = *reinterpret_cast<const block_q5_0*>(blk);
                qh = w.qh, qs = w.qs, d = f16_to_f32(w.d);
            } else {
                const auto& w = *reinterpret_cast<const block_q5_1*>(blk);
                qh = w.qh, qs = w.qs, d = f16_to_f32(w.d), m = f16_to_f32(w.m);
            }
            const uint32_t bits = uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
            int32_t q[quant_block];
            for (int j = 0; j < quant_block / 2; ++j) {
                q[j] = (qs[j] & 0x0f) | int32_t((bits >> j) & 1) << 4;
                q[j + 16] = (qs[j] >> 4) | int32_t((bits >> (j + 16)) & 1) << 4;
            }
            const int lane = int(b % 8);
            for (int i = 0; i < NT; ++i) {
                const int16_t* a = xq.q(t0 + i) + b * quant_block;
                const int32_t* c = xq.corr(t0 + i) + b * 2;
                int32_t dot = 0;
                for (int j = 0; j < quant_block; ++j) dot += q[j] * a[j];
                const int32_t bsum = c[0] + c[1];
                if constexpr (t == weight_type::q5_0) {
                    acc[i][lane] = std::fma(float(dot - 16 * bsum), d, acc[i][lane]);
                } else {
                    const float f = std::fma(float(dot), d, acc[i][lane]);
                    acc[i][lane] = std::fma(float(bsum), m, f);
                }
            }
        }
        for (int i = 0; i < NT; ++i) {
            float v[8];
            for (int j = 0; j < 8; ++j) v[j] = acc[i][j];
            for (int h = 4; h >= 1; h /= 2)
                for (int j = 0; j < h; ++j) v[j] = v[j] + v[j + h];
            out[i] = v[0] * xq.scales()[t0 + i];
        }
    }
};

// ---- x86: AVX2 and AVX-512 (256-bit code, shared by both widths) ------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <class Simd, isa Level>
struct q5_blocks<x86_tag<Simd, Level>> {
    using K = kquant_blocks<x86_tag<Simd, Level>>;  // its widening, lane sums, block sums and lane tree
    // A block's 32 quants (0..31) as bytes in natural order: the nibbles of qs[16]
    // (low: elements 0..15, high: 16..31) and the 5th bits of the uint32 at qh.
    [[gnu::always_inline]] static __m256i quants(const uint8_t* qs, const uint8_t* qh) {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), low4 = _mm_set1_epi8(0x0f);
        const __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
        uint32_t bits;
        std::memcpy(&bits, qh, 4);
        // Byte j of the result takes byte j / 8 of the bits, then tests bit j % 8.
        const __m256i spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(int32_t(bits)),
            _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
        const __m256i mask = _mm256_set1_epi64x(int64_t(0x8040201008040201));
        const __m256i five = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(nib, five);
    }

    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        constexpr int64_t bytes = t == weight_type::q5_0 ? sizeof(block_q5_0) : sizeof(block_q5_1);
        constexpr int64_t at_qh = t == weight_type::q5_0 ? 2 : 4, at_qs = at_qh + 4;
        const int16_t* a[NT];
        const int32_t* c[NT];
        for (int i = 0; i < NT; ++i) a[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        __m256 acc[NT];
        for (int i = 0; i < NT; ++i) acc[i] = _mm256_setzero_ps();
        for (int64_t g = 0; g < nb; g += 8) {
            const int n = int(std::min<int64_t>(8, nb - g));  // blocks in this group
            const std::byte* grp = row + g * bytes;
            _mm_prefetch(reinterpret_cast<const char*>(grp) + 16 * bytes, _MM_HINT_T0);
            // The group's f16 scales (and Q5_1's minimums) gathered in two 64-bit words each:
            // eight 2-byte stores read back as one 16-byte load stall store forwarding.
            uint64_t dh[2] = {0, 0}, mh[2] = {0, 0};
            __m256i v[NT][8];
            for (int k = 0; k < 8; ++k) {
                if (k >= n) {
                    for (int i = 0; i < NT; ++i) v[i][k] = _mm256_setzero_si256();
                    continue;
                }
                const std::byte* blk = grp + k * bytes;
                uint16_t h;
                std::memcpy(&h, blk, 2);
                dh[k / 4] |= uint64_t(h) << (16 * (k % 4));
                if constexpr (t == weight_type::q5_1) {
                    std::memcpy(&h, blk + 2, 2);
                    mh[k / 4] |= uint64_t(h) << (16 * (k % 4));
                }
                const __m256i q = quants(reinterpret_cast<const uint8_t*>(blk + at_qs), reinterpret_cast<const uint8_t*>(blk + at_qh));
                __m256i w0, w1;
                K::widen(q, w0, w1);
                for (int i = 0; i < NT; ++i) {
                    const auto* ak = reinterpret_cast<const __m256i*>(a[i] + (g + k) * quant_block);
                    v[i][k] = _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256(ak)),
                                               _mm256_madd_epi16(w1, _mm256_loadu_si256(ak + 1)));
                }
            }
            const __m256 d = _mm256_cvtph_ps(_mm_set_epi64x(int64_t(dh[1]), int64_t(dh[0])));
            const __m256 m = _mm256_cvtph_ps(_mm_set_epi64x(int64_t(mh[1]), int64_t(mh[0])));
            for (int i = 0; i < NT; ++i) {
                // Σ a over each block: the pairs of 16-value sums, added pairwise (hadd) and put back in order.
                alignas(32) int32_t cs[16] = {};
                const int32_t* ci = c[i] + g * 2;
                if (n < 8) {
                    for (int k = 0; k < 2 * n; ++k) cs[k] = ci[k];
                    ci = cs;
                }
                const __m256i bs = K::block_sums8(ci), dot = K::sums8(v[i]);
                if constexpr (t == weight_type::q5_0) {
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot, _mm256_slli_epi32(bs, 4))), d, acc[i]);
                } else {
                    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[i]);
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bs), m, f);
                }
            }
        }
        for (int i = 0; i < NT; ++i) out[i] = K::tree8(acc[i]) * xq.scales()[t0 + i];
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: every level ---------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct q5_blocks<arm_tag<Level>> {
    using tag = arm_tag<Level>;
    using K = kquant_blocks<arm_tag<Level>>;  // its exact 16-value dot and lane tree

    // Σ of 16 unsigned quant bytes times 16 activations, exactly.
    static int32_t dot16(uint8x16_t q, const int16_t* a) {
        return K::dot16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(q))), vreinterpretq_s16_u16(vmovl_high_u8(q)), a);
    }

    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        constexpr int64_t bytes = t == weight_type::q5_0 ? sizeof(block_q5_0) : sizeof(block_q5_1);
        constexpr int64_t at_qh = t == weight_type::q5_0 ? 2 : 4, at_qs = at_qh + 4;
        float32x4_t acc[NT][2];
        for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
        const uint8x16_t low4 = vdupq_n_u8(0x0f), five = vdupq_n_u8(0x10);
        const uint8x16_t bit = vcombine_u8(vcreate_u8(0x8040201008040201ull), vcreate_u8(0x8040201008040201ull));
        for (int64_t g = 0; g < nb; g += 8) {
            const int n = int(std::min<int64_t>(8, nb - g));  // blocks in this group
            const std::byte* grp = row + g * bytes;
            __builtin_prefetch(grp + 16 * bytes);
            uint8x16_t lo[8], hi[8];
            alignas(16) float ds[8] = {}, ms[8] = {};
            for (int k = 0; k < n; ++k) {
                const std::byte* blk = grp + k * bytes;
                ds[k] = tag::half(blk);
                if constexpr (t == weight_type::q5_1) ms[k] = tag::half(blk + 2);
                const auto* qh = reinterpret_cast<const uint8_t*>(blk + at_qh);
                const uint8x16_t raw = vld1q_u8(reinterpret_cast<const uint8_t*>(blk + at_qs));
                // Byte j of lo takes bit j of the bits (bytes qh[0], qh[1]), of hi bit j + 16 (qh[2], qh[3]).
                const uint8x16_t hl = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])),
                                 hh = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
                lo[k] = vorrq_u8(vandq_u8(raw, low4), vandq_u8(vtstq_u8(hl, bit), five));
                hi[k] = vorrq_u8(vshrq_n_u8(raw, 4), vandq_u8(vtstq_u8(hh, bit), five));
            }
            const float32x4_t d0 = vld1q_f32(ds), d1 = vld1q_f32(ds + 4), m0 = vld1q_f32(ms), m1 = vld1q_f32(ms + 4);
            for (int i = 0; i < NT; ++i) {
                const int16_t* a = xq.q(t0 + i) + g * quant_block;
                const int32_t* c = xq.corr(t0 + i) + g * 2;
                alignas(16) int32_t dots[8] = {}, bsum[8] = {};
                for (int k = 0; k < n; ++k) {
                    dots[k] = dot16(lo[k], a + k * quant_block) + dot16(hi[k], a + k * quant_block + 16);
                    bsum[k] = c[2 * k] + c[2 * k + 1];
                }
                for (int h = 0; h < 2; ++h) {
                    const int32x4_t dot = vld1q_s32(dots + 4 * h), bs = vld1q_s32(bsum + 4 * h);
                    if constexpr (t == weight_type::q5_0) {
                        acc[i][h] = vfmaq_f32(acc[i][h], vcvtq_f32_s32(vsubq_s32(dot, vshlq_n_s32(bs, 4))), h ? d1 : d0);
                    } else {
                        const float32x4_t f = vfmaq_f32(acc[i][h], vcvtq_f32_s32(dot), h ? d1 : d0);
                        acc[i][h] = vfmaq_f32(f, vcvtq_f32_s32(bs), h ? m1 : m0);
                    }
                }
            }
        }
        for (int i = 0; i < NT; ++i) out[i] = K::tree8(acc[i][0], acc[i][1]) * xq.scales()[t0 + i];
    }
};
#endif

// The Q5_0 / Q5_1 rows r0 .. r1 of w against T tokens (quantised for w's type).
template <class Tag, weight_type type>
inline void q5_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    tiled_rows<Tag, q5_blocks<Tag>, type>(w, xq, w.cols / quant_block, T, y, r0, r1);
}

}  // namespace ncas::cpu::detail
