/*
 * llama_backend.c: struct sr_lm over an in-process llama.cpp context. The ONLY file that calls
 * llama.cpp, so an upstream rename touches nothing else.
 *
 * State per session: the tokens held in the KV cache (its sequence, positions 0..n-1: sequence 0 of
 * a context of its own, or one sequence of the model's shared context when batching, where the
 * batcher copies the logits rows we ask for out of each merged decode; row() reads either) and
 * whether the logits of the last decode belong to position n-1 ("logits ready"). Sampling needs them.
 * A judge call appends a candidate and the judge suffix and then rolls back, which loses them; so
 * two logits rows are kept: the one before the candidate (current when judging starts) and the one
 * after the candidate's last token (read from the judge's own batch). A rollback to exactly one of
 * those points restores its row: a step the base model writes after a rejection is sampled from the
 * very logits it would have seen without speculation (bit-identical output, no extra decode), also
 * when the previous step was an accepted candidate. Other rollbacks decode the last token again.
 *
 * Tokenization: text from a user or a model is tokenized as text (parse_special = false: a problem
 * that contains "<|im_end|>" stays those characters); only chat-template text (prompt segments
 * marked special, the judge suffix) has its control tokens recognised. The prompt's first prefill
 * starts with BOS when the vocabulary says so (tokenizer.ggml.add_bos_token), never mid-sequence.
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
#include <netdb.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "batch.h"
#include "internal.h"
#include "ggml-rpc.h"
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
    char rpc[256]; /* the workers the layers are on, or "" */
    uint32_t n_ctx;
    int32_t n_threads, n_threads_batch;
    llama_token digit_tok[10];
    bool digit_ok[10];
    int32_t max_piece;  /* longest token text in bytes (special tokens rendered) */
    llama_token *ctrl;  /* control tokens, recognised in template text only */
    int32_t *ctrl_len;  /* their text lengths */
    const char **ctrl_text;
    int32_t n_ctrl;
    struct sr_batcher *shared; /* one context for all sessions (sr_llama_model_share), or NULL */
    int32_t shared_batch;      /* its n_batch */
    uint32_t shared_ctx_seq;   /* tokens per sequence */
};

static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- llama.cpp RPC workers (ggml-rpc-server) -------------------------------------------------
 * ggml's RPC client aborts the process when it cannot reach a worker, so each endpoint is first
 * probed with a plain TCP connect (2 s timeout) and a dead worker becomes an error message. */

static bool tcp_probe(const char *host, const char *port, char *why, size_t n) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) { snprintf(why, n, "%s:%s: %s", host, port, gai_strerror(rc)); return false; }
    bool ok = false;
    for (struct addrinfo *a = res; a && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        int fl = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc == 0) ok = true;
        else if (errno == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            if (poll(&pfd, 1, 2000) == 1) {
                int e = 0;
                socklen_t el = sizeof e;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) ok = true;
                else errno = e;
            } else errno = ETIMEDOUT;
        }
        if (!ok) snprintf(why, n, "cannot connect to the worker at %s:%s (%s; is ggml-rpc-server running there?)", host, port, strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

/* Devices of the workers in "host:port,host:port,...". */
static bool rpc_devices(const char *list, ggml_backend_dev_t *devs, size_t cap, size_t *nd, char *why, size_t n) {
    *nd = 0;
    char buf[1024];
    if (strlen(list) >= sizeof buf) { snprintf(why, n, "list too long"); return false; }
    snprintf(buf, sizeof buf, "%s", list);
    size_t n_ep = 0;
    for (char *save = NULL, *ep = strtok_r(buf, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        while (*ep == ' ') ep++;
        char *colon = strrchr(ep, ':');
        if (!colon || colon == ep || !colon[1]) { snprintf(why, n, "'%s' is not HOST:PORT", ep); return false; }
        char *end = NULL;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535) { snprintf(why, n, "'%s': bad port", ep); return false; }
        if (++n_ep > GGML_RPC_MAX_SERVERS) { snprintf(why, n, "more than %d workers", GGML_RPC_MAX_SERVERS); return false; }
        *colon = '\0';
        bool ok = tcp_probe(ep, colon + 1, why, n);
        *colon = ':';
        if (!ok) return false;
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(ep);
        if (!reg) { snprintf(why, n, "the worker at %s reports no devices", ep); return false; }
        for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) {
            if (*nd >= cap) { snprintf(why, n, "too many devices"); return false; }
            devs[(*nd)++] = ggml_backend_reg_dev_get(reg, i);
        }
    }
    if (*nd == 0) { snprintf(why, n, "no workers given"); return false; }
    return true;
}

static enum sr_status model_load(const struct sr_model_params *p, const char *role, bool vocab_only,
                                 struct sr_llama_model **out, struct sr_error *err);

enum sr_status sr_llama_model_load(const struct sr_model_params *p, const char *role,
                                   struct sr_llama_model **out, struct sr_error *err) {
    return model_load(p, role, false, out, err);
}

enum sr_status sr_llama_vocab_load(const char *path, const char *role, struct sr_llama_model **out,
                                   struct sr_error *err) {
    struct sr_model_params p;
    memset(&p, 0, sizeof p);
    p.path = path;
    return model_load(&p, role, true, out, err);
}

