#pragma once
// Rotary position tables: for position p and pair i of a d-wide half-head,
// angle = p · θ^(−2i/d), computed in double once per session.
#include <cmath>
#include <cstdint>
#include <vector>

namespace ncas {

class rope_table {
public:
    rope_table() = default;
    rope_table(int64_t n_ctx, int64_t d, double theta) : half_(d / 2), cos_(size_t(n_ctx * half_)), sin_(cos_.size()) {
        for (int64_t p = 0; p < n_ctx; ++p)
            for (int64_t i = 0; i < half_; ++i) {
                const double a = double(p) * std::pow(theta, -2.0 * double(i) / double(d));
                cos_[size_t(p * half_ + i)] = float(std::cos(a));
                sin_[size_t(p * half_ + i)] = float(std::sin(a));
            }
    }
    const float* cos_at(int64_t pos) const { return cos_.data() + pos * half_; }
    const float* sin_at(int64_t pos) const { return sin_.data() + pos * half_; }

private:
    int64_t half_ = 0;
    std::vector<float> cos_, sin_;  // [n_ctx, d/2]
};

}  // namespace ncas
