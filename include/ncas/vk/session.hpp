#pragma once
// The Vulkan session: the same API as ncas::session (prefill / decode /
// evaluate / rewind), the same forward pass (docs/spec.md §1, the order of
// ncas/model/transformer.hpp), run as one command buffer per forward pass.
// Only the token ids go in and the logits come out; every data-dependent
// decision (MoD routes, KV lengths, expert lists) stays in the control buffer.
//
// The one exception is expert streaming (session_params::expert_budget, or a
// model loaded with stream_experts): the experts live in device slots
// (vk/expert_slots.hpp) and the host decides which slot each runs from, so the
// command buffer is run up to each MoE layer's routing, the layer's per-expert
// token counts (E words) are read back, missing experts are uploaded, and
// recording goes on. Without a budget nothing round-trips.
//
//   auto m = ncas::model::load("model.gguf");
//   ncas::vk::session s(m, {.n_ctx = 2048}, {.device = 0});
//   std::span<const float> logits = s.prefill(prompt_ids);
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ncas/model/model.hpp"
#include "ncas/model/rope.hpp"
#include "ncas/model/transformer.hpp"
#include "ncas/session.hpp"
#include "ncas/session_base.hpp"
#include "ncas/vk/expert_slots.hpp"
#include "ncas/vk/weights.hpp"

namespace ncas::vk {

// Where each record lives in the control buffer (words).
struct ctrl_layout {
    uint32_t kv_len = 0, kept = 0, use = 0, tokens = 0, words = 0;  // [L], [L], [L, E], [B]
    ops::route_record route;
    ops::moe_record moe;
    ctrl_layout() = default;
    ctrl_layout(const model_dims& m, uint32_t B) {
        const uint32_t L = uint32_t(m.n_layer), E = uint32_t(m.n_expert), k = uint32_t(m.n_expert_used);
        kv_len = 0, kept = L, use = 2 * L, tokens = use + L * E;
        route = {tokens + B, B};
        moe = {route.at + ops::route_record::words(B), B, E, k};
        words = moe.at + ops::moe_record::words(B, E, k);
    }
};

// Device bytes a session needs besides the weights: KV cache, activations, tables.
inline uint64_t session_bytes(const model_dims& m, int64_t n_ctx, int64_t B, weight_type kv_type) {
    const uint64_t kv = uint64_t(m.n_layer) * uint64_t(n_ctx) *
                        (uint64_t(m.k_dim() + m.v_dim()) * uint64_t(traits_of(kv_type).block_bytes) + 4);
    const uint64_t act = uint64_t(B) * uint64_t(3 * m.n_embd + m.n_embd + m.q_dim() + m.k_dim() + m.v_dim() + m.attn_dim() +
                                                m.n_expert + 2 * m.n_ff + 2 * m.n_vocab) * 4;
    return kv + act + uint64_t(n_ctx) * uint64_t(m.head_k) * 4 + uint64_t(ctrl_layout(m, uint32_t(B)).words) * 4;
}

// Whether a session with these parameters streams its experts.
inline bool streams_experts(const model_core& m, const session_params& p) { return p.expert_budget != 0 || m.streams_experts(); }

// The memory budget: weights (streaming: the expert slots instead of the expert
// tensors), cache and activations against `available` bytes of the device; a
// clear error (what is needed, what is there, what to change) when they do not fit.
inline void check_memory(const device_info& d, uint64_t available, const model_core& m, const session_params& p) {
    const model_config& c = m.config();
    const bool stream = streams_experts(m, p);
    const uint64_t w = weight_upload_bytes(c, m.weights(), !stream) + (stream ? expert_slots::device_bytes(m, p) : 0);
    const uint64_t s = session_bytes(c, p.n_ctx, p.n_batch, p.kv_type);
    if (w + s > available)
        throw error("model '" + m.path() + "' does not fit on Vulkan device '" + d.name + "': it needs " +
                    std::to_string((w + s) >> 20) + " MiB (weights " + std::to_string(w >> 20) + " MiB, cache and buffers " +
                    std::to_string(s >> 20) + " MiB for " + std::to_string(p.n_ctx) + " positions), the device has " +
                    std::to_string(available >> 20) + " MiB; use a smaller context, an f16 cache, a smaller weight type or " +
                    (stream ? "a smaller expert budget" : "an expert budget (streaming)"));
    const uint64_t k_bytes = uint64_t(p.n_ctx) * uint64_t(c.k_dim()) * uint64_t(traits_of(p.kv_type).block_bytes);
    if (k_bytes > d.max_storage_range)
        throw error("Vulkan device '" + d.name + "' cannot bind a " + std::to_string(k_bytes >> 20) +
                    " MiB cache layer; use a smaller context or an f16 cache");
}

class session : public session_base<session, session_params> {
public:
    session(const model_core& m, session_params p = {}, device_options o = {})
        : session(m, p, std::make_shared<vk::context>(std::move(o))) {}

