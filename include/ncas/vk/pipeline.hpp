#pragma once
// Compute pipelines from the embedded SPIR-V: the variant that fits the device
// (subgroup arithmetic, 16/8-bit storage), specialization constants for the
// workgroup size and per-kernel sizes, a requested subgroup size where the
// device allows it, a pipeline cache persisted on disk (validated against
// vendor, device, driver and cache UUID, as ncnn does) and descriptor sets
// cached by the buffers they bind. recorder turns one kernel call into
// bind + push + dispatch + barrier.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "ncas/vk/buffer.hpp"
#include "ncas/vk/generated/shaders.hpp"
#include "ncas/vk/push_constants.hpp"

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
        for (auto& [k, p] : pipelines_) vkDestroyPipeline(dev, p.handle, nullptr);
        for (auto& [k, l] : layouts_) vkDestroyPipelineLayout(dev, l.second, nullptr), vkDestroyDescriptorSetLayout(dev, l.first, nullptr);
        for (auto& [k, m] : modules_) vkDestroyShaderModule(dev, m, nullptr);
        for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(dev, p, nullptr);
    }

    const context& ctx() const { return ctx_; }
    const pipeline_cache& cache() const { return cache_; }
    size_t size() const { return pipelines_.size(); }

    // The pipeline of `shader` with specialization constants {wg, spec...} (ids 0, 1, ...).
    const pipeline& get(std::string_view shader, uint32_t wg, std::span<const uint32_t> spec, uint32_t n_bindings,
                        uint32_t push_bytes) {
        std::string key(shader);
        key += '/' + std::to_string(wg);
        for (uint32_t v : spec) key += ',' + std::to_string(v);
        if (auto it = pipelines_.find(key); it != pipelines_.end()) return it->second;

        const auto [set_layout, layout] = layout_for(n_bindings, push_bytes);
        std::vector<uint32_t> values{wg};
        values.insert(values.end(), spec.begin(), spec.end());
        std::vector<VkSpecializationMapEntry> entries;
        for (uint32_t i = 0; i < values.size(); ++i) entries.push_back({i, i * 4, 4});
        VkSpecializationInfo si{uint32_t(entries.size()), entries.data(), values.size() * 4, values.data()};

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
        pipeline p{VK_NULL_HANDLE, layout, set_layout, n_bindings};
        check(vkCreateComputePipelines(ctx_.device(), cache_.handle(), 1, &ci, nullptr, &p.handle),
              ("vkCreateComputePipelines(" + key + ")").c_str());
        return pipelines_.emplace(key, p).first->second;
    }

    // A descriptor set binding `views` to bindings 0.. of the pipeline, made once per distinct set of buffers.
    VkDescriptorSet descriptors(const pipeline& p, std::span<const buffer_view> views) {
        if (views.size() != p.n_bindings) throw error("Vulkan kernel binds " + std::to_string(views.size()) +
                                                      " buffers, its layout has " + std::to_string(p.n_bindings));
        auto key = std::make_pair(p.set_layout, std::vector<buffer_view>(views.begin(), views.end()));
        if (auto it = sets_.find(key); it != sets_.end()) return it->second;
        VkDescriptorSet set = allocate(p.set_layout);
        std::vector<VkDescriptorBufferInfo> infos;
        std::vector<VkWriteDescriptorSet> writes;
        for (const buffer_view& v : views) infos.push_back({v.buffer, v.offset, v.range});
        for (uint32_t i = 0; i < views.size(); ++i) {
            auto w = make<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
            w.dstSet = set, w.dstBinding = i, w.descriptorCount = 1;
            w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            w.pBufferInfo = &infos[i];
            writes.push_back(w);
        }
        vkUpdateDescriptorSets(ctx_.device(), uint32_t(writes.size()), writes.data(), 0, nullptr);
        return sets_.emplace(std::move(key), set).first->second;
    }

    // Frees every cached descriptor set. Needed before a buffer they bind is destroyed
    // and another created (a new buffer may get the old handle); a session never does this.
    void reset_descriptors() {
        for (VkDescriptorPool p : pools_) vkResetDescriptorPool(ctx_.device(), p, 0);
        sets_.clear();
    }

private:
    VkShaderModule module(std::string_view shader) {
        const bool sg = ctx_.use_subgroups(), ss = ctx_.use_small_storage();
        const spirv::shader_code* best = nullptr;  // the variant using the most of what the device allows
        for (const auto& c : spirv::all_shaders)
            if (c.name == shader && (!c.subgroup || sg) && (!c.small_storage || ss) &&
                (!best || int(c.subgroup) + int(c.small_storage) > int(best->subgroup) + int(best->small_storage)))
                best = &c;
        if (!best) throw error("no SPIR-V for shader '" + std::string(shader) + "'");
        const std::string key = std::string(shader) + (best->subgroup ? "_sg" : "") + (best->small_storage ? "_ss" : "");
        if (auto it = modules_.find(key); it != modules_.end()) return it->second;
        auto ci = make<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
        ci.codeSize = best->code.size_bytes();
        ci.pCode = best->code.data();
        VkShaderModule m;
        check(vkCreateShaderModule(ctx_.device(), &ci, nullptr, &m), "vkCreateShaderModule");
        return modules_.emplace(key, m).first->second;
    }

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
    std::map<std::string, VkShaderModule> modules_;
    std::map<std::pair<uint32_t, uint32_t>, std::pair<VkDescriptorSetLayout, VkPipelineLayout>> layouts_;
    std::map<std::string, pipeline> pipelines_;
    std::map<std::pair<VkDescriptorSetLayout, std::vector<buffer_view>>, VkDescriptorSet> sets_;
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

    // Dispatches `shader` over groups (x, y, z), specialised with spec (ids 1..) and workgroup size wg (0: the context's).
    template <class PC>
    void dispatch(std::string_view shader, std::initializer_list<uint32_t> spec, std::initializer_list<buffer_view> views,
                  const PC& pc, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1, uint32_t wg = 0) {
        if (gx == 0 || gy == 0 || gz == 0) return;
        const pipeline& pl = p_.get(shader, wg ? wg : p_.ctx().workgroup_size(), std::span(spec.begin(), spec.size()),
                                    uint32_t(views.size()), uint32_t(sizeof(PC)));
        const VkDescriptorSet set = p_.descriptors(pl, std::span(views.begin(), views.size()));
        vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pl.handle);
        vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pl.layout, 0, 1, &set, 0, nullptr);
        vkCmdPushConstants(cmd_, pl.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(PC), &pc);
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
