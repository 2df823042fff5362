// `ncas quantize IN.gguf OUT.gguf TYPE`: a copy of a model file with its weight
// matrices in another type, as llama.cpp's quantiser (llama-quant.cpp) makes it.
//
//  * Which tensors: every tensor whose name ends in ".weight" with two or more
//    dimensions, except the expert router (ffn_gate_inp), is quantised; norms,
//    λ tensors, mod_router and every other 1-D tensor are copied as they are
//    (docs/spec.md §2: norms, λ, routers and gates are F32; llama.cpp keeps 1-D
//    tensors and ffn_gate_inp in F32 as well).
//  * Which type each takes: TYPE names a llama.cpp file type (LLAMA_FTYPE, written
//    to general.file_type), and its recipe (llama_tensor_get_type) picks a type
//    per tensor; see mix_type below. q4_k and q5_k are llama.cpp's Q4_K_S and
//    Q5_K_S (llama-quantize's own "Q4_K"/"Q5_K" are aliases of the _M mixes).
//  * Rows that are not a whole number of 256-value super-blocks fall back as in
//    llama.cpp (tensor_type_fallback): Q4_K to Q5_0, Q5_K to Q5_1 and Q6_K to
//    Q8_0, then to F16 when a row is not a whole number of 32-value blocks either.
//  * Quantisation is ggml's reference code (quantize_row_q8_0_ref, _q4_0_ref,
//    _q5_0_ref, _q5_1_ref, _q4_K_ref, _q5_K_ref, _q6_K_ref): ncas::quantize_row. tools/quantize.py,
//    written from the same published algorithms and recipe in numpy, gives the
//    same file byte for byte.
//  * Inputs in F32, F16 and BF16 are converted; a tensor already in its target
//    type is copied as it is; a tensor in another quantised type is refused
//    (quantising twice compounds the rounding: start from the F32/F16/BF16 file).
//  * Metadata is copied in order; general.file_type gets llama.cpp's
//    LLAMA_FTYPE number and general.quantization_version 2 (ggml's).
//  * The input is mapped and each tensor is converted straight into the output
//    buffer of that one tensor, rows split across threads (-t); the result is
//    the same for every thread count. OUT is written to OUT.part and renamed
//    once complete, then loaded again as a check.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "ncas/format/gguf_writer.hpp"
#include "progress.hpp"

