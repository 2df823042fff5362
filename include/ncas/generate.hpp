#pragma once
// Text generation over a session: a prompt (ids or text) or chat messages in,
// the completion out as a stream of text pieces, with the sampler, stop
// strings, a token limit, end-of-text handling, cancellation, and usage.
//
//   auto m = ncas::model::load("model.gguf");
//   auto s = ncas::make_session(m, {.n_ctx = 2048});
//   ncas::generator g(*s, m.tokenizer());
//   auto r = g.generate("Once upon a time", {.sampling = {.temperature = 0.8f, .seed = 7}, .max_tokens = 64},
//                       [](std::string_view piece) { std::fwrite(piece.data(), 1, piece.size(), stdout); return true; });
//   // r.finish (eos, stop, length, context, cancelled), r.text, r.usage
//
// Pieces. Each piece is whole UTF-8 characters: the bytes of a character split
// over tokens wait for the token that completes it. Text that might be the
// start of a stop string is held back until the next tokens show it is not; a
// stop string and what follows it are never passed on. Only when generation
// ends inside a character (the token limit, say) does the last piece end with
// its incomplete bytes (bytes that can never form a character pass as they
// are), so that the pieces always add up to the decoded tokens up to the stop.
//
// The cache. The generator knows the tokens its session holds. A new prompt
// that starts with them runs only the rest (a conversation, or requests that
// share a system prompt, prefill only what is new); otherwise the session
// rewinds to the longest common prefix. After a stop string the session keeps
// the whole tokens before it, and `tail` is the visible text after them. If
// something else moved the session (n_past differs from what the generator
// knows), the generator starts it over.
//
// Threads. A loaded model (model_core) is read-only after load: sessions read
// its weights, file and tokenizer and never write them (the tokenizer's word
// cache is guarded by a mutex). So any number of sessions over one model may
// run on different threads at once, each session (and its generator) used by
// one thread at a time. The model must outlive its sessions.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ncas/backend.hpp"
#include "ncas/error.hpp"
#include "ncas/text/chat.hpp"
#include "ncas/text/sampler.hpp"
#include "ncas/text/tokenizer.hpp"

namespace ncas {

enum class finish_reason {
    eos,        // the model produced the end-of-text token
    stop,       // a stop string appeared
    length,     // max_tokens were generated
    context,    // the context is full
    cancelled,  // the cancel flag was set, or the piece callback returned false
};

inline const char* finish_reason_name(finish_reason r) {
    switch (r) {
        case finish_reason::eos: return "eos";
        case finish_reason::stop: return "stop";
        case finish_reason::length: return "length";
        case finish_reason::context: return "context";
        default: return "cancelled";
    }
}

struct generate_params {
    sampler_params sampling = {};     // temperature, top-k/p, min-p, penalty, seed
    bool reseed = true;               // start the random sequence at sampling.seed; false: carry on the generator's
    int64_t max_tokens = -1;          // tokens to generate at most; -1: no limit (end of text, a stop, a full context)
    std::vector<std::string> stops = {};  // the reply ends before the first of these (empty strings are ignored)
    bool ignore_eos = false;          // treat the end-of-text token as text and go on
    bool keep_last = false;           // also run the last generated token, so the cache holds the whole reply
    const std::atomic<bool>* cancel = nullptr;  // checked before each token; set from any thread
};

struct generate_usage {
    int64_t prompt_tokens = 0;      // the prompt's length
    int64_t cached_tokens = 0;      // of those, already in the cache (not run again)
    int64_t completion_tokens = 0;  // tokens generated (the end-of-text token not counted)
    int64_t decoded_tokens = 0;     // of those, run through the model
    double prefill_s = 0;           // running the prompt's new tokens
    double decode_s = 0;            // running the generated tokens
};

struct generate_result {
    finish_reason finish = finish_reason::eos;
    std::string text;             // what the pieces added up to
    std::vector<int32_t> tokens;  // the generated ids, up to and including the one a stop string ended in
    std::string tail;             // the end of `text` that the cache does not hold as tokens
    generate_usage usage;
};

// Receives each piece; returning false stops generation (finish_reason::cancelled).
using piece_callback = std::function<bool(std::string_view)>;

template <class S>
class basic_generator {
public:
    basic_generator(S& session, const tokenizer& tok) : s_(&session), tok_(&tok) {}

