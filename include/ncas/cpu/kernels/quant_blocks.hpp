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

// The bytes of one Q8_0 / Q4_0 block (of weights or of a KV cache row).
template <weight_type t>
inline constexpr int64_t block_bytes = t == weight_type::q4_0 ? int64_t(sizeof(block_q4_0)) : int64_t(sizeof(block_q8_0));

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
// and may add
//   sum4(a, s)           s[r] = sum(a[r]) for four accumulators, bit for bit, in fewer
//                        operations (the scores kernel runs four rows at a time)
//   sum16(a, s)          s[r] = the lanes of a[r] added, for sixteen accumulators in one
//                        transposing reduction; where a tag has it (AVX-512), the scores
//                        kernel runs sixteen rows at a time
//   idot<t>(blk, q, corr, a), quantize_query(q, d, out)
//                        dot's integer form: q the block's 32 query values in 16 bits
//                        (quantize_query: a map's d values, returning their scale),
//                        corr 8 int32 lane corrections (q4_0: −8·Σ of each lane's query
//                        words, lane i holding elements 2i, 2i+1, 16 + 2i, 17 + 2i); a +
//                        scale(blk) · (exact integer lane sums), per lane. Where a tag has
//                        it, the scores kernel uses it instead of dot.
//   widen16 / idot16, widen32 / axpy_widened
//                        a block widened once (its 16-bit words, or its integers as f32, in
//                        a buffer) and idot / axpy_rows over the widened blocks, bit for bit:
//                        a prompt's block of queries then widens each block once for all.
//   axpy_blocks          the most adjacent blocks axpy_rows<t, K> and axpy_widened<K> take
//                        in one call, their sums independent chains (the same bits)
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


// ---- x86 KV cache blocks: AVX2 (8-lane f32 batches, a block is 4 of them); AVX-512 below --

