#pragma once
// Q8_0 / Q4_0 block primitives of each instruction set, shared by the loop orders
// (quant_tiles.hpp, quant_chunked.hpp, quant_packed.hpp): weight blocks widened to
// 16-bit integers and multiplied with the 16-bit activations (pmaddwd, or vpdpwssd
// with AVX-512 VNNI), scaled by the weight block's scale into f32 lane
// accumulators. Q4_0 is read four blocks (a quad) at a time: their quant bytes
// become four runs of 32 words, each block's products landing in 4 lanes of its
// own (see cpu/act_quant.hpp for the matching activation order and the −8 offset).
//
// Weight bytes a row stream prefetches ahead of its reads (prefetch_ahead, into the
// cache level prefetch_hint names): measured +10% decode from DRAM on Zen 4 over the
// hardware prefetcher alone (AVX-512: into L1, 2 KiB ahead). On the AVX2 Zen 3, 8 KiB
// ahead into L2 streamed 19–23 GB/s against 14–22 GB/s for the Zen 4 setting in the
// same interleaved rounds (2 threads, PI-P expert shapes).
#include "ncas/cpu/act_quant.hpp"
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct quant_blocks;

// ---- scalar ---------------------------------------------------------------------

template <>
struct quant_blocks<scalar_tag> {
    // Weight block b of a Q4_0 / Q8_0 row as 32 signed integers; returns its scale.
    static float widen_block(weight_type t, const std::byte* row, int64_t b, int16_t* w) {
        if (t == weight_type::q4_0) {
            const auto& wb = reinterpret_cast<const block_q4_0*>(row)[b];
            for (int j = 0; j < quant_block / 2; ++j)
                w[j] = int16_t((wb.qs[j] & 0x0f) - 8), w[j + quant_block / 2] = int16_t((wb.qs[j] >> 4) - 8);
            return f16_to_f32(wb.d);
        }
        const auto& wb = reinterpret_cast<const block_q8_0*>(row)[b];
        for (int j = 0; j < quant_block; ++j) w[j] = wb.q[j];
        return f16_to_f32(wb.d);
    }
};


// ---- KV cache blocks: what attention_quant (attention.hpp) is written over ---------
//
// A quantised KV cache (q8_0, q4_0) is read by attention_quant<Tag>, one generic driver;
// an instruction set provides these five members in kv_blocks<Tag>:
//   acc                  a lane accumulator type (here: float)
//   zero()               an accumulator of zeros
//   dot<t>(blk, q, a)    a + scale(blk) · (the block's 32 integers · q[0..32)), per lane
//   sum(a)               the lanes of a, added
//   axpy_rows<t>(blk, stride, p, n, o)
//                        o[i] += p[j] · scale · value i of the block at blk + j·stride,
//                        for j = 0 .. n-1 in that order and i < 32 (o: 32 floats)
// converting each block's integers to f32 in registers (no dequantised copy of the cache).

template <class Tag>
struct kv_blocks;

template <>
struct kv_blocks<scalar_tag> {
    using acc = float;
    static float zero() { return 0.0f; }
    // The block's 32 integers (q4_0: nibble − 8) and its scale.
    template <weight_type t>
    static float widen(const std::byte* blk, float* w) {
        if constexpr (t == weight_type::q8_0) {
            const auto& b = *reinterpret_cast<const block_q8_0*>(blk);
            for (int i = 0; i < quant_block; ++i) w[i] = float(b.q[i]);
            return f16_to_f32(b.d);
        } else {
            const auto& b = *reinterpret_cast<const block_q4_0*>(blk);
            for (int i = 0; i < quant_block / 2; ++i)
                w[i] = float((b.qs[i] & 0x0f) - 8), w[i + quant_block / 2] = float((b.qs[i] >> 4) - 8);
            return f16_to_f32(b.d);
        }
    }
    template <weight_type t>
    static float dot(const std::byte* blk, const float* q, float a) {
        float w[quant_block];
        const float d = widen<t>(blk, w);
        float s = 0.0f;
        for (int i = 0; i < quant_block; ++i) s += w[i] * q[i];
        return a + d * s;
    }
    static float sum(float a) { return a; }
    template <weight_type t>
    static void axpy_rows(const std::byte* blk, int64_t stride, const float* p, int64_t n, float* o) {
        float w[quant_block];
        for (int64_t j = 0; j < n; ++j) {
            const float pd = p[j] * widen<t>(blk + j * stride, w);
            for (int i = 0; i < quant_block; ++i) o[i] += pd * w[i];
        }
    }
};

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

