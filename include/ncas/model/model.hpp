#pragma once
// A loaded model: the mapped file, its config and its weights bound in place.
// basic_model<Preset> additionally checks the file against a compile-time
// preset; the preset changes no kernel, only what load() accepts.
#include <memory>
#include <string>

#include "ncas/memory/mapped_file.hpp"
#include "ncas/model/weights.hpp"

namespace ncas {

class model_core {
public:
    const model_config& config() const { return config_; }
    const model_weights& weights() const { return weights_; }
    const gguf_file& file() const { return *file_; }
    const std::string& path() const { return map_.path(); }

protected:
    explicit model_core(const std::string& path)
        : map_(path), file_(std::make_unique<gguf_file>(gguf_file::from_memory(path, map_.bytes()))),
          config_(read_config(*file_)) {
        const std::byte* base = map_.bytes().data();
        weights_ = weight_binder(*file_, config_, [base](const tensor_info& t) { return base + t.offset; }).bind(config_);
    }

    mapped_file map_;
    std::unique_ptr<gguf_file> file_;
    model_config config_;
    model_weights weights_;
};

template <class P = dynamic_config>
class basic_model : public model_core {
public:
    static basic_model load(const std::string& path) { return basic_model(path); }

private:
    explicit basic_model(const std::string& path) : model_core(path) {
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