namespace ncas::cli {

namespace {

// llama.cpp's LLAMA_FTYPE numbers (llama.h) of the file types ncas writes.
enum class qftype : uint32_t {
    all_f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 7, q4_k_s = 14, q4_k_m = 15, q5_k_s = 16, q5_k_m = 17, q6_k = 18, bf16 = 32,
};

struct target_type {
    const char* name;
    weight_type type;  // the default type of the file type (llama_ftype_get_default_type)
    qftype ftype;
};

constexpr target_type targets[] = {
    {"q8_0", weight_type::q8_0, qftype::q8_0},     {"q4_0", weight_type::q4_0, qftype::q4_0},
    {"q4_k", weight_type::q4_k, qftype::q4_k_s},   {"q4_k_s", weight_type::q4_k, qftype::q4_k_s},
    {"q4_k_m", weight_type::q4_k, qftype::q4_k_m}, {"q5_k", weight_type::q5_k, qftype::q5_k_s},
    {"q5_k_s", weight_type::q5_k, qftype::q5_k_s}, {"q5_k_m", weight_type::q5_k, qftype::q5_k_m},
    {"q6_k", weight_type::q6_k, qftype::q6_k},     {"f16", weight_type::f16, qftype::f16},
    {"bf16", weight_type::bf16, qftype::bf16},     {"f32", weight_type::f32, qftype::all_f32},
};

bool is_quantised(weight_type t) {
    return t == weight_type::q8_0 || t == weight_type::q4_0 || t == weight_type::q5_0 || t == weight_type::q5_1 ||
           is_k_quant(t);
}

// Whether the tensor is quantised at all (see the top of this file).
bool takes_type(const tensor_info& t) {
    const std::string_view n = t.name;
    if (!n.ends_with(".weight") || t.n_dims < 2) return false;
    if (n.ends_with("ffn_gate_inp.weight")) return false;  // the expert router stays F32
    if (n.find("_norm.") != std::string_view::npos || n.find("lambda") != std::string_view::npos ||
        n.find("mod_router") != std::string_view::npos)
        return false;
    return true;
}

// "blk.N." -> N, or -1.
int layer_of(std::string_view name) {
    if (!name.starts_with("blk.")) return -1;
    int n = 0;
    size_t i = 4;
    if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
    return i < name.size() && name[i] == '.' ? n : -1;
}

// llama.cpp's tensor categories (tensor_get_category), by name.
enum class qcat { token_embd, attn_q, attn_k, attn_v, attn_output, ffn_up, ffn_gate, ffn_down, output, other };

qcat category_of(std::string_view n) {
    auto has = [&](std::string_view s) { return n.find(s) != std::string_view::npos; };
    if (n == "output.weight") return qcat::output;
    if (n == "token_embd.weight") return qcat::token_embd;
    if (has("attn_qkv.weight") || has("attn_kv_b.weight") || has("attn_v.weight")) return qcat::attn_v;
    if (has("attn_k.weight")) return qcat::attn_k;
    if (has("attn_q.weight")) return qcat::attn_q;
    if (has("attn_output.weight")) return qcat::attn_output;
    if (has("ffn_up")) return qcat::ffn_up;
    if (has("ffn_gate")) return qcat::ffn_gate;
    if (has("ffn_down")) return qcat::ffn_down;
    return qcat::other;
}

// llama.cpp's recipe (llama_tensor_get_type_impl, then tensor_type_fallback) for the
// file types above, as a table of tensor name -> type. The rules that apply to them:
//  * output.weight, or token_embd.weight when there is no output.weight (tied): Q8_0
//    when its rows are not a whole number of the file type's blocks, else Q6_K
//    (Q8_0 files keep Q8_0). Q4_0 files too.
//  * attn_v (the i-th of n attn_v tensors, in llama.cpp's order: by layer, then
//    name): Q6_K in Q4_K_M and Q5_K_M when use_more_bits(i, n); Q5_K in Q4_K_S for
//    the first 4; Q4_K -> Q5_K in a llama 70B (llama arch, 80 layers, GQA); Q8_0
//    whenever the model has exactly 8 experts. attn_k: Q8_0 with 8 experts.
//  * ffn_down of layer i of n (the layer from "blk.N." when the model has experts,
//    else the count of ffn_down tensors before it): Q6_K in Q4_K_M and Q5_K_M when
//    use_more_bits(i, n); Q5_K in Q4_K_S when i < n/8.
//  * attn_output: Q5_K in Q4_K_S and Q4_K_M when the model has exactly 8 experts.
//  * every other tensor: the file type's default type.
//  use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
// Then the fallback for rows that are not whole blocks (top of this file).
struct mix_info {
    int n_layer = 0, n_expert = 0;
    bool tied = true, llama_70b = false;
    std::map<std::string, int> attn_v_index, ffn_down_index;  // counters, in llama.cpp's order
    int n_attn_v = 0;
};

mix_info mix_of(const gguf_file& f) {
    mix_info m;
    const std::string arch = f.get_string("general.architecture", "");
    const std::string p = arch + ".";
    m.n_layer = int(f.get_uint(p + "block_count", 0));
    m.n_expert = int(f.get_uint(p + "expert_count", 0));
    // llama.cpp's LLM_TYPE_70B: a llama with 80 layers and fewer KV heads than heads.
    if (arch == "llama" && m.n_expert != 8 && m.n_layer == 80 && f.has(p + "attention.head_count") &&
        f.get_uint(p + "attention.head_count") != f.get_uint(p + "attention.head_count_kv", 0))
        m.llama_70b = true;
    // llama.cpp walks the tensors by layer, then name (weight_name_comparer).
    std::vector<std::pair<int, std::string>> order;
    for (const tensor_info& t : f.tensors()) {
        if (t.name == "output.weight") m.tied = false;
        if (takes_type(t)) order.emplace_back(layer_of(t.name), t.name);
    }
    std::sort(order.begin(), order.end());
    int n_down = 0;
    for (const auto& [layer, name] : order) {
        const qcat c = category_of(name);
        if (c == qcat::attn_v) m.attn_v_index[name] = m.n_attn_v++;
        if (c == qcat::ffn_down) m.ffn_down_index[name] = n_down++;
    }
    return m;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

weight_type mix_type(const tensor_info& t, const target_type& tt, const mix_info& m) {
    const weight_type dflt = tt.type;
    if (!is_quantised(dflt)) return dflt;  // F32, F16, BF16 files: every matrix in TYPE
    const qftype ft = tt.ftype;
    const qcat c = category_of(t.name);
    const int64_t cols = t.ne[0];
    weight_type ty = dflt;
    if (c == qcat::output || (m.tied && c == qcat::token_embd)) {
        if (cols % traits_of(dflt).block_values) ty = weight_type::q8_0;
        else if (dflt != weight_type::q8_0) ty = weight_type::q6_k;
    } else if (c == qcat::attn_v) {
        const int i = m.attn_v_index.at(t.name);
        if ((ft == qftype::q4_k_m || ft == qftype::q5_k_m) && use_more_bits(i, m.n_attn_v)) ty = weight_type::q6_k;
        else if (ft == qftype::q4_k_s && i < 4) ty = weight_type::q5_k;
        if (m.llama_70b && ty == weight_type::q4_k) ty = weight_type::q5_k;
        if (m.n_expert == 8) ty = weight_type::q8_0;
    } else if (c == qcat::attn_k) {
        if (m.n_expert == 8) ty = weight_type::q8_0;
    } else if (c == qcat::ffn_down) {
        int i = m.ffn_down_index.at(t.name);
        const int n = m.n_layer;
        if (m.n_expert > 1) {
            i = layer_of(t.name);
            if (i < 0 || i >= n)
                throw error("tensor '" + t.name + "': no layer in [0, " + std::to_string(n) + ") in its name");
        }
        if ((ft == qftype::q4_k_m || ft == qftype::q5_k_m) && use_more_bits(i, n)) ty = weight_type::q6_k;
        else if (ft == qftype::q4_k_s && i < n / 8) ty = weight_type::q5_k;
    } else if (c == qcat::attn_output) {
        if (m.n_expert == 8 && (ft == qftype::q4_k_s || ft == qftype::q4_k_m)) ty = weight_type::q5_k;
    }
    // Rows that are not whole super-blocks: llama.cpp's tensor_type_fallback.
    if (is_k_quant(ty) && cols % qk_k) {
        ty = ty == weight_type::q4_k ? weight_type::q5_0 : ty == weight_type::q5_k ? weight_type::q5_1 : weight_type::q8_0;
        if (cols % quant_block) ty = weight_type::f16;
    }
    return ty;
}

}  // namespace

int run_quantize(int argc, char** argv) {
    std::vector<std::string> args;
    int threads = 0;
    progress_mode progress = progress_mode::automatic;
    std::string types;
    for (const auto& t : targets) types += std::string(types.empty() ? "" : ", ") + t.name;

    arg_parser p("quantize", "[options] IN.gguf OUT.gguf TYPE",
                 "Writes OUT.gguf: IN.gguf (an ncas-diffmoe or llama file in F32, F16 or BF16)\n"
                 "with its weight matrices quantised as llama.cpp's file type TYPE\n"
                 "(" + types + ");\n"
                 "norms, λ, routers and other 1-D tensors stay as they are.\n"
                 "q4_k and q5_k are llama.cpp's Q4_K_S and Q5_K_S (llama-quantize reads\n"
                 "Q4_K and Q5_K as the _M mixes); general.file_type gets llama.cpp's number:\n"
                 "q8_0 7, q4_0 2, q4_k 14, q4_k_m 15, q5_k 16, q5_k_m 17, q6_k 18.\n"
                 "The type of each tensor follows llama.cpp's recipe: output.weight (or a\n"
                 "tied token_embd) in Q6_K (q4_0 and the K types); in q4_k_m and q5_k_m,\n"
                 "attn_v and ffn_down of the layers use_more_bits picks in Q6_K; in q4_k the\n"
                 "first 4 attn_v and the ffn_down of the first n/8 layers in Q5_K; with exactly\n"
                 "8 experts attn_v and attn_k in Q8_0, and attn_output in Q5_K (q4_k, q4_k_m).\n"
                 "Rows that are not whole 256-value super-blocks fall back as in llama.cpp:\n"
                 "Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, and to F16 when not whole 32-value\n"
                 "blocks either. docs/quantize.md has the whole recipe.");
    p.positional("IN OUT TYPE", args, "input file, output file, weight type", 3);
    p.option("-t --threads", threads, "N", "threads (0: all cores)", bounds<int>{0, 1024});
    add_progress_options(p, progress);
    if (!p.parse(argc, argv)) return 0;
    if (args.size() != 3) throw usage_error("expected IN.gguf OUT.gguf TYPE");
    const std::string& in = args[0];
    const std::string& out = args[1];
    const target_type* tt = nullptr;
    for (const auto& t : targets) {
        std::string lower = args[2];
        for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (lower == t.name) tt = &t;
    }
    if (!tt) throw usage_error("unknown type " + in_quotes(args[2]) + " (expected " + types + ")");
    {
        std::error_code ec;
        if (std::filesystem::exists(out, ec) && std::filesystem::equivalent(in, out, ec))
            throw usage_error("OUT is the same file as IN");
    }
    if (threads == 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));

