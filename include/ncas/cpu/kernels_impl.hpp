#pragma once
// Kernel bodies, one source for every instruction set (see kernels.hpp).
// The x86 variants call no shared non-template inline function: a multi-arch
// build compiles them with ISA flags, and an out-of-line copy of a shared
// helper emitted there could be the one the linker keeps for the whole program.
// (x86_tag is a template over its instruction set for the same reason.)
//
// matmul_rows computes tiles of weight rows × tokens, so a row's weights are
// loaded and unpacked once per tile:
//  - F32 / F16 / BF16: one row against up to 4 tokens, f32 FMA on xsimd
//    batches (converting f16/bf16 on load);
//  - Q8_0 / Q4_0: tiles of rows × 4 tokens, token tiles outside so a tile's
//    activations stay in L1 while the thread's rows stream past. Weight blocks
//    are widened to 16-bit integers and multiplied with the tokens' 16-bit
//    activations (pmaddwd, or vpdpwssd with AVX-512 VNNI), scaled by the weight
//    block's scale into f32 lane accumulators; the token's activation scale is
//    applied once at the end. Q4_0 is read four blocks (a quad) at a time: their
//    quant bytes become four runs of 32 words, each block's products landing in
//    4 lanes of its own (see act_quant.hpp for the matching activation order and
//    the −8 offset; docs/architecture.md for the measurements behind the tiling).
//    Q4_0 prefill on AVX-512 takes the other loop order (q4_packed_rows): rows
//    unpacked once per block into an L2-sized buffer, token tiles inside. AVX2
//    prefill takes long rows in column chunks whose activations stay in L1
//    (chunked_rows).
//  - the other kernels of the table (attention, softmax, RMSNorm, RoPE, FFN
//    activations, activation quantisation): xsimd batches, scalar tails.
// Each output is computed by one accumulator in a fixed order, so results do
// not depend on the thread split, and a token's result does not depend on
// which other tokens or rows share its tile (prefill and decode agree bit for bit).
#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#include <xsimd/xsimd.hpp>
#endif

namespace ncas::cpu::detail {

inline constexpr int max_tile = 4;  // tokens per weight pass

// Calls f(std::integral_constant<int, n>) for 1 <= n <= N (n > N runs N).
template <int N, class F>
inline void with_count(int n, F&& f) {
    if constexpr (N > 1)
        if (n < N) return with_count<N - 1>(n, f);
    f(std::integral_constant<int, N>{});
}

// F32 / F16 / BF16: Tag::float_tile does one row against NT tokens.
template <class Tag>
inline void float_rows(const weight_matrix& w, const float* x, int64_t T, float* y, int64_t r0, int64_t r1) {
    const int64_t K = w.cols;
    float out[max_tile];
    for (int64_t r = r0; r < r1; ++r) {
        const std::byte* row = w.row(r);
        for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
            const int nt = int(std::min<int64_t>(max_tile, T - t0));
            with_count<max_tile>(nt, [&](auto NT) {
                switch (w.type) {
                    case weight_type::f16: Tag::template float_tile<NT, weight_type::f16>(row, K, x + t0 * K, K, out); break;
                    case weight_type::bf16: Tag::template float_tile<NT, weight_type::bf16>(row, K, x + t0 * K, K, out); break;
                    default: Tag::template float_tile<NT, weight_type::f32>(row, K, x + t0 * K, K, out); break;
                }
            });
            for (int i = 0; i < nt; ++i) y[(t0 + i) * w.rows + r] = out[i];
        }
    }
}

// Q8_0 / Q4_0: Tag::quant_tile<R, NT, type> does R rows (`stride` bytes apart)
// against NT tokens, writing out[r * NT + i]. Token tiles outside, row tiles
// inside. A tile's R rows come from R separate parts of the thread's rows, so
// each is one sequential stream through memory (rows side by side would
// interleave within a page and defeat the hardware prefetcher: half the speed).
template <class Tag, weight_type type, int R>
inline void quant_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    const int64_t nb = w.cols / quant_block, part = (r1 - r0) / R;
    float out[R * max_tile];
    for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
        const int nt = int(std::min<int64_t>(max_tile, T - t0));
        auto tile = [&](int64_t r, int64_t step, auto RR) {
            with_count<max_tile>(nt, [&](auto NT) {
                Tag::template quant_tile<RR, NT, type>(w.row(r), step * w.row_stride(), nb, xq, t0, out);
                for (int j = 0; j < RR; ++j)
                    for (int i = 0; i < NT; ++i) y[(t0 + i) * w.rows + r + j * step] = out[j * NT + i];
            });
        };
        for (int64_t r = r0; r < r0 + part; ++r) tile(r, part, std::integral_constant<int, R>{});
        for (int64_t r = r0 + R * part; r < r1; ++r) tile(r, 1, std::integral_constant<int, 1>{});
    }
}

