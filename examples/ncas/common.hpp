#pragma once
// What the subcommands share: the model options (file, session, backend,
// expert streaming), finding the default model, reading text and id lists,
// and printing a run's statistics.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ncas/ncas.hpp>
#ifdef NCAS_WITH_VULKAN  // defined by the build when Vulkan is found
#include <ncas/vk/backend.hpp>
#include <ncas/vk/bandwidth.hpp>
#else
#include <ncas/backend.hpp>
#endif
#include <ncas/generate.hpp>

#include "args.hpp"

#ifndef NCAS_SOURCE_DIR
#define NCAS_SOURCE_DIR ""
#endif

namespace ncas::cli {

inline constexpr const char* default_model_name = "demo-q8_0.gguf";

// The paper's presets by name, for info and bench.
struct preset_row {
    std::string_view name;
    model_dims dims;
    double claimed_params;
};
template <preset P>
constexpr preset_row row_of() {
    return {P::name, P::dims, P::claimed_params};
}
inline constexpr preset_row presets[] = {row_of<preset_pi>(), row_of<preset_pi_s>(), row_of<preset_pi_p>()};

// "PI-P", "pi_p", ... (any case, '_' for '-'); a usage error names the choices.
inline const preset_row& find_preset(std::string name) {
    for (char& ch : name) ch = ch == '_' ? '-' : char(std::toupper(static_cast<unsigned char>(ch)));
    for (const preset_row& r : presets)
        if (r.name == name) return r;
    throw usage_error("unknown preset " + in_quotes(name) + " (PI, PI-S or PI-P)");
}

// Where a model is looked for when --model is not given, in order: $NCAS_MODEL,
// <prefix>/share/ncas/models next to an installed binary, the source tree's models/.
inline std::string find_default_model() {
    if (const char* env = std::getenv("NCAS_MODEL"); env && *env) return env;
    namespace fs = std::filesystem;
    std::vector<fs::path> tried;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) tried.push_back(exe.parent_path().parent_path() / "share" / "ncas" / "models" / default_model_name);
    if (*NCAS_SOURCE_DIR) tried.push_back(fs::path(NCAS_SOURCE_DIR) / "models" / default_model_name);
    std::string list;
    for (const auto& p : tried) {
        if (fs::is_regular_file(p, ec)) return p.string();
        list += (list.empty() ? "" : ", ") + p.string();
    }
    throw error("no model given and no default model found (looked for " + list +
                "); pass --model FILE or set NCAS_MODEL");
}

inline void add_model_option(arg_parser& p, std::string& path) {
    p.option("-m --model", path, "FILE",
             std::string("GGUF model (default: $NCAS_MODEL, else models/") + default_model_name + ")");
}

inline ncas::model load_model(const std::string& path) {
    return ncas::model::load(path.empty() ? find_default_model() : path);
}

// The model options every model-running subcommand shares: the file and the
// session (--model --threads --ctx --batch --kv-type), the backend (--backend
// --device --list-devices) and expert streaming (--expert-budget
// --expert-policy --direct-io --no-prefetch).
//
//   mo.add_to(p);
//   if (!p.parse(argc, argv) || mo.handled(p)) return 0;
//   const ncas::model m = mo.load();
//   auto s = mo.make_session(m, mo.params(m));
struct model_options {
    std::string path;
    int threads = 0;
    int64_t ctx = 0;
    int64_t batch = 64;
    std::string kv_type = "f32";
    bool kv_type_list = false;  // --kv-type takes a comma-separated list (bench); params() uses the first
    std::string backend = "cpu";
    int device = 0;
    bool list_devices = false;
    std::string expert_budget;  // empty: experts resident (mapped)
    std::string expert_policy = "lfu_distance";
    bool direct_io = false;
    std::string prefetch = "auto";
    bool no_prefetch_flag = false;

