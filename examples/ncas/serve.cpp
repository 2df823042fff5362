// `ncas serve`: an OpenAI-compatible HTTP server over one loaded model.
//
//   GET  /health                 {"status":"ok", "slots_idle", "slots_total", "queued"}
//   GET  /v1/models              the one model, named by --alias (default: the file's stem)
//   POST /v1/completions         prompt -> text; "stream": true sends server-sent events
//   POST /v1/chat/completions    messages -> the assistant's reply (the chat format from the
//                                model's tokenizer.chat_template, else --chat-format)
//
// Requests run on a fixed pool of sessions (--parallel), each with its own
// generator (ncas/generate.hpp), so a request that starts with the tokens a
// session already holds (a conversation, a shared system prompt) prefills only
// the rest. A request waits for a free session in a bounded queue (--queue); a
// full queue answers 503. A streaming client that goes away cancels its
// generation at the next piece, which frees the session. Errors are OpenAI's
// object {"error":{"message","type","param","code"}} with a 4xx/5xx status.
// SIGINT or SIGTERM cancels what runs, stops listening and exits 0.
#include <pthread.h>
#include <signal.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "common.hpp"

namespace ncas::cli {

namespace {
namespace serve_impl {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

// A request the server refuses: the HTTP status and OpenAI's error fields.
struct api_error {
    int status;
    std::string message;
    std::string type;
    std::string param;  // empty: null
    std::string code;   // empty: null

    api_error(int status_, std::string message_, std::string type_ = "invalid_request_error", std::string param_ = {},
              std::string code_ = {})
        : status(status_), message(std::move(message_)), type(std::move(type_)), param(std::move(param_)), code(std::move(code_)) {}
};

json error_body(const api_error& e) {
    return {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const api_error& e) { send_json(res, e.status, error_body(e)); }

struct limits {
    int64_t max_tokens = 512;     // a request may ask for at most this many tokens
    int64_t max_prompt = 0;       // tokens; 0: the context minus one
    double timeout_s = 120;       // generation time of one request
};

// One session with its generator; `cancel` is what the watchdog, a departed
// client or shutdown sets.
struct slot {
    std::unique_ptr<any_session> session;
    std::optional<generator> gen;
    std::atomic<bool> cancel{false};
    steady::time_point deadline{};
    bool busy = false;
};

// The sessions and the queue of requests waiting for one.
class slot_pool {
public:
    slot_pool(std::vector<std::unique_ptr<slot>> slots, int64_t queue_max)
        : slots_(std::move(slots)), queue_max_(queue_max) {}

    // A free slot, waiting in the queue until `until`; nullptr when the queue is
    // full (or shutting down) and `timed_out` when the wait ran out.
    // The slot's deadline (for the watchdog) is `until` too.
    slot* acquire(steady::time_point until, bool& timed_out) {
        std::unique_lock lk(m_);
        timed_out = false;
        if (stopping_) return nullptr;
        if (slot* s = free_slot()) return take(s, until);
        if (waiting_ >= queue_max_) return nullptr;
        ++waiting_;
        slot* got = nullptr;
        cv_.wait_until(lk, until, [&] { return stopping_ || (got = free_slot()) != nullptr; });
        --waiting_;
        if (!got) {
            timed_out = !stopping_;
            return nullptr;
        }
        return take(got, until);
    }

    void release(slot* s) {
        {
            std::lock_guard lk(m_);
            s->busy = false;
        }
        cv_.notify_one();
    }

    // The watchdog: cancels what ran past its deadline.
    void expire(steady::time_point now) {
        std::lock_guard lk(m_);
        for (auto& s : slots_)
            if (s->busy && now > s->deadline) s->cancel = true;
    }

    void stop() {
        {
            std::lock_guard lk(m_);
            stopping_ = true;
            for (auto& s : slots_)
                if (s->busy) s->cancel = true;
        }
        cv_.notify_all();
    }

    json health() {
        std::lock_guard lk(m_);
        int64_t idle = 0;
        for (auto& s : slots_) idle += !s->busy;
        return {{"status", "ok"}, {"slots_idle", idle}, {"slots_total", int64_t(slots_.size())}, {"queued", waiting_}};
    }

private:
    slot* free_slot() {
        for (auto& s : slots_)
            if (!s->busy) return s.get();
        return nullptr;
    }
    static slot* take(slot* s, steady::time_point until) {
        s->busy = true;
        s->deadline = until;
        s->cancel = false;
        return s;
    }

    std::vector<std::unique_ptr<slot>> slots_;
    int64_t queue_max_;
    int64_t waiting_ = 0;
    bool stopping_ = false;
    std::mutex m_;
    std::condition_variable cv_;
};

// A slot held for one request; released when the last holder (the handler or a
// streaming response's provider) lets go.
struct slot_lease {
    slot_pool* pool;
    slot* s;
    ~slot_lease() { pool->release(s); }
};

// ---- reading the request --------------------------------------------------

std::string type_name(const json& v) {
    if (v.is_string()) return "a string";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number()) return "a number";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return "null";
}

api_error bad_param(const std::string& param, const std::string& message) { return {400, message, "invalid_request_error", param}; }

// body[key] as a number in [lo, hi] when present (null counts as absent).
std::optional<double> get_number(const json& body, const char* key, double lo, double hi) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) throw bad_param(key, std::string("'") + key + "' must be a number, not " + type_name(*it));
    const double v = it->get<double>();
    if (!(v >= lo && v <= hi))
        throw bad_param(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump() +
                                 ", not " + it->dump());
    return v;
}

std::optional<int64_t> get_integer(const json& body, const char* key, int64_t lo, int64_t hi) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer() && !(it->is_number_float() && it->get<double>() == double(int64_t(it->get<double>()))))
        throw bad_param(key, std::string("'") + key + "' must be an integer, not " + type_name(*it) + " " + it->dump());
    const double d = it->get<double>();
    if (d < double(lo) || d > double(hi))
        throw bad_param(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi) + ", not " + it->dump());
    return it->is_number_unsigned() ? int64_t(it->get<uint64_t>()) : it->get<int64_t>();
}

