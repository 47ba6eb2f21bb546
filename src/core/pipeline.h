/*
 * pipeline.h: pipelined speculation (issue 17), below the model seam.
 *
 * A `struct sr_pipe` wraps the small model in a proxy `struct sr_lm` that the loop drives like
 * the model itself. At the judge stage the loop calls sr_pipe_ahead: a worker thread lets the
 * small model draft the next step (it already holds the step being judged, so the draft is the
 * one an unpipelined run would write after accepting it) while the base model judges on the
 * calling thread. The next `generate` on the proxy with the same delimiter and limit takes that
 * draft (waiting for it if it is still under way) instead of decoding again. Any other operation
 * on the proxy (rollback after a rejection, an append of a base step, reset, ...) first joins the
 * worker and throws the draft away, rolling the small model back to where it stood when the
 * draft started; so both models end exactly where the unpipelined run leaves them, and the loop
 * never sees a conditional about overlap.
 *
 * What this needs to be exact: a deterministic small model (greedy; a thrown-away draft would
 * consume a sampler's random draws) and a small model no one else drives meanwhile (not a
 * token-level drafter, spec_decode). sr_pipe_wanted decides per run; the loop checks per step.
 * The worker only calls the small model's `generate`; the two models are separate objects, so a
 * backend needs no locking for this, only thread-compatible calls on distinct objects.
 */
#ifndef SR_PIPELINE_H
#define SR_PIPELINE_H

#include <pthread.h>

#include "internal.h"

struct sr_pipe {
    struct sr_lm lm;    /* the proxy the loop drives (must be first) */
    struct sr_lm *inner; /* the small model */
    pthread_t th;
    bool running;       /* a worker was started and not joined yet */
    /* The inner model's abort poll, held back while the worker runs (should_abort may be called
     * from the run's thread only); restored at the join. */
    bool (*abort_fn)(void *user);
    bool pending;       /* a draft made ahead is held (running or done) */
    int64_t mark;       /* the inner model's mark when the draft started */
    const char *delim;
    int32_t max_tokens;
    struct sr_gen_out out;
    enum sr_status st;
    int64_t t0_us, t1_us; /* worker start and end */
    /* statistics */
    int32_t n_started, n_used, n_discarded;
    double t_draft_ms, t_wait_ms, t_hidden_ms;
};

/* Whether a run pipelines at all: mode/policy fit (the caller checks exactness), `on` always,
 * `auto` when both models' threads fit the online cores (threads known). */
bool sr_pipe_wanted(enum sr_pipeline mode, const struct sr_lm *small, const struct sr_lm *base);

/* Per step (acceptance estimate p_accept of the judge): whether a draft ahead is worth making. */
bool sr_pipe_worth(enum sr_pipeline mode, double p_accept);

/* Wraps small; the proxy is &p->lm. */
void sr_pipe_init(struct sr_pipe *p, struct sr_lm *small);
/* Starts drafting the next step on a worker thread (nothing if one is pending or a thread cannot
 * be started: the next generate then decodes as usual). */
void sr_pipe_ahead(struct sr_pipe *p, const char *delim, int32_t max_tokens);
/* Joins the worker and throws away a pending draft (the small model rolls back to where it
 * stood). Returns the rollback's status (message in p->lm.errmsg). Call before the run ends. */
enum sr_status sr_pipe_settle(struct sr_pipe *p);
/* Statistics into the public ones. */
void sr_pipe_stats(const struct sr_pipe *p, struct sr_stats *S);

#endif