    S& session() const { return *s_; }
    const tokenizer& vocab() const { return *tok_; }
    // The tokens the session's cache holds, as far as this generator knows.
    std::span<const int32_t> cached() const { return cached_; }
    void reset() {
        s_->rewind(0);
        cached_.clear();
    }

    // The session's own verbs, run through the generator so that it keeps
    // knowing what the cache holds (for code that mixes them with generate).
    std::span<const float> prefill(std::span<const int32_t> ids) {
        if (s_->n_past() != int64_t(cached_.size())) reset();
        const auto l = s_->prefill(ids);
        cached_.insert(cached_.end(), ids.begin(), ids.end());
        return l;
    }
    std::span<const float> decode(int32_t id) { return prefill(std::span<const int32_t>(&id, 1)); }
    void rewind(int64_t n_past) {
        if (s_->n_past() != int64_t(cached_.size())) reset();
        s_->rewind(n_past);
        cached_.resize(size_t(n_past));
    }
    // After the session's cache was filled from elsewhere (a saved state): the tokens it now holds.
    void assume_cached(std::vector<int32_t> ids) {
        if (int64_t(ids.size()) != s_->n_past())
            throw error("generator: " + std::to_string(ids.size()) + " tokens given for a session that holds " +
                        std::to_string(s_->n_past()));
        cached_ = std::move(ids);
    }

    // Text -> prompt ids: the BOS token first when the vocabulary has one;
    // special: control tokens written in the text (<|im_start|>) become those tokens.
    std::vector<int32_t> encode(std::string_view text, bool special = false) const {
        return tok_->encode(text, tok_->bos_id() >= 0, special);
    }

    generate_result generate(std::string_view prompt, const generate_params& p, const piece_callback& on_piece = {}) {
        return generate(std::span<const int32_t>(encode(prompt)), p, on_piece);
    }

    // Messages formatted by `format`, whose stop strings are added to p.stops.
    generate_result chat(const chat_format& format, const std::vector<chat_message>& messages, generate_params p,
                         const piece_callback& on_piece = {}) {
        const std::vector<int32_t> ids = encode(format.apply(messages), true);
        for (auto& s : format.stops()) p.stops.push_back(s);
        return generate(std::span<const int32_t>(ids), p, on_piece);
    }

    generate_result generate(std::span<const int32_t> prompt, const generate_params& p, const piece_callback& on_piece = {}) {
        using clock = std::chrono::steady_clock;
        const auto secs = [](clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); };
        S& s = *s_;
        if (prompt.empty()) throw error("generate: the prompt is empty (no tokens)");
        if (int64_t(prompt.size()) >= s.n_ctx())
            throw error("the prompt is " + std::to_string(prompt.size()) + " tokens; it must be shorter than the context of " +
                        std::to_string(s.n_ctx()) + " tokens");
        if (p.max_tokens < -1) throw error("generate: max_tokens must be >= -1 (-1: no limit), not " + std::to_string(p.max_tokens));
        if (!smp_ || p.reseed) smp_.emplace(p.sampling);
        else smp_->set_params(p.sampling);
        std::vector<std::string> stops;
        for (const auto& st : p.stops)
            if (!st.empty()) stops.push_back(st);

        generate_result r;
        r.usage.prompt_tokens = int64_t(prompt.size());
        if (cancelled(p)) {
            r.finish = finish_reason::cancelled;
            return r;
        }

        // The cache: keep the longest common prefix (at least one token runs, for its logits).
        if (s.n_past() != int64_t(cached_.size())) reset();
        size_t keep = 0;
        while (keep < cached_.size() && keep < prompt.size() && cached_[keep] == prompt[keep]) ++keep;
        if (keep == prompt.size()) --keep;
        if (int64_t(keep) != s.n_past()) s.rewind(int64_t(keep));
        cached_.resize(keep);
        r.usage.cached_tokens = int64_t(keep);
        const auto t0 = clock::now();
        std::span<const float> logits = s.prefill(prompt.subspan(keep));
        r.usage.prefill_s = secs(t0);
        cached_.insert(cached_.end(), prompt.begin() + std::ptrdiff_t(keep), prompt.end());

