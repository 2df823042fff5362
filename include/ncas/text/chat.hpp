#pragma once
// Chat formatting: a list of messages (system, user, assistant) -> the prompt
// text a model was trained on, in one of a few built-in formats.
//
//   chat_format f = chat_format::from_template(file.get_string("tokenizer.chat_template", ""));
//   std::string prompt = f.apply({{"system", "Be brief."}, {"user", "Hi"}});   // ends where the reply starts
//   tokens = tok.encode(prompt, tok.bos_id() >= 0, /*parse_special=*/true);  // stop at f.stops()
//
// The formats (no Jinja is run: a GGUF's template is only recognised by its
// signature, as llama.cpp's llama_chat_apply_template does):
//   chatml    <|im_start|>role\ncontent<|im_end|>\n ...  <|im_start|>assistant\n
//   llama-2   [INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] reply</s><s>[INST] user [/INST]
//   llama-3   <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ... assistant header
//   mistral   [INST] system\n\nuser [/INST] reply</s>[INST] user [/INST]
//   plain     system\nUser: content\nAssistant: reply\nUser: ...\nAssistant:   (the demo model's,
//             as `ncas chat` writes it; the reply stops at "\nUser:")
// The BOS token is not part of the text: add it when tokenizing.
#include <string>
#include <string_view>
#include <vector>

#include "ncas/error.hpp"

namespace ncas {

struct chat_message {
    std::string role;     // "system", "user" or "assistant"
    std::string content;
};

class chat_format {
public:
    enum class kind { plain, chatml, llama2, llama3, mistral };

    explicit chat_format(kind k = kind::plain) : k_(k) {}

    // The built-in names, for error messages and help texts.
    static constexpr const char* names = "chatml, llama-2, llama-3, mistral, plain";

    // By name (llama2 and llama-2 alike, any case); an unknown name is an error naming the choices.
    static chat_format by_name(std::string_view name) {
        std::string n;
        for (char c : name) n += (c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c);
        if (n == "plain") return chat_format(kind::plain);
        if (n == "chatml") return chat_format(kind::chatml);
        if (n == "llama-2" || n == "llama2") return chat_format(kind::llama2);
        if (n == "llama-3" || n == "llama3") return chat_format(kind::llama3);
        if (n == "mistral") return chat_format(kind::mistral);
        throw error("unknown chat format '" + std::string(name) + "' (the built-in formats: " + names + ")");
    }

    // From a GGUF's tokenizer.chat_template, by its signature; an empty template
    // (the file has none) gives the plain format. A template of no known kind is
    // an error that names the choices.
    static chat_format from_template(std::string_view tmpl) {
        const auto has = [&](std::string_view s) { return tmpl.find(s) != std::string_view::npos; };
        if (tmpl.empty()) return chat_format(kind::plain);
        if (has("<|im_start|>")) return chat_format(kind::chatml);
        if (has("<|start_header_id|>")) return chat_format(kind::llama3);
        if (has("[INST]")) return chat_format(has("<<SYS>>") ? kind::llama2 : kind::mistral);
        if (has("User: ") && has("Assistant:")) return chat_format(kind::plain);
        std::string head(tmpl.substr(0, 60));
        for (char& c : head)
            if (c == '\n') c = ' ';
        throw error("the model's chat template ('" + head + (tmpl.size() > 60 ? "...'" : "'") +
                    ") is of no known format; choose one by name (" + names + ")");
    }

    kind which() const { return k_; }
    std::string name() const {
        switch (k_) {
            case kind::chatml: return "chatml";
            case kind::llama2: return "llama-2";
            case kind::llama3: return "llama-3";
            case kind::mistral: return "mistral";
            default: return "plain";
        }
    }

    // Strings at which a reply ends (besides the end-of-text token).
    std::vector<std::string> stops() const {
        switch (k_) {
            case kind::chatml: return {"<|im_end|>", "<|im_start|>"};
            case kind::llama3: return {"<|eot_id|>", "<|start_header_id|>"};
            case kind::llama2:
            case kind::mistral: return {"</s>", "[INST]"};
            default: return {"\nUser:"};
        }
    }

    // The messages as prompt text. With add_generation_prompt (the usual case)
    // the text ends where the assistant's reply begins. Errors: no messages, a
    // role other than system, user or assistant, a system message that is not
    // the first.
    std::string apply(const std::vector<chat_message>& msgs, bool add_generation_prompt = true) const {
        if (msgs.empty()) throw error("chat: no messages given");
        for (size_t i = 0; i < msgs.size(); ++i) {
            const std::string& r = msgs[i].role;
            if (r != "system" && r != "user" && r != "assistant")
                throw error("chat: message " + std::to_string(i) + " has role '" + r +
                            "' (expected system, user or assistant)");
            if (r == "system" && i != 0) throw error("chat: message " + std::to_string(i) + " is a system message; only the first may be");
        }
        std::string out;
        switch (k_) {
            case kind::chatml:
                for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
                if (add_generation_prompt) out += "<|im_start|>assistant\n";
                break;
            case kind::llama3:
                for (const auto& m : msgs)
                    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
                if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
                break;
            case kind::llama2:
            case kind::mistral: {
                const bool l2 = k_ == kind::llama2;
                std::string system;
                bool first_user = true;
                for (const auto& m : msgs) {
                    if (m.role == "system") {
                        system = l2 ? "<<SYS>>\n" + m.content + "\n<</SYS>>\n\n" : m.content + "\n\n";
                    } else if (m.role == "user") {
                        out += std::string(first_user || !l2 ? "" : "<s>") + "[INST] " + (first_user ? system : "") +
                               trim(m.content) + " [/INST]";
                        first_user = false;
                    } else {
                        out += " " + trim(m.content) + "</s>";
                    }
                }
                if (first_user && !system.empty()) out += "[INST] " + system + " [/INST]";
                break;
            }
            default: {
                for (size_t i = 0; i < msgs.size(); ++i) {
                    const auto& m = msgs[i];
                    if (m.role == "system") {
                        out += m.content;
                        continue;
                    }
                    if (!out.empty()) out += "\n";
                    if (m.role == "user") out += "User: " + m.content;
                    else out += "Assistant:" + (m.content.empty() || m.content[0] == ' ' ? m.content : " " + m.content);
                }
                if (add_generation_prompt) out += (out.empty() ? "" : "\n") + std::string("Assistant:");
                break;
            }
        }
        return out;
    }

private:
    static std::string trim(std::string_view s) {
        const auto b = s.find_first_not_of(" \t\n\r");
        if (b == std::string_view::npos) return {};
        const auto e = s.find_last_not_of(" \t\n\r");
        return std::string(s.substr(b, e - b + 1));
    }

    kind k_;
};

}  // namespace ncas
