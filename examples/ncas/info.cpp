// `ncas info`: what a model file holds (config, tokenizer, tensor types),
// its parameter counts (total and active per token) and the memory it needs
// at several context lengths; or, with --preset, the same for one of the
// paper's presets, beside the paper's claimed parameter count.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"

namespace ncas::cli {

namespace {


constexpr weight_type weight_types[] = {weight_type::f32,  weight_type::f16,  weight_type::q8_0,
                                        weight_type::q6_k, weight_type::q5_1, weight_type::q5_k,
                                        weight_type::q5_0, weight_type::q4_k, weight_type::q4_0};

// 73965686784 -> "73.97 B"
std::string count_text(double n) {
    const char* units[] = {"", " K", " M", " B", " T"};
    int u = 0;
    while (n >= 1000 && u < 4) n /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.2f%s" : "%.0f%s", n, units[u]);
    return buf;
}

std::string group_digits(int64_t n) {
    std::string s = std::to_string(n), out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (i && (s.size() - i) % 3 == 0) out += ',';
        out += s[i];
    }
    return out;
}

const preset_row* preset_matching(const model_dims& m) {
    for (const preset_row& p : presets) {
        const model_dims& d = p.dims;
        if (m.arch == architecture::ncas_diffmoe && m.n_embd == d.n_embd && m.n_layer == d.n_layer &&
            m.n_head == d.n_head && m.head_k == d.head_k && m.n_expert == d.n_expert &&
            m.n_expert_used == d.n_expert_used && m.n_ff == d.n_ff)
            return &p;
    }
    return nullptr;
}

void print_params(const model_dims& m, std::optional<int64_t> in_file, const preset_row* claim) {
    const param_counts c = count_params(m);
    std::printf("\nparameters\n");
    std::printf("  total             %18s  (%s)\n", group_digits(c.total()).c_str(), count_text(double(c.total())).c_str());
    if (in_file && *in_file == c.total()) std::printf("  in the file       %18s  (the same)\n", group_digits(*in_file).c_str());
    if (in_file && *in_file != c.total())
        std::printf("  in the file       %18s  (%+lld: the count above assumes every optional vector, "
                    "λ, sub-norm and expert λ)\n",
                    group_digits(*in_file).c_str(), (long long)(*in_file - c.total()));
    if (claim) {
        const double ratio = double(c.total()) / claim->claimed_params;
        std::printf("  paper's claim     %18s  (%s, preset %.*s: computed is %.2fx the claim%s)\n",
                    group_digits(int64_t(claim->claimed_params)).c_str(), count_text(claim->claimed_params).c_str(),
                    int(claim->name.size()), claim->name.data(), ratio,
                    ratio > 1.1 || ratio < 0.9 ? "; the paper's table does not add up to its claim" : "");
    }
    const int64_t active = active_params(m);
    std::printf("  active per token  %18s  (%s; %lld of %lld experts; MoD-skipped layers touch fewer)\n",
                group_digits(active).c_str(), count_text(double(active)).c_str(), (long long)m.n_expert_used,
                (long long)m.n_expert);
    std::printf("    embedding       %18s\n    attention       %18s\n    experts         %18s\n"
                "    routing         %18s\n    output norm     %18s\n",
                group_digits(c.embedding).c_str(), group_digits(c.attention).c_str(), group_digits(c.experts).c_str(),
                group_digits(c.routing).c_str(), group_digits(c.other).c_str());
}

void print_memory(const model_dims& m, int64_t weights, std::string_view weights_what, int64_t extra_ctx,
                  weight_type kv_type) {
    std::printf("\nweights if stored as");
    for (weight_type t : weight_types) {  // a block type needs rows of whole blocks (K-quants: of 256)
        const int64_t b = traits_of(t).block_values;
        const bool whole_blocks = m.n_embd % b == 0 && m.n_ff % b == 0;
        std::printf("  %s %s", std::string(type_name(t)).c_str(),
                    !whole_blocks ? "n/a" : human_bytes(double(weight_bytes(m, t))).c_str());
    }
    constexpr weight_type kv_types[] = {weight_type::f32, weight_type::f16, weight_type::q8_0, weight_type::q4_0};
    std::printf("\n\nmemory: weights %s (%s) + KV cache (per token, every layer:", human_bytes(double(weights)).c_str(),
                std::string(weights_what).c_str());
    for (weight_type t : kv_types)
        std::printf(" %s %s%s", std::string(type_name(t)).c_str(), human_bytes(double(kv_bytes_per_token(m, t))).c_str(),
                    t == weight_type::q4_0 ? ")\n" : ",");
    const std::string total = "total, KV " + std::string(type_name(kv_type));
    std::printf("  %-14s %12s %12s %12s %12s %18s\n", "context", "KV F32", "KV F16", "KV Q8_0", "KV Q4_0", total.c_str());
    std::vector<int64_t> ctxs;
    for (int64_t n : {int64_t(2048), int64_t(8192), extra_ctx})
        if (n > 0 && n < m.n_ctx) ctxs.push_back(n);
    std::sort(ctxs.begin(), ctxs.end());
    ctxs.erase(std::unique(ctxs.begin(), ctxs.end()), ctxs.end());
    ctxs.push_back(m.n_ctx);
    for (int64_t n : ctxs) {
        const std::string label = std::to_string(n) + (n == m.n_ctx ? " (full)" : "");
        std::printf("  %-14s", label.c_str());
        for (weight_type t : kv_types) std::printf(" %12s", human_bytes(double(kv_bytes(m, n, t))).c_str());
        std::printf(" %18s\n", human_bytes(double(weights + kv_bytes(m, n, kv_type))).c_str());
    }
    if (extra_ctx > 0)
        std::printf("  KV cache, %s, %lld tokens: %s bytes (%.3f GB)\n", std::string(type_name(kv_type)).c_str(),
                    (long long)extra_ctx, group_digits(kv_bytes(m, extra_ctx, kv_type)).c_str(),
                    double(kv_bytes(m, extra_ctx, kv_type)) / 1e9);
}

void print_dims(const model_dims& m) {
    std::printf("  vocabulary V      %lld\n  width D           %lld\n  layers L          %lld\n", (long long)m.n_vocab,
                (long long)m.n_embd, (long long)m.n_layer);
    std::printf("  heads H / Hkv     %lld / %lld (%s)\n", (long long)m.n_head, (long long)m.n_head_kv,
                m.n_maps == 2 ? "differential" : "standard");
    std::printf("  head d / value    %lld / %lld\n  expert FFN F      %lld (%s)\n", (long long)m.head_k,
                (long long)m.head_v, (long long)m.n_ff, m.ffn == ffn_kind::gelu ? "gelu, 2 matrices" : "swiglu, 3 matrices");
    std::printf("  experts E / k     %lld / %lld\n  context           %lld\n", (long long)m.n_expert,
                (long long)m.n_expert_used, (long long)m.n_ctx);
}

int info_preset(std::string name, int64_t vocab, const std::string& weight_type_name, int64_t extra_ctx,
                weight_type kv_type) {
    const preset_row* p = &find_preset(name);
    const weight_type wt = parse_weight_type(weight_type_name);
    model_dims m = p->dims;
    m.n_vocab = vocab;

    std::printf("preset %.*s (the paper's table; docs/spec.md §3)\n", int(p->name.size()), p->name.data());
    print_dims(m);
    std::printf("  not in the paper  vocabulary (here %lld, --vocab), GQA (none), MoD layers (none counted)\n",
                (long long)vocab);
    print_params(m, std::nullopt, p);
    print_memory(m, weight_bytes(m, wt), "as " + std::string(type_name(wt)), extra_ctx, kv_type);
    return 0;
}

int info_file(const std::string& path, int64_t extra_ctx, weight_type kv_type) {
    const ncas::model model = load_model(path);
    const gguf_file& f = model.file();
    const model_config& c = model.config();

    std::map<std::string_view, std::pair<int64_t, int64_t>> by_type;  // type -> tensors, bytes
    int64_t bytes = 0, elements = 0;
    for (const tensor_info& t : f.tensors()) {
        auto& [n, b] = by_type[type_name(t.type)];
        ++n, b += int64_t(t.bytes), bytes += int64_t(t.bytes), elements += t.elements();
    }
    std::printf("file              %s (%s, GGUF v%u)\n", model.path().c_str(), human_bytes(double(f.file_size())).c_str(),
                f.version());
    std::printf("name              %s\narchitecture      %.*s\n", f.get_string("general.name", "(none)").c_str(),
                int(arch_name(c.arch).size()), arch_name(c.arch).data());
    std::printf("tensors           %zu:", f.tensors().size());
    for (const auto& [type, nb] : by_type)
        std::printf(" %.*s %lld (%s)", int(type.size()), type.data(), (long long)nb.first, human_bytes(double(nb.second)).c_str());
    if (model.has_tokenizer())
        std::printf("\ntokenizer         %s, %d tokens, bos %d, eos %d\n",
                    model.tokenizer().kind() == tokenizer_kind::spm ? "SentencePiece BPE" : "byte-level BPE",
                    model.tokenizer().size(),
                    model.tokenizer().bos_id(), model.tokenizer().eos_id());
    else
        std::printf("\ntokenizer         none\n");
    std::printf("\nconfig\n");
    print_dims(c);
    std::printf("  rope theta        %g\n  norm eps          %g\n", c.rope_theta, double(c.norm_eps));
    std::printf("  expert weights    %s\n", c.expert_weights_norm ? "renormalised over the top k" : "raw softmax");
    std::printf("  MoD               %lld of %lld layers routed (threshold %g, scale %s)\n", (long long)c.n_mod_layers,
                (long long)c.n_layer, double(c.mod_threshold),
                c.scale == mod_scale::sigmoid ? "sigmoid" : c.scale == mod_scale::raw ? "raw" : "none");
    std::printf("  output            %s\n", c.tied_output ? "tied to token_embd" : "own matrix");
    const preset_row* p = preset_matching(c);
    if (p) std::printf("  preset            matches %.*s\n", int(p->name.size()), p->name.data());
    print_params(c, elements, p);
    print_memory(c, bytes, "as stored in the file", extra_ctx, kv_type);
    return 0;
}

}  // namespace

