/*
 * llm.c: llama.cpp contexts over the trained GGUFs and the measurements made with them (see
 * llm.h). Inputs come from our own generator, so sizes are checked once here (n_ctx) and the
 * rest of llama.cpp's preconditions hold by construction.
 */
#define _POSIX_C_SOURCE 200809L
#include "llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

struct llm {
    struct llama_model *model;
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    int32_t n_vocab, n_ctx, n_batch;
    int32_t n_past;
    struct llama_batch batch;
    llama_token *tmp;
    int32_t cap_tmp;
};

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

void llm_log_quiet(void) {
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
}

struct llm *llm_open(const char *path, int n_ctx, int threads, char *err, size_t errlen) {
    struct llm *L = calloc(1, sizeof *L);
    if (!L) { snprintf(err, errlen, "out of memory"); return NULL; }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    L->model = llama_model_load_from_file(path, mp);
    if (!L->model) {
        snprintf(err, errlen, "llama.cpp could not load %s", path);
        free(L);
        return NULL;
    }
    L->vocab = llama_model_get_vocab(L->model);
    L->n_vocab = llama_vocab_n_tokens(L->vocab);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_ubatch = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    if (getenv("SR_TRAIN_FA_OFF")) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    L->ctx = llama_init_from_model(L->model, cp);
    if (!L->ctx) {
        snprintf(err, errlen, "llama.cpp could not create a context for %s", path);
        llama_model_free(L->model);
        free(L);
        return NULL;
    }
    L->n_ctx = (int32_t)llama_n_ctx(L->ctx);
    L->n_batch = (int32_t)llama_n_batch(L->ctx);
    L->batch = llama_batch_init(L->n_batch, 0, 1);
    L->cap_tmp = L->n_ctx + 16;
    L->tmp = malloc((size_t)L->cap_tmp * sizeof *L->tmp);
    if (!L->tmp) {
        snprintf(err, errlen, "out of memory");
        llm_close(L);
        return NULL;
    }
    return L;
}

void llm_close(struct llm *L) {
    if (!L) return;
    if (L->batch.token) llama_batch_free(L->batch);
    if (L->ctx) llama_free(L->ctx);
    if (L->model) llama_model_free(L->model);
    free(L->tmp);
    free(L);
}

void llm_clear(struct llm *L) {
    llama_memory_clear(llama_get_memory(L->ctx), false);
    L->n_past = 0;
}

int32_t llm_pos(const struct llm *L) { return L->n_past; }

void llm_rollback(struct llm *L, int32_t pos) {
    if (pos >= L->n_past) return;
    llama_memory_seq_rm(llama_get_memory(L->ctx), 0, pos, -1);
    L->n_past = pos;
}

static int decode(struct llm *L, const llama_token *t, int32_t n) {
    if (L->n_past + n > L->n_ctx) return -1;
    for (int32_t off = 0; off < n; off += L->n_batch) {
        int32_t k = n - off < L->n_batch ? n - off : L->n_batch;
        L->batch.n_tokens = k;
        for (int32_t i = 0; i < k; i++) {
            L->batch.token[i] = t[off + i];
            L->batch.pos[i] = L->n_past + i;
            L->batch.n_seq_id[i] = 1;
            L->batch.seq_id[i][0] = 0;
            L->batch.logits[i] = off + i == n - 1;
        }
        if (llama_decode(L->ctx, L->batch) != 0) return -1;
        L->n_past += k;
    }
    return 0;
}

int llm_feed(struct llm *L, const char *text) {
    int32_t n = llama_tokenize(L->vocab, text, (int32_t)strlen(text), L->tmp, L->cap_tmp, false, true);
    if (n < 0) return -1;
    return n == 0 ? 0 : decode(L, L->tmp, n);
}

int32_t llm_argmax(const struct llm *L) {
    const float *lg = llama_get_logits_ith(L->ctx, -1);
    int32_t best = 0;
    for (int32_t i = 1; i < L->n_vocab; i++)
        if (lg[i] > lg[best]) best = i;
    return best;
}

