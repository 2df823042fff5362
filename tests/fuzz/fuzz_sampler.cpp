// Fuzz harness: sampler parameters and logits from the input, NaN and infinities
// included. A parameter set is either refused with an ncas::error or accepted; an
// accepted sampler returns an id inside the logits for any row that has a finite
// logit, and refuses a row of NaN, +inf or only -inf.
#include <cmath>
#include <vector>

#include "fuzz.hpp"
#include "ncas/ncas.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::reader in{data, size};
    ncas::sampler_params p;
    p.temperature = in.get<float>();
    p.top_k = in.get<int32_t>();
    p.top_p = in.get<float>();
    p.min_p = in.get<float>();
    p.repetition_penalty = in.get<float>();
    p.repetition_last_n = in.get<int32_t>();
    p.seed = in.get<uint64_t>();
    const auto n_recent = size_t(in.get<uint8_t>());
    std::vector<int32_t> recent;
    for (size_t i = 0; i < n_recent && in.n; ++i) recent.push_back(in.get<int32_t>());
    std::vector<float> logits;
    while (in.n && logits.size() < 4096) logits.push_back(in.get<float>());
    std::unique_ptr<ncas::sampler> s;
    try {
        s = std::make_unique<ncas::sampler>(p);
    } catch (const ncas::error&) {
        return 0;  // parameters refused
    }
    bool usable = !logits.empty(), any_finite = false;
    for (float l : logits) usable = usable && !std::isnan(l) && l != INFINITY, any_finite = any_finite || std::isfinite(l);
    usable = usable && any_finite;
    bool recent_ok = true;
    for (int32_t id : recent) recent_ok = recent_ok && id >= 0 && size_t(id) < logits.size();
    for (int draw = 0; draw < 2; ++draw) {
        try {
            const int32_t id = s->sample(logits, recent);
            FUZZ_CHECK(usable);
            FUZZ_CHECK(id >= 0 && size_t(id) < logits.size());
            FUZZ_CHECK(std::isfinite(logits[size_t(id)]));
        } catch (const ncas::error&) {
            FUZZ_CHECK(!usable || !recent_ok);
        }
    }
    return 0;
}
