#pragma once
// Q4_K / Q5_K / Q6_K matmul (super-blocks of 256 values, format/quant.hpp).
//
// Activations are the 16-bit integers of cpu/act_quant.hpp in natural order, with
// one int32 a 16 values: their sum (act_rows::corr). Per (row, token) and
// super-block, each sub-block's integer dot product is exact (Q4_K / Q5_K: 8
// sub-blocks of 32, Σ q·a with the unsigned quants; Q6_K: 16 sub-blocks of 16,
// Σ (q − 32)·a = Σ q·a − 32·Σ a), however an instruction set sums it. The floats
// then follow one order on every level, lane j for sub-block j:
//   Q4_K / Q5_K  acc[j] = fma(float(bsum_j), −dmin·m_j, fma(float(dot_j), d·sc_j, acc[j]))
//                (bsum_j = Σ a over the sub-block's 32 values)
//   Q6_K         acc[j] = fma(float(dot_j), d·sc_j, acc[j])
// super-block after super-block (d·sc_j and dmin·m_j are exact products), then
// the lanes are summed as a tree (j + L/2, then + L/4, ... for L lanes) and the
// sum multiplied by the token's activation scale. So every level, thread split and
// token tile gives the same bits (tests/test_kernels.cpp checks it).
// Loop order: token tiles of up to max_tile outside, rows inside, each row one
// sequential stream; a super-block's weights are unpacked once per tile.
#include "ncas/cpu/kernels/tags.hpp"

namespace ncas::cpu::detail {

// The scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block's 12 packed
// bytes (ggml's get_scale_min_k4; a template over the tag: see the multi-arch rule).
template <class Tag>
inline void kq_scale_min(int j, const uint8_t* q, int32_t& d, int32_t& m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

template <class Tag>
struct kquant_blocks;

// ---- scalar: the algorithm spelled out -------------------------------------------------

template <>
struct kquant_blocks<scalar_tag> {
    // The quants of super-block b (0..63 unsigned) in natural order.
    template <weight_type t>
    static void quants(const std::byte* blk, int16_t* q) {
        if constexpr (t == weight_type::q6_k) {
            const auto& b = *reinterpret_cast<const block_q6_K*>(blk);
            for (int h = 0; h < 2; ++h)
                for (int l = 0; l < 32; ++l) {
                    const uint8_t* ql = b.ql + 64 * h;
                    const uint8_t qh = b.qh[32 * h + l];
                    int16_t* o = q + 128 * h;
                    o[l] = int16_t((ql[l] & 0xF) | ((qh & 3) << 4));
                    o[l + 32] = int16_t((ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4));
                    o[l + 64] = int16_t((ql[l] >> 4) | (((qh >> 4) & 3) << 4));
                    o[l + 96] = int16_t((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4));
                }
        } else {
            const uint8_t* qs = t == weight_type::q4_k ? reinterpret_cast<const block_q4_K*>(blk)->qs
                                                       : reinterpret_cast<const block_q5_K*>(blk)->qs;
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l) {
                    int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
                    if constexpr (t == weight_type::q5_k) {
                        const uint8_t qh = reinterpret_cast<const block_q5_K*>(blk)->qh[l];
                        lo |= ((qh >> (2 * c)) & 1) << 4, hi |= ((qh >> (2 * c + 1)) & 1) << 4;
                    }
                    q[64 * c + l] = int16_t(lo), q[64 * c + 32 + l] = int16_t(hi);
                }
        }
    }

    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nsb, const act_rows& xq, int64_t t0, float* out) {
        constexpr int L = t == weight_type::q6_k ? 16 : 8, S = 256 / L;
        constexpr int64_t bytes = t == weight_type::q4_k ? sizeof(block_q4_K)
                                  : t == weight_type::q5_k ? sizeof(block_q5_K) : sizeof(block_q6_K);
        float acc[NT][L] = {};
        int16_t w[qk_k];
        for (int64_t s = 0; s < nsb; ++s) {
            const std::byte* blk = row + s * bytes;
            quants<t>(blk, w);
            float ds[L], dm[L] = {};
            if constexpr (t == weight_type::q6_k) {
                const auto& b = *reinterpret_cast<const block_q6_K*>(blk);
                for (int j = 0; j < L; ++j) ds[j] = f16_to_f32(b.d) * float(b.scales[j]);
            } else {
                const auto& b = *reinterpret_cast<const block_q4_K*>(blk);  // d, dmin, scales: the same in Q5_K
                for (int j = 0; j < L; ++j) {
                    int32_t sc, m;
                    kq_scale_min<scalar_tag>(j, b.scales, sc, m);
                    ds[j] = f16_to_f32(b.d) * float(sc), dm[j] = f16_to_f32(b.dmin) * float(m);
                }
            }
            for (int i = 0; i < NT; ++i) {
                const int16_t* a = xq.q(t0 + i) + s * qk_k;
                const int32_t* c = xq.corr(t0 + i) + s * 16;
                for (int j = 0; j < L; ++j) {
                    int32_t dot = 0;
                    for (int e = 0; e < S; ++e) dot += int32_t(w[S * j + e]) * a[S * j + e];
                    if constexpr (t == weight_type::q6_k) {
                        acc[i][j] = std::fma(float(dot - 32 * c[j]), ds[j], acc[i][j]);
                    } else {
                        const float f = std::fma(float(dot), ds[j], acc[i][j]);
                        acc[i][j] = std::fma(float(c[2 * j] + c[2 * j + 1]), -dm[j], f);
                    }
                }
            }
        }
        for (int i = 0; i < NT; ++i) {
            float v[L];
            for (int j = 0; j < L; ++j) v[j] = acc[i][j];
            for (int h = L / 2; h >= 1; h /= 2)
                for (int j = 0; j < h; ++j) v[j] = v[j] + v[j + h];
            out[i] = v[0] * xq.scales()[t0 + i];
        }
    }
};

