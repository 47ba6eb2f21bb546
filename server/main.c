/*
 * server/main.c: `specreason-server`, SpecReason behind the OpenAI chat API. A client of
 * include/specreason.h only (like cli/): libmicrohttpd serves HTTP (one thread per connection),
 * jansson reads and writes JSON.
 *
 * Requests take one of --parallel sessions (slots); up to --queue more wait for one, the rest get
 * 429. A run polls should_abort before every forward pass: a client that disconnects (its socket
 * reads EOF), or a shutdown, stops its generation at once and frees the slot. Streaming runs on a
 * thread of its own and hands SSE chunks to MHD's content reader; the reasoning is sent step by
 * step as delta.reasoning_content, the answer as delta.content.
 *
 * Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics.
 * Exit codes: 0 clean shutdown, 1 start-up error, 2 usage error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "opts.h"
#include "request.h"
#include "specreason.h"
#include "web_assets.h"

#define PROG "specreason-server"

/* ------------------------------------------------------------------------------------------ */
/* options                                                                                    */

struct options {
    struct common_opts o; /* models, steps, sampling, thinking, judge, policy, drafting, hardware, remote (cli/opts.c) */
    const char *mode, *template_name, *prompt_template;
    const char *host, *api_key, *model_name;
    int64_t port, parallel, queue, max_body;
    double threshold;
    uint64_t seed;
    bool quiet, verbose, help, version, spec_decode;
};

static struct options O;

#define bad(...) opt_bad(PROG, __VA_ARGS__)
#define pick(val, what, names, n, out) opt_pick(PROG, val, what, names, n, out)

/* The model and run options are the rows `specreason` uses (cli/opts.h), as defaults of every
 * request; then the server's own. */
static const struct opt OPTS[] = {
    COMMON_OPTS_MODELS(O.o),
    {"host", 0, OPT_STR, &O.host, 0, 0, "address to listen on (default 127.0.0.1; without --api-key only loopback unless given)"},
    {"port", 0, OPT_INT, &O.port, 0, 65535, "TCP port (default 8080; 0 = any free port, printed at start)"},
    {"parallel", 0, OPT_INT, &O.parallel, 1, 256, "requests served at once (sessions; default 1)"},
    {"queue", 0, OPT_INT, &O.queue, 0, 100000, "requests that may wait for a free session; more get 429 (default 16)"},
    {"api-key", 0, OPT_STR, &O.api_key, 0, 0, "require 'Authorization: Bearer KEY' (default: $SPECREASON_API_KEY)"},
    {"max-body-bytes", 0, OPT_INT, &O.max_body, 1, 1 << 30, "largest request body; larger gets 413 (default 1048576)"},
    {"model-name", 0, OPT_STR, &O.model_name, 0, 0, "model id served at /v1/models (default specreason)"},
    {"mode", 'm', OPT_STR, &O.mode, 0, 0, "default mode: spec | base | small (default spec)"},
    {"threshold", 't', OPT_FLOAT, &O.threshold, 0, 10, "accept a step iff its score >= this (default 7)"},
    COMMON_OPTS_STEPS(O.o),
    COMMON_OPTS_SAMPLING(O.o),
    {"seed", 's', OPT_U64, &O.seed, 0, 0, "default sampling seed (default 0)"},
    COMMON_OPTS_THINKING(O.o),
    {"template", 0, OPT_STR, &O.template_name, 0, 0, "math | gpqa | raw: wraps the last user message (default raw)"},
    {"prompt-template", 0, OPT_STR, &O.prompt_template, 0, 0, "custom wrapper of the last user message; {problem} is replaced"},
    COMMON_OPTS_JUDGE(O.o),
    COMMON_OPTS_POLICY(O.o),
    {"spec-decode", 0, OPT_FLAG, &O.spec_decode, 0, 0, "token-level speculative decoding wherever the base model writes"},
    COMMON_OPTS_DRAFT(O.o, ""),
    COMMON_OPTS_HARDWARE(O.o),
    COMMON_OPTS_REMOTE(O.o),
    {"quiet", 'q', OPT_FLAG, &O.quiet, 0, 0, "no per-request log lines"},
    {"verbose", 'v', OPT_FLAG, &O.verbose, 0, 0, "log llama.cpp warnings and errors to stderr"},
    {"version", 0, OPT_FLAG, &O.version, 0, 0, "print the version"},
    {"help", 'h', OPT_FLAG, &O.help, 0, 0, "this help"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " --small S.gguf --base B.gguf [--host H] [--port P] [--parallel N] [options]\n\n"
            "Serves SpecReason through the OpenAI chat API: POST /v1/chat/completions (also streaming),\n"
            "GET /v1/models, GET /health, GET /metrics. Run options are the defaults of every request;\n"
            "requests may override threshold, first_n_base, score_method, mode, policy, spec_decode,\n"
            "token_budget, max_step_tokens, max_answer_tokens, max_tokens, temperature, top_p, seed and stop.\n"
            "\noptions:\n");
    opt_usage(f, OPTS, N_OPTS, 28);
    fprintf(f, "\nexit status: 0 clean shutdown (SIGINT/SIGTERM), 1 start-up error, 2 usage error\n");
}

static void on_set(const struct opt *o, void *user) {
    (void)user;
    common_opts_on_set(&O.o, o);
}

/* ------------------------------------------------------------------------------------------ */
/* server state                                                                               */

static struct {
    struct sr_engine *eng;
    struct sr_run_params rp; /* defaults of every request */
    const char *wrap;        /* applied to the last user message; NULL = as given */
    const char *model_id;
    const char *api_key;
    size_t max_body;
    time_t created;
    atomic_int ready, stopping;
    atomic_long next_id;

    pthread_mutex_t mu; /* slots and queue */
    pthread_cond_t cv;
    struct sr_session **sess;
    bool *busy;
    int n_slots, n_active, n_waiting, queue_max;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- metrics ------------------------------------------------------------------------------ */

static const double BUCKETS[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])
struct hist {
    uint64_t le[N_BUCKETS];
    uint64_t count;
    double sum;
};

static const char *const STATUS_LABELS[] = {"200", "400", "401", "404", "405", "413", "429", "500", "503", "cancelled"};
#define N_STATUS (sizeof STATUS_LABELS / sizeof STATUS_LABELS[0])

