#pragma once
// A small JSON reader for the tests' golden files (objects, arrays, numbers,
// strings with escapes, booleans, null). Throws std::runtime_error on bad input.
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace test_json {

struct value;
using array = std::vector<value>;
using object = std::map<std::string, value>;

struct value {
    std::variant<std::nullptr_t, bool, double, std::string, std::shared_ptr<array>, std::shared_ptr<object>> v;

    bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
    double num() const { return std::get<double>(v); }
    int64_t integer() const { return int64_t(num()); }
    bool boolean() const { return std::get<bool>(v); }
    const std::string& str() const { return std::get<std::string>(v); }
    const array& arr() const { return *std::get<std::shared_ptr<array>>(v); }
    const object& obj() const { return *std::get<std::shared_ptr<object>>(v); }
    const value& operator[](const std::string& k) const {
        auto it = obj().find(k);
        if (it == obj().end()) throw std::runtime_error("json: missing key '" + k + "'");
        return it->second;
    }
    bool has(const std::string& k) const { return obj().contains(k); }
    template <class T>
    std::vector<T> list() const {
        std::vector<T> out;
        for (const value& e : arr()) out.push_back(T(e.num()));
        return out;
    }
};

class parser {
public:
    explicit parser(std::string s) : s_(std::move(s)) {}
    value parse() {
        value v = any();
        ws();
        if (i_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    [[noreturn]] void fail(const char* what) const { throw std::runtime_error(std::string("json: ") + what + " at " + std::to_string(i_)); }
    void ws() { while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_; }
    char peek() { ws(); if (i_ >= s_.size()) fail("unexpected end"); return s_[i_]; }
    void expect(char c) { if (peek() != c) fail("unexpected character"); ++i_; }
    bool literal(const char* w) {
        const std::string l(w);
        if (s_.compare(i_, l.size(), l) != 0) return false;
        i_ += l.size();
        return true;
    }
    static void put_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += char(cp);
        else if (cp < 0x800) out += char(0xc0 | cp >> 6), out += char(0x80 | (cp & 0x3f));
        else if (cp < 0x10000) out += char(0xe0 | cp >> 12), out += char(0x80 | (cp >> 6 & 0x3f)), out += char(0x80 | (cp & 0x3f));
        else out += char(0xf0 | cp >> 18), out += char(0x80 | (cp >> 12 & 0x3f)), out += char(0x80 | (cp >> 6 & 0x3f)), out += char(0x80 | (cp & 0x3f));
    }
    uint32_t hex4() {
        if (i_ + 4 > s_.size()) fail("short \\u escape");
        const uint32_t v = uint32_t(std::stoul(s_.substr(i_, 4), nullptr, 16));
        i_ += 4;
        return v;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            const char c = s_[i_++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            const char e = s_[i_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xd800 && cp < 0xdc00 && s_.compare(i_, 2, "\\u") == 0) {
                        i_ += 2;
                        const uint32_t lo = hex4();
                        if (lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        else { put_utf8(out, cp); cp = lo; }
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: out += e;
            }
        }
    }
    value any() {
        const char c = peek();
        if (c == '{') {
            ++i_;
            auto o = std::make_shared<object>();
            if (peek() == '}') { ++i_; return {o}; }
            while (true) {
                std::string k = string();
                expect(':');
                (*o)[k] = any();
                if (peek() == ',') { ++i_; continue; }
                expect('}');
                return {o};
            }
        }
        if (c == '[') {
            ++i_;
            auto a = std::make_shared<array>();
            if (peek() == ']') { ++i_; return {a}; }
            while (true) {
                a->push_back(any());
                if (peek() == ',') { ++i_; continue; }
                expect(']');
                return {a};
            }
        }
        if (c == '"') return {string()};
        if (literal("true")) return {true};
        if (literal("false")) return {false};
        if (literal("null")) return {nullptr};
        size_t used = 0;
        const double d = std::stod(s_.substr(i_, 64), &used);
        if (used == 0) fail("bad number");
        i_ += used;
        return {d};
    }
    std::string s_;
    size_t i_ = 0;
};

inline value parse_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    return parser(ss.str()).parse();
}

}  // namespace test_json
