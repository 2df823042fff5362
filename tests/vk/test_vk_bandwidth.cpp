// The device read-bandwidth probe of `ncas bench --backend vulkan`: the kernel
// reads every word of the buffer exactly once (its sum is the data's, mod 2^32)
// and the measurement returns a positive rate over a buffer larger than one
// binding (lavapipe binds at most 128 MiB), with the validation layer watching.
#include <numeric>

#include "ncas/vk/bandwidth.hpp"
#include "vk_support.hpp"

namespace {

using namespace vk_test;
namespace vk = ncas::vk;

class bandwidth : public config_fixture {};

TEST_P(bandwidth, read_sum_reads_every_word_once) {
    std::mt19937 rng(7);
    for (const uint32_t n_vec4 : {1u, 31u, 100003u}) {  // one word, part of a workgroup, many grid strides
        std::vector<uint32_t> words(size_t(n_vec4) * 4);
        for (uint32_t& w : words) w = rng();
        const uint32_t want = std::accumulate(words.begin(), words.end(), 0u);  // mod 2^32, as the kernel
        vk::buffer data(*ctx, words.size() * 4);
        data.upload(words.data(), words.size() * 4);
        std::vector<uint32_t> total(4, 0u);  // the kernel adds to word 0 and must leave the others
        vk::buffer total_buf(*ctx, 16);
        total_buf.upload(total.data(), 16);
        run(ctx, [&](vk::recorder& r) { vk::ops::read_sum(r, data, uint64_t(n_vec4) * 16, total_buf); });
        total_buf.download(total.data(), 16);
        EXPECT_EQ(total, (std::vector<uint32_t>{want, 0, 0, 0})) << n_vec4 << " uvec4s";
    }
}

TEST_P(bandwidth, measures_a_positive_rate_over_several_bindings) {
    const uint64_t want = 160ull << 20;
    const vk::bandwidth b = vk::measure_read_bandwidth(*ctx, want, 2);  // throws when a sum is wrong
    EXPECT_GT(b.gbs, 0.0);
    EXPECT_TRUE(std::isfinite(b.gbs));
    EXPECT_LE(b.bytes, want);
    EXPECT_EQ(b.bytes % 4096, 0u);
    if (ctx->memory_available() / 4 >= want) {
        EXPECT_EQ(b.bytes, want);
    }
    EXPECT_EQ(b.timestamps, ctx->timestamp_bits() != 0);
    std::printf("[%s] %s: %.2f GB/s over %llu MiB (%s)\n", config_name(GetParam()), ctx->info().name.c_str(), b.gbs,
                (unsigned long long)(b.bytes >> 20), b.timestamps ? "timestamps" : "fence wall time");
}

INSTANTIATE_TEST_SUITE_P(vk, bandwidth, ::testing::Values(config::best, config::staged),
                         [](const auto& info) { return std::string(config_name(info.param)); });

}  // namespace