static struct {
    pthread_mutex_t mu;
    uint64_t requests[N_STATUS];
    uint64_t prompt_tokens[2], adopted_tokens[2], answer_tokens, judge_tokens, rejected_tokens;
    uint64_t steps_accepted, steps_rejected, steps_forced, judge_calls;
    struct hist latency, ttft;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void hist_add(struct hist *h, double v) {
    for (size_t i = 0; i < N_BUCKETS; i++)
        if (v <= BUCKETS[i]) h->le[i]++;
    h->count++;
    h->sum += v;
}

static void metric_request(int status, bool cancelled) {
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    pthread_mutex_lock(&M.mu);
    for (size_t i = 0; i < N_STATUS; i++)
        if (strcmp(STATUS_LABELS[i], cancelled ? "cancelled" : code) == 0) M.requests[i]++;
    pthread_mutex_unlock(&M.mu);
}

static void metric_run(const struct sr_result *r, double latency_s, double ttft_s) {
    const struct sr_stats *S = &r->stats;
    pthread_mutex_lock(&M.mu);
    M.prompt_tokens[0] += (uint64_t)S->n_prompt_tokens_small;
    M.prompt_tokens[1] += (uint64_t)S->n_prompt_tokens_base;
    M.adopted_tokens[0] += (uint64_t)S->n_adopted_small;
    M.adopted_tokens[1] += (uint64_t)S->n_adopted_base;
    M.answer_tokens += (uint64_t)S->n_answer_tokens;
    M.judge_tokens += (uint64_t)S->n_judge_tokens;
    M.rejected_tokens += (uint64_t)S->n_rejected_tokens;
    M.steps_accepted += (uint64_t)S->n_steps_small;
    M.steps_rejected += (uint64_t)S->n_steps_base_reject;
    M.steps_forced += (uint64_t)S->n_steps_base_forced;
    M.judge_calls += (uint64_t)S->n_judged;
    hist_add(&M.latency, latency_s);
    if (ttft_s >= 0) hist_add(&M.ttft, ttft_s);
    pthread_mutex_unlock(&M.mu);
}

/* ---- growable strings ---------------------------------------------------------------------- */

struct sbuf {
    char *d;
    size_t n, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *p = realloc(b->d, c);
        if (!p) { b->oom = true; return; }
        b->d = p;
        b->cap = c;
    }
    memcpy(b->d + b->n, s, n);
    b->n += n;
    b->d[b->n] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static char *metrics_text(void) {
    struct sbuf b = {0};
    pthread_mutex_lock(&G.mu);
    int active = G.n_active, waiting = G.n_waiting, slots = G.n_slots;
    pthread_mutex_unlock(&G.mu);
    pthread_mutex_lock(&M.mu);
    sb_printf(&b, "# HELP specreason_requests_total Chat completion requests by final status.\n"
                  "# TYPE specreason_requests_total counter\n");
    for (size_t i = 0; i < N_STATUS; i++)
        sb_printf(&b, "specreason_requests_total{status=\"%s\"} %llu\n", STATUS_LABELS[i], (unsigned long long)M.requests[i]);
    sb_printf(&b, "# HELP specreason_queue_depth Requests waiting for a free session.\n# TYPE specreason_queue_depth gauge\n"
                  "specreason_queue_depth %d\n", waiting);
    sb_printf(&b, "# HELP specreason_requests_active Requests holding a session.\n# TYPE specreason_requests_active gauge\n"
                  "specreason_requests_active %d\n", active);
    sb_printf(&b, "# HELP specreason_slots Sessions (--parallel).\n# TYPE specreason_slots gauge\nspecreason_slots %d\n", slots);
    sb_printf(&b, "# HELP specreason_tokens_total Tokens by model and kind.\n# TYPE specreason_tokens_total counter\n");
    sb_printf(&b, "specreason_tokens_total{model=\"small\",kind=\"prompt\"} %llu\n", (unsigned long long)M.prompt_tokens[0]);
    sb_printf(&b, "specreason_tokens_total{model=\"base\",kind=\"prompt\"} %llu\n", (unsigned long long)M.prompt_tokens[1]);
    sb_printf(&b, "specreason_tokens_total{model=\"small\",kind=\"adopted\"} %llu\n", (unsigned long long)M.adopted_tokens[0]);
    sb_printf(&b, "specreason_tokens_total{model=\"base\",kind=\"adopted\"} %llu\n", (unsigned long long)M.adopted_tokens[1]);
    sb_printf(&b, "specreason_tokens_total{model=\"small\",kind=\"rejected\"} %llu\n", (unsigned long long)M.rejected_tokens);
    sb_printf(&b, "specreason_tokens_total{model=\"base\",kind=\"judge\"} %llu\n", (unsigned long long)M.judge_tokens);
    sb_printf(&b, "specreason_tokens_total{model=\"base\",kind=\"answer\"} %llu\n", (unsigned long long)M.answer_tokens);
    sb_printf(&b, "# HELP specreason_steps_total Adopted reasoning steps by outcome.\n# TYPE specreason_steps_total counter\n");
    sb_printf(&b, "specreason_steps_total{outcome=\"accepted\"} %llu\n", (unsigned long long)M.steps_accepted);
    sb_printf(&b, "specreason_steps_total{outcome=\"rejected\"} %llu\n", (unsigned long long)M.steps_rejected);
    sb_printf(&b, "specreason_steps_total{outcome=\"forced\"} %llu\n", (unsigned long long)M.steps_forced);
    sb_printf(&b, "# HELP specreason_judge_calls_total Steps scored by the base model.\n# TYPE specreason_judge_calls_total counter\n"
                  "specreason_judge_calls_total %llu\n", (unsigned long long)M.judge_calls);
    const struct { const char *name, *help; const struct hist *h; } hs[2] = {
        {"specreason_request_duration_seconds", "End-to-end latency of completed runs.", &M.latency},
        {"specreason_time_to_first_token_seconds", "Time from the request to its first reasoning step.", &M.ttft},
    };
    for (int k = 0; k < 2; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hs[k].name, hs[k].help, hs[k].name);
        for (size_t i = 0; i < N_BUCKETS; i++)
            sb_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", hs[k].name, BUCKETS[i], (unsigned long long)hs[k].h->le[i]);
        sb_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hs[k].name,
                  (unsigned long long)hs[k].h->count, hs[k].name, hs[k].h->sum, hs[k].name,
                  (unsigned long long)hs[k].h->count);
    }
    pthread_mutex_unlock(&M.mu);
    if (b.oom) { free(b.d); return NULL; }
    return b.d;
}

