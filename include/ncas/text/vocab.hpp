#pragma once
// The tokenizer of a GGUF file, from its tokenizer.ggml.* metadata as llama.cpp
// writes it: model "gpt2" (byte-level BPE: tokens, merges) or "llama"
// (SentencePiece: tokens, scores; add_space_prefix, default true as in llama.cpp),
// with token_type, bos/eos/unknown ids and the add_bos_token / add_eos_token flags.
// A file that has only a vocabulary (no tensors) is read the same way.
#include <memory>
#include <string>
#include <vector>

#include "ncas/format/gguf.hpp"
#include "ncas/text/tokenizer.hpp"

namespace ncas {

// The file's tokenizer, or null with *why_missing saying why there is none
// (no tokenizer.ggml.model, or a model ncas does not read). A vocabulary that
// is there but broken is an error naming the file.
inline std::unique_ptr<tokenizer> read_vocab(const gguf_file& f, std::string* why_missing = nullptr) {
    const std::string kind = f.get_string("tokenizer.ggml.model", "");
    auto missing = [&](std::string why) {
        if (why_missing) *why_missing = std::move(why);
        return std::unique_ptr<tokenizer>();
    };
    if (kind.empty()) return missing("has no tokenizer (no tokenizer.ggml.model)");
    if (kind != "gpt2" && kind != "llama")
        return missing("has tokenizer model '" + kind +
                       "'; ncas reads byte-level BPE ('gpt2') and SentencePiece ('llama')");
    auto id = [&](const char* key) { return f.has(key) ? int32_t(f.get_uint(key)) : int32_t(-1); };
    const size_t n = f.get_array("tokenizer.ggml.tokens").size();
    std::vector<int32_t> types;
    if (f.has("tokenizer.ggml.token_type")) {
        for (int64_t t : f.get_ints("tokenizer.ggml.token_type")) types.push_back(int32_t(t));
        // Present means one type per token: an empty or short array is a broken file, not "all normal".
        if (types.size() != n)
            f.fail("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                   std::to_string(n) + " tokens");
    }
    std::unique_ptr<tokenizer> t;
    try {
        if (kind == "gpt2") {
            t = std::make_unique<tokenizer>(
                f.get_strings("tokenizer.ggml.tokens"),
                f.has("tokenizer.ggml.merges") ? f.get_strings("tokenizer.ggml.merges") : std::vector<std::string>{},
                std::move(types), id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        } else {
            if (!f.has("tokenizer.ggml.scores")) f.fail("SentencePiece vocabulary without tokenizer.ggml.scores");
            std::vector<float> scores;
            for (double s : f.get_floats("tokenizer.ggml.scores")) scores.push_back(float(s));
            if (scores.size() != n)
                f.fail("tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                       std::to_string(n) + " tokens");
            t = std::make_unique<tokenizer>(tokenizer::spm(
                f.get_strings("tokenizer.ggml.tokens"), std::move(scores), std::move(types),
                id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"),
                id("tokenizer.ggml.unknown_token_id"), f.get_bool("tokenizer.ggml.add_space_prefix", true)));
        }
    } catch (const error& e) {
        f.fail(e.what());
    }
    // llama.cpp's defaults: SentencePiece vocabularies add BOS, byte-level BPE ones do not.
    t->set_special_flags(f.get_bool("tokenizer.ggml.add_bos_token", kind == "llama"),
                         f.get_bool("tokenizer.ggml.add_eos_token", false));
    return t;
}

}  // namespace ncas
