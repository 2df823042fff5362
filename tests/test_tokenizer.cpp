// Tests for include/ncas/text/tokenizer.hpp and unicode_tables.hpp.
//
// The GPT-2 ids come from independent tokenizers (js-tiktoken, cross-checked
// with gpt-3-encoder; tools/gpt2_ids/gpt2_ids.mjs) and the pre-tokenizer
// splits from Python's `regex` module (tools/gpt2_split_cases.py), committed
// under tests/data/tokenizer/. The data folder is $NCAS_TEST_DATA/tokenizer
// (environment), else NCAS_TEST_DATA/tokenizer (macro, as tests/CMakeLists.txt
// defines it), else tests/data/tokenizer next to this file.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ncas/format/gguf.hpp"
#include "ncas/text/tokenizer.hpp"
#include "ncas/text/vocab.hpp"
#include "support/errors.hpp"

using test_errors::error_of;

namespace {

// ------------------------------------------------------------ test helpers

std::filesystem::path data_dir() {
    if (const char* env = std::getenv("NCAS_TEST_DATA")) return std::filesystem::path(env) / "tokenizer";
#ifdef NCAS_TEST_DATA
    return std::filesystem::path(NCAS_TEST_DATA) / "tokenizer";
#else
    return std::filesystem::path(__FILE__).parent_path() / "data" / "tokenizer";
#endif
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + p.string());
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
    std::vector<std::string> out;
    std::istringstream in(read_file(p));
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
}

// A small JSON reader, enough for the committed test data.
struct json {
    enum kind_t { null_v, bool_v, num_v, str_v, arr_v, obj_v } kind = null_v;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<json> arr;        // array elements, or object values
    std::vector<std::string> keys;  // object keys, one per value in arr

    const json& operator[](const std::string& key) const {
        for (std::size_t k = 0; k < keys.size(); ++k)
            if (keys[k] == key) return arr[k];
        throw std::runtime_error("json: no key " + key);
    }
};