static enum sr_status model_load(const struct sr_model_params *p, const char *role, bool vocab_only,
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
    mp.vocab_only = vocab_only;
    ggml_backend_dev_t devs[GGML_RPC_MAX_SERVERS * 4 + 1];
    if (p->rpc && *p->rpc && !vocab_only) {
        char why[256];
        size_t nd = 0;
        if (!rpc_devices(p->rpc, devs, sizeof devs / sizeof devs[0] - 1, &nd, why, sizeof why)) {
            sr_llama_model_free(m);
            return sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model: --rpc: %s", role, why);
        }
        devs[nd] = NULL;
        mp.devices = devs;
        if (mp.n_gpu_layers == 0) mp.n_gpu_layers = -1; /* with workers, 0 (the default) = all layers there */
        snprintf(m->rpc, sizeof m->rpc, "%s", p->rpc);
    }
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
    if (!vocab_only) { /* a vocabulary-only load (remote backend) never gets a context */
        int32_t n_train = llama_model_n_ctx_train(m->model);
        m->n_ctx = p->n_ctx ? p->n_ctx : (uint32_t)(n_train > 0 && n_train < 16384 ? n_train : 16384);
        m->n_threads = p->n_threads ? p->n_threads : online_cores();
        m->n_threads_batch = p->n_threads_batch ? p->n_threads_batch : m->n_threads;
    }
    /* The single-digit tokens, for the judge's score. */
    for (int d = 0; d < 10; d++) {
        char s[2] = {(char)('0' + d), 0};
        llama_token t[4];
        int32_t n = llama_tokenize(m->vocab, s, 1, t, 4, false, false);
        m->digit_ok[d] = (n == 1);
        m->digit_tok[d] = n == 1 ? t[0] : LLAMA_TOKEN_NULL;
    }
    /* Token texts are sized from the vocabulary, and the control tokens listed for template text. */
    m->ctrl = malloc((size_t)m->n_vocab * sizeof *m->ctrl);
    m->ctrl_len = malloc((size_t)m->n_vocab * sizeof *m->ctrl_len);
    m->ctrl_text = malloc((size_t)m->n_vocab * sizeof *m->ctrl_text);
    if (!m->ctrl || !m->ctrl_len || !m->ctrl_text) {
        sr_llama_model_free(m);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    }
    char pbuf[256];
    m->max_piece = 1;
    for (llama_token t = 0; t < m->n_vocab; t++) {
        int32_t n = llama_token_to_piece(m->vocab, t, pbuf, sizeof pbuf, 0, true);
        if (n < 0) n = -n;
        if (n > m->max_piece) m->max_piece = n;
        enum llama_token_attr a = llama_vocab_get_attr(m->vocab, t);
        const char *txt = llama_vocab_get_text(m->vocab, t);
        if ((a & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_UNKNOWN)) && txt && *txt) {
            m->ctrl[m->n_ctrl] = t;
            m->ctrl_text[m->n_ctrl] = txt;
            m->ctrl_len[m->n_ctrl] = (int32_t)strlen(txt);
            m->n_ctrl++;
        }
    }
    *out = m;
    return SR_OK;
}

void sr_llama_model_free(struct sr_llama_model *m) {
    if (!m) return;
    sr_batcher_free(m->shared);
    if (m->model) llama_model_free(m->model);
    free(m->ctrl);
    free(m->ctrl_len);
    free(m->ctrl_text);
    free(m->path);
    free(m);
}

int sr_llama_model_desc(const struct sr_llama_model *m, char *buf, size_t size) {
    char desc[128];
    llama_model_desc(m->model, desc, sizeof desc);
    return snprintf(buf, size, "%s (%s, %.1fM params, %d layers, n_embd %d, vocab %d, ctx %u%s%s)", m->path, desc,
                    (double)llama_model_n_params(m->model) / 1e6, llama_model_n_layer(m->model),
                    llama_model_n_embd(m->model), m->n_vocab, m->n_ctx, m->rpc[0] ? ", RPC workers " : "", m->rpc);
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
    struct {
        float *v;      /* logits row predicting the token after the first n cache tokens */
        int64_t n;     /* -1 = empty */
    } kept[2];         /* kept across rollbacks (see the top of the file) */
    int cur;           /* the kept row for position n_toks-1, or -1 */
    float *row_tmp;    /* scratch row (the judge's candidate row) */
    char *pbuf;        /* one token's text (max_piece + 1 bytes) */
    llama_token_data *cand; /* n_vocab candidates for sampling */
    bool greedy;            /* temperature <= 0: argmax, no sampler chain needed */

    llama_token *tmp; /* scratch for tokenization */
    int64_t cap_tmp;
    llama_token *seg; /* the prompt's tokens (lm_reset) */
    int64_t n_seg, cap_seg;

    char *suffix_text; /* cached tokenization of the last judge suffix */
    size_t suffix_len;
    llama_token *suffix_toks;
    int32_t n_suffix;

    llama_token *judge_toks; /* tokens of the last judge call (test hook) */
    int64_t n_judge, cap_judge, judge_start;

    /* On a shared context (batching): our sequence, and the logits rows of our last decode,
     * copied out by the batcher. ctx is NULL then. */
    struct sr_batcher *bt;
    int32_t seq;
    float *rows;
    int32_t *row_tok; /* the token index (in its batch) of each row */
    int32_t n_rows, cap_rows;
};

/* Logits row i of the last decode (a batch index as llama_get_logits_ith takes it; -1 = the last
 * row), from the context or our copy. */
static const float *row(struct lm_llama *L, int32_t i) {
    if (!L->bt) return llama_get_logits_ith(L->ctx, i);
    int32_t r = -1;
    if (i < 0) r = L->n_rows + i;
    else if (i < L->n_rows && L->row_tok[i] == i) r = i; /* every row (verification) */
    else
        for (int32_t k = 0; k < L->n_rows; k++)
            if (L->row_tok[k] == i) r = k;
    if (r < 0 || r >= L->n_rows) return NULL;
    return L->rows + (size_t)r * (size_t)L->m->n_vocab;
}

