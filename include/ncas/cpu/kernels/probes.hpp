#pragma once
// The benchmark's machine figures, per instruction set (cpu/probes.hpp has their
// table and dispatch): read_sum, the fastest plain read of n bytes (n a multiple
// of 256; returns a sum so the loads are not optimised away); fma_ops and
// madd_ops, `iters` rounds of independent f32 FMAs / 16-bit multiply-adds
// (return the number of floating-point operations, or integer multiply-add
// operations, done).
#include <cmath>

#include "ncas/cpu/kernels/tags.hpp"
#include "ncas/cpu/probes.hpp"

namespace ncas::cpu::detail {

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

template <class Tag>
struct probes;

// ---- scalar ---------------------------------------------------------------------

template <>
struct probes<scalar_tag> {
    static uint64_t read_sum(const std::byte* p, size_t n) {
        uint64_t s[4] = {};
        for (size_t i = 0; i < n; i += 32)
            for (int j = 0; j < 4; ++j) {
                uint64_t v;
                std::memcpy(&v, p + i + 8 * j, 8);
                s[j] += v;
            }
        return s[0] + s[1] + s[2] + s[3];
    }
    static double fma_ops(int64_t iters) {
        volatile float sink = independent_chains(iters, 1.0f, 1.0f, [](float a) { return std::fma(a, 0.999f, 0.001f); });
        (void)sink;
        return double(iters) * chains * 2;
    }
    static double madd_ops(int64_t iters) {
        volatile int32_t sink = independent_chains(iters, int32_t(1), int32_t(1), [](int32_t a) { return a * 3 + 7; });
        (void)sink;
        return double(iters) * chains * 2;
    }
};

// ---- x86: AVX2 and AVX-512 --------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <class Simd, isa Level>
struct probes<x86_tag<Simd, Level>> {
    using tag = x86_tag<Simd, Level>;
    using fbatch = typename tag::fbatch;
    static constexpr int64_t W = tag::W;

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
                if constexpr (tag::vnni) return _mm512_dpwssd_epi32(a, a, k);
                else return _mm512_madd_epi16(a, k);
            } else {
                return _mm256_madd_epi16(a, k);
            }
        });
        volatile int32_t sink = xsimd::hadd(ibatch(r));
        (void)sink;
        return double(iters) * chains * 2 * W * 2;
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64: NEON, dotprod, i8mm ------------------------------------------------------

#if defined(NCAS_CPU_HAVE_NEON)
template <isa Level>
struct probes<arm_tag<Level>> {
    using tag = arm_tag<Level>;

    static uint64_t read_sum(const std::byte* p, size_t n) {
        uint64x2_t a = vdupq_n_u64(0), b = a, c = a, d = a;
        const auto* q = reinterpret_cast<const uint64_t*>(p);
        for (size_t i = 0; i < n / 8; i += 8) {
            a = vaddq_u64(a, vld1q_u64(q + i)), b = vaddq_u64(b, vld1q_u64(q + i + 2));
            c = vaddq_u64(c, vld1q_u64(q + i + 4)), d = vaddq_u64(d, vld1q_u64(q + i + 6));
        }
        return vaddvq_u64(vaddq_u64(vaddq_u64(a, b), vaddq_u64(c, d)));
    }

    static double fma_ops(int64_t iters) {
        const float32x4_t k = vdupq_n_f32(0.999f), c = vdupq_n_f32(0.001f);
        const float32x4_t r = independent_chains(iters, vdupq_n_f32(1.0f), vdupq_n_f32(1.0f),
                                                 [&](float32x4_t a) { return vfmaq_f32(c, a, k); });
        volatile float sink = tag::sum4(r);
        (void)sink;
        return double(iters) * chains * 4 * 2;
    }

    // The integer multiply-add the Q4_0 / Q8_0 kernels use: smlal (4 16-bit products
    // a lane set) at neon, sdot (16 8-bit products) at dotprod and i8mm; 2 operations a product.
    static double madd_ops(int64_t iters) {
        const int32x4_t one = vdupq_n_s32(1);
        if constexpr (tag::dotprod) {
#if defined(NCAS_CPU_HAVE_DOTPROD)
            const int8x16_t k = vdupq_n_s8(3);
            const int32x4_t r = independent_chains(
                iters, one, one, [&](int32x4_t a) { return vdotq_s32(a, vreinterpretq_s8_s32(a), k); });
            volatile int32_t sink = vaddvq_s32(r);
            (void)sink;
            return double(iters) * chains * 16 * 2;
#endif
        }
        const int16x4_t k = vdup_n_s16(3);
        const int32x4_t r = independent_chains(
            iters, one, one, [&](int32x4_t a) { return vmlal_s16(a, vget_low_s16(vreinterpretq_s16_s32(a)), k); });
        volatile int32_t sink = vaddvq_s32(r);
        (void)sink;
        return double(iters) * chains * 4 * 2;
    }
};
#endif

// A tag's probe table.
template <class Tag>
inline const probe_table* probes_of() {
    static const probe_table t{Tag::level, probes<Tag>::read_sum, probes<Tag>::fma_ops, probes<Tag>::madd_ops};
    return &t;
}

inline const probe_table* probes_scalar() { return probes_of<scalar_tag>(); }

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX2)
NCAS_KERNEL_LINKAGE const probe_table* probes_avx2() {
#if defined(NCAS_CPU_HAVE_AVX2)
    return probes_of<avx2_tag<isa::avx2>>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512)
NCAS_KERNEL_LINKAGE const probe_table* probes_avx512() {
#if defined(NCAS_CPU_HAVE_AVX512)
    return probes_of<avx512_tag<isa::avx512>>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512VNNI)
NCAS_KERNEL_LINKAGE const probe_table* probes_avx512vnni() {
#if defined(NCAS_CPU_HAVE_AVX512VNNI)
    return probes_of<avx512_tag<isa::avx512vnni>>();
#else
    return nullptr;
#endif
}
#endif

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_NEON))
NCAS_KERNEL_LINKAGE const probe_table* probes_neon() {
#if defined(NCAS_CPU_HAVE_NEON)
    return probes_of<arm_tag<isa::neon>>();
#else
    return nullptr;
#endif
}
#endif

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_DOTPROD))
NCAS_KERNEL_LINKAGE const probe_table* probes_dotprod() {
#if defined(NCAS_CPU_HAVE_DOTPROD)
    return probes_of<arm_tag<isa::dotprod>>();
#else
    return nullptr;
#endif
}
#endif

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_I8MM))
NCAS_KERNEL_LINKAGE const probe_table* probes_i8mm() {
#if defined(NCAS_CPU_HAVE_I8MM)
    return probes_of<arm_tag<isa::i8mm>>();
#else
    return nullptr;
#endif
}
#endif

}  // namespace ncas::cpu::detail
