/* The embedding example in C (docs/embedding.md): the demo model continues a
 * prompt, greedy, and the text is printed piece by piece as it comes. */
#include <ncas.h>
#include <stdio.h>

static int print_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    return 0; /* nonzero would stop here */
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/demo-q8_0.gguf";
    ncas_session_params sp = ncas_session_default_params();
    ncas_generate_params p = ncas_generate_default_params();
    ncas_generate_result r;
    ncas_session *session;
    ncas_model *model = ncas_model_load(path);
    if (!model) {
        fprintf(stderr, "error: %s\n", ncas_last_error());
        return 1;
    }
    sp.n_ctx = 256;
    session = ncas_session_new(model, &sp);
    p.sampling.temperature = 0; /* greedy */
    p.max_tokens = 24;
    if (!session || ncas_generate(session, "Once upon a time", &p, print_piece, NULL, &r) != 0) {
        fprintf(stderr, "error: %s\n", ncas_last_error());
        return 1;
    }
    printf("\n[%s after %d tokens]\n", ncas_finish_name(r.finish), (int)r.completion_tokens);
    ncas_session_free(session);
    ncas_model_free(model);
    return 0;
}
