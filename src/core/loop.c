/*
 * loop.c: the SpecReason step loop, independent of where the models run.
 *
 * The algorithm (reference: spec_reason.py; SPECREASON-REFERENCE.md section 1), one function per
 * stage:
 *   sr_loop_run      check_run -> prefill_prompts -> step_loop -> [answer_phase] -> finish_text,
 *                    finish_stats
 *   do_step          speculate(idx)?  draft -> judge -> adopt_draft | rewrite_rejected
 *                                  :  write_direct
 *                    then think_end -> record_step
 *   draft            the small model writes a step up to the delimiter "\n\n" or max_step_tokens;
 *   judge            the base model prefills the step plus the judge suffix and reads a 0-9 score;
 *   adopt_draft      score >= threshold: the step is adopted (both models already hold it);
 *   rewrite_rejected otherwise both models roll back, the base model writes the step from the same
 *                    context (base_write) and the small model adopts it (small_adopts_base_step);
 *   write_direct     the first N steps and every step in mode base are written by the base model
 *                    directly; in mode small the small model writes every step, nothing is judged.
 * Stop rules (step_loop): a step containing "boxed"/"Answer:"/"ANSWER:", the same step twice in a
 * row (with more than two steps), adopted step tokens reaching the budget, or a context filling up
 * mid-run (SR_STOP_CONTEXT, the steps so far kept). think_end: a step with "</think>" and an
 * answer marker is kept whole and ends the run (the reference's way); without a marker
 * "</think>" is removed (reference behaviour, so thinking goes on), unless strip_think_end is off:
 * then thinking has ended and the base model writes the answer (SR_ANSWER_BASE, answer_phase) or
 * the loop goes on (SR_ANSWER_LOOP).
 *
 * Pipelining (issue 17, pipeline.h): judge starts the next draft ahead on a second thread
 * (draft_ahead); the small model is then a proxy whose next generate returns that draft and whose
 * other operations throw it away first, so the stages above read the same with or without it.
 *
 * Invariant: after each adopted step both models' contexts hold exactly
 *   prefix + step_1 + delim + ... + step_k + delim
 * (each model's own prefix), so nothing is ever prefilled twice.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "internal.h"
#include "pipeline.h"

struct sr_run_params sr_run_default_params(void) {
    struct sr_run_params p;
    memset(&p, 0, sizeof p);
    p.mode = SR_MODE_SPEC;
    p.threshold = 7.0f;
    p.score_method = SR_SCORE_GREEDY;
    p.first_n_base = 0;
    p.max_step_tokens = 512;
    p.token_budget = 8192;
    p.max_answer_tokens = 1024;
    p.small.temperature = 0.6f;
    p.small.top_p = 0.95f;
    p.base.temperature = 0.6f;
    p.base.top_p = 0.95f;
    p.seed = 0;
    p.answer_by = SR_ANSWER_BASE;
    p.strip_think_end = true;
    p.spec_decode = false;
    p.draft_max = 8;
    p.draft_min = 0;
    p.draft_p_min = 0.5f;
    p.policy = SR_POLICY_AUTO;
    p.ctl_precision = 0.97f;
    p.ctl_audit = 0.1f;
    p.ctl_probe_max = 64;
    return p;
}

static enum sr_status check_sampling(const struct sr_sampling *s, const char *who, struct sr_error *err) {
    if (!(s->temperature >= 0.0f && s->temperature <= 100.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s temperature must be in [0, 100] (0 = greedy)", who);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "%s top_p must be in (0, 1]", who);
    return SR_OK;
}

enum sr_status sr_run_params_check(const struct sr_run_params *p, struct sr_error *err) {
    if (!p) return sr_seterr(err, SR_ERR_INVALID_ARG, "no parameters");
    if (p->mode != SR_MODE_SPEC && p->mode != SR_MODE_BASE && p->mode != SR_MODE_SMALL)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "mode must be spec, base or small");
    if (!(p->threshold >= 0.0f && p->threshold <= 10.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "threshold must be in [0, 10]");
    if (p->score_method != SR_SCORE_GREEDY && p->score_method != SR_SCORE_AVERAGE &&
        p->score_method != SR_SCORE_DIGIT_SOFTMAX)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "score method must be greedy, average or digit-softmax");
    if (p->first_n_base < 0) return sr_seterr(err, SR_ERR_INVALID_ARG, "first_n_base must be >= 0");
    if (p->max_step_tokens < 1 || p->max_step_tokens > 65536)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "max_step_tokens must be in [1, 65536]");
    if (p->token_budget < 1 || p->token_budget > (1 << 24))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "token_budget must be in [1, 16777216]");
    if (p->max_answer_tokens < 0 || p->max_answer_tokens > (1 << 24))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "max_answer_tokens must be in [0, 16777216]");
    if (p->answer_by != SR_ANSWER_BASE && p->answer_by != SR_ANSWER_LOOP)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "answer_by must be base or loop");
    if (p->step_delim && !*p->step_delim) return sr_seterr(err, SR_ERR_INVALID_ARG, "step delimiter must not be empty");
    if (p->draft_max < 1 || p->draft_max > 64) return sr_seterr(err, SR_ERR_INVALID_ARG, "draft_max must be in [1, 64]");
    if (p->draft_min < 0 || p->draft_min > p->draft_max)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "draft_min must be in [0, draft_max]");
    if (!(p->draft_p_min >= 0.0f && p->draft_p_min <= 1.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "draft_p_min must be in [0, 1]");
    if (p->policy != SR_POLICY_AUTO && p->policy != SR_POLICY_ALWAYS && p->policy != SR_POLICY_NEVER)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "policy must be auto, always or never");
    if (!(p->ctl_precision > 0.0f && p->ctl_precision <= 1.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "ctl_precision must be in (0, 1]");
    if (p->ctl_gate_label != SR_LABEL_OUTCOME && p->ctl_gate_label != SR_LABEL_JUDGE)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "ctl_gate_label must be outcome or judge");
    if (!(p->ctl_audit >= 0.0f && p->ctl_audit <= 1.0f))
        return sr_seterr(err, SR_ERR_INVALID_ARG, "ctl_audit must be in [0, 1]");
    if (p->pipeline != SR_PIPE_AUTO && p->pipeline != SR_PIPE_ON && p->pipeline != SR_PIPE_OFF)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "pipeline must be auto, on or off");
    if (p->ctl_probe_max < 1 || p->ctl_probe_max > 65536)
        return sr_seterr(err, SR_ERR_INVALID_ARG, "ctl_probe_max must be in [1, 65536]");
    enum sr_status st = check_sampling(&p->small, "small", err);
    if (st != SR_OK) return st;
    return check_sampling(&p->base, "base", err);
}

/* ------------------------------------------------------------------------------------------ */

