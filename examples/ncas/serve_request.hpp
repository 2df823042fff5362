#pragma once
// `ncas serve`'s request reading: an OpenAI request body (JSON) -> what to generate,
// or an api_error (status, message, param) that the server sends back. Apart from
// serve.cpp so that tests/fuzz/fuzz_server_request.cpp can feed it any body: every
// body must give a request or an api_error, never another exception.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <ncas/generate.hpp>
#include <ncas/ncas.hpp>
#include <ncas/text/chat.hpp>

namespace ncas::cli::serve_impl {

using json = nlohmann::json;

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

struct limits {
    int64_t max_tokens = 512;     // a request may ask for at most this many tokens
    int64_t max_prompt = 0;       // tokens; 0: the context minus one
    double timeout_s = 120;       // generation time of one request
};

inline std::string type_name(const json& v) {
    if (v.is_string()) return "a string";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number()) return "a number";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return "null";
}

inline api_error bad_param(const std::string& param, const std::string& message) { return {400, message, "invalid_request_error", param}; }

// body[key] as a number in [lo, hi] when present (null counts as absent).
inline std::optional<double> get_number(const json& body, const char* key, double lo, double hi) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) throw bad_param(key, std::string("'") + key + "' must be a number, not " + type_name(*it));
    const double v = it->get<double>();
    if (!(v >= lo && v <= hi))
        throw bad_param(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump() +
                                 ", not " + it->dump());
    return v;
}

inline std::optional<int64_t> get_integer(const json& body, const char* key, int64_t lo, int64_t hi) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    const auto out_of_range = [&] {
        return bad_param(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                                  std::to_string(hi) + ", not " + it->dump());
    };
    int64_t v;
    if (it->is_number_unsigned()) {  // compared as integers: 2^63 and above must not wrap
        const uint64_t u = it->get<uint64_t>();
        if (u > uint64_t(std::numeric_limits<int64_t>::max())) throw out_of_range();
        v = int64_t(u);
    } else if (it->is_number_integer()) {
        v = it->get<int64_t>();
    } else if (it->is_number_float()) {  // 5.0 is 5; the range is checked before the conversion
        const double d = it->get<double>();
        if (d != std::trunc(d))
            throw bad_param(key, std::string("'") + key + "' must be an integer, not a number " + it->dump());
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) throw out_of_range();
        v = int64_t(d);
    } else {
        throw bad_param(key, std::string("'") + key + "' must be an integer, not " + type_name(*it) + " " + it->dump());
    }
    if (v < lo || v > hi) throw out_of_range();
    return v;
}

inline bool get_bool(const json& body, const char* key) {
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

// What reading a request needs of the server.
struct request_context {
    const ncas::model* model = nullptr;
    std::string alias;
    chat_format format;
    limits lim;
    int64_t n_ctx = 0;
};

inline void read_common(const request_context& st, const json& body, request& r) {
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

inline void check_prompt_length(const request_context& st, const request& r) {
    const int64_t limit = st.lim.max_prompt > 0 ? std::min(st.lim.max_prompt, st.n_ctx - 1) : st.n_ctx - 1;
    if (int64_t(r.prompt.size()) > limit)
        throw api_error{400,
                        "The prompt is " + std::to_string(r.prompt.size()) + " tokens; this server allows at most " +
                            std::to_string(limit) + " (" + (st.lim.max_prompt > 0 ? "--max-prompt" : "the context of " + std::to_string(st.n_ctx) + " tokens, less one") + ")",
                        "invalid_request_error", r.chat ? "messages" : "prompt", "context_length_exceeded"};
    if (r.prompt.empty()) throw bad_param(r.chat ? "messages" : "prompt", "the prompt is empty");
}

inline request read_completion(const request_context& st, const json& body) {
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

inline request read_chat(const request_context& st, const json& body) {
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
                // part.value("type", "") would throw json's type_error on a non-string type: a 500, not a 400
                const auto is_string = [&](const char* key, std::string_view want = {}) {
                    const auto f = part.find(key);
                    return f != part.end() && f->is_string() && (want.empty() || f->get_ref<const std::string&>() == want);
                };
                if (!part.is_object() || !is_string("type", "text") || !is_string("text"))
                    throw bad_param(where + ".content", where + ".content: only text parts are supported");
                cm.content += part.find("text")->get<std::string>();
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

}  // namespace ncas::cli::serve_impl
