/*
 * llm.h: the trained GGUFs run by unmodified llama.cpp, for the trainer's own measurements
 * (held-out accuracy, the small model's real mistakes, the judge's confusion matrix). Contexts
 * are used like the engine uses them: text pieces appended with parse_special tokenization, one
 * sequence, rollback by position.
 */
#ifndef SR_TRAIN_LLM_H
#define SR_TRAIN_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "task.h"

struct llm;

/* Silences llama.cpp's logging below errors (call once). */
void llm_log_quiet(void);
/* NULL on failure (message in err). */
struct llm *llm_open(const char *path, int n_ctx, int threads, char *err, size_t errlen);
void llm_close(struct llm *L);
void llm_clear(struct llm *L);
int32_t llm_pos(const struct llm *L);
void llm_rollback(struct llm *L, int32_t pos);
/* Appends text (logits of its last token become current). 0 or -1. */
int llm_feed(struct llm *L, const char *text);
/* Argmax of the current logits. */
int32_t llm_argmax(const struct llm *L);
/* Generates one step: tokens until the text holds "\n\n" (kept in the cache, cut from out), an
 * end-of-generation token or max_tokens. temp <= 0 = greedy. Returns the number of tokens, -1 on
 * failure. */
int llm_gen_step(struct llm *L, int max_tokens, float temp, uint64_t *rng, char *out, size_t size);
/* Decoding speed probe: ms per token of single-token decodes, and ms of one n-token prefill. */
void llm_speed(struct llm *L, int n_decode, int n_prefill, double *ms_decode, double *ms_prefill);

/* ------------------------------------------------------------------------------------------ */
/* Measurements                                                                               */

struct ev_result {
    int32_t n_problems, n_correct;       /* free-running greedy accuracy */
    int32_t n_steps, n_steps_wrong;      /* teacher-forced step accuracy */
    int32_t good_accept, good_reject;    /* judge on correct / wrong small steps (threshold 7) */
    int32_t bad_accept, bad_reject;
};

/* Greedy solve of held-out problems [0, n) (the engine's base/small mode with greedy sampling). */
int ev_accuracy(struct llm *L, const struct tk_cfg *cfg, uint64_t seed, int32_t n, struct ev_result *r);
/* Runs the small model teacher-forced over n training-stream problems (seeded by seed), adds
 * every wrong step to pool; temp > 0 samples. */
int ev_mistakes(struct llm *small, const struct tk_cfg *cfg, uint64_t seed, int32_t n, float temp,
                struct dt_pool *pool, struct ev_result *r);
/* Judge confusion on the small model's greedy steps over held-out problems [0, n). */
int ev_judge(struct llm *small, struct llm *base, const struct tk_cfg *cfg, uint64_t seed, int32_t n,
             const char *judge_prompt, const char *judge_prefill, struct ev_result *r);

#endif
