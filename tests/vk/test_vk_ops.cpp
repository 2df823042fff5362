// Every Vulkan kernel against the CPU engine's own code on random inputs, under
// every device configuration (best: subgroups + 16/8-bit storage; plain:
// shared-memory reductions + word loads; wave8: a requested subgroup size),
// with the validation layer watching and sentinels after every output.
#include <numeric>

#include "ncas/cpu/forward.hpp"
#include "ncas/vk/weights.hpp"
#include "vk_support.hpp"

namespace {

using namespace vk_test;
namespace vk = ncas::vk;
using ncas::weight_type;

class ops : public config_fixture {};

// Quantised random matrix [rows, cols] of type t, as bytes.
std::vector<std::byte> random_matrix(weight_type t, int64_t rows, int64_t cols, uint32_t seed) {
    const auto f = random_floats(size_t(rows * cols), seed, 0.5f);
    std::vector<std::byte> bytes(size_t(rows * ncas::row_bytes(t, cols)));
    for (int64_t r = 0; r < rows; ++r)
        ncas::quantize_row(t, f.data() + r * cols, bytes.data() + r * ncas::row_bytes(t, cols), cols);
    return bytes;
}

// A matrix uploaded at a byte offset (as an expert slab inside a tensor is).
struct device_matrix {
    std::unique_ptr<vk::buffer> buf;
    vk::gpu_matrix m;
    device_matrix(const vk::context& ctx, weight_type t, int64_t rows, int64_t cols, const std::vector<std::byte>& bytes,
                  uint32_t offset = 0) {
        buf = std::make_unique<vk::buffer>(ctx, bytes.size() + offset);
        buf->upload(bytes.data(), bytes.size(), offset);
        m = {t, rows, cols, *buf, offset};
    }
};

// The reference product: weights dequantised block by block, activations in f32
// (cpu::dot_row; the CPU backend's fast path may quantise activations instead).
void reference_matmul(const ncas::weight_matrix& w, const float* x, int64_t T, float* y) {
    for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] = ncas::cpu::dot_row(w.type, w.row(r), x + t * w.cols, w.cols);
}

ncas::weight_matrix cpu_matrix(weight_type t, int64_t rows, int64_t cols, const std::vector<std::byte>& bytes) {
    return {t, rows, cols, bytes.data()};
}

// ---- matrix products ---------------------------------------------------------------

struct matmul_case {
    weight_type type;
    int64_t rows, cols, n;  // n slots: 1 = decode (matvec), more = prefill (tiled)
};

class matmul_ops : public ops {};

