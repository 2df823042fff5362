#pragma once
// The instruction-set tags the CPU kernels are written over, and the rule that
// keeps their compiled variants apart in one program (kernels.hpp has the table
// and its run-time dispatch).
//
// Each kernel family is a class template over a tag with one specialisation per
// instruction set, or per vector width where AVX2 and AVX-512 differ; a family
// file holds one concern, and an instruction set's code for it sits together:
//   float_matmul.hpp   F32 / F16 / BF16 rows against token tiles
//   quant_blocks.hpp   Q8_0 / Q4_0 block primitives (unpacking, integer dots, prefetch)
//   quant_tiles.hpp    Q8_0 / Q4_0 loop order 1: tiles of rows × tokens (decode, short prefill)
//   quant_chunked.hpp  loop order 2: long rows in column chunks (AVX2 prefill)
//   quant_packed.hpp   loop order 3: Q4_0 rows unpacked once per block (AVX-512 prefill)
//   quant_matmul.hpp   the Q8_0 / Q4_0 tile driver and the choice of loop order
//   kquant_matmul.hpp  Q4_K / Q5_K / Q6_K rows against token tiles (one float order on every level)
//   q5_matmul.hpp      Q5_0 / Q5_1 rows against token tiles (the same scheme, blocks of 32)
//   attention.hpp      scores and value sums over the KV cache
//   elementwise.hpp    FFN activations, RMSNorm, softmax, RoPE
//   act_quant.hpp      activation quantisation (the format: cpu/act_quant.hpp)
//   table.hpp          one tag's kernel_table; the table function of each instruction set
//   probes.hpp         the benchmark's machine figures (cpu/probes.hpp; not in the kernel table)
//
// The tags:
//  - scalar_tag: portable C++, the reference algorithms spelled out.
//  - x86_tag<Simd, Level>: Simd is the xsimd architecture of the f32 batches
//    (fma3<avx2>: 8 lanes; avx512bw: 16), Level the instruction set compiled for
//    (avx512 and avx512vnni share Simd; their VBMI / VNNI code is chosen by
//    `if constexpr (tag::vbmi)` / `(tag::vnni)`). avx2_tag<Level> and avx512_tag<Level>
//    name the two widths for the families' specialisations.
//  - arm_tag<Level>: ARM64, Level neon, dotprod or i8mm (the f32 batches are
//    xsimd's neon64 at every level; the integer dot products differ by
//    `if constexpr (tag::dotprod)` / `(tag::i8mm)`). Its section in each family
//    file follows the x86 ones; docs/arm.md has the levels and their budget.
// xsimd 8.1 defines an instruction set's batch types only when the compiler flags
// enable it, so a family file has one section per instruction set, guarded by the
// NCAS_CPU_HAVE_* macros below; inside a section, differences are `if constexpr`.
//
// The multi-arch rule. src/cpu/kernels_<isa>.cpp compiles the kernels with its
// instruction set's flags, and everything else is compiled without them. Code in
// those objects calls no shared non-template inline function: an out-of-line copy
// emitted there (VEX- or EVEX-encoded) could be the one the linker keeps for the
// whole program, and a CPU without that instruction set would then fault in code
// that never asked for it. So every function of the kernels is a member of a
// family specialised on the tag or a template with the tag among its arguments
// (row_of, below, stands in for weight_matrix::row), and its symbol names the
// instruction set; the x86 scalar tails spell out their float arithmetic (expf /
// tanhf from libm, no ops.hpp helper, no std::max on floats, no act_rows accessor
// returning a float). scripts/test.sh's `symbols` stage checks the rule with nm:
// every weak symbol the per-ISA objects define must name their tag.
#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ncas/cpu/isa.hpp"
#include "ncas/cpu/ops.hpp"

