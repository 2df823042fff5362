#pragma once
// The tensor views every layer above the file format shares: a matrix used in
// place (mapped from the file, copied into owned memory, or a slab of an
// expert arena) and the experts of a layer stored as one tensor of E slabs.
// Backend-neutral: the CPU kernels read them directly, the Vulkan backend
// uploads them (vk/weights.hpp).
#include <cstddef>
#include <cstdint>

#include "ncas/format/quant.hpp"

namespace ncas {

// A matrix of `rows` rows of `cols` values stored as `type`.
struct weight_matrix {
    weight_type type = weight_type::f32;
    int64_t rows = 0, cols = 0;
    const std::byte* data = nullptr;

    int64_t row_stride() const { return row_bytes(type, cols); }
    const std::byte* row(int64_t r) const { return data + r * row_stride(); }
    int64_t bytes() const { return rows * row_stride(); }
};

// E experts' matrices of one kind ([rows, cols] each) in one tensor, expert e's
// slab at data + e·slab_bytes(); data is null when the experts stay in the file.
struct expert_tensor {
    weight_type type = weight_type::f32;
    int64_t rows = 0, cols = 0;
    const std::byte* data = nullptr;  // null when experts are streamed
    uint64_t file_offset = 0;         // absolute offset of expert 0
    int64_t slab_bytes() const { return rows * row_bytes(type, cols); }
    const std::byte* slab_of(int64_t e) const { return data ? data + e * slab_bytes() : nullptr; }
    weight_matrix slab(const std::byte* p) const { return {type, rows, cols, p}; }
};

}  // namespace ncas
