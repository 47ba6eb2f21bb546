/*
 * remote.c: struct sr_lm over an OpenAI-compatible HTTP server (llama-server, vLLM, SGLang),
 * on libcurl and jansson. The loop cannot tell it from the in-process backend.
 *
 * State: the client holds the context as text (the source of truth: marks are byte offsets into
 * it). Every generate/judge request sends the whole context, so consecutive requests share their
 * prefix and the server's prefix cache (llama-server: cache_prompt + a pinned id_slot; vLLM and
 * SGLang: automatic prefix caching) prefills only what is new.
 *
 * Two ways to send the context:
 *   token mode (a GGUF was given for its vocabulary): the client also keeps the token ids the
 *     in-process backend would hold (text written elsewhere tokenized on its own, generated tokens
 *     as the server sampled them: llama-server's native /completion returns them, elsewhere they
 *     are read from the per-token log-probabilities) and sends them as
 *     `prompt: [ids]`. Greedy runs then see exactly the tokens an in-process run sees, so they
 *     produce the same text and the same judge decisions (tests/remote_test.sh checks this).
 *   text mode (no GGUF): the prompt is the text; the server tokenizes the whole context at once,
 *     which can merge tokens across the boundary of two pieces (".", "\n\n" -> ".\n\n") where the
 *     in-process backend keeps them apart. Outputs are then valid but not token-identical.
 *
 * The judge: max_tokens 1, temperature 0, the top 20 log-probabilities of the next token. The
 * greedy value comes from the most likely token, exactly as in-process (ties aside). The digit
 * "logits" are log-probabilities: they differ from the raw logits by one constant (the log of the
 * softmax normaliser), which the average score's softmax over the ten digits cancels exactly; a
 * digit outside the top 20 gets -inf (weight 0) where in-process it would weigh p <= p_20.
 * digit_top10 (the reference's average score: digits among the ten most likely tokens) is read
 * from the same 20: a digit is in the top 10 iff it ranks within the first 10 of them.
 *
 * Tokenization in token mode follows the in-process backend: prompt template segments with
 * control tokens, user and model text (prompt content, appended and judged steps) as plain
 * text, BOS first iff the GGUF says add_bos_token. In text mode the server tokenizes the text.
 *
 * Robustness: connect and total timeouts on every request, bounded retries with exponential
 * backoff on connection errors, timeouts, truncated bodies, 429 and 5xx; other failures (4xx,
 * garbage, missing log-probabilities) are errors with the server's message. Nothing blocks
 * longer than (retries + 1) x timeout.
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "remote_parse.h"

#define MAX_RESPONSE (64u << 20) /* bytes; more is an error */
#define JUDGE_TOP_K 20

struct sr_remote_model {
    char role[16];
    char *url;       /* base URL, no trailing slash, no /v1 */
    char *model;     /* model name for requests, or NULL */
    char *auth;      /* "Authorization: Bearer ..." or NULL */
    char *tmpl_name; /* named template fallback, or NULL (= chatml) */
    long timeout_ms, connect_ms;
    int32_t retries;
    struct sr_llama_model *vocab; /* token mode when non-NULL */
    char *vocab_path;
    bool llama_server;   /* GET /props answered like llama-server */
    bool apply_template; /* llama-server's /apply-template works */
    int64_t n_ctx;       /* server context per slot, or INT64_MAX */
    int32_t total_slots;
    int next_slot;       /* sessions pin slots round-robin */
};

/* One HTTP connection (a curl easy handle keeps it alive between requests). */
struct conn {
    const struct sr_remote_model *m;
    CURL *curl;
    struct curl_slist *headers;
    struct sr_buf resp;
    bool resp_overflow;
    struct sr_lm *counters; /* where HTTP counters go (NULL during model load) */
    char *errmsg;
    size_t errlen;
};

struct ckpt {
    size_t off;   /* text length */
    int64_t ntok; /* tokens (token mode) */
};

struct lm_remote {
    struct sr_lm base; /* must be first */
    struct sr_remote_model *m;
    struct conn c;
    int32_t id_slot;
    struct sr_buf text;
    int32_t *toks;
    int64_t n_toks, cap_toks;
    struct ckpt *ck;
    size_t n_ck, cap_ck;
    float temperature, top_p;
    uint64_t seed, n_req;
    char *suffix_text;
    size_t suffix_len;
    int32_t *suffix_toks;
    int64_t n_suffix;
    bool warned_count;
    struct sr_rp_top last_top[SR_RP_MAX_TOP]; /* the last judge's alternatives (test hook) */
    int n_last_top;
};

static const struct sr_lm_ops remote_ops;

bool sr_lm_is_remote(const struct sr_lm *lm) { return lm && lm->ops == &remote_ops; }

/* ------------------------------------------------------------------------------------------ */
/* HTTP                                                                                       */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
    struct conn *c = user;
    size_t n = size * nmemb;
    if (c->resp.len + n > MAX_RESPONSE) {
        c->resp_overflow = true;
        return 0; /* aborts the transfer */
    }
    sr_buf_append(&c->resp, ptr, n);
    return c->resp.oom ? 0 : n;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static bool conn_init(struct conn *c, const struct sr_remote_model *m, char *errmsg, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->m = m;
    c->errmsg = errmsg;
    c->errlen = errlen;
    c->curl = curl_easy_init();
    if (!c->curl) return false;
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->headers && m->auth) {
        struct curl_slist *h = curl_slist_append(c->headers, m->auth);
        if (!h) { curl_slist_free_all(c->headers); c->headers = NULL; }
        else c->headers = h;
    }
    if (!c->headers) return false;
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, m->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, m->connect_ms);
    curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "specreason/" SR_VERSION);
    return true;
}

