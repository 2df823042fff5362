// One parity harness for the CPU kernels: every instruction-set variant this
// machine runs, every weight type, shapes with and without tails, tiles of 1..4
// tokens and more, against the float reference (weights dequantised to f32,
// activations in f32, sums in double). Bounds are derived from the inputs:
// float rounding γ·Σ|w·x|, plus, for the integer kernels, the 16-bit activation
// rounding Σ|w|·d/2 (one scale d per row). A sentinel after the output catches stray writes.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

#include "ncas/cpu/matmul.hpp"

using namespace ncas;
using namespace ncas::cpu;

namespace {

struct problem {
    weight_type type;
    int64_t rows, cols, T;
    std::vector<std::byte> w;
    std::vector<float> wf, x;  // dequantised weights [rows, cols], activations [T, cols]
};

problem make(weight_type type, int64_t rows, int64_t cols, int64_t T, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    problem p{type, rows, cols, T, {}, {}, {}};
    std::vector<float> src(size_t(rows * cols));
    for (auto& v : src) v = n(rng);
    p.w.resize(size_t(rows * row_bytes(type, cols)));
    p.wf.resize(src.size());
    for (int64_t r = 0; r < rows; ++r) {
        quantize_row(type, src.data() + r * cols, p.w.data() + r * row_bytes(type, cols), cols);
        dequantize_row(type, p.w.data() + r * row_bytes(type, cols), p.wf.data() + r * cols, cols);
    }
    p.x.resize(size_t(T * cols));
    for (auto& v : p.x) v = n(rng) * (rng() % 7 == 0 ? 30.0f : 1.0f);  // some outliers, as real activations have
    return p;
}

// Runs one kernel table's matmul_rows over all rows, with a sentinel after y.
std::vector<float> run(const kernel_table& k, const problem& p) {
    const weight_matrix w{p.type, p.rows, p.cols, p.w.data()};
    act_rows xq;
    if (uses_int_dot(p.type)) xq.quantize(p.type, p.x.data(), p.T, p.cols, k.quantize_act);
    std::vector<float> y(size_t(p.T * p.rows) + 16, 12345.0f);
    k.matmul_rows(w, p.x.data(), &xq, p.T, y.data(), 0, p.rows);
    for (size_t i = size_t(p.T * p.rows); i < y.size(); ++i) EXPECT_EQ(y[i], 12345.0f) << "write past the output";
    y.resize(size_t(p.T * p.rows));
    return y;
}

void check(const kernel_table& k, const problem& p) {
    const auto y = run(k, p);
    constexpr double eps = 0x1p-24;
    for (int64_t t = 0; t < p.T; ++t)
        for (int64_t r = 0; r < p.rows; ++r) {
            const float* w = p.wf.data() + r * p.cols;
            const float* x = p.x.data() + t * p.cols;
            double exact = 0, magnitude = 0, act_rounding = 0;
            for (int64_t j = 0; j < p.cols; ++j) {
                exact += double(w[j]) * x[j];
                magnitude += std::abs(double(w[j]) * x[j]);
            }
            if (uses_int_dot(p.type)) {  // |x − x̂| <= d/2 with d = max|x| / 32767 over the row
                double amax = 0, wsum = 0;
                for (int64_t j = 0; j < p.cols; ++j)
                    amax = std::max(amax, std::abs(double(x[j]))), wsum += std::abs(double(w[j]));
                act_rounding = wsum * (amax / 32767.0) / 2 * (1 + 1e-6);
            }
            const double got = y[size_t(t * p.rows + r)];
            ASSERT_TRUE(std::isfinite(got));
            const double bound = 2.0 * double(p.cols + 4) * eps * magnitude + act_rounding * (1 + 64 * eps);
            ASSERT_LE(std::abs(got - exact), bound)
                << isa_name(k.id) << " " << type_name(p.type) << " rows " << p.rows << " cols " << p.cols << " T " << p.T
                << " at t " << t << " r " << r;
        }
}

std::vector<isa> runnable() {
    std::vector<isa> out;
    for (isa i : all_isas)
        if (table_for(i) && cpu_supports(i)) out.push_back(i);
    return out;
}

class kernels_on : public ::testing::TestWithParam<isa> {};

constexpr weight_type k_types[] = {weight_type::q4_k, weight_type::q5_k, weight_type::q6_k};
// The types whose kernels give the scalar level's bits on every level (one float order).
constexpr weight_type exact_types[] = {weight_type::q4_k, weight_type::q5_k, weight_type::q6_k, weight_type::q5_0,
                                       weight_type::q5_1};

TEST_P(kernels_on, matmul_matches_reference_for_every_type_and_shape) {
    const kernel_table& k = *table_for(GetParam());
    uint32_t seed = 1;
    for (weight_type type : {weight_type::f32, weight_type::f16, weight_type::bf16, weight_type::q8_0, weight_type::q4_0,
                             weight_type::q5_0, weight_type::q5_1}) {
        std::vector<int64_t> cols = {32, 64, 96, 160, 1024};
        if (type == weight_type::q5_0 || type == weight_type::q5_1) cols.insert(cols.end(), {224, 256, 288, 2592});  // 7, 8, 9, 81 blocks
        if (!uses_int_dot(type)) cols.insert(cols.end(), {8, 13, 40, 100});  // tails
        for (int64_t c : cols)
            for (int64_t T : {1, 2, 3, 4, 5, 9}) check(k, make(type, 7, c, T, seed++));
    }
    // Prefill shapes: row blocks, row tiles and token tiles with remainders; rows of
    // 125 blocks, and of 145 (column chunks of 64, 64 and 17 blocks, the last ending in
    // a partial quad).
    for (weight_type type : {weight_type::q8_0, weight_type::q4_0})
        for (int64_t cols : {4000, 4640})
            for (int64_t rows : {1, 4, 200})
                for (int64_t T : {8, 13, 23}) check(k, make(type, rows, cols, T, seed++));
    // K-quants: rows of 1, 2, 3 and 10 super-blocks of 256.
    for (weight_type type : k_types)
        for (int64_t cols : {256, 512, 768, 2560})
            for (int64_t T : {1, 2, 3, 4, 5, 9}) check(k, make(type, 7, cols, T, seed++));
}

// The K-quant and Q5_0 / Q5_1 kernels sum each (sub-)block's integer dot exactly and
// combine them in one float order (kquant_matmul.hpp, q5_matmul.hpp): every level gives
// the scalar level's bits (Q5: rows of 8, 9, 24 and 81 blocks, the last group partial or whole).
TEST_P(kernels_on, k_quant_kernels_give_the_scalar_bits) {
    const kernel_table& k = *table_for(GetParam());
    uint32_t seed = 500;
    for (weight_type type : exact_types)
        for (int64_t cols : {256, 288, 768, 2560, 2592})
            for (int64_t T : {1, 3, 6}) {
                if (cols % traits_of(type).block_values) continue;
                const problem p = make(type, 9, cols, T, seed++);
                EXPECT_EQ(run(k, p), run(*table_for(isa::scalar), p)) << isa_name(k.id) << " " << type_name(type) << " cols "
                                                                      << cols << " T " << T;
            }
}

TEST_P(kernels_on, integer_kernels_agree_with_the_scalar_integer_algorithm) {
    // Both compute the same quantised products; only the order of f32 additions differs.
    const kernel_table& k = *table_for(GetParam());
    for (weight_type type : {weight_type::q8_0, weight_type::q4_0}) {
        const problem p = make(type, 5, 256, 6, 99);
        const auto a = run(k, p), b = run(*table_for(isa::scalar), p);
        for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::abs(b[i]))) << type_name(type);
    }
}

