/*
 * llama_backend.c: struct sr_lm over an in-process llama.cpp context. The ONLY file that calls
 * llama.cpp, so an upstream rename touches nothing else.
 *
 * State per context: the tokens held in the KV cache (sequence 0, positions 0..n-1) and whether
 * the logits of the last decode belong to position n-1 ("logits ready"). Sampling needs them.
 * A judge call appends a candidate and then rolls back, which loses them; so before judging, the
 * current logits row is saved, and a rollback to exactly that point restores it. A step the base
 * model writes after a rejection is then sampled from the very logits it would have seen without
 * speculation (bit-identical output, no extra decode). Other rollbacks decode the last token again.
 *
 * Every input is validated before llama.cpp sees it (token ids come from our own tokenizer
 * calls, positions are tracked here, the context capacity is checked before each decode),
 * because ggml asserts abort the process.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "llama.h"

/* ------------------------------------------------------------------------------------------ */
/* logging                                                                                    */

/* The last error line llama.cpp logged on this thread: llama_model_load_from_file reports the
 * reason for a failure only through the log. */
static _Thread_local char g_last_llama_error[256];
static _Thread_local enum ggml_log_level g_prev_level = GGML_LOG_LEVEL_INFO;

static void llama_log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_CONT) level = g_prev_level;
    g_prev_level = level;
    char line[1024];
    snprintf(line, sizeof line, "%s", text);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n == 0) return;
    if (level == GGML_LOG_LEVEL_ERROR) {
        size_t k = n < sizeof g_last_llama_error - 1 ? n : sizeof g_last_llama_error - 1; /* truncates */
        memcpy(g_last_llama_error, line, k);
        g_last_llama_error[k] = '\0';
    }
    enum sr_log_level l = SR_LOG_DEBUG;
    switch (level) {
    case GGML_LOG_LEVEL_ERROR: l = SR_LOG_ERROR; break;
    case GGML_LOG_LEVEL_WARN: l = SR_LOG_WARN; break;
    case GGML_LOG_LEVEL_INFO: l = SR_LOG_DEBUG; break; /* llama.cpp's INFO is very chatty */
    default: l = SR_LOG_DEBUG; break;
    }
    sr_log(l, "llama.cpp: %s", line);
}

void sr_llama_log_install(void) { llama_log_set(llama_log_cb, NULL); }

