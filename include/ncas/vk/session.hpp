#pragma once
// The Vulkan session: the same API as ncas::session (prefill / decode /
// evaluate / rewind), the same forward pass (docs/spec.md §1: model/forward.hpp
// runs this backend's verbs, below, in the model's order), recorded as one
// command buffer per forward pass.
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
#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ncas/model/forward.hpp"
#include "ncas/model/model.hpp"
#include "ncas/model/rope.hpp"
#include "ncas/session_base.hpp"
#include "ncas/session_params.hpp"
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

// Every device buffer a session allocates besides the weights, in bytes: the one
// list that allocate() creates and check_memory() counts.
struct session_buffers {
    uint64_t x, xn, h, q, k, v, o, gate_logits, up, gate, logits, readback, ctrl, dummy;  // activations, control
    uint64_t cache_pos, rope, k_layer, v_layer;  // positions [L, n_ctx], cos/sin [2, n_ctx, d/2], one layer's K and V
    int64_t n_layer;

    session_buffers(const model_dims& m, int64_t n_ctx, int64_t batch, weight_type kv_type) {
        const uint64_t B = uint64_t(batch), D = uint64_t(m.n_embd), f = 4, ctx = uint64_t(n_ctx);
        x = xn = h = B * D * f;
        q = B * uint64_t(m.q_dim()) * f, k = B * uint64_t(m.k_dim()) * f, v = B * uint64_t(m.v_dim()) * f;
        o = B * uint64_t(m.attn_dim()) * f, gate_logits = B * uint64_t(m.n_expert) * f;
        up = gate = B * uint64_t(m.n_ff) * f;
        logits = readback = B * uint64_t(m.n_vocab) * f;
        ctrl = uint64_t(ctrl_layout(m, uint32_t(batch)).words) * 4, dummy = 16;
        cache_pos = uint64_t(m.n_layer) * ctx * 4, rope = 2 * ctx * uint64_t(m.head_k / 2) * 4;
        // rows as the CPU stores them (q8_0 / q4_0: whole blocks of 32), the layer rounded up to whole words
        k_layer = div_up(ctx * uint64_t(kv_row_bytes(kv_type, m.k_dim())), 4) * 4;
        v_layer = div_up(ctx * uint64_t(kv_row_bytes(kv_type, m.v_dim())), 4) * 4;
        n_layer = m.n_layer;
    }
    // All of them (the readback buffer too: host-visible memory, on many devices the same heap).
    uint64_t total() const {
        return x + xn + h + q + k + v + o + gate_logits + up + gate + logits + readback + ctrl + dummy + cache_pos + rope +
               uint64_t(n_layer) * (k_layer + v_layer);
    }
};

// Whether a session with these parameters streams its experts.
inline bool streams_experts(const model_core& m, const session_params& p) { return p.expert_budget != 0 || m.streams_experts(); }

// The memory budget: weights (streaming: the expert slots instead of the expert
// tensors), cache and activations against `available` bytes of the device; a
// clear error (what is needed, what is there, what to change) when they do not fit.
inline void check_memory(const device_info& d, uint64_t available, const model_core& m, const session_params& p) {
    const model_config& c = m.config();
    const bool stream = streams_experts(m, p);
    const uint64_t w = weight_upload_bytes(c, m.weights(), !stream) + (stream ? expert_slots::device_bytes(m, p) : 0);
    const session_buffers b(c, p.n_ctx, p.n_batch, p.kv_type);
    const uint64_t s = b.total();
    if (w + s > available)
        throw error("model '" + m.path() + "' does not fit on Vulkan device '" + d.name + "': it needs " +
                    std::to_string((w + s) >> 20) + " MiB (weights " + std::to_string(w >> 20) + " MiB, cache and buffers " +
                    std::to_string(s >> 20) + " MiB for " + std::to_string(p.n_ctx) + " positions), the device has " +
                    std::to_string(available >> 20) + " MiB; use a smaller context, a smaller cache type (f16, q8_0, q4_0), a smaller weight type or " +
                    (stream ? "a smaller expert budget" : "an expert budget (streaming)"));
    if (std::max(b.k_layer, b.v_layer) > d.max_storage_range)
        throw error("Vulkan device '" + d.name + "' cannot bind a " + std::to_string(std::max(b.k_layer, b.v_layer) >> 20) +
                    " MiB cache layer; use a smaller context or a smaller cache type (f16, q8_0, q4_0)");
}

class session : public session_base<session, session_params> {
public:
    session(const model_core& m, session_params p = {}, device_options o = {})
        : session(m, p, std::make_shared<vk::context>(std::move(o))) {}