TEST_P(matmul_ops, every_type_decode_and_prefill_match_cpu) {
    for (weight_type t : {weight_type::f32, weight_type::f16, weight_type::bf16, weight_type::q8_0, weight_type::q4_0})
        for (matmul_case c : {matmul_case{t, 37, 96, 1}, matmul_case{t, 70, 64, 5}, matmul_case{t, 33, 128, 19}}) {
            SCOPED_TRACE(std::string(ncas::type_name(t)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                         " n=" + std::to_string(c.n));
            const auto w = random_matrix(t, c.rows, c.cols, 1);
            const auto x = random_floats(size_t(c.n * c.cols), 2);
            std::vector<float> want(size_t(c.n * c.rows));
            reference_matmul(cpu_matrix(t, c.rows, c.cols, w), x.data(), c.n, want.data());

            device_matrix dw(*ctx, t, c.rows, c.cols, w, 6);  // a 2-byte-aligned offset, like a Q slab
            if (traits_of(t).block_values == 1) dw = device_matrix(*ctx, t, c.rows, c.cols, w, 8);
            test_buffer dx(*ctx, x), dy(*ctx, std::vector<float>(want.size(), -1.0f)), ctrl(*ctx, std::vector<uint32_t>(4));
            run(ctx, [&](vk::recorder& r) { vk::ops::matmul(r, dw.m, dx, dy, ctrl, {.n_max = uint32_t(c.n)}); });
            EXPECT_PARITY(dy.take(), want, 2e-6);
        }
}

// ---- K-quants (super-blocks of 256) ----------------------------------------------

constexpr weight_type k_types[] = {weight_type::q4_k, weight_type::q5_k, weight_type::q6_k};

// The K types' reference: the row dequantised by the CPU's dequantize_row, the dot product in double.
std::vector<float> reference_k(weight_type t, int64_t rows, int64_t cols, const std::byte* w, const float* x, int64_t n) {
    std::vector<float> row(static_cast<size_t>(cols)), y(static_cast<size_t>(n * rows));
    for (int64_t r = 0; r < rows; ++r) {
        ncas::dequantize_row(t, w + r * ncas::row_bytes(t, cols), row.data(), cols);
        for (int64_t s = 0; s < n; ++s) {
            double acc = 0;
            for (int64_t i = 0; i < cols; ++i) acc += double(row[size_t(i)]) * double(x[s * cols + i]);
            y[size_t(s * rows + r)] = float(acc);
        }
    }
    return y;
}

TEST_P(matmul_ops, k_quants_decode_and_prefill_match_dequantised_reference) {
    // several super-blocks a row, odd row counts, a tile's rows and slots left over, 2- and 4-byte-aligned rows
    for (weight_type t : k_types)
        for (matmul_case c : {matmul_case{t, 37, 512, 1}, matmul_case{t, 3, 1280, 1}, matmul_case{t, 33, 768, 5},
                              matmul_case{t, 45, 256, 19}}) {
            const auto w = random_matrix(t, c.rows, c.cols, 11);
            const auto x = random_floats(size_t(c.n * c.cols), 12);
            const auto want = reference_k(t, c.rows, c.cols, w.data(), x.data(), c.n);
            for (uint32_t offset : {0u, 6u}) {
                SCOPED_TRACE(std::string(ncas::type_name(t)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                             " n=" + std::to_string(c.n) + " at byte " + std::to_string(offset));
                device_matrix dw(*ctx, t, c.rows, c.cols, w, offset);
                test_buffer dx(*ctx, x), dy(*ctx, std::vector<float>(want.size(), -1.0f)), ctrl(*ctx, std::vector<uint32_t>(4));
                run(ctx, [&](vk::recorder& r) { vk::ops::matmul(r, dw.m, dx, dy, ctrl, {.n_max = uint32_t(c.n)}); });
                EXPECT_PARITY(dy.take(), want, 2e-6);
            }
        }
}

// ---- Q5_0 / Q5_1 (blocks of 32, 5-bit quants) -----------------------------------------

constexpr weight_type q5_types[] = {weight_type::q5_0, weight_type::q5_1};

TEST_P(matmul_ops, q5_decode_and_prefill_match_dequantised_reference) {
    // 1 to 81 blocks a row (the 5th bits of both halves of each block), odd row counts, a tile's
    // rows and slots left over, 2- and 4-byte-aligned rows (Q5_0 blocks are 22 bytes)
    for (weight_type t : q5_types)
        for (matmul_case c : {matmul_case{t, 37, 96, 1}, matmul_case{t, 3, 2592, 1}, matmul_case{t, 33, 160, 5},
                              matmul_case{t, 45, 32, 19}, matmul_case{t, 70, 64, 5}}) {
            const auto w = random_matrix(t, c.rows, c.cols, 21);
            const auto x = random_floats(size_t(c.n * c.cols), 22);
            const auto want = reference_k(t, c.rows, c.cols, w.data(), x.data(), c.n);
            for (uint32_t offset : {0u, 6u}) {
                SCOPED_TRACE(std::string(ncas::type_name(t)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) +
                             " n=" + std::to_string(c.n) + " at byte " + std::to_string(offset));
                device_matrix dw(*ctx, t, c.rows, c.cols, w, offset);
                test_buffer dx(*ctx, x), dy(*ctx, std::vector<float>(want.size(), -1.0f)), ctrl(*ctx, std::vector<uint32_t>(4));
                run(ctx, [&](vk::recorder& r) { vk::ops::matmul(r, dw.m, dx, dy, ctrl, {.n_max = uint32_t(c.n)}); });
                EXPECT_PARITY(dy.take(), want, 2e-6);
            }
        }
}

TEST_P(matmul_ops, k_quant_expert_slabs_gathered_scaled_and_accumulated) {
    // An expert tensor as gpu_weights uploads it: E slabs in one buffer, each bound at
    // its offset (Q6_K slabs of 5 rows of 512 are 2,100 bytes, Q5_0's 1,760: every other
    // Q6_K one 2-byte aligned). Each expert adds scale · W_e·x[row] into its slots' rows of y,
    // decode and prefill.
    const int64_t E = 3, rows = 5, cols = 512;
    for (weight_type t : {weight_type::q4_k, weight_type::q5_k, weight_type::q6_k, weight_type::q5_0, weight_type::q5_1})
        for (uint32_t n_max : {1u, 4u}) {
            SCOPED_TRACE(std::string(ncas::type_name(t)) + " n_max=" + std::to_string(n_max));
            const auto w = random_matrix(t, E * rows, cols, 13);
            const uint64_t slab = uint64_t(rows * ncas::row_bytes(t, cols));
            const auto x = random_floats(size_t(4 * cols), 14);
            const auto y0 = random_floats(size_t(4 * rows), 15);
            // per expert: ctrl = count, x rows[4], y rows[4], scales[4]
            const std::vector<std::vector<uint32_t>> x_rows{{2, 0, 3, 1}, {1, 1, 0, 2}, {3, 2, 1, 0}};
            const std::vector<std::vector<uint32_t>> y_rows{{0, 3, 1, 2}, {2, 0, 3, 1}, {1, 2, 0, 3}};
            const std::vector<float> scale{0.75f, -1.5f, 2.0f, 0.25f};
            std::vector<float> want = y0;
            std::vector<uint32_t> words;
            const uint32_t active = std::min(n_max, 3u);
            for (int64_t e = 0; e < E; ++e) {
                const auto part = reference_k(t, rows, cols, w.data() + e * slab, x.data(), 4);  // [4 slots of x, rows]
                for (uint32_t s = 0; s < active; ++s)
                    for (int64_t r = 0; r < rows; ++r)
                        want[size_t(y_rows[size_t(e)][s] * rows + r)] += scale[s] * part[size_t(x_rows[size_t(e)][s] * rows + r)];
                words.push_back(active);
                words.insert(words.end(), x_rows[size_t(e)].begin(), x_rows[size_t(e)].end());
                words.insert(words.end(), y_rows[size_t(e)].begin(), y_rows[size_t(e)].end());
                for (float f : scale) words.push_back(std::bit_cast<uint32_t>(f));
            }
            vk::buffer storage(*ctx, w.size());
            storage.upload(w.data(), w.size());
            test_buffer dx(*ctx, x), dy(*ctx, y0), ctrl(*ctx, words);
            run(ctx, [&](vk::recorder& r) {
                for (int64_t e = 0; e < E; ++e) {
                    vk::gpu_matrix m{t, rows, cols, {}, 0};
                    m.view = vk::bind_range(*ctx, storage, slab * uint64_t(e), slab, m.offset, "experts");
                    const uint32_t at = uint32_t(e * 13);
                    vk::ops::matmul(r, m, dx, dy, ctrl, {.n_max = n_max, .count_at = at, .x_index_at = at + 1,
                                                         .y_index_at = at + 5, .scale_at = at + 9, .accumulate = true});
                }
            });
            EXPECT_PARITY(dy.take(), want, 2e-6);
        }
}

TEST(vk_weights, k_quant_rows_must_be_whole_super_blocks) {
    for (weight_type t : k_types) {
        EXPECT_NO_THROW(vk::check_row_shape(t, 512, "blk.0.attn_q"));
        try {
            vk::check_row_shape(t, 384, "blk.0.attn_q");  // a multiple of 32, not of 256
            ADD_FAILURE() << "rows of 384 " << ncas::type_name(t) << " values accepted";
        } catch (const ncas::error& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find("'blk.0.attn_q' (" + std::string(ncas::type_name(t)) + ") has rows of 384"), std::string::npos) << m;
            EXPECT_NE(m.find("of 256"), std::string::npos) << m;
        }
    }
    EXPECT_NO_THROW(vk::check_row_shape(weight_type::q4_0, 384, "x"));
}

TEST_P(matmul_ops, gathered_slots_scaled_and_accumulated) {
    // slots read rows {3, 0, 2} of x and add scale · W·x into rows {1, 4, 0} of y;
    // only the first ctrl[0] = 3 of the 4 dispatched slots are active.
    const int64_t rows = 40, cols = 64;
    for (uint32_t n_max : {1u, 4u}) {
        const auto w = random_matrix(weight_type::q8_0, rows, cols, 3);
        const auto x = random_floats(size_t(5 * cols), 4);
        const auto y0 = random_floats(size_t(5 * rows), 5);
        const uint32_t active = std::min(n_max, 3u);
        const std::vector<uint32_t> x_rows{3, 0, 2, 9}, y_rows{1, 4, 0, 9};
        const std::vector<float> scale{0.5f, -2.0f, 1.25f, 7.0f};
        std::vector<uint32_t> ctrl_words{active};
        ctrl_words.insert(ctrl_words.end(), x_rows.begin(), x_rows.end());
        ctrl_words.insert(ctrl_words.end(), y_rows.begin(), y_rows.end());
        for (float s : scale) ctrl_words.push_back(std::bit_cast<uint32_t>(s));

        std::vector<float> want = y0;
        std::vector<float> tmp(static_cast<size_t>(rows));
        for (uint32_t s = 0; s < active; ++s) {
            reference_matmul(cpu_matrix(weight_type::q8_0, rows, cols, w), x.data() + x_rows[s] * cols, 1, tmp.data());
            for (int64_t r = 0; r < rows; ++r) want[size_t(y_rows[s] * rows + r)] += scale[s] * tmp[size_t(r)];
        }
        device_matrix dw(*ctx, weight_type::q8_0, rows, cols, w);
        test_buffer dx(*ctx, x), dy(*ctx, y0), ctrl(*ctx, ctrl_words);
        run(ctx, [&](vk::recorder& r) {
            vk::ops::matmul(r, dw.m, dx, dy, ctrl, {.n_max = n_max, .count_at = 0, .x_index_at = 1, .y_index_at = 5,
                                                    .scale_at = 9, .accumulate = true});
        });
        EXPECT_PARITY(dy.take(), want, 2e-6);
    }
}

// ---- row operations ----------------------------------------------------------------

TEST_P(ops, rms_norm_gathers_rows) {
    const uint32_t n = 96;
    const auto x = random_floats(5 * n, 6), w = random_floats(n, 7);
    const std::vector<uint32_t> ctrl_words{2, 4, 1};  // 2 active slots reading rows 4 and 1
    std::vector<float> want(3 * n, 0.0f);
    ncas::cpu::rms_norm(x.data() + 4 * n, w.data(), want.data(), n, 1e-5f);
    ncas::cpu::rms_norm(x.data() + 1 * n, w.data(), want.data() + n, n, 1e-5f);
    test_buffer dx(*ctx, x), dw(*ctx, w), dy(*ctx, std::vector<float>(3 * n, 0.0f)), ctrl(*ctx, ctrl_words);
    run(ctx, [&](vk::recorder& r) { vk::ops::rms_norm(r, dx, dw, dy, ctrl, n, 1e-5f, 3, 0, 1); });
    EXPECT_PARITY(dy.take(), want, 1e-6);
}

TEST_P(ops, embed_dequantises_token_rows) {
    const int64_t D_plain = 64, V = 10;
    for (weight_type t : {weight_type::f32, weight_type::f16, weight_type::bf16, weight_type::q8_0, weight_type::q4_0,
                          weight_type::q4_k, weight_type::q5_k, weight_type::q6_k, weight_type::q5_0, weight_type::q5_1}) {
        SCOPED_TRACE(std::string(ncas::type_name(t)));
        const int64_t D = ncas::is_k_quant(t) ? 512 : D_plain;
        const auto table = random_matrix(t, V, D, 8);
        const std::vector<uint32_t> tokens{7, 0, 9, 7};
        std::vector<float> want(tokens.size() * D);
        for (size_t i = 0; i < tokens.size(); ++i)
            ncas::dequantize_row(t, table.data() + tokens[i] * ncas::row_bytes(t, D), want.data() + i * D, D);
        device_matrix dt(*ctx, t, V, D, table);
        test_buffer dx(*ctx, std::vector<float>(want.size())), ctrl(*ctx, tokens);
        run(ctx, [&](vk::recorder& r) { vk::ops::embed(r, dt.m, dx, ctrl, uint32_t(tokens.size()), 0); });
        EXPECT_EQ(dx.take(), want);  // dequantisation is exact
    }
}

TEST_P(ops, k_quant_upload_refuses_part_super_blocks_and_embeds_whole_ones) {
    // gpu_weights as a session builds it: a K-type token_embd of 384-value rows is refused by
    // name; one of 512 is uploaded and its rows come back as dequantize_row gives them.
    for (weight_type t : k_types) {
        SCOPED_TRACE(std::string(ncas::type_name(t)));
        ncas::model_config c;
        ncas::model_weights w;
        w.output_norm.assign(512, 1.0f);
        const auto part = random_matrix(t, 4, 256, 16);  // as many bytes as 4 rows of 384 would have
        w.token_embd = ncas::weight_matrix{t, 4, 384, part.data()};  // as if a file had rows of 384
        w.output = w.token_embd;
        const std::string e = [&] {
            try {
                vk::gpu_weights g(*ctx, c, w);
            } catch (const ncas::error& x) {
                return std::string(x.what());
            }
            return std::string();
        }();
        EXPECT_NE(e.find("'token_embd' (" + std::string(ncas::type_name(t)) + ") has rows of 384"), std::string::npos) << e;

        const int64_t D = 512, V = 3;
        const auto table = random_matrix(t, V, D, 17);
        w.token_embd = w.output = ncas::weight_matrix{t, V, D, table.data()};
        vk::gpu_weights g(*ctx, c, w);
        const std::vector<uint32_t> tokens{2, 0};
        std::vector<float> want(tokens.size() * D);
        for (size_t i = 0; i < tokens.size(); ++i)
            ncas::dequantize_row(t, table.data() + tokens[i] * ncas::row_bytes(t, D), want.data() + i * D, D);
        test_buffer dx(*ctx, std::vector<float>(want.size())), ctrl(*ctx, tokens);
        run(ctx, [&](vk::recorder& r) { vk::ops::embed(r, g.token_embd, dx, ctrl, uint32_t(tokens.size()), 0); });
        EXPECT_EQ(dx.take(), want);
    }
}

TEST_P(ops, ffn_activations) {
    const uint32_t F = 100, n = 3;
    const auto up = random_floats(n * F, 9, 2.0f), gate = random_floats(n * F, 10, 2.0f);
    for (bool swiglu : {false, true}) {
        std::vector<float> want = up;
        for (size_t i = 0; i < 2 * F; ++i)  // the count says 2 active slots: the third stays
            want[i] = swiglu ? ncas::cpu::silu(gate[i]) * up[i] : ncas::cpu::gelu_tanh(up[i]);
        test_buffer du(*ctx, up), dg(*ctx, gate), ctrl(*ctx, std::vector<uint32_t>{2});
        run(ctx, [&](vk::recorder& r) { vk::ops::ffn_act(r, du, dg, ctrl, F, swiglu, n, 0); });
        EXPECT_PARITY(du.take(), want, 1e-6);
    }
}

// ---- Mixture-of-Depths and the residual stream ----------------------------------------

TEST_P(ops, route_residual_gather_and_scatter) {
    const uint32_t D = 32, T = 7, B = 8, L = 3, layer = 1, pos0 = 20;
    const auto x = random_floats(T * D, 11), router = random_floats(D, 12), h = random_floats(T * D, 13);
    const vk::ops::route_record rec{2 * L, B};
    const uint32_t kv_len_at = 0, kept_at = L;
    for (ncas::mod_scale scale : {ncas::mod_scale::sigmoid, ncas::mod_scale::raw, ncas::mod_scale::none}) {
        std::vector<uint32_t> ctrl_words(2 * L + vk::ops::route_record::words(B), 0);
        ctrl_words[kv_len_at + layer] = 5;  // rows already in the layer's cache
        // CPU: the rule of cpu::transformer (the route verb).
        std::vector<uint32_t> routed, pos;
        std::vector<float> s;
        for (uint32_t t = 0; t < T; ++t) {
            const float r = ncas::cpu::dot(router.data(), x.data() + t * D, D);
            if (r <= 0.1f) continue;
            routed.push_back(t), pos.push_back(pos0 + t);
            s.push_back(scale == ncas::mod_scale::sigmoid ? ncas::cpu::sigmoid(r) : scale == ncas::mod_scale::raw ? r : 1.0f);
        }
        ASSERT_GT(routed.size(), 0u);
        ASSERT_LT(routed.size(), T);
        std::vector<float> gathered(T * D, 0.0f), mixed = x;
        for (size_t i = 0; i < routed.size(); ++i)
            for (uint32_t j = 0; j < D; ++j) {
                gathered[i * D + j] = x[routed[i] * D + j];
                float& xv = mixed[routed[i] * D + j];
                xv = scale == ncas::mod_scale::none ? h[i * D + j] : xv + s[i] * (h[i * D + j] - xv);
            }

        test_buffer dx(*ctx, x), dr(*ctx, router), dh(*ctx, std::vector<float>(T * D, 0.0f)), ctrl(*ctx, ctrl_words);
        run(ctx, [&](vk::recorder& r) {
            vk::ops::route(r, dx, dr, ctrl, rec, {D, T, pos0, layer, true, scale, 0.1f, kv_len_at, kept_at});
            vk::ops::gather_residual(r, dx, dh, ctrl, rec, D, T);
        });
        EXPECT_EQ(dh.take(), gathered);
        const auto words = ctrl.take<uint32_t>();
        EXPECT_EQ(words[rec.count()], routed.size());
        EXPECT_EQ(words[rec.count() + 1], 5u);  // kv_base: the rows before
        EXPECT_EQ(words[kv_len_at + layer], 5 + routed.size());
        EXPECT_EQ(words[kept_at + layer], routed.size());
        for (size_t i = 0; i < routed.size(); ++i) {
            EXPECT_EQ(words[rec.routed() + i], routed[i]);
            EXPECT_EQ(words[rec.pos() + i], pos[i]);
            EXPECT_NEAR(std::bit_cast<float>(words[rec.scale() + i]), s[i], 1e-6f * std::max(1.0f, std::abs(s[i])));
        }
        // after the layer: x[routed] = mix(x, h)
        test_buffer dx2(*ctx, x), dh2(*ctx, h), ctrl2(*ctx, words);
        run(ctx, [&](vk::recorder& r) {
            vk::ops::scatter_residual(r, dx2, dh2, ctrl2, rec, D, T, scale != ncas::mod_scale::none);
        });
        EXPECT_PARITY(dx2.take(), mixed, 1e-6);
    }
}

// ---- MoE routing -------------------------------------------------------------------

TEST_P(ops, moe_top_k_lists_and_expert_lambda) {
    const uint32_t E = 6, k = 2, B = 8, n = 5;
    auto logits = random_floats(n * E, 14);
    logits[2 * E + 1] = logits[2 * E + 4] = 3.0f;  // an exact tie at the top: lower index first
    const auto lambda_exp = random_floats(E, 15);
    const vk::ops::moe_record rec{E, B, E, k};  // statistics [E] at 0, the record after
    for (bool renorm : {true, false}) {
        std::vector<int32_t> ids(n * k);
        std::vector<float> wts(n * k), lt(n, 0.3f);
        std::vector<std::vector<std::pair<uint32_t, float>>> lists(E);
        for (uint32_t i = 0; i < n; ++i) {
            std::vector<float> l(logits.begin() + i * E, logits.begin() + (i + 1) * E);
            ncas::route_top_k(l.data(), E, k, renorm, ids.data() + i * k, wts.data() + i * k);
            for (uint32_t j = 0; j < k; ++j) lt[i] += wts[i * k + j] * lambda_exp[size_t(ids[i * k + j])];
        }
        for (uint32_t e = 0; e < E; ++e)
            for (uint32_t i = 0; i < n; ++i)
                for (uint32_t j = 0; j < k; ++j)
                    if (ids[i * k + j] == int32_t(e)) lists[e].push_back({i, wts[i * k + j]});
        EXPECT_EQ(ids[2 * k], 1);
        EXPECT_EQ(ids[2 * k + 1], 4);

        std::vector<uint32_t> ctrl_words(E + vk::ops::moe_record::words(B, E, k), 0);
        test_buffer dl(*ctx, logits), dle(*ctx, lambda_exp), ctrl(*ctx, ctrl_words);
        run(ctx, [&](vk::recorder& r) {
            vk::ops::moe_route(r, dl, dle, ctrl, rec, {n, vk::none, true, true, true, 0, 0.3f});
            vk::ops::moe_route(r, dl, dle, ctrl, rec, {n, vk::none, renorm, true, false, 0, 0.0f});
        });
        const auto words = ctrl.take<uint32_t>();
        for (uint32_t i = 0; i < n; ++i)  // λ_t always uses renormalised weights (docs/spec.md §1.1)
            if (renorm) {
                EXPECT_NEAR(std::bit_cast<float>(words[rec.lambda_t() + i]), lt[i], 1e-6f);
            }
        for (uint32_t e = 0; e < E; ++e) {
            EXPECT_EQ(words[rec.count(e)], lists[e].size()) << "expert " << e;
            EXPECT_EQ(words[e], lists[e].size()) << "statistics of expert " << e;
            for (size_t m = 0; m < lists[e].size(); ++m) {
                EXPECT_EQ(words[rec.rows(e) + m], lists[e][m].first);
                EXPECT_NEAR(std::bit_cast<float>(words[rec.scale(e) + m]), lists[e][m].second, 1e-6f);
            }
        }
    }
}

// ---- attention: q/k/v products, RoPE into the cache, both maps over the cache --------

struct attention_case {
    const char* name;
    int64_t n_maps, H, Hkv, d;
    bool sub_norm, lambda_per_token;
    weight_type kv;
};

TEST_P(ops, attention_block_matches_cpu) {
    ncas::thread_pool pool(1);
    for (const attention_case& ac : {attention_case{"differential GQA sub-norm", 2, 4, 2, 8, true, false, weight_type::f32},
                                     attention_case{"differential per-token lambda f16 cache", 2, 2, 2, 16, false, true, weight_type::f16},
                                     attention_case{"standard attention (llama)", 1, 4, 1, 16, false, false, weight_type::f32},
                                     // quantised caches: rows of 24 values (a part block) and of 64 (two whole blocks)
                                     attention_case{"differential q8_0 cache, part blocks", 2, 2, 1, 12, false, true, weight_type::q8_0},
                                     attention_case{"differential GQA q4_0 cache", 2, 4, 2, 16, true, false, weight_type::q4_0},
                                     attention_case{"standard attention q4_0 cache, part blocks", 1, 2, 1, 24, false, false, weight_type::q4_0}}) {
        SCOPED_TRACE(ac.name);
        ncas::model_config c;
        c.arch = ac.n_maps == 2 ? ncas::architecture::ncas_diffmoe : ncas::architecture::llama;
        c.n_embd = 32, c.n_layer = 2, c.n_head = ac.H, c.n_head_kv = ac.Hkv, c.n_maps = ac.n_maps;
        c.head_k = ac.d, c.head_v = ac.n_maps * ac.d, c.rope_theta = 31415.926;
        const int64_t D = c.n_embd, n_ctx = 80, layer = 1;
        const auto wq = random_matrix(weight_type::f32, c.q_dim(), D, 20), wk = random_matrix(weight_type::f32, c.k_dim(), D, 21);
        const auto wv = random_matrix(weight_type::f32, c.v_dim(), D, 22);
        ncas::layer_weights lw;
        lw.wq = cpu_matrix(weight_type::f32, c.q_dim(), D, wq), lw.wk = cpu_matrix(weight_type::f32, c.k_dim(), D, wk);
        lw.wv = cpu_matrix(weight_type::f32, c.v_dim(), D, wv);
        lw.lambda = 0.37f, lw.lambda_init = 0.2f;
        if (ac.sub_norm) lw.sub_norm = random_floats(size_t(c.head_v), 23);

        // Fill the cache with two earlier batches of rows (MoD: positions with gaps), then run the test batch.
        const ncas::rope_table rope(n_ctx, c.head_k, c.rope_theta);
        ncas::kv_cache cache(c, n_ctx, ac.kv);
        std::vector<float> cq(size_t(8 * c.q_dim())), ck(size_t(8 * c.k_dim())), cv(size_t(8 * c.v_dim()));
        std::vector<float> co(size_t(8 * c.attn_dim()));
        std::vector<std::vector<float>> scores(1, std::vector<float>(size_t(c.n_maps * n_ctx)));
        const std::vector<std::vector<int32_t>> batches{{0, 1, 2, 5, 6, 7, 9}, {12, 13}, {40, 41, 44, 60, 61}};
        std::vector<float> xn_last, lambda_last, want;

        const uint32_t B = 8;
        const vk::ops::route_record rec{2 * uint32_t(c.n_layer), B};
        std::vector<uint32_t> ctrl_words(2 * c.n_layer + vk::ops::route_record::words(B) + B, 0);
        const uint32_t lambda_at = rec.at + vk::ops::route_record::words(B);
        const bool quant = ac.kv == weight_type::q8_0 || ac.kv == weight_type::q4_0;
        const uint64_t k_row = uint64_t(ncas::kv_row_bytes(ac.kv, c.k_dim())), v_row = uint64_t(ncas::kv_row_bytes(ac.kv, c.v_dim()));
        vk::buffer k_cache(*ctx, vk::div_up(uint64_t(n_ctx) * k_row, 4) * 4), v_cache(*ctx, vk::div_up(uint64_t(n_ctx) * v_row, 4) * 4);
        vk::buffer pos_buf(*ctx, uint64_t(c.n_layer * n_ctx) * 4), rope_buf(*ctx, uint64_t(n_ctx * c.head_k) * 4);
        rope_buf.upload(rope.cos_at(0), uint64_t(n_ctx * c.head_k / 2) * 4, 0);
        rope_buf.upload(rope.sin_at(0), uint64_t(n_ctx * c.head_k / 2) * 4, uint64_t(n_ctx * c.head_k / 2) * 4);
        device_matrix dq(*ctx, weight_type::f32, c.q_dim(), D, wq), dk(*ctx, weight_type::f32, c.k_dim(), D, wk);
        device_matrix dv(*ctx, weight_type::f32, c.v_dim(), D, wv);
        test_buffer sub(*ctx, ac.sub_norm ? lw.sub_norm : std::vector<float>(1));
        const vk::ops::gpu_cache_layer gc{k_cache, v_cache, pos_buf, ac.kv, uint32_t(n_ctx), uint32_t(layer)};

        uint32_t seed = 30, rows_before = 0;
        for (const auto& pos : batches) {
            const int64_t n = int64_t(pos.size());
            const auto xn = random_floats(size_t(n * D), seed++);
            std::vector<float> lambda_t(size_t(n), lw.lambda);
            if (ac.lambda_per_token) lambda_t = random_floats(size_t(n), seed++, 0.5f);
            const int64_t before = cache.rows(layer);
            ncas::cpu::attention_qkv(pool, lw, xn.data(), n, cq.data(), ck.data(), cv.data());
            ncas::cpu::rope_store(c, layer, rope, pos.data(), n, cq.data(), ck.data(), cv.data(), cache);
            ncas::cpu::attend(pool, c, lw, layer, cq.data(), lambda_t.data(), n, before, cache, scores, co.data());
            want.assign(co.begin(), co.begin() + n * c.attn_dim());

            // GPU: the same batch through the ctrl route record.
            ctrl_words[rec.count()] = uint32_t(n), ctrl_words[rec.count() + 1] = rows_before;
            for (int64_t i = 0; i < n; ++i) {
                ctrl_words[rec.routed() + i] = uint32_t(i), ctrl_words[rec.pos() + i] = uint32_t(pos[size_t(i)]);
                ctrl_words[lambda_at + i] = std::bit_cast<uint32_t>(lambda_t[size_t(i)]);
            }
            test_buffer dxn(*ctx, xn), ctrl(*ctx, ctrl_words);
            test_buffer q(*ctx, std::vector<float>(size_t(n * c.q_dim()))), k(*ctx, std::vector<float>(size_t(n * c.k_dim())));
            test_buffer v(*ctx, std::vector<float>(size_t(n * c.v_dim()))), o(*ctx, std::vector<float>(size_t(n * c.attn_dim())));
            const vk::slots all{.n_max = uint32_t(n), .count_at = rec.count()};
            run(ctx, [&](vk::recorder& r) {
                vk::ops::matmul(r, dq.m, dxn, q, ctrl, all);
                vk::ops::matmul(r, dk.m, dxn, k, ctrl, all);
                vk::ops::matmul(r, dv.m, dxn, v, ctrl, all);
                vk::ops::rope_store(r, c, q, k, v, rope_buf, gc, ctrl, rec, uint32_t(n));
                vk::ops::attention(r, c, q, gc, o, sub, ctrl, rec, uint32_t(n),
                                   {lw.lambda, ac.lambda_per_token ? lambda_at : vk::none, ac.sub_norm, lw.lambda_init});
            });
            EXPECT_PARITY(o.take(), want, quant ? 1e-2 : ac.kv == weight_type::f16 ? 2e-3 : 2e-5);
            if (quant) {  // the device's blocks are quantize_row's bytes of the device's rotated k and v, zero-padded
                for (auto [src, dev, dim, stride] : {std::tuple{k.take(), &k_cache, c.k_dim(), k_row},
                                                     std::tuple{v.take(), &v_cache, c.v_dim(), v_row}}) {
                    std::vector<std::byte> raw(static_cast<size_t>(stride * uint64_t(n))), want_row(static_cast<size_t>(stride));
                    dev->download(raw.data(), raw.size(), uint64_t(rows_before) * stride);
                    std::vector<float> padded(size_t(ncas::kv_row_values(ac.kv, dim)));
                    for (int64_t i = 0; i < n; ++i) {
                        std::fill(padded.begin(), padded.end(), 0.0f);
                        std::copy_n(src.begin() + i * dim, dim, padded.begin());
                        ncas::quantize_row(ac.kv, padded.data(), want_row.data(), int64_t(padded.size()));
                        EXPECT_EQ(std::memcmp(raw.data() + i * stride, want_row.data(), size_t(stride)), 0)
                            << (dim == c.k_dim() && dev == &k_cache ? "K" : "V") << " row " << i;
                    }
                }
            }
            rows_before += uint32_t(n);
        }
        // The cache rows match the CPU cache (f16: the same rounding of the same values, to one ulp).
        std::vector<float> kc(size_t(rows_before * c.k_dim())), cpu_k(kc.size());
        if (quant) {  // the device's blocks, dequantised, against the CPU's (inputs computed on each side: a step apart at most)
            for (auto [dev, dim, stride, is_k] : {std::tuple{&k_cache, c.k_dim(), k_row, true}, std::tuple{&v_cache, c.v_dim(), v_row, false}}) {
                std::vector<std::byte> raw(static_cast<size_t>(rows_before * stride));
                dev->download(raw.data(), raw.size());
                const int64_t nv = ncas::kv_row_values(ac.kv, dim);
                std::vector<float> g_row(static_cast<size_t>(nv)), c_row(static_cast<size_t>(nv));
                for (uint32_t j = 0; j < rows_before; ++j) {
                    const std::byte* cpu_row = is_k ? cache.k_row(layer, j) : cache.v_row(layer, j);
                    ncas::dequantize_row(ac.kv, raw.data() + j * stride, g_row.data(), nv);
                    ncas::dequantize_row(ac.kv, cpu_row, c_row.data(), nv);
                    float amax = 0;
                    for (float x : c_row) amax = std::max(amax, std::abs(x));
                    for (int64_t i = 0; i < nv; ++i) EXPECT_NEAR(g_row[size_t(i)], c_row[size_t(i)], amax * 0.15f) << "row " << j << " value " << i;
                    for (int64_t i = dim; i < nv; ++i) EXPECT_EQ(g_row[size_t(i)], 0.0f) << "padding of row " << j;
                }
            }
        }
        if (ac.kv == weight_type::f32) {
            k_cache.download(kc.data(), kc.size() * 4);
            for (uint32_t j = 0; j < rows_before; ++j)
                std::memcpy(cpu_k.data() + j * c.k_dim(), cache.k_row(layer, j), size_t(c.k_dim()) * 4);
            EXPECT_PARITY(kc, cpu_k, 1e-6);
        }
        std::vector<uint32_t> pos(rows_before);
        pos_buf.download(pos.data(), pos.size() * 4, uint64_t(layer * n_ctx) * 4);
        for (uint32_t j = 0; j < rows_before; ++j) EXPECT_EQ(int32_t(pos[j]), cache.position(layer, j));
    }
}

TEST_P(ops, kv_truncate_keeps_positions_before) {
    const uint32_t L = 3, n_ctx = 16;
    std::vector<uint32_t> pos(L * n_ctx, 0);
    const std::vector<std::vector<uint32_t>> rows{{0, 1, 2, 3, 4, 5}, {1, 4, 5}, {}};
    for (uint32_t l = 0; l < L; ++l)
        for (size_t j = 0; j < rows[l].size(); ++j) pos[l * n_ctx + j] = rows[l][j];
    const std::vector<uint32_t> lens{6, 3, 0};
    test_buffer dp(*ctx, pos), ctrl(*ctx, lens);
    run(ctx, [&](vk::recorder& r) { vk::ops::kv_truncate(r, dp, ctrl, L, n_ctx, 0, 4); });
    EXPECT_EQ(ctrl.take<uint32_t>(), (std::vector<uint32_t>{4, 1, 0}));
}

INSTANTIATE_TEST_SUITE_P(vk, ops, ::testing::Values(config::best, config::plain, config::wave8, config::staged),
                         [](const auto& info) { return std::string(config_name(info.param)); });
INSTANTIATE_TEST_SUITE_P(vk, matmul_ops, ::testing::Values(config::best, config::plain, config::wave8),
                         [](const auto& info) { return std::string(config_name(info.param)); });

}  // namespace
