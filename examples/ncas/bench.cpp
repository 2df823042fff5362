// `ncas bench`: how close ncas runs to this machine's limits.
//
// Machine: read bandwidth with 1 and N threads (the fastest plain read loop of
// the kernels' instruction set, cpu/probes.hpp, over a buffer far larger than the caches) and the peak rate
// of f32 FMAs and of the 16-bit integer multiply-adds the Q8_0/Q4_0 kernels use.
// Model: prefill of --prompt tokens and greedy decode of --gen tokens on a model
// file or on a synthetic preset (random weights of the exact shape, written once
// to a cache file). Decode is reported as the weight bytes a token really reads
// (its active experts; layers MoD skipped excluded) times tok/s, against the
// measured N-thread bandwidth; prefill as model FLOPs (2 × weights multiplied)
// per second, against the peak rates. With --backend vulkan the CPU's machine
// figures do not apply: the device's read bandwidth (vk/bandwidth.hpp) is
// measured instead and decode is set against it.
#include "bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common.hpp"
#include "ncas/cpu/probes.hpp"
#include "ncas/memory/page_cache.hpp"
#include "ncas/state.hpp"
#include "synthetic.hpp"

namespace ncas::cli {
namespace {

struct machine {
    double read_gbs_1 = 0, read_gbs_n = 0;  // GB/s
    double fma_gflops = 0, madd_gops = 0;   // N threads
};

template <class F>
double best_seconds(int reps, F&& f) {
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
        const stopwatch t;
        f();
        best = std::min(best, t.seconds());
    }
    return best;
}

// A buffer far larger than the caches, read by the probes' plain read loop.
class read_probe {
public:
    read_probe(thread_pool& pool, int64_t bytes) : pool_(pool), bytes_(bytes / 4096 * 4096), buf_(new std::byte[size_t(bytes_)]) {
        pool.parallel_for(bytes_, [&](int64_t b, int64_t e) { std::fill(buf_.get() + b, buf_.get() + e, std::byte{1}); });
    }
    // Seconds to read the buffer once on the calling thread, or split across the pool.
    double one_thread() {
        const stopwatch t;
        sink_ = sink_ + cpu::probes().read_sum(buf_.get(), size_t(bytes_));
        return t.seconds();
    }
    double all_threads() {
        const stopwatch t;
        pool_.parallel_for(pool_.size(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                const auto [lo, hi] = thread_pool::chunk(bytes_ / 256, pool_.size(), int(i));
                sink_ = sink_ + cpu::probes().read_sum(buf_.get() + lo * 256, size_t(hi - lo) * 256);
            }
        });
        return t.seconds();
    }
    double gbs(double seconds) const { return double(bytes_) / seconds / 1e9; }

private:
    thread_pool& pool_;
    int64_t bytes_;
    std::unique_ptr<std::byte[]> buf_;
    volatile uint64_t sink_ = 0;
};

machine measure_machine(thread_pool& pool, read_probe& probe) {
    machine m;
    m.read_gbs_1 = probe.gbs(best_seconds(5, [&] { probe.one_thread(); }));
    m.read_gbs_n = probe.gbs(best_seconds(5, [&] { probe.all_threads(); }));
    const int64_t iters = 20'000'000;
    // Every thread runs its loop at once and keeps its own best of 5. One timing of all
    // threads together lost half the rate whenever the host took a vCPU away for a
    // moment (seen on Zen 3: 103 GFLOP/s for 2 threads, and prefill then ran at 130).
    auto peak = [&](double (*ops)(int64_t)) {
        std::vector<double> rate(size_t(pool.size()));
        pool.parallel_for(pool.size(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                double done = 0;
                const double s = best_seconds(5, [&] { done = ops(iters); });
                rate[size_t(i)] = done / s;
            }
        });
        return std::accumulate(rate.begin(), rate.end(), 0.0) / 1e9;
    };
    m.fma_gflops = peak(cpu::probes().fma_ops);
    m.madd_gops = peak(cpu::probes().madd_ops);
    return m;
}

