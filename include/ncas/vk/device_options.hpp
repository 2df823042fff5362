#pragma once
// How a Vulkan session picks and sets up its device. A plain struct with no
// Vulkan types, so ncas/backend.hpp holds it whether or not Vulkan is linked.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ncas::vk {

inline bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::strcmp(v, "0") != 0;
}

struct device_options {
    int device = 0;                   // index into list_devices()
    bool validation = env_flag("NCAS_VK_VALIDATION");  // VK_LAYER_KHRONOS_validation + messenger
    bool allow_subgroups = true;      // subgroup arithmetic where the device has it
    bool allow_small_storage = true;  // 16- and 8-bit storage buffers where present
    uint32_t workgroup_size = 0;      // 0: 64 on AMD (wave64), 32 elsewhere (wave32); else a power of two
    uint32_t subgroup_size = 0;       // 0: request the workgroup's wave size when the device allows it
    std::string pipeline_cache_path;  // empty: $NCAS_VK_PIPELINE_CACHE, else no persistent cache
    bool map_device_memory = true;    // false: always copy through staging buffers, as a discrete GPU without
                                      // host-visible device memory does (tests that path on any device)
};

}  // namespace ncas::vk