// What this translation unit's compiler flags allow.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define NCAS_CPU_HAVE_AVX2 1
#include <immintrin.h>
#include <xsimd/xsimd.hpp>
#endif
#if defined(NCAS_CPU_HAVE_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#define NCAS_CPU_HAVE_AVX512 1
#endif
#if defined(NCAS_CPU_HAVE_AVX512) && defined(__AVX512VBMI__) && defined(__AVX512VNNI__)
#define NCAS_CPU_HAVE_AVX512VNNI 1
#endif
// ARM64: NEON (with the f16 conversions) is part of ARMv8-A; dotprod needs
// -march=armv8.2-a+dotprod (or later), i8mm -march=armv8.6-a (+i8mm).
#if defined(__aarch64__) && defined(__ARM_NEON)
#define NCAS_CPU_HAVE_NEON 1
#include <arm_neon.h>
#include <xsimd/xsimd.hpp>
#endif
#if defined(NCAS_CPU_HAVE_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define NCAS_CPU_HAVE_DOTPROD 1
#endif
#if defined(NCAS_CPU_HAVE_DOTPROD) && defined(__ARM_FEATURE_MATMUL_INT8)
#define NCAS_CPU_HAVE_I8MM 1
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

// Bytes of one row of w (weight_matrix::row_stride, as a template over the tag: see the
// multi-arch rule; row_bytes goes through traits_of, which GCC may emit out of line).
template <class Tag>
inline int64_t stride_of(const weight_matrix& w) {
    switch (w.type) {
        case weight_type::f32: return w.cols * 4;
        case weight_type::f16:
        case weight_type::bf16: return w.cols * 2;
        case weight_type::q8_0: return w.cols / quant_block * int64_t(sizeof(block_q8_0));
        case weight_type::q4_0: return w.cols / quant_block * int64_t(sizeof(block_q4_0));
        case weight_type::q5_0: return w.cols / quant_block * int64_t(sizeof(block_q5_0));
        case weight_type::q5_1: return w.cols / quant_block * int64_t(sizeof(block_q5_1));
        case weight_type::q4_k: return w.cols / qk_k * int64_t(sizeof(block_q4_K));
        case weight_type::q5_k: return w.cols / qk_k * int64_t(sizeof(block_q5_K));
        case weight_type::q6_k: return w.cols / qk_k * int64_t(sizeof(block_q6_K));
    }
    return 0;
}

// Row r of w (weight_matrix::row, as a template over the tag: see the multi-arch rule).
template <class Tag>
inline const std::byte* row_of(const weight_matrix& w, int64_t r) {
    return w.data + r * stride_of<Tag>(w);
}

// Rows r0 .. r1 of w against T tokens, max_tile tokens a pass over each row, through a
// row kernel Blocks::row<NT, type>(row, n, xq, t0, out) (n: blocks or super-blocks a row;
// the K-quant and Q5 matmuls).
template <class Tag, class Blocks, weight_type type, class Acts>
inline void tiled_rows(const weight_matrix& w, const Acts& xq, int64_t n, int64_t T, float* y, int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
        const int nt = int(std::min<int64_t>(max_tile, T - t0));
        with_count<max_tile>(nt, [&](auto NT) {
            float out[decltype(NT)::value];
            for (int64_t r = r0; r < r1; ++r) {
                Blocks::template row<NT, type>(row_of<Tag>(w, r), n, xq, t0, out);
                for (int i = 0; i < NT; ++i) y[(t0 + i) * w.rows + r] = out[i];
            }
        });
    }
}

// ---- scalar ---------------------------------------------------------------------

struct scalar_tag {
    static constexpr isa level = isa::scalar;
};

// ---- x86: AVX2 and AVX-512 --------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX2)

// GCC 12's own AVX-512 intrinsic headers trip -Wmaybe-uninitialized and, at -O1,
// -Wuninitialized (the `__Y = __Y` of _mm256_undefined_*, reached through casts and
// extracts): every x86 section of a family file is wrapped in these two.
#if defined(__clang__)
#define NCAS_CPU_X86_WARNINGS_OFF _Pragma("clang diagnostic push")
#define NCAS_CPU_X86_WARNINGS_ON _Pragma("clang diagnostic pop")
#else
#define NCAS_CPU_X86_WARNINGS_OFF                                                              \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
        _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define NCAS_CPU_X86_WARNINGS_ON _Pragma("GCC diagnostic pop")
