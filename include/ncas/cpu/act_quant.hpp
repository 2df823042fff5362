#pragma once
// Activations quantised to 16-bit integers for the integer dot products of the
// Q8_0 / Q4_0 / K-quant kernels: one scale per token row, d = max|x| / 32767,
// q = round(x / d), so the error is at most d/2 per value (1.5e-5 of the row's
// largest value). One scale per row lets a kernel apply the weight block's
// scale alone inside its loop and the activation scale once per row. 8-bit
// activations with a scale per block of 32, as ggml uses, measured
// 2.4e-2·max|logit| on the tiny Q8_0 model: outside docs/spec.md §4's 2e-2 bound, so
// ncas keeps 16 bits.
//
// The values are stored in the order the weight type's kernels read them:
//  - Q8_0: natural order, block after block.
//  - Q4_0: blocks in quads (A, B, C, D), 128 values a quad, as four runs of 32:
//      run j = [A 8j..8j+7 | B 8j..8j+7 | C 8j..8j+7 | D 8j..8j+7]
//    A Q4_0 block keeps element e in the low nibble of quant byte e and element
//    e+16 in the high nibble, so bytes 0..7 of the four blocks, widened to 32
//    words, give runs 0 (low nibbles) and 2 (high nibbles), and bytes 8..15 give
//    runs 1 and 3. Multiplying run j by its weights with pmaddwd puts each
//    block's products in 4 of the 16 int32 lanes, so the four products of a quad
//    sum per lane without mixing blocks, and one scale multiply serves 4 blocks.
//    A last, partial quad has zeros in the places of its missing blocks.
//    Each quad also carries 16 int32 corrections, −8·Σ of the eight values that
//    meet in one lane, so kernels can multiply by the raw nibbles (0..15) and
//    start the lane sums from the correction instead of subtracting 8 from every
//    weight.
//  - Q4_K / Q5_K / Q6_K: natural order, and one int32 a 16 values, their sum (16
//    a super-block of 256, in corr): Q4_K / Q5_K take a sub-block's Σ a for its min,
//    Q6_K for its offset of 32 (cpu/kernels/kquant_matmul.hpp).
//  - Q5_0 / Q5_1: the same (natural order, sums of 16): a block's Σ a is its offset
//    of 16 (Q5_0) or its min's factor (Q5_1) (cpu/kernels/q5_matmul.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "ncas/format/quant.hpp"