// Weights multiplied (MACs) and weight bytes read by the tokens a run_stats covers.
struct work {
    double macs = 0, bytes = 0;
};
work account(const model_core& m, const run_stats& s, int64_t logit_rows) {
    const model_config& c = m.config();
    const model_weights& w = m.weights();
    work out;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const layer_weights& lw = w.layers[size_t(l)];
        const double kept = double(s.tokens_kept[size_t(l)]);
        for (const weight_matrix* x : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.gate_inp}) {
            if (!x->rows || (x == &lw.gate_inp && !x->data)) continue;
            out.macs += kept * double(x->rows * x->cols);
            out.bytes += kept * double(x->bytes());
        }
        const double slab = double(lw.up.slab_bytes() + lw.down.slab_bytes() + (lw.gate.rows ? lw.gate.slab_bytes() : 0));
        const double params = double(lw.up.rows * lw.up.cols + lw.down.rows * lw.down.cols + lw.gate.rows * lw.gate.cols);
        for (int64_t e = 0; e < c.n_expert; ++e) {
            const double used = double(s.expert_use[size_t(l * c.n_expert + e)]);
            out.macs += used * params;
            out.bytes += used * slab;
        }
    }
    out.macs += double(logit_rows) * double(w.output.rows * w.output.cols);
    out.bytes += double(logit_rows) * double(w.output.bytes());
    return out;
}

// A timed greedy decode of `gen` tokens after `logits`. The host's memory bandwidth
// moves within seconds (this VM: 29 to 56 GB/s within an hour, 20 to 31 GB/s from one
// second to the next), so with a probe (machine figures on) decode runs in up to 8
// chunks with the N-thread read measured before the first and after each one: every
// chunk's GB/s, bytes(stats before, stats after, tokens before, tokens after) over its
// seconds, is set against the mean of the reads either side, and the median chunk is
// reported beside the start-of-run figure.
struct timed_decode {
    double seconds = 0;
    std::vector<double> paired;  // each chunk's GB/s / the read GB/s around it, sorted
    double read_lo = 0, read_hi = 0;
    double median() const {
        const size_t n = paired.size();
        return n == 0 ? 0.0 : n % 2 ? paired[n / 2] : (paired[n / 2 - 1] + paired[n / 2]) / 2;
    }
};
template <class Bytes>
timed_decode decode_in_chunks(any_session& s, std::span<const float> logits, int64_t gen, read_probe* probe, Bytes&& bytes) {
    timed_decode out;
    out.read_lo = 1e30;
    const int64_t chunks = probe ? std::min<int64_t>(gen, 8) : 1;
    auto read_now = [&] {
        const double g = probe->gbs(probe->all_threads());
        out.read_lo = std::min(out.read_lo, g), out.read_hi = std::max(out.read_hi, g);
        return g;
    };
    double read_before = probe ? read_now() : 0;
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t done = gen * c / chunks, n = gen * (c + 1) / chunks - done;
        const run_stats before = s.stats();
        const stopwatch td;
        for (int64_t i = 0; i < n; ++i) {
            const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
            logits = s.decode(next);
        }
        const double chunk_s = td.seconds();
        out.seconds += chunk_s;
        if (!probe) continue;
        const double read_after = read_now();
        out.paired.push_back(bytes(before, s.stats(), done, done + n) / chunk_s / 1e9 / ((read_before + read_after) / 2));
        read_before = read_after;
    }
    std::sort(out.paired.begin(), out.paired.end());
    if (out.paired.empty()) out.read_lo = 0;
    return out;
}