/* ---- text helpers -------------------------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at s, 0 if invalid (as the library's JSON writer decides, so
 * the server's strings equal `specreason --json`'s). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

/* A JSON string of s[0..n), invalid UTF-8 bytes replaced by U+FFFD (model text may end inside a
 * character). NULL on allocation failure. */
static json_t *jstr(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        if (!l) { bad++; i++; } else i += l;
    }
    if (!bad) return json_stringn(s, n);
    char *t = malloc(n + 2 * bad + 1);
    if (!t) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        if (!l) { memcpy(t + w, "\xEF\xBF\xBD", 3); w += 3; i++; }
        else { memcpy(t + w, s + i, l); w += l; i += l; }
    }
    json_t *j = json_stringn(t, w);
    free(t);
    return j;
}

static const char *const THINK_END = "</think>";

/* Cuts `s` at the first stop string; returns whether one was found. */
static bool apply_stop(const struct chat_req *cr, char *s, size_t *n) {
    size_t cut = *n;
    for (size_t i = 0; i < cr->n_stop; i++) {
        const char *hit = memmem(s, *n, cr->stop[i], strlen(cr->stop[i]));
        if (hit && (size_t)(hit - s) < cut) cut = (size_t)(hit - s);
    }
    if (cut == *n) return false;
    *n = cut;
    s[cut] = '\0';
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* errors and responses                                                                       */

static json_t *error_json(const struct req_error *e) {
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(e->message));
    json_object_set_new(err, "type", json_string(e->type ? e->type : "invalid_request_error"));
    json_object_set_new(err, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    return root;
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *ctype, char *text) {
    if (!text) {
        static char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(oom), oom, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "application/json");
        enum MHD_Result res = MHD_queue_response(c, 500, r);
        MHD_destroy_response(r);
        return res;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(text); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result res = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return send_text(c, status, "application/json", s);
}

/* ------------------------------------------------------------------------------------------ */
/* one request                                                                                */

struct req {
    int64_t t0;
    char method[16];
    char path[128];
    char *body;
    size_t len, cap;
    bool too_big, is_stream, logged, responded;
    int status;
    const char *outcome; /* "ok", "cancelled", "error" */
    char note[640];
};

static void log_line(const char *method, const char *path, int status, const char *outcome, double ms,
                     const char *note) {
    if (O.quiet) return;
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s %s %d %s %.1fms%s%s\n", ts, method, path, status, outcome ? outcome : "ok", ms,
            note && *note ? " " : "", note ? note : "");
}

/* The work of one chat completion, shared by the run thread and the HTTP side. */
struct job {
    struct chat_req cr;
    struct sr_run_params rp;
    struct sr_message *msgs; /* cr.msgs, with the last user message wrapped if --template */
    char *wrapped;
    int slot;
    int fd;     /* the client's socket, polled for EOF */
    long id;
    time_t created;
    int64_t t0, t_first;
    const char *delim;
    atomic_int cancel;  /* set when the response is destroyed (client gone) */
    atomic_bool client_gone;
    struct sr_result *res;
    enum sr_status st;
    char errmsg[512];

    /* streaming */
    bool sse;
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sbuf out; /* SSE bytes not yet taken by MHD */
    size_t off;
    int phase;       /* 0 = prompt not ready, 1 = streaming, 2 = finished */
    bool started;    /* the 200 response was queued */
    char path[128];

    /* the `specreason` object of the step being written (see on_event) */
    struct sbuf draft;  /* the small model's draft of this step */
    int32_t draft_step, draft_tokens;
    float draft_score;
    double t_draft, t_judge;
};

static bool peer_closed(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char ch;
        ssize_t k = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        return k == 0;
    }
    return false;
}

static bool job_should_abort(void *user) {
    struct job *j = user;
    if (atomic_load(&G.stopping) || atomic_load(&j->cancel)) return true;
    if (peer_closed(j->fd)) {
        j->client_gone = true;
        return true;
    }
    return false;
}

