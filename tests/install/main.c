/* A C program outside the ncas tree, built against an installed libncas, the C
 * API (see run.sh). Usage: consumer_c MODEL.gguf [TOKEN...]
 * Does what main.cpp does through include/ncas.h: runs the tokens (default: the
 * golden tokens of tests/data/tiny/base_f32) one at a time, prints the argmax of
 * the logits after each, then the CPU kernels libncas ran ("kernels: avx2"). */
#include <ncas.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    static const int32_t golden[] = {0, 17, 42, 5, 63, 17, 29, 8, 51, 42, 3, 36};
    int32_t tokens[256];
    int n = 0, i, j, ok = 0;
    ncas_model *m;
    ncas_session *s = NULL;
    ncas_session_params p = ncas_session_default_params();

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [TOKEN...]\n", argv[0]);
        return 2;
    }
    for (i = 2; i < argc && n < 256; ++i) tokens[n++] = (int32_t)atol(argv[i]);
    if (n == 0)
        for (n = 0; n < (int)(sizeof golden / sizeof golden[0]); ++n) tokens[n] = golden[n];

    m = ncas_model_load(argv[1]);
    if (m) {
        p.n_threads = 1;
        s = ncas_session_new(m, &p);
    }
    if (s) {
        printf("argmax:");
        for (i = 0; i < n; ++i) {
            const float *logits;
            int32_t best = 0;
            if (ncas_session_decode(s, tokens[i]) != 0) break;
            logits = ncas_session_logits(s);
            for (j = 1; j < ncas_model_n_vocab(m); ++j)
                if (logits[j] > logits[best]) best = j;
            printf(" %d", (int)best);
        }
        ok = i == n && ncas_cpu_kernels() != NULL;
        if (ok) printf("\nkernels: %s\n", ncas_cpu_kernels());
    }
    if (!ok) fprintf(stderr, "error: %s\n", ncas_last_error());
    ncas_session_free(s);
    ncas_model_free(m);
    return ok ? 0 : 1;
}