// ---- AVX2 ---------------------------------------------------------------------------

template <isa Level>
struct quant_blocks<avx2_tag<Level>> {
    static constexpr int64_t prefetch_ahead = 8192;
    static constexpr auto prefetch_hint = _MM_HINT_T1;

    // AVX2: a Q4_0 quad as two halves (A, B) and (C, D). A half's quant bytes become
    // four registers of 16 words, w[j] holding elements 8j..8j+7 of both blocks (runs
    // 0..3 of act_quant.hpp, half h at word 16h of each run), and its two scales fill
    // lanes 0..3 and 4..7, where the blocks' products land.
    // `blocks` (1..4): how many of the quad's blocks exist; the missing ones read as zeros.
    // For a partial quad the loads are masked (vpmaskmovd, whose masked-off lanes are not
    // read), so a row's last quad is read in place and nothing past the row's end is
    // touched. It ran from a zero-padded copy before: at 81 blocks a row (PI-P's D = 2592)
    // the kernel now measures 0.75 against 0.80 ns a block and token in prefill and 1.17
    // against 1.26 ns a block in decode (Zen 3, one thread, in cache).
    template <bool partial = false>
    [[gnu::always_inline]] static void unpack_q4_half(const std::byte* a, __m256i (&w)[4], int h = 0, int blocks = 4) {
        // A's quant bytes from one load, B's (at a + 20) from the high half of another, merged
        // with a blend (any vector pipe) rather than vinserti128 (a shuffle): prefill kernel
        // 0.77 against 0.82 ns a block and token on Zen 3, decode 1–2% faster.
        const auto* p0 = reinterpret_cast<const __m256i*>(a + 2);
        const auto* p1 = reinterpret_cast<const __m256i*>(a + 4);
        __m256i x;
        if constexpr (partial) {  // lanes 0..3 of the first load are block 2h's bytes, lanes 4..7 of the second 2h+1's
            const __m256i on = _mm256_set1_epi32(-1), none = _mm256_setzero_si256();
            const __m256i m0 = _mm256_blend_epi32(none, 2 * h < blocks ? on : none, 0x0f),
                          m1 = _mm256_blend_epi32(none, 2 * h + 1 < blocks ? on : none, 0xf0);
            x = _mm256_or_si256(_mm256_maskload_epi32(reinterpret_cast<const int*>(p0), m0),
                                _mm256_maskload_epi32(reinterpret_cast<const int*>(p1), m1));
        } else {
            x = _mm256_blend_epi32(_mm256_loadu_si256(p0), _mm256_loadu_si256(p1), 0xf0);
        }
        const __m256i zero = _mm256_setzero_si256(), m = _mm256_set1_epi16(0x0f);
        const __m256i lo = _mm256_unpacklo_epi8(x, zero), hi = _mm256_unpackhi_epi8(x, zero);  // bytes 0..7, 8..15
        w[0] = _mm256_and_si256(lo, m), w[1] = _mm256_and_si256(hi, m);
        w[2] = _mm256_srli_epi16(lo, 4), w[3] = _mm256_srli_epi16(hi, 4);
    }
    // The four scales of the quad at q, as f32, in both 128-bit lanes (so each half's
    // scales are an in-lane permute away: vpermilps, not the cross-lane vpermps).
    // A missing block (k >= blocks) has scale 0. (The bits are gathered in a register:
    // narrow stores to an array then read as one word would stall store forwarding.)
    [[gnu::always_inline]] static __m256 quad_scales(const std::byte* q, int blocks = 4) {
        uint64_t bits = 0;
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            uint16_t d;
            if (k < blocks) std::memcpy(&d, q + k * int64_t(sizeof(block_q4_0)), 2), bits |= uint64_t(d) << (16 * k);
        }
        return _mm256_cvtph_ps(_mm_set1_epi64x(int64_t(bits)));
    }

    // Quad u of R rows (row r's four blocks at blk(r), of which `blocks` exist when
    // partial) against NT tokens, added to acc.
    template <int R, int NT, bool partial = false, class Blocks>
    [[gnu::always_inline]] static void q4_quad_256(int64_t u, Blocks blk, const int16_t* const (&q)[NT],
                                                   const int32_t* const (&c)[NT], __m256 (&acc)[R][NT], int blocks = 4) {
        constexpr int64_t bb = sizeof(block_q4_0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            if (partial && 2 * h >= blocks) break;  // a half with no blocks adds nothing
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const std::byte* a = blk(r) + 2 * h * bb;
                if (h == 0) _mm_prefetch(reinterpret_cast<const char*>(a + prefetch_ahead), prefetch_hint);
                __m256i w[4];
                unpack_q4_half<partial>(a, w, h, blocks);
                const int a0 = 2 * h, a1 = a0 + 1;  // the half's blocks within the quad
                const __m256 s = _mm256_permutevar_ps(quad_scales(blk(r), blocks), _mm256_set_epi32(a1, a1, a1, a1, a0, a0, a0, a0));
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) {
                    const auto* x = reinterpret_cast<const __m256i*>(q[i] + u * 128 + 16 * h);
                    const __m256i d01 = _mm256_add_epi32(_mm256_madd_epi16(w[0], _mm256_load_si256(x)),
                                                         _mm256_madd_epi16(w[1], _mm256_load_si256(x + 2))),
                                  d23 = _mm256_add_epi32(_mm256_madd_epi16(w[2], _mm256_load_si256(x + 4)),
                                                         _mm256_madd_epi16(w[3], _mm256_load_si256(x + 6)));
                    const __m256i cr = _mm256_load_si256(reinterpret_cast<const __m256i*>(c[i] + u * 16 + 8 * h));
                    const __m256i d = _mm256_add_epi32(_mm256_add_epi32(d01, d23), cr);
                    acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, acc[r][i]);
                }
            }
        }
    }

    // Quads [u0, u1) of R rows against NT tokens, added to acc; a last partial quad
    // (u1 = the row's quad count) has zeros for its missing blocks' weights and scales,
    // as its activations and corrections have (act_quant.hpp).
    // The sums stay in a local array (registers): kept in the caller's, they would be
    // stored after every multiply-add, as the std::byte weight loads may alias them.
    template <int R, int NT>
    [[gnu::always_inline]] static void q4_quads_256(const std::byte* row0, int64_t stride, int64_t nb, int64_t u0,
                                                    int64_t u1, const act_rows& xq, int64_t t0, __m256 (&acc)[R][NT]) {
        constexpr int64_t bb = sizeof(block_q4_0);
        const int16_t* q[NT];
        const int32_t* c[NT];
        __m256 sum[R][NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) sum[r][i] = acc[r][i];
        const int64_t whole = std::min(u1, nb / 4);
        for (int64_t u = u0; u < whole; ++u)
            q4_quad_256<R, NT>(u, [&](int r) { return row0 + r * stride + u * 4 * bb; }, q, c, sum);
        if (whole < u1)
            q4_quad_256<R, NT, true>(whole, [&](int r) { return row0 + r * stride + whole * 4 * bb; }, q, c, sum,
                                     int(nb - whole * 4));
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) acc[r][i] = sum[r][i];
    }

    // Blocks [b0, b1) of R Q8_0 rows against NT tokens, added to acc.
    template <int R, int NT>
    static void q8_blocks_256(const std::byte* row0, int64_t stride, int64_t b0, int64_t b1, const act_rows& xq,
                              int64_t t0, __m256 (&acc)[R][NT]) {
        for (int64_t b = b0; b < b1; ++b) {
            __m256i lo[R], hi[R];
            __m256 s[R];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const auto& blk = reinterpret_cast<const block_q8_0*>(row0 + r * stride)[b];
                const auto* qw = reinterpret_cast<const __m128i*>(blk.q);
                lo[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(qw)), hi[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(qw + 1));
                s[r] = _mm256_set1_ps(_cvtsh_ss(blk.d));
            }
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) {
                const auto* a = reinterpret_cast<const __m256i*>(xq.q(t0 + i) + b * quant_block);
                const __m256i al = _mm256_load_si256(a), ah = _mm256_load_si256(a + 1);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) {
                    const __m256i d = _mm256_add_epi32(_mm256_madd_epi16(lo[r], al), _mm256_madd_epi16(hi[r], ah));
                    acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s[r], acc[r][i]);
                }
            }
        }
    }
};