static void backend_init_once(void) {
    static int done; /* engines are created from one thread at a time (documented) */
    if (!done) {
        sr_llama_log_install();
        llama_backend_init();
        done = 1;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* models                                                                                     */

struct sr_llama_model {
    struct llama_model *model;
    const struct llama_vocab *vocab;
    int32_t n_vocab;
    const char *tmpl; /* chat template from the GGUF, or NULL (= chatml); owned by the model */
    char *path;
    char role[16];
    uint32_t n_ctx;
    int32_t n_threads, n_threads_batch;
    llama_token digit_tok[10];
    bool digit_ok[10];
};

static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

enum sr_status sr_llama_model_load(const struct sr_model_params *p, const char *role,
                                   struct sr_llama_model **out, struct sr_error *err) {
    *out = NULL;
    if (!p->path || !*p->path) return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: no path given", role);
    if (p->n_threads < 0 || p->n_threads > 512 || p->n_threads_batch < 0 || p->n_threads_batch > 512)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: threads must be in [0, 512]", role);
    if (p->n_ctx > (1u << 24))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: n_ctx %u is larger than 16M tokens", role, p->n_ctx);

    /* Check the file ourselves first: llama.cpp only logs why it failed. */
    FILE *f = fopen(p->path, "rb");
    if (!f) return sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model '%s': %s", role, p->path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0)
        return sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model '%s': not a GGUF file (bad magic)", role, p->path);

    backend_init_once();
    struct sr_llama_model *m = calloc(1, sizeof *m);
    if (!m) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    snprintf(m->role, sizeof m->role, "%s", role);
    m->path = sr_strdup(p->path);
    if (!m->path) { free(m); return sr_seterr(err, SR_ERR_NOMEM, "out of memory"); }

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p->n_gpu_layers;
    mp.progress_callback = NULL;
    g_last_llama_error[0] = '\0';
    m->model = llama_model_load_from_file(p->path, mp);
    if (!m->model) {
        enum sr_status st = sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model '%s': llama.cpp could not load it%s%s",
                                      role, p->path, g_last_llama_error[0] ? ": " : "", g_last_llama_error);
        sr_llama_model_free(m);
        return st;
    }
    m->vocab = llama_model_get_vocab(m->model);
    m->n_vocab = llama_vocab_n_tokens(m->vocab);
    if (m->n_vocab <= 0) {
        sr_llama_model_free(m);
        return sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model '%s': no vocabulary", role, p->path);
    }
    m->tmpl = llama_model_chat_template(m->model, NULL);
    int32_t n_train = llama_model_n_ctx_train(m->model);
    m->n_ctx = p->n_ctx ? p->n_ctx : (uint32_t)(n_train > 0 && n_train < 16384 ? n_train : 16384);
    m->n_threads = p->n_threads ? p->n_threads : online_cores();
    m->n_threads_batch = p->n_threads_batch ? p->n_threads_batch : m->n_threads;

    /* The single-digit tokens, for the judge's score. */
    for (int d = 0; d < 10; d++) {
        char s[2] = {(char)('0' + d), 0};
        llama_token t[4];
        int32_t n = llama_tokenize(m->vocab, s, 1, t, 4, false, false);
        m->digit_ok[d] = (n == 1);
        m->digit_tok[d] = n == 1 ? t[0] : LLAMA_TOKEN_NULL;
    }
    *out = m;
    return SR_OK;
}

void sr_llama_model_free(struct sr_llama_model *m) {
    if (!m) return;
    if (m->model) llama_model_free(m->model);
    free(m->path);
    free(m);
}

int sr_llama_model_desc(const struct sr_llama_model *m, char *buf, size_t size) {
    char desc[128];
    llama_model_desc(m->model, desc, sizeof desc);
    return snprintf(buf, size, "%s (%s, %.1fM params, %d layers, n_embd %d, vocab %d, ctx %u)", m->path, desc,
                    (double)llama_model_n_params(m->model) / 1e6, llama_model_n_layer(m->model),
                    llama_model_n_embd(m->model), m->n_vocab, m->n_ctx);
}

/* Whether draft token ids mean the same as the target's, as llama.cpp's speculative example
 * checks: same tokenizer type, same BOS/EOS handling, sizes within 128 (padded vocabularies such
 * as QwQ-32B's 152064 vs R1-Distill's 151936), and equal token texts over the common range. */
bool sr_llama_vocab_compatible(const struct sr_llama_model *a, const struct sr_llama_model *b, char *why, size_t n) {
    const struct llama_vocab *va = a->vocab, *vb = b->vocab;
    if (llama_vocab_type(va) != llama_vocab_type(vb)) {
        snprintf(why, n, "tokenizer types differ (%d vs %d)", llama_vocab_type(va), llama_vocab_type(vb));
        return false;
    }
    if (llama_vocab_get_add_bos(va) != llama_vocab_get_add_bos(vb) ||
        (llama_vocab_get_add_bos(va) && llama_vocab_bos(va) != llama_vocab_bos(vb))) {
        snprintf(why, n, "BOS tokens differ");
        return false;
    }
    if (llama_vocab_get_add_eos(va) != llama_vocab_get_add_eos(vb) ||
        (llama_vocab_get_add_eos(va) && llama_vocab_eos(va) != llama_vocab_eos(vb))) {
        snprintf(why, n, "EOS tokens differ");
        return false;
    }
    int32_t na = a->n_vocab, nb = b->n_vocab;
    if (na - nb > 128 || nb - na > 128) {
        snprintf(why, n, "vocabulary sizes differ by more than 128 (%d vs %d)", na, nb);
        return false;
    }
    int32_t m = na < nb ? na : nb;
    for (int32_t i = 0; i < m; i++) {
        const char *ta = llama_vocab_get_text(va, i), *tb = llama_vocab_get_text(vb, i);
        if (strcmp(ta ? ta : "", tb ? tb : "") != 0) {
            snprintf(why, n, "token %d differs ('%.32s' vs '%.32s')", i, ta ? ta : "", tb ? tb : "");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* contexts                                                                                   */

struct lm_llama {
    struct sr_lm base; /* must be first */
    struct sr_llama_model *m;
    struct llama_context *ctx;
    struct llama_sampler *smpl;
    struct llama_batch batch;
    int32_t n_batch;

    llama_token *toks; /* tokens in the KV cache, positions 0..n_toks-1 */
    int64_t n_toks, cap_toks;
    bool logits_ready; /* last decode's final logits are for position n_toks-1 */
    float *saved;      /* logits row for position saved_n-1, kept across a judge's rollback */
    int64_t saved_n;   /* -1 = nothing saved */
    bool use_saved;    /* the logits for position n_toks-1 are in `saved` */
    llama_token_data *cand; /* n_vocab candidates for sampling */
    bool greedy;            /* temperature <= 0: argmax, no sampler chain needed */

    llama_token *tmp; /* scratch for tokenization */
    int64_t cap_tmp;

    char *suffix_text; /* cached tokenization of the last judge suffix */
    size_t suffix_len;
    llama_token *suffix_toks;
    int32_t n_suffix;

    llama_token *judge_toks; /* tokens of the last judge call (test hook) */
    int64_t n_judge, cap_judge, judge_start;
};

enum sr_status sr_lm_fail(struct sr_lm *lm, enum sr_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lm->errmsg, sizeof lm->errmsg, fmt, ap);
    va_end(ap);
    return st;
}

static bool grow_tokens(llama_token **arr, int64_t *cap, int64_t need) {
    if (need <= *cap) return true;
    int64_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    llama_token *p = realloc(*arr, (size_t)c * sizeof *p);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

/* Tokenizes text into L->tmp; returns the count or -1 (message set). */
static int64_t tokenize(struct lm_llama *L, const char *text, size_t len) {
    if (len > INT32_MAX / 2) { sr_lm_fail(&L->base, SR_ERR_INVALID_ARG, "text too long to tokenize"); return -1; }
    if (len == 0) return 0;
    int64_t want = (int64_t)len + 8;
    if (!grow_tokens(&L->tmp, &L->cap_tmp, want)) { sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory"); return -1; }
    int64_t t0 = sr_time_us();
    int32_t n = llama_tokenize(L->m->vocab, text, (int32_t)len, L->tmp, (int32_t)L->cap_tmp, false, true);
    if (n < 0 && n != INT32_MIN) {
        if (!grow_tokens(&L->tmp, &L->cap_tmp, -(int64_t)n)) { sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory"); return -1; }
        n = llama_tokenize(L->m->vocab, text, (int32_t)len, L->tmp, (int32_t)L->cap_tmp, false, true);
    }
    L->base.t_backend_us += sr_time_us() - t0;
    if (n < 0) { sr_lm_fail(&L->base, SR_ERR_BACKEND, "tokenization failed"); return -1; }
    return n;
}

/* Drops cache positions >= n. */
static enum sr_status truncate_to(struct lm_llama *L, int64_t n) {
    if (n < 0 || n > L->n_toks) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "rollback to %lld of %lld tokens", (long long)n, (long long)L->n_toks);
    if (n == L->n_toks) return SR_OK;
    int64_t t0 = sr_time_us();
    bool ok = llama_memory_seq_rm(llama_get_memory(L->ctx), 0, (llama_pos)n, -1);
    L->base.t_backend_us += sr_time_us() - t0;
    if (!ok) return sr_lm_fail(&L->base, SR_ERR_BACKEND, "this model's cache cannot be rolled back (recurrent architecture?)");
    L->n_toks = n;
    L->logits_ready = false;
    if (L->saved_n > n) L->saved_n = -1;
    L->use_saved = L->saved_n == n;
    return SR_OK;
}

/* Decodes toks[0..n) after the cache; logits for the last one if want_logits. On failure the
 * cache is restored to what it held before. */
static enum sr_status decode(struct lm_llama *L, const llama_token *toks, int64_t n, bool want_logits) {
    if (n <= 0) return SR_OK;
    if (L->n_toks + n > L->base.n_ctx)
        return sr_lm_fail(&L->base, SR_ERR_CONTEXT_FULL, "context full: %lld + %lld tokens exceed n_ctx %lld",
                          (long long)L->n_toks, (long long)n, (long long)L->base.n_ctx);
    if (!grow_tokens(&L->toks, &L->cap_toks, L->n_toks + n)) return sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (toks[i] < 0 || toks[i] >= L->m->n_vocab) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "token id %d out of range", toks[i]);
    }
    int64_t before = L->n_toks;
    for (int64_t off = 0; off < n; off += L->n_batch) {
        int32_t k = (int32_t)(n - off < L->n_batch ? n - off : L->n_batch);
        L->batch.n_tokens = k;
        for (int32_t i = 0; i < k; i++) {
            L->batch.token[i] = toks[off + i];
            L->batch.pos[i] = (llama_pos)(L->n_toks + i);
            L->batch.n_seq_id[i] = 1;
            L->batch.seq_id[i][0] = 0;
            L->batch.logits[i] = 0;
        }
        bool last = off + k == n;
        if (last && want_logits) L->batch.logits[k - 1] = 1;
        int64_t t0 = sr_time_us();
        int32_t rc = llama_decode(L->ctx, L->batch);
        L->base.t_backend_us += sr_time_us() - t0;
        L->base.n_decode++;
        if (rc != 0) {
            llama_memory_seq_rm(llama_get_memory(L->ctx), 0, (llama_pos)before, -1);
            L->n_toks = before;
            L->logits_ready = false;
            if (rc == 1) return sr_lm_fail(&L->base, SR_ERR_CONTEXT_FULL, "llama_decode: no KV slot for %d tokens", k);
            if (rc == 2) return sr_lm_fail(&L->base, SR_ERR_ABORTED, "llama_decode: aborted");
            return sr_lm_fail(&L->base, SR_ERR_BACKEND, "llama_decode failed (%d)", rc);
        }
        memcpy(L->toks + L->n_toks, toks + off, (size_t)k * sizeof *toks);
        L->n_toks += k;
    }
    L->logits_ready = want_logits;
    L->use_saved = false;
    return SR_OK;
}

/* Decodes toks[0..n) (n <= n_batch) with logits on every row, for verification. */
static enum sr_status decode_all_logits(struct lm_llama *L, const llama_token *toks, int64_t n) {
    if (n > L->n_batch) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "verification batch too large");
    if (L->n_toks + n > L->base.n_ctx)
        return sr_lm_fail(&L->base, SR_ERR_CONTEXT_FULL, "context full: %lld + %lld tokens exceed n_ctx %lld",
                          (long long)L->n_toks, (long long)n, (long long)L->base.n_ctx);
    if (!grow_tokens(&L->toks, &L->cap_toks, L->n_toks + n)) return sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
    L->batch.n_tokens = (int32_t)n;
    for (int32_t i = 0; i < (int32_t)n; i++) {
        L->batch.token[i] = toks[i];
        L->batch.pos[i] = (llama_pos)(L->n_toks + i);
        L->batch.n_seq_id[i] = 1;
        L->batch.seq_id[i][0] = 0;
        L->batch.logits[i] = 1;
    }
    int64_t t0 = sr_time_us();
    int32_t rc = llama_decode(L->ctx, L->batch);
    L->base.t_backend_us += sr_time_us() - t0;
    L->base.n_decode++;
    if (rc != 0) {
        llama_memory_seq_rm(llama_get_memory(L->ctx), 0, (llama_pos)L->n_toks, -1);
        L->logits_ready = false;
        L->use_saved = false;
        return sr_lm_fail(&L->base, rc == 1 ? SR_ERR_CONTEXT_FULL : SR_ERR_BACKEND, "llama_decode failed (%d)", rc);
    }
    memcpy(L->toks + L->n_toks, toks, (size_t)n * sizeof *toks);
    L->n_toks += n;
    L->logits_ready = true;
    L->use_saved = false;
    return SR_OK;
}

/* Makes the logits of position n_toks-1 available (decoding the last token again if needed). */
static enum sr_status ensure_logits(struct lm_llama *L) {
    if (L->logits_ready || L->use_saved) return SR_OK;
    if (L->n_toks == 0) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "cannot generate from an empty context");
    llama_token last = L->toks[L->n_toks - 1];
    enum sr_status st = truncate_to(L, L->n_toks - 1);
    if (st != SR_OK) return st;
    return decode(L, &last, 1, true);
}

static enum sr_status lm_reset(struct sr_lm *lm, const char *text, size_t len, int32_t *n_tokens) {
    struct lm_llama *L = (struct lm_llama *)lm;
    llama_memory_clear(llama_get_memory(L->ctx), false);
    L->n_toks = 0;
    L->logits_ready = false;
    L->saved_n = -1;
    L->use_saved = false;
    int64_t n = tokenize(L, text, len);
    if (n < 0) return SR_ERR_BACKEND;
    if (n == 0) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "empty prompt");
    if (n_tokens) *n_tokens = (int32_t)n;
    return decode(L, L->tmp, n, true);
}

