#pragma once
// The Vulkan instance, one device and its compute queue: device listing and
// selection, the features the kernels can use (subgroup arithmetic, 16/8-bit
// storage, subgroup size control), the Khronos validation layer with a
// messenger that records every warning and error, and one-shot submission.
#include <vulkan/vulkan.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ncas/error.hpp"
#include "ncas/vk/device_options.hpp"

namespace ncas::vk {

inline void check(VkResult r, const char* what) {
    if (r != VK_SUCCESS) throw error(std::string("Vulkan: ") + what + " failed (VkResult " + std::to_string(int(r)) + ")");
}

// A Vulkan structure with its type (and chain) set and every other member zero.
template <class T>
T make(VkStructureType type, const void* next = nullptr) {
    T v{};
    v.sType = type;
    v.pNext = const_cast<void*>(next);
    return v;
}

// What a device offers, as list_devices() reports it.
struct device_info {
    int index = 0;
    std::string name;
    uint32_t vendor_id = 0, device_id = 0, driver_version = 0, api_version = 0;
    VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
    uint64_t device_local_bytes = 0;   // the largest device-local heap
    uint32_t subgroup_size = 0;
    bool subgroup_arithmetic = false;  // compute stage, arithmetic operations
    bool size_control = false;         // VK_EXT_subgroup_size_control usable for compute
    uint32_t min_subgroup_size = 0, max_subgroup_size = 0;
    bool storage16 = false, storage8 = false;
    bool memory_budget = false;        // VK_EXT_memory_budget
    uint32_t max_storage_range = 0, min_storage_alignment = 0;
    uint64_t max_allocation = 0;
    float timestamp_period = 0;        // nanoseconds per timestamp tick
    bool timestamps = false;           // timestamps in compute queues (timestampComputeAndGraphics)
};

namespace detail {

inline bool has_extension(VkPhysicalDevice pd, const char* name) {
    uint32_t n = 0;
    vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
    std::vector<VkExtensionProperties> ext(n);
    vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, ext.data());
    for (const auto& e : ext)
        if (std::strcmp(e.extensionName, name) == 0) return true;
    return false;
}

// instance_api: the version the instance was created with; the device is used at the lower of the two.
inline device_info describe(VkPhysicalDevice pd, int index, uint32_t instance_api) {
    device_info d;
    d.index = index;
    auto sg = make<VkPhysicalDeviceSubgroupProperties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
    auto sc = make<VkPhysicalDeviceSubgroupSizeControlPropertiesEXT>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES_EXT);
    auto props = make<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &sg);
    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(pd, &base);
    const uint32_t api = std::min(base.apiVersion, instance_api);
    const bool has_size_control = api >= VK_API_VERSION_1_3 || has_extension(pd, "VK_EXT_subgroup_size_control");
    if (has_size_control) sg.pNext = &sc;
    vkGetPhysicalDeviceProperties2(pd, &props);
    const VkPhysicalDeviceProperties& p = props.properties;
    d.name = p.deviceName;
    d.vendor_id = p.vendorID, d.device_id = p.deviceID, d.driver_version = p.driverVersion, d.api_version = api;
    d.type = p.deviceType;
    d.max_storage_range = p.limits.maxStorageBufferRange;
    d.timestamp_period = p.limits.timestampPeriod;
    d.timestamps = p.limits.timestampComputeAndGraphics;
    d.min_storage_alignment = uint32_t(p.limits.minStorageBufferOffsetAlignment);
    d.subgroup_size = sg.subgroupSize;
    d.subgroup_arithmetic = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                            (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                            (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
                            std::has_single_bit(sg.subgroupSize);  // as ncnn: distrust a size not a power of two

    auto s16 = make<VkPhysicalDevice16BitStorageFeatures>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
    auto s8 = make<VkPhysicalDevice8BitStorageFeaturesKHR>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR);
    auto scf = make<VkPhysicalDeviceSubgroupSizeControlFeaturesEXT>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT);
    auto f = make<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &s16);
    const bool has8 = api >= VK_API_VERSION_1_2 || has_extension(pd, "VK_KHR_8bit_storage");
    void** tail = &s16.pNext;
    if (has8) *tail = &s8, tail = &s8.pNext;
    if (has_size_control) *tail = &scf;
    vkGetPhysicalDeviceFeatures2(pd, &f);
    d.storage16 = s16.storageBuffer16BitAccess;
    d.storage8 = has8 && s8.storageBuffer8BitAccess;
    d.size_control = has_size_control && scf.subgroupSizeControl && (sc.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT);
    d.min_subgroup_size = d.size_control ? sc.minSubgroupSize : 0;
    d.max_subgroup_size = d.size_control ? sc.maxSubgroupSize : 0;
    d.memory_budget = has_extension(pd, "VK_EXT_memory_budget");

    VkPhysicalDeviceMemoryProperties mem;
    vkGetPhysicalDeviceMemoryProperties(pd, &mem);
    for (uint32_t i = 0; i < mem.memoryHeapCount; ++i)
        if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            d.device_local_bytes = std::max<uint64_t>(d.device_local_bytes, mem.memoryHeaps[i].size);
    auto m3 = make<VkPhysicalDeviceMaintenance3Properties>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES);
    auto p2 = make<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &m3);
    vkGetPhysicalDeviceProperties2(pd, &p2);
    d.max_allocation = m3.maxMemoryAllocationSize;
    return d;
}

