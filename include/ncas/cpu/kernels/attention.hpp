#pragma once
// Attention over one head's cached rows, f32 or f16 (kernels.hpp states the
// contract): attn_scores, both maps' scores in one pass over the keys;
// attn_values, the value rows summed with the probabilities as weights.
// attention_quant: the same over a q8_0 / q4_0 cache, one driver for every
// instruction set over its kv_blocks primitives (quant_blocks.hpp).
#include "ncas/cpu/kernels/quant_blocks.hpp"
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct attention;

// Software prefetch for the value sums over a deep cache. A value's sum runs over the rows
// in order, so the sums read a few consecutive rows at a time (4, or 16 for one head),
// head after head: as many interleaved streams within the same pages, which the hardware
// prefetchers do not follow. One thread's q8_0 value sums over 1 GiB of PI-P rows read
// 6.0 GB/s from DRAM against 15 GB/s in cache (Xeon, AVX-512; the 1-thread read measures
// 14.6). While rows [j, j + n) are read in `parts` parts, part i asks for the same part of
// rows j + n .. j + 2n - 1, so the requests are spread over the work and land a group
// ahead: 10.2 GB/s. (That is near what one core's fill buffers allow for requests that
// wait on DRAM; the scores, which may take rows in any order, spread their rows instead,
// see attention_quant::score_rows.) Templated on the tag: its code stays in the
// instruction set's own objects.
template <class Tag>
struct row_prefetch {
    static constexpr int64_t most_parts = 64;  // a call with more parts takes the span in the first 64
    const std::byte* base = nullptr;           // row 0's first byte read; nullptr: none
    int64_t stride = 0, rows = 0, parts = 0;   // row to row; rows of the stream; parts a group is read in
    int64_t cut[most_parts + 1] = {};          // part i of a row: bytes [cut[i], cut[i + 1])
    row_prefetch() = default;
    row_prefetch(const std::byte* first, int64_t stride_, int64_t bytes, int64_t rows_, int64_t parts_)
        : base(first), stride(stride_), rows(rows_), parts(std::clamp<int64_t>(parts_, 1, most_parts)) {
        for (int64_t i = 0; i <= parts; ++i) cut[i] = bytes * i / parts;
    }
    // Rows [j, j + n) are being read, part i now: ask for part i of the next n rows.
    [[gnu::always_inline]] void operator()(int64_t j, int64_t n, int64_t i) const {
        if (!base || i >= parts || j + 2 * n > rows) return;
        for (int64_t r = j + n; r < j + 2 * n; ++r) {
            const uintptr_t row = reinterpret_cast<uintptr_t>(base + r * stride);
            for (uintptr_t a = (row + uintptr_t(cut[i])) & ~uintptr_t(63); a < row + uintptr_t(cut[i + 1]); a += 64)
                __builtin_prefetch(reinterpret_cast<const void*>(a), 0, 2);
        }
    }
};

// ---- scalar ---------------------------------------------------------------------

template <>
struct attention<scalar_tag> {
    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                            int64_t maps, int64_t d, float scale, float* scores) {
        for (int64_t j = 0; j < rows; ++j)
            for (int64_t m = 0; m < maps; ++m)
                scores[m * rows + j] = dot_row(kv, k + j * stride + row_bytes(kv, m * d), q + m * d, d) * scale;
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t rows, int64_t heads,
                            const float* p, int64_t ps, int64_t dv, float* o, int64_t os) {
        for (int64_t h = 0; h < heads; ++h) std::fill(o + h * os, o + h * os + dv, 0.0f);
        float buf[64];
        for (int64_t j = 0; j < rows; ++j)
            for (int64_t h = 0; h < heads; ++h) {
                float* oh = o + h * os;
                for (int64_t e0 = 0; e0 < dv; e0 += 64) {
                    const int64_t n = std::min<int64_t>(64, dv - e0);
                    dequantize_row(kv, v + j * stride + row_bytes(kv, h * dv + e0), buf, n);
                    for (int64_t e = 0; e < n; ++e) oh[e0 + e] += p[h * ps + j] * buf[e];
                }
            }
    }
};

// ---- every SIMD instruction set: value sums over f32 / f16 rows ---------------------
// Written once over the tag's f32 batches (Tag::fbatch, load_weights, element): the x86
// and ARM64 specialisations below take their value sums from here.

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF
#endif
#if defined(NCAS_CPU_HAVE_AVX2) || defined(NCAS_CPU_HAVE_NEON)
template <class Tag>
struct attention_values {
    using tag = Tag;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

