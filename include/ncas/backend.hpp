#pragma once
// Choosing a backend at run time (the CLI's --backend cpu|vulkan): one session
// interface over ncas::session and ncas::vk::session, which share the API.
// This header needs no Vulkan. The Vulkan backend registers itself when any
// source file of the program includes ncas/vk/backend.hpp (or ncas/vk.hpp) and
// links Vulkan; without it make_session("vulkan") is a clear error. Every
// translation unit sees the same types and functions whatever it includes.
//
//   ncas::backend_options b{.name = "vulkan", .vk = {.device = 1}};
//   std::unique_ptr<ncas::any_session> s = ncas::make_session(model, {.n_ctx = 4096}, b);
//   auto logits = s->prefill(ids);  logits = s->decode(next);  s->rewind(n);
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ncas/error.hpp"
#include "ncas/session.hpp"
#include "ncas/vk/device_options.hpp"

namespace ncas {

class any_session {
public:
    virtual ~any_session() = default;
    virtual std::span<const float> prefill(std::span<const int32_t> tokens) = 0;
    virtual std::span<const float> decode(int32_t token) = 0;
    virtual void evaluate(std::span<const int32_t> tokens, const std::function<void(int64_t, std::span<const float>)>& fn,
                          bool batched = true) = 0;
    virtual void rewind(int64_t n_past) = 0;
    void reset() { rewind(0); }
    virtual int64_t n_past() const = 0;
    virtual int64_t n_ctx() const = 0;
    virtual int64_t n_vocab() const = 0;
    virtual const session_params& params() const = 0;  // as resolved (n_ctx, n_batch; n_threads on the CPU)
    virtual run_stats stats() const = 0;
    virtual void reset_stats() = 0;
    // What expert streaming did; none without an expert budget.
    virtual std::optional<ncas::expert_stats> expert_stats() const = 0;
    virtual std::string backend() const = 0;  // "cpu" or "vulkan"
    virtual std::string device() const = 0;   // e.g. "2 CPU threads" or the GPU's name
};

// Wraps any session type with ncas::session's API.
template <class S>
class session_adapter final : public any_session {
public:
    template <class... A>
    explicit session_adapter(std::string backend, A&&... a) : s_(std::forward<A>(a)...), backend_(std::move(backend)) {}
    S& get() { return s_; }
    const S& get() const { return s_; }
    std::span<const float> prefill(std::span<const int32_t> t) override { return s_.prefill(t); }
    std::span<const float> decode(int32_t t) override { return s_.decode(t); }
    void evaluate(std::span<const int32_t> t, const std::function<void(int64_t, std::span<const float>)>& fn, bool b) override {
        s_.evaluate(t, fn, b);
    }
    void rewind(int64_t n) override { s_.rewind(n); }
    int64_t n_past() const override { return s_.n_past(); }
    int64_t n_ctx() const override { return s_.n_ctx(); }
    int64_t n_vocab() const override { return s_.n_vocab(); }
    const session_params& params() const override { return s_.params(); }
    run_stats stats() const override { return s_.stats(); }
    void reset_stats() override { s_.reset_stats(); }
    std::optional<ncas::expert_stats> expert_stats() const override {
        if constexpr (requires { s_.expert_stats(); }) return s_.expert_stats();
        else return std::nullopt;
    }
    std::string backend() const override { return backend_; }
    std::string device() const override {
        if constexpr (requires { s_.context(); }) return s_.context().info().name;
        else return std::to_string(s_.params().n_threads) + (s_.params().n_threads == 1 ? " CPU thread" : " CPU threads");
    }

private:
    S s_;
    std::string backend_;
};

struct backend_options {
    std::string name = "cpu";    // "cpu" or "vulkan" (also "vk")
    vk::device_options vk = {};  // device index, validation, pipeline cache, ... (Vulkan only)
};

namespace detail {
using vulkan_factory = std::unique_ptr<any_session> (*)(const model_core&, session_params, const vk::device_options&);
// Set before main by ncas/vk/backend.hpp when the program includes it; null otherwise.
inline vulkan_factory vulkan_session_factory = nullptr;
}  // namespace detail

// Whether make_session can run "vulkan" in this program (ncas/vk/backend.hpp included and Vulkan linked).
inline bool vulkan_available() { return detail::vulkan_session_factory != nullptr; }

// The names make_session knows (whether or not Vulkan is in this program: see vulkan_available).
inline std::vector<std::string> backend_names() { return {"cpu", "vulkan"}; }

inline std::unique_ptr<any_session> make_session(const model_core& m, session_params p, const backend_options& b = {}) {
    if (b.name == "cpu") return std::make_unique<session_adapter<session>>("cpu", m, p);
    if (b.name == "vulkan" || b.name == "vk") {
        if (!vulkan_available())
            throw error("the Vulkan backend is not in this program (include ncas/vk/backend.hpp in one of its sources "
                        "and link Vulkan)");
        return detail::vulkan_session_factory(m, p, b.vk);
    }
    throw error("unknown backend '" + b.name + "' (expected cpu or vulkan)");
}

}  // namespace ncas
