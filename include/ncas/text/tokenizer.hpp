#pragma once
// Byte-level BPE tokenizer, exactly as GPT-2 does it.
//
//  * Text is split into pieces by GPT-2's pre-tokenizer regex
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    implemented by hand over code points (gpt2_split), with \s, \p{L} and
//    \p{N} as Python's `regex` module (used by GPT-2's encoder.py) defines
//    them; see unicode_tables.hpp.
//  * Each piece's UTF-8 bytes become symbols through GPT-2's bytes_to_unicode
//    map, and merges are applied like GPT-2's bpe(): repeatedly take the
//    adjacent pair with the lowest merge rank and merge every occurrence of it,
//    left to right, until no adjacent pair has a rank.
//  * Input that is not valid UTF-8 never throws: each byte of a malformed or
//    truncated sequence counts as one code point of class "other" (like
//    punctuation), and its byte is encoded as is, so decode(encode(s)) == s
//    for every byte string s.
//
// SentencePiece vocabularies (llama.cpp's tokenizer.ggml.model "llama"), made
// with tokenizer::spm(), encode as the sentencepiece library's BPE model does
// (and llama.cpp's llm_tokenizer_spm):
//  * spaces become U+2581 "▁", and with add_space_prefix one "▁" is put in
//    front of the text (in front of each run of text after a special token
//    when parse_special splits the text, as llama.cpp does);
//  * the text is split into UTF-8 characters (an invalid byte is one symbol),
//    then the adjacent pair whose concatenation is a normal, user-defined or
//    unused token with the highest score is merged, leftmost first on equal
//    scores, until no pair is a token;
//  * a symbol that is no such token becomes its bytes' <0xNN> tokens (byte
//    fallback), or the unknown token when the vocabulary has no byte tokens.
// decode() gives what sentencepiece's DecodeIds gives: "▁" back to spaces, the
// first space dropped when add_space_prefix is set (only while nothing has
// been output yet), control tokens as nothing, the unknown token as " ⁇ ",
// and runs of byte tokens as UTF-8 with each byte that forms no valid
// character replaced by U+FFFD. token_bytes() (and streaming_decoder) give a
// token's raw bytes (" the" for "▁the", no space dropped, no replacement).
//
// The vocabulary comes as plain vectors (the engine reads them from a GGUF
// file's tokenizer.ggml.* metadata); token types use llama.cpp's values.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ncas/error.hpp"
#include "ncas/text/unicode_tables.hpp"

namespace ncas {

// ------------------------------------------------------------------- UTF-8
namespace utf8 {

enum class status : uint8_t {
    ok,         // a complete, valid sequence of `len` bytes
    invalid,    // the byte at the position starts no valid sequence (len 1)
    truncated,  // a valid prefix of a sequence that the input ends inside
};

struct decoded {
    char32_t cp;   // the code point when ok, else the byte's value
    uint8_t len;   // bytes consumed: the sequence length when ok, else 1
    status st;
};

// Decodes the sequence starting at s[i] (i < s.size()). Strict RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF.
constexpr decoded decode(std::string_view s, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return {b0, 1, status::ok};
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    char32_t cp = 0;
    if (b0 < 0xC2) {
        return {b0, 1, status::invalid};  // continuation byte or overlong C0/C1
    } else if (b0 < 0xE0) {
        need = 1;
        cp = b0 & 0x1Fu;
    } else if (b0 < 0xF0) {
        need = 2;
        cp = b0 & 0x0Fu;
        if (b0 == 0xE0) lo = 0xA0;  // overlong
        if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 < 0xF5) {
        need = 3;
        cp = b0 & 0x07u;
        if (b0 == 0xF0) lo = 0x90;  // overlong
        if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        return {b0, 1, status::invalid};
    }
    for (std::size_t k = 1; k <= need; ++k) {
        if (i + k >= s.size()) return {b0, 1, status::truncated};
        const auto b = static_cast<unsigned char>(s[i + k]);
        if (b < lo || b > hi) return {b0, 1, status::invalid};
        lo = 0x80;
        hi = 0xBF;
        cp = (cp << 6) | (b & 0x3Fu);
    }
    return {cp, static_cast<uint8_t>(need + 1), status::ok};
}

inline void append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Length of the longest prefix of s that does not end inside a sequence that
// more bytes could still complete. Invalid bytes count as complete (they can
// never become valid), so only a truncated tail is left out.
constexpr std::size_t complete_prefix(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        const decoded d = decode(s, i);
        if (d.st == status::truncated) return i;
        i += d.len;
    }
    return i;
}

}  // namespace utf8

