/*
 * engine.c: the public API: engines (loaded models), sessions (per-problem contexts), runs,
 * and the JSON form of a result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "internal.h"
#include "result_json.h"

/* Each model is in-process (llama) or behind an HTTP endpoint (remote), never both. */
struct sr_engine {
    struct sr_llama_model *small;
    struct sr_llama_model *base;
    struct sr_remote_model *small_remote;
    struct sr_remote_model *base_remote;
    struct sr_ctl_shared *ctl; /* the controller's model of this pair, shared by its sessions */
};

struct sr_session {
    struct sr_engine *engine;
    struct sr_lm *small;
    struct sr_lm *base;
    char errmsg[512];
};

void sr_log_set_internal(sr_log_fn fn, void *user, enum sr_log_level min_level);

void sr_log_set(sr_log_fn fn, void *user, enum sr_log_level min_level) {
    sr_log_set_internal(fn, user, min_level);
    sr_llama_log_install();
}

struct sr_engine_params sr_engine_default_params(void) {
    struct sr_engine_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* The backend choice: a URL means the remote backend (path, if any, is then only its
 * vocabulary), else a path means in-process llama.cpp, else the model is not loaded. */
static enum sr_status load_model(const struct sr_model_params *mp, const char *role, struct sr_llama_model **local,
                                 struct sr_remote_model **remote, struct sr_error *err) {
    if (mp->url && *mp->url) {
        if (mp->rpc && *mp->rpc)
            return sr_seterr(err, SR_ERR_INVALID_ARG, "%s model: RPC workers apply to in-process models, not to a URL", role);
        return sr_remote_model_load(mp, role, remote, err);
    }
    if (mp->path) return sr_llama_model_load(mp, role, local, err);
    return SR_OK;
}

static enum sr_status new_lm(struct sr_llama_model *local, struct sr_remote_model *remote, struct sr_lm **out,
                             struct sr_error *err) {
    if (remote) return sr_remote_lm_init(remote, out, err);
    if (local) return sr_llama_lm_init(local, out, err);
    return SR_OK;
}

enum sr_status sr_engine_init(const struct sr_engine_params *p, struct sr_engine **out, struct sr_error *err) {
    if (!out) return sr_seterr(err, SR_ERR_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!p) return sr_seterr(err, SR_ERR_INVALID_ARG, "no parameters");
    if (!p->small.path && !p->base.path && !p->small.url && !p->base.url)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "no model path or URL given");
    struct sr_engine *e = calloc(1, sizeof *e);
    if (!e) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    e->ctl = sr_ctl_shared_new();
    if (!e->ctl) {
        free(e);
        return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    }
    enum sr_status st = load_model(&p->small, "small", &e->small, &e->small_remote, err);
    if (st == SR_OK) st = load_model(&p->base, "base", &e->base, &e->base_remote, err);
    if (st == SR_OK && (p->n_parallel < 0 || p->n_parallel > 256))
        st = sr_seterr(err, SR_ERR_INVALID_ARG, "n_parallel must be in [0, 256]");
    /* Batching across sessions: one shared context per in-process model (a remote model's
     * sessions are requests to its server, which batches them itself). */
    if (st == SR_OK && e->small) st = sr_llama_model_share(e->small, p->n_parallel, err);
    if (st == SR_OK && e->base) st = sr_llama_model_share(e->base, p->n_parallel, err);
    if (st != SR_OK) {
        sr_engine_free(e);
        return st;
    }
    *out = e;
    return SR_OK;
}

void sr_engine_free(struct sr_engine *e) {
    if (!e) return;
    sr_llama_model_free(e->small);
    sr_llama_model_free(e->base);
    sr_remote_model_free(e->small_remote);
    sr_remote_model_free(e->base_remote);
    sr_ctl_shared_free(e->ctl);
    free(e);
}

int sr_engine_model_desc(const struct sr_engine *e, bool base, char *buf, size_t size) {
    const struct sr_remote_model *r = base ? e->base_remote : e->small_remote;
    if (r) return sr_remote_model_desc(r, buf, size);
    const struct sr_llama_model *m = base ? e->base : e->small;
    if (!m) return -1;
    return sr_llama_model_desc(m, buf, size);
}

enum sr_status sr_session_init(struct sr_engine *e, struct sr_session **out, struct sr_error *err) {
    if (!out) return sr_seterr(err, SR_ERR_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!e) return sr_seterr(err, SR_ERR_INVALID_ARG, "no engine");
    struct sr_session *s = calloc(1, sizeof *s);
    if (!s) return sr_seterr(err, SR_ERR_NOMEM, "out of memory");
    s->engine = e;
    enum sr_status st = SR_OK;
    st = new_lm(e->small, e->small_remote, &s->small, err);
    if (st == SR_OK) st = new_lm(e->base, e->base_remote, &s->base, err);
    if (st != SR_OK) {
        sr_session_free(s);
        return st;
    }
    *out = s;
    return SR_OK;
}