TEST_P(kernels_on, a_tokens_result_does_not_depend_on_its_tile) {
    const kernel_table& k = *table_for(GetParam());
    for (auto [type, cols] : {std::pair{weight_type::f16, 2592}, {weight_type::q4_0, 2592}, {weight_type::q4_0, 4640},
                              {weight_type::q8_0, 4640}, {weight_type::q4_k, 2560}, {weight_type::q5_k, 2560},
                              {weight_type::q6_k, 2560}, {weight_type::q5_0, 2592}, {weight_type::q5_1, 2592}}) {
        const problem all = make(type, 7, cols, 13, 5);
        const auto y = run(k, all);
        for (int64_t t = 0; t < all.T; ++t) {
            problem one = all;
            one.T = 1;
            one.x.assign(all.x.begin() + t * all.cols, all.x.begin() + (t + 1) * all.cols);
            const auto y1 = run(k, one);
            for (int64_t r = 0; r < all.rows; ++r) EXPECT_EQ(y1[size_t(r)], y[size_t(t * all.rows + r)]);
        }
    }
}

// A row's last, partial group of blocks is read in place (masked loads), never past
// the row's end: weights that end just before an unmapped page (as a mapped file's
// last tensor may) give the same outputs, without a fault.
TEST_P(kernels_on, weights_ending_at_an_unmapped_page_are_not_read_past) {
    const kernel_table& k = *table_for(GetParam());
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    uint32_t seed = 40;
    for (weight_type type : {weight_type::q4_0, weight_type::q8_0, weight_type::f16, weight_type::bf16, weight_type::f32,
                             weight_type::q4_k, weight_type::q5_k, weight_type::q6_k, weight_type::q5_0, weight_type::q5_1})
        for (int64_t cols : {32, 64, 96, 160, 256, 2592, 2624, 2656})
            for (int64_t T : {1, 5}) {
                if (cols % traits_of(type).block_values) continue;
                problem p = make(type, 3, cols, T, seed++);
                const auto want = run(k, p);
                const size_t bytes = p.w.size(), span = (bytes + page - 1) / page * page;
                void* map = mmap(nullptr, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                ASSERT_NE(map, MAP_FAILED);
                ASSERT_EQ(mprotect(static_cast<std::byte*>(map) + span, page, PROT_NONE), 0);
                std::byte* at = static_cast<std::byte*>(map) + (span - bytes);  // ends at the guard page
                std::memcpy(at, p.w.data(), bytes);
                const weight_matrix w{p.type, p.rows, p.cols, at};
                act_rows xq;
                if (uses_int_dot(p.type)) xq.quantize(p.type, p.x.data(), p.T, p.cols, k.quantize_act);
                std::vector<float> y(want.size());
                k.matmul_rows(w, p.x.data(), &xq, p.T, y.data(), 0, p.rows);
                EXPECT_EQ(y, want) << type_name(type) << " cols " << cols << " T " << T;
                munmap(map, span + page);
            }
}

// cpu::matmul shares rows out in pieces that threads take from each other: every
// output is the one matmul_rows gives over all rows at once, for any thread count.
TEST_P(kernels_on, matmul_in_pieces_on_any_threads_equals_one_pass) {
    force_isa(GetParam());
    const kernel_table& k = kernels();
    for (auto [type, rows, cols] : {std::tuple{weight_type::q4_0, 1031, 256}, {weight_type::q8_0, 1031, 256},
                                    {weight_type::f16, 600, 160}, {weight_type::q4_0, 70, 4640},
                                    {weight_type::q4_k, 1031, 256}, {weight_type::q6_k, 70, 2560},
                                    {weight_type::q5_0, 1031, 288}, {weight_type::q5_1, 70, 2592}})
        for (int64_t T : {1, 13}) {
            const problem p = make(type, rows, cols, T, uint32_t(rows + T));
            const auto want = run(k, p);
            for (int threads : {1, 2, 3, 5}) {
                thread_pool pool(threads);
                std::vector<float> y(want.size());
                cpu::matmul(pool, weight_matrix{p.type, p.rows, p.cols, p.w.data()}, p.x.data(), T, y.data());
                EXPECT_EQ(y, want) << type_name(type) << " rows " << rows << " T " << T << " threads " << threads;
            }
        }
    force_isa(std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(isa, kernels_on, ::testing::ValuesIn(runnable()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// parallel_pieces runs every piece once, whoever takes it; while the thread that
// took piece 0 is held up on it, the other threads take all the rest, its own
// share included. (Piece 0 is normally thread 0's first, but on a loaded machine
// the caller may start late and find a thief has already taken it.)
TEST(thread_pool, pieces_cover_the_range_once_and_move_to_idle_threads) {
    for (int threads : {1, 2, 3, 5})
        for (int64_t n : {0, 1, 5, 255, 256, 1000, 4609})
            for (int64_t grain : {1, 7, 256}) {
                thread_pool pool(threads);
                std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                std::atomic<int64_t> done{0};
                std::atomic<bool> rest_done_while_held{false};
                const int64_t pieces = (n + grain - 1) / grain;
                const bool hold = threads > 1 && pieces >= 2 * threads;
                pool.parallel_pieces(n, grain, [&](int64_t b, int64_t e, int i) {
                    ASSERT_TRUE(0 <= b && b < e && e <= n && b % grain == 0 && (e - b == grain || e == n));
                    ASSERT_TRUE(0 <= i && i < threads);
                    if (hold && b == 0) {  // until the others have done everything else (or 10 s)
                        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                        while (done.load() < n - grain && std::chrono::steady_clock::now() < until) std::this_thread::yield();
                        rest_done_while_held = done.load() == n - grain;
                    }
                    for (int64_t j = b; j < e; ++j) hits[size_t(j)]++;
                    done += e - b;
                });
                for (int64_t j = 0; j < n; ++j)
                    ASSERT_EQ(hits[size_t(j)], 1) << "item " << j << " of " << n << ", grain " << grain << ", " << threads << " threads";
                if (hold) {
                    EXPECT_TRUE(rest_done_while_held) << n << " items, grain " << grain << ", " << threads << " threads";
                }
            }
}

TEST(isa, detection_forcing_and_errors) {
    EXPECT_NE(table_for(isa::scalar), nullptr);
    force_isa(isa::scalar);
    EXPECT_EQ(kernels().id, isa::scalar);
    force_isa(std::nullopt);
    EXPECT_EQ(kernels().id, runnable().back());
    EXPECT_THROW(parse_isa("sve"), ncas::error);
    EXPECT_THROW(parse_isa("avx512vbmi"), ncas::error);
    for (isa i : all_isas) {
        EXPECT_EQ(parse_isa(isa_name(i)), i);
        // Above the detected level, or of another architecture (avx2 on ARM64, neon on x86-64): refused.
        if (!cpu_supports(i)) EXPECT_THROW(force_isa(i), ncas::error) << isa_name(i);
        // A multi-arch build carries every variant, so each one this CPU has is really run.
        else EXPECT_NE(table_for(i), nullptr) << isa_name(i);
    }
}

// The ARM64 levels compute each block's integer dot exactly and add it, scaled, in one
// f32 lane per block position (quant_blocks.hpp), whatever instructions form it
// (smlal, sdot/udot, usdot): every ARM level gives the same bits, partial quads and
// groups included. (The x86 levels split a block's dot across lanes differently.)
TEST(isa, arm64_levels_agree_bit_for_bit) {
    std::vector<isa> arm;
    for (isa i : runnable())
        if (arch_of(i) == isa_arch::arm64) arm.push_back(i);
    if (arm.size() < 2) GTEST_SKIP() << "fewer than two ARM64 levels run here";
    uint32_t seed = 300;
    for (weight_type type : {weight_type::q4_0, weight_type::q8_0, weight_type::q4_k, weight_type::q5_k, weight_type::q6_k,
                             weight_type::q5_0, weight_type::q5_1})
        for (int64_t cols : {32, 96, 160, 256, 2560, 2592, 4640})
            for (int64_t T : {1, 3, 6}) {
                if (cols % traits_of(type).block_values) continue;
                const problem p = make(type, 5, cols, T, seed++);
                const auto want = run(*table_for(arm[0]), p);
                for (size_t l = 1; l < arm.size(); ++l)
                    EXPECT_EQ(run(*table_for(arm[l]), p), want)
                        << isa_name(arm[l]) << " against " << isa_name(arm[0]) << " " << type_name(type) << " cols " << cols
                        << " T " << T;
            }
}

}  // namespace

namespace {

// The attention kernels against sums in double, over f32 and f16 caches, head
// widths with and without tails, and 1..3 maps.
TEST_P(kernels_on, attention_scores_and_values_match_the_reference) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(7);
    std::normal_distribution<float> n(0.0f, 1.0f);
    constexpr double eps = 0x1p-24;
    for (weight_type kv : {weight_type::f32, weight_type::f16})
        for (int64_t d : {8, 13, 16, 72, 144, 200})
            for (int64_t rows : {1, 5, 37})
                for (int64_t maps : {1, 2, 3}) {
                    const int64_t width = maps * d + 3;  // a row holds more than this head
                    std::vector<float> src(size_t(rows * width)), kf(src.size()), q(static_cast<size_t>(maps * d)), p(static_cast<size_t>(rows));
                    for (auto& v : src) v = n(rng);
                    for (auto& v : q) v = n(rng);
                    for (auto& v : p) v = n(rng);
                    std::vector<std::byte> cache(size_t(rows * row_bytes(kv, width)));
                    for (int64_t j = 0; j < rows; ++j) {
                        quantize_row(kv, src.data() + j * width, cache.data() + j * row_bytes(kv, width), width);
                        dequantize_row(kv, cache.data() + j * row_bytes(kv, width), kf.data() + j * width, width);
                    }
                    std::vector<float> scores(size_t(maps * rows) + 1, 12345.0f);
                    k.attn_scores(kv, cache.data(), row_bytes(kv, width), rows, q.data(), maps, d, 0.5f, scores.data());
                    EXPECT_EQ(scores.back(), 12345.0f) << "write past the scores";
                    for (int64_t j = 0; j < rows; ++j)
                        for (int64_t m = 0; m < maps; ++m) {
                            double exact = 0, mag = 0;
                            for (int64_t e = 0; e < d; ++e) {
                                const double t = double(kf[size_t(j * width + m * d + e)]) * q[size_t(m * d + e)];
                                exact += t, mag += std::abs(t);
                            }
                            ASSERT_NEAR(scores[size_t(m * rows + j)], 0.5 * exact, 2.0 * double(d + 4) * eps * mag)
                                << isa_name(k.id) << " " << type_name(kv) << " d " << d << " rows " << rows << " map " << m;
                        }
                    const int64_t dv = maps * d;
                    std::vector<float> o(size_t(dv) + 1, 12345.0f);
                    k.attn_values(kv, cache.data(), row_bytes(kv, width), rows, 1, p.data(), 0, dv, o.data(), 0);
                    EXPECT_EQ(o.back(), 12345.0f) << "write past the values";
                    for (int64_t e = 0; e < dv; ++e) {
                        double exact = 0, mag = 0;
                        for (int64_t j = 0; j < rows; ++j) {
                            const double t = double(p[size_t(j)]) * kf[size_t(j * width + e)];
                            exact += t, mag += std::abs(t);
                        }
                        ASSERT_NEAR(o[size_t(e)], exact, 2.0 * double(rows + 4) * eps * mag)
                            << isa_name(k.id) << " " << type_name(kv) << " dv " << dv << " rows " << rows << " e " << e;
                    }
                }
}

// The quantised-cache attention kernels (q8_0, q4_0 read in place) against sums in
// double over the dequantised cache: heads starting inside a block (first not a
// multiple of 32), head widths with and without tails, 1..5 maps (more than one
// pass), row counts across the value kernel's chunk of 16.
TEST_P(kernels_on, quantised_cache_attention_matches_the_reference) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(11);
    std::normal_distribution<float> n(0.0f, 1.0f);
    constexpr double eps = 0x1p-24;
    for (weight_type kv : {weight_type::q8_0, weight_type::q4_0})
        for (int64_t d : {8, 13, 32, 72, 144})
            for (int64_t first : {0, 16, 40})
                for (int64_t rows : {1, 5, 37})
                    for (int64_t maps : {1, 2, 5}) {
                        const int64_t width = kv_row_values(kv, first + maps * d + 3);  // a row holds more than this head
                        const int64_t stride = row_bytes(kv, width);
                        std::vector<float> src(size_t(rows * width)), kf(src.size()), q(static_cast<size_t>(maps * d)), p(static_cast<size_t>(rows));
                        for (auto& v : src) v = n(rng);
                        for (auto& v : q) v = n(rng);
                        for (auto& v : p) v = n(rng);
                        std::vector<std::byte> cache(size_t(rows * stride));
                        for (int64_t j = 0; j < rows; ++j) {
                            quantize_row(kv, src.data() + j * width, cache.data() + j * stride, width);
                            dequantize_row(kv, cache.data() + j * stride, kf.data() + j * width, width);
                        }
                        std::vector<float> scores(size_t(maps * rows) + 1, 12345.0f);
                        k.attn_scores_q(kv, cache.data(), stride, first, rows, q.data(), maps, d, 0.5f, scores.data());
                        EXPECT_EQ(scores.back(), 12345.0f) << "write past the scores";
                        // Levels with integer scores (kv_blocks' idot) quantise each map's query to 16
                        // bits, one scale a map: a score's error grows by at most dq/2 · Σ|k|.
                        for (int64_t j = 0; j < rows; ++j)
                            for (int64_t m = 0; m < maps; ++m) {
                                double exact = 0, mag = 0, kmag = 0, qmax = 0;
                                for (int64_t e = 0; e < d; ++e) {
                                    const double kv_e = kf[size_t(j * width + first + m * d + e)], t = kv_e * q[size_t(m * d + e)];
                                    exact += t, mag += std::abs(t), kmag += std::abs(kv_e);
                                    qmax = std::max(qmax, std::abs(double(q[size_t(m * d + e)])));
                                }
                                const double query_16 = 0.5 * (qmax / 32767.0) * 0.5 * kmag * (1 + 1e-6);
                                ASSERT_NEAR(scores[size_t(m * rows + j)], 0.5 * exact, 2.0 * double(d + 40) * eps * mag + query_16 + 1e-30)
                                    << isa_name(k.id) << " " << type_name(kv) << " d " << d << " first " << first
                                    << " rows " << rows << " map " << m;
                            }
                        const int64_t dv = std::min(maps * d, kv_quant_max_head);  // the kernels' widest head
                        std::vector<float> o(size_t(dv) + 1, 12345.0f);
                        k.attn_values_q(kv, cache.data(), stride, first, rows, 1, p.data(), 0, dv, o.data(), 0);
                        EXPECT_EQ(o.back(), 12345.0f) << "write past the values";
                        for (int64_t e = 0; e < dv; ++e) {
                            double exact = 0, mag = 0;
                            for (int64_t j = 0; j < rows; ++j) {
                                const double t = double(p[size_t(j)]) * kf[size_t(j * width + first + e)];
                                exact += t, mag += std::abs(t);
                            }
                            ASSERT_NEAR(o[size_t(e)], exact, 2.0 * double(rows + 4) * eps * mag + 1e-30)
                                << isa_name(k.id) << " " << type_name(kv) << " dv " << dv << " first " << first
                                << " rows " << rows << " e " << e;
                        }
                    }
}

// A NaN or an infinity in one map's query makes that map's scores NaN or infinite over a quantised
// cache (the integer levels give such a query scale NaN), and leaves the other maps' scores
// as they were; a query of zeros, or one too small for a 16-bit scale, scores zero.
TEST_P(kernels_on, a_nonfinite_query_gives_its_maps_nan_scores) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(19);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (weight_type kv : {weight_type::q8_0, weight_type::q4_0})
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 0.0f, 1e-37f}) {
            const int64_t d = 72, maps = 3, rows = 6, first = 8;
            const int64_t width = kv_row_values(kv, first + maps * d), stride = row_bytes(kv, width);
            std::vector<float> src(size_t(rows * width)), q(size_t(maps * d));
            for (auto& v : src) v = n(rng);
            for (auto& v : q) v = n(rng);
            std::vector<std::byte> cache(size_t(rows * stride));
            for (int64_t j = 0; j < rows; ++j) quantize_row(kv, src.data() + j * width, cache.data() + j * stride, width);
            std::vector<float> clean(size_t(maps * rows)), faulty(clean.size());
            k.attn_scores_q(kv, cache.data(), stride, first, rows, q.data(), maps, d, 0.5f, clean.data());
            if (std::isfinite(bad)) std::fill(q.begin() + d, q.begin() + 2 * d, bad);  // map 1 all zeros / tiny
            else q[size_t(d + 5)] = bad;                                                 // map 1 holds one NaN / inf
            k.attn_scores_q(kv, cache.data(), stride, first, rows, q.data(), maps, d, 0.5f, faulty.data());
            for (int64_t m = 0; m < maps; ++m)
                for (int64_t j = 0; j < rows; ++j) {
                    const float got = faulty[size_t(m * rows + j)];
                    const std::string what = std::string(isa_name(k.id)) + " " + std::string(type_name(kv)) + " bad " +
                                             std::to_string(bad) + " map " + std::to_string(m) + " row " + std::to_string(j);
                    if (m != 1) EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(clean[size_t(m * rows + j)])) << what;
                    else if (!std::isfinite(bad)) EXPECT_FALSE(std::isfinite(got)) << what;
                    else EXPECT_LE(std::abs(got), bad == 0.0f ? 0.0f : 1e-34f) << what;
                }
        }
}