    template <weight_type t>
    static void values_of(const std::byte* v, int64_t stride, int64_t rows, const float* p, int64_t dv, float* o) {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        // Columns in chunks of up to 8 batches held in registers across all rows.
        for (int64_t e0 = 0; e0 < dv; e0 += 8 * W) {
            const int64_t nbat = std::min<int64_t>(8, (dv - e0) / W);
            fbatch acc[8];
#pragma GCC unroll 8
            for (int b = 0; b < 8; ++b) acc[b] = fbatch(0.0f);
            for (int64_t j = 0; j < rows; ++j) {
                const fbatch pj(p[j]);
                const std::byte* vj = v + j * stride + e0 * es;
#pragma GCC unroll 8
                for (int b = 0; b < 8; ++b)
                    if (b < nbat) acc[b] = xsimd::fma(pj, tag::template load_weights<t>(vj + b * W * es), acc[b]);
            }
#pragma GCC unroll 8
            for (int b = 0; b < 8; ++b)
                if (b < nbat) acc[b].store_unaligned(o + e0 + b * W);
            if (nbat < 8) {  // the columns after the last whole batch
                for (int64_t e = e0 + nbat * W; e < std::min(dv, e0 + 8 * W); ++e) {
                    float s = 0.0f;
                    for (int64_t j = 0; j < rows; ++j) s = std::fma(p[j], tag::template element<t>(v + j * stride, e), s);
                    o[e] = s;
                }
                break;
            }
        }
    }
    // Several heads: row after row (each row's span of the heads read once, in order), each
    // head's sums in memory (a few KB, in L1) instead of registers; per value the same
    // multiply-adds in the same order as values_of, so the same bits.
    template <weight_type t>
    static void heads_values_of(const std::byte* v, int64_t stride, int64_t rows, int64_t heads, const float* p,
                                int64_t ps, int64_t dv, float* o, int64_t os) {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        const int64_t whole = dv / W * W;
        for (int64_t h = 0; h < heads; ++h) std::fill(o + h * os, o + h * os + whole, 0.0f);
        // Four rows at a time, head by head: a sum is loaded and stored once for the four
        // (one thread, PI-P rows, Xeon: in cache 124 against 178 ns a row; from DRAM, with
        // the prefetch, 14.9 against 11.1 GB/s).
        const row_prefetch<tag> ahead(v, stride, heads * dv * es, rows, heads);
        int64_t j = 0;
        for (; j + 4 <= rows; j += 4) {
            const std::byte* vj = v + j * stride;
            for (int64_t h = 0; h < heads; ++h) {
                ahead(j, 4, h);
                fbatch pj[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r) pj[r] = fbatch(p[h * ps + j + r]);
                const std::byte* vh = vj + h * dv * es;
                float* oh = o + h * os;
                for (int64_t e = 0; e < whole; e += W) {
                    fbatch a = fbatch::load_unaligned(oh + e);
#pragma GCC unroll 4
                    for (int r = 0; r < 4; ++r) a = xsimd::fma(pj[r], tag::template load_weights<t>(vh + r * stride + e * es), a);
                    a.store_unaligned(oh + e);
                }
            }
        }
        for (; j < rows; ++j) {
            const std::byte* vj = v + j * stride;
            for (int64_t h = 0; h < heads; ++h) {
                const fbatch pj(p[h * ps + j]);
                const std::byte* vh = vj + h * dv * es;
                float* oh = o + h * os;
                for (int64_t e = 0; e < whole; e += W)
                    xsimd::fma(pj, tag::template load_weights<t>(vh + e * es), fbatch::load_unaligned(oh + e)).store_unaligned(oh + e);
            }
        }
        for (int64_t h = 0; h < heads; ++h)  // the columns after the last whole batch, as values_of
            for (int64_t e = whole; e < dv; ++e) {
                float s = 0.0f;
                for (int64_t j = 0; j < rows; ++j)
                    s = std::fma(p[h * ps + j], tag::template element<t>(v + j * stride + h * dv * es, e), s);
                o[h * os + e] = s;
            }
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t rows, int64_t heads,
                            const float* p, int64_t ps, int64_t dv, float* o, int64_t os) {
        if (heads == 1) {
            if (kv == weight_type::f16) values_of<weight_type::f16>(v, stride, rows, p, dv, o);
            else values_of<weight_type::f32>(v, stride, rows, p, dv, o);
        } else {
            if (kv == weight_type::f16) heads_values_of<weight_type::f16>(v, stride, rows, heads, p, ps, dv, o, os);
            else heads_values_of<weight_type::f32>(v, stride, rows, heads, p, ps, dv, o, os);
        }
    }
};
#endif
#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_ON
#endif

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

// ---- AVX-512 pieces of the x86 kernels: masked loads, 16 rows' sums in one register --

template <class Tag>
struct attention_avx512;

#if defined(NCAS_CPU_HAVE_AVX512)
template <isa Level>
struct attention_avx512<avx512_tag<Level>> {
    // The f32 or f16 values of the lanes in `lanes` (the others zero), as f32.
    template <weight_type t>
    static __m512 load_masked(__mmask16 lanes, const std::byte* p) {
        if constexpr (t == weight_type::f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, p));
        else return _mm512_maskz_loadu_ps(lanes, p);
    }

    // Lane r of the result: the sum of v[r]'s 16 lanes.
    static __m512 sum16(const __m512 (&v)[16]) { return kv_blocks<avx512_tag<Level>>::sum16(v); }
};
#endif

// ---- x86: AVX2 and AVX-512 --------------------------------------------------------

template <class Simd, isa Level>
struct attention<x86_tag<Simd, Level>> : attention_values<x86_tag<Simd, Level>> {
    using tag = x86_tag<Simd, Level>;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;
    using wide = attention_avx512<tag>;  // complete for AVX-512 tags only (used where W == 16)

    // The slots' first rows: slot r starts at its (r mod apart)-th row (no division: the
    // prompt's kernels call scores_of for 16 rows at a time).
    template <int G>
    static void skews(int64_t apart, int64_t (&skew)[G]) {
        for (int r = 0; r < G; ++r) {
            int64_t s = r;
            while (apart > 0 && s >= apart) s -= apart;
            skew[r] = s;
        }
    }
    static int64_t wrap(int64_t x, int64_t apart) { return x < apart ? x : x - apart; }  // x < 2·apart

