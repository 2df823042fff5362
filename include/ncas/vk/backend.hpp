#pragma once
// The run-time backend choice (ncas/backend.hpp: any_session, make_session)
// with the Vulkan backend registered: a program whose sources include this
// header (once is enough) can make_session("vulkan"). Link Vulkan (CMake:
// Vulkan::Vulkan).
//
//   ncas::backend_options b{.name = "vulkan", .vk = {.device = 1}};
//   std::unique_ptr<ncas::any_session> s = ncas::make_session(model, {.n_ctx = 4096}, b);
#include <memory>

#include "ncas/backend.hpp"
#include "ncas/vk/session.hpp"

namespace ncas::detail {

inline std::unique_ptr<any_session> make_vulkan_session(const model_core& m, session_params p, const vk::device_options& o) {
    return std::make_unique<session_adapter<vk::session>>("vulkan", m, p, o);
}
// Dynamic initialisation of an inline variable: runs once per program, before main.
inline const bool vulkan_registered = (vulkan_session_factory = &make_vulkan_session, true);

}  // namespace ncas::detail
