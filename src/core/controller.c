/*
 * controller.c: see controller.h.
 */
#include "controller.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_MIN 8
#define PROBE_BUDGET 0.02 /* share of the base model's time that probes may cost */

struct sr_ctl_params sr_ctl_default_params(void) {
    struct sr_ctl_params p = {
        .precision = 0.97f,
        .audit = 0.1f,
        .probe_max = 64,
        .warmup = 2,
        .cal_min = 16,
        .cal_target = 48,
        .prior_accept = 0.7f,
        .alpha = 0.25f,
    };
    return p;
}

uint64_t sr_ctl_hash(uint64_t h, const char *s) {
    if (!h) h = 1469598103934665603ull;
    for (const unsigned char *q = (const unsigned char *)(s ? s : ""); *q; q++) {
        h ^= *q;
        h *= 1099511628211ull;
    }
    h ^= 0xff; /* separator, so ("ab","c") != ("a","bc") */
    h *= 1099511628211ull;
    return h;
}

static void win_push(struct sr_ctl_win *w, double v) {
    if (!isfinite(v) || v < 0) return;
    w->v[w->i] = v;
    w->i = (w->i + 1) % SR_CTL_WIN;
    if (w->n < SR_CTL_WIN) w->n++;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sr_ctl_median(const struct sr_ctl_win *w) {
    if (w->n == 0) return 0.0;
    double t[SR_CTL_WIN];
    memcpy(t, w->v, (size_t)w->n * sizeof *t);
    qsort(t, (size_t)w->n, sizeof *t, cmp_double);
    return w->n % 2 ? t[w->n / 2] : 0.5 * (t[w->n / 2 - 1] + t[w->n / 2]);
}

static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void reset_gate(struct sr_ctl_model *m, const struct sr_ctl_params *p, uint64_t key) {
    m->key = key;
    m->p_reject = 1.0 - p->prior_accept;
    m->p_change = 1.0 - p->prior_accept;
    m->n_judged = 0;
    m->cal_n = m->cal_i = 0;
    m->level = INFINITY;
    m->fit_a = m->fit_b = 0.0;
    m->dc_n = m->dc_i = 0;
    m->skip_ewma = 0.0;
    m->skip_seeded = false;
    m->n_eligible = 0;
    m->since_probe = 0;
    m->probe = PROBE_MIN;
    memset(&m->suffix_len, 0, sizeof m->suffix_len);
}

void sr_ctl_init(struct sr_ctl *c, const struct sr_ctl_params *p, const struct sr_ctl_model *from, uint64_t key) {
    memset(c, 0, sizeof *c);
    c->p = *p;
    if (from) c->m = *from;
    if (!from || from->key != key) reset_gate(&c->m, p, key);
    if (c->m.probe < PROBE_MIN) c->m.probe = PROBE_MIN;
    if (c->m.probe > p->probe_max) c->m.probe = p->probe_max > 0 ? p->probe_max : 1;
}

static bool gate_on(const struct sr_ctl *c) { return c->p.precision < 1.0f; }

/* The share of the recent drafts at or above the level. */
static double window_share(const struct sr_ctl_model *m) {
    if (m->dc_n == 0) return 0.0;
    int32_t above = 0;
    for (int32_t i = 0; i < m->dc_n; i++) above += m->draft_conf[i] >= m->level;
    return (double)above / m->dc_n;
}

double sr_ctl_skip_rate(const struct sr_ctl *c) {
    const struct sr_ctl_model *m = &c->m;
    if (!gate_on(c) || !isfinite(m->level)) return 0.0;
    return (m->skip_seeded ? m->skip_ewma : window_share(m)) * (1.0 - (double)c->p.audit);
}

double sr_ctl_acceptance(const struct sr_ctl *c) { return 1.0 - c->m.p_reject; }

/* The gate's feature: log(eps + -conf) of the draft's lowest token log-probability (conf <= 0;
 * larger = less confident). The logistic fit is close to linear in it (measured: docs). */
static double gate_x(float conf) { return log(1e-3 + (conf < 0.0f ? -(double)conf : 0.0)); }

/* Platt scaling: a weighted logistic fit of P(label | x) = 1 / (1 + exp(-(a + b x))) over the
 * calibration labels (Newton's method, a small ridge so that separable or one-sided label sets
 * stay finite), and the lower bound (z = 1, delta method) of the fitted log-odds at x. The level
 * is the lowest label confidence at and above which every label's bound reaches `precision`:
 * a draft is skipped only where the judge-free outcome is predicted positive with at least that
 * probability. A selection that depends on the confidence alone (judging below the level,
 * auditing above it) leaves such a fit unbiased. +INF with fewer than cal_min labels. */
static void recalibrate(struct sr_ctl *c) {
    struct sr_ctl_model *m = &c->m;
    m->level = INFINITY;
    if (!gate_on(c) || m->cal_n < c->p.cal_min) return;
    const double l2 = 0.1; /* a ridge toward even odds: a prior worth a few labels */
    double a = 0.0, b = 0.0, haa = 0, hab = 0, hbb = 0;
    for (int it = 0; it < 50; it++) {
        double ga = l2 * a, gb = l2 * b;
        haa = hbb = l2;
        hab = 0;
        for (int i = 0; i < m->cal_n; i++) {
            double x = gate_x(m->cal_conf[i]), w = m->cal_w[i];
            double p = 1.0 / (1.0 + exp(-(a + b * x))), y = m->cal_acc[i] ? 1.0 : 0.0;
            ga += w * (p - y);
            gb += w * (p - y) * x;
            double q = w * p * (1.0 - p);
            haa += q;
            hab += q * x;
            hbb += q * x * x;
        }
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) return;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if (fabs(da) + fabs(db) < 1e-7) break;
    }
    /* The Hessian at the fit (its inverse: the covariance of a, b). */
    haa = hbb = l2;
    hab = 0;
    for (int i = 0; i < m->cal_n; i++) {
        double x = gate_x(m->cal_conf[i]), p = 1.0 / (1.0 + exp(-(a + b * x))), q = m->cal_w[i] * p * (1.0 - p);
        haa += q;
        hab += q * x;
        hbb += q * x * x;
    }
    double det = haa * hbb - hab * hab;
    if (!(det > 0) || !isfinite(a) || !isfinite(b)) return;
    double vaa = hbb / det, vbb = haa / det, vab = -hab / det;
    double target = log((double)c->p.precision / (1.0 - (double)c->p.precision));
    float t[SR_CTL_CAL];
    memcpy(t, m->cal_conf, (size_t)m->cal_n * sizeof *t);
    qsort(t, (size_t)m->cal_n, sizeof *t, cmp_float_desc);
    for (int k = 0; k < m->cal_n; k++) {
        if (k > 0 && t[k] == t[k - 1]) continue;
        double x = gate_x(t[k]);
        double se = sqrt(fmax(0.0, vaa + 2.0 * vab * x + vbb * x * x));
        if (a + b * x - se < target) break;
        m->level = t[k];
    }
    m->fit_a = a;
    m->fit_b = b;
}