// Collects validation messages of warning or error severity.
struct message_log {
    std::mutex mutex;
    std::vector<std::string> messages;
};

inline VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                 VkDebugUtilsMessageTypeFlagsEXT, const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                 void* user) {
    if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        auto* log = static_cast<message_log*>(user);
        std::lock_guard lock(log->mutex);
        log->messages.emplace_back(data->pMessage ? data->pMessage : "(no message)");
        std::fprintf(stderr, "ncas vk validation: %s\n", log->messages.back().c_str());
    }
    return VK_FALSE;
}

// The instance, with the validation layer and a messenger when asked for.
class instance {
public:
    explicit instance(bool validation) : log_(std::make_unique<message_log>()) {
        auto app = make<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
        app.pApplicationName = "ncas";
        app.pEngineName = "ncas";
        uint32_t loader = VK_API_VERSION_1_0;
        vkEnumerateInstanceVersion(&loader);
        api_ = app.apiVersion = std::min<uint32_t>(loader, VK_API_VERSION_1_3);
        std::vector<const char*> layers, extensions;
        auto dbg = make<VkDebugUtilsMessengerCreateInfoEXT>(VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
        dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
        dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
        dbg.pfnUserCallback = on_message;
        dbg.pUserData = log_.get();
        auto ci = make<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
        ci.pApplicationInfo = &app;
        if (validation) {
            if (!has_layer("VK_LAYER_KHRONOS_validation"))
                throw error("Vulkan validation was requested but VK_LAYER_KHRONOS_validation is not installed "
                            "(Debian: vulkan-validationlayers)");
            layers.push_back("VK_LAYER_KHRONOS_validation");
            extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
            ci.pNext = &dbg;  // also covers instance creation and destruction
        }
        ci.enabledLayerCount = uint32_t(layers.size());
        ci.ppEnabledLayerNames = layers.data();
        ci.enabledExtensionCount = uint32_t(extensions.size());
        ci.ppEnabledExtensionNames = extensions.data();
        const VkResult r = vkCreateInstance(&ci, nullptr, &handle_);
        if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
            throw error("Vulkan: no driver is installed (vkCreateInstance returned " + std::to_string(int(r)) + ")");
        check(r, "vkCreateInstance");
        if (validation) {
            auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
                vkGetInstanceProcAddr(handle_, "vkCreateDebugUtilsMessengerEXT"));
            if (!create) throw error("Vulkan: VK_EXT_debug_utils has no vkCreateDebugUtilsMessengerEXT");
            check(create(handle_, &dbg, nullptr, &messenger_), "vkCreateDebugUtilsMessengerEXT");
        }
    }
    instance(const instance&) = delete;
    instance& operator=(const instance&) = delete;
    ~instance() {
        if (messenger_) {
            auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
                vkGetInstanceProcAddr(handle_, "vkDestroyDebugUtilsMessengerEXT"));
            if (destroy) destroy(handle_, messenger_, nullptr);
        }
        vkDestroyInstance(handle_, nullptr);
    }

    VkInstance handle() const { return handle_; }
    uint32_t api_version() const { return api_; }
    message_log& log() const { return *log_; }

    std::vector<VkPhysicalDevice> physical_devices() const {
        uint32_t n = 0;
        check(vkEnumeratePhysicalDevices(handle_, &n, nullptr), "vkEnumeratePhysicalDevices");
        std::vector<VkPhysicalDevice> pds(n);
        check(vkEnumeratePhysicalDevices(handle_, &n, pds.data()), "vkEnumeratePhysicalDevices");
        pds.resize(n);
        return pds;
    }