/* Slots: take a free session, or wait in the queue, or refuse. Returns the slot or -1 (err set). */
static int slot_acquire(struct job *j, struct req_error *err) {
    pthread_mutex_lock(&G.mu);
    int slot = -1;
    bool queued = false;
    for (;;) {
        if (atomic_load(&G.stopping)) {
            req_fail(err, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
            break;
        }
        for (int i = 0; i < G.n_slots && slot < 0; i++)
            if (!G.busy[i]) slot = i;
        if (slot >= 0) {
            G.busy[slot] = true;
            G.n_active++;
            break;
        }
        if (!queued) {
            if (G.n_waiting >= G.queue_max) {
                req_fail(err, 429, "rate_limit_error", NULL, "queue_full",
                         "all %d sessions are busy and %d requests are waiting; try again later", G.n_slots, G.n_waiting);
                break;
            }
            queued = true;
            G.n_waiting++;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&G.cv, &G.mu, &ts);
        if (peer_closed(j->fd)) {
            j->client_gone = true;
            req_fail(err, 503, "server_error", NULL, "client_gone", "the client went away while queued");
            break;
        }
    }
    if (queued) G.n_waiting--;
    pthread_mutex_unlock(&G.mu);
    return slot;
}

static void slot_release(int slot) {
    pthread_mutex_lock(&G.mu);
    G.busy[slot] = false;
    G.n_active--;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

/* Request fields over the server's defaults; false with err set if they do not make sense. */
static bool job_params(struct job *j, struct req_error *err) {
    const struct chat_req *cr = &j->cr;
    struct sr_run_params *p = &j->rp;
    *p = G.rp;
    if (cr->has_temperature) p->small.temperature = p->base.temperature = (float)cr->temperature;
    if (cr->has_top_p) p->small.top_p = p->base.top_p = (float)cr->top_p;
    if (cr->has_seed) p->seed = cr->seed;
    if (cr->has_max_tokens) p->token_budget = (int32_t)cr->max_tokens;
    if (cr->has_token_budget) p->token_budget = (int32_t)cr->token_budget;
    if (cr->has_threshold) p->threshold = (float)cr->threshold;
    if (cr->has_first_n_base) p->first_n_base = (int32_t)cr->first_n_base;
    if (cr->score_method >= 0) p->score_method = (enum sr_score_method)cr->score_method;
    if (cr->mode >= 0) p->mode = (enum sr_mode)cr->mode;
    if (cr->spec_decode >= 0) p->spec_decode = cr->spec_decode != 0;
    if (cr->policy >= 0) p->policy = (enum sr_policy)cr->policy;
    if (cr->has_max_step_tokens) p->max_step_tokens = (int32_t)cr->max_step_tokens;
    if (cr->has_max_answer_tokens) p->max_answer_tokens = (int32_t)cr->max_answer_tokens;
    p->prompt_template = NULL;
    p->should_abort = job_should_abort;
    p->user = j;
    struct sr_error e = {0};
    if (sr_run_params_check(p, &e) != SR_OK) {
        req_fail(err, 400, "invalid_request_error", NULL, "invalid_value", "%s", e.msg);
        return false;
    }
    j->delim = p->step_delim ? p->step_delim : "\n\n";
    /* --template: wrap the last user message. */
    j->msgs = cr->msgs;
    if (G.wrap) {
        size_t last = cr->n_msgs;
        for (size_t i = 0; i < cr->n_msgs; i++)
            if (strcmp(cr->msgs[i].role, "user") == 0) last = i;
        if (last < cr->n_msgs) {
            struct sbuf b = {0};
            const char *t = G.wrap, *key = "{problem}";
            for (;;) {
                const char *hit = strstr(t, key);
                if (!hit) { sb_add(&b, t, strlen(t)); break; }
                sb_add(&b, t, (size_t)(hit - t));
                sb_add(&b, cr->msgs[last].content, strlen(cr->msgs[last].content));
                t = hit + strlen(key);
            }
            j->msgs = malloc(cr->n_msgs * sizeof *j->msgs);
            if (b.oom || !j->msgs || !b.d) {
                free(b.d);
                free(j->msgs);
                j->msgs = cr->msgs;
                req_fail(err, 500, "server_error", NULL, NULL, "out of memory");
                return false;
            }
            memcpy(j->msgs, cr->msgs, cr->n_msgs * sizeof *j->msgs);
            j->wrapped = b.d;
            j->msgs[last].content = j->wrapped;
        }
    }
    return true;
}

static void job_free(struct job *j) {
    if (!j) return;
    if (j->msgs != j->cr.msgs) free(j->msgs);
    free(j->wrapped);
    chat_req_free(&j->cr);
    sr_result_free(j->res);
    free(j->out.d);
    free(j->draft.d);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* The run's statistics as the response's `specreason` object. */
static json_t *stats_json(const struct sr_result *r, const struct sr_run_params *p) {
    const struct sr_stats *S = &r->stats;
    json_t *hist = json_array();
    for (int i = 0; i < 10; i++) json_array_append_new(hist, json_integer(S->score_hist[i]));
    json_t *steps = json_array();
    for (size_t i = 0; i < r->n_steps; i++) {
        const struct sr_step *s = &r->steps[i];
        json_t *o = json_pack("{s:s,s:I}", "author", sr_author_str(s->author), "tokens", (json_int_t)s->n_tokens);
        json_object_set_new(o, "score", s->score >= 0 ? json_real(s->score) : json_null());
        if (s->draft) json_object_set_new(o, "draft_score", json_real(s->draft_score));
        json_array_append_new(steps, o);
    }
    json_t *o = json_pack("{s:s,s:s,s:f,s:s,s:b,s:s}", "mode", sr_mode_str(p->mode), "policy", sr_policy_str(p->policy),
                          "threshold", (double)p->threshold,
                          "score_method", p->score_method == SR_SCORE_GREEDY    ? "greedy"
                                          : p->score_method == SR_SCORE_AVERAGE ? "average"
                                                                                : "digit-softmax",
                          "spec_decode", (int)p->spec_decode, "stop", sr_stop_str(r->stop));
    json_object_set_new(o, "steps_by_author",
                        json_pack("{s:I,s:I,s:I,s:I}", "total", (json_int_t)S->n_steps, "small",
                                  (json_int_t)S->n_steps_small, "base_reject", (json_int_t)S->n_steps_base_reject,
                                  "base_forced", (json_int_t)S->n_steps_base_forced));
    json_object_set_new(o, "think_ended", json_boolean(r->answer != NULL));
    json_object_set_new(o, "judged", json_integer(S->n_judged));
    json_object_set_new(o, "acceptance", json_real(S->acceptance));
    json_object_set_new(o, "score_hist", hist);
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "tokens",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "prompt_small", (json_int_t)S->n_prompt_tokens_small,
                                  "prompt_base", (json_int_t)S->n_prompt_tokens_base, "adopted_small",
                                  (json_int_t)S->n_adopted_small, "adopted_base", (json_int_t)S->n_adopted_base,
                                  "rejected", (json_int_t)S->n_rejected_tokens, "judge", (json_int_t)S->n_judge_tokens,
                                  "sync", (json_int_t)S->n_sync_tokens, "answer", (json_int_t)S->n_answer_tokens));
    json_object_set_new(o, "time_ms",
                        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "small", S->t_small_ms, "judge", S->t_judge_ms, "base",
                                  S->t_base_ms, "sync", S->t_sync_ms, "prompt", S->t_prompt_ms, "other", S->t_other_ms,
                                  "total", S->t_total_ms));
    json_object_set_new(o, "tokens_per_s", json_real(S->tokens_per_s));
    if (p->spec_decode)
        json_object_set_new(o, "spec_decode_stats",
                            json_pack("{s:I,s:I,s:I}", "drafted", (json_int_t)S->n_sd_drafted, "accepted",
                                      (json_int_t)S->n_sd_accepted, "batches", (json_int_t)S->n_sd_batches));
    return o;
}

static json_t *usage_json(const struct sr_result *r, const struct sr_run_params *p) {
    const struct sr_stats *S = &r->stats;
    json_int_t prompt = p->mode == SR_MODE_SMALL ? S->n_prompt_tokens_small : S->n_prompt_tokens_base;
    json_int_t reasoning = S->n_adopted_tokens, completion = S->n_adopted_tokens + S->n_answer_tokens;
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", prompt, "completion_tokens", completion, "total_tokens",
                     prompt + completion, "completion_tokens_details", "reasoning_tokens", reasoning);
}

/* Splits a result into reasoning and answer: text = reasoning [+ "</think>" + answer]. When the
 * thinking never closed but a step carries the answer marker, that last step is the content. */
