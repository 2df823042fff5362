// Fuzz harness: tokenizer encode and decode on the full GPT-2 vocabulary (50257
// tokens, 50000 merges), on the demo model's own vocabulary and on a
// SentencePiece vocabulary (tests/data/tokenizer/spm_vocab.gguf, byte fallback).
// The first byte chooses the vocabulary (bit 3: SentencePiece, else bit 0: demo
// or GPT-2) and the mode:
//   encode: any bytes encode without fault; ids lie in the vocabulary; valid
//           UTF-8 round-trips exactly (decode(encode(t)) == t); with special
//           tokens parsed, decoding still gives the text back (GPT-2; a
//           SentencePiece control token decodes to nothing, and a literal
//           U+2581 decodes as a space, as in sentencepiece).
//   decode: any ids decode (an id outside the vocabulary is an ncas::error).
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "fuzz.hpp"
#include "ncas/ncas.hpp"

namespace {

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    FUZZ_CHECK(f.good());
    std::vector<std::string> out;
    for (std::string line; std::getline(f, line);) out.push_back(line);
    return out;
}

const ncas::tokenizer& gpt2() {
    static const auto t = [] {
        const std::string dir = fuzz::data_dir() + "/tokenizer/";
        auto tokens = read_lines(dir + "gpt2_tokens.txt");
        std::vector<int32_t> types(tokens.size(), 1);
        types.back() = 3;  // <|endoftext|> is a control token
        return std::make_unique<ncas::tokenizer>(std::move(tokens), read_lines(dir + "gpt2_merges.txt"), std::move(types),
                                                 50256, 50256);
    }();
    return *t;
}

const ncas::tokenizer& demo() {
    static const auto m = std::make_unique<ncas::model>(ncas::model::load(fuzz::data_dir() + "/../../models/demo-q8_0.gguf"));
    return m->tokenizer();
}

const ncas::tokenizer& spm() {
    static const auto t = [] {
        std::ifstream f(fuzz::data_dir() + "/tokenizer/spm_vocab.gguf", std::ios::binary);
        FUZZ_CHECK(f.good());
        static std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        const auto* p = reinterpret_cast<const std::byte*>(raw.data());
        return ncas::read_vocab(ncas::gguf_file::from_memory("spm_vocab.gguf", {p, raw.size()}));
    }();
    return *t;
}

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = uint8_t(s[i]);
        const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!n || i + size_t(n) > s.size()) return false;
        uint32_t cp = n == 1 ? c : c & (0x7f >> n);
        for (int k = 1; k < n; ++k) {
            const auto d = uint8_t(s[i + size_t(k)]);
            if ((d >> 6) != 2) return false;
            cp = cp << 6 | (d & 0x3f);
        }
        static constexpr uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += size_t(n);
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::reader in{data, size};
    const uint8_t mode = in.get<uint8_t>();
    const bool is_spm = mode & 8;
    const ncas::tokenizer& tok = is_spm ? spm() : mode & 1 ? demo() : gpt2();
    const int32_t n_vocab = int32_t(tok.size());
    try {
        if (mode & 2) {  // decode arbitrary ids
            std::vector<int32_t> ids;
            while (in.n) ids.push_back(in.get<int32_t>());
            bool in_range = true;
            for (int32_t id : ids) in_range = in_range && id >= 0 && id < n_vocab;
            std::string text;
            try {
                text = tok.decode(ids);
            } catch (const ncas::error&) {
                FUZZ_CHECK(!in_range);  // only an id outside the vocabulary is refused
                return 0;
            }
            FUZZ_CHECK(in_range);
            return 0;
        }
        const std::string_view text = in.rest();
        const bool special = mode & 4;
        const std::vector<int32_t> ids = tok.encode(text, false, special);
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < n_vocab);
        FUZZ_CHECK(text.empty() == ids.empty());
        if (valid_utf8(text) && (!is_spm || (!special && text.find("\xE2\x96\x81") == std::string_view::npos)))
            FUZZ_CHECK(tok.decode(ids) == text);
        if (is_spm) {  // the raw bytes of the tokens are the text with the space prefix, spaces kept
            std::string raw;
            for (int32_t id : ids) raw += tok.token_bytes(id);
            if (!special && !text.empty() && text.find("\xE2\x96\x81") == std::string_view::npos)
                FUZZ_CHECK(raw == " " + std::string(text));
        }
    } catch (const ncas::error&) {
    }
    return 0;
}
