#pragma once
// Kernel bodies, one source for every instruction set (see kernels.hpp).
// The x86 variants call no shared non-template inline function: a multi-arch
// build compiles them with ISA flags, and an out-of-line copy of a shared
// helper emitted there could be the one the linker keeps for the whole program.
//
// matmul_rows computes, for each weight row, the dot products with a tile of
// up to 4 tokens, so a row's weights are loaded and unpacked once per tile:
//  - F32 / F16 / BF16 rows: f32 FMA on xsimd batches (converting f16/bf16 on load);
//  - Q8_0 / Q4_0 rows: each weight block widened to 16-bit integers and
//    multiplied with the token's 16-bit activations (pmaddwd: 32 products into
//    16 int32 lanes on AVX-512), scaled by the weight block's scale into f32
//    lane accumulators; the row's activation scale is applied once at the end.
// Each output is computed by one call in a fixed order, so results do not
// depend on the thread split, and a token's result does not depend on which
// other tokens share its tile (prefill and decode agree bit for bit).
#include <algorithm>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#include <xsimd/xsimd.hpp>
#endif

namespace ncas::cpu::detail {

inline constexpr int max_tile = 4;  // tokens per weight pass

// Calls f(std::integral_constant<int, NT>) for nt in 1..max_tile.
template <class F>
inline void with_tile(int nt, F&& f) {
    switch (nt) {
        case 1: f(std::integral_constant<int, 1>{}); break;
        case 2: f(std::integral_constant<int, 2>{}); break;
        case 3: f(std::integral_constant<int, 3>{}); break;
        default: f(std::integral_constant<int, 4>{}); break;
    }
}

// The driver shared by every instruction set: rows × token tiles, with
// Tag::float_tile / Tag::quant_tile doing one row against NT tokens.
template <class Tag>
inline void matmul_rows(const weight_matrix& w, const float* x, const act_block* xq, int64_t T, float* y, int64_t r0,
                        int64_t r1) {
    const int64_t K = w.cols, nb = K / quant_block;
    float out[max_tile];
    for (int64_t r = r0; r < r1; ++r) {
        const std::byte* row = w.row(r);
        for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
            const int nt = int(std::min<int64_t>(max_tile, T - t0));
            with_tile(nt, [&](auto NT) {
                switch (w.type) {
                    case weight_type::q4_0: Tag::template quant_tile<NT, weight_type::q4_0>(row, nb, xq + t0 * nb, nb, out); break;
                    case weight_type::q8_0: Tag::template quant_tile<NT, weight_type::q8_0>(row, nb, xq + t0 * nb, nb, out); break;
                    case weight_type::f16: Tag::template float_tile<NT, weight_type::f16>(row, K, x + t0 * K, K, out); break;
                    case weight_type::bf16: Tag::template float_tile<NT, weight_type::bf16>(row, K, x + t0 * K, K, out); break;
                    case weight_type::f32: Tag::template float_tile<NT, weight_type::f32>(row, K, x + t0 * K, K, out); break;
                }
            });
            for (int i = 0; i < nt; ++i) y[(t0 + i) * w.rows + r] = out[i];
        }
    }
}

// ---- scalar: the portable variant (and the integer algorithm spelled out) -------

struct scalar_tag {
    template <int NT, weight_type t>
    static void float_tile(const std::byte* row, int64_t K, const float* x, int64_t ldx, float* out) {
        for (int i = 0; i < NT; ++i) out[i] = dot_row(t, row, x + i * ldx, K);
    }
    template <int NT, weight_type t>
    static void quant_tile(const std::byte* row, int64_t nb, const act_block* xq, int64_t ldx, float* out) {
        int16_t w[quant_block];
        float acc[NT] = {};
        for (int64_t b = 0; b < nb; ++b) {
            const float dw = widen_block(t, row, b, w);
            for (int i = 0; i < NT; ++i) {
                const act_block& xb = xq[i * ldx + b];
                int32_t dot = 0;
                for (int j = 0; j < quant_block; ++j) dot += int32_t(w[j]) * xb.q[j];
                acc[i] += float(dot) * dw;
            }
        }
        for (int i = 0; i < NT; ++i) out[i] = acc[i] * xq[i * ldx].d;
    }

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

inline uint64_t read_sum_scalar(const std::byte* p, size_t n) {
    uint64_t s[4] = {};
    for (size_t i = 0; i < n; i += 32)
        for (int j = 0; j < 4; ++j) {
            uint64_t v;
            std::memcpy(&v, p + i + 8 * j, 8);
            s[j] += v;
        }
    return s[0] + s[1] + s[2] + s[3];
}

// Eight independent chains, so the loop measures throughput, not latency. They
// start from different values: identical chains would be merged by the compiler.
template <class V, class Step>
inline V independent_chains(int64_t iters, V seed, Step step) {
    V a[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) a[j] = seed + V(j);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) a[j] = step(a[j]);
    for (int j = 1; j < 8; ++j) a[0] = step(a[0]) + a[j] * V(0);
    return a[0];
}