#endif

NCAS_CPU_X86_WARNINGS_OFF

// The tag also carries what every x86 family uses: the f32 batch type, loads of
// F32 / F16 / BF16 values, the largest of a few floats, zeroing a tile of accumulators.
template <class Simd, isa Level>
struct x86_tag {
    static constexpr isa level = Level;
    static constexpr bool vbmi = Level == isa::avx512vnni, vnni = Level == isa::avx512vnni;
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

    // The largest of n floats (the tag's own loop: see the multi-arch rule).
    static float max_of(const float* v, int64_t n) {
        float m = v[0];
        for (int64_t j = 1; j < n; ++j) m = v[j] > m ? v[j] : m;
        return m;
    }

    // The sum of an f32 batch's lanes.
    static float hsum(fbatch v) { return xsimd::hadd(v); }

    // Zeroes a tile of vector accumulators (__m256 or __m512; V{} is all zero bits).
    template <class V, int R, int NT>
    static void zero_all(V (&acc)[R][NT]) {
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) acc[r][i] = V{};
    }
};

template <isa Level>
using avx2_tag = x86_tag<xsimd::fma3<xsimd::avx2>, Level>;
template <isa Level>
using avx512_tag = x86_tag<xsimd::avx512bw, Level>;  // used where NCAS_CPU_HAVE_AVX512

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: NEON, dotprod, i8mm --------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)

// What every ARM64 family uses, as x86_tag has it: the f32 batch (4 lanes), loads
// of F32 / F16 / BF16 values, the largest of a few floats, zeroing accumulators.
template <isa Level>
struct arm_tag {
    static constexpr isa level = Level;
    static constexpr bool dotprod = Level == isa::dotprod || Level == isa::i8mm, i8mm = Level == isa::i8mm;
    using fbatch = xsimd::batch<float, xsimd::neon64>;
    static constexpr int64_t W = 4;

    template <weight_type t>
    static fbatch load_weights(const std::byte* p) {
        if constexpr (t == weight_type::f16)
            return fbatch(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)))));
        else if constexpr (t == weight_type::bf16)
            return fbatch(vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16)));
        else return fbatch(vld1q_f32(reinterpret_cast<const float*>(p)));
    }

    // Element e of an F32 / F16 / BF16 row (fcvt: no shared helper, see the multi-arch rule).
    template <weight_type t>
    static float element(const std::byte* row, int64_t e) {
        if constexpr (t == weight_type::f16) {
            __fp16 h;
            std::memcpy(&h, row + 2 * e, 2);
            return float(h);
        } else if constexpr (t == weight_type::bf16) {
            return std::bit_cast<float>(uint32_t(reinterpret_cast<const uint16_t*>(row)[e]) << 16);
        } else {
            return reinterpret_cast<const float*>(row)[e];
        }
    }

    // An f16 scale (a block's d) as f32.
    static float half(const std::byte* p) { return element<weight_type::f16>(p, 0); }

    // The largest of n floats (the tag's own loop: see the multi-arch rule).
    static float max_of(const float* v, int64_t n) {
        float m = v[0];
        for (int64_t j = 1; j < n; ++j) m = v[j] > m ? v[j] : m;
        return m;
    }

    // The sum of a vector's four lanes in one fixed order, (0 + 1) + (2 + 3).
    static float sum4(float32x4_t v) {
        const float32x2_t p = vpadd_f32(vget_low_f32(v), vget_high_f32(v));
        return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);
    }
    static float hsum(fbatch v) { return sum4(v.data); }
};

#endif

}  // namespace ncas::cpu::detail