template <class Tag>
struct kv_blocks_x86 {
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
            // Each 8 bytes widened straight from memory (vpmovsxbd's load operand): no shuffles.
            const std::byte* q = blk + 2;
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
                w[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i))));
            return;
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
    // sum of each of four accumulators, bit for bit: with x = lo + hi of a row, sum adds
    // (x0 + x2) + (x1 + x3); the transposed columns c0..c3 hold x0..x3 of the four rows.
    [[gnu::always_inline]] static void sum4(const __m256 (&a)[4], float (&s)[4]) {
        __m128 x[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) x[r] = _mm_add_ps(_mm256_castps256_ps128(a[r]), _mm256_extractf128_ps(a[r], 1));
        _MM_TRANSPOSE4_PS(x[0], x[1], x[2], x[3]);
        _mm_storeu_ps(s, _mm_add_ps(_mm_add_ps(x[0], x[2]), _mm_add_ps(x[1], x[3])));
    }
    // A map's query in 16 bits with one scale, as the integer matmuls' activations
    // (act_quant.hpp): dq = max|q| / 32767, q16 = round(q / dq) (to nearest even, as
    // std::nearbyint), so a score's error from it is at most dq/2 · Σ|k|. A NaN or an
    // infinity gives scale NaN (and zeros), so its scores are NaN; a query too small for a
    // finite inverse scale is zeros with scale 0. Returns dq.
    static float quantize_query(const float* q, int64_t d, int16_t* out) {
        const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
        __m256 amax = zero, nonfinite = zero;  // nonfinite: Σ q·0, NaN when a value is NaN or infinite
        int64_t e = 0;
        for (; e + 8 <= d; e += 8) {
            const __m256 x = _mm256_loadu_ps(q + e);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, x)), nonfinite = _mm256_add_ps(nonfinite, _mm256_mul_ps(x, zero));
        }
        alignas(32) float lanes[8], bad[8];
        _mm256_store_ps(lanes, amax), _mm256_store_ps(bad, nonfinite);
        float m = 0.0f, z = 0.0f;
        for (int i = 0; i < 8; ++i) m = std::max(m, lanes[i]), z += bad[i];
        for (int64_t i = e; i < d; ++i) m = std::max(m, std::abs(q[i])), z += q[i] * 0.0f;
        if (z != 0.0f) {
            std::fill(out, out + d, int16_t(0));
            return std::numeric_limits<float>::quiet_NaN();
        }
        float dq = m / 32767.0f, id = dq != 0.0f ? 1.0f / dq : 0.0f;
        if (std::isinf(id)) dq = 0.0f, id = 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (e = 0; e + 8 <= d; e += 8) {  // vcvtps2dq rounds to nearest even (the default MXCSR)
            const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(q + e), vid));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + e), _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
        }
        for (; e < d; ++e) out[e] = int16_t(std::nearbyint(q[e] * id));
        return dq;
    }
    // The integer scores (attention_quant uses them where a tag has them): the block's 32
    // integers against 32 query words q (the map's query in 16 bits, on the block grid), as
    // pmaddwd pairs, lane i holding elements 2i, 2i+1, 16 + 2i, 17 + 2i; q4_0 multiplies the
    // raw nibbles and starts from corr (−8·Σ of the lane's query words). Exact in int32 and
    // in the conversion for any block bytes: |sum| <= 4·128·32767 < 2^24 (and no pmaddwd pair
    // saturates: the query words are never −32768). Then a + sum·scale per lane.
    template <weight_type t>
    [[gnu::always_inline]] static void words(const std::byte* blk, __m256i& lo, __m256i& hi) {
        if constexpr (t == weight_type::q8_0) {
            lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
            hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18)));
        } else {
            const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)), m = _mm_set1_epi8(0x0f);
            lo = _mm256_cvtepu8_epi16(_mm_and_si128(x, m)), hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(x, 4), m));
        }
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m256 idot_words(__m256i lo, __m256i hi, float sc, const int16_t* q, const int32_t* corr, __m256 a) {
        const auto* qv = reinterpret_cast<const __m256i*>(q);
        __m256i s = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_load_si256(qv)), _mm256_madd_epi16(hi, _mm256_load_si256(qv + 1)));
        if constexpr (t == weight_type::q4_0) s = _mm256_add_epi32(s, _mm256_load_si256(reinterpret_cast<const __m256i*>(corr)));
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc), a);
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m256 idot(const std::byte* blk, const int16_t* q, const int32_t* corr, __m256 a) {
        __m256i lo, hi;
        words<t>(blk, lo, hi);
        return idot_words<t>(lo, hi, scale(blk), q, corr, a);
    }
    // A prompt's block of queries reads each block once for all of them (attention_quant's
    // scores_n / values_n): widen16 stores the words idot forms (w: 32 int16, 32-byte
    // aligned) and returns the scale, idot16 is idot over them; widen32 stores the block's
    // integers as f32 (exact) and returns the scale, axpy_widened is axpy_rows over rows of
    // them (row j at w + j·ws, its scale at sc[j·ss]). Bit for bit idot's and axpy_rows'.
    template <weight_type t>
    [[gnu::always_inline]] static float widen16(const std::byte* blk, int16_t* w) {
        __m256i lo, hi;
        words<t>(blk, lo, hi);
        _mm256_store_si256(reinterpret_cast<__m256i*>(w), lo), _mm256_store_si256(reinterpret_cast<__m256i*>(w + 16), hi);
        return scale(blk);
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m256 idot16(const int16_t* w, float sc, const int16_t* q, const int32_t* corr, __m256 a) {
        return idot_words<t>(_mm256_load_si256(reinterpret_cast<const __m256i*>(w)),
                             _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 16)), sc, q, corr, a);
    }
    // The value sums, written once for both widths over the tag's f32 batches: a block is
    // L of them, from kv_blocks<Tag>::widen (four of 8 lanes here, two of 16 on AVX-512).
    // K adjacent blocks at once (block u's values at blk + u·bb, or widened at w + 32u with
    // its scale at sc[u]; its sums at o + 32u), the rows outer: the blocks' sums are K
    // independent chains of multiply-adds (one block at a time, each row waits on the
    // previous row's). A sum gets the same multiply-adds in the same order for any K.
    using fbatch = typename Tag::fbatch;
    static constexpr int L = int(32 / Tag::W);
    using lanes = std::conditional_t<L == 4, __m256, __m512>;
    static constexpr int axpy_blocks = 8 / L;  // the most K: 8 registers of sums
    template <weight_type t>
    [[gnu::always_inline]] static float widen32(const std::byte* blk, float* w) {
        lanes x[L];
        kv_blocks<Tag>::template widen<t>(blk, x);
#pragma GCC unroll 4
        for (int i = 0; i < L; ++i) fbatch(x[i]).store_aligned(w + Tag::W * i);
        return scale(blk);
    }
    template <int K = 1>
    static void axpy_widened(const float* w, int64_t ws, const float* sc, int64_t ss, const float* p, int64_t n, float* o) {
        fbatch a[K][L];
#pragma GCC unroll 8
        for (int i = 0; i < L * K; ++i) a[i / L][i % L] = fbatch::load_unaligned(o + Tag::W * i);
        for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 4
            for (int u = 0; u < K; ++u) {
                const fbatch pd(p[j] * sc[j * ss + u]);
#pragma GCC unroll 4
                for (int i = 0; i < L; ++i) a[u][i] = xsimd::fma(pd, fbatch::load_aligned(w + j * ws + 32 * u + Tag::W * i), a[u][i]);
            }
#pragma GCC unroll 8
        for (int i = 0; i < L * K; ++i) a[i / L][i % L].store_unaligned(o + Tag::W * i);
    }
    template <weight_type t, int K = 1>
    static void axpy_rows(const std::byte* blk, int64_t stride, const float* p, int64_t n, float* o) {
        constexpr int64_t bb = block_bytes<t>;
        fbatch a[K][L];
#pragma GCC unroll 8
        for (int i = 0; i < L * K; ++i) a[i / L][i % L] = fbatch::load_unaligned(o + Tag::W * i);
        for (int64_t j = 0; j < n; ++j)
#pragma GCC unroll 4
            for (int u = 0; u < K; ++u) {
                const std::byte* b = blk + j * stride + u * bb;
                lanes x[L];
                kv_blocks<Tag>::template widen<t>(b, x);
                const fbatch pd(p[j] * scale(b));
#pragma GCC unroll 4
                for (int i = 0; i < L; ++i) a[u][i] = xsimd::fma(pd, fbatch(x[i]), a[u][i]);
            }
#pragma GCC unroll 8
        for (int i = 0; i < L * K; ++i) a[i / L][i % L].store_unaligned(o + Tag::W * i);
    }
};

