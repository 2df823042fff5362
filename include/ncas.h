/* ncas.h: the C API of ncas (libncas), for C and for other languages' FFIs.
 *
 *   ncas_model *m = ncas_model_load("model.gguf");
 *   ncas_session *s = ncas_session_new(m, NULL);
 *   ncas_generate_params p = ncas_generate_default_params();
 *   p.max_tokens = 64;
 *   ncas_generate(s, "Once upon a time", &p, print_piece, NULL, &result);
 *   ncas_session_free(s); ncas_model_free(m);
 *
 * Rules. Handles are opaque. A function that can fail returns a negative
 * number (or NULL) and sets the calling thread's last error, which
 * ncas_last_error() returns (valid until the thread's next failing call). No
 * C++ exception crosses this API. Functions that return a size write at most
 * `cap` bytes (or ids) and return how many there are in all: call again with
 * a larger buffer when the result exceeds cap.
 *
 * Threads. A model is read-only once loaded: any number of sessions over it
 * may run on different threads at once; one session is used by one thread at
 * a time (ncas_session_cancel excepted). Free the sessions before their model.
 * Sessions of this library run on the CPU.
 */
#ifndef NCAS_H
#define NCAS_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define NCAS_API __declspec(dllexport)
#else
#define NCAS_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ncas_model ncas_model;
typedef struct ncas_session ncas_session;
typedef struct ncas_sampler ncas_sampler;

/* The library's version, "MAJOR.MINOR.PATCH". */
NCAS_API const char *ncas_version(void);
/* The message of the calling thread's last failure ("" when none). */
NCAS_API const char *ncas_last_error(void);
/* The CPU kernels this process runs ("avx2", "avx512vnni", "neon", ..., "scalar"):
 * the best level of this CPU that libncas holds, or the one NCAS_ISA names
 * (NULL and the last error when NCAS_ISA names one this CPU does not run). */
NCAS_API const char *ncas_cpu_kernels(void);

/* ---- model ---- */
NCAS_API ncas_model *ncas_model_load(const char *path);
NCAS_API void ncas_model_free(ncas_model *m);
NCAS_API int32_t ncas_model_n_vocab(const ncas_model *m);
NCAS_API int32_t ncas_model_n_ctx(const ncas_model *m); /* the longest context the model allows */
NCAS_API int32_t ncas_model_bos(const ncas_model *m);   /* -1: none */
NCAS_API int32_t ncas_model_eos(const ncas_model *m);   /* -1: none */

/* ---- tokenizer ---- */
/* Text (len bytes) -> ids; returns the number of ids (or -1). add_bos: the
 * BOS token first; parse_special: control tokens written in the text become
 * those tokens. */
NCAS_API int32_t ncas_tokenize(const ncas_model *m, const char *text, size_t len, int add_bos, int parse_special,
                               int32_t *ids, int32_t cap);
/* Ids -> bytes (not terminated); returns the number of bytes (or -1). */
NCAS_API int64_t ncas_detokenize(const ncas_model *m, const int32_t *ids, int32_t n, char *out, size_t cap);

/* ---- session ---- */
typedef struct ncas_session_params {
    int32_t n_ctx;     /* 0: the model's */
    int32_t n_threads; /* 0: all cores */
    int32_t n_batch;   /* tokens per forward pass in prefill */
    const char *kv_type; /* "f32", "f16", "q8_0" or "q4_0"; NULL: f32 */
} ncas_session_params;

NCAS_API ncas_session_params ncas_session_default_params(void);
/* params NULL: the defaults. */
NCAS_API ncas_session *ncas_session_new(const ncas_model *m, const ncas_session_params *params);
NCAS_API void ncas_session_free(ncas_session *s);
NCAS_API int32_t ncas_session_n_past(const ncas_session *s);
NCAS_API int32_t ncas_session_n_ctx(const ncas_session *s);
/* Runs ids after the cached ones; 0 or -1. The logits of the last are then at ncas_session_logits. */
NCAS_API int ncas_session_prefill(ncas_session *s, const int32_t *ids, int32_t n);
NCAS_API int ncas_session_decode(ncas_session *s, int32_t id);
/* [n_vocab] logits of the last token run; NULL before any. Valid until the session runs again. */
NCAS_API const float *ncas_session_logits(const ncas_session *s);
/* Keeps the first n_past tokens of the cache; 0 or -1. */
NCAS_API int ncas_session_rewind(ncas_session *s, int32_t n_past);
/* Stops the generation running in s at the next token (callable from any thread). */
NCAS_API void ncas_session_cancel(ncas_session *s);
/* The session's cache and the tokens in it to a file, and back (0 or -1); the
 * file is tied to the model file and checked on load (ncas/state.hpp). */
