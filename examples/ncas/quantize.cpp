// `ncas quantize IN.gguf OUT.gguf TYPE`: a copy of a model file with its weight
// matrices in another type, as llama.cpp's quantiser makes it.
//
//  * Which tensors: every tensor whose name ends in ".weight" with two or more
//    dimensions, except the expert router (ffn_gate_inp), takes TYPE; norms,
//    λ tensors, mod_router and every other 1-D tensor are copied as they are
//    (docs/spec.md §2: norms, λ, routers and gates are F32; llama.cpp keeps 1-D
//    tensors and ffn_gate_inp in F32 as well). Unlike llama.cpp, which puts
//    output.weight (or a tied token_embd) in Q6_K for a Q4_0 file, ncas gives it
//    TYPE: the K-quants are not written yet.
//  * Quantisation is ggml's reference code (quantize_row_q8_0_ref,
//    quantize_row_q4_0_ref): ncas::quantize_row. tools/quantize.py, written from
//    the same published algorithm in numpy, gives the same file byte for byte.
//  * Inputs in F32, F16 and BF16 are converted; a tensor already in TYPE is
//    copied as it is; a tensor in another quantised type is refused (quantising
//    twice compounds the rounding: start from the F32/F16/BF16 file).
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
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "ncas/format/gguf_writer.hpp"
#include "progress.hpp"

namespace ncas::cli {

namespace {

struct target_type {
    const char* name;
    weight_type type;
    uint32_t ftype;  // llama.cpp's LLAMA_FTYPE
};

constexpr target_type targets[] = {
    {"q8_0", weight_type::q8_0, 7}, {"q4_0", weight_type::q4_0, 2}, {"f16", weight_type::f16, 1},
    {"bf16", weight_type::bf16, 32}, {"f32", weight_type::f32, 0},
};

bool is_quantised(weight_type t) { return t == weight_type::q8_0 || t == weight_type::q4_0; }

// Whether the tensor takes the requested type (see the top of this file).
bool takes_type(const tensor_info& t) {
    const std::string_view n = t.name;
    if (!n.ends_with(".weight") || t.n_dims < 2) return false;
    if (n.ends_with("ffn_gate_inp.weight")) return false;  // the expert router stays F32
    if (n.find("_norm.") != std::string_view::npos || n.find("lambda") != std::string_view::npos ||
        n.find("mod_router") != std::string_view::npos)
        return false;
    return true;
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
                 "with its weight matrices in TYPE (" + types + ");\n"
                 "norms, λ, routers and other 1-D tensors stay as they are.");
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
    w.set_uint32("general.file_type", tt->ftype);
    w.set_uint32("general.quantization_version", 2);

    int64_t total_values = 0, n_converted = 0;
    for (const tensor_info& t : f.tensors()) {
        const bool convert = takes_type(t);
        const weight_type to = convert ? tt->type : t.type;
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
    const ncas::model check = ncas::model::load(out);
    std::fprintf(stderr, "%s: %lld of %zu tensors to %s, general.file_type %u; %.1f MB -> %.1f MB\n", out.c_str(),
                 (long long)n_converted, f.tensors().size(), std::string(type_name(tt->type)).c_str(), tt->ftype,
                 double(bytes.size()) / 1e6, double(std::filesystem::file_size(out)) / 1e6);
    return 0;
}

}  // namespace ncas::cli
