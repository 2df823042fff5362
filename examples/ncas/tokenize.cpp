// `ncas tokenize`: text to token ids as a JSON array, or with --decode,
// ids back to text (the exact bytes; a newline is added only at a terminal).
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

    const ncas::model m = load_model(model_path);
    const tokenizer& tok = m.tokenizer();
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
        for (const char c : tok.token_text(ids[i])) {  // byte-level form ("Ġthe"): always valid UTF-8
            if (c == '"' || c == '\\') json += '\\';
            if (c >= 0 && c < 0x20) {
                char esc[8];
                std::snprintf(esc, sizeof esc, "\\u%04x", c);
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