// A row's score over a quantised cache does not depend on the rows scored with it
// (the kernel takes rows four at a time, the rest one by one): decode's chunks and
// prefill's causal rows give each row the same bits.
TEST_P(kernels_on, cache_scores_do_not_depend_on_the_row_grouping) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(13);
    std::normal_distribution<float> n(0.0f, 1.0f);
    // The block caches score groups of rows spread through the range (16 on AVX-512, 4
    // elsewhere) with a padded last group, the float ones four (AVX2) or 16 (AVX-512)
    // consecutive rows: 11 rows are one padded group on AVX-512, 37 two spread groups and a
    // padded one (nine and one elsewhere); head widths with and without a tail.
    for (weight_type kv : {weight_type::q8_0, weight_type::q4_0, weight_type::f32, weight_type::f16})
        for (int64_t d : {13, 72})
            for (int64_t maps : {1, 2})
                for (int64_t rows : {11, 37}) {
                    const bool blocks = kv == weight_type::q8_0 || kv == weight_type::q4_0;
                    const int64_t first = blocks ? 16 : 0;
                    const int64_t width = kv_row_values(kv, first + maps * d + 3), stride = row_bytes(kv, width);
                    std::vector<float> src(size_t(rows * width)), q(size_t(maps * d));
                    for (auto& v : src) v = n(rng);
                    for (auto& v : q) v = n(rng);
                    std::vector<std::byte> cache(size_t(rows * stride));
                    for (int64_t j = 0; j < rows; ++j) quantize_row(kv, src.data() + j * width, cache.data() + j * stride, width);
                    const auto score = [&](const std::byte* at, int64_t nrows, float* out) {
                        if (blocks) k.attn_scores_q(kv, at, stride, first, nrows, q.data(), maps, d, 0.5f, out);
                        else k.attn_scores(kv, at, stride, nrows, q.data(), maps, d, 0.5f, out);
                    };
                    std::vector<float> all(size_t(maps * rows)), one(static_cast<size_t>(maps));
                    score(cache.data(), rows, all.data());
                    for (int64_t j = 0; j < rows; ++j) {
                        score(cache.data() + j * stride, 1, one.data());
                        for (int64_t m = 0; m < maps; ++m)
                            ASSERT_EQ(std::bit_cast<uint32_t>(all[size_t(m * rows + j)]), std::bit_cast<uint32_t>(one[size_t(m)]))
                                << isa_name(k.id) << " " << type_name(kv) << " d " << d << " rows " << rows << " row " << j
                                << " map " << m;
                    }
                }
}