static enum sr_status lm_append(struct sr_lm *lm, const char *text, size_t len, int32_t *n_tokens) {
    struct lm_llama *L = (struct lm_llama *)lm;
    int64_t n = tokenize(L, text, len);
    if (n < 0) return SR_ERR_BACKEND;
    if (n_tokens) *n_tokens = (int32_t)n;
    /* Ask for logits: the next operation is often a generate, and the extra output row is free. */
    return decode(L, L->tmp, n, true);
}

static int64_t lm_mark(const struct sr_lm *lm) { return ((const struct lm_llama *)lm)->n_toks; }

static enum sr_status lm_rollback(struct sr_lm *lm, int64_t mark) { return truncate_to((struct lm_llama *)lm, mark); }

/* The text of a token (special tokens rendered), into buf; returns its length or -1. */
static int32_t piece(struct lm_llama *L, llama_token t, char *buf, int32_t size) {
    int32_t n = llama_token_to_piece(L->m->vocab, t, buf, size, 0, true);
    return n < 0 ? -1 : n;
}

/* Samples the next token from the logits of position n_toks-1 (live or saved), as
 * llama_sampler_sample does: apply the chain to all candidates, then accept the choice. */
static enum sr_status sample_logits(struct lm_llama *L, const float *lg, llama_token *out) {
    if (!lg) return sr_lm_fail(&L->base, SR_ERR_BACKEND, "no logits to sample from");
    int32_t nv = L->m->n_vocab;
    if (L->greedy) { /* what llama_sampler_init_greedy does, without building the candidate array */
        int32_t best = 0;
        for (int32_t i = 1; i < nv; i++)
            if (lg[i] > lg[best]) best = i;
        *out = best;
        return SR_OK;
    }
    for (int32_t i = 0; i < nv; i++) {
        L->cand[i].id = i;
        L->cand[i].logit = lg[i];
        L->cand[i].p = 0.0f;
    }
    llama_token_data_array arr = {L->cand, (size_t)nv, -1, false};
    llama_sampler_apply(L->smpl, &arr);
    if (arr.selected < 0 || (size_t)arr.selected >= arr.size) return sr_lm_fail(&L->base, SR_ERR_BACKEND, "sampler selected nothing");
    *out = arr.data[arr.selected].id;
    llama_sampler_accept(L->smpl, *out);
    return SR_OK;
}