    session(const model_core& m, session_params p, std::shared_ptr<context> ctx)
        // tokens go in through vkCmdUpdateBuffer (64 KiB): at most 16384 a pass
        : session_base(m, p, 16384), c_(m.config()), ctx_(std::move(ctx)), B_(uint32_t(p_.n_batch)), layout_(c_, B_) {
        check_memory(ctx_->info(), ctx_->memory_available(), m, p_);
        if (streams_experts(m, p_)) experts_ = std::make_unique<expert_slots>(*ctx_, m, p_);
        kernels_ = std::make_unique<vk::pipelines>(*ctx_);
        weights_ = std::make_unique<gpu_weights>(*ctx_, c_, m.weights(), !experts_);
        allocate();
    }

    const vk::context& context() const { return *ctx_; }
    const vk::pipelines& pipelines() const { return *kernels_; }

    // Rows each layer's cache holds (MoD: tokens routed into it); reads the device.
    int64_t cache_rows(int64_t layer) const { return int64_t(read_ctrl(layout_.kv_len + uint32_t(layer), 1)[0]); }

    // Per-layer token and expert counts since the last reset_stats(); reads the device.
    run_stats stats() const {
        run_stats s(c_);
        s.tokens_in = tokens_in_;
        const auto kept = read_ctrl(layout_.kept, uint32_t(c_.n_layer));
        const auto use = read_ctrl(layout_.use, uint32_t(c_.n_layer * c_.n_expert));
        s.tokens_kept.assign(kept.begin(), kept.end());
        s.expert_use.assign(use.begin(), use.end());
        return s;
    }
    // What expert streaming did (hit rate, bytes read per layer); none without a budget.
    std::optional<ncas::expert_stats> expert_stats() const {
        return experts_ ? std::optional(experts_->stats()) : std::nullopt;
    }
    void reset_stats() {
        if (experts_) experts_->reset_stats();
        std::fill(tokens_in_.begin(), tokens_in_.end(), 0);
        ctx_->submit([&](VkCommandBuffer cmd) {
            vkCmdFillBuffer(cmd, ctrl_->handle(), uint64_t(layout_.kept) * 4, uint64_t(layout_.tokens - layout_.kept) * 4, 0);
        });
    }

private:
    friend session_base;
    void truncate(int64_t n_past) {
        ctx_->submit([&](VkCommandBuffer cmd) {
            recorder r(*kernels_, cmd);
            ops::kv_truncate(r, *cache_pos_, *ctrl_, uint32_t(c_.n_layer), uint32_t(p_.n_ctx), layout_.kv_len, uint32_t(n_past));
        });
    }

    void allocate() {
        const uint64_t B = B_, D = uint64_t(c_.n_embd), f = 4;
        auto make = [&](uint64_t bytes) { return std::make_unique<buffer>(*ctx_, bytes); };
        x_ = make(B * D * f), xn_ = make(B * D * f), h_ = make(B * D * f);
        q_ = make(B * uint64_t(c_.q_dim()) * f), k_ = make(B * uint64_t(c_.k_dim()) * f), v_ = make(B * uint64_t(c_.v_dim()) * f);
        o_ = make(B * uint64_t(c_.attn_dim()) * f), gate_logits_ = make(B * uint64_t(c_.n_expert) * f);
        up_ = make(B * uint64_t(c_.n_ff) * f), gate_ = make(B * uint64_t(c_.n_ff) * f);
        logits_dev_ = make(B * uint64_t(c_.n_vocab) * f);
        readback_ = std::make_unique<buffer>(*ctx_, B * uint64_t(c_.n_vocab) * f, buffer::kind::readback);
        ctrl_ = make(uint64_t(layout_.words) * 4);
        dummy_ = make(16);

        const uint64_t kv_elem = p_.kv_type == weight_type::f16 ? 2 : 4, ctx_len = uint64_t(p_.n_ctx);
        cache_pos_ = make(uint64_t(c_.n_layer) * ctx_len * 4);
        for (int64_t l = 0; l < c_.n_layer; ++l) {
            k_cache_.push_back(make(ctx_len * uint64_t(c_.k_dim()) * kv_elem));
            v_cache_.push_back(make(ctx_len * uint64_t(c_.v_dim()) * kv_elem));
        }
        // The same cos/sin table the CPU backend computes (in double, once).
        const rope_table table(p_.n_ctx, c_.head_k, c_.rope_theta);
        const uint64_t half = uint64_t(c_.head_k / 2);
        rope_ = make(2 * ctx_len * half * 4);
        rope_->upload(table.cos_at(0), ctx_len * half * 4, 0);
        rope_->upload(table.sin_at(0), ctx_len * half * 4, ctx_len * half * 4);

        ctx_->submit([&](VkCommandBuffer cmd) { vkCmdFillBuffer(cmd, ctrl_->handle(), 0, VK_WHOLE_SIZE, 0); });
        tokens_in_.assign(size_t(c_.n_layer), 0);
    }