// One token (decode) takes more rows a tile: more streams in flight, no more registers.
template <class Tag, weight_type type>
inline void quant_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    if constexpr (type == weight_type::q4_0 && Tag::packs_q4)
        if (T >= Tag::pack_min_tokens) return Tag::q4_packed_rows(w, xq, T, y, r0, r1);
    if constexpr (Tag::chunks_prefill)
        if (T > 1 && w.cols / quant_block > 2 * Tag::chunk_blocks) return Tag::template chunked_rows<type>(w, xq, T, y, r0, r1);
    if (T == 1) quant_rows<Tag, type, Tag::decode_rows>(w, xq, T, y, r0, r1);
    else quant_rows<Tag, type, Tag::tile_rows>(w, xq, T, y, r0, r1);
}

// The driver shared by every instruction set.
template <class Tag>
inline void matmul_rows(const weight_matrix& w, const float* x, const act_rows* xq, int64_t T, float* y, int64_t r0,
                        int64_t r1) {
    switch (w.type) {
        case weight_type::q4_0: return quant_rows<Tag, weight_type::q4_0>(w, *xq, T, y, r0, r1);
        case weight_type::q8_0: return quant_rows<Tag, weight_type::q8_0>(w, *xq, T, y, r0, r1);
        default: return float_rows<Tag>(w, x, T, y, r0, r1);
    }
}

// ---- scalar: the portable variant (and the integer algorithm spelled out) -------

