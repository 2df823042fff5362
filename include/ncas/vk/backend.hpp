#pragma once
// The run-time backend choice (ncas/backend.hpp: any_session, make_session)
// with its Vulkan branch compiled in: defines NCAS_WITH_VULKAN before
// including ncas/backend.hpp. Link Vulkan (CMake: Vulkan::Vulkan).
//
//   ncas::backend_options b{.name = "vulkan", .vk = {.device = 1}};
//   std::unique_ptr<ncas::any_session> s = ncas::make_session(model, {.n_ctx = 4096}, b);
#ifndef NCAS_WITH_VULKAN
#define NCAS_WITH_VULKAN 1
#endif

#include "ncas/backend.hpp"
#include "ncas/vk/session.hpp"

static_assert(ncas::vulkan_compiled,
              "ncas/backend.hpp was included before ncas/vk/backend.hpp without NCAS_WITH_VULKAN: define "
              "NCAS_WITH_VULKAN for the whole target, or include ncas/vk/backend.hpp first");
