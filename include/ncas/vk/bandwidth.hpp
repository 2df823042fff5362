#pragma once
// The device's read bandwidth: the figure `ncas bench --backend vulkan` sets
// decode against, as the CPU bench sets it against its read loop. read_sum.comp
// streams a device-local buffer far larger than any cache and sums its words;
// the sum (mod 2^32) is checked, so a measurement that skipped data fails.
//
//   ncas::vk::context ctx;
//   ncas::vk::bandwidth b = ncas::vk::measure_read_bandwidth(ctx, 256ull << 20);
//   std::printf("%.1f GB/s over %llu MiB\n", b.gbs, b.bytes >> 20);
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "ncas/vk/pipeline.hpp"

namespace ncas::vk {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wnarrowing"  // as in ops.hpp: a retyped push-constant member fails to compile
#endif
namespace ops {

// total += Σ uint words of data[0, bytes) (mod 2^32); bytes a multiple of 16. The
// buffer is bound in ranges the device can bind (maxStorageBufferRange), one
// dispatch each; the dispatches only add to total, so they need no barrier between them.
inline void read_sum(recorder& r, const buffer& data, uint64_t bytes, buffer_view total) {
    const context& ctx = r.kernels().ctx();
    const uint64_t align = std::max<uint64_t>(ctx.info().min_storage_alignment, 16);
    const uint64_t chunk = std::max<uint64_t>(uint64_t(ctx.info().max_storage_range) / align * align, align);
    const uint32_t wg = ctx.workgroup_size();
    constexpr uint64_t vec4_per_invocation = 64;  // enough groups to fill a large GPU, few atomics
    r.independent([&] {
        for (uint64_t at = 0; at < bytes; at += chunk) {
            const uint64_t n = std::min(chunk, bytes - at), n_vec4 = n / 16;
            const uint32_t groups = std::clamp<uint32_t>(div_up(n_vec4, wg * vec4_per_invocation), 1, 65535);
            r.dispatch<shader_id::read_sum>({}, {buffer_view(data.handle(), at, n), total}, {.n_vec4 = uint32_t(n_vec4)},
                                            groups);
        }
    });
}

}  // namespace ops
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

struct bandwidth {
    double gbs = 0;           // bytes read per second of the fastest run, in GB/s (1e9)
    uint64_t bytes = 0;       // bytes read per run
    bool timestamps = false;  // timed with timestamp queries; false: the fence's wall time
};

// Reads a device-local buffer of `bytes` (at most a quarter of the memory the device
// has left, and one allocation) `runs` times after a warm-up run; the fastest run
// counts. Throws when a run's sum is not that of the data.
inline bandwidth measure_read_bandwidth(const context& ctx, uint64_t bytes, int runs = 5) {
    const device_info& d = ctx.info();
    uint64_t cap = ctx.memory_available() / 4;
    if (d.max_allocation) cap = std::min(cap, d.max_allocation);
    bytes = std::min(bytes, cap) / 4096 * 4096;
    if (bytes == 0) throw error("Vulkan device '" + d.name + "' has no memory left for the bandwidth test");

    pipelines kernels(ctx);
    buffer data(ctx, bytes), total(ctx, 4), result(ctx, 4, buffer::kind::readback);
    constexpr uint32_t word = 0x01020304u;
    const uint32_t expected = uint32_t(uint64_t(word) * (bytes / 4));  // mod 2^32
    ctx.submit([&](VkCommandBuffer cmd) { vkCmdFillBuffer(cmd, data.handle(), 0, bytes, word); });

    const uint32_t bits = ctx.timestamp_bits();
    VkQueryPool queries = VK_NULL_HANDLE;
    if (bits) {
        auto qi = make<VkQueryPoolCreateInfo>(VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO);
        qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
        qi.queryCount = 2;
        check(vkCreateQueryPool(ctx.device(), &qi, nullptr, &queries), "vkCreateQueryPool");
    }
    struct release {
        const context& c;
        VkQueryPool q;
        ~release() {
            if (q) vkDestroyQueryPool(c.device(), q, nullptr);
        }
    } guard{ctx, queries};

    bandwidth out{0, bytes, bits != 0};
    double best = 1e30;
    for (int run = 0; run <= runs; ++run) {  // run 0 warms up
        const auto t0 = std::chrono::steady_clock::now();
        ctx.submit([&](VkCommandBuffer cmd) {
            recorder r(kernels, cmd);
            vkCmdFillBuffer(cmd, total.handle(), 0, 4, 0);
            r.barrier();
            if (bits) {
                vkCmdResetQueryPool(cmd, queries, 0, 2);
                vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries, 0);
            }
            ops::read_sum(r, data, bytes, total);
            if (bits) vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries, 1);
            const VkBufferCopy copy{0, 0, 4};
            vkCmdCopyBuffer(cmd, total.handle(), result.handle(), 1, &copy);
        });
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (bits) {
            uint64_t ticks[2];
            check(vkGetQueryPoolResults(ctx.device(), queries, 0, 2, sizeof ticks, ticks, sizeof(uint64_t),
                                        VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
                  "vkGetQueryPoolResults");
            const uint64_t mask = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
            seconds = double((ticks[1] - ticks[0]) & mask) * double(d.timestamp_period) * 1e-9;
        }
        uint32_t sum = 0;
        result.download(&sum, 4);
        if (sum != expected)
            throw error("Vulkan bandwidth test on '" + d.name + "': the kernel summed " + std::to_string(sum) + ", the data sum to " +
                        std::to_string(expected));
        if (run > 0 && seconds > 0) best = std::min(best, seconds);
    }
    out.gbs = best < 1e30 ? double(bytes) / best / 1e9 : 0;
    return out;
}

}  // namespace ncas::vk