    // One forward pass over tokens (T <= batch) at positions n_past.., one command buffer.
    void run_batch(std::span<const int32_t> tokens, bool all_logits, float* out) {
        const uint32_t T = uint32_t(tokens.size()), V = uint32_t(c_.n_vocab), D = uint32_t(c_.n_embd);
        const uint32_t first = all_logits ? 0 : T - 1, n_out = T - first;
        ctx_->submit([&](VkCommandBuffer cmd) {
            recorder r(*kernels_, cmd);
            vkCmdUpdateBuffer(cmd, ctrl_->handle(), uint64_t(layout_.tokens) * 4, uint64_t(T) * 4, tokens.data());
            r.barrier();
            ops::embed(r, weights_->token_embd, *x_, *ctrl_, T, layout_.tokens);
            for (int64_t l = 0; l < c_.n_layer; ++l) layer(r, uint32_t(l), T);
            ops::rms_norm(r, *x_, *weights_->output_norm, *xn_, *ctrl_, D, c_.norm_eps, n_out, none, none, first);
            ops::matmul(r, weights_->output, *xn_, *logits_dev_, *ctrl_, {.n_max = n_out});
            const VkBufferCopy copy{0, 0, uint64_t(n_out) * V * 4};
            vkCmdCopyBuffer(cmd, logits_dev_->handle(), readback_->handle(), 1, &copy);
        });
        readback_->download(out, uint64_t(n_out) * V * 4);
        for (auto& n : tokens_in_) n += T;
    }

