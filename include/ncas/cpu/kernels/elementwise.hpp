#pragma once
// Elementwise kernels: the FFN activations in place (x = gelu_tanh(x);
// up *= silu(gate)), RMSNorm (y = x / sqrt(mean(x²) + eps) · w), softmax in place,
// RoPE on interleaved pairs. cpu/ops.hpp has the scalar definitions, which the
// scalar variant uses and the vector ones are tested against.
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct elementwise;

// ---- scalar ---------------------------------------------------------------------

template <>
struct elementwise<scalar_tag> {
    static void gelu(float* x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh(x[i]);
    }
    static void silu_mul(float* up, const float* gate, int64_t n) {
        for (int64_t i = 0; i < n; ++i) up[i] *= silu(gate[i]);
    }
    // RMSNorm, softmax, RoPE: the reference definitions themselves.
    static constexpr auto rms_norm = &cpu::rms_norm;
    static constexpr auto softmax = &cpu::softmax;
    static constexpr auto softmax_exp = &cpu::softmax_exp;
    static constexpr auto rope = &cpu::rope;
};

// ---- every SIMD instruction set: what xsimd's batches express alike ---------------------
// The f32 batch type and its lane sum (Tag::fbatch, Tag::hsum) come from the tag; each
// instruction set's specialisation below adds its RoPE.

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF
#endif
#if defined(NCAS_CPU_HAVE_AVX2) || defined(NCAS_CPU_HAVE_NEON)
template <class Tag>
struct elementwise_batches {
    using tag = Tag;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

    // ---- FFN activations (xsimd's vector tanh and exp) --------------------------------

    static void gelu(float* x, int64_t n) {
        const fbatch c(0.7978845608028654f), a(0.044715f), half(0.5f), one(1.0f);
        int64_t i = 0;
        for (; i + W <= n; i += W) {
            const fbatch v = fbatch::load_unaligned(x + i);
            (half * v * (one + xsimd::tanh(c * (v + a * v * v * v)))).store_unaligned(x + i);
        }
        for (; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + tanhf(0.7978845608028654f * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
    }
    static void silu_mul(float* up, const float* gate, int64_t n) {
        const fbatch one(1.0f);
        int64_t i = 0;
        for (; i + W <= n; i += W) {
            const fbatch g = fbatch::load_unaligned(gate + i);
            (fbatch::load_unaligned(up + i) * (g / (one + xsimd::exp(-g)))).store_unaligned(up + i);
        }
        for (; i < n; ++i) up[i] *= gate[i] / (1.0f + expf(-gate[i]));
    }

    // ---- RMSNorm and softmax ----------------------------------------------------------

    // Σx² in four f32 lane accumulators (the reference sums in double: 1e-6 apart at n = 10⁴).
    static void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
        fbatch a[4] = {fbatch(0.0f), fbatch(0.0f), fbatch(0.0f), fbatch(0.0f)};
        int64_t i = 0;
        for (; i + 4 * W <= n; i += 4 * W)
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const fbatch v = fbatch::load_unaligned(x + i + j * W);
                a[j] = xsimd::fma(v, v, a[j]);
            }
        for (; i + W <= n; i += W) {
            const fbatch v = fbatch::load_unaligned(x + i);
            a[0] = xsimd::fma(v, v, a[0]);
        }
        double ss = double(tag::hsum((a[0] + a[1]) + (a[2] + a[3])));
        for (; i < n; ++i) ss += double(x[i]) * x[i];
        const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
        const fbatch vs(scale);
        for (i = 0; i + W <= n; i += W)
            (fbatch::load_unaligned(x + i) * vs * fbatch::load_unaligned(w + i)).store_unaligned(y + i);
        for (; i < n; ++i) y[i] = x[i] * scale * w[i];
    }

