// `ncas chat`: a conversation with the model, one line of stdin per turn.
// The demo model is not instruction-tuned, so a turn is plain text:
//     <user prefix><your line><bot prefix><reply>      ("\nUser: hi\nAssistant: hello")
// The conversation stays in the session's cache: each turn runs only its new
// tokens. A reply ends at the end-of-text token, at a stop string (a newline,
// or with --multiline the user prefix), or after -n tokens. The cache always
// holds exactly the conversation's text up to a token boundary; what a stop
// cut off inside a token is carried into the next turn's text.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"

namespace ncas::cli {

namespace {

// "\n" and "\t" written on a command line -> the characters; "\\" -> "\".
std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) { out += s[i]; continue; }
        const char c = s[++i];
        if (c == 'n') out += '\n';
        else if (c == 't') out += '\t';
        else if (c == '\\') out += '\\';
        else throw usage_error("unknown escape \\" + std::string(1, c) + " (\\n, \\t and \\\\ are known)");
    }
    return out;
}

std::string_view without_leading_newlines(std::string_view s) { return s.substr(std::min(s.find_first_not_of('\n'), s.size())); }

void out(std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
}

}  // namespace

int run_chat(int argc, char** argv) {
    model_options mo;
    sampling_options so;
    std::string user_prefix = "\\nUser: ", bot_prefix = "\\nAssistant:", system_text;
    int64_t n_predict = 256;
    bool multiline = false, verbose = false, no_bos = false;

    arg_parser p("chat", "[options]",
                 "Talks with the model, one line of stdin per turn, in a plain-text format:\n"
                 "  <user prefix><your line><bot prefix><reply>\n"
                 "The conversation stays in the cache; each turn runs only its new tokens.\n"
                 "Type /reset to start over, /quit (or end the input) to leave.");
    mo.add_to(p);
    so.add_to(p);
    p.option("-n --n-predict", n_predict, "N", "tokens per reply at most", bounds<int64_t>{1});
    p.option("--user-prefix", user_prefix, "TEXT", "text before each of your lines; \\n is a newline");
    p.option("--bot-prefix", bot_prefix, "TEXT", "text after your line, where the reply starts");
    p.option("--system", system_text, "TEXT", "text that opens the conversation");
    p.flag("--multiline", multiline, "let a reply span lines: it ends at the user prefix instead of a newline");
    p.flag("--no-bos", no_bos, "do not open the conversation with the BOS token");
    p.flag("-v --verbose", verbose,
           "after each turn print its speed and the context used, at the end MoD and expert use (and streaming)");
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;
    sampler smp = so.make(p);
    user_prefix = unescape(user_prefix);
    bot_prefix = unescape(bot_prefix);
    system_text = unescape(system_text);

    const ncas::model m = mo.load();
    const tokenizer& tok = m.tokenizer();
    const std::unique_ptr<any_session> session = mo.make_session(m, mo.params(m));
    any_session& s = *session;
    const bool at_terminal = ::isatty(STDIN_FILENO);

    // A reply stops where the next user turn would begin.
    std::vector<std::string> stops;
    std::string user_stop = user_prefix;
    while (!user_stop.empty() && user_stop.back() == ' ') user_stop.pop_back();
    if (!user_stop.empty()) stops.push_back(user_stop);
    if (!multiline) stops.emplace_back("\n");

    generator g(s, tok);  // knows the tokens in the cache: each turn runs only its new ones
    std::string carry;    // conversation text not in the cache yet
    generate_params gp{.sampling = smp.params(), .max_tokens = n_predict, .stops = stops, .keep_last = true};
    const std::string_view shown_user = without_leading_newlines(user_prefix), shown_bot = without_leading_newlines(bot_prefix);
    if (at_terminal)
        std::fprintf(stderr, "chat with %s: %lld tokens of context. /reset starts over, /quit leaves.\n",
                     m.path().c_str(), (long long)s.n_ctx());

    std::string line;
    while (true) {
        if (at_terminal) out(shown_user);
        if (!std::getline(std::cin, line)) break;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        if (line == "/quit" || line == "/exit") break;
        if (line == "/reset") {
            g.reset();
            carry.clear();
            out("[conversation reset]\n");
            continue;
        }
        if (!line.empty() && line[0] == '/') {
            out("[unknown command " + line + "; /reset starts over, /quit leaves]\n");
            continue;
        }
        if (!at_terminal) out(std::string(shown_user) + line + "\n");

        const bool fresh = s.n_past() == 0;
        const std::string opening = system_text.empty() ? std::string(without_leading_newlines(user_prefix))
                                                        : system_text + user_prefix;
        const std::string turn = (fresh ? opening : carry + user_prefix) + line + bot_prefix;
        const std::vector<int32_t> ids = tok.encode(turn, fresh && !no_bos && tok.bos_id() >= 0);
        if (s.n_past() + int64_t(ids.size()) >= s.n_ctx()) {
            if (fresh)
                out("[this turn is " + std::to_string(ids.size()) + " tokens; the context holds " +
                    std::to_string(s.n_ctx()) + ": write less or use a larger --ctx]\n");
            else
                out("[context full: the conversation uses " + std::to_string(s.n_past()) + " of " +
                    std::to_string(s.n_ctx()) + " tokens and this turn needs " + std::to_string(ids.size()) +
                    " more; /reset starts a new conversation]\n");
            continue;
        }
        carry.clear();
        out(shown_bot);

        std::vector<int32_t> prompt(g.cached().begin(), g.cached().end());
        prompt.insert(prompt.end(), ids.begin(), ids.end());
        const generate_result r = g.generate(std::span<const int32_t>(prompt), gp, [](std::string_view piece) {
            out(piece);
            return true;
        });
        gp.reseed = false;  // one random sequence over the conversation
        out("\n");
        carry = r.tail;  // what a stop cut off inside a token
        const bool context_full = r.finish == finish_reason::context;
        if (context_full)
            out("[context full: all " + std::to_string(s.n_ctx()) +
                " tokens are used; /reset starts a new conversation]\n");
        if (verbose)
            std::fprintf(stderr, "[%zu new tokens at %.1f tok/s, %lld generated at %.1f tok/s; context %lld of %lld]\n",
                         ids.size(), r.usage.prefill_s > 0 ? double(ids.size()) / r.usage.prefill_s : 0.0,
                         (long long)r.usage.completion_tokens,
                         r.usage.decode_s > 0 ? double(r.usage.decoded_tokens) / r.usage.decode_s : 0.0,
                         (long long)s.n_past(), (long long)s.n_ctx());
    }
    if (at_terminal) out("\n");
    if (verbose) {
        print_backend(s);
        print_run_stats(s.stats(), m.config());
        if (const auto es = s.expert_stats()) std::fputs(es->report().c_str(), stderr);
    }
    return 0;
}

}  // namespace ncas::cli
