// The generator (ncas/generate.hpp) and the chat formats (ncas/text/chat.hpp):
// the same tokens as a hand-written loop over the session, pieces of whole
// UTF-8 characters that add up to the text, stop strings held back and cut,
// limits, cancellation, the cache prefix reused bit-identically, several
// sessions over one model on several threads, and the errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "ncas/generate.hpp"
#include "ncas/ncas.hpp"
#include "ncas/state.hpp"
#include "support/golden.hpp"

namespace {

std::string demo_path() { return test_golden::data_dir() + "/../../models/demo-q8_0.gguf"; }

const ncas::model& demo() {
    static const ncas::model m = ncas::model::load(demo_path());
    return m;
}

// What the generator must match: sample, decode, repeat.
std::vector<int32_t> reference(const ncas::model& m, const std::vector<int32_t>& prompt, int n, ncas::sampler_params sp) {
    ncas::session s(m, {.n_ctx = 256, .n_threads = 1});
    ncas::sampler smp(sp);
    std::vector<int32_t> hist = prompt, out;
    auto logits = s.prefill(prompt);
    for (int i = 0; i < n; ++i) {
        const int32_t id = smp.sample(logits, hist);
        if (id == m.tokenizer().eos_id()) break;
        out.push_back(id);
        hist.push_back(id);
        logits = s.decode(id);
    }
    return out;
}

struct fixture : ::testing::Test {
    std::unique_ptr<ncas::any_session> s = ncas::make_session(demo(), {.n_ctx = 256, .n_threads = 1});
    ncas::generator g{*s, demo().tokenizer()};
    const ncas::sampler_params seeded{.temperature = 0.9f, .top_k = 40, .seed = 1234};
};

TEST_F(fixture, same_tokens_as_a_plain_loop) {
    const auto prompt = g.encode("Once upon a time");
    for (const auto& sp : {ncas::sampler_params{.temperature = 0}, seeded}) {
        const auto r = g.generate(std::span<const int32_t>(prompt), {.sampling = sp, .max_tokens = 24});
        const auto want = reference(demo(), prompt, 24, sp);
        EXPECT_EQ(r.tokens, want);
        EXPECT_EQ(r.finish, want.size() == 24 ? ncas::finish_reason::length : ncas::finish_reason::eos);
        EXPECT_EQ(r.text, demo().tokenizer().decode(r.tokens));
        EXPECT_EQ(r.usage.prompt_tokens, int64_t(prompt.size()));
        EXPECT_EQ(r.usage.completion_tokens, int64_t(want.size()));
    }
}

TEST_F(fixture, pieces_are_whole_characters_and_add_up_to_the_text) {
    std::vector<std::string> pieces;
    const auto r = g.generate("Der Bär sagte: «Grüß Gott» — 東京", {.sampling = seeded, .max_tokens = 64},
                              [&](std::string_view p) {
                                  pieces.emplace_back(p);
                                  return true;
                              });
    std::string all;
    for (size_t i = 0; i < pieces.size(); ++i) {
        EXPECT_FALSE(pieces[i].empty());
        if (i + 1 < pieces.size()) {
            EXPECT_EQ(ncas::utf8::complete_prefix(pieces[i]), pieces[i].size()) << i;
        }
        all += pieces[i];
    }
    EXPECT_EQ(all, r.text);
}

TEST_F(fixture, a_stop_string_is_held_back_and_cut) {
    const auto full = g.generate("The little dog", {.sampling = {.temperature = 0}, .max_tokens = 40});
    ASSERT_GT(full.text.size(), 12u);
    // A stop that begins inside one token and ends in another.
    const std::string stop = full.text.substr(5, 6);
    const std::string before = full.text.substr(0, full.text.find(stop));
    std::string seen;
    bool saw_partial_stop = false;
    const auto r = g.generate("The little dog", {.sampling = {.temperature = 0}, .max_tokens = 40, .stops = {"zzzq", stop}},
                              [&](std::string_view p) {
                                  seen += p;
                                  if (seen.size() > before.size()) saw_partial_stop = true;
                                  return true;
                              });
    EXPECT_EQ(r.finish, ncas::finish_reason::stop);
    EXPECT_EQ(r.text, before);
    EXPECT_EQ(seen, before);
    EXPECT_FALSE(saw_partial_stop);
    // The cache holds the prompt and the whole tokens of the visible text; the tail is the rest.
    const auto prompt = g.encode("The little dog");
    const std::vector<int32_t> cached(g.cached().begin(), g.cached().end());
    ASSERT_GE(cached.size(), prompt.size());
    EXPECT_EQ(s->n_past(), int64_t(cached.size()));
    const std::vector<int32_t> kept(cached.begin() + std::ptrdiff_t(prompt.size()), cached.end());
    EXPECT_EQ(demo().tokenizer().decode(kept) + r.tail, before);
}

TEST_F(fixture, limits) {
    auto r = g.generate("Once", {.sampling = seeded, .max_tokens = 0});
    EXPECT_EQ(r.finish, ncas::finish_reason::length);
    EXPECT_TRUE(r.tokens.empty());
    r = g.generate("Once", {.sampling = seeded, .max_tokens = 5, .stops = {}, .ignore_eos = true});
    EXPECT_EQ(r.finish, ncas::finish_reason::length);
    EXPECT_EQ(r.tokens.size(), 5u);
    EXPECT_EQ(r.usage.decoded_tokens, 4);  // the last one is not run
    r = g.generate("Once", {.sampling = seeded, .max_tokens = 5, .stops = {}, .ignore_eos = true, .keep_last = true});
    EXPECT_EQ(r.usage.decoded_tokens, 5);
    // A small context fills up.
    auto small = ncas::make_session(demo(), {.n_ctx = 12, .n_threads = 1});
    ncas::generator g2(*small, demo().tokenizer());
    r = g2.generate("Once upon", {.sampling = seeded, .max_tokens = -1, .stops = {}, .ignore_eos = true});
    EXPECT_EQ(r.finish, ncas::finish_reason::context);
    EXPECT_EQ(small->n_past(), 12);
}

TEST_F(fixture, cancellation) {
    std::atomic<bool> cancel{true};
    auto r = g.generate("Once", {.sampling = seeded, .max_tokens = 10, .cancel = &cancel});
    EXPECT_EQ(r.finish, ncas::finish_reason::cancelled);
    EXPECT_TRUE(r.tokens.empty());
    cancel = false;
    int calls = 0;
    r = g.generate("Once upon a time", {.sampling = seeded, .max_tokens = 50, .stops = {}, .ignore_eos = true},
                   [&](std::string_view) { return ++calls < 3; });
    EXPECT_EQ(r.finish, ncas::finish_reason::cancelled);
    EXPECT_EQ(calls, 3);
    EXPECT_LT(r.tokens.size(), 50u);
}

TEST_F(fixture, a_prompt_that_extends_the_cache_runs_only_its_new_tokens_and_gives_the_same_result) {
    const auto a = g.encode("Once upon a time there was");
    auto r1 = g.generate(std::span<const int32_t>(a), {.sampling = seeded, .max_tokens = 8, .stops = {}, .ignore_eos = true});
    std::vector<int32_t> b(g.cached().begin(), g.cached().end());
    const auto more = demo().tokenizer().encode(" and then");
    b.insert(b.end(), more.begin(), more.end());
    const auto r2 = g.generate(std::span<const int32_t>(b), {.sampling = seeded, .max_tokens = 12});
    EXPECT_EQ(r2.usage.cached_tokens, int64_t(a.size()) + 7);
    EXPECT_EQ(r2.tokens, reference(demo(), b, 12, seeded));
    // A prompt that diverges early rewinds to the common prefix.
    const auto c = g.encode("Once upon a hill");
    const auto r3 = g.generate(std::span<const int32_t>(c), {.sampling = seeded, .max_tokens = 12});
    EXPECT_GE(r3.usage.cached_tokens, 2);
    EXPECT_LT(r3.usage.cached_tokens, int64_t(c.size()));
    EXPECT_EQ(r3.tokens, reference(demo(), c, 12, seeded));
    // The same prompt again: one token runs (for its logits), the result repeats.
    const auto r4 = g.generate(std::span<const int32_t>(c), {.sampling = seeded, .max_tokens = 12});
    EXPECT_EQ(r4.usage.cached_tokens, int64_t(c.size()) - 1);
    EXPECT_EQ(r4.tokens, r3.tokens);
    // Someone rewound the session behind the generator's back: it starts over.
    s->rewind(1);
    const auto r5 = g.generate(std::span<const int32_t>(c), {.sampling = seeded, .max_tokens = 12});
    EXPECT_EQ(r5.usage.cached_tokens, 0);
    EXPECT_EQ(r5.tokens, r3.tokens);
}

TEST(generate_threads, sessions_over_one_model_on_several_threads_match_one_at_a_time) {
    const ncas::sampler_params sp{.temperature = 0.8f, .seed = 99};
    const char* prompts[] = {"Once upon a time", "The cat", "A long way from home", "She said"};
    std::vector<std::vector<int32_t>> alone, together(4);
    for (const char* p : prompts) alone.push_back(reference(demo(), demo().tokenizer().encode(p, demo().tokenizer().bos_id() >= 0), 16, sp));
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&, i] {
            auto s = ncas::make_session(demo(), {.n_ctx = 128, .n_threads = 1});
            ncas::generator g(*s, demo().tokenizer());
            together[size_t(i)] = g.generate(prompts[i], {.sampling = sp, .max_tokens = 16}).tokens;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(together, alone);
}

TEST_F(fixture, bad_input_is_a_clear_error) {
    const auto what = [](auto f) {
        try {
            f();
        } catch (const ncas::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(what([&] { g.generate(std::span<const int32_t>(), {}); }).find("prompt is empty"), std::string::npos);
    const std::vector<int32_t> long_prompt(256, 10);
    EXPECT_NE(what([&] { g.generate(std::span<const int32_t>(long_prompt), {}); }).find("must be shorter than the context"),
              std::string::npos);
    EXPECT_NE(what([&] { g.generate("x", {.max_tokens = -2}); }).find("max_tokens"), std::string::npos);
    EXPECT_NE(what([&] { g.generate("x", {.sampling = {.top_p = 0}}); }).find("top_p"), std::string::npos);
    EXPECT_NE(what([&] { g.chat(ncas::chat_format(), {}, {}); }).find("no messages"), std::string::npos);
}

TEST_F(fixture, chat_in_the_plain_format_stops_at_the_next_user_turn) {
    const auto r = g.chat(ncas::chat_format::by_name("plain"), {{"user", "Hello, how are you?"}},
                          {.sampling = seeded, .max_tokens = 60});
    EXPECT_EQ(r.text.find("\nUser:"), std::string::npos);
    if (r.finish == ncas::finish_reason::stop) {
        EXPECT_LT(r.tokens.size(), 60u);
    }
}

// ---- chat formats -----------------------------------------------------------

const std::vector<ncas::chat_message> convo = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Name?"}};

TEST(chat_format, the_built_in_formats) {
    using ncas::chat_format;
    EXPECT_EQ(chat_format::by_name("chatml").apply(convo),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
              "Hello.<|im_end|>\n<|im_start|>user\nName?<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(chat_format::by_name("llama-3").apply(convo),
              "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
              "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user"
              "<|end_header_id|>\n\nName?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(chat_format::by_name("llama2").apply(convo),
              "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello.</s><s>[INST] Name? [/INST]");
    EXPECT_EQ(chat_format::by_name("Mistral").apply(convo), "[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] Name? [/INST]");
    EXPECT_EQ(chat_format::by_name("plain").apply(convo), "Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Name?\nAssistant:");
    EXPECT_EQ(chat_format::by_name("plain").apply({{"user", "Hi"}}), "User: Hi\nAssistant:");
    EXPECT_EQ(chat_format::by_name("plain").apply({{"user", "Hi"}}, false), "User: Hi");
}

TEST(chat_format, detected_from_the_template_signature) {
    using ncas::chat_format;
    using k = chat_format::kind;
    EXPECT_EQ(chat_format::from_template("").which(), k::plain);
    EXPECT_EQ(chat_format::from_template("{% for m in messages %}<|im_start|>{{ m.role }}...").which(), k::chatml);
    EXPECT_EQ(chat_format::from_template("{{ '<|start_header_id|>' + m['role'] }}").which(), k::llama3);
    EXPECT_EQ(chat_format::from_template("{{ '[INST] <<SYS>>' }}").which(), k::llama2);
    EXPECT_EQ(chat_format::from_template("{{ '[INST] ' + m['content'] + ' [/INST]' }}").which(), k::mistral);
    try {
        chat_format::from_template("{{ '<start_of_turn>' + role }}");
        FAIL() << "no error";
    } catch (const ncas::error& e) {
        EXPECT_NE(std::string(e.what()).find("chatml, llama-2, llama-3, mistral, plain"), std::string::npos) << e.what();
    }
}

TEST(chat_format, errors_name_the_choices_and_the_bad_message) {
    const auto what = [](auto f) {
        try {
            f();
        } catch (const ncas::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(what([] { ncas::chat_format::by_name("vicuna"); }),
              "unknown chat format 'vicuna' (the built-in formats: chatml, llama-2, llama-3, mistral, plain)");
    EXPECT_EQ(what([] { ncas::chat_format().apply({}); }), "chat: no messages given");
    EXPECT_EQ(what([] { ncas::chat_format().apply({{"user", "a"}, {"robot", "b"}}); }),
              "chat: message 1 has role 'robot' (expected system, user or assistant)");
    EXPECT_EQ(what([] { ncas::chat_format().apply({{"user", "a"}, {"system", "b"}}); }),
              "chat: message 1 is a system message; only the first may be");
}

}  // namespace

// ---- session state on disk ------------------------------------------------------

namespace {

std::string temp_state(const char* name) { return ::testing::TempDir() + "/ncas_" + name + ".state"; }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ncas::error& e) {
        return e.what();
    }
    return "no error";
}

TEST(session_state, a_restored_session_continues_bit_identically) {
    ncas::session a(demo(), {.n_ctx = 128, .n_threads = 1});
    const auto prompt = demo().tokenizer().encode("It was the best of times, it was the worst of times");
    a.prefill(prompt);
    const std::string path = temp_state("roundtrip");
    ncas::save_state(a, prompt, path);
    ncas::session b(demo(), {.n_ctx = 128, .n_threads = 1});
    b.prefill(std::vector<int32_t>{1, 2, 3});  // something to be replaced
    EXPECT_EQ(ncas::load_state(b, path), prompt);
    EXPECT_EQ(b.n_past(), a.n_past());
    for (int32_t t : {11, 200, 7}) {
        const auto la = a.decode(t);
        const std::vector<float> want(la.begin(), la.end());
        const auto lb = b.decode(t);
        ASSERT_EQ(std::vector<float>(lb.begin(), lb.end()), want);
    }
    std::remove(path.c_str());
}

TEST(session_state, a_mismatch_is_a_clear_error_and_leaves_the_session_empty) {
    ncas::session a(demo(), {.n_ctx = 64, .n_threads = 1});
    const std::vector<int32_t> ids = {5, 6, 7, 8};
    a.prefill(ids);
    const std::string path = temp_state("mismatch");
    ncas::save_state(a, ids, path);
    ncas::session f16(demo(), {.n_ctx = 64, .n_threads = 1, .kv_type = ncas::weight_type::f16});
    EXPECT_NE(error_of([&] { ncas::load_state(f16, path); }).find("its KV cache is F32, the session's F16"), std::string::npos);
    EXPECT_EQ(f16.n_past(), 0);
    ncas::session tiny_ctx(demo(), {.n_ctx = 3, .n_threads = 1});
    EXPECT_NE(error_of([&] { ncas::load_state(tiny_ctx, path); }).find("more than the session's context"), std::string::npos);
    EXPECT_NE(error_of([&] { ncas::save_state(a, std::vector<int32_t>{1}, path); }).find("1 tokens given"), std::string::npos);
    // Another version, a flipped byte, a missing file.
    ncas::save_state(a, ids, path);
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const auto write = [&](std::string b) { std::ofstream(path, std::ios::binary | std::ios::trunc) << b; };
    std::string v2 = bytes;
    v2[8] = 2;
    write(v2);
    EXPECT_NE(error_of([&] { ncas::load_state(a, path); }).find("version 2, this ncas reads version 1"), std::string::npos);
    EXPECT_EQ(a.n_past(), 0);
    std::string flipped = bytes;
    flipped[bytes.size() - 20] ^= 1;
    write(flipped);
    EXPECT_NE(error_of([&] { ncas::load_state(a, path); }).find("checksum mismatch"), std::string::npos);
    write(bytes.substr(0, bytes.size() - 9));
    EXPECT_NE(error_of([&] { ncas::load_state(a, path); }).find("truncated"), std::string::npos);
    write(bytes);
    EXPECT_EQ(ncas::load_state(a, path), ids);
    std::remove(path.c_str());
    EXPECT_NE(error_of([&] { ncas::load_state(a, path); }).find("cannot open"), std::string::npos);
}

}  // namespace