    void add_to(arg_parser& p) {
        add_model_option(p, path);
        p.option("-t --threads", threads, "N", "worker threads; 0: all cores", bounds<int>{0, 4096});
        p.option("-c --ctx", ctx, "N", "context length in tokens; 0: the model's", bounds<int64_t>{0});
        p.option("-b --batch", batch, "N", "tokens per forward pass in prefill", bounds<int64_t>{1});
        if (kv_type_list)
            p.option("--kv-type", kv_type, "LIST",
                     "KV cache types, comma-separated: f32, f16, q8_0, q4_0 (q8_0, q4_0: ggml blocks of 32 along each cache row)");
        else
            p.choice("--kv-type", kv_type, {"f32", "f16", "q8_0", "q4_0"},
                     "KV cache type (q8_0, q4_0: ggml blocks of 32 along each cache row)");
        p.choice("--backend", backend, backend_names(),
                 std::string("where the model runs") + (vulkan_available() ? "" : " (this ncas was built without Vulkan)"));
        p.option("--device", device, "N", "Vulkan device index (see --list-devices)", bounds<int>{0, 1 << 16});
        p.flag("--list-devices", list_devices, "print the Vulkan devices and exit");
        p.option("--expert-budget", expert_budget, "SIZE",
                 "stream experts from the file within SIZE bytes of memory (e.g. 512M, 1G, 25%, min, full)");
        p.choice("--expert-policy", expert_policy, {"lru", "lfu_aged", "lfu_distance"}, "eviction policy when streaming");
        p.flag("--direct-io", direct_io,
               "read expert slabs with O_DIRECT (cold reads, no page cache; CPU backend); a routed layer's later"
               " missing experts are then read ahead on an I/O thread");
        p.choice("--prefetch", prefetch, {"auto", "on", "off"},
                 "prefetch the next layer's experts (and read a routed layer's later ones ahead) on an I/O thread; "
                 "auto: when the compute threads leave a core for it (the Vulkan backend never prefetches)");
        p.flag("--no-prefetch", no_prefetch_flag, "the same as --prefetch off");
    }

    // The --kv-type types (one, or with kv_type_list a comma-separated list).
    std::vector<weight_type> kv_types() const {
        std::vector<weight_type> out;
        size_t at = 0;
        while (at <= kv_type.size()) {
            const size_t end = std::min(kv_type.find(',', at), kv_type.size());
            const std::string name = kv_type.substr(at, end - at);
            weight_type t;
            try {
                t = parse_weight_type(name);
            } catch (const error&) {
                throw usage_error("option --kv-type: '" + name + "' is not one of f32, f16, q8_0, q4_0");
            }
            if (t == weight_type::bf16) throw usage_error("option --kv-type: '" + name + "' is not one of f32, f16, q8_0, q4_0");
            out.push_back(t);
            at = end + 1;
        }
        return out;
    }

    bool streams() const { return !expert_budget.empty(); }
    bool on_vulkan() const { return backend == "vulkan"; }

    // After parsing: rejects options that do not go together and prints the
    // devices for --list-devices. True when the command has nothing left to do.
    bool handled(const arg_parser& p) const {
        if (list_devices) {
            print_devices();
            return true;
        }
        if (on_vulkan() && !vulkan_available()) throw error(without_vulkan);
        if (p.given("--device") && !on_vulkan()) throw usage_error("--device picks a Vulkan device; add --backend vulkan");
        if (!streams())
            for (const char* o : {"--expert-policy", "--direct-io", "--prefetch", "--no-prefetch"})
                if (p.given(o)) throw usage_error(std::string(o) + " applies to expert streaming: add --expert-budget SIZE");
        return false;
    }

    // The model file (--model, else the default), with its experts left in the file when streaming.
    ncas::model load() const { return load_file(path.empty() ? find_default_model() : path); }
    ncas::model load_file(const std::string& file) const {
        return ncas::model::load(file, {.stream_experts = streams()});
    }