// ------------------------------------------------------- GPT-2 byte mapping
namespace gpt2_bytes {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100.. in byte order.
constexpr std::array<char32_t, 256> make_byte_to_cp() {
    std::array<char32_t, 256> m{};
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                               (b >= 0xAE && b <= 0xFF);
        m[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : 256 + n++;
    }
    return m;
}
inline constexpr std::array<char32_t, 256> byte_to_cp = make_byte_to_cp();
inline constexpr char32_t cp_limit = 256 + 68;  // every mapped code point is below this

constexpr std::array<int16_t, cp_limit> make_cp_to_byte() {
    std::array<int16_t, cp_limit> m{};
    for (auto& v : m) v = -1;
    for (int b = 0; b < 256; ++b) m[byte_to_cp[static_cast<std::size_t>(b)]] = static_cast<int16_t>(b);
    return m;
}
inline constexpr std::array<int16_t, cp_limit> cp_to_byte = make_cp_to_byte();

// The byte a code point of a byte-level token stands for, or -1.
constexpr int to_byte(char32_t cp) noexcept {
    return cp < cp_limit ? cp_to_byte[cp] : -1;
}

}  // namespace gpt2_bytes

// ---------------------------------------------------------- pre-tokenizer
namespace detail {

enum class cp_class : uint8_t { other, letter, number, space };

inline cp_class classify(char32_t cp) noexcept {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return cp_class::letter;
        if (cp >= '0' && cp <= '9') return cp_class::number;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return cp_class::space;
        return cp_class::other;
    }
    if (unicode::is_letter(cp)) return cp_class::letter;
    if (unicode::is_number(cp)) return cp_class::number;
    if (unicode::is_whitespace(cp)) return cp_class::space;
    return cp_class::other;
}

struct cp_info {
    std::size_t offset;  // byte offset in the text
    char32_t cp;      // code point; an invalid byte gets 0xFFFFFFFF (matches no literal)
    cp_class cls;
};

inline void decode_for_split(std::string_view text, std::vector<cp_info>& out) {
    out.clear();
    std::size_t i = 0;
    while (i < text.size()) {
        const utf8::decoded d = utf8::decode(text, i);
        if (d.st == utf8::status::ok) {
            out.push_back({i, d.cp, classify(d.cp)});
            i += d.len;
        } else {
            out.push_back({i, 0xFFFFFFFFu, cp_class::other});
            i += 1;
        }
    }
}

// Calls piece(begin, end) (byte offsets) for each match of GPT-2's regex.
template <typename F>
void gpt2_split_cps(std::string_view text, const std::vector<cp_info>& c, F&& piece) {
    const std::size_t n = c.size();
    auto offset = [&](std::size_t k) { return k < n ? c[k].offset : text.size(); };
    std::size_t i = 0;
    while (i < n) {
        std::size_t end = i;
        // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, ASCII apostrophe only)
        if (c[i].cp == U'\'' && i + 1 < n) {
            const char32_t a = c[i + 1].cp;
            if (a == U's' || a == U't' || a == U'm' || a == U'd') {
                end = i + 2;
            } else if (i + 2 < n) {
                const char32_t b = c[i + 2].cp;
                if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l'))
                    end = i + 3;
            }
        }
        if (end == i) {
            // ` ?X+` for X in \p{L}, \p{N}, [^\s\p{L}\p{N}]: one optional
            // U+0020 followed by a run of one class.
            std::size_t j = i;
            if (c[i].cp == U' ' && i + 1 < n && c[i + 1].cls != cp_class::space) j = i + 1;
            const cp_class cls = c[j].cls;
            if (cls != cp_class::space) {
                end = j + 1;
                while (end < n && c[end].cls == cls) ++end;
            } else {
                // \s+(?!\S)|\s+ : a whitespace run that ends the text is taken
                // whole; one followed by a non-space leaves its last character
                // to start the next piece, unless the run is a single character.
                std::size_t k = i + 1;
                while (k < n && c[k].cls == cp_class::space) ++k;
                end = (k == n || k - i == 1) ? k : k - 1;
            }
        }
        piece(offset(i), offset(end));
        i = end;
    }
}

}  // namespace detail

// Splits text into GPT-2 pre-tokenizer pieces (views into text). The pieces
// concatenate to text. Never throws on malformed UTF-8.
inline std::vector<std::string_view> gpt2_split(std::string_view text) {
    std::vector<detail::cp_info> cps;
    detail::decode_for_split(text, cps);
    std::vector<std::string_view> out;
    detail::gpt2_split_cps(text, cps, [&](std::size_t b, std::size_t e) {
        out.push_back(text.substr(b, e - b));
    });
    return out;
}

// ---------------------------------------------------------------- tokenizer

// llama.cpp's token types (GGUF tokenizer.ggml.token_type).
enum class token_type : int32_t {
    undefined = 0,  // treated like normal
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,       // text "<0xNN>", decodes to byte NN
};

enum class tokenizer_kind : uint8_t { gpt2_bpe, spm };