    session(const model_core& m, session_params p, std::shared_ptr<context> ctx)
        // tokens go in through vkCmdUpdateBuffer (64 KiB): at most 16384 a pass
        : session_base(m, p, 16384), c_(m.config()), ctx_(std::move(ctx)), B_(uint32_t(p_.n_batch)), layout_(c_, B_) {
        ops::kv_type_constant(p_.kv_type);  // throws for a type the kernels do not store
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
        const session_buffers b(c_, p_.n_ctx, p_.n_batch, p_.kv_type);
        auto make = [&](uint64_t bytes) { return std::make_unique<buffer>(*ctx_, bytes); };
        x_ = make(b.x), xn_ = make(b.xn), h_ = make(b.h);
        q_ = make(b.q), k_ = make(b.k), v_ = make(b.v), o_ = make(b.o), gate_logits_ = make(b.gate_logits);
        up_ = make(b.up), gate_ = make(b.gate), logits_dev_ = make(b.logits);
        readback_ = std::make_unique<buffer>(*ctx_, b.readback, buffer::kind::readback);
        ctrl_ = make(b.ctrl), dummy_ = make(b.dummy), cache_pos_ = make(b.cache_pos), rope_ = make(b.rope);
        for (int64_t l = 0; l < c_.n_layer; ++l) k_cache_.push_back(make(b.k_layer)), v_cache_.push_back(make(b.v_layer));

        // The same cos/sin table the CPU backend computes (in double, once).
        const rope_table table(p_.n_ctx, c_.head_k, c_.rope_theta);
        const uint64_t half_table = b.rope / 2;
        rope_->upload(table.cos_at(0), half_table, 0);
        rope_->upload(table.sin_at(0), half_table, half_table);

        ctx_->submit([&](VkCommandBuffer cmd) { vkCmdFillBuffer(cmd, ctrl_->handle(), 0, VK_WHOLE_SIZE, 0); });
        tokens_in_.assign(size_t(c_.n_layer), 0);
    }

    // One forward pass over tokens (T <= batch) at positions n_past.., one command buffer.
    void run_batch(std::span<const int32_t> tokens, bool all_logits, float* out) {
        const uint32_t T = uint32_t(tokens.size()), V = uint32_t(c_.n_vocab);
        const uint32_t n_out = all_logits ? T : 1;
        ctx_->submit([&](VkCommandBuffer cmd) {
            recorder r(*kernels_, cmd);
            vkCmdUpdateBuffer(cmd, ctrl_->handle(), uint64_t(layout_.tokens) * 4, uint64_t(T) * 4, tokens.data());
            r.barrier();
            pass p{*this, r, T};
            run_forward(p, c_, m_.weights(), all_logits);
            const VkBufferCopy copy{0, 0, uint64_t(n_out) * V * 4};
            vkCmdCopyBuffer(cmd, logits_dev_->handle(), readback_->handle(), 1, &copy);
        });
        readback_->download(out, uint64_t(n_out) * V * 4);
        for (auto& n : tokens_in_) n += T;
    }

    // One batch: the verbs of model/forward.hpp, recorded into r. Every data-dependent
    // choice (which tokens a layer routes, which experts they use) is made on the
    // device, in the control buffer: route() cannot know whether any token entered,
    // and the dispatches of a layer no token entered return at once.
    struct pass {
        session& s;
        recorder& r;
        uint32_t T;

        const gpu_layer& w(const layer_plan& l) const { return s.weights_->layers[size_t(l.index)]; }
        const layer_weights& cw(const layer_plan& l) const { return s.m_.weights().layers[size_t(l.index)]; }
        buffer_view ctrl() const { return *s.ctrl_; }
        buffer_view or_dummy(const std::shared_ptr<buffer>& b) const { return b ? buffer_view(*b) : buffer_view(*s.dummy_); }
        const ops::route_record& rt() const { return s.layout_.route; }
        slots routed() const { return {.n_max = T, .count_at = rt().count()}; }
        uint32_t D() const { return uint32_t(s.c_.n_embd); }
        ops::gpu_cache_layer cache(const layer_plan& l) const {
            return {*s.k_cache_[size_t(l.index)], *s.v_cache_[size_t(l.index)], *s.cache_pos_,
                    s.p_.kv_type, uint32_t(s.p_.n_ctx), uint32_t(l.index)};
        }
        uint32_t lambda_at = none;  // where the per-token λ_t is (expert-conditional λ), else none

        void embed() { ops::embed(r, s.weights_->token_embd, *s.x_, ctrl(), T, s.layout_.tokens); }

