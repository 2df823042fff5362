// Decode speed of a program built against the installed package with default flags
// (docs/benchmarks.md, issue #19):
//   g++ -std=c++20 -O2 tools/consumer_decode.cpp $(pkg-config --define-prefix --cflags --libs ncas) -o consumer
//   ./consumer MODEL.gguf 32
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ncas/ncas.hpp>
#include <algorithm>
int main(int argc, char** argv) try {
    if (argc != 3 || std::atoi(argv[2]) < 1) {
        std::fprintf(stderr, "usage: %s MODEL.gguf TOKENS\n", argv[0]);
        return 2;
    }
    const ncas::model m = ncas::model::load(argv[1]);
    const int64_t ctx = std::min<int64_t>(256, m.config().n_ctx);
    const int n = int(std::min<int64_t>(std::atoi(argv[2]), ctx - 4));
    ncas::session s(m, {.n_ctx = ctx, .n_threads = 2});
    std::span<const float> logits = s.prefill(std::vector<int32_t>{1, 2, 3, 4});
    ncas::sampler greedy({.temperature = 0.0f});
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) logits = s.decode(greedy.sample(logits));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("decode %.2f tok/s (%d tokens)\nkernels: %s\n", n / sec, n, ncas::cpu::kernels_chosen_text("").c_str());
} catch (const ncas::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
