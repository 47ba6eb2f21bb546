/*
 * controller.h: the cost-aware speculation controller (policy auto).
 *
 * The step loop asks it at two points: before a step, whether to speculate (small draft, then
 * judge) or let the base model write the step; after a draft, whether to judge it or accept it
 * unjudged. After the step the loop reports what it measured, and the controller updates:
 *   - an online cost model: per-token time of small decoding, base decoding, judging (base
 *     prefill of candidate + suffix), the base model catching up on unjudged steps, and the small
 *     model adopting base steps; each the median of a window of recent steps;
 *   - the judge's acceptance, smoothed (EWMA from a prior) so it follows changes;
 *   - the judge-skip gate: judged drafts (their lowest token log-probability and a label) form a
 *     calibration set, fitted by Platt scaling (logistic in log(1e-3 - conf)); the level is the
 *     lowest confidence at and above which a lower bound (z = 1) of the fitted probability of a
 *     positive label reaches `precision`. The label (`label_judge` false, the default) is the
 *     step's outcome: the draft was kept, or the judge rejected it and the base model wrote the
 *     same text (so skipping the judge would have changed nothing); with `label_judge` it is the
 *     judge's verdict alone. A negative audit weighs 1/audit (it stands for the skipped drafts it
 *     was sampled from), so one bad audit raises the level at once.
 * Speculating is chosen when
 *   E_spec = small_tok*L + skip*catchup_tok*L + (1-skip)*judge_tok*(L+S) + reject*(base_tok+sync_tok)*L
 * is below E_base = (base_tok + sync_tok)*L (L = median step tokens, S = judge suffix tokens,
 * reject = expected rejections per draft). While the base model writes, speculation is probed
 * after `probe` base steps; a probe that does not change the decision doubles the interval (up
 * to probe_max), and the interval is at least what keeps a probe's expected extra cost
 * (e_spec - e_base) under 2% of the base model's time, so exploration costs a bounded, shrinking
 * share. A probe is always judged (it
 * is there to measure acceptance).
 * The share the gate may skip (less the audits) is an EWMA of drafts at or above the level,
 * seeded, when the level is first on, with the share among the recent drafts from before it (so
 * it is known at once: started from zero, it would keep speculation looking dear and never learn).
 * Warm-up: the first judged drafts (and, while the gate could still pay, until it has enough
 * labels, even once it has a level) are speculated whatever the costs say.
 *
 * A model (struct sr_ctl_model) can outlive a run: the engine keeps one per loaded pair and each
 * run starts from a copy and writes its copy back (sr_ctl_shared), so a server or an evaluation
 * learns once. The gate's labels depend on the judge settings, so a run whose settings differ
 * from the model's (threshold, score method, prompts) starts a fresh gate and acceptance but
 * keeps the costs.
 * Pure computation: no I/O, no clock; deterministic given its inputs.
 */
#ifndef SR_CONTROLLER_H
#define SR_CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "specreason.h"

#define SR_CTL_WIN 32  /* cost samples kept per quantity */
#define SR_CTL_CAL 512 /* gate calibration labels kept */
#define SR_CTL_DRAFTS 64 /* recent drafts' confidences kept (the gate's skip share) */

struct sr_ctl_win {
    double v[SR_CTL_WIN];
    int32_t n, i;
};

struct sr_ctl_model {
    uint64_t key; /* hash of the judge settings the gate and acceptance belong to */
    struct sr_ctl_win small_tok, base_tok, judge_tok, catch_tok, sync_tok, step_len, suffix_len;
    double p_reject;  /* EWMA of rejections per judged draft */
    double p_change;  /* EWMA of negative gate labels per judged draft */
    int64_t n_judged; /* judged drafts seen (labels) */
    float cal_conf[SR_CTL_CAL];
    bool cal_acc[SR_CTL_CAL];
    float cal_w[SR_CTL_CAL]; /* weight: 1, or 1/audit for a negative audit (it stands for the skipped ones) */
    int32_t cal_n, cal_i;
    float level;       /* gate level; +INF = not calibrated */
    double fit_a, fit_b; /* the gate's logistic fit: log-odds of a positive label = a + b*log(1e-3 - conf) */
    float draft_conf[SR_CTL_DRAFTS]; /* confidences of the recent drafts, judged or not */
    int32_t dc_n, dc_i;
    double skip_ewma;  /* EWMA of drafts at or above the level (what the gate may skip), seeded
                          from draft_conf once the level is on */
    bool skip_seeded;
    int64_t n_eligible; /* drafts above the level (audit sampling counter) */
    int32_t since_probe, probe;
};

