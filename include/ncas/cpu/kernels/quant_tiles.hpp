#pragma once
// Q8_0 / Q4_0, loop order 1: tiles of R weight rows × NT tokens, the token tiles
// outside (quant_matmul.hpp) so a tile's activations stay in L1 while the thread's
// rows stream past; a row's weights are loaded and unpacked once per tile. Each
// (row, token) has one f32 accumulator; blocks are added in row order, and the
// token's activation scale is applied once at the end.
// quant_tiles<Tag>::quant_tile<R, NT, type>(row0, stride, nb, xq, t0, out): rows
// row0 + r·stride (r < R) against tokens t0 .. t0+NT, out[r·NT + i];
// tile_rows: R for a few tokens; decode_rows: R for one token (more streams in
// flight, no more registers).
#include "ncas/cpu/kernels/quant_blocks.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct quant_tiles;

// ---- scalar: the integer algorithm spelled out ---------------------------------------

template <>
struct quant_tiles<scalar_tag> {
    static constexpr int tile_rows = 1, decode_rows = 1;
    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        int16_t w[quant_block];
        for (int r = 0; r < R; ++r) {
            float acc[NT] = {};
            for (int64_t b = 0; b < nb; ++b) {
                const float dw = quant_blocks<scalar_tag>::widen_block(t, row0 + r * stride, b, w);
                for (int i = 0; i < NT; ++i) {
                    const int16_t* q = xq.q(t0 + i);
                    int32_t dot = 0;
                    for (int j = 0; j < quant_block; ++j)
                        dot += int32_t(w[j]) * q[t == weight_type::q4_0 ? q4_position(b, j) : b * quant_block + j];
                    acc[i] += float(dot) * dw;
                }
            }
            for (int i = 0; i < NT; ++i) out[r * NT + i] = acc[i] * xq.d(t0 + i);
        }
    }
};

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

// ---- AVX2 ---------------------------------------------------------------------------

template <isa Level>
struct quant_tiles<avx2_tag<Level>> {
    using tag = avx2_tag<Level>;
    using blocks = quant_blocks<tag>;
    using fbatch = typename tag::fbatch;
    static constexpr int tile_rows = 1, decode_rows = 2;

    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        float sums[R][NT];
        {  // the accumulators' scope ends here (register allocation as before the split into families)
            __m256 acc[R][NT];
            tag::zero_all(acc);
            if constexpr (t == weight_type::q4_0) blocks::template q4_quads_256<R, NT>(row0, stride, nb, 0, (nb + 3) / 4, xq, t0, acc);
            else blocks::template q8_blocks_256<R, NT>(row0, stride, 0, nb, xq, t0, acc);
            for (int r = 0; r < R; ++r)
                for (int i = 0; i < NT; ++i) sums[r][i] = xsimd::hadd(fbatch(acc[r][i]));
        }
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) out[r * NT + i] = sums[r][i] * xq.scales()[t0 + i];
    }
};

// ---- AVX-512 ------------------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX512)
template <isa Level>
struct quant_tiles<avx512_tag<Level>> {
    using tag = avx512_tag<Level>;
    using blocks = quant_blocks<tag>;
    static constexpr int tile_rows = 2, decode_rows = 4;

    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        float sums[R][NT];
        if constexpr (t == weight_type::q4_0) q4_tile_512<R, NT>(row0, stride, nb, xq, t0, sums);
        else q8_tile_512<R, NT>(row0, stride, nb, xq, t0, sums);
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) out[r * NT + i] = sums[r][i] * xq.scales()[t0 + i];
    }

    template <int R, int NT>
    static void q4_tile_512(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0,
                            float (&sums)[R][NT]) {
        __m512 acc[R][NT];
        tag::zero_all(acc);
        const int16_t* q[NT];
        const int32_t* c[NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        auto quad = [&](int64_t b, __mmask64 m1, __mmask64 m2) {
            typename blocks::q4_quad w[R];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const std::byte* blk = row0 + r * stride + b * int64_t(sizeof(block_q4_0));
                _mm_prefetch(reinterpret_cast<const char*>(blk + blocks::prefetch_ahead), blocks::prefetch_hint);
                w[r] = blocks::unpack_q4(blk, m1, m2);
            }
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) {
                const auto* a = reinterpret_cast<const __m512i*>(q[i] + b * quant_block);
                const __m512i ci = _mm512_load_si512(c[i] + b * 4);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
                    acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(blocks::dot4(ci, w[r].w, a)), w[r].scale, acc[r][i]);
            }
        };
        const auto full = blocks::quad_masks(4);
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) quad(b, full[0], full[1]);
        if (b < nb) {
            const auto last = blocks::quad_masks(nb - b);
            quad(b, last[0], last[1]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) sums[r][i] = _mm512_reduce_add_ps(acc[r][i]);
    }

    template <int R, int NT>
    static void q8_tile_512(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0,
                            float (&sums)[R][NT]) {
        __m512 acc[R][NT];
        tag::zero_all(acc);
        for (int64_t b = 0; b < nb; ++b) {
            __m512i w[R];
            __m512 s[R];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const auto& blk = reinterpret_cast<const block_q8_0*>(row0 + r * stride)[b];
                w[r] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.q)));
                s[r] = _mm512_set1_ps(_cvtsh_ss(blk.d));
            }
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) {
                const __m512i a = _mm512_load_si512(xq.q(t0 + i) + b * quant_block);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
                    acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(w[r], a)), s[r], acc[r][i]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) sums[r][i] = _mm512_reduce_add_ps(acc[r][i]);
    }
};
#endif

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: NEON, dotprod, i8mm ------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct quant_tiles<arm_tag<Level>> {
    using tag = arm_tag<Level>;
    using blocks = quant_blocks<tag>;
    // neon holds a row's group as 16 registers of words: one row a tile; the 8-bit
    // levels hold it in 8 (Q4_0) or 12 (Q8_0), so decode streams two rows; i8mm's
    // prefill tiles pair rows for smmla.
    static constexpr int tile_rows = tag::i8mm ? 2 : 1, decode_rows = tag::dotprod ? 2 : 1;

    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        float32x4_t acc[R][NT];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) acc[r][i] = vdupq_n_f32(0.0f);
        const int16_t* q[NT];
        const int32_t* c[NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        const int64_t whole = nb / 4;
        for (int64_t g = 0; g < whole; ++g) blocks::template group_rows<R, NT, t, false>(row0, stride, g, 4, q, c, acc);
        if (whole * 4 < nb) blocks::template group_rows<R, NT, t, true>(row0, stride, whole, int(nb - whole * 4), q, c, acc);
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) out[r * NT + i] = tag::sum4(acc[r][i]) * xq.scales()[t0 + i];
    }
};
#endif

}  // namespace ncas::cpu::detail
