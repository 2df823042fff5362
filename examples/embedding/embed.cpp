// The embedding example in C++ (docs/embedding.md): the demo model continues a
// prompt, greedy, and the text is printed piece by piece as it comes.
#include <cstdio>

#include <ncas/generate.hpp>
#include <ncas/ncas.hpp>

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "models/demo-q8_0.gguf";
    try {
        const ncas::model model = ncas::model::load(path);
        auto session = ncas::make_session(model, {.n_ctx = 256});
        ncas::generator gen(*session, model.tokenizer());
        ncas::generate_params p;
        p.sampling.temperature = 0;  // greedy
        p.max_tokens = 24;
        const ncas::generate_result r = gen.generate("Once upon a time", p, [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            return true;  // false would stop here
        });
        std::printf("\n[%s after %lld tokens]\n", ncas::finish_reason_name(r.finish),
                    (long long)r.usage.completion_tokens);
    } catch (const ncas::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