private:
    static bool has_layer(const char* name) {
        uint32_t n = 0;
        vkEnumerateInstanceLayerProperties(&n, nullptr);
        std::vector<VkLayerProperties> layers(n);
        vkEnumerateInstanceLayerProperties(&n, layers.data());
        for (const auto& l : layers)
            if (std::strcmp(l.layerName, name) == 0) return true;
        return false;
    }

    std::unique_ptr<message_log> log_;  // stable address for the callback
    VkInstance handle_ = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    uint32_t api_ = VK_API_VERSION_1_0;
};

}  // namespace detail

// One line for a device listing (the CLI's --list-devices).
inline std::string summary(const device_info& d) {
    const char* type = d.type == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU     ? "discrete"
                       : d.type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ? "integrated"
                       : d.type == VK_PHYSICAL_DEVICE_TYPE_CPU            ? "cpu"
                                                                          : "other";
    return std::to_string(d.index) + ": " + d.name + " (" + type + ", " + std::to_string(d.device_local_bytes >> 20) +
           " MiB, Vulkan " + std::to_string(VK_API_VERSION_MAJOR(d.api_version)) + "." +
           std::to_string(VK_API_VERSION_MINOR(d.api_version)) + ", subgroup " + std::to_string(d.subgroup_size) +
           (d.subgroup_arithmetic ? " arithmetic" : "") + (d.storage16 && d.storage8 ? ", 16/8-bit storage" : "") + ")";
}

// Every Vulkan device with a compute queue, in the order device indices use.
// Throws when no Vulkan driver is installed.
inline std::vector<device_info> list_devices() {
    detail::instance inst(false);
    std::vector<device_info> out;
    int i = 0;
    for (VkPhysicalDevice pd : inst.physical_devices()) out.push_back(detail::describe(pd, i++, inst.api_version()));
    return out;
}

// True when a Vulkan driver with at least one device is present.
inline bool available() {
    try {
        return !list_devices().empty();
    } catch (const error&) {
        return false;
    }
}

// The instance, the chosen device, its compute queue and what the kernels may use.
class context {
public:
    explicit context(device_options o = {}) : opt_(std::move(o)), inst_(opt_.validation) {
        const auto pds = inst_.physical_devices();
        if (pds.empty()) throw error("Vulkan: the driver reports no devices");
        if (opt_.device < 0 || opt_.device >= int(pds.size()))
            throw error("Vulkan device " + std::to_string(opt_.device) + " does not exist (" + std::to_string(pds.size()) +
                        " device" + (pds.size() == 1 ? "" : "s") + ": 0.." + std::to_string(pds.size() - 1) + ")");
        pd_ = pds[size_t(opt_.device)];
        info_ = detail::describe(pd_, opt_.device, inst_.api_version());
        if (info_.api_version < VK_API_VERSION_1_1) throw error("Vulkan device '" + info_.name + "' is older than Vulkan 1.1");
        choose_features();
        create_device();
    }
    context(const context&) = delete;
    context& operator=(const context&) = delete;
    ~context() {
        if (pool_) vkDestroyCommandPool(device_, pool_, nullptr);
        if (fence_) vkDestroyFence(device_, fence_, nullptr);
        if (device_) vkDestroyDevice(device_, nullptr);
    }