struct est {
    double cs, cb, cj, cc, css, L, S, skip;
    bool base_known;
};

static bool estimate(const struct sr_ctl *c, struct est *e) {
    const struct sr_ctl_model *m = &c->m;
    if (m->small_tok.n == 0 || m->judge_tok.n == 0 || m->step_len.n == 0) return false;
    e->cs = sr_ctl_median(&m->small_tok);
    e->cj = sr_ctl_median(&m->judge_tok);
    e->L = sr_ctl_median(&m->step_len);
    e->S = sr_ctl_median(&m->suffix_len);
    e->base_known = m->base_tok.n > 0;
    /* Unmeasured base decoding: a lower bound (decoding a token costs at least what prefilling
     * one does), so the base model gets to write once and is measured. */
    e->cb = e->base_known ? sr_ctl_median(&m->base_tok) : fmax(e->cj, e->cs);
    e->cc = m->catch_tok.n ? sr_ctl_median(&m->catch_tok) : e->cj;
    e->css = m->sync_tok.n ? sr_ctl_median(&m->sync_tok) : 0.0;
    e->skip = sr_ctl_skip_rate(c);
    return true;
}

static double e_spec(const struct sr_ctl *c, const struct est *e, double skip) {
    double judged = e->cj * (e->L + e->S) + c->m.p_reject * (e->cb + e->css) * e->L;
    return e->cs * e->L + skip * e->cc * e->L + (1.0 - skip) * judged;
}

static double e_base(const struct est *e) { return (e->cb + e->css) * e->L; }

/* An optimistic share of positive gate labels, for the warm-up's "could skipping pay" (the
 * labels' mean under a uniform prior plus one standard error): a few unlucky early labels must
 * not end the exploration that would show a gate worth having (an EWMA after one rejection of
 * two did), and a pair whose drafts are all rejected still ends it within a few labels. */
static double label_ucb(const struct sr_ctl_model *m) {
    int32_t pos = 0;
    for (int32_t i = 0; i < m->cal_n; i++) pos += m->cal_acc[i];
    double n = m->cal_n + 2.0, q = (pos + 1.0) / n;
    return fmin(1.0, q + sqrt(q * (1.0 - q) / n));
}

