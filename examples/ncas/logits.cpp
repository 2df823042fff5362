// `ncas logits`: runs a list of token ids through the model and writes every
// position's logits, T rows of V little-endian float32 values, to a file;
// for comparing the engine with the reference and its batched path with the
// one-token-at-a-time path.
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "progress.hpp"

namespace ncas::cli {

static_assert(std::endian::native == std::endian::little, "logits are written as the host's float32 bytes");

int run_logits(int argc, char** argv) {
    model_options mo;
    std::string ids_text, prompt, out_path;
    bool batched = true, bos = false;
    progress_mode progress = progress_mode::automatic;

    arg_parser p("logits", "[options] --out FILE (--ids IDS | --prompt TEXT)",
                 "Runs token ids through the model from an empty cache and writes the logits of every\n"
                 "position to FILE as raw little-endian float32, T rows of V values (T x V x 4 bytes).");
    mo.add_to(p);
    p.option("-i --ids", ids_text, "IDS", "token ids: \"1,2,3\", \"1 2 3\" or \"[1, 2, 3]\"");
    p.option("-p --prompt", prompt, "TEXT", "tokenize TEXT instead of giving --ids");
    p.flag("--bos", bos, "with --prompt: start with the BOS token");
    p.option("-o --out", out_path, "FILE", "where to write the logits (required)");
    p.flag("--batched", batched, "run the tokens in batches of --batch (default)", true);
    p.flag("--one-by-one", batched, "run the tokens one at a time", false);
    add_progress_options(p, progress);
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;
    if (out_path.empty()) throw usage_error("--out FILE is required");
    if (p.given("--ids") == p.given("--prompt")) throw usage_error("give exactly one of --ids and --prompt");
    std::vector<int32_t> ids = p.given("--ids") ? parse_ids("option --ids", ids_text) : std::vector<int32_t>{};

    const ncas::model m = mo.load();
    if (p.given("--prompt")) ids = m.tokenizer().encode(prompt, bos);
    if (ids.empty()) throw error("the prompt gives no tokens");
    const std::unique_ptr<any_session> session = mo.make_session(m, mo.params(m));
    any_session& s = *session;
    const int64_t T = int64_t(ids.size()), V = s.n_vocab();
    if (T > s.n_ctx())
        throw error(std::to_string(T) + " tokens do not fit in the context of " + std::to_string(s.n_ctx()) +
                    " tokens (the model allows --ctx up to " + std::to_string(m.config().n_ctx) + ")");

    std::FILE* out = std::fopen(out_path.c_str(), "wb");
    if (!out) throw error(out_path + ": cannot open for writing: " + std::strerror(errno));
    bool written = true;
    const stopwatch t;
    {
        progress_bar bar("logits", T, "tokens", progress);
        s.evaluate(
            ids,
            [&](int64_t i, std::span<const float> row) {
                written = written && std::fwrite(row.data(), sizeof(float), row.size(), out) == row.size();
                bar.update(i + 1);
            },
            batched);
    }
    const double secs = t.seconds();
    written = std::fclose(out) == 0 && written;
    if (!written) {
        const std::string why = std::strerror(errno);
        std::remove(out_path.c_str());
        throw error(out_path + ": write failed: " + why);
    }
    std::fprintf(stderr, "wrote %lld x %lld float32 logits (%lld bytes) to %s; %s, %.1f tok/s\n", (long long)T,
                 (long long)V, (long long)(T * V * 4), out_path.c_str(), batched ? "batched" : "one by one",
                 secs > 0 ? double(T) / secs : 0.0);
    return 0;
}

}  // namespace ncas::cli
