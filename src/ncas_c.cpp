// libncas: the C API of include/ncas.h over the C++ library. Every entry point
// catches what the C++ side throws and turns it into the thread's last error.
#include "ncas.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "ncas/generate.hpp"
#include "ncas/ncas.hpp"
#include "ncas/state.hpp"

#ifndef NCAS_VERSION
#define NCAS_VERSION "0.0.0"
#endif

struct ncas_model {
    ncas::model m;
};

struct ncas_session {
    const ncas_model* model;
    std::unique_ptr<ncas::any_session> s;
    ncas::generator g;
    std::span<const float> logits;
    std::atomic<bool> cancel{false};
    ncas_session(const ncas_model* m, std::unique_ptr<ncas::any_session> sess)
        : model(m), s(std::move(sess)), g(*s, m->m.tokenizer()) {}
};

struct ncas_sampler {
    ncas::sampler smp;
};

namespace {

thread_local std::string last_error;

void set_error(const char* what) { last_error = what ? what : "unknown error"; }

// Runs f; on an exception sets the last error and returns fail.
template <class F, class R>
R guard(R fail, F&& f) {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        set_error("out of memory");
    } catch (const std::exception& e) {
        set_error(e.what());
    } catch (...) {
        set_error("unknown error");
    }
    return fail;
}

void need(const void* p, const char* what) {
    if (!p) throw ncas::error(std::string(what) + " is NULL");
}

ncas::sampler_params to_cpp(const ncas_sampler_params& p) {
    return {.temperature = p.temperature, .top_k = p.top_k, .top_p = p.top_p, .min_p = p.min_p,
            .repetition_penalty = p.repetition_penalty, .repetition_last_n = p.repetition_last_n, .seed = p.seed};
}

ncas::generate_params to_cpp(const ncas_generate_params* p, ncas_session* s) {
    const ncas_generate_params d = p ? *p : ncas_generate_default_params();
    ncas::generate_params g;
    g.sampling = to_cpp(d.sampling);
    g.max_tokens = d.max_tokens;
    if (d.n_stops < 0) throw ncas::error("n_stops must not be negative");
    if (d.n_stops > 0) need(d.stops, "stops");
    for (int32_t i = 0; i < d.n_stops; ++i) {
        need(d.stops[i], "a stop string");
        g.stops.emplace_back(d.stops[i]);
    }
    g.ignore_eos = d.ignore_eos != 0;
    g.cancel = &s->cancel;
    return g;
}

ncas::piece_callback to_cpp(ncas_piece_fn fn, void* user) {
    if (!fn) return {};
    return [fn, user](std::string_view piece) { return fn(piece.data(), piece.size(), user) == 0; };
}

void fill(ncas_generate_result* out, const ncas::generate_result& r) {
    if (!out) return;
    out->finish = ncas_finish(int(r.finish));
    out->prompt_tokens = int32_t(r.usage.prompt_tokens);
    out->cached_tokens = int32_t(r.usage.cached_tokens);
    out->completion_tokens = int32_t(r.usage.completion_tokens);
    out->prefill_s = r.usage.prefill_s;
    out->decode_s = r.usage.decode_s;
}

ncas::chat_format format_of(const ncas_model* m, const char* name) {
    return name ? ncas::chat_format::by_name(name) : ncas::chat_format_of(m->m);
}

std::vector<ncas::chat_message> messages(const ncas_chat_message* msgs, int32_t n) {
    if (n < 0) throw ncas::error("a negative number of messages");
    if (n > 0) need(msgs, "msgs");
    std::vector<ncas::chat_message> out;
    for (int32_t i = 0; i < n; ++i) {
        if (!msgs[i].role || !msgs[i].content) throw ncas::error("message " + std::to_string(i) + " has a NULL role or content");
        out.push_back({msgs[i].role, msgs[i].content});
    }
    return out;
}

}  // namespace

static_assert(int(ncas::finish_reason::eos) == NCAS_FINISH_EOS && int(ncas::finish_reason::stop) == NCAS_FINISH_STOP &&
              int(ncas::finish_reason::length) == NCAS_FINISH_LENGTH && int(ncas::finish_reason::context) == NCAS_FINISH_CONTEXT &&
              int(ncas::finish_reason::cancelled) == NCAS_FINISH_CANCELLED);

