#pragma once
// Choosing a backend at run time (the CLI's --backend cpu|vulkan): one session
// interface over ncas::session and ncas::vk::session, which share the API.
// This header needs no Vulkan: the Vulkan branch of make_session is compiled
// only with NCAS_WITH_VULKAN defined (and Vulkan linked); include
// ncas/vk/backend.hpp (or ncas/vk.hpp), which defines it, or define it yourself.
//
//   ncas::backend_options b{.name = "vulkan", .vk = {.device = 1}};     // NCAS_WITH_VULKAN
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

#ifdef NCAS_WITH_VULKAN
#include "ncas/vk/session.hpp"
#endif

namespace ncas {

// Whether make_session can run "vulkan" in this translation unit.
#ifdef NCAS_WITH_VULKAN
inline constexpr bool vulkan_compiled = true;
#else
inline constexpr bool vulkan_compiled = false;
#endif

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
    std::string name = "cpu";     // "cpu" or "vulkan" (also "vk")
#ifdef NCAS_WITH_VULKAN
    vk::device_options vk = {};   // device index, validation, pipeline cache, ...
#endif
};

// The names make_session knows (whether or not Vulkan is compiled in: see vulkan_compiled).
inline std::vector<std::string> backend_names() { return {"cpu", "vulkan"}; }

inline std::unique_ptr<any_session> make_session(const model_core& m, session_params p, const backend_options& b = {}) {
    if (b.name == "cpu") return std::make_unique<session_adapter<session>>("cpu", m, p);
    if (b.name == "vulkan" || b.name == "vk") {
#ifdef NCAS_WITH_VULKAN
        return std::make_unique<session_adapter<vk::session>>("vulkan", m, p, b.vk);
#else
        throw error("the Vulkan backend is not compiled in (define NCAS_WITH_VULKAN, include ncas/vk/backend.hpp "
                    "and link Vulkan)");
#endif
    }
    throw error("unknown backend '" + b.name + "' (expected cpu or vulkan)");
}

}  // namespace ncas
