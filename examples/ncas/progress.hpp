#pragma once
// A one-line progress bar on stderr, redrawn in place at most ten times a
// second. Drawn only when stderr is a terminal, unless forced (--progress),
// so logs and pipes stay clean.
//
//   perplexity [###########.................]  41%  1680/4096 tokens  512 tok/s  eta 0:04
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "args.hpp"

namespace ncas::cli {

enum class progress_mode { automatic, always, never };

inline void add_progress_options(arg_parser& p, progress_mode& mode) {
    p.flag("--progress", mode, "draw a progress bar even when stderr is not a terminal", progress_mode::always);
    p.flag("--no-progress", mode, "never draw a progress bar", progress_mode::never);
}

inline bool progress_enabled(progress_mode m) {
    return m == progress_mode::always || (m == progress_mode::automatic && ::isatty(STDERR_FILENO));
}

class progress_bar {
public:
    using clock = std::chrono::steady_clock;

    progress_bar(std::string label, int64_t total, std::string unit, progress_mode mode)
        : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(progress_enabled(mode)),
          start_(clock::now()) {}
    progress_bar(const progress_bar&) = delete;
    progress_bar& operator=(const progress_bar&) = delete;
    ~progress_bar() { finish(); }

    void update(int64_t done) {
        done_ = done;
        if (!enabled_) return;
        const auto now = clock::now();
        if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total_) return;
        last_ = now;
        draw(now);
    }

    // Draws the final state and ends the line (once).
    void finish() {
        if (!enabled_ || finished_) return;
        finished_ = true;
        if (!drawn_ || done_ < total_) draw(clock::now());
        std::fputc('\n', stderr);
    }

private:
    void draw(clock::time_point now) {
        constexpr int width = 28;
        const double frac = total_ > 0 ? double(done_) / double(total_) : 1.0;
        const int filled = int(frac * width + 0.5);
        const double secs = std::chrono::duration<double>(now - start_).count();
        const double rate = secs > 0 ? double(done_) / secs : 0.0;
        std::string bar(size_t(filled), '#');
        bar.append(size_t(width - filled), '.');
        char eta[32] = "";
        if (rate > 0 && done_ < total_) {
            const auto left = int64_t(double(total_ - done_) / rate + 0.5);
            std::snprintf(eta, sizeof eta, "  eta %lld:%02lld", (long long)(left / 60), (long long)(left % 60));
        }
        std::fprintf(stderr, "\r%s [%s] %3d%%  %lld/%lld %s  %.0f %s/s%s\033[K", label_.c_str(), bar.c_str(),
                     int(frac * 100), (long long)done_, (long long)total_, unit_.c_str(), rate, unit_.c_str(), eta);
        std::fflush(stderr);
        drawn_ = true;
    }

    std::string label_, unit_;
    int64_t total_, done_ = 0;
    bool enabled_, drawn_ = false, finished_ = false;
    clock::time_point start_, last_;
};

}  // namespace ncas::cli
