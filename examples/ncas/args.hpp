#pragma once
// A small command-line parser for the ncas subcommands. Each subcommand
// declares its options with a help line; --help prints them with their
// defaults; an unknown option, a missing or malformed value, a number out of
// range or a stray argument is a usage_error naming the option (exit code 2).
//
//   arg_parser p("generate", "[options] [PROMPT]", "Generates text from a prompt.");
//   p.option("-n --n-predict", n, "N", "tokens to generate; -1: until the context is full", bounds<int64_t>{-1});
//   p.flag("--ignore-eos", ignore_eos, "keep going after the end-of-text token");
//   if (!p.parse(argc, argv)) return 0;   // --help was printed
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ncas::cli {

// A malformed command line: main() prints it with a pointer to --help and exits 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Inclusive range a numeric option must lie in.
template <class T>
struct bounds {
    T lo = std::numeric_limits<T>::lowest();
    T hi = std::numeric_limits<T>::max();
};

inline std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

// The whole of text as a T, or a usage_error naming `what`.
template <class T>
T parse_number(std::string_view what, std::string_view text) {
    T v{};
    const char* b = text.data();
    const char* e = b + text.size();
    if (!text.empty() && *b == '+') ++b;  // from_chars takes no '+'
    const auto [p, ec] = std::from_chars(b, e, v);
    if (text.empty() || ec == std::errc::invalid_argument || p != e)
        throw usage_error(std::string(what) + ": " + in_quotes(text) + " is not " +
                          (std::is_integral_v<T> ? "an integer" : "a number"));
    if (ec == std::errc::result_out_of_range) throw usage_error(std::string(what) + ": " + in_quotes(text) + " is out of range");
    if constexpr (std::is_floating_point_v<T>)
        if (v != v || v == std::numeric_limits<T>::infinity() || v == -std::numeric_limits<T>::infinity())
            throw usage_error(std::string(what) + ": " + in_quotes(text) + " is not a finite number");
    return v;
}

template <class T>
std::string number_text(T v) {
    if constexpr (std::is_floating_point_v<T>) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", double(v));
        return buf;
    } else {
        return std::to_string(v);
    }
}

class arg_parser {
public:
    arg_parser(std::string command, std::string synopsis, std::string description)
        : command_(std::move(command)), synopsis_(std::move(synopsis)), description_(std::move(description)) {}

    // names: "-n --n-predict" (space separated). A flag sets target to `value`
    // (several flags may set one target; the last given wins).
    template <class T = bool>
    void flag(std::string_view names, T& target, std::string help, T value = T(true)) {
        add(names, "", std::move(help), "", false, [&target, value](std::string_view) { target = value; });
    }

    void option(std::string_view names, std::string& target, std::string metavar, std::string help) {
        add(names, std::move(metavar), std::move(help), target, true, [&target](std::string_view v) { target = v; });
    }

    // A string that must be one of `choices`.
    void choice(std::string_view names, std::string& target, std::vector<std::string> choices, std::string help) {
        std::string meta;
        for (const auto& c : choices) meta += (meta.empty() ? "" : "|") + c;
        const std::string name = long_name(names);
        add(names, meta, std::move(help), target, true, [&target, choices, name, meta](std::string_view v) {
            for (const auto& c : choices)
                if (v == c) { target = v; return; }
            throw usage_error("option " + name + ": " + in_quotes(v) + " is not one of " + meta);
        });
    }

    template <class T>
        requires std::is_arithmetic_v<T>
    void option(std::string_view names, T& target, std::string metavar, std::string help, bounds<T> range = {}) {
        const std::string name = long_name(names);
        add(names, std::move(metavar), std::move(help), number_text(target), true,
            [&target, name, range](std::string_view v) {
                const T x = parse_number<T>("option " + name, v);
                if (x < range.lo || x > range.hi)
                    throw usage_error("option " + name + " must be " +
                                      (range.hi == std::numeric_limits<T>::max()
                                           ? ">= " + number_text(range.lo)
                                           : "in [" + number_text(range.lo) + ", " + number_text(range.hi) + "]") +
                                      ", not " + std::string(v));
                target = x;
            });
    }

    // At most `max` positional arguments, appended to target in order.
    void positional(std::string metavar, std::vector<std::string>& target, std::string help, size_t max = 1) {
        positional_ = {std::move(metavar), std::move(help), &target, max};
    }

