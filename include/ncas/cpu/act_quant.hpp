#pragma once
// Activations quantised to 16-bit integers for the integer dot products of the
// Q8_0 / Q4_0 kernels: one scale per row, d = max|x| / 32767, q = round(x / d),
// so the error is at most d/2 per value (1.5e-5 of the row's largest value).
// One scale per row lets a kernel apply the weight block's scale alone inside
// its loop and the activation scale once per row. 8-bit activations with a scale
// per block of 32, as ggml uses, measured 2.4e-2·max|logit| on the tiny Q8_0
// model: outside the SPEC's 2e-2 bound, so ncas keeps 16 bits.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ncas/format/quant.hpp"

namespace ncas::cpu {

struct act_block {
    int16_t q[quant_block];
    float d;  // the row's scale (the same in every block of a row)
};
static_assert(sizeof(act_block) == 68);

inline void quantize_act(const float* x, int64_t n, act_block* out) {
    float amax = 0.0f;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::abs(x[i]));
    const float d = amax / 32767.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int64_t b = 0; b < n / quant_block; ++b, x += quant_block) {
        for (int j = 0; j < quant_block; ++j) out[b].q[j] = int16_t(std::nearbyint(x[j] * id));
        out[b].d = d;
    }
}

}  // namespace ncas::cpu