    VkDevice device() const { return device_; }
    VkPhysicalDevice physical() const { return pd_; }
    const device_info& info() const { return info_; }
    const device_options& options() const { return opt_; }

    // What the kernels use on this device.
    bool use_subgroups() const { return use_subgroups_; }
    bool use_small_storage() const { return use_small_storage_; }
    uint32_t workgroup_size() const { return wg_; }
    uint32_t required_subgroup_size() const { return required_sg_; }  // 0: not requested
    // Valid bits of a timestamp written on the compute queue; 0: the queue has no timestamps.
    uint32_t timestamp_bits() const { return info_.timestamps ? timestamp_bits_ : 0; }

    // Validation messages (warning and error) since creation; empty without validation.
    std::vector<std::string> validation_messages() const {
        std::lock_guard lock(inst_.log().mutex);
        return inst_.log().messages;
    }
    void clear_validation_messages() {
        std::lock_guard lock(inst_.log().mutex);
        inst_.log().messages.clear();
    }

    // Bytes of device memory this process may still use: the memory budget when
    // the device reports one, else the largest device-local heap.
    uint64_t memory_available() const {
        auto budget = make<VkPhysicalDeviceMemoryBudgetPropertiesEXT>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT);
        auto mp = make<VkPhysicalDeviceMemoryProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2);
        if (budget_enabled_) mp.pNext = &budget;
        vkGetPhysicalDeviceMemoryProperties2(pd_, &mp);
        uint64_t best = 0;
        for (uint32_t i = 0; i < mp.memoryProperties.memoryHeapCount; ++i) {
            if (!(mp.memoryProperties.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)) continue;
            const uint64_t have = budget_enabled_ ? budget.heapBudget[i] - std::min(budget.heapBudget[i], budget.heapUsage[i])
                                                  : mp.memoryProperties.memoryHeaps[i].size;
            best = std::max(best, have);
        }
        return best;
    }

    // Records with fn(cmd), submits and waits.
    template <class F>
    void submit(F&& fn) const {
        auto ai = make<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
        ai.commandPool = pool_;
        ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        ai.commandBufferCount = 1;
        VkCommandBuffer cmd;
        check(vkAllocateCommandBuffers(device_, &ai, &cmd), "vkAllocateCommandBuffers");
        struct release {
            const context* c;
            VkCommandBuffer cmd;
            ~release() { vkFreeCommandBuffers(c->device_, c->pool_, 1, &cmd); }
        } guard{this, cmd};
        begin(cmd);
        fn(cmd);
        run(cmd);
    }

    // Inside submit(fn): runs what fn has recorded into cmd so far, waits, and
    // begins cmd again for the rest. Expert streaming splits a forward pass
    // this way where the host must see the routing before recording on.
    void flush(VkCommandBuffer cmd) const {
        run(cmd);
        begin(cmd);
    }

