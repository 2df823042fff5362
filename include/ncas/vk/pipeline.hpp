#pragma once
// Compute pipelines from the embedded SPIR-V: the variant that fits the device
// (subgroup arithmetic, 16/8-bit storage), specialization constants for the
// workgroup size and per-kernel sizes, a requested subgroup size where the
// device allows it, a pipeline cache persisted on disk (validated against
// vendor, device, driver and cache UUID, as ncnn does) and descriptor sets
// cached by the buffers they bind. Shaders are named by the generated
// shader_id, so a dispatch indexes arrays instead of looking up names. recorder
// turns one kernel call into bind + push + dispatch + barrier.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "ncas/vk/buffer.hpp"
#include "ncas/vk/generated/shaders.hpp"

namespace ncas::vk {

// ---- pipeline cache file ---------------------------------------------------------

// The file: this header, then the driver's cache data. A file written by another
// device or driver (or a damaged one) is ignored, not handed to the driver.
struct pipeline_cache_header {
    char magic[8] = {'N', 'C', 'A', 'S', 'V', 'K', 'P', 'C'};
    uint32_t vendor_id = 0, device_id = 0, driver_version = 0, data_size = 0;
    uint8_t uuid[VK_UUID_SIZE] = {};
};

class pipeline_cache {
public:
    pipeline_cache(const context& ctx, std::string path) : ctx_(ctx), path_(std::move(path)) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(ctx.physical(), &p);
        want_.vendor_id = p.vendorID, want_.device_id = p.deviceID, want_.driver_version = p.driverVersion;
        std::memcpy(want_.uuid, p.pipelineCacheUUID, VK_UUID_SIZE);
        std::vector<char> data = path_.empty() ? std::vector<char>{} : read_valid();
        auto ci = make<VkPipelineCacheCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO);
        ci.initialDataSize = data.size();
        ci.pInitialData = data.empty() ? nullptr : data.data();
        check(vkCreatePipelineCache(ctx.device(), &ci, nullptr, &cache_), "vkCreatePipelineCache");
        loaded_ = !data.empty();
    }
    pipeline_cache(const pipeline_cache&) = delete;
    pipeline_cache& operator=(const pipeline_cache&) = delete;
    ~pipeline_cache() {
        try {
            save();
        } catch (...) {  // a cache that cannot be written only costs time next run
        }
        vkDestroyPipelineCache(ctx_.device(), cache_, nullptr);
    }

    VkPipelineCache handle() const { return cache_; }
    bool loaded_from_disk() const { return loaded_; }
    const std::string& path() const { return path_; }

    // Writes the cache (to path.tmp, then renamed over path).
    void save() const {
        if (path_.empty()) return;
        size_t n = 0;
        check(vkGetPipelineCacheData(ctx_.device(), cache_, &n, nullptr), "vkGetPipelineCacheData");
        std::vector<char> data(n);
        check(vkGetPipelineCacheData(ctx_.device(), cache_, &n, data.data()), "vkGetPipelineCacheData");
        pipeline_cache_header h = want_;
        h.data_size = uint32_t(n);
        const std::filesystem::path p(path_);
        if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
        const std::string tmp = path_ + ".tmp";
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            out.write(reinterpret_cast<const char*>(&h), sizeof h);
            out.write(data.data(), std::streamsize(n));
            if (!out) throw error("cannot write the pipeline cache '" + tmp + "'");
        }
        std::filesystem::rename(tmp, path_);
    }

private:
    std::vector<char> read_valid() const {
        std::ifstream in(path_, std::ios::binary);
        pipeline_cache_header h;
        if (!in.read(reinterpret_cast<char*>(&h), sizeof h)) return {};
        if (std::memcmp(h.magic, want_.magic, sizeof h.magic) || h.vendor_id != want_.vendor_id ||
            h.device_id != want_.device_id || h.driver_version != want_.driver_version ||
            std::memcmp(h.uuid, want_.uuid, VK_UUID_SIZE))
            return {};
        std::vector<char> data(h.data_size);
        if (!in.read(data.data(), std::streamsize(data.size()))) return {};
        return data;
    }

    const context& ctx_;
    std::string path_;
    pipeline_cache_header want_;
    VkPipelineCache cache_ = VK_NULL_HANDLE;
    bool loaded_ = false;
};

// ---- pipelines -------------------------------------------------------------------

struct pipeline {
    VkPipeline handle = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    uint32_t n_bindings = 0;
};