inline double fma_ops_scalar(int64_t iters) {
    volatile float sink = independent_chains(iters, 1.0f, [](float a) { return std::fma(a, 0.999f, 0.001f); });
    (void)sink;
    return double(iters) * 8 * 2;
}
inline double madd_ops_scalar(int64_t iters) {
    volatile int32_t sink = independent_chains(iters, int32_t(1), [](int32_t a) { return a * 3 + 7; });
    (void)sink;
    return double(iters) * 8 * 2;
}

inline const kernel_table* table_scalar() {
    static const kernel_table t{isa::scalar, &matmul_rows<scalar_tag>, &read_sum_scalar, &fma_ops_scalar,
                                &madd_ops_scalar};
    return &t;
}

// ---- x86: AVX2 and AVX-512 ----------------------------------------------------

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

// GCC 12's own AVX-512 intrinsic headers trip -Wmaybe-uninitialized (_mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Simd: the xsimd architecture of the f32 batches (16 lanes on AVX-512, 8 on AVX2).
template <class Simd>
struct x86_tag {
    using fbatch = xsimd::batch<float, Simd>;
    static constexpr int64_t W = int64_t(fbatch::size);

    template <weight_type t>
    static fbatch load_weights(const std::byte* p) {
        if constexpr (t == weight_type::f16) {
            if constexpr (W == 16) return fbatch(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
            else return fbatch(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
        } else if constexpr (t == weight_type::bf16) {
            if constexpr (W == 16)
                return fbatch(_mm512_castsi512_ps(
                    _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16)));
            else
                return fbatch(_mm256_castsi256_ps(
                    _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16)));
        } else {
            return fbatch::load_unaligned(reinterpret_cast<const float*>(p));
        }
    }

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
                const fbatch wv = load_weights<t>(row + (k + h * W) * esize);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i)
                    acc[h][i] = xsimd::fma(wv, fbatch::load_unaligned(x + i * ldx + k + h * W), acc[h][i]);
            }
        }
        if (k + W <= K) {
            const fbatch wv = load_weights<t>(row + k * esize);
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) acc[0][i] = xsimd::fma(wv, fbatch::load_unaligned(x + i * ldx + k), acc[0][i]);
            k += W;
        }
        float w[W];  // the tail, when K is not a multiple of W (small tensors only)
        for (int64_t j = k; j < K; ++j)
            w[j - k] = t == weight_type::f32   ? reinterpret_cast<const float*>(row)[j]
                       : t == weight_type::f16 ? _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[j])
                                               : std::bit_cast<float>(uint32_t(reinterpret_cast<const uint16_t*>(row)[j]) << 16);
        for (int i = 0; i < NT; ++i) {
            out[i] = xsimd::hadd(acc[0][i] + acc[1][i]);
            for (int64_t j = k; j < K; ++j) out[i] += w[j - k] * x[i * ldx + j];
        }
    }

    // 32 weights as signed 16-bit integers: one zmm, or two ymm (lo, hi) on AVX2.
    struct wide {
        __m256i lo, hi;
#if defined(__AVX512BW__)
        __m512i all;
#endif
    };

    template <weight_type t>
    static wide widen(const std::byte* blk) {
        wide w;
        __m128i lo8, hi8;  // elements 0..15 and 16..31 as int8
        if constexpr (t == weight_type::q4_0) {
            const auto& b = *reinterpret_cast<const block_q4_0*>(blk);
            const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)), m = _mm_set1_epi8(0x0f);
            lo8 = _mm_sub_epi8(_mm_and_si128(qs, m), _mm_set1_epi8(8));
            hi8 = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), m), _mm_set1_epi8(8));
        } else {
            const auto& b = *reinterpret_cast<const block_q8_0*>(blk);
            lo8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.q));
            hi8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.q + 16));
        }
#if defined(__AVX512BW__)
        if constexpr (W == 16) {
            w.all = _mm512_cvtepi8_epi16(_mm256_set_m128i(hi8, lo8));
            return w;
        }
