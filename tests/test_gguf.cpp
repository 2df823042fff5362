// The GGUF reader and the model loader on good and on broken input: every
// broken file must be an ncas::error that names the problem, never a crash
// (this suite also runs under ASan + UBSan).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <random>

#include "ncas/format/gguf_writer.hpp"
#include "ncas/ncas.hpp"
#include "support/golden.hpp"

using namespace ncas;

namespace {

std::vector<std::byte> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c{std::istreambuf_iterator<char>(in), {}};
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

std::string base_path() { return test_golden::data_dir() + "/tiny/base_f32.gguf"; }

// A scratch file per test, removed at the end.
struct temp_file {
    // The process id keeps two runs of the suite at once (two build folders, say) from
    // writing one file: a file cut short under another process's mapping is a SIGBUS there.
    std::string path = ::testing::TempDir() + "ncas_" + std::to_string(::getpid()) + "_" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".gguf";
    ~temp_file() { std::remove(path.c_str()); }
    void write(std::span<const std::byte> b) const {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
};

// Loads the model and runs two tokens: the error message, or "" when all went well.
std::string load_and_run(const std::string& path) {
    try {
        const auto m = model::load(path);
        session s(m, {.n_ctx = 4, .n_threads = 1});
        const int32_t t[2] = {0, 1};
        s.prefill(t);
        return "";
    } catch (const ncas::error& e) {
        return e.what();
    }
}

std::string parse_error(std::span<const std::byte> bytes) {
    try {
        (void)gguf_file::from_memory("mem.gguf", bytes);
        return "";
    } catch (const ncas::error& e) {
        return e.what();
    }
}

gguf_writer base_writer() {
    const auto bytes = read_all(base_path());
    return gguf_writer::copy_of(gguf_file::from_memory(base_path(), bytes), bytes);
}

// Writes a modified copy of the base model and returns the loader's error.
template <class F>
std::string error_after(F&& modify) {
    gguf_writer w = base_writer();
    modify(w);
    temp_file f;
    f.write(w.to_bytes());
    return load_and_run(f.path);
}

#define EXPECT_ERROR_HAS(msg, text) \
    do { const std::string m_ = (msg); EXPECT_NE(m_.find(text), std::string::npos) << "error was: " << m_; } while (0)

}  // namespace

TEST(gguf, reads_every_metadata_type_back) {
    gguf_writer w;
    w.set("u8", {gguf_type::u8, {}, uint64_t(200), {}});
    w.set("i8", {gguf_type::i8, {}, int64_t(-100), {}});
    w.set("u16", {gguf_type::u16, {}, uint64_t(60000), {}});
    w.set("i16", {gguf_type::i16, {}, int64_t(-30000), {}});
    w.set_uint32("u32", 4000000000u);
    w.set("i32", {gguf_type::i32, {}, int64_t(-2000000000), {}});
    w.set("u64", {gguf_type::u64, {}, uint64_t(1) << 60, {}});
    w.set("i64", {gguf_type::i64, {}, int64_t(-(int64_t(1) << 60)), {}});
    w.set_float32("f32", 0.25f);
    w.set("f64", {gguf_type::f64, {}, 1e-300, {}});
    w.set_bool("bool", true);
    w.set_string("str", "héllo");
    w.set_strings("strs", {"a", "", "ccc"});
    w.set_int32s("ints", {-1, 2, 3});
    const auto bytes = w.to_bytes();
    const auto f = gguf_file::from_memory("mem", bytes);
    EXPECT_EQ(f.get_uint("u8"), 200u);
    EXPECT_EQ(std::get<int64_t>(f.find("i8")->scalar), -100);
    EXPECT_EQ(f.get_uint("u16"), 60000u);
    EXPECT_EQ(std::get<int64_t>(f.find("i16")->scalar), -30000);
    EXPECT_EQ(f.get_uint("u32"), 4000000000u);
    EXPECT_EQ(std::get<int64_t>(f.find("i32")->scalar), -2000000000);
    EXPECT_EQ(f.get_uint("u64"), uint64_t(1) << 60);
    EXPECT_EQ(std::get<int64_t>(f.find("i64")->scalar), -(int64_t(1) << 60));
    EXPECT_EQ(f.get_float("f32"), 0.25);
    EXPECT_EQ(f.get_float("f64"), 1e-300);
    EXPECT_TRUE(f.get_bool("bool"));
    EXPECT_EQ(f.get_string("str"), "héllo");
    EXPECT_EQ(f.get_strings("strs"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f.get_ints("ints"), (std::vector<int64_t>{-1, 2, 3}));
    EXPECT_ERROR_HAS([&] { try { f.get_uint("i32"); } catch (const error& e) { return std::string(e.what()); } return std::string(); }(),
                     "metadata key 'i32' is negative");
    EXPECT_THROW(f.get_string("u8"), ncas::error);
    EXPECT_THROW(f.get_uint("missing"), ncas::error);
}

TEST(gguf, reads_the_tiny_model_through_both_paths) {
    const auto bytes = read_all(base_path());
    const auto mem = gguf_file::from_memory(base_path(), bytes);
    const ncas::file_handle fh(base_path());
    const auto read = gguf_file::from_file(fh);
    ASSERT_EQ(mem.tensors().size(), read.tensors().size());
    for (size_t i = 0; i < mem.tensors().size(); ++i) {
        EXPECT_EQ(mem.tensors()[i].name, read.tensors()[i].name);
        EXPECT_EQ(mem.tensors()[i].offset, read.tensors()[i].offset);
    }
    EXPECT_EQ(mem.get_string("general.architecture"), "ncas-diffmoe");
    EXPECT_EQ(mem.data_offset() % mem.alignment(), 0u);
}

// ---- broken headers, built byte by byte --------------------------------------

namespace {
struct raw {
    std::vector<std::byte> b;
    template <class T> raw& put(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    raw& str(const std::string& s) {
        put(uint64_t(s.size()));
        for (char c : s) b.push_back(std::byte(uint8_t(c)));
        return *this;
    }
    raw& header(uint64_t n_tensors, uint64_t n_kv) { return put(gguf_file::magic).put(uint32_t(3)).put(n_tensors).put(n_kv); }
};
}  // namespace

TEST(gguf_bad, headers) {
    EXPECT_ERROR_HAS(parse_error(raw{}.put(uint32_t(0x12345678)).put(uint32_t(3)).b), "not a GGUF file");
    EXPECT_ERROR_HAS(parse_error(raw{}.put(gguf_file::magic).put(uint32_t(2)).put(uint64_t(0)).put(uint64_t(0)).b),
                     "unsupported GGUF version 2");
    EXPECT_ERROR_HAS(parse_error(raw{}.put(gguf_file::magic).b), "truncated: version");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, uint64_t(1) << 62).b), "metadata count");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(uint64_t(1) << 62, 0).b), "tensor count");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).put(uint64_t(1) << 60).b), "claims");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("k").put(uint32_t(99)).put(uint64_t(0)).b), "unknown value type 99");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("k").put(uint32_t(9)).put(uint32_t(9)).put(uint64_t(0)).b),
                     "nested array");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("k").put(uint32_t(9)).put(uint32_t(4)).put(uint64_t(1) << 61).b),
                     "claims 2305843009213693952 elements");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("k").put(uint32_t(7)).put(uint8_t(2)).b), "bool value 2");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 2).str("k").put(uint32_t(4)).put(uint32_t(1)).str("k").put(uint32_t(4)).put(uint32_t(1)).b),
                     "duplicate metadata key 'k'");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("general.alignment").put(uint32_t(4)).put(uint32_t(48)).b),
                     "general.alignment 48");
    EXPECT_ERROR_HAS(parse_error(raw{}.header(0, 1).str("").put(uint32_t(4)).put(uint32_t(1)).b), "empty key");
}

