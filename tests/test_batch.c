/*
 * test_batch.c: batching across sessions (engine n_parallel, src/backend/batch.c) on generated
 * F32 models (batched and single-row matrix products round alike there).
 *   - batched == alone: N sessions of one engine with n_parallel = N run different problems at
 *     the same time, in threads (modes spec, base, small; one with token-level speculative
 *     decoding); each result equals the same run on an engine without sharing, step for step;
 *   - their forward passes really were merged (fewer llama_decode calls than jobs);
 *   - a session's reset clears only its own sequence: another session's cache is untouched;
 *   - sessions beyond n_parallel get contexts of their own and still give the same output.
 *   - with THREADS > 1 the same, where every batched decode goes through the one decode thread
 *     of batch.c (one OpenMP team for all models, whichever session is the runner).
 * Usage: test_batch MODEL_DIR [THREADS]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static const char *dir;
static int n_threads = 1;
static const char *PROBLEMS[] = {"Compute 48 * 37 step by step.", "What is 2+3?", "Solve x^2 = 49 for x > 0.",
                                 "Count the primes below 30."};
#define N 4

static struct sr_engine *load(int32_t n_parallel) {
    char sp[512], bp[512];
    snprintf(sp, sizeof sp, "%s/small-f32.gguf", dir);
    snprintf(bp, sizeof bp, "%s/base-f32.gguf", dir);
    struct sr_engine_params ep = sr_engine_default_params();
    ep.small.path = sp;
    ep.base.path = bp;
    ep.small.n_threads = ep.base.n_threads = n_threads;
    ep.small.n_ctx = ep.base.n_ctx = 1024;
    ep.n_parallel = n_parallel;
    struct sr_engine *e = NULL;
    struct sr_error err;
    if (sr_engine_init(&ep, &e, &err) != SR_OK) fprintf(stderr, "load: %s\n", err.msg);
    return e;
}

static struct sr_run_params params(int i) {
    struct sr_run_params p = sr_run_default_params();
    p.mode = i == 2 ? SR_MODE_BASE : i == 3 ? SR_MODE_SMALL : SR_MODE_SPEC;
    p.threshold = 5;
    p.policy = SR_POLICY_ALWAYS; /* batched == alone is about the reference algorithm; auto decides by timing */
    p.small.temperature = p.base.temperature = 0.0f;
    p.max_step_tokens = 24;
    p.token_budget = 96;
    p.max_answer_tokens = 12;
    p.spec_decode = i == 1;
    p.draft_p_min = 0.0f;
    return p;
}

struct job {
    struct sr_session *s;
    int i;
    struct sr_result *r;
    enum sr_status st;
};

static void *run_job(void *arg) {
    struct job *j = arg;
    struct sr_run_params p = params(j->i);
    j->st = sr_session_run(j->s, PROBLEMS[j->i % N], &p, &j->r);
    return NULL;
}