class tokenizer {
public:
    // A SentencePiece vocabulary: tokens as sentencepiece stores them ("▁the",
    // "<0x0A>"), one score per token (higher merges first), llama.cpp token
    // types, bos/eos/unknown ids (-1: none).
    static tokenizer spm(std::vector<std::string> tokens, std::vector<float> scores,
                         std::vector<int32_t> token_types, int32_t bos_id, int32_t eos_id,
                         int32_t unk_id, bool add_space_prefix) {
        if (scores.size() != tokens.size())
            throw error("tokenizer: " + std::to_string(scores.size()) + " scores for " +
                        std::to_string(tokens.size()) + " tokens");
        return tokenizer(spm_tag{}, std::move(tokens), std::move(scores), std::move(token_types), bos_id,
                         eos_id, unk_id, add_space_prefix);
    }

    // tokens:      token texts, index = id. Normal tokens are in GPT-2's
    //              byte-level form ("Ġthe" for " the").
    // merges:      "left right" in rank order (rank 0 first).
    // token_types: llama.cpp values, one per token; empty = all normal.
    // bos_id/eos_id: -1 when the vocabulary has none.
    tokenizer(std::vector<std::string> tokens, std::vector<std::string> merges,
              std::vector<int32_t> token_types, int32_t bos_id, int32_t eos_id)
        : tokens_(std::move(tokens)), bos_(bos_id), eos_(eos_id),
          cache_(std::make_shared<word_cache>()) {
        init(std::move(token_types));
        init_merges(merges);
    }

private:
    struct spm_tag {};
    tokenizer(spm_tag, std::vector<std::string> tokens, std::vector<float> scores, std::vector<int32_t> token_types,
              int32_t bos_id, int32_t eos_id, int32_t unk_id, bool add_space_prefix)
        : tokens_(std::move(tokens)), bos_(bos_id), eos_(eos_id), unk_(unk_id), kind_(tokenizer_kind::spm),
          add_space_prefix_(add_space_prefix), scores_(std::move(scores)),
          cache_(std::make_shared<word_cache>()) {
        init(std::move(token_types));
        if (unk_ < -1 || unk_ >= size())
            throw error("tokenizer: unknown-token id " + std::to_string(unk_) + " is outside the vocabulary of " +
                        std::to_string(size()) + " tokens");
        for (std::size_t i = 0; i < scores_.size(); ++i)
            if (!std::isfinite(scores_[i]))
                throw error("tokenizer: token " + std::to_string(i) + " (" + quote(tokens_[i]) +
                            ") has a score that is not finite");
    }