bool get_bool(const json& body, const char* key) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return false;
    if (!it->is_boolean()) throw bad_param(key, std::string("'") + key + "' must be a boolean, not " + type_name(*it));
    return it->get<bool>();
}

// What a completion request asks for, whatever its endpoint.
struct request {
    bool chat = false;
    bool stream = false;
    bool include_usage = false;
    std::vector<int32_t> prompt;
    generate_params params;
    std::string model;
};

struct server_state {
    const ncas::model* model = nullptr;
    std::string alias;
    chat_format format;
    limits lim;
    int64_t n_ctx = 0;
    std::string api_key;
    slot_pool* pool = nullptr;
    std::atomic<uint64_t> next_id{1};
    int64_t created = 0;
    bool verbose = false;
};

void read_common(const server_state& st, const json& body, request& r) {
    if (const auto it = body.find("model"); it != body.end() && !it->is_null()) {
        if (!it->is_string()) throw bad_param("model", "'model' must be a string, not " + type_name(*it));
        if (it->get<std::string>() != st.alias)
            throw api_error{404, "The model '" + it->get<std::string>() + "' does not exist; this server has '" + st.alias + "'",
                            "invalid_request_error", "model", "model_not_found"};
    }
    r.model = st.alias;
    r.stream = get_bool(body, "stream");
    if (const auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
        if (!it->is_object()) throw bad_param("stream_options", "'stream_options' must be an object, not " + type_name(*it));
        r.include_usage = get_bool(*it, "include_usage");
    }
    if (const auto n = get_integer(body, "n", 1, 128); n && *n != 1)
        throw bad_param("n", "'n' must be 1: this server makes one choice per request");
    for (const char* unsupported : {"logprobs", "top_logprobs", "echo", "suffix", "best_of", "tools", "functions", "logit_bias"}) {
        const auto it = body.find(unsupported);
        if (it == body.end() || it->is_null() || (it->is_boolean() && !it->get<bool>())) continue;
        if (std::string_view(unsupported) == "best_of" && it->is_number_integer() && it->get<int64_t>() == 1) continue;
        if (it->is_object() && it->empty()) continue;
        throw bad_param(unsupported, std::string("'") + unsupported + "' is not supported by this server");
    }

    sampler_params& sp = r.params.sampling;
    sp = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repetition_penalty = 1.0f};
    if (auto v = get_number(body, "temperature", 0, 2)) sp.temperature = float(*v);
    if (auto v = get_number(body, "top_p", 0, 1)) {
        if (*v == 0) throw bad_param("top_p", "'top_p' must be greater than 0");
        sp.top_p = float(*v);
    }
    if (auto v = get_integer(body, "top_k", 0, int64_t(1) << 30)) sp.top_k = int32_t(*v);
    if (auto v = get_number(body, "min_p", 0, 1)) sp.min_p = float(*v);
    if (auto v = get_number(body, "repetition_penalty", 1e-3, 1e3)) sp.repetition_penalty = float(*v);
    r.params.ignore_eos = get_bool(body, "ignore_eos");  // llama.cpp's extension: go on past end-of-text
    get_number(body, "presence_penalty", -2, 2);   // accepted, not applied
    get_number(body, "frequency_penalty", -2, 2);  // accepted, not applied
    if (auto v = get_integer(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
        sp.seed = uint64_t(*v);
    else
        sp.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();

    const char* tokens_key = r.chat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    const auto mt = get_integer(body, tokens_key, 0, std::numeric_limits<int64_t>::max());
    if (mt && *mt > st.lim.max_tokens)
        throw bad_param(tokens_key, "'" + std::string(tokens_key) + "' is " + std::to_string(*mt) +
                                        "; this server allows at most " + std::to_string(st.lim.max_tokens) + " (--max-tokens)");
    r.params.max_tokens = mt ? *mt : r.chat ? st.lim.max_tokens : std::min<int64_t>(16, st.lim.max_tokens);

    if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
        if (it->is_string()) r.params.stops.push_back(it->get<std::string>());
        else if (it->is_array()) {
            if (it->size() > 16) throw bad_param("stop", "'stop' may hold at most 16 strings");
            for (const auto& s : *it) {
                if (!s.is_string()) throw bad_param("stop", "'stop' must be a string or an array of strings");
                r.params.stops.push_back(s.get<std::string>());
            }
        } else {
            throw bad_param("stop", "'stop' must be a string or an array of strings, not " + type_name(*it));
        }
    }
}