int run_info(int argc, char** argv) {
    std::string model_path, preset_name, weight_type_name = "q4_0", kv_type_name = "f16";
    int64_t vocab = 0, ctx = 0;
    arg_parser p("info", "[--model FILE | --preset PI|PI-S|PI-P] [options]",
                 "Prints a model's config, its parameter counts (total, active per token) and the memory it\n"
                 "needs (weights + KV cache at 2k, 8k, --ctx and the full context, for each cache type). --preset\n"
                 "prints the same for one of the paper's presets, beside the paper's claim, without a file.\n"
                 "Last, the CPU kernels chosen here and why (the best compiled in that the CPU runs, or NCAS_ISA).");
    add_model_option(p, model_path);
    p.option("--preset", preset_name, "NAME", "a preset of the paper instead of a file: PI, PI-S or PI-P");
    p.option("--vocab", vocab, "N", "with --preset: vocabulary size to count (the paper gives none)",
             bounds<int64_t>{0, int64_t(1) << 31});
    p.choice("--weight-type", weight_type_name, {"f32", "f16", "bf16", "q8_0", "q4_0"},
             "with --preset: weight type for the memory table");
    p.option("-c --ctx", ctx, "N", "also show the memory at this context length; 0: none", bounds<int64_t>{0});
    p.choice("--kv-type", kv_type_name, {"f32", "f16", "q8_0", "q4_0"},
             "KV cache type of the table's total column (and, with --ctx, of the cache's exact size)");
    if (!p.parse(argc, argv)) return 0;
    const weight_type kv_type = parse_weight_type(kv_type_name);
    if (p.given("--preset") && p.given("--model")) throw usage_error("give --model or --preset, not both");
    if (!p.given("--preset") && (p.given("--vocab") || p.given("--weight-type")))
        throw usage_error("--vocab and --weight-type go with --preset");
    const int rc = p.given("--preset") ? info_preset(preset_name, vocab, weight_type_name, ctx, kv_type)
                                    : info_file(model_path, ctx, kv_type);
    // The CPU kernels this program runs here, and why (NCAS_ISA forces a level).
    std::printf("\nkernels           %s\n", cpu::kernels_chosen_text().c_str());
    return rc;
}

}  // namespace ncas::cli