    void init(std::vector<int32_t> token_types) {
        if (tokens_.empty()) throw error("tokenizer: the vocabulary has no tokens");
        if (tokens_.size() > static_cast<std::size_t>(INT32_MAX))
            throw error("tokenizer: the vocabulary has more than 2^31-1 tokens");
        const auto n = static_cast<int32_t>(tokens_.size());
        if (!token_types.empty() && token_types.size() != tokens_.size())
            throw error("tokenizer: " + std::to_string(token_types.size()) + " token types for " +
                        std::to_string(tokens_.size()) + " tokens");
        types_.resize(tokens_.size(), token_type::normal);
        for (std::size_t i = 0; i < token_types.size(); ++i) {
            const int32_t t = token_types[i];
            if (t < 0 || t > 6)
                throw error("tokenizer: token " + std::to_string(i) + " (" + quote(tokens_[i]) +
                            ") has unknown token type " + std::to_string(t));
            types_[i] = static_cast<token_type>(t);
        }
        if (bos_ < -1 || bos_ >= n)
            throw error("tokenizer: bos id " + std::to_string(bos_) + " is outside the vocabulary of " +
                        std::to_string(n) + " tokens");
        if (eos_ < -1 || eos_ >= n)
            throw error("tokenizer: eos id " + std::to_string(eos_) + " is outside the vocabulary of " +
                        std::to_string(n) + " tokens");

        ids_.reserve(tokens_.size());
        for (int32_t i = 0; i < n; ++i) {
            const auto [it, fresh] = ids_.emplace(tokens_[static_cast<std::size_t>(i)], i);
            if (!fresh)
                throw error("tokenizer: token " + std::to_string(i) + " (" +
                            quote(tokens_[static_cast<std::size_t>(i)]) + ") duplicates token " +
                            std::to_string(it->second));
        }

        // What each token decodes to.
        bytes_.resize(tokens_.size());
        for (int32_t i = 0; i < n; ++i) bytes_[static_cast<std::size_t>(i)] = token_bytes_of(i);

        // The token for each single byte: the symbols GPT-2's BPE starts from,
        // SentencePiece's byte fallback (the byte-type tokens <0xNN>).
        byte_token_.fill(-1);
        if (kind_ == tokenizer_kind::gpt2_bpe) {
            for (int b = 0; b < 256; ++b) {
                std::string s;
                utf8::append(s, gpt2_bytes::byte_to_cp[static_cast<std::size_t>(b)]);
                const auto it = ids_.find(s);
                byte_token_[static_cast<std::size_t>(b)] = it == ids_.end() ? -1 : it->second;
            }
        } else {
            for (int32_t i = 0; i < n; ++i)
                if (types_[static_cast<std::size_t>(i)] == token_type::byte) {
                    const auto b = static_cast<unsigned char>(bytes_[static_cast<std::size_t>(i)][0]);
                    if (byte_token_[b] < 0) byte_token_[b] = i;
                }
        }

        // Control and user-defined tokens, longest first, for parse_special.
        for (int32_t i = 0; i < n; ++i) {
            const token_type t = types_[static_cast<std::size_t>(i)];
            if ((t == token_type::control || t == token_type::user_defined) &&
                !tokens_[static_cast<std::size_t>(i)].empty()) {
                specials_.push_back(i);
                special_first_[static_cast<unsigned char>(tokens_[static_cast<std::size_t>(i)][0])] = true;
            }
        }
        std::sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
            const auto la = tokens_[static_cast<std::size_t>(a)].size();
            const auto lb = tokens_[static_cast<std::size_t>(b)].size();
            return la != lb ? la > lb : a < b;
        });
    }

    void init_merges(const std::vector<std::string>& merges) {
        merges_.reserve(merges.size());
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const std::string& m = merges[r];
            const std::size_t sp = m.find(' ');
            if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() ||
                m.find(' ', sp + 1) != std::string::npos)
                throw error("tokenizer: merge " + std::to_string(r) + " (" + quote(m) +
                            ") is not two tokens separated by one space");
            const std::string_view left = std::string_view(m).substr(0, sp);
            const std::string_view right = std::string_view(m).substr(sp + 1);
            const int32_t l = token_id(left), rt = token_id(right);
            if (l < 0)
                throw error("tokenizer: merge " + std::to_string(r) + " (" + quote(m) + "): " +
                            quote(left) + " is not a token");
            if (rt < 0)
                throw error("tokenizer: merge " + std::to_string(r) + " (" + quote(m) + "): " +
                            quote(right) + " is not a token");
            std::string joined;
            joined.reserve(m.size() - 1);
            joined.append(left).append(right);
            const int32_t res = token_id(joined);
            if (res < 0)
                throw error("tokenizer: merge " + std::to_string(r) + " (" + quote(m) +
                            "): the result " + quote(joined) + " is not a token");
            if (r > static_cast<std::size_t>(INT32_MAX))
                throw error("tokenizer: more than 2^31-1 merges");
            const auto [it, fresh] =
                merges_.emplace(pair_key(l, rt), merge_info{static_cast<int32_t>(r), res});
            if (!fresh)
                throw error("tokenizer: merge " + std::to_string(r) + " (" + quote(m) +
                            ") duplicates merge " + std::to_string(it->second.rank));
        }
    }