TEST(gguf_bad, tensor_infos) {
    auto tensor = [](const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        raw r;
        r.header(1, 0).str(name).put(uint32_t(ne.size()));
        for (auto n : ne) r.put(n);
        r.put(type).put(offset);
        r.b.resize(r.b.size() + 256);  // some data section
        return r.b;
    };
    EXPECT_ERROR_HAS(parse_error(tensor("t", {}, 0, 0)), "tensor 't' has 0 dimensions");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {1, 1, 1, 1, 1}, 0, 0)), "has 5 dimensions");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {0}, 0, 0)), "invalid dimension 0");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0)), "invalid dimension");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {32}, 3, 0)), "unsupported type 3");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {33}, 8, 0)), "not a multiple of its block of 32");
    // K-quant rows are whole super-blocks of 256 (a row of 160 or 288 values is refused by name).
    EXPECT_ERROR_HAS(parse_error(tensor("blk.0.attn_q.weight", {160, 4}, 12, 0)),
                     "tensor 'blk.0.attn_q.weight' of type Q4_K has row length 160, not a multiple of its block of 256");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {288}, 13, 0)), "of type Q5_K has row length 288, not a multiple of its block of 256");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {32}, 14, 0)), "of type Q6_K has row length 32, not a multiple of its block of 256");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {8}, 0, 4)), "offset 4 is not aligned");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {1024}, 0, 0)), "extends past the end of the file");
    EXPECT_ERROR_HAS(parse_error(tensor("t", {8}, 0, uint64_t(1) << 63)), "extends past the end");
}

