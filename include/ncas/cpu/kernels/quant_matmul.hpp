#pragma once
// Q8_0 / Q4_0 matmul: the tile driver and the choice of loop order.
//  - quant_tiles.hpp: tiles of rows × 4 tokens, token tiles outside so a tile's
//    activations stay in L1 while the thread's rows stream past (decode, and
//    prefill where no other order applies);
//  - quant_packed.hpp: Q4_0 prefill on AVX-512, rows unpacked once per block into
//    an L2-sized buffer, token tiles inside;
//  - quant_chunked.hpp: AVX2 prefill of long rows, in column chunks whose
//    activations stay in L1.
// docs/architecture.md has the measurements behind the tiling. Each output is
// computed by one accumulator in a fixed order in every loop order, so results
// do not depend on the thread split, and a token's result does not depend on
// which other tokens or rows share its tile (prefill and decode agree bit for bit).
#include "ncas/cpu/kernels/quant_chunked.hpp"
#include "ncas/cpu/kernels/quant_packed.hpp"
#include "ncas/cpu/kernels/quant_tiles.hpp"

namespace ncas::cpu::detail {

// Q8_0 / Q4_0: quant_tiles<Tag>::quant_tile<R, NT, type> does R rows (`stride` bytes apart)
// against NT tokens, writing out[r * NT + i]. Token tiles outside, row tiles
// inside. A tile's R rows come from R separate parts of the thread's rows, so
// each is one sequential stream through memory (rows side by side would
// interleave within a page and defeat the hardware prefetcher: half the speed).
template <class Tag, weight_type type, int R>
inline void quant_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    const int64_t nb = w.cols / quant_block, part = (r1 - r0) / R;
    float out[R * max_tile];
    for (int64_t t0 = 0; t0 < T; t0 += max_tile) {
        const int nt = int(std::min<int64_t>(max_tile, T - t0));
        auto tile = [&](int64_t r, int64_t step, auto RR) {
            with_count<max_tile>(nt, [&](auto NT) {
                quant_tiles<Tag>::template quant_tile<RR, NT, type>(row_of<Tag>(w, r), step * stride_of<Tag>(w), nb, xq, t0, out);
                for (int j = 0; j < RR; ++j)
                    for (int i = 0; i < NT; ++i) y[(t0 + i) * w.rows + r + j * step] = out[j * NT + i];
            });
        };
        for (int64_t r = r0; r < r0 + part; ++r) tile(r, part, std::integral_constant<int, R>{});
        for (int64_t r = r0 + R * part; r < r1; ++r) tile(r, 1, std::integral_constant<int, 1>{});
    }
}

// One token (decode) takes more rows a tile: more streams in flight, no more registers.
template <class Tag, weight_type type>
inline void quant_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
    if constexpr (type == weight_type::q4_0 && packed_prefill<Tag>::available)
        if (T >= packed_prefill<Tag>::pack_min_tokens) return packed_prefill<Tag>::q4_packed_rows(w, xq, T, y, r0, r1);
    if constexpr (chunked_prefill<Tag>::available)
        if (T > 1 && w.cols / quant_block > 2 * chunked_prefill<Tag>::chunk_blocks)
            return chunked_prefill<Tag>::template chunked_rows<type>(w, xq, T, y, r0, r1);
    if (T == 1) quant_rows<Tag, type, quant_tiles<Tag>::decode_rows>(w, xq, T, y, r0, r1);
    else quant_rows<Tag, type, quant_tiles<Tag>::tile_rows>(w, xq, T, y, r0, r1);
}

}  // namespace ncas::cpu::detail