// The descriptor-set cache's key: a set layout and the buffers bound at 0 .. n-1.
// Fixed size, so looking one up allocates nothing.
struct descriptor_key {
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    uint32_t n = 0;
    std::array<buffer_view, spirv::max_bindings> views{};
    bool operator==(const descriptor_key&) const = default;
};
struct descriptor_key_hash {
    template <class H>  // a non-dispatchable handle: a pointer on 64-bit targets, a uint64_t elsewhere
    static uint64_t bits(H h) {
        if constexpr (std::is_pointer_v<H>)
            return uint64_t(reinterpret_cast<uintptr_t>(h));
        else
            return uint64_t(h);
    }
    size_t operator()(const descriptor_key& k) const {
        uint64_t h = 0x9e3779b97f4a7c15ull ^ bits(k.set_layout) ^ k.n;
        const auto mix = [&h](uint64_t v) {  // splitmix64's finaliser over the running hash
            h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
            h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
            h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
            h ^= h >> 31;
        };
        for (uint32_t i = 0; i < k.n; ++i)
            mix(bits(k.views[i].buffer)), mix(k.views[i].offset), mix(k.views[i].range);
        return size_t(h);
    }
};

// Every pipeline of a context: per shader (shader_id indexes arrays, no names are
// looked up) the module of the variant that fits the device, chosen once, and the
// pipelines made from it, one per (workgroup size, specialization constants),
// created on first use and found again by a scan of the shader's few entries.
// Descriptor sets are cached by the buffers they bind in a hash map keyed by
// value (no allocation per lookup).
class pipelines {
public:
    explicit pipelines(const context& ctx)
        : ctx_(ctx), cache_(ctx, !ctx.options().pipeline_cache_path.empty() ? ctx.options().pipeline_cache_path
                                 : std::getenv("NCAS_VK_PIPELINE_CACHE") ? std::getenv("NCAS_VK_PIPELINE_CACHE")
                                                                           : "") {}
    pipelines(const pipelines&) = delete;
    pipelines& operator=(const pipelines&) = delete;
    ~pipelines() {
        const VkDevice dev = ctx_.device();
        for (const auto& per_shader : variants_)
            for (const variant& v : per_shader) vkDestroyPipeline(dev, v.p.handle, nullptr);
        for (const auto& [k, l] : layouts_) vkDestroyPipelineLayout(dev, l.second, nullptr), vkDestroyDescriptorSetLayout(dev, l.first, nullptr);
        for (VkShaderModule m : modules_)
            if (m) vkDestroyShaderModule(dev, m, nullptr);
        for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(dev, p, nullptr);
    }

    const context& ctx() const { return ctx_; }
    const pipeline_cache& cache() const { return cache_; }
    size_t size() const {
        size_t n = 0;
        for (const auto& per_shader : variants_) n += per_shader.size();
        return n;
    }

    // The pipeline of `shader` with specialization constants {wg, spec...} (ids 0, 1, ...).
    pipeline get(shader_id shader, uint32_t wg, std::span<const uint32_t> spec) {
        const spirv::shader_info& info = spirv::info(shader);
        if (spec.size() != info.spec_constants)
            throw error("Vulkan shader '" + std::string(info.name) + "' takes " + std::to_string(info.spec_constants) +
                        " specialization constants, got " + std::to_string(spec.size()));
        std::vector<variant>& per_shader = variants_[size_t(shader)];
        for (const variant& v : per_shader)
            if (v.wg == wg && std::equal(spec.begin(), spec.end(), v.spec.begin())) return v.p;
        variant v{wg, {}, create(shader, wg, spec)};
        std::copy(spec.begin(), spec.end(), v.spec.begin());
        per_shader.push_back(v);
        return v.p;
    }

    // A descriptor set binding `views` to bindings 0.. of the pipeline, made once per distinct set of buffers.
    VkDescriptorSet descriptors(const pipeline& p, std::span<const buffer_view> views) {
        if (views.size() != p.n_bindings || views.size() > spirv::max_bindings)
            throw error("Vulkan kernel binds " + std::to_string(views.size()) + " buffers, its layout has " +
                        std::to_string(p.n_bindings));
        descriptor_key key{p.set_layout, uint32_t(views.size()), {}};
        std::copy(views.begin(), views.end(), key.views.begin());
        if (auto it = sets_.find(key); it != sets_.end()) return it->second;
        VkDescriptorSet set = allocate(p.set_layout);
        std::array<VkDescriptorBufferInfo, spirv::max_bindings> infos;
        std::array<VkWriteDescriptorSet, spirv::max_bindings> writes;
        for (uint32_t i = 0; i < views.size(); ++i) {
            infos[i] = {views[i].buffer, views[i].offset, views[i].range};
            writes[i] = make<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
            writes[i].dstSet = set, writes[i].dstBinding = i, writes[i].descriptorCount = 1;
            writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            writes[i].pBufferInfo = &infos[i];
        }
        vkUpdateDescriptorSets(ctx_.device(), uint32_t(views.size()), writes.data(), 0, nullptr);
        sets_.emplace(key, set);
        return set;
    }