static enum sr_status sample_next(struct lm_llama *L, llama_token *out) {
    return sample_logits(L, L->use_saved ? L->saved : llama_get_logits_ith(L->ctx, -1), out);
}

/* log softmax(lg)[tok] over the whole vocabulary (the model's confidence in the token). */
static float token_logprob(const float *lg, int32_t nv, llama_token tok) {
    float mx = lg[0];
    for (int32_t i = 1; i < nv; i++)
        if (lg[i] > mx) mx = lg[i];
    double z = 0.0;
    for (int32_t i = 0; i < nv; i++) z += exp((double)(lg[i] - mx));
    return (float)((double)(lg[tok] - mx) - log(z));
}

/* ---- the token stream of one generation ----------------------------------------------------
 * Plain and speculative generation feed the tokens they emit, in order, through emit(): it
 * appends the text, counts tokens and says whether the step ends here. Both paths then settle the
 * cache the same way, so their output is identical token for token. */

enum emit_res { EMIT_CONTINUE, EMIT_DELIM_EXACT, EMIT_DELIM_OVER, EMIT_EOG, EMIT_MAX };

struct emitter {
    struct lm_llama *L;
    struct sr_gen_out *out;
    const char *delim;
    size_t dlen;
    size_t start;  /* out->text.len at entry */
    int32_t max_tokens;
    size_t prev;   /* text length before the last token */
    size_t cut;    /* DELIM_*: where the delimiter starts */
    size_t end;    /* DELIM_*: where it ends */
};

