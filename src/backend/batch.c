/*
 * batch.c: see batch.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct job {
    int32_t seq;
    const llama_token *toks;
    int32_t n;
    llama_pos pos0;
    enum sr_batch_out mode;
    int32_t extra; /* one more token whose row is wanted, or -1 */
    float *out;
    int32_t rc;
    bool done;
    struct job *next;
};

struct sr_batcher {
    struct llama_context *ctx;
    int32_t n_seq_max, n_batch, n_vocab;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;          /* a runner is gathering or decoding: nobody else touches ctx */
    struct job *head, *tail;
    bool *seq_used;
    bool *in_last;         /* took part in the previous decode */
    bool *held;            /* in a generation loop: its next decode follows shortly */
    struct llama_batch batch;
    int64_t last_us;       /* duration of the previous decode */
    int64_t n_decodes, n_jobs;
};

/* Whether the job wants the logits row of its token i. */
static bool wants_row(const struct job *j, int32_t i) {
    return j->mode == SR_BATCH_OUT_ALL || (j->mode == SR_BATCH_OUT_LAST && i == j->n - 1) || i == j->extra;
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct sr_batcher *sr_batcher_new(struct llama_context *ctx, int32_t n_seq_max, int32_t n_batch, int32_t n_vocab) {
    struct sr_batcher *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->seq_used = calloc((size_t)n_seq_max, sizeof *b->seq_used);
    b->in_last = calloc((size_t)n_seq_max, sizeof *b->in_last);
    b->held = calloc((size_t)n_seq_max, sizeof *b->held);
    b->batch = llama_batch_init(n_batch, 0, 1);
    if (!b->seq_used || !b->in_last || !b->held || !b->batch.token) {
        if (b->batch.token) llama_batch_free(b->batch);
        free(b->seq_used);
        free(b->in_last);
        free(b->held);
        free(b);
        return NULL;
    }
    b->ctx = ctx;
    b->n_seq_max = n_seq_max;
    b->n_batch = n_batch;
    b->n_vocab = n_vocab;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    return b;
}

void sr_batcher_free(struct sr_batcher *b) {
    if (!b) return;
    llama_batch_free(b->batch);
    llama_free(b->ctx);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->seq_used);
    free(b->in_last);
    free(b->held);
    free(b);
}

int32_t sr_batcher_seq_acquire(struct sr_batcher *b) {
    pthread_mutex_lock(&b->mu);
    int32_t s = -1;
    for (int32_t i = 0; i < b->n_seq_max && s < 0; i++)
        if (!b->seq_used[i]) s = i;
    if (s >= 0) b->seq_used[s] = true;
    pthread_mutex_unlock(&b->mu);
    return s;
}

/* Waits until no runner holds the context; caller holds mu. */
static void wait_idle(struct sr_batcher *b) {
    while (b->running) pthread_cond_wait(&b->cv, &b->mu);
}