static void split_result(const struct sr_result *r, size_t *reason_len, const char **content, size_t *content_len) {
    size_t n = strlen(r->text);
    *content = "";
    *content_len = 0;
    *reason_len = n;
    if (r->answer) {
        size_t al = strlen(r->answer);
        size_t cut = n - al;
        size_t tl = strlen(THINK_END);
        *reason_len = cut >= tl ? cut - tl : 0;
        *content = r->answer;
        *content_len = al;
    } else if (r->stop == SR_STOP_ANSWER && r->n_steps > 0) {
        *content = r->steps[r->n_steps - 1].text;
        *content_len = strlen(*content);
    }
}

static const char *finish_reason(const struct sr_result *r, bool stopped) {
    if (stopped) return "stop";
    return r->stop == SR_STOP_BUDGET ? "length" : "stop";
}

static json_t *completion_json(struct job *j) {
    const struct sr_result *r = j->res;
    size_t rl, cl;
    const char *content;
    split_result(r, &rl, &content, &cl);
    char *c = strndup(content, cl);
    if (!c) return NULL;
    bool stopped = apply_stop(&j->cr, c, &cl);
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    json_object_set_new(msg, "content", jstr(c, cl));
    json_object_set_new(msg, "reasoning_content", jstr(r->text, rl));
    free(c);
    json_t *choice = json_pack("{s:i,s:o,s:s}", "index", 0, "message", msg, "finish_reason", finish_reason(r, stopped));
    json_object_set_new(choice, "logprobs", json_null());
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-sr%ld", j->id);
    json_t *root = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", id, "object", "chat.completion", "created",
                             (json_int_t)j->created, "model", G.model_id, "choices", choice);
    json_object_set_new(root, "usage", usage_json(r, &j->rp));
    json_t *sp = stats_json(r, &j->rp);
    if (sp && j->cr.want_result) { /* the library's own JSON form of the result (specreason-eval --server) */
        char *full = sr_result_to_json(r, &j->rp);
        json_t *res = full ? json_loads(full, JSON_ALLOW_NUL, NULL) : NULL;
        sr_free(full);
        if (!res) {
            json_decref(sp);
            json_decref(root);
            return NULL;
        }
        json_object_set_new(sp, "result", res);
    }
    json_object_set_new(root, "specreason", sp);
    return root;
}

/* ---- streaming ------------------------------------------------------------------------------ */

/* Appends one SSE event with a chat.completion.chunk (or raw JSON if `raw`). Caller holds j->mu. */
static void sse_json(struct job *j, json_t *obj) {
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) { j->out.oom = true; return; }
    sb_add(&j->out, "data: ", 6);
    sb_add(&j->out, s, strlen(s));
    sb_add(&j->out, "\n\n", 2);
    free(s);
}

static json_t *chunk(struct job *j, json_t *delta, const char *finish) {
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-sr%ld", j->id);
    json_t *choice = json_pack("{s:i,s:o}", "index", 0, "delta", delta);
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", id, "object", "chat.completion.chunk", "created",
                     (json_int_t)j->created, "model", G.model_id, "choices", choice);
}