template <class Simd, isa Level>
struct kv_blocks<x86_tag<Simd, Level>> : kv_blocks_x86<x86_tag<Simd, Level>> {};

#if defined(NCAS_CPU_HAVE_AVX512)
// AVX-512: a block is one register of 32 words or two of 16 f32, so a block's integer dot
// is one widening, one vpmaddwd, one conversion and one multiply-add (AVX2: two, two, one
// and one, plus an add), and a value row's block two conversions and two multiply-adds
// (AVX2: four and four). The accumulators have 16 lanes, each the sum of one pair of a
// block's products (q4_0: its nibbles minus 8, so no lane corrections), and sum16 reduces
// sixteen rows' at once, so the scores kernel takes sixteen rows at a time (sixteen streams
// through the cache, see attention_quant::score_rows). The scores differ from AVX2's in the
// last bits; the value sums do not (the same multiply-adds per lane).
template <isa Level>
struct kv_blocks<avx512_tag<Level>> : kv_blocks_x86<avx512_tag<Level>> {
    using base = kv_blocks_x86<avx512_tag<Level>>;
    using base::scale;
    using acc = __m512;
    static __m512 zero() { return _mm512_setzero_ps(); }
    // The block's 32 integers (q4_0: nibble − 8) as two 16-lane f32 batches, elements 0..15 and 16..31.
    template <weight_type t>
    [[gnu::always_inline]] static void widen(const std::byte* blk, __m512 (&w)[2]) {
        __m128i a, b;
        if constexpr (t == weight_type::q8_0) {
            a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
            b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18));
        } else {
            const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
            const __m128i m = _mm_set1_epi8(0x0f), e8 = _mm_set1_epi8(8);
            a = _mm_sub_epi8(_mm_and_si128(x, m), e8), b = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(x, 4), m), e8);
        }
        w[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a));
        w[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m512 dot(const std::byte* blk, const float* q, __m512 a) {
        __m512 w[2];
        widen<t>(blk, w);
        const __m512 s = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(q + 16), _mm512_mul_ps(w[0], _mm512_loadu_ps(q)));
        return _mm512_fmadd_ps(s, _mm512_set1_ps(scale(blk)), a);
    }
    // The lanes added as halves first (lane i + lane 8 + i), then in base::sum's order.
    [[gnu::always_inline]] static __m256 halves(__m512 a) {
        return _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    }
    static float sum(__m512 a) { return base::sum(halves(a)); }
    // Lane r of the result: the sum of v[r]'s 16 lanes, in one order for every r (a transposing
    // reduction: 15 adds for 16 rows instead of a horizontal sum each).
    [[gnu::always_inline]] static __m512 sum16(const __m512 (&v)[16]) {
        __m512 x[8], y[4], z[2];
        for (int i = 0; i < 8; ++i)  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
            x[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
        for (int i = 0; i < 4; ++i) {  // per 128-bit lane: the lane's sum of rows 4i .. 4i+3
            const __m512d a = _mm512_castps_pd(x[2 * i]), b = _mm512_castps_pd(x[2 * i + 1]);
            y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
        }
        for (int i = 0; i < 2; ++i)  // 128-bit lanes: y[2i] (L0+L1, L2+L3), y[2i+1] (L0+L1, L2+L3)
            z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88), _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xdd));
        return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xdd));
    }
    [[gnu::always_inline]] static void sum16(const __m512 (&v)[16], float (&s)[16]) { _mm512_storeu_ps(s, sum16(v)); }
    // The integer scores, as kv_blocks_x86's idot: the block's integers as one register of
    // 32 words in element order (q4_0: nibble − 8, so corr is not read), one vpmaddwd. q4_0's
    // nibbles take more integer operations, which 512-bit registers run on two ports instead
    // of three: its scores take 230 against AVX2's 195 ns a PI-P row in cache (one thread),
    // and from DRAM, sixteen rows at a time, 240 against 230.
    template <weight_type t>
    [[gnu::always_inline]] static __m512i words(const std::byte* blk) {
        if constexpr (t == weight_type::q8_0) {
            return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)));
        } else {
            const __m256i y = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
            const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(y, _mm256_set1_epi16(0x0f))),
                                                 _mm256_srli_epi16(y, 4), 1);
            return _mm512_sub_epi16(w, _mm512_set1_epi16(8));
        }
    }
    [[gnu::always_inline]] static __m512 idot_words(__m512i w, float sc, const int16_t* q, __m512 a) {
        const __m512i s = _mm512_madd_epi16(w, _mm512_load_si512(q));
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(sc), a);
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m512 idot(const std::byte* blk, const int16_t* q, const int32_t*, __m512 a) {
        return idot_words(words<t>(blk), scale(blk), q, a);
    }
    template <weight_type t>
    [[gnu::always_inline]] static float widen16(const std::byte* blk, int16_t* w) {
        _mm512_store_si512(w, words<t>(blk));
        return scale(blk);
    }
    template <weight_type t>
    [[gnu::always_inline]] static __m512 idot16(const int16_t* w, float sc, const int16_t* q, const int32_t*, __m512 a) {
        return idot_words(_mm512_load_si512(w), sc, q, a);
    }
};
#endif

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: NEON, dotprod, i8mm ------------------------------------------------------
// Blocks are taken in groups of four (a Q4_0 quad; four Q8_0 blocks, 128 activation
// words either way), and each level computes every block's exact integer dot with
// a token: group_dots returns [D_0, D_1, D_2, D_3], one block a lane, which the tile
// converts and scales (one f32 lane per block position, so every level, and every
// tile shape, adds the same numbers in the same order: the three ARM levels agree
// bit for bit). How the integers are formed:
//  - neon: weights widened to 16 bits (Q4_0 minus 8) and smlal / smlal2 against the
//    16-bit activations;
//  - dotprod: an activation a = 256·h + l (h its signed high byte, l its unsigned low
//    byte), split for free by ld2's de-interleaving load; Q4_0's raw nibbles u (0..15)
//    meet h in sdot and l in udot, and the activation's −8·Σa correction
//    (act_quant.hpp) takes the place of the −8; Q8_0's signed weights meet h in sdot
//    and l − 128 in sdot, plus 128·Σw a lane, computed once per weight block;
//  - i8mm: as dotprod, with usdot for Q8_0's l (no −128 / 128·Σw), and Q4_0 prefill
//    tiles of 2 rows through smmla (h) / ummla (l), 2 rows × 2 tokens × 8 bytes an
//    instruction: the same integers again.

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct quant_blocks<arm_tag<Level>> {
    using tag = arm_tag<Level>;
    static constexpr int64_t group_words = 128;  // activation words a group of four blocks reads (both types)

    // The scales of a group's blocks as f32; 0 for a missing block (k >= blocks), never read.
    template <weight_type t>
    [[gnu::always_inline]] static float32x4_t group_scales(const std::byte* g, int blocks) {
        uint16_t h[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            h[k] = 0;
            if (k < blocks) std::memcpy(&h[k], g + k * block_bytes<t>, 2);
        }
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
    }

    // ---- neon: 16-bit weights ----

    // The group's weights as w[k][j]: block k's elements 8j..8j+7 (Q4_0: nibble − 8);
    // a missing block's are zero and not read.
    template <weight_type t>
    [[gnu::always_inline]] static void widen_group(const std::byte* g, int blocks, int16x8_t (&w)[4][4]) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const std::byte* b = g + k * block_bytes<t>;
            int8x16_t lo = vdupq_n_s8(0), hi = vdupq_n_s8(0);
            if (k < blocks) {
                if constexpr (t == weight_type::q4_0) {
                    const uint8x16_t x = vld1q_u8(reinterpret_cast<const uint8_t*>(b + 2));
                    lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
                    hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(x, 4)), vdupq_n_s8(8));
                } else {
                    lo = vld1q_s8(reinterpret_cast<const int8_t*>(b + 2)), hi = vld1q_s8(reinterpret_cast<const int8_t*>(b + 18));
                }
            }
            w[k][0] = vmovl_s8(vget_low_s8(lo)), w[k][1] = vmovl_high_s8(lo);
            w[k][2] = vmovl_s8(vget_low_s8(hi)), w[k][3] = vmovl_high_s8(hi);
        }
    }
    // Word of block k's elements 8j.. in a group's activations (Q4_0 runs, or natural order).
    template <weight_type t>
    static constexpr int64_t act_at(int k, int j) { return t == weight_type::q4_0 ? 32 * j + 8 * k : 32 * k + 8 * j; }

    // [D_0..D_3] of widened weights against a token's group activations q.
    template <weight_type t, bool partial>
    [[gnu::always_inline]] static int32x4_t dots_wide(const int16x8_t (&w)[4][4], const int16_t* q, int blocks) {
        int32x4_t s[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            s[k] = vdupq_n_s32(0);
            if (partial && t == weight_type::q8_0 && k >= blocks) continue;  // no activations there (Q4_0's are zeros)
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const int16x8_t a = vld1q_s16(q + act_at<t>(k, j));
                s[k] = vmlal_high_s16(vmlal_s16(s[k], vget_low_s16(w[k][j]), vget_low_s16(a)), w[k][j], a);
            }
        }
        return vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
    }