void check_prompt_length(const server_state& st, const request& r) {
    const int64_t limit = st.lim.max_prompt > 0 ? std::min(st.lim.max_prompt, st.n_ctx - 1) : st.n_ctx - 1;
    if (int64_t(r.prompt.size()) > limit)
        throw api_error{400,
                        "The prompt is " + std::to_string(r.prompt.size()) + " tokens; this server allows at most " +
                            std::to_string(limit) + " (" + (st.lim.max_prompt > 0 ? "--max-prompt" : "the context of " + std::to_string(st.n_ctx) + " tokens, less one") + ")",
                        "invalid_request_error", r.chat ? "messages" : "prompt", "context_length_exceeded"};
    if (r.prompt.empty()) throw bad_param(r.chat ? "messages" : "prompt", "the prompt is empty");
}

request read_completion(const server_state& st, const json& body) {
    request r;
    read_common(st, body, r);
    const auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) throw bad_param("prompt", "'prompt' is required");
    const tokenizer& tok = st.model->tokenizer();
    const auto text_prompt = [&](const std::string& s) { return tok.encode(s, tok.bos_id() >= 0, false); };
    if (it->is_string()) {
        r.prompt = text_prompt(it->get<std::string>());
    } else if (it->is_array()) {
        if (it->size() == 1 && (*it)[0].is_string()) {
            r.prompt = text_prompt((*it)[0].get<std::string>());
        } else if (!it->empty() && (*it)[0].is_string()) {
            throw bad_param("prompt", "'prompt' holds " + std::to_string(it->size()) + " prompts; this server takes one");
        } else {  // token ids
            for (const auto& t : *it) {
                if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= int64_t(tok.size()))
                    throw bad_param("prompt", "'prompt' must be a string, an array of one string, or token ids in [0, " +
                                                  std::to_string(tok.size()) + ")");
                r.prompt.push_back(int32_t(t.get<int64_t>()));
            }
        }
    } else {
        throw bad_param("prompt", "'prompt' must be a string or an array, not " + type_name(*it));
    }
    check_prompt_length(st, r);
    return r;
}