// ---- AVX-512 ------------------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX512)
template <isa Level>
struct quant_blocks<avx512_tag<Level>> {
    using tag = avx512_tag<Level>;
    static constexpr int64_t prefetch_ahead = 2048;
    static constexpr auto prefetch_hint = _MM_HINT_T0;

    // A Q4_0 quad of blocks (A, B, C, D; fewer at the end of a row) as four
    // registers of 32 words, w[j] holding elements 8j..8j+7 of each block as raw
    // nibbles (0..15), and the blocks' scales, each in the 4 lanes its words
    // reach in dot4 (see act_quant.hpp for the matching activation order).
    struct q4_quad {
        __m512i w[4];
        __m512 scale;
    };

    // unpack_q4's masks for a quad with `left` blocks left in the row (all 36 bytes
    // of A, B and of C, D when left >= 4).
    static std::array<__mmask64, 2> quad_masks(int64_t left) {
        auto bytes = [](int64_t blocks) { return __mmask64((uint64_t(1) << (blocks * sizeof(block_q4_0))) - 1); };
        return {bytes(std::min<int64_t>(left, 2)), bytes(std::clamp<int64_t>(left - 2, 0, 2))};
    }

    // m1, m2: which bytes of blocks A, B and of C, D to load (all 36 of each but at the
    // end of a row), so the masked loads never touch bytes past the row.
    static q4_quad unpack_q4(const std::byte* blk, __mmask64 m1, __mmask64 m2) {
        constexpr int64_t bb = sizeof(block_q4_0);
        const __m512i v1 = _mm512_maskz_loadu_epi8(m1, blk), v2 = _mm512_maskz_loadu_epi8(m2, blk + 2 * bb);
        // Word index of quant byte pair / scale of block bq in (v1, v2) for vpermt2w (bit 5: v2).
        constexpr auto word_of = [](int bq, int w) { return (bq / 2) << 5 | ((bq % 2) * int(bb) / 2 + w); };
        static constexpr auto scale_index = [=] {
            std::array<uint16_t, 32> ix{};
            for (int k = 0; k < 16; ++k) ix[size_t(k)] = uint16_t(word_of(k / 4, 0));
            return ix;
        }();
        const __m256i d16 = _mm512_castsi512_si256(_mm512_permutex2var_epi16(v1, _mm512_loadu_si512(scale_index.data()), v2));
        __m512i x, y;
        if constexpr (tag::vbmi) {
            // vpermt2b puts quant byte 8h+m of block bq (m < 8) in the low byte of word
            // 8·bq + m, the high bytes zeroed by the mask.
            static constexpr auto byte_index = [=] {
                std::array<std::array<uint8_t, 64>, 2> ix{};
                for (int h = 0; h < 2; ++h)
                    for (int k = 0; k < 32; ++k) {
                        const int bq = k / 8, at = (bq % 2) * int(bb) + 2 + 8 * h + k % 8;
                        ix[size_t(h)][size_t(2 * k)] = uint8_t((bq / 2) << 6 | at);
                    }
                return ix;
            }();
            constexpr uint64_t even = 0x5555555555555555ull;
            x = _mm512_maskz_permutex2var_epi8(even, v1, _mm512_loadu_si512(byte_index[0].data()), v2);
            y = _mm512_maskz_permutex2var_epi8(even, v1, _mm512_loadu_si512(byte_index[1].data()), v2);
        } else {
            // vpermt2w gathers the same bytes two at a time (quant bytes start at an even
            // offset), then they are widened to words.
            static constexpr auto pair_index = [=] {
                std::array<std::array<uint16_t, 32>, 2> ix{};
                for (int h = 0; h < 2; ++h)
                    for (int u = 0; u < 16; ++u) ix[size_t(h)][size_t(u)] = uint16_t(word_of(u / 4, 1 + 4 * h + u % 4));
                return ix;
            }();
            x = _mm512_cvtepu8_epi16(
                _mm512_castsi512_si256(_mm512_permutex2var_epi16(v1, _mm512_loadu_si512(pair_index[0].data()), v2)));
            y = _mm512_cvtepu8_epi16(
                _mm512_castsi512_si256(_mm512_permutex2var_epi16(v1, _mm512_loadu_si512(pair_index[1].data()), v2)));
        }
        const __m512i m = _mm512_set1_epi16(0x0f);
        return {{_mm512_and_si512(x, m), _mm512_and_si512(y, m), _mm512_srli_epi16(x, 4), _mm512_srli_epi16(y, 4)},
                _mm512_cvtph_ps(d16)};
    }