#if defined(NCAS_CPU_HAVE_DOTPROD)
    // ---- dotprod / i8mm: 8-bit weights ----

    // A Q4_0 quad's raw nibbles as u[h][j]: elements 8j..8j+7 of blocks 2h and 2h+1
    // (the activation runs' order); a missing block's bytes are zero and not read.
    [[gnu::always_inline]] static void nibbles_q4(const std::byte* g, int blocks, uint8x16_t (&u)[2][4]) {
        constexpr int64_t bb = sizeof(block_q4_0);
        const uint8x16_t m = vdupq_n_u8(0x0f);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            uint8x16_t a = vdupq_n_u8(0), b = vdupq_n_u8(0);
            if (2 * h < blocks) a = vld1q_u8(reinterpret_cast<const uint8_t*>(g + 2 * h * bb + 2));
            if (2 * h + 1 < blocks) b = vld1q_u8(reinterpret_cast<const uint8_t*>(g + (2 * h + 1) * bb + 2));
            const uint8x16_t lo = vreinterpretq_u8_u64(vzip1q_u64(vreinterpretq_u64_u8(a), vreinterpretq_u64_u8(b))),
                             hi = vreinterpretq_u8_u64(vzip2q_u64(vreinterpretq_u64_u8(a), vreinterpretq_u64_u8(b)));
            u[h][0] = vandq_u8(lo, m), u[h][1] = vandq_u8(hi, m), u[h][2] = vshrq_n_u8(lo, 4), u[h][3] = vshrq_n_u8(hi, 4);
        }
    }
    // [D_0..D_3] of a quad's nibbles against a token's quad activations q and corrections c.
    // Lane m of half h sums words 16h+4m..16h+4m+3 of each run, whose corrections are
    // lanes 8h+2m and 8h+2m+1 of c (act_quant.hpp).
    [[gnu::always_inline]] static int32x4_t dots_q4(const uint8x16_t (&u)[2][4], const int16_t* q, const int32_t* c) {
        int32x4_t tot[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            int32x4_t hi = vdupq_n_s32(0);
            uint32x4_t lo = vreinterpretq_u32_s32(vpaddq_s32(vld1q_s32(c + 8 * h), vld1q_s32(c + 8 * h + 4)));
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const int8x16x2_t p = vld2q_s8(reinterpret_cast<const int8_t*>(q + 32 * j + 16 * h));  // low bytes, high bytes
                hi = vdotq_s32(hi, vreinterpretq_s8_u8(u[h][j]), p.val[1]);
                lo = vdotq_u32(lo, u[h][j], vreinterpretq_u8_s8(p.val[0]));
            }
            tot[h] = vmlaq_n_s32(vreinterpretq_s32_u32(lo), hi, 256);
        }
        return vpaddq_s32(tot[0], tot[1]);
    }

    // Four Q8_0 blocks' signed weights (w[k][0]: elements 0..15, w[k][1]: 16..31) and,
    // below i8mm, 128·Σw per lane (the −128 of the low bytes given back).
    struct q8_group {
        int8x16_t w[4][2];
        int32x4_t wsum[4];
    };
    [[gnu::always_inline]] static void bytes_q8(const std::byte* g, int blocks, q8_group& v) {
        constexpr int64_t bb = sizeof(block_q8_0);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            v.w[k][0] = v.w[k][1] = vdupq_n_s8(0);
            if (k < blocks)
                v.w[k][0] = vld1q_s8(reinterpret_cast<const int8_t*>(g + k * bb + 2)),
                v.w[k][1] = vld1q_s8(reinterpret_cast<const int8_t*>(g + k * bb + 18));
            if constexpr (!tag::i8mm) {
                const int8x16_t one = vdupq_n_s8(1);
                v.wsum[k] = vshlq_n_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), v.w[k][0], one), v.w[k][1], one), 7);
            }
        }
    }
    template <bool partial>
    [[gnu::always_inline]] static int32x4_t dots_q8(const q8_group& v, const int16_t* q, int blocks) {
        int32x4_t s[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            s[k] = vdupq_n_s32(0);
            if (partial && k >= blocks) continue;
            const int8x16x2_t p0 = vld2q_s8(reinterpret_cast<const int8_t*>(q + 32 * k)),
                              p1 = vld2q_s8(reinterpret_cast<const int8_t*>(q + 32 * k + 16));
            const int32x4_t hi = vdotq_s32(vdotq_s32(vdupq_n_s32(0), v.w[k][0], p0.val[1]), v.w[k][1], p1.val[1]);
            int32x4_t lo;
            if constexpr (tag::i8mm) {
                lo = vusdotq_s32(vusdotq_s32(vdupq_n_s32(0), vreinterpretq_u8_s8(p0.val[0]), v.w[k][0]),
                                 vreinterpretq_u8_s8(p1.val[0]), v.w[k][1]);
            } else {
                const int8x16_t flip = vdupq_n_s8(-128);
                lo = vdotq_s32(vdotq_s32(v.wsum[k], v.w[k][0], veorq_s8(p0.val[0], flip)), v.w[k][1], veorq_s8(p1.val[0], flip));
            }
            s[k] = vmlaq_n_s32(lo, hi, 256);
        }
        return vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
    }
