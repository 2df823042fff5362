// The avx512vnni variant of the CPU kernels (AVX-512 with VBMI and VNNI) and of
// the benchmark's probes, for multi-arch builds (see ncas/cpu/kernels.hpp and
// ncas/cpu/probes.hpp). Compiled with that instruction set's flags; everything
// else is compiled without them.
#define NCAS_CPU_BUILD_AVX512VNNI
#include "ncas/cpu/kernels.hpp"
#include "ncas/cpu/probes.hpp"