bool sr_ctl_draft(struct sr_ctl *c, struct sr_ctl_step *cs) {
    struct sr_ctl_model *m = &c->m;
    struct est e;
    bool ready = estimate(c, &e);
    cs->gate = SR_GATE_NONE;
    cs->conf_min = cs->conf_mean = NAN;
    cs->e_spec_ms = ready ? e_spec(c, &e, e.skip) : 0.0;
    cs->e_base_ms = ready ? e_base(&e) : 0.0;
    c->pending_e_base = cs->e_base_ms;
    c->pending_e_chosen = cs->e_spec_ms;
    c->cur = SR_CTL_WARMUP;
    if (!ready || m->n_judged < c->p.warmup) {
        cs->reason = SR_CTL_WARMUP;
        return true;
    }
    /* While the gate has few labels (its level is missing, or still high from a loose bound),
     * speculate on as long as skipping could pay. */
    if (gate_on(c) && m->dc_n > 0 && m->cal_n < c->p.cal_target) { /* (drafts without a confidence: no gate) */
        double opt = (1.0 - (double)c->p.audit) * label_ucb(m);
        if (e_spec(c, &e, opt) < cs->e_base_ms) {
            cs->reason = SR_CTL_WARMUP;
            return true;
        }
    }
    if (cs->e_spec_ms < cs->e_base_ms) {
        cs->reason = SR_CTL_CHEAPER;
        m->since_probe = 0;
        m->probe = PROBE_MIN < c->p.probe_max ? PROBE_MIN : c->p.probe_max;
        return true;
    }
    /* A probe costs about e_spec - e_base more than letting the base model write; keep that under
     * PROBE_BUDGET of the base model's time (a pair that loses by 70% probes every 35 steps at
     * the least), so exploration stays cheap however badly speculation loses. */
    int32_t need = m->probe;
    double loss = cs->e_spec_ms / cs->e_base_ms - 1.0;
    if (loss > 0) {
        double n = ceil(loss / PROBE_BUDGET), cap = 4.0 * (c->p.probe_max > 0 ? c->p.probe_max : 1);
        if (n > need) need = (int32_t)fmin(n, cap);
    }
    if (++m->since_probe >= need) {
        cs->reason = c->cur = SR_CTL_PROBE;
        m->since_probe = 0;
        m->probe = m->probe * 2 < c->p.probe_max ? m->probe * 2 : c->p.probe_max;
        return true;
    }
    cs->reason = c->cur = SR_CTL_BASE;
    c->pending_e_chosen = cs->e_base_ms;
    return false;
}

bool sr_ctl_judge(struct sr_ctl *c, float conf_min, float conf_mean, struct sr_ctl_step *cs) {
    struct sr_ctl_model *m = &c->m;
    cs->conf_min = conf_min;
    cs->conf_mean = conf_mean;
    cs->gate = SR_GATE_JUDGED;
    if (isnan(conf_min) || !gate_on(c) || !isfinite(m->level) || conf_min < m->level || c->cur == SR_CTL_PROBE)
        return true;
    m->n_eligible++;
    if (c->p.audit > 0.0f) {
        int64_t period = (int64_t)lrintf(1.0f / c->p.audit);
        if (period < 1) period = 1;
        if (m->n_eligible % period == 0) {
            cs->gate = SR_GATE_AUDIT;
            return true;
        }
    }
    cs->gate = SR_GATE_SKIPPED;
    return false;
}

