#pragma once
// Q8_0 / Q4_0, loop order 2 (AVX2 prefill): rows in L2-sized blocks, columns in
// L1-sized chunks.
// A token tile's activations for a long row (4 × 6912 words and their corrections
// for PI-P's down matrices: 60 KB) do not fit in L1, so such rows are taken a chunk
// of 64 blocks at a time: the tile's activations for that chunk (18 KB) stay in L1
// while a block of 32 rows, in L2 after the first tile, passes over them. Each
// (row, token) accumulator is saved between chunks, so it sees the same additions
// in the same order as the decode path: bit-identical results. Measured on Zen 3
// (one thread, 64 tokens): 0.85 against 0.93 ns a block and token at 6912 columns,
// 0.86 against 0.91 at 4608; rows of up to 128 blocks, where chunking measured 5%
// slower (2592 columns), keep the plain loop.
// chunked_prefill<Tag>::available says whether a tag has this loop order.
#include "ncas/cpu/kernels/quant_blocks.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct chunked_prefill {
    static constexpr bool available = false;
};

// ---- AVX2 ---------------------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX2)
NCAS_CPU_X86_WARNINGS_OFF

template <isa Level>
struct chunked_prefill<avx2_tag<Level>> {
    using tag = avx2_tag<Level>;
    using blocks = quant_blocks<tag>;
    using fbatch = typename tag::fbatch;
    static constexpr bool available = true;
    static constexpr int64_t chunk_rows = 32, chunk_blocks = 64;

    template <weight_type t>
    static void chunked_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
        const int64_t nb = w.cols / quant_block, stride = stride_of<tag>(w);
        __m256 state[chunk_rows][max_tile];
        for (int64_t rb = r0; rb < r1; rb += chunk_rows) {
            const int64_t rows = std::min(chunk_rows, r1 - rb);
            for (int64_t t0 = 0; t0 < T; t0 += max_tile)
                with_count<max_tile>(int(std::min<int64_t>(max_tile, T - t0)), [&](auto NT) {
                    for (int64_t r = 0; r < rows; ++r)
                        for (int i = 0; i < NT; ++i) state[r][i] = _mm256_setzero_ps();
                    for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
                        const int64_t b1 = std::min(nb, b0 + chunk_blocks);
                        for (int64_t r = 0; r < rows; ++r) {
                            __m256 acc[1][NT];
                            for (int i = 0; i < NT; ++i) acc[0][i] = state[r][i];
                            if constexpr (t == weight_type::q4_0)
                                blocks::template q4_quads_256<1, NT>(row_of<tag>(w, rb + r), stride, nb, b0 / 4, (b1 + 3) / 4, xq, t0, acc);
                            else blocks::template q8_blocks_256<1, NT>(row_of<tag>(w, rb + r), stride, b0, b1, xq, t0, acc);
                            for (int i = 0; i < NT; ++i) state[r][i] = acc[0][i];
                        }
                    }
                    for (int64_t r = 0; r < rows; ++r)
                        for (int i = 0; i < NT; ++i)
                            y[(t0 + i) * w.rows + rb + r] = xsimd::hadd(fbatch(state[r][i])) * xq.scales()[t0 + i];
                });
        }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64 (issue #19): chunked_prefill<arm_tag<Level>>, where it pays, goes here ---

}  // namespace ncas::cpu::detail
