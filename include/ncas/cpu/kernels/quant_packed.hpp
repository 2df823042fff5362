#pragma once
// Q4_0, loop order 3 (AVX-512 prefill): rows unpacked once into a per-thread buffer.
// With many tokens, a thread's rows are taken a block at a time: the block is
// unpacked once into words (nibble − 8, so no correction term) and scale lanes,
// sized to stay in L2, and every token tile then runs over it. Weights are read
// from memory once per matrix instead of once per token tile, and a tile of 3
// rows × 4 tokens keeps a token's activation run in a register for all 3 rows.
// The integer lane sums are the same as q4_tile_512's and are scaled and added
// in the same order: the results are bit-identical to the decode path.
// packed_prefill<Tag>::available says whether a tag has this loop order.
#include "ncas/cpu/kernels/quant_blocks.hpp"

namespace ncas::cpu::detail {

template <class Tag>
struct packed_prefill {
    static constexpr bool available = false;
};

// ---- AVX-512 ------------------------------------------------------------------------

#if defined(NCAS_CPU_HAVE_AVX512)
NCAS_CPU_X86_WARNINGS_OFF

template <isa Level>
struct packed_prefill<avx512_tag<Level>> {
    using tag = avx512_tag<Level>;
    using blocks = quant_blocks<tag>;
    static constexpr bool available = true;
    struct alignas(64) q4_packed {  // one row's quad
        __m512i w[4];
        __m512 scale;
    };
    static constexpr int64_t pack_min_tokens = 8, pack_rows = 3, pack_tile = 4, pack_bytes = 384 << 10;

    // Rows row0 + r·stride (r < R), every quad, as out[u·R + r].
    template <int R>
    static void pack_q4(const std::byte* row0, int64_t stride, int64_t nb, q4_packed* out) {
        const __m512i eight = _mm512_set1_epi16(8);
        for (int64_t b = 0; b < nb; b += 4, out += R) {
            const auto m = blocks::quad_masks(nb - b);
            for (int r = 0; r < R; ++r) {
                const typename blocks::q4_quad q = blocks::unpack_q4(row0 + r * stride + b * int64_t(sizeof(block_q4_0)), m[0], m[1]);
                for (int j = 0; j < 4; ++j) _mm512_store_si512(&out[r].w[j], _mm512_sub_epi16(q.w[j], eight));
                _mm512_store_ps(&out[r].scale, q.scale);
            }
        }
    }

    // R packed rows (p[u·R + r]) against tokens t0..t0+NT, out[r·NT + i].
    template <int R, int NT>
    static void q4_packed_tile(const q4_packed* p, int64_t quads, const act_rows& xq, int64_t t0, float* out) {
        __m512 acc[R][NT];
        tag::zero_all(acc);
        const int16_t* q[NT];
        for (int i = 0; i < NT; ++i) q[i] = xq.q(t0 + i);
        for (int64_t u = 0; u < quads; ++u, p += R) {
            __m512i dot[R][NT];
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                __m512i w[R];
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) w[r] = _mm512_load_si512(&p[r].w[j]);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) {
                    __m512i a = _mm512_load_si512(q[i] + u * 128 + 32 * j);
                    asm("" : "+v"(a));  // one load for the R rows: GCC would fold it into every product
#pragma GCC unroll 8
                    for (int r = 0; r < R; ++r)
                        dot[r][i] = j == 0 ? _mm512_madd_epi16(w[r], a) : blocks::dot_add(dot[r][i], w[r], a);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m512 s = _mm512_load_ps(&p[r].scale);
#pragma GCC unroll 8
                for (int i = 0; i < NT; ++i) acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][i]), s, acc[r][i]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
            for (int i = 0; i < NT; ++i) out[r * NT + i] = _mm512_reduce_add_ps(acc[r][i]) * xq.scales()[t0 + i];
    }

    static void q4_packed_rows(const weight_matrix& w, const act_rows& xq, int64_t T, float* y, int64_t r0, int64_t r1) {
        constexpr int64_t R = pack_rows;
        const int64_t nb = w.cols / quant_block, quads = (nb + 3) / 4, stride = stride_of<tag>(w);
        const int64_t block = std::max<int64_t>(1, pack_bytes / (quads * int64_t(sizeof(q4_packed))) / R) * R;
        thread_local std::vector<q4_packed> buf;  // grows to the largest block once per thread
        if (buf.size() < size_t(block * quads)) buf.resize(size_t(block * quads));
        float out[R * pack_tile];
        for (int64_t rb = r0; rb < r1; rb += block) {
            const int64_t rows = std::min(block, r1 - rb), tiles = rows / R;
            for (int64_t k = 0; k < tiles; ++k) pack_q4<R>(row_of<tag>(w, rb + k * R), stride, nb, buf.data() + k * R * quads);
            for (int64_t k = tiles * R; k < rows; ++k) pack_q4<1>(row_of<tag>(w, rb + k), stride, nb, buf.data() + k * quads);
            for (int64_t t0 = 0; t0 < T; t0 += pack_tile) {
                with_count<pack_tile>(int(std::min<int64_t>(pack_tile, T - t0)), [&](auto NT) {
                    auto tile = [&](int64_t k, auto RR) {  // rows rb+k .. rb+k+RR, packed at buf[k·quads]
                        q4_packed_tile<RR, NT>(buf.data() + k * quads, quads, xq, t0, out);
                        for (int r = 0; r < RR; ++r)
                            for (int i = 0; i < NT; ++i) y[(t0 + i) * w.rows + rb + k + r] = out[r * NT + i];
                    };
                    for (int64_t k = 0; k < tiles * R; k += R) tile(k, std::integral_constant<int, R>{});
                    for (int64_t k = tiles * R; k < rows; ++k) tile(k, std::integral_constant<int, 1>{});
                });
            }
        }
    }
};

NCAS_CPU_X86_WARNINGS_ON
#endif

// ---- ARM64 (issue #19): an i8mm packed_prefill<arm_tag<Level>> would go here -------

}  // namespace ncas::cpu::detail