/* One delta chunk; ext (stolen, may be NULL) becomes its `specreason` object. */
static void sse_delta(struct job *j, const char *field_name, const char *text, size_t len, json_t *ext) {
    json_t *d = json_object();
    json_object_set_new(d, field_name, jstr(text, len));
    json_t *c = chunk(j, d, NULL);
    if (c && ext) json_object_set_new(c, "specreason", ext);
    else json_decref(ext);
    pthread_mutex_lock(&j->mu);
    sse_json(j, c);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* The `specreason` object of an adopted step's chunk: index, author, judge score, tokens, time
 * split and, after a rejection, the small model's draft with its score (README, "Streaming"). */
static json_t *step_ext(struct job *j, const struct sr_event *ev) {
    bool drafted = j->draft_step == ev->step;
    double t_draft = drafted ? j->t_draft : 0, t_judge = drafted ? j->t_judge : 0;
    bool by_base = ev->author == SR_AUTHOR_BASE_REJECT || ev->author == SR_AUTHOR_BASE_FORCED;
    double t_base = by_base ? ev->t_ms - t_draft - t_judge : 0;
    json_t *o = json_pack("{s:i,s:s,s:i,s:f,s:f,s:f,s:f}", "step", (int)ev->step, "author", sr_author_str(ev->author),
                          "tokens", (int)ev->n_tokens, "t_ms", ev->t_ms, "t_draft_ms", t_draft, "t_judge_ms", t_judge,
                          "t_base_ms", t_base < 0 ? 0 : t_base);
    if (!o) return NULL;
    json_object_set_new(o, "score", ev->score >= 0 ? json_real(ev->score) : json_null());
    if (ev->author == SR_AUTHOR_BASE_REJECT && drafted) {
        json_object_set_new(o, "rejected_draft", jstr(j->draft.d ? j->draft.d : "", j->draft.n));
        json_object_set_new(o, "draft_score", j->draft_score >= 0 ? json_real(j->draft_score) : json_null());
        json_object_set_new(o, "draft_tokens", json_integer(j->draft_tokens));
    }
    return o;
}

static bool on_event(const struct sr_event *ev, void *user) {
    struct job *j = user;
    switch (ev->type) {
    case SR_EVENT_STEP_DRAFTED:
        if (!j->sse) break;
        j->draft.n = 0;
        j->draft.oom = false;
        sb_add(&j->draft, ev->text, ev->len);
        j->draft_step = ev->step;
        j->draft_tokens = ev->n_tokens;
        j->draft_score = -1;
        j->t_draft = ev->t_ms;
        j->t_judge = 0;
        break;
    case SR_EVENT_STEP_SCORED:
        if (j->sse && j->draft_step == ev->step) {
            j->draft_score = ev->score;
            j->t_judge = ev->t_ms;
        }
        break;
    case SR_EVENT_PROMPT:
        if (j->sse) {
            pthread_mutex_lock(&j->mu);
            sse_json(j, chunk(j, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
            j->phase = 1;
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
        }
        break;
    case SR_EVENT_STEP_ADOPTED: {
        if (!j->t_first) j->t_first = now_us();
        if (!j->sse) break;
        /* The stream adds up to the result's text: each step with its delimiter, except the one
         * that ends the thinking (its "</think>" is not reasoning). */
        size_t n = ev->len, tl = strlen(THINK_END);
        bool ended = n >= tl && memcmp(ev->text + n - tl, THINK_END, tl) == 0;
        struct sbuf b = {0};
        sb_add(&b, ev->text, ended ? n - tl : n);
        if (!ended) sb_add(&b, j->delim, strlen(j->delim));
        json_t *ext = step_ext(j, ev);
        if (!b.oom && (b.n || ext)) sse_delta(j, "reasoning_content", b.d ? b.d : "", b.n, ext);
        else json_decref(ext);
        free(b.d);
        j->draft_step = -1;
        break;
    }
    default: break;
    }
    return !job_should_abort(j);
}

/* Runs the job on its session. */
static void job_run(struct job *j) {
    struct sr_session *s = G.sess[j->slot];
    j->rp.on_event = on_event;
    j->st = sr_session_run_chat(s, j->msgs, j->cr.n_msgs, &j->rp, &j->res);
    if (j->st != SR_OK) snprintf(j->errmsg, sizeof j->errmsg, "%s", sr_session_errmsg(s));
    slot_release(j->slot);
    j->slot = -1;
}

static struct req_error run_error(const struct job *j) {
    struct req_error e = {0};
    switch (j->st) {
    case SR_ERR_CONTEXT_FULL:
        req_fail(&e, 400, "invalid_request_error", "messages", "context_length_exceeded", "%s", j->errmsg);
        break;
    case SR_ERR_INVALID_ARG: req_fail(&e, 400, "invalid_request_error", NULL, "invalid_value", "%s", j->errmsg); break;
    case SR_ERR_ABORTED:
        req_fail(&e, 503, "server_error", NULL, atomic_load(&G.stopping) ? "shutting_down" : "cancelled", "%s",
                 atomic_load(&G.stopping) ? "the server is shutting down" : "the request was cancelled");
        break;
    default: req_fail(&e, 500, "server_error", NULL, NULL, "%s: %s", sr_status_str(j->st), j->errmsg); break;
    }
    return e;
}

static void job_account(struct job *j, int status, const char *path) {
    double ms = (double)(now_us() - j->t0) / 1000.0;
    bool cancelled = j->st == SR_ERR_ABORTED || j->client_gone || (j->res && j->res->stop == SR_STOP_CANCELLED);
    metric_request(status, cancelled);
    char note[640] = "";
    if (j->res) {
        if (!cancelled) metric_run(j->res, ms / 1000.0, j->t_first ? (double)(j->t_first - j->t0) / 1e6 : -1);
        const struct sr_stats *S = &j->res->stats;
        snprintf(note, sizeof note, "id=%ld stream=%d steps=%d accepted=%d judged=%d tokens=%lld+%lld stop=%s",
                 j->id, j->sse, S->n_steps, S->n_steps_small, S->n_judged, (long long)S->n_adopted_tokens,
                 (long long)S->n_answer_tokens, sr_stop_str(j->res->stop));
    } else {
        snprintf(note, sizeof note, "id=%ld stream=%d %s%s", j->id, j->sse, j->client_gone ? "client gone: " : "",
                 j->errmsg);
    }
    log_line("POST", path, status, cancelled ? "cancelled" : j->st == SR_OK ? "ok" : "error", ms, note);
}

static void *stream_thread(void *arg) {
    struct job *j = arg;
    job_run(j);
    pthread_mutex_lock(&j->mu);
    if (j->phase == 0) {
        /* Failed before the prompt was ready: the HTTP side answers with a plain error. */
        j->phase = 2;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        return NULL;
    }
    pthread_mutex_unlock(&j->mu);
    if (j->st == SR_OK) {
        const struct sr_result *r = j->res;
        size_t rl, cl;
        const char *content;
        split_result(r, &rl, &content, &cl);
        char *c = strndup(content, cl);
        bool stopped = c ? apply_stop(&j->cr, c, &cl) : false;
        if (c && cl)
            sse_delta(j, "content", c, cl,
                      json_pack("{s:s,s:I}", "author", "answer", "tokens", (json_int_t)r->stats.n_answer_tokens));
        free(c);
        pthread_mutex_lock(&j->mu);
        json_t *last = chunk(j, json_object(), finish_reason(r, stopped));
        json_object_set_new(last, "specreason", stats_json(r, &j->rp));
        sse_json(j, last);
        if (j->cr.include_usage) {
            char id[48];
            snprintf(id, sizeof id, "chatcmpl-sr%ld", j->id);
            json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:[]}", "id", id, "object", "chat.completion.chunk", "created",
                                  (json_int_t)j->created, "model", G.model_id, "choices");
            json_object_set_new(u, "usage", usage_json(r, &j->rp));
            sse_json(j, u);
        }
    } else {
        struct req_error e = run_error(j);
        pthread_mutex_lock(&j->mu);
        sse_json(j, error_json(&e));
    }
    sb_add(&j->out, "data: [DONE]\n\n", 14);
    j->phase = 2;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_account(j, 200, j->path);
    return NULL;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->off == j->out.n && j->phase != 2) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    ssize_t k;
    if (j->off < j->out.n) {
        size_t n = j->out.n - j->off;
        if (n > max) n = max;
        memcpy(buf, j->out.d + j->off, n);
        j->off += n;
        if (j->off == j->out.n) j->off = j->out.n = 0;
        k = (ssize_t)n;
    } else {
        k = j->client_gone || j->out.oom ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&j->mu);
    return k;
}