struct json_parser {
    std::string_view s;
    std::size_t i = 0;

    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
    }
    [[noreturn]] void fail(const char* what) {
        throw std::runtime_error(std::string("json: ") + what + " at offset " + std::to_string(i));
    }
    void expect(char c) {
        ws();
        if (i >= s.size() || s[i] != c) fail("unexpected character");
        ++i;
    }
    unsigned hex4() {
        if (i + 4 > s.size()) fail("short \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s[i++];
            v = v * 16 + static_cast<unsigned>(c >= '0' && c <= '9'   ? c - '0'
                                               : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                      : (fail("bad hex"), 0));
        }
        return v;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (true) {
            if (i >= s.size()) fail("unterminated string");
            const char c = s[i++];
            if (c == '"') return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            const char e = s[i++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    char32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u') {
                        const std::size_t save = i;
                        i += 2;
                        const unsigned lo = hex4();
                        if (lo >= 0xDC00 && lo < 0xE000)
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        else
                            i = save;
                    }
                    ncas::utf8::append(out, cp);  // a lone surrogate becomes its 3-byte form
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
    json value() {
        ws();
        if (i >= s.size()) fail("unexpected end");
        json v;
        const char c = s[i];
        if (c == '{') {
            v.kind = json::obj_v;
            ++i;
            ws();
            if (s[i] == '}') {
                ++i;
                return v;
            }
            while (true) {
                v.keys.push_back(string());
                expect(':');
                v.arr.push_back(value());
                ws();
                if (s[i] == ',') {
                    ++i;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = json::arr_v;
            ++i;
            ws();
            if (s[i] == ']') {
                ++i;
                return v;
            }
            while (true) {
                v.arr.push_back(value());
                ws();
                if (s[i] == ',') {
                    ++i;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.kind = json::str_v;
            v.str = string();
            return v;
        }
        if (s.substr(i, 4) == "true") {
            i += 4;
            v.kind = json::bool_v;
            v.b = true;
            return v;
        }
        if (s.substr(i, 5) == "false") {
            i += 5;
            v.kind = json::bool_v;
            return v;
        }
        if (s.substr(i, 4) == "null") {
            i += 4;
            return v;
        }
        std::size_t j = i;
        while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == '+' ||
                                s[j] == '.' || s[j] == 'e' || s[j] == 'E'))
            ++j;
        if (j == i) fail("unexpected character");
        v.kind = json::num_v;
        v.num = std::stod(std::string(s.substr(i, j - i)));
        i = j;
        return v;
    }
};

json parse_json(const std::string& text) {
    json_parser p{text};
    json v = p.value();
    p.ws();
    if (p.i != text.size()) p.fail("trailing data");
    return v;
}

std::string from_hex(const std::string& h) {
    std::string out;
    for (std::size_t k = 0; k + 1 < h.size(); k += 2) out += static_cast<char>(std::stoi(h.substr(k, 2), nullptr, 16));
    return out;
}

std::string to_hex(std::string_view s) {
    static constexpr char d[] = "0123456789abcdef";
    std::string out;
    for (const char c : s) {
        out += d[static_cast<unsigned char>(c) >> 4];
        out += d[static_cast<unsigned char>(c) & 15];
    }
    return out;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto d = ncas::utf8::decode(s, i);
        if (d.st != ncas::utf8::status::ok) return false;
        i += d.len;
    }
    return true;
}

// The GPT-2 vocabulary, loaded once.
struct gpt2_data {
    std::vector<std::string> tokens;
    std::vector<std::string> merges;
    std::vector<int32_t> types;
    int32_t eot = -1;
};

const gpt2_data& gpt2() {
    static const gpt2_data d = [] {
        gpt2_data g;
        g.tokens = read_lines(data_dir() / "gpt2_tokens.txt");
        g.merges = read_lines(data_dir() / "gpt2_merges.txt");
        g.types.assign(g.tokens.size(), 1);
        for (std::size_t i = 0; i < g.tokens.size(); ++i)
            if (g.tokens[i] == "<|endoftext|>") {
                g.types[i] = 3;
                g.eot = static_cast<int32_t>(i);
            }
        return g;
    }();
    return d;
}

const ncas::tokenizer& gpt2_tok() {
    static const ncas::tokenizer t(gpt2().tokens, gpt2().merges, gpt2().types, gpt2().eot, gpt2().eot);
    return t;
}

// GPT-2's bpe() from OpenAI's encoder.py, written out literally over strings,
// as a reference for the heap-based implementation.
struct reference_bpe {
    std::map<std::pair<std::string, std::string>, int> ranks;
    explicit reference_bpe(const std::vector<std::string>& merges) {
        for (std::size_t r = 0; r < merges.size(); ++r) {
            const auto sp = merges[r].find(' ');
            ranks.emplace(std::make_pair(merges[r].substr(0, sp), merges[r].substr(sp + 1)), static_cast<int>(r));
        }
    }
    std::vector<std::string> operator()(std::vector<std::string> word) const {
        while (word.size() > 1) {
            int best = INT32_MAX;
            std::pair<std::string, std::string> bigram;
            for (std::size_t i = 0; i + 1 < word.size(); ++i) {
                const auto it = ranks.find({word[i], word[i + 1]});
                if (it != ranks.end() && it->second < best) {
                    best = it->second;
                    bigram = it->first;
                }
            }
            if (best == INT32_MAX) break;
            std::vector<std::string> nw;
            std::size_t i = 0;
            while (i < word.size()) {
                std::size_t j = i;
                while (j < word.size() && word[j] != bigram.first) ++j;
                nw.insert(nw.end(), word.begin() + static_cast<std::ptrdiff_t>(i),
                          word.begin() + static_cast<std::ptrdiff_t>(j));
                if (j == word.size()) break;
                if (j + 1 < word.size() && word[j + 1] == bigram.second) {
                    nw.push_back(bigram.first + bigram.second);
                    i = j + 2;
                } else {
                    nw.push_back(word[j]);
                    i = j + 1;
                }
            }
            word = std::move(nw);
        }
        return word;
    }
};

std::vector<std::string> byte_symbols(std::string_view piece) {
    std::vector<std::string> w;
    for (const char c : piece) {
        std::string s;
        ncas::utf8::append(s, ncas::gpt2_bytes::byte_to_cp[static_cast<unsigned char>(c)]);
        w.push_back(s);
    }
    return w;
}

// A small vocabulary built from byte-level tokens.
std::vector<std::string> all_byte_tokens() {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) {
        std::string s;
        ncas::utf8::append(s, ncas::gpt2_bytes::byte_to_cp[static_cast<std::size_t>(b)]);
        t.push_back(s);
    }
    return t;
}

// ------------------------------------------------------------ unicode tables

template <std::size_t N>
constexpr bool sorted_disjoint(const ncas::unicode::cp_range (&r)[N]) {
    for (std::size_t i = 0; i < N; ++i) {
        if (r[i].first > r[i].last) return false;
        if (i > 0 && r[i].first <= r[i - 1].last + 1) return false;  // sorted, not touching
    }
    return true;
}
static_assert(sorted_disjoint(ncas::unicode::letter_ranges));
static_assert(sorted_disjoint(ncas::unicode::number_ranges));
static_assert(sorted_disjoint(ncas::unicode::whitespace_ranges));
static_assert(ncas::unicode::is_letter(U'A') && ncas::unicode::is_letter(U'\u4E2D'));

TEST(UnicodeTables, Letters) {
    using ncas::unicode::is_letter;
    for (char32_t c : {U'a', U'Z', U'\u00E9', U'\u00DF', U'\u03A9', U'\u0416', U'\u05D0', U'\u0645', U'\u4E2D',
                       U'\u3042', U'\uAC00', U'\uD7A3', U'\u01C5', U'\u02B0', U'\U00020000', U'\U0002A6D6',
                       U'\U0001D400', U'\u00AA'})
        EXPECT_TRUE(is_letter(c)) << std::hex << static_cast<uint32_t>(c);
    for (char32_t c : {U'0', U' ', U'\'', U'_', U'\u0301', U'\u00BD', U'\u2160', U'\U0001F600', U'\u200D',
                       U'\uFFFD', char32_t{0x110000}, U'\u0000', U'\u0903' /* Mc */})
        EXPECT_FALSE(is_letter(c)) << std::hex << static_cast<uint32_t>(c);
}

TEST(UnicodeTables, Numbers) {
    using ncas::unicode::is_number;
    for (char32_t c : {U'0', U'9', U'\u0663', U'\u0966', U'\u00B2', U'\u00BD', U'\u2160', U'\u216B', U'\u2460',
                       U'\uFF11', U'\U0001D7CE', U'\u3007'})
        EXPECT_TRUE(is_number(c)) << std::hex << static_cast<uint32_t>(c);
    for (char32_t c : {U'a', U'.', U'\u4E00', U'\u0301', U' '}) EXPECT_FALSE(is_number(c));
}

TEST(UnicodeTables, WhitespaceIsPythonRegexBackslashS) {
    using ncas::unicode::is_whitespace;
    // Exactly the 25 White_Space code points that Python's `regex` \s matches.
    const std::vector<char32_t> ws = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680,
                                      0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
                                      0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    std::size_t count = 0;
    for (char32_t c = 0; c < 0x110000; ++c) count += is_whitespace(c);
    EXPECT_EQ(count, ws.size());
    for (char32_t c : ws) EXPECT_TRUE(is_whitespace(c)) << std::hex << static_cast<uint32_t>(c);
    // Not \s in `regex`: str.isspace's U+001C..U+001F, JavaScript's U+FEFF,
    // zero-width space, Mongolian vowel separator.
    for (char32_t c : {0x1Cu, 0x1Du, 0x1Eu, 0x1Fu, 0xFEFFu, 0x200Bu, 0x180Eu})
        EXPECT_FALSE(is_whitespace(c)) << std::hex << static_cast<uint32_t>(c);
}

// ------------------------------------------------------------------- UTF-8

TEST(Utf8, DecodeStrict) {
    using ncas::utf8::decode;
    using ncas::utf8::status;
    auto st = [](std::string_view s) { return decode(s, 0).st; };
    EXPECT_EQ(decode("A", 0).cp, U'A');
    EXPECT_EQ(decode("\xC3\xA9", 0).cp, U'\u00E9');
    EXPECT_EQ(decode("\xE2\x82\xAC", 0).cp, U'\u20AC');
    EXPECT_EQ(decode("\xF0\x9F\x98\x80", 0).cp, U'\U0001F600');
    EXPECT_EQ(decode("\xF0\x9F\x98\x80", 0).len, 4);
    EXPECT_EQ(st("\x80"), status::invalid);              // lone continuation
    EXPECT_EQ(st("\xC0\xAF"), status::invalid);          // overlong
    EXPECT_EQ(st("\xE0\x80\xAF"), status::invalid);      // overlong
    EXPECT_EQ(st("\xED\xA0\x80"), status::invalid);      // surrogate
    EXPECT_EQ(st("\xF4\x90\x80\x80"), status::invalid);  // > U+10FFFF
    EXPECT_EQ(st("\xF5\x80\x80\x80"), status::invalid);
    EXPECT_EQ(st("\xFF"), status::invalid);
    EXPECT_EQ(st("\xE2\x82"), status::truncated);
    EXPECT_EQ(st("\xF0\x9F"), status::truncated);
    EXPECT_EQ(st("\xE2\x28"), status::invalid);  // second byte not a continuation
    EXPECT_EQ(ncas::utf8::complete_prefix("ab\xF0\x9F\x98"), 2u);
    EXPECT_EQ(ncas::utf8::complete_prefix("ab\xFF"), 3u);
    EXPECT_EQ(ncas::utf8::complete_prefix("ab\xE0\x80"), 4u);  // can never complete
}

TEST(Gpt2Bytes, BytesToUnicodeMap) {
    using ncas::gpt2_bytes::byte_to_cp;
    EXPECT_EQ(byte_to_cp['!'], U'!');
    EXPECT_EQ(byte_to_cp['~'], U'~');
    EXPECT_EQ(byte_to_cp[0x00], 0x100u);
    EXPECT_EQ(byte_to_cp[' '], 0x120u);   // Ġ
    EXPECT_EQ(byte_to_cp['\n'], 0x10Au);  // Ċ
    EXPECT_EQ(byte_to_cp[0x7F], 0x121u);
    EXPECT_EQ(byte_to_cp[0xA0], 0x142u);
    EXPECT_EQ(byte_to_cp[0xAD], 0x143u);
    EXPECT_EQ(byte_to_cp[0xFF], 0xFFu);
    for (int b = 0; b < 256; ++b) EXPECT_EQ(ncas::gpt2_bytes::to_byte(byte_to_cp[static_cast<std::size_t>(b)]), b);
}

// ------------------------------------------------------------ pre-tokenizer

TEST(Gpt2Split, MatchesPythonRegexModule) {
    const json cases = parse_json(read_file(data_dir() / "gpt2_split_cases.json"));
    ASSERT_GE(cases.arr.size(), 400u);
    for (const json& c : cases.arr) {
        const std::string text = from_hex(c["utf8"].str);
        std::vector<std::string> want;
        for (const json& p : c["pieces"].arr) want.push_back(p.str);
        std::vector<std::string> got;
        for (const auto piece : ncas::gpt2_split(text)) got.push_back(to_hex(piece));
        EXPECT_EQ(got, want) << "text: " << c["text"].str;
    }
}

TEST(Gpt2Split, HandPickedRules) {
    using V = std::vector<std::string_view>;
    EXPECT_EQ(ncas::gpt2_split("a   b"), (V{"a", "  ", " b"}));
    EXPECT_EQ(ncas::gpt2_split("a\t\tb"), (V{"a", "\t", "\t", "b"}));
    EXPECT_EQ(ncas::gpt2_split("end   "), (V{"end", "   "}));
    EXPECT_EQ(ncas::gpt2_split("I'm IT'S"), (V{"I", "'m", " IT", "'", "S"}));
    EXPECT_EQ(ncas::gpt2_split("?'s"), (V{"?'", "s"}));
    EXPECT_EQ(ncas::gpt2_split(""), V{});
    EXPECT_EQ(ncas::gpt2_split(" 123abc!!"), (V{" 123", "abc", "!!"}));
}

TEST(Gpt2Split, InvalidUtf8BytesAreOtherCodePoints) {
    using V = std::vector<std::string_view>;
    EXPECT_EQ(ncas::gpt2_split("a\xFF" "b"), (V{"a", "\xFF", "b"}));
    EXPECT_EQ(ncas::gpt2_split("x \xFF\xFE!"), (V{"x", " \xFF\xFE!"}));
    EXPECT_EQ(ncas::gpt2_split("ab\xE2\x82"), (V{"ab", "\xE2\x82"}));        // truncated at the end
    EXPECT_EQ(ncas::gpt2_split("\xED\xA0\x80z"), (V{"\xED\xA0\x80", "z"}));  // encoded surrogate
    EXPECT_EQ(ncas::gpt2_split("\xC3"), (V{"\xC3"}));
}

// ------------------------------------------------------- GPT-2 vocabulary

TEST(Gpt2Tokenizer, VocabularyLoads) {
    const auto& t = gpt2_tok();
    EXPECT_EQ(t.size(), 50257);
    EXPECT_EQ(gpt2().merges.size(), 50000u);
    EXPECT_EQ(t.eos_id(), 50256);
    EXPECT_EQ(t.token_text(50256), "<|endoftext|>");
    EXPECT_EQ(t.token_text(262), "\xC4\xA0the");  // "Ġthe"
    EXPECT_EQ(t.token_bytes(262), " the");
    EXPECT_EQ(t.token_id("\xC4\xA0the"), 262);
    EXPECT_EQ(t.token_id("no such token"), -1);
    EXPECT_EQ(t.type_of(50256), ncas::token_type::control);
}

TEST(Gpt2Tokenizer, MatchesIndependentGpt2Ids) {
    const json cases = parse_json(read_file(data_dir() / "gpt2_cases.json"));
    ASSERT_GE(cases.arr.size(), 60u);
    const auto& t = gpt2_tok();
    std::size_t checked = 0;
    for (const json& c : cases.arr) {
        const std::string text = from_hex(c["utf8"].str);
        std::vector<int32_t> want;
        for (const json& v : c["ids"].arr) want.push_back(static_cast<int32_t>(v.num));
        const bool special = c["parse_special"].b;
        const std::vector<int32_t> got = t.encode(text, false, special);
        EXPECT_EQ(got, want) << c["kind"].str << " case: " << c["text"].str;
        EXPECT_EQ(t.decode(got), text) << c["kind"].str << " case: " << c["text"].str;
        // Second time through the word cache.
        EXPECT_EQ(t.encode(text, false, special), want);
        ++checked;
    }
    EXPECT_EQ(checked, cases.arr.size());
}

TEST(Gpt2Tokenizer, HeapBpeMatchesLiteralGpt2Bpe) {
    const auto& t = gpt2_tok();
    const reference_bpe ref(gpt2().merges);
    std::mt19937 rng(7);
    const std::vector<std::string> alphabet = {"a", "e", "i", "o", "n", "s", "t", "r", "h", "l", " ", " ",
                                               "'", "th", "ing", "tion", "1", "0", "=", "-", "\n", "\xC3\xA9",
                                               "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "ab", "aa", "ss"};
    for (int n = 0; n < 600; ++n) {
        std::string text;
        const int len = 1 + static_cast<int>(rng() % (n < 500 ? 40 : 400));
        for (int k = 0; k < len; ++k) text += alphabet[rng() % alphabet.size()];
        std::vector<int32_t> want;
        for (const auto piece : ncas::gpt2_split(text))
            for (const auto& sym : ref(byte_symbols(piece))) want.push_back(t.token_id(sym));
        EXPECT_EQ(t.encode(text), want) << "text: " << text;
    }
}

TEST(Gpt2Tokenizer, LongPiecesAreFastAndRoundTrip) {
    const auto& t = gpt2_tok();
    std::mt19937 rng(11);
    std::string letters, equals(200000, '=');
    for (int k = 0; k < 200000; ++k) letters += static_cast<char>('a' + rng() % 26);
    const auto start = std::chrono::steady_clock::now();
    const auto a = t.encode(letters);
    const auto b = t.encode(equals);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(t.decode(a), letters);
    EXPECT_EQ(t.decode(b), equals);
    EXPECT_LT(s, 20.0);  // quadratic BPE would take minutes here
}

TEST(Gpt2Tokenizer, InvalidUtf8NeverThrowsAndRoundTrips) {
    const auto& t = gpt2_tok();
    const std::vector<std::string> bad = {
        "\xFF", "\xFF\xFE\xFD", "abc\x80" "def", "ab\xE2\x82", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
        "x \xF0\x9F\x98", " \xC3", "\xE2\x82 \xAC", std::string("a\0b", 3), "\xF0\x9F\x98\x80\x80"};
    for (const auto& s : bad) {
        std::vector<int32_t> ids;
        ASSERT_NO_THROW(ids = t.encode(s)) << to_hex(s);
        EXPECT_EQ(t.decode(ids), s) << to_hex(s);
        EXPECT_EQ(t.encode(s), ids) << to_hex(s);  // deterministic
    }
    // A lone invalid byte is its byte token.
    EXPECT_EQ(t.encode("\xFF"), std::vector<int32_t>{t.token_id("\xC3\xBF")});  // "ÿ" stands for 0xFF
    // Random bytes.
    std::mt19937 rng(3);
    for (int n = 0; n < 300; ++n) {
        std::string s;
        for (int k = static_cast<int>(rng() % 30); k > 0; --k) s += static_cast<char>(rng() & 0xFF);
        EXPECT_EQ(t.decode(t.encode(s)), s) << to_hex(s);
    }
}

TEST(Gpt2Tokenizer, SpecialTokens) {
    const auto& t = gpt2_tok();
    using V = std::vector<int32_t>;
    EXPECT_EQ(t.encode("<|endoftext|>", false, true), V{50256});
    EXPECT_NE(t.encode("<|endoftext|>", false, false), V{50256});
    // As text: "<", "|", "end", "of", "text", "|", ">".
    EXPECT_EQ(t.encode("<|endoftext|>", false, false), (V{27, 91, 437, 1659, 5239, 91, 29}));
    EXPECT_EQ(t.encode("Hi", true), (V{50256, 17250}));
    EXPECT_EQ(t.encode("", true), V{50256});
    EXPECT_EQ(t.encode(""), V{});
    EXPECT_EQ(t.decode(V{15496, 50256, 6894}), "Hello<|endoftext|>world");
    EXPECT_EQ(t.decode(V{}), "");
}

TEST(Gpt2Tokenizer, DecodeRejectsBadIds) {
    const auto& t = gpt2_tok();
    for (int32_t bad : {-1, 50257, 1 << 30}) {
        const std::vector<int32_t> ids = {15496, bad};
        const std::string msg = error_of([&] { (void)t.decode(ids); });
        EXPECT_NE(msg.find("token id " + std::to_string(bad)), std::string::npos) << msg;
        EXPECT_NE(error_of([&] { (void)t.token_text(bad); }).find(std::to_string(bad)), std::string::npos);
        EXPECT_NE(error_of([&] { (void)t.token_bytes(bad); }).find(std::to_string(bad)), std::string::npos);
    }
}

TEST(Gpt2Tokenizer, CopiesAndThreads) {
    const ncas::tokenizer copy = gpt2_tok();
    const std::string text = "Copies share the vocabulary; threads share the cache.";
    const auto want = gpt2_tok().encode(text);
    EXPECT_EQ(copy.encode(text), want);
    std::vector<std::thread> threads;
    std::atomic<int> bad{0};
    for (int k = 0; k < 4; ++k)
        threads.emplace_back([&] {
            for (int r = 0; r < 200; ++r)
                if (copy.encode(text) != want) ++bad;
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(bad.load(), 0);
}

// ------------------------------------------------------------- streaming

TEST(StreamingDecoder, EmojiSplitAcrossTokens) {
    const auto& t = gpt2_tok();
    const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, several GPT-2 tokens
    const auto ids = t.encode("Hi " + emoji + "!");
    ASSERT_GT(ids.size(), 3u);
    ncas::streaming_decoder sd(t);
    std::vector<std::string> parts;
    bool held = false;  // some token ended inside the emoji
    for (const int32_t id : ids) {
        parts.push_back(sd.feed(id));
        held = held || sd.pending_bytes() > 0;
    }
    EXPECT_EQ(sd.flush(), "");
    std::string all;
    for (const auto& p : parts) {
        EXPECT_TRUE(valid_utf8(p)) << to_hex(p);
        all += p;
    }
    EXPECT_EQ(all, "Hi " + emoji + "!");
    EXPECT_TRUE(held);
}

TEST(StreamingDecoder, EveryCaseStreamsCompleteCharacters) {
    const auto& t = gpt2_tok();
    const json cases = parse_json(read_file(data_dir() / "gpt2_cases.json"));
    for (const json& c : cases.arr) {
        const std::string text = from_hex(c["utf8"].str);
        ncas::streaming_decoder sd(t);
        std::string all;
        for (const json& v : c["ids"].arr) {
            const std::string p = sd.feed(static_cast<int32_t>(v.num));
            EXPECT_TRUE(valid_utf8(p)) << c["text"].str;
            all += p;
        }
        EXPECT_EQ(sd.pending_bytes(), 0u);
        all += sd.flush();
        EXPECT_EQ(all, text) << c["text"].str;
    }
}

TEST(StreamingDecoder, FlushGivesHeldBytesAndBadIdsThrow) {
    const auto& t = gpt2_tok();
    const auto ids = t.encode("\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9");  // man ZWJ woman
    ncas::streaming_decoder sd(t);
    std::string got;
    for (std::size_t k = 0; k + 1 < ids.size(); ++k) got += sd.feed(ids[k]);
    const std::string full = t.decode(ids);
    EXPECT_TRUE(valid_utf8(got));
    EXPECT_LT(got.size(), full.size());
    const std::string rest = sd.flush();
    EXPECT_EQ(got + rest, t.decode(std::span<const int32_t>(ids.data(), ids.size() - 1)));
    EXPECT_EQ(sd.pending_bytes(), 0u);
    // Invalid bytes are not held back.
    const int32_t ff = t.token_id("\xC3\xBF");
    EXPECT_EQ(sd.feed(ff), "\xFF");
    EXPECT_NE(error_of([&] { sd.feed(99999); }).find("99999"), std::string::npos);
}

// ------------------------------------------------------------ small vocab

TEST(SmallVocab, MergesApplyByRankAndAllOccurrences) {
    auto tokens = all_byte_tokens();
    const int32_t ab = static_cast<int32_t>(tokens.size());
    tokens.push_back("ab");
    const int32_t bc = static_cast<int32_t>(tokens.size());
    tokens.push_back("bc");
    const int32_t aa = static_cast<int32_t>(tokens.size());
    tokens.push_back("aa");
    const int32_t aaaa = static_cast<int32_t>(tokens.size());
    tokens.push_back("aaaa");
    const int32_t eot = static_cast<int32_t>(tokens.size());
    tokens.push_back("<eot>");
    const int32_t usr = static_cast<int32_t>(tokens.size());
    tokens.push_back("<user>");
    std::vector<int32_t> types(tokens.size(), 1);
    types[static_cast<std::size_t>(eot)] = 3;
    types[static_cast<std::size_t>(usr)] = 4;
    const ncas::tokenizer t(tokens, {"b c", "a b", "a a", "aa aa"}, types, -1, eot);
    using V = std::vector<int32_t>;
    const int32_t a = t.token_id("a"), c = t.token_id("c");
    EXPECT_EQ(t.encode("abc"), (V{a, bc}));  // "b c" has the lower rank
    EXPECT_EQ(t.encode("ab"), V{ab});
    EXPECT_EQ(t.encode("aaa"), (V{aa, a}));  // left to right, no overlap
    EXPECT_EQ(t.encode("aaaaa"), (V{aaaa, a}));
    EXPECT_EQ(t.encode("abcab"), (V{a, bc, ab}));
    (void)c;
    EXPECT_EQ(t.encode("x<eot>y<user>", false, true), (V{t.token_id("x"), eot, t.token_id("y"), usr}));
    EXPECT_EQ(t.encode("<eot>", false, false).size(), 5u);
    EXPECT_EQ(t.decode(V{usr, eot}), "<user><eot>");
    EXPECT_NE(error_of([&] { (void)t.encode("x", true); }).find("BOS"), std::string::npos);
}

// Merges in random rank order (a merge may rank below the merges that make
// its parts, which trained vocabularies never do): the heap implementation
// must still do exactly what GPT-2's literal bpe() does.
TEST(SmallVocab, ArbitraryRankOrderMatchesLiteralBpe) {
    std::mt19937 rng(99);
    for (int round = 0; round < 20; ++round) {
        auto tokens = all_byte_tokens();
        std::vector<std::string> built = {"a", "b", "c"};
        std::vector<std::string> merges;
        std::set<std::string> have(tokens.begin(), tokens.end());
        std::set<std::pair<std::string, std::string>> pairs;
        while (merges.size() < 40) {
            const std::string& x = built[rng() % built.size()];
            const std::string& y = built[rng() % built.size()];
            if (x.size() + y.size() > 6 || !pairs.insert({x, y}).second) continue;
            merges.push_back(x + " " + y);
            if (have.insert(x + y).second) {
                tokens.push_back(x + y);
                built.push_back(x + y);
            }
        }
        std::shuffle(merges.begin(), merges.end(), rng);
        const ncas::tokenizer t(tokens, merges, {}, -1, -1);
        const reference_bpe ref(merges);
        for (int n = 0; n < 200; ++n) {
            std::string word;
            for (int k = 1 + static_cast<int>(rng() % 30); k > 0; --k) word += "abc"[rng() % 3];
            std::vector<int32_t> want;
            for (const auto& sym : ref(byte_symbols(word))) want.push_back(t.token_id(sym));
            ASSERT_EQ(t.encode(word), want) << "round " << round << " word " << word;
        }
    }
}

TEST(SmallVocab, LongestSpecialTokenWins) {
    auto tokens = all_byte_tokens();
    const int32_t s1 = static_cast<int32_t>(tokens.size());
    tokens.push_back("<|a|>");
    const int32_t s2 = static_cast<int32_t>(tokens.size());
    tokens.push_back("<|a|><|b|>");
    std::vector<int32_t> types(tokens.size(), 1);
    types[static_cast<std::size_t>(s1)] = 3;
    types[static_cast<std::size_t>(s2)] = 4;
    const ncas::tokenizer t(tokens, {}, types, s1, s1);
    EXPECT_EQ(t.encode("<|a|><|b|><|a|>", true, true), (std::vector<int32_t>{s1, s2, s1}));
}

TEST(SmallVocab, ByteTypeTokens) {
    std::vector<std::string> tokens = all_byte_tokens();
    tokens.push_back("<0x0A>");
    std::vector<int32_t> types(tokens.size(), 1);
    types.back() = 6;
    const ncas::tokenizer t(tokens, {}, types, -1, -1);
    EXPECT_EQ(t.token_bytes(256), "\n");
}

// ------------------------------------------------------------ validation

TEST(Validation, ErrorsNameWhatIsWrong) {
    const auto base = all_byte_tokens();
    auto with = [&](std::vector<std::string> extra) {
        auto t = base;
        t.insert(t.end(), extra.begin(), extra.end());
        return t;
    };
    auto expect_error = [](auto f, const std::vector<std::string>& needles) {
        const std::string msg = error_of(f);
        for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    };
    using T = ncas::tokenizer;
    expect_error([&] { T(with({"ab", "ab"}), {}, {}, -1, -1); }, {"token 257", "\"ab\"", "duplicates token 256"});
    expect_error([&] { T(with({"ab"}), {"a b", "a zz"}, {}, -1, -1); }, {"merge 1", "\"a zz\"", "\"zz\" is not a token"});
    expect_error([&] { T(with({"ab"}), {"zz b"}, {}, -1, -1); }, {"merge 0", "\"zz\" is not a token"});
    expect_error([&] { T(with({"ab"}), {"a b", "b c"}, {}, -1, -1); },
                 {"merge 1", "result \"bc\" is not a token"});
    expect_error([&] { T(with({"ab"}), {"ab"}, {}, -1, -1); }, {"merge 0", "one space"});
    expect_error([&] { T(with({"ab"}), {"a  b"}, {}, -1, -1); }, {"merge 0", "one space"});
    expect_error([&] { T(with({"ab"}), {"a b", "a b"}, {}, -1, -1); }, {"merge 1", "duplicates merge 0"});
    expect_error([&] { T(base, {}, {}, 256, -1); }, {"bos id 256"});
    expect_error([&] { T(base, {}, {}, -1, -2); }, {"eos id -2"});
    expect_error([&] { T(base, {}, std::vector<int32_t>(10, 1), -1, -1); }, {"10 token types", "256 tokens"});
    {
        std::vector<int32_t> types(256, 1);
        types[42] = 9;
        expect_error([&] { T(base, {}, types, -1, -1); }, {"token 42", "token type 9"});
    }
    expect_error([&] { T(with({"hello world"}), {}, {}, -1, -1); }, {"token 256", "byte-level"});
    {
        std::vector<int32_t> types(257, 1);
        types[256] = 6;
        expect_error([&] { T(with({"<0xZZ>"}), {}, types, -1, -1); }, {"token 256", "<0xNN>"});
    }
    expect_error([&] { T({}, {}, {}, -1, -1); }, {"no tokens"});
    {
        // A vocabulary without the token for byte 'z' fails only when it is needed.
        auto t = base;
        t['z'] = "\xC4\xA0\xC4\xA0";  // "ĠĠ" in its place keeps the ids
        const T tok(t, {}, {}, -1, -1);
        EXPECT_NO_THROW((void)tok.encode("abc"));
        expect_error([&] { (void)tok.encode("xyz"); }, {"byte 0x7A"});
    }
}

// ------------------------------------------------------------ SentencePiece
//
// tests/data/tokenizer/spm_vocab.gguf and spm_cases.json come from
// tools/spm_vocab.py: a BPE model trained by the sentencepiece library, written
// as llama.cpp writes SentencePiece vocabularies, and the ids and decoded texts
// that library gives.

std::vector<std::byte> spm_file_bytes() {
    const std::string b = read_file(data_dir() / "spm_vocab.gguf");
    std::vector<std::byte> out(b.size());
    std::memcpy(out.data(), b.data(), b.size());
    return out;
}

const ncas::tokenizer& spm_tok() {
    static const auto t = [] {
        static const std::vector<std::byte> bytes = spm_file_bytes();
        const ncas::gguf_file f = ncas::gguf_file::from_memory("spm_vocab.gguf", bytes);
        return ncas::read_vocab(f);
    }();
    return *t;
}

std::vector<int32_t> ids_of(const json& a) {
    std::vector<int32_t> out;
    for (const json& v : a.arr) out.push_back(static_cast<int32_t>(v.num));
    return out;
}

TEST(SpmTokenizer, VocabularyLoadsFromGguf) {
    const auto& t = spm_tok();
    EXPECT_EQ(t.kind(), ncas::tokenizer_kind::spm);
    EXPECT_EQ(t.size(), 1000);
    EXPECT_EQ(t.unk_id(), 0);
    EXPECT_EQ(t.bos_id(), 1);
    EXPECT_EQ(t.eos_id(), 2);
    EXPECT_TRUE(t.add_space_prefix());
    EXPECT_TRUE(t.wants_bos());
    EXPECT_FALSE(t.wants_eos());
    EXPECT_EQ(t.type_of(0), ncas::token_type::unknown);
    EXPECT_EQ(t.type_of(1), ncas::token_type::control);
    EXPECT_EQ(t.token_text(3 + 0x0A), "<0x0A>");
    EXPECT_EQ(t.token_bytes(3 + 0x0A), "\n");
    const int32_t the = t.token_id("\xE2\x96\x81the");
    ASSERT_GE(the, 0);
    EXPECT_EQ(t.token_bytes(the), " the");
    EXPECT_LT(t.score(the), 0.0f);
}

TEST(SpmTokenizer, MatchesSentencepieceLibrary) {
    const json cases = parse_json(read_file(data_dir() / "spm_cases.json"));
    ASSERT_GE(cases.arr.size(), 100u);
    const auto& t = spm_tok();
    std::size_t encoded = 0, decoded = 0;
    for (const json& c : cases.arr) {
        const std::vector<int32_t> want = ids_of(c["ids"]);
        bool decode_only = false;
        for (const auto& k : c.keys) decode_only = decode_only || k == "decode_only";
        if (!decode_only) {
            const std::string text = from_hex(c["utf8"].str);
            EXPECT_EQ(t.encode(text, c["add_bos"].b), want) << "text: " << c["text"].str;
            ++encoded;
        }
        EXPECT_EQ(t.decode(want), c["decoded"].str) << "ids of: " << (decode_only ? "(decode only)" : c["text"].str);
        ++decoded;
    }
    EXPECT_GE(encoded, 90u);
    EXPECT_EQ(decoded, cases.arr.size());
}

// The merge loop written the slow, obvious way: find the best pair by scanning
// (highest score, leftmost on ties), merge it, repeat; then byte fallback.
std::vector<int32_t> literal_spm(const ncas::tokenizer& t, std::string_view text) {
    std::string s = "\xE2\x96\x81";
    for (char c : text) s += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    std::vector<std::string> sym;
    for (std::size_t i = 0; i < s.size();) {
        const auto d = ncas::utf8::decode(s, i);
        sym.push_back(s.substr(i, d.len));
        i += d.len;
    }
    auto mergeable = [&](const std::string& p) {
        const int32_t id = t.token_id(p);
        if (id < 0) return -1;
        const auto ty = t.type_of(id);
        return ty == ncas::token_type::normal || ty == ncas::token_type::user_defined ||
                       ty == ncas::token_type::unused || ty == ncas::token_type::undefined
                   ? id
                   : -1;
    };
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
            const int32_t id = mergeable(sym[i] + sym[i + 1]);
            if (id >= 0 && (best < 0 || t.score(id) > best_score)) {
                best = static_cast<int>(i);
                best_score = t.score(id);
            }
        }
        if (best < 0) break;
        sym[static_cast<std::size_t>(best)] += sym[static_cast<std::size_t>(best) + 1];
        sym.erase(sym.begin() + best + 1);
    }
    std::vector<int32_t> out;
    for (const auto& p : sym) {
        const int32_t id = mergeable(p);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (unsigned char b : p) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            out.push_back(t.token_id(name));
        }
    }
    return out;
}

TEST(SpmTokenizer, HeapMergeMatchesLiteralMergeOnRandomText) {
    const auto& t = spm_tok();
    std::mt19937 rng(7);
    const std::vector<std::string> alphabet = {"a", "e", "t", "h", "s", "n", "l", "l", "o", " ", " ", "  ", "th", "the ", "in",
                                               "\n", "\t", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x98\x80", "Z", ".",
                                               "\xE2\x96\x81", "\xFF", "\xC3"};
    for (int n = 0; n < 400; ++n) {
        std::string text;
        const int len = static_cast<int>(rng() % 40);
        for (int k = 0; k < len; ++k) text += alphabet[rng() % alphabet.size()];
        if (text.empty()) continue;
        EXPECT_EQ(t.encode(text), literal_spm(t, text)) << "text: " << text;
    }
}

TEST(SpmTokenizer, InvalidUtf8BecomesByteTokens) {
    const auto& t = spm_tok();
    for (const std::string& text : {std::string("\xFF"), std::string("a\xC3"), std::string("\xE6\x97"),
                                   std::string("x\xED\xA0\x80y"), std::string(1, '\0')}) {
        const std::vector<int32_t> ids = t.encode(text);
        std::string bytes;
        for (int32_t id : ids) bytes += t.token_bytes(id);
        EXPECT_EQ(bytes, " " + text);  // the space prefix, then the bytes as they were
    }
}

TEST(SpmTokenizer, SpecialTokensAndSpacePrefix) {
    const auto& t = spm_tok();
    const int32_t the = t.token_id("\xE2\x96\x81the");
    // As llama.cpp: a special token is followed by the space prefix again.
    EXPECT_EQ(t.encode("<s>the</s>the", false, true), (std::vector<int32_t>{1, the, 2, the}));
    EXPECT_EQ(t.encode("<s>the", false, false), t.encode("<s>the"));
    EXPECT_NE(t.encode("<s>the", false, false)[0], 1);
    EXPECT_EQ(t.encode("the", true), (std::vector<int32_t>{1, the}));
    EXPECT_TRUE(t.encode("").empty());
    // Without the space prefix, "the" is not "▁the".
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int32_t i = 0; i < t.size(); ++i) {
        tokens.push_back(t.token_text(i));
        scores.push_back(t.score(i));
        types.push_back(static_cast<int32_t>(t.type_of(i)));
    }
    const auto bare = ncas::tokenizer::spm(tokens, scores, types, 1, 2, 0, false);
    EXPECT_NE(bare.encode("the")[0], the);
    EXPECT_EQ(bare.encode(" the"), (std::vector<int32_t>{the}));
    EXPECT_EQ(bare.decode(std::vector<int32_t>{the}), " the");
    EXPECT_EQ(t.decode(std::vector<int32_t>{the}), "the");
    // The streaming decoder gives raw bytes (no leading space dropped).
    ncas::streaming_decoder sd(t);
    EXPECT_EQ(sd.feed(the), " the");
}

