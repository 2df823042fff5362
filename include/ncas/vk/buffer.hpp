#pragma once
// Storage buffers: one allocation each, device-local; mapped directly when the
// memory is also host-visible (integrated GPUs, lavapipe, resizable BAR),
// otherwise filled and read through a staging buffer.
#include <algorithm>
#include <cstring>
#include <span>
#include <utility>

#include "ncas/vk/context.hpp"

namespace ncas::vk {

class buffer {
public:
    enum class kind { device, readback };  // readback: host-visible, preferably cached

    buffer() = default;
    buffer(const context& ctx, uint64_t bytes, kind k = kind::device) : ctx_(&ctx), size_(std::max<uint64_t>(bytes, 4)) {
        size_ = (size_ + 3) & ~uint64_t(3);  // shaders read whole words
        auto bi = make<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
        bi.size = size_;
        bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
        bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
        check(vkCreateBuffer(ctx.device(), &bi, nullptr, &buf_), "vkCreateBuffer");
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(ctx.device(), buf_, &req);
        if (ctx.info().max_allocation && req.size > ctx.info().max_allocation) {
            vkDestroyBuffer(ctx.device(), buf_, nullptr);
            throw error("Vulkan: one buffer of " + std::to_string(req.size >> 20) + " MiB exceeds the device's largest allocation of " +
                        std::to_string(ctx.info().max_allocation >> 20) + " MiB");
        }
        constexpr VkMemoryPropertyFlags local = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
        constexpr VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
        const uint32_t type = k == kind::device ? pick(req.memoryTypeBits, {local | host, local})
                                                : pick(req.memoryTypeBits, {host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, host});
        auto ai = make<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
        ai.allocationSize = req.size;
        ai.memoryTypeIndex = type;
        const VkResult r = vkAllocateMemory(ctx.device(), &ai, nullptr, &mem_);
        if (r != VK_SUCCESS) {
            vkDestroyBuffer(ctx.device(), buf_, nullptr);
            buf_ = VK_NULL_HANDLE;
            if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
                throw error("Vulkan: out of device memory allocating " + std::to_string(req.size >> 20) + " MiB on '" +
                            ctx.info().name + "'");
            check(r, "vkAllocateMemory");
        }
        check(vkBindBufferMemory(ctx.device(), buf_, mem_, 0), "vkBindBufferMemory");
        if (k == kind::device && !ctx.options().map_device_memory) host_visible_ = false;
        if (host_visible_) check(vkMapMemory(ctx.device(), mem_, 0, VK_WHOLE_SIZE, 0, &mapped_), "vkMapMemory");
    }
    buffer(buffer&& o) noexcept { *this = std::move(o); }
    buffer& operator=(buffer&& o) noexcept {
        std::swap(ctx_, o.ctx_), std::swap(buf_, o.buf_), std::swap(mem_, o.mem_), std::swap(size_, o.size_);
        std::swap(mapped_, o.mapped_), std::swap(host_visible_, o.host_visible_);
        return *this;
    }
    ~buffer() {
        if (!ctx_) return;
        if (buf_) vkDestroyBuffer(ctx_->device(), buf_, nullptr);
        if (mem_) vkFreeMemory(ctx_->device(), mem_, nullptr);
    }

    VkBuffer handle() const { return buf_; }
    uint64_t size() const { return size_; }
    void* mapped() const { return mapped_; }

    // Copies bytes into the buffer at offset (directly or through a staging buffer).
    void upload(const void* src, uint64_t bytes, uint64_t offset = 0) {
        if (bytes == 0) return;
        if (mapped_) { std::memcpy(static_cast<std::byte*>(mapped_) + offset, src, bytes); return; }
        constexpr uint64_t chunk = 64ull << 20;
        buffer staging(*ctx_, std::min(bytes, chunk), kind::readback);
        for (uint64_t done = 0; done < bytes; done += chunk) {
            const uint64_t n = std::min(chunk, bytes - done);
            std::memcpy(staging.mapped_, static_cast<const std::byte*>(src) + done, n);
            ctx_->submit([&](VkCommandBuffer cmd) {
                VkBufferCopy c{0, offset + done, n};
                vkCmdCopyBuffer(cmd, staging.buf_, buf_, 1, &c);
            });
        }
    }
    template <class T>
    void upload(std::span<const T> v, uint64_t offset = 0) { upload(v.data(), v.size_bytes(), offset); }

    // Reads bytes back (the GPU must be idle: context::submit waits).
    void download(void* dst, uint64_t bytes, uint64_t offset = 0) const {
        if (mapped_) { std::memcpy(dst, static_cast<const std::byte*>(mapped_) + offset, bytes); return; }
        buffer staging(*ctx_, bytes, kind::readback);
        ctx_->submit([&](VkCommandBuffer cmd) {
            VkBufferCopy c{offset, 0, bytes};
            vkCmdCopyBuffer(cmd, buf_, staging.buf_, 1, &c);
        });
        std::memcpy(dst, staging.mapped_, bytes);
    }

private:
    uint32_t pick(uint32_t allowed, std::initializer_list<VkMemoryPropertyFlags> wishes) {
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(ctx_->physical(), &mp);
        for (VkMemoryPropertyFlags want : wishes)
            for (uint32_t i = 0; i < mp.memoryTypeCount; ++i)
                if ((allowed & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) {
                    host_visible_ = mp.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT &&
                                    mp.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
                    return i;
                }
        throw error("Vulkan device '" + ctx_->info().name + "' has no suitable memory type");
    }

    const context* ctx_ = nullptr;
    VkBuffer buf_ = VK_NULL_HANDLE;
    VkDeviceMemory mem_ = VK_NULL_HANDLE;
    uint64_t size_ = 0;
    void* mapped_ = nullptr;
    bool host_visible_ = false;
};

// A range of a buffer, as a descriptor binds it.
struct buffer_view {
    VkBuffer buffer = VK_NULL_HANDLE;
    uint64_t offset = 0, range = VK_WHOLE_SIZE;
    buffer_view() = default;
    buffer_view(const vk::buffer& b) : buffer(b.handle()), offset(0), range(b.size()) {}  // NOLINT: implicit on purpose
    buffer_view(VkBuffer b, uint64_t off, uint64_t r) : buffer(b), offset(off), range(r) {}
    auto operator<=>(const buffer_view&) const = default;
};

}  // namespace ncas::vk