#endif

#if defined(NCAS_CPU_HAVE_I8MM)
    // ---- i8mm: 2 rows × 2 tokens a matrix multiply ----

    // [D_0..D_3] of a Q4_0 quad for rows 0, 1 (nibbles u0, u1) against tokens 0, 1
    // (activations q0, q1, corrections c0, c1): out[2r + i] for row r and token i.
    // smmla / ummla take a 2×8 matrix of each: the rows' 8 nibbles of one block and run,
    // and the tokens' 8 high (low) bytes of the same, giving [r0t0, r0t1, r1t0, r1t1];
    // a 4×4 transpose turns the four blocks' results into one vector a (row, token).
    [[gnu::always_inline]] static void mmla_q4(const uint8x16_t (&u0)[2][4], const uint8x16_t (&u1)[2][4],
                                               const int16_t* q0, const int16_t* q1, const int32_t* c0,
                                               const int32_t* c1, int32x4_t (&out)[4]) {
        int32x4_t tot[4];  // block k: [r0t0, r0t1, r1t0, r1t1]
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            int32x4_t hi[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
            uint32x4_t lo[2] = {vdupq_n_u32(0), vdupq_n_u32(0)};
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const int8x16x2_t p0 = vld2q_s8(reinterpret_cast<const int8_t*>(q0 + 32 * j + 16 * h)),
                                  p1 = vld2q_s8(reinterpret_cast<const int8_t*>(q1 + 32 * j + 16 * h));
                const uint64x2_t h0 = vreinterpretq_u64_s8(p0.val[1]), h1 = vreinterpretq_u64_s8(p1.val[1]),
                                 l0 = vreinterpretq_u64_s8(p0.val[0]), l1 = vreinterpretq_u64_s8(p1.val[0]),
                                 w0 = vreinterpretq_u64_u8(u0[h][j]), w1 = vreinterpretq_u64_u8(u1[h][j]);
                // e = 0: block 2h (the low 8 bytes of each), e = 1: block 2h + 1.
                hi[0] = vmmlaq_s32(hi[0], vreinterpretq_s8_u64(vzip1q_u64(w0, w1)), vreinterpretq_s8_u64(vzip1q_u64(h0, h1)));
                hi[1] = vmmlaq_s32(hi[1], vreinterpretq_s8_u64(vzip2q_u64(w0, w1)), vreinterpretq_s8_u64(vzip2q_u64(h0, h1)));
                lo[0] = vmmlaq_u32(lo[0], vreinterpretq_u8_u64(vzip1q_u64(w0, w1)), vreinterpretq_u8_u64(vzip1q_u64(l0, l1)));
                lo[1] = vmmlaq_u32(lo[1], vreinterpretq_u8_u64(vzip2q_u64(w0, w1)), vreinterpretq_u8_u64(vzip2q_u64(l0, l1)));
            }
            tot[2 * h] = vmlaq_n_s32(vreinterpretq_s32_u32(lo[0]), hi[0], 256);
            tot[2 * h + 1] = vmlaq_n_s32(vreinterpretq_s32_u32(lo[1]), hi[1], 256);
        }
        // Each token's −8·Σa a block: correction lanes 4k..4k+3 belong to block k.
        auto block_corr = [](const int32_t* c) {
            return vpaddq_s32(vpaddq_s32(vld1q_s32(c), vld1q_s32(c + 4)), vpaddq_s32(vld1q_s32(c + 8), vld1q_s32(c + 12)));
        };
        const int32x4_t k0 = block_corr(c0), k1 = block_corr(c1);
        const int32x4_t a = vzip1q_s32(tot[0], tot[1]), b = vzip2q_s32(tot[0], tot[1]), c = vzip1q_s32(tot[2], tot[3]),
                        d = vzip2q_s32(tot[2], tot[3]);
        auto lo64 = [](int32x4_t x, int32x4_t y) { return vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(x), vreinterpretq_s64_s32(y))); };
        auto hi64 = [](int32x4_t x, int32x4_t y) { return vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(x), vreinterpretq_s64_s32(y))); };
        out[0] = vaddq_s32(lo64(a, c), k0), out[1] = vaddq_s32(hi64(a, c), k1);
        out[2] = vaddq_s32(lo64(b, d), k0), out[3] = vaddq_s32(hi64(b, d), k1);
    }