/* Removes cache positions [p0, end) of our sequence. */
static bool mem_rm(struct lm_llama *L, llama_pos p0) {
    if (L->bt) return sr_batcher_seq_rm(L->bt, L->seq, p0, -1);
    return llama_memory_seq_rm(llama_get_memory(L->ctx), L->seq, p0, -1);
}

/* One forward pass of toks[0..k) (k <= n_batch) at positions n_toks..; logits of the last token
 * (all = false) or of every token (all = true) when want, and of token `extra` when extra >= 0;
 * row() reads them. */
static int32_t forward(struct lm_llama *L, const llama_token *toks, int32_t k, bool want, bool all, int32_t extra) {
    if (extra >= k) extra = -1;
    if (L->bt) {
        int32_t need = want ? (all ? k : 1) : 0;
        bool extra_row = extra >= 0 && !(want && (all || extra == k - 1));
        need += extra_row;
        if (need > L->cap_rows) {
            float *r = realloc(L->rows, (size_t)need * (size_t)L->m->n_vocab * sizeof *r);
            int32_t *t = realloc(L->row_tok, (size_t)need * sizeof *t);
            if (r) L->rows = r;
            if (t) L->row_tok = t;
            if (!r || !t) return -2;
            L->cap_rows = need;
        }
        L->n_rows = 0;
        int32_t rc = sr_batcher_decode(L->bt, L->seq, toks, k, (llama_pos)L->n_toks,
                                       !want ? SR_BATCH_OUT_NONE : all ? SR_BATCH_OUT_ALL : SR_BATCH_OUT_LAST,
                                       extra_row ? extra : -1, L->rows);
        if (rc == 0) {
            /* the rows' token indices, in token order as the batcher copied them */
            for (int32_t i = 0; i < k; i++)
                if ((want && (all || i == k - 1)) || (extra_row && i == extra)) L->row_tok[L->n_rows++] = i;
        }
        return rc;
    }
    L->batch.n_tokens = k;
    for (int32_t i = 0; i < k; i++) {
        L->batch.token[i] = toks[i];
        L->batch.pos[i] = (llama_pos)(L->n_toks + i);
        L->batch.n_seq_id[i] = 1;
        L->batch.seq_id[i][0] = L->seq;
        L->batch.logits[i] = (want && (all || i == k - 1)) || i == extra;
    }
    return llama_decode(L->ctx, L->batch);
}

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

/* Tokenizes text into L->tmp; returns the count or -1 (message set). special: recognise control
 * tokens (template text only; text from users and models is never parsed for them). */
static int64_t tokenize(struct lm_llama *L, const char *text, size_t len, bool special) {
    if (len > INT32_MAX / 2) { sr_lm_fail(&L->base, SR_ERR_INVALID_ARG, "text too long to tokenize"); return -1; }
    if (len == 0) return 0;
    int64_t want = (int64_t)len + 8;
    if (!grow_tokens(&L->tmp, &L->cap_tmp, want)) { sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory"); return -1; }
    int64_t t0 = sr_time_us();
    int32_t n = llama_tokenize(L->m->vocab, text, (int32_t)len, L->tmp, (int32_t)L->cap_tmp, false, special);
    if (n < 0 && n != INT32_MIN) {
        if (!grow_tokens(&L->tmp, &L->cap_tmp, -(int64_t)n)) { sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory"); return -1; }
        n = llama_tokenize(L->m->vocab, text, (int32_t)len, L->tmp, (int32_t)L->cap_tmp, false, special);
    }
    L->base.t_backend_us += sr_time_us() - t0;
    if (n < 0) { sr_lm_fail(&L->base, SR_ERR_BACKEND, "tokenization failed"); return -1; }
    return n;
}

/* Keeps lg as the row after the first n cache tokens, in the slot that already holds n, else an
 * empty one, else the one that does not hold `protect`. */
static void keep_logits(struct lm_llama *L, const float *lg, int64_t n, int64_t protect) {
    int k = L->kept[0].n == n ? 0 : L->kept[1].n == n ? 1 : L->kept[0].n < 0 ? 0 : L->kept[1].n < 0 ? 1
          : L->kept[0].n == protect ? 1 : 0;
    memcpy(L->kept[k].v, lg, (size_t)L->m->n_vocab * sizeof *lg);
    L->kept[k].n = n;
    if (L->n_toks == n) L->cur = k;
    else if (L->cur == k) L->cur = -1;
}

/* Drops cache positions >= n. */
static enum sr_status truncate_to(struct lm_llama *L, int64_t n) {
    if (n < 0 || n > L->n_toks) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "rollback to %lld of %lld tokens", (long long)n, (long long)L->n_toks);
    if (n == L->n_toks) return SR_OK;
    int64_t t0 = sr_time_us();
    bool ok = mem_rm(L, (llama_pos)n);
    L->base.t_backend_us += sr_time_us() - t0;
    if (!ok) return sr_lm_fail(&L->base, SR_ERR_BACKEND, "this model's cache cannot be rolled back (recurrent architecture?)");
    L->n_toks = n;
    L->logits_ready = false;
    L->cur = -1;
    for (int k = 0; k < 2; k++) {
        if (L->kept[k].n > n) L->kept[k].n = -1;
        if (L->kept[k].n == n) L->cur = k;
    }
    return SR_OK;
}

/* Decodes toks[0..n) after the cache; logits for the last one if want_logits, and row `extra`
 * (an index into toks, -1 = none) copied to extra_out. On failure the cache is restored to what it
 * held before. */
static enum sr_status decode_rows(struct lm_llama *L, const llama_token *toks, int64_t n, bool want_logits,
                                  int64_t extra, float *extra_out) {
    if (n <= 0) return SR_OK;
    if (L->base.abort_fn && L->base.abort_fn(L->base.abort_user)) return sr_lm_fail(&L->base, SR_ERR_ABORTED, "cancelled");
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
        bool last = off + k == n;
        bool has_extra = extra >= off && extra < off + k;
        int64_t t0 = sr_time_us();
        int32_t rc = forward(L, toks + off, k, last && want_logits, false, has_extra ? (int32_t)(extra - off) : -1);
        L->base.t_backend_us += sr_time_us() - t0;
        L->base.n_decode++;
        if (rc != 0) {
            mem_rm(L, (llama_pos)before);
            L->n_toks = before;
            L->logits_ready = false;
            if (rc == 1) return sr_lm_fail(&L->base, SR_ERR_CONTEXT_FULL, "llama_decode: no KV slot for %d tokens", k);
            if (rc == 2) return sr_lm_fail(&L->base, SR_ERR_ABORTED, "llama_decode: aborted");
            return sr_lm_fail(&L->base, SR_ERR_BACKEND, "llama_decode failed (%d)", rc);
        }
        if (has_extra) {
            const float *lg = row(L, (int32_t)(extra - off));
            if (!lg) {
                mem_rm(L, (llama_pos)before);
                L->n_toks = before;
                L->logits_ready = false;
                return sr_lm_fail(&L->base, SR_ERR_BACKEND, "no logits row for token %lld of the batch", (long long)extra);
            }
            memcpy(extra_out, lg, (size_t)L->m->n_vocab * sizeof *lg);
        }
        memcpy(L->toks + L->n_toks, toks + off, (size_t)k * sizeof *toks);
        L->n_toks += k;
    }
    L->logits_ready = want_logits;
    L->cur = -1;
    return SR_OK;
}