// --depth-fill random: the share of tokens each layer keeps (mixture-of-depths
// routers skip some), measured on a prefill of 256 synthetic tokens.
std::vector<double> kept_shares(const model_options& mo, const model& m) {
    const model_config& c = m.config();
    session_params p = mo.params(m);
    p.n_ctx = std::min<int64_t>(c.n_ctx, 256);
    const std::unique_ptr<any_session> s = mo.make_session(m, p);
    std::mt19937 rng(12345u);
    std::vector<int32_t> ids(size_t(p.n_ctx - 1));
    for (auto& t : ids) t = int32_t(rng() % uint32_t(c.n_vocab));
    s->reset_stats();
    s->prefill(ids);
    std::vector<double> share(size_t(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) share[size_t(l)] = double(s->stats().tokens_kept[size_t(l)]) / double(ids.size());
    return share;
}

// --depth-fill random: the CPU session's cache as a prefill of `depth` tokens leaves it
// (layer l holds share[l]·depth rows at evenly spread positions), the rows random values
// stored in the cache's type (rounded as a prefill's would be); the session then holds
// `depth` tokens. Decode reads such a cache as fast as a real one: attention's work does
// not depend on the values.
void fill_random(any_session& s, const model_config& c, const std::vector<double>& share, int64_t depth,
                 std::vector<double>& rows) {
    session& cs = cpu_session_of(s, "--depth-fill random");
    uniform_stream rng(uint64_t(depth) + 1);
    std::vector<float> k(size_t(c.k_dim())), v(size_t(c.v_dim()));
    cs.restore(depth, [&](kv_cache& cache) {
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const int64_t n = std::clamp<int64_t>(std::llround(share[size_t(l)] * double(depth)), 1, depth);
            for (int64_t i = 0; i < n; ++i) {
                rng.fill(k.data(), c.k_dim(), 1.0f);
                rng.fill(v.data(), c.v_dim(), 1.0f);
                cache.append(l, k.data(), v.data(), int32_t(i * depth / n));
            }
            rows[size_t(l)] = double(n);
        }
    });
}