    // c + Σ_j of the products of w[j] and a[j], per 32-bit lane.
    static __m512i dot4(__m512i c, const __m512i* w, const __m512i* a) {
        if constexpr (tag::vnni) {
            c = _mm512_dpwssd_epi32(c, w[0], _mm512_load_si512(a));
            c = _mm512_dpwssd_epi32(c, w[1], _mm512_load_si512(a + 1));
            c = _mm512_dpwssd_epi32(c, w[2], _mm512_load_si512(a + 2));
            return _mm512_dpwssd_epi32(c, w[3], _mm512_load_si512(a + 3));
        } else {
            const __m512i s01 = _mm512_add_epi32(_mm512_madd_epi16(w[0], _mm512_load_si512(a)),
                                                 _mm512_madd_epi16(w[1], _mm512_load_si512(a + 1))),
                          s23 = _mm512_add_epi32(_mm512_madd_epi16(w[2], _mm512_load_si512(a + 2)),
                                                 _mm512_madd_epi16(w[3], _mm512_load_si512(a + 3)));
            return _mm512_add_epi32(c, _mm512_add_epi32(s01, s23));
        }
    }

    // c + the products of w and a summed pairwise, per 32-bit lane.
    static __m512i dot_add(__m512i c, __m512i w, __m512i a) {
        if constexpr (tag::vnni) return _mm512_dpwssd_epi32(c, w, a);
        else return _mm512_add_epi32(c, _mm512_madd_epi16(w, a));
    }
};
#endif