#endif
        w.lo = _mm256_cvtepi8_epi16(lo8);
        w.hi = _mm256_cvtepi8_epi16(hi8);
        return w;
    }

    template <int NT, weight_type t>
    static void quant_tile(const std::byte* row, int64_t nb, const act_block* xq, int64_t ldx, float* out) {
        constexpr int64_t bytes = traits_of(t).block_bytes;
        fbatch acc[2][NT];  // even and odd blocks: two independent chains per token
#pragma GCC unroll 8
        for (int i = 0; i < NT; ++i) acc[0][i] = acc[1][i] = fbatch(0.0f);
        auto block = [&](int64_t b, fbatch* a) {
            const std::byte* blk = row + b * bytes;
            const fbatch s(_cvtsh_ss(*reinterpret_cast<const uint16_t*>(blk)));  // both block types start with f16 d
            const wide w = widen<t>(blk);
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) {
                const act_block& xb = xq[i * ldx + b];
                if constexpr (W == 16) {
#if defined(__AVX512BW__)
                    const __m512i dot = _mm512_madd_epi16(w.all, _mm512_loadu_si512(xb.q));
                    a[i] = xsimd::fma(fbatch(_mm512_cvtepi32_ps(dot)), s, a[i]);
#endif
                } else {
                    const __m256i* xv = reinterpret_cast<const __m256i*>(xb.q);
                    const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(w.lo, _mm256_loadu_si256(xv)),
                                                         _mm256_madd_epi16(w.hi, _mm256_loadu_si256(xv + 1)));
                    a[i] = xsimd::fma(fbatch(_mm256_cvtepi32_ps(dot)), s, a[i]);
                }
            }
        };
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            block(b, acc[0]);
            block(b + 1, acc[1]);
        }
        if (b < nb) block(b, acc[0]);
        for (int i = 0; i < NT; ++i) out[i] = xsimd::hadd(acc[0][i] + acc[1][i]) * xq[i * ldx].d;
    }

    // ---- machine figures for the benchmark --------------------------------------

    static uint64_t read_sum(const std::byte* p, size_t n) {
        using ibatch = xsimd::batch<uint64_t, Simd>;
        constexpr size_t step = 4 * sizeof(ibatch);
        ibatch a(uint64_t(0)), b(uint64_t(0)), c(uint64_t(0)), d(uint64_t(0));
        const auto* q = reinterpret_cast<const uint64_t*>(p);
        constexpr size_t L = ibatch::size;
        for (size_t i = 0; i < n / 8; i += 4 * L) {
            a += ibatch::load_unaligned(q + i);
            b += ibatch::load_unaligned(q + i + L);
            c += ibatch::load_unaligned(q + i + 2 * L);
            d += ibatch::load_unaligned(q + i + 3 * L);
        }
        static_assert(step <= 256);
        return xsimd::hadd(a + b + c + d);
    }

    static double fma_ops(int64_t iters) {
        const fbatch k(0.999f), c(0.001f);
        const fbatch r = independent_chains(iters, fbatch(1.0f), [&](fbatch a) { return xsimd::fma(a, k, c); });
        volatile float sink = xsimd::hadd(r);
        (void)sink;
        return double(iters) * 8 * W * 2;
    }

    // pmaddwd: 2·W products of 16-bit integers summed pairwise into W int32 lanes.
    static double madd_ops(int64_t iters) {
        using ibatch = xsimd::batch<int32_t, Simd>;
        const ibatch k(3);
        const ibatch r = independent_chains(iters, ibatch(1), [&](ibatch a) {
            if constexpr (W == 16) {
#if defined(__AVX512BW__)
                return ibatch(_mm512_madd_epi16(a, k));
#endif
            } else {
                return ibatch(_mm256_madd_epi16(a, k));
            }
        });
        volatile int32_t sink = xsimd::hadd(r);
        (void)sink;
        return double(iters) * 8 * 2 * W * 2;
    }
};

#pragma GCC diagnostic pop
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX2)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx2() {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    using tag = x86_tag<xsimd::fma3<xsimd::avx2>>;
    static const kernel_table t{isa::avx2, &matmul_rows<tag>, &tag::read_sum, &tag::fma_ops, &tag::madd_ops};
    return &t;
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
    using tag = x86_tag<xsimd::avx512bw>;
    static const kernel_table t{isa::avx512, &matmul_rows<tag>, &tag::read_sum, &tag::fma_ops, &tag::madd_ops};
    return &t;
#else
    return nullptr;
#endif
}
#endif

}  // namespace ncas::cpu::detail