bool sr_batcher_seq_rm(struct sr_batcher *b, int32_t seq, llama_pos p0, llama_pos p1) {
    pthread_mutex_lock(&b->mu);
    wait_idle(b);
    bool ok = llama_memory_seq_rm(llama_get_memory(b->ctx), seq, p0, p1);
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void sr_batcher_seq_release(struct sr_batcher *b, int32_t seq) {
    pthread_mutex_lock(&b->mu);
    wait_idle(b);
    llama_memory_seq_rm(llama_get_memory(b->ctx), seq, -1, -1);
    b->seq_used[seq] = false;
    b->in_last[seq] = false;
    b->held[seq] = false;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void sr_batcher_seq_range(struct sr_batcher *b, int32_t seq, llama_pos *pmin, llama_pos *pmax) {
    pthread_mutex_lock(&b->mu);
    wait_idle(b);
    llama_memory_t mem = llama_get_memory(b->ctx);
    *pmin = llama_memory_seq_pos_min(mem, seq);
    *pmax = llama_memory_seq_pos_max(mem, seq);
    pthread_mutex_unlock(&b->mu);
}

void sr_batcher_stats(struct sr_batcher *b, int64_t *n_decodes, int64_t *n_jobs) {
    pthread_mutex_lock(&b->mu);
    *n_decodes = b->n_decodes;
    *n_jobs = b->n_jobs;
    pthread_mutex_unlock(&b->mu);
}

void sr_batcher_seq_hold(struct sr_batcher *b, int32_t seq, bool hold) {
    pthread_mutex_lock(&b->mu);
    b->held[seq] = hold;
    pthread_cond_broadcast(&b->cv); /* a runner waiting for this sequence stops waiting */
    pthread_mutex_unlock(&b->mu);
}

static bool pending(const struct sr_batcher *b, int32_t s) {
    for (const struct job *j = b->head; j; j = j->next)
        if (j->seq == s) return true;
    return false;
}

/* Whether the sequences worth waiting for have a job pending: those in a generation loop (held),
 * and those of the previous decode. Caller holds mu. */
static bool stragglers_in(const struct sr_batcher *b, bool held_only) {
    for (int32_t s = 0; s < b->n_seq_max; s++) {
        if (!b->seq_used[s] || !(b->held[s] || (!held_only && b->in_last[s]))) continue;
        if (!pending(b, s)) return false;
    }
    return true;
}

/* Waits on cv until stragglers_in(held_only) or the deadline; caller holds mu. */
static void wait_for(struct sr_batcher *b, int64_t deadline, bool held_only) {
    while (!stragglers_in(b, held_only)) {
        int64_t left = deadline - now_us();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += left * 1000;
        while (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
}

/* The runner: gathers, decodes and hands out rows. Called with mu held and running set; returns
 * with mu held. */
static void run_once(struct sr_batcher *b) {
    /* Give the other sequences a moment to join: those of the last decode a fraction of its time,
     * those inside a generation loop (they sample and come straight back) up to one decode's
     * time, since a decode that carries them costs about what a decode without them does. */
    int64_t t0w = now_us();
    int64_t wait = b->last_us / 4;
    if (wait < 100) wait = 100;
    if (wait > 5000) wait = 5000;
    wait_for(b, t0w + wait, false);
    int64_t hold = b->last_us;
    if (hold < 200) hold = 200;
    if (hold > 20000) hold = 20000;
    wait_for(b, t0w + hold, true);
    /* Take jobs in arrival order while they fit. */
    struct job *taken = NULL, **tail = &taken;
    int32_t total = 0;
    while (b->head && (total == 0 || total + b->head->n <= b->n_batch)) {
        struct job *j = b->head;
        b->head = j->next;
        if (!b->head) b->tail = NULL;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        total += j->n;
    }
    pthread_mutex_unlock(&b->mu);

    struct llama_batch *bt = &b->batch;
    bt->n_tokens = 0;
    for (struct job *j = taken; j; j = j->next) {
        for (int32_t i = 0; i < j->n; i++) {
            int32_t k = bt->n_tokens++;
            bt->token[k] = j->toks[i];
            bt->pos[k] = j->pos0 + i;
            bt->n_seq_id[k] = 1;
            bt->seq_id[k][0] = j->seq;
            bt->logits[k] = wants_row(j, i);
        }
    }
    int64_t t0 = now_us();
    int32_t rc = llama_decode(b->ctx, *bt);
    int64_t dt = now_us() - t0;
    int32_t off = 0;
    for (struct job *j = taken; j; j = j->next) {
        j->rc = rc;
        if (rc == 0) {
            size_t r = 0; /* rows in token order */
            for (int32_t i = 0; i < j->n && j->rc == 0; i++) {
                if (!wants_row(j, i)) continue;
                const float *lg = llama_get_logits_ith(b->ctx, off + i);
                if (!lg) { j->rc = -3; break; }
                memcpy(j->out + r++ * (size_t)b->n_vocab, lg, (size_t)b->n_vocab * sizeof *lg);
            }
        }
        off += j->n;
    }

    pthread_mutex_lock(&b->mu);
    b->last_us = dt;
    b->n_decodes++;
    for (int32_t s = 0; s < b->n_seq_max; s++) b->in_last[s] = false;
    for (struct job *j = taken, *next; j; j = next) {
        next = j->next;
        b->in_last[j->seq] = true;
        b->n_jobs++;
        j->done = true;
    }
}

int32_t sr_batcher_decode(struct sr_batcher *b, int32_t seq, const llama_token *toks, int32_t n, llama_pos pos0,
                          enum sr_batch_out out_mode, int32_t extra, float *out) {
    if (n <= 0 || n > b->n_batch || seq < 0 || seq >= b->n_seq_max || extra >= n) return -1;
    struct job j = {.seq = seq, .toks = toks, .n = n, .pos0 = pos0, .mode = out_mode, .extra = extra < 0 ? -1 : extra,
                    .out = out};
    pthread_mutex_lock(&b->mu);
    if (b->tail) b->tail->next = &j;
    else b->head = &j;
    b->tail = &j;
    pthread_cond_broadcast(&b->cv); /* a runner may be waiting for this sequence */
    while (!j.done) {
        if (!b->running) {
            b->running = true;
            run_once(b);
            b->running = false;
            pthread_cond_broadcast(&b->cv);
        } else {
            pthread_cond_wait(&b->cv, &b->mu);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return j.rc;
}
