#pragma once
// Activations quantised to 16-bit integers for the integer dot products of the
// Q8_0 / Q4_0 kernels: one scale per token row, d = max|x| / 32767,
// q = round(x / d), so the error is at most d/2 per value (1.5e-5 of the row's
// largest value). One scale per row lets a kernel apply the weight block's
// scale alone inside its loop and the activation scale once per row. 8-bit
// activations with a scale per block of 32, as ggml uses, measured
// 2.4e-2·max|logit| on the tiny Q8_0 model: outside the SPEC's 2e-2 bound, so
// ncas keeps 16 bits.
//
// The values are stored in the order the weight type's kernels read them:
//  - Q8_0: natural order, block after block.
//  - Q4_0: blocks in pairs (A, B), 64 values a pair:
//      [A 0..15 | B 0..15 | A 16..31 | B 16..31]
//    A Q4_0 block keeps element j in the low nibble of byte j and element j+16
//    in the high nibble, so a pair's 32 quant bytes, widened to 16-bit words and
//    masked / shifted, line up with the first and second halves of this order.
//    A last, unpaired block fills the A places; its B places are zero.
//    Each pair also carries 16 int32 corrections, −8·Σ of the four values that
//    meet in one 32-bit lane of the pair's two multiply-adds, so kernels can
//    multiply by the raw nibbles (0..15) and start the lane sums from the
//    correction instead of subtracting 8 from every weight.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ncas/format/quant.hpp"

namespace ncas::cpu {

// Position of element j (0..31) of block b in a token's Q4_0-ordered values.
constexpr int64_t q4_position(int64_t b, int j) {
    return (b / 2) * 64 + (j / 16) * 32 + (b % 2) * 16 + j % 16;
}

// T token rows of quantised activations for one weight type; reused across
// calls, so it allocates only when a larger batch arrives.
class act_rows {
public:
    void quantize(weight_type type, const float* x, int64_t T, int64_t K) {
        type_ = type;
        const int64_t nb = K / quant_block;
        pairs_ = (nb + 1) / 2;
        q_stride_ = type == weight_type::q4_0 ? pairs_ * 64 : nb * quant_block;
        c_stride_ = type == weight_type::q4_0 ? pairs_ * 16 : 0;
        const size_t bytes = size_t(T) * size_t(q_stride_ * 2 + c_stride_ * 4) + 64;
        if (store_.size() < bytes) store_.resize(bytes);
        if (d_.size() < size_t(T)) d_.resize(size_t(T));
        q_ = aligned<int16_t>(0);
        c_ = aligned<int32_t>(size_t(T * q_stride_ * 2));
        for (int64_t t = 0; t < T; ++t) quantize_row(x + t * K, nb, t);
    }

    float d(int64_t t) const { return d_[size_t(t)]; }
    const int16_t* q(int64_t t) const { return q_ + t * q_stride_; }
    const int32_t* corr(int64_t t) const { return c_ + t * c_stride_; }
    weight_type type() const { return type_; }

private:
    void quantize_row(const float* x, int64_t nb, int64_t t) {
        float amax = 0.0f;
        for (int64_t i = 0; i < nb * quant_block; ++i) amax = std::max(amax, std::abs(x[i]));
        const float d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        d_[size_t(t)] = d;
        int16_t* q = q_ + t * q_stride_;
        if (type_ != weight_type::q4_0) {
            for (int64_t i = 0; i < nb * quant_block; ++i) q[i] = int16_t(std::nearbyint(x[i] * id));
            return;
        }
        if (nb % 2) std::memset(q + (pairs_ - 1) * 64, 0, 64 * sizeof(int16_t));  // the unpaired block's B places
        for (int64_t b = 0; b < nb; ++b)
            for (int j = 0; j < quant_block; ++j) q[q4_position(b, j)] = int16_t(std::nearbyint(x[b * quant_block + j] * id));
        int32_t* c = c_ + t * c_stride_;
        for (int64_t p = 0; p < pairs_; ++p, q += 64, c += 16)
            for (int l = 0; l < 16; ++l)  // lane l multiplies words 2l, 2l+1 of both halves
                c[l] = -8 * (int32_t(q[2 * l]) + q[2 * l + 1] + q[32 + 2 * l] + q[32 + 2 * l + 1]);
    }

    template <class T>
    T* aligned(size_t byte_offset) {
        auto base = reinterpret_cast<uintptr_t>(store_.data());
        return reinterpret_cast<T*>((base + 63) / 64 * 64 + byte_offset);
    }

    std::vector<std::byte> store_;
    std::vector<float> d_;
    weight_type type_ = weight_type::q8_0;
    int64_t pairs_ = 0, q_stride_ = 0, c_stride_ = 0;
    int16_t* q_ = nullptr;
    int32_t* c_ = nullptr;
};

}  // namespace ncas::cpu