    // Session parameters; the expert budget is resolved against the model (min, full, 25%).
    session_params params(const model_core& m) const {
        session_params sp{.n_ctx = ctx, .n_threads = threads, .n_batch = batch, .kv_type = kv_types().front()};
        if (streams()) {
            try {
                sp.expert_budget = expert_arena::parse_budget(expert_budget, m, direct_io);
            } catch (const error& e) {
                throw usage_error(std::string("option --expert-budget: ") + e.what());
            }
            std::string policy = expert_policy;  // the library writes lfu-aged, lfu-distance
            std::replace(policy.begin(), policy.end(), '_', '-');
            sp.expert_policy = parse_eviction_policy(policy);
            // The I/O thread's copies from the page cache are CPU work: with every core
            // computing, it slows the compute threads more than its guesses save (PI-P at
            // 25% on 2 cores: 8.5 tok/s with prefetch, 13.2 without; docs/benchmarks.md).
            const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
            sp.expert_prefetch = no_prefetch_flag || prefetch == "off" ? false
                                 : prefetch == "on"                    ? true
                                                                       : (threads > 0 ? threads : cores) < cores;
            sp.expert_direct_io = direct_io;
        }
        return sp;
    }

    std::unique_ptr<any_session> make_session(const model_core& m, const session_params& sp) const {
        backend_options b{.name = backend};
        b.vk.device = device;
        return ncas::make_session(m, sp, b);
    }

    static constexpr const char* without_vulkan =
        "this ncas was built without Vulkan (rebuild it with the Vulkan headers and loader installed; "
        "--backend cpu works)";

    // One line per Vulkan device, as --device numbers them.
    static void print_devices() {
#ifdef NCAS_WITH_VULKAN
        const std::vector<vk::device_info> devices = vk::list_devices();
        if (devices.empty()) throw error("the Vulkan driver reports no devices");
        for (const auto& d : devices) std::printf("%s\n", vk::summary(d).c_str());
#else
        throw error(without_vulkan);
#endif
    }
};

// The read bandwidth of the Vulkan device a session runs on, in GB/s, over a
// buffer of `bytes` (vk/bandwidth.hpp); 0 for a CPU session.
inline double device_read_gbs(const any_session& s, int64_t bytes) {
#ifdef NCAS_WITH_VULKAN
    if (const auto* v = dynamic_cast<const session_adapter<vk::session>*>(&s))
        return vk::measure_read_bandwidth(v->get().context(), uint64_t(bytes)).gbs;
#endif
    (void)s, (void)bytes;
    return 0;
}

// "backend: vulkan on <device>" or "backend: cpu, N CPU threads", on stderr.
inline void print_backend(const any_session& s) {
    std::fprintf(stderr, "backend: %s%s%s\n", s.backend().c_str(), s.backend() == "cpu" ? ", " : " on ",
                 s.device().c_str());
}

// Sampling options of generate and chat; the seed is random unless given.
struct sampling_options {
    sampler_params p{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repetition_penalty = 1.1f};

    void add_to(arg_parser& a) {
        a.option("--temp", p.temperature, "T", "temperature; 0: greedy", bounds<float>{0.0f});
        a.option("--top-k", p.top_k, "K", "keep the K most likely tokens; 0: off", bounds<int32_t>{0});
        a.option("--top-p", p.top_p, "P", "keep the most likely tokens up to probability P; 1: off",
                 bounds<float>{0.0f, 1.0f});
        a.option("--min-p", p.min_p, "P", "drop tokens below P times the top probability; 0: off",
                 bounds<float>{0.0f, 1.0f});
        a.option("--repeat-penalty", p.repetition_penalty, "X", "penalty for recent tokens; 1: off",
                 bounds<float>{1e-3f, 1e3f});
        a.option("--repeat-last-n", p.repetition_last_n, "N", "recent tokens the penalty looks at; -1: all",
                 bounds<int32_t>{-1});
        a.option("-s --seed", p.seed, "N", "random seed (default: a fresh random one, printed at the end)");
    }