    template <weight_type t>
    static void scores_of(const std::byte* k, int64_t stride, int64_t rows, const float* q, int64_t maps, int64_t d,
                          float scale, float* scores) {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        int64_t j = 0;
        if constexpr (W == 16) {
            // 16 rows at a time: a lane accumulator per row, the query's chunk loaded once
            // for all 16, and one transposing reduction giving the 16 scores in a register
            // (3 operations a row instead of a horizontal sum each). A group's rows are spread
            // through the range, as the block caches' (attention_quant::score_rows): slot r
            // reads rows r·n/16 .. (r+1)·n/16 - 1 in order (one stream a slot, which the
            // hardware prefetchers follow), from its r-th on and wrapping, so that the slots'
            // rows are not a multiple of 4 KiB apart (in the same L1 sets) where n/16 rows
            // are (an f16 decode over a deep cache, one thread: 13.6-14.3 against 12.1-12.9
            // GB/s from DRAM, Xeon). The last rows % 16 rows are one more group whose
            // empty slots repeat its last row (their scores unused), so every row's lanes are
            // added in sum16's order: a row's score does not depend on its group (a
            // horizontal sum for the last rows gave other bits).
            // One group: row_of(r) the row of slot r, its 16 scores stored by store(m, s).
            const auto group = [&](auto&& row_of, auto&& store) [[gnu::always_inline]] {
                for (int64_t m = 0; m < maps; ++m) {
                    const std::byte* km = k + m * d * es;
                    const float* qm = q + m * d;
                    __m512 acc[16];
#pragma GCC unroll 16
                    for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
                    for (int64_t e = 0; e < d; e += 16) {
                        const __mmask16 lanes = d - e >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - e)) - 1);
                        const __m512 qc = _mm512_maskz_loadu_ps(lanes, qm + e);
#pragma GCC unroll 16
                        for (int r = 0; r < 16; ++r)
                            acc[r] = _mm512_fmadd_ps(wide::template load_masked<t>(lanes, km + row_of(r) * stride + e * es), qc, acc[r]);
                    }
                    store(m, _mm512_mul_ps(wide::sum16(acc), _mm512_set1_ps(scale)));
                }
            };
            const int64_t apart = rows / 16;
            if (apart > 1) {  // spread groups (a chunk of a deep cache)
                int64_t skew[16];
                skews(apart, skew);
                for (int64_t i = 0; i < apart; ++i) {
                    int64_t R[16];
                    for (int r = 0; r < 16; ++r) R[r] = r * apart + wrap(i + skew[r], apart);
                    group([&](int r) { return R[r]; }, [&](int64_t m, __m512 sc) {
                        alignas(64) float s[16];
                        _mm512_store_ps(s, sc);
                        for (int r = 0; r < 16; ++r) scores[m * rows + R[r]] = s[r];
                    });
                }
                j = 16 * apart;
            }
            for (; j < rows; j += 16) {  // consecutive groups, the last one padded
                const int64_t used = std::min<int64_t>(16, rows - j);
                group([&](int r) { return j + std::min<int64_t>(r, used - 1); }, [&](int64_t m, __m512 sc) {
                    _mm512_mask_storeu_ps(scores + m * rows + j, __mmask16((1u << used) - 1), sc);
                });
            }
        }
        if constexpr (W == 8) {
            // Four rows at a time: four independent chains, the query loaded once for the four,
            // and one transposing reduction that adds each row's lanes in xsimd::hadd's order
            // ((x0+x4) + (x1+x5)) + ((x2+x6) + (x3+x7)), so a row's score does not depend on
            // its group (test_kernels checks grouped rows against one row at a time).
            // The groups' rows spread through the range as the AVX-512 groups' (slot r reads
            // rows r·n/4 .. (r+1)·n/4 - 1, from its r-th on and wrapping: four slots n/4 rows
            // apart could be a multiple of 4 KiB apart, all in the same L1 sets).
            const int64_t apart = rows / 4;
            int64_t skew[4];
            skews(apart, skew);
            for (int64_t i = 0; i < apart; ++i)
                for (int64_t m = 0; m < maps; ++m) {
                    int64_t R[4];
                    for (int r = 0; r < 4; ++r) R[r] = r * apart + wrap(i + skew[r], apart);
                    const std::byte* km = k + m * d * es;
                    const float* qm = q + m * d;
                    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
                    int64_t e = 0;
                    for (; e + W <= d; e += W) {
                        const __m256 qc = _mm256_loadu_ps(qm + e);
#pragma GCC unroll 4
                        for (int r = 0; r < 4; ++r)
                            acc[r] = _mm256_fmadd_ps(fbatch(tag::template load_weights<t>(km + R[r] * stride + e * es)), qc, acc[r]);
                    }
                    __m128 half[4];
#pragma GCC unroll 4
                    for (int r = 0; r < 4; ++r) half[r] = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
                    alignas(16) float s[4];
                    _mm_store_ps(s, _mm_hadd_ps(_mm_hadd_ps(half[0], half[1]), _mm_hadd_ps(half[2], half[3])));
                    for (int r = 0; r < 4; ++r) {
                        for (int64_t x = e; x < d; ++x) s[r] = std::fma(tag::template element<t>(km + R[r] * stride, x), qm[x], s[r]);
                        scores[m * rows + R[r]] = s[r] * scale;
                    }
                }
            j = 4 * apart;
        }
        for (; j < rows; ++j) {
            const std::byte* kj = k + j * stride;
            for (int64_t m = 0; m < maps; ++m) {
                const std::byte* km = kj + m * d * es;
                const float* qm = q + m * d;
                fbatch acc(0.0f);
                int64_t e = 0;
                for (; e + W <= d; e += W) acc = xsimd::fma(tag::template load_weights<t>(km + e * es), fbatch::load_unaligned(qm + e), acc);
                float s = xsimd::hadd(acc);  // (AVX2's last rows % 4; AVX-512 takes every row in groups of 16)
                for (; e < d; ++e) s = std::fma(tag::template element<t>(km, e), qm[e], s);
                scores[m * rows + j] = s * scale;
            }
        }
    }

    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                            int64_t maps, int64_t d, float scale, float* scores) {
        if (kv == weight_type::f16) scores_of<weight_type::f16>(k, stride, rows, q, maps, d, scale, scores);
        else scores_of<weight_type::f32>(k, stride, rows, q, maps, d, scale, scores);
    }

    static constexpr bool step_kernels = W == 16;  // step_layout and step_scores below
    // A prompt's step of 16 rows laid out for the AVX-512 scores (attention_block): map m's
    // batch c of row r (values m·d + 16c .. + 15, zeros past d) at out + ((m·nc + c)·16 + r)·16,
    // nc = ⌈d / 16⌉, so a batch's 16 rows are one 1 KiB run read through one pointer (the
    // scores of 16 rows at 16 row addresses spend their loads on the addresses). Rows n .. 15
    // are zeros. Then step_scores: scores_of over the step bit for bit (a padded lane adds
    // +0·q, which leaves a sum as the masked lane does).
    template <weight_type t>
    static void step_layout(const std::byte* k, int64_t stride, int64_t n, int64_t maps, int64_t d, float* out)
        requires(W == 16)
    {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        const int64_t nc = (d + 15) / 16;
        for (int64_t m = 0; m < maps; ++m)
            for (int64_t c = 0; c < nc; ++c) {
                const __mmask16 lanes = d - 16 * c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - 16 * c)) - 1);
                float* o = out + (m * nc + c) * 256;
                for (int64_t r = 0; r < 16; ++r)
                    _mm512_store_ps(o + 16 * r, r < n ? wide::template load_masked<t>(lanes, k + r * stride + (m * d + 16 * c) * es)
                                                      : _mm512_setzero_ps());
            }
    }
    static void step_scores(const float* S, int64_t used, const float* q, int64_t maps, int64_t d, float scale, float* scores,
                            int64_t ld)
        requires(W == 16)
    {
        const int64_t nc = (d + 15) / 16;
        for (int64_t m = 0; m < maps; ++m) {
            __m512 acc[16];
#pragma GCC unroll 16
            for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
            for (int64_t c = 0; c < nc; ++c) {
                const __mmask16 lanes = d - 16 * c >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - 16 * c)) - 1);
                const __m512 qc = _mm512_maskz_loadu_ps(lanes, q + m * d + 16 * c);
                const float* b = S + (m * nc + c) * 256;
#pragma GCC unroll 16
                for (int r = 0; r < 16; ++r) acc[r] = _mm512_fmadd_ps(_mm512_load_ps(b + 16 * r), qc, acc[r]);
            }
            _mm512_mask_storeu_ps(scores + m * ld, __mmask16((1u << used) - 1), _mm512_mul_ps(wide::sum16(acc), _mm512_set1_ps(scale)));
        }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: every level (xsimd neon64 batches over f32 / f16 rows) -------------------
