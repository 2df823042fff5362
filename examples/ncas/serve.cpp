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
#include "serve_request.hpp"

namespace ncas::cli {

namespace serve_impl {

using steady = std::chrono::steady_clock;

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

// The request_context the readers need, and what the handlers add.
struct server_state : request_context {
    std::string api_key;
    slot_pool* pool = nullptr;
    std::atomic<uint64_t> next_id{1};
    int64_t created = 0;
    bool verbose = false;
};

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