    // A sampler with these parameters and a random seed unless --seed was given.
    sampler make(const arg_parser& a) {
        if (!a.given("--seed")) p.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
        try {
            return sampler(p);
        } catch (const error& e) {  // a value the bounds above let through, e.g. --top-p 0
            throw usage_error(e.what());
        }
    }
};

// The whole of a file ("-" for stdin).
inline std::string read_text(const std::string& path) {
    if (path == "-") return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(path + ": cannot open for reading");
    std::string s{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) throw error(path + ": read failed");
    return s;
}

// Reads stdin, telling a person at a terminal how to end the input.
inline std::string read_stdin(const char* what) {
    if (::isatty(STDIN_FILENO)) std::fprintf(stderr, "reading %s from stdin (end with Ctrl-D)\n", what);
    return read_text("-");
}

// "1,2,3", "1 2 3" or "[1, 2, 3]" (tokenize's output) -> ids.
inline std::vector<int32_t> parse_ids(std::string_view what, std::string_view text) {
    std::vector<int32_t> ids;
    size_t i = 0;
    auto sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '[' || c == ']'; };
    while (i < text.size()) {
        while (i < text.size() && sep(text[i])) ++i;
        size_t j = i;
        while (j < text.size() && !sep(text[j])) ++j;
        if (j > i) ids.push_back(parse_number<int32_t>(what, text.substr(i, j - i)));
        i = j;
    }
    if (ids.empty()) throw usage_error(std::string(what) + ": no token ids given");
    return ids;
}

class stopwatch {
public:
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

private:
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

inline void print_rate(const char* what, int64_t tokens, double seconds) {
    std::fprintf(stderr, "%-8s %6lld tokens in %9.3f ms  (%.1f tok/s)\n", what, (long long)tokens, seconds * 1e3,
                 seconds > 0 ? double(tokens) / seconds : 0.0);
}

// MoD skip rate per layer and each expert's share of the routed tokens.
inline void print_run_stats(const run_stats& st, const model_config& c) {
    int64_t in = 0, kept = 0;
    for (size_t l = 0; l < st.tokens_in.size(); ++l) in += st.tokens_in[l], kept += st.tokens_kept[l];
    if (in == 0) return;
    std::fprintf(stderr, "MoD: %.1f%% of %lld token-layer passes skipped", 100.0 * double(in - kept) / double(in),
                 (long long)in);
    std::string per_layer;
    for (size_t l = 0; l < st.tokens_in.size(); ++l) {
        if (st.tokens_in[l] == st.tokens_kept[l]) continue;
        char buf[48];
        std::snprintf(buf, sizeof buf, "%s%zu: %.1f%%", per_layer.empty() ? "" : ", ", l,
                      100.0 * double(st.tokens_in[l] - st.tokens_kept[l]) / double(st.tokens_in[l]));
        per_layer += buf;
    }
    std::fprintf(stderr, "%s%s%s\n", per_layer.empty() ? "" : " (layer ", per_layer.c_str(), per_layer.empty() ? "" : ")");
    if (c.n_expert < 2) return;
    std::fprintf(stderr, "expert use (%% of each layer's expert slots; %lld of %lld per token, balanced %.1f%%):\n",
                 (long long)c.n_expert_used, (long long)c.n_expert, 100.0 / double(c.n_expert));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const int64_t routed = st.tokens_kept[size_t(l)] * c.n_expert_used;
        std::fprintf(stderr, "  layer %2lld:", (long long)l);
        for (int64_t e = 0; e < c.n_expert; ++e)
            std::fprintf(stderr, " %5.1f", routed ? 100.0 * double(st.expert_use[size_t(l * c.n_expert + e)]) / double(routed) : 0.0);
        std::fputc('\n', stderr);
    }
}

inline std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
    return buf;
}

}  // namespace ncas::cli
