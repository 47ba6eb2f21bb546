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
    bool use_exec;         /* decodes go through the executor (more than one thread per decode) */
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

/* ---- the decode executor ------------------------------------------------------------------
 * With more than one thread per decode, ggml's CPU backend runs each graph on an OpenMP team of
 * the thread that calls llama_decode, and every distinct calling thread gets a team of its own,
 * whose threads spin after each graph before they sleep (libgomp's default; passive waiting
 * instead makes each decode wait for sleeping threads to wake, 3x slower here). Sessions of a
 * server run on their own threads and take turns as runners, so four sessions meant four teams
 * spinning against one another: measured on 2 cores, 2 threads, 4 concurrent requests were 0.73x
 * (SpecReason) and 0.62x (base model alone) of the same requests one after another. So every
 * decode of a batcher whose context uses more than one thread is made on one process-wide
 * thread, one team for all models, as in a single-threaded program. One thread per decode needs
 * no team, and the runners decode themselves (two models' decodes can then overlap). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int refs;   /* batchers using it */
    bool stop;
    bool busy;  /* a runner holds it */
    bool pending, done;
    struct llama_context *ctx;
    const struct llama_batch *batch;
    int32_t rc;
} X = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t X_life = PTHREAD_MUTEX_INITIALIZER; /* serialises starting and joining it */

static void *exec_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&X.mu);
    for (;;) {
        while (!X.pending && !X.stop) pthread_cond_wait(&X.cv, &X.mu);
        if (!X.pending) break; /* stop, nothing left */
        X.pending = false;
        struct llama_context *ctx = X.ctx;
        const struct llama_batch *bt = X.batch;
        pthread_mutex_unlock(&X.mu);
        int32_t rc = llama_decode(ctx, *bt);
        pthread_mutex_lock(&X.mu);
        X.rc = rc;
        X.done = true;
        pthread_cond_broadcast(&X.cv);
    }
    pthread_mutex_unlock(&X.mu);
    return NULL;
}

/* Takes a reference on the executor, starting it; false if no thread could be started. */
static bool exec_ref(void) {
    pthread_mutex_lock(&X_life);
    pthread_mutex_lock(&X.mu);
    bool ok = true;
    if (X.refs == 0) {
        X.stop = false;
        ok = pthread_create(&X.th, NULL, exec_main, NULL) == 0;
    }
    if (ok) X.refs++;
    pthread_mutex_unlock(&X.mu);
    pthread_mutex_unlock(&X_life);
    return ok;
}

static void exec_unref(void) {
    pthread_mutex_lock(&X_life);
    pthread_mutex_lock(&X.mu);
    bool last = --X.refs == 0;
    if (last) {
        X.stop = true;
        pthread_cond_broadcast(&X.cv);
    }
    pthread_t th = X.th;
    pthread_mutex_unlock(&X.mu);
    if (last) pthread_join(th, NULL);
    pthread_mutex_unlock(&X_life);
}

static int32_t exec_decode(struct llama_context *ctx, const struct llama_batch *bt) {
    pthread_mutex_lock(&X.mu);
    while (X.busy) pthread_cond_wait(&X.cv, &X.mu);
    X.busy = true;
    X.ctx = ctx;
    X.batch = bt;
    X.done = false;
    X.pending = true;
    pthread_cond_broadcast(&X.cv);
    while (!X.done) pthread_cond_wait(&X.cv, &X.mu);
    int32_t rc = X.rc;
    X.busy = false;
    pthread_cond_broadcast(&X.cv);
    pthread_mutex_unlock(&X.mu);
    return rc;
}

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
    b->use_exec = (llama_n_threads(ctx) > 1 || llama_n_threads_batch(ctx) > 1) && exec_ref();
    b->n_seq_max = n_seq_max;
    b->n_batch = n_batch;
    b->n_vocab = n_vocab;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    return b;
}

void sr_batcher_free(struct sr_batcher *b) {
    if (!b) return;
    if (b->use_exec) exec_unref();
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
    /* In sequence order: with a cache stream per sequence, llama.cpp splits a batch into ubatches
     * of consecutive sequence ids (llama_batch_allocr::split_equal, sequential), so jobs in
     * arrival order (2, 0, 3, 1) took two or more passes where (0, 1, 2, 3) take one. Measured
     * (padded pair, 4 concurrent base-model requests, 1 thread): 3.8 jobs a decode, yet 1.39x
     * the same requests one after another. Each session has one job at a time. */
    struct job *sorted = NULL;
    while (taken) {
        struct job *j = taken, **at = &sorted;
        taken = j->next;
        while (*at && (*at)->seq < j->seq) at = &(*at)->next;
        j->next = *at;
        *at = j;
    }
    taken = sorted;

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
    int32_t rc = b->use_exec ? exec_decode(b->ctx, bt) : llama_decode(b->ctx, *bt);
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