private:
    static void begin(VkCommandBuffer cmd) {
        auto bi = make<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
        bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
        check(vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
    }
    // Ends cmd, submits it and waits for it.
    void run(VkCommandBuffer cmd) const {
        auto to_host = make<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);  // results become visible to mapped reads
        to_host.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
        to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                             VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, nullptr, 0, nullptr);
        check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
        auto si = make<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
        si.commandBufferCount = 1;
        si.pCommandBuffers = &cmd;
        check(vkResetFences(device_, 1, &fence_), "vkResetFences");
        check(vkQueueSubmit(queue_, 1, &si, fence_), "vkQueueSubmit");
        check(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    }

    void choose_features() {
        const device_info& d = info_;
        use_subgroups_ = opt_.allow_subgroups && d.subgroup_arithmetic;
        use_small_storage_ = opt_.allow_small_storage && d.storage16 && d.storage8;
        // wave64 on AMD (GCN runs 64 wide; RDNA's wave64 suits reductions of this size), wave32 elsewhere.
        wg_ = opt_.workgroup_size ? opt_.workgroup_size : d.vendor_id == 0x1002 ? 64u : 32u;
        if (!std::has_single_bit(wg_) || wg_ < 4 || wg_ > 1024)
            throw error("Vulkan workgroup size " + std::to_string(wg_) + " must be a power of two from 4 to 1024");
        // Request a subgroup size only when the device allows it for compute, within [min, max] (as ggml-vulkan).
        const uint32_t want = opt_.subgroup_size ? opt_.subgroup_size : wg_;
        if (d.size_control && want >= d.min_subgroup_size && want <= d.max_subgroup_size && std::has_single_bit(want) &&
            want <= wg_)
            required_sg_ = want;
        else if (opt_.subgroup_size)
            throw error("Vulkan device '" + d.name + "' cannot run compute subgroups of " + std::to_string(want) +
                        (d.size_control ? " (allowed: " + std::to_string(d.min_subgroup_size) + " to " +
                                              std::to_string(d.max_subgroup_size) + ")"
                                        : " (no subgroup size control)"));
    }

    void create_device() {
        uint32_t nq = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(pd_, &nq, nullptr);
        std::vector<VkQueueFamilyProperties> qf(nq);
        vkGetPhysicalDeviceQueueFamilyProperties(pd_, &nq, qf.data());
        uint32_t family = UINT32_MAX;
        for (uint32_t i = 0; i < nq && family == UINT32_MAX; ++i)  // prefer a compute-only queue
            if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) family = i;
        for (uint32_t i = 0; i < nq && family == UINT32_MAX; ++i)
            if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = i;
        if (family == UINT32_MAX) throw error("Vulkan device '" + info_.name + "' has no compute queue");

        const float priority = 1.0f;
        auto qi = make<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
        qi.queueFamilyIndex = family;
        qi.queueCount = 1;
        qi.pQueuePriorities = &priority;

        std::vector<const char*> ext;
        auto s16 = make<VkPhysicalDevice16BitStorageFeatures>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
        auto s8 = make<VkPhysicalDevice8BitStorageFeaturesKHR>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR);
        auto sc = make<VkPhysicalDeviceSubgroupSizeControlFeaturesEXT>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT);
        auto f = make<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
        void** tail = &f.pNext;
        if (use_small_storage_) {
            s16.storageBuffer16BitAccess = VK_TRUE;
            s8.storageBuffer8BitAccess = VK_TRUE;
            *tail = &s16, tail = &s16.pNext;
            *tail = &s8, tail = &s8.pNext;
            if (info_.api_version < VK_API_VERSION_1_2) ext.push_back("VK_KHR_8bit_storage");
        }
        if (required_sg_) {
            sc.subgroupSizeControl = VK_TRUE;
            *tail = &sc, tail = &sc.pNext;
            if (info_.api_version < VK_API_VERSION_1_3) ext.push_back("VK_EXT_subgroup_size_control");
        }
        if (info_.memory_budget) ext.push_back("VK_EXT_memory_budget"), budget_enabled_ = true;

        auto ci = make<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &f);
        ci.queueCreateInfoCount = 1;
        ci.pQueueCreateInfos = &qi;
        ci.enabledExtensionCount = uint32_t(ext.size());
        ci.ppEnabledExtensionNames = ext.data();
        check(vkCreateDevice(pd_, &ci, nullptr, &device_), "vkCreateDevice");
        vkGetDeviceQueue(device_, family, 0, &queue_);
        timestamp_bits_ = qf[family].timestampValidBits;

        auto pi = make<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
        pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        pi.queueFamilyIndex = family;
        check(vkCreateCommandPool(device_, &pi, nullptr, &pool_), "vkCreateCommandPool");
        auto fi = make<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
        check(vkCreateFence(device_, &fi, nullptr, &fence_), "vkCreateFence");
    }

    device_options opt_;
    detail::instance inst_;
    VkPhysicalDevice pd_ = VK_NULL_HANDLE;
    device_info info_;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    VkCommandPool pool_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    bool use_subgroups_ = false, use_small_storage_ = false, budget_enabled_ = false;
    uint32_t wg_ = 32, required_sg_ = 0, timestamp_bits_ = 0;
};

}  // namespace ncas::vk
