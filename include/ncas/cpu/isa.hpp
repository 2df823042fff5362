#pragma once
// Which instruction sets this CPU can run, checked the way the OS requires:
// CPUID says the CPU has AVX / AVX-512, XGETBV says the OS saves their state
// (xsimd 8.1's detection skips the second check). The choice can be forced
// (NCAS_ISA=scalar|avx2|avx512|avx512vnni, or force_isa()) so tests and
// benchmarks can run every kernel variant this machine has.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ncas/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace ncas::cpu {

// In increasing order of preference. avx512: F, BW, DQ and VL (Skylake-X and
// later); avx512vnni adds VBMI and VNNI (Ice Lake, Zen 4 and later).
enum class isa { scalar, avx2, avx512, avx512vnni };
inline constexpr isa all_isas[] = {isa::scalar, isa::avx2, isa::avx512, isa::avx512vnni};

constexpr std::string_view isa_name(isa i) {
    switch (i) {
        case isa::scalar: return "scalar";
        case isa::avx2: return "avx2";
        case isa::avx512: return "avx512";
        case isa::avx512vnni: return "avx512vnni";
    }
    return "?";
}

inline isa parse_isa(std::string_view s) {
    for (isa i : all_isas)
        if (isa_name(i) == s) return i;
    throw error("unknown instruction set '" + std::string(s) + "' (expected scalar, avx2, avx512 or avx512vnni)");
}

// The best instruction set the CPU and OS support.
inline isa detect_isa() {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return isa::scalar;
    const bool osxsave = c >> 27 & 1, fma = c >> 12 & 1, f16c = c >> 29 & 1;
    if (!osxsave) return isa::scalar;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool os_avx = (lo & 0x6) == 0x6, os_avx512 = (lo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return isa::scalar;
    const bool avx2 = b >> 5 & 1, avx512f = b >> 16 & 1, avx512dq = b >> 17 & 1, avx512bw = b >> 30 & 1,
               avx512vl = b >> 31 & 1;
    if (!(os_avx && avx2 && fma && f16c)) return isa::scalar;
    if (!(os_avx512 && avx512f && avx512dq && avx512bw && avx512vl)) return isa::avx2;
    const bool avx512vbmi = c >> 1 & 1, avx512vnni = c >> 11 & 1;
    if (!(avx512vbmi && avx512vnni)) return isa::avx512;
    return isa::avx512vnni;
#else
    return isa::scalar;
#endif
}

// The instruction set kernels use: the detected one, unless NCAS_ISA or force_isa() chose one.
inline std::optional<isa>& forced_isa() {
    static std::optional<isa> forced = []() -> std::optional<isa> {
        if (const char* e = std::getenv("NCAS_ISA"); e && *e) return parse_isa(e);
        return std::nullopt;
    }();
    return forced;
}
inline void force_isa(std::optional<isa> i) {
    if (i && *i > detect_isa())
        throw error("instruction set " + std::string(isa_name(*i)) + " is not supported by this CPU (best: " +
                    std::string(isa_name(detect_isa())) + ")");
    forced_isa() = i;
}

}  // namespace ncas::cpu
