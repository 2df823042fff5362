#pragma once
// One tag's kernel table from its families, and the table of each instruction set
// (kernels.hpp declares them; tags.hpp lists the families).
#include "ncas/cpu/kernels.hpp"
#include "ncas/cpu/kernels/act_quant.hpp"
#include "ncas/cpu/kernels/attention.hpp"
#include "ncas/cpu/kernels/elementwise.hpp"
#include "ncas/cpu/kernels/float_matmul.hpp"
#include "ncas/cpu/kernels/kquant_matmul.hpp"
#include "ncas/cpu/kernels/q5_matmul.hpp"
#include "ncas/cpu/kernels/quant_matmul.hpp"

namespace ncas::cpu::detail {

// The table's matmul: Q8_0 / Q4_0 through quant_matmul.hpp, Q5_0 / Q5_1 through q5_matmul.hpp,
// Q4_K / Q5_K / Q6_K through kquant_matmul.hpp, the float types through float_matmul.hpp.
template <class Tag>
inline void matmul_rows(const weight_matrix& w, const float* x, const act_rows* xq, int64_t T, float* y, int64_t r0,
                        int64_t r1) {
    switch (w.type) {
        case weight_type::q4_0: return quant_rows<Tag, weight_type::q4_0>(w, *xq, T, y, r0, r1);
        case weight_type::q8_0: return quant_rows<Tag, weight_type::q8_0>(w, *xq, T, y, r0, r1);
        case weight_type::q5_0: return q5_rows<Tag, weight_type::q5_0>(w, *xq, T, y, r0, r1);
        case weight_type::q5_1: return q5_rows<Tag, weight_type::q5_1>(w, *xq, T, y, r0, r1);
        case weight_type::q4_k: return kquant_rows<Tag, weight_type::q4_k>(w, *xq, T, y, r0, r1);
        case weight_type::q5_k: return kquant_rows<Tag, weight_type::q5_k>(w, *xq, T, y, r0, r1);
        case weight_type::q6_k: return kquant_rows<Tag, weight_type::q6_k>(w, *xq, T, y, r0, r1);
        default: return float_rows<Tag>(w, x, T, y, r0, r1);
    }
}

// A prompt's block of queries over any cache type (kernels.hpp's attn_scores_n / attn_values_n).
template <class Tag>
inline void attn_scores_n(weight_type kv, const std::byte* k, int64_t stride, int64_t first, int64_t nq, const int64_t* rows,
                          const float* q, int64_t qs, int64_t maps, int64_t d, float scale, float* const* scores) {
    if (traits_of(kv).block_values > 1)
        return attention_quant<Tag>::attn_scores_n(kv, k, stride, first, nq, rows, q, qs, maps, d, scale, scores);
    attention_block<Tag>::attn_scores(kv, k + row_bytes(kv, first), stride, nq, rows, q, qs, maps, d, scale, scores);
}
template <class Tag>
inline void attn_values_n(weight_type kv, const std::byte* v, int64_t stride, int64_t first, int64_t nq, const int64_t* rows,
                          const float* const* p, int64_t dv, float* const* o) {
    if (traits_of(kv).block_values > 1) return attention_quant<Tag>::attn_values_n(kv, v, stride, first, nq, rows, p, dv, o);
    attention_block<Tag>::attn_values(kv, v + row_bytes(kv, first), stride, nq, rows, p, dv, o);
}

// A tag's kernel table (one static table per tag).
template <class Tag>
inline const kernel_table* table_of() {
    using A = attention<Tag>;
    using AQ = attention_quant<Tag>;
    using E = elementwise<Tag>;
    static const kernel_table t{Tag::level, &matmul_rows<Tag>, A::attn_scores,   A::attn_values,
                                AQ::attn_scores, AQ::attn_values,   &attn_scores_n<Tag>, &attn_values_n<Tag>,
                                E::gelu,    E::silu_mul,       act_quant<Tag>::quantize_act,
                                E::rms_norm, E::softmax,       E::rope,
                                E::softmax_exp};
    return &t;
}

inline const kernel_table* table_scalar() { return table_of<scalar_tag>(); }

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX2)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx2() {
#if defined(NCAS_CPU_HAVE_AVX2)
    return table_of<avx2_tag<isa::avx2>>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512() {
#if defined(NCAS_CPU_HAVE_AVX512)
    return table_of<avx512_tag<isa::avx512>>();
#else
    return nullptr;
#endif
}
#endif

#if !defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_AVX512VNNI)
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512vnni() {
#if defined(NCAS_CPU_HAVE_AVX512VNNI)
    return table_of<avx512_tag<isa::avx512vnni>>();
#else
    return nullptr;
#endif
}
#endif

// ---- ARM64 ------------------------------------------------------------------------------

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_NEON))
NCAS_KERNEL_LINKAGE const kernel_table* table_neon() {
#if defined(NCAS_CPU_HAVE_NEON)
    return table_of<arm_tag<isa::neon>>();
#else
    return nullptr;
#endif
}
#endif

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_DOTPROD))
NCAS_KERNEL_LINKAGE const kernel_table* table_dotprod() {
#if defined(NCAS_CPU_HAVE_DOTPROD)
    return table_of<arm_tag<isa::dotprod>>();
#else
    return nullptr;
#endif
}
#endif

#if defined(__aarch64__) && (!defined(NCAS_CPU_MULTI_ARCH) || defined(NCAS_CPU_BUILD_I8MM))
NCAS_KERNEL_LINKAGE const kernel_table* table_i8mm() {
#if defined(NCAS_CPU_HAVE_I8MM)
    return table_of<arm_tag<isa::i8mm>>();
#else
    return nullptr;
#endif
}
#endif

}  // namespace ncas::cpu::detail
