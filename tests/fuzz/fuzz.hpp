#pragma once
// Shared by the fuzz harnesses. Each harness defines LLVMFuzzerTestOneInput; it is
// built two ways:
//   - by scripts/fuzz.sh with clang's -fsanitize=fuzzer (coverage-guided runs), and
//   - with replay_main.cpp by CMake and Meson, so the ordinary test suite replays
//     every committed input under tests/data/fuzz/<harness>/ (regressions and seeds).
// A harness accepts ncas::error (bad input, reported) and nothing else: any other
// exception, a sanitizer report or a violated property is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#ifndef NCAS_FUZZ_DATA
#define NCAS_FUZZ_DATA "tests/data"
#endif

namespace fuzz {

// A property the code under test must keep, checked in every build (not an assert).
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

// The test data folder: $NCAS_FUZZ_DATA, else the one the build was configured with.
inline std::string data_dir() {
    const char* e = std::getenv("NCAS_FUZZ_DATA");
    return e && *e ? e : NCAS_FUZZ_DATA;
}

// Consumes the input front to back; past its end every read gives zeros.
struct reader {
    const uint8_t* p;
    size_t n;
    template <class T>
    T get() {
        T v{};
        const size_t k = n < sizeof v ? n : sizeof v;
        std::memcpy(&v, p, k);
        p += k, n -= k;
        return v;
    }
    std::string_view rest() {
        std::string_view s(reinterpret_cast<const char*>(p), n);
        p += n, n = 0;
        return s;
    }
};

}  // namespace fuzz
