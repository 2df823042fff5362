// The smallest program using ncas: load a model, greedily continue a prompt.
//   minimal MODEL.gguf "Once upon a time"
#include <algorithm>
#include <cstdio>
#include <vector>

#include <ncas/ncas.hpp>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]);
        return 2;
    }
    try {
        const ncas::model model = ncas::model::load(argv[1]);
        const ncas::tokenizer& tok = model.tokenizer();
        ncas::session session(model, {.n_ctx = std::min<int64_t>(256, model.config().n_ctx)});
        std::vector<int32_t> prompt = tok.encode(argv[2], tok.bos_id() >= 0);
        std::span<const float> logits = session.prefill(prompt);
        ncas::sampler greedy({.temperature = 0.0f});
        ncas::streaming_decoder text(tok);
        std::printf("%s", argv[2]);
        for (int i = 0; i < 32 && session.n_past() < session.n_ctx(); ++i) {
            const int32_t next = greedy.sample(logits);
            if (next == tok.eos_id()) break;
            std::printf("%s", text.feed(next).c_str());
            std::fflush(stdout);
            logits = session.decode(next);
        }
        std::printf("%s\n", text.flush().c_str());
    } catch (const ncas::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