        bool route(const layer_plan& l) {
            ops::route(r, *s.x_, or_dummy(w(l).mod_router), ctrl(), rt(),
                       {D(), T, uint32_t(s.n_past()), uint32_t(l.index), l.mod, s.c_.scale, s.c_.mod_threshold,
                        s.layout_.kv_len, s.layout_.kept});
            return true;
        }

        void norm(const layer_plan& l, norm_site site) {
            if (site == norm_site::attention)
                ops::rms_norm(r, *s.x_, *w(l).attn_norm, *s.xn_, ctrl(), D(), s.c_.norm_eps, T, rt().count(), rt().routed());
            else
                ops::rms_norm(r, *s.h_, *w(l).ffn_norm, *s.xn_, ctrl(), D(), s.c_.norm_eps, T, rt().count());
        }

        void lambda(const layer_plan& l) {
            lambda_at = none;
            if (!l.lambda_exp) return;  // λ_l itself is a push constant of attend
            const ops::moe_record& moe = s.layout_.moe;
            ops::matmul(r, w(l).gate_inp, *s.xn_, *s.gate_logits_, ctrl(), routed());
            ops::moe_route(r, *s.gate_logits_, *w(l).lambda_exp, ctrl(), moe,
                           {T, rt().count(), true, true, true, s.layout_.use + uint32_t(l.index * s.c_.n_expert), cw(l).lambda});
            lambda_at = moe.lambda_t();
        }

        // q, k, v; the residual x_R is gathered into h alongside (project accumulates Wo·o onto it).
        void qkv(const layer_plan& l) {
            r.independent([&] {
                ops::matmul(r, w(l).wq, *s.xn_, *s.q_, ctrl(), routed());
                ops::matmul(r, w(l).wk, *s.xn_, *s.k_, ctrl(), routed());
                ops::matmul(r, w(l).wv, *s.xn_, *s.v_, ctrl(), routed());
                ops::gather_residual(r, *s.x_, *s.h_, ctrl(), rt(), D(), T);
            });
        }

        void rope_store(const layer_plan& l) { ops::rope_store(r, s.c_, *s.q_, *s.k_, *s.v_, *s.rope_, cache(l), ctrl(), rt(), T); }

        void attend(const layer_plan& l) {
            ops::attention(r, s.c_, *s.q_, cache(l), *s.o_, or_dummy(w(l).sub_norm), ctrl(), rt(), T,
                           {cw(l).lambda, lambda_at, w(l).sub_norm != nullptr, cw(l).lambda_init});
        }

        void project(const layer_plan& l) {
            ops::matmul(r, w(l).wo, *s.o_, *s.h_, ctrl(), {.n_max = T, .count_at = rt().count(), .accumulate = true});
        }

        void lookahead(const layer_plan&) {}  // the device slots are filled when a layer's routing is read back

        void gate(const layer_plan& l) {
            if (l.gate) ops::matmul(r, w(l).gate_inp, *s.xn_, *s.gate_logits_, ctrl(), routed());
            ops::moe_route(r, *s.gate_logits_, *s.dummy_, ctrl(), s.layout_.moe,
                           {T, rt().count(), s.c_.expert_weights_norm, l.gate, false,
                            s.layout_.use + uint32_t(l.index * s.c_.n_expert), 0.0f});
        }

        void experts(const layer_plan& l) {
            const uint32_t E = uint32_t(s.c_.n_expert);
            const gpu_layer& g = w(l);
            if (!s.experts_) {
                for (uint32_t e = 0; e < E; ++e)  // an expert no token chose: every workgroup leaves at once
                    s.expert_ffn(r, {g.up.slabs[e], s.c_.ffn == ffn_kind::swiglu ? g.gate.slabs[e] : gpu_matrix{}, g.down.slabs[e]},
                                 e, T);
            } else {  // streaming: the host learns which experts run, then binds them from their slots
                s.ctx_->flush(r.command_buffer());
                s.experts_->begin_layer();
                const std::vector<uint32_t> count = s.read_ctrl(s.layout_.moe.count(0), E);
                for (uint32_t e = 0; e < E; ++e)
                    if (count[e]) s.expert_ffn(r, s.experts_->acquire(r, l.index, int32_t(e)), e, T);
            }
        }

        void mix(const layer_plan& l) { ops::scatter_residual(r, *s.x_, *s.h_, ctrl(), rt(), D(), T, l.mix); }

        void logits(bool all) {
            const uint32_t first = all ? 0 : T - 1, n_out = T - first;
            ops::rms_norm(r, *s.x_, *s.weights_->output_norm, *s.xn_, ctrl(), D(), s.c_.norm_eps, n_out, none, none, first);
            ops::matmul(r, s.weights_->output, *s.xn_, *s.logits_dev_, ctrl(), {.n_max = n_out});
        }
    };

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