#endif

    // Group g (blocks 4g.., of which `blocks` exist) of R rows against NT tokens,
    // added to acc: per block, its exact integer dot times its scale, in lane k.
    template <int R, int NT, weight_type t, bool partial>
    [[gnu::always_inline]] static void group_rows(const std::byte* row0, int64_t stride, int64_t g, int blocks,
                                                  const int16_t* const (&q)[NT], const int32_t* const (&c)[NT],
                                                  float32x4_t (&acc)[R][NT]) {
        const int64_t at = g * 4 * block_bytes<t>;
        (void)c;  // Q4_0's corrections: read by the 8-bit levels only
#if defined(NCAS_CPU_HAVE_I8MM)
        if constexpr (tag::i8mm && t == weight_type::q4_0 && R % 2 == 0 && NT >= 2) {
            // Row pairs × token pairs through smmla / ummla; an odd last token through udot / sdot.
#pragma GCC unroll 2
            for (int r = 0; r < R; r += 2) {
                const std::byte *g0 = row0 + r * stride + at, *g1 = g0 + stride;
                const float32x4_t s0 = group_scales<t>(g0, blocks), s1 = group_scales<t>(g1, blocks);
                uint8x16_t u0[2][4], u1[2][4];
                nibbles_q4(g0, blocks, u0);
                nibbles_q4(g1, blocks, u1);
                int i = 0;
#pragma GCC unroll 2
                for (; i + 2 <= NT; i += 2) {
                    int32x4_t d[4];
                    mmla_q4(u0, u1, q[i] + g * group_words, q[i + 1] + g * group_words, c[i] + g * 16, c[i + 1] + g * 16, d);
                    acc[r][i] = vfmaq_f32(acc[r][i], vcvtq_f32_s32(d[0]), s0);
                    acc[r][i + 1] = vfmaq_f32(acc[r][i + 1], vcvtq_f32_s32(d[1]), s0);
                    acc[r + 1][i] = vfmaq_f32(acc[r + 1][i], vcvtq_f32_s32(d[2]), s1);
                    acc[r + 1][i + 1] = vfmaq_f32(acc[r + 1][i + 1], vcvtq_f32_s32(d[3]), s1);
                }
                if (i < NT) {
                    acc[r][i] = vfmaq_f32(acc[r][i], vcvtq_f32_s32(dots_q4(u0, q[i] + g * group_words, c[i] + g * 16)), s0);
                    acc[r + 1][i] = vfmaq_f32(acc[r + 1][i], vcvtq_f32_s32(dots_q4(u1, q[i] + g * group_words, c[i] + g * 16)), s1);
                }
            }
            return;
        }
#endif
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            const std::byte* gr = row0 + r * stride + at;
            const float32x4_t s = group_scales<t>(gr, blocks);
            auto add = [&](int i, int32x4_t d) { acc[r][i] = vfmaq_f32(acc[r][i], vcvtq_f32_s32(d), s); };
            if constexpr (!tag::dotprod) {
                int16x8_t w[4][4];
                widen_group<t>(gr, blocks, w);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) add(i, dots_wide<t, partial>(w, q[i] + g * group_words, blocks));
            } else {
#if defined(NCAS_CPU_HAVE_DOTPROD)
                if constexpr (t == weight_type::q4_0) {
                    uint8x16_t u[2][4];
                    nibbles_q4(gr, blocks, u);
#pragma GCC unroll 8
                    for (int i = 0; i < NT; ++i) add(i, dots_q4(u, q[i] + g * group_words, c[i] + g * 16));
                } else {
                    q8_group v;
                    bytes_q8(gr, blocks, v);
#pragma GCC unroll 8
                    for (int i = 0; i < NT; ++i) add(i, dots_q8<partial>(v, q[i] + g * group_words, blocks));
                }
#endif
            }
        }
    }
};
#endif


