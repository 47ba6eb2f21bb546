/*
 * batch.h: one llama.cpp context shared by several sessions, each on its own sequence, with their
 * pending work merged into single llama_decode calls.
 *
 * A session thread submits its tokens (a decode step, a judge prefill, a verification batch) and
 * waits. Whoever finds no decode in flight becomes the runner: it gathers every pending job that
 * fits in one batch, decodes them together, copies each job's logits rows into the job's own
 * buffer (before the next decode can overwrite them) and wakes their owners. To let concurrent
 * sessions meet in one batch, the runner waits briefly (a fraction of the last decode's time, at
 * most 5 ms) for the sequences that took part in the previous decode and have not submitted yet,
 * and up to one decode's time for those inside a generation loop (sr_batcher_seq_hold); a lone
 * session never waits. Memory operations (removing a sequence's positions) go through the
 * same lock, never while a decode runs. Only llama_backend.c uses this.
 */
#ifndef SR_BATCH_H
#define SR_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "llama.h"

struct sr_batcher;

/* Takes ownership of ctx (n_seq_max sequences, n_batch tokens per decode). NULL on failure. */
struct sr_batcher *sr_batcher_new(struct llama_context *ctx, int32_t n_seq_max, int32_t n_batch, int32_t n_vocab);
/* Frees the batcher and its context. Every sequence must have been released. */
void sr_batcher_free(struct sr_batcher *b);

/* A free sequence id, or -1 if all are taken. */
int32_t sr_batcher_seq_acquire(struct sr_batcher *b);
/* Clears the sequence's cache and makes it free again. */
void sr_batcher_seq_release(struct sr_batcher *b, int32_t seq);

enum sr_batch_out { SR_BATCH_OUT_NONE = 0, SR_BATCH_OUT_LAST = 1, SR_BATCH_OUT_ALL = 2 };

/* Decodes toks[0..n) at positions pos0.. of sequence seq (n <= n_batch), merged with whatever
 * other sequences have pending. Logits rows (none, the last token's, or every token's, plus the
 * row of token `extra` when extra >= 0) are copied into out in token order (room for n rows of
 * n_vocab floats with SR_BATCH_OUT_ALL, two rows otherwise). Returns llama_decode's status. */
int32_t sr_batcher_decode(struct sr_batcher *b, int32_t seq, const llama_token *toks, int32_t n, llama_pos pos0,
                          enum sr_batch_out out_mode, int32_t extra, float *out);

/* hold = true: the sequence is in a generation loop and will submit its next token right after
 * sampling, so a runner waits for it (up to one decode's time) to decode it with the others;
 * false when the loop ends. */
void sr_batcher_seq_hold(struct sr_batcher *b, int32_t seq, bool hold);

/* llama_memory_seq_rm on this sequence, between decodes. */
bool sr_batcher_seq_rm(struct sr_batcher *b, int32_t seq, llama_pos p0, llama_pos p1);
/* llama_memory_seq_pos_min/max of this sequence (test hook). */
void sr_batcher_seq_range(struct sr_batcher *b, int32_t seq, llama_pos *pmin, llama_pos *pmax);

/* Statistics: decodes run and sequences merged into them (for benchmarks and tests). */
void sr_batcher_stats(struct sr_batcher *b, int64_t *n_decodes, int64_t *n_jobs);

#endif