struct scalar_tag {
    template <int NT, weight_type t>
    static void float_tile(const std::byte* row, int64_t K, const float* x, int64_t ldx, float* out) {
        for (int i = 0; i < NT; ++i) out[i] = dot_row(t, row, x + i * ldx, K);
    }
    static constexpr int tile_rows = 1, decode_rows = 1;
    static constexpr bool packs_q4 = false, chunks_prefill = false;
    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        int16_t w[quant_block];
        for (int r = 0; r < R; ++r) {
            float acc[NT] = {};
            for (int64_t b = 0; b < nb; ++b) {
                const float dw = widen_block(t, row0 + r * stride, b, w);
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

    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                            int64_t maps, int64_t d, float scale, float* scores) {
        for (int64_t j = 0; j < rows; ++j)
            for (int64_t m = 0; m < maps; ++m)
                scores[m * rows + j] = dot_row(kv, k + j * stride + row_bytes(kv, m * d), q + m * d, d) * scale;
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t rows, const float* p, int64_t dv,
                            float* o) {
        std::fill(o, o + dv, 0.0f);
        float buf[64];
        for (int64_t j = 0; j < rows; ++j)
            for (int64_t e0 = 0; e0 < dv; e0 += 64) {
                const int64_t n = std::min<int64_t>(64, dv - e0);
                dequantize_row(kv, v + j * stride + row_bytes(kv, e0), buf, n);
                for (int64_t e = 0; e < n; ++e) o[e0 + e] += p[j] * buf[e];
            }
    }

    static void gelu(float* x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh(x[i]);
    }
    static void silu_mul(float* up, const float* gate, int64_t n) {
        for (int64_t i = 0; i < n; ++i) up[i] *= silu(gate[i]);
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

// `chains` independent chains of `step`, so the loop measures throughput, not
// latency: enough to cover a latency of 5 cycles on 2 pipes, in 12 of the 16 AVX2
// registers. They start from different values (identical chains would be merged
// by the compiler), and every chain is summed into the result: an earlier
// version added a[j]·0, which the compiler folds to 0 for integers, leaving one
// latency-bound chain of 16-bit multiply-adds counted as eight (measured then:
// 541 Gop/s on a Zen 3 whose pmaddwd does 2 a cycle, about 400 on its 2 cores).
inline constexpr int chains = 12;
template <class V, class Step>
inline V independent_chains(int64_t iters, V seed, V delta, Step step) {
    V a[chains];  // of scalars or raw vector registers: an array of xsimd batches stayed in memory
    a[0] = seed;
#pragma GCC unroll 12
    for (int j = 1; j < chains; ++j) a[j] = a[j - 1] + delta;
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (int j = 0; j < chains; ++j) a[j] = step(a[j]);
#pragma GCC unroll 12
    for (int j = 1; j < chains; ++j) a[0] = a[0] + a[j];
    return a[0];
}

inline double fma_ops_scalar(int64_t iters) {
    volatile float sink = independent_chains(iters, 1.0f, 1.0f, [](float a) { return std::fma(a, 0.999f, 0.001f); });
    (void)sink;
    return double(iters) * chains * 2;
}
inline double madd_ops_scalar(int64_t iters) {
    volatile int32_t sink = independent_chains(iters, int32_t(1), int32_t(1), [](int32_t a) { return a * 3 + 7; });
    (void)sink;
    return double(iters) * chains * 2;
}

inline const kernel_table* table_scalar() {
    static const kernel_table t{isa::scalar,           &matmul_rows<scalar_tag>, &scalar_tag::attn_scores,
                                &scalar_tag::attn_values, &scalar_tag::gelu,     &scalar_tag::silu_mul,
                                &quantize_act_row,        &cpu::rms_norm,        &cpu::softmax,
                                &cpu::rope,               &read_sum_scalar,      &fma_ops_scalar,
                                &madd_ops_scalar};
    return &t;
}

// ---- x86: AVX2 and AVX-512 ----------------------------------------------------

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

// GCC 12's own AVX-512 intrinsic headers trip -Wmaybe-uninitialized and, at -O1,
// -Wuninitialized (the `__Y = __Y` of _mm256_undefined_*, reached through casts and
// extracts).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// Simd: the xsimd architecture of the f32 batches (16 lanes on AVX-512, 8 on AVX2).
// Simd: the xsimd architecture of the f32 batches (16 lanes on AVX-512, 8 on AVX2);
// Level: the instruction set it is compiled for (avx512 and avx512vnni share Simd).
// Its scalar tails spell out their float arithmetic (expf/tanhf from libm, no
// ops.hpp helper, no std::max on floats, no act_rows accessor returning a float):
// those would be inline functions shared with the scalar variant, and an
// unoptimised build emits them, VEX-encoded, as the one copy the linker keeps.
template <class Simd, isa Level>
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

    // Element e of an F32 / F16 / BF16 row.
    template <weight_type t>
    static float element(const std::byte* row, int64_t e) {
        if constexpr (t == weight_type::f16) return _cvtsh_ss(reinterpret_cast<const uint16_t*>(row)[e]);
        else if constexpr (t == weight_type::bf16)
            return std::bit_cast<float>(uint32_t(reinterpret_cast<const uint16_t*>(row)[e]) << 16);
        else return reinterpret_cast<const float*>(row)[e];
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
        for (int64_t j = k; j < K; ++j) w[j - k] = element<t>(row, j);
        for (int i = 0; i < NT; ++i) {
            out[i] = xsimd::hadd(acc[0][i] + acc[1][i]);
            for (int64_t j = k; j < K; ++j) out[i] += w[j - k] * x[i * ldx + j];
        }
    }

    // The largest of n floats (the tag's own loop: see the note above x86_tag).
    static float max_of(const float* v, int64_t n) {
        float m = v[0];
        for (int64_t j = 1; j < n; ++j) m = v[j] > m ? v[j] : m;
        return m;
    }

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
        double ss = double(xsimd::hadd((a[0] + a[1]) + (a[2] + a[3])));
        for (; i < n; ++i) ss += double(x[i]) * x[i];
        const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
        const fbatch vs(scale);
        for (i = 0; i + W <= n; i += W)
            (fbatch::load_unaligned(x + i) * vs * fbatch::load_unaligned(w + i)).store_unaligned(y + i);
        for (; i < n; ++i) y[i] = x[i] * scale * w[i];
    }

    static void softmax(float* x, int64_t n) {
        fbatch mv(-__builtin_huge_valf());
        int64_t i = 0;
        for (; i + W <= n; i += W) mv = xsimd::max(mv, fbatch::load_unaligned(x + i));
        float lanes[W];
        mv.store_unaligned(lanes);
        float m = max_of(lanes, W);
        for (; i < n; ++i) m = x[i] > m ? x[i] : m;
        const fbatch vm(m);
        fbatch sv(0.0f);
        for (i = 0; i + W <= n; i += W) {
            const fbatch e = xsimd::exp(fbatch::load_unaligned(x + i) - vm);
            e.store_unaligned(x + i);
            sv += e;
        }
        float s = xsimd::hadd(sv);
        for (; i < n; ++i) s += (x[i] = expf(x[i] - m));
        const float inv = 1.0f / s;
        const fbatch vi(inv);
        for (i = 0; i + W <= n; i += W) (fbatch::load_unaligned(x + i) * vi).store_unaligned(x + i);
        for (; i < n; ++i) x[i] *= inv;
    }

    // W/2 pairs at a time: even lanes a·cos − b·sin, odd lanes b·cos + a·sin (fmaddsub on
    // the pairs swapped and multiplied by sin), each angle's cos/sin repeated for its pair.
    static void rope(float* v, const float* cos_t, const float* sin_t, int64_t d) {
        int64_t i = 0;  // pair index
        if constexpr (W == 16) {
#if defined(__AVX512F__)
            const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
            for (; 2 * i + 16 <= d; i += 8) {
                const __m512 x = _mm512_loadu_ps(v + 2 * i);
                const __m512 c = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(cos_t + i)));
                const __m512 sn = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(sin_t + i)));
                _mm512_storeu_ps(v + 2 * i, _mm512_fmaddsub_ps(x, c, _mm512_mul_ps(_mm512_permute_ps(x, 0xb1), sn)));
            }