namespace ncas::cpu {

// Whether type t's activations carry the sums of 16 values (corr, natural order).
constexpr bool act_sixteens(weight_type t) {
    return is_k_quant(t) || t == weight_type::q5_0 || t == weight_type::q5_1;
}

// Position of element e (0..31) of block b in a token's Q4_0-ordered values.
constexpr int64_t q4_position(int64_t b, int e) { return (b / 4) * 128 + (e / 8) * 32 + (b % 4) * 8 + e % 8; }

// Quantises one token row x (nb blocks) in the order of weight type t: its
// values to q, its scale to *d, and (Q4_0) its lane corrections to corr. This is
// the reference; the kernel table has a vector one with the same results.
using quantize_row_fn = void (*)(weight_type t, const float* x, int64_t nb, int16_t* q, int32_t* corr, float* d);

// A row with a NaN or an infinity has no scale: it gets scale NaN and zero values
// (and corrections), so every product with it is NaN and the fault reaches the
// logits (where the sampler refuses it) instead of becoming a finite, wrong number.
inline void quantize_nonfinite_row(weight_type t, int64_t nb, int16_t* q, int32_t* corr, float* d_out) {
    const int64_t quads = (nb + 3) / 4;
    *d_out = std::numeric_limits<float>::quiet_NaN();
    std::memset(q, 0, size_t(t == weight_type::q4_0 ? quads * 128 : nb * quant_block) * sizeof(int16_t));
    if (t == weight_type::q4_0) std::memset(corr, 0, size_t(quads * 16) * sizeof(int32_t));
    if (act_sixteens(t)) std::memset(corr, 0, size_t(nb * 2) * sizeof(int32_t));
}

// K-quants, Q5_0 / Q5_1: corr[k] = Σ of values 16k .. 16k + 15 (nb blocks of 32 in natural order).
inline void sum_sixteens(const int16_t* q, int64_t nb, int32_t* corr) {
    for (int64_t k = 0; k < nb * 2; ++k) {
        int32_t sum = 0;
        for (int e = 0; e < 16; ++e) sum += q[16 * k + e];
        corr[k] = sum;
    }
}

inline void quantize_act_row(weight_type t, const float* x, int64_t nb, int16_t* q, int32_t* corr, float* d_out) {
    float amax = 0.0f, zero = 0.0f;  // zero: Σ x·0, NaN when a value is NaN or infinite
    for (int64_t i = 0; i < nb * quant_block; ++i) amax = std::max(amax, std::abs(x[i])), zero += x[i] * 0.0f;
    if (zero != 0.0f) return quantize_nonfinite_row(t, nb, q, corr, d_out);
    float d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    // A row too small for a finite inverse scale (amax < 32767/FLT_MAX ≈ 9.6e-35) is zeros
    // with scale 0: x·id would be ±inf or NaN (undefined as int16; found by the GGUF fuzz harness).
    if (std::isinf(id)) d = 0.0f, id = 0.0f;
    *d_out = d;
    if (t != weight_type::q4_0) {
        for (int64_t i = 0; i < nb * quant_block; ++i) q[i] = int16_t(std::nearbyint(x[i] * id));
        if (act_sixteens(t)) sum_sixteens(q, nb, corr);
        return;
    }
    const int64_t quads = (nb + 3) / 4;
    if (nb % 4) std::memset(q + (quads - 1) * 128, 0, 128 * sizeof(int16_t));  // a partial quad's missing blocks
    for (int64_t b = 0; b < nb; ++b)
        for (int e = 0; e < quant_block; ++e) q[q4_position(b, e)] = int16_t(std::nearbyint(x[b * quant_block + e] * id));
    for (int64_t u = 0; u < quads; ++u, q += 128, corr += 16)
        for (int l = 0; l < 16; ++l) {  // lane l multiplies words 2l, 2l+1 of every run
            int32_t sum = 0;
            for (int j = 0; j < 4; ++j) sum += int32_t(q[32 * j + 2 * l]) + q[32 * j + 2 * l + 1];
            corr[l] = -8 * sum;
        }
}

// T token rows of quantised activations for one weight type; reused across
// calls, so it allocates only when a larger batch arrives.
class act_rows {
public:
    void quantize(weight_type type, const float* x, int64_t T, int64_t K, quantize_row_fn row = &quantize_act_row) {
        type_ = type;
        const int64_t nb = K / quant_block, quads = (nb + 3) / 4;
        q_stride_ = type == weight_type::q4_0 ? quads * 128 : nb * quant_block;
        c_stride_ = type == weight_type::q4_0 ? quads * 16 : act_sixteens(type) ? nb * 2 : 0;
        const size_t bytes = size_t(T) * size_t(q_stride_ * 2 + c_stride_ * 4) + 64;
        if (store_.size() < bytes) store_.resize(bytes);
        if (d_.size() < size_t(T)) d_.resize(size_t(T));
        const auto base = (reinterpret_cast<uintptr_t>(store_.data()) + 63) / 64 * 64;
        q_ = reinterpret_cast<int16_t*>(base);
        c_ = reinterpret_cast<int32_t*>(base + size_t(T * q_stride_ * 2));
        for (int64_t t = 0; t < T; ++t) {
            float& d = d_[size_t(t)];
            row(type, x + t * K, nb, q_ + t * q_stride_, c_ + t * c_stride_, &d);
            // A row too small for a finite inverse scale: zeros and scale 0 on every table, as
            // quantize_act_row makes it (a vector kernel turns x·inf into -32768).
            if (d > 0.0f && std::isinf(1.0f / d)) {
                std::memset(q_ + t * q_stride_, 0, size_t(q_stride_) * sizeof(int16_t));
                std::memset(c_ + t * c_stride_, 0, size_t(c_stride_) * sizeof(int32_t));
                d = 0.0f;
            }
        }
    }

    float d(int64_t t) const { return d_[size_t(t)]; }
    const float* scales() const { return d_.data(); }  // d(t) for every t
    const int16_t* q(int64_t t) const { return q_ + t * q_stride_; }
    const int32_t* corr(int64_t t) const { return c_ + t * c_stride_; }
    weight_type type() const { return type_; }

private:
    std::vector<std::byte> store_;
    std::vector<float> d_;
    weight_type type_ = weight_type::q8_0;
    int64_t q_stride_ = 0, c_stride_ = 0;
    int16_t* q_ = nullptr;
    int32_t* c_ = nullptr;
};

}  // namespace ncas::cpu
