/*
 * cli/eval/runner.c: how the records are run: the backend (the in-process engine), the user
 * message of each problem and sample (GPQA choices reshuffled per sample), grading, progress on
 * stderr, and the loop over every record not yet in OUT/results.jsonl.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "eval.h"
#include "template.h"
#include "specreason_grade.h"

void fmt_dur(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, size, "--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, size, "%lds", t);
}

/* ------------------------------------------------------------------------------------------ */
/* Backends: how one problem is run                                                           */

/* The in-process engine: one engine and one session, one record at a time. (client.c is the
 * other backend: a running specreason-server.) */

struct local_state {
    struct sr_engine *eng;
    struct sr_session *sess;
};

static enum sr_status local_run(void *state, const char *user_msg, const struct sr_run_params *p,
                                struct sr_result **out, char *err, size_t errlen) {
    struct local_state *L = state;
    enum sr_status st = sr_session_run(L->sess, user_msg, p, out);
    if (st != SR_OK) snprintf(err, errlen, "%s: %s", sr_status_str(st), sr_session_errmsg(L->sess));
    return st;
}

static void local_free_result(void *state, struct sr_result *r) {
    (void)state;
    sr_result_free(r);
}

static void local_close(void *state) {
    struct local_state *L = state;
    if (!L) return;
    sr_session_free(L->sess);
    sr_engine_free(L->eng);
    free(L);
}

/* Loads the models named in ep into one engine and one session for the whole evaluation. */
static enum sr_status local_open(const struct sr_engine_params *ep, struct backend *be, char *err, size_t errlen) {
    struct local_state *L = calloc(1, sizeof *L);
    if (!L) { snprintf(err, errlen, "out of memory"); return SR_ERR_NOMEM; }
    struct sr_error e = {0};
    enum sr_status st = sr_engine_init(ep, &L->eng, &e);
    if (st == SR_OK) {
        st = sr_session_init(L->eng, &L->sess, &e);
    }
    if (st != SR_OK) {
        snprintf(err, errlen, "%s", e.msg);
        local_close(L);
        return st;
    }
    be->name = "in-process";
    be->state = L;
    be->run_one = local_run;
    be->free_result = local_free_result;
    be->close = local_close;
    return SR_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Prompts and grading                                                                        */

/* GPQA choices for one sample: the loader shuffled the answers with the base seed (sample 0);
 * sample s reshuffles the same answers with seed + s, so the correct answer's position varies
 * across samples too. perm[k] = source answer at letter k (0 = correct). Returns the correct
 * index. */
static int sample_choices(const struct sr_problem *p, uint64_t seed0, uint64_t seed, const char *out[4], int perm[4]) {
    int perm0[4];
    const char *src[4] = {NULL, NULL, NULL, NULL};
    sr_dataset_shuffle(seed0, p->id, perm0);
    for (int k = 0; k < 4; k++) src[perm0[k]] = p->choices[k];
    if (p->correct < 0 || src[0] != p->choices[p->correct]) { /* loader used another order: keep it */
        for (int k = 0; k < 4; k++) { out[k] = p->choices[k]; perm[k] = k == p->correct ? 0 : -1; }
        return p->correct;
    }
    sr_dataset_shuffle(seed, p->id, perm);
    int correct = -1;
    for (int k = 0; k < 4; k++) {
        out[k] = src[perm[k]];
        if (perm[k] == 0) correct = k;
    }
    return correct;
}


static char *trim_dup(const char *s) {
    size_t n = strlen(s);
    while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) { s++; n--; }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    return sr_strndup(s, n);
}

/* Math: the last \boxed{} (or "Answer: X") of the whole output, else the whole answer text (or
 * the whole output when thinking never ended), compared with sr_grade_equal. GPQA: the letter
 * sr_grade_choice finds, compared with the correct letter. */
static struct grade grade_output(const struct sr_result *res, bool gpqa, const char *truth) {
    struct grade g = {NULL, false};
    const char *text = res->text ? res->text : "";
    size_t len = strlen(text);
    if (gpqa) {
        char letter = sr_grade_choice(text, len);
        if (letter) {
            char s[2] = {letter, '\0'};
            g.extracted = sr_strdup(s);
            g.correct = truth[0] == letter && truth[1] == '\0';
        }
        return g;
    }
    g.extracted = sr_grade_extract(text, len);
    if (g.extracted) {
        g.correct = sr_grade_equal(g.extracted, truth);
    } else {
        char *whole = trim_dup(res->answer ? res->answer : text);
        g.correct = whole && *whole && sr_grade_equal(whole, truth);
        free(whole);
    }
    return g;
}