// Decode scores a block of heads in one call (their maps adjacent in a K row) and sums
// their values in one pass over the V rows: each head's scores and sums must be the bits
// of scoring and summing that head alone, for every cache type (quantised heads starting
// inside a block), head widths with and without a SIMD tail, and rows across the
// quantised kernels' steps of 4 and 16; nothing is written between the heads' outputs.
TEST_P(kernels_on, several_heads_in_one_call_give_each_heads_bits) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(17);
    std::normal_distribution<float> n(0.0f, 1.0f);
    const auto bits = [](float x) { return std::bit_cast<uint32_t>(x); };
    for (weight_type kv : {weight_type::f32, weight_type::f16, weight_type::q8_0, weight_type::q4_0})
        for (int64_t d : {13, 72})
            for (int64_t rows : {1, 7, 37}) {
                const bool blocks = kv == weight_type::q8_0 || kv == weight_type::q4_0;
                const int64_t heads = 5, maps = 2, dv = 2 * d, first = blocks ? 16 : 0;
                const int64_t width = kv_row_values(kv, first + heads * std::max(maps * d, dv) + 3), stride = row_bytes(kv, width);
                std::vector<float> src(size_t(rows * width)), q(size_t(heads * maps * d));
                const int64_t ps = rows + 3, os = dv + 5;  // gaps between the heads' weights and sums
                std::vector<float> p(size_t(heads * ps));
                for (auto& v : src) v = n(rng);
                for (auto& v : q) v = n(rng);
                for (auto& v : p) v = n(rng);
                std::vector<std::byte> cache(size_t(rows * stride));
                for (int64_t j = 0; j < rows; ++j) quantize_row(kv, src.data() + j * width, cache.data() + j * stride, width);
                const std::byte* at = blocks ? cache.data() : cache.data() + row_bytes(kv, first);
                std::vector<float> all(size_t(heads * maps * rows)), one(size_t(maps * rows));
                if (blocks) k.attn_scores_q(kv, at, stride, first, rows, q.data(), heads * maps, d, 0.5f, all.data());
                else k.attn_scores(kv, at, stride, rows, q.data(), heads * maps, d, 0.5f, all.data());
                std::vector<float> sums(size_t(heads * os), 12345.0f), alone(static_cast<size_t>(dv));
                if (blocks) k.attn_values_q(kv, at, stride, first, rows, heads, p.data(), ps, dv, sums.data(), os);
                else k.attn_values(kv, at, stride, rows, heads, p.data(), ps, dv, sums.data(), os);
                for (int64_t h = 0; h < heads; ++h) {
                    const std::string what = std::string(isa_name(k.id)) + " " + std::string(type_name(kv)) + " d " +
                                             std::to_string(d) + " rows " + std::to_string(rows) + " head " + std::to_string(h);
                    if (blocks)
                        k.attn_scores_q(kv, at, stride, first + h * maps * d, rows, q.data() + h * maps * d, maps, d, 0.5f, one.data());
                    else
                        k.attn_scores(kv, at + row_bytes(kv, h * maps * d), stride, rows, q.data() + h * maps * d, maps, d, 0.5f,
                                      one.data());
                    for (int64_t i = 0; i < maps * rows; ++i)
                        ASSERT_EQ(bits(all[size_t(h * maps * rows + i)]), bits(one[size_t(i)])) << what << " score " << i;
                    if (blocks) k.attn_values_q(kv, at, stride, first + h * dv, rows, 1, p.data() + h * ps, 0, dv, alone.data(), 0);
                    else k.attn_values(kv, at + row_bytes(kv, h * dv), stride, rows, 1, p.data() + h * ps, 0, dv, alone.data(), 0);
                    for (int64_t e = 0; e < dv; ++e) ASSERT_EQ(bits(sums[size_t(h * os + e)]), bits(alone[size_t(e)])) << what << " e " << e;
                    for (int64_t e = dv; e < os; ++e) ASSERT_EQ(sums[size_t(h * os + e)], 12345.0f) << what << ": written between heads";
                }
            }
}

