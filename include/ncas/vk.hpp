#pragma once
// ncas Vulkan backend: include this (not part of ncas.hpp, so the core library
// builds without Vulkan headers) and link Vulkan (CMake: find_package(Vulkan),
// Vulkan::Vulkan). The SPIR-V is embedded; no shader compiler is needed.
#include "ncas/ncas.hpp"
#include "ncas/vk/backend.hpp"
#include "ncas/vk/bandwidth.hpp"
#include "ncas/vk/context.hpp"
#include "ncas/vk/session.hpp"