NCAS_API int ncas_session_save(ncas_session *s, const char *path);
NCAS_API int ncas_session_load(ncas_session *s, const char *path);

/* ---- sampler ---- */
typedef struct ncas_sampler_params {
    float temperature;         /* >= 0; 0: greedy */
    int32_t top_k;             /* 0: off */
    float top_p;               /* (0, 1]; 1: off */
    float min_p;               /* [0, 1]; 0: off */
    float repetition_penalty;  /* > 0; 1: off */
    int32_t repetition_last_n; /* -1: all, 0: none */
    uint64_t seed;
} ncas_sampler_params;

NCAS_API ncas_sampler_params ncas_sampler_default_params(void);
NCAS_API ncas_sampler *ncas_sampler_new(const ncas_sampler_params *params);
NCAS_API void ncas_sampler_free(ncas_sampler *smp);
/* The next id from n logits, with the ids so far for the repetition penalty; -1 on error. */
NCAS_API int32_t ncas_sampler_sample(ncas_sampler *smp, const float *logits, int32_t n, const int32_t *recent,
                                     int32_t n_recent);

/* ---- generation ---- */
typedef enum ncas_finish {
    NCAS_FINISH_EOS = 0,       /* the end-of-text token */
    NCAS_FINISH_STOP = 1,      /* a stop string */
    NCAS_FINISH_LENGTH = 2,    /* max_tokens */
    NCAS_FINISH_CONTEXT = 3,   /* the context is full */
    NCAS_FINISH_CANCELLED = 4  /* ncas_session_cancel, or the callback returned nonzero */
} ncas_finish;

/* Receives each piece of text (whole UTF-8 characters, not terminated);
 * returning nonzero stops the generation. */
typedef int (*ncas_piece_fn)(const char *piece, size_t len, void *user);

typedef struct ncas_generate_params {
    ncas_sampler_params sampling;
    int32_t max_tokens;        /* -1: no limit */
    const char *const *stops;  /* n_stops strings; the text ends before the first that appears */
    int32_t n_stops;
    int ignore_eos;
} ncas_generate_params;

typedef struct ncas_generate_result {
    ncas_finish finish;
    int32_t prompt_tokens;     /* the prompt's length */
    int32_t cached_tokens;     /* of those, already in the cache */
    int32_t completion_tokens; /* generated */
    double prefill_s, decode_s;
} ncas_generate_result;

NCAS_API ncas_generate_params ncas_generate_default_params(void);
NCAS_API const char *ncas_finish_name(ncas_finish f); /* "eos", "stop", "length", "context", "cancelled" */
/* Continues the prompt (BOS first when the model has one); the prompt may
 * extend what the session holds, and only its new tokens run. result may be NULL. 0 or -1. */
NCAS_API int ncas_generate(ncas_session *s, const char *prompt, const ncas_generate_params *params, ncas_piece_fn fn,
                           void *user, ncas_generate_result *result);
NCAS_API int ncas_generate_tokens(ncas_session *s, const int32_t *ids, int32_t n, const ncas_generate_params *params,
                                  ncas_piece_fn fn, void *user, ncas_generate_result *result);

/* ---- chat ---- */
typedef struct ncas_chat_message {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} ncas_chat_message;

/* format: "chatml", "llama-2", "llama-3", "mistral", "plain", or NULL for the
 * model's own (detected from its tokenizer.chat_template; plain without one).
 * Writes the prompt text (not terminated); returns its length or -1. */
NCAS_API int64_t ncas_chat_apply(const ncas_model *m, const char *format, const ncas_chat_message *msgs, int32_t n,
                                 int add_generation_prompt, char *out, size_t cap);
/* The assistant's reply to the messages, in pieces; the format's stop strings
 * are added to params->stops. 0 or -1. */
NCAS_API int ncas_chat(ncas_session *s, const char *format, const ncas_chat_message *msgs, int32_t n,
                       const ncas_generate_params *params, ncas_piece_fn fn, void *user, ncas_generate_result *result);

#ifdef __cplusplus
}
#endif

#endif /* NCAS_H */