static enum sr_status decode(struct lm_llama *L, const llama_token *toks, int64_t n, bool want_logits) {
    return decode_rows(L, toks, n, want_logits, -1, NULL);
}

/* Decodes toks[0..n) (n <= n_batch) with logits on every row, for verification. */
static enum sr_status decode_all_logits(struct lm_llama *L, const llama_token *toks, int64_t n) {
    if (n > L->n_batch) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "verification batch too large");
    if (L->base.abort_fn && L->base.abort_fn(L->base.abort_user)) return sr_lm_fail(&L->base, SR_ERR_ABORTED, "cancelled");
    if (L->n_toks + n > L->base.n_ctx)
        return sr_lm_fail(&L->base, SR_ERR_CONTEXT_FULL, "context full: %lld + %lld tokens exceed n_ctx %lld",
                          (long long)L->n_toks, (long long)n, (long long)L->base.n_ctx);
    if (!grow_tokens(&L->toks, &L->cap_toks, L->n_toks + n)) return sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
    int64_t t0 = sr_time_us();
    int32_t rc = forward(L, toks, (int32_t)n, true, true, -1);
    L->base.t_backend_us += sr_time_us() - t0;
    L->base.n_decode++;
    if (rc != 0) {
        mem_rm(L, (llama_pos)L->n_toks);
        L->logits_ready = false;
        L->cur = -1;
        return sr_lm_fail(&L->base, rc == 1 ? SR_ERR_CONTEXT_FULL : SR_ERR_BACKEND, "llama_decode failed (%d)", rc);
    }
    memcpy(L->toks + L->n_toks, toks, (size_t)n * sizeof *toks);
    L->n_toks += n;
    L->logits_ready = true;
    L->cur = -1;
    return SR_OK;
}

/* Makes the logits of position n_toks-1 available (decoding the last token again if needed). */
static enum sr_status ensure_logits(struct lm_llama *L) {
    if (L->logits_ready || L->cur >= 0) return SR_OK;
    if (L->n_toks == 0) return sr_lm_fail(&L->base, SR_ERR_INTERNAL, "cannot generate from an empty context");
    llama_token last = L->toks[L->n_toks - 1];
    enum sr_status st = truncate_to(L, L->n_toks - 1);
    if (st != SR_OK) return st;
    return decode(L, &last, 1, true);
}

/* Appends tok to L->seg, growing it. */
static bool seg_push(struct lm_llama *L, const llama_token *t, int64_t n) {
    if (!grow_tokens(&L->seg, &L->cap_seg, L->n_seg + n)) return false;
    memcpy(L->seg + L->n_seg, t, (size_t)n * sizeof *t);
    L->n_seg += n;
    return true;
}

/* Tokenizes the pending plain text raw[0..n) into L->seg. */
static enum sr_status seg_flush(struct lm_llama *L, struct sr_buf *raw) {
    if (!raw->len) return SR_OK;
    int64_t n = tokenize(L, raw->data, raw->len, false);
    if (n < 0) return SR_ERR_BACKEND;
    sr_buf_clear(raw);
    return seg_push(L, L->tmp, n) ? SR_OK : sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
}

/* Tokenizes the segments as one text in which control tokens are recognised only inside the
 * segments marked special: text between control tokens is tokenized together, as llama.cpp does
 * for a whole string, so a prompt without control-token text in its content gets exactly the
 * tokens of a whole-string tokenization, and control-token text in content stays text. */
