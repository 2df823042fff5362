// Fuzz harness: session state files (ncas/state.hpp), read back into a CPU session
// of the tiny MoD + GQA model tests/data/tiny/base_f32.gguf.
//
// Input: one control byte, then the file's body.
//   bits 0-1  the session's cache type: f32, f16, q8_0, q4_0
//   bit 2     prefix the body with a valid header (magic, version, this model's size and hash),
//             which a fuzzer cannot guess, so mutations reach the cache and layer checks
//   bit 3     append the body's correct checksum, for the same reason
// A load either succeeds, and then the session holds the file's tokens and decodes one
// more token, or it fails with ncas::error and leaves the session empty and usable
// (NCAS_FUZZ_VERBOSE=1 prints which, for each input).
//
// The committed seeds (tests/data/fuzz/state/) are real states of each cache type,
// written by this harness: `NCAS_FUZZ_WRITE_SEEDS=DIR fuzz_state EMPTY_FILE` prefills the
// model's 12-token golden prompt in each cache type and saves the states.
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <memory>
#include <vector>

#include "fuzz.hpp"
#include "ncas/ncas.hpp"
#include "ncas/state.hpp"

namespace {

constexpr ncas::weight_type cache_types[4] = {ncas::weight_type::f32, ncas::weight_type::f16, ncas::weight_type::q8_0,
                                              ncas::weight_type::q4_0};
constexpr size_t header_bytes = 8 + 4 + 8 + 8;  // magic, version, model size, model hash

struct fixture {
    ncas::model m = ncas::model::load(fuzz::data_dir() + "/tiny/base_f32.gguf");
    std::array<std::unique_ptr<ncas::session>, 4> sessions;
    fixture() {
        for (size_t i = 0; i < 4; ++i)
            sessions[i] = std::make_unique<ncas::session>(
                m, ncas::session_params{.n_ctx = 16, .n_threads = 1, .kv_type = cache_types[i]});
    }
};

fixture& the_fixture() {
    static fixture f;
    return f;
}

int memory_file() {
    static const int fd = memfd_create("ncas-fuzz.state", 0);
    FUZZ_CHECK(fd >= 0);
    return fd;
}

void write_file(const std::vector<uint8_t>& bytes) {
    const int fd = memory_file();
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    for (size_t done = 0; done < bytes.size();) {
        const ssize_t n = pwrite(fd, bytes.data() + done, bytes.size() - done, off_t(done));
        FUZZ_CHECK(n > 0);
        done += size_t(n);
    }
}

// NCAS_FUZZ_WRITE_SEEDS=DIR: a saved state per cache type, as this harness's inputs.
void write_seeds(const char* dir) {
    fixture& f = the_fixture();
    const std::vector<int32_t> prompt = {0, 17, 42, 5, 63, 17, 29, 8, 51, 42, 3, 36};
    const std::string tmp = std::string(dir) + "/.state.tmp";
    for (uint8_t i = 0; i < 4; ++i) {
        ncas::session& s = *f.sessions[i];
        s.rewind(0);
        s.prefill(prompt);
        ncas::save_state(s, prompt, tmp);
        std::ifstream in(tmp, std::ios::binary);
        const std::vector<char> file{std::istreambuf_iterator<char>(in), {}};
        FUZZ_CHECK(file.size() > header_bytes + 8);
        std::ofstream out(std::string(dir) + "/seed_" + std::string(ncas::type_name(cache_types[i])), std::ios::binary);
        const char control = char(i | 4 | 8);  // header and checksum supplied by the harness
        out.write(&control, 1);
        out.write(file.data() + header_bytes, std::streamsize(file.size() - header_bytes - 8));
        s.rewind(0);
    }
    std::remove(tmp.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (const char* dir = std::getenv("NCAS_FUZZ_WRITE_SEEDS")) {
        static bool written = false;
        if (!written) write_seeds(dir), written = true;
    }
    if (size == 0) return 0;
    fixture& f = the_fixture();
    const uint8_t control = data[0];
    ncas::session& s = *f.sessions[control & 3];

    std::vector<uint8_t> file;
    if (control & 4) {
        const auto put = [&](const void* p, size_t n) {
            file.insert(file.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
        };
        const uint64_t model_size = f.m.file().file_size(), hash = ncas::state_detail::model_hash(f.m);
        put(ncas::state_detail::magic, sizeof ncas::state_detail::magic);
        put(&ncas::state_detail::version, sizeof ncas::state_detail::version);
        put(&model_size, sizeof model_size);
        put(&hash, sizeof hash);
    }
    file.insert(file.end(), data + 1, data + size);
    if (control & 8) {
        ncas::state_detail::fnv sum;
        sum.add(file.data(), file.size());
        const uint8_t* h = reinterpret_cast<const uint8_t*>(&sum.h);
        file.insert(file.end(), h, h + sizeof sum.h);
    }
    write_file(file);

    const std::string path = "/proc/self/fd/" + std::to_string(memory_file());
    const int32_t next = 7;
    try {
        const std::vector<int32_t> tokens = ncas::load_state(s, path);
        FUZZ_CHECK(int64_t(tokens.size()) == s.n_past());
        if (std::getenv("NCAS_FUZZ_VERBOSE")) std::fprintf(stderr, "loaded %zu tokens\n", tokens.size());
        if (s.n_past() < s.n_ctx()) {
            const std::span<const float> logits = s.decode(next);
            FUZZ_CHECK(int64_t(logits.size()) == s.n_vocab());
        }
    } catch (const ncas::error& e) {
        if (std::getenv("NCAS_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
        FUZZ_CHECK(s.n_past() == 0);  // a failed load leaves the session empty ...
        FUZZ_CHECK(int64_t(s.decode(next).size()) == s.n_vocab());  // ... and usable
    }
    s.rewind(0);
    return 0;
}