    // One layer (the order of transformer::layer): MoD route -> attention -> MoE -> residual mix.
    void layer(recorder& r, uint32_t l, uint32_t T) {
        const gpu_layer& w = weights_->layers[l];
        const layer_weights& cw = m_.weights().layers[l];
        const uint32_t D = uint32_t(c_.n_embd), E = uint32_t(c_.n_expert);
        const ops::route_record& rt = layout_.route;
        const ops::moe_record& moe = layout_.moe;
        const buffer_view ctrl = *ctrl_, dummy = *dummy_;
        auto or_dummy = [&](const std::shared_ptr<buffer>& b) { return b ? buffer_view(*b) : dummy; };
        const slots routed{.n_max = T, .count_at = rt.count()};
        const ops::gpu_cache_layer cache{*k_cache_[l], *v_cache_[l], *cache_pos_, p_.kv_type == weight_type::f16,
                                         uint32_t(p_.n_ctx), l};

        // Mixture-of-Depths: which tokens enter, their cache rows.
        ops::route(r, *x_, or_dummy(w.mod_router), ctrl, rt,
                   {D, T, uint32_t(n_past()), l, w.mod_router != nullptr, c_.scale, c_.mod_threshold, layout_.kv_len, layout_.kept});

        // h = x + attention(RMSNorm(x))
        ops::rms_norm(r, *x_, *w.attn_norm, *xn_, ctrl, D, c_.norm_eps, T, rt.count(), rt.routed());
        uint32_t lambda_at = none;
        if (w.lambda_exp) {  // expert-conditional λ: the layer's gate on the attention input
            ops::matmul(r, w.gate_inp, *xn_, *gate_logits_, ctrl, routed);
            ops::moe_route(r, *gate_logits_, *w.lambda_exp, ctrl, moe,
                           {T, rt.count(), true, true, true, layout_.use + l * E, cw.lambda});
            lambda_at = moe.lambda_t();
        }
        r.independent([&] {
            ops::matmul(r, w.wq, *xn_, *q_, ctrl, routed);
            ops::matmul(r, w.wk, *xn_, *k_, ctrl, routed);
            ops::matmul(r, w.wv, *xn_, *v_, ctrl, routed);
            ops::gather_residual(r, *x_, *h_, ctrl, rt, D, T);
        });
        ops::rope_store(r, c_, *q_, *k_, *v_, *rope_, cache, ctrl, rt, T);
        ops::attention(r, c_, *q_, cache, *o_, or_dummy(w.sub_norm), ctrl, rt, T,
                       {cw.lambda, lambda_at, w.sub_norm != nullptr, cw.lambda_init});
        ops::matmul(r, w.wo, *o_, *h_, ctrl, {.n_max = T, .count_at = rt.count(), .accumulate = true});

        // y = h + moe(RMSNorm(h))
        ops::rms_norm(r, *h_, *w.ffn_norm, *xn_, ctrl, D, c_.norm_eps, T, rt.count());
        const bool has_gate = w.gate_inp.rows > 0;
        if (has_gate) ops::matmul(r, w.gate_inp, *xn_, *gate_logits_, ctrl, routed);
        ops::moe_route(r, *gate_logits_, dummy, ctrl, moe,
                       {T, rt.count(), c_.expert_weights_norm, has_gate, false, layout_.use + l * E, 0.0f});
        if (!experts_) {
            for (uint32_t e = 0; e < E; ++e)  // an expert no token chose: every workgroup leaves at once
                expert_ffn(r, {w.up.slabs[e], c_.ffn == ffn_kind::swiglu ? w.gate.slabs[e] : gpu_matrix{}, w.down.slabs[e]}, e, T);
        } else {  // streaming: the host learns which experts run, then binds them from their slots
            ctx_->flush(r.command_buffer());
            experts_->begin_layer();
            const std::vector<uint32_t> count = read_ctrl(moe.count(0), E);
            for (uint32_t e = 0; e < E; ++e)
                if (count[e]) expert_ffn(r, experts_->acquire(r, l, int32_t(e)), e, T);
        }

        // x = x + s·(y − x); without a router (or mod.scale none) x = y.
        ops::scatter_residual(r, *x_, *h_, ctrl, rt, D, T, w.mod_router && c_.scale != mod_scale::none);
    }

    // h[rows(e)] += scale(e) · FFN_e(xn[rows(e)]) over the tokens routed to expert e.
    void expert_ffn(recorder& r, const expert_slots::expert& x, uint32_t e, uint32_t T) {
        const ops::moe_record& moe = layout_.moe;
        const buffer_view ctrl = *ctrl_;
        const bool swiglu = x.gate.rows > 0;
        const slots in{.n_max = T, .count_at = moe.count(e), .x_index_at = moe.rows(e)};
        r.independent([&] {
            ops::matmul(r, x.up, *xn_, *up_, ctrl, in);
            if (swiglu) ops::matmul(r, x.gate, *xn_, *gate_, ctrl, in);
        });
        ops::ffn_act(r, *up_, swiglu ? buffer_view(*gate_) : buffer_view(*dummy_), ctrl, uint32_t(c_.n_ff), swiglu, T,
                     moe.count(e));
        ops::matmul(r, x.down, *up_, *h_, ctrl,
                    {.n_max = T, .count_at = moe.count(e), .y_index_at = moe.rows(e), .scale_at = moe.scale(e),
                     .accumulate = true});
    }

    std::vector<uint32_t> read_ctrl(uint32_t at, uint32_t n) const {
        std::vector<uint32_t> v(n);
        if (n) ctrl_->download(v.data(), uint64_t(n) * 4, uint64_t(at) * 4);
        return v;
    }

    const model_config& c_;
    std::shared_ptr<vk::context> ctx_;
    uint32_t B_;
    ctrl_layout layout_;
    std::unique_ptr<vk::pipelines> kernels_;
    std::unique_ptr<gpu_weights> weights_;
    std::unique_ptr<buffer> x_, xn_, h_, q_, k_, v_, o_, gate_logits_, up_, gate_, logits_dev_, readback_, ctrl_, dummy_;
    std::unique_ptr<buffer> cache_pos_, rope_;
    std::vector<std::unique_ptr<buffer>> k_cache_, v_cache_;
    std::vector<int64_t> tokens_in_;
    std::unique_ptr<expert_slots> experts_;  // expert streaming; null: every expert resident
};

}  // namespace ncas::vk