/* lp: the token's log-probability, NAN = not known (then the output reports none). */
static enum emit_res emit(struct emitter *e, llama_token tok, float lp, enum sr_status *st) {
    struct lm_llama *L = e->L;
    struct sr_gen_out *out = e->out;
    *st = SR_OK;
    if (llama_vocab_is_eog(L->m->vocab, tok)) {
        out->end = SR_GEN_EOG;
        return EMIT_EOG;
    }
    if (!isnan(lp)) {
        if (out->n_logprob == 0 || lp < out->logprob_min) out->logprob_min = lp;
        out->logprob_sum += lp;
        out->n_logprob++;
    }
    char pbuf[256];
    int32_t pn = piece(L, tok, pbuf, sizeof pbuf);
    if (pn < 0) { *st = sr_lm_fail(&L->base, SR_ERR_BACKEND, "token %d has no text", tok); return EMIT_EOG; }
    e->prev = out->text.len;
    sr_buf_append(&out->text, pbuf, (size_t)pn);
    if (out->text.oom) { *st = sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory"); return EMIT_EOG; }
    out->n_tokens++;
    if (e->dlen) {
        size_t from = e->prev >= e->start + e->dlen - 1 ? e->prev - (e->dlen - 1) : e->start;
        const char *hit = sr_memmem(out->text.data + from, out->text.len - from, e->delim, e->dlen);
        if (hit) {
            e->cut = (size_t)(hit - out->text.data);
            e->end = e->cut + e->dlen;
            out->end = SR_GEN_DELIM;
            return e->end == out->text.len ? EMIT_DELIM_EXACT : EMIT_DELIM_OVER;
        }
    }
    if (out->n_tokens >= e->max_tokens) {
        out->end = SR_GEN_MAX;
        return EMIT_MAX;
    }
    return EMIT_CONTINUE;
}

/* Cuts the text at the delimiter. */
static void emit_cut(struct emitter *e) {
    e->out->text.len = e->cut;
    e->out->text.data[e->cut] = '\0';
}

/* Settles the cache when the stream stops at `tok`, which is not in the cache yet. */
static enum sr_status finish_pending(struct emitter *e, enum emit_res r, llama_token tok) {
    struct lm_llama *L = e->L;
    enum sr_status st = SR_OK;
    switch (r) {
    case EMIT_DELIM_EXACT:
        st = decode(L, &tok, 1, true);
        emit_cut(e);
        return st;
    case EMIT_DELIM_OVER: {
        /* The token runs past the delimiter: keep only its text up to the delimiter's end, so
         * the cache holds exactly the adopted text. */
        int64_t n = tokenize(L, e->out->text.data + e->prev, e->end - e->prev);
        st = n < 0 ? SR_ERR_BACKEND : decode(L, L->tmp, n, true);
        emit_cut(e);
        return st;
    }
    case EMIT_MAX:
        st = decode(L, &tok, 1, true);
        if (st == SR_OK && e->dlen) st = lm_append(&L->base, e->delim, e->dlen, NULL);
        return st;
    case EMIT_EOG: /* the EOG token is not kept */
        return e->dlen ? lm_append(&L->base, e->delim, e->dlen, NULL) : SR_OK;
    case EMIT_CONTINUE: break;
    }
    return SR_OK;
}

static enum sr_status lm_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct emitter e = {L, out, delim, delim ? strlen(delim) : 0, out->text.len, max_tokens, 0, 0, 0};
    out->n_tokens = 0;
    out->n_logprob = 0;
    out->logprob_min = 0.0f;
    out->logprob_sum = 0.0;
    out->end = SR_GEN_MAX;
    if (max_tokens <= 0) return e.dlen ? lm_append(lm, delim, e.dlen, NULL) : SR_OK;
    enum sr_status st = ensure_logits(L);
    if (st != SR_OK) return st;
    for (;;) {
        int64_t t0 = sr_time_us();
        llama_token tok = 0;
        const float *lg = L->use_saved ? L->saved : llama_get_logits_ith(L->ctx, -1);
        st = sample_logits(L, lg, &tok);
        float lp = st == SR_OK && lm->want_logprob ? token_logprob(lg, L->m->n_vocab, tok) : NAN;
        L->base.t_backend_us += sr_time_us() - t0;
        if (st != SR_OK) return st;
        enum emit_res r = emit(&e, tok, lp, &st);
        if (st != SR_OK) return st;
        if (r != EMIT_CONTINUE) return finish_pending(&e, r, tok);
        st = decode(L, &tok, 1, true);
        if (st != SR_OK) return st;
    }
}

/* ---- token-level speculative decoding ------------------------------------------------------
 * The draft model proposes up to draft_max tokens greedily (stopping when its top probability
 * falls below p_min); the target decodes [pending, d0..d(k-1)] in one batch and samples each
 * position with its own sampler chain, keeping drafts while they equal its sample
 * ("sample-and-match"). Every emitted token is a real sample of the target, drawn once per
 * position in order, so the output follows the target's distribution exactly; with the same
 * seed it is the very output of plain decoding (up to the rounding of batched vs single-token
 * matrix products). Rejection sampling (Leviathan et al.) would accept more drafts at
 * temperature > 0 but consume randomness differently; we prefer reproducibility. */

/* Samples from logits row `idx` of the last decode (as sample_next does). */
static enum sr_status sample_row(struct lm_llama *L, int32_t idx, llama_token *out) {
    return sample_logits(L, llama_get_logits_ith(L->ctx, idx), out);
}

/* Keeps logits row `idx` as the logits for position n-1 of a cache truncated to n. */
static void keep_row(struct lm_llama *L, int32_t idx, int64_t n) {
    const float *lg = llama_get_logits_ith(L->ctx, idx);
    if (!lg) return;
    memcpy(L->saved, lg, (size_t)L->m->n_vocab * sizeof *lg);
    L->saved_n = n;
    L->use_saved = (L->n_toks == n);
}