public:
    int32_t size() const noexcept { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos_id() const noexcept { return bos_; }
    int32_t eos_id() const noexcept { return eos_; }
    int32_t unk_id() const noexcept { return unk_; }
    tokenizer_kind kind() const noexcept { return kind_; }
    bool add_space_prefix() const noexcept { return add_space_prefix_; }
    // The file's tokenizer.ggml.add_bos_token / add_eos_token: whether text
    // fed to the model should start with BOS / end with EOS (not applied by
    // encode(), whose add_bos says it for each call).
    bool wants_bos() const noexcept { return wants_bos_; }
    bool wants_eos() const noexcept { return wants_eos_; }
    void set_special_flags(bool add_bos, bool add_eos) noexcept {
        wants_bos_ = add_bos;
        wants_eos_ = add_eos;
    }
    // The token's score (SentencePiece vocabularies; 0 for GPT-2 BPE).
    float score(int32_t id) const {
        const std::size_t i = check_id(id, "score");
        return scores_.empty() ? 0.0f : scores_[i];
    }

    // Id of the token with exactly this text, or -1.
    int32_t token_id(std::string_view text) const {
        const auto it = ids_.find(std::string(text));
        return it == ids_.end() ? -1 : it->second;
    }

    // The token's text as stored in the vocabulary (byte-level form, "Ġthe").
    const std::string& token_text(int32_t id) const { return tokens_[check_id(id, "token_text")]; }
    token_type type_of(int32_t id) const { return types_[check_id(id, "type_of")]; }
    // The bytes the token decodes to (" the" for "Ġthe"); may be partial UTF-8.
    const std::string& token_bytes(int32_t id) const { return bytes_[check_id(id, "token_bytes")]; }

    // Text -> ids. add_bos prepends bos_id (an error when there is none).
    // parse_special: occurrences of control and user-defined token texts
    // (like "<|endoftext|>") become those tokens (leftmost, longest first);
    // the text between them is tokenized on its own. Without it they are
    // ordinary text.
    std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                                bool parse_special = false) const {
        if (text.size() > static_cast<std::size_t>(INT32_MAX))
            throw error("tokenizer: encode: text of " + std::to_string(text.size()) +
                        " bytes is longer than 2^31-1 bytes");
        std::vector<int32_t> out;
        if (add_bos) {
            if (bos_ < 0) throw error("tokenizer: encode with add_bos, but the vocabulary has no BOS token");
            out.push_back(bos_);
        }
        scratch s;
        bool after_special = true;  // SentencePiece: the space prefix goes before text at the start or after a special token
        auto plain = [&](std::string_view t) {
            if (kind_ == tokenizer_kind::gpt2_bpe) return encode_plain(t, out, s);
            if (t.empty()) return;
            encode_spm(t, add_space_prefix_ && after_special, out, s);
            after_special = false;
        };
        if (!parse_special || specials_.empty()) {
            plain(text);
            return out;
        }
        std::size_t start = 0, pos = 0;
        while (pos < text.size()) {
            const int32_t sp = special_at(text, pos);
            if (sp < 0) {
                ++pos;
                continue;
            }
            plain(text.substr(start, pos - start));
            out.push_back(sp);
            after_special = true;
            pos += tokens_[static_cast<std::size_t>(sp)].size();
            start = pos;
        }
        plain(text.substr(start));
        return out;
    }

    // Ids -> bytes. Control, user-defined, unknown and unused tokens give
    // their text as is. An id outside the vocabulary is an error.
    // SentencePiece vocabularies decode as sentencepiece does (see the top of this file).
    std::string decode(std::span<const int32_t> ids) const {
        std::string out;
        if (kind_ == tokenizer_kind::gpt2_bpe) {
            for (const int32_t id : ids) out += bytes_[check_id(id, "decode")];
            return out;
        }
        std::string run;             // bytes of consecutive byte tokens
        bool strip = add_space_prefix_;  // the leading "▁" of the text is still to drop
        auto flush_run = [&] {
            std::size_t i = 0;
            while (i < run.size()) {
                const utf8::decoded d = utf8::decode(run, i);
                if (d.st == utf8::status::ok) out.append(run, i, d.len);
                else out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is no character
                i += d.len;
            }
            run.clear();
            if (!out.empty()) strip = false;
        };
        for (const int32_t id : ids) {
            const std::size_t i = check_id(id, "decode");
            if (types_[i] == token_type::byte) {
                run += bytes_[i];
                continue;
            }
            flush_run();
            const std::string& b = bytes_[i];
            const bool textual = types_[i] != token_type::control && types_[i] != token_type::unknown;
            if (strip && textual && !b.empty() && b[0] == ' ') {
                out.append(b, 1);
                strip = false;
            } else {
                out += b;
            }
            if (!out.empty()) strip = false;
        }
        flush_run();
        return out;
    }