// A prompt's block of queries over a cache of each type (attn_scores_n / attn_values_n, one
// call, rows read in steps of 16 for all the queries): each query's scores and sums must be
// the bits of the one-query kernels over its own rows (causal: rows rising by one a query,
// across the steps of 4 and 16, and a chunk of 256), the head starting inside a block; a
// query with a NaN keeps its NaN to itself, and nothing is written past a query's rows.
TEST_P(kernels_on, a_block_of_queries_gives_each_querys_bits) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(19);
    std::normal_distribution<float> n(0.0f, 1.0f);
    const auto bits = [](float x) { return std::bit_cast<uint32_t>(x); };
    for (weight_type kv : {weight_type::f32, weight_type::f16, weight_type::q8_0, weight_type::q4_0})
        for (int64_t d : {13, 72})
            for (int64_t base : {1, 30, 241}) {
                const bool blocks = traits_of(kv).block_values > 1;
                const int64_t nq = 16, maps = 2, dv = 2 * d, first = 16 + 3 * d, rows = base + nq - 1;
                const int64_t width = kv_row_values(kv, first + std::max(maps * d, dv) + 40), stride = row_bytes(kv, width);
                std::vector<float> src(size_t(rows * width)), q(size_t(nq * (maps * d + 5))), p(size_t(nq * rows));
                for (auto& v : src) v = n(rng);
                for (auto& v : q) v = n(rng);
                for (auto& v : p) v = n(rng);
                q[size_t(5 * (maps * d + 5) + 1)] = std::numeric_limits<float>::quiet_NaN();  // query 5's first map
                std::vector<std::byte> cache(size_t(rows * stride));
                for (int64_t j = 0; j < rows; ++j) quantize_row(kv, src.data() + j * width, cache.data() + j * stride, width);
                const int64_t qs = maps * d + 5;
                std::vector<int64_t> nr(static_cast<size_t>(nq));
                std::vector<std::vector<float>> sc(static_cast<size_t>(nq)), sums(static_cast<size_t>(nq));
                std::vector<float*> sp(static_cast<size_t>(nq)), op(static_cast<size_t>(nq));
                std::vector<const float*> pp(static_cast<size_t>(nq));
                for (int64_t i = 0; i < nq; ++i) {
                    nr[size_t(i)] = base + i;
                    sc[size_t(i)].assign(size_t(maps * nr[size_t(i)] + 4), 12345.0f);
                    sums[size_t(i)].assign(size_t(dv + 4), 12345.0f);
                    sp[size_t(i)] = sc[size_t(i)].data(), op[size_t(i)] = sums[size_t(i)].data(), pp[size_t(i)] = p.data() + i * rows;
                }
                k.attn_scores_n(kv, cache.data(), stride, first, nq, nr.data(), q.data(), qs, maps, d, 0.5f, sp.data());
                k.attn_values_n(kv, cache.data(), stride, first, nq, nr.data(), pp.data(), dv, op.data());
                std::vector<float> one(size_t(maps * rows)), alone(static_cast<size_t>(dv));
                for (int64_t i = 0; i < nq; ++i) {
                    const int64_t r = nr[size_t(i)];
                    const std::string what = std::string(isa_name(k.id)) + " " + std::string(type_name(kv)) + " d " +
                                             std::to_string(d) + " rows " + std::to_string(r) + " query " + std::to_string(i);
                    if (blocks) k.attn_scores_q(kv, cache.data(), stride, first, r, q.data() + i * qs, maps, d, 0.5f, one.data());
                    else k.attn_scores(kv, cache.data() + row_bytes(kv, first), stride, r, q.data() + i * qs, maps, d, 0.5f, one.data());
                    for (int64_t e = 0; e < maps * r; ++e) ASSERT_EQ(bits(sc[size_t(i)][size_t(e)]), bits(one[size_t(e)])) << what << " score " << e;
                    for (int64_t e = 0; e < r; ++e) ASSERT_EQ(std::isnan(sc[size_t(i)][size_t(e)]), i == 5) << what << " row " << e;
                    for (int64_t e = maps * r; e < maps * r + 4; ++e) ASSERT_EQ(sc[size_t(i)][size_t(e)], 12345.0f) << what << ": written past";
                    if (blocks) k.attn_values_q(kv, cache.data(), stride, first, r, 1, pp[size_t(i)], 0, dv, alone.data(), 0);
                    else k.attn_values(kv, cache.data() + row_bytes(kv, first), stride, r, 1, pp[size_t(i)], 0, dv, alone.data(), 0);
                    for (int64_t e = 0; e < dv; ++e) ASSERT_EQ(bits(sums[size_t(i)][size_t(e)]), bits(alone[size_t(e)])) << what << " e " << e;
                    for (int64_t e = dv; e < dv + 4; ++e) ASSERT_EQ(sums[size_t(i)][size_t(e)], 12345.0f) << what << ": written past";
                }
            }
}

}  // namespace