struct run {
    const struct sr_run_params *p;
    struct sr_lm *small, *base;
    const char *delim;
    size_t dlen;
    struct sr_buf suffix; /* judge suffix (base model) */
    struct sr_result *res;
    size_t cap_steps;
    struct sr_buf text;  /* result text */
    char *errbuf;
    size_t errlen;
    bool cancelled;
    struct sr_lm *drafter; /* token-level drafts for the base model (spec_decode), or NULL */
    /* Policy auto with ctl_verify_rewrite, greedy, no spec_decode: the small model (itself, not a
     * pipeline proxy) proposes tokens when the base model rewrites a rejected draft, which it
     * often rewrites to the same text; verified in batches, faster. NULL = plain. */
    struct sr_lm *redrafter;
    struct sr_sd_stats sd;
    int64_t t_start_us;
    int64_t b0_small, b0_base, d0_small, d0_base; /* backend time and decode counters at the start */
    bool use_ctl;          /* policy auto: the controller decides (else: speculate and judge) */
    struct sr_ctl ctl;
    /* Policy auto lets a model lag behind the adopted text while it is not needed: the base
     * model after unjudged steps, the small model while the base model writes. It gets the text
     * in one prefill before its next use (catch_up). */
    struct sr_buf owed_base, owed_small;
    /* Pipelined speculation: the small model is driven through the pipeline's proxy, which
     * drafts the next step while a step is judged (draft_ahead). */
    bool piped;
    struct sr_pipe pipe;
};

/* What one step produces, filled in stage by stage. */
struct step {
    int32_t idx;
    int64_t ms0, mb0;    /* small and base marks before the step (-1 = model not in the run) */
    struct sr_gen_out d; /* the small model's draft */
    struct sr_gen_out g; /* the adopted text */
    enum sr_author author;
    float score, draft_score;
    double t_draft, t_judge, t_base, t_sync;
    int32_t n_tok;       /* tokens of the adopted text in its author's tokenizer */
    int32_t n_draft;     /* tokens of the small draft (0 if none) */
    bool keep_draft;     /* the rejected draft is kept in the step record */
    bool redo_same;      /* rejected, and the base model wrote the draft's text again */
    bool redrafted;      /* the rewrite was verified against the small model's tokens */
    const char *tail;    /* what follows the step in the result text (the delimiter) */
    size_t tlen;
    /* the controller (policy auto) */
    struct sr_ctl_step cs;          /* its decisions and why */
    bool drafted, judged, verdict;  /* what happened, for its cost model */
    bool unjudged;                  /* accepted without a judge call: the base model lags */
    bool small_lags;                /* the base model wrote and the small model did not follow */
    int32_t n_judge_tok, n_suffix_tok, sync_n, catch_n;
    double sync_ms, catch_ms;       /* small model adopting base text; base model catching up */
};

static enum sr_status fail(struct run *r, struct sr_lm *lm, enum sr_status st, const char *what) {
    snprintf(r->errbuf, r->errlen, "%s%s%s", what, lm ? ": " : "", lm ? lm->errmsg : "");
    return st;
}

static double ms_since(int64_t t0) { return (double)(sr_time_us() - t0) / 1000.0; }

static void emit(struct run *r, const struct sr_event *ev) {
    if (r->p->on_event && !r->cancelled && !r->p->on_event(ev, r->p->user)) r->cancelled = true;
}

static bool has_marker(const char *s) {
    return strstr(s, "boxed") || strstr(s, "Answer:") || strstr(s, "ANSWER:");
}

static float judge_score(const struct sr_run_params *p, const struct sr_judge_out *j) {
    if (p->score_method == SR_SCORE_GREEDY) return j->greedy_value < 0 ? 0.0f : (float)j->greedy_value;
    /* Expectation over digit tokens: the reference's average takes the digits among the ten most
     * likely tokens (its top_logprobs=10), renormalised, and scores 0 when none is there;
     * digit-softmax takes all ten digits. */
    bool top10 = p->score_method == SR_SCORE_AVERAGE;
    float mx = -INFINITY;
    for (int d = 0; d < 10; d++)
        if (j->digit_ok[d] && (!top10 || j->digit_top10[d]) && j->digit_logit[d] > mx) mx = j->digit_logit[d];
    if (!isfinite(mx)) return 0.0f;
    double z = 0.0, e = 0.0;
    for (int d = 0; d < 10; d++) {
        if (!j->digit_ok[d] || (top10 && !j->digit_top10[d])) continue;
        double w = exp((double)(j->digit_logit[d] - mx));
        z += w;
        e += w * d;
    }
    return z > 0.0 ? (float)(e / z) : 0.0f;
}

/* Replaces the text a model holds after `mark` by text + tail (used when the adopted text differs
 * from what the model wrote). */