private:
    struct merge_info {
        int32_t rank;
        int32_t result;
    };

    // Bounded, direct-mapped cache of word -> ids, shared by copies (the
    // vocabulary of copies is the same) and guarded by a mutex so that
    // encode() may be called from several threads.
    struct word_cache {
        static constexpr std::size_t slots = 4096;
        static constexpr std::size_t max_word = 64;  // bytes; longer words are not cached
        std::mutex mu;
        std::vector<std::pair<std::string, std::vector<int32_t>>> table;
    };

    struct sym {
        int32_t id;
        int32_t prev;
        int32_t next;
    };
    struct cand {
        int32_t rank;
        int32_t pos;
        int32_t left;
        int32_t right;
        bool operator>(const cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    struct spm_sym {
        int32_t start;  // byte offset in the escaped text
        int32_t len;    // bytes; 0 once merged into its left neighbour
        int32_t prev;
        int32_t next;
    };
    struct spm_pair {
        float score;
        int32_t left;
        int32_t right;
        int32_t len;  // bytes of the merged piece (to spot stale pairs)
        // Max-heap: the higher score first; on equal scores the leftmost.
        bool operator<(const spm_pair& o) const { return score != o.score ? score < o.score : left > o.left; }
    };
    struct scratch {
        std::string spm_text;
        std::string spm_key;
        std::vector<spm_sym> spm_syms;
        std::vector<spm_pair> spm_heap;
        std::vector<detail::cp_info> cps;
        std::vector<sym> syms;
        std::vector<cand> heap;
        std::vector<cand> batch;
        std::vector<int32_t> word_ids;
    };

    static uint64_t pair_key(int32_t l, int32_t r) noexcept {
        return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    }

    // The token text in quotes, control bytes and bad UTF-8 escaped, shortened.
    static std::string quote(std::string_view s) {
        std::string out = "\"";
        std::size_t i = 0;
        while (i < s.size() && out.size() < 60) {
            const utf8::decoded d = utf8::decode(s, i);
            const auto b = static_cast<unsigned char>(s[i]);
            if (d.st == utf8::status::ok && d.cp >= 0x20 && d.cp != 0x7F && d.cp != '"' && d.cp != '\\') {
                out.append(s.substr(i, d.len));
                i += d.len;
                continue;
            }
            static constexpr char hex[] = "0123456789ABCDEF";
            if (d.st == utf8::status::ok && (d.cp == '"' || d.cp == '\\')) {
                out += '\\';
                out += static_cast<char>(d.cp);
            } else {
                out += "\\x";
                out += hex[b >> 4];
                out += hex[b & 15];
            }
            ++i;
        }
        if (i < s.size()) out += "...";
        out += '"';
        return out;
    }

    std::size_t check_id(int32_t id, const char* what) const {
        if (id < 0 || id >= size())
            throw error(std::string("tokenizer: ") + what + ": token id " + std::to_string(id) +
                        " is outside the vocabulary of " + std::to_string(size()) + " tokens");
        return static_cast<std::size_t>(id);
    }

    std::string token_bytes_of(int32_t id) const {
        const std::string& t = tokens_[static_cast<std::size_t>(id)];
        if (kind_ == tokenizer_kind::spm) {
            switch (types_[static_cast<std::size_t>(id)]) {
                case token_type::control: return {};
                case token_type::unknown: return " \xE2\x81\x87 ";  // sentencepiece's " ⁇ "
                case token_type::byte: break;
                default: {  // "▁" (U+2581) is a space
                    std::string out;
                    for (std::size_t i = 0; i < t.size(); ++i) {
                        if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
                            out += ' ';
                            i += 2;
                        } else {
                            out += t[i];
                        }
                    }
                    return out;
                }
            }
        }
        switch (types_[static_cast<std::size_t>(id)]) {
            case token_type::undefined:
            case token_type::normal: {
                std::string out;
                std::size_t i = 0;
                while (i < t.size()) {
                    const utf8::decoded d = utf8::decode(t, i);
                    const int b = d.st == utf8::status::ok ? gpt2_bytes::to_byte(d.cp) : -1;
                    if (b < 0)
                        throw error("tokenizer: token " + std::to_string(id) + " (" + quote(t) +
                                    ") is a normal token but is not in GPT-2's byte-level form "
                                    "(byte offset " + std::to_string(i) + ")");
                    out += static_cast<char>(b);
                    i += d.len;
                }
                return out;
            }
            case token_type::byte: {
                auto hexval = [](char c) {
                    if (c >= '0' && c <= '9') return c - '0';
                    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
                    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
                    return -1;
                };
                if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>' || hexval(t[3]) < 0 ||
                    hexval(t[4]) < 0)
                    throw error("tokenizer: token " + std::to_string(id) + " (" + quote(t) +
                                ") has type byte but is not of the form <0xNN>");
                return std::string(1, static_cast<char>(hexval(t[3]) * 16 + hexval(t[4])));
            }
            default:
                return t;
        }
    }

    int32_t special_at(std::string_view text, std::size_t pos) const {
        if (!special_first_[static_cast<unsigned char>(text[pos])]) return -1;
        for (const int32_t id : specials_) {
            const std::string& t = tokens_[static_cast<std::size_t>(id)];
            if (text.size() - pos >= t.size() && text.compare(pos, t.size(), t) == 0) return id;
        }
        return -1;
    }

    void encode_plain(std::string_view text, std::vector<int32_t>& out, scratch& s) const {
        if (text.empty()) return;
        detail::decode_for_split(text, s.cps);
        detail::gpt2_split_cps(text, s.cps, [&](std::size_t b, std::size_t e) {
            encode_word(text.substr(b, e - b), out, s);
        });
    }

    // SentencePiece BPE (sentencepiece's bpe_model.cc Encode, llama.cpp's
    // llm_tokenizer_spm): merge the best-scoring adjacent pair until no pair
    // is a token, then byte fallback for what is left that is no token.
    void encode_spm(std::string_view text, bool space_prefix, std::vector<int32_t>& out, scratch& s) const {
        std::string& t = s.spm_text;
        t.clear();
        if (space_prefix) t += "\xE2\x96\x81";
        for (const char c : text) {
            if (c == ' ') t += "\xE2\x96\x81";
            else t += c;
        }
        if (t.size() > static_cast<std::size_t>(INT32_MAX))
            throw error("tokenizer: encode: the escaped text is longer than 2^31-1 bytes");
        // Symbols: one per UTF-8 character (an invalid byte is one symbol).
        s.spm_syms.clear();
        for (std::size_t i = 0; i < t.size();) {
            const utf8::decoded d = utf8::decode(t, i);
            const auto k = static_cast<int32_t>(s.spm_syms.size());
            s.spm_syms.push_back({static_cast<int32_t>(i), d.len, k - 1, -1});
            if (k > 0) s.spm_syms[static_cast<std::size_t>(k - 1)].next = k;
            i += d.len;
        }
        s.spm_heap.clear();
        auto push = [&](int32_t left) {
            if (left < 0) return;
            const spm_sym& l = s.spm_syms[static_cast<std::size_t>(left)];
            if (l.next < 0) return;
            const spm_sym& r = s.spm_syms[static_cast<std::size_t>(l.next)];
            const int32_t id = piece_id(std::string_view(t).substr(static_cast<std::size_t>(l.start),
                                                                    static_cast<std::size_t>(l.len + r.len)), s.spm_key);
            if (id < 0) return;
            s.spm_heap.push_back({scores_[static_cast<std::size_t>(id)], left, l.next, l.len + r.len});
            std::push_heap(s.spm_heap.begin(), s.spm_heap.end());
        };
        for (int32_t k = 0; k + 1 < static_cast<int32_t>(s.spm_syms.size()); ++k) push(k);
        while (!s.spm_heap.empty()) {
            std::pop_heap(s.spm_heap.begin(), s.spm_heap.end());
            const spm_pair p = s.spm_heap.back();
            s.spm_heap.pop_back();
            spm_sym& l = s.spm_syms[static_cast<std::size_t>(p.left)];
            if (l.len == 0 || l.next != p.right) continue;  // stale
            spm_sym& r = s.spm_syms[static_cast<std::size_t>(p.right)];
            if (l.len + r.len != p.len) continue;  // stale: one side has grown since
            l.len += r.len;
            l.next = r.next;
            if (r.next >= 0) s.spm_syms[static_cast<std::size_t>(r.next)].prev = p.left;
            r.len = 0;
            push(l.prev);
            push(p.left);
        }
        for (int32_t k = s.spm_syms.empty() ? -1 : 0; k >= 0; k = s.spm_syms[static_cast<std::size_t>(k)].next) {
            const spm_sym& y = s.spm_syms[static_cast<std::size_t>(k)];
            const std::string_view piece = std::string_view(t).substr(static_cast<std::size_t>(y.start),
                                                                     static_cast<std::size_t>(y.len));
            const int32_t id = piece_id(piece, s.spm_key);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            for (const char c : piece) {
                const int32_t b = byte_token_[static_cast<unsigned char>(c)];
                if (b >= 0) {
                    out.push_back(b);
                } else if (unk_ >= 0) {
                    // No byte tokens: one unknown token for the whole symbol, as sentencepiece does.
                    out.push_back(unk_);
                    break;
                } else {
                    throw error("tokenizer: the vocabulary has neither a token for " + quote(piece) +
                                " nor byte tokens nor an unknown token");
                }
            }
        }
    }

    // The id of a token SentencePiece merges into (normal, user-defined, unused), or -1.
    int32_t piece_id(std::string_view piece, std::string& key) const {
        key.assign(piece);
        const auto it = ids_.find(key);
        if (it == ids_.end()) return -1;
        const token_type ty = types_[static_cast<std::size_t>(it->second)];
        return ty == token_type::normal || ty == token_type::undefined || ty == token_type::user_defined ||
                       ty == token_type::unused
                   ? it->second
                   : -1;
    }

    void encode_word(std::string_view word, std::vector<int32_t>& out, scratch& s) const {
        const bool cacheable = word.size() <= word_cache::max_word;
        std::size_t slot = 0;
        if (cacheable) {
            slot = std::hash<std::string_view>{}(word) % word_cache::slots;
            std::lock_guard<std::mutex> lock(cache_->mu);
            if (!cache_->table.empty() && cache_->table[slot].first == word &&
                !cache_->table[slot].second.empty()) {
                const auto& ids = cache_->table[slot].second;
                out.insert(out.end(), ids.begin(), ids.end());
                return;
            }
        }
        bpe(word, s);
        out.insert(out.end(), s.word_ids.begin(), s.word_ids.end());
        if (cacheable) {
            std::lock_guard<std::mutex> lock(cache_->mu);
            if (cache_->table.empty()) cache_->table.resize(word_cache::slots);
            cache_->table[slot].first.assign(word);
            cache_->table[slot].second = s.word_ids;
        }
    }

    void push_pair(scratch& s, int32_t pos) const {
        const int32_t nx = s.syms[static_cast<std::size_t>(pos)].next;
        if (nx < 0) return;
        const int32_t l = s.syms[static_cast<std::size_t>(pos)].id;
        const int32_t r = s.syms[static_cast<std::size_t>(nx)].id;
        const auto it = merges_.find(pair_key(l, r));
        if (it == merges_.end()) return;
        s.heap.push_back({it->second.rank, pos, l, r});
        std::push_heap(s.heap.begin(), s.heap.end(), std::greater<cand>{});
    }

    // GPT-2's bpe() on one piece: while some adjacent pair has a merge rank,
    // take the lowest-ranked pair and merge all its occurrences left to
    // right. Done with a heap of (rank, position) so that long pieces cost
    // O(n log n), not O(n^2). Result in s.word_ids.
    void bpe(std::string_view word, scratch& s) const {
        const std::size_t n = word.size();
        s.syms.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            const auto b = static_cast<unsigned char>(word[i]);
            const int32_t id = byte_token_[b];
            if (id < 0) {
                static constexpr char hex[] = "0123456789ABCDEF";
                throw error(std::string("tokenizer: the vocabulary has no token for byte 0x") + hex[b >> 4] +
                            hex[b & 15] + " (needed to encode the text)");
            }
            s.syms[i] = {id, static_cast<int32_t>(i) - 1, i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
        }
        s.heap.clear();
        for (std::size_t i = 0; i + 1 < n; ++i) push_pair(s, static_cast<int32_t>(i));
        while (!s.heap.empty()) {
            // Every candidate of the lowest rank, in position order.
            const int32_t rank = s.heap.front().rank;
            s.batch.clear();
            while (!s.heap.empty() && s.heap.front().rank == rank) {
                std::pop_heap(s.heap.begin(), s.heap.end(), std::greater<cand>{});
                s.batch.push_back(s.heap.back());
                s.heap.pop_back();
            }
            // Pops come out in position order already (ties broken by pos).
            const int32_t result = merges_.find(pair_key(s.batch.front().left, s.batch.front().right))->second.result;
            for (const cand& c : s.batch) {
                sym& l = s.syms[static_cast<std::size_t>(c.pos)];
                if (l.id != c.left || l.next < 0) continue;  // stale
                sym& r = s.syms[static_cast<std::size_t>(l.next)];
                if (r.id != c.right) continue;  // stale
                l.id = result;
                l.next = r.next;
                if (r.next >= 0) s.syms[static_cast<std::size_t>(r.next)].prev = c.pos;
                r.id = -1;
                r.next = -1;
                r.prev = -1;
                // New pairs have other ranks than this one (a merge result is
                // longer than either part), so they never join this batch.
                if (l.prev >= 0) push_pair(s, l.prev);
                push_pair(s, c.pos);
            }
        }
        s.word_ids.clear();
        for (int32_t i = n ? 0 : -1; i >= 0; i = s.syms[static_cast<std::size_t>(i)].next)
            s.word_ids.push_back(s.syms[static_cast<std::size_t>(i)].id);
    }

    std::vector<std::string> tokens_;
    std::vector<token_type> types_;
    std::vector<std::string> bytes_;
    std::unordered_map<std::string, int32_t> ids_;
    std::unordered_map<uint64_t, merge_info> merges_;
    std::array<int32_t, 256> byte_token_{};
    std::vector<int32_t> specials_;
    std::array<bool, 256> special_first_{};
    int32_t bos_ = -1;
    int32_t eos_ = -1;
    int32_t unk_ = -1;
    tokenizer_kind kind_ = tokenizer_kind::gpt2_bpe;
    bool add_space_prefix_ = false;
    bool wants_bos_ = false;
    bool wants_eos_ = false;
    std::vector<float> scores_;  // SentencePiece only
    std::shared_ptr<word_cache> cache_;
};

// Turns ids into text one id at a time, returning only complete UTF-8
// characters: bytes of a character split across tokens are held until the
// token that completes it arrives. Bytes that can never form a valid
// character are passed through as they are, so the concatenation of every
// feed() and the final flush() equals tokenizer::decode() of all the ids.
// Keeps a reference to the tokenizer, which must outlive it.
class streaming_decoder {
public:
    explicit streaming_decoder(const tokenizer& tok) : tok_(&tok) {}

    // Appends what id completes to out.
    void feed(int32_t id, std::string& out) {
        pending_ += tok_->token_bytes(id);
        const std::size_t n = utf8::complete_prefix(pending_);
        out.append(pending_, 0, n);
        pending_.erase(0, n);
    }
    std::string feed(int32_t id) {
        std::string out;
        feed(id, out);
        return out;
    }

    // Whatever is still held (the start of a character that never finished),
    // and starts over.
    std::string flush() {
        std::string out;
        out.swap(pending_);
        return out;
    }

    void reset() noexcept { pending_.clear(); }
    std::size_t pending_bytes() const noexcept { return pending_.size(); }

private:
    const tokenizer* tok_;
    std::string pending_;
};

}  // namespace ncas