static enum sr_status tokenize_segs(struct lm_llama *L, const struct sr_seg *segs, size_t n_segs) {
    const struct sr_llama_model *m = L->m;
    struct sr_buf raw = {0};
    enum sr_status st = SR_OK;
    L->n_seg = 0;
    for (size_t s = 0; s < n_segs && st == SR_OK; s++) {
        const char *t = segs[s].text;
        size_t len = segs[s].len;
        if (!segs[s].special) { sr_buf_append(&raw, t, len); continue; }
        size_t i = 0;
        while (i < len && st == SR_OK) {
            int32_t best = -1;
            for (int32_t c = 0; c < m->n_ctrl; c++) {
                size_t cl = (size_t)m->ctrl_len[c];
                if (cl <= len - i && memcmp(t + i, m->ctrl_text[c], cl) == 0 && (best < 0 || m->ctrl_len[c] > m->ctrl_len[best]))
                    best = c;
            }
            if (best < 0) { sr_buf_append(&raw, t + i, 1); i++; continue; }
            st = seg_flush(L, &raw);
            if (st == SR_OK && !seg_push(L, &m->ctrl[best], 1)) st = sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
            i += (size_t)m->ctrl_len[best];
        }
    }
    if (st == SR_OK && raw.oom) st = sr_lm_fail(&L->base, SR_ERR_NOMEM, "out of memory");
    if (st == SR_OK) st = seg_flush(L, &raw);
    sr_buf_free(&raw);
    return st;
}

static enum sr_status lm_reset(struct sr_lm *lm, const struct sr_seg *segs, size_t n_segs, int32_t *n_tokens) {
    struct lm_llama *L = (struct lm_llama *)lm;
    if (L->bt) sr_batcher_seq_rm(L->bt, L->seq, -1, -1); /* only our own sequence */
    else llama_memory_clear(llama_get_memory(L->ctx), false);
    L->n_toks = 0;
    L->logits_ready = false;
    L->kept[0].n = L->kept[1].n = -1;
    L->cur = -1;
    enum sr_status st = tokenize_segs(L, segs, n_segs);
    if (st != SR_OK) return st;
    if (L->n_seg == 0) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "empty prompt");
    /* BOS as the model was trained (tokenizer.ggml.add_bos_token), unless the template wrote it. */
    llama_token bos = llama_vocab_bos(L->m->vocab);
    if (llama_vocab_get_add_bos(L->m->vocab) && bos != LLAMA_TOKEN_NULL && L->seg[0] != bos) {
        if (!grow_tokens(&L->seg, &L->cap_seg, L->n_seg + 1)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
        memmove(L->seg + 1, L->seg, (size_t)L->n_seg * sizeof *L->seg);
        L->seg[0] = bos;
        L->n_seg++;
    }
    if (L->n_seg > INT32_MAX) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "prompt too long");
    if (n_tokens) *n_tokens = (int32_t)L->n_seg;
    return decode(L, L->seg, L->n_seg, true);
}

static enum sr_status lm_append(struct sr_lm *lm, const char *text, size_t len, int32_t *n_tokens) {
    struct lm_llama *L = (struct lm_llama *)lm;
    int64_t n = tokenize(L, text, len, false);
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
    return sample_logits(L, L->cur >= 0 ? L->kept[L->cur].v : row(L, -1), out);
}

/* log softmax(lg)[tok] over the whole vocabulary (the model's confidence in the token). */
static float token_logprob(const float *lg, int32_t nv, llama_token tok) {
    float mx = lg[0];
    for (int32_t i = 1; i < nv; i++)
        if (lg[i] > mx) mx = lg[i];
    /* expf in blocks of 8 summed in float, the blocks in double: as exact as the logits are, and
     * on a 151,936-token vocabulary 0.76 ms a token instead of 1.33 with exp() (measured here). */
    double z = 0.0;
    for (int32_t i = 0; i < nv; i += 8) {
        float s = 0.0f;
        for (int32_t k = i; k < i + 8 && k < nv; k++) s += expf(lg[k] - mx);
        z += s;
    }
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
    int32_t pn = piece(L, tok, L->pbuf, L->m->max_piece + 1);
    if (pn < 0) { *st = sr_lm_fail(&L->base, SR_ERR_BACKEND, "token %d has no text", tok); return EMIT_EOG; }
    e->prev = out->text.len;
    sr_buf_append(&out->text, L->pbuf, (size_t)pn);
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
        int64_t n = tokenize(L, e->out->text.data + e->prev, e->end - e->prev, false);
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

static enum sr_status generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
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
        const float *lg = L->cur >= 0 ? L->kept[L->cur].v : row(L, -1);
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

/* Token by token: on a shared context the batcher waits for this sequence's next token while
 * the loop runs, so concurrent generations share their decodes. */
static enum sr_status lm_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    if (L->bt) sr_batcher_seq_hold(L->bt, L->seq, true);
    enum sr_status st = generate(lm, delim, max_tokens, out);
    if (L->bt) sr_batcher_seq_hold(L->bt, L->seq, false);
    return st;
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

static const struct sr_lm_ops llama_ops;

/* Whether lm is one of ours (a model behind another ops table must not be cast). */
static bool is_llama(const struct sr_lm *lm) { return lm && lm->ops == &llama_ops; }

/* Samples from logits row `idx` of the last decode (as sample_next does). */
static enum sr_status sample_row(struct lm_llama *L, int32_t idx, llama_token *out) {
    return sample_logits(L, row(L, idx), out);
}

/* Keeps logits row `idx` as the logits for position n-1 of a cache truncated to n. */
static void keep_row(struct lm_llama *L, int32_t idx, int64_t n) {
    const float *lg = row(L, idx);
    if (!lg) return;
    keep_logits(L, lg, n, -1);
}

static enum sr_status lm_generate_spec(struct sr_lm *lm, struct sr_lm *draft_lm, const char *delim,
                                       int32_t max_tokens, const struct sr_sd_params *sd, struct sr_gen_out *out,
                                       struct sr_sd_stats *stats) {
    if (!is_llama(draft_lm))
        return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "token-level drafting needs an in-process llama.cpp draft model");
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
                const float *lg = row(D, -1);
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
                        int64_t n = tokenize(L, out->text.data + e.prev, e.end - e.prev, false);
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
    if (!is_llama(draft_lm)) {
        /* Both phrasings are matched by tests (test_engine: another ops table; test_remote). */
        snprintf(why, n, "the draft model is not an in-process llama.cpp model (the small model is served remotely "
                         "or behind another backend); drafting needs both models in-process");
        return false;
    }
    const struct sr_llama_model *a = ((struct lm_llama *)lm)->m, *b = ((struct lm_llama *)draft_lm)->m;
    return sr_llama_vocab_compatible(a, b, why, n);
}

