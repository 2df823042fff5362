#pragma once
// What every Vulkan test shares: device configurations to run under, one
// context each (validation on when NCAS_VK_VALIDATION asks for it; ctest sets
// it), a fixture that fails a test on any validation warning or error, skips
// only when no Vulkan driver exists, and the parity comparison (NaN/Inf first,
// then normalised error against the CPU result, as llama.cpp's test-backend-ops).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "ncas/vk.hpp"

namespace vk_test {

// The device features a test runs under: each kernel variant gets exercised.
enum class config { best, plain, wave8, staged };
inline const char* config_name(config c) {
    return c == config::best ? "best" : c == config::plain ? "plain" : c == config::wave8 ? "wave8" : "staged";
}
inline ncas::vk::device_options options(config c) {
    ncas::vk::device_options o;
    if (const char* d = std::getenv("NCAS_VK_DEVICE")) o.device = std::atoi(d);
    if (c == config::plain) o.allow_subgroups = false, o.allow_small_storage = false;  // shared-memory reductions, word loads
    if (c == config::wave8) o.subgroup_size = 8, o.workgroup_size = 64;  // requested subgroup size (lavapipe: 8)
    if (c == config::staged) o.map_device_memory = false;  // uploads and reads through staging copies
    return o;
}

inline bool have_vulkan() {
    static const bool yes = ncas::vk::available();
    return yes;
}

// The contexts and pipelines the tests share, released before main() returns:
// destroyed among static destructors they would outlive the validation layer.
struct shared_state {
    std::map<config, std::shared_ptr<ncas::vk::context>> contexts;
    std::map<const ncas::vk::context*, std::unique_ptr<ncas::vk::pipelines>> kernels;
    static shared_state& get() {
        static shared_state s;
        return s;
    }
};
class release_vulkan : public ::testing::Environment {
public:
    void TearDown() override {
        shared_state::get().kernels.clear();
        shared_state::get().contexts.clear();
    }
};
inline ::testing::Environment* const release_vulkan_at_exit = ::testing::AddGlobalTestEnvironment(new release_vulkan);

// One context per configuration for the whole test program; null when the
// device cannot run it (e.g. no subgroup size control for wave8).
inline std::shared_ptr<ncas::vk::context> context_for(config c) {
    auto& contexts = shared_state::get().contexts;
    if (auto it = contexts.find(c); it != contexts.end()) return it->second;
    std::shared_ptr<ncas::vk::context> ctx;
    const ncas::vk::device_info d = ncas::vk::list_devices().at(size_t(options(c).device));
    if (c != config::wave8 || (d.size_control && d.min_subgroup_size <= 8 && d.max_subgroup_size >= 8))
        ctx = std::make_shared<ncas::vk::context>(options(c));
    return contexts[c] = ctx;
}

// Skips without a driver; after the test, every validation message is a failure.
class vk_fixture : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have_vulkan()) GTEST_SKIP() << "no Vulkan driver or device is installed; Vulkan tests skipped";
    }
    void TearDown() override {
        if (!have_vulkan()) return;
        for (config c : {config::best, config::plain, config::wave8, config::staged}) {
            auto ctx = context_for(c);
            if (!ctx) continue;
            for (const std::string& m : ctx->validation_messages()) ADD_FAILURE() << "[" << config_name(c) << "] validation: " << m;
            ctx->clear_validation_messages();
        }
    }
};

// A test run once per device configuration: ctx is that configuration's context
// (skipped where the device cannot run it).
class config_fixture : public vk_fixture, public ::testing::WithParamInterface<config> {
protected:
    void SetUp() override {
        vk_fixture::SetUp();
        if (IsSkipped()) return;
        ctx = context_for(GetParam());
        if (!ctx) GTEST_SKIP() << "device cannot run configuration " << config_name(GetParam());
    }
    std::shared_ptr<ncas::vk::context> ctx;
};

// ---- parity ----------------------------------------------------------------------

struct parity {
    double nmse = 0;      // Σ(gpu − cpu)² / Σ cpu²
    double max_rel = 0;   // max |gpu − cpu| / max |cpu|
    std::string problem;  // NaN / Inf / size mismatch, checked first
};

inline parity compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    parity p;
    if (gpu.size() != cpu.size()) { p.problem = "size " + std::to_string(gpu.size()) + " vs " + std::to_string(cpu.size()); return p; }
    double num = 0, den = 0, max_err = 0, max_ref = 0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        if (!std::isfinite(gpu[i])) { p.problem = "non-finite value " + std::to_string(gpu[i]) + " at " + std::to_string(i); return p; }
        const double e = double(gpu[i]) - double(cpu[i]);
        num += e * e, den += double(cpu[i]) * cpu[i];
        max_err = std::max(max_err, std::abs(e)), max_ref = std::max(max_ref, std::abs(double(cpu[i])));
    }
    p.nmse = den > 0 ? num / den : num;
    p.max_rel = max_ref > 0 ? max_err / max_ref : max_err;
    return p;
}

#define EXPECT_PARITY(gpu, cpu, bound)                                                                      \
    do {                                                                                                    \
        const vk_test::parity p_ = vk_test::compare(gpu, cpu);                                              \
        EXPECT_EQ(p_.problem, "");                                                                          \
        EXPECT_LE(p_.max_rel, bound) << "nmse " << p_.nmse;                                                 \
    } while (0)

// ---- device buffers with a sentinel tail ------------------------------------------

inline constexpr uint32_t sentinel = 0x7fc0dead;  // a NaN pattern no kernel writes
inline constexpr size_t sentinel_words = 64;

// A device buffer holding `data` followed by sentinel words: a kernel writing
// past the end changes them, which take() reports.
class test_buffer {
public:
    template <class T>
    test_buffer(const ncas::vk::context& ctx, const std::vector<T>& data)
        : n_(data.size() * sizeof(T) / 4), buf_(ctx, (n_ + sentinel_words) * 4) {
        static_assert(sizeof(T) == 4);
        std::vector<uint32_t> words(n_ + sentinel_words, sentinel);
        std::memcpy(words.data(), data.data(), n_ * 4);
        buf_.upload(words.data(), words.size() * 4);
    }
    // The whole buffer, sentinel included: an out-of-bounds write lands on it.
    ncas::vk::buffer_view view() const { return buf_; }
    operator ncas::vk::buffer_view() const { return view(); }  // NOLINT

    template <class T = float>
    std::vector<T> take() const {
        std::vector<uint32_t> words(n_ + sentinel_words);
        buf_.download(words.data(), words.size() * 4);
        for (size_t i = n_; i < words.size(); ++i)
            if (words[i] != sentinel) ADD_FAILURE() << "kernel wrote past the end of a buffer (word " << i << ")";
        std::vector<T> out(n_);
        std::memcpy(out.data(), words.data(), n_ * 4);
        return out;
    }

private:
    size_t n_;
    ncas::vk::buffer buf_;
};

// Records fn(recorder&) into one command buffer on ctx and runs it.
template <class F>
void run(const std::shared_ptr<ncas::vk::context>& ctx, F&& fn) {
    auto& k = shared_state::get().kernels[ctx.get()];
    if (!k) k = std::make_unique<ncas::vk::pipelines>(*ctx);
    k->reset_descriptors();  // the test's buffers are new: no set may bind a handle of a destroyed one
    ctx->submit([&](VkCommandBuffer cmd) {
        ncas::vk::recorder r(*k, cmd);
        fn(r);
    });
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

}  // namespace vk_test
