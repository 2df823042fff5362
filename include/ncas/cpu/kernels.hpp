#pragma once
// The CPU kernel table and its run-time dispatch.
//
// Kernels are written once over an instruction-set tag, one family a file under
// cpu/kernels/ (tags.hpp lists them and states the multi-arch rule; table.hpp
// gathers a tag's families into its table), and compiled once per instruction
// set. Two ways to get them:
//  - multi-arch (NCAS_CPU_MULTI_ARCH defined, src/cpu/kernels_<isa>.cpp compiled
//    each with its ISA's flags into the static library ncas_kernels): one
//    binary carries every variant of its architecture and picks the best the
//    CPU runs. What the installed CMake package (ncas::ncas), pkg-config file
//    (ncas) and Meson dependency give, and what the CLI and tests use;
//  - header-only (ncas::headers, ncas-headers.pc, or plain include paths): the
//    including translation unit instantiates the variants its own compiler
//    flags allow (plain -march=native gives the best one for this CPU), plus
//    the portable scalar one; default flags give scalar only, and kernels()
//    then says so once on stderr when the CPU could do better.
// At run time the best variant that is both compiled in and supported by the
// CPU and OS is chosen (cpu/isa.hpp), unless NCAS_ISA / force_isa() says otherwise.
// The benchmark's machine probes have a table of their own (cpu/probes.hpp).
#include <cstdint>
#include <cstdio>
#include <string>

#include "ncas/cpu/isa.hpp"
#include "ncas/cpu/ops.hpp"
#include "ncas/cpu/act_quant.hpp"

namespace ncas::cpu {

// y[t, r] for rows [r0, r1) of w and all T tokens; y is [T, w.rows].
// x: activations [T, w.cols]; xq: the same quantised for w.type (integer weight types only).
using matmul_rows_fn = void (*)(const weight_matrix& w, const float* x, const act_rows* xq, int64_t T, float* y,
                                int64_t r0, int64_t r1);

// Attention over cached rows (`rows` rows, `stride` bytes apart, f32 or f16):
//  attn_scores: scores[m·rows + j] = scale · K_j[m·d .. (m+1)·d) · q[m·d ..]  for `maps` maps
//               (adjacent in a K row: a head's maps, or the maps of adjacent heads, so one
//               pass over the keys scores them all);
//  attn_values: o[h·os + e] = Σ_j p[h·ps + j] · V_j[h·dv + e]  for e < dv and each of `heads`
//               adjacent heads (one pass over the values when heads > 1; each sum runs over
//               j = 0, 1, ... in order, so a head's result does not depend on `heads`).
using attn_scores_fn = void (*)(weight_type kv, const std::byte* k, int64_t stride, int64_t rows, const float* q,
                                int64_t maps, int64_t d, float scale, float* scores);
using attn_values_fn = void (*)(weight_type kv, const std::byte* v, int64_t stride, int64_t rows, int64_t heads,
                                const float* p, int64_t ps, int64_t dv, float* o, int64_t os);

// Attention over a quantised cache (q8_0, q4_0: blocks of 32 along a row, cpu/kv_cache.hpp),
// reading the blocks in place (each converted in registers, no dequantised copy): k / v
// point at the first row, and the (first) head's values start at element `first` of a row
// (first and the map widths need not be multiples of 32). Otherwise as above.
using attn_scores_q_fn = void (*)(weight_type kv, const std::byte* k, int64_t stride, int64_t first, int64_t rows,
                                  const float* q, int64_t maps, int64_t d, float scale, float* scores);
using attn_values_q_fn = void (*)(weight_type kv, const std::byte* v, int64_t stride, int64_t first, int64_t rows,
                                  int64_t heads, const float* p, int64_t ps, int64_t dv, float* o, int64_t os);
// A block of up to 16 queries of one head (a prompt's attention), over a cache of any of
// the four types (the head's values from element `first` of a row, as above): query i
// reads rows[i] rows, its maps at q + i·qs, its scores to scores[i] ([maps][rows[i]]), its
// value weights at p[i] and its sums to o[i] (dv values); each query's results are those
// of the one-query calls bit for bit, the rows read once for the block in steps that stay
// in L1.
using attn_scores_n_fn = void (*)(weight_type kv, const std::byte* k, int64_t stride, int64_t first, int64_t nq,
                                  const int64_t* rows, const float* q, int64_t qs, int64_t maps, int64_t d, float scale,
                                  float* const* scores);
using attn_values_n_fn = void (*)(weight_type kv, const std::byte* v, int64_t stride, int64_t first, int64_t nq,
                                  const int64_t* rows, const float* const* p, int64_t dv, float* const* o);

struct kernel_table {
    isa id;
    matmul_rows_fn matmul_rows;
    attn_scores_fn attn_scores;
    attn_values_fn attn_values;
    attn_scores_q_fn attn_scores_q;
    attn_values_q_fn attn_values_q;
    attn_scores_n_fn attn_scores_n;
    attn_values_n_fn attn_values_n;
    // FFN activations in place: x[i] = gelu_tanh(x[i]);  up[i] *= silu(gate[i]).
    void (*gelu)(float* x, int64_t n);
    void (*silu_mul)(float* up, const float* gate, int64_t n);
    quantize_row_fn quantize_act;  // activations for the Q8_0 / Q4_0 / Q5 / K-quant kernels (act_quant.hpp)
    // y = x / sqrt(mean(x²) + eps) · w;  x = softmax(x) in place (ops.hpp has the scalar definitions).
    void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps);
    void (*softmax)(float* x, int64_t n);
    // Rotates the interleaved pairs (2i, 2i+1) of a d-wide head by the angles of cos_t/sin_t (d/2 each).
    void (*rope)(float* v, const float* cos_t, const float* sin_t, int64_t d);
    // softmax's first two steps (a chunk of attention scores): x[i] = exp(x[i] − max) in
    // place, *max = the max; returns Σ x[i] (softmax then multiplies by 1 / that sum).
    float (*softmax_exp)(float* x, int64_t n, float* max);
};