void sr_session_free(struct sr_session *s) {
    if (!s) return;
    if (s->small) s->small->ops->free(s->small);
    if (s->base) s->base->ops->free(s->base);
    free(s);
}

struct sr_lm *sr_session_lm(struct sr_session *s, bool base) { return base ? s->base : s->small; }

/* Hands the run's abort poll to the models (NULL params = disarm). */
static void arm_abort(struct sr_session *s, const struct sr_run_params *p) {
    struct sr_lm *lms[2] = {s->small, s->base};
    for (int i = 0; i < 2; i++) {
        if (!lms[i]) continue;
        lms[i]->abort_fn = p ? p->should_abort : NULL;
        lms[i]->abort_user = p ? p->user : NULL;
    }
}

const char *sr_session_errmsg(const struct sr_session *s) { return s ? s->errmsg : "no session"; }

/* HTTP counters of remote models: the run's share goes into its stats. */
struct http_snap {
    int64_t n[2], retries[2], bytes[2], t_us[2];
};

static struct http_snap snap(const struct sr_session *s) {
    struct http_snap h = {{0}, {0}, {0}, {0}};
    const struct sr_lm *lm[2] = {s->small, s->base};
    for (int i = 0; i < 2; i++) {
        if (!lm[i]) continue;
        h.n[i] = lm[i]->n_http;
        h.retries[i] = lm[i]->n_retries;
        h.bytes[i] = lm[i]->n_bytes;
        h.t_us[i] = lm[i]->t_http_us;
    }
    return h;
}

static void add_http_stats(struct sr_stats *S, const struct http_snap *h0, const struct sr_session *s) {
    struct http_snap h = snap(s);
    S->n_http_requests_small = h.n[0] - h0->n[0];
    S->n_http_requests_base = h.n[1] - h0->n[1];
    S->n_http_retries_small = h.retries[0] - h0->retries[0];
    S->n_http_retries_base = h.retries[1] - h0->retries[1];
    S->n_http_bytes_small = h.bytes[0] - h0->bytes[0];
    S->n_http_bytes_base = h.bytes[1] - h0->bytes[1];
    S->t_http_small_ms = (double)(h.t_us[0] - h0->t_us[0]) / 1000.0;
    S->t_http_base_ms = (double)(h.t_us[1] - h0->t_us[1]) / 1000.0;
}

enum sr_status sr_session_run(struct sr_session *s, const char *problem, const struct sr_run_params *params,
                              struct sr_result **out) {
    if (!out) return SR_ERR_INVALID_ARG;
    *out = NULL;
    if (!s) return SR_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    struct http_snap h0 = snap(s);
    arm_abort(s, params);
    enum sr_status st = sr_loop_run_shared(s->small, s->base, problem, params, s->engine->ctl, out, s->errmsg, sizeof s->errmsg);
    arm_abort(s, NULL);
    if (st == SR_OK && *out) add_http_stats(&(*out)->stats, &h0, s);
    return st;
}

enum sr_status sr_session_run_chat(struct sr_session *s, const struct sr_message *msgs, size_t n,
                                   const struct sr_run_params *params, struct sr_result **out) {
    if (!out) return SR_ERR_INVALID_ARG;
    *out = NULL;
    if (!s) return SR_ERR_INVALID_ARG;
    s->errmsg[0] = '\0';
    if (!msgs && n) { snprintf(s->errmsg, sizeof s->errmsg, "no messages"); return SR_ERR_INVALID_ARG; }
    struct sr_chat_msg *cm = malloc((n ? n : 1) * sizeof *cm);
    if (!cm) { snprintf(s->errmsg, sizeof s->errmsg, "out of memory"); return SR_ERR_NOMEM; }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            free(cm);
            snprintf(s->errmsg, sizeof s->errmsg, "message %zu has no %s", i, msgs[i].role ? "content" : "role");
            return SR_ERR_INVALID_ARG;
        }
        cm[i].role = msgs[i].role;
        cm[i].content = msgs[i].content;
    }
    struct http_snap h0 = snap(s);
    arm_abort(s, params);
    enum sr_status st = sr_loop_run_chat_shared(s->small, s->base, cm, n, params, s->engine->ctl, out, s->errmsg, sizeof s->errmsg);
    arm_abort(s, NULL);
    if (st == SR_OK && *out) add_http_stats(&(*out)->stats, &h0, s);
    free(cm);
    return st;
}

enum sr_status sr_run(struct sr_engine *e, const char *problem, const struct sr_run_params *params,
                      struct sr_result **out, struct sr_error *err) {
    if (out) *out = NULL;
    struct sr_session *s = NULL;
    enum sr_status st = sr_session_init(e, &s, err);
    if (st != SR_OK) return st;
    st = sr_session_run(s, problem, params, out);
    if (st != SR_OK) sr_seterr(err, st, "%s", s->errmsg);
    sr_session_free(s);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON (result_json.c builds the object)                                                     */

char *sr_result_to_json(const struct sr_result *r, const struct sr_run_params *p) {
    json_t *o = sr_result_json(r, p);
    char *s = sr_jdump(o);
    json_decref(o);
    return s;
}
