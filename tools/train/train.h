/*
 * train.h: the training loop. Samples (token ids with a per-target loss weight) are packed into
 * rows of T tokens with a block-diagonal causal mask and positions restarting per sample; the loss
 * is cross-entropy over the selected targets only (a target of weight w counts w times); the
 * optimizer is AdamW with global-norm gradient clipping, linear warm-up and cosine decay, written
 * here in C over the gradients ggml's backward pass computes.
 */
#ifndef SR_TRAIN_TRAIN_H
#define SR_TRAIN_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define TT_MAX_T 512
/* mark targets: '.' and '!' (task.h's ASCII token range) */
#define TT_MARK_OK (13 + ('.' - '!'))
#define TT_MARK_ERR (13 + ('!' - '!'))

enum tt_cat { TT_CAT_NONE = 0, TT_CAT_GEN = 1, TT_CAT_JUDGE = 2, TT_CAT_MARK = 3, TT_CAT_AUX = 4, TT_N_CAT = 5 };

/* One training sequence. Target i (the token at position i, predicted from position i - 1) has
 * weight w[i] (0 = not learned) and a category for the statistics. w[0] is ignored. If alt[i] > 0,
 * position i - 1 learns to predict alt[i] instead of tok[i] (the error mark after a wrong token). */
struct tt_sample {
    int32_t n;
    int32_t tok[TT_MAX_T];
    int32_t alt[TT_MAX_T];
    uint8_t w[TT_MAX_T];
    uint8_t cat[TT_MAX_T];
    /* Marks, learned by the deep-supervision head (see tm_build_train): if mk[i] > 0, the row of
     * position i learns to predict token mk[i] there (TT_MARK_OK or TT_MARK_ERR: "is the token at
     * i the right one?"), with weight mw[i]. */
    int32_t mk[TT_MAX_T];
    uint8_t mw[TT_MAX_T];
};

/* Fills *s with the next sample (s->n = 0 on entry). */
typedef void (*tt_next_fn)(void *user, uint64_t *rng, struct tt_sample *s);

struct tt_params {
    int32_t T, B;       /* row length and rows per optimizer step */
    float lr, lr_min;   /* peak and final learning rate (cosine decay) */
    int32_t warmup;     /* linear warm-up steps */
    float wd;           /* decoupled weight decay on matrices */
    float beta1, beta2, eps;
    float clip;         /* global gradient-norm clip; 0 = off */
    int64_t steps;      /* optimizer steps: the budget and the schedule (never wall-clock time, so that the
                           same settings give the same model on any machine and under any load) */
    double deadline;    /* CLOCK_MONOTONIC seconds (tt_now()) past which training aborts with an error
                           instead of finishing; 0 = none. It never changes what a run that finishes
                           computes. */
    int32_t threads;
    int32_t mark_layer; /* error marks are learned on the input of this layer; 0 = the last */
    float mid_weight;   /* the generation targets are also learned there, with this weight (so that the
                           deep-supervision head must tell a wrong token from a right one) */
    uint64_t seed;      /* data order */
    const char *label;  /* progress-bar label */
    bool progress;      /* progress bar with ETA on stderr */
    /* Data parallelism over two processes joined by pipes (the pair's judge phase): TT_DP_NONE
     * trains alone; the TT_DP_LEADER owns the optimizer, the TT_DP_WORKER computes the gradients
     * of its own batch (its own data stream: its own seed) and sends them with its statistics.
     * Each step the leader averages the two gradients as (leader + worker) / 2 -- always that
     * order, whichever process finishes first -- clips, updates and sends the new weights back, so
     * both hold the same bits and the result does not depend on timing. dp_in / dp_out: the pipe
     * ends to read from and write to. Both sides must have the same model shape, T and steps. */
    int32_t dp_role;
    int dp_in, dp_out;
};

enum { TT_DP_NONE = 0, TT_DP_LEADER = 1, TT_DP_WORKER = 2 };

struct tt_report {
    int64_t steps;
    double seconds;
    double cpu_seconds; /* CPU time of this process while training (what an idle core would take: the
                           load-independent cost; waits on the other data-parallel process excluded) */
    double tokens;      /* positions processed (including padding) */
    double loss_gen;    /* mean cross-entropy per generation target, last ~5% of steps */
    double loss_judge;  /* same for judge targets */
    double acc_gen;     /* argmax accuracy per generation target, same window */
    double acc_judge;
    double acc_mark;    /* argmax accuracy of the mid head on TT_MARK_ERR marks (recall), same window */
    double acc_mark_ok; /* same on TT_MARK_OK marks */
};

struct tt_params tt_default_params(void);

/* CLOCK_MONOTONIC in seconds (the clock of tt_params.deadline). */
double tt_now(void);
/* CPU time of the calling process in seconds. */
double tt_cpu_now(void);

/* Trains m in place. Returns 0, or -1 with a message in err. */
int tt_train(struct tm_model *m, const struct tt_params *p, tt_next_fn next, void *user, struct tt_report *rep,
             char *err, size_t errlen);

/* Loss and gradients of one packed batch, for the gradient check: fills grads[i] (same layout as
 * m->params[i]) and returns the loss (or NAN on failure). */
float tt_loss_and_grads(struct tm_model *m, const struct tt_sample *samples, int n_samples, int T, int B,
                        float **grads);

#endif