namespace {

TEST_P(kernels_on, ffn_activations_match_the_scalar_functions) {
    const kernel_table& k = *table_for(GetParam());
    std::vector<float> x, g;
    for (int i = -2000; i <= 2000; ++i) x.push_back(float(i) / 100.0f), g.push_back(float(i % 97) / 7.0f);
    x.insert(x.end(), {0.0f, -0.0f, 1e-30f, -1e-30f, 80.0f, -80.0f, 1e5f, -1e5f});
    g.insert(g.end(), {0.0f, -0.0f, 1e-30f, -1e-30f, 80.0f, -80.0f, 1e5f, -1e5f});
    std::vector<float> gl = x, up = x;
    k.gelu(gl.data(), int64_t(gl.size()) - 1);  // an odd length: the tail too
    k.silu_mul(up.data(), g.data(), int64_t(up.size()) - 1);
    for (size_t i = 0; i + 1 < x.size(); ++i) {
        const double xe = x[i], ge = g[i];
        const double gelu = 0.5 * xe * (1.0 + std::tanh(0.7978845608028654 * (xe + 0.044715 * xe * xe * xe)));
        const double silu = xe * ge / (1.0 + std::exp(-ge));
        ASSERT_NEAR(gl[i], gelu, 3e-7 * (std::abs(gelu) + std::abs(xe)))  // 1 + tanh cancels for x ≪ 0: error ~ε·|x|
            << isa_name(k.id) << " gelu(" << xe << ")";
        ASSERT_NEAR(up[i], silu, 4e-7 * (std::abs(silu) + 1e-30)) << isa_name(k.id) << " " << xe << "·silu(" << ge << ")";
    }
    EXPECT_EQ(gl.back(), x.back()) << "wrote past n";
    EXPECT_EQ(up.back(), x.back()) << "wrote past n";
}

}  // namespace