static enum sr_status lm_generate_spec(struct sr_lm *lm, struct sr_lm *draft_lm, const char *delim,
                                       int32_t max_tokens, const struct sr_sd_params *sd, struct sr_gen_out *out,
                                       struct sr_sd_stats *stats) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct lm_llama *D = (struct lm_llama *)draft_lm;
    struct emitter e = {L, out, delim, delim ? strlen(delim) : 0, out->text.len, max_tokens, 0, 0, 0};
    out->n_tokens = 0;
    out->n_logprob = 0;
    out->logprob_min = 0.0f;
    out->logprob_sum = 0.0;
    out->end = SR_GEN_MAX;
    if (max_tokens <= 0) return e.dlen ? lm_append(lm, delim, e.dlen, NULL) : SR_OK;
    int32_t kcap = sd->draft_max < 64 ? sd->draft_max : 64;
    llama_token drafts[64];
    llama_token dpend[72]; /* emitted tokens not yet in the draft's cache */
    int32_t n_dpend = 0;

    enum sr_status st = ensure_logits(L);
    if (st != SR_OK) return st;
    llama_token tok = 0;
    int64_t t0 = sr_time_us();
    st = sample_next(L, &tok);
    L->base.t_backend_us += sr_time_us() - t0;
    if (st != SR_OK) return st;
    for (;;) {
        enum emit_res r = emit(&e, tok, NAN, &st);
        if (st != SR_OK) return st;
        if (r != EMIT_CONTINUE) return finish_pending(&e, r, tok);

        /* Draft: bring D up to `tok`, then propose greedily. */
        int64_t td = sr_time_us();
        int32_t n_left = max_tokens - out->n_tokens; /* >= 1 */
        int32_t kmax = n_left - 1 < kcap ? n_left - 1 : kcap;
        int32_t nd = 0;
        int64_t d_after_tok = -1; /* D's cache length right after tok */
        if (kmax > 0) {
            dpend[n_dpend++] = tok;
            st = decode(D, dpend, n_dpend, true);
            if (st != SR_OK) return sr_lm_fail(lm, st, "draft model: %s", D->base.errmsg);
            n_dpend = 0;
            d_after_tok = D->n_toks;
            while (nd < kmax) {
                const float *lg = llama_get_logits_ith(D->ctx, -1);
                if (!lg) break;
                /* The draft's top candidate and its probability among its ten best, as
                 * llama.cpp's draft-simple speculator measures p_min (top-10 then softmax). */
                float top[10];
                int32_t best = 0, ntop = 0;
                for (int32_t i = 0; i < D->m->n_vocab; i++) {
                    float v = lg[i];
                    if (ntop == 10 && v <= top[9]) continue;
                    int32_t k = ntop < 10 ? ntop++ : 9;
                    while (k > 0 && top[k - 1] < v) { top[k] = top[k - 1]; k--; }
                    top[k] = v;
                    if (k == 0) best = i;
                }
                if (sd->p_min > 0.0f) {
                    double z = 0.0;
                    for (int32_t k = 0; k < ntop; k++) z += exp((double)(top[k] - top[0]));
                    if (1.0 / z < (double)sd->p_min) break;
                }
                if (best >= L->m->n_vocab || llama_vocab_is_eog(D->m->vocab, best)) break;
                drafts[nd++] = best;
                if (nd < kmax) {
                    st = decode(D, &drafts[nd - 1], 1, true);
                    if (st != SR_OK) return sr_lm_fail(lm, st, "draft model: %s", D->base.errmsg);
                }
            }
            if (nd < sd->draft_min) nd = 0;
        } else {
            dpend[n_dpend++] = tok;
        }
        /* D's cache now ends with tok and the drafts it decoded (all but the last one when
         * nd reached kmax). */
        stats->t_draft_us += sr_time_us() - td;

        /* Verify: [tok, d0..d(nd-1)] in one batch, logits on every row. */
        int64_t tv = sr_time_us();
        int64_t base_n = L->n_toks;
        llama_token vb[65];
        vb[0] = tok;
        memcpy(vb + 1, drafts, (size_t)nd * sizeof *drafts);
        st = decode_all_logits(L, vb, nd + 1);
        if (st != SR_OK) return st;
        stats->batches++;
        stats->drafted += nd;
        int32_t j = 0;
        llama_token next = 0;
        for (int32_t i = 0; i <= nd; i++) {
            t0 = sr_time_us();
            st = sample_row(L, i, &next);
            L->base.t_backend_us += sr_time_us() - t0;
            if (st != SR_OK) return st;
            if (i < nd && next == drafts[i]) {
                j++;
                r = emit(&e, drafts[i], NAN, &st);
                if (st != SR_OK) return st;
                if (r != EMIT_CONTINUE) {
                    /* Stopped at an accepted draft, which sits in the cache at base_n + 1 + i. */
                    stats->accepted += j;
                    stats->t_verify_us += sr_time_us() - tv;
                    int64_t q = base_n + 1 + i;
                    switch (r) {
                    case EMIT_DELIM_EXACT:
                        st = truncate_to(L, q + 1);
                        keep_row(L, i + 1, q + 1);
                        emit_cut(&e);
                        return st;
                    case EMIT_DELIM_OVER: {
                        st = truncate_to(L, q);
                        if (st != SR_OK) return st;
                        int64_t n = tokenize(L, out->text.data + e.prev, e.end - e.prev);
                        st = n < 0 ? SR_ERR_BACKEND : decode(L, L->tmp, n, true);
                        emit_cut(&e);
                        return st;
                    }
                    default: /* EMIT_MAX */
                        st = truncate_to(L, q + 1);
                        keep_row(L, i + 1, q + 1);
                        if (st == SR_OK && e.dlen) st = lm_append(lm, delim, e.dlen, NULL);
                        return st;
                    }
                }
                continue;
            }
            break;
        }
        stats->accepted += j;
        /* Keep tok and the accepted drafts; `next` is the new pending token. */
        st = truncate_to(L, base_n + 1 + j);
        if (st != SR_OK) return st;
        if (d_after_tok >= 0) {
            int64_t d_keep = d_after_tok + j; /* tok + j accepted drafts */
            if (j == 0 || d_keep <= D->n_toks) {
                st = truncate_to(D, d_keep);
            } else {
                /* The last accepted draft was never decoded by D. */
                dpend[n_dpend++] = drafts[j - 1];
            }
            if (st != SR_OK) return sr_lm_fail(lm, st, "draft model: %s", D->base.errmsg);
        }
        stats->t_verify_us += sr_time_us() - tv;
        tok = next;
    }
}

static bool lm_draft_compatible(struct sr_lm *lm, struct sr_lm *draft_lm, char *why, size_t n) {
    const struct sr_llama_model *a = ((struct lm_llama *)lm)->m, *b = ((struct lm_llama *)draft_lm)->m;
    return sr_llama_vocab_compatible(a, b, why, n);
}