// Decode after N tokens of context (llama-bench's -d), for each KV cache type: the context
// is filled by a prefill of N synthetic tokens (timed: long-prompt prefill, with the
// attention's multiply-adds counted, and where N >= 2·ref_tokens (--prompt) its rate
// against prefills of ref_tokens run between its slices) or, with --depth-fill random, by fill_random;
// then `gen` tokens are decoded (the first untimed).
// Bytes a token: the weights the decode read plus the KV rows its attention read (each
// layer's rows, for the tokens that layer processed).
void bench_depths(const model_options& mo, const model& m, const std::vector<weight_type>& kv_types,
                  const std::vector<int64_t>& depths, int64_t ref_tokens, int64_t gen, read_probe* probe,
                  double read_gbs, const std::string& json_path, bool random_fill) {
    const model_config& c = m.config();
    const std::vector<double> share = random_fill ? kept_shares(mo, m) : std::vector<double>{};
    const double attn_macs_per_pair = double(c.n_head) * double(c.n_maps * c.head_k + c.head_v);  // one query, one row
    for (int64_t depth : depths)
        if (depth + gen + 2 > c.n_ctx)
            throw error("--depth " + std::to_string(depth) + " + --gen exceed the model's context of " + std::to_string(c.n_ctx));
    std::string json = "[";
    std::printf("depth      decode after N tokens of context, %lld decoded; prefill of the N tokens with attention's FLOPs\n",
                (long long)gen);
    for (weight_type kv : kv_types)
        for (int64_t depth : depths) {
            session_params dp = mo.params(m);
            dp.kv_type = kv;
            dp.n_ctx = depth + gen + 2;
            const std::unique_ptr<any_session> sp = mo.make_session(m, dp);
            any_session& s = *sp;
            std::mt19937 rng(uint32_t(depth) * 7919u + 1u);
            std::vector<int32_t> ids(static_cast<size_t>(depth));
            for (auto& t : ids) t = int32_t(rng() % uint32_t(c.n_vocab));
            double prefill_s = 0, prefill_macs = 0, ref_s = 0;  // ref_s: the mean seconds of the short prefills between slices
            std::vector<double> rows(size_t(c.n_layer));  // each layer's cache rows after the prefill
            if (depth > 0 && random_fill) {
                fill_random(s, c, share, depth, rows);
            } else if (depth > 0) {
                // The prompt in up to 8 slices, each followed by a fresh session's prefill of the
                // prompt's first ref_tokens (this machine's speed moves by a fifth within minutes:
                // the short prompt's rate is measured between the slices, not once minutes before).
                const int64_t slices = depth >= 2 * ref_tokens ? std::min<int64_t>(8, depth / ref_tokens) : 1;
                std::unique_ptr<any_session> ref;
                if (slices > 1) {
                    session_params rp = dp;
                    rp.n_ctx = ref_tokens + 2;
                    ref = mo.make_session(m, rp);
                }
                s.reset_stats();
                int64_t batches = 0;
                for (int64_t k = 0; k < slices; ++k) {
                    const int64_t at = depth * k / slices, n = depth * (k + 1) / slices - at;
                    const stopwatch tp;
                    s.prefill(std::span<const int32_t>(ids).subspan(size_t(at), size_t(n)));
                    prefill_s += tp.seconds();
                    batches += (n + s.params().n_batch - 1) / s.params().n_batch;
                    if (!ref) continue;
                    ref->reset();
                    const stopwatch tr;
                    ref->prefill(std::span<const int32_t>(ids).first(size_t(ref_tokens)));
                    ref_s += tr.seconds();
                }
                ref_s /= double(ref ? slices : 1);
                const run_stats ps = s.stats();
                prefill_macs = account(m, ps, batches).macs;
                for (int64_t l = 0; l < c.n_layer; ++l) {
                    const double kept = double(ps.tokens_kept[size_t(l)]);
                    rows[size_t(l)] = kept;
                    prefill_macs += attn_macs_per_pair * kept * (kept + 1) / 2;
                }
            }
            std::span<const float> logits = s.decode(int32_t(rng() % uint32_t(c.n_vocab)));
            s.reset_stats();
            // The KV bytes the decoded tokens' attention read: a layer's i-th kept token reads
            // the rows before it and its own.
            const double row_bytes = double(kv_row_bytes(kv, c.k_dim()) + kv_row_bytes(kv, c.v_dim()));
            const auto kv_bytes = [&](const run_stats& st) {
                double b = 0;
                for (int64_t l = 0; l < c.n_layer; ++l) {
                    const double kept = double(st.tokens_kept[size_t(l)]);
                    b += (kept * (rows[size_t(l)] + 1) + kept * (kept - 1) / 2) * row_bytes;
                }
                return b;
            };
            const timed_decode td = decode_in_chunks(s, logits, gen, probe, [&](const run_stats& a, const run_stats& b, int64_t t0, int64_t t1) {
                return account(m, b, t1).bytes - account(m, a, t0).bytes + kv_bytes(b) - kv_bytes(a);
            });
            const run_stats ds = s.stats();
            const double weight_bytes = account(m, ds, gen).bytes / double(gen), kv_read = kv_bytes(ds) / double(gen);
            const double tps = double(gen) / td.seconds, gbs = (weight_bytes + kv_read) * tps / 1e9;
            const bool prefilled = depth > 0 && !random_fill;
            const double prefill_tps = prefilled ? double(depth) / prefill_s : 0.0;
            const double prefill_gflops = prefilled ? 2 * prefill_macs / prefill_s / 1e9 : 0.0;
            std::printf("depth %-6lld kv %-4s  decode %8.2f tok/s  %7.1f MB/token (weights %.1f + KV %.1f)  %6.2f GB/s",
                        (long long)depth, std::string(type_name(kv)).c_str(), tps, (weight_bytes + kv_read) / 1e6,
                        weight_bytes / 1e6, kv_read / 1e6, gbs);
            if (read_gbs > 0) std::printf("  %5.1f%% of measured bandwidth", 100 * gbs / read_gbs);
            if (!td.paired.empty())
                std::printf("\n                   paired: %.1f%% (median of %zu chunks; %.1f–%.1f%%) of the read around each chunk (%.1f–%.1f GB/s)",
                            100 * td.median(), td.paired.size(), 100 * td.paired.front(), 100 * td.paired.back(), td.read_lo, td.read_hi);
            const double ref_tps = prefilled && ref_s > 0 ? double(ref_tokens) / ref_s : 0.0;
            if (prefilled) std::printf("\n                   prefill %lld tokens %8.1f tok/s  %7.1f GFLOP/s with attention",
                                       (long long)depth, prefill_tps, prefill_gflops);
            if (ref_tps > 0)
                std::printf("\n                   paired: %.2fx the rate of %lld-token prefills run between its slices (%.1f tok/s)",
                            prefill_tps / ref_tps, (long long)ref_tokens, ref_tps);
            if (depth > 0 && random_fill) std::printf("\n                   cache filled with random rows (--depth-fill random): no prefill");
            std::printf("\n");
            std::fflush(stdout);
            char buf[768];
            std::snprintf(buf, sizeof buf,
                          "%s\n {\"depth\": %lld, \"kv_type\": \"%s\", \"decode_tps\": %.4f, \"decode_bytes_per_token\": %.0f, "
                          "\"kv_bytes_per_token\": %.0f, \"decode_gbs\": %.3f, \"decode_pct_bandwidth\": %.2f, "
                          "\"decode_pct_paired\": %.2f, \"paired_chunks\": %zu, \"paired_read_gbs_min\": %.3f, "
                          "\"paired_read_gbs_max\": %.3f, \"prefill_tps\": %.3f, \"prefill_gflops\": %.3f, \"prefill_ref_tps\": %.3f, "
                          "\"prefill_ratio_paired\": %.4f, \"depth_fill\": \"%s\"}",
                          json.size() > 1 ? "," : "", (long long)depth, std::string(type_name(kv)).c_str(), tps,
                          weight_bytes + kv_read, kv_read, gbs, read_gbs > 0 ? 100 * gbs / read_gbs : 0.0, 100 * td.median(),
                          td.paired.size(), td.read_lo, td.read_hi, prefill_tps, prefill_gflops, ref_tps,
                          ref_tps > 0 ? prefill_tps / ref_tps : 0.0, random_fill ? "random" : "prefill");
            json += buf;
        }
    if (json_path.empty()) return;
    const std::string path = json_path + ".depth.json";  // beside --json's file: tools/plot_bench.py --depth reads it
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw error(path + ": cannot open for writing: " + std::strerror(errno));
    std::fprintf(f, "%s\n]\n", json.c_str());
    std::fclose(f);
}