request read_chat(const server_state& st, const json& body) {
    request r;
    r.chat = true;
    read_common(st, body, r);
    const auto it = body.find("messages");
    if (it == body.end() || it->is_null()) throw bad_param("messages", "'messages' is required");
    if (!it->is_array()) throw bad_param("messages", "'messages' must be an array, not " + type_name(*it));
    if (it->empty()) throw bad_param("messages", "'messages' is empty");
    std::vector<chat_message> msgs;
    for (size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw bad_param(where, where + " must be an object, not " + type_name(m));
        const auto role = m.find("role");
        if (role == m.end() || !role->is_string()) throw bad_param(where + ".role", where + ".role must be a string");
        chat_message cm{role->get<std::string>(), ""};
        if (cm.role == "developer") cm.role = "system";
        if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
            throw bad_param(where + ".role", where + ".role is '" + cm.role + "'; expected system, user or assistant");
        const auto content = m.find("content");
        if (content == m.end() || content->is_null()) {
            if (cm.role != "assistant") throw bad_param(where + ".content", where + ".content is required");
        } else if (content->is_string()) {
            cm.content = content->get<std::string>();
        } else if (content->is_array()) {  // [{"type":"text","text":...}]
            for (const auto& part : *content) {
                if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
                    throw bad_param(where + ".content", where + ".content: only text parts are supported");
                cm.content += part["text"].get<std::string>();
            }
        } else {
            throw bad_param(where + ".content", where + ".content must be a string or an array of text parts, not " +
                                                    type_name(*content));
        }
        msgs.push_back(std::move(cm));
    }
    std::string text;
    try {
        text = st.format.apply(msgs);
    } catch (const ncas::error& e) {
        throw bad_param("messages", e.what());
    }
    const tokenizer& tok = st.model->tokenizer();
    r.prompt = tok.encode(text, tok.bos_id() >= 0, true);
    for (const auto& s : st.format.stops()) r.params.stops.push_back(s);
    check_prompt_length(st, r);
    return r;
}

// ---- answering ------------------------------------------------------------

const char* openai_finish(finish_reason f) {
    return f == finish_reason::eos || f == finish_reason::stop ? "stop" : "length";
}

json usage_json(const generate_usage& u) {
    return {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

std::string new_id(server_state& st, bool chat) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)st.next_id.fetch_add(1));
    return std::string(chat ? "chatcmpl-" : "cmpl-") + buf;
}

// One streamed chunk: the delta (chat) or text (completions), a finish reason or null.
json chunk(const server_state& st, const request& r, const std::string& id, const std::optional<std::string>& text,
           const char* finish, bool first) {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
    if (r.chat) {
        json delta = json::object();
        if (first) delta["role"] = "assistant";
        if (text) delta["content"] = *text;
        choice["delta"] = delta;
    } else {
        choice["text"] = text.value_or("");
    }
    return {{"id", id},
            {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", st.created},
            {"model", r.model},
            {"choices", json::array({choice})}};
}

std::string sse(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }

class server {
public:
    server(server_state& st, slot_pool& pool, size_t threads) : st_(st), pool_(pool) {
        http_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
        http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return;
            switch (res.status) {
                case 404: send_error(res, {404, "no such endpoint", "invalid_request_error", "", "not_found"}); break;
                case 413: send_error(res, {413, "the request body is larger than this server takes (--max-body)",
                                           "invalid_request_error", "", "request_too_large"}); break;
                case 400: send_error(res, {400, "malformed HTTP request"}); break;
                default: send_error(res, {res.status, "HTTP error " + std::to_string(res.status)}); break;
            }
        });
        http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            send_error(res, {500, what, "server_error"});
        });
        http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, pool_.health()); });
        http_.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
            if (!authorized(req, res)) return;
            send_json(res, 200,
                      {{"object", "list"},
                       {"data", json::array({{{"id", st_.alias}, {"object", "model"}, {"created", st_.created}, {"owned_by", "ncas"}}})}});
        });
        http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, false); });
        http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, true); });
    }

    httplib::Server& http() { return http_; }

