#pragma once
// Scalar CPU operations on f32 activations. These are the reference kernels:
// the fast paths are checked against them. Reductions run in a fixed order,
// so a result never depends on how work was split between threads.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "ncas/format/quant.hpp"
#include "ncas/tensor.hpp"

namespace ncas::cpu {

using ncas::weight_matrix;  // ncas/tensor.hpp

// Σ_k w[k]·x[k] over one stored row, dequantising a block of 32 at a time.
inline float dot_row(weight_type t, const std::byte* w, const float* x, int64_t n) {
    float buf[quant_block];
    float sum = 0.0f;
    for (int64_t k0 = 0; k0 < n; k0 += quant_block) {
        const int64_t m = std::min<int64_t>(quant_block, n - k0);
        dequantize_row(t, w + row_bytes(t, k0), buf, m);
        float part = 0.0f;
        for (int64_t j = 0; j < m; ++j) part += buf[j] * x[k0 + j];
        sum += part;
    }
    return sum;
}

inline float dot(const float* a, const float* b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

// y[i] = x[i] / sqrt(mean(x²) + eps) · w[i]
inline void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

// Rotates interleaved pairs (2i, 2i+1) of a d-wide half-head by the angles
// whose cos/sin are given (d/2 of each).
inline void rope(float* v, const float* cos_t, const float* sin_t, int64_t d) {
    for (int64_t i = 0; i < d / 2; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos_t[i] - b * sin_t[i];
        v[2 * i + 1] = a * sin_t[i] + b * cos_t[i];
    }
}

// In-place softmax with max subtraction.
// softmax's first two steps: x[i] = exp(x[i] − max) in place, *max_out = max; returns Σ x[i].
inline float softmax_exp(float* x, int64_t n, float* max_out) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
    *max_out = m;
    return s;
}
inline void softmax(float* x, int64_t n) {
    float m;
    const float inv = 1.0f / softmax_exp(x, n, &m);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

inline float gelu_tanh(float x) {
    constexpr float c = 0.7978845608028654f;  // sqrt(2/π)
    return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace ncas::cpu
