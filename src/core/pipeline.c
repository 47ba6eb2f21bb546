/*
 * pipeline.c: pipelined speculation; see pipeline.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "pipeline.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- policy ---------------------------------------------------------------------------------- */

static int32_t online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int32_t)n : 1;
}

/* Overlap pays when the small model's thread has a core of its own; with fewer cores than threads
 * the second model only steals cycles from the judge (the result is the same, the time is not). */
bool sr_pipe_wanted(enum sr_pipeline mode, const struct sr_lm *small, const struct sr_lm *base) {
    if (mode == SR_PIPE_OFF || !small || !base) return false;
    if (mode == SR_PIPE_ON) return true;
    if (small->n_threads <= 0 || base->n_threads <= 0) return false;
    return small->n_threads + base->n_threads <= online_cores();
}

/* Per step: a draft made ahead is thrown away when the judge rejects, so under `auto` it is made
 * only while the judge's acceptance is at least even (a rejected one costs the cores it shared). */
bool sr_pipe_worth(enum sr_pipeline mode, double p_accept) { return mode == SR_PIPE_ON || p_accept >= 0.5; }

/* ---- the worker ------------------------------------------------------------------------------ */

static void *worker(void *arg) {
    struct sr_pipe *p = arg;
    p->st = p->inner->ops->generate(p->inner, p->delim, p->max_tokens, &p->out);
    p->t1_us = sr_time_us();
    return NULL;
}

/* The proxy mirrors the inner model's counters (read by the loop for its statistics). */
static void mirror(struct sr_pipe *p, enum sr_status st) {
    p->lm.t_backend_us = p->inner->t_backend_us;
    p->lm.n_decode = p->inner->n_decode;
    if (st != SR_OK) snprintf(p->lm.errmsg, sizeof p->lm.errmsg, "%s", p->inner->errmsg);
}

static void join(struct sr_pipe *p) {
    if (!p->running) return;
    pthread_join(p->th, NULL);
    p->running = false;
    p->inner->abort_fn = p->abort_fn;
}

enum sr_status sr_pipe_settle(struct sr_pipe *p) {
    if (!p->pending) return SR_OK;
    join(p);
    p->pending = false;
    p->n_discarded++;
    sr_buf_free(&p->out.text);
    /* Whatever the draft did (even a failed one), the small model goes back to where it stood:
     * the unpipelined run never made this call. */
    enum sr_status st = p->inner->ops->rollback(p->inner, p->mark);
    mirror(p, st);
    return st;
}

void sr_pipe_ahead(struct sr_pipe *p, const char *delim, int32_t max_tokens) {
    if (p->pending) return;
    memset(&p->out, 0, sizeof p->out);
    p->mark = p->inner->ops->mark(p->inner);
    p->delim = delim;
    p->max_tokens = max_tokens;
    p->inner->want_logprob = p->lm.want_logprob;
    p->st = SR_OK;
    p->t0_us = sr_time_us();
    p->abort_fn = p->inner->abort_fn;
    p->inner->abort_fn = NULL; /* the worker never polls it; the loop's next pass does */
    if (pthread_create(&p->th, NULL, worker, p) != 0) { /* no thread: decode when asked */
        p->inner->abort_fn = p->abort_fn;
        return;
    }
    p->running = p->pending = true;
    p->n_started++;
}

/* ---- the proxy's operations ------------------------------------------------------------------ */

static struct sr_pipe *P(struct sr_lm *lm) { return (struct sr_pipe *)lm; }

static enum sr_status px_generate(struct sr_lm *lm, const char *delim, int32_t max_tokens, struct sr_gen_out *out) {
    struct sr_pipe *p = P(lm);
    if (p->pending && delim == p->delim && max_tokens == p->max_tokens && p->inner->want_logprob == lm->want_logprob) {
        int64_t t0 = sr_time_us();
        join(p);
        int64_t t1 = sr_time_us();
        p->pending = false;
        p->n_used++;
        p->t_wait_ms += (double)(t1 - t0) / 1000.0;
        /* Hidden: the part of the draft that ran before the loop asked for it. */
        int64_t d = p->t1_us - p->t0_us, h = t0 - p->t0_us;
        p->t_draft_ms += (double)d / 1000.0;
        p->t_hidden_ms += (double)(h < 0 ? 0 : h > d ? d : h) / 1000.0;
        sr_buf_append(&out->text, p->out.text.data ? p->out.text.data : "", p->out.text.len);
        if (p->out.text.oom) out->text.oom = true;
        out->n_tokens = p->out.n_tokens;
        out->end = p->out.end;
        out->n_logprob = p->out.n_logprob;
        out->logprob_min = p->out.logprob_min;
        out->logprob_sum = p->out.logprob_sum;
        sr_buf_free(&p->out.text);
        enum sr_status st = p->st;
        if (st == SR_OK && out->text.oom) st = sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
        mirror(p, st);
        return st;
    }
    enum sr_status st = sr_pipe_settle(p);
    if (st != SR_OK) return st;
    p->inner->want_logprob = lm->want_logprob;
    st = p->inner->ops->generate(p->inner, delim, max_tokens, out);
    mirror(p, st);
    return st;
}