static void conn_free(struct conn *c) {
    if (c->curl) curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    sr_buf_free(&c->resp);
    memset(c, 0, sizeof *c);
}

static bool retryable_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return true;
    default:
        return false;
    }
}

/* GET (body NULL) or POST path; the response is in c->resp. *status = HTTP status. Retries as
 * documented above. On failure returns an error status with the message set. Also fails on any
 * status >= 400 unless accept_error (then the caller looks at *status). */
static enum sr_status http(struct conn *c, const char *path, const char *body, bool accept_error, long *status) {
    const struct sr_remote_model *m = c->m;
    char url[1024];
    snprintf(url, sizeof url, "%s%s", m->url, path);
    size_t blen = body ? strlen(body) : 0;
    long backoff = 200;
    *status = 0;
    for (int32_t attempt = 0;; attempt++) {
        sr_buf_clear(&c->resp);
        c->resp_overflow = false;
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        if (body) {
            curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        } else {
            curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        }
        int64_t t0 = sr_time_us();
        CURLcode rc = curl_easy_perform(c->curl);
        int64_t dt = sr_time_us() - t0;
        long code = 0, hsize = 0, rsize = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(c->curl, CURLINFO_HEADER_SIZE, &hsize);
        curl_easy_getinfo(c->curl, CURLINFO_REQUEST_SIZE, &rsize);
        if (c->counters) {
            c->counters->n_http++;
            c->counters->t_http_us += dt;
            c->counters->t_backend_us += dt;
            c->counters->n_bytes += (int64_t)blen + (int64_t)c->resp.len + hsize + rsize;
            if (attempt > 0) c->counters->n_retries++;
        }
        if (c->resp.oom) {
            snprintf(c->errmsg, c->errlen, "out of memory");
            return SR_ERR_NOMEM;
        }
        if (c->resp_overflow) {
            snprintf(c->errmsg, c->errlen, "%s%s: the response is larger than %u MiB", m->url, path, MAX_RESPONSE >> 20);
            return SR_ERR_BACKEND;
        }
        bool retry = false;
        if (rc != CURLE_OK) {
            retry = retryable_curl(rc);
            snprintf(c->errmsg, c->errlen, "%s%s: %s%s", m->url, path, curl_easy_strerror(rc),
                     rc == CURLE_OPERATION_TIMEDOUT ? " (no complete answer within the timeout)" : "");
        } else {
            *status = code;
            if (code == 429 || (code >= 500 && code <= 599)) {
                retry = true;
                char msg[256];
                sr_rp_error_message(c->resp.data ? c->resp.data : "", c->resp.len, msg, sizeof msg);
                snprintf(c->errmsg, c->errlen, "%s%s: HTTP %ld: %s", m->url, path, code, msg);
            } else if (code >= 400 && !accept_error) {
                char msg[256];
                sr_rp_error_message(c->resp.data ? c->resp.data : "", c->resp.len, msg, sizeof msg);
                snprintf(c->errmsg, c->errlen, "%s%s: HTTP %ld: %s", m->url, path, code, msg);
                return SR_ERR_BACKEND;
            } else {
                if (!c->resp.data) sr_buf_puts(&c->resp, ""); /* never NULL for the parsers */
                return c->resp.oom ? SR_ERR_NOMEM : SR_OK;
            }
        }
        if (!retry || attempt >= m->retries) {
            if (retry && m->retries > 0) {
                size_t k = strlen(c->errmsg);
                snprintf(c->errmsg + k, c->errlen - k, " (after %d retries)", (int)m->retries);
            }
            return SR_ERR_BACKEND;
        }
        sr_log(SR_LOG_WARN, "%s model: %s; retrying in %ld ms", m->role, c->errmsg, backoff);
        sleep_ms(backoff);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
}

/* POSTs a JSON object (consumed) to path. */
static enum sr_status post_json(struct conn *c, const char *path, json_t *o) {
    if (!o) { snprintf(c->errmsg, c->errlen, "out of memory building a request"); return SR_ERR_NOMEM; }
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body) { snprintf(c->errmsg, c->errlen, "could not encode the request"); return SR_ERR_NOMEM; }
    long status = 0;
    enum sr_status st = http(c, path, body, false, &status);
    free(body);
    return st;
}

/* A JSON string of s[0..n), replacing invalid UTF-8 with U+FFFD (jansson refuses it). */
static json_t *json_text(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    struct sr_buf b = {0};
    for (size_t i = 0; i < n;) {
        size_t k = sr_utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) { sr_buf_puts(&b, "\xef\xbf\xbd"); i++; }
        else { sr_buf_append(&b, s + i, k); i += k; }
    }
    j = b.oom ? NULL : json_stringn(b.data ? b.data : "", b.len);
    sr_buf_free(&b);
    return j;
}

/* ------------------------------------------------------------------------------------------ */
/* model (endpoint)                                                                           */

static char *dup_or_null(const char *s) { return s && *s ? sr_strdup(s) : NULL; }

void sr_remote_model_free(struct sr_remote_model *m) {
    if (!m) return;
    sr_llama_model_free(m->vocab);
    free(m->url);
    free(m->model);
    free(m->auth);
    free(m->tmpl_name);
    free(m->vocab_path);
    free(m);
}