void sr_ctl_observe(struct sr_ctl *c, const struct sr_ctl_step *cs, const struct sr_ctl_obs *o) {
    struct sr_ctl_model *m = &c->m;
    if (o->n_draft > 0) win_push(&m->small_tok, o->t_draft_ms / o->n_draft);
    if (o->judged && o->n_judge_tokens + o->n_suffix_tokens > 0) {
        win_push(&m->judge_tok, o->t_judge_ms / (o->n_judge_tokens + o->n_suffix_tokens));
        win_push(&m->suffix_len, o->n_suffix_tokens);
    }
    if (o->n_base > 0) win_push(&m->base_tok, o->t_base_ms / o->n_base);
    if (o->n_sync > 0) win_push(&m->sync_tok, o->t_sync_ms / o->n_sync);
    if (o->n_catchup > 0) win_push(&m->catch_tok, o->t_catchup_ms / o->n_catchup);
    if (o->n_step > 0) win_push(&m->step_len, o->n_step);
    if (o->speculated && !isnan(o->conf_min)) {
        m->draft_conf[m->dc_i] = o->conf_min;
        m->dc_i = (m->dc_i + 1) % SR_CTL_DRAFTS;
        if (m->dc_n < SR_CTL_DRAFTS) m->dc_n++;
        if (isfinite(m->level)) {
            const double as = 0.1; /* slower than verdicts: the skip share is a long-run rate */
            if (!m->skip_seeded) m->skip_ewma = window_share(m);
            else m->skip_ewma = (1.0 - as) * m->skip_ewma + as * (o->conf_min >= m->level ? 1.0 : 0.0);
            m->skip_seeded = true;
        }
    }
    if (o->judged) {
        m->n_judged++;
        m->p_reject = (1.0 - c->p.alpha) * m->p_reject + c->p.alpha * (o->accepted ? 0.0 : 1.0);
        bool label = c->p.label_judge ? o->accepted : o->accepted || o->same;
        m->p_change = (1.0 - c->p.alpha) * m->p_change + c->p.alpha * (label ? 0.0 : 1.0);
        if (!isnan(o->conf_min)) {
            m->cal_conf[m->cal_i] = o->conf_min;
            m->cal_acc[m->cal_i] = label;
            /* A negative audit stands for the skipped drafts it was sampled from. */
            m->cal_w[m->cal_i] = cs->gate == SR_GATE_AUDIT && !label && c->p.audit > 0.0f ? 1.0f / c->p.audit : 1.0f;
            m->cal_i = (m->cal_i + 1) % SR_CTL_CAL;
            if (m->cal_n < SR_CTL_CAL) m->cal_n++;
            recalibrate(c);
        }
    }
    if (cs->gate == SR_GATE_AUDIT) {
        c->n_audits++;
        if (!o->accepted) c->n_disagree++;
    }
    if (cs->gate == SR_GATE_SKIPPED) c->n_unjudged++;
    switch (cs->reason) {
    case SR_CTL_WARMUP:
    case SR_CTL_CHEAPER: c->n_spec++; break;
    case SR_CTL_PROBE: c->n_spec++; c->n_probes++; break;
    case SR_CTL_BASE: c->n_base++; break;
    case SR_CTL_FIXED: break;
    }
    if (cs->reason != SR_CTL_FIXED && c->pending_e_base > 0 && c->pending_e_chosen > 0) {
        c->sum_e_base += c->pending_e_base;
        c->sum_e_chosen += c->pending_e_chosen;
        c->sum_t_measured += o->t_step_ms;
    }
    c->pending_e_base = c->pending_e_chosen = 0;
}

void sr_ctl_stats(const struct sr_ctl *c, struct sr_stats *S) {
    const struct sr_ctl_model *m = &c->m;
    S->n_ctl_spec = c->n_spec;
    S->n_ctl_base = c->n_base;
    S->n_ctl_probes = c->n_probes;
    S->n_unjudged = c->n_unjudged;
    S->n_audits = c->n_audits;
    S->n_audit_disagree = c->n_disagree;
    struct est e;
    bool ready = estimate(c, &e);
    S->ctl_small_tok_ms = sr_ctl_median(&m->small_tok);
    S->ctl_base_tok_ms = sr_ctl_median(&m->base_tok);
    S->ctl_judge_tok_ms = sr_ctl_median(&m->judge_tok);
    S->ctl_catchup_tok_ms = sr_ctl_median(&m->catch_tok);
    S->ctl_sync_tok_ms = sr_ctl_median(&m->sync_tok);
    S->ctl_step_tokens = sr_ctl_median(&m->step_len);
    S->ctl_acceptance = sr_ctl_acceptance(c);
    S->ctl_gate_level = isfinite(m->level) ? (double)m->level : NAN;
    S->ctl_skip_rate = ready ? e.skip : 0.0;
    S->ctl_predicted_speedup = c->sum_e_chosen > 0 ? c->sum_e_base / c->sum_e_chosen : 0.0;
    S->ctl_measured_speedup = c->sum_t_measured > 0 ? c->sum_e_base / c->sum_t_measured : 0.0;
}

/* ------------------------------------------------------------------------------------------ */

struct sr_ctl_shared {
    pthread_mutex_t mu;
    bool has;
    struct sr_ctl_model m;
};

struct sr_ctl_shared *sr_ctl_shared_new(void) {
    struct sr_ctl_shared *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void sr_ctl_shared_free(struct sr_ctl_shared *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

bool sr_ctl_shared_get(struct sr_ctl_shared *s, struct sr_ctl_model *out) {
    if (!s) return false;
    pthread_mutex_lock(&s->mu);
    bool has = s->has;
    if (has) *out = s->m;
    pthread_mutex_unlock(&s->mu);
    return has;
}

void sr_ctl_shared_put(struct sr_ctl_shared *s, const struct sr_ctl_model *m) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->m = *m;
    s->has = true;
    pthread_mutex_unlock(&s->mu);
}