        const int64_t reply_start = s.n_past();
        std::string& reply = r.text;  // every generated byte, cut at the stop at the end
        std::vector<size_t> ends;     // reply bytes after each generated token
        size_t shown = 0, cut = std::string::npos;
        bool stopped_by_caller = false;
        const auto emit = [&](size_t upto) {
            if (upto <= shown) return;
            if (on_piece && !stopped_by_caller && !on_piece(std::string_view(reply).substr(shown, upto - shown)))
                stopped_by_caller = true;
            shown = upto;
        };
        int64_t n = 0;
        for (;;) {
            if (stopped_by_caller || cancelled(p)) {
                r.finish = finish_reason::cancelled;
                break;
            }
            if (n == p.max_tokens) {  // max_tokens 0
                r.finish = finish_reason::length;
                break;
            }
            const int32_t id = smp_->sample(logits, cached_);
            if (id == tok_->eos_id() && !p.ignore_eos) {
                r.finish = finish_reason::eos;
                break;
            }
            const size_t before = reply.size();
            reply += tok_->token_bytes(id);
            ends.push_back(reply.size());
            r.tokens.push_back(id);
            ++n;
            for (const auto& stop : stops) {
                // A stop may begin inside the text of earlier tokens.
                const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
                cut = std::min(cut, reply.find(stop, from));
            }
            if (cut != std::string::npos) {
                r.finish = finish_reason::stop;
                break;
            }
            emit(utf8::complete_prefix(std::string_view(reply).substr(0, reply.size() - held_back(reply, stops))));
            if (!p.keep_last && n == p.max_tokens) {
                r.finish = finish_reason::length;
                break;
            }
            if (s.n_past() == s.n_ctx()) {
                r.finish = finish_reason::context;
                break;
            }
            const auto t1 = clock::now();
            logits = s.decode(id);
            r.usage.decode_s += secs(t1);
            cached_.push_back(id);
            ++r.usage.decoded_tokens;
            if (p.keep_last && n == p.max_tokens) {
                r.finish = finish_reason::length;
                break;
            }
        }
        r.usage.completion_tokens = n;
        const size_t visible = std::min(cut, reply.size());
        emit(visible);
        reply.resize(visible);

        // Keep in the cache only whole tokens of the visible text; the rest is the tail.
        const int64_t decoded = s.n_past() - reply_start;
        int64_t whole = 0;
        while (whole < decoded && ends[size_t(whole)] <= visible) ++whole;
        if (whole < decoded) {
            s.rewind(reply_start + whole);
            cached_.resize(cached_.size() - size_t(decoded - whole));
        }
        const size_t kept = whole ? ends[size_t(whole - 1)] : 0;
        r.tail = reply.substr(kept);
        return r;
    }

private:
    static bool cancelled(const generate_params& p) { return p.cancel && p.cancel->load(std::memory_order_relaxed); }

    // How many bytes at the end of text could be the start of a stop string.
    static size_t held_back(std::string_view text, const std::vector<std::string>& stops) {
        size_t keep = 0;
        for (const auto& stop : stops)
            for (size_t k = std::min(stop.size() - 1, text.size()); k > keep; --k)
                if (text.substr(text.size() - k) == std::string_view(stop).substr(0, k)) {
                    keep = k;
                    break;
                }
        return keep;
    }

    S* s_;
    const tokenizer* tok_;
    std::optional<sampler> smp_;
    std::vector<int32_t> cached_;
};

// The generator over a session of any backend (make_session).
using generator = basic_generator<any_session>;

// The chat format of a model: from its tokenizer.chat_template (plain when it
// has none); an error names the built-in formats when the template is unknown.
inline chat_format chat_format_of(const model_core& m) {
    return chat_format::from_template(m.file().get_string("tokenizer.chat_template", ""));
}

}  // namespace ncas