/* Waits for /health (503 = loading) within the timeout; connection errors go through http()'s
 * retries. */
static enum sr_status wait_healthy(struct conn *c) {
    const struct sr_remote_model *m = c->m;
    int64_t deadline = sr_time_us() + (int64_t)m->timeout_ms * 1000;
    for (;;) {
        long status = 0;
        enum sr_status st = http(c, "/health", NULL, true, &status);
        if (st == SR_OK && status < 400) return SR_OK;
        if (st == SR_OK && status == 404) return SR_OK; /* no /health: /v1/models decides */
        if (st == SR_OK) {
            char msg[256];
            sr_rp_error_message(c->resp.data, c->resp.len, msg, sizeof msg);
            snprintf(c->errmsg, c->errlen, "%s/health: HTTP %ld: %s", m->url, status, msg);
            return SR_ERR_BACKEND;
        }
        if (status != 503 || sr_time_us() > deadline) return st; /* dead, or never became ready */
        sleep_ms(500);
    }
}

/* Token mode on llama-server: the GGUF must tokenize as the server's model does. */
static enum sr_status check_vocab(struct conn *c, struct sr_remote_model *m) {
    static const char probe[] = "Hello, world! 12345 \xce\xb1\xce\xb2 <think>\n\nx</think>\n\n";
    json_t *o = json_pack("{s:s, s:b, s:b}", "content", probe, "add_special", 0, "parse_special", 1);
    enum sr_status st = post_json(c, "/tokenize", o);
    if (st != SR_OK) return st;
    int32_t *srv = NULL, *loc = NULL;
    int64_t ns = sr_rp_parse_tokenize(c->resp.data, c->resp.len, &srv);
    int64_t nl = sr_llama_vocab_tokenize(m->vocab, probe, sizeof probe - 1, true, &loc);
    bool same = ns >= 0 && ns == nl && memcmp(srv, loc, (size_t)ns * sizeof *srv) == 0;
    free(srv);
    free(loc);
    if (ns < 0) {
        snprintf(c->errmsg, c->errlen, "%s/tokenize: unexpected answer", m->url);
        return SR_ERR_BACKEND;
    }
    if (!same) {
        snprintf(c->errmsg, c->errlen,
                 "the GGUF '%s' does not tokenize like the server's model (give the server's own GGUF, or none)",
                 m->vocab_path);
        return SR_ERR_INVALID_ARG;
    }
    return SR_OK;
}

enum sr_status sr_remote_model_load(const struct sr_model_params *p, const char *role, struct sr_remote_model **out,
                                    struct sr_error *err) {
    *out = NULL;
    static bool curl_ready; /* engines are created from one thread at a time (documented) */
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return sr_seterr(err, SR_ERR_BACKEND, "libcurl could not be initialised");
        curl_ready = true;
    }
    const char *u = p->url;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: URL '%s' must start with http:// or https://", role, u);
    if (strlen(u) > 512) return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: URL too long", role);
    if (!(p->timeout_s >= 0 && p->timeout_s <= 86400))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: timeout must be in [0, 86400] seconds", role);
    if (p->max_retries > 100) return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: at most 100 retries", role);
    struct sr_remote_model *m = calloc(1, sizeof *m);
    if (!m) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    snprintf(m->role, sizeof m->role, "%s", role);
    m->url = sr_strdup(u);
    m->model = dup_or_null(p->model);
    m->tmpl_name = dup_or_null(p->chat_template);
    if (p->api_key && *p->api_key) {
        struct sr_buf b = {0};
        sr_buf_printf(&b, "Authorization: Bearer %s", p->api_key);
        m->auth = sr_buf_take(&b);
    }
    if (!m->url || (p->model && *p->model && !m->model) || (p->api_key && *p->api_key && !m->auth)) {
        sr_remote_model_free(m);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    }
    size_t n = strlen(m->url);
    while (n && m->url[n - 1] == '/') m->url[--n] = '\0';
    if (n >= 3 && strcmp(m->url + n - 3, "/v1") == 0) m->url[n -= 3] = '\0';
    double t = p->timeout_s > 0 ? p->timeout_s : 600.0;
    m->timeout_ms = (long)(t * 1000.0);
    if (m->timeout_ms < 1) m->timeout_ms = 1;
    m->connect_ms = m->timeout_ms < 10000 ? m->timeout_ms : 10000;
    m->retries = p->max_retries == 0 ? 3 : p->max_retries < 0 ? 0 : p->max_retries;
    m->n_ctx = INT64_MAX;
    m->total_slots = 1;
    enum sr_status st = SR_OK;
    if (p->path) {
        st = sr_llama_vocab_load(p->path, role, &m->vocab, err);
        m->vocab_path = sr_strdup(p->path);
        if (st == SR_OK && !m->vocab_path) st = sr_seterr(err, SR_ERR_NOMEM, "out of memory");
        if (st != SR_OK) { sr_remote_model_free(m); return st; }
    }

    char emsg[512] = "";
    struct conn c;
    if (!conn_init(&c, m, emsg, sizeof emsg)) {
        conn_free(&c);
        sr_remote_model_free(m);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory (curl)");
    }
    st = wait_healthy(&c);
    long status = 0;
    if (st == SR_OK && http(&c, "/props", NULL, true, &status) == SR_OK && status == 200) {
        int64_t nc = -1;
        m->llama_server = sr_rp_parse_props(c.resp.data, c.resp.len, &nc, &m->total_slots);
        if (m->llama_server && nc > 0) m->n_ctx = nc;
    }
    if (st == SR_OK && !m->llama_server) {
        /* vLLM, SGLang: the served model's name and context length. */
        st = http(&c, "/v1/models", NULL, false, &status);
        if (st == SR_OK) {
            char *first = NULL;
            int64_t ml = sr_rp_parse_models(c.resp.data, c.resp.len, m->model, &first);
            if (ml > 0) m->n_ctx = ml;
            if (!m->model && first) { m->model = first; first = NULL; }
            free(first);
        }
    }
    if (st == SR_OK && m->llama_server && !m->vocab) {
        /* /apply-template renders with the server's own template. */
        json_t *o = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", "x");
        char *pr = post_json(&c, "/apply-template", o) == SR_OK ? sr_rp_parse_apply_template(c.resp.data, c.resp.len)
                                                                : NULL;
        m->apply_template = pr != NULL;
        free(pr);
        emsg[0] = '\0';
    }
    if (st == SR_OK && m->vocab && m->llama_server) st = check_vocab(&c, m);
    conn_free(&c);
    if (st != SR_OK) {
        sr_seterr(err, st == SR_ERR_INVALID_ARG ? st : SR_ERR_MODEL_LOAD, "%s model at %s: %s", role, p->url,
                  emsg[0] ? emsg : "unreachable");
        sr_remote_model_free(m);
        return err ? err->status : SR_ERR_MODEL_LOAD;
    }
    *out = m;
    return SR_OK;
}

