#pragma once
// A loaded model: the mapped file, its config and its weights bound in place.
// basic_model<Preset> additionally checks the file against a compile-time
// preset; the preset changes no kernel, only what load() accepts.
//
// With load_options::stream_experts the file is not mapped: the header is
// parsed with plain reads, every non-expert tensor is read into owned memory,
// and the expert tensors stay in the file (their data is null) for an
// expert_arena to read slab by slab.
#include <memory>
#include <string>
#include <string_view>

#include "ncas/memory/aligned_buffer.hpp"
#include "ncas/memory/mapped_file.hpp"
#include "ncas/model/weights.hpp"
#include "ncas/text/tokenizer.hpp"
#include "ncas/text/vocab.hpp"

namespace ncas {

struct load_options {
    bool stream_experts = false;  // leave expert tensors in the file (see above); default: map the whole file
};

// The expert FFN tensors (MoE slabs, or the dense FFN of an E = 1 file): what streaming leaves in the file.
inline bool is_expert_tensor(std::string_view name) {
    for (std::string_view s : {"ffn_up_exps.weight", "ffn_gate_exps.weight", "ffn_down_exps.weight", ".ffn_up.weight",
                               ".ffn_gate.weight", ".ffn_down.weight"})
        if (name.ends_with(s)) return true;
    return false;
}

class model_core {
public:
    const model_config& config() const { return config_; }
    const model_weights& weights() const { return weights_; }
    const gguf_file& file() const { return *file_; }
    const std::string& path() const { return file_->name(); }
    bool streams_experts() const { return streamed_; }
    // Bytes of weights read into owned memory (streaming load; 0 when mapped).
    int64_t resident_weight_bytes() const { return resident_bytes_; }
    // Where each layer's expert tensors lie in the file, for an expert arena (memory/):
    // a model converts to it, so expert_arena::min_budget(model, false) reads as it should.
    const ncas::expert_layout& expert_layout() const { return experts_; }
    operator const ncas::expert_layout&() const { return experts_; }

    bool has_tokenizer() const { return tokenizer_ != nullptr; }
    // The tokenizer from the file's tokenizer.ggml.* metadata; an error names why there is none.
    const ncas::tokenizer& tokenizer() const {
        if (!tokenizer_) file_->fail(tokenizer_missing_);
        return *tokenizer_;
    }

protected:
    model_core(const std::string& path, const load_options& o)
        : streamed_(o.stream_experts), map_(streamed_ ? mapped_file() : mapped_file(path)),
          handle_(streamed_ ? file_handle(path) : file_handle()),
          file_(std::make_unique<gguf_file>(streamed_ ? gguf_file::from_file(handle_)
                                                      : gguf_file::from_memory(path, map_.bytes()))),
          config_(read_config(*file_)) {
        const std::byte* base = map_.bytes().data();
        if (streamed_) weights_ = weight_binder(*file_, config_, [this](const tensor_info& t) { return read_resident(t); }).bind(config_);
        else weights_ = weight_binder(*file_, config_, [base](const tensor_info& t) { return base + t.offset; }).bind(config_);
        load_tokenizer();
        describe_experts();
    }

    void describe_experts() {
        experts_ = {.path = path(), .n_layer = config_.n_layer, .n_expert = config_.n_expert,
                    .n_expert_used = config_.n_expert_used, .layers = {}};
        auto part = [&](const expert_tensor& t) -> ncas::expert_layout::tensor {
            if (!t.rows) return {};
            for (const tensor_info& i : file_->tensors())
                if (i.offset == t.file_offset) return {t.file_offset, t.slab_bytes(), i.name};
            file_->fail("no tensor at offset " + std::to_string(t.file_offset));
        };
        for (const layer_weights& w : weights_.layers) experts_.layers.push_back({part(w.up), part(w.gate), part(w.down)});
    }

    // Streaming load: a non-expert tensor read into owned memory; null for expert tensors.
    const std::byte* read_resident(const tensor_info& t) {
        if (is_expert_tensor(t.name)) return nullptr;
        aligned_buffer& b = owned_.emplace_back(size_t(t.bytes), 64);
        try {
            handle_.read_at(t.offset, b.bytes());
        } catch (const error& e) {
            file_->fail("tensor '" + t.name + "': " + e.what());
        }
        resident_bytes_ += int64_t(t.bytes);
        return b.data();
    }

    void load_tokenizer() {
        const gguf_file& f = *file_;
        tokenizer_ = read_vocab(f, &tokenizer_missing_);
        if (!tokenizer_) return;
        if (int64_t(tokenizer_->size()) != config_.n_vocab)
            f.fail("tokenizer has " + std::to_string(tokenizer_->size()) + " tokens, the model's vocabulary " +
                   std::to_string(config_.n_vocab));
    }

    bool streamed_ = false;
    mapped_file map_;                   // whole file (default load)
    file_handle handle_;                // plain reads (streaming load)
    std::vector<aligned_buffer> owned_; // non-expert tensors (streaming load)
    int64_t resident_bytes_ = 0;
    std::unique_ptr<gguf_file> file_;
    model_config config_;
    model_weights weights_;
    std::unique_ptr<ncas::tokenizer> tokenizer_;
    std::string tokenizer_missing_;
    ncas::expert_layout experts_;
};

template <class P = dynamic_config>
class basic_model : public model_core {
public:
    static basic_model load(const std::string& path, const load_options& o = {}) { return basic_model(path, o); }

private:
    basic_model(const std::string& path, const load_options& o) : model_core(path, o) {
        if constexpr (preset<P>) check_preset();
    }

    void check_preset() const {
        const model_dims& want = P::dims;
        const model_config& c = config_;
        auto same = [&](const char* key, int64_t got, int64_t expect) {
            if (got != expect)
                file_->fail(std::string("does not match preset ") + std::string(P::name) + ": " + key + " is " +
                            std::to_string(got) + ", the preset has " + std::to_string(expect));
        };
        if (c.arch != architecture::ncas_diffmoe)
            file_->fail("does not match preset " + std::string(P::name) + ": architecture is " + std::string(arch_name(c.arch)));
        same("embedding_length", c.n_embd, want.n_embd);
        same("block_count", c.n_layer, want.n_layer);
        same("attention.head_count", c.n_head, want.n_head);
        same("attention.key_length", c.head_k, want.head_k);
        same("attention.value_length", c.head_v, want.head_v);
        same("expert_count", c.n_expert, want.n_expert);
        same("expert_used_count", c.n_expert_used, want.n_expert_used);
        same("feed_forward_length", c.n_ff, want.n_ff);
    }
};

using model = basic_model<>;

}  // namespace ncas
