/*
 * test_genmodel.c: checks the models written by sr-genmodel (tools/genmodel.c) through llama.cpp.
 *  - small.gguf and base.gguf (fixture "models") load, and the copied Qwen2 tokenizer round-trips
 *    real text, including special tokens;
 *  - decoding gives finite, spread-out logits; the two models differ;
 *  - the generator is deterministic (same seed: identical bytes; other seed: different bytes);
 *  - --bias-digits / --bias-newlines steer the argmax;
 *  - base costs more per token than small (printed; only a loose sanity bound is asserted).
 * Exits non-zero if any check fails.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            failures++;                                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

static const char *const small_path = SR_MODEL_DIR "/small.gguf";
static const char *const base_path = SR_MODEL_DIR "/base.gguf";

/* llama.cpp logs every level to stderr by default; keep errors (and their continuations). */
static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    static bool in_error;
    (void)user;
    if (level != GGML_LOG_LEVEL_CONT) {
        in_error = level == GGML_LOG_LEVEL_ERROR;
    }
    if (in_error) {
        fputs(text, stderr);
    }
}

static void print_escaped(const char *s) {
    for (; *s; s++) {
        if (*s == '\n') {
            fputs("\\n", stdout);
        } else {
            putchar(*s);
        }
    }
}

static struct llama_model *load(const char *path) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    CHECK(m != NULL, "cannot load %s", path);
    return m;
}

static struct llama_context *new_ctx(struct llama_model *m, int n_threads) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    struct llama_context *c = llama_init_from_model(m, cp);
    CHECK(c != NULL, "cannot create a context");
    return c;
}

static int tokenize(const struct llama_vocab *v, const char *s, llama_token *out, int max) {
    return llama_tokenize(v, s, (int32_t)strlen(s), out, max, false, true);
}

/* detokenize(tokenize(s)) == s, with special tokens parsed and unparsed */
static void check_roundtrip(const struct llama_vocab *v, const char *s, int expect_n) {
    llama_token toks[256];
    char back[1024];
    int n = tokenize(v, s, toks, 256);
    CHECK(n > 0, "tokenize(\"%s\") = %d", s, n);
    if (n <= 0) {
        return;
    }
    int len = llama_detokenize(v, toks, n, back, (int32_t)sizeof back - 1, false, true);
    CHECK(len >= 0, "detokenize failed (%d)", len);
    back[len < 0 ? 0 : len] = '\0';
    CHECK(strcmp(back, s) == 0, "round trip: \"%s\" -> \"%s\"", s, back);
    if (expect_n > 0) {
        CHECK(n == expect_n, "\"%s\": %d tokens, expected %d", s, n, expect_n);
    }
    printf("  round trip ok (%d tokens): ", n);
    print_escaped(s);
    putchar('\n');
}

static void check_tokenizer(const struct llama_model *m) {
    const struct llama_vocab *v = llama_model_get_vocab(m);
    printf("tokenizer: n_vocab %d, type %d\n", llama_vocab_n_tokens(v), (int)llama_vocab_type(v));
    CHECK(llama_vocab_n_tokens(v) == 151936, "n_vocab %d", llama_vocab_n_tokens(v));
    CHECK(llama_vocab_type(v) == LLAMA_VOCAB_TYPE_BPE, "vocab type %d", (int)llama_vocab_type(v));
    check_roundtrip(v, "<think>", 0);
    check_roundtrip(v, "</think>", 0);
    check_roundtrip(v, "12345", 5); /* the qwen2 pre-tokenizer splits digits one by one */
    check_roundtrip(v, "\n\n", 1);
    check_roundtrip(v, ".\n\n", 0);
    check_roundtrip(v, "naïve café — 数学 ∑", 0);
    check_roundtrip(v, "The answer is 42.\n\nSo x = 7, y = -3.5", 0);
    const char *chat = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                       "What is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n";
    check_roundtrip(v, chat, 0);
    llama_token toks[64], plain[64];
    int n = tokenize(v, "<|im_start|>user", toks, 64);
    CHECK(n == 2 && llama_vocab_is_control(v, toks[0]), "<|im_start|> is not one control token");
    int n_plain = llama_tokenize(v, "<|im_start|>", 12, plain, 64, false, false);
    CHECK(n_plain > 1, "<|im_start|> without parse_special gave %d token(s)", n_plain);
    printf("  <|im_start|> is control token %d (%d tokens as plain text)\n", n > 0 ? toks[0] : -1,
           n_plain);
    CHECK(llama_vocab_is_eog(v, llama_vocab_eos(v)), "eos is not end-of-generation");
}