// (The quantised caches read through kv_blocks<arm_tag> (quant_blocks.hpp) and the
// generic attention_quant below.)

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct attention<arm_tag<Level>> : attention_values<arm_tag<Level>> {
    using tag = arm_tag<Level>;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

    // Two accumulators (even and odd steps of 4), summed in a fixed order.
    template <weight_type t>
    static void scores_of(const std::byte* k, int64_t stride, int64_t rows, const float* q, int64_t maps, int64_t d,
                          float scale, float* scores) {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        for (int64_t j = 0; j < rows; ++j) {
            const std::byte* kj = k + j * stride;
            for (int64_t m = 0; m < maps; ++m) {
                const std::byte* km = kj + m * d * es;
                const float* qm = q + m * d;
                fbatch a0(0.0f), a1(0.0f);
                int64_t e = 0;
                for (; e + 2 * W <= d; e += 2 * W) {
                    a0 = xsimd::fma(tag::template load_weights<t>(km + e * es), fbatch::load_unaligned(qm + e), a0);
                    a1 = xsimd::fma(tag::template load_weights<t>(km + (e + W) * es), fbatch::load_unaligned(qm + e + W), a1);
                }
                if (e + W <= d) {
                    a0 = xsimd::fma(tag::template load_weights<t>(km + e * es), fbatch::load_unaligned(qm + e), a0);
                    e += W;
                }
                float s = tag::sum4((a0 + a1).data);
                for (; e < d; ++e) s = std::fma(tag::template element<t>(km, e), qm[e], s);
                scores[m * rows + j] = s * scale;
            }
        }
    }
    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                            int64_t maps, int64_t d, float scale, float* scores) {
        if (kv == weight_type::f16) scores_of<weight_type::f16>(k, stride, rows, q, maps, d, scale, scores);
        else scores_of<weight_type::f32>(k, stride, rows, q, maps, d, scale, scores);
    }
};
#endif

// ---- every instruction set: a block of queries over an f32 / f16 cache ----------------
// A prompt's block of up to 16 queries of one head (attn_scores_n / attn_values_n in
// kernels.hpp). The rows go in steps of 16 for all the queries, and an f16 step is
// converted to f32 once (a PI-P head's step: 9 KB, in L1) that every query then reads as
// an f32 cache: the conversion, an instruction per batch on the multiply-add ports, is
// paid once a block instead of once a query (on AVX-512 the step's keys are laid out in
// batches of 16 rows for the scores: attention<x86_tag>::step_layout). Query i's results
// are the one-query kernels' bits: the conversion is exact, a row's score does not depend
// on the rows scored with it (the score kernels' grouping), the tails are explicit fused
// multiply-adds in both forms, and a value's sum runs over the rows in order.

// The scalar kernels: a query at a time.
template <class Tag>
struct attention_block {
    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t nq, const int64_t* rows,
                            const float* q, int64_t qs, int64_t maps, int64_t d, float scale, float* const* scores) {
        for (int64_t i = 0; i < nq; ++i) attention<Tag>::attn_scores(kv, k, stride, rows[i], q + i * qs, maps, d, scale, scores[i]);
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t nq, const int64_t* rows,
                            const float* const* p, int64_t dv, float* const* o) {
        for (int64_t i = 0; i < nq; ++i) attention<Tag>::attn_values(kv, v, stride, rows[i], 1, p[i], 0, dv, o[i], 0);
    }
};

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF
#endif
#if defined(NCAS_CPU_HAVE_AVX2) || defined(NCAS_CPU_HAVE_NEON)
template <class Tag>
struct attention_block_simd {
    static constexpr int64_t step = 16;  // rows a step
    static constexpr int64_t cap = 4096;  // f32 values of a step (wider heads: a query at a time)
    using fbatch = typename Tag::fbatch;
    static constexpr int64_t W = Tag::W;

    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t nq, const int64_t* rows,
                            const float* q, int64_t qs, int64_t maps, int64_t d, float scale, float* const* scores) {
        if (kv == weight_type::f16) scores_n<weight_type::f16>(k, stride, nq, rows, q, qs, maps, d, scale, scores);
        else scores_n<weight_type::f32>(k, stride, nq, rows, q, qs, maps, d, scale, scores);
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t nq, const int64_t* rows,
                            const float* const* p, int64_t dv, float* const* o) {
        if (kv == weight_type::f16) values_n<weight_type::f16>(v, stride, nq, rows, p, dv, o);
        else values_n<weight_type::f32>(v, stride, nq, rows, p, dv, o);
    }

    template <weight_type t>
    static void scores_n(const std::byte* k, int64_t stride, int64_t nq, const int64_t* rows, const float* q, int64_t qs,
                         int64_t maps, int64_t d, float scale, float* const* scores) {
        const int64_t width = maps * d;
        if (width * step > cap) {
            for (int64_t i = 0; i < nq; ++i) attention<Tag>::attn_scores(t, k, stride, rows[i], q + i * qs, maps, d, scale, scores[i]);
            return;
        }
        if constexpr (step_kernels()) {  // AVX-512: the step laid out once, each query through it
            alignas(64) float S[cap + 1024];  // (each map's batches padded to 16 values)
            if (maps * ((d + 15) / 16) * 256 <= cap + 1024) {
                for (int64_t j0 = 0, most_rows = longest(nq, rows); j0 < most_rows; j0 += step) {
                    attention<Tag>::template step_layout<t>(k + j0 * stride, stride, std::min(step, most_rows - j0), maps, d, S);
                    for (int64_t i = 0; i < nq; ++i) {
                        const int64_t m = std::min(step, rows[i] - j0);
                        if (m > 0) attention<Tag>::step_scores(S, m, q + i * qs, maps, d, scale, scores[i] + j0, rows[i]);
                    }
                }
                return;
            }
        }
        alignas(64) float buf[t == weight_type::f32 ? 1 : cap];
        float s[cap];  // a query's scores of the step, [maps][m]
        for (int64_t j0 = 0, most_rows = longest(nq, rows); j0 < most_rows; j0 += step) {
            const int64_t n = std::min(step, most_rows - j0);
            int64_t ss = 0;
            const std::byte* kr = as_f32<t>(k + j0 * stride, stride, n, width, buf, ss);
            for (int64_t i = 0; i < nq; ++i) {
                const int64_t m = std::min(n, rows[i] - j0);
                if (m <= 0) continue;
                attention<Tag>::template scores_of<weight_type::f32>(kr, ss, m, q + i * qs, maps, d, scale, s);
                for (int64_t mp = 0; mp < maps; ++mp) std::copy(s + mp * m, s + (mp + 1) * m, scores[i] + mp * rows[i] + j0);
            }
        }
    }

    // o[i] = Σ_j p[i][j]·V_j, each sum a multiply-add a row in row order from zero, as
    // attention_values::values_of; the sums stay in o[i] (L1) between the steps.
    template <weight_type t>
    static void values_n(const std::byte* v, int64_t stride, int64_t nq, const int64_t* rows, const float* const* p,
                         int64_t dv, float* const* o) {
        if (dv * step > cap) {
            for (int64_t i = 0; i < nq; ++i) attention<Tag>::attn_values(t, v, stride, rows[i], 1, p[i], 0, dv, o[i], 0);
            return;
        }
        alignas(64) float buf[t == weight_type::f32 ? 1 : cap];
        for (int64_t i = 0; i < nq; ++i) std::fill(o[i], o[i] + dv, 0.0f);
        const int64_t whole = dv / W * W;
        for (int64_t j0 = 0, most_rows = longest(nq, rows); j0 < most_rows; j0 += step) {
            const int64_t n = std::min(step, most_rows - j0);
            int64_t ss = 0;
            const std::byte* vr = as_f32<t>(v + j0 * stride, stride, n, dv, buf, ss);
            const auto row = [&](int64_t r) { return reinterpret_cast<const float*>(vr + r * ss); };
            for (int64_t i = 0; i < nq; ++i) {
                const int64_t m = std::min(n, rows[i] - j0);
                if (m <= 0) continue;
                const float* pi = p[i] + j0;
                float* oi = o[i];
                if (m == step) {  // a whole step: its 16 weights broadcast once
                    fbatch w[step];
#pragma GCC unroll 16
                    for (int r = 0; r < step; ++r) w[r] = fbatch(pi[r]);
                    for (int64_t e = 0; e < whole; e += W) {
                        fbatch a = fbatch::load_unaligned(oi + e);
#pragma GCC unroll 16
                        for (int r = 0; r < step; ++r) a = xsimd::fma(w[r], fbatch::load_unaligned(row(r) + e), a);
                        a.store_unaligned(oi + e);
                    }
                } else {
                    for (int64_t e = 0; e < whole; e += W) {
                        fbatch a = fbatch::load_unaligned(oi + e);
                        for (int64_t r = 0; r < m; ++r) a = xsimd::fma(fbatch(pi[r]), fbatch::load_unaligned(row(r) + e), a);
                        a.store_unaligned(oi + e);
                    }
                }
                for (int64_t e = whole; e < dv; ++e)
                    for (int64_t r = 0; r < m; ++r) oi[e] = std::fma(pi[r], row(r)[e], oi[e]);
            }
        }
    }