// ---- x86: AVX2 and AVX-512 (256-bit code, shared by both widths) ------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <class Simd, isa Level>
struct kquant_blocks<x86_tag<Simd, Level>> {
    // 32 bytes of unsigned quants as two vectors of 16 words.
    static void widen(__m256i b, __m256i& w0, __m256i& w1) {
        w0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(b));
        w1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(b, 1));
    }
    // Eight vectors of int32 lanes to their eight sums (lane j: Σ of v[j]'s lanes).
    static __m256i sums8(const __m256i* v) {
        const __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        const __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
        return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
    }
    // Σ a over each of eight 32-value blocks from their pairs of 16-value sums c[0..15]:
    // added pairwise (hadd) and put back in block order.
    static __m256i block_sums8(const int32_t* c) {
        const __m256i p = _mm256_hadd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 8)));
        return _mm256_permute4x64_epi64(p, 0xD8);  // [0 1 | 4 5 | 2 3 | 6 7] 64-bit pairs
    }
    // The lane tree of the header: (j + 4), then (j + 2), then (0 + 1).
    static float tree8(__m256 v) {
        const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
        return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1)));
    }

    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nsb, const act_rows& xq, int64_t t0, float* out) {
        const int16_t* a[NT];
        const int32_t* c[NT];
        for (int i = 0; i < NT; ++i) a[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        const __m256i low4 = _mm256_set1_epi8(0x0F);
        if constexpr (t == weight_type::q6_k) {
            __m256 acc[NT][2];
            for (int i = 0; i < NT; ++i) acc[i][0] = _mm256_setzero_ps(), acc[i][1] = _mm256_setzero_ps();
            const __m256i three = _mm256_set1_epi8(3);
            for (int64_t s = 0; s < nsb; ++s) {
                const auto& b = reinterpret_cast<const block_q6_K*>(row)[s];
                _mm_prefetch(reinterpret_cast<const char*>(&b) + 2 * sizeof(block_q6_K), _MM_HINT_T0);
                const __m256 d = _mm256_set1_ps(_cvtsh_ss(b.d));
                const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
                const __m256 ds0 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))),
                             ds1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
                __m256i v[NT][16];
                for (int h = 0; h < 2; ++h) {
                    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h)),
                                  ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32)),
                                  qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
                    const __m256i g[4] = {
                        _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, three), 4)),
                        _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4))};
                    for (int k = 0; k < 4; ++k) {  // values 128h + 32k .. +31: sub-blocks 8h + 2k, 8h + 2k + 1
                        __m256i w0, w1;
                        widen(g[k], w0, w1);
                        for (int i = 0; i < NT; ++i) {
                            const int16_t* ak = a[i] + s * qk_k + 128 * h + 32 * k;
                            v[i][8 * h + 2 * k] = _mm256_madd_epi16(w0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ak)));
                            v[i][8 * h + 2 * k + 1] =
                                _mm256_madd_epi16(w1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ak + 16)));
                        }
                    }
                }
                for (int i = 0; i < NT; ++i) {
                    const int32_t* ci = c[i] + s * 16;
                    for (int h = 0; h < 2; ++h) {
                        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ci + 8 * h));
                        const __m256i dot = _mm256_sub_epi32(sums8(v[i] + 8 * h), _mm256_slli_epi32(bs, 5));
                        acc[i][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), h ? ds1 : ds0, acc[i][h]);
                    }
                }
            }
            for (int i = 0; i < NT; ++i) out[i] = tree8(_mm256_add_ps(acc[i][0], acc[i][1])) * xq.scales()[t0 + i];
        } else {
            constexpr int64_t bytes = t == weight_type::q4_k ? sizeof(block_q4_K) : sizeof(block_q5_K);
            __m256 acc[NT];
            for (int i = 0; i < NT; ++i) acc[i] = _mm256_setzero_ps();
            const __m256i one = _mm256_set1_epi8(1);
            for (int64_t s = 0; s < nsb; ++s) {
                const std::byte* blk = row + s * bytes;
                _mm_prefetch(reinterpret_cast<const char*>(blk) + 2 * bytes, _MM_HINT_T0);
                const auto& b = *reinterpret_cast<const block_q4_K*>(blk);  // d, dmin, scales: the same in Q5_K
                alignas(32) int32_t sc[8], m[8];
                for (int j = 0; j < 8; ++j) kq_scale_min<x86_tag<Simd, Level>>(j, b.scales, sc[j], m[j]);
                const __m256 ds = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.d)),
                                                _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc))));
                const __m256 dm = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.dmin)),
                                                _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(m))));
                const uint8_t* qs = t == weight_type::q4_k ? b.qs : reinterpret_cast<const block_q5_K*>(blk)->qs;
                __m256i qh{};
                if constexpr (t == weight_type::q5_k)
                    qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const block_q5_K*>(blk)->qh));
                __m256i v[NT][8];
                for (int k = 0; k < 4; ++k) {  // values 64k .. 64k + 63: sub-blocks 2k (low nibbles), 2k + 1 (high)
                    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k));
                    __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
                    if constexpr (t == weight_type::q5_k) {
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), one), 4));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k + 1), one), 4));
                    }
                    __m256i l0, l1, h0, h1;
                    widen(lo, l0, l1);
                    widen(hi, h0, h1);
                    for (int i = 0; i < NT; ++i) {
                        const auto* ak = reinterpret_cast<const __m256i*>(a[i] + s * qk_k + 64 * k);
                        v[i][2 * k] = _mm256_add_epi32(_mm256_madd_epi16(l0, _mm256_loadu_si256(ak)),
                                                       _mm256_madd_epi16(l1, _mm256_loadu_si256(ak + 1)));
                        v[i][2 * k + 1] = _mm256_add_epi32(_mm256_madd_epi16(h0, _mm256_loadu_si256(ak + 2)),
                                                           _mm256_madd_epi16(h1, _mm256_loadu_si256(ak + 3)));
                    }
                }
                for (int i = 0; i < NT; ++i) {
                    const __m256i bs = block_sums8(c[i] + s * 16);  // Σ a over each 32
                    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums8(v[i])), ds, acc[i]);
                    acc[i] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(bs), dm, f);
                }
            }
            for (int i = 0; i < NT; ++i) out[i] = tree8(acc[i]) * xq.scales()[t0 + i];
        }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: every level ---------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct kquant_blocks<arm_tag<Level>> {
    using tag = arm_tag<Level>;

    // Σ of 16 words (two vectors) times 16 activations, exactly.
    static int32_t dot16(int16x8_t w0, int16x8_t w1, const int16_t* a) {
        int32x4_t s = vmull_s16(vget_low_s16(w0), vld1_s16(a));
        s = vmlal_high_s16(s, w0, vld1q_s16(a));
        s = vmlal_s16(s, vget_low_s16(w1), vld1_s16(a + 8));
        s = vmlal_high_s16(s, w1, vld1q_s16(a + 8));
        return vaddvq_s32(s);
    }
    // The lane tree of the header over eight lanes (v0: 0..3, v1: 4..7).
    static float tree8(float32x4_t v0, float32x4_t v1) {
        const float32x4_t t4 = vaddq_f32(v0, v1);
        const float32x2_t t2 = vadd_f32(vget_low_f32(t4), vget_high_f32(t4));
        return vget_lane_f32(t2, 0) + vget_lane_f32(t2, 1);
    }

    template <int NT, weight_type t>
    static void row(const std::byte* row, int64_t nsb, const act_rows& xq, int64_t t0, float* out) {
        constexpr int L = t == weight_type::q6_k ? 16 : 8;
        constexpr int64_t bytes = t == weight_type::q4_k ? sizeof(block_q4_K)
                                  : t == weight_type::q5_k ? sizeof(block_q5_K) : sizeof(block_q6_K);
        float32x4_t acc[NT][L / 4];
        for (int i = 0; i < NT; ++i)
            for (int j = 0; j < L / 4; ++j) acc[i][j] = vdupq_n_f32(0.0f);
        const uint8x16_t low4 = vdupq_n_u8(0x0F);
        for (int64_t s = 0; s < nsb; ++s) {
            const std::byte* blk = row + s * bytes;
            __builtin_prefetch(blk + 2 * bytes);
            // The quants, 16 a vector of bytes (natural order).
            uint8x16_t g[16];
            float ds[L], dm[L] = {};
            if constexpr (t == weight_type::q6_k) {
                const auto& b = *reinterpret_cast<const block_q6_K*>(blk);
                const uint8x16_t three = vdupq_n_u8(3);
                for (int h = 0; h < 2; ++h)
                    for (int p = 0; p < 2; ++p) {  // bytes 16p .. 16p + 15 of each 32
                        const uint8x16_t ql0 = vld1q_u8(b.ql + 64 * h + 16 * p), ql1 = vld1q_u8(b.ql + 64 * h + 32 + 16 * p),
                                         qh = vld1q_u8(b.qh + 32 * h + 16 * p);
                        g[8 * h + 0 + p] = vorrq_u8(vandq_u8(ql0, low4), vshlq_n_u8(vandq_u8(qh, three), 4));
                        g[8 * h + 2 + p] = vorrq_u8(vandq_u8(ql1, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), three), 4));
                        g[8 * h + 4 + p] = vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), three), 4));
                        g[8 * h + 6 + p] = vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4));
                    }
                const float d = tag::half(reinterpret_cast<const std::byte*>(&b.d));
                for (int j = 0; j < L; ++j) ds[j] = d * float(b.scales[j]);
            } else {
                const auto& b = *reinterpret_cast<const block_q4_K*>(blk);  // d, dmin, scales: the same in Q5_K
                const uint8_t* qs = t == weight_type::q4_k ? b.qs : reinterpret_cast<const block_q5_K*>(blk)->qs;
                for (int k = 0; k < 4; ++k)
                    for (int p = 0; p < 2; ++p) {
                        const uint8x16_t raw = vld1q_u8(qs + 32 * k + 16 * p);
                        uint8x16_t lo = vandq_u8(raw, low4), hi = vshrq_n_u8(raw, 4);
                        if constexpr (t == weight_type::q5_k) {
                            const uint8x16_t qh = vld1q_u8(reinterpret_cast<const block_q5_K*>(blk)->qh + 16 * p);
                            const int8x16_t sl = vdupq_n_s8(int8_t(-2 * k)), sh = vdupq_n_s8(int8_t(-2 * k - 1));
                            const uint8x16_t one = vdupq_n_u8(1);
                            lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(vshlq_u8(qh, sl), one), 4));
                            hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(vshlq_u8(qh, sh), one), 4));
                        }
                        g[4 * k + p] = lo, g[4 * k + 2 + p] = hi;
                    }
                const float d = tag::half(reinterpret_cast<const std::byte*>(&b.d)),
                            dmin = tag::half(reinterpret_cast<const std::byte*>(&b.dmin));
                for (int j = 0; j < L; ++j) {
                    int32_t sc, m;
                    kq_scale_min<tag>(j, b.scales, sc, m);
                    ds[j] = d * float(sc), dm[j] = dmin * float(m);
                }
            }
            for (int i = 0; i < NT; ++i) {
                const int16_t* a = xq.q(t0 + i) + s * qk_k;
                const int32_t* c = xq.corr(t0 + i) + s * 16;
                alignas(16) int32_t dots[16];
                for (int v = 0; v < 16; ++v) {  // 16 values a vector: 16 words in two halves
                    const int16x8_t w0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(g[v]))),
                                    w1 = vreinterpretq_s16_u16(vmovl_high_u8(g[v]));
                    dots[v] = dot16(w0, w1, a + 16 * v);
                }
                for (int q = 0; q < L / 4; ++q) {
                    if constexpr (t == weight_type::q6_k) {
                        const int32x4_t dot = vsubq_s32(vld1q_s32(dots + 4 * q), vshlq_n_s32(vld1q_s32(c + 4 * q), 5));
                        acc[i][q] = vfmaq_f32(acc[i][q], vcvtq_f32_s32(dot), vld1q_f32(ds + 4 * q));
                    } else {  // sub-block j: vectors 2j, 2j + 1 (pairwise sums)
                        const int32x4_t dot = vpaddq_s32(vld1q_s32(dots + 8 * q), vld1q_s32(dots + 8 * q + 4));
                        const int32x4_t bs = vpaddq_s32(vld1q_s32(c + 8 * q), vld1q_s32(c + 8 * q + 4));
                        const float32x4_t f = vfmaq_f32(acc[i][q], vcvtq_f32_s32(dot), vld1q_f32(ds + 4 * q));
                        acc[i][q] = vfmsq_f32(f, vcvtq_f32_s32(bs), vld1q_f32(dm + 4 * q));
                    }
                }
            }
        }
        for (int i = 0; i < NT; ++i) {
            const float sum = L == 16 ? tree8(vaddq_f32(acc[i][0], acc[i][L / 4 - 2]), vaddq_f32(acc[i][1], acc[i][L / 4 - 1]))
                                      : tree8(acc[i][0], acc[i][1]);
            out[i] = sum * xq.scales()[t0 + i];
        }
    }
};
#endif

// The K-quant rows r0 .. r1 of w against T tokens (quantised for w's type).
template <class Tag, weight_type type>
inline void kquant_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    tiled_rows<Tag, kquant_blocks<Tag>, type>(w, xq, w.cols / qk_k, T, y, r0, r1);
}

}  // namespace ncas::cpu::detail
