#pragma once
// F32 / F16 / BF16 weights: each row against tiles of up to max_tile tokens, so
// a row's weights are loaded (and converted) once per tile; f32 FMAs on xsimd
// batches, F16 through F16C, BF16 by a shift. Each output is one sum in a fixed
// order, whichever tokens share its tile.
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

// float_kernels<Tag>::float_tile<NT, t>(row, K, x, ldx, out): out[i] = row · x[i·ldx ..] for i < NT.
template <class Tag>
struct float_kernels;

// ---- scalar ---------------------------------------------------------------------

template <>
struct float_kernels<scalar_tag> {
    template <int NT, weight_type t>
    static void float_tile(const std::byte* row, int64_t K, const float* x, int64_t ldx, float* out) {
        for (int i = 0; i < NT; ++i) out[i] = dot_row(t, row, x + i * ldx, K);
    }
};

// ---- every SIMD instruction set (xsimd batches of the tag's width: AVX2 8 lanes,
// AVX-512 16, NEON 4; F16 through F16C or fcvtl, BF16 by a shift: the tag's load_weights)

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF
#endif
#if defined(NCAS_CPU_HAVE_AVX2) || defined(NCAS_CPU_HAVE_NEON)
template <class Tag>
struct float_kernels_batches {
    using tag = Tag;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

    // Two accumulators per token (even and odd steps) so one token's sum is not a
    // single chain of dependent FMAs; the loops over tokens are unrolled so the
    // accumulators stay in registers.
    template <int NT, weight_type t>
    static void float_tile(const std::byte* row, int64_t K, const float* x, int64_t ldx, float* out) {
        constexpr int64_t esize = traits_of(t).block_bytes;
        fbatch acc[2][NT];
#pragma GCC unroll 8
        for (int i = 0; i < NT; ++i) acc[0][i] = acc[1][i] = fbatch(0.0f);
        int64_t k = 0;
        for (; k + 2 * W <= K; k += 2 * W) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; ++h) {
                const fbatch wv = tag::template load_weights<t>(row + (k + h * W) * esize);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i)
                    acc[h][i] = xsimd::fma(wv, fbatch::load_unaligned(x + i * ldx + k + h * W), acc[h][i]);
            }
        }
        if (k + W <= K) {
            const fbatch wv = tag::template load_weights<t>(row + k * esize);
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) acc[0][i] = xsimd::fma(wv, fbatch::load_unaligned(x + i * ldx + k), acc[0][i]);
            k += W;
        }
        float w[W];  // the tail, when K is not a multiple of W (small tensors only)
        for (int64_t j = k; j < K; ++j) w[j - k] = tag::template element<t>(row, j);
        for (int i = 0; i < NT; ++i) {
            out[i] = tag::hsum(acc[0][i] + acc[1][i]);
            for (int64_t j = k; j < K; ++j) out[i] += w[j - k] * x[i * ldx + j];
        }
    }
};
#endif

#if defined(NCAS_CPU_HAVE_AVX2)
template <class Simd, isa Level>
struct float_kernels<x86_tag<Simd, Level>> : float_kernels_batches<x86_tag<Simd, Level>> {};
NCAS_CPU_X86_WARNINGS_ON
#endif
#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct float_kernels<arm_tag<Level>> : float_kernels_batches<arm_tag<Level>> {};
#endif

// The driver: every row of [r0, r1) against the T tokens, max_tile at a time.
template <class Tag>
inline void float_rows(const weight_matrix& w, const float* x, int64_t T, float* y, int64_t r0, int64_t r1) {
    const int64_t K = w.cols;
    float out[max_tile];
    for (int64_t r = r0; r < r1; ++r) {
        const std::byte* row = row_of<Tag>(w, r);
        for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
            const int nt = int(std::min<int64_t>(max_tile, T - t0));
            with_count<max_tile>(nt, [&](auto NT) {
                switch (w.type) {
                    case weight_type::f16: float_kernels<Tag>::template float_tile<NT, weight_type::f16>(row, K, x + t0 * K, K, out); break;
                    case weight_type::bf16: float_kernels<Tag>::template float_tile<NT, weight_type::bf16>(row, K, x + t0 * K, K, out); break;
                    default: float_kernels<Tag>::template float_tile<NT, weight_type::f32>(row, K, x + t0 * K, K, out); break;
                }
            });
            for (int i = 0; i < nt; ++i) y[(t0 + i) * w.rows + r] = out[i];
        }
    }
}

}  // namespace ncas::cpu::detail