private:
    static constexpr bool step_kernels() {
        if constexpr (requires { attention<Tag>::step_kernels; }) return attention<Tag>::step_kernels;
        else return false;
    }
    static int64_t longest(int64_t nq, const int64_t* rows) {
        int64_t most_rows = 0;
        for (int64_t i = 0; i < nq; ++i) most_rows = std::max(most_rows, rows[i]);
        return most_rows;
    }
    // Rows 0 .. n - 1 of `width` values at src (a row every `stride` bytes) as f32 rows: an
    // f32 cache's in place, an f16 cache's converted into buf; ss: their stride in bytes.
    template <weight_type t>
    static const std::byte* as_f32(const std::byte* src, int64_t stride, int64_t n, int64_t width, float* buf, int64_t& ss) {
        if constexpr (t == weight_type::f32) {
            ss = stride;
            return src;
        } else {
            for (int64_t r = 0; r < n; ++r) {
                const std::byte* in = src + r * stride;
                float* out = buf + r * width;
                int64_t e = 0;
                for (; e + W <= width; e += W) Tag::template load_weights<t>(in + 2 * e).store_unaligned(out + e);
                for (; e < width; ++e) out[e] = Tag::template element<t>(in, e);
            }
            ss = width * int64_t(sizeof(float));
            return reinterpret_cast<const std::byte*>(buf);
        }
    }
};
#endif
#if defined(NCAS_CPU_HAVE_AVX2)
template <class Simd, isa Level>
struct attention_block<x86_tag<Simd, Level>> : attention_block_simd<x86_tag<Simd, Level>> {};
NCAS_CPU_X86_WARNINGS_ON
#endif
#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct attention_block<arm_tag<Level>> : attention_block_simd<arm_tag<Level>> {};
#endif

// ---- every instruction set: attention over a q8_0 / q4_0 cache -----------------------
//
// Generic over the tag: an instruction set provides kv_blocks<Tag> (quant_blocks.hpp)
// and gets these. The blocks run along the cache row, not the maps (a map of d = 72
// values spans parts of three or four blocks), so the query of each map is laid on the
// block grid with zeros around it, and the values are summed into whole blocks of
// which the head's slice is copied out. A value's sum runs over the rows in order
// (j = 0, 1, ...), whatever the chunking, so its result depends on the inputs only.

template <class Tag>
struct attention_quant {
    using B = kv_blocks<Tag>;

    // s[r] = B::sum(a[r]), through the tag's B::sum4 where it has one.
    [[gnu::always_inline]] static void sum4(const typename B::acc (&a)[4], float (&s)[4]) {
        if constexpr (requires { B::sum4(a, s); }) B::sum4(a, s);
        else
            for (int r = 0; r < 4; ++r) s[r] = B::sum(a[r]);
    }

    // Spans of `width` values starting at element first + s·width of a row, s = s0, s0 + 1, ...
    // (a head's maps, or heads), laid on the block grid in a buffer of `cap` floats: as many
    // as fit (at least one: width <= kv_quant_max_head), span k from block b0[k], nb[k]
    // blocks, at float at[k] of the buffer; `used` floats in all.
    static constexpr int64_t cap = 8192, max_spans = 64;
    struct spans {
        int64_t n = 0, used = 0, b0[max_spans], nb[max_spans], at[max_spans];
    };
    static spans fit(int64_t first, int64_t width, int64_t s0, int64_t count) {
        spans f;
        for (; s0 + f.n < count && f.n < max_spans; ++f.n) {
            const int64_t lo = first + (s0 + f.n) * width, b = lo / quant_block;
            const int64_t n = (lo + width + quant_block - 1) / quant_block - b;
            if (f.used + n * quant_block > cap) break;
            f.b0[f.n] = b, f.nb[f.n] = n, f.at[f.n] = f.used;
            f.used += n * quant_block;
        }
        return f;
    }

    // Whether the tag's kv_blocks has the integer scores (idot and quantize_query).
    template <weight_type t>
    static constexpr bool integer = requires(const std::byte* b, const int16_t* w, const int32_t* c, typename B::acc a) {
        B::template idot<t>(b, w, c, a);
    };