struct sr_ctl_params {
    float precision;   /* gate target; >= 1 = never skip */
    float audit;       /* fraction of skippable drafts judged anyway */
    int32_t probe_max; /* largest probe interval */
    int32_t warmup;    /* judged drafts before any cost decision (default 2) */
    int32_t cal_min;   /* labels the gate needs before it may skip (default 16) */
    int32_t cal_target; /* warm-up keeps judging until this many labels while the gate could pay (48) */
    float prior_accept; /* acceptance before any label (0.7) */
    float alpha;        /* EWMA weight of the newest verdict (0.25) */
    bool label_judge;   /* gate labels: the judge's verdict (true) or the step's outcome (false) */
};

/* What the controller said about one step, and the model state it used. */
struct sr_ctl_step {
    enum sr_ctl_reason reason;
    enum sr_ctl_gate gate;
    double e_spec_ms, e_base_ms; /* 0 when the cost model was not ready */
    float conf_min, conf_mean;   /* NAN = none */
};

/* What the loop measured in one step (zeros for what did not happen). */
struct sr_ctl_obs {
    bool speculated;
    bool judged;
    bool accepted;          /* the judge's verdict (judged only) */
    bool same;              /* judged only: the adopted step is the draft (accepted, or rewritten
                               by the base model to the same text) */
    float conf_min;         /* NAN = unknown */
    int32_t n_draft;
    double t_draft_ms;
    int32_t n_judge_tokens, n_suffix_tokens;
    double t_judge_ms;
    int32_t n_base;         /* tokens the base model wrote */
    double t_base_ms;
    int32_t n_sync;         /* tokens the small model appended (a base step) */
    double t_sync_ms;
    int32_t n_catchup;      /* tokens appended to the base model for unjudged steps */
    double t_catchup_ms;
    int32_t n_step;         /* tokens of the adopted step */
    double t_step_ms;       /* measured time of the whole step */
};

struct sr_ctl {
    struct sr_ctl_params p;
    struct sr_ctl_model m;
    /* run statistics */
    int32_t n_spec, n_base, n_probes, n_unjudged, n_audits, n_disagree;
    double sum_e_base, sum_e_chosen, sum_t_measured;
    double pending_e_base, pending_e_chosen; /* of the current step (0 = not ready) */
    enum sr_ctl_reason cur; /* decision of the current step */
};

/* Defaults for the knobs the public parameters do not carry. */
struct sr_ctl_params sr_ctl_default_params(void);
/* Starts a run: from `from` (NULL = a fresh model) when its key matches, else from its costs only. */
void sr_ctl_init(struct sr_ctl *c, const struct sr_ctl_params *p, const struct sr_ctl_model *from, uint64_t key);
/* Decision 1: true = speculate. Fills cs->reason and the expected costs. */
bool sr_ctl_draft(struct sr_ctl *c, struct sr_ctl_step *cs);
/* Decision 2 (after a draft with confidence conf_min, NAN = unknown): true = judge it. Fills
 * cs->gate and the confidences. */
bool sr_ctl_judge(struct sr_ctl *c, float conf_min, float conf_mean, struct sr_ctl_step *cs);
/* After the step. */
void sr_ctl_observe(struct sr_ctl *c, const struct sr_ctl_step *cs, const struct sr_ctl_obs *o);
/* The learned model and run counters into the public statistics. */
void sr_ctl_stats(const struct sr_ctl *c, struct sr_stats *S);

/* Current estimates (for tests and statistics). */
double sr_ctl_median(const struct sr_ctl_win *w); /* 0 if empty */
double sr_ctl_skip_rate(const struct sr_ctl *c);
double sr_ctl_acceptance(const struct sr_ctl *c);

/* Engine-level shared model (thread-safe copy in / copy out). */
struct sr_ctl_shared;
struct sr_ctl_shared *sr_ctl_shared_new(void); /* NULL on allocation failure */
void sr_ctl_shared_free(struct sr_ctl_shared *s);
/* Copies the shared model into *out; false if none was stored yet. */
bool sr_ctl_shared_get(struct sr_ctl_shared *s, struct sr_ctl_model *out);
void sr_ctl_shared_put(struct sr_ctl_shared *s, const struct sr_ctl_model *m);

/* FNV-1a over a string (NULL hashes as empty), chained from h. */
uint64_t sr_ctl_hash(uint64_t h, const char *s);

#endif