/* logits stats over the vocabulary; returns false if any is not finite */
static bool logit_stats(const float *lg, int n, double *mean, double *sd, int *argmax) {
    double s = 0, s2 = 0;
    bool finite = true;
    *argmax = 0;
    for (int i = 0; i < n; i++) {
        finite = finite && isfinite(lg[i]);
        s += lg[i];
        s2 += (double)lg[i] * lg[i];
        if (lg[i] > lg[*argmax]) {
            *argmax = i;
        }
    }
    *mean = s / n;
    *sd = sqrt(fmax(0.0, s2 / n - *mean * *mean));
    return finite;
}

static const char *piece(const struct llama_vocab *v, llama_token t) {
    static char buf[128];
    int n = llama_token_to_piece(v, t, buf, (int32_t)sizeof buf - 1, 0, true);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* Decodes `prompt`, then greedily `n_gen` tokens; copies the prompt's last logits into `out`
 * (n_vocab floats) if non-NULL. Returns the first greedy token, or -1. */
static llama_token decode_greedy(struct llama_model *m, const char *prompt, int n_gen, float *out) {
    const struct llama_vocab *v = llama_model_get_vocab(m);
    const int n_vocab = llama_vocab_n_tokens(v);
    struct llama_context *c = new_ctx(m, 1);
    if (c == NULL) {
        return -1;
    }
    llama_token toks[256];
    int n = tokenize(v, prompt, toks, 256);
    CHECK(n > 0, "tokenize prompt");
    int rc = llama_decode(c, llama_batch_get_one(toks, n));
    CHECK(rc == 0, "decode prompt: %d", rc);
    llama_token first = -1;
    printf("  greedy:");
    for (int i = 0; i < n_gen && rc == 0; i++) {
        const float *lg = llama_get_logits_ith(c, -1);
        CHECK(lg != NULL, "no logits");
        if (lg == NULL) {
            break;
        }
        double mean, sd;
        int am;
        bool finite = logit_stats(lg, n_vocab, &mean, &sd, &am);
        CHECK(finite, "non-finite logits at step %d", i);
        CHECK(sd > 0.05, "logits nearly constant at step %d (sd %g)", i, sd);
        if (i == 0) {
            first = am;
            if (out != NULL) {
                memcpy(out, lg, (size_t)n_vocab * sizeof *out);
            }
            printf(" [logit mean %.3f sd %.3f max %.3f]", mean, sd, (double)lg[am]);
        }
        printf(" %d:'", am);
        print_escaped(piece(v, am));
        putchar('\'');
        llama_token t = am;
        rc = llama_decode(c, llama_batch_get_one(&t, 1));
        CHECK(rc == 0, "decode step %d: %d", i, rc);
    }
    putchar('\n');
    llama_free(c);
    return first;
}

/* ms per single-token decode: the best of 3 rounds of n decodes (after a warm-up), one thread. */
static double ms_per_token(struct llama_model *m, int n) {
    struct llama_context *c = new_ctx(m, 1);
    if (c == NULL) {
        return -1;
    }
    llama_token t = 9707; /* "Hello" in the Qwen2 vocab; any valid id works */
    double ms = -1;
    for (int i = 0; i < 4; i++) {
        if (llama_decode(c, llama_batch_get_one(&t, 1)) != 0) {
            goto done;
        }
    }
    for (int round = 0; round < 3; round++) { /* best of 3 rounds: less noise from other load */
        int64_t t0 = llama_time_us();
        for (int i = 0; i < n; i++) {
            if (llama_decode(c, llama_batch_get_one(&t, 1)) != 0) {
                ms = -1;
                goto done;
            }
            (void)llama_get_logits_ith(c, -1); /* synchronize */
        }
        double r = (double)(llama_time_us() - t0) / 1000.0 / n;
        ms = ms < 0 || r < ms ? r : ms;
    }
done:
    CHECK(ms > 0, "timing decode failed");
    llama_free(c);
    return ms;
}

static bool run_genmodel(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --vocab '%s' --quiet %s", SR_GENMODEL, SR_VOCAB_GGUF, args);
    int rc = system(cmd);
    CHECK(rc == 0, "command failed (%d): %s", rc, cmd);
    return rc == 0;
}

/* 1 if the files are byte-identical, 0 if they differ, -1 on error */
static int same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int res = -1;
    static char ba[1 << 16], bb[1 << 16];
    if (fa != NULL && fb != NULL) {
        res = 1;
        for (;;) {
            size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
            if (na != nb || memcmp(ba, bb, na) != 0) {
                res = 0;
                break;
            }
            if (na == 0) {
                break;
            }
        }
    }
    if (fa != NULL) {
        fclose(fa);
    }
    if (fb != NULL) {
        fclose(fb);
    }
    return res;
}