/* Fills it->truth, perm and the user message for a problem and sample. */
static int prepare_item(struct item *it, const struct sr_problem *p, int64_t sample, bool gpqa, const char *tmpl) {
    memset(it, 0, sizeof *it);
    it->p = p;
    it->sample = sample;
    it->seed = C.seed + (uint64_t)sample;
    if (gpqa) {
        const char *ch[4];
        int correct = sample_choices(p, C.seed, it->seed, ch, it->perm);
        it->letter[0] = (char)('A' + (correct < 0 ? 0 : correct));
        it->truth = it->letter;
        it->user_msg = cli_fill_template(tmpl, p->problem, ch);
    } else {
        it->truth = p->answer ? p->answer : "";
        it->user_msg = cli_fill_template(tmpl, p->problem, NULL);
    }
    return it->user_msg ? 0 : fail("out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Progress on stderr                                                                         */



volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int term_cols(void) {
#ifdef TIOCGWINSZ
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
#endif
    return 80;
}

static void prog_draw(struct progress *P) {
    if (P->style != PROG_BAR) return;
    size_t finished = P->skipped + P->done + P->failed;
    double frac = P->total ? (double)finished / (double)P->total : 1.0;
    int64_t now = sr_time_us();
    size_t ran = P->done + P->failed;
    char eta[32];
    if (ran) { /* mean time per finished record times what is left, less the current record's time so far */
        double per = (double)(P->last_done_us - P->t0_us) / 1e6 / (double)ran;
        double left = per * (double)(P->to_run - ran) - (double)(now - P->last_done_us) / 1e6;
        fmt_dur(left < 0 ? 0 : left, eta, sizeof eta);
    } else {
        snprintf(eta, sizeof eta, "--");
    }
    char bar[21];
    int fill = (int)(frac * 20.0);
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    char line[512];
    int n = snprintf(line, sizeof line, "[%s] %zu/%zu %3.0f%%  ETA %s  %s  step %d  %s", bar, finished, P->total,
                     100.0 * frac, eta, P->label, P->step, P->what);
    int cols = term_cols() - 1;
    if (n > cols) {
        n = cols;
        while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80) n--; /* not inside a UTF-8 character */
        line[n] = '\0';
    }
    fprintf(stderr, "\r%s\x1b[K", line);
    fflush(stderr);
    P->drawn = true;
    P->last_draw_us = now;
}

static void prog_clear(struct progress *P) {
    if (P->style == PROG_BAR && P->drawn) {
        fprintf(stderr, "\r\x1b[K");
        P->drawn = false;
    }
}

static bool on_event(const struct sr_event *ev, void *user) {
    struct progress *P = user;
    if (ev->type == SR_EVENT_STEP_ADOPTED || ev->type == SR_EVENT_ANSWER) {
        P->step = ev->step + 1;
        if (P->style == PROG_BAR && sr_time_us() - P->last_draw_us > 100000) prog_draw(P);
    }
    return !g_stop;
}


int open_backend(struct state *S, const struct sr_engine_params *ep) {
    char berr[600];
    enum sr_status st = C.server ? client_open(C.server, &S->be, berr, sizeof berr) : local_open(ep, &S->be, berr, sizeof berr);
    if (st != SR_OK) return fail("%s", berr);
    S->have_backend = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C kills */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

/* One record to run: problem, sample and configuration, with its store key. */
struct task {
    size_t pi, ci;
    int64_t s;
    char *key;
};

/* The run over every missing record, shared by the workers. mu guards everything below it and
 * the store, the progress, the groups and the results file. */
struct pool {
    struct state *S;
    const struct sr_run_params *rp;
    bool gpqa;
    const char *tmpl;
    struct progress *P;
    struct task *t;
    size_t n;
    pthread_mutex_t mu;
    size_t next;
    int ret;
};

/* Runs one task; false when the whole run must stop (ret set, or interrupted). */
static bool run_task(struct pool *W, struct task *t) {
    struct state *S = W->S;
    struct progress *P = W->P;
    const struct config *c = &S->cfg[t->ci];
    struct item it;
    int rc = prepare_item(&it, S->sel[t->pi], t->s, W->gpqa, W->tmpl);
    char label[64];
    config_label(c, label, sizeof label);
    pthread_mutex_lock(&W->mu);
    if (rc && !W->ret) W->ret = rc;
    if (!rc) {
        snprintf(P->label, sizeof P->label, "%s", label);
        snprintf(P->what, sizeof P->what, "%s#%lld", it.p->id, (long long)t->s);
        P->step = 0;
        prog_draw(P);
    }
    pthread_mutex_unlock(&W->mu);
    if (rc) return false;
    struct sr_run_params run = *W->rp;
    run.mode = c->m->mode;
    run.spec_decode = c->m->decode;
    if (c->m->policy >= 0) run.policy = (enum sr_policy)c->m->policy;
    if (c->m->pipeline >= 0) run.pipeline = (enum sr_pipeline)c->m->pipeline;
    run.threshold = (float)c->thr;
    if (!c->has_thr) run.threshold = sr_run_default_params().threshold;
    run.seed = it.seed;
    run.on_event = on_event; /* in-process only, and then one record at a time */
    run.user = P;
    struct sr_result *res = NULL;
    char rerr[600] = "";
    int64_t t0 = sr_time_us();
    enum sr_status st = S->be.run_one(S->be.state, it.user_msg, &run, &res, rerr, sizeof rerr);
    double ms = (double)(sr_time_us() - t0) / 1000.0;
    free(it.user_msg);
    if (st != SR_OK || (res && res->stop == SR_STOP_CANCELLED)) {
        if (res) S->be.free_result(S->be.state, res);
        if (g_stop) return false;
        pthread_mutex_lock(&W->mu);
        prog_clear(P);
        fprintf(stderr, PROG ": %s %s sample %lld failed: %s\n", label, it.p->id, (long long)t->s, rerr);
        P->failed++;
        P->last_done_us = sr_time_us();
        S->groups[t->ci].errors++;
        bool give_up = P->done == 0 && P->failed >= 5; /* a setup problem (e.g. context too small) */
        if (give_up && !W->ret) W->ret = fail("giving up: the first %zu runs failed", P->failed);
        pthread_mutex_unlock(&W->mu);
        return !give_up;
    }
    struct grade g = grade_output(res, W->gpqa, it.truth);
    char *line = record_json(&it, c, W->gpqa, res, &g, ms, &run, S->be.name);
    struct rec r = {t->key, g.correct, ms, (double)(res->stats.n_adopted_tokens + res->stats.n_answer_tokens),
                    res->stats.n_judged, res->stats.n_steps_small, (double)res->stats.n_sd_drafted,
                    (double)res->stats.n_sd_accepted};
    S->be.free_result(S->be.state, res);
    pthread_mutex_lock(&W->mu);
    bool ok = true;
    if (!line) {
        if (!W->ret) W->ret = fail("out of memory");
        ok = false;
    } else {
        size_t len = strlen(line);
        if (fwrite(line, 1, len, S->results) != len || fflush(S->results) != 0) {
            if (!W->ret) W->ret = fail("cannot write %s: %s", S->results_path, strerror(errno));
            ok = false;
        }
    }
    if (ok) {
        t->key = NULL; /* the store owns it now (also on failure) */
        if (!store_put(&S->store, &r)) {
            if (!W->ret) W->ret = fail("out of memory");
            ok = false;
        }
    }
    if (ok) {
        P->done++;
        P->last_done_us = sr_time_us();
        if (P->style == PROG_LINES) {
            fprintf(stderr, "[%zu/%zu] %s %s#%lld: %s (answer %s, truth %s) %.2f s, %.0f tokens\n",
                    P->skipped + P->done + P->failed, P->total, label, it.p->id, (long long)t->s,
                    g.correct ? "correct" : "wrong", g.extracted ? g.extracted : "none", it.truth, ms / 1000.0,
                    r.tokens);
        }
        prog_draw(P);
    }
    pthread_mutex_unlock(&W->mu);
    free(line);
    free(g.extracted);
    return ok;
}

static void *worker(void *arg) {
    struct pool *W = arg;
    for (;;) {
        pthread_mutex_lock(&W->mu);
        struct task *t = !W->ret && !g_stop && W->next < W->n ? &W->t[W->next++] : NULL;
        pthread_mutex_unlock(&W->mu);
        if (!t || !run_task(W, t)) break;
    }
    return NULL;
}

/* Runs every (problem, sample, configuration) whose record is missing, in that order (with
 * --concurrency N, N at a time), appending each graded record to results.jsonl as soon as it is
 * done. */
int run_all(struct state *S, const struct sr_run_params *rp, bool gpqa, const char *tmpl, struct progress *P) {
    struct pool W = {S, rp, gpqa, tmpl, P, NULL, 0, PTHREAD_MUTEX_INITIALIZER, 0, 0};
    P->t0_us = sr_time_us();
    if (!P->to_run) return 0;
    W.t = calloc(P->to_run, sizeof *W.t);
    if (!W.t) return fail("out of memory");
    for (size_t pi = 0; pi < S->n_sel && !W.ret; pi++)
        for (int64_t s = 0; s < C.k && !W.ret; s++)
            for (size_t ci = 0; ci < S->n_cfg && !W.ret; ci++) {
                const struct config *c = &S->cfg[ci];
                char *key = make_key(S->sel[pi]->id, c->m->name, c->thr_str, s, C.seed + (uint64_t)s, c->settings);
                if (!key) W.ret = fail("out of memory");
                else if (store_find(&S->store, key) || W.n == P->to_run) free(key);
                else W.t[W.n++] = (struct task){pi, ci, s, key};
            }
    size_t nthreads = C.concurrency > 1 ? (size_t)C.concurrency : 1;
    if (nthreads > W.n) nthreads = W.n;
    if (nthreads <= 1) {
        worker(&W);
    } else {
        pthread_t *th = calloc(nthreads, sizeof *th);
        size_t started = 0;
        for (; th && started < nthreads; started++)
            if (pthread_create(&th[started], NULL, worker, &W) != 0) break;
        if (started == 0) worker(&W); /* no thread could start: run them here */
        for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
        free(th);
    }
    for (size_t i = 0; i < W.n; i++) free(W.t[i].key);
    free(W.t);
    pthread_mutex_destroy(&W.mu);
    prog_clear(P);
    return W.ret;
}