TEST(gguf_bad, overlapping_and_duplicate_tensors) {
    raw r;
    r.header(2, 0).str("a").put(uint32_t(1)).put(uint64_t(16)).put(uint32_t(0)).put(uint64_t(0));
    r.str("b").put(uint32_t(1)).put(uint64_t(16)).put(uint32_t(0)).put(uint64_t(32));
    r.b.resize(r.b.size() + 512);
    EXPECT_ERROR_HAS(parse_error(r.b), "tensors 'a' and 'b' overlap");
    raw d;
    d.header(2, 0).str("a").put(uint32_t(1)).put(uint64_t(8)).put(uint32_t(0)).put(uint64_t(0));
    d.str("a").put(uint32_t(1)).put(uint64_t(8)).put(uint32_t(0)).put(uint64_t(32));
    d.b.resize(d.b.size() + 512);
    EXPECT_ERROR_HAS(parse_error(d.b), "duplicate tensor 'a'");
}

// ---- a real model, damaged ------------------------------------------------------

TEST(gguf_bad, truncated_at_every_header_offset_and_across_the_data) {
    const auto bytes = read_all(base_path());
    const uint64_t data = gguf_file::from_memory("x", bytes).data_offset();
    std::vector<size_t> cuts;
    for (size_t n = 0; n < data; ++n) cuts.push_back(n);
    for (size_t n = size_t(data); n < bytes.size(); n += bytes.size() / 97) cuts.push_back(n);
    cuts.push_back(bytes.size() - 1);
    temp_file f;
    for (size_t n : cuts) {
        f.write(std::span(bytes).first(n));
        const std::string e = load_and_run(f.path);
        ASSERT_FALSE(e.empty()) << "a file cut to " << n << " of " << bytes.size() << " bytes loaded";
        ASSERT_NE(e.find(f.path), std::string::npos) << "error does not name the file: " << e;
    }
}

TEST(gguf_bad, flipped_bytes_never_crash) {
    const auto bytes = read_all(base_path());
    const uint64_t data = gguf_file::from_memory("x", bytes).data_offset();
    std::mt19937 rng(1234);
    temp_file f;
    int errors = 0;
    for (int i = 0; i < 400; ++i) {
        auto b = bytes;
        const size_t at = rng() % data;  // the header: where a flip changes the structure
        b[at] ^= std::byte(1u << (rng() % 8));
        f.write(b);
        errors += !load_and_run(f.path).empty();  // either a clear error or a model that runs
    }
    EXPECT_GT(errors, 100);  // most header flips must be caught
}

TEST(gguf_bad, wrong_shapes_types_and_names) {
    const auto bytes = read_all(base_path());
    const auto f = gguf_file::from_memory(base_path(), bytes);
    const tensor_info* q = f.find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
        w.erase_tensor("blk.0.attn_q.weight");
        w.add_tensor("blk.0.attn_q.weight", weight_type::f32, {q->ne[0], q->ne[1] / 2}, std::vector<std::byte>(q->bytes / 2));
    }), "tensor 'blk.0.attn_q.weight' has shape [32, 32], expected [32, 64]");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.erase_tensor("blk.1.ffn_down_exps.weight"); }),
                     "missing tensor 'blk.1.ffn_down_exps.weight'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.erase_tensor("blk.0.attn_norm.weight");
        w.add_tensor("blk.0.attn_norm.weight", weight_type::f16, {32}, std::vector<std::byte>(64));
    }), "tensor 'blk.0.attn_norm.weight' must be F32, is F16");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_string("general.architecture", "gpt-neox"); }),
                     "unknown architecture 'gpt-neox'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.erase("general.architecture"); }),
                     "missing metadata key 'general.architecture'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.attention.head_count_kv", 3); }),
                     "not a multiple of head_count_kv 3");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_string("ncas-diffmoe.block_count", "three"); }),
                     "metadata key 'ncas-diffmoe.block_count' is string, expected an integer");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.block_count", 0); }),
                     "'ncas-diffmoe.block_count' = 0 is out of range");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.expert_used_count", 5); }),
                     "expert_used_count 5 exceeds expert_count 4");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_string("ncas-diffmoe.mod.scale", "tanh"); }),
                     "unknown mod.scale 'tanh'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_string("ncas-diffmoe.ffn_kind", "relu"); }),
                     "unknown ffn_kind 'relu'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.vocab_size", 65); }),
                     "tensor 'token_embd.weight' has shape [32, 64], expected [32, 65]");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.erase_tensor("blk.0.attn_lambda_q1.weight");
    }), "missing tensor 'blk.0.attn_lambda_q1.weight'");
}