static enum sr_status px_reset(struct sr_lm *lm, const struct sr_seg *segs, size_t n_segs, int32_t *n) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = sr_pipe_settle(p);
    if (st == SR_OK) st = p->inner->ops->reset(p->inner, segs, n_segs, n);
    mirror(p, st);
    return st;
}

static enum sr_status px_append(struct sr_lm *lm, const char *text, size_t len, int32_t *n) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = sr_pipe_settle(p);
    if (st == SR_OK) st = p->inner->ops->append(p->inner, text, len, n);
    mirror(p, st);
    return st;
}

/* While a draft is pending the model stands, for the loop, where the draft started. */
static int64_t px_mark(const struct sr_lm *lm) {
    const struct sr_pipe *p = (const struct sr_pipe *)lm;
    return p->pending ? p->mark : p->inner->ops->mark(p->inner);
}

static enum sr_status px_rollback(struct sr_lm *lm, int64_t mark) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = SR_OK;
    if (p->pending && mark <= p->mark) { /* the rollback covers the draft: no separate one */
        join(p);
        p->pending = false;
        p->n_discarded++;
        sr_buf_free(&p->out.text);
    } else {
        st = sr_pipe_settle(p);
    }
    if (st == SR_OK) st = p->inner->ops->rollback(p->inner, mark);
    mirror(p, st);
    return st;
}

static enum sr_status px_judge(struct sr_lm *lm, const char *cand, size_t cl, const char *suffix, size_t sl,
                               struct sr_judge_out *out) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = sr_pipe_settle(p);
    if (st == SR_OK) st = p->inner->ops->judge(p->inner, cand, cl, suffix, sl, out);
    mirror(p, st);
    return st;
}

static enum sr_status px_sampling(struct sr_lm *lm, float t, float top_p, uint64_t seed) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = sr_pipe_settle(p);
    if (st == SR_OK) st = p->inner->ops->set_sampling(p->inner, t, top_p, seed);
    mirror(p, st);
    return st;
}

static enum sr_status px_render(struct sr_lm *lm, const struct sr_chat_msg *m, size_t n, struct sr_buf *out) {
    struct sr_pipe *p = P(lm);
    enum sr_status st = sr_pipe_settle(p); /* (rendering does not touch the cache; keep it simple) */
    if (st == SR_OK) st = p->inner->ops->render(p->inner, m, n, out);
    mirror(p, st);
    return st;
}

/* The loop never frees its models; the proxy owns nothing but a pending draft. */
static void px_free(struct sr_lm *lm) { (void)sr_pipe_settle(P(lm)); }

static const struct sr_lm_ops proxy_ops = {
    .reset = px_reset,
    .generate = px_generate,
    .append = px_append,
    .mark = px_mark,
    .rollback = px_rollback,
    .judge = px_judge,
    .set_sampling = px_sampling,
    .render = px_render,
    .free = px_free,
    .generate_spec = NULL, /* not pipelined with spec_decode */
    .draft_compatible = NULL,
};

void sr_pipe_init(struct sr_pipe *p, struct sr_lm *small) {
    memset(p, 0, sizeof *p);
    p->inner = small;
    p->lm.ops = &proxy_ops;
    p->lm.t_backend_us = small->t_backend_us;
    p->lm.n_decode = small->n_decode;
    p->lm.n_ctx = small->n_ctx;
    p->lm.want_logprob = small->want_logprob;
    p->lm.n_threads = small->n_threads;
}

void sr_pipe_stats(const struct sr_pipe *p, struct sr_stats *S) {
    S->n_pipe_started = p->n_started;
    S->n_pipe_used = p->n_used;
    S->n_pipe_discarded = p->n_discarded;
    S->t_pipe_draft_ms = p->t_draft_ms;
    S->t_pipe_wait_ms = p->t_wait_ms;
    S->t_pipe_hidden_ms = p->t_hidden_ms;
}
