#pragma once
// The model's weights on the device: every matrix uploaded as stored (ggml
// layouts, no repacking), one buffer per tensor; an expert tensor is one
// buffer and each expert a view of its slab, so a kernel binds only the
// experts it runs. Vectors (norms, routers, λ_exp) are f32 buffers. With expert
// streaming the expert tensors stay in the file (vk/expert_slots.hpp holds them).
#include <map>
#include <memory>
#include <vector>

#include "ncas/model/weights.hpp"
#include "ncas/vk/ops.hpp"

namespace ncas::vk {

struct gpu_expert_tensor {
    std::shared_ptr<buffer> storage;
    std::vector<gpu_matrix> slabs;  // [E]
};

struct gpu_layer {
    gpu_matrix wq, wk, wv, wo, gate_inp;  // gate_inp: rows == 0 when the layer has none
    std::shared_ptr<buffer> attn_norm, ffn_norm, sub_norm, lambda_exp, mod_router;  // null when absent
    gpu_expert_tensor up, gate, down;
};

// The binding of `bytes` at `offset` of b: a view starting at the device's storage-offset
// alignment below offset, and in `rest` the bytes from there to offset (a kernel's w_offset).
inline buffer_view bind_range(const context& ctx, const buffer& b, uint64_t offset, uint64_t bytes, uint32_t& rest,
                              const std::string& name) {
    const uint64_t align = std::max<uint64_t>(ctx.info().min_storage_alignment, 4);
    const uint64_t start = offset / align * align;
    rest = uint32_t(offset - start);
    const uint64_t range = std::min<uint64_t>((rest + bytes + 3) & ~uint64_t(3), b.size() - start);
    if (range > ctx.info().max_storage_range)
        throw error("Vulkan backend: tensor '" + name + "' needs a binding of " + std::to_string(range >> 20) +
                    " MiB; device '" + ctx.info().name + "' binds at most " +
                    std::to_string(ctx.info().max_storage_range >> 20) + " MiB (use a smaller weight type)");
    return {b.handle(), start, range};
}

// The kernels' constraint on a weight row: a multiple of 4 values, of whole
// blocks when quantised (32 values; 256, a super-block, for the K types).
inline void check_row_shape(weight_type t, int64_t cols, const std::string& name) {
    const int64_t block = traits_of(t).block_values;
    if (cols % 4 || (block > 1 && cols % block))
        throw error("Vulkan backend: tensor '" + name + "' (" + std::string(type_name(t)) + ") has rows of " +
                    std::to_string(cols) + " values; the kernels need a multiple of 4 (of 32 for Q8_0, Q4_0, Q5_0 and Q5_1, of 256 " +
                    "for the K types Q4_K, Q5_K and Q6_K: whole super-blocks)");
}

// Bytes the device will hold for the weights (what gpu_weights uploads; the
// expert tensors only when they are resident).
inline uint64_t weight_upload_bytes(const model_config& c, const model_weights& w, bool experts = true) {
    auto mat = [](const weight_matrix& m) { return m.data ? uint64_t(m.bytes()) : 0; };
    auto vec = [](const std::vector<float>& v) { return uint64_t(v.size()) * 4; };
    uint64_t n = mat(w.token_embd) + (w.output.data == w.token_embd.data ? 0 : mat(w.output)) + vec(w.output_norm);
    for (const layer_weights& l : w.layers) {
        n += mat(l.wq) + mat(l.wk) + mat(l.wv) + mat(l.wo) + mat(l.gate_inp);
        n += vec(l.attn_norm) + vec(l.ffn_norm) + vec(l.sub_norm) + vec(l.lambda_exp) + vec(l.mod_router);
        for (const expert_tensor* t : {&l.up, &l.gate, &l.down})
            if (t->rows && experts) n += uint64_t(t->slab_bytes()) * uint64_t(c.n_expert);
    }
    return n;
}

class gpu_weights {
public:
    // resident_experts false: the expert tensors are checked, not uploaded (streaming).
    gpu_weights(const context& ctx, const model_config& c, const model_weights& w, bool resident_experts = true)
        : ctx_(ctx), resident_experts_(resident_experts) {
        token_embd = matrix(w.token_embd, "token_embd");
        output = w.output.data == w.token_embd.data ? token_embd : matrix(w.output, "output");
        output_norm = vector(w.output_norm);
        for (size_t l = 0; l < w.layers.size(); ++l) {
            const layer_weights& s = w.layers[l];
            const std::string b = "blk." + std::to_string(l) + ".";
            gpu_layer g;
            g.wq = matrix(s.wq, b + "attn_q"), g.wk = matrix(s.wk, b + "attn_k"), g.wv = matrix(s.wv, b + "attn_v");
            g.wo = matrix(s.wo, b + "attn_output");
            if (s.gate_inp.data) g.gate_inp = matrix(s.gate_inp, b + "ffn_gate_inp");
            g.attn_norm = vector(s.attn_norm), g.ffn_norm = vector(s.ffn_norm);
            g.sub_norm = vector(s.sub_norm), g.lambda_exp = vector(s.lambda_exp), g.mod_router = vector(s.mod_router);
            g.up = experts(s.up, c.n_expert, b + "ffn_up_exps");
            g.down = experts(s.down, c.n_expert, b + "ffn_down_exps");
            if (c.ffn == ffn_kind::swiglu) g.gate = experts(s.gate, c.n_expert, b + "ffn_gate_exps");
            layers.push_back(std::move(g));
        }
    }

    gpu_matrix token_embd, output;
    std::shared_ptr<buffer> output_norm;
    std::vector<gpu_layer> layers;

private:
    gpu_matrix matrix(const weight_matrix& m, const std::string& name) {
        check_row_shape(m.type, m.cols, name);
        auto b = std::make_shared<buffer>(ctx_, uint64_t(m.bytes()));
        b->upload(m.data, uint64_t(m.bytes()));
        owned_.push_back(b);
        gpu_matrix g{m.type, m.rows, m.cols, {}, 0};
        g.view = bind_range(ctx_, *b, 0, uint64_t(m.bytes()), g.offset, name);
        return g;
    }
    std::shared_ptr<buffer> vector(const std::vector<float>& v) {
        if (v.empty()) return nullptr;
        auto b = std::make_shared<buffer>(ctx_, v.size() * 4);
        b->upload(std::span<const float>(v));
        return b;
    }
    gpu_expert_tensor experts(const expert_tensor& t, int64_t E, const std::string& name) {
        check_row_shape(t.type, t.cols, name);
        if (!resident_experts_) return {};
        if (!t.data) throw error("Vulkan backend: tensor '" + name + "' is not resident (the model streams its experts: set an expert budget)");
        const uint64_t slab = uint64_t(t.slab_bytes());
        gpu_expert_tensor g{std::make_shared<buffer>(ctx_, slab * uint64_t(E)), {}};
        g.storage->upload(t.data, slab * uint64_t(E));
        for (int64_t e = 0; e < E; ++e) {
            gpu_matrix m{t.type, t.rows, t.cols, {}, 0};
            m.view = bind_range(ctx_, *g.storage, slab * uint64_t(e), slab, m.offset, name + "[" + std::to_string(e) + "]");
            g.slabs.push_back(m);
        }
        return g;
    }

    const context& ctx_;
    bool resident_experts_;
    std::vector<std::shared_ptr<buffer>> owned_;
};

}  // namespace ncas::vk
