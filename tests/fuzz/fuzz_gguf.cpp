// Fuzz harness: GGUF reading and model binding, the path of ncas::model::load.
// The input is written to an in-memory file and loaded by path (mapped, as a user
// loads it; every 4th input also through the streaming loader's plain reads). A file
// that loads and is small is then run for two tokens, so a header the checks let
// through must also drive the forward pass without a fault.
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.hpp"
#include "ncas/ncas.hpp"

namespace {

// One memfd for the whole run, rewritten for each input.
int memory_file() {
    static const int fd = memfd_create("ncas-fuzz.gguf", 0);
    FUZZ_CHECK(fd >= 0);
    return fd;
}

bool small_enough_to_run(const ncas::model_config& c) {
    const int64_t per_layer = c.n_embd * (c.q_dim() + c.k_dim() + c.v_dim() + c.attn_dim()) +
                              c.n_expert * c.expert_matrices() * c.n_embd * c.n_ff;
    return c.n_vocab * c.n_embd + c.n_layer * per_layer < (int64_t(1) << 22);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const int fd = memory_file();
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    for (size_t done = 0; done < size;) {
        const ssize_t n = pwrite(fd, data + done, size - done, off_t(done));
        FUZZ_CHECK(n > 0);
        done += size_t(n);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const bool streamed = size % 4 == 3;
    try {
        const auto m = ncas::model::load(path, {.stream_experts = streamed});
        const ncas::model_config& c = m.config();
        FUZZ_CHECK(c.n_layer > 0 && c.n_embd > 0 && c.n_vocab > 0);
        FUZZ_CHECK(int64_t(m.weights().layers.size()) == c.n_layer);
        if (m.has_tokenizer()) FUZZ_CHECK(int64_t(m.tokenizer().size()) == c.n_vocab);
        if (!small_enough_to_run(c)) return 0;
        ncas::session_params p{.n_ctx = 4, .n_threads = 1};
        if (streamed) p.expert_budget = ncas::expert_arena::min_budget(m, false);
        ncas::session s(m, p);
        const int32_t ids[2] = {0, int32_t(c.n_vocab - 1)};
        const std::span<const float> logits = s.prefill(ids);
        FUZZ_CHECK(int64_t(logits.size()) == c.n_vocab);
    } catch (const ncas::error&) {
        // bad input, reported: the expected outcome for most inputs
    }
    return 0;
}
