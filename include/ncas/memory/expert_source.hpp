#pragma once
// Where the MoE finds an expert's weights: resident in memory (the model's
// mapping), or an expert arena that streams them within a byte budget
// (get may block until the slabs are loaded).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ncas {

// One expert of one layer: its up [, gate] and down slabs.
struct expert_slabs {
    const std::byte* up = nullptr;
    const std::byte* gate = nullptr;
    const std::byte* down = nullptr;
};

struct expert_provider {
    std::function<expert_slabs(int64_t layer, int32_t expert)> get;
    // Optional: once a layer is routed, the experts it will ask for, in that order
    // (a streaming source starts reading the later ones while the first compute).
    std::function<void(int64_t layer, std::span<const int32_t> experts)> will_use = {};
};

// Told which experts of a layer the next MoE will probably use (expert streaming
// starts reading them while the current layer computes).
using expert_prefetch = std::function<void(int64_t layer, std::span<const int32_t> experts)>;

// What an arena streams: each layer's expert tensors in the file (the model
// describes itself so: model_core converts to its expert_layout).
struct expert_layout {
    std::string path;  // the file the slabs are read from
    int64_t n_layer = 0, n_expert = 0, n_expert_used = 0;
    // Where one expert tensor's slabs are in the file: expert e at offset + e·bytes.
    struct tensor {
        uint64_t offset = 0;
        int64_t bytes = 0;  // 0: the tensor does not exist (gate of a gelu FFN)
        std::string name;
    };
    struct layer {
        tensor up, gate, down;
    };
    std::vector<layer> layers;
};

}  // namespace ncas