    // The maps' queries on the block grid, as many maps a pass over the rows as fit in the
    // grid (all of a decode's heads: 36 maps of 72 values take 18 KB as f32), so the rows
    // are read once, each row's span of the maps in order. Where the tag has kv_blocks'
    // idot, a map's query is quantised to 16 bits (its quantize_query) and each block's dot is
    // exact integer arithmetic, one conversion and one multiply-add a block (on AVX2 twice
    // the f32 form's rate); the map's scale joins `scale` once a score.
    template <weight_type t>
    static void scores_of(const std::byte* k, int64_t stride, int64_t first, int64_t rows, const float* q, int64_t maps,
                          int64_t d, float scale, float* scores) {
        alignas(64) float qg[integer<t> ? 1 : cap];
        alignas(64) int16_t qi[integer<t> ? cap : 1];
        alignas(64) int32_t ci[integer<t> && t == weight_type::q4_0 ? cap / 4 : 1];  // 8 lane corrections a block
        float f[max_spans];  // each map's factor: scale, times the query's scale when integer
        for (int64_t m0 = 0; m0 < maps;) {
            const spans sp = fit(first, d, m0, maps);
            const int64_t nm = sp.n;
            grid_queries<t>(sp, first, m0, q, d, scale, qg, qi, ci, f);
            score_rows(0, rows, sp, in_place<t>(k, stride, qg, qi, ci), f, scores + m0 * rows, rows);
            m0 += nm;
        }
    }

    // Rows [j0, j1) of one pass of scores_of (the maps of `sp`): out[m·ld + j] = the sums of
    // dot(j, b, g, acc) over map m's blocks (b: the block's index in the row, g: its place in
    // the query grid) · f[m]. The rows go in groups of
    // `group` (16 where kv_blocks has sum16, else 4): independent accumulator chains sharing
    // the query's block loads, their lanes added in one transposing reduction that adds each
    // row's lanes in one fixed order, so a row's score does not depend on its group. A group's
    // rows are spread through the range, n / group apart (rows i, i + n/group, ...): each slot
    // then reads its rows in order, one stream a slot that the hardware prefetchers follow.
    // Consecutive rows of a block cache share pages, and read map by map together they are
    // no stream to them: one thread's q8_0 scores over a deep PI-P cache read 6.2 GB/s from
    // DRAM in consecutive groups of 4, 11.8 in spread groups of 4 and 13.8-15 in spread groups
    // of 16 (Xeon, AVX-512; in cache 17-18, the 1-thread read 14.6). The last n mod group
    // rows are one more group whose empty slots repeat its last row (their results unused).
    static constexpr int group = requires(const typename B::acc (&a)[16]) { B::sum16(a); } ? 16 : 4;
    template <class Dot>
    [[gnu::always_inline]] static void score_rows(int64_t j0, int64_t j1, const spans& sp, Dot&& dot, const float* f,
                                                  float* out, int64_t ld) {
        constexpr int G = group;
        const int64_t nm = sp.n, *b0 = sp.b0, *nb = sp.nb, *at = sp.at;
        const int64_t n = j1 - j0, apart = n / G, groups = apart + (n % G != 0);
        for (int64_t i = 0; i < groups; ++i) {
            int64_t R[G];
            const int64_t used = i < apart ? G : n - G * apart;
            for (int r = 0; r < G; ++r) R[r] = i < apart ? j0 + i + r * apart : j0 + G * apart + std::min<int64_t>(r, used - 1);
            for (int64_t m = 0; m < nm; ++m) {
                typename B::acc a[G];
#pragma GCC unroll 16
                for (int r = 0; r < G; ++r) a[r] = B::zero();
                for (int64_t b = 0; b < nb[m]; ++b) {
#pragma GCC unroll 16
                    for (int r = 0; r < G; ++r) a[r] = dot(R[r], b0[m] + b, at[m] / quant_block + b, a[r]);
                }
                float s[G];
                if constexpr (G == 16) B::sum16(a, s);
                else sum4(a, s);
                for (int64_t r = 0; r < used; ++r) out[m * ld + R[r]] = s[r] * f[m];
            }
        }
    }

    // dot(j, b, g, acc) over the cache rows in place: row j's block b against grid block g.
    template <weight_type t>
    [[gnu::always_inline]] static auto in_place(const std::byte* k, int64_t stride, const float* qg, const int16_t* qi,
                                                const int32_t* ci) {
        constexpr int64_t bb = block_bytes<t>;
        return [=](int64_t j, int64_t b, int64_t g, typename B::acc a) [[gnu::always_inline]] {
            const std::byte* blk = k + j * stride + b * bb;
            if constexpr (integer<t>) return B::template idot<t>(blk, qi + g * quant_block, ci + (t == weight_type::q4_0 ? g * 8 : 0), a);
            else return B::template dot<t>(blk, qg + g * quant_block, a);
        };
    }

    // The maps' queries of one pass (sp, from map m0 of q) on the block grid at qg / qi (+ ci),
    // and each map's factor f[m]: as scores_of.
    template <weight_type t>
    [[gnu::always_inline]] static void grid_queries(const spans& sp, int64_t first, int64_t m0, const float* q, int64_t d,
                                                    float scale, float* qg, int16_t* qi, int32_t* ci, float* f) {
        for (int64_t m = 0; m < sp.n; ++m) {
            const int64_t lo = sp.at[m] + first + (m0 + m) * d - sp.b0[m] * quant_block, hi = sp.at[m] + sp.nb[m] * quant_block;
            if constexpr (integer<t>) {
                std::fill(qi + sp.at[m], qi + hi, int16_t(0));
                f[m] = B::quantize_query(q + (m0 + m) * d, d, qi + lo) * scale;
                if constexpr (t == weight_type::q4_0)
                    for (int64_t g = sp.at[m] / quant_block; g < hi / quant_block; ++g)
                        for (int i = 0; i < 8; ++i) {
                            const int16_t* w = qi + g * quant_block + 2 * i;
                            ci[g * 8 + i] = -8 * (int32_t(w[0]) + w[1] + w[16] + w[17]);
                        }
            } else {
                std::fill(qg + sp.at[m], qg + hi, 0.0f);
                std::copy(q + (m0 + m) * d, q + (m0 + m + 1) * d, qg + lo);
                f[m] = scale;
            }
        }
    }

    // Whether the tag's kv_blocks can widen a block once for several queries (widen16 / idot16
    // for the scores, widen32 / axpy_widened for the value sums).
    template <weight_type t>
    static constexpr bool widening = integer<t> && requires(const std::byte* b, int16_t* w, float* x, const float* c) {
        B::template widen16<t>(b, w);
        B::template widen32<t>(b, x);
        B::axpy_widened(c, int64_t(0), c, int64_t(0), c, int64_t(0), x);
    };

    // Rows 0 .. n - 1 of `nb` blocks from blk on (a row every `stride` bytes, blocks of `bb`
    // bytes), each widened once: widen(block, out) fills out and returns the block's scale;
    // block u of row r goes to w + (r·nb + u)·32 and sc[r·nb + u].
    template <class T, class Widen>
    [[gnu::always_inline]] static void widen_rows(const std::byte* blk, int64_t stride, int64_t n, int64_t nb, int64_t bb,
                                                  Widen&& widen, T* w, float* sc) {
        for (int64_t r = 0; r < n; ++r)
            for (int64_t u = 0; u < nb; ++u) sc[r * nb + u] = widen(blk + r * stride + u * bb, w + (r * nb + u) * quant_block);
    }

