#pragma once
// Activation quantisation for the Q8_0 / Q4_0 / K-quant kernels: one token row to 16-bit
// integers in the weight type's order (cpu/act_quant.hpp has the format and the
// reference, quantize_act_row; every variant gives its integers exactly).
#include "ncas/cpu/act_quant.hpp"
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct act_quant;

// ---- scalar: the reference itself ---------------------------------------------------

template <>
struct act_quant<scalar_tag> {
    static constexpr quantize_row_fn quantize_act = &quantize_act_row;
};

// ---- x86: AVX2 and AVX-512 --------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <class Simd, isa Level>
struct act_quant<x86_tag<Simd, Level>> {
    using tag = x86_tag<Simd, Level>;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

    // K-quants, Q5_0 / Q5_1: corr[k] = Σ of values 16k .. 16k + 15 (as cpu/act_quant.hpp's sum_sixteens).
    static void sixteens(const int16_t* q, int64_t nb, int32_t* corr) {
        for (int64_t k = 0; k < nb * 2; ++k) {
            int32_t sum = 0;
            for (int e = 0; e < 16; ++e) sum += q[16 * k + e];
            corr[k] = sum;
        }
    }

    static void quantize_act(weight_type t, const float* x, int64_t nb, int16_t* q, int32_t* corr, float* d_out) {
        const int64_t n = nb * quant_block;  // a multiple of 32, so of W
        fbatch m(0.0f), zero(0.0f);  // zero: Σ x·0, NaN in a lane that saw a NaN or an infinity
        for (int64_t i = 0; i < n; i += W) {
            const fbatch v = fbatch::load_unaligned(x + i);
            m = xsimd::max(m, xsimd::abs(v)), zero = xsimd::fma(v, fbatch(0.0f), zero);
        }
        if (!xsimd::all(zero == fbatch(0.0f))) return quantize_nonfinite_row(t, nb, q, corr, d_out);  // ordered ==: false for NaN
        float lanes[W];
        m.store_unaligned(lanes);
        const float amax = tag::max_of(lanes, W), d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        *d_out = d;
        // 8 values as int16, rounded to nearest even (the default mode, as std::nearbyint).
        auto store8 = [&](const float* src, int16_t* dst) {
            const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src), _mm256_set1_ps(id)));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
        };
        if (t != weight_type::q4_0) {
            for (int64_t i = 0; i < n; i += 8) store8(x + i, q + i);
            if (t == weight_type::q4_k || t == weight_type::q5_k || t == weight_type::q6_k || t == weight_type::q5_0 ||
                t == weight_type::q5_1)
                sixteens(q, nb, corr);
            return;
        }
        const int64_t quads = (nb + 3) / 4;
        if (nb % 4) std::memset(q + (quads - 1) * 128, 0, 128 * sizeof(int16_t));
        for (int64_t b = 0; b < nb; ++b)
            for (int r = 0; r < 4; ++r) store8(x + b * quant_block + 8 * r, q + q4_position(b, 8 * r));
        const __m256i ones = _mm256_set1_epi16(1), m8 = _mm256_set1_epi32(-8);
        for (int64_t u = 0; u < quads; ++u, q += 128, corr += 16)
            for (int h = 0; h < 2; ++h) {  // lanes 8h..8h+7: words 16h.. of each run, summed in pairs
                __m256i s = _mm256_setzero_si256();
                for (int j = 0; j < 4; ++j)
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j + 16 * h)), ones));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + 8 * h), _mm256_mullo_epi32(s, m8));
            }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: every level --------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct act_quant<arm_tag<Level>> {
    using tag = arm_tag<Level>;

    // K-quants, Q5_0 / Q5_1: corr[k] = Σ of values 16k .. 16k + 15 (as cpu/act_quant.hpp's sum_sixteens).
    static void sixteens(const int16_t* q, int64_t nb, int32_t* corr) {
        for (int64_t k = 0; k < nb * 2; ++k) {
            int32_t sum = 0;
            for (int e = 0; e < 16; ++e) sum += q[16 * k + e];
            corr[k] = sum;
        }
    }

    static void quantize_act(weight_type t, const float* x, int64_t nb, int16_t* q, int32_t* corr, float* d_out) {
        const int64_t n = nb * quant_block;  // a multiple of 32
        float32x4_t m = vdupq_n_f32(0.0f), zero = vdupq_n_f32(0.0f);  // zero: Σ x·0, NaN after a NaN or an infinity
        for (int64_t i = 0; i < n; i += 4) {
            const float32x4_t v = vld1q_f32(x + i);
            m = vmaxq_f32(m, vabsq_f32(v)), zero = vfmaq_f32(zero, v, vdupq_n_f32(0.0f));
        }
        if (vminvq_u32(vceqzq_f32(zero)) == 0) return quantize_nonfinite_row(t, nb, q, corr, d_out);  // NaN ≠ 0
        float lanes[4];
        vst1q_f32(lanes, m);
        const float amax = tag::max_of(lanes, 4), d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        *d_out = d;
        // 8 values as int16, rounded to nearest even (fcvtns, as std::nearbyint in the default mode).
        const float32x4_t vid = vdupq_n_f32(id);
        auto store8 = [&](const float* src, int16_t* dst) {
            const int32x4_t a = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(src), vid)),
                            b = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(src + 4), vid));
            vst1q_s16(dst, vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
        };
        if (t != weight_type::q4_0) {
            for (int64_t i = 0; i < n; i += 8) store8(x + i, q + i);
            if (t == weight_type::q4_k || t == weight_type::q5_k || t == weight_type::q6_k || t == weight_type::q5_0 ||
                t == weight_type::q5_1)
                sixteens(q, nb, corr);
            return;
        }
        const int64_t quads = (nb + 3) / 4;
        if (nb % 4) std::memset(q + (quads - 1) * 128, 0, 128 * sizeof(int16_t));
        for (int64_t b = 0; b < nb; ++b)
            for (int r = 0; r < 4; ++r) store8(x + b * quant_block + 8 * r, q + q4_position(b, 8 * r));
        for (int64_t u = 0; u < quads; ++u, q += 128, corr += 16)
            for (int g = 0; g < 4; ++g) {  // lanes 4g..4g+3: words 8g.. of each run, summed in pairs
                int32x4_t s = vdupq_n_s32(0);
                for (int j = 0; j < 4; ++j) s = vpadalq_s16(s, vld1q_s16(q + 32 * j + 8 * g));
                vst1q_s32(corr + 4 * g, vmulq_n_s32(s, -8));
            }
    }
};
#endif

}  // namespace ncas::cpu::detail