private:
    bool authorized(const httplib::Request& req, httplib::Response& res) {
        if (st_.api_key.empty()) return true;
        if (req.get_header_value("Authorization") == "Bearer " + st_.api_key) return true;
        send_error(res, {401, req.has_header("Authorization") ? "Incorrect API key provided" : "No API key provided (Authorization: Bearer KEY)",
                         "invalid_request_error", "", "invalid_api_key"});
        return false;
    }

    void complete(const httplib::Request& req, httplib::Response& res, bool chat) {
        if (!authorized(req, res)) return;
        request r;
        try {
            const json body = json::parse(req.body, nullptr, false);
            if (body.is_discarded()) throw api_error{400, "the request body is not valid JSON"};
            if (!body.is_object()) throw api_error{400, "the request body must be a JSON object, not " + type_name(body)};
            r = chat ? read_chat(st_, body) : read_completion(st_, body);
        } catch (const api_error& e) {
            return send_error(res, e);
        }

        const auto start = steady::now();
        const auto deadline = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(st_.lim.timeout_s));
        bool timed_out = false;
        slot* s = pool_.acquire(deadline, timed_out);
        if (!s)
            return send_error(res, timed_out ? api_error{503, "no session became free within the request time limit (--timeout)", "server_error", "", "timeout"}
                                             : api_error{503, "the server is busy: every session is in use and the queue is full (--parallel, --queue); try again later",
                                                         "server_error", "", "server_busy"});
        const std::shared_ptr<slot_lease> lease(new slot_lease{&pool_, s});
        r.params.cancel = &s->cancel;
        const std::string id = new_id(st_, r.chat);

        if (!r.stream) {
            generate_result g;
            try {
                // Past the deadline the reply ends at the next piece (the watchdog
                // catches a generation that shows no text).
                g = s->gen->generate(std::span<const int32_t>(r.prompt), r.params,
                                     [&](std::string_view) { return steady::now() <= deadline; });
            } catch (const std::exception& e) {
                s->gen->reset();
                return send_error(res, {500, e.what(), "server_error"});
            }
            log(r, g);
            json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", openai_finish(g.finish)}};
            if (r.chat) choice["message"] = {{"role", "assistant"}, {"content", g.text}};
            else choice["text"] = g.text;
            return send_json(res, 200,
                             {{"id", id},
                              {"object", r.chat ? "chat.completion" : "text_completion"},
                              {"created", st_.created},
                              {"model", r.model},
                              {"choices", json::array({choice})},
                              {"usage", usage_json(g.usage)}});
        }

        res.set_header("Cache-Control", "no-cache");
        auto rp = std::make_shared<request>(std::move(r));
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, rp, lease, id](size_t, httplib::DataSink& sink) {
                const request& r = *rp;
                slot* s = lease->s;
                bool alive = true;
                const auto put = [&](const std::string& text) { return alive = alive && sink.write(text.data(), text.size()); };
                if (r.chat) put(sse(chunk(st_, r, id, std::string(), nullptr, true)));
                generate_result g;
                try {
                    g = s->gen->generate(std::span<const int32_t>(r.prompt), r.params, [&](std::string_view piece) {
                        return put(sse(chunk(st_, r, id, std::string(piece), nullptr, false))) && steady::now() <= s->deadline;
                    });
                } catch (const std::exception& e) {
                    s->gen->reset();
                    put(sse(error_body({500, e.what(), "server_error"})));
                    put("data: [DONE]\n\n");
                    sink.done();
                    return alive;
                }
                log(r, g, !alive);
                if (!alive) return false;  // the client left: the session is free as the lease goes
                json last = chunk(st_, r, id, r.chat ? std::nullopt : std::optional<std::string>(""), openai_finish(g.finish), false);
                if (r.include_usage) {
                    last["usage"] = nullptr;
                    put(sse(last));
                    json u = chunk(st_, r, id, std::nullopt, nullptr, false);
                    u["choices"] = json::array();
                    u["usage"] = usage_json(g.usage);
                    put(sse(u));
                } else {
                    last["usage"] = usage_json(g.usage);
                    put(sse(last));
                }
                put("data: [DONE]\n\n");
                sink.done();
                return alive;
            },
            [lease](bool) {});
    }

    void log(const request& r, const generate_result& g, bool left = false) const {
        if (!st_.verbose) return;
        std::fprintf(stderr, "%s%s: %lld prompt tokens (%lld cached), %lld generated, %s%s\n", r.chat ? "chat" : "completion",
                     r.stream ? " (stream)" : "", (long long)g.usage.prompt_tokens, (long long)g.usage.cached_tokens,
                     (long long)g.usage.completion_tokens, finish_reason_name(g.finish), left ? ", client gone" : "");
    }

    server_state& st_;
    slot_pool& pool_;
    httplib::Server http_;
};

}  // namespace serve_impl
}  // namespace

