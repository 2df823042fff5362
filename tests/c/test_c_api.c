/* The C API (include/ncas.h), from C99: model, tokenizer, session, sampler,
 * generation with a callback, chat, session state on disk, and the errors.
 * usage: test_c_api MODELS_DIR TINY_DIR (the demo model and the tiny models). */
#include <ncas.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checks = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        ++checks;                                                                       \
        if (!(cond)) {                                                                  \
            ++failures;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    ncas_last_error());                                                 \
        }                                                                               \
    } while (0)

#define CONTAINS(s, part) (strstr((s), (part)) != NULL)

struct text {
    char buf[8192];
    size_t len;
    int pieces;
    int stop_after; /* > 0: return nonzero at this piece */
};

static int collect(const char *piece, size_t len, void *user) {
    struct text *t = (struct text *)user;
    if (t->len + len < sizeof t->buf) {
        memcpy(t->buf + t->len, piece, len);
        t->len += len;
        t->buf[t->len] = '\0';
    }
    ++t->pieces;
    return t->stop_after > 0 && t->pieces >= t->stop_after;
}

static char path_buf[4096];
static const char *join(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

int main(int argc, char **argv) {
    ncas_model *m, *tiny;
    ncas_session *s, *s2;
    ncas_sampler *smp;
    ncas_sampler_params sp;
    ncas_generate_params gp;
    ncas_generate_result r;
    struct text t, t2;
    int32_t ids[256], n, i, greedy[16], id;
    char out[512], state[4096];
    int64_t len;
    FILE *f;
    const char *stops[1];
    ncas_chat_message chat[2];

    if (argc != 3) {
        fprintf(stderr, "usage: %s MODELS_DIR TINY_DIR\n", argv[0]);
        return 2;
    }
    CHECK(strlen(ncas_version()) > 0);
    /* The kernels: a level name, the same on every call. */
    CHECK(ncas_cpu_kernels() != NULL && strlen(ncas_cpu_kernels()) > 0);
    CHECK(ncas_cpu_kernels() == ncas_cpu_kernels());

    /* A model that is not there: NULL and a message that names the file. */
    CHECK(ncas_model_load("/nonexistent/x.gguf") == NULL);
    CHECK(CONTAINS(ncas_last_error(), "/nonexistent/x.gguf"));

    m = ncas_model_load(join(argv[1], "demo-q8_0.gguf"));
    CHECK(m != NULL);
    if (!m) return 1;
    CHECK(ncas_model_n_vocab(m) > 256);

    /* Tokenizer: round trip, and a buffer too small gives the size needed. */
    n = ncas_tokenize(m, "Hello world", 11, 0, 0, ids, 256);
    CHECK(n > 0);
    len = ncas_detokenize(m, ids, n, out, sizeof out);
    CHECK(len == 11 && memcmp(out, "Hello world", 11) == 0);
    CHECK(ncas_tokenize(m, "Hello world", 11, 0, 0, ids, 0) == n);
    CHECK(ncas_detokenize(m, ids, n, out, 3) == 11);

    /* Session, logits, greedy sampling: the reference for generate. */
    s = ncas_session_new(m, NULL);
    CHECK(s != NULL);
    sp = ncas_sampler_default_params();
    sp.temperature = 0;
    smp = ncas_sampler_new(&sp);
    CHECK(smp != NULL);
    n = ncas_tokenize(m, "Once upon a time", 16, ncas_model_bos(m) >= 0, 0, ids, 256);
    CHECK(ncas_session_logits(s) == NULL);
    CHECK(ncas_session_prefill(s, ids, n) == 0);
    CHECK(ncas_session_n_past(s) == n);
    for (i = 0; i < 16; ++i) {
        id = ncas_sampler_sample(smp, ncas_session_logits(s), ncas_model_n_vocab(m), NULL, 0);
        CHECK(id >= 0);
        greedy[i] = id;
        CHECK(ncas_session_decode(s, id) == 0);
    }
    CHECK(ncas_session_n_past(s) == n + 16);
    CHECK(ncas_session_rewind(s, 2) == 0 && ncas_session_n_past(s) == 2);
    CHECK(ncas_session_rewind(s, 99) == -1 && CONTAINS(ncas_last_error(), "rewind"));
    CHECK(ncas_sampler_sample(smp, NULL, 3, NULL, 0) == -1);

    /* Generate: the same tokens as the loop, in pieces that add up to their text. */
    gp = ncas_generate_default_params();
    gp.sampling = sp;
    gp.sampling.repetition_penalty = 1.0f;
    gp.max_tokens = 16;
    gp.ignore_eos = 1;
    memset(&t, 0, sizeof t);
    CHECK(ncas_generate(s, "Once upon a time", &gp, collect, &t, &r) == 0);
    CHECK(r.finish == NCAS_FINISH_LENGTH && strcmp(ncas_finish_name(r.finish), "length") == 0);
    CHECK(r.completion_tokens == 16 && r.prompt_tokens == n);
    CHECK(r.cached_tokens == 2); /* the rewind above kept two of the prompt's tokens */
    len = ncas_detokenize(m, greedy, 16, out, sizeof out);
    CHECK(len == (int64_t)t.len && memcmp(out, t.buf, t.len) == 0);
    CHECK(t.pieces >= 2);

    /* The callback stops it; a stop string cuts it. */
    memset(&t2, 0, sizeof t2);
    t2.stop_after = 2;
    CHECK(ncas_generate(s, "Once upon a time", &gp, collect, &t2, &r) == 0);
    CHECK(r.finish == NCAS_FINISH_CANCELLED && t2.pieces == 2);
    if (t.len > 6) {
        memset(&t2, 0, sizeof t2);
        stops[0] = t.buf + 3;
        memcpy(out, t.buf + 3, 3);
        out[3] = '\0';
        stops[0] = out;
        gp.stops = stops;
        gp.n_stops = 1;
        CHECK(ncas_generate(s, "Once upon a time", &gp, collect, &t2, &r) == 0);
        CHECK(r.finish == NCAS_FINISH_STOP);
        CHECK(strstr(t.buf, out) != NULL && t2.len == (size_t)(strstr(t.buf, out) - t.buf));
        gp.stops = NULL;
        gp.n_stops = 0;
    }

    /* Chat formatting and chat. */
    chat[0].role = "user";
    chat[0].content = "Hi";
    len = ncas_chat_apply(m, "plain", chat, 1, 1, out, sizeof out);
    CHECK(len == 19 && memcmp(out, "User: Hi\nAssistant:", 19) == 0);
    len = ncas_chat_apply(m, NULL, chat, 1, 1, out, sizeof out); /* the demo has no template: plain */
    CHECK(len == 19);
    CHECK(ncas_chat_apply(m, "vicuna", chat, 1, 1, out, sizeof out) == -1);
    CHECK(CONTAINS(ncas_last_error(), "chatml, llama-2, llama-3, mistral, plain"));
    CHECK(ncas_chat_apply(m, "chatml", chat, 0, 1, out, sizeof out) == -1 && CONTAINS(ncas_last_error(), "no messages"));
    chat[1].role = "robot";
    chat[1].content = "x";
    CHECK(ncas_chat_apply(m, "chatml", chat, 2, 1, out, sizeof out) == -1 && CONTAINS(ncas_last_error(), "robot"));
    chat[1].role = "assistant";
    gp.max_tokens = 24;
    gp.ignore_eos = 0;
    gp.sampling.temperature = 0.7f;
    gp.sampling.seed = 5;
    memset(&t, 0, sizeof t);
    CHECK(ncas_chat(s, NULL, chat, 1, &gp, collect, &t, &r) == 0);
    CHECK(strstr(t.buf, "\nUser:") == NULL);

    /* Errors: a prompt longer than the context, a bad cache type, bad sampler values. */
    {
        ncas_session_params p = ncas_session_default_params();
        ncas_session *small;
        p.n_ctx = 4;
        small = ncas_session_new(m, &p);
        CHECK(small != NULL);
        CHECK(ncas_generate(small, "one two three four five six", &gp, NULL, NULL, NULL) == -1);
        CHECK(CONTAINS(ncas_last_error(), "shorter than the context"));
        ncas_session_free(small);
        p.n_ctx = 0;
        p.kv_type = "q9";
        CHECK(ncas_session_new(m, &p) == NULL && CONTAINS(ncas_last_error(), "q9"));
        gp.sampling.top_p = 0;
        CHECK(ncas_generate(s, "x", &gp, NULL, NULL, NULL) == -1 && CONTAINS(ncas_last_error(), "top_p"));
        gp.sampling.top_p = 1;
    }

    /* Session state: saved, loaded into a new session, the same continuation. */
    /* Beside the executable: the shared and static tests run at once (ctest -j2) in one folder. */
    snprintf(state, sizeof state, "%s.state", argv[0]);
    gp.sampling.temperature = 0;
    gp.max_tokens = 12;
    CHECK(ncas_generate(s, "The old man and the sea", &gp, NULL, NULL, &r) == 0);
    CHECK(ncas_session_save(s, state) == 0);
    s2 = ncas_session_new(m, NULL);
    CHECK(ncas_session_load(s2, state) == 0);
    CHECK(ncas_session_n_past(s2) == ncas_session_n_past(s));
    memset(&t, 0, sizeof t);
    memset(&t2, 0, sizeof t2);
    CHECK(ncas_generate(s, "The old man and the sea", &gp, collect, &t, &r) == 0);
    CHECK(ncas_generate(s2, "The old man and the sea", &gp, collect, &t2, &r) == 0);
    CHECK(r.cached_tokens == r.prompt_tokens - 1); /* the loaded cache served the prompt */
    CHECK(t.len > 0 && t.len == t2.len && memcmp(t.buf, t2.buf, t.len) == 0);

    /* A corrupt, a truncated and a foreign state file are refused, and leave the session empty. */
    f = fopen(state, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 200, SEEK_SET);
        fputc(0x5a ^ fgetc(f), f);
        fclose(f);
    }
    CHECK(ncas_session_load(s2, state) == -1);
    CHECK(CONTAINS(ncas_last_error(), "checksum") || CONTAINS(ncas_last_error(), "bad"));
    CHECK(ncas_session_n_past(s2) == 0);
    f = fopen(state, "wb");
    if (f) {
        fputs("NCASSTAT", f);
        fclose(f);
    }
    CHECK(ncas_session_load(s2, state) == -1 && CONTAINS(ncas_last_error(), "truncated"));
    tiny = ncas_model_load(join(argv[2], "base_f32.gguf"));
    CHECK(tiny != NULL);
    {
        ncas_session *ts = ncas_session_new(tiny, NULL);
        int32_t one = 1;
        CHECK(ncas_session_prefill(ts, &one, 1) == 0);
        CHECK(ncas_session_save(ts, state) == 0);
        CHECK(ncas_session_load(s2, state) == -1 && CONTAINS(ncas_last_error(), "another model"));
        ncas_session_free(ts);
    }
    remove(state);

    ncas_model_free(tiny);
    ncas_sampler_free(smp);
    ncas_session_free(s2);
    ncas_session_free(s);
    ncas_model_free(m);
    printf("%d of %d checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