namespace {

TEST_P(kernels_on, activation_quantisation_gives_the_reference_integers) {
    const kernel_table& k = *table_for(GetParam());
    for (weight_type type : {weight_type::q8_0, weight_type::q4_0, weight_type::q4_k, weight_type::q5_k, weight_type::q6_k,
                             weight_type::q5_0, weight_type::q5_1})
        for (int64_t cols : {32, 64, 96, 128, 160, 256, 2560, 2592}) {
            if (cols % traits_of(type).block_values) continue;
            const problem p = make(type, 1, cols, 3, uint32_t(cols));
            act_rows a, b;
            a.quantize(type, p.x.data(), p.T, cols, k.quantize_act);
            b.quantize(type, p.x.data(), p.T, cols);
            const int64_t nb = cols / quant_block, places = type == weight_type::q4_0 ? (nb + 3) / 4 * 128 : cols;
            for (int64_t t = 0; t < p.T; ++t) {
                EXPECT_EQ(a.d(t), b.d(t));
                for (int64_t i = 0; i < places; ++i) ASSERT_EQ(a.q(t)[i], b.q(t)[i]) << type_name(type) << " " << cols << " at " << i;
                if (type == weight_type::q4_0) {
                    for (int64_t i = 0; i < (nb + 3) / 4 * 16; ++i) ASSERT_EQ(a.corr(t)[i], b.corr(t)[i]) << cols << " lane " << i;
                }
                if (act_sixteens(type))  // the sums of 16, against the integers themselves
                    for (int64_t i = 0; i < nb * 2; ++i) {
                        int32_t sum = 0;
                        for (int e = 0; e < 16; ++e) sum += b.q(t)[16 * i + e];
                        ASSERT_EQ(b.corr(t)[i], sum) << cols << " sum " << i;
                        ASSERT_EQ(a.corr(t)[i], sum) << type_name(type) << " " << cols << " sum " << i;
                    }
            }
        }
}

}  // namespace

namespace {

// A token row with a NaN or an infinity (a broken weight upstream) gives NaN outputs
// on every kernel, never finite numbers from undefined float-to-integer conversions;
// the other rows of the batch are untouched.
TEST_P(kernels_on, a_nonfinite_activation_row_gives_nan_outputs) {
    const kernel_table& k = *table_for(GetParam());
    for (weight_type type : {weight_type::q8_0, weight_type::q4_0, weight_type::f16, weight_type::f32, weight_type::q4_k,
                             weight_type::q5_k, weight_type::q6_k, weight_type::q5_0, weight_type::q5_1})
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
            problem p = make(type, 8, is_k_quant(type) ? 512 : 160, 3, 5);
            const std::vector<float> clean = run(k, p);
            p.x[size_t(1 * p.cols + 37)] = bad;  // token 1
            const std::vector<float> y = run(k, p);
            for (int64_t t = 0; t < p.T; ++t)
                for (int64_t r = 0; r < p.rows; ++r) {
                    const float v = y[size_t(t * p.rows + r)];
                    if (t == 1) EXPECT_TRUE(std::isnan(v) || (std::isinf(v) && !uses_int_dot(type)))
                        << isa_name(k.id) << " " << type_name(type) << " row " << r << " gave " << v;
                    else EXPECT_EQ(v, clean[size_t(t * p.rows + r)]) << isa_name(k.id) << " " << type_name(type);
                }
        }
}

