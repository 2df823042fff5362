// `ncas`: the command line of the engine. Dispatches to one subcommand and
// turns its errors into one line on stderr and an exit code:
//   0 success, 1 failure at run time (files, model, context), 2 bad command line.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string_view>

#include <ncas/error.hpp>

#include "args.hpp"
#include "bench.hpp"
#include "commands.hpp"

#ifndef NCAS_VERSION
#define NCAS_VERSION "unknown"
#endif

namespace {

struct command {
    const char* name;
    int (*run)(int, char**);
    const char* summary;
};

constexpr command commands[] = {
    {"generate", ncas::cli::run_generate, "continue a prompt, streaming tokens; prints speed, MoD and expert use"},
    {"chat", ncas::cli::run_chat, "talk with the model; the conversation stays in the cache"},
    {"info", ncas::cli::run_info, "config, parameter counts and memory of a model file or a paper preset"},
    {"perplexity", ncas::cli::run_perplexity, "perplexity and bits per token of a text file"},
    {"tokenize", ncas::cli::run_tokenize, "text to token ids (JSON), or --decode ids to text"},
    {"logits", ncas::cli::run_logits, "every position's logits for a list of token ids, as raw float32"},
    {"quantize", ncas::cli::run_quantize, "a copy of a model file with its weight matrices in Q8_0, Q4_0, F16, ..."},
    {"bench", run_bench, "measure prefill and decode speed"},
#ifdef NCAS_WITH_SERVER
    {"serve", ncas::cli::run_serve, "an OpenAI-compatible HTTP server (completions, chat, streaming)"},
#endif
};

void usage() {
    std::fputs("usage: ncas COMMAND [options]      (ncas COMMAND --help for its options)\n\ncommands:\n", stdout);
    for (const command& c : commands) std::fprintf(stdout, "  %-12s %s\n", c.name, c.summary);
    std::fputs("\n  --version    print the version\n  --help       show this help\n\n"
               "Exit codes: 0 success, 1 failure while running, 2 bad command line.\n", stdout);
}

int dispatch(const command& c, int argc, char** argv) {
    try {
        return c.run(argc, argv);
    } catch (const ncas::cli::usage_error& e) {
        std::fprintf(stderr, "ncas %s: %s (see ncas %s --help)\n", c.name, e.what(), c.name);
        return 2;
    } catch (const ncas::error& e) {
        std::fprintf(stderr, "ncas %s: error: %s\n", c.name, e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "ncas %s: error: out of memory\n", c.name);
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ncas %s: error: %s\n", c.name, e.what());
        return 1;
    }
}

const command* find_command(std::string_view name) {
    for (const command& c : commands)
        if (name == c.name) return &c;
    std::fprintf(stderr, "ncas: unknown command '%.*s' (ncas --help lists them)\n", int(name.size()), name.data());
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs("ncas: no command given (ncas --help lists them)\n", stderr);
        return 2;
    }
    const std::string_view first = argv[1];
    if (first == "help" && argc > 2) {  // ncas help COMMAND
        const command* c = find_command(argv[2]);
        char help_flag[] = "--help";
        char* sub[] = {argv[2], help_flag, nullptr};
        return c ? dispatch(*c, 2, sub) : 2;
    }
    if (first == "--help" || first == "-h" || first == "help") {
        usage();
        return 0;
    }
    if (first == "--version" || first == "-V") {
        std::printf("ncas %s (built with %s, C++%ld)\n", NCAS_VERSION, __VERSION__, __cplusplus / 100 % 100);
        return 0;
    }
    const command* c = find_command(first);
    return c ? dispatch(*c, argc - 1, argv + 1) : 2;
}
