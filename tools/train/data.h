/*
 * data.h: training samples in the exact token layout the engine produces.
 *
 * Generation sample: prefix + step_1 "\n\n" ... step_n "\n\n"; the thinking tokens are learned.
 * Judge sample: prefix + k correct steps + candidate "\n\n" + judge suffix + score digit, the way
 * the engine's judge call sees it (pieces tokenized separately, as the engine appends them). The
 * prior steps and the digit are learned; the candidate is learned only when it is correct, so a
 * wrong step never teaches the generator.
 */
#ifndef SR_TRAIN_DATA_H
#define SR_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "task.h"
#include "train.h"

#define DT_STEP_MAX 96

/* A wrong step the small model really wrote, in the context of a problem's first k steps. */
struct dt_mistake {
    struct tk_problem p;
    int32_t k;
    char text[DT_STEP_MAX];
};

struct dt_pool {
    struct dt_mistake *v;
    size_t n, cap;
};

int dt_pool_add(struct dt_pool *pool, const struct tk_problem *p, int32_t k, const char *text);
void dt_pool_free(struct dt_pool *pool);

struct dt_mix {
    struct tk_cfg cfg;
    float p_judge;        /* fraction of samples that are judge samples */
    float p_judge_good;   /* of those, fraction with the correct step as candidate */
    float p_real;         /* of the wrong candidates, fraction taken from the pool (if any) */
    float p_near;         /* of the other wrong candidates, fraction that are near misses */
    int32_t judge_weight; /* loss weight of the score digit (1..8) */
    int32_t mark_weight;  /* loss weight of the error mark after a wrong candidate's first wrong token; 0 = off */
    float p_mark;         /* of the other samples, fraction that end in a wrong step with its error mark */
    int32_t suffix_weight; /* loss weight of the verdict at every judge-suffix position; 0 = off */
    const char *judge_prompt, *judge_prefill;
    const struct dt_pool *pool; /* the small model's real mistakes; may be NULL */
    uint64_t problem_salt;      /* keeps training problems apart from held-out ones */
};

/* tt_next_fn over a struct dt_mix. */
void dt_next(void *mix, uint64_t *rng, struct tt_sample *s);

/* Held-out problems come from this stream (seeded), training problems never do. */
void dt_heldout_problem(const struct tk_cfg *cfg, uint64_t seed, int32_t i, struct tk_problem *out);
/* True if p is one of the first n held-out problems' texts (training data skips them). */
bool dt_is_heldout(const struct tk_problem *p);
void dt_heldout_register(const struct tk_cfg *cfg, uint64_t seed, int32_t n);
void dt_heldout_clear(void);

#endif