/* MHD destroys the response when the connection is done (finished or gone): stop the run. */
static void sse_free(void *cls) {
    struct job *j = cls;
    atomic_store(&j->cancel, 1);
    if (j->th_started) pthread_join(j->th, NULL);
    job_free(j);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP                                                                                       */

static bool authorized(struct MHD_Connection *c) {
    if (!G.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *k = h + 7;
    size_t a = strlen(k), b = strlen(G.api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(k[i] ^ G.api_key[i]);
    return diff == 0;
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct req *rq, const struct req_error *e) {
    rq->status = e->status;
    rq->responded = true;
    rq->outcome = "error";
    snprintf(rq->note, sizeof rq->note, "%s", e->message);
    return send_json(c, e->status, error_json(e));
}

static enum MHD_Result handle_chat(struct MHD_Connection *c, struct req *rq) {
    struct req_error e = {0};
    if (!atomic_load(&G.ready)) {
        req_fail(&e, 503, "server_error", NULL, "loading", "Loading model");
        return send_error(c, rq, &e);
    }
    if (rq->too_big) {
        req_fail(&e, 413, "invalid_request_error", NULL, "request_too_large", "the request body exceeds %zu bytes",
                 G.max_body);
        return send_error(c, rq, &e);
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) return send_text(c, 500, "application/json", NULL);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->slot = -1;
    j->draft_step = -1;
    j->t0 = rq->t0;
    j->created = time(NULL);
    j->id = atomic_fetch_add(&G.next_id, 1);
    snprintf(j->path, sizeof j->path, "%s", rq->path);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    if (chat_req_parse(rq->body ? rq->body : "", rq->len, &j->cr, &e) != 0) {
        job_free(j);
        return send_error(c, rq, &e);
    }
    if (j->cr.model && strcmp(j->cr.model, G.model_id) != 0) {
        req_fail(&e, 404, "invalid_request_error", "model", "model_not_found",
                 "the model '%.200s' does not exist (this server serves '%s')", j->cr.model, G.model_id);
        job_free(j);
        return send_error(c, rq, &e);
    }
    if (!job_params(j, &e)) {
        job_free(j);
        return send_error(c, rq, &e);
    }
    j->slot = slot_acquire(j, &e);
    if (j->slot < 0) {
        bool gone = j->client_gone;
        job_free(j);
        if (gone) {
            rq->status = 503;
            rq->outcome = "cancelled";
            snprintf(rq->note, sizeof rq->note, "client went away while queued");
            metric_request(503, true);
            rq->logged = true;
            log_line(rq->method, rq->path, 503, "cancelled", (double)(now_us() - rq->t0) / 1000.0, rq->note);
            return MHD_NO;
        }
        return send_error(c, rq, &e);
    }
    j->sse = j->cr.stream;
    if (!j->sse) {
        job_run(j);
        enum MHD_Result res;
        int status;
        if (j->st == SR_OK) {
            status = 200;
            res = send_json(c, 200, completion_json(j));
        } else {
            e = run_error(j);
            status = e.status;
            res = send_json(c, e.status, error_json(&e));
        }
        rq->logged = true;
        job_account(j, status, rq->path);
        bool gone = j->client_gone;
        job_free(j);
        return gone ? MHD_NO : res;
    }
    /* Streaming: the run thread fills j->out; wait until the prompt is in (or the run failed). */
    rq->is_stream = true;
    if (pthread_create(&j->th, NULL, stream_thread, j) != 0) {
        slot_release(j->slot);
        job_free(j);
        req_fail(&e, 500, "server_error", NULL, NULL, "could not start a thread");
        return send_error(c, rq, &e);
    }
    j->th_started = true;
    pthread_mutex_lock(&j->mu);
    while (j->phase == 0) pthread_cond_wait(&j->cv, &j->mu);
    bool early_fail = j->phase == 2 && j->out.n == 0;
    pthread_mutex_unlock(&j->mu);
    if (early_fail) {
        pthread_join(j->th, NULL);
        j->th_started = false;
        e = run_error(j);
        rq->is_stream = false;
        enum MHD_Result res = send_json(c, e.status, error_json(&e));
        rq->logged = true;
        job_account(j, e.status, rq->path);
        job_free(j);
        return res;
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, j, sse_free);
    if (!r) {
        sse_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    rq->logged = true; /* the run thread logs */
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result handle_models(struct MHD_Connection *c) {
    char small[512] = "", base[512] = "";
    sr_engine_model_desc(G.eng, false, small, sizeof small);
    sr_engine_model_desc(G.eng, true, base, sizeof base);
    json_t *m = json_pack("{s:s,s:s,s:I,s:s}", "id", G.model_id, "object", "model", "created", (json_int_t)G.created,
                          "owned_by", "specreason");
    json_object_set_new(m, "meta", json_pack("{s:s,s:s}", "small", small, "base", base));
    return send_json(c, 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

/* The live page (web/, compiled in by cmake/embed_web.cmake) at / and its files. Public like
 * /health: the page holds no data; its API calls carry the key the user types in. */
static enum MHD_Result send_asset(struct MHD_Connection *c, struct req *rq, const struct sr_web_asset *a) {
    struct MHD_Response *r = MHD_create_response_from_buffer(a->len, (void *)(uintptr_t)a->data,
                                                             MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->content_type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    rq->status = 200;
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result dispatch(struct MHD_Connection *c, struct req *rq) {
    const char *path = rq->path, *method = rq->method;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    struct req_error e = {0};
    const struct sr_web_asset *asset = get || strcmp(method, "HEAD") == 0 ? sr_web_asset_find(path) : NULL;
    if (asset) return send_asset(c, rq, asset);
    if (strcmp(path, "/health") == 0 || strcmp(path, "/v1/health") == 0) {
        rq->status = atomic_load(&G.ready) ? 200 : 503;
        if (rq->status == 200) return send_json(c, 200, json_pack("{s:s}", "status", "ok"));
        req_fail(&e, 503, "unavailable_error", NULL, "loading", "Loading model");
        return send_json(c, 503, error_json(&e));
    }
    if (!authorized(c)) {
        req_fail(&e, 401, "authentication_error", NULL, "invalid_api_key", "invalid or missing API key (Authorization: Bearer KEY)");
        return send_error(c, rq, &e);
    }
    bool chat = strcmp(path, "/v1/chat/completions") == 0 || strcmp(path, "/chat/completions") == 0;
    bool models = strcmp(path, "/v1/models") == 0 || strcmp(path, "/models") == 0;
    bool metrics = strcmp(path, "/metrics") == 0;
    if (!chat && !models && !metrics) {
        req_fail(&e, 404, "not_found_error", NULL, "not_found", "no endpoint %.100s %.100s", method, path);
        return send_error(c, rq, &e);
    }
    if ((chat && !post) || (!chat && !get)) {
        req_fail(&e, 405, "invalid_request_error", NULL, "method_not_allowed", "%.100s needs %s", path, chat ? "POST" : "GET");
        return send_error(c, rq, &e);
    }
    if (chat) return handle_chat(c, rq);
    rq->status = 200;
    if (models) {
        if (!atomic_load(&G.ready)) {
            req_fail(&e, 503, "server_error", NULL, "loading", "Loading model");
            return send_error(c, rq, &e);
        }
        return handle_models(c);
    }
    return send_text(c, 200, "text/plain; version=0.0.4", metrics_text());
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls;
    (void)version;
    struct req *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->t0 = now_us();
        snprintf(rq->method, sizeof rq->method, "%s", method);
        snprintf(rq->path, sizeof rq->path, "%s", url);
        *con_cls = rq;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > G.max_body) {
            /* Refuse before reading the body (the connection is closed after the answer). */
            rq->too_big = true;
            struct req_error e;
            req_fail(&e, 413, "invalid_request_error", NULL, "request_too_large",
                     "the request body exceeds %zu bytes", G.max_body);
            return send_error(c, rq, &e);
        }
        return MHD_YES;
    }
    if (rq->responded) { /* refused before the body was read */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_big) return MHD_YES;
        if (rq->len + n > G.max_body) {
            rq->too_big = true;
            free(rq->body);
            rq->body = NULL;
            rq->len = rq->cap = 0;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1) cap *= 2;
            char *p = realloc(rq->body, cap);
            if (!p) return MHD_NO;
            rq->body = p;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    return dispatch(c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    struct req *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    bool chat = strstr(rq->path, "chat/completions") != NULL;
    if (!rq->logged && rq->status) {
        if (chat) metric_request(rq->status, false);
        log_line(rq->method, rq->path, rq->status, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? rq->outcome : "client gone",
                     (double)(now_us() - rq->t0) / 1000.0, rq->note);
    }
    free(rq->body);
    free(rq);
}

static void log_stderr(enum sr_log_level level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "[%s] %s\n", level >= SR_LOG_ERROR ? "error" : level >= SR_LOG_WARN ? "warn" : "info", msg);
}

static bool is_loopback(const char *host) {
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
           strncmp(host, "127.", 4) == 0;
}

#define bad(...) opt_bad(PROG, __VA_ARGS__)
#define pick(val, what, names, n, out) opt_pick(PROG, val, what, names, n, out)

int main(int argc, char **argv) {
    struct sr_run_params rp = sr_run_default_params();
    common_opts_init(&O.o);
    O.threshold = rp.threshold;
    O.port = 8080;
    O.parallel = 1;
    O.queue = 16;
    O.max_body = 1 << 20;
    int rc = opt_parse(PROG, OPTS, N_OPTS, argc, argv, on_set, NULL);
    if (rc) return rc;
    if (O.help) { usage(stdout); return 0; }
    if (O.version) { printf(PROG " %s\n", sr_version()); return 0; }

    int v = 0;
    if (O.mode) {
        static const char *const m[] = {"spec", "base", "small"};
        if ((rc = pick(O.mode, "mode", m, 3, &v))) return rc;
        rp.mode = (enum sr_mode)v;
    }
    if ((rc = common_opts_run_params(PROG, &O.o, &rp))) return rc;
    G.wrap = NULL;
    if (O.template_name) {
        static const char *const m[] = {"math", "gpqa", "raw"};
        if ((rc = pick(O.template_name, "template", m, 3, &v))) return rc;
        G.wrap = v == 0 ? SR_PROMPT_MATH : v == 1 ? SR_PROMPT_GPQA : NULL;
    }
    if (O.prompt_template) G.wrap = O.prompt_template;
    rp.threshold = (float)O.threshold;
    rp.seed = O.seed;
    rp.spec_decode = O.spec_decode;
    struct sr_error err = {0};
    if (sr_run_params_check(&rp, &err) != SR_OK) return bad("%s", err.msg);
    bool have_small = O.o.small_path || O.o.small_url, have_base = O.o.base_path || O.o.base_url;
    if (!have_small && !have_base) return bad("give --small and --base (or one of them for modes small/base)");

    G.api_key = O.api_key ? O.api_key : getenv("SPECREASON_API_KEY");
    if (G.api_key && !*G.api_key) G.api_key = NULL;
    const char *host = O.host ? O.host : "127.0.0.1";
    if (!G.api_key && O.host && !is_loopback(host))
        fprintf(stderr, PROG ": warning: listening on %s without --api-key: anyone who can reach it may use it\n", host);
    G.model_id = O.model_name ? O.model_name : "specreason";
    G.max_body = (size_t)O.max_body;
    G.queue_max = (int)O.queue;
    G.rp = rp;
    G.created = time(NULL);
    atomic_store(&G.next_id, 1);

    if (O.verbose) sr_log_set(log_stderr, NULL, SR_LOG_WARN);
    else sr_log_set(NULL, NULL, SR_LOG_ERROR);

    /* Signals are taken by sigwait in this thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)O.port);
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return bad("--host expects an IPv4 address, got '%s'", host);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)O.port, NULL, NULL, on_request, NULL,
                                            MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(O.parallel + O.queue + 64),
                                            MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, PROG ": cannot listen on %s:%lld: %s\n", host, (long long)O.port, strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : (unsigned)O.port;
    fprintf(stderr, PROG ": listening on http://%s:%u (loading models)\n", host, port);

    /* Requests may ask for any mode: load every model given (a mode whose model is missing fails
     * that request with a clear error). */
    struct sr_engine_params ep;
    common_opts_engine_params(&O.o, have_small, have_base, &ep);
    ep.n_parallel = (int32_t)O.parallel; /* one shared context per model, requests batched together */
    int ret = 0;
    if (sr_engine_init(&ep, &G.eng, &err) != SR_OK) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        MHD_stop_daemon(d);
        return 1;
    }
    G.n_slots = (int)O.parallel;
    G.sess = calloc((size_t)G.n_slots, sizeof *G.sess);
    G.busy = calloc((size_t)G.n_slots, sizeof *G.busy);
    if (!G.sess || !G.busy) {
        fprintf(stderr, PROG ": out of memory\n");
        ret = 1;
        goto out;
    }
    for (int i = 0; i < G.n_slots; i++) {
        if (sr_session_init(G.eng, &G.sess[i], &err) != SR_OK) {
            fprintf(stderr, PROG ": session %d: %s\n", i, err.msg);
            ret = 1;
            goto out;
        }
    }
    atomic_store(&G.ready, 1);
    fprintf(stderr, PROG ": ready on http://%s:%u (model '%s', %d sessions, queue %d)\n", host, port, G.model_id,
            G.n_slots, G.queue_max);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, PROG ": %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
out:
    atomic_store(&G.stopping, 1);
    pthread_mutex_lock(&G.mu);
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    MHD_stop_daemon(d); /* joins every connection thread; runs in flight see `stopping` and stop */
    for (int i = 0; G.sess && i < G.n_slots; i++) sr_session_free(G.sess[i]);
    free(G.sess);
    free(G.busy);
    sr_engine_free(G.eng);
    return ret;
}