// ---- x86 KV cache blocks (both widths: 8-lane f32 batches; a block is 4 of them) --------

template <class Simd, isa Level>
struct kv_blocks<x86_tag<Simd, Level>> {
    using acc = __m256;
    static __m256 zero() { return _mm256_setzero_ps(); }
    static float scale(const std::byte* blk) {
        uint16_t h;
        std::memcpy(&h, blk, 2);
        return _cvtsh_ss(h);
    }
    // The block's 32 integers (q4_0: nibble − 8) as four 8-lane f32 batches.
    template <weight_type t>
    [[gnu::always_inline]] static void widen(const std::byte* blk, __m256 (&w)[4]) {
        __m128i a, b;
        if constexpr (t == weight_type::q8_0) {
            const auto* q = reinterpret_cast<const __m128i*>(blk + 2);
            a = _mm_loadu_si128(q), b = _mm_loadu_si128(q + 1);
        } else {
            const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
            const __m128i m = _mm_set1_epi8(0x0f), e8 = _mm_set1_epi8(8);
            a = _mm_sub_epi8(_mm_and_si128(x, m), e8), b = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), m), e8);
        }
        w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
        w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(a, a)));
        w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b)));
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m256 dot(const std::byte* blk, const float* q, __m256 a) {
        __m256 w[4];
        widen<t>(blk, w);
        __m256 s = _mm256_mul_ps(w[0], _mm256_loadu_ps(q));
        s = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(q + 8), s);
        s = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(q + 16), s);
        s = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(q + 24), s);
        return _mm256_fmadd_ps(s, _mm256_set1_ps(scale(blk)), a);
    }
    static float sum(__m256 a) {
        __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        x = _mm_add_ss(x, _mm_movehdup_ps(x));
        return _mm_cvtss_f32(x);
    }
    template <weight_type t>
    static void axpy_rows(const std::byte* blk, int64_t stride, const float* p, int64_t n, float* o) {
        __m256 a[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) a[i] = _mm256_loadu_ps(o + 8 * i);
        for (int64_t j = 0; j < n; ++j) {
            const std::byte* b = blk + j * stride;
            __m256 w[4];
            widen<t>(b, w);
            const __m256 pd = _mm256_set1_ps(p[j] * scale(b));
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i) a[i] = _mm256_fmadd_ps(pd, w[i], a[i]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) _mm256_storeu_ps(o + 8 * i, a[i]);
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64 (issue #19): quant_blocks<arm_tag<Level>> and kv_blocks<arm_tag<Level>> go here

}  // namespace ncas::cpu::detail