    // A prompt's value sums of nb adjacent blocks (block u at blk + u·bb, its sums at
    // o + 32u), or of nb widened blocks (block u's row j at w + j·ws + 32u, its scale at
    // sc[j·ss + u]): where the tag's kv_blocks can (axpy_blocks), several blocks a call,
    // their sums independent chains; each sum the same multiply-adds in the same order
    // either way. A block of 16 queries' sums over a q8_0 PI-P chunk, in cache: 62-64
    // against 78-79 ms (Xeon, AVX-512; AVX2 80-82 against 98-100). Decode's value sums
    // (4 rows a call) measured no faster this way and go block by block.
    template <weight_type t>
    [[gnu::always_inline]] static void axpy_span(const std::byte* blk, int64_t stride, const float* p, int64_t n,
                                                 int64_t nb, float* o) {
        constexpr int64_t bb = block_bytes<t>;
        int64_t u = 0;
        if constexpr (requires { B::axpy_blocks; }) {
            for (; u + B::axpy_blocks <= nb; u += B::axpy_blocks)
                B::template axpy_rows<t, B::axpy_blocks>(blk + u * bb, stride, p, n, o + u * quant_block);
            if constexpr (B::axpy_blocks > 2)
                for (; u + 2 <= nb; u += 2) B::template axpy_rows<t, 2>(blk + u * bb, stride, p, n, o + u * quant_block);
        }
        for (; u < nb; ++u) B::template axpy_rows<t>(blk + u * bb, stride, p, n, o + u * quant_block);
    }
    [[gnu::always_inline]] static void axpy_widened_span(const float* w, int64_t ws, const float* sc, int64_t ss, const float* p,
                                                         int64_t n, int64_t nb, float* o) {
        int64_t u = 0;
        if constexpr (requires { B::axpy_blocks; }) {
            for (; u + B::axpy_blocks <= nb; u += B::axpy_blocks)
                B::template axpy_widened<B::axpy_blocks>(w + u * quant_block, ws, sc + u, ss, p, n, o + u * quant_block);
            if constexpr (B::axpy_blocks > 2)
                for (; u + 2 <= nb; u += 2) B::template axpy_widened<2>(w + u * quant_block, ws, sc + u, ss, p, n, o + u * quant_block);
        }
        for (; u < nb; ++u) B::axpy_widened(w + u * quant_block, ws, sc + u, ss, p, n, o + u * quant_block);
    }

    // A block of queries of one head (a prompt's attention), as attn_scores_n in kernels.hpp:
    // query i's scores are scores_of's bit for bit. The rows go in steps of 16 for all the
    // queries (each step's blocks stay in L1 for the block's other queries); where the tag
    // can (widening), each step's blocks are widened to 16 bits once for all the queries,
    // the integers and scales idot would form from them.
    template <weight_type t>
    static void scores_n(const std::byte* k, int64_t stride, int64_t first, int64_t nq, const int64_t* rows, const float* q,
                         int64_t qs, int64_t maps, int64_t d, float scale, float* const* scores) {
        const spans sp = fit(first, d, 0, maps);
        constexpr int64_t most = 16, step = 16;  // queries a call takes together; rows a step
        if (sp.n < maps || nq > most || nq * sp.used > cap) {
            for (int64_t i = 0; i < nq; ++i) scores_of<t>(k, stride, first, rows[i], q + i * qs, maps, d, scale, scores[i]);
            return;
        }
        alignas(64) float qg[integer<t> ? 1 : cap];
        alignas(64) int16_t qi[integer<t> ? cap : 1];
        alignas(64) int32_t ci[integer<t> && t == weight_type::q4_0 ? cap / 4 : 1];
        float f[most * max_spans];
        struct query_grid {  // query i's grid: its queries (f32 or 16 bits) and q4_0's corrections
            float* f;
            int16_t* w;
            int32_t* c;
        };
        const auto grid = [&](int64_t i) {
            return query_grid{qg + (integer<t> ? 0 : i * sp.used), qi + (integer<t> ? i * sp.used : 0),
                              ci + (integer<t> && t == weight_type::q4_0 ? i * sp.used / 4 : 0)};
        };
        for (int64_t i = 0; i < nq; ++i) {
            const query_grid g = grid(i);
            grid_queries<t>(sp, first, 0, q + i * qs, d, scale, g.f, g.w, g.c, f + i * max_spans);
        }
        int64_t most_rows = 0;
        for (int64_t i = 0; i < nq; ++i) most_rows = std::max(most_rows, rows[i]);
        // The blocks the maps span, ub0 .. ub0 + nbu - 1 of a row (adjacent maps share some).
        const int64_t ub0 = sp.b0[0], nbu = sp.b0[sp.n - 1] + sp.nb[sp.n - 1] - ub0;
        constexpr int64_t most_blocks = 16;
        if constexpr (widening<t>) {
            if (nbu <= most_blocks) {
                alignas(64) int16_t w[step * most_blocks * quant_block];
                float sc[step * most_blocks];
                for (int64_t j0 = 0; j0 < most_rows; j0 += step) {
                    const int64_t n = std::min(step, most_rows - j0);
                    widen_rows(k + j0 * stride + ub0 * block_bytes<t>, stride, n, nbu, block_bytes<t>,
                               [](const std::byte* b, int16_t* o) { return B::template widen16<t>(b, o); }, w, sc);
                    for (int64_t i = 0; i < nq; ++i) {
                        const int64_t j1 = std::min(j0 + n, rows[i]);
                        if (j1 <= j0) continue;
                        const query_grid g = grid(i);
                        const auto dot = [&](int64_t j, int64_t b, int64_t gb, typename B::acc a) [[gnu::always_inline]] {
                            const int64_t at = (j - j0) * nbu + b - ub0;
                            return B::template idot16<t>(w + at * quant_block, sc[at], g.w + gb * quant_block,
                                                         g.c + (t == weight_type::q4_0 ? gb * 8 : 0), a);
                        };
                        score_rows(j0, j1, sp, dot, f + i * max_spans, scores[i], rows[i]);
                    }
                }
                return;
            }
        }
        for (int64_t j0 = 0; j0 < most_rows; j0 += step)
            for (int64_t i = 0; i < nq; ++i) {
                const int64_t j1 = std::min(j0 + step, rows[i]);
                if (j1 <= j0) continue;
                const query_grid g = grid(i);
                score_rows(j0, j1, sp, in_place<t>(k, stride, g.f, g.w, g.c), f + i * max_spans, scores[i], rows[i]);
            }
    }