int run_serve(int argc, char** argv) {
    using namespace serve_impl;
    model_options mo;
    std::string host = "127.0.0.1", api_key, alias, format_name;
    int port = 8080;
    int parallel = 1;
    int64_t queue = 16, max_body = 1 << 20;
    limits lim;
    bool verbose = false;

    arg_parser p("serve", "[options]",
                 "An OpenAI-compatible HTTP server: GET /health, GET /v1/models, POST /v1/completions,\n"
                 "POST /v1/chat/completions (stream: true for server-sent events). Requests run on\n"
                 "--parallel sessions of the one model and wait in a queue of --queue; a full queue\n"
                 "answers 503. SIGINT or SIGTERM stops it.");
    mo.add_to(p);
    p.option("--host", host, "ADDR", "address to listen on (default 127.0.0.1: this machine only)");
    p.option("--port", port, "N", "port to listen on; 0: any free port (printed)", bounds<int>{0, 65535});
    p.option("--parallel", parallel, "N", "sessions: requests that run at once", bounds<int>{1, 256});
    p.option("--queue", queue, "N", "requests that may wait for a session; more get 503", bounds<int64_t>{0, 1 << 20});
    p.option("--api-key", api_key, "KEY", "require 'Authorization: Bearer KEY' on /v1/ (default: none)");
    p.option("--alias", alias, "NAME", "the model's name in the API (default: the file name without .gguf)");
    p.option("--chat-format", format_name, "NAME",
             std::string("chat format (") + chat_format::names + "; default: from the model's tokenizer.chat_template)");
    p.option("--max-body", max_body, "BYTES", "largest request body; larger gets 413", bounds<int64_t>{64});
    p.option("--max-tokens", lim.max_tokens, "N", "most tokens a request may generate (and chat's default)", bounds<int64_t>{1});
    p.option("--max-prompt", lim.max_prompt, "N", "most prompt tokens; 0: the context less one", bounds<int64_t>{0});
    p.option("--timeout", lim.timeout_s, "SECONDS", "time a request may wait and generate; then it ends (finish_reason length)",
             bounds<double>{0.001});
    p.flag("-v --verbose", verbose, "one line on stderr per request");
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;

    // Signals go to the thread that waits for them, not to the server's threads.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);  // wakes the waiter when the server ends on its own
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    const ncas::model m = mo.load();
    server_state st;
    st.model = &m;
    st.alias = alias.empty() ? std::filesystem::path(m.path()).stem().string() : alias;
    st.format = format_name.empty() ? chat_format::from_template(m.file().get_string("tokenizer.chat_template", ""))
                                    : chat_format::by_name(format_name);
    st.lim = lim;
    st.api_key = api_key;
    st.verbose = verbose;
    st.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();

    // The cores are shared among the sessions unless --threads says otherwise.
    session_params sp = mo.params(m);
    if (sp.n_threads == 0) sp.n_threads = std::max(1, int(std::max(1u, std::thread::hardware_concurrency())) / parallel);
    std::vector<std::unique_ptr<slot>> slots;
    for (int i = 0; i < parallel; ++i) {
        auto s = std::make_unique<slot>();
        s->session = mo.make_session(m, sp);
        s->gen.emplace(*s->session, m.tokenizer());
        slots.push_back(std::move(s));
    }
    st.n_ctx = slots[0]->session->n_ctx();
    slot_pool pool(std::move(slots), queue);
    st.pool = &pool;

    // Threads: the running requests, the waiting ones, and a few to answer
    // /health and 503s while all those are taken.
    server srv(st, pool, size_t(parallel + queue + 4));
    httplib::Server& http = srv.http();
    http.set_payload_max_length(size_t(max_body));
    http.set_keep_alive_timeout(2);

    const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
    if (bound < 0) throw error("cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not an address of this machine)");

    std::atomic<bool> done{false};
    std::thread waiter([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig != SIGUSR1 && verbose) std::fprintf(stderr, "ncas serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        pool.stop();
        http.stop();
    });
    std::thread watchdog([&] {
        while (!done.load()) {
            pool.expire(steady::now());
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });

    std::fprintf(stderr, "ncas serve: %s (%s chat format, %d session%s of %lld tokens) on http://%s:%d\n", st.alias.c_str(),
                 st.format.name().c_str(), parallel, parallel == 1 ? "" : "s", (long long)st.n_ctx, host.c_str(), bound);
    http.listen_after_bind();  // returns when stopped
    done = true;
    pool.stop();
    pthread_kill(waiter.native_handle(), SIGUSR1);
    waiter.join();
    watchdog.join();
    std::fprintf(stderr, "ncas serve: stopped\n");
    return 0;
}

}  // namespace ncas::cli