// ---- strict loading: files that parse but describe a broken or another model --------

namespace {
gguf_value typed(gguf_type t, gguf_scalar v) { return {t, gguf_type::u8, std::move(v), {}}; }
std::vector<std::byte> f32_bytes(std::vector<float> v) {
    std::vector<std::byte> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}
}  // namespace

TEST(gguf_strict, the_unmodified_copy_loads) {
    EXPECT_EQ(error_after([](gguf_writer&) {}), "");
}

TEST(gguf_strict, every_tensor_must_be_used) {
    // block_count below the file's layers: the layers past it would silently be dropped.
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.block_count", 1); }),
                     "that the model does not use: 'blk.1.");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.add_tensor("blk.0.attn_extra.weight", weight_type::f32, {32}, std::vector<std::byte>(128));
    }), "1 tensor that the model does not use: 'blk.0.attn_extra.weight'");
    // Both λ forms: the vectors win, the scalar would be ignored.
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.add_tensor("blk.0.attn_lambda.weight", weight_type::f32, {1}, f32_bytes({0.5f}));
    }), "'blk.0.attn_lambda.weight'");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.add_tensor("blk.7.attn_norm.weight", weight_type::f32, {32}, std::vector<std::byte>(128));
        w.add_tensor("rope_freqs.weight", weight_type::f32, {8}, std::vector<std::byte>(32));
    }), "2 tensors that the model does not use: 'blk.7.attn_norm.weight', 'rope_freqs.weight'");
}

TEST(gguf_strict, hyperparameters_are_finite_and_in_range) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) { w.set_float32("ncas-diffmoe.rope.freq_base", inf); }),
                     "'ncas-diffmoe.rope.freq_base' = inf is not a finite positive number");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) { w.set_float32("ncas-diffmoe.rope.freq_base", -2.0f); }),
                     "'ncas-diffmoe.rope.freq_base' = -2.000000 is not a finite positive number");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) { w.set_float32("ncas-diffmoe.mod.threshold", nan); }),
                     "'ncas-diffmoe.mod.threshold' = nan is not a finite number");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) { w.set_float32("ncas-diffmoe.attention.layer_norm_rms_epsilon", 0.0f); }),
                     "layer_norm_rms_epsilon' = 0.000000 is not a finite positive number");
    // A float64 eps that rounds to 0 as the float the engine computes with.
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
        w.set("ncas-diffmoe.attention.layer_norm_rms_epsilon", typed(gguf_type::f64, 1e-60));
    }), "layer_norm_rms_epsilon' = 0.000000 is not a finite positive number");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
        gguf_value a{gguf_type::array, gguf_type::f32, {}, {}};
        for (int l = 0; l < 8; ++l) a.array.emplace_back(l == 1 ? double(nan) : 0.5);
        const auto bytes = read_all(base_path());
        a.array.resize(gguf_file::from_memory("x", bytes).get_uint("ncas-diffmoe.block_count"));
        w.set("ncas-diffmoe.attention.lambda_init", a);
    }), "attention.lambda_init[1] = nan is not a finite number");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) { w.erase("ncas-diffmoe.expert_used_count"); }),
                     "missing metadata key 'ncas-diffmoe.expert_used_count' for 4 experts");
    // λ vectors whose exp overflows, and NaN in a norm.
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
        w.erase_tensor("blk.0.attn_lambda_q1.weight");
        w.add_tensor("blk.0.attn_lambda_q1.weight", weight_type::f32, {8}, f32_bytes(std::vector<float>(8, 1e19f)));
        w.erase_tensor("blk.0.attn_lambda_k1.weight");
        w.add_tensor("blk.0.attn_lambda_k1.weight", weight_type::f32, {8}, f32_bytes(std::vector<float>(8, 1e19f)));
    }), "layer 0: lambda = exp(q1·k1) − exp(q2·k2) + lambda_init is not finite");
    EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
        std::vector<float> v(32, 1.0f);
        v[5] = nan;
        w.erase_tensor("blk.1.ffn_norm.weight");
        w.add_tensor("blk.1.ffn_norm.weight", weight_type::f32, {32}, f32_bytes(v));
    }), "tensor 'blk.1.ffn_norm.weight' has a non-finite value at element 5");
}