TEST(SpmTokenizer, ValidationErrors) {
    const auto& t = spm_tok();
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int32_t i = 0; i < t.size(); ++i) {
        tokens.push_back(t.token_text(i));
        scores.push_back(t.score(i));
        types.push_back(static_cast<int32_t>(t.type_of(i)));
    }
    using T = ncas::tokenizer;
    EXPECT_NE(error_of([&] { (void)T::spm(tokens, std::vector<float>(10), types, 1, 2, 0, true); }).find("10 scores for 1000 tokens"),
              std::string::npos);
    auto bad = scores;
    bad[500] = std::nanf("");
    EXPECT_NE(error_of([&] { (void)T::spm(tokens, bad, types, 1, 2, 0, true); }).find("token 500"), std::string::npos);
    EXPECT_NE(error_of([&] { (void)T::spm(tokens, scores, types, 1, 2, 1000, true); }).find("unknown-token id 1000"),
              std::string::npos);
    // No byte tokens: a character outside the vocabulary is the unknown token, as sentencepiece does.
    auto no_bytes = types;
    for (auto& ty : no_bytes)
        if (ty == 6) ty = 5;
    const T u = T::spm(tokens, scores, no_bytes, 1, 2, 0, true);
    EXPECT_EQ(u.encode("\xE6\x97\xA5"), (std::vector<int32_t>{t.token_id("\xE2\x96\x81"), 0}));
    const T none = T::spm(tokens, scores, no_bytes, 1, 2, -1, true);
    EXPECT_NE(error_of([&] { (void)none.encode("\xE6\x97\xA5"); }).find("nor an unknown token"), std::string::npos);
}

}  // namespace