std::string default_cache_dir() {
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/ncas";
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/ncas";
    return ".ncas-cache";
}

// A string for a JSON value (quotes, backslashes, control characters escaped).
std::string json_escape(std::string_view s) {
    std::string out;
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\', out += c;
        else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(static_cast<unsigned char>(c)));
            out += buf;
        } else out += c;
    }
    return out;
}

}  // namespace
}  // namespace ncas::cli

int run_bench(int argc, char** argv) {
    using namespace ncas;
    using namespace ncas::cli;
    model_options mo;
    mo.batch = 128;
    mo.kv_type_list = true;
    std::string depth_list, depth_fill = "prefill";
    std::string preset, type = "q4_0", arch = "ncas-diffmoe", cache_dir = default_cache_dir(), json_path, isa_name_s;
    int64_t prompt = 512, gen = 128, vocab = 32000, bw_mib = 1024;
    bool skip_machine = false;
    progress_mode progress = progress_mode::automatic;

    arg_parser p("bench", "[options]",
                 "Measures this machine's read bandwidth and peak arithmetic rates, then prefill and decode\n"
                 "speed on a model file (--model) or on a synthetic preset (--preset PI-P --type q4_0).");
    mo.add_to(p);
    p.choice("--preset", preset, {"PI", "PI-S", "PI-P"}, "random weights of this preset's exact shape (cached)");
    p.choice("--type", type, {"f32", "f16", "bf16", "q8_0", "q4_0"}, "weight type of the synthetic preset");
    p.choice("--arch", arch, {"ncas-diffmoe", "llama"}, "synthetic file: ncas-diffmoe, or llama Mixtral-style");
    p.option("--vocab", vocab, "N", "vocabulary of the synthetic preset", bounds<int64_t>{1, 1 << 20});
    p.option("--cache-dir", cache_dir, "DIR", "where synthetic models are kept (default ~/.cache/ncas)");
    p.option("--prompt", prompt, "N", "prefill tokens", bounds<int64_t>{1});
    p.option("--gen", gen, "N", "decode tokens", bounds<int64_t>{1});
    p.option("--bw-mib", bw_mib, "N", "size of the bandwidth test buffer in MiB", bounds<int64_t>{64});
    p.flag("--skip-machine", skip_machine, "do not measure bandwidth and peak rates (--backend vulkan: the device's bandwidth)");
    p.option("--isa", isa_name_s, "ISA", "force the CPU kernels: scalar, avx2, avx512, avx512vnni (x86-64); neon, dotprod, i8mm (ARM64)");
    p.option("--json", json_path, "FILE", "also write the results as JSON");
    p.option("-d --depth", depth_list, "N[,N...]",
             "then, for each --kv-type of the list and each depth N: prefill N synthetic tokens (tok/s and GFLOP/s with "
             "attention; from 2·--prompt tokens also against --prompt-token prefills run between its slices) and decode --gen tokens after them (bytes a token with the KV rows read, % of bandwidth)");
    p.choice("--depth-fill", depth_fill, {"prefill", "random"},
             "how --depth fills the cache: a timed prefill of N synthetic tokens, or random rows in the cache's type "
             "spread over the layers as a prefill keeps them (CPU backend; decode figures only, minutes sooner at depth)");
    add_progress_options(p, progress);
    if (!p.parse(argc, argv) || mo.handled(p)) return 0;
    if (depth_fill == "random" && mo.on_vulkan()) throw usage_error("--depth-fill random fills a CPU session's cache; not with --backend vulkan");
    if (!preset.empty() && !mo.path.empty()) throw usage_error("give --model or --preset, not both");
    if (!isa_name_s.empty() && mo.on_vulkan()) throw usage_error("--isa picks the CPU kernels; not with --backend vulkan");
    if (!isa_name_s.empty()) cpu::force_isa(cpu::parse_isa(isa_name_s));
    std::vector<int64_t> depths;
    for (size_t at = 0; !depth_list.empty() && at <= depth_list.size();) {
        const size_t end = std::min(depth_list.find(',', at), depth_list.size());
        const std::string item = depth_list.substr(at, end - at);
        char* stop = nullptr;
        const long long n = std::strtoll(item.c_str(), &stop, 10);
        if (item.empty() || *stop || n < 0) throw usage_error("option --depth: '" + item + "' is not a token count");
        depths.push_back(n);
        at = end + 1;
    }
    const std::vector<weight_type> kv_list = mo.kv_types();
    const bool cpu_backend = !mo.on_vulkan();

    std::string path = mo.path;
    if (!preset.empty()) {
        synthetic_spec spec{find_preset(preset).dims, preset, parse_weight_type(type), vocab, arch == "llama"};
        path = write_synthetic(spec, cache_dir, progress);
    } else if (path.empty()) {
        path = find_default_model();
    }

    const stopwatch load_clock;
    const model m = mo.load_file(path);
    const double load_s = load_clock.seconds();
    session_params sp = mo.params(m);
    sp.n_ctx = prompt + gen + 1;
    if (sp.n_ctx > m.config().n_ctx) throw error("--prompt + --gen exceed the model's context of " + std::to_string(m.config().n_ctx));
    const stopwatch session_clock;
    const std::unique_ptr<any_session> session = mo.make_session(m, sp);
    any_session& s = *session;
    const double session_s = session_clock.seconds();  // with --backend vulkan: pipelines and the weights' upload
    sp = s.params();
    const int threads = cpu_backend ? sp.n_threads : 0;  // the Vulkan session runs no CPU threads

    machine mach;
    std::unique_ptr<thread_pool> probe_pool;
    std::unique_ptr<read_probe> probe;
    if (!skip_machine && cpu_backend) {
        probe_pool = std::make_unique<thread_pool>(threads);
        probe = std::make_unique<read_probe>(*probe_pool, bw_mib << 20);
        mach = measure_machine(*probe_pool, *probe);
    }

    std::mt19937 rng(42);
    std::vector<int32_t> ids(static_cast<size_t>(prompt));
    for (auto& t : ids) t = int32_t(rng() % uint32_t(m.config().n_vocab));

    // Warm-up: fault the mapped weights in, so prefill measures compute.
    {
        const std::vector<int32_t> warm(ids.begin(), ids.begin() + std::min<int64_t>(prompt, 8));
        s.prefill(warm);
        s.reset();
        s.reset_stats();
    }

    const stopwatch tp;
    s.prefill(ids);
    const double prefill_s = tp.seconds();
    const work pw = account(m, s.stats(), (prompt + sp.n_batch - 1) / sp.n_batch);
    s.reset_stats();

    // Decode from an empty context (as llama-bench's tg runs), so the figure is the
    // weights' stream and not attention over the prompt; the first step is not timed.
    s.reset();
    std::span<const float> logits = s.decode(ids.front());
    s.reset_stats();
    const timed_decode td = decode_in_chunks(s, logits, gen, probe.get(), [&](const run_stats& a, const run_stats& b, int64_t t0, int64_t t1) {
        return account(m, b, t1).bytes - account(m, a, t0).bytes;
    });
    const double decode_s = td.seconds, paired_median = td.median();
    const std::vector<double>& paired = td.paired;
    const double read_lo = td.read_lo, read_hi = td.read_hi;
    const work dw = account(m, s.stats(), gen);

    const double prefill_tps = double(prompt) / prefill_s, decode_tps = double(gen) / decode_s;
    const double prefill_gflops = 2 * pw.macs / prefill_s / 1e9;
    const double bytes_per_token = dw.bytes / double(gen), decode_gbs = bytes_per_token * decode_tps / 1e9;
    const bool int_dot = cpu::uses_int_dot(m.weights().layers[0].wq.type);
    double skipped = 0, offered = 0;
    const run_stats decode_stats = s.stats();  // a copy (read from the device with --backend vulkan)
    for (size_t l = 0; l < decode_stats.tokens_in.size(); ++l)
        offered += double(decode_stats.tokens_in[l]), skipped += double(decode_stats.tokens_in[l] - decode_stats.tokens_kept[l]);

    const std::string device = s.device();
    std::printf("model      %s\n", path.c_str());
    if (cpu_backend)
        std::printf("kernels    %s\n           %d threads, batch %lld; loaded in %.2f s%s\n",
                    cpu::kernels_chosen_text(isa_name_s.empty() ? "" : "--isa").c_str(), threads, (long long)sp.n_batch,
                    load_s, mo.streams() ? " (experts streamed)" : " (mapped)");
    else
        std::printf("device     vulkan: %s, batch %lld; loaded in %.2f s, on the device in %.2f s\n", device.c_str(),
                    (long long)sp.n_batch, load_s, session_s);
    const double device_gbs = skip_machine || cpu_backend ? 0 : device_read_gbs(s, bw_mib << 20);
    if (device_gbs > 0) std::printf("machine    device read %.1f GB/s\n", device_gbs);
    if (!skip_machine && cpu_backend) {
        std::printf("machine    read %.1f GB/s (1 thread), %.1f GB/s (%d thread%s); peak f32 FMA %.1f GFLOP/s, int16 madd %.1f Gop/s\n",
                    mach.read_gbs_1, mach.read_gbs_n, threads, threads == 1 ? "" : "s", mach.fma_gflops, mach.madd_gops);
    }
    std::printf("prefill    %lld tokens  %8.1f tok/s  %7.1f GFLOP/s", (long long)prompt, prefill_tps, prefill_gflops);
    if (!skip_machine && cpu_backend) {
        std::printf("  %5.1f%% of peak f32 FMA", 100 * prefill_gflops / mach.fma_gflops);
        if (int_dot) std::printf(", %5.1f%% of peak int16 madd", 100 * prefill_gflops / mach.madd_gops);
    }
    std::printf("\ndecode     %lld tokens  %8.2f tok/s  %7.1f MB/token  %6.2f GB/s", (long long)gen, decode_tps,
                bytes_per_token / 1e6, decode_gbs);
    if (!skip_machine && cpu_backend) std::printf("  %5.1f%% of measured %d-thread bandwidth", 100 * decode_gbs / mach.read_gbs_n, threads);
    if (!paired.empty())
        std::printf("\npaired     decode at %.1f%% (median of %zu chunks; %.1f–%.1f%%) of the %d-thread read measured around each "
                    "chunk (%.1f–%.1f GB/s)",
                    100 * paired_median, paired.size(), 100 * paired.front(), 100 * paired.back(), threads, read_lo, read_hi);
    if (device_gbs > 0) std::printf("  %5.1f%% of measured device bandwidth", 100 * decode_gbs / device_gbs);
    std::printf("\nMoD        %.1f%% of layer visits skipped during decode\n", offered ? 100 * skipped / offered : 0.0);
    if (const auto es = s.expert_stats()) std::fputs(es->report().c_str(), stdout);
    // Cold reads: the disk's sequential rate bounds streamed decode at
    // (expert bytes read per token) / (that rate) seconds a token.
    double disk_gbs = 0, stream_limit_tps = 0;
    if (const auto es = s.expert_stats(); es && mo.direct_io && !skip_machine) {
        // From a different place each run: a virtual disk may serve a region read
        // minutes ago from the host's cache (the same GiB measured 2.2 GB/s, fresh ones 1.2).
        const auto seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
        disk_gbs = direct_read_gbs(path, int64_t(1) << 30, int64_t(std::mt19937_64(seed)() % (uint64_t(1) << 40)));
        const double read_per_token = double(es->total().bytes_read) / double(gen);
        stream_limit_tps = read_per_token > 0 ? disk_gbs * 1e9 / read_per_token : 0;
        std::printf("disk       sequential O_DIRECT read %.2f GB/s; %.1f MB of experts read a token: limit %.2f tok/s, "
                    "decode at %.2f× of it\n",
                    disk_gbs, read_per_token / 1e6, stream_limit_tps, stream_limit_tps > 0 ? decode_tps / stream_limit_tps : 0.0);
    }

    if (!depths.empty()) bench_depths(mo, m, kv_list, depths, prompt, gen, probe.get(), probe ? mach.read_gbs_n : 0.0, json_path, depth_fill == "random");

    if (!json_path.empty()) {
        std::FILE* f = std::fopen(json_path.c_str(), "w");
        if (!f) throw error(json_path + ": cannot open for writing: " + std::strerror(errno));
        std::fprintf(f,
                     "{\"model\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", \"isa\": \"%s\", \"threads\": %d,\n"
                     " \"batch\": %lld, \"load_s\": %.3f, \"session_s\": %.3f,\n"
                     " \"read_gbs_1\": %.3f, \"read_gbs_n\": %.3f, \"device_read_gbs\": %.3f, \"peak_fma_gflops\": %.2f, \"peak_madd_gops\": %.2f,\n"
                     " \"prefill_tokens\": %lld, \"prefill_tps\": %.3f, \"prefill_gflops\": %.3f,\n"
                     " \"decode_tokens\": %lld, \"decode_tps\": %.4f, \"decode_bytes_per_token\": %.0f, \"decode_gbs\": %.3f,\n"
                     " \"decode_pct_bandwidth\": %.2f, \"prefill_pct_fma\": %.2f, \"prefill_pct_madd\": %.2f,\n"
                     " \"mod_skip_rate\": %.4f, \"expert_budget\": %lld, \"expert_hit_rate\": %.4f,\n"
                     " \"direct_io\": %s, \"disk_read_gbs\": %.3f, \"stream_limit_tps\": %.4f,\n"
                     " \"decode_pct_paired\": %.2f, \"paired_chunks\": %zu, \"paired_read_gbs_min\": %.3f, \"paired_read_gbs_max\": %.3f}\n",
                     json_escape(path).c_str(), s.backend().c_str(), json_escape(device).c_str(),
                     cpu_backend ? std::string(cpu::isa_name(cpu::kernels().id)).c_str() : "", threads, (long long)sp.n_batch,
                     load_s, session_s, mach.read_gbs_1, mach.read_gbs_n, device_gbs, mach.fma_gflops, mach.madd_gops, (long long)prompt,
                     prefill_tps, prefill_gflops, (long long)gen, decode_tps, bytes_per_token, decode_gbs,
                     device_gbs > 0 ? 100 * decode_gbs / device_gbs : mach.read_gbs_n > 0 ? 100 * decode_gbs / mach.read_gbs_n : 0.0,
                     mach.fma_gflops > 0 ? 100 * prefill_gflops / mach.fma_gflops : 0.0,
                     mach.madd_gops > 0 && int_dot ? 100 * prefill_gflops / mach.madd_gops : 0.0,
                     offered ? skipped / offered : 0.0, (long long)sp.expert_budget,
                     s.expert_stats() ? s.expert_stats()->hit_rate() : 1.0, mo.direct_io ? "true" : "false", disk_gbs,
                     stream_limit_tps, 100 * paired_median, paired.size(), paired.empty() ? 0.0 : read_lo, read_hi);
        std::fclose(f);
    }
    return 0;
}
