// `ncas perplexity`: how well the model predicts a text. The tokens are
// evaluated in windows of the context that start every --stride tokens
// (default: context - 1, so consecutive windows share one token); every token
// a window predicts that no earlier window predicted is scored, so each token
// but the first is scored exactly once when stride < context. The backend,
// the speed and (with --expert-budget) what expert streaming did go to stderr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "progress.hpp"

namespace ncas::cli {

namespace {

// -log softmax(logits)[target], in double.
double negative_log_prob(std::span<const float> logits, int32_t target) {
    const double m = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (const float l : logits) sum += std::exp(double(l) - m);
    return m + std::log(sum) - double(logits[size_t(target)]);
}

}  // namespace

int run_perplexity(int argc, char** argv) {
    model_options mo;
    std::vector<std::string> file;
    int64_t stride = 0, limit = 0;
    bool no_bos = false;
    progress_mode progress = progress_mode::automatic;

    arg_parser p("perplexity", "[options] FILE",
                 "Tokenizes FILE and evaluates it in windows of the context (--ctx); prints the\n"
                 "perplexity, bits per token and bits per byte of the tokens it predicts.");
    p.positional("FILE", file, "the text ('-' for stdin)");
    mo.add_to(p);
    p.option("--stride", stride, "N", "start a window every N tokens; 0: context - 1, each token scored once",
             bounds<int64_t>{0});
    p.option("--limit", limit, "N", "score only the first N tokens of the text; 0: all", bounds<int64_t>{0});
    p.flag("--no-bos", no_bos, "do not start the text with the BOS token");
    add_progress_options(p, progress);
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;
    if (file.empty()) throw usage_error("no text FILE given");

    const std::string text = read_text(file[0]);
    const ncas::model m = mo.load();
    const tokenizer& tok = m.tokenizer();
    std::vector<int32_t> ids = tok.encode(text, !no_bos && tok.bos_id() >= 0);
    if (limit > 0 && int64_t(ids.size()) > limit) ids.resize(size_t(limit));
    const int64_t N = int64_t(ids.size());
    if (N < 2) throw error(file[0] + ": the text gives " + std::to_string(N) + " token(s); at least 2 are needed");

    const std::unique_ptr<any_session> session = mo.make_session(m, mo.params(m));
    any_session& s = *session;
    const int64_t ctx = s.n_ctx();
    if (ctx < 2) throw error("a context of " + std::to_string(ctx) + " token cannot predict anything; use --ctx 2 or more");
    if (stride == 0) stride = ctx - 1;
    if (stride > ctx)
        throw usage_error("--stride " + std::to_string(stride) + " exceeds the context of " + std::to_string(ctx));

    double nll = 0;
    int64_t scored = 0, scored_bytes = 0, windows = 0, evaluated = 0;
    const stopwatch t;
    {
        progress_bar bar("perplexity", N - 1, "tokens", progress);
        int64_t next = 1;  // first token not scored yet
        for (int64_t begin = 0;; begin += stride) {
            const int64_t end = std::min(begin + ctx, N);
            s.reset();
            s.evaluate(std::span<const int32_t>(ids).subspan(size_t(begin), size_t(end - begin)),
                       [&](int64_t i, std::span<const float> logits) {
                           const int64_t target = begin + i + 1;
                           if (target < next || target >= end) return;
                           nll += negative_log_prob(logits, ids[size_t(target)]);
                           scored_bytes += int64_t(tok.token_bytes(ids[size_t(target)]).size());
                           bar.update(++scored);
                       });
            evaluated += end - begin;
            ++windows;
            next = end;
            if (end == N) break;
        }
    }
    const double secs = t.seconds();
    const double nats = nll / double(scored), bits = nats / std::log(2.0);
    std::printf("tokens:     %lld scored in %lld window(s) of up to %lld (stride %lld)\n", (long long)scored,
                (long long)windows, (long long)ctx, (long long)stride);
    std::printf("perplexity: %.4f\n", std::exp(nats));
    std::printf("bits/token: %.4f\n", bits);
    std::printf("bits/byte:  %.4f\n", scored_bytes ? nll / std::log(2.0) / double(scored_bytes) : 0.0);
    print_backend(s);
    print_rate("evaluated:", evaluated, secs);
    if (const auto es = s.expert_stats()) std::fputs(es->report().c_str(), stderr);
    return 0;
}

}  // namespace ncas::cli