#endif
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

    // ---- activation quantisation (act_quant.hpp; the same integers as quantize_act_row) ----

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
        const float amax = max_of(lanes, W), d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        *d_out = d;
        // 8 values as int16, rounded to nearest even (the default mode, as std::nearbyint).
        auto store8 = [&](const float* src, int16_t* dst) {
            const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src), _mm256_set1_ps(id)));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
        };
        if (t != weight_type::q4_0) {
            for (int64_t i = 0; i < n; i += 8) store8(x + i, q + i);
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

    // ---- attention over the KV cache (f32 or f16) ------------------------------------

#if defined(__AVX512F__)
    // The f32 or f16 values of the lanes in `lanes` (the others zero), as f32.
    template <weight_type t>
    static __m512 load_masked(__mmask16 lanes, const std::byte* p) {
        if constexpr (t == weight_type::f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, p));
        else return _mm512_maskz_loadu_ps(lanes, p);
    }

    // Lane r of the result: the sum of v[r]'s 16 lanes.
    static __m512 sum16(const __m512 (&v)[16]) {
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
#endif

    template <weight_type t>
    static void scores_of(const std::byte* k, int64_t stride, int64_t rows, const float* q, int64_t maps, int64_t d,
                          float scale, float* scores) {
        constexpr int64_t es = t == weight_type::f16 ? 2 : 4;
        int64_t j = 0;
        if constexpr (W == 16) {
#if defined(__AVX512F__)
            // 16 rows at a time: a lane accumulator per row, the query's chunk loaded once
            // for all 16, and one transposing reduction giving the 16 scores in a register
            // (3 operations a row instead of a horizontal sum each).
            for (; j + 16 <= rows; j += 16)
                for (int64_t m = 0; m < maps; ++m) {
                    const std::byte* km = k + j * stride + m * d * es;
                    const float* qm = q + m * d;
                    __m512 acc[16];
#pragma GCC unroll 16
                    for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
                    for (int64_t e = 0; e < d; e += 16) {
                        const __mmask16 lanes = d - e >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - e)) - 1);
                        const __m512 qc = _mm512_maskz_loadu_ps(lanes, qm + e);
#pragma GCC unroll 16
                        for (int r = 0; r < 16; ++r) {
                            acc[r] = _mm512_fmadd_ps(load_masked<t>(lanes, km + r * stride + e * es), qc, acc[r]);
                        }
                    }
                    _mm512_storeu_ps(scores + m * rows + j, _mm512_mul_ps(sum16(acc), _mm512_set1_ps(scale)));
                }
#endif
        }
        for (; j < rows; ++j) {
            const std::byte* kj = k + j * stride;
            for (int64_t m = 0; m < maps; ++m) {
                const std::byte* km = kj + m * d * es;
                const float* qm = q + m * d;
                fbatch acc(0.0f);
                int64_t e = 0;
                for (; e + W <= d; e += W) acc = xsimd::fma(load_weights<t>(km + e * es), fbatch::load_unaligned(qm + e), acc);
                if constexpr (W == 16) {
#if defined(__AVX512F__)
                    if (e < d) {  // the tail in masked lanes (d = 72: 8 of 72), not one element at a time
                        const __mmask16 tail = __mmask16((1u << (d - e)) - 1);
                        acc = fbatch(_mm512_fmadd_ps(load_masked<t>(tail, km + e * es), _mm512_maskz_loadu_ps(tail, qm + e), acc));
                        e = d;
                    }
#endif
                }
                float s = xsimd::hadd(acc);
                for (; e < d; ++e) s += element<t>(km, e) * qm[e];
                scores[m * rows + j] = s * scale;
            }
        }
    }
    static void attn_scores(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                            int64_t maps, int64_t d, float scale, float* scores) {
        if (kv == weight_type::f16) scores_of<weight_type::f16>(k, stride, rows, q, maps, d, scale, scores);
        else scores_of<weight_type::f32>(k, stride, rows, q, maps, d, scale, scores);
    }

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
                    if (b < nbat) acc[b] = xsimd::fma(pj, load_weights<t>(vj + b * W * es), acc[b]);
            }
