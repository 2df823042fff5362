// Fuzz harness: `ncas serve`'s request reading (examples/ncas/serve_request.hpp), on the
// demo model's tokenizer. Input: one control byte, then the request body.
//   bit 0     chat (/v1/chat/completions) or completion (/v1/completions)
//   bits 1-3  the chat format: plain, chatml, llama-2, llama-3, mistral (5-7: plain)
//   bit 4     a --max-prompt of 8 tokens (else the context of 64, less one)
// The body is parsed as the server parses it; a JSON object must give either a
// request within the limits or an api_error with a 4xx status. Any other exception
// (it would reach the client as a 500) or a request outside the limits is a finding.
#include "fuzz.hpp"
#include "../../examples/ncas/serve_request.hpp"

namespace {

using namespace ncas::cli::serve_impl;

const ncas::model& demo() {
    static const ncas::model m = ncas::model::load(fuzz::data_dir() + "/../../models/demo-q8_0.gguf");
    return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const char* formats[] = {"plain", "chatml", "llama-2", "llama-3", "mistral", "plain", "plain", "plain"};
    const uint8_t control = data[0];
    request_context st;
    st.model = &demo();
    st.alias = "demo";
    st.format = ncas::chat_format::by_name(formats[(control >> 1) & 7]);
    st.lim.max_tokens = 100;
    st.lim.max_prompt = control & 16 ? 8 : 0;
    st.n_ctx = 64;
    const bool chat = control & 1;

    const json body = json::parse(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), nullptr, false);
    if (body.is_discarded() || !body.is_object()) return 0;  // the server answers 400 before reading
    try {
        const request r = chat ? read_chat(st, body) : read_completion(st, body);
        const int64_t limit = st.lim.max_prompt > 0 ? st.lim.max_prompt : st.n_ctx - 1;
        FUZZ_CHECK(!r.prompt.empty() && int64_t(r.prompt.size()) <= limit);
        for (int32_t t : r.prompt) FUZZ_CHECK(t >= 0 && t < int32_t(st.model->tokenizer().size()));
        FUZZ_CHECK(r.params.max_tokens >= 0 && r.params.max_tokens <= st.lim.max_tokens);
        const ncas::sampler_params& sp = r.params.sampling;
        FUZZ_CHECK(sp.temperature >= 0 && sp.temperature <= 2 && sp.top_p > 0 && sp.top_p <= 1 && sp.top_k >= 0);
        FUZZ_CHECK(sp.min_p >= 0 && sp.min_p <= 1 && sp.repetition_penalty > 0);
        FUZZ_CHECK(r.params.stops.size() <= 16 + st.format.stops().size());
        FUZZ_CHECK(r.chat == chat && r.model == st.alias);
    } catch (const api_error& e) {
        FUZZ_CHECK(e.status >= 400 && e.status < 500 && !e.message.empty());
    }
    return 0;
}