static enum sr_status lm_judge(struct sr_lm *lm, const char *cand, size_t cand_len, const char *suffix,
                               size_t suffix_len, struct sr_judge_out *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    memset(out, 0, sizeof *out);
    /* The suffix is the same for every step of a run: tokenize it once. */
    if (!L->suffix_text || L->suffix_len != suffix_len || memcmp(L->suffix_text, suffix, suffix_len) != 0) {
        int64_t n = tokenize(L, suffix, suffix_len, true); /* template text */
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
    int64_t nc = tokenize(L, cand, cand_len, false); /* model text */
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
        const float *lg = row(L, -1);
        if (lg) keep_logits(L, lg, mark, -1);
    }
    /* Candidate and suffix in one forward pass: the judge's whole cost. The candidate's last row
     * is kept too: after an accept, the next rejection writes from it without a decode. */
    enum sr_status st = decode_rows(L, L->judge_toks, L->n_judge, true, nc > 0 ? nc - 1 : -1, L->row_tmp);
    if (st != SR_OK) return st;
    if (nc > 0) keep_logits(L, L->row_tmp, mark + nc, mark);
    int64_t t0 = sr_time_us();
    const float *logits = row(L, -1);
    if (!logits) return sr_lm_fail(lm, SR_ERR_BACKEND, "no logits after the judge prompt");
    /* The ten most likely tokens, best first (the reference's top_logprobs=10). */
    int32_t top[10], ntop = 0;
    for (int32_t i = 0; i < L->m->n_vocab; i++) {
        if (ntop == 10 && logits[i] <= logits[top[9]]) continue;
        int32_t k = ntop < 10 ? ntop++ : 9;
        while (k > 0 && logits[top[k - 1]] < logits[i]) { top[k] = top[k - 1]; k--; }
        top[k] = i;
    }
    int32_t best = top[0];
    char *pbuf = L->pbuf;
    int32_t pn = piece(L, best, pbuf, L->m->max_piece + 1);
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
        out->digit_top10[d] = false;
        for (int32_t k = 0; k < ntop && L->m->digit_ok[d]; k++)
            if (top[k] == L->m->digit_tok[d]) out->digit_top10[d] = true;
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

static enum sr_status render_cm(const char *tmpl, const char *role, const struct sr_chat_msg *msgs,
                                struct llama_chat_message *cm, size_t n, struct sr_buf *out, char *errbuf,
                                size_t errlen);

/* Renders msgs (any number) with tmpl (NULL = chatml), falling back to chatml when llama.cpp does
 * not know the template; role names the model in the warning. Returns SR_OK or a status with errbuf. */
static enum sr_status render_with(const char *tmpl, const char *role, const struct sr_chat_msg *msgs, size_t n,
                                  struct sr_buf *out, char *errbuf, size_t errlen) {
    if (n == 0) { snprintf(errbuf, errlen, "no chat messages"); return SR_ERR_INVALID_ARG; }
    struct llama_chat_message *cm = malloc(n * sizeof *cm);
    if (!cm) { snprintf(errbuf, errlen, "out of memory"); return SR_ERR_NOMEM; }
    enum sr_status st = render_cm(tmpl, role, msgs, cm, n, out, errbuf, errlen);
    free(cm);
    return st;
}

static enum sr_status render_cm(const char *tmpl, const char *role, const struct sr_chat_msg *msgs,
                                struct llama_chat_message *cm, size_t n, struct sr_buf *out, char *errbuf,
                                size_t errlen) {
    size_t total = 64;
    for (size_t i = 0; i < n; i++) {
        cm[i].role = msgs[i].role;
        cm[i].content = msgs[i].content;
        total += strlen(msgs[i].content) * 2 + 64;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (total > INT32_MAX) { snprintf(errbuf, errlen, "prompt too long"); return SR_ERR_INVALID_ARG; }
        sr_buf_clear(out);
        if (!sr_buf_reserve(out, total)) { snprintf(errbuf, errlen, "out of memory"); return SR_ERR_NOMEM; }
        int32_t r = llama_chat_apply_template(tmpl, cm, n, false, out->data, (int32_t)total);
        if (r < 0) {
            if (tmpl) {
                sr_log(SR_LOG_WARN, "%s model: chat template not recognised by llama.cpp; using chatml", role);
                tmpl = NULL;
                attempt = -1;
                continue;
            }
            snprintf(errbuf, errlen, "chat template could not be applied");
            return SR_ERR_BACKEND;
        }
        if ((size_t)r < total) {
            out->len = (size_t)r;
            out->data[r] = '\0';
            return SR_OK;
        }
        total = (size_t)r + 1;
    }
    snprintf(errbuf, errlen, "chat template rendering did not converge");
    return SR_ERR_INTERNAL;
}

static enum sr_status lm_render(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n, struct sr_buf *out) {
    struct lm_llama *L = (struct lm_llama *)lm;
    return render_with(L->m->tmpl, L->m->role, msgs, n, out, lm->errmsg, sizeof lm->errmsg);
}

static void lm_free(struct sr_lm *lm) {
    struct lm_llama *L = (struct lm_llama *)lm;
    if (!L) return;
    if (L->smpl) llama_sampler_free(L->smpl);
    if (L->batch.token) llama_batch_free(L->batch);
    if (L->ctx) llama_free(L->ctx);
    if (L->bt) sr_batcher_seq_release(L->bt, L->seq);
    free(L->rows);
    free(L->row_tok);
    free(L->toks);
    free(L->tmp);
    free(L->seg);
    free(L->kept[0].v);
    free(L->kept[1].v);
    free(L->row_tmp);
    free(L->pbuf);
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

enum sr_status sr_llama_model_share(struct sr_llama_model *m, int32_t n_seq, struct sr_error *err) {
    if (n_seq < 2 || m->shared) return SR_OK;
    if (n_seq > 256) return sr_seterr(err, SR_ERR_INVALID_ARG, "at most 256 sessions can share a context");
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = m->n_ctx * (uint32_t)n_seq;
    cp.n_batch = cp.n_ctx < 2048 ? cp.n_ctx : 2048;
    cp.n_ubatch = cp.n_batch < 512 ? cp.n_batch : 512;
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = false; /* each sequence its own cache stream of n_ctx tokens: its attention sees
                              its cells in the order it wrote them, as alone (batch.c sorts a
                              batch by sequence, so that llama.cpp can decode them in one pass) */
    cp.n_threads = m->n_threads;
    cp.n_threads_batch = m->n_threads_batch;
    cp.no_perf = true;
    g_last_llama_error[0] = '\0';
    struct llama_context *ctx = llama_init_from_model(m->model, cp);
    if (!ctx)
        return sr_seterr(err, SR_ERR_MODEL_LOAD, "%s model: could not create a shared context of %d x %u tokens%s%s",
                         m->role, n_seq, m->n_ctx, g_last_llama_error[0] ? ": " : "", g_last_llama_error);
    m->shared_batch = (int32_t)llama_n_batch(ctx);
    m->shared_ctx_seq = llama_n_ctx_seq(ctx);
    m->shared = sr_batcher_new(ctx, n_seq, m->shared_batch, m->n_vocab);
    if (!m->shared) {
        llama_free(ctx);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    }
    return SR_OK;
}

enum sr_status sr_llama_lm_init(struct sr_llama_model *m, struct sr_lm **out, struct sr_error *err) {
    *out = NULL;
    struct lm_llama *L = calloc(1, sizeof *L);
    if (!L) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    L->base.ops = &llama_ops;
    L->m = m;
    g_last_llama_error[0] = '\0';
    if (m->shared && (L->seq = sr_batcher_seq_acquire(m->shared)) >= 0) {
        L->bt = m->shared; /* a sequence of the model's shared context */
        L->n_batch = m->shared_batch;
    } else {
        L->seq = 0;
        L->ctx = new_context(m, m->n_ctx, &L->n_batch);
    }
    if (!L->ctx && !L->bt) {
        lm_free(&L->base);
        return sr_seterr(err, SR_ERR_MODEL_LOAD,
                         "%s model: could not create a context of %u tokens (does it fit in memory?)%s%s", m->role,
                         m->n_ctx, g_last_llama_error[0] ? ": " : "", g_last_llama_error);
    }
    L->base.n_ctx = L->bt ? (int64_t)m->shared_ctx_seq : (int64_t)llama_n_ctx(L->ctx);
    L->kept[0].n = L->kept[1].n = -1;
    L->cur = -1;
    for (int k = 0; k < 2; k++) L->kept[k].v = malloc((size_t)m->n_vocab * sizeof *L->kept[k].v);
    L->row_tmp = malloc((size_t)m->n_vocab * sizeof *L->row_tmp);
    L->pbuf = malloc((size_t)m->max_piece + 1);
    L->base.n_threads = m->n_threads > m->n_threads_batch ? m->n_threads : m->n_threads_batch;
    L->cand = malloc((size_t)m->n_vocab * sizeof *L->cand);
    if (!L->kept[0].v || !L->kept[1].v || !L->row_tmp || !L->pbuf || !L->cand) { lm_free(&L->base); return sr_seterr(err, SR_ERR_NOMEM, "out of memory"); }
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

void sr_llama_lm_batch_stats(const struct sr_lm *lm, int64_t *n_decodes, int64_t *n_jobs) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    *n_decodes = *n_jobs = 0;
    if (L->bt) sr_batcher_stats(L->bt, n_decodes, n_jobs);
}

const int32_t *sr_llama_lm_last_judge(const struct sr_lm *lm, int64_t *n, int64_t *start) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    *n = L->n_judge;
    *start = L->judge_start;
    return L->judge_toks;
}

void sr_llama_lm_cache_range(const struct sr_lm *lm, int32_t *pos_min, int32_t *pos_max) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    if (L->bt) {
        sr_batcher_seq_range(L->bt, L->seq, pos_min, pos_max);
        return;
    }
    llama_memory_t mem = llama_get_memory(L->ctx);
    *pos_min = llama_memory_seq_pos_min(mem, L->seq);
    *pos_max = llama_memory_seq_pos_max(mem, L->seq);
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
    if (L->cur >= 0) return L->kept[L->cur].v;
    if (L->logits_ready) return row(L, -1);
    return NULL;
}