int sr_remote_model_desc(const struct sr_remote_model *m, char *buf, size_t size) {
    char ctx[32] = "unknown";
    if (m->n_ctx != INT64_MAX) snprintf(ctx, sizeof ctx, "%lld", (long long)m->n_ctx);
    return snprintf(buf, size, "%s (remote %s, model %s, ctx %s, %s%s)", m->url,
                    m->llama_server ? "llama-server" : "OpenAI-compatible server", m->model ? m->model : "default", ctx,
                    m->vocab ? "token ids from " : "text prompts",
                    m->vocab ? m->vocab_path : (m->apply_template ? ", server template" : ""));
}

/* ------------------------------------------------------------------------------------------ */
/* contexts                                                                                   */

static bool push_ckpt(struct lm_remote *R) {
    if (R->n_ck && R->ck[R->n_ck - 1].off == R->text.len) {
        R->ck[R->n_ck - 1].ntok = R->n_toks;
        return true;
    }
    if (R->n_ck == R->cap_ck) {
        size_t nc = R->cap_ck ? R->cap_ck * 2 : 64;
        struct ckpt *p = realloc(R->ck, nc * sizeof *p);
        if (!p) return false;
        R->ck = p;
        R->cap_ck = nc;
    }
    R->ck[R->n_ck++] = (struct ckpt){R->text.len, R->n_toks};
    return true;
}

static bool push_toks(struct lm_remote *R, const int32_t *t, int64_t n) {
    if (R->n_toks + n > R->cap_toks) {
        int64_t c = R->cap_toks ? R->cap_toks : 1024;
        while (c < R->n_toks + n) c *= 2;
        int32_t *p = realloc(R->toks, (size_t)c * sizeof *p);
        if (!p) return false;
        R->toks = p;
        R->cap_toks = c;
    }
    if (n) memcpy(R->toks + R->n_toks, t, (size_t)n * sizeof *t);
    R->n_toks += n;
    return true;
}

/* Tokens of text: locally (token mode), else the server's /tokenize; -1 if unknown. *ids
 * (may be NULL; token mode only) gets the ids. special: template text (control-token text read
 * as control tokens); user and model text is counted with special = false. */
static int64_t count_tokens(struct lm_remote *R, const char *s, size_t n, bool special, int32_t **ids) {
    if (ids) *ids = NULL;
    if (R->m->vocab) {
        int32_t *t = NULL;
        int64_t k = sr_llama_vocab_tokenize(R->m->vocab, s, n, special, &t);
        if (ids) *ids = t;
        else free(t);
        return k;
    }
    if (n == 0) return 0;
    json_t *o = R->m->llama_server
                    ? json_pack("{s:o, s:b, s:b}", "content", json_text(s, n), "add_special", 0, "parse_special", special)
                    : json_pack("{s:o, s:b}", "prompt", json_text(s, n), "add_special_tokens", 0);
    if (o && R->m->model && !R->m->llama_server) json_object_set_new(o, "model", json_string(R->m->model));
    int64_t k = -1;
    if (post_json(&R->c, "/tokenize", o) == SR_OK) k = sr_rp_parse_tokenize(R->c.resp.data, R->c.resp.len, NULL);
    if (k < 0 && !R->warned_count) {
        sr_log(SR_LOG_WARN, "%s model: the server cannot count tokens (/tokenize); token counts will be 0 (%s)",
               R->m->role, R->base.errmsg);
        R->warned_count = true;
    }
    return k;
}

/* The prompt: in token mode its segments tokenized as in-process (control tokens only inside
 * template segments, BOS first when the GGUF says add_bos_token); in text mode the concatenated
 * text, which the server tokenizes as it does (control-token text in content included). */
