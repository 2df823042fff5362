#pragma once
// The benchmark's machine figures, per instruction set (`ncas bench` sets the
// model's speed against them). Not kernels: no model code calls them, so they
// are not in the kernel table. Their bodies are in cpu/kernels/probes.hpp, over
// the same tags and compiled into the same per-ISA objects as the kernels.
#include <cstddef>
#include <cstdint>

#include "ncas/cpu/kernels.hpp"

namespace ncas::cpu {

struct probe_table {
    isa id;
    // The fastest plain read of n bytes (n a multiple of 256; returns a sum so the
    // loads are not optimised away).
    uint64_t (*read_sum)(const std::byte* p, size_t n);
    // `iters` rounds of independent FMAs / 16-bit multiply-adds: returns the number
    // of floating-point operations, or integer multiply-add operations, done.
    double (*fma_ops)(int64_t iters);
    double (*madd_ops)(int64_t iters);
};

namespace detail {
// One per instruction set; null when that variant is not compiled into this program.
inline const probe_table* probes_scalar();
NCAS_KERNEL_LINKAGE const probe_table* probes_avx2();
NCAS_KERNEL_LINKAGE const probe_table* probes_avx512();
NCAS_KERNEL_LINKAGE const probe_table* probes_avx512vnni();
NCAS_KERNEL_LINKAGE const probe_table* probes_neon();
NCAS_KERNEL_LINKAGE const probe_table* probes_dotprod();
NCAS_KERNEL_LINKAGE const probe_table* probes_i8mm();
}  // namespace detail

// The probes of an instruction set, or null when it is not compiled in.
inline const probe_table* probes_for(isa i) {
    switch (i) {
        case isa::scalar: return detail::probes_scalar();
#if defined(__x86_64__) || defined(__i386__)
        case isa::avx2: return detail::probes_avx2();
        case isa::avx512: return detail::probes_avx512();
        case isa::avx512vnni: return detail::probes_avx512vnni();
#elif defined(__aarch64__)
        case isa::neon: return detail::probes_neon();
        case isa::dotprod: return detail::probes_dotprod();
        case isa::i8mm: return detail::probes_i8mm();
#endif
        default: return nullptr;
    }
}

// The probes of the instruction set the kernels in use (kernels()) run.
inline const probe_table& probes() {
    const probe_table* p = probes_for(kernels().id);
    return p ? *p : *detail::probes_scalar();
}

}  // namespace ncas::cpu

#include "ncas/cpu/kernels/probes.hpp"
