#pragma once
// The subcommands of `ncas`; each parses its own arguments (argv[0] is the
// subcommand's name) and returns the process exit code. They report a bad
// command line as cli::usage_error and a failure at run time as ncas::error.
namespace ncas::cli {

int run_generate(int argc, char** argv);
int run_chat(int argc, char** argv);
int run_info(int argc, char** argv);
int run_perplexity(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_logits(int argc, char** argv);
int run_quantize(int argc, char** argv);
#ifdef NCAS_WITH_SERVER
int run_serve(int argc, char** argv);  // built where cpp-httplib and nlohmann-json are found
#endif

}  // namespace ncas::cli