static enum sr_status lm_judge(struct sr_lm *lm, const char *cand, size_t cand_len, const char *suffix,
                               size_t suffix_len, struct sr_judge_out *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    memset(out, 0, sizeof *out);
    /* The suffix is the same for every step of a run: tokenize it once. */
    if (!L->suffix_text || L->suffix_len != suffix_len || memcmp(L->suffix_text, suffix, suffix_len) != 0) {
        int64_t n = tokenize(L, suffix, suffix_len);
        if (n < 0) return SR_ERR_BACKEND;
        char *s = sr_strndup(suffix, suffix_len);
        llama_token *t = malloc((size_t)(n ? n : 1) * sizeof *t);
        if (!s || !t) { free(s); free(t); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
        memcpy(t, L->tmp, (size_t)n * sizeof *t);
        free(L->suffix_text);
        free(L->suffix_toks);
        L->suffix_text = s;
        L->suffix_len = suffix_len;
        L->suffix_toks = t;
        L->n_suffix = (int32_t)n;
    }
    int64_t nc = tokenize(L, cand, cand_len);
    if (nc < 0) return SR_ERR_BACKEND;
    if (!grow_tokens(&L->judge_toks, &L->cap_judge, nc + L->n_suffix)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    memcpy(L->judge_toks, L->tmp, (size_t)nc * sizeof(llama_token));
    memcpy(L->judge_toks + nc, L->suffix_toks, (size_t)L->n_suffix * sizeof(llama_token));
    L->n_judge = nc + L->n_suffix;
    L->judge_start = L->n_toks;
    if (L->n_judge == 0) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "empty judge prompt");
    int64_t mark = L->n_toks;
    /* Keep the current logits: on rejection the base model writes the step from this point. */
    if (L->logits_ready) {
        const float *lg = llama_get_logits_ith(L->ctx, -1);
        if (lg) {
            memcpy(L->saved, lg, (size_t)L->m->n_vocab * sizeof *lg);
            L->saved_n = L->n_toks;
        }
    } else if (!L->use_saved) {
        L->saved_n = -1;
    }
    /* Candidate and suffix in one forward pass: the judge's whole cost. */
    enum sr_status st = decode(L, L->judge_toks, L->n_judge, true);
    if (st != SR_OK) return st;
    int64_t t0 = sr_time_us();
    const float *logits = llama_get_logits_ith(L->ctx, -1);
    if (!logits) return sr_lm_fail(lm, SR_ERR_BACKEND, "no logits after the judge prompt");
    int32_t best = 0;
    for (int32_t i = 1; i < L->m->n_vocab; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    char pbuf[64];
    int32_t pn = piece(L, best, pbuf, sizeof pbuf);
    out->greedy_value = -1;
    if (pn > 0 && pn <= 9) {
        int32_t v = 0;
        bool digits = true;
        for (int32_t i = 0; i < pn; i++) {
            if (pbuf[i] < '0' || pbuf[i] > '9') { digits = false; break; }
            v = v * 10 + (pbuf[i] - '0');
        }
        if (digits) out->greedy_value = v;
    }
    for (int d = 0; d < 10; d++) {
        out->digit_ok[d] = L->m->digit_ok[d];
        out->digit_logit[d] = L->m->digit_ok[d] ? logits[L->m->digit_tok[d]] : -INFINITY;
    }
    L->base.t_backend_us += sr_time_us() - t0;
    out->n_cand_tokens = (int32_t)nc;
    out->n_suffix_tokens = L->n_suffix;
    return truncate_to(L, mark + nc);
}

static enum sr_status lm_set_sampling(struct sr_lm *lm, float temperature, float top_p, uint64_t seed) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    struct llama_sampler *s = llama_sampler_chain_init(cp);
    if (!s) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    if (temperature <= 0.0f) {
        llama_sampler_chain_add(s, llama_sampler_init_greedy());
    } else {
        /* Temperature before top-p, as vLLM (the reference's engine) applies them. */
        llama_sampler_chain_add(s, llama_sampler_init_temp(temperature));
        if (top_p < 1.0f) llama_sampler_chain_add(s, llama_sampler_init_top_p(top_p, 1));
        uint64_t z = seed + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        uint32_t s32 = (uint32_t)z;
        if (s32 == LLAMA_DEFAULT_SEED) s32 = 0; /* LLAMA_DEFAULT_SEED would mean "random" */
        llama_sampler_chain_add(s, llama_sampler_init_dist(s32));
    }
    if (L->smpl) llama_sampler_free(L->smpl);
    L->smpl = s;
    L->greedy = temperature <= 0.0f;
    return SR_OK;
}

static enum sr_status lm_render(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n, struct sr_buf *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct llama_chat_message cm[8];
    if (n > 8) return sr_lm_fail(lm, SR_ERR_INTERNAL, "too many chat messages");
    size_t total = 64;
    for (size_t i = 0; i < n; i++) {
        cm[i].role = msgs[i].role;
        cm[i].content = msgs[i].content;
        total += strlen(msgs[i].content) * 2 + 64;
    }
    const char *tmpl = L->m->tmpl;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (total > INT32_MAX) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "prompt too long");
        sr_buf_clear(out);
        if (!sr_buf_reserve(out, total)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
        int32_t r = llama_chat_apply_template(tmpl, cm, n, false, out->data, (int32_t)total);
        if (r < 0) {
            if (tmpl) {
                sr_log(SR_LOG_WARN, "%s model: chat template not recognised by llama.cpp; using chatml", L->m->role);
                tmpl = NULL;
                attempt = -1;
                continue;
            }
            return sr_lm_fail(lm, SR_ERR_BACKEND, "chat template could not be applied");
        }
        if ((size_t)r < total) {
            out->len = (size_t)r;
            out->data[r] = '\0';
            return SR_OK;
        }
        total = (size_t)r + 1;
    }
    return sr_lm_fail(lm, SR_ERR_INTERNAL, "chat template rendering did not converge");
}