static enum sr_status rewrite(struct sr_lm *lm, int64_t mark, const char *text, size_t len, const char *tail,
                              size_t tlen, int32_t *n_tokens) {
    enum sr_status st = lm->ops->rollback(lm, mark);
    if (st != SR_OK) return st;
    struct sr_buf b = {0};
    sr_buf_append(&b, text, len);
    sr_buf_append(&b, tail, tlen);
    if (b.oom) { sr_buf_free(&b); return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory"); }
    st = lm->ops->append(lm, b.data ? b.data : "", b.len, n_tokens);
    sr_buf_free(&b);
    return st;
}

static struct sr_step *push_step(struct run *r) {
    struct sr_result *res = r->res;
    if (res->n_steps == r->cap_steps) {
        size_t c = r->cap_steps ? r->cap_steps * 2 : 32;
        struct sr_step *s = realloc(res->steps, c * sizeof *s);
        if (!s) return NULL;
        res->steps = s;
        r->cap_steps = c;
    }
    struct sr_step *st = &res->steps[res->n_steps++];
    memset(st, 0, sizeof *st);
    st->score = -1.0f;
    st->draft_score = -1.0f;
    return st;
}

static void remove_all(struct sr_buf *b, const char *needle) {
    size_t m = strlen(needle), w = 0;
    for (size_t i = 0; i < b->len;) {
        if (i + m <= b->len && memcmp(b->data + i, needle, m) == 0) { i += m; continue; }
        b->data[w++] = b->data[i++];
    }
    b->len = w;
    if (b->data) b->data[w] = '\0';
}

/* ---- the stages of one step ------------------------------------------------------------------ */

/* The base model writes (a step, or the answer when delim is NULL). With a drafter, the small
 * model proposes tokens; it must hold the adopted text on entry (its context is rolled back to
 * `draft_mark` afterwards, and the caller appends what was written). */
static enum sr_status base_write(struct run *r, const char *delim, int32_t max_tokens, int64_t draft_mark,
                                 struct sr_gen_out *g) {
    struct sr_lm *b = r->base;
    if (!r->drafter) return b->ops->generate(b, delim, max_tokens, g);
    struct sr_sd_params sd = {r->p->draft_max, r->p->draft_min, r->p->draft_p_min};
    enum sr_status st = b->ops->generate_spec(b, r->drafter, delim, max_tokens, &sd, g, &r->sd);
    if (st != SR_OK) return st;
    st = r->drafter->ops->rollback(r->drafter, draft_mark);
    if (st != SR_OK) return sr_lm_fail(b, st, "draft model rollback: %s", r->drafter->errmsg);
    return SR_OK;
}

/* Gives a model the adopted text it has not seen yet, in one prefill; adds tokens and ms. */
static enum sr_status catch_up(struct sr_lm *lm, struct sr_buf *owed, int32_t *n, double *ms) {
    if (!owed->len) return SR_OK;
    if (owed->oom) return sr_lm_fail(lm, SR_ERR_NOMEM, "out of memory");
    int64_t t0 = sr_time_us();
    int32_t k = 0;
    enum sr_status st = lm->ops->append(lm, owed->data, owed->len, &k);
    *ms += ms_since(t0);
    *n += k;
    sr_buf_clear(owed);
    return st;
}

/* The base model catches up before it judges or writes; w->mb0 is its mark afterwards. */
static enum sr_status base_catch_up(struct run *r, struct step *w) {
    int32_t n = 0;
    double ms = 0;
    enum sr_status st = catch_up(r->base, &r->owed_base, &n, &ms);
    w->catch_n += n;
    w->catch_ms += ms;
    r->res->stats.n_catchup_tokens += n;
    r->res->stats.t_catchup_ms += ms;
    if (st != SR_OK) return fail(r, r->base, st, "base model catching up");
    w->mb0 = r->base->ops->mark(r->base);
    return SR_OK;
}

/* The small model catches up before it drafts; w->ms0 is its mark afterwards. */
static enum sr_status small_catch_up(struct run *r, struct step *w) {
    int32_t n = 0;
    double ms = 0;
    enum sr_status st = catch_up(r->small, &r->owed_small, &n, &ms);
    w->sync_n += n;
    w->sync_ms += ms;
    w->t_sync += ms;
    r->res->stats.n_sync_tokens += n;
    if (st != SR_OK) return fail(r, r->small, st, "small model catching up");
    w->ms0 = r->small->ops->mark(r->small);
    return SR_OK;
}

/* Decision 1: is step idx speculated (small drafts, base judges) rather than written directly?
 * Policy always: every step after the first N; policy auto: the controller's choice. */
static bool want_draft(struct run *r, struct step *w) {
    w->cs.conf_min = w->cs.conf_mean = NAN;
    if (r->p->mode != SR_MODE_SPEC || w->idx < r->p->first_n_base) return false;
    w->drafted = r->use_ctl ? sr_ctl_draft(&r->ctl, &w->cs) : true;
    return w->drafted;
}

/* Decision 2: is the draft judged? Policy always: yes; policy auto: unless the small model's
 * confidence is at or above the gate's calibrated level (and it is not sampled for an audit). */
static bool want_judge(struct run *r, struct step *w) {
    const struct sr_gen_out *d = &w->d;
    w->cs.conf_min = d->n_logprob ? d->logprob_min : NAN;
    w->cs.conf_mean = d->n_logprob ? (float)(d->logprob_sum / d->n_logprob) : NAN;
    return r->use_ctl ? sr_ctl_judge(&r->ctl, w->cs.conf_min, w->cs.conf_mean, &w->cs) : true;
}

/* Draft: the small model writes a candidate step. */
static enum sr_status draft(struct run *r, struct step *w) {
    enum sr_status st = small_catch_up(r, w);
    if (st != SR_OK) return st;
    int64_t t0 = sr_time_us();
    st = r->small->ops->generate(r->small, r->delim, r->p->max_step_tokens, &w->d);
    w->t_draft = ms_since(t0);
    if (st != SR_OK) return fail(r, r->small, st, "small model drafting");
    w->n_draft = w->d.n_tokens;
    struct sr_event ev = {.type = SR_EVENT_STEP_DRAFTED, .step = w->idx, .text = w->d.text.data ? w->d.text.data : "",
                          .len = w->d.text.len, .author = SR_AUTHOR_SMALL, .score = -1, .n_tokens = w->d.n_tokens,
                          .t_ms = w->t_draft};
    emit(r, &ev);
    return SR_OK;
}

/* Pipelining: while the base model judges this draft, the small model drafts the next step as if
 * this one were accepted, unless the step would end or change the run (an answer marker,
 * "</think>", the budget, a repeat) or acceptance is too low to bet on. Rejection, or any other
 * use of the small model, throws the draft away (pipeline.h). */
static void draft_ahead(struct run *r, const struct step *w) {
    if (!r->piped || r->cancelled) return;
    const struct sr_stats *S = &r->res->stats;
    const char *d = w->d.text.data ? w->d.text.data : "";
    size_t n = r->res->n_steps;
    if (has_marker(d) || strstr(d, "</think>") || S->n_adopted_tokens + w->d.n_tokens >= r->p->token_budget ||
        (n >= 2 && strcmp(r->res->steps[n - 1].text, d) == 0))
        return;
    double p_accept = r->use_ctl ? sr_ctl_acceptance(&r->ctl)
                                 : (S->n_steps_small - S->n_unjudged + 1.4) / (S->n_judged + 2.0); /* prior 0.7 */
    if (sr_pipe_worth(r->p->pipeline, p_accept)) sr_pipe_ahead(&r->pipe, r->delim, r->p->max_step_tokens);
}

/* Judge: the base model prefills candidate + delimiter + judge suffix in one pass and reads a
 * score; *accepted = score >= threshold. */
static enum sr_status judge(struct run *r, struct step *w, bool *accepted) {
    const struct sr_run_params *p = r->p;
    struct sr_stats *S = &r->res->stats;
    draft_ahead(r, w);
    struct sr_buf cand = {0};
    sr_buf_append(&cand, w->d.text.data ? w->d.text.data : "", w->d.text.len);
    sr_buf_append(&cand, r->delim, r->dlen);
    if (cand.oom) { sr_buf_free(&cand); return fail(r, NULL, SR_ERR_NOMEM, "out of memory"); }
    enum sr_status st = base_catch_up(r, w);
    if (st != SR_OK) { sr_buf_free(&cand); return st; }
    struct sr_judge_out j;
    int64_t t0 = sr_time_us();
    st = r->base->ops->judge(r->base, cand.data, cand.len, r->suffix.data, r->suffix.len, &j);
    w->t_judge = ms_since(t0);
    sr_buf_free(&cand);
    if (st != SR_OK) return fail(r, r->base, st, "base model judging");
    w->score = judge_score(p, &j);
    *accepted = w->score >= p->threshold;
    w->judged = true;
    w->verdict = *accepted;
    w->n_judge_tok = j.n_cand_tokens;
    w->n_suffix_tok = j.n_suffix_tokens;
    S->n_judged++;
    S->n_judge_tokens += j.n_cand_tokens + j.n_suffix_tokens;
    int hb = (int)floorf(w->score);
    S->score_hist[hb < 0 ? 0 : hb > 9 ? 9 : hb]++;
    struct sr_event ev = {.type = SR_EVENT_STEP_SCORED, .step = w->idx, .text = w->d.text.data ? w->d.text.data : "",
                          .len = w->d.text.len, .author = SR_AUTHOR_SMALL, .score = w->score, .accepted = *accepted,
                          .n_tokens = w->d.n_tokens, .t_ms = w->t_judge};
    emit(r, &ev);
    return SR_OK;
}

/* Adopt: an accepted draft becomes the step (both models already hold it, except after an
 * unjudged acceptance: then the base model gets it when it is next needed). */
static void adopt_draft(struct step *w) {
    w->author = SR_AUTHOR_SMALL;
    w->n_tok = w->d.n_tokens;
    w->g = w->d;
    memset(&w->d, 0, sizeof w->d);
}

static void adopt_unjudged(struct run *r, struct step *w) {
    w->unjudged = true;
    r->res->stats.n_unjudged++;
    adopt_draft(w);
}

/* The small model adopts a step the base model wrote: it appends the step and the delimiter. */
static enum sr_status small_adopts_base_step(struct run *r, struct step *w) {
    int64_t t0 = sr_time_us();
    struct sr_buf b = {0};
    sr_buf_append(&b, w->g.text.data ? w->g.text.data : "", w->g.text.len);
    sr_buf_append(&b, r->delim, r->dlen);
    int32_t ns = 0;
    enum sr_status st = b.oom ? SR_ERR_NOMEM : r->small->ops->append(r->small, b.data, b.len, &ns);
    r->res->stats.n_sync_tokens += ns;
    sr_buf_free(&b);
    double ms = ms_since(t0);
    w->t_sync += ms;
    w->sync_n += ns;
    w->sync_ms += ms;
    if (st != SR_OK) return fail(r, r->small, st, "small model adopting the base step");
    return SR_OK;
}

/* Rewrite: a rejected draft is dropped by both models and the base model writes the step from
 * the same context. */
static enum sr_status rewrite_rejected(struct run *r, struct step *w) {
    w->draft_score = w->score;
    w->score = -1.0f;
    r->res->stats.n_rejected_tokens += w->d.n_tokens;
    w->keep_draft = true;
    int64_t t0 = sr_time_us();
    enum sr_status st = r->base->ops->rollback(r->base, w->mb0);
    if (st != SR_OK) return fail(r, r->base, st, "base model rollback");
    st = r->small->ops->rollback(r->small, w->ms0);
    if (st != SR_OK) return fail(r, r->small, st, "small model rollback");
    w->t_sync += ms_since(t0);
    t0 = sr_time_us();
    if (r->redrafter) { /* the small model stands where the base model does (both rolled back) */
        struct sr_sd_params sd = {r->p->draft_max, r->p->draft_min, r->p->draft_p_min};
        st = r->base->ops->generate_spec(r->base, r->redrafter, r->delim, r->p->max_step_tokens, &sd, &w->g, &r->sd);
        enum sr_status rs = r->redrafter->ops->rollback(r->redrafter, w->ms0);
        if (st == SR_OK && rs != SR_OK) return fail(r, r->redrafter, rs, "small model rollback");
        w->redrafted = true;
    } else {
        st = base_write(r, r->delim, r->p->max_step_tokens, w->ms0, &w->g);
    }
    w->t_base = ms_since(t0);
    if (st != SR_OK) return fail(r, r->base, st, "base model writing");
    w->author = SR_AUTHOR_BASE_REJECT;
    w->n_tok = w->g.n_tokens;
    w->redo_same = w->g.text.len == w->d.text.len &&
                   (w->g.text.len == 0 || memcmp(w->g.text.data, w->d.text.data, w->g.text.len) == 0);
    return small_adopts_base_step(r, w);
}

/* Write: a step without speculation (mode base or small, one of the first N steps, or the
 * controller's choice). Under policy auto the small model does not follow: it catches up when it
 * next drafts (unless it drafts tokens for the base model, spec_decode). */
static enum sr_status write_direct(struct run *r, struct step *w) {
    const struct sr_run_params *p = r->p;
    struct sr_lm *writer = p->mode == SR_MODE_SMALL ? r->small : r->base;
    bool small_defer = r->use_ctl && !r->drafter;
    enum sr_status st = SR_OK;
    if (writer == r->base) st = base_catch_up(r, w);
    if (st == SR_OK && r->small && !small_defer) st = small_catch_up(r, w);
    if (st != SR_OK) return st;
    int64_t t0 = sr_time_us();
    st = writer == r->base ? base_write(r, r->delim, p->max_step_tokens, w->ms0, &w->g)
                                          : writer->ops->generate(writer, r->delim, p->max_step_tokens, &w->g);
    double t = ms_since(t0);
    if (st != SR_OK) return fail(r, writer, st, "writing a step");
    w->n_tok = w->g.n_tokens;
    if (p->mode == SR_MODE_SMALL) {
        w->author = SR_AUTHOR_SMALL_ONLY;
        w->t_draft = t;
    } else {
        w->author = SR_AUTHOR_BASE_FORCED;
        w->t_base = t;
    }
    /* The small model follows (spec, or the drafter in mode base), or lags (policy auto). */
    if (p->mode != SR_MODE_SMALL && r->small && small_defer) w->small_lags = true;
    else if (p->mode != SR_MODE_SMALL && r->small) return small_adopts_base_step(r, w);
    return SR_OK;
}

/* </think> in the adopted step. With an answer marker the step stays whole (its answer, often
 * the \boxed{} itself, included) and the run stops on it, as the reference does. Without one,
 * "</think>" is removed and thinking goes on (reference behaviour; both models are rewritten to
 * hold the adopted text), unless strip_think_end is off: then thinking has ended, and with
 * SR_ANSWER_BASE the answer phase writes the rest after the step, with SR_ANSWER_LOOP the loop
 * goes on. */
static enum sr_status think_end(struct run *r, struct step *w, bool *think_ended, bool *marker) {
    const struct sr_run_params *p = r->p;
    if (!w->g.text.data) sr_buf_append(&w->g.text, "", 0);
    if (w->g.text.oom) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    *marker = has_marker(w->g.text.data);
    if (*marker || !strstr(w->g.text.data, "</think>")) return SR_OK;
    if (!p->strip_think_end) {
        *think_ended = p->answer_by == SR_ANSWER_BASE;
        return SR_OK;
    }
    remove_all(&w->g.text, "</think>");
    int64_t t0 = sr_time_us();
    int32_t nt = 0;
    enum sr_status st;
    if (r->small && !w->small_lags) { /* a lagging model gets the adopted text when it catches up */
        st = rewrite(r->small, w->ms0, w->g.text.data, w->g.text.len, w->tail, w->tlen, &nt);
        if (st != SR_OK) return fail(r, r->small, st, "rewriting a step");
        if (w->author == SR_AUTHOR_SMALL || w->author == SR_AUTHOR_SMALL_ONLY) w->n_tok = nt;
    }
    if (r->base && !w->unjudged) {
        st = rewrite(r->base, w->mb0, w->g.text.data, w->g.text.len, w->tail, w->tlen, &nt);
        if (st != SR_OK) return fail(r, r->base, st, "rewriting a step");
        if (w->author == SR_AUTHOR_BASE_REJECT || w->author == SR_AUTHOR_BASE_FORCED) w->n_tok = nt;
    }
    w->t_sync += ms_since(t0);
    return SR_OK;
}

/* Record: the step joins the result and the statistics. */
static enum sr_status record_step(struct run *r, struct step *w, struct sr_step **out) {
    struct sr_stats *S = &r->res->stats;
    struct sr_step *s = push_step(r);
    if (!s) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    s->author = w->author;
    s->score = w->score;
    s->draft_score = w->draft_score;
    s->n_tokens = w->n_tok;
    s->n_draft_tokens = w->n_draft;
    s->t_draft_ms = w->t_draft;
    s->t_judge_ms = w->t_judge;
    s->t_base_ms = w->t_base;
    s->t_sync_ms = w->t_sync + w->catch_ms;
    s->ctl_reason = w->cs.reason;
    s->ctl_gate = w->cs.gate;
    s->ctl_e_spec_ms = w->cs.e_spec_ms;
    s->ctl_e_base_ms = w->cs.e_base_ms;
    s->conf_min = w->cs.conf_min;
    s->conf_mean = w->cs.conf_mean;
    s->text = sr_buf_take(&w->g.text);
    if (w->keep_draft) s->draft = sr_buf_take(&w->d.text);
    if (!s->text || (w->keep_draft && !s->draft)) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");

    S->n_steps++;
    S->n_adopted_tokens += w->n_tok;
    switch (w->author) {
    case SR_AUTHOR_SMALL: S->n_steps_small++; S->n_adopted_small += w->n_tok; break;
    case SR_AUTHOR_SMALL_ONLY: S->n_steps_small++; S->n_adopted_small += w->n_tok; break;
    case SR_AUTHOR_BASE_REJECT: S->n_steps_base_reject++; S->n_adopted_base += w->n_tok; break;
    default: S->n_steps_base_forced++; S->n_adopted_base += w->n_tok; break;
    }
    S->t_small_ms += w->t_draft;
    S->t_judge_ms += w->t_judge;
    S->t_base_ms += w->t_base;
    S->t_sync_ms += s->t_sync_ms;
    sr_buf_puts(&r->text, s->text);
    sr_buf_append(&r->text, w->tail, w->tlen);
    /* A model that lags is owed the adopted step. */
    struct sr_buf *owed[2] = {w->unjudged ? &r->owed_base : NULL, w->small_lags ? &r->owed_small : NULL};
    for (int i = 0; i < 2; i++) {
        if (!owed[i]) continue;
        sr_buf_puts(owed[i], s->text);
        sr_buf_append(owed[i], w->tail, w->tlen);
    }
    *out = s;
    return SR_OK;
}

/* Observe: the controller learns from what the step cost. */
static void observe(struct run *r, const struct step *w) {
    if (!r->use_ctl) return;
    double t_step = w->t_draft + w->t_judge + w->t_base + w->t_sync + w->catch_ms;
    struct sr_ctl_obs o = {.speculated = w->drafted, .judged = w->judged, .accepted = w->verdict,
                           .same = w->verdict || w->redo_same,
                           .conf_min = w->cs.conf_min, .n_draft = w->n_draft, .t_draft_ms = w->t_draft,
                           .n_judge_tokens = w->n_judge_tok, .n_suffix_tokens = w->n_suffix_tok,
                           .t_judge_ms = w->t_judge, .n_base = !w->redrafted && (w->author == SR_AUTHOR_BASE_REJECT ||
                           w->author == SR_AUTHOR_BASE_FORCED) ? w->n_tok : 0, .t_base_ms = w->t_base,
                           .n_sync = w->sync_n, .t_sync_ms = w->sync_ms, .n_catchup = w->catch_n,
                           .t_catchup_ms = w->catch_ms, .n_step = w->n_tok, .t_step_ms = t_step};
    sr_ctl_observe(&r->ctl, &w->cs, &o);
}

/* One step: draft and judge, then adopt or rewrite; or write directly. The two decisions (draft
 * or not, judge or not) are the controller's under policy auto. Sets *think_ended when thinking
 * ended inside it (SR_ANSWER_BASE), *marker when it holds an answer marker. */
static enum sr_status do_step(struct run *r, int32_t idx, bool *think_ended, bool *marker, struct sr_step **out) {
    struct step w;
    memset(&w, 0, sizeof w);
    w.idx = idx;
    w.ms0 = r->small ? r->small->ops->mark(r->small) : -1;
    w.mb0 = r->base ? r->base->ops->mark(r->base) : -1;
    w.score = w.draft_score = -1.0f;
    w.tail = r->delim;
    w.tlen = r->dlen;
    enum sr_status st;
    if (want_draft(r, &w)) {
        bool accepted = false;
        st = draft(r, &w);
        if (st == SR_OK && !want_judge(r, &w)) {
            adopt_unjudged(r, &w);
        } else if (st == SR_OK) {
            st = judge(r, &w, &accepted);
            if (st == SR_OK) {
                if (accepted) adopt_draft(&w);
                else st = rewrite_rejected(r, &w);
            }
        }
    } else {
        st = write_direct(r, &w);
    }
    if (st == SR_OK) st = think_end(r, &w, think_ended, marker);
    if (st == SR_OK) st = record_step(r, &w, out);
    if (st == SR_OK) observe(r, &w);
    sr_buf_free(&w.g.text);
    sr_buf_free(&w.d.text);
    return st;
}

/* ---- the stages of a run --------------------------------------------------------------------- */

/* The parameters and models fit the mode. *use_sd = token-level drafting will be used. */
static enum sr_status check_run(struct sr_lm *small, struct sr_lm *base, const char *problem,
                                const struct sr_run_params *p, bool *use_sd, char *errbuf, size_t errlen) {
    struct sr_error e;
    if (sr_run_params_check(p, &e) != SR_OK) {
        snprintf(errbuf, errlen, "%s", e.msg);
        return SR_ERR_INVALID_ARG;
    }
    if (!problem) { snprintf(errbuf, errlen, "no problem text"); return SR_ERR_INVALID_ARG; }
    /* policy never is mode base exactly: it needs no small model */
    enum sr_mode mode = p->mode == SR_MODE_SPEC && p->policy == SR_POLICY_NEVER ? SR_MODE_BASE : p->mode;
    if ((mode != SR_MODE_SMALL && !base) || (mode != SR_MODE_BASE && !small)) {
        snprintf(errbuf, errlen, "mode %s needs the %s model, which is not loaded", sr_mode_str(p->mode),
                 !base && mode != SR_MODE_SMALL ? "base" : "small");
        return SR_ERR_INVALID_ARG;
    }
    *use_sd = p->spec_decode && mode != SR_MODE_SMALL;
    if (!*use_sd) return SR_OK;
    if (!small || !base) {
        snprintf(errbuf, errlen, "token-level speculative decoding needs both models loaded");
        return SR_ERR_INVALID_ARG;
    }
    char why[256] = "";
    if (!base->ops->generate_spec || !base->ops->draft_compatible) {
        snprintf(errbuf, errlen, "token-level speculative decoding needs the base model in-process: a remote base "
                                 "model (a URL) speculates inside its serving engine, if at all (docs/REMOTE.md)");
        return SR_ERR_INVALID_ARG;
    }
    if (!base->ops->draft_compatible(base, small, why, sizeof why)) {
        snprintf(errbuf, errlen,
                 "token-level speculative decoding needs models that share a tokenizer: %s "
                 "(SpecReason without --spec-decode works with any pair)", why);
        return SR_ERR_INVALID_ARG;
    }
    return SR_OK;
}

/* Prompts: each model prefills its thinking prefix (the base model also builds its judge
 * suffix), after checking that prompt + budget fit in its context; samplers are seeded. */
static enum sr_status prefill_prompts(struct run *r, const struct sr_chat_msg *msgs, size_t n_msgs) {
    const struct sr_run_params *p = r->p;
    struct sr_stats *S = &r->res->stats;
    const char *think_open = p->think_open ? p->think_open : "<think>\n";
    int64_t t0 = sr_time_us();
    struct sr_lm *models[2] = {r->small, r->base};
    int64_t reserve = (int64_t)p->token_budget + p->max_step_tokens + p->max_answer_tokens + 8;
    struct sr_buf prefix = {0};
    /* template text around each message, and the messages */
    struct sr_seg *segs = calloc(2 * n_msgs + 1, sizeof *segs);
    if (!segs) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    enum sr_status st = SR_OK;
    for (int i = 0; i < 2 && st == SR_OK; i++) {
        struct sr_lm *lm = models[i];
        if (!lm) continue;
        bool is_small = lm == r->small;
        size_t n_segs = 0;
        st = sr_prompt_prefix_msgs(lm, msgs, n_msgs, think_open, &prefix, segs, &n_segs);
        if (st != SR_OK) { st = fail(r, lm, st, "building the prompt"); break; }
        int64_t extra = reserve;
        bool judges = lm == r->base && p->mode == SR_MODE_SPEC;
        if (judges) {
            st = sr_prompt_judge_suffix_msgs(lm, msgs, n_msgs, p->judge_prompt ? p->judge_prompt : SR_JUDGE_PROMPT,
                                        p->judge_prefill ? p->judge_prefill : SR_JUDGE_PREFILL, &r->suffix);
            if (st != SR_OK) { st = fail(r, lm, st, "building the judge prompt"); break; }
            extra += (int64_t)r->suffix.len; /* tokens <= bytes */
        }
        int32_t n_prompt = 0;
        st = lm->ops->reset(lm, segs, n_segs, &n_prompt);
        if (st != SR_OK) { st = fail(r, lm, st, is_small ? "small model prompt" : "base model prompt"); break; }
        if (n_prompt + extra > lm->n_ctx) {
            snprintf(r->errbuf, r->errlen,
                     "%s model: prompt (%d tokens) + budget (%d) + one step (%d) + answer (%d)%s = %lld tokens do not "
                     "fit in its context of %lld tokens; raise n_ctx or lower the budget",
                     is_small ? "small" : "base", n_prompt, p->token_budget, p->max_step_tokens, p->max_answer_tokens,
                     judges ? " + judge suffix" : "", (long long)(n_prompt + extra), (long long)lm->n_ctx);
            st = SR_ERR_CONTEXT_FULL;
            break;
        }
        if (is_small) S->n_prompt_tokens_small = n_prompt;
        else S->n_prompt_tokens_base = n_prompt;
        const struct sr_sampling *sp = is_small ? &p->small : &p->base;
        /* Different streams per model, so a model's draws do not depend on the other's. */
        st = lm->ops->set_sampling(lm, sp->temperature, sp->top_p, p->seed * 2 + (is_small ? 0 : 1));
        if (st != SR_OK) st = fail(r, lm, st, "sampler");
    }
    sr_buf_free(&prefix);
    free(segs);
    S->t_prompt_ms = ms_since(t0);
    if (st == SR_OK) {
        struct sr_event ev = {.type = SR_EVENT_PROMPT, .text = "", .score = -1, .t_ms = S->t_prompt_ms,
                              .n_tokens = (int32_t)(r->base ? S->n_prompt_tokens_base : S->n_prompt_tokens_small)};
        emit(r, &ev);
    }
    return st;
}

/* The step loop and its stop rules. */
static enum sr_status step_loop(struct run *r, bool *think_ended, enum sr_stop_reason *stop) {
    const struct sr_stats *S = &r->res->stats;
    for (int32_t idx = 0;; idx++) {
        bool marker = false;
        struct sr_step *s = NULL;
        enum sr_status st = do_step(r, idx, think_ended, &marker, &s);
        /* A context that fills up mid-run (a mixed-tokenizer pair can outgrow the up-front check)
         * ends the run with the steps so far; the unfinished step is dropped. */
        if (st == SR_ERR_CONTEXT_FULL) { *stop = SR_STOP_CONTEXT; return SR_OK; }
        if (st != SR_OK) return st;
        struct sr_event ev = {.type = SR_EVENT_STEP_ADOPTED, .step = idx, .text = s->text, .len = strlen(s->text),
                              .author = s->author, .score = s->score, .accepted = s->author == SR_AUTHOR_SMALL,
                              .n_tokens = s->n_tokens,
                              .t_ms = s->t_draft_ms + s->t_judge_ms + s->t_base_ms + s->t_sync_ms};
        emit(r, &ev);
        if (r->cancelled) { *stop = SR_STOP_CANCELLED; return SR_OK; }
        if (*think_ended) return SR_OK;
        if (marker) { *stop = SR_STOP_ANSWER; return SR_OK; }
        size_t n = r->res->n_steps;
        if (n > 2 && strcmp(r->res->steps[n - 1].text, r->res->steps[n - 2].text) == 0) {
            *stop = SR_STOP_REPEAT;
            return SR_OK;
        }
        if (S->n_adopted_tokens >= r->p->token_budget) { *stop = SR_STOP_BUDGET; return SR_OK; }
    }
}

/* The answer after </think>, written by the base model (the small model in mode small). */
static enum sr_status answer_phase(struct run *r, enum sr_stop_reason *stop) {
    const struct sr_run_params *p = r->p;
    struct sr_stats *S = &r->res->stats;
    struct sr_lm *w = p->mode == SR_MODE_SMALL ? r->small : r->base;
    struct sr_gen_out g = {0};
    int64_t t0 = sr_time_us();
    int64_t dm = r->drafter && w == r->base ? r->drafter->ops->mark(r->drafter) : 0;
    struct step cu = {.mb0 = -1}; /* the base model catching up on unjudged steps */
    enum sr_status st = SR_OK;
    if (p->max_answer_tokens <= 0) st = SR_OK;
    else if (w == r->base && (st = base_catch_up(r, &cu)) != SR_OK) return st;
    else if (w == r->base) st = base_write(r, NULL, p->max_answer_tokens, dm, &g);
    else st = w->ops->generate(w, NULL, p->max_answer_tokens, &g);
    double t = ms_since(t0) - cu.catch_ms;
    bool full = st == SR_ERR_CONTEXT_FULL; /* keep the answer written so far */
    if (st != SR_OK && !full) { sr_buf_free(&g.text); return fail(r, w, st, "writing the answer"); }
    if (w == r->base) S->t_base_ms += t;
    else S->t_small_ms += t;
    S->t_sync_ms += cu.catch_ms;
    if (w == r->base && r->use_ctl) { /* the base model's decoding cost, measured on the answer */
        struct sr_ctl_step cs0 = {.reason = SR_CTL_FIXED, .conf_min = NAN, .conf_mean = NAN};
        struct sr_ctl_obs o = {.conf_min = NAN, .n_base = g.n_tokens, .t_base_ms = t, .n_catchup = cu.catch_n,
                               .t_catchup_ms = cu.catch_ms};
        sr_ctl_observe(&r->ctl, &cs0, &o);
    }
    S->n_answer_tokens = g.n_tokens;
    sr_buf_append(&r->text, g.text.data ? g.text.data : "", g.text.len);
    struct sr_event ev = {.type = SR_EVENT_ANSWER, .step = (int32_t)r->res->n_steps, .text = g.text.data ? g.text.data : "",
                          .len = g.text.len, .author = SR_AUTHOR_ANSWER, .score = -1, .n_tokens = g.n_tokens, .t_ms = t};
    emit(r, &ev);
    if (r->cancelled) *stop = SR_STOP_CANCELLED;
    else if (full) *stop = SR_STOP_CONTEXT;
    else if (p->max_answer_tokens > 0 && g.end == SR_GEN_EOG) *stop = SR_STOP_EOG;
    else *stop = SR_STOP_ANSWER_MAX; /* cut at max_answer_tokens (or none allowed) */
    sr_buf_free(&g.text);
    return SR_OK;
}

/* The result's text, and its answer: what follows the last </think>. */
static enum sr_status finish_text(struct run *r) {
    if (r->text.oom) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    r->res->text = sr_buf_take(&r->text);
    if (!r->res->text) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    const char *te = NULL;
    for (const char *q = strstr(r->res->text, "</think>"); q; q = strstr(q + 1, "</think>")) te = q;
    if (te) {
        r->res->answer = sr_strdup(te + strlen("</think>"));
        if (!r->res->answer) return fail(r, NULL, SR_ERR_NOMEM, "out of memory");
    }
    return SR_OK;
}

/* Totals, times and rates of the run. */
static void finish_stats(struct run *r) {
    const struct sr_run_params *p = r->p;
    struct sr_lm *small = r->small, *base = r->base;
    struct sr_stats *S = &r->res->stats;
    S->t_total_ms = ms_since(r->t_start_us);
    S->t_backend_ms = (double)((small ? small->t_backend_us - r->b0_small : 0) +
                               (base ? base->t_backend_us - r->b0_base : 0)) / 1000.0;
    S->n_decode_small = small ? small->n_decode - r->d0_small : 0;
    S->n_decode_base = base ? base->n_decode - r->d0_base : 0;
    S->t_other_ms = S->t_total_ms - S->t_small_ms - S->t_judge_ms - S->t_base_ms - S->t_sync_ms - S->t_prompt_ms;
    /* Judged drafts only: unjudged acceptances (policy auto) are counted apart. */
    S->acceptance = S->n_judged ? (double)(S->n_steps_small - S->n_unjudged) / S->n_judged : 0.0;
    if (p->mode != SR_MODE_SPEC) S->acceptance = 0.0;
    if (r->use_ctl) sr_ctl_stats(&r->ctl, S);
    if (r->piped) sr_pipe_stats(&r->pipe, S);
    S->n_sd_drafted = r->sd.drafted;
    S->n_sd_accepted = r->sd.accepted;
    S->n_sd_batches = r->sd.batches;
    S->sd_mean_accepted = r->sd.batches ? (double)r->sd.accepted / (double)r->sd.batches : 0.0;
    S->t_sd_draft_ms = (double)r->sd.t_draft_us / 1000.0;
    S->t_sd_verify_ms = (double)r->sd.t_verify_us / 1000.0;
    S->tokens_per_s = S->t_total_ms > 0 ? (double)(S->n_adopted_tokens + S->n_answer_tokens) / (S->t_total_ms / 1000.0) : 0;
}

/* The controller's key: the settings its gate labels and acceptance depend on. */
uint64_t sr_loop_ctl_key(const struct sr_run_params *p) {
    char num[160];
    snprintf(num, sizeof num, "%.9g|%d|%.9g|%.9g|%d|%.9g|%.9g", (double)p->threshold, (int)p->score_method,
             (double)p->small.temperature, (double)p->small.top_p, (int)p->ctl_gate_label,
             (double)p->base.temperature, (double)p->base.top_p); /* outcome labels: the base model rewrites */
    uint64_t h = sr_ctl_hash(0, num);
    h = sr_ctl_hash(h, p->prompt_template ? p->prompt_template : SR_PROMPT_MATH);
    h = sr_ctl_hash(h, p->judge_prompt ? p->judge_prompt : SR_JUDGE_PROMPT);
    h = sr_ctl_hash(h, p->judge_prefill ? p->judge_prefill : SR_JUDGE_PREFILL);
    h = sr_ctl_hash(h, p->think_open);
    return sr_ctl_hash(h, p->step_delim);
}

enum sr_status sr_loop_run(struct sr_lm *small, struct sr_lm *base, const char *problem,
                           const struct sr_run_params *p, struct sr_result **out, char *errbuf, size_t errlen) {
    return sr_loop_run_shared(small, base, problem, p, NULL, out, errbuf, errlen);
}

/* SpecReason over one problem: prompts, then steps until a stop rule, then (when thinking ended
 * without an answer) the answer. */
enum sr_status sr_loop_run_shared(struct sr_lm *small, struct sr_lm *base, const char *problem,
                                  const struct sr_run_params *p_in, struct sr_ctl_shared *shared,
                                  struct sr_result **out, char *errbuf, size_t errlen) {
    *out = NULL;
    bool use_sd = false;
    enum sr_status st = check_run(small, base, problem, p_in, &use_sd, errbuf, errlen);
    if (st != SR_OK) return st;
    char *user = sr_prompt_fill(p_in->prompt_template ? p_in->prompt_template : SR_PROMPT_MATH, problem);
    if (!user) { snprintf(errbuf, errlen, "out of memory"); return SR_ERR_NOMEM; }
    struct sr_chat_msg msg = {"user", user};
    st = sr_loop_run_chat_shared(small, base, &msg, 1, p_in, shared, out, errbuf, errlen);
    free(user);
    return st;
}

enum sr_status sr_loop_run_chat(struct sr_lm *small, struct sr_lm *base, const struct sr_chat_msg *msgs, size_t n_msgs,
                                const struct sr_run_params *p, struct sr_result **out, char *errbuf, size_t errlen) {
    return sr_loop_run_chat_shared(small, base, msgs, n_msgs, p, NULL, out, errbuf, errlen);
}

/* The same over a conversation (the messages as given, no prompt template). */
enum sr_status sr_loop_run_chat_shared(struct sr_lm *small, struct sr_lm *base, const struct sr_chat_msg *msgs,
                                       size_t n_msgs, const struct sr_run_params *p_in, struct sr_ctl_shared *shared,
                                       struct sr_result **out, char *errbuf, size_t errlen) {
    *out = NULL;
    bool use_sd = false;
    enum sr_status st = check_run(small, base, "", p_in, &use_sd, errbuf, errlen);
    if (st != SR_OK) return st;
    if (!msgs || n_msgs == 0) { snprintf(errbuf, errlen, "no messages"); return SR_ERR_INVALID_ARG; }
    struct sr_run_params p_eff = *p_in;
    if (p_eff.mode == SR_MODE_SPEC && p_eff.policy == SR_POLICY_NEVER) p_eff.mode = SR_MODE_BASE; /* exactly */
    const struct sr_run_params *p = &p_eff;
    if (p->mode == SR_MODE_SMALL) base = NULL;
    if (p->mode == SR_MODE_BASE && !use_sd) small = NULL;

    struct run r = {0};
    r.t_start_us = sr_time_us();
    r.p = p;
    r.small = small;
    r.base = base;
    r.delim = p->step_delim ? p->step_delim : "\n\n";
    r.dlen = strlen(r.delim);
    r.errbuf = errbuf;
    r.errlen = errlen;
    r.drafter = use_sd ? small : NULL;
    if (p->mode == SR_MODE_SPEC && p->policy == SR_POLICY_AUTO && !use_sd && p->ctl_verify_rewrite &&
        p->small.temperature <= 0.0f &&
        p->base.temperature <= 0.0f && base->ops->generate_spec && base->ops->draft_compatible) {
        char why[256];
        if (base->ops->draft_compatible(base, small, why, sizeof why)) r.redrafter = small;
    }
    r.b0_small = small ? small->t_backend_us : 0;
    r.b0_base = base ? base->t_backend_us : 0;
    r.d0_small = small ? small->n_decode : 0;
    r.d0_base = base ? base->n_decode : 0;
    r.use_ctl = p->mode == SR_MODE_SPEC && p->policy == SR_POLICY_AUTO;
    if (small) small->want_logprob = r.use_ctl; /* the gate reads the drafts' confidence */
    if (r.use_ctl) {
        struct sr_ctl_params cp = sr_ctl_default_params();
        cp.precision = p->ctl_precision;
        cp.audit = p->ctl_audit;
        cp.probe_max = p->ctl_probe_max;
        cp.label_judge = p->ctl_gate_label == SR_LABEL_JUDGE;
        struct sr_ctl_model m;
        sr_ctl_init(&r.ctl, &cp, sr_ctl_shared_get(shared, &m) ? &m : NULL, sr_loop_ctl_key(p));
    }
    /* Pipelined only where it is exact: a greedy small model that is not a token-level drafter. */
    if (p->mode == SR_MODE_SPEC && !use_sd && p->small.temperature <= 0.0f && sr_pipe_wanted(p->pipeline, small, base)) {
        sr_pipe_init(&r.pipe, small);
        r.small = &r.pipe.lm;
        r.piped = true;
    }
    r.res = calloc(1, sizeof *r.res);
    if (!r.res) { snprintf(errbuf, errlen, "out of memory"); return SR_ERR_NOMEM; }

    bool think_ended = false;
    enum sr_stop_reason stop = SR_STOP_NONE;
    st = prefill_prompts(&r, msgs, n_msgs);
    if (st == SR_OK) st = step_loop(&r, &think_ended, &stop);
    if (r.piped) { /* a draft made ahead for a step that never came is thrown away */
        enum sr_status ps = sr_pipe_settle(&r.pipe);
        if (st == SR_OK && ps != SR_OK) st = fail(&r, r.small, ps, "small model rollback");
    }
    if (st == SR_OK && think_ended && stop == SR_STOP_NONE) st = answer_phase(&r, &stop);
    r.res->stop = stop;
    if (st == SR_OK) st = finish_text(&r);
    finish_stats(&r);

    if (st == SR_OK && r.use_ctl) sr_ctl_shared_put(shared, &r.ctl.m);
    if (st == SR_OK) {
        struct sr_event ev = {.type = SR_EVENT_FINISHED, .step = (int32_t)r.res->n_steps, .text = "", .len = 0,
                              .score = -1, .stop = r.res->stop, .t_ms = r.res->stats.t_total_ms};
        if (p->on_event) p->on_event(&ev, p->user);
        *out = r.res;
    } else {
        sr_result_free(r.res);
    }
    sr_buf_free(&r.text);
    sr_buf_free(&r.owed_base);
    sr_buf_free(&r.owed_small);
    sr_buf_free(&r.suffix);
    return st;
}

void sr_result_free(struct sr_result *res) {
    if (!res) return;
    for (size_t i = 0; i < res->n_steps; i++) {
        free(res->steps[i].text);
        free(res->steps[i].draft);
    }
    free(res->steps);
    free(res->text);
    free(res->answer);
    free(res);
}
