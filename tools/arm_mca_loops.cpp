// The Q4_0 inner loops of the ARM64 kernels as straight-line functions for llvm-mca
// (tools/arm_mca.sh compiles this file once per level and feeds each function's body
// to llvm-mca; docs/arm.md has the results). One call is one group of four blocks:
//  - mca_decode_q4: decode_rows rows against one token (the decode tile);
//  - mca_prefill_q4: tile_rows rows against max_tile tokens (the prefill tile).
// Compiled with the level's flags (-march=...) and -DNCAS_MCA_LEVEL=neon|dotprod|i8mm.
#include "ncas/cpu/kernels.hpp"

using namespace ncas::cpu;
using namespace ncas::cpu::detail;
using tag = arm_tag<isa::NCAS_MCA_LEVEL>;
using blocks = quant_blocks<tag>;
using tiles = quant_tiles<tag>;

template <int R, int NT>
[[gnu::always_inline]] inline void one_group(const std::byte* row0, int64_t stride, const int16_t* const* qs, const int32_t* const* cs,
                      float32x4_t* accs) {
    const int16_t* q[NT];
    const int32_t* c[NT];
    float32x4_t acc[R][NT];
    for (int i = 0; i < NT; ++i) q[i] = qs[i], c[i] = cs[i];
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < NT; ++i) acc[r][i] = accs[r * NT + i];
    blocks::template group_rows<R, NT, ncas::weight_type::q4_0, false>(row0, stride, 0, 4, q, c, acc);
    for (int r = 0; r < R; ++r)
        for (int i = 0; i < NT; ++i) accs[r * NT + i] = acc[r][i];
}

extern "C" void mca_decode_q4(const std::byte* row0, int64_t stride, const int16_t* const* q, const int32_t* const* c,
                              float32x4_t* acc) {
    one_group<tiles::decode_rows, 1>(row0, stride, q, c, acc);
}
extern "C" void mca_prefill_q4(const std::byte* row0, int64_t stride, const int16_t* const* q, const int32_t* const* c,
                               float32x4_t* acc) {
    one_group<tiles::tile_rows, max_tile>(row0, stride, q, c, acc);
}
extern "C" const int mca_decode_rows = tiles::decode_rows, mca_tile_rows = tiles::tile_rows, mca_tokens = max_tile;