static int32_t sample(const struct llm *L, float temp, uint64_t *rng) {
    if (temp <= 0.0f) return llm_argmax(L);
    const float *lg = llama_get_logits_ith(L->ctx, -1);
    float mx = lg[0];
    for (int32_t i = 1; i < L->n_vocab; i++) mx = lg[i] > mx ? lg[i] : mx;
    double z = 0.0;
    for (int32_t i = 0; i < L->n_vocab; i++) z += exp((double)((lg[i] - mx) / temp));
    double u = tk_rand_unit(rng) * z, c = 0.0;
    for (int32_t i = 0; i < L->n_vocab; i++) {
        c += exp((double)((lg[i] - mx) / temp));
        if (c >= u) return i;
    }
    return L->n_vocab - 1;
}

int llm_gen_step(struct llm *L, int max_tokens, float temp, uint64_t *rng, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    int n = 0;
    for (; n < max_tokens; n++) {
        llama_token t = sample(L, temp, rng);
        if (llama_vocab_is_eog(L->vocab, t)) break;
        char piece[64];
        int32_t pn = llama_token_to_piece(L->vocab, t, piece, sizeof piece, 0, true);
        if (pn < 0) pn = 0;
        if (len + (size_t)pn + 1 < size) {
            memcpy(out + len, piece, (size_t)pn);
            len += (size_t)pn;
            out[len] = '\0';
        }
        if (decode(L, &t, 1) != 0) return -1;
        char *d = strstr(out, TK_DELIM_TEXT);
        if (d) {
            *d = '\0';
            return n + 1;
        }
    }
    return n;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

void llm_speed(struct llm *L, int n_decode, int n_prefill, double *ms_decode, double *ms_prefill) {
    /* A realistic place in a context: 40 tokens in, like a prompt; medians, so that a burst of
     * load from other processes does not decide the number. */
    llm_clear(L);
    for (int i = 0; i < 40; i++) L->tmp[i] = (llama_token)tk_digit_token(i % 10);
    decode(L, L->tmp, 40);
    double *t = malloc((size_t)(n_decode > 21 ? n_decode : 21) * sizeof *t);
    if (!t) return;
    int nd = 0;
    llama_token tok = (llama_token)tk_digit_token(1);
    for (int i = 0; i < n_decode && L->n_past < L->n_ctx - n_prefill - 1; i++) {
        double t0 = now_ms();
        decode(L, &tok, 1);
        t[nd++] = now_ms() - t0;
    }
    qsort(t, (size_t)nd, sizeof *t, cmp_d);
    *ms_decode = nd ? t[nd / 2] : 0.0;
    int32_t mark = 40;
    llm_rollback(L, mark);
    for (int i = 0; i < n_prefill; i++) L->tmp[i] = (llama_token)tk_digit_token(i % 10);
    for (int rep = 0; rep < 21; rep++) {
        llm_rollback(L, mark);
        double t0 = now_ms();
        decode(L, L->tmp, n_prefill);
        t[rep] = now_ms() - t0;
    }
    qsort(t, 21, sizeof *t, cmp_d);
    *ms_prefill = t[10];
    free(t);
    llm_clear(L);
}

/* ------------------------------------------------------------------------------------------ */
/* Measurements                                                                               */

#define MAX_STEP_TOKENS 32

static int start(struct llm *L, const struct tk_problem *p) {
    char text[TK_TEXT_MAX], buf[TK_TEXT_MAX * 2];
    tk_problem_text(p, text, sizeof text);
    tk_render_prefix(text, buf, sizeof buf);
    llm_clear(L);
    return llm_feed(L, buf);
}

static int feed_step(struct llm *L, const char *step) {
    char buf[TK_TEXT_MAX + 4];
    snprintf(buf, sizeof buf, "%s" TK_DELIM_TEXT, step);
    return llm_feed(L, buf);
}

int ev_accuracy(struct llm *L, const struct tk_cfg *cfg, uint64_t seed, int32_t n, struct ev_result *r) {
    for (int32_t i = 0; i < n; i++) {
        struct tk_problem p;
        dt_heldout_problem(cfg, seed, i, &p);
        if (start(L, &p) != 0) return -1;
        int64_t v = -1;
        bool got = false;
        for (int s = 0; s < 2 * TK_MAX_TERMS; s++) {
            char step[TK_TEXT_MAX];
            int nt = llm_gen_step(L, MAX_STEP_TOKENS, 0.0f, NULL, step, sizeof step);
            if (nt < 0) return -1;
            if (strstr(step, "boxed")) {
                got = tk_boxed_value(step, &v);
                break;
            }
            if (nt == 0 || L->n_past + MAX_STEP_TOKENS + 2 >= L->n_ctx) break;
        }
        r->n_problems++;
        r->n_correct += got && v == tk_answer(&p);
    }
    return 0;
}

int ev_mistakes(struct llm *small, const struct tk_cfg *cfg, uint64_t seed, int32_t n, float temp,
                struct dt_pool *pool, struct ev_result *r) {
    uint64_t rng = seed, srng = seed ^ 0xA5A5A5A5ull;
    for (int32_t i = 0; i < n; i++) {
        struct tk_problem p;
        do {
            tk_problem_gen(cfg, &rng, &p);
        } while (dt_is_heldout(&p));
        if (start(small, &p) != 0) return -1;
        for (int32_t k = 0; k < tk_n_steps(&p); k++) {
            char right[TK_TEXT_MAX], got[TK_TEXT_MAX];
            tk_step_text(&p, k, right, sizeof right);
            int32_t mark = llm_pos(small);
            if (llm_gen_step(small, MAX_STEP_TOKENS, temp, &srng, got, sizeof got) < 0) return -1;
            r->n_steps++;
            if (strcmp(got, right) != 0) {
                r->n_steps_wrong++;
                if (pool && dt_pool_add(pool, &p, k, got) != 0) return -1;
            }
            llm_rollback(small, mark);
            if (feed_step(small, right) != 0) return -1;
        }
    }
    return 0;
}

int ev_judge(struct llm *small, struct llm *base, const struct tk_cfg *cfg, uint64_t seed, int32_t n,
             const char *judge_prompt, const char *judge_prefill, struct ev_result *r) {
    char suffix[TK_TEXT_MAX];
    tk_render_judge_suffix(judge_prompt, judge_prefill, suffix, sizeof suffix);
    for (int32_t i = 0; i < n; i++) {
        struct tk_problem p;
        dt_heldout_problem(cfg, seed, i, &p);
        if (start(small, &p) != 0 || start(base, &p) != 0) return -1;
        for (int32_t k = 0; k < tk_n_steps(&p); k++) {
            char right[TK_TEXT_MAX], got[TK_TEXT_MAX];
            tk_step_text(&p, k, right, sizeof right);
            int32_t ms = llm_pos(small), mb = llm_pos(base);
            if (llm_gen_step(small, MAX_STEP_TOKENS, 0.0f, NULL, got, sizeof got) < 0) return -1;
            if (feed_step(base, got) != 0 || llm_feed(base, suffix) != 0) return -1;
            const char *piece = tk_token_piece(llm_argmax(base));
            int score = piece[0] >= '0' && piece[0] <= '9' && !piece[1] ? piece[0] - '0' : 0;
            bool good = strcmp(got, right) == 0, acc = score >= 7;
            r->n_steps++;
            r->n_steps_wrong += !good;
            if (good) acc ? r->good_accept++ : r->good_reject++;
            else acc ? r->bad_accept++ : r->bad_reject++;
            llm_rollback(small, ms);
            llm_rollback(base, mb);
            if (feed_step(small, right) != 0 || feed_step(base, right) != 0) return -1;
        }
    }
    return 0;
}

float llm_logit(const struct llm *L, int32_t tok);
float llm_logit(const struct llm *L, int32_t tok) { return llama_get_logits_ith(L->ctx, -1)[tok]; }