extern "C" {

const char* ncas_version(void) { return NCAS_VERSION; }
const char* ncas_last_error(void) { return last_error.c_str(); }
const char* ncas_cpu_kernels(void) {  // NULL when NCAS_ISA names a level this CPU or libncas lacks
    return guard(static_cast<const char*>(nullptr), [] { return ncas::cpu::isa_name(ncas::cpu::kernels().id).data(); });
}

ncas_model* ncas_model_load(const char* path) {
    return guard<>(static_cast<ncas_model*>(nullptr), [&] {
        need(path, "path");
        auto* m = new ncas_model{ncas::model::load(path)};
        if (!m->m.has_tokenizer()) {
            try {
                (void)m->m.tokenizer();
            } catch (...) {
                delete m;
                throw;
            }
        }
        return m;
    });
}
void ncas_model_free(ncas_model* m) { delete m; }
int32_t ncas_model_n_vocab(const ncas_model* m) { return m ? int32_t(m->m.config().n_vocab) : -1; }
int32_t ncas_model_n_ctx(const ncas_model* m) { return m ? int32_t(m->m.config().n_ctx) : -1; }
int32_t ncas_model_bos(const ncas_model* m) { return m ? m->m.tokenizer().bos_id() : -1; }
int32_t ncas_model_eos(const ncas_model* m) { return m ? m->m.tokenizer().eos_id() : -1; }

int32_t ncas_tokenize(const ncas_model* m, const char* text, size_t len, int add_bos, int parse_special, int32_t* ids,
                      int32_t cap) {
    return guard(int32_t(-1), [&] {
        need(m, "model");
        if (len) need(text, "text");
        if (cap < 0) throw ncas::error("cap must not be negative");
        if (cap > 0) need(ids, "ids");
        const auto v = m->m.tokenizer().encode(std::string_view(text ? text : "", len), add_bos != 0, parse_special != 0);
        std::copy_n(v.begin(), std::min(v.size(), size_t(cap)), ids);
        return int32_t(v.size());
    });
}

int64_t ncas_detokenize(const ncas_model* m, const int32_t* ids, int32_t n, char* out, size_t cap) {
    return guard(int64_t(-1), [&] {
        need(m, "model");
        if (n < 0) throw ncas::error("n must not be negative");
        if (n) need(ids, "ids");
        if (cap) need(out, "out");
        const std::string s = m->m.tokenizer().decode(std::span<const int32_t>(ids, size_t(n)));
        std::memcpy(out, s.data(), std::min(s.size(), cap));
        return int64_t(s.size());
    });
}

ncas_session_params ncas_session_default_params(void) { return {0, 0, 64, nullptr}; }

ncas_session* ncas_session_new(const ncas_model* m, const ncas_session_params* params) {
    return guard<>(static_cast<ncas_session*>(nullptr), [&] {
        need(m, "model");
        const ncas_session_params p = params ? *params : ncas_session_default_params();
        ncas::session_params sp{.n_ctx = p.n_ctx, .n_threads = p.n_threads, .n_batch = p.n_batch,
                                .kv_type = ncas::parse_weight_type(p.kv_type ? p.kv_type : "f32")};
        return new ncas_session(m, ncas::make_session(m->m, sp));
    });
}
void ncas_session_free(ncas_session* s) { delete s; }
int32_t ncas_session_n_past(const ncas_session* s) { return s ? int32_t(s->s->n_past()) : -1; }
int32_t ncas_session_n_ctx(const ncas_session* s) { return s ? int32_t(s->s->n_ctx()) : -1; }

int ncas_session_prefill(ncas_session* s, const int32_t* ids, int32_t n) {
    return guard(-1, [&] {
        need(s, "session");
        if (n < 0) throw ncas::error("n must not be negative");
        if (n) need(ids, "ids");
        s->logits = s->g.prefill(std::span<const int32_t>(ids, size_t(n)));
        return 0;
    });
}
int ncas_session_decode(ncas_session* s, int32_t id) { return ncas_session_prefill(s, &id, 1); }
const float* ncas_session_logits(const ncas_session* s) { return s && !s->logits.empty() ? s->logits.data() : nullptr; }
int ncas_session_rewind(ncas_session* s, int32_t n_past) {
    return guard(-1, [&] {
        need(s, "session");
        s->g.rewind(n_past);
        s->logits = {};
        return 0;
    });
}
void ncas_session_cancel(ncas_session* s) {
    if (s) s->cancel.store(true);
}

int ncas_session_save(ncas_session* s, const char* path) {
    return guard(-1, [&] {
        need(s, "session");
        need(path, "path");
        if (s->s->n_past() != int64_t(s->g.cached().size())) s->g.reset();
        ncas::save_state(*s->s, s->g.cached(), path);
        return 0;
    });
}
int ncas_session_load(ncas_session* s, const char* path) {
    return guard(-1, [&] {
        need(s, "session");
        need(path, "path");
        s->logits = {};
        try {
            s->g.assume_cached(ncas::load_state(*s->s, path));
        } catch (...) {
            s->g.reset();
            throw;
        }
        return 0;
    });
}

ncas_sampler_params ncas_sampler_default_params(void) {
    const ncas::sampler_params d;
    return {d.temperature, d.top_k, d.top_p, d.min_p, d.repetition_penalty, d.repetition_last_n, d.seed};
}
ncas_sampler* ncas_sampler_new(const ncas_sampler_params* params) {
    return guard<>(static_cast<ncas_sampler*>(nullptr), [&] {
        const ncas_sampler_params p = params ? *params : ncas_sampler_default_params();
        return new ncas_sampler{ncas::sampler(to_cpp(p))};
    });
}
void ncas_sampler_free(ncas_sampler* smp) { delete smp; }
int32_t ncas_sampler_sample(ncas_sampler* smp, const float* logits, int32_t n, const int32_t* recent, int32_t n_recent) {
    return guard(int32_t(-1), [&] {
        need(smp, "sampler");
        need(logits, "logits");
        if (n < 0 || n_recent < 0) throw ncas::error("negative length");
        if (n_recent) need(recent, "recent");
        return smp->smp.sample(std::span<const float>(logits, size_t(n)), std::span<const int32_t>(recent, size_t(n_recent)));
    });
}

ncas_generate_params ncas_generate_default_params(void) {
    ncas_generate_params p;
    std::memset(&p, 0, sizeof p);
    p.sampling = ncas_sampler_default_params();
    p.max_tokens = -1;
    return p;
}

const char* ncas_finish_name(ncas_finish f) {
    if (f < NCAS_FINISH_EOS || f > NCAS_FINISH_CANCELLED) return "unknown";
    return ncas::finish_reason_name(ncas::finish_reason(int(f)));
}

int ncas_generate_tokens(ncas_session* s, const int32_t* ids, int32_t n, const ncas_generate_params* params, ncas_piece_fn fn,
                         void* user, ncas_generate_result* result) {
    return guard(-1, [&] {
        need(s, "session");
        if (n < 0) throw ncas::error("n must not be negative");
        if (n) need(ids, "ids");
        s->cancel.store(false);
        const auto r = s->g.generate(std::span<const int32_t>(ids, size_t(n)), to_cpp(params, s), to_cpp(fn, user));
        s->logits = {};
        fill(result, r);
        return 0;
    });
}

int ncas_generate(ncas_session* s, const char* prompt, const ncas_generate_params* params, ncas_piece_fn fn, void* user,
                  ncas_generate_result* result) {
    return guard(-1, [&] {
        need(s, "session");
        need(prompt, "prompt");
        const auto ids = s->g.encode(prompt);
        if (ncas_generate_tokens(s, ids.data(), int32_t(ids.size()), params, fn, user, result) != 0)
            throw ncas::error(last_error);
        return 0;
    });
}

int64_t ncas_chat_apply(const ncas_model* m, const char* format, const ncas_chat_message* msgs, int32_t n,
                        int add_generation_prompt, char* out, size_t cap) {
    return guard(int64_t(-1), [&] {
        need(m, "model");
        if (cap) need(out, "out");
        const std::string s = format_of(m, format).apply(messages(msgs, n), add_generation_prompt != 0);
        std::memcpy(out, s.data(), std::min(s.size(), cap));
        return int64_t(s.size());
    });
}

int ncas_chat(ncas_session* s, const char* format, const ncas_chat_message* msgs, int32_t n,
              const ncas_generate_params* params, ncas_piece_fn fn, void* user, ncas_generate_result* result) {
    return guard(-1, [&] {
        need(s, "session");
        s->cancel.store(false);
        const auto r = s->g.chat(format_of(s->model, format), messages(msgs, n), to_cpp(params, s), to_cpp(fn, user));
        s->logits = {};
        fill(result, r);
        return 0;
    });
}

}  // extern "C"