static void check_determinism(void) {
    printf("determinism: two runs with --seed 7, one with --seed 8\n");
    const char *a = "test_genmodel_a.gguf", *b = "test_genmodel_b.gguf", *c = "test_genmodel_c.gguf";
    if (run_genmodel("--preset small --seed 7 -o test_genmodel_a.gguf") &&
        run_genmodel("--preset small --seed 7 -o test_genmodel_b.gguf") &&
        run_genmodel("--preset small --seed 8 -o test_genmodel_c.gguf")) {
        CHECK(same_bytes(a, b) == 1, "same seed gave different files");
        CHECK(same_bytes(a, c) == 0, "different seeds gave identical files");
        printf("  same seed: identical bytes; other seed: different bytes\n");
    }
    remove(a);
    remove(b);
    remove(c);
}

static bool is_digit_token(const struct llama_vocab *v, llama_token t) {
    const char *s = piece(v, t);
    return s[0] >= '0' && s[0] <= '9' && s[1] == '\0';
}

static void check_bias(void) {
    const char *path = "test_genmodel_bias.gguf";
    const char *prompt = "The answer is";
    printf("bias: --bias-digits 8, then --bias-newlines 8, argmax after \"%s\"\n", prompt);
    if (run_genmodel("--preset small --seed 1 --bias-digits 8 -o test_genmodel_bias.gguf")) {
        struct llama_model *m = load(path);
        if (m != NULL) {
            llama_token t = decode_greedy(m, prompt, 4, NULL);
            CHECK(t >= 0 && is_digit_token(llama_model_get_vocab(m), t),
                  "argmax %d is not a digit token", t);
            llama_model_free(m);
        }
    }
    if (run_genmodel("--preset small --seed 1 --bias-newlines 8 -o test_genmodel_bias.gguf")) {
        struct llama_model *m = load(path);
        if (m != NULL) {
            llama_token t = decode_greedy(m, prompt, 4, NULL);
            CHECK(t >= 0 && strstr(piece(llama_model_get_vocab(m), t), "\n\n") != NULL,
                  "argmax %d does not contain \\n\\n", t);
            llama_model_free(m);
        }
    }
    remove(path);
}

int main(void) {
    llama_log_set(quiet_log, NULL);
    llama_backend_init();

    struct llama_model *small = load(small_path), *base = load(base_path);
    if (small == NULL || base == NULL) {
        fprintf(stderr, "models missing: run the models_generate fixture first\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(small));
    const char *prompt = "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n";

    struct llama_model *models[2] = {small, base};
    const char *names[2] = {"small", "base"};
    float *lg[2];
    for (int i = 0; i < 2; i++) {
        char desc[128];
        llama_model_desc(models[i], desc, sizeof desc);
        printf("== %s: %s, %d layers, embd %d, %.1f MiB\n", names[i], desc,
               llama_model_n_layer(models[i]), llama_model_n_embd(models[i]),
               (double)llama_model_size(models[i]) / (1024.0 * 1024.0));
        check_tokenizer(models[i]);
        lg[i] = malloc((size_t)n_vocab * sizeof *lg[i]);
        if (lg[i] == NULL) {
            return 1;
        }
        printf("decode: chatml prompt, 8 greedy tokens\n");
        decode_greedy(models[i], prompt, 8, lg[i]);
    }
    double maxdiff = 0;
    for (int j = 0; j < n_vocab; j++) {
        maxdiff = fmax(maxdiff, fabs((double)lg[0][j] - lg[1][j]));
    }
    printf("small vs base: max |logit difference| %.3f\n", maxdiff);
    CHECK(maxdiff > 0.1, "small and base give (nearly) the same logits");
    free(lg[0]);
    free(lg[1]);

    /* Speed is measured in benchmarks, not asserted: timing depends on the machine and its load.
     * The cost per token is asserted through its cause instead: parameters touched per token (the
     * tied [E, n_vocab] output matmul dominates), base at least 3x small. The measured ratio is
     * printed for information (one thread: OpenMP with 2 threads on a busy 2-core machine spins). */
    double ms_small = ms_per_token(small, 32), ms_base = ms_per_token(base, 32);
    printf("speed: small %.3f ms/token, base %.3f ms/token, ratio %.2f (information only)\n", ms_small, ms_base,
           ms_base / ms_small);
    double p_small = (double)llama_model_n_params(small), p_base = (double)llama_model_n_params(base);
    printf("params: small %.1fM, base %.1fM, ratio %.2f\n", p_small / 1e6, p_base / 1e6, p_base / p_small);
    CHECK(p_base / p_small > 3.0, "base is not several times larger than small");

    llama_model_free(small);
    llama_model_free(base);

    check_determinism();
    check_bias();

    llama_backend_free();
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
