// `ncas tokenize`: text to token ids as a JSON array, or with --decode,
// ids back to text (the exact bytes; a newline is added only at a terminal).
// Reads only the file's vocabulary: GPT-2 byte-level BPE or SentencePiece.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"

namespace ncas::cli {

int run_tokenize(int argc, char** argv) {
    std::string model_path, decode_ids;
    std::vector<std::string> text;
    bool bos = false, special = false, pieces = false;

    arg_parser p("tokenize", "[options] [TEXT]",
                 "Prints the token ids of TEXT (stdin when not given) as a JSON array;\n"
                 "with --decode, prints the text of a list of ids instead.");
    p.positional("TEXT", text, "the text to tokenize (default: read from stdin)");
    add_model_option(p, model_path);
    p.option("-d --decode", decode_ids, "IDS", "decode ids (\"1,2,3\", \"1 2 3\" or \"[1, 2, 3]\") to text");
    p.flag("--bos", bos, "start with the BOS token");
    p.flag("--special", special, "turn texts of control tokens (like <|endoftext|>) into those tokens");
    p.flag("--pieces", pieces, "print {\"id\": ..., \"piece\": ...} objects with each token's vocabulary text");
    if (!p.parse(argc, argv)) return 0;
    const bool decoding = p.given("--decode");
    if (decoding && (!text.empty() || bos || special || pieces))
        throw usage_error("--decode takes no TEXT, --bos, --special or --pieces");
    const std::vector<int32_t> ids_in = decoding ? parse_ids("option --decode", decode_ids) : std::vector<int32_t>{};
    std::string input;
    if (!decoding) input = text.empty() ? read_stdin("the text") : text[0];

    // Only the vocabulary is read (no weights bound), so a vocabulary-only GGUF works too.
    const std::string path = model_path.empty() ? find_default_model() : model_path;
    const mapped_file map(path);
    const gguf_file file = gguf_file::from_memory(path, map.bytes());
    std::string why;
    const std::unique_ptr<tokenizer> vocab = read_vocab(file, &why);
    if (!vocab) file.fail(why);
    const tokenizer& tok = *vocab;
    if (decoding) {
        const std::string out = tok.decode(ids_in);
        std::fwrite(out.data(), 1, out.size(), stdout);
        if (::isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
        return 0;
    }
    const std::vector<int32_t> ids = tok.encode(input, bos, special);
    std::string json = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) json += pieces ? ",\n " : ", ";
        if (!pieces) {
            json += std::to_string(ids[i]);
            continue;
        }
        json += "{\"id\": " + std::to_string(ids[i]) + ", \"piece\": \"";
        for (const char c : tok.token_text(ids[i])) {  // vocabulary form ("Ġthe", "▁the")
            if (c == '"' || c == '\\') json += '\\';
            if (static_cast<unsigned char>(c) < 0x20) {  // char is signed on x86-64, unsigned on ARM64
                char esc[8];
                std::snprintf(esc, sizeof esc, "\\u%04x", unsigned(c));
                json += esc;
            } else {
                json += c;
            }
        }
        json += "\"}";
    }
    json += "]\n";
    std::fputs(json.c_str(), stdout);
    return 0;
}

}  // namespace ncas::cli