TEST(gguf_strict, special_ids_lie_inside_the_vocabulary) {
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("tokenizer.ggml.bos_token_id", 4294967295u); }),
                     "'tokenizer.ggml.bos_token_id' = 4294967295 is outside the vocabulary of 64 tokens");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("tokenizer.ggml.eos_token_id", 64); }),
                     "'tokenizer.ggml.eos_token_id' = 64 is outside the vocabulary of 64 tokens");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("tokenizer.ggml.padding_token_id", 1000); }),
                     "'tokenizer.ggml.padding_token_id' = 1000 is outside");
    EXPECT_EQ(error_after([](gguf_writer& w) { w.set_uint32("tokenizer.ggml.padding_token_id", 63); }), "");
}

TEST(gguf_strict, token_type_has_one_entry_per_token) {
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_int32s("tokenizer.ggml.token_type", {}); }),
                     "tokenizer.ggml.token_type has 0 entries for 64 tokens");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_int32s("tokenizer.ggml.token_type", std::vector<int32_t>(63, 1)); }),
                     "tokenizer.ggml.token_type has 63 entries for 64 tokens");
    EXPECT_EQ(error_after([](gguf_writer& w) { w.erase("tokenizer.ggml.token_type"); }), "");
}

TEST(gguf_strict, keys_the_gguf_specification_types_have_that_type) {
    for (gguf_type t : {gguf_type::i32, gguf_type::u8, gguf_type::u64})
        EXPECT_ERROR_HAS(error_after([&](gguf_writer& w) {
            w.set("general.alignment", typed(t, t == gguf_type::i32 ? gguf_scalar(int64_t(32)) : gguf_scalar(uint64_t(32))));
        }), "metadata key 'general.alignment' is " + std::string(gguf_type_name(t)) +
                "; the GGUF specification makes it uint32");
    EXPECT_EQ(error_after([](gguf_writer& w) { w.set_uint32("general.alignment", 32); }), "");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        w.set("tokenizer.ggml.eos_token_id", typed(gguf_type::u64, uint64_t(0)));
    }), "metadata key 'tokenizer.ggml.eos_token_id' is uint64; the GGUF specification makes it uint32");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) {
        gguf_value a{gguf_type::array, gguf_type::u32, {}, {}};
        a.array.assign(64, uint64_t(1));
        w.set("tokenizer.ggml.token_type", a);
    }), "'tokenizer.ggml.token_type' is array of uint32; the GGUF specification makes it array of int32");
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("general.architecture", 1); }),
                     "'general.architecture' is uint32; the GGUF specification makes it string");
}

// Counts that would size an allocation before any tensor is checked.
TEST(gguf_strict, counts_are_bounded_before_anything_is_sized_by_them) {
    EXPECT_ERROR_HAS(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.block_count", 520093696); }),
                     "'ncas-diffmoe.block_count' = 520093696 is more layers than the file's");
    // A file may claim a context of 2·10^9 tokens: it loads, and a session of a small context runs ...
    EXPECT_EQ(error_after([](gguf_writer& w) { w.set_uint32("ncas-diffmoe.context_length", 2000000000u); }), "");
    gguf_writer w = base_writer();
    w.set_uint32("ncas-diffmoe.context_length", 2000000000u);
    temp_file f;
    f.write(w.to_bytes());
    const auto m = model::load(f.path);
    // ... but a cache of that context (the session's default) is refused before it is allocated.
    const double memory = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
    if (double(kv_bytes(m.config(), 2000000000, weight_type::f16)) <= memory)
        GTEST_SKIP() << "this machine's memory holds the cache of a 2e9-token context";
    try {
        session s(m, {.n_threads = 1});
        ADD_FAILURE() << "a cache larger than memory was allocated";
    } catch (const ncas::error& e) {
        EXPECT_ERROR_HAS(std::string(e.what()), "a KV cache for a context of 2000000000 tokens needs");
        EXPECT_ERROR_HAS(std::string(e.what()), "choose a smaller context or an f16 cache");
    }
    try {  // a context given explicitly, in f16
        session s(m, {.n_ctx = 1999999999, .n_threads = 1, .kv_type = weight_type::f16});
        ADD_FAILURE() << "a cache larger than memory was allocated";
    } catch (const ncas::error& e) {
        EXPECT_ERROR_HAS(std::string(e.what()), "a KV cache for a context of 1999999999 tokens needs");
        EXPECT_EQ(std::string(e.what()).find("f16 cache"), std::string::npos) << e.what();
    }
}
