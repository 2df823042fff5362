// The i8mm variant of the CPU kernels and of the benchmark's probes, for multi-arch
// ARM64 builds (see ncas/cpu/kernels.hpp and ncas/cpu/probes.hpp). Compiled with
// that instruction set's flags; everything else is compiled without them.
#define NCAS_CPU_BUILD_I8MM
#include "ncas/cpu/kernels.hpp"
#include "ncas/cpu/probes.hpp"