#pragma GCC unroll 8
            for (int b = 0; b < 8; ++b)
                if (b < nbat) acc[b].store_unaligned(o + e0 + b * W);
            if (nbat < 8) {  // the columns after the last whole batch
                for (int64_t e = e0 + nbat * W; e < std::min(dv, e0 + 8 * W); ++e) {
                    float s = 0.0f;
                    for (int64_t j = 0; j < rows; ++j) s += p[j] * element<t>(v + j * stride, e);
                    o[e] = s;
                }
                break;
            }
        }
    }
    static void attn_values(weight_type kv, const std::byte* v, int64_t stride, int64_t rows, const float* p, int64_t dv,
                            float* o) {
        if (kv == weight_type::f16) values_of<weight_type::f16>(v, stride, rows, p, dv, o);
        else values_of<weight_type::f32>(v, stride, rows, p, dv, o);
    }

    // ---- Q8_0 / Q4_0 -------------------------------------------------------------
    // Each (row, token) has one f32 accumulator; blocks are added in row order.

    static constexpr int tile_rows = W == 16 ? 2 : 1, decode_rows = W == 16 ? 4 : 2;
#if defined(__AVX512BW__)
    static constexpr bool packs_q4 = W == 16;  // q4_packed_rows, below
#else
    static constexpr bool packs_q4 = false;
#endif
    static constexpr bool chunks_prefill = W == 8;  // chunked_rows, below
    // Weight bytes a row stream prefetches ahead of its reads: measured +10% decode
    // from DRAM on Zen 4 over the hardware prefetcher alone (into L1, 2 KiB ahead). On
    // the AVX2 Zen 3, 8 KiB ahead into L2 streamed 19–23 GB/s against 14–22 GB/s for
    // the Zen 4 setting in the same interleaved rounds (2 threads, PI-P expert shapes).
    static constexpr int64_t prefetch_ahead = W == 16 ? 2048 : 8192;
    static constexpr auto prefetch_hint = W == 16 ? _MM_HINT_T0 : _MM_HINT_T1;

    // Zeroes a tile of vector accumulators (__m256 or __m512; V{} is all zero bits).
    template <class V, int R, int NT>
    static void zero_all(V (&acc)[R][NT]) {
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) acc[r][i] = V{};
    }

    template <int R, int NT, weight_type t>
    static void quant_tile(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0, float* out) {
        float sums[R][NT];
        if constexpr (W == 16) {
#if defined(__AVX512BW__)
            if constexpr (t == weight_type::q4_0) q4_tile_512<R, NT>(row0, stride, nb, xq, t0, sums);
            else q8_tile_512<R, NT>(row0, stride, nb, xq, t0, sums);
#endif
        } else {
            __m256 acc[R][NT];
            zero_all(acc);
            if constexpr (t == weight_type::q4_0) q4_quads_256<R, NT>(row0, stride, nb, 0, (nb + 3) / 4, xq, t0, acc);
            else q8_blocks_256<R, NT>(row0, stride, 0, nb, xq, t0, acc);
            for (int r = 0; r < R; ++r)
                for (int i = 0; i < NT; ++i) sums[r][i] = xsimd::hadd(fbatch(acc[r][i]));
        }
        for (int r = 0; r < R; ++r)
            for (int i = 0; i < NT; ++i) out[r * NT + i] = sums[r][i] * xq.scales()[t0 + i];
    }

#if defined(__AVX512BW__)
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
#if defined(__AVX512VBMI__)
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
        const __m512i x = _mm512_maskz_permutex2var_epi8(even, v1, _mm512_loadu_si512(byte_index[0].data()), v2),
                      y = _mm512_maskz_permutex2var_epi8(even, v1, _mm512_loadu_si512(byte_index[1].data()), v2);