    static float softmax_exp(float* x, int64_t n, float* max_out) {
        fbatch mv(-__builtin_huge_valf());
        int64_t i = 0;
        for (; i + W <= n; i += W) mv = xsimd::max(mv, fbatch::load_unaligned(x + i));
        float lanes[W];
        mv.store_unaligned(lanes);
        float m = tag::max_of(lanes, W);
        for (; i < n; ++i) m = x[i] > m ? x[i] : m;
        const fbatch vm(m);
        fbatch sv(0.0f);
        for (i = 0; i + W <= n; i += W) {
            const fbatch e = xsimd::exp(fbatch::load_unaligned(x + i) - vm);
            e.store_unaligned(x + i);
            sv += e;
        }
        float s = tag::hsum(sv);
        for (; i < n; ++i) s += (x[i] = expf(x[i] - m));
        *max_out = m;
        return s;
    }
    static void softmax(float* x, int64_t n) {
        float m;
        const float inv = 1.0f / softmax_exp(x, n, &m);
        const fbatch vi(inv);
        int64_t i;
        for (i = 0; i + W <= n; i += W) (fbatch::load_unaligned(x + i) * vi).store_unaligned(x + i);
        for (; i < n; ++i) x[i] *= inv;
    }

};
#endif
#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- x86: AVX2 and AVX-512 --------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <class Simd, isa Level>
struct elementwise<x86_tag<Simd, Level>> : elementwise_batches<x86_tag<Simd, Level>> {
    static constexpr int64_t W = x86_tag<Simd, Level>::W;

    // W/2 pairs at a time: even lanes a·cos − b·sin, odd lanes b·cos + a·sin (fmaddsub on
    // the pairs swapped and multiplied by sin), each angle's cos/sin repeated for its pair.
    static void rope(float* v, const float* cos_t, const float* sin_t, int64_t d) {
        int64_t i = 0;  // pair index
        if constexpr (W == 16) {
            const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
            for (; 2 * i + 16 <= d; i += 8) {
                const __m512 x = _mm512_loadu_ps(v + 2 * i);
                const __m512 c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(cos_t + i)));
                const __m512 sn = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(sin_t + i)));
                _mm512_storeu_ps(v + 2 * i, _mm512_fmaddsub_ps(x, c, _mm512_mul_ps(_mm512_permute_ps(x, 0xb1), sn)));
            }
        } else {
            const __m256i dup = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
            for (; 2 * i + 8 <= d; i += 4) {
                const __m256 x = _mm256_loadu_ps(v + 2 * i);
                const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos_t + i)), dup);
                const __m256 sn = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin_t + i)), dup);
                _mm256_storeu_ps(v + 2 * i, _mm256_fmaddsub_ps(x, c, _mm256_mul_ps(_mm256_permute_ps(x, 0xb1), sn)));
            }
        }
        for (; i < d / 2; ++i) {
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cos_t[i] - b * sin_t[i];
            v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
        }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: every level (xsimd neon64 batches; RoPE on de-interleaving loads) --------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct elementwise<arm_tag<Level>> : elementwise_batches<arm_tag<Level>> {
    // Four pairs at a time: ld2 splits them into a (even) and b (odd) lanes.
    static void rope(float* v, const float* cos_t, const float* sin_t, int64_t d) {
        int64_t i = 0;  // pair index
        for (; 2 * i + 8 <= d; i += 4) {
            const float32x4x2_t ab = vld2q_f32(v + 2 * i);
            const float32x4_t c = vld1q_f32(cos_t + i), sn = vld1q_f32(sin_t + i);
            float32x4x2_t r;
            r.val[0] = vmlsq_f32(vmulq_f32(ab.val[0], c), ab.val[1], sn);  // a·cos − b·sin
            r.val[1] = vmlaq_f32(vmulq_f32(ab.val[0], sn), ab.val[1], c);  // a·sin + b·cos
            vst2q_f32(v + 2 * i, r);
        }
        for (; i < d / 2; ++i) {
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cos_t[i] - b * sin_t[i];
            v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
        }
    }
};
#endif

}  // namespace ncas::cpu::detail