    // Parses argv[1..argc) (argv[0] is the subcommand's name). Returns false
    // when --help was asked for (and printed on stdout).
    bool parse(int argc, char** argv) {
        bool options_done = false;
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            if (options_done || a.size() < 2 || a[0] != '-') {
                take_positional(a);
                continue;
            }
            if (a == "--") { options_done = true; continue; }
            if (a == "-h" || a == "--help") {
                std::fputs(help().c_str(), stdout);
                return false;
            }
            const size_t eq = a.find('=');
            const std::string_view name = a.substr(0, eq);
            const spec* s = find(name);
            if (!s) throw usage_error("unknown option " + in_quotes(name) + suggestion(name));
            given_.insert(s->names.back());
            if (!s->takes_value) {
                if (eq != std::string_view::npos) throw usage_error("option " + std::string(name) + " takes no value");
                s->set({});
            } else if (eq != std::string_view::npos) {
                s->set(a.substr(eq + 1));
            } else if (i + 1 < argc) {
                s->set(argv[++i]);
            } else {
                throw usage_error("option " + std::string(name) + " needs a value (" + s->metavar + ")");
            }
        }
        return true;
    }

    // Whether the option (any of its names) appeared on the command line.
    bool given(std::string_view name) const {
        const spec* s = find(name);
        return s && given_.contains(s->names.back());
    }

    std::string help() const {
        std::string out = "usage: ncas " + command_ + " " + synopsis_ + "\n\n" + description_ + "\n";
        if (positional_.target) out += "\n  " + pad(positional_.metavar, 26) + positional_.help + "\n";
        out += "\noptions:\n";
        for (const spec& s : specs_) {
            std::string left;
            for (const auto& n : s.names) left += (left.empty() ? "" : ", ") + n;
            if (!s.metavar.empty()) left += " " + s.metavar;
            std::string line = "  " + pad(left, 26) + s.help;
            if (s.takes_value && !s.default_text.empty() && s.help.find("(default") == std::string::npos)
                line += " (default: " + s.default_text + ")";
            out += line + "\n";
        }
        out += "  " + pad("-h, --help", 26) + "show this help and exit\n";
        return out;
    }

private:
    struct spec {
        std::vector<std::string> names;  // "-n", "--n-predict"
        std::string metavar, help, default_text;
        bool takes_value;
        std::function<void(std::string_view)> set;
    };
    struct positional_spec {
        std::string metavar, help;
        std::vector<std::string>* target = nullptr;
        size_t max = 0;
    };

    void add(std::string_view names, std::string metavar, std::string help, std::string default_text, bool takes_value,
             std::function<void(std::string_view)> set) {
        spec s{split(names), std::move(metavar), std::move(help), std::move(default_text), takes_value, std::move(set)};
        specs_.push_back(std::move(s));
    }

    static std::vector<std::string> split(std::string_view names) {
        std::vector<std::string> out;
        size_t i = 0;
        while (i < names.size()) {
            const size_t j = std::min(names.find(' ', i), names.size());
            if (j > i) out.emplace_back(names.substr(i, j - i));
            i = j + 1;
        }
        return out;
    }
    static std::string long_name(std::string_view names) { return split(names).back(); }

    static std::string pad(std::string s, size_t width) {
        if (s.size() + 2 > width) return s + "\n" + std::string(width + 2, ' ');
        return s + std::string(width - s.size(), ' ');
    }

    const spec* find(std::string_view name) const {
        for (const spec& s : specs_)
            for (const auto& n : s.names)
                if (n == name) return &s;
        return nullptr;
    }

    // " (did you mean --top-k?)" when an option's name shares a long prefix with name.
    std::string suggestion(std::string_view name) const {
        std::string best;
        size_t best_len = 3;
        for (const spec& s : specs_)
            for (const auto& n : s.names) {
                size_t k = 0;
                while (k < n.size() && k < name.size() && n[k] == name[k]) ++k;
                if (k > best_len) best_len = k, best = n;
            }
        return best.empty() ? "" : " (did you mean " + best + "?)";
    }

    void take_positional(std::string_view a) {
        if (!positional_.target || positional_.target->size() >= positional_.max)
            throw usage_error("unexpected argument " + in_quotes(a));
        positional_.target->emplace_back(a);
    }

    std::string command_, synopsis_, description_;
    std::vector<spec> specs_;
    positional_spec positional_;
    std::set<std::string> given_;
};

}  // namespace ncas::cli