    // The whole model is loaded once first: the same checks as every command
    // (architecture, shapes, finite vectors), so a bad input fails before writing.
    (void)ncas::model::load(in);
    const mapped_file map(in);
    const gguf_file f = gguf_file::from_memory(in, map.bytes());
    const std::span<const std::byte> bytes = map.bytes();

    gguf_writer w(f.alignment());
    for (const std::string& k : f.key_order()) w.set(k, *f.find(k));
    w.set_uint32("general.file_type", uint32_t(tt->ftype));
    w.set_uint32("general.quantization_version", 2);

    const mix_info mix = mix_of(f);
    int64_t total_values = 0, n_converted = 0;
    std::map<weight_type, int> n_of_type;  // tensors converted to each type
    for (const tensor_info& t : f.tensors()) {
        const bool convert = takes_type(t);
        const weight_type to = convert ? mix_type(t, *tt, mix) : t.type;
        int64_t values = 1;
        for (int d = 0; d < t.n_dims; ++d) values *= t.ne[d];
        if (convert && t.type != to) {
            if (is_quantised(t.type))
                f.fail("tensor '" + t.name + "' is already " + std::string(type_name(t.type)) +
                       "; quantising it again to " + std::string(type_name(to)) +
                       " would compound the rounding: start from the F32, F16 or BF16 file");
            const int64_t block = traits_of(to).block_values;
            if (t.ne[0] % block)
                f.fail("tensor '" + t.name + "' has rows of " + std::to_string(t.ne[0]) + " values, not a multiple of " +
                       std::to_string(block) + " (the " + std::string(type_name(to)) + " block)");
            ++n_converted;
            ++n_of_type[to];
        }
        total_values += values;
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        const std::byte* src = bytes.data() + t.offset;
        const weight_type from = t.type;
        const int64_t row = t.ne[0], rows = values / std::max<int64_t>(row, 1);
        w.add_tensor(t.name, to, ne, [=, &t](std::span<std::byte> dst) {
            if (from == to) {
                std::memcpy(dst.data(), src, dst.size());
                return;
            }
            const int64_t in_row = row_bytes(from, row), out_row = row_bytes(to, row);
            auto work = [&](int64_t r0, int64_t r1, std::string* err) {
                std::vector<float> buf(static_cast<size_t>(row));
                for (int64_t r = r0; r < r1; ++r) {
                    dequantize_row(from, src + r * in_row, buf.data(), row);
                    for (int64_t j = 0; j < row; ++j)
                        if (!std::isfinite(buf[size_t(j)])) {
                            *err = "tensor '" + t.name + "' has a value that is not finite (row " + std::to_string(r) +
                                   ", column " + std::to_string(j) + ")";
                            return;
                        }
                    quantize_row(to, buf.data(), dst.data() + r * out_row, row);
                }
            };
            const int n = int(std::min<int64_t>(threads, std::max<int64_t>(1, rows / 16)));
            std::vector<std::string> errs(static_cast<size_t>(n));
            std::vector<std::thread> pool;
            for (int k = 1; k < n; ++k) pool.emplace_back(work, rows * k / n, rows * (k + 1) / n, &errs[size_t(k)]);
            work(0, rows / n, &errs[0]);
            for (auto& th : pool) th.join();
            for (const auto& e : errs)
                if (!e.empty()) f.fail(e);
        });
    }