#if defined(NCAS_CPU_HAVE_NEON)

// ---- ARM64 KV cache blocks (every level: 4-lane f32 batches; a block is 8 of them) ------
// One specialisation for neon, dotprod and i8mm, so the three levels give the same
// bits for a quantised cache as they do for the weights.
template <isa Level>
struct kv_blocks<arm_tag<Level>> {
    using acc = float32x4_t;
    static float32x4_t zero() { return vdupq_n_f32(0.0f); }
    static float scale(const std::byte* blk) {
        __fp16 h;
        std::memcpy(&h, blk, 2);
        return float(h);
    }
    // Eight f32 batches from 16 int8 lanes each of lo and hi.
    [[gnu::always_inline]] static void widen8(int8x16_t v, float32x4_t* w) {
        const int16x8_t l = vmovl_s8(vget_low_s8(v)), h = vmovl_high_s8(v);
        w[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(l)));
        w[1] = vcvtq_f32_s32(vmovl_high_s16(l));
        w[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
        w[3] = vcvtq_f32_s32(vmovl_high_s16(h));
    }
    // The block's 32 integers (q4_0: nibble − 8) as eight 4-lane f32 batches.
    template <weight_type t>
    [[gnu::always_inline]] static void widen(const std::byte* blk, float32x4_t (&w)[8]) {
        int8x16_t a, b;
        if constexpr (t == weight_type::q8_0) {
            const auto* q = reinterpret_cast<const int8_t*>(blk + 2);
            a = vld1q_s8(q), b = vld1q_s8(q + 16);
        } else {
            const uint8x16_t x = vld1q_u8(reinterpret_cast<const uint8_t*>(blk + 2));
            const int8x16_t e8 = vdupq_n_s8(8);
            a = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(x, vdupq_n_u8(0x0f))), e8);
            b = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(x, 4)), e8);
        }
        widen8(a, w);
        widen8(b, w + 4);
    }
    template <weight_type t>
    [[gnu::always_inline]] static float32x4_t dot(const std::byte* blk, const float* q, float32x4_t a) {
        float32x4_t w[8];
        widen<t>(blk, w);
        float32x4_t s = vmulq_f32(w[0], vld1q_f32(q));
#pragma GCC unroll 8
        for (int i = 1; i < 8; ++i) s = vfmaq_f32(s, w[i], vld1q_f32(q + 4 * i));
        return vfmaq_n_f32(a, s, scale(blk));
    }
    static float sum(float32x4_t a) { return vaddvq_f32(a); }
    // faddv adds (a0 + a1) + (a2 + a3); so do two rounds of pairwise adds, four rows at once.
    [[gnu::always_inline]] static void sum4(const float32x4_t (&a)[4], float (&s)[4]) {
        vst1q_f32(s, vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3])));
    }
    template <weight_type t>
    static void axpy_rows(const std::byte* blk, int64_t stride, const float* p, int64_t n, float* o) {
        float32x4_t a[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) a[i] = vld1q_f32(o + 4 * i);
        for (int64_t j = 0; j < n; ++j) {
            const std::byte* b = blk + j * stride;
            float32x4_t w[8];
            widen<t>(b, w);
            const float pd = p[j] * scale(b);
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) a[i] = vfmaq_n_f32(a[i], w[i], pd);
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) vst1q_f32(o + 4 * i, a[i]);
    }
};
#endif

}  // namespace ncas::cpu::detail
