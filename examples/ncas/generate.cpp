// `ncas generate`: continues a prompt, printing each token's text as it
// comes; then the backend, the prefill and decode speed, the MoD skip rate and
// the expert use on stderr (stdout holds only the text); with --stats and
// --expert-budget also what expert streaming did.
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"

namespace ncas::cli {

int run_generate(int argc, char** argv) {
    model_options mo;
    sampling_options so;
    std::string prompt;
    int64_t n_predict = 128;
    bool ignore_eos = false, no_bos = false, no_echo = false, stats = false;

    arg_parser p("generate", "[options]",
                 "Continues a prompt (--prompt, or stdin when not given) and streams the text to stdout;\n"
                 "stops at the end-of-text token, after -n tokens, or when the context is full.\n"
                 "Speed, MoD skip rate and expert use go to stderr.");
    mo.add_to(p);
    p.option("-p --prompt", prompt, "TEXT", "the prompt (default: read from stdin)");
    p.option("-n --n-predict", n_predict, "N", "tokens to generate at most; -1: until the context is full",
             bounds<int64_t>{-1});
    so.add_to(p);
    p.flag("--ignore-eos", ignore_eos, "keep going after the end-of-text token");
    p.flag("--no-bos", no_bos, "do not start with the BOS token");
    p.flag("--no-echo", no_echo, "print only the generated text, not the prompt");
    p.flag("--stats", stats, "with --expert-budget: print what expert streaming did (hit rate, reads, prefetch, stalls)");
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;
    sampler smp = so.make(p);
    if (!p.given("--prompt")) prompt = read_stdin("the prompt");

    const ncas::model m = mo.load();
    const tokenizer& tok = m.tokenizer();
    std::vector<int32_t> tokens = tok.encode(prompt, !no_bos && tok.bos_id() >= 0);
    if (tokens.empty()) throw error("the prompt is empty and the model has no BOS token to start from");
    const std::unique_ptr<any_session> session = mo.make_session(m, mo.params(m));
    any_session& s = *session;
    const int64_t n_prompt = int64_t(tokens.size());
    if (n_prompt >= s.n_ctx())
        throw error("the prompt is " + std::to_string(n_prompt) + " tokens; it must be shorter than the context of " +
                    std::to_string(s.n_ctx()) + " tokens (the model allows --ctx up to " +
                    std::to_string(m.config().n_ctx) + ")");

    if (!no_echo) {
        std::fwrite(prompt.data(), 1, prompt.size(), stdout);
        std::fflush(stdout);
    }
    generator g(s, tok);
    const generate_result r =
        g.generate(std::span<const int32_t>(tokens), {.sampling = smp.params(), .max_tokens = n_predict, .stops = {}, .ignore_eos = ignore_eos},
                   [](std::string_view piece) {
                       std::fwrite(piece.data(), 1, piece.size(), stdout);
                       std::fflush(stdout);
                       return true;
                   });
    std::fputc('\n', stdout);
    std::fflush(stdout);

    const std::string stop = r.finish == finish_reason::eos       ? std::string("end of text")
                             : r.finish == finish_reason::context ? "context full (" + std::to_string(s.n_ctx()) + " tokens)"
                                                                  : "token limit (" + std::to_string(n_predict) + ")";
    std::fprintf(stderr, "\nstopped: %s after %lld generated tokens; seed %llu\n", stop.c_str(),
                 (long long)r.usage.completion_tokens, (unsigned long long)smp.params().seed);
    print_backend(s);
    print_rate("prefill:", n_prompt, r.usage.prefill_s);
    print_rate("decode:", r.usage.decoded_tokens, r.usage.decode_s);
    print_run_stats(s.stats(), m.config());
    if (stats) {
        if (const auto es = s.expert_stats()) std::fputs(es->report().c_str(), stderr);
        else std::fputs("experts: resident (no --expert-budget), nothing streamed\n", stderr);
    }
    return 0;
}

}  // namespace ncas::cli