static enum sr_status rm_reset(struct sr_lm *lm, const struct sr_seg *segs, size_t n_segs, int32_t *n_tokens) {
    struct lm_remote *R = (struct lm_remote *)lm;
    sr_buf_clear(&R->text);
    R->n_toks = 0;
    R->n_ck = 0;
    for (size_t i = 0; i < n_segs; i++) sr_buf_append(&R->text, segs[i].text, segs[i].len);
    if (R->text.oom) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    if (R->text.len == 0) return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "empty prompt");
    int64_t n;
    if (R->m->vocab) {
        int32_t *ids = NULL;
        n = sr_llama_vocab_tokenize_segs(R->m->vocab, segs, n_segs, &ids);
        if (n < 0) { sr_buf_clear(&R->text); return sr_lm_fail(lm, SR_ERR_BACKEND, "tokenization failed"); }
        int32_t bos = sr_llama_vocab_bos(R->m->vocab);
        bool ok = true;
        if (bos >= 0 && (n == 0 || ids[0] != bos)) ok = push_toks(R, &bos, 1); /* unless the template wrote it */
        ok = ok && push_toks(R, ids, n);
        free(ids);
        n = R->n_toks;
        if (!ok) { sr_buf_clear(&R->text); R->n_toks = 0; return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
        if (n > R->m->n_ctx) {
            sr_buf_clear(&R->text);
            R->n_toks = 0;
            return sr_lm_fail(lm, SR_ERR_CONTEXT_FULL, "context full: %lld prompt tokens exceed the server's n_ctx %lld",
                              (long long)n, (long long)R->m->n_ctx);
        }
    } else {
        n = count_tokens(R, R->text.data, R->text.len, true, NULL);
    }
    if (!push_ckpt(R)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    if (n_tokens) *n_tokens = n > 0 ? (int32_t)n : 0;
    return SR_OK;
}

/* Appends text (and its tokens in token mode). */
static enum sr_status add_text(struct lm_remote *R, const char *s, size_t n, int32_t *n_tokens) {
    int64_t k = 0;
    if (R->m->vocab || n_tokens) {
        int32_t *ids = NULL;
        k = count_tokens(R, s, n, false, R->m->vocab ? &ids : NULL);
        if (R->m->vocab) {
            if (k < 0) return sr_lm_fail(&R->base, SR_ERR_BACKEND, "tokenization failed");
            bool ok = push_toks(R, ids, k);
            free(ids);
            if (!ok) return sr_lm_fail(&R->base, SR_ERR_NOMEM, "out of memory");
        }
    }
    sr_buf_append(&R->text, s, n);
    if (R->text.oom || !push_ckpt(R)) return sr_lm_fail(&R->base, SR_ERR_NOMEM, "out of memory");
    if (n_tokens) *n_tokens = k > 0 ? (int32_t)k : 0;
    return SR_OK;
}

static enum sr_status rm_append(struct sr_lm *lm, const char *text, size_t len, int32_t *n_tokens) {
    return add_text((struct lm_remote *)lm, text, len, n_tokens);
}

static int64_t rm_mark(const struct sr_lm *lm) { return (int64_t)((const struct lm_remote *)lm)->text.len; }

static enum sr_status rm_rollback(struct sr_lm *lm, int64_t mark) {
    struct lm_remote *R = (struct lm_remote *)lm;
    if (mark < 0 || (size_t)mark > R->text.len)
        return sr_lm_fail(lm, SR_ERR_INTERNAL, "rollback to %lld of %zu bytes", (long long)mark, R->text.len);
    size_t i = R->n_ck;
    while (i > 0 && R->ck[i - 1].off > (size_t)mark) i--;
    if (R->m->vocab && (i == 0 || R->ck[i - 1].off != (size_t)mark))
        return sr_lm_fail(lm, SR_ERR_INTERNAL, "rollback to %lld, which is not a mark", (long long)mark);
    R->n_ck = i;
    if (i > 0) R->n_toks = R->ck[i - 1].ntok;
    R->text.len = (size_t)mark;
    if (R->text.data) R->text.data[mark] = '\0';
    return SR_OK;
}

/* Generations on llama-server in token mode go to its native /completion endpoint. */
static bool native_generate(const struct sr_remote_model *m, bool judge) { return !judge && m->llama_server && m->vocab; }

/* A completion request over the current context (+ extra text / tokens). */
static json_t *completion_request(struct lm_remote *R, const char *extra, size_t extra_len, const int32_t *extra_toks,
                                  int64_t n_extra, int32_t max_tokens, bool judge, const char *delim) {
    const struct sr_remote_model *m = R->m;
    json_t *o = json_object();
    if (!o) return NULL;
    json_t *prompt;
    if (m->vocab) {
        prompt = json_array();
        for (int64_t i = 0; prompt && i < R->n_toks; i++) json_array_append_new(prompt, json_integer(R->toks[i]));
        for (int64_t i = 0; prompt && i < n_extra; i++) json_array_append_new(prompt, json_integer(extra_toks[i]));
    } else {
        struct sr_buf b = {0};
        sr_buf_append(&b, R->text.data ? R->text.data : "", R->text.len);
        sr_buf_append(&b, extra ? extra : "", extra_len);
        prompt = b.oom ? NULL : json_text(b.data ? b.data : "", b.len);
        sr_buf_free(&b);
    }
    if (!prompt) { json_decref(o); return NULL; }
    if (m->model) json_object_set_new(o, "model", json_string(m->model));
    json_object_set_new(o, "prompt", prompt);
    json_object_set_new(o, "max_tokens", json_integer(max_tokens));
    float temp = judge ? 0.0f : R->temperature;
    json_object_set_new(o, "temperature", json_real(temp > 0 ? temp : 0.0));
    if (temp > 0) {
        json_object_set_new(o, "top_p", json_real(R->top_p));
        /* A seed per request, derived from the run's seed: reproducible, not correlated. */
        uint64_t z = R->seed * 0x9E3779B97F4A7C15ull + ++R->n_req;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        json_object_set_new(o, "seed", json_integer((json_int_t)(z & 0x7fffffff)));
    }
    /* Token ids of a generation: llama-server's native endpoint returns them (return_tokens),
     * elsewhere they come with the per-token log-probabilities (which cost the server a softmax
     * over the whole vocabulary per token). */
    bool native = native_generate(m, judge);
    int logprobs = judge ? JUDGE_TOP_K : (m->vocab && !native ? 1 : 0);
    if (logprobs) json_object_set_new(o, "logprobs", json_integer(logprobs));
    if (native) json_object_set_new(o, "return_tokens", json_true());
    if (delim && *delim) json_object_set_new(o, "stop", json_pack("[s]", delim));
    if (m->llama_server) {
        json_object_set_new(o, "cache_prompt", json_true());
        json_object_set_new(o, "id_slot", json_integer(R->id_slot));
        if (temp > 0) {
            /* The in-process chain: temperature, then top-p; nothing else. */
            json_object_set_new(o, "samplers", json_pack("[s,s]", "temperature", "top_p"));
            json_object_set_new(o, "top_k", json_integer(0));
        } else {
            /* Greedy: the most likely token, without sorting the vocabulary (temperature 0 then
             * top-p sorts all of it on every token). The judge's log-probabilities are read from
             * the raw logits either way. */
            json_object_set_new(o, "samplers", json_pack("[s]", "top_k"));
            json_object_set_new(o, "top_k", json_integer(1));
        }
        json_object_set_new(o, "min_p", json_real(0.0));
    } else if (m->vocab) {
        json_object_set_new(o, "return_tokens_as_token_ids", json_true()); /* vLLM */
    }
    return o;
}

static enum sr_status parse_completion(struct lm_remote *R, struct sr_rp_completion *cp) {
    char perr[256];
    if (!sr_rp_parse_completion(R->c.resp.data, R->c.resp.len, cp, perr, sizeof perr))
        return sr_lm_fail(&R->base, SR_ERR_BACKEND, "%s: bad completion response: %s", R->m->url, perr);
    return SR_OK;
}

/* The run's abort poll, before each request (a request is this backend's forward pass). */
static bool aborted(struct sr_lm *lm) { return lm->abort_fn && lm->abort_fn(lm->abort_user); }

static enum sr_status rm_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct lm_remote *R = (struct lm_remote *)lm;
    size_t dlen = delim ? strlen(delim) : 0;
    out->n_tokens = 0;
    /* Token log-probabilities are not read from the server's reply: report none (n_logprob 0),
     * so the controller's confidence gate never skips the judge on a remote small model. */
    out->n_logprob = 0;
    out->logprob_min = 0.0f;
    out->logprob_sum = 0.0;
    out->end = SR_GEN_MAX;
    if (max_tokens <= 0) return dlen ? add_text(R, delim, dlen, NULL) : SR_OK;
    if (R->text.len == 0) return sr_lm_fail(lm, SR_ERR_INTERNAL, "cannot generate from an empty context");
    if (R->m->vocab && R->n_toks >= R->m->n_ctx)
        return sr_lm_fail(lm, SR_ERR_CONTEXT_FULL, "context full: %lld tokens fill the server's n_ctx %lld",
                          (long long)R->n_toks, (long long)R->m->n_ctx);
    if (aborted(lm)) return sr_lm_fail(lm, SR_ERR_ABORTED, "cancelled");
    json_t *o = completion_request(R, NULL, 0, NULL, 0, max_tokens, false, delim);
    enum sr_status st = post_json(&R->c, native_generate(R->m, false) ? "/completion" : "/v1/completions", o);
    lm->n_decode++;
    if (st != SR_OK) return st;
    struct sr_rp_completion cp;
    if ((st = parse_completion(R, &cp)) != SR_OK) return st;
    bool stop = cp.finish == SR_RP_FINISH_STOP;
    bool last_eog = R->m->vocab && cp.ids_known && cp.n_ids > 0 && sr_llama_vocab_is_eog(R->m->vocab, cp.ids[cp.n_ids - 1]);
    bool eog = stop && (!dlen || cp.stop_reason == SR_RP_SR_EOS || cp.stop_reason == SR_RP_SR_TOKEN || last_eog);
    out->end = !stop ? SR_GEN_MAX : eog ? SR_GEN_EOG : SR_GEN_DELIM;
    /* Sampled tokens, the end-of-generation token not counted (as in-process). */
    int64_t nt = cp.completion_tokens;
    if (nt < 0) nt = count_tokens(R, cp.text, cp.text_len, false, NULL);
    if (eog && nt > 0) nt--;
    out->n_tokens = (int32_t)(nt > 0 ? nt : 0);
    size_t text_start = R->text.len;
    sr_buf_append(&out->text, cp.text, cp.text_len);
    sr_buf_append(&R->text, cp.text, cp.text_len);
    if (dlen) sr_buf_append(&R->text, delim, dlen);
    if (out->text.oom || R->text.oom) { sr_rp_completion_free(&cp); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
    if (R->m->vocab) {
        /* The tokens in-process decoding would hold: the sampled ones whose text lies wholly
         * inside the adopted text, then the rest of that text tokenized on its own (the part of a
         * token up to the delimiter's end, or the delimiter after max_tokens/EOG). */
        const char *T = R->text.data + text_start;
        size_t tl = R->text.len - text_start, cum = 0;
        size_t kept = 0;
        char pb[256];
        if (cp.ids_known) {
            for (; kept < cp.n_ids; kept++) {
                int32_t pn = sr_llama_vocab_piece(R->m->vocab, cp.ids[kept], pb, sizeof pb);
                if (pn <= 0 || cum + (size_t)pn > tl || memcmp(T + cum, pb, (size_t)pn) != 0) break;
                cum += (size_t)pn;
            }
            if (!push_toks(R, cp.ids, (int64_t)kept)) { sr_rp_completion_free(&cp); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
        } else {
            sr_log(SR_LOG_WARN, "%s model: the server did not return token ids; retokenizing its text", R->m->role);
        }
        int32_t *ids = NULL;
        int64_t k = tl > cum ? sr_llama_vocab_tokenize(R->m->vocab, T + cum, tl - cum, false, &ids) : 0;
        bool ok = k >= 0 && push_toks(R, ids, k);
        free(ids);
        if (!ok) { sr_rp_completion_free(&cp); return sr_lm_fail(lm, SR_ERR_BACKEND, "tokenization failed"); }
    }
    sr_rp_completion_free(&cp);
    if (!push_ckpt(R)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    return SR_OK;
}

static enum sr_status rm_judge(struct sr_lm *lm, const char *cand, size_t cand_len, const char *suffix,
                               size_t suffix_len, struct sr_judge_out *out) {
    struct lm_remote *R = (struct lm_remote *)lm;
    const struct sr_remote_model *m = R->m;
    memset(out, 0, sizeof *out);
    if (aborted(lm)) return sr_lm_fail(lm, SR_ERR_ABORTED, "cancelled");
    if (!R->suffix_text || R->suffix_len != suffix_len || memcmp(R->suffix_text, suffix, suffix_len) != 0) {
        int32_t *ids = NULL;
        int64_t n = count_tokens(R, suffix, suffix_len, true, m->vocab ? &ids : NULL); /* template text */
        if (m->vocab && n < 0) return sr_lm_fail(lm, SR_ERR_BACKEND, "tokenization failed");
        char *s = sr_strndup(suffix, suffix_len);
        if (!s) { free(ids); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
        free(R->suffix_text);
        free(R->suffix_toks);
        R->suffix_text = s;
        R->suffix_len = suffix_len;
        R->suffix_toks = ids;
        R->n_suffix = n;
    }
    int32_t *ct = NULL;
    int64_t nc = count_tokens(R, cand, cand_len, false, m->vocab ? &ct : NULL); /* model text */
    if (m->vocab && nc < 0) return sr_lm_fail(lm, SR_ERR_BACKEND, "tokenization failed");
    if (cand_len + suffix_len == 0) { free(ct); return sr_lm_fail(lm, SR_ERR_INVALID_ARG, "empty judge prompt"); }
    json_t *o;
    if (m->vocab) {
        int64_t ne = nc + R->n_suffix;
        if (R->n_toks + ne > m->n_ctx) {
            free(ct);
            return sr_lm_fail(lm, SR_ERR_CONTEXT_FULL, "context full: %lld + %lld tokens exceed the server's n_ctx %lld",
                              (long long)R->n_toks, (long long)ne, (long long)m->n_ctx);
        }
        int32_t *all = malloc((size_t)(ne ? ne : 1) * sizeof *all);
        if (!all) { free(ct); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
        if (nc) memcpy(all, ct, (size_t)nc * sizeof *all);
        if (R->n_suffix) memcpy(all + nc, R->suffix_toks, (size_t)R->n_suffix * sizeof *all);
        o = completion_request(R, NULL, 0, all, ne, 1, true, NULL);
        free(all);
    } else {
        struct sr_buf b = {0};
        sr_buf_append(&b, cand, cand_len);
        sr_buf_append(&b, suffix, suffix_len);
        o = b.oom ? NULL : completion_request(R, b.data, b.len, NULL, 0, 1, true, NULL);
        sr_buf_free(&b);
    }
    enum sr_status st = post_json(&R->c, "/v1/completions", o);
    lm->n_decode++;
    if (st != SR_OK) { free(ct); return st; }
    struct sr_rp_completion cp;
    if ((st = parse_completion(R, &cp)) != SR_OK) { free(ct); return st; }
    if (!cp.has_logprobs || cp.n_top == 0) {
        sr_rp_completion_free(&cp);
        free(ct);
        return sr_lm_fail(lm, SR_ERR_BACKEND,
                          "%s: the judge's answer has no top log-probabilities (the server must return 'logprobs'; "
                          "vLLM: --max-logprobs %d or more)", m->url, JUDGE_TOP_K);
    }
    memcpy(R->last_top, cp.top, sizeof cp.top);
    R->n_last_top = cp.n_top;
    int best = 0;
    for (int i = 1; i < cp.n_top; i++)
        if (cp.top[i].logprob > cp.top[best].logprob) best = i;
    char pb[64];
    const char *bt = cp.top[best].token;
    size_t bl = cp.top[best].token_len < sizeof cp.top[best].token ? cp.top[best].token_len : 0;
    if (m->vocab && cp.top[best].id >= 0) {
        int32_t pn = sr_llama_vocab_piece(m->vocab, cp.top[best].id, pb, sizeof pb);
        bt = pb;
        bl = pn > 0 ? (size_t)pn : 0;
    }
    out->greedy_value = sr_rp_digits_value(bt, bl);
    /* Rank of each alternative by log-probability (first listed wins a tie), for digit_top10. */
    int rank[SR_RP_MAX_TOP];
    for (int i = 0; i < cp.n_top; i++) {
        rank[i] = 0;
        for (int k = 0; k < cp.n_top; k++)
            if (cp.top[k].logprob > cp.top[i].logprob || (cp.top[k].logprob == cp.top[i].logprob && k < i)) rank[i]++;
    }
    for (int d = 0; d < 10; d++) {
        int32_t id = m->vocab ? sr_llama_vocab_digit(m->vocab, d) : -1;
        out->digit_ok[d] = m->vocab ? id >= 0 : true;
        out->digit_logit[d] = -INFINITY;
        for (int i = 0; i < cp.n_top; i++) {
            const struct sr_rp_top *t = &cp.top[i];
            bool hit = (m->vocab && t->id >= 0) ? t->id == id : (t->token_len == 1 && t->token[0] == '0' + d);
            if (hit && (float)t->logprob > out->digit_logit[d]) out->digit_logit[d] = (float)t->logprob;
            if (hit && rank[i] < 10) out->digit_top10[d] = true;
        }
    }
    sr_rp_completion_free(&cp);
    out->n_cand_tokens = (int32_t)(nc > 0 ? nc : 0);
    out->n_suffix_tokens = (int32_t)(R->n_suffix > 0 ? R->n_suffix : 0);
    /* The context keeps the candidate. */
    bool ok = !m->vocab || push_toks(R, ct, nc);
    free(ct);
    sr_buf_append(&R->text, cand, cand_len);
    if (!ok || R->text.oom || !push_ckpt(R)) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    return SR_OK;
}

static enum sr_status rm_set_sampling(struct sr_lm *lm, float temperature, float top_p, uint64_t seed) {
    struct lm_remote *R = (struct lm_remote *)lm;
    R->temperature = temperature;
    R->top_p = top_p;
    R->seed = seed;
    R->n_req = 0;
    return SR_OK;
}

static enum sr_status rm_render(struct sr_lm *lm, const struct sr_chat_msg *msgs, size_t n, struct sr_buf *out) {
    struct lm_remote *R = (struct lm_remote *)lm;
    const struct sr_remote_model *m = R->m;
    if (!m->vocab && m->apply_template) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(arr, json_pack("{s:s,s:o}", "role", msgs[i].role, "content",
                                                 json_text(msgs[i].content, strlen(msgs[i].content))));
        json_t *o = arr ? json_pack("{s:o}", "messages", arr) : NULL;
        enum sr_status st = post_json(&R->c, "/apply-template", o);
        if (st != SR_OK) return st;
        char *p = sr_rp_parse_apply_template(R->c.resp.data, R->c.resp.len);
        if (!p) return sr_lm_fail(lm, SR_ERR_BACKEND, "%s/apply-template: no 'prompt' in the answer", m->url);
        sr_buf_clear(out);
        sr_buf_puts(out, p);
        free(p);
        return out->oom ? sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory") : SR_OK;
    }
    return sr_llama_render(m->vocab, m->tmpl_name, msgs, n, out, lm->errmsg, sizeof lm->errmsg);
}

static void rm_free(struct sr_lm *lm) {
    struct lm_remote *R = (struct lm_remote *)lm;
    if (!R) return;
    conn_free(&R->c);
    sr_buf_free(&R->text);
    free(R->toks);
    free(R->ck);
    free(R->suffix_text);
    free(R->suffix_toks);
    free(R);
}

static const struct sr_lm_ops remote_ops = {
    .reset = rm_reset,
    .generate = rm_generate,
    .append = rm_append,
    .mark = rm_mark,
    .rollback = rm_rollback,
    .judge = rm_judge,
    .set_sampling = rm_set_sampling,
    .render = rm_render,
    .free = rm_free,
    .generate_spec = NULL,    /* token-level speculation is the serving engine's own feature */
    .draft_compatible = NULL,
};

enum sr_status sr_remote_lm_init(struct sr_remote_model *m, struct sr_lm **out, struct sr_error *err) {
    *out = NULL;
    struct lm_remote *R = calloc(1, sizeof *R);
    if (!R) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    R->base.ops = &remote_ops;
    R->base.n_ctx = m->n_ctx;
    R->m = m;
    if (!conn_init(&R->c, m, R->base.errmsg, sizeof R->base.errmsg)) {
        rm_free(&R->base);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory (curl)");
    }
    R->c.counters = &R->base;
    R->id_slot = __atomic_fetch_add(&m->next_slot, 1, __ATOMIC_RELAXED) % (m->total_slots > 0 ? m->total_slots : 1);
    rm_set_sampling(&R->base, 0.0f, 1.0f, 0);
    *out = &R->base;
    return SR_OK;
}

int sr_remote_lm_last_top(const struct sr_lm *lm, int32_t *ids, double *logprobs, int cap) {
    const struct lm_remote *R = (const struct lm_remote *)lm;
    int n = R->n_last_top < cap ? R->n_last_top : cap;
    for (int i = 0; i < n; i++) {
        ids[i] = R->last_top[i].id;
        logprobs[i] = R->last_top[i].logprob;
    }
    return n;
}

const int32_t *sr_remote_lm_tokens(const struct sr_lm *lm, int64_t *n) {
    const struct lm_remote *R = (const struct lm_remote *)lm;
    *n = R->n_toks;
    return R->toks;
}