static void same(const struct sr_result *a, const struct sr_result *b, int i) {
    if (!a || !b) { CHECK(a && b); return; }
    CHECK_STR(a->text, b->text);
    CHECK(a->n_steps == b->n_steps && a->stop == b->stop);
    for (size_t k = 0; k < a->n_steps && k < b->n_steps; k++) {
        CHECK(a->steps[k].author == b->steps[k].author && a->steps[k].score == b->steps[k].score);
        CHECK(a->steps[k].n_tokens == b->steps[k].n_tokens);
    }
    CHECK(a->stats.n_judged == b->stats.n_judged && a->stats.n_adopted_tokens == b->stats.n_adopted_tokens);
    if (t_fail) fprintf(stderr, "  (job %d)\n", i);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: test_batch MODEL_DIR [THREADS]\n"); return 2; }
    dir = argv[1];
    if (argc > 2) n_threads = atoi(argv[2]);
    if (n_threads < 1) n_threads = 1;
    sr_log_set(NULL, NULL, SR_LOG_ERROR);

    /* Reference: each problem alone on an engine without sharing. */
    struct sr_result *ref[N + 1] = {0};
    struct sr_engine *e0 = load(0);
    CHECK(e0 != NULL);
    if (!e0) return test_summary("test_batch");
    for (int i = 0; i <= N; i++) {
        struct sr_run_params p = params(i % N);
        struct sr_error err;
        CHECK(sr_run(e0, PROBLEMS[i % N], &p, &ref[i], &err) == SR_OK);
    }
    sr_engine_free(e0);

    /* N + 1 sessions on an engine sharing N sequences, all running at once (twice). */
    struct sr_engine *e = load(N);
    CHECK(e != NULL);
    if (!e) return test_summary("test_batch");
    struct job jobs[N + 1];
    struct sr_error err;
    for (int i = 0; i <= N; i++) {
        jobs[i] = (struct job){.i = i};
        CHECK(sr_session_init(e, &jobs[i].s, &err) == SR_OK);
    }
    int rounds = getenv("SR_TEST_QUICK") ? 1 : 2; /* the sanitizer pass runs one round */
    for (int round = 0; round < rounds; round++) {
        pthread_t th[N + 1];
        for (int i = 0; i <= N; i++) pthread_create(&th[i], NULL, run_job, &jobs[i]);
        for (int i = 0; i <= N; i++) pthread_join(th[i], NULL);
        for (int i = 0; i <= N; i++) {
            CHECK(jobs[i].st == SR_OK);
            if (jobs[i].st != SR_OK) fprintf(stderr, "job %d: %s\n", i, sr_session_errmsg(jobs[i].s));
            same(jobs[i].r, ref[i], i);
            sr_result_free(jobs[i].r);
            jobs[i].r = NULL;
        }
    }
    /* Merged: more jobs than decodes on the base model's shared context. */
    int64_t dec = 0, nj = 0;
    sr_llama_lm_batch_stats(sr_session_lm(jobs[0].s, true), &dec, &nj);
    printf("base model: %lld jobs in %lld decodes (%.2f per decode)\n", (long long)nj, (long long)dec,
           dec ? (double)nj / (double)dec : 0.0);
    CHECK(dec > 0 && nj > dec);

    /* reset clears only its own sequence: session 0's cache survives session 1's runs. */
    int32_t a0, a1, b0, b1;
    struct sr_run_params p = params(0);
    struct sr_result *r = NULL;
    CHECK(sr_session_run(jobs[0].s, PROBLEMS[0], &p, &r) == SR_OK);
    sr_result_free(r);
    sr_llama_lm_cache_range(sr_session_lm(jobs[0].s, true), &a0, &a1);
    int64_t n0 = 0;
    const int32_t *t0 = sr_llama_lm_tokens(sr_session_lm(jobs[0].s, true), &n0);
    int32_t *keep = malloc((size_t)n0 * sizeof *keep);
    memcpy(keep, t0, (size_t)n0 * sizeof *keep);
    p = params(1);
    CHECK(sr_session_run(jobs[1].s, PROBLEMS[1], &p, &r) == SR_OK);
    sr_result_free(r);
    sr_llama_lm_cache_range(sr_session_lm(jobs[0].s, true), &b0, &b1);
    CHECK(a0 == 0 && a1 == (int32_t)n0 - 1 && b0 == a0 && b1 == a1);
    int64_t n1 = 0;
    const int32_t *t1 = sr_llama_lm_tokens(sr_session_lm(jobs[0].s, true), &n1);
    CHECK(n1 == n0 && memcmp(t1, keep, (size_t)n0 * sizeof *keep) == 0);
    free(keep);

    for (int i = 0; i <= N; i++) sr_session_free(jobs[i].s);
    sr_engine_free(e);
    for (int i = 0; i <= N; i++) sr_result_free(ref[i]);
    return test_summary("test_batch");
}
