#pragma once
// Which instruction sets this CPU can run, checked the way the OS requires:
//  - x86-64: CPUID says the CPU has AVX / AVX-512, XGETBV says the OS saves their
//    state (xsimd 8.1's detection skips the second check);
//  - ARM64: Linux and Android report the CPU's features in the auxiliary vector
//    (getauxval(AT_HWCAP / AT_HWCAP2): ASIMDDP for sdot, I8MM for smmla); Apple
//    platforms in sysctl (hw.optional.arm.FEAT_DotProd / FEAT_I8MM, macOS 12+ and
//    iOS 15+; written to the documented names, not run here). NEON and the f16
//    conversions are part of every ARMv8-A CPU.
// The choice can be forced (NCAS_ISA=scalar|avx2|avx512|avx512vnni on x86-64,
// scalar|neon|dotprod|i8mm on ARM64, or force_isa()) so tests and benchmarks can
// run every kernel variant this machine has.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ncas/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace ncas::cpu {

// Within an architecture, in increasing order of preference (scalar runs
// everywhere; a level of another architecture is never supported).
// x86-64: avx2 with FMA and F16C; avx512: F, BW, DQ and VL (Skylake-X and later);
// avx512vnni adds VBMI and VNNI (Ice Lake, Zen 4 and later).
// ARM64: neon, ARMv8.0 Advanced SIMD with its f16 conversions (every ARMv8-A CPU);
// dotprod adds sdot/udot (ARMv8.2 FEAT_DotProd: Cortex-A55/A76 and later, Apple
// M1, Raspberry Pi 5); i8mm adds smmla/usdot (ARMv8.6 FEAT_I8MM: Cortex-A510/A710
// and later, Neoverse V1/N2, Apple M2, Graviton 3).
enum class isa { scalar, avx2, avx512, avx512vnni, neon, dotprod, i8mm };
inline constexpr isa all_isas[] = {isa::scalar, isa::avx2,    isa::avx512, isa::avx512vnni,
                                   isa::neon,   isa::dotprod, isa::i8mm};

enum class isa_arch { any, x86_64, arm64 };
constexpr isa_arch arch_of(isa i) {
    switch (i) {
        case isa::scalar: return isa_arch::any;
        case isa::avx2:
        case isa::avx512:
        case isa::avx512vnni: return isa_arch::x86_64;
        case isa::neon:
        case isa::dotprod:
        case isa::i8mm: return isa_arch::arm64;
    }
    return isa_arch::any;
}

constexpr std::string_view isa_name(isa i) {
    switch (i) {
        case isa::scalar: return "scalar";
        case isa::avx2: return "avx2";
        case isa::avx512: return "avx512";
        case isa::avx512vnni: return "avx512vnni";
        case isa::neon: return "neon";
        case isa::dotprod: return "dotprod";
        case isa::i8mm: return "i8mm";
    }
    return "?";
}

inline isa parse_isa(std::string_view s) {
    for (isa i : all_isas)
        if (isa_name(i) == s) return i;
    throw error("unknown instruction set '" + std::string(s) + "' (expected scalar, avx2, avx512, avx512vnni, neon, dotprod or i8mm)");
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
#elif defined(__aarch64__) && defined(__linux__)
    // Bits of <asm/hwcap.h>, spelled out for C libraries that predate them.
    constexpr unsigned long hwcap_asimd = 1ul << 1, hwcap_asimddp = 1ul << 20, hwcap2_i8mm = 1ul << 13;
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (!(hw & hwcap_asimd)) return isa::scalar;
    if (!(hw & hwcap_asimddp)) return isa::neon;
    if (!(hw2 & hwcap2_i8mm)) return isa::dotprod;
    return isa::i8mm;
#elif defined(__aarch64__) && defined(__APPLE__)
    // Every Apple ARM64 CPU has NEON; the features are sysctl flags (1 when present).
    auto has = [](const char* name) {
        int v = 0;
        size_t len = sizeof(v);
        return sysctlbyname(name, &v, &len, nullptr, 0) == 0 && v == 1;
    };
    if (!has("hw.optional.arm.FEAT_DotProd")) return isa::neon;
    if (!has("hw.optional.arm.FEAT_I8MM")) return isa::dotprod;
    return isa::i8mm;
#elif defined(__aarch64__)
    return isa::neon;  // another OS: NEON is architectural, the extensions unknown
#else
    return isa::scalar;
#endif
}

// Whether this CPU runs level i: scalar, or a level of its own architecture up to the detected one.
inline bool cpu_supports(isa i) {
    const isa best = detect_isa();
    return i == isa::scalar || (arch_of(i) == arch_of(best) && i <= best);
}

// The instruction set kernels use: the detected one, unless NCAS_ISA or force_isa() chose one.
inline std::optional<isa>& forced_isa() {
    static std::optional<isa> forced = []() -> std::optional<isa> {
        if (const char* e = std::getenv("NCAS_ISA"); e && *e) {
            const isa i = parse_isa(e);  // a level the CPU lacks would fault on its first instruction: refused here
            if (!cpu_supports(i))
                throw error("NCAS_ISA=" + std::string(e) + ": instruction set not supported by this CPU (best: " +
                            std::string(isa_name(detect_isa())) + ")");
            return i;
        }
        return std::nullopt;
    }();
    return forced;
}
inline void force_isa(std::optional<isa> i) {
    if (i && !cpu_supports(*i))
        throw error("instruction set " + std::string(isa_name(*i)) + " is not supported by this CPU (best: " +
                    std::string(isa_name(detect_isa())) + ")");
    forced_isa() = i;
}

}  // namespace ncas::cpu
