/*
 * test_train_model.c: the trainer's GGUF as unmodified llama.cpp sees it.
 *   1. it loads; the vocabulary round-trips; <|im_end|> is end-of-generation; digits are single
 *      tokens (the engine reads judge scores from them);
 *   2. our tokenizer gives llama_tokenize's ids on every kind of text we train on;
 *   3. the chat template renders exactly the prefix and judge suffix we train on, cut the way
 *      src/core/prompt.c cuts it;
 *   4. llama.cpp's logits for a whole judge sequence equal the training graph's within 1e-3
 *      (F32 KV cache, as in training; the default F16 cache is reported, looser).
 * Usage: test_train_model WORKDIR
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "model.h"
#include "task.h"
#include "testutil.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int tokenize_llama(const struct llama_vocab *v, const char *s, int32_t *out, int cap) {
    return llama_tokenize(v, s, (int32_t)strlen(s), out, cap, false, true);
}

static void check_tokenizer(const struct llama_vocab *v) {
    struct tk_problem p;
    uint64_t rng = 7;
    struct tk_cfg cfg = tk_cfg_default();
    char texts[64][1024];
    int nt = 0;
    for (int i = 0; i < 8; i++) {
        char prob[256], step[256];
        tk_problem_gen(&cfg, &rng, &p);
        tk_problem_text(&p, prob, sizeof prob);
        tk_render_prefix(prob, texts[nt++], sizeof texts[0]);
        for (int k = 0; k < tk_n_steps(&p); k++) {
            tk_step_text(&p, k, step, sizeof step);
            snprintf(texts[nt++], sizeof texts[0], "%s\n\n", step);
            tk_step_corrupt(&p, k, &rng, step, sizeof step);
            snprintf(texts[nt++], sizeof texts[0], "%s\n\n", step);
            if (nt > 50) break;
        }
        if (nt > 50) break;
    }
    tk_render_judge_suffix(TK_JUDGE_PROMPT, TK_JUDGE_PREFILL, texts[nt++], sizeof texts[0]);
    tk_render_judge_suffix("Score the last step 0-9.", "Score: ", texts[nt++], sizeof texts[0]);
    snprintf(texts[nt++], sizeof texts[0], "a user and an assistant <think>x</think>\n\n\n y \\boxed{12}~!<s></s>");
    snprintf(texts[nt++], sizeof texts[0], "  two  spaces\tand a tab, caf\xc3\xa9");
    for (int i = 0; i < nt; i++) {
        int32_t a[1024], b[1024];
        int na = tk_tokenize(texts[i], strlen(texts[i]), a, 1024);
        int nb = tokenize_llama(v, texts[i], b, 1024);
        bool same = na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
        if (!same) fprintf(stderr, "tokenizer mismatch on [%s]: ours %d tokens, llama.cpp %d\n", texts[i], na, nb);
        CHECK(same);
        /* Detokenizing gives the text back (ASCII texts only: <unk> loses bytes). */
        bool ascii = true;
        for (const char *c = texts[i]; *c; c++) ascii = ascii && (unsigned char)*c < 0x80 && *c != '\t';
        if (ascii && nb > 0) {
            char back[2048];
            int n = llama_detokenize(v, b, nb, back, sizeof back - 1, false, true);
            CHECK(n >= 0);
            if (n >= 0) {
                back[n] = '\0';
                CHECK_STR(back, texts[i]);
            }
        }
    }
    CHECK(llama_vocab_is_eog(v, TK_IM_END));
    CHECK(!llama_vocab_is_eog(v, TK_DELIM));
    for (int d = 0; d < 10; d++) {
        char s[2] = {(char)('0' + d), 0};
        int32_t t[4];
        CHECK(tokenize_llama(v, s, t, 4) == 1 && t[0] == tk_digit_token(d));
    }
}

/* The engine's cut (src/core/prompt.c): render with sentinels, take the text around them. */
static void check_template(const struct llama_model *model) {
    const char *tmpl = llama_model_chat_template(model, NULL);
    CHECK(tmpl != NULL);
    const char *A = "\x01SR_SENTINEL_A\x01", *B = "\x01SR_SENTINEL_B\x01";
    const char *problem = "0357+0067+0890";
    struct llama_chat_message m[4] = {{"user", problem}, {"assistant", A}, {"user", TK_JUDGE_PROMPT}, {"assistant", B}};
    char buf[4096], want[4096], got[4096];
    int n = llama_chat_apply_template(tmpl, m, 2, false, buf, sizeof buf);
    CHECK(n > 0 && n < (int)sizeof buf);
    if (n <= 0 || n >= (int)sizeof buf) return;
    buf[n] = '\0';
    const char *a = strstr(buf, A);
    CHECK(a != NULL);
    if (!a) return;
    snprintf(got, sizeof got, "%.*s%s", (int)(a - buf), buf, TK_THINK_OPEN);
    tk_render_prefix(problem, want, sizeof want);
    CHECK_STR(got, want);
    n = llama_chat_apply_template(tmpl, m, 4, false, buf, sizeof buf);
    CHECK(n > 0 && n < (int)sizeof buf);
    if (n <= 0 || n >= (int)sizeof buf) return;
    buf[n] = '\0';
    a = strstr(buf, A);
    const char *b = a ? strstr(a, B) : NULL;
    CHECK(b != NULL);
    if (!b) return;
    a += strlen(A);
    snprintf(got, sizeof got, "%.*s%s", (int)(b - a), a, TK_JUDGE_PREFILL);
    tk_render_judge_suffix(TK_JUDGE_PROMPT, TK_JUDGE_PREFILL, want, sizeof want);
    CHECK_STR(got, want);
}