// A token row too small for a finite inverse scale (max|x| < 32767/FLT_MAX ≈ 9.6e-35) is
// zeros with scale 0 on every table, the reference included (x·(1/d) was ±inf, or NaN for a
// zero, and undefined as int16; found by the GGUF fuzz harness); a row just above the bound
// and the other rows of the batch are quantised as before.
TEST_P(kernels_on, an_activation_row_too_small_for_its_scale_is_zero) {
    const kernel_table& k = *table_for(GetParam());
    for (weight_type type : {weight_type::q8_0, weight_type::q4_0, weight_type::q4_k, weight_type::q5_k, weight_type::q6_k,
                             weight_type::q5_0, weight_type::q5_1})
        for (int64_t cols : {160, 256, 2560, 2592}) {
            if (cols % traits_of(type).block_values) continue;
            problem p = make(type, 8, cols, 3, 21);
            for (int64_t i = 0; i < cols; ++i) p.x[size_t(cols + i)] *= 1e-38f;     // token 1: below the bound
            for (int64_t i = 0; i < cols; ++i) p.x[size_t(2 * cols + i)] *= 1e-33f; // token 2: above it
            p.x[size_t(cols + 3)] = 0.0f;
            act_rows a, ref;
            a.quantize(type, p.x.data(), p.T, cols, k.quantize_act);
            ref.quantize(type, p.x.data(), p.T, cols);
            const int64_t nb = cols / quant_block, places = type == weight_type::q4_0 ? (nb + 3) / 4 * 128 : cols;
            for (int64_t t = 0; t < p.T; ++t) {
                EXPECT_EQ(a.d(t), ref.d(t)) << isa_name(k.id) << " " << type_name(type) << " token " << t;
                for (int64_t i = 0; i < places; ++i)
                    ASSERT_EQ(a.q(t)[i], ref.q(t)[i]) << isa_name(k.id) << " " << type_name(type) << " token " << t << " at " << i;
                if (type == weight_type::q4_0) {
                    for (int64_t i = 0; i < (nb + 3) / 4 * 16; ++i) ASSERT_EQ(a.corr(t)[i], ref.corr(t)[i]) << "lane " << i;
                }
                if (act_sixteens(type)) {
                    for (int64_t i = 0; i < nb * 2; ++i) ASSERT_EQ(a.corr(t)[i], ref.corr(t)[i]) << "sum " << i;
                }
            }
            EXPECT_EQ(a.d(1), 0.0f);
            for (int64_t i = 0; i < places; ++i) ASSERT_EQ(a.q(1)[i], 0) << isa_name(k.id) << " at " << i;
            EXPECT_GT(a.d(2), 0.0f);
            const std::vector<float> y = run(k, p);
            for (int64_t r = 0; r < p.rows; ++r) {
                EXPECT_EQ(y[size_t(p.rows + r)], 0.0f) << isa_name(k.id) << " " << type_name(type) << " row " << r;
                EXPECT_NE(y[size_t(2 * p.rows + r)], 0.0f) << isa_name(k.id) << " " << type_name(type) << " row " << r;
            }
        }
}

TEST_P(kernels_on, rms_norm_and_softmax_match_double) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(11);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int64_t len : {1, 7, 16, 33, 64, 100, 2592, 10007}) {
        std::vector<float> x(static_cast<size_t>(len)), w(x.size());
        for (auto& v : x) v = n(rng) * 3.0f;
        for (auto& v : w) v = 1.0f + 0.1f * n(rng);
        std::vector<float> y(x.size() + 1, 12345.0f);
        k.rms_norm(x.data(), w.data(), y.data(), len, 1e-5f);
        double ss = 0;
        for (float v : x) ss += double(v) * v;
        const double scale = 1.0 / std::sqrt(ss / double(len) + 1e-5);
        for (int64_t i = 0; i < len; ++i) {
            const double want = x[size_t(i)] * scale * w[size_t(i)];
            ASSERT_NEAR(y[size_t(i)], want, 4e-6 * std::abs(want) + 1e-30) << isa_name(k.id) << " rms_norm n " << len << " at " << i;
        }
        EXPECT_EQ(y.back(), 12345.0f) << "rms_norm wrote past n";

        std::vector<float> s = x;
        s.push_back(12345.0f);
        if (len > 3) s[1] = -std::numeric_limits<float>::infinity();  // a masked score
        std::vector<double> e(x.size());
        double m = -1e300, sum = 0;
        for (int64_t i = 0; i < len; ++i) m = std::max(m, double(s[size_t(i)]));
        for (int64_t i = 0; i < len; ++i) sum += e[size_t(i)] = std::exp(double(s[size_t(i)]) - m);
        const std::vector<float> in = s;
        k.softmax(s.data(), len);
        double total = 0;
        for (int64_t i = 0; i < len; ++i) {
            // exp(x − m) in f32: the argument's rounding gives a relative error of ε·|x − m|;
            // the f32 sum of n terms adds at most n·u (u = 2⁻²⁴) relative.
            const double want = e[size_t(i)] / sum, arg = std::abs(double(in[size_t(i)]) - m);
            ASSERT_NEAR(s[size_t(i)], want, (2.4e-7 * (std::isfinite(arg) ? arg + 4 : 0) + 0x1p-24 * double(len)) * want + 1e-37)
                << isa_name(k.id) << " softmax n " << len << " at " << i;
            total += s[size_t(i)];
        }
        EXPECT_NEAR(total, 1.0, 1e-5) << isa_name(k.id) << " softmax n " << len;
        EXPECT_EQ(s.back(), 12345.0f) << "softmax wrote past n";
    }
}

}  // namespace

namespace {

TEST_P(kernels_on, rope_matches_double) {
    const kernel_table& k = *table_for(GetParam());
    std::mt19937 rng(13);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::uniform_real_distribution<float> angle(-3.2f, 3.2f);
    for (int64_t d : {2, 6, 8, 16, 24, 72, 128, 130}) {
        std::vector<float> v(static_cast<size_t>(d) + 1, 12345.0f), c(static_cast<size_t>(d / 2)), s(c.size());
        for (int64_t i = 0; i < d; ++i) v[size_t(i)] = n(rng);
        for (size_t i = 0; i < c.size(); ++i) {
            const float a = angle(rng);
            c[i] = std::cos(a), s[i] = std::sin(a);
        }
        const std::vector<float> in = v;
        k.rope(v.data(), c.data(), s.data(), d);
        for (int64_t i = 0; i < d / 2; ++i) {
            const double a = in[size_t(2 * i)], b = in[size_t(2 * i + 1)], ci = c[size_t(i)], si = s[size_t(i)];
            const double tol = 2.4e-7 * (std::abs(a) + std::abs(b));
            ASSERT_NEAR(v[size_t(2 * i)], a * ci - b * si, tol) << isa_name(k.id) << " d " << d << " pair " << i;
            ASSERT_NEAR(v[size_t(2 * i + 1)], a * si + b * ci, tol) << isa_name(k.id) << " d " << d << " pair " << i;
        }
        EXPECT_EQ(v.back(), 12345.0f) << "rope wrote past d";
    }
}

}  // namespace
