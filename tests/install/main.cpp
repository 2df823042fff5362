// A program outside the ncas tree, built against an installed ncas (see run.sh).
// Usage: consumer MODEL.gguf [TOKEN...]
// Runs the tokens (default: the golden tokens of tests/data/tiny/base_f32) one
// at a time through a session and prints the argmax of the logits after each,
// then the CPU kernels it ran ("kernels: avx2"): built against ncas::ncas /
// pkg-config ncas with default flags, the best this CPU runs, not scalar.
#include <ncas/ncas.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [TOKEN...]\n", argv[0]);
        return 2;
    }
    try {
        std::vector<int32_t> tokens;
        for (int i = 2; i < argc; ++i) tokens.push_back(int32_t(std::stol(argv[i])));
        if (tokens.empty()) tokens = {0, 17, 42, 5, 63, 17, 29, 8, 51, 42, 3, 36};

        const auto m = ncas::model::load(argv[1]);
        ncas::session s(m, {.n_threads = 1});
        std::printf("argmax:");
        for (int32_t t : tokens) {
            const auto logits = s.decode(t);
            std::printf(" %ld", long(std::max_element(logits.begin(), logits.end()) - logits.begin()));
        }
        std::printf("\nkernels: %s\n", std::string(ncas::cpu::isa_name(ncas::cpu::kernels().id)).c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