#else
        // vpermt2w gathers the same bytes two at a time (quant bytes start at an even
        // offset), then they are widened to words.
        static constexpr auto pair_index = [=] {
            std::array<std::array<uint16_t, 32>, 2> ix{};
            for (int h = 0; h < 2; ++h)
                for (int u = 0; u < 16; ++u) ix[size_t(h)][size_t(u)] = uint16_t(word_of(u / 4, 1 + 4 * h + u % 4));
            return ix;
        }();
        const __m512i x = _mm512_cvtepu8_epi16(
                          _mm512_castsi512_si256(_mm512_permutex2var_epi16(v1, _mm512_loadu_si512(pair_index[0].data()), v2))),
                      y = _mm512_cvtepu8_epi16(
                          _mm512_castsi512_si256(_mm512_permutex2var_epi16(v1, _mm512_loadu_si512(pair_index[1].data()), v2)));
#endif
        const __m512i m = _mm512_set1_epi16(0x0f);
        return {{_mm512_and_si512(x, m), _mm512_and_si512(y, m), _mm512_srli_epi16(x, 4), _mm512_srli_epi16(y, 4)},
                _mm512_cvtph_ps(d16)};
    }

    // c + Σ_j of the products of w[j] and a[j], per 32-bit lane.
    static __m512i dot4(__m512i c, const __m512i* w, const __m512i* a) {
#if defined(__AVX512VNNI__)
        c = _mm512_dpwssd_epi32(c, w[0], _mm512_load_si512(a));
        c = _mm512_dpwssd_epi32(c, w[1], _mm512_load_si512(a + 1));
        c = _mm512_dpwssd_epi32(c, w[2], _mm512_load_si512(a + 2));
        return _mm512_dpwssd_epi32(c, w[3], _mm512_load_si512(a + 3));
#else
        const __m512i s01 = _mm512_add_epi32(_mm512_madd_epi16(w[0], _mm512_load_si512(a)),
                                             _mm512_madd_epi16(w[1], _mm512_load_si512(a + 1))),
                      s23 = _mm512_add_epi32(_mm512_madd_epi16(w[2], _mm512_load_si512(a + 2)),
                                             _mm512_madd_epi16(w[3], _mm512_load_si512(a + 3)));
        return _mm512_add_epi32(c, _mm512_add_epi32(s01, s23));
#endif
    }

    template <int R, int NT>
    static void q4_tile_512(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0,
                            float (&sums)[R][NT]) {
        __m512 acc[R][NT];
        zero_all(acc);
        const int16_t* q[NT];
        const int32_t* c[NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i), c[i] = xq.corr(t0 + i);
        auto quad = [&](int64_t b, __mmask64 m1, __mmask64 m2) {
            q4_quad w[R];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const std::byte* blk = row0 + r * stride + b * int64_t(sizeof(block_q4_0));
                _mm_prefetch(reinterpret_cast<const char*>(blk + prefetch_ahead), prefetch_hint);
                w[r] = unpack_q4(blk, m1, m2);
            }
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) {
                const auto* a = reinterpret_cast<const __m512i*>(q[i] + b * quant_block);
                const __m512i ci = _mm512_load_si512(c[i] + b * 4);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
                    acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot4(ci, w[r].w, a)), w[r].scale, acc[r][i]);
            }
        };
        const auto full = quad_masks(4);
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) quad(b, full[0], full[1]);
        if (b < nb) {
            const auto last = quad_masks(nb - b);
            quad(b, last[0], last[1]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) sums[r][i] = _mm512_reduce_add_ps(acc[r][i]);
    }

    // ---- Q4_0 prefill: rows unpacked once into a per-thread buffer ----------------
    // With many tokens, a thread's rows are taken a block at a time: the block is
    // unpacked once into words (nibble − 8, so no correction term) and scale lanes,
    // sized to stay in L2, and every token tile then runs over it. Weights are read
    // from memory once per matrix instead of once per token tile, and a tile of 3
    // rows × 4 tokens keeps a token's activation run in a register for all 3 rows.
    // The integer lane sums are the same as q4_tile_512's and are scaled and added
    // in the same order: the results are bit-identical to the decode path.
    struct alignas(64) q4_packed {  // one row's quad
        __m512i w[4];
        __m512 scale;
    };
    static constexpr int64_t pack_min_tokens = 8, pack_rows = 3, pack_tile = 4, pack_bytes = 384 << 10;

    static __m512i dot_add(__m512i c, __m512i w, __m512i a) {
#if defined(__AVX512VNNI__)
        return _mm512_dpwssd_epi32(c, w, a);
#else
        return _mm512_add_epi32(c, _mm512_madd_epi16(w, a));
#endif
    }

    // Rows row0 + r·stride (r < R), every quad, as out[u·R + r].
    template <int R>
    static void pack_q4(const std::byte* row0, int64_t stride, int64_t nb, q4_packed* out) {
        const __m512i eight = _mm512_set1_epi16(8);
        for (int64_t b = 0; b < nb; b += 4, out += R) {
            const auto m = quad_masks(nb - b);
            for (int r = 0; r < R; ++r) {
                const q4_quad q = unpack_q4(row0 + r * stride + b * int64_t(sizeof(block_q4_0)), m[0], m[1]);
                for (int j = 0; j < 4; ++j) _mm512_store_si512(&out[r].w[j], _mm512_sub_epi16(q.w[j], eight));
                _mm512_store_ps(&out[r].scale, q.scale);
            }
        }
    }

    // R packed rows (p[u·R + r]) against tokens t0..t0+NT, out[r·NT + i].
    template <int R, int NT>
    static void q4_packed_tile(const q4_packed* p, int64_t quads, const act_rows& xq, int64_t t0, float* out) {
        __m512 acc[R][NT];
        zero_all(acc);
        const int16_t* q[NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i);
        for (int64_t u = 0; u < quads; ++u, p += R) {
            __m512i dot[R][NT];
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                __m512i w[R];
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) w[r] = _mm512_load_si512(&p[r].w[j]);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) {
                    __m512i a = _mm512_load_si512(q[i] + u * 128 + 32 * j);
                    asm("" : "+v"(a));  // one load for the R rows: GCC would fold it into every product
#pragma GCC unroll 8
                    for (int r = 0; r < R; ++r)
                        dot[r][i] = j == 0 ? _mm512_madd_epi16(w[r], a) : dot_add(dot[r][i], w[r], a);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m512 s = _mm512_load_ps(&p[r].scale);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][i]), s, acc[r][i]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) out[r * NT + i] = _mm512_reduce_add_ps(acc[r][i]) * xq.scales()[t0 + i];
    }

    static void q4_packed_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
        constexpr int64_t R = pack_rows;
        const int64_t nb = w.cols / quant_block, quads = (nb + 3) / 4, stride = w.row_stride();
        const int64_t block = std::max<int64_t>(1, pack_bytes / (quads * int64_t(sizeof(q4_packed))) / R) * R;
        thread_local std::vector<q4_packed> buf;  // grows to the largest block once per thread
        if (buf.size() < size_t(block * quads)) buf.resize(size_t(block * quads));
        float out[R * pack_tile];
        for (int64_t rb = r0; rb < r1; rb += block) {
            const int64_t rows = std::min(block, r1 - rb), tiles = rows / R;
            for (int64_t k = 0; k < tiles; ++k) pack_q4<R>(w.row(rb + k * R), stride, nb, buf.data() + k * R * quads);
            for (int64_t k = tiles * R; k < rows; ++k) pack_q4<1>(w.row(rb + k), stride, nb, buf.data() + k * quads);
            for (int64_t t0 = 0; t0 < T; t0 += pack_tile) {
                with_count<pack_tile>(int(std::min<int64_t>(pack_tile, T - t0)), [&](auto NT) {
                    auto tile = [&](int64_t k, auto RR) {  // rows rb+k .. rb+k+RR, packed at buf[k·quads]
                        q4_packed_tile<RR, NT>(buf.data() + k * quads, quads, xq, t0, out);
                        for (int r = 0; r < RR; ++r)
                            for (int i = 0; i < NT; ++i) y[(t0 + i) * w.rows + rb + k + r] = out[r * NT + i];
                    };
                    for (int64_t k = 0; k < tiles * R; k += R) tile(k, std::integral_constant<int, R>{});
                    for (int64_t k = tiles * R; k < rows; ++k) tile(k, std::integral_constant<int, 1>{});
                });
            }
        }
    }

    template <int R, int NT>
    static void q8_tile_512(const std::byte* row0, int64_t stride, int64_t nb, const act_rows& xq, int64_t t0,
                            float (&sums)[R][NT]) {
        __m512 acc[R][NT];
        zero_all(acc);
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
#endif

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

    // ---- AVX2 prefill: rows in L2-sized blocks, columns in L1-sized chunks -------
    // A token tile's activations for a long row (4 × 6912 words and their corrections
    // for PI-P's down matrices: 60 KB) do not fit in L1, so such rows are taken a chunk
    // of 64 blocks at a time: the tile's activations for that chunk (18 KB) stay in L1
    // while a block of 32 rows, in L2 after the first tile, passes over them. Each
    // (row, token) accumulator is saved between chunks, so it sees the same additions
    // in the same order as the decode path: bit-identical results. Measured on Zen 3
    // (one thread, 64 tokens): 0.85 against 0.93 ns a block and token at 6912 columns,
    // 0.86 against 0.91 at 4608; rows of up to 128 blocks, where chunking measured 5%
    // slower (2592 columns), keep the plain loop.
    static constexpr int64_t chunk_rows = 32, chunk_blocks = 64;

    template <weight_type t>
    static void chunked_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
        const int64_t nb = w.cols / quant_block, stride = w.row_stride();
        __m256 state[chunk_rows][max_tile];
        for (int64_t rb = r0; rb < r1; rb += chunk_rows) {
            const int64_t rows = std::min(chunk_rows, r1 - rb);
            for (int64_t t0 = 0; t0 < T; t0 += max_tile)
                with_count<max_tile>(int(std::min<int64_t>(max_tile, T - t0)), [&](auto NT) {
                    for (int64_t r = 0; r < rows; ++r)
                        for (int i = 0; i < NT; ++i) state[r][i] = _mm256_setzero_ps();
                    for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
                        const int64_t b1 = std::min(nb, b0 + chunk_blocks);
                        for (int64_t r = 0; r < rows; ++r) {
                            __m256 acc[1][NT];
                            for (int i = 0; i < NT; ++i) acc[0][i] = state[r][i];
                            if constexpr (t == weight_type::q4_0)
                                q4_quads_256<1, NT>(w.row(rb + r), stride, nb, b0 / 4, (b1 + 3) / 4, xq, t0, acc);
                            else q8_blocks_256<1, NT>(w.row(rb + r), stride, b0, b1, xq, t0, acc);
                            for (int i = 0; i < NT; ++i) state[r][i] = acc[0][i];
                        }
                    }
                    for (int64_t r = 0; r < rows; ++r)
                        for (int i = 0; i < NT; ++i)
                            y[(t0 + i) * w.rows + rb + r] = xsimd::hadd(fbatch(state[r][i])) * xq.scales()[t0 + i];
                });
        }
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
        using reg = typename fbatch::register_type;
        const fbatch k(0.999f), c(0.001f);
        const reg r = independent_chains(iters, reg(fbatch(1.0f)), reg(fbatch(1.0f)),
                                         [&](reg a) { return reg(xsimd::fma(fbatch(a), k, c)); });
        volatile float sink = xsimd::hadd(fbatch(r));
        (void)sink;
        return double(iters) * chains * W * 2;
    }

    // The 16-bit multiply-add the integer kernels use: 2·W products summed pairwise
    // into W int32 lanes (pmaddwd), with VNNI also accumulated (vpdpwssd); counted
    // as 2 operations per product, as model arithmetic is.
    static double madd_ops(int64_t iters) {
        using ibatch = xsimd::batch<int32_t, Simd>;
        using reg = typename ibatch::register_type;
        const reg k = ibatch(3), one = ibatch(1);
        const reg r = independent_chains(iters, one, one, [&](reg a) {
            if constexpr (W == 16) {
#if defined(__AVX512VNNI__)
                return _mm512_dpwssd_epi32(a, a, k);
#elif defined(__AVX512BW__)
                return _mm512_madd_epi16(a, k);
#endif
            } else {
                return _mm256_madd_epi16(a, k);
            }
        });
        volatile int32_t sink = xsimd::hadd(ibatch(r));
        (void)sink;
        return double(iters) * chains * 2 * W * 2;
    }
};

#pragma GCC diagnostic pop
#endif

// A tag's kernel table (one static table per tag).
template <class Tag, isa Id>
inline const kernel_table* table_of() {
    static const kernel_table t{Id,           &matmul_rows<Tag>,  &Tag::attn_scores, &Tag::attn_values,
                                &Tag::gelu,   &Tag::silu_mul,     &Tag::quantize_act, &Tag::rms_norm,
                                &Tag::softmax, &Tag::rope,        &Tag::read_sum,     &Tag::fma_ops,
                                &Tag::madd_ops};
    return &t;
}

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX2)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx2() {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return table_of<x86_tag<xsimd::fma3<xsimd::avx2>, isa::avx2>, isa::avx2>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
    return table_of<x86_tag<xsimd::avx512bw, isa::avx512>, isa::avx512>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512VNNI)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512vnni() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && \
    defined(__AVX512VBMI__) && defined(__AVX512VNNI__)
    return table_of<x86_tag<xsimd::avx512bw, isa::avx512vnni>, isa::avx512vnni>();
#else
    return nullptr;
#endif
}
#endif

}  // namespace ncas::cpu::detail