    const std::string part = out + ".part";
    std::FILE* fp = std::fopen(part.c_str(), "wb");
    if (!fp) throw error(part + ": cannot create: " + errno_text());
    int64_t done = 0;
    bool ok = true;
    try {
        progress_bar bar("quantize", total_values, "values", progress);
        size_t i = 0;
        bool header = true;
        w.write([&](std::span<const std::byte> b) {
            ok = ok && std::fwrite(b.data(), 1, b.size(), fp) == b.size();
            if (header) { header = false; return; }
            const tensor_info& t = f.tensors()[i++];
            int64_t values = 1;
            for (int d = 0; d < t.n_dims; ++d) values *= t.ne[d];
            done += values;
            bar.update(done);
        });
        ok = std::fclose(fp) == 0 && ok;
        fp = nullptr;
        if (!ok) throw error(part + ": write failed: " + errno_text());
        std::filesystem::rename(part, out);
    } catch (...) {
        if (fp) std::fclose(fp);
        std::error_code ec;
        std::filesystem::remove(part, ec);
        throw;
    }
    const ncas::model check = ncas::model::load(out);  // the file loads as a model
    std::string counts;
    for (const auto& [ty, n] : n_of_type)
        counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(type_name(ty));
    std::fprintf(stderr, "%s: %lld of %zu tensors converted (%s), general.file_type %u (%s); %.1f MB -> %.1f MB\n",
                 out.c_str(), (long long)n_converted, f.tensors().size(), counts.empty() ? "none" : counts.c_str(),
                 uint32_t(tt->ftype), tt->name, double(bytes.size()) / 1e6,
                 double(std::filesystem::file_size(out)) / 1e6);
    return 0;
}

}  // namespace ncas::cli