static void lm_free(struct sr_lm *lm) {
    struct lm_llama *L = (struct lm_llama *)lm;
    if (!L) return;
    if (L->smpl) llama_sampler_free(L->smpl);
    if (L->batch.token) llama_batch_free(L->batch);
    if (L->ctx) llama_free(L->ctx);
    free(L->toks);
    free(L->tmp);
    free(L->saved);
    free(L->cand);
    free(L->suffix_text);
    free(L->suffix_toks);
    free(L->judge_toks);
    free(L);
}

static const struct sr_lm_ops llama_ops = {
    .reset = lm_reset,
    .generate = lm_generate,
    .append = lm_append,
    .mark = lm_mark,
    .rollback = lm_rollback,
    .judge = lm_judge,
    .set_sampling = lm_set_sampling,
    .render = lm_render,
    .free = lm_free,
    .generate_spec = lm_generate_spec,
    .draft_compatible = lm_draft_compatible,
};

static struct llama_context *new_context(struct sr_llama_model *m, uint32_t n_ctx, int32_t *n_batch) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx < 2048 ? n_ctx : 2048;
    cp.n_ubatch = cp.n_batch < 512 ? cp.n_batch : 512;
    cp.n_seq_max = 1;
    cp.n_threads = m->n_threads;
    cp.n_threads_batch = m->n_threads_batch;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(m->model, cp);
    if (ctx && n_batch) *n_batch = (int32_t)llama_n_batch(ctx);
    return ctx;
}

enum sr_status sr_llama_lm_init(struct sr_llama_model *m, struct sr_lm **out, struct sr_error *err) {
    *out = NULL;
    struct lm_llama *L = calloc(1, sizeof *L);
    if (!L) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    L->base.ops = &llama_ops;
    L->m = m;
    g_last_llama_error[0] = '\0';
    L->ctx = new_context(m, m->n_ctx, &L->n_batch);
    if (!L->ctx) {
        lm_free(&L->base);
        return sr_seterr(err, SR_ERR_MODEL_LOAD,
                         "%s model: could not create a context of %u tokens (does it fit in memory?)%s%s", m->role,
                         m->n_ctx, g_last_llama_error[0] ? ": " : "", g_last_llama_error);
    }
    L->base.n_ctx = (int64_t)llama_n_ctx(L->ctx);
    L->base.n_threads = m->n_threads > m->n_threads_batch ? m->n_threads : m->n_threads_batch;
    L->saved_n = -1;
    L->saved = malloc((size_t)m->n_vocab * sizeof *L->saved);
    L->cand = malloc((size_t)m->n_vocab * sizeof *L->cand);
    if (!L->saved || !L->cand) { lm_free(&L->base); return sr_seterr(err, SR_ERR_NOMEM, "out of memory"); }
    L->batch = llama_batch_init(L->n_batch, 0, 1);
    if (!L->batch.token) { lm_free(&L->base); return sr_seterr(err, SR_ERR_NOMEM, "out of memory"); }
    if (lm_set_sampling(&L->base, 0.0f, 1.0f, 0) != SR_OK) {
        lm_free(&L->base);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    }
    *out = &L->base;
    return SR_OK;
}

const int32_t *sr_llama_lm_tokens(const struct sr_lm *lm, int64_t *n) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    *n = L->n_toks;
    return L->toks;
}

const int32_t *sr_llama_lm_last_judge(const struct sr_lm *lm, int64_t *n, int64_t *start) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    *n = L->n_judge;
    *start = L->judge_start;
    return L->judge_toks;
}

void sr_llama_lm_cache_range(const struct sr_lm *lm, int32_t *pos_min, int32_t *pos_max) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    llama_memory_t mem = llama_get_memory(L->ctx);
    *pos_min = llama_memory_seq_pos_min(mem, 0);
    *pos_max = llama_memory_seq_pos_max(mem, 0);
}

float *sr_llama_fresh_logits(struct sr_lm *lm, const int32_t *tokens, int64_t n, int32_t *n_vocab) {
    struct lm_llama *L = (struct lm_llama *)lm;
    int32_t nb = 0;
    uint32_t need = (uint32_t)n + 256;
    struct llama_context *ctx = new_context(L->m, need, &nb);
    if (!ctx) return NULL;
    float *res = NULL;
    struct llama_batch b = llama_batch_init(nb, 0, 1);
    int64_t off = 0;
    for (; off < n; off += nb) {
        int32_t k = (int32_t)(n - off < nb ? n - off : nb);
        b.n_tokens = k;
        for (int32_t i = 0; i < k; i++) {
            b.token[i] = tokens[off + i];
            b.pos[i] = (llama_pos)(off + i);
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = (off + i == n - 1);
        }
        if (llama_decode(ctx, b) != 0) break;
    }
    if (off >= n) {
        const float *lg = llama_get_logits_ith(ctx, -1);
        if (lg) {
            res = malloc((size_t)L->m->n_vocab * sizeof *res);
            if (res) memcpy(res, lg, (size_t)L->m->n_vocab * sizeof *res);
            *n_vocab = L->m->n_vocab;
        }
    }
    llama_batch_free(b);
    llama_free(ctx);
    return res;
}

const float *sr_llama_lm_logits(struct sr_lm *lm) {
    struct lm_llama *L = (struct lm_llama *)lm;
    if (L->use_saved) return L->saved;
    if (L->logits_ready) return llama_get_logits_ith(L->ctx, -1);
    return NULL;
}

char *sr_llama_lm_detokenize(struct sr_lm *lm, const int32_t *tokens, int64_t n) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct sr_buf b = {0};
    char pbuf[256];
    for (int64_t i = 0; i < n; i++) {
        int32_t k = piece(L, tokens[i], pbuf, sizeof pbuf);
        if (k < 0) { sr_buf_free(&b); return NULL; }
        sr_buf_append(&b, pbuf, (size_t)k);
    }
    return sr_buf_take(&b);
}
