#pragma once
// The CPU backend's per-layer key/value cache. Mixture-of-Depths means a layer holds rows
// only for the tokens routed into it, so every layer has its own length and
// stores each row's absolute position (RoPE was applied before storing; the
// position keeps causality exact and lets the cache rewind).
// Types: f32, f16, and the ggml block formats q8_0 and q4_0 (blocks of 32 along the
// row, K quantised after RoPE, V as produced; a row is zero-padded to whole blocks,
// config.hpp's kv_row_values). Attention reads the blocks in place (kernels.hpp).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "ncas/config.hpp"
#include "ncas/error.hpp"

namespace ncas {

class kv_cache {
public:
    kv_cache() = default;
    kv_cache(const model_dims& m, int64_t capacity, weight_type type)
        : type_(type), k_dim_(m.k_dim()), v_dim_(m.v_dim()), k_stride_(kv_row_bytes(type, k_dim_)),
          v_stride_(kv_row_bytes(type, v_dim_)), capacity_(capacity), layers_(size_t(m.n_layer)) {
        check_type(type);
        if (traits_of(type).block_values > 1 && std::max(m.head_k, m.head_v) > kv_quant_max_head)
            throw error("a " + std::string(type_name(type)) + " KV cache takes heads of up to " +
                        std::to_string(kv_quant_max_head) + " values, this model's are " + std::to_string(m.head_k) +
                        " / " + std::to_string(m.head_v) + ": use an f16 cache");
        check_fits_in_memory();
        for (auto& l : layers_) {
            l.k.resize(size_t(capacity * k_stride_));
            l.v.resize(size_t(capacity * v_stride_));
            l.pos.resize(size_t(capacity));
        }
        if (kv_row_values(type, k_dim_) != k_dim_ || kv_row_values(type, v_dim_) != v_dim_)
            pad_.resize(size_t(std::max(kv_row_values(type, k_dim_), kv_row_values(type, v_dim_))));
    }

    // The cache types: f32, f16, q8_0, q4_0.
    static bool is_cache_type(weight_type t) {
        return t == weight_type::f32 || t == weight_type::f16 || t == weight_type::q8_0 || t == weight_type::q4_0;
    }
    static void check_type(weight_type t) {
        if (!is_cache_type(t))
            throw error("KV cache type must be f32, f16, q8_0 or q4_0, not " + std::string(type_name(t)));
    }

    weight_type type() const { return type_; }
    int64_t capacity() const { return capacity_; }
    int64_t rows(int64_t layer) const { return layers_[size_t(layer)].n; }
    int32_t position(int64_t layer, int64_t row) const { return layers_[size_t(layer)].pos[size_t(row)]; }
    const std::byte* k_row(int64_t layer, int64_t row) const {
        return layers_[size_t(layer)].k.data() + row * k_stride_;
    }
    const std::byte* v_row(int64_t layer, int64_t row) const {
        return layers_[size_t(layer)].v.data() + row * v_stride_;
    }
    int64_t n_layer() const { return int64_t(layers_.size()); }
    int64_t k_row_bytes() const { return k_stride_; }  // bytes from one K row to the next
    int64_t v_row_bytes() const { return v_stride_; }
    // Layer `layer` as `rows` rows of raw k and v bytes (k_row_bytes() and v_row_bytes() each) at
    // positions pos (ascending): what a saved state (ncas/state.hpp) holds.
    void set_layer(int64_t layer, int64_t rows, const std::byte* k, const std::byte* v, const int32_t* pos) {
        if (layer < 0 || layer >= n_layer() || rows < 0 || rows > capacity_)
            throw error("KV cache: layer " + std::to_string(layer) + " with " + std::to_string(rows) +
                        " rows does not fit (" + std::to_string(n_layer()) + " layers of " + std::to_string(capacity_) + ")");
        auto& l = layers_[size_t(layer)];
        std::copy(k, k + rows * k_row_bytes(), l.k.begin());
        std::copy(v, v + rows * v_row_bytes(), l.v.begin());
        std::copy(pos, pos + rows, l.pos.begin());
        l.n = rows;
    }
    int64_t bytes() const { return int64_t(layers_.size()) * capacity_ * (k_stride_ + v_stride_); }

    // Appends one row (f32 k of k_dim, v of v_dim) for a token at `pos`; rows arrive in position order.
    void append(int64_t layer, const float* k, const float* v, int32_t pos) {
        auto& l = layers_[size_t(layer)];
        if (l.n == capacity_) throw error("KV cache of layer " + std::to_string(layer) + " is full");
        store(k, k_dim_, l.k.data() + l.n * k_stride_);
        store(v, v_dim_, l.v.data() + l.n * v_stride_);
        l.pos[size_t(l.n++)] = pos;
    }

    // Drops every row at position >= n_past.
    void truncate(int32_t n_past) {
        for (auto& l : layers_)
            l.n = std::lower_bound(l.pos.begin(), l.pos.begin() + l.n, n_past) - l.pos.begin();
    }

private:
    // One row of n values in the cache's type, zero-padded to whole blocks.
    void store(const float* x, int64_t n, std::byte* row) {
        const int64_t padded = kv_row_values(type_, n);
        if (padded == n) return quantize_row(type_, x, row, n);
        std::copy_n(x, n, pad_.begin());
        std::fill(pad_.begin() + n, pad_.begin() + padded, 0.0f);
        quantize_row(type_, pad_.data(), row, padded);
    }

    // A cache larger than the machine's physical memory is refused before it is allocated:
    // a file may claim a context of 2^31 tokens, and a session's default context is the file's.
    void check_fits_in_memory() const {
        const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
        const double need = double(layers_.size()) * double(capacity_) *
                            double(k_stride_ + v_stride_ + int64_t(sizeof(int32_t)));
        const double have = double(pages) * double(page);
        if (pages <= 0 || page <= 0 || need <= have) return;
        char msg[240];
        std::snprintf(msg, sizeof msg, "a KV cache for a context of %lld tokens needs %.1f GiB, more than this machine's "
                      "%.1f GiB of memory: choose a smaller context%s", (long long)capacity_, need / double(1 << 30),
                      have / double(1 << 30), type_ == weight_type::f32 ? " or an f16 cache (q8_0: about half of that)" : "");
        throw error(msg);
    }

    struct layer {
        std::vector<std::byte> k, v;  // [capacity, k_dim], [capacity, v_dim] of type_
        std::vector<int32_t> pos;     // [capacity]
        int64_t n = 0;
    };
    weight_type type_ = weight_type::f32;
    int64_t k_dim_ = 0, v_dim_ = 0, k_stride_ = 0, v_stride_ = 0, capacity_ = 0;
    std::vector<layer> layers_;
    std::vector<float> pad_;  // a row padded to whole blocks (q8_0 / q4_0 with k_dim or v_dim not a multiple of 32)
};

}  // namespace ncas
