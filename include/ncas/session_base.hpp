#pragma once
// What every backend's session shares: parameter and token validation, the
// batching of prefill and evaluate, positions and rewinding. A backend (the
// CPU session, the Vulkan session) derives from session_base<itself> and
// provides two calls:
//   void run_batch(std::span<const int32_t> tokens, bool all_logits, float* out);
//       tokens (at most n_batch) at positions n_past().., logits of every
//       position ([T, V]) or of the last ([V]) into out
//   void truncate(int64_t n_past);   drops the cache rows at positions >= n_past
#include <algorithm>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ncas/model/model.hpp"

namespace ncas {

template <class Backend, class Params>
class session_base {
public:
    const model_core& model() const { return m_; }
    const Params& params() const { return p_; }
    int64_t n_ctx() const { return p_.n_ctx; }
    int64_t n_past() const { return n_past_; }
    int64_t n_vocab() const { return m_.config().n_vocab; }

    // Runs the tokens after the cached ones; returns the logits of the last.
    std::span<const float> prefill(std::span<const int32_t> tokens) {
        check(tokens);
        if (tokens.empty()) throw error("prefill: no tokens given");
        for (size_t i = 0; i < tokens.size(); i += size_t(p_.n_batch)) {
            const auto part = tokens.subspan(i, std::min(tokens.size() - i, size_t(p_.n_batch)));
            backend().run_batch(part, false, logits_.data());
            n_past_ += int64_t(part.size());
        }
        return logits_;
    }

    std::span<const float> decode(int32_t token) { return prefill(std::span<const int32_t>(&token, 1)); }

    // Runs the tokens and hands the logits of every position to fn(index, logits[V]).
    // batched = false runs them one at a time (for comparing the two paths).
    void evaluate(std::span<const int32_t> tokens, const std::function<void(int64_t, std::span<const float>)>& fn,
                  bool batched = true) {
        check(tokens);
        const int64_t V = n_vocab(), step = batched ? p_.n_batch : 1;
        if (all_logits_.empty()) all_logits_.resize(size_t(p_.n_batch * V));  // once, on first use
        for (size_t i = 0; i < tokens.size(); i += size_t(step)) {
            const auto part = tokens.subspan(i, std::min(tokens.size() - i, size_t(step)));
            backend().run_batch(part, true, all_logits_.data());
            n_past_ += int64_t(part.size());
            for (size_t t = 0; t < part.size(); ++t)
                fn(int64_t(i + t), std::span<const float>(all_logits_).subspan(t * size_t(V), size_t(V)));
        }
    }

    // Forgets every token from position n_past on (keeps the first n_past).
    void rewind(int64_t n_past) {
        if (n_past < 0 || n_past > n_past_)
            throw error("rewind to " + std::to_string(n_past) + ": the session holds " + std::to_string(n_past_) + " tokens");
        backend().truncate(n_past);
        n_past_ = n_past;
    }
    void reset() { rewind(0); }

protected:
    // max_batch: the most tokens the backend takes in one pass.
    session_base(const model_core& m, Params p, int64_t max_batch)
        : m_(m), p_(resolve(m, std::move(p), max_batch)), logits_(size_t(m.config().n_vocab)) {}

    const model_core& m_;
    Params p_;
    void set_n_past(int64_t n) { n_past_ = n; }  // a backend that restored its cache from a saved state

private:
    Backend& backend() { return static_cast<Backend&>(*this); }

    static Params resolve(const model_core& m, Params p, int64_t max_batch) {
        const int64_t model_ctx = m.config().n_ctx;
        if (p.n_ctx == 0) p.n_ctx = model_ctx;
        if (p.n_ctx < 1 || p.n_ctx > model_ctx)
            throw error("context of " + std::to_string(p.n_ctx) + " tokens: the model supports 1 to " + std::to_string(model_ctx));
        if (p.n_batch < 1) throw error("batch size must be at least 1, not " + std::to_string(p.n_batch));
        p.n_batch = std::min({p.n_batch, p.n_ctx, max_batch});
        if (p.kv_type != weight_type::f32 && p.kv_type != weight_type::f16 && p.kv_type != weight_type::q8_0 &&
            p.kv_type != weight_type::q4_0)
            throw error("KV cache type must be f32, f16, q8_0 or q4_0, not " + std::string(type_name(p.kv_type)));
        return p;
    }

    void check(std::span<const int32_t> tokens) const {
        if (int64_t(tokens.size()) > p_.n_ctx - n_past_)
            throw error(std::to_string(tokens.size()) + " tokens do not fit in the context: " + std::to_string(n_past_) +
                        " of " + std::to_string(p_.n_ctx) + " positions are used");
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] < 0 || tokens[i] >= n_vocab())
                throw error("token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                            " is outside the vocabulary of " + std::to_string(n_vocab()));
    }

    std::vector<float> logits_;      // [V]
    std::vector<float> all_logits_;  // [n_batch, V]
    int64_t n_past_ = 0;
};

}  // namespace ncas