void sr_llama_lm_vocab_info(const struct sr_lm *lm, int32_t *bos, bool *add_bos, int32_t *n_vocab) {
    const struct lm_llama *L = (const struct lm_llama *)lm;
    *bos = llama_vocab_bos(L->m->vocab);
    *add_bos = llama_vocab_get_add_bos(L->m->vocab);
    *n_vocab = L->m->n_vocab;
}

char *sr_llama_lm_detokenize(struct sr_lm *lm, const int32_t *tokens, int64_t n) {
    struct lm_llama *L = (struct lm_llama *)lm;
    struct sr_buf b = {0};
    for (int64_t i = 0; i < n; i++) {
        int32_t k = piece(L, tokens[i], L->pbuf, L->m->max_piece + 1);
        if (k < 0) { sr_buf_free(&b); return NULL; }
        sr_buf_append(&b, L->pbuf, (size_t)k);
    }
    return sr_buf_take(&b);
}

/* ------------------------------------------------------------------------------------------ */
/* vocabulary services for the remote backend (a vocabulary-only load)                        */

int64_t sr_llama_vocab_tokenize(const struct sr_llama_model *m, const char *text, size_t len, bool special,
                                int32_t **toks) {
    *toks = NULL;
    if (len > INT32_MAX / 2) return -1;
    int64_t cap = (int64_t)len + 8;
    llama_token *t = malloc((size_t)cap * sizeof *t);
    if (!t) return -1;
    int32_t n = len ? llama_tokenize(m->vocab, text, (int32_t)len, t, (int32_t)cap, false, special) : 0;
    if (n < 0 && n != INT32_MIN) {
        cap = -(int64_t)n;
        llama_token *nt = realloc(t, (size_t)cap * sizeof *t);
        if (!nt) { free(t); return -1; }
        t = nt;
        n = llama_tokenize(m->vocab, text, (int32_t)len, t, (int32_t)cap, false, special);
    }
    if (n < 0) { free(t); return -1; }
    *toks = t;
    return n;
}