    // Frees every cached descriptor set. Needed before a buffer they bind is destroyed
    // and another created (a new buffer may get the old handle); a session never does this.
    void reset_descriptors() {
        for (VkDescriptorPool p : pools_) vkResetDescriptorPool(ctx_.device(), p, 0);
        sets_.clear();
    }

private:
    struct variant {
        uint32_t wg = 0;
        std::array<uint32_t, spirv::max_spec_constants> spec{};
        pipeline p;
    };

    pipeline create(shader_id shader, uint32_t wg, std::span<const uint32_t> spec) {
        const spirv::shader_info& info = spirv::info(shader);
        const auto [set_layout, layout] = layout_for(info.bindings, info.push_bytes);
        std::array<uint32_t, 1 + spirv::max_spec_constants> values{wg};
        std::copy(spec.begin(), spec.end(), values.begin() + 1);
        std::array<VkSpecializationMapEntry, 1 + spirv::max_spec_constants> entries;
        const uint32_t n_values = uint32_t(1 + spec.size());
        for (uint32_t i = 0; i < n_values; ++i) entries[i] = {i, i * 4, 4};
        VkSpecializationInfo si{n_values, entries.data(), n_values * 4, values.data()};

        auto sg = make<VkPipelineShaderStageRequiredSubgroupSizeCreateInfoEXT>(
            VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO_EXT);
        sg.requiredSubgroupSize = ctx_.required_subgroup_size();
        auto ci = make<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
        ci.stage = make<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
        ci.stage.pNext = sg.requiredSubgroupSize && wg >= sg.requiredSubgroupSize ? &sg : nullptr;
        ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
        ci.stage.module = module(shader);
        ci.stage.pName = "main";
        ci.stage.pSpecializationInfo = &si;
        ci.layout = layout;
        pipeline p{VK_NULL_HANDLE, layout, set_layout, info.bindings};
        const VkResult r = vkCreateComputePipelines(ctx_.device(), cache_.handle(), 1, &ci, nullptr, &p.handle);
        if (r != VK_SUCCESS) {
            std::string what = "vkCreateComputePipelines(" + std::string(info.name) + "/" + std::to_string(wg);
            for (uint32_t v : spec) what += "," + std::to_string(v);
            check(r, (what + ")").c_str());
        }
        return p;
    }

    // The shader's module: the variant using the most of what the device allows, made on first use.
    VkShaderModule module(shader_id shader) {
        VkShaderModule& m = modules_[size_t(shader)];
        if (m) return m;
        const bool sg = ctx_.use_subgroups(), ss = ctx_.use_small_storage();
        const spirv::shader_code* best = nullptr;
        for (const auto& c : spirv::all_shaders)
            if (c.id == shader && (!c.subgroup || sg) && (!c.small_storage || ss) &&
                (!best || int(c.subgroup) + int(c.small_storage) > int(best->subgroup) + int(best->small_storage)))
                best = &c;
        if (!best) throw error("no SPIR-V for shader '" + std::string(spirv::info(shader).name) + "'");
        auto ci = make<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
        ci.codeSize = best->code.size_bytes();
        ci.pCode = best->code.data();
        check(vkCreateShaderModule(ctx_.device(), &ci, nullptr, &m), "vkCreateShaderModule");
        return m;
    }