/* max |llama.cpp - ours| over all positions and the vocabulary. */
static double logits_diff(struct llama_model *model, const int32_t *tok, int n, const float *ours, bool f32_kv) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 2;
    if (f32_kv) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return INFINITY;
    struct llama_batch b = llama_batch_init(n, 0, 1);
    b.n_tokens = n;
    for (int i = 0; i < n; i++) {
        b.token[i] = tok[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    double worst = INFINITY;
    if (llama_decode(ctx, b) == 0) {
        worst = 0.0;
        for (int i = 0; i < n; i++) {
            const float *lg = llama_get_logits_ith(ctx, i);
            for (int v = 0; v < TK_N_VOCAB; v++) {
                double d = fabs((double)lg[v] - (double)ours[(size_t)i * TK_N_VOCAB + (size_t)v]);
                if (d > worst) worst = d;
            }
        }
    }
    llama_batch_free(b);
    llama_free(ctx);
    return worst;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_train_model WORKDIR\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    char path[4096];
    snprintf(path, sizeof path, "%s/test_train_model.gguf", argv[1]);
    /* A random model with larger weights than the training init, so logits spread over several
     * units and attention is far from uniform. */
    struct tm_hparams hp = {.n_vocab = TK_N_VOCAB, .n_embd = 64, .n_layer = 2, .n_head = 4, .n_ff = 96,
                            .n_ctx = 4096, .rms_eps = 1e-5f, .rope_base = 10000.0f};
    struct tm_model m;
    CHECK(tm_model_init(&m, &hp, 3) == 0);
    for (int i = 0; i < m.n_params; i++) {
        struct ggml_tensor *t = m.params[i];
        float *d = t->data;
        float s = ggml_n_dims(t) >= 2 ? 3.0f : 1.0f;
        for (int64_t j = 0; j < ggml_nelements(t); j++) d[j] *= s;
        if (ggml_n_dims(t) == 1)
            for (int64_t j = 0; j < ggml_nelements(t); j++) d[j] = 0.5f + 0.01f * (float)(j % 97);
    }
    char err[256] = "";
    CHECK(tm_model_save(&m, path, "test", err, sizeof err) == 0);

    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(path, mp);
    CHECK(model != NULL);
    if (!model) return test_summary("test_train_model");
    const struct llama_vocab *v = llama_model_get_vocab(model);
    CHECK(llama_vocab_n_tokens(v) == TK_N_VOCAB);
    CHECK(llama_model_n_layer(model) == 2 && llama_model_n_embd(model) == 64);
    check_tokenizer(v);
    check_template(model);

    /* A judge sequence: prefix, two steps, a candidate, the suffix, a score. */
    struct tk_cfg cfg = tk_cfg_default();
    struct tk_problem p;
    uint64_t rng = 11;
    tk_problem_gen(&cfg, &rng, &p);
    char prob[256], step[256], text[4096], buf[1024];
    tk_problem_text(&p, prob, sizeof prob);
    tk_render_prefix(prob, text, sizeof text);
    for (int k = 0; k < 2; k++) {
        tk_step_text(&p, k, step, sizeof step);
        strcat(text, step);
        strcat(text, "\n\n");
    }
    tk_render_judge_suffix(TK_JUDGE_PROMPT, TK_JUDGE_PREFILL, buf, sizeof buf);
    strcat(text, buf);
    strcat(text, "9");
    int32_t tok[512];
    int n = tk_tokenize(text, strlen(text), tok, 512);
    CHECK(n > 40 && n < 512);
    float *ours = malloc((size_t)n * TK_N_VOCAB * sizeof *ours);
    CHECK(ours && tm_forward_seq(&m, tok, n, 2, ours) == 0);
    double spread = 0.0;
    for (int i = 0; i < n * TK_N_VOCAB; i++) spread = fmax(spread, fabs((double)ours[i]));
    double d32 = logits_diff(model, tok, n, ours, true);
    double d16 = logits_diff(model, tok, n, ours, false);
    printf("%d tokens, max |logit| %.2f; max |llama.cpp - trainer|: F32 KV %.2e, default (F16 KV) %.2e\n", n, spread,
           d32, d16);
    CHECK(spread > 2.0);
    CHECK(d32 <= 1e-3);
    CHECK(d16 <= 5e-2);

    /* Padded with inert feed-forward units (sr-train pad): llama.cpp runs a bigger model that
     * computes the same logits as the unpadded one. A wrong layout of ffn_down (the added units
     * must add nothing) or a unit dropped would move them by whole units. */
    struct tm_model mp2;
    char ppath[4200];
    snprintf(ppath, sizeof ppath, "%s.padded.gguf", path);
    CHECK(tm_model_pad_ff(&m, 96 * 5, 9, &mp2) == 0);
    struct tm_model shrunk;
    int rc_shrink = tm_model_pad_ff(&m, 95, 9, &shrunk);
    CHECK(rc_shrink != 0); /* shrinking is refused */
    if (rc_shrink == 0) tm_model_free(&shrunk);
    CHECK(tm_model_n_elements(&mp2) > tm_model_n_elements(&m));
    CHECK(tm_model_save(&mp2, ppath, "test-padded", err, sizeof err) == 0);
    struct llama_model *padded = llama_model_load_from_file(ppath, mp);
    CHECK(padded != NULL);
    if (padded) {
        double dp = logits_diff(padded, tok, n, ours, true);
        printf("padded to n_ff %d: max |llama.cpp(padded) - trainer(unpadded)| %.2e\n", mp2.hp.n_ff, dp);
        CHECK(dp <= 1e-3);
        llama_model_free(padded);
    }
    tm_model_free(&mp2);
    remove(ppath);
    free(ours);
    llama_model_free(model);
    tm_model_free(&m);
    remove(path);
    return test_summary("test_train_model");
}