/* Appends text tokenized as plain text to (*t, *n, *cap). */
static bool vocab_push_text(const struct sr_llama_model *m, struct sr_buf *raw, int32_t **t, int64_t *n, int64_t *cap) {
    if (!raw->len) return true;
    int32_t *k = NULL;
    int64_t nk = sr_llama_vocab_tokenize(m, raw->data, raw->len, false, &k);
    sr_buf_clear(raw);
    bool ok = nk >= 0 && grow_tokens(t, cap, *n + nk);
    if (ok && nk) memcpy(*t + *n, k, (size_t)nk * sizeof *k);
    if (ok) *n += nk;
    free(k);
    return ok;
}

int64_t sr_llama_vocab_tokenize_segs(const struct sr_llama_model *m, const struct sr_seg *segs, size_t n_segs,
                                     int32_t **toks) {
    /* The algorithm of tokenize_segs (in-process reset), over the vocabulary alone. */
    *toks = NULL;
    int32_t *t = NULL;
    int64_t n = 0, cap = 0;
    struct sr_buf raw = {0};
    bool ok = true;
    for (size_t s = 0; s < n_segs && ok; s++) {
        const char *x = segs[s].text;
        size_t len = segs[s].len;
        if (!segs[s].special) { sr_buf_append(&raw, x, len); continue; }
        size_t i = 0;
        while (i < len && ok) {
            int32_t best = -1;
            for (int32_t c = 0; c < m->n_ctrl; c++) {
                size_t cl = (size_t)m->ctrl_len[c];
                if (cl <= len - i && memcmp(x + i, m->ctrl_text[c], cl) == 0 && (best < 0 || m->ctrl_len[c] > m->ctrl_len[best]))
                    best = c;
            }
            if (best < 0) { sr_buf_append(&raw, x + i, 1); i++; continue; }
            ok = vocab_push_text(m, &raw, &t, &n, &cap) && grow_tokens(&t, &cap, n + 1);
            if (ok) t[n++] = m->ctrl[best];
            i += (size_t)m->ctrl_len[best];
        }
    }
    ok = ok && !raw.oom && vocab_push_text(m, &raw, &t, &n, &cap);
    sr_buf_free(&raw);
    if (!ok) { free(t); return -1; }
    *toks = t;
    return n;
}

int32_t sr_llama_vocab_bos(const struct sr_llama_model *m) {
    llama_token bos = llama_vocab_bos(m->vocab);
    return llama_vocab_get_add_bos(m->vocab) && bos != LLAMA_TOKEN_NULL ? bos : -1;
}

int32_t sr_llama_vocab_piece(const struct sr_llama_model *m, int32_t tok, char *buf, int32_t size) {
    if (tok < 0 || tok >= m->n_vocab) return -1;
    int32_t n = llama_token_to_piece(m->vocab, tok, buf, size, 0, true);
    return n < 0 ? -1 : n;
}

bool sr_llama_vocab_is_eog(const struct sr_llama_model *m, int32_t tok) {
    return tok >= 0 && tok < m->n_vocab && llama_vocab_is_eog(m->vocab, tok);
}

int32_t sr_llama_vocab_size(const struct sr_llama_model *m) { return m->n_vocab; }

int32_t sr_llama_vocab_digit(const struct sr_llama_model *m, int d) { return m->digit_ok[d] ? m->digit_tok[d] : -1; }

enum sr_status sr_llama_render(const struct sr_llama_model *m, const char *tmpl_name, const struct sr_chat_msg *msgs,
                               size_t n, struct sr_buf *out, char *errbuf, size_t errlen) {
    const char *tmpl = m && m->tmpl ? m->tmpl : tmpl_name;
    return render_with(tmpl, m ? m->role : "remote", msgs, n, out, errbuf, errlen);
}