    // Shaders with the same bindings and push-constant size share a layout, so their descriptor sets are shared too.
    std::pair<VkDescriptorSetLayout, VkPipelineLayout> layout_for(uint32_t n_bindings, uint32_t push_bytes) {
        const auto key = std::make_pair(n_bindings, push_bytes);
        if (auto it = layouts_.find(key); it != layouts_.end()) return it->second;
        std::vector<VkDescriptorSetLayoutBinding> b(n_bindings);
        for (uint32_t i = 0; i < n_bindings; ++i)
            b[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
        auto di = make<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
        di.bindingCount = n_bindings;
        di.pBindings = b.data();
        VkDescriptorSetLayout set_layout;
        check(vkCreateDescriptorSetLayout(ctx_.device(), &di, nullptr, &set_layout), "vkCreateDescriptorSetLayout");
        VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
        auto li = make<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
        li.setLayoutCount = 1;
        li.pSetLayouts = &set_layout;
        li.pushConstantRangeCount = 1;
        li.pPushConstantRanges = &range;
        VkPipelineLayout layout;
        check(vkCreatePipelineLayout(ctx_.device(), &li, nullptr, &layout), "vkCreatePipelineLayout");
        return layouts_.emplace(key, std::make_pair(set_layout, layout)).first->second;
    }

    VkDescriptorSet allocate(VkDescriptorSetLayout layout) {
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (!pools_.empty()) {
                auto ai = make<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
                ai.descriptorPool = pools_.back();
                ai.descriptorSetCount = 1;
                ai.pSetLayouts = &layout;
                VkDescriptorSet set;
                const VkResult r = vkAllocateDescriptorSets(ctx_.device(), &ai, &set);
                if (r == VK_SUCCESS) return set;
                if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) check(r, "vkAllocateDescriptorSets");
            }
            constexpr uint32_t sets = 1024;
            VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, sets * 8};
            auto pi = make<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
            pi.maxSets = sets;
            pi.poolSizeCount = 1;
            pi.pPoolSizes = &size;
            VkDescriptorPool pool;
            check(vkCreateDescriptorPool(ctx_.device(), &pi, nullptr, &pool), "vkCreateDescriptorPool");
            pools_.push_back(pool);
        }
        throw error("Vulkan: cannot allocate a descriptor set");
    }

    const context& ctx_;
    pipeline_cache cache_;
    std::array<VkShaderModule, shader_count> modules_{};
    std::array<std::vector<variant>, shader_count> variants_;
    std::map<std::pair<uint32_t, uint32_t>, std::pair<VkDescriptorSetLayout, VkPipelineLayout>> layouts_;  // made with a pipeline only
    std::unordered_map<descriptor_key, VkDescriptorSet, descriptor_key_hash> sets_;
    std::vector<VkDescriptorPool> pools_;
};

// ---- recording -------------------------------------------------------------------

// Records kernel calls into one command buffer: each dispatch is followed by a
// compute-to-compute memory barrier unless the caller batches independent ones.
class recorder {
public:
    recorder(pipelines& p, VkCommandBuffer cmd) : p_(p), cmd_(cmd) {}
    VkCommandBuffer command_buffer() const { return cmd_; }
    pipelines& kernels() const { return p_; }

    // Dispatches `S` over groups (x, y, z), specialised with spec (ids 1..) and workgroup size wg (0: the
    // context's). The push constants must be S's struct and views one buffer per binding of S (both checked
    // when compiling, against the generated registry); no string is built and no name looked up.
    template <shader_id S, size_t N>
    void dispatch(const std::array<uint32_t, spirv::info(S).spec_constants>& spec, const buffer_view (&views)[N],
                  const push_constants_of<S>& pc, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1, uint32_t wg = 0) {
        static_assert(N == spirv::info(S).bindings, "the shader's bindings and the buffers passed differ in number");
        if (gx == 0 || gy == 0 || gz == 0) return;
        const pipeline pl = p_.get(S, wg ? wg : p_.ctx().workgroup_size(), spec);
        const VkDescriptorSet set = p_.descriptors(pl, views);
        vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pl.handle);
        vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pl.layout, 0, 1, &set, 0, nullptr);
        vkCmdPushConstants(cmd_, pl.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof pc, &pc);
        vkCmdDispatch(cmd_, gx, gy, gz);
        if (!batching_) barrier();
    }

    // Dispatches inside fn() are independent: one barrier after all of them.
    template <class F>
    void independent(F&& fn) {
        batching_ = true;
        fn();
        batching_ = false;
        barrier();
    }

    void barrier() const {
        auto b = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
        b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
        b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT;
        vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &b, 0, nullptr, 0,
                             nullptr);
    }

private:
    pipelines& p_;
    VkCommandBuffer cmd_;
    bool batching_ = false;
};

inline constexpr uint32_t div_up(uint64_t a, uint64_t b) { return uint32_t((a + b - 1) / b); }

}  // namespace ncas::vk