    static void attn_scores_n(weight_type kv, const std::byte* k, int64_t stride, int64_t first, int64_t nq,
                              const int64_t* rows, const float* q, int64_t qs, int64_t maps, int64_t d, float scale,
                              float* const* scores) {
        if (kv == weight_type::q4_0) scores_n<weight_type::q4_0>(k, stride, first, nq, rows, q, qs, maps, d, scale, scores);
        else scores_n<weight_type::q8_0>(k, stride, first, nq, rows, q, qs, maps, d, scale, scores);
    }

    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t first, int64_t rows,
                            const float* q, int64_t maps, int64_t d, float scale, float* scores) {
        if (kv == weight_type::q4_0) scores_of<weight_type::q4_0>(k, stride, first, rows, q, maps, d, scale, scores);
        else scores_of<weight_type::q8_0>(k, stride, first, rows, q, maps, d, scale, scores);
    }

    // Heads in groups whose block sums fit 32 KB (a decode's 18 heads of 144 values: 11.5 KB);
    // rows in steps of 16 for one head (its blocks stay in L1 for the next block), of 4 for
    // several (each row's span of the group's heads read in order). A value's sum runs over
    // the rows in order whatever the steps and groups.
    template <weight_type t>
    static void values_of(const std::byte* v, int64_t stride, int64_t first, int64_t rows, int64_t heads, const float* p,
                          int64_t ps, int64_t dv, float* o, int64_t os) {
        constexpr int64_t bb = block_bytes<t>;
        alignas(64) float og[cap];
        const int64_t chunk = heads == 1 ? 16 : 4;
        for (int64_t h0 = 0; h0 < heads;) {
            const spans f = fit(first, dv, h0, heads);
            const int64_t nh = f.n, *b0 = f.b0, *nb = f.nb, *at = f.at;
            for (int64_t i = 0; i < f.used; ++i) og[i] = 0.0f;
            const int64_t ub1 = b0[nh - 1] + nb[nh - 1];  // the blocks read of a row: b0[0] .. ub1 - 1
            const row_prefetch<Tag> ahead(v + b0[0] * bb, stride, (ub1 - b0[0]) * bb, rows, nh);
            for (int64_t j0 = 0; j0 < rows; j0 += chunk) {
                const int64_t n = rows - j0 < chunk ? rows - j0 : chunk;
                for (int64_t h = 0; h < nh; ++h) {
                    ahead(j0, chunk, h);
                    const std::byte* vh = v + j0 * stride + b0[h] * bb;
                    for (int64_t b = 0; b < nb[h]; ++b)  // (several blocks a call measured no faster here)
                        B::template axpy_rows<t>(vh + b * bb, stride, p + (h0 + h) * ps + j0, n, og + at[h] + b * quant_block);
                }
            }
            for (int64_t h = 0; h < nh; ++h) {
                const float* g = og + at[h] + (first + (h0 + h) * dv - b0[h] * quant_block);
                for (int64_t e = 0; e < dv; ++e) o[(h0 + h) * os + e] = g[e];
            }
            h0 += nh;
        }
    }

    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t first, int64_t rows,
                            int64_t heads, const float* p, int64_t ps, int64_t dv, float* o, int64_t os) {
        if (kv == weight_type::q4_0) values_of<weight_type::q4_0>(v, stride, first, rows, heads, p, ps, dv, o, os);
        else values_of<weight_type::q8_0>(v, stride, first, rows, heads, p, ps, dv, o, os);
    }

    // A block of queries of one head, as attn_values_n in kernels.hpp: query i's sums are
    // values_of's (one head: rows in steps of 16, each block's sums through axpy_rows) bit
    // for bit, each step's rows read for all the queries while they are in L1.
    template <weight_type t>
    static void values_n(const std::byte* v, int64_t stride, int64_t first, int64_t nq, const int64_t* rows,
                         const float* const* p, int64_t dv, float* const* o) {
        constexpr int64_t bb = block_bytes<t>;
        const spans f = fit(first, dv, 0, 1);
        if (nq * f.used > cap) {
            for (int64_t i = 0; i < nq; ++i) values_of<t>(v, stride, first, rows[i], 1, p[i], 0, dv, o[i], 0);
            return;
        }
        alignas(64) float og[cap];
        std::fill(og, og + nq * f.used, 0.0f);
        constexpr int64_t step = 16;  // values_of's rows a step for one head
        int64_t most_rows = 0;
        for (int64_t i = 0; i < nq; ++i) most_rows = std::max(most_rows, rows[i]);
        const std::byte* vh = v + f.b0[0] * bb;
        constexpr int64_t most_blocks = 16;
        bool widened = false;
        if constexpr (widening<t>) {
            const int64_t nb = f.nb[0];
            if (nb <= most_blocks) {  // each step's blocks widened to f32 once for all the queries
                widened = true;
                alignas(64) float w[step * most_blocks * quant_block];
                float sc[step * most_blocks];
                for (int64_t j0 = 0; j0 < most_rows; j0 += step) {
                    const int64_t n = std::min(step, most_rows - j0);
                    widen_rows(vh + j0 * stride, stride, n, nb, bb, [](const std::byte* b, float* o) { return B::template widen32<t>(b, o); },
                               w, sc);
                    for (int64_t i = 0; i < nq; ++i) {
                        const int64_t m = std::min(n, rows[i] - j0);
                        if (m <= 0) continue;
                        axpy_widened_span(w, nb * quant_block, sc, nb, p[i] + j0, m, nb, og + i * f.used);
                    }
                }
            }
        }
        for (int64_t j0 = 0; !widened && j0 < most_rows; j0 += step)
            for (int64_t i = 0; i < nq; ++i) {
                const int64_t n = std::min(step, rows[i] - j0);
                if (n <= 0) continue;
                axpy_span<t>(vh + j0 * stride, stride, p[i] + j0, n, f.nb[0], og + i * f.used);
            }
        for (int64_t i = 0; i < nq; ++i) {
            const float* g = og + i * f.used + (first - f.b0[0] * quant_block);
            std::copy(g, g + dv, o[i]);
        }
    }

    static void attn_values_n(weight_type kv, const std::byte* v, int64_t stride, int64_t first, int64_t nq,
                              const int64_t* rows, const float* const* p, int64_t dv, float* const* o) {
        if (kv == weight_type::q4_0) values_n<weight_type::q4_0>(v, stride, first, nq, rows, p, dv, o);
        else values_n<weight_type::q8_0>(v, stride, first, nq, rows, p, dv, o);
    }
};


}  // namespace ncas::cpu::detail