// Whether a weight type's kernels take integer (act_rows) activations.
constexpr bool uses_int_dot(weight_type t) {
    return t == weight_type::q8_0 || t == weight_type::q4_0 || t == weight_type::q5_0 || t == weight_type::q5_1 ||
           is_k_quant(t);
}

#if defined(NCAS_CPU_MULTI_ARCH)
#define NCAS_KERNEL_LINKAGE  // defined once, in src/cpu/kernels_<isa>.cpp (tables and probes)
#else
#define NCAS_KERNEL_LINKAGE inline
#endif

namespace detail {
// One per instruction set; null when that variant is not compiled into this program.
inline const kernel_table* table_scalar();
NCAS_KERNEL_LINKAGE const kernel_table* table_avx2();
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512();
NCAS_KERNEL_LINKAGE const kernel_table* table_avx512vnni();
NCAS_KERNEL_LINKAGE const kernel_table* table_neon();
NCAS_KERNEL_LINKAGE const kernel_table* table_dotprod();
NCAS_KERNEL_LINKAGE const kernel_table* table_i8mm();
}  // namespace detail

// The table for an instruction set, or null when it is not compiled in (the
// levels of another architecture never are: a multi-arch build defines only its
// own architecture's table functions).
inline const kernel_table* table_for(isa i) {
    switch (i) {
        case isa::scalar: return detail::table_scalar();
#if defined(__x86_64__) || defined(__i386__)
        case isa::avx2: return detail::table_avx2();
        case isa::avx512: return detail::table_avx512();
        case isa::avx512vnni: return detail::table_avx512vnni();
#elif defined(__aarch64__)
        case isa::neon: return detail::table_neon();
        case isa::dotprod: return detail::table_dotprod();
        case isa::i8mm: return detail::table_i8mm();
#endif
        default: return nullptr;
    }
}

namespace detail {
// Said once on stderr when only the scalar kernels are compiled in on a CPU that
// runs a SIMD variant (a header-only build without -m flags: 20-50x slower).
inline void warn_scalar_only(isa cpu) {
    std::fprintf(stderr,
                 "ncas: this CPU supports %.*s but only the scalar kernels are compiled into this program (20-50x "
                 "slower); link the kernels library (CMake ncas::ncas, pkg-config ncas, Meson dependency('ncas')) "
                 "or compile with -march=native (NCAS_ISA=scalar silences this)\n",
                 int(isa_name(cpu).size()), isa_name(cpu).data());
}
}  // namespace detail

// The kernels in use: the forced instruction set, else the best one compiled in and supported.
inline const kernel_table& kernels() {
    if (const auto& f = forced_isa()) {
        if (const kernel_table* t = table_for(*f)) return *t;
        throw error("instruction set " + std::string(isa_name(*f)) + " is not compiled into this program");
    }
    static const kernel_table* best = [] {
        const isa cpu = detect_isa();
        for (int i = int(cpu); i >= 0; --i)
            if (const kernel_table* t = table_for(isa(i))) {
                if (t->id == isa::scalar && cpu != isa::scalar) detail::warn_scalar_only(cpu);
                return t;
            }
        return detail::table_scalar();
    }();
    return *best;
}

// The variant kernels() uses and why, for `ncas info` and `ncas bench`:
//   "avx2 (best of: scalar avx2 avx512 avx512vnni compiled in; CPU supports up to avx2)"
//   "scalar (forced by NCAS_ISA; compiled in: scalar avx2; CPU supports up to avx2)"
// forced_by names what forced a level (default: NCAS_ISA when it is set, else force_isa()).
inline std::string kernels_chosen_text(std::string_view forced_by = {}) {
    std::string compiled;  // table_for() of a level the CPU lacks runs none of its instructions: it returns a constant table
    for (isa i : all_isas)
        if (table_for(i)) compiled += (compiled.empty() ? "" : " ") + std::string(isa_name(i));
    const char* env = std::getenv("NCAS_ISA");
    const std::string cpu = "CPU supports up to " + std::string(isa_name(detect_isa()));
    std::string text = std::string(isa_name(kernels().id)) + " (";
    if (forced_isa()) {
        if (forced_by.empty()) forced_by = env && *env ? "NCAS_ISA" : "force_isa()";
        return text + "forced by " + std::string(forced_by) + "; compiled in: " + compiled + "; " + cpu + ")";
    }
    return text + "best of: " + compiled + " compiled in; " + cpu + ")";
}

}  // namespace ncas::cpu

#include "ncas/cpu/kernels/table.hpp"
