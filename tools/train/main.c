/*
 * main.c: sr-train, trains the small/base reasoning pair on CPU and measures it.
 *
 *   sr-train pair [--dir D] [--seed N] [--force]    train (or reuse) the cached pair, print paths
 *   sr-train train --role small|base -o F [opts]    train one model (experiments)
 *   sr-train eval --small S --base B [--n N]        accuracies, step errors, judge confusion
 *   sr-train problems [--n N] [--seed N]            held-out problems as JSONL (id, problem, answer)
 *   sr-train speed -m M                             llama.cpp decode/prefill timing of a model
 *   sr-train pad -m M -o F --ff N                   M with inert feed-forward units (benchmarks)
 *
 * The pair lives in ${SPECREASON_CACHE:-${XDG_CACHE_HOME:-~/.cache}/specreason}/pair/<key>/ with
 * key = v<trainer version>-<task>-<hash of every setting>-s<seed>; a finished directory (it has
 * meta.json) is reused as is. Progress goes to stderr, results to stdout.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "llm.h"
#include "model.h"
#include "sha256.h"
#include "task.h"
#include "train.h"

#define TRAINER_VERSION "5"

/* ------------------------------------------------------------------------------------------ */
/* Settings                                                                                   */

struct role_cfg {
    struct tm_hparams hp;
    struct tt_params tp;
    float p_judge, p_judge_good, p_real, p_near, p_mark;
    int32_t judge_weight, mark_weight, suffix_weight;
    /* Phase 2 (base): after generation and marks are learned, the judge digit gets more weight and
     * more samples, at a lower learning rate (fresh AdamW state). 0 steps = off. */
    int64_t judge_steps;
    float judge_lr, judge_frac2;
    int32_t judge_weight2;
    int32_t judge_dp; /* pair: the judge phase runs data-parallel over both processes (1) or alone (0) */
};

struct settings {
    struct tk_cfg task;
    struct role_cfg small, base;
    const char *judge_prompt, *judge_prefill;
    uint64_t seed;
    int32_t n_heldout;      /* held-out problems excluded from training */
    int32_t n_mistakes;     /* problems the small model is run on to collect real mistakes */
    int32_t n_eval;         /* problems for the summary measurements */
    int32_t threads;
    double time_limit_s;    /* abort (no result) past this many seconds; 0 = none; never changes a result */
};

static struct tm_hparams hp_make(int layers, int embd, int heads, int ff) {
    struct tm_hparams hp = {.n_vocab = TK_N_VOCAB, .n_embd = embd, .n_layer = layers, .n_head = heads, .n_ff = ff,
                            .n_ctx = 4096, .rms_eps = 1e-5f, .rope_base = 10000.0f};
    return hp;
}

static struct settings settings_default(void) {
    struct settings s;
    memset(&s, 0, sizeof s);
    s.task = tk_cfg_default();
    s.judge_prompt = TK_JUDGE_PROMPT;
    s.judge_prefill = TK_JUDGE_PREFILL;
    s.seed = 1;
    s.n_heldout = 1000;
    s.n_mistakes = 8000; /* ~3,500 wrong steps; collected beside the base model's first phase */
    s.n_eval = 200;
    s.threads = 2;
    s.time_limit_s = 0;

    s.small.hp = hp_make(2, 64, 2, 256);
    s.small.tp = tt_default_params();
    s.small.tp.lr = 3e-3f;
    /* Every budget is in optimizer steps, so that a key names one model whatever the machine's
     * speed or load. The small model's accuracy climbs steeply here (1065 steps 63%, 1100 steps
     * 81%, 1200 steps 91%, 2700 steps 100% of held-out problems). */
    s.small.tp.steps = 1100;
    s.small.tp.label = "small";
    s.small.tp.T = 256;
    s.small.tp.B = 8;

    s.base.hp = hp_make(4, 128, 4, 512);
    s.base.tp = tt_default_params();
    s.base.tp.lr = 2e-3f;
    s.base.tp.steps = 760; /* generation, marks and judge samples: 5.5 min on one core here */
    s.base.tp.label = "base";
    s.base.tp.T = 256;
    s.base.tp.B = 8;
    s.base.tp.mark_layer = 3; /* marks on the input of the last layer */
    s.base.tp.mid_weight = 0.0f;
    s.base.p_judge = 0.5f;
    s.base.p_judge_good = 0.5f;
    s.base.p_real = 0.5f;
    s.base.p_near = 0.5f; /* near misses: what the small model gets wrong, the hardest to see */
    s.base.judge_weight = 4;
    s.base.mark_weight = 4;
    s.base.p_mark = 0.5f;
    s.base.suffix_weight = 1;
    s.base.judge_steps = 3000; /* judge-heavy, data-parallel: 4 + 4 rows a step over both processes */
    s.base.judge_lr = 1e-3f;
    s.base.judge_frac2 = 0.8f;
    s.base.judge_weight2 = 8;
    s.base.judge_dp = 1; /* the judge phase over both pair processes (--judge-dp 0: alone); docs/TRAINING.md */
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Option parsing                                                                             */

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sr-train: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see sr-train --help)\n");
    va_end(ap);
    return 2;
}

static bool parse_num(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Options shared by every subcommand. Returns 1 if consumed (with *i advanced), 0 if unknown,
 * 2 on a bad value. */
static int parse_common(int argc, char **argv, int *i, struct settings *s) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    double x;
    struct {
        const char *name;
        double lo, hi;
        void *dst;
        char kind; /* i = int32, f = float, u = u64, d = double, l = int64 */
    } nums[] = {
        {"--seed", 0, 1e15, &s->seed, 'u'},
        {"--threads", 1, 64, &s->threads, 'i'},
        {"--terms-min", 2, TK_MAX_TERMS, &s->task.terms_min, 'i'},
        {"--terms-max", 2, TK_MAX_TERMS, &s->task.terms_max, 'i'},
        {"--digits", 1, TK_MAX_DIGITS, &s->task.digits, 'i'},
        {"--n-heldout", 0, 1e6, &s->n_heldout, 'i'},
        {"--n-mistakes", 0, 1e6, &s->n_mistakes, 'i'},
        {"--n-eval", 0, 1e6, &s->n_eval, 'i'},
        {"--small-layers", 1, TM_MAX_LAYERS, &s->small.hp.n_layer, 'i'},
        {"--small-embd", 8, 1024, &s->small.hp.n_embd, 'i'},
        {"--small-heads", 1, 64, &s->small.hp.n_head, 'i'},
        {"--small-ff", 8, 8192, &s->small.hp.n_ff, 'i'},
        {"--small-lr", 1e-6, 1, &s->small.tp.lr, 'f'},
        {"--small-steps", 1, 1e9, &s->small.tp.steps, 'l'},
        {"--small-batch", 1, 4096, &s->small.tp.B, 'i'},
        {"--base-layers", 1, TM_MAX_LAYERS, &s->base.hp.n_layer, 'i'},
        {"--base-embd", 8, 1024, &s->base.hp.n_embd, 'i'},
        {"--base-heads", 1, 64, &s->base.hp.n_head, 'i'},
        {"--base-ff", 8, 8192, &s->base.hp.n_ff, 'i'},
        {"--base-lr", 1e-6, 1, &s->base.tp.lr, 'f'},
        {"--base-steps", 1, 1e9, &s->base.tp.steps, 'l'},
        {"--base-batch", 1, 4096, &s->base.tp.B, 'i'},
        {"--judge-frac", 0, 1, &s->base.p_judge, 'f'},
        {"--judge-good", 0, 1, &s->base.p_judge_good, 'f'},
        {"--judge-real", 0, 1, &s->base.p_real, 'f'},
        {"--judge-near", 0, 1, &s->base.p_near, 'f'},
        {"--judge-weight", 1, 8, &s->base.judge_weight, 'i'},
        {"--mark-weight", 0, 8, &s->base.mark_weight, 'i'},
        {"--mark-frac", 0, 1, &s->base.p_mark, 'f'},
        {"--suffix-weight", 0, 8, &s->base.suffix_weight, 'i'},
        {"--mark-layer", 0, TM_MAX_LAYERS - 1, &s->base.tp.mark_layer, 'i'},
        {"--mid-weight", 0, 4, &s->base.tp.mid_weight, 'f'},
        {"--judge-steps", 0, 1e9, &s->base.judge_steps, 'l'},
        {"--time-limit", 0, 1e7, &s->time_limit_s, 'd'},
        {"--judge-lr", 1e-6, 1, &s->base.judge_lr, 'f'},
        {"--judge-frac2", 0, 1, &s->base.judge_frac2, 'f'},
        {"--judge-weight2", 1, 8, &s->base.judge_weight2, 'i'},
        {"--judge-dp", 0, 1, &s->base.judge_dp, 'i'},
        {"--small-rope-base", 1, 1e6, &s->small.hp.rope_base, 'f'},
        {"--base-rope-base", 1, 1e6, &s->base.hp.rope_base, 'f'},
        {"--small-T", 16, TT_MAX_T, &s->small.tp.T, 'i'},
        {"--base-T", 16, TT_MAX_T, &s->base.tp.T, 'i'},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        if (strcmp(a, nums[k].name) != 0) continue;
        if (!v || !parse_num(v, nums[k].lo, nums[k].hi, &x)) return usage_err("bad or missing value for %s", a);
        switch (nums[k].kind) {
        case 'i': *(int32_t *)nums[k].dst = (int32_t)x; break;
        case 'f': *(float *)nums[k].dst = (float)x; break;
        case 'u': *(uint64_t *)nums[k].dst = (uint64_t)x; break;
        case 'l': *(int64_t *)nums[k].dst = (int64_t)x; break;
        default: *(double *)nums[k].dst = x; break;
        }
        *i += 1;
        return 1;
    }
    if (strcmp(a, "--judge-prompt") == 0 || strcmp(a, "--judge-prefill") == 0) {
        if (!v) return usage_err("%s needs a value", a);
        if (a[8] == 'p' && a[9] == 'r' && a[10] == 'o') s->judge_prompt = v;
        else s->judge_prefill = v;
        *i += 1;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

static uint64_t hash_role(uint64_t h, const struct role_cfg *r) {
    int64_t iv[] = {r->hp.n_embd, r->hp.n_layer, r->hp.n_head, r->hp.n_ff, r->tp.T, r->tp.B, r->tp.warmup,
                    r->tp.steps, r->judge_steps, r->judge_weight, r->mark_weight, r->suffix_weight,
                    r->tp.mark_layer, r->hp.rope_base > 0 ? (int64_t)r->hp.rope_base : 0};
    double fv[] = {r->tp.lr, r->tp.lr_min, r->tp.wd, r->tp.clip, r->p_judge, r->p_judge_good, r->p_real,
                   r->p_near, r->p_mark, r->tp.mid_weight, r->judge_lr, r->judge_frac2,
                   (double)r->judge_weight2};
    h = fnv(h, iv, sizeof iv);
    h = fnv(h, fv, sizeof fv);
    /* settings added after version 4 enter the hash only when set, so that version 4's keys still
     * name the pairs they named */
    if (r->judge_dp) h = fnv(h, &r->judge_dp, sizeof r->judge_dp);
    return h;
}

static void cache_key(const struct settings *s, char *buf, size_t size) {
    char task[64];
    tk_cfg_name(&s->task, task, sizeof task);
    uint64_t h = 0xCBF29CE484222325ull;
    h = fnv(h, task, strlen(task));
    h = fnv(h, s->judge_prompt, strlen(s->judge_prompt) + 1);
    h = fnv(h, s->judge_prefill, strlen(s->judge_prefill) + 1);
    int32_t ns[] = {s->n_heldout, s->n_mistakes};
    h = fnv(h, ns, sizeof ns);
    h = hash_role(h, &s->small);
    h = hash_role(h, &s->base);
    snprintf(buf, size, "v%s-%s-%08llx-s%llu", TRAINER_VERSION, task, (unsigned long long)(h & 0xFFFFFFFFull),
             (unsigned long long)s->seed);
}

static int mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* One held-out problem as a JSON line: id, problem, answer and the reference steps. */
static void problem_json(FILE *f, const struct settings *s, int32_t i) {
    struct tk_problem p;
    char text[TK_TEXT_MAX];
    dt_heldout_problem(&s->task, s->seed, i, &p);
    tk_problem_text(&p, text, sizeof text);
    fprintf(f, "{\"id\": %d, \"problem\": \"%s\", \"answer\": \"%lld\", \"steps\": [", i, text,
            (long long)tk_answer(&p));
    for (int32_t k = 0; k < tk_n_steps(&p); k++) {
        tk_step_text(&p, k, text, sizeof text);
        fputs(k ? ", " : "", f);
        json_str(f, text);
    }
    fputs("]}\n", f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Trains one role; small has no judge samples. */
static const char *g_init; /* --init MODEL: start from these weights (experiments) */
static double g_t_start;   /* tt_now() when sr-train started: --time-limit counts from here */
static double g_phase1_cpu; /* CPU seconds of the last train_role's first phase */

/* The two processes of a data-parallel judge phase: the pipe ends this one reads and writes. */
struct dp_link {
    int in, out;
};

/* The mix and parameters of a role's first phase (judge = base: judge samples and marks). */
static void phase1_setup(const struct settings *s, const struct role_cfg *r, bool judge, const struct dt_pool *pool,
                         uint64_t seed, struct dt_mix *mix, struct tt_params *tp) {
    *mix = (struct dt_mix){.cfg = s->task, .p_judge = judge ? r->p_judge : 0.0f, .p_judge_good = r->p_judge_good,
                           .p_real = r->p_real, .p_near = r->p_near, .judge_weight = r->judge_weight,
                           .mark_weight = judge ? r->mark_weight : 0,
                           .p_mark = r->p_mark, .suffix_weight = r->suffix_weight,
                           .judge_prompt = s->judge_prompt,
                           .judge_prefill = s->judge_prefill, .pool = pool};
    *tp = r->tp;
    tp->threads = s->threads;
    tp->seed = seed * 7919 + 17;
    tp->deadline = s->time_limit_s > 0 ? g_t_start + s->time_limit_s : 0.0;
}

/* Turns the first phase's mix and parameters into the judge phase's. With dp (two processes),
 * each packs half of the batch from its own data stream (worker: seed + 1 + 0x5DEECE66D). */
static void judge_setup(const struct role_cfg *r, const struct dp_link *dp, bool worker, struct dt_mix *mix,
                        struct tt_params *tp) {
    mix->judge_weight = r->judge_weight2;
    mix->p_judge = r->judge_frac2;
    tp->lr = r->judge_lr;
    tp->warmup = 20;
    tp->steps = r->judge_steps;
    tp->seed += 1;
    tp->label = "judge";
    if (dp) {
        tp->B = (r->tp.B + 1) / 2;
        tp->dp_role = worker ? TT_DP_WORKER : TT_DP_LEADER;
        tp->dp_in = dp->in;
        tp->dp_out = dp->out;
        if (worker) {
            tp->seed += 0x5DEECE66Dull;
            tp->progress = false;
            tp->deadline = 0; /* the leader decides */
        }
    }
}

/* between(user), if not NULL, runs after the first phase and before the judge phase (it may fill
 * the pool: the small model's mistakes, collected while the first phase ran). dp: the judge phase
 * runs data-parallel with the process at the other end (NULL = alone). */
static int train_role(const struct settings *s, const struct role_cfg *r, bool judge, const struct dt_pool *pool,
                      uint64_t seed, const char *out, const char *name, struct tt_report *rep,
                      int (*between)(void *), void *between_user, const struct dp_link *dp) {
    struct tm_model m;
    char lerr[256];
    if (g_init && tm_model_load(&m, g_init, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "sr-train: %s\n", lerr);
        return -1;
    }
    if (!g_init && tm_model_init(&m, &r->hp, seed) != 0) {
        fprintf(stderr, "sr-train: bad model shape (%s)\n", tm_hparams_check(&r->hp) ? tm_hparams_check(&r->hp) : "out of memory");
        return -1;
    }
    struct dt_mix mix;
    struct tt_params tp;
    phase1_setup(s, r, judge, pool, seed, &mix, &tp);
    char err[256];
    fprintf(stderr, "[%s] %d layers, n_embd %d, %d heads, n_ff %d: %.2fM parameters\n", tp.label, r->hp.n_layer,
            r->hp.n_embd, r->hp.n_head, r->hp.n_ff, (double)tm_model_n_elements(&m) / 1e6);
    int rc = tt_train(&m, &tp, dt_next, &mix, rep, err, sizeof err);
    g_phase1_cpu = rep->cpu_seconds;
    if (rc == 0 && between && between(between_user) != 0) {
        tm_model_free(&m);
        return -1;
    }
    if (rc == 0 && judge && r->judge_steps > 0) {
        struct tt_report r1 = *rep;
        judge_setup(r, dp, false, &mix, &tp);
        if (dp) fprintf(stderr, "[judge] data-parallel over two processes, %d + %d rows per step\n", tp.B, tp.B);
        rc = tt_train(&m, &tp, dt_next, &mix, rep, err, sizeof err);
        rep->steps += r1.steps;
        rep->seconds += r1.seconds;
        rep->cpu_seconds += r1.cpu_seconds;
        rep->tokens += r1.tokens;
    }
    if (rc == 0) rc = tm_model_save(&m, out, name, err, sizeof err);
    if (rc != 0) fprintf(stderr, "sr-train: %s\n", err);
    tm_model_free(&m);
    return rc;
}

/* The worker's half of the base model's data-parallel judge phase (in the small model's process,
 * once its own work is done): the weights come from the leader, the data from the same mix. */
static int judge_worker(const struct settings *s, const struct dt_pool *pool, const struct dp_link *dp) {
    const struct role_cfg *r = &s->base;
    struct tm_model m;
    if (tm_model_init(&m, &r->hp, 0) != 0) return -1;
    struct dt_mix mix;
    struct tt_params tp;
    phase1_setup(s, r, true, pool, s->seed * 2 + 2, &mix, &tp);
    judge_setup(r, dp, true, &mix, &tp);
    if (getenv("SR_TRAIN_TEST_WORKER_FAIL")) tp.steps += 1; /* test hook: the two sides disagree */
    struct tt_report rep;
    char err[256];
    int rc = tt_train(&m, &tp, dt_next, &mix, &rep, err, sizeof err);
    if (rc != 0) fprintf(stderr, "\nsr-train: %s\n", err);
    tm_model_free(&m);
    return rc;
}

static void print_eval(const char *who, const struct ev_result *r) {
    if (r->n_problems)
        fprintf(stderr, "[eval] %s accuracy %d/%d = %.1f%%\n", who, r->n_correct, r->n_problems,
                100.0 * r->n_correct / r->n_problems);
    if (r->n_steps && !(r->good_accept + r->good_reject + r->bad_accept + r->bad_reject))
        fprintf(stderr, "[eval] %s step errors %d/%d = %.1f%%\n", who, r->n_steps_wrong, r->n_steps,
                100.0 * r->n_steps_wrong / r->n_steps);
    int g = r->good_accept + r->good_reject, b = r->bad_accept + r->bad_reject;
    if (g + b)
        fprintf(stderr, "[eval] judge on small steps: accepts %d/%d correct (%.1f%%), rejects %d/%d wrong (%.1f%%)\n",
                r->good_accept, g, g ? 100.0 * r->good_accept / g : 0.0, r->bad_reject, b,
                b ? 100.0 * r->bad_reject / b : 0.0);
}

/* ------------------------------------------------------------------------------------------ */
/* Subcommands                                                                                */

/* The small model's training and mistakes, in a child process (see cmd_pair). */
struct small_job {
    const struct settings *s; /* the child's settings (its share of the threads) */
    const char *small;        /* where it writes the small model */
    struct tt_report *rs;     /* filled by small_job_finish */
    struct dt_pool pool;      /* the mistakes, filled by small_job_finish */
    int fd;                   /* read end of the pipe the child reports through */
    int fd_out;               /* write end of the pipe to the child (data-parallel judge phase), or -1 */
    bool dp;                  /* the child stays on as the judge phase's data-parallel worker */
    double mistakes_cpu;      /* CPU seconds the child spent collecting mistakes */
    pid_t pid;                /* > 0 while the child has not been reaped */
    bool ok;
};

static bool write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Test hook: SR_TRAIN_TEST_STALL=ROLE:S[,ROLE:S...] delays that role's start by S seconds (small,
 * base: the two processes of `pair`; worker: the small model's process before it joins the judge
 * phase), so that a test can make either side finish first (the result must not depend on it). */
static void test_stall(const char *role) {
    const char *v = getenv("SR_TRAIN_TEST_STALL");
    size_t n = strlen(role);
    while (v && !(strncmp(v, role, n) == 0 && v[n] == ':')) {
        v = strchr(v, ',');
        if (v) v++;
    }
    if (!v) return;
    double sec = atof(v + n + 1);
    if (sec > 0 && sec < 60) {
        struct timespec ts = {(time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int small_job_start(struct small_job *j) {
    int fds[2], back[2] = {-1, -1};
    if (pipe(fds) != 0 || (j->dp && pipe(back) != 0)) {
        fprintf(stderr, "sr-train: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "sr-train: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        if (j->dp) { close(back[0]); close(back[1]); }
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        if (j->dp) close(back[1]);
        const struct settings *s = j->s;
        struct tt_report rs;
        memset(&rs, 0, sizeof rs);
        test_stall("small");
        int32_t rc = train_role(s, &s->small, false, NULL, s->seed * 2 + 1, j->small, "specreason-pair-small", &rs,
                                NULL, NULL, NULL);
        struct dt_pool pool = {0};
        struct ev_result em = {0};
        double tm = now_s(), tm_cpu0 = tt_cpu_now();
        if (rc == 0) {
            char err[256];
            struct llm *L = llm_open(j->small, 512, s->threads, err, sizeof err);
            if (!L) {
                fprintf(stderr, "sr-train: %s\n", err);
                rc = -1;
            } else {
                if (ev_mistakes(L, &s->task, s->seed * 31 + 7, s->n_mistakes / 2, 0.0f, &pool, &em) != 0 ||
                    ev_mistakes(L, &s->task, s->seed * 37 + 11, s->n_mistakes - s->n_mistakes / 2, 1.0f, &pool,
                                &em) != 0) {
                    fprintf(stderr, "sr-train: collecting the small model's mistakes failed\n");
                    rc = -1;
                }
                llm_close(L);
            }
        }
        tm = now_s() - tm;
        double tm_cpu = tt_cpu_now() - tm_cpu0;
        int32_t hdr[2] = {rc, em.n_steps};
        uint64_t n = pool.n;
        bool ok = write_all(fds[1], hdr, sizeof hdr) && write_all(fds[1], &rs, sizeof rs) &&
                  write_all(fds[1], &tm, sizeof tm) && write_all(fds[1], &tm_cpu, sizeof tm_cpu) &&
                  write_all(fds[1], &n, sizeof n) &&
                  (n == 0 || write_all(fds[1], pool.v, (size_t)n * sizeof *pool.v));
        if (ok && rc == 0 && j->dp) { /* then the second half of the base model's judge phase */
            struct dp_link link = {.in = back[0], .out = fds[1]};
            test_stall("worker");
            rc = judge_worker(s, &pool, &link);
        }
        _exit(ok && rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    if (j->dp) close(back[0]);
    j->fd = fds[0];
    j->fd_out = back[1];
    j->pid = pid;
    return 0;
}

/* Closes the pipes and waits for the child (killing it first if asked); j->ok keeps whether it
 * succeeded. */
static void small_job_reap(struct small_job *j, bool kill_it) {
    if (j->pid <= 0) return;
    if (kill_it) kill(j->pid, SIGTERM);
    if (j->fd >= 0) close(j->fd);
    if (j->fd_out >= 0) close(j->fd_out);
    j->fd = j->fd_out = -1;
    int status = 0;
    while (waitpid(j->pid, &status, 0) < 0 && errno == EINTR) {}
    j->pid = -1;
    j->ok = j->ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Waits for the child's report and mistakes; 0 if it succeeded. */
static int small_job_finish(void *user) {
    struct small_job *j = user;
    if (j->pid <= 0) return j->ok ? 0 : -1;
    int32_t hdr[2] = {-1, 0};
    double tm = 0;
    uint64_t n = 0;
    bool ok = read_all(j->fd, hdr, sizeof hdr) && read_all(j->fd, j->rs, sizeof *j->rs) &&
              read_all(j->fd, &tm, sizeof tm) && read_all(j->fd, &j->mistakes_cpu, sizeof j->mistakes_cpu) &&
              read_all(j->fd, &n, sizeof n) && hdr[0] == 0 && n < (1u << 24);
    if (ok && n > 0) {
        j->pool.v = malloc((size_t)n * sizeof *j->pool.v);
        ok = j->pool.v && read_all(j->fd, j->pool.v, (size_t)n * sizeof *j->pool.v);
        if (ok) j->pool.n = j->pool.cap = (size_t)n;
    }
    j->ok = ok;
    if (!ok || !j->dp) small_job_reap(j, !ok); /* data-parallel: the child works on, reaped later */
    if (!j->ok) {
        fprintf(stderr, "\nsr-train: training the small model failed\n");
        return -1;
    }
    fprintf(stderr, "[small] %lld steps in %.0f s (beside the base model); loss %.4f\n", (long long)j->rs->steps,
            j->rs->seconds, j->rs->loss_gen);
    fprintf(stderr, "[mistakes] %zu wrong steps out of %d (greedy and T=1) in %.0f s\n", j->pool.n, hdr[1], tm);
    return 0;
}

static int cmd_pair(int argc, char **argv) {
    struct settings s = settings_default();
    s.n_eval = 1000; /* enough of the small model's wrong steps (~100 at 80% accuracy) to judge the judge */
    const char *dir = NULL;
    bool force = false;
    for (int i = 2; i < argc; i++) {
        int c = parse_common(argc, argv, &i, &s);
        if (c == 2) return 2;
        if (c == 1) continue;
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--force") == 0) force = true;
        else return usage_err("unknown option '%s'", argv[i]);
    }
    const char *msg = tk_cfg_check(&s.task);
    if (msg) return usage_err("%s", msg);
    char key[256], path[4096], small[4200], base[4200], meta[4200], held[4200];
    cache_key(&s, key, sizeof key);
    if (!dir) {
        const char *c = getenv("SPECREASON_CACHE");
        const char *x = getenv("XDG_CACHE_HOME");
        const char *h = getenv("HOME");
        if (c && *c) snprintf(path, sizeof path, "%s/pair/%s", c, key);
        else if (x && *x) snprintf(path, sizeof path, "%s/specreason/pair/%s", x, key);
        else snprintf(path, sizeof path, "%s/.cache/specreason/pair/%s", h ? h : ".", key);
    } else {
        snprintf(path, sizeof path, "%s", dir);
    }
    snprintf(small, sizeof small, "%s/small.gguf", path);
    snprintf(base, sizeof base, "%s/base.gguf", path);
    snprintf(meta, sizeof meta, "%s/meta.json", path);
    snprintf(held, sizeof held, "%s/heldout.jsonl", path);
    if (!force && file_exists(meta) && file_exists(small) && file_exists(base)) {
        fprintf(stderr, "[pair] cached in %s\n", path);
        printf("%s\n%s\n", small, base);
        return 0;
    }
    if (mkdir_p(path) != 0) {
        fprintf(stderr, "sr-train: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    unlink(meta);
    fprintf(stderr, "[pair] training the small/base pair into %s (budget: small %lld steps, base %lld + %lld steps)\n",
            path, (long long)s.small.tp.steps, (long long)s.base.tp.steps, (long long)s.base.judge_steps);
    llm_log_quiet();
    dt_heldout_register(&s.task, s.seed, s.n_heldout);
    double t0 = now_s();
    struct tt_report rs, rb;
    /* Two roles, two cores: the small model trains (and then writes the steps whose mistakes
     * the judge learns from) in a child process while the base model's first phase runs here;
     * the base model's judge phase starts once the child has sent its report and mistakes. */
    struct settings sc = s;
    if (sc.threads > 1) sc.threads /= 2;
    sc.small.tp.progress = false;
    /* Once its own work is done, the child trains half of each judge-phase batch (data-parallel:
     * the judge phase is most of the base model's training, and the second core would idle). */
    struct small_job job = {.s = &sc, .small = small, .rs = &rs, .fd = -1, .fd_out = -1, .pid = -1,
                            .dp = s.base.judge_dp && s.base.judge_steps > 0};
    signal(SIGPIPE, SIG_IGN); /* a process that stops shows as a failed write, with a message */
    if (small_job_start(&job) != 0) return 1;
    struct dp_link link = {.in = job.fd, .out = job.fd_out};
    struct settings sb = s;
    sb.threads = s.threads - sc.threads > 0 ? s.threads - sc.threads : 1;
    test_stall("base");
    int rc_base = train_role(&sb, &s.base, true, &job.pool, s.seed * 2 + 2, base, "specreason-pair-base", &rb,
                             small_job_finish, &job, job.dp ? &link : NULL);
    small_job_reap(&job, rc_base != 0); /* after a failure: stop the child first */
    if (rc_base == 0 && !job.ok) fprintf(stderr, "sr-train: the small model's process failed\n");
    struct dt_pool pool = job.pool;
    if (rc_base != 0 || !job.ok) { dt_pool_free(&pool); return 1; }
    double t_train = now_s() - t0;
    char err[256];
    /* Measurements on one thread: these models are too small for a second one to help (it only
     * adds a barrier per graph node). */
    struct llm *Ls = llm_open(small, 512, 1, err, sizeof err);
    if (!Ls) { fprintf(stderr, "sr-train: %s\n", err); return 1; }

    /* Summary measurements with llama.cpp. */
    struct llm *Lb = llm_open(base, 512, 1, err, sizeof err);
    if (!Lb) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    struct ev_result as = {0}, ab = {0}, ej = {0};
    if (ev_accuracy(Ls, &s.task, s.seed, s.n_eval, &as) != 0 || ev_accuracy(Lb, &s.task, s.seed, s.n_eval, &ab) != 0 ||
        ev_judge(Ls, Lb, &s.task, s.seed, s.n_eval, s.judge_prompt, s.judge_prefill, &ej) != 0) {
        fprintf(stderr, "sr-train: evaluation failed\n");
        return 1;
    }
    print_eval("small", &as);
    print_eval("base", &ab);
    print_eval("judge", &ej);
    double sd, sp, bd, bp;
    llm_speed(Ls, 200, 32, &sd, &sp);
    llm_speed(Lb, 200, 32, &bd, &bp);
    llm_close(Ls);
    llm_close(Lb);

    /* Held-out problems for the benchmark. */
    FILE *f = fopen(held, "w");
    if (!f) { fprintf(stderr, "sr-train: cannot write %s\n", held); return 1; }
    for (int32_t i = 0; i < s.n_heldout; i++) problem_json(f, &s, i);
    fclose(f);

    char task[64];
    tk_cfg_name(&s.task, task, sizeof task);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", meta);
    f = fopen(tmp, "w");
    if (!f) { fprintf(stderr, "sr-train: cannot write %s\n", tmp); return 1; }
    fprintf(f, "{\n  \"trainer_version\": \"%s\",\n  \"key\": \"%s\",\n  \"task\": \"%s\",\n  \"seed\": %llu,\n",
            TRAINER_VERSION, key, task, (unsigned long long)s.seed);
    fprintf(f, "  \"judge_prompt\": ");
    json_str(f, s.judge_prompt);
    fprintf(f, ",\n  \"judge_prefill\": ");
    json_str(f, s.judge_prefill);
    fprintf(f, ",\n  \"threads\": %d,\n  \"judge_processes\": %d,\n  \"train_seconds\": %.1f,\n  \"n_eval\": %d,\n",
            s.threads, job.dp ? 2 : 1, t_train, s.n_eval);
    const struct role_cfg *rc[2] = {&s.small, &s.base};
    const struct tt_report *rr[2] = {&rs, &rb};
    const struct ev_result *ra[2] = {&as, &ab};
    double dec[2] = {sd, bd}, pre[2] = {sp, bp};
    const char *files[2] = {small, base};
    for (int k = 0; k < 2; k++) {
        char hex[65];
        if (sr_sha256_file(files[k], hex) != 0) {
            fprintf(stderr, "sr-train: cannot read %s\n", files[k]);
            fclose(f);
            return 1;
        }
        fprintf(f,
                "  \"%s\": {\"file\": \"%s.gguf\", \"sha256\": \"%s\", \"layers\": %d, \"embd\": %d, \"heads\": %d, "
                "\"ff\": %d, \"steps\": %lld, \"judge_steps\": %lld, \"seconds\": %.1f, \"cpu_seconds\": %.1f, \"loss_gen\": %.4f, "
                "\"loss_judge\": %.4f, \"accuracy\": %.4f, \"ms_per_decode\": %.4f, \"ms_prefill_32\": %.4f},\n",
                k ? "base" : "small", k ? "base" : "small", hex, rc[k]->hp.n_layer, rc[k]->hp.n_embd, rc[k]->hp.n_head,
                rc[k]->hp.n_ff, (long long)rr[k]->steps, k ? (long long)rc[k]->judge_steps : 0LL, rr[k]->seconds, rr[k]->cpu_seconds,
                rr[k]->loss_gen, rr[k]->loss_judge, ra[k]->n_problems ? (double)ra[k]->n_correct / ra[k]->n_problems : 0.0,
                dec[k], pre[k]);
    }
    int g = ej.good_accept + ej.good_reject, b = ej.bad_accept + ej.bad_reject;
    /* What training costs on an idle machine of this kind, whatever the load during this run: the
     * critical path of the two processes' CPU times (the small model and its mistakes beside the
     * base model's first phase, then the data-parallel judge phase). */
    double small_path = rs.cpu_seconds + job.mistakes_cpu;
    fprintf(f, "  \"mistakes_cpu_seconds\": %.1f,\n  \"train_cpu_estimate_seconds\": %.1f,\n", job.mistakes_cpu,
            (small_path > g_phase1_cpu ? small_path : g_phase1_cpu) + rb.cpu_seconds - g_phase1_cpu);
    fprintf(f, "  \"mistakes_collected\": %zu,\n  \"judge\": {\"correct_steps\": %d, \"accept_correct\": %.4f, "
               "\"wrong_steps\": %d, \"reject_wrong\": %.4f}\n}\n",
            pool.n, g, g ? (double)ej.good_accept / g : 0.0, b, b ? (double)ej.bad_reject / b : 0.0);
    fclose(f);
    dt_pool_free(&pool);
    if (rename(tmp, meta) != 0) { fprintf(stderr, "sr-train: cannot write %s\n", meta); return 1; }
    fprintf(stderr, "[pair] done in %.0f s (training and mistakes %.0f s)\n", now_s() - t0, t_train);
    printf("%s\n%s\n", small, base);
    return 0;
}

static int cmd_train(int argc, char **argv) {
    struct settings s = settings_default();
    const char *role = "small", *out = NULL, *pool_model = NULL;
    for (int i = 2; i < argc; i++) {
        int c = parse_common(argc, argv, &i, &s);
        if (c == 2) return 2;
        if (c == 1) continue;
        if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) role = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--mistakes-from") == 0 && i + 1 < argc) pool_model = argv[++i];
        else if (strcmp(argv[i], "--init") == 0 && i + 1 < argc) g_init = argv[++i];
        else return usage_err("unknown option '%s'", argv[i]);
    }
    if (!out) return usage_err("%s", "train needs -o FILE");
    bool is_base = strcmp(role, "base") == 0;
    if (!is_base && strcmp(role, "small") != 0) return usage_err("unknown role '%s'", role);
    llm_log_quiet();
    dt_heldout_register(&s.task, s.seed, s.n_heldout);
    struct dt_pool pool = {0};
    if (pool_model) {
        char err[256];
        struct llm *L = llm_open(pool_model, 512, s.threads, err, sizeof err);
        if (!L) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
        struct ev_result em = {0};
        ev_mistakes(L, &s.task, s.seed * 31 + 7, s.n_mistakes / 2, 0.0f, &pool, &em);
        ev_mistakes(L, &s.task, s.seed * 37 + 11, s.n_mistakes - s.n_mistakes / 2, 1.0f, &pool, &em);
        fprintf(stderr, "[mistakes] %zu wrong steps out of %d\n", pool.n, em.n_steps);
        llm_close(L);
    }
    struct tt_report rep;
    const struct role_cfg *r = is_base ? &s.base : &s.small;
    int rc = train_role(&s, r, is_base, &pool, s.seed * 2 + (is_base ? 2 : 1), out,
                        is_base ? "specreason-pair-base" : "specreason-pair-small", &rep, NULL, NULL, NULL);
    dt_pool_free(&pool);
    if (rc != 0) return 1;
    fprintf(stderr, "[%s] %lld steps in %.0f s; loss gen %.4f (acc %.2f%%) judge %.4f (acc %.2f%%), marks: errors %.2f%% ok %.2f%%\n",
            role, (long long)rep.steps, rep.seconds, rep.loss_gen, 100 * rep.acc_gen, rep.loss_judge,
            100 * rep.acc_judge, 100 * rep.acc_mark, 100 * rep.acc_mark_ok);
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    struct settings s = settings_default();
    const char *small = NULL, *base = NULL;
    for (int i = 2; i < argc; i++) {
        int c = parse_common(argc, argv, &i, &s);
        if (c == 2) return 2;
        if (c == 1) continue;
        if (strcmp(argv[i], "--small") == 0 && i + 1 < argc) small = argv[++i];
        else if (strcmp(argv[i], "--base") == 0 && i + 1 < argc) base = argv[++i];
        else return usage_err("unknown option '%s'", argv[i]);
    }
    llm_log_quiet();
    char err[256];
    struct llm *Ls = NULL, *Lb = NULL;
    if (small && !(Ls = llm_open(small, 512, s.threads, err, sizeof err))) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    if (base && !(Lb = llm_open(base, 512, s.threads, err, sizeof err))) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    struct ev_result r;
    if (Ls) {
        memset(&r, 0, sizeof r);
        ev_accuracy(Ls, &s.task, s.seed, s.n_eval, &r);
        ev_mistakes(Ls, &s.task, s.seed * 1000 + 3, s.n_eval, 0.0f, NULL, &r);
        print_eval("small", &r);
    }
    if (Lb) {
        memset(&r, 0, sizeof r);
        ev_accuracy(Lb, &s.task, s.seed, s.n_eval, &r);
        ev_mistakes(Lb, &s.task, s.seed * 1000 + 3, s.n_eval, 0.0f, NULL, &r);
        print_eval("base", &r);
    }
    if (Ls && Lb) {
        memset(&r, 0, sizeof r);
        ev_judge(Ls, Lb, &s.task, s.seed, s.n_eval, s.judge_prompt, s.judge_prefill, &r);
        print_eval("judge", &r);
    }
    llm_close(Ls);
    llm_close(Lb);
    return 0;
}

static int cmd_problems(int argc, char **argv) {
    struct settings s = settings_default();
    int32_t n = 100;
    for (int i = 2; i < argc; i++) {
        int c = parse_common(argc, argv, &i, &s);
        if (c == 2) return 2;
        if (c == 1) continue;
        double x;
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc && parse_num(argv[i + 1], 1, 1e6, &x)) {
            n = (int32_t)x;
            i++;
        } else {
            return usage_err("unknown option '%s'", argv[i]);
        }
    }
    for (int32_t i = 0; i < n; i++) problem_json(stdout, &s, i);
    return 0;
}

static int cmd_speed(int argc, char **argv) {
    const char *model = NULL;
    int threads = 2;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else return usage_err("unknown option '%s'", argv[i]);
    }
    if (!model) return usage_err("%s", "speed needs -m MODEL");
    llm_log_quiet();
    char err[256];
    struct llm *L = llm_open(model, 512, threads, err, sizeof err);
    if (!L) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    static const int sizes[] = {16, 32, 48, 63, 64, 80};
    double d = 0.0, pf;
    printf("{");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        llm_speed(L, k ? 50 : 300, sizes[k], k ? &pf : &d, &pf);
        printf("%s\"ms_prefill_%d\": %.4f", k ? ", " : "", sizes[k], pf);
    }
    printf(", \"ms_per_decode\": %.4f}\n", d);
    llm_close(L);
    return 0;
}

/* A trained model padded with inert feed-forward units (tm_model_pad_ff): what the pair costs when
 * its weights outgrow the CPU caches, as those of real models do. */
static int cmd_pad(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    long n_ff = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) in = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--ff") == 0 && i + 1 < argc) {
            char *end;
            n_ff = strtol(argv[++i], &end, 10);
            if (*end || n_ff < 1 || n_ff > (1L << 20)) return usage_err("bad --ff '%s'", argv[i]);
        } else return usage_err("unknown option '%s'", argv[i]);
    }
    if (!in || !out || !n_ff) return usage_err("%s", "pad needs -m MODEL -o FILE --ff N");
    struct tm_model a, b;
    char err[256];
    if (tm_model_load(&a, in, err, sizeof err) != 0) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    if (n_ff < a.hp.n_ff) {
        fprintf(stderr, "sr-train: --ff %ld is below the model's %d units\n", n_ff, a.hp.n_ff);
        tm_model_free(&a);
        return 2;
    }
    int rc = tm_model_pad_ff(&a, (int32_t)n_ff, 77, &b);
    if (rc != 0) fprintf(stderr, "sr-train: out of memory\n");
    if (rc == 0) {
        rc = tm_model_save(&b, out, "specreason-pair-padded", err, sizeof err);
        if (rc != 0) fprintf(stderr, "sr-train: %s\n", err);
        tm_model_free(&b);
    }
    tm_model_free(&a);
    return rc ? 1 : 0;
}

/* Teacher-forced per-character accuracy of a model over each step's text (3-term problems):
 * which parts of a step (copied operands, result digits) the model has learned. */
static int cmd_diag(int argc, char **argv) {
    struct settings s = settings_default();
    const char *model = NULL;
    for (int i = 2; i < argc; i++) {
        int c = parse_common(argc, argv, &i, &s);
        if (c == 2) return 2;
        if (c == 1) continue;
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
        else return usage_err("unknown option '%s'", argv[i]);
    }
    if (!model) return usage_err("%s", "diag needs -m MODEL");
    llm_log_quiet();
    char err[256];
    struct llm *L = llm_open(model, 512, s.threads, err, sizeof err);
    if (!L) { fprintf(stderr, "sr-train: %s\n", err); return 1; }
    int ok[TK_MAX_TERMS][64] = {{0}}, tot[TK_MAX_TERMS][64] = {{0}};
    for (int32_t i = 0; i < s.n_eval; i++) {
        struct tk_problem p;
        dt_heldout_problem(&s.task, s.seed, i, &p);
        char text[TK_TEXT_MAX], buf[TK_TEXT_MAX * 2];
        tk_problem_text(&p, text, sizeof text);
        tk_render_prefix(text, buf, sizeof buf);
        llm_clear(L);
        llm_feed(L, buf);
        for (int32_t k = 0; k < tk_n_steps(&p); k++) {
            tk_step_text(&p, k, text, sizeof text);
            strcat(text, TK_DELIM_TEXT);
            int32_t toks[64];
            int n = tk_tokenize(text, strlen(text), toks, 64);
            for (int j = 0; j < n && j < 64; j++) {
                int32_t pred = llm_argmax(L);
                ok[k][j] += pred == toks[j];
                tot[k][j]++;
                char one[16];
                snprintf(one, sizeof one, "%s", tk_token_text(toks[j]));
                llm_feed(L, one);
            }
        }
    }
    for (int k = 0; k < TK_MAX_TERMS; k++) {
        if (!tot[k][0]) continue;
        printf("step %d:", k);
        for (int j = 0; j < 64 && tot[k][j]; j++) printf(" %3.0f", 100.0 * ok[k][j] / tot[k][j]);
        printf("\n");
    }
    llm_close(L);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: sr-train pair [--dir D] [--seed N] [--force] [settings]\n"
            "       sr-train train --role small|base -o FILE [--mistakes-from SMALL.gguf] [--init MODEL] [settings]\n"
            "       sr-train eval [--small S.gguf] [--base B.gguf] [--n-eval N] [settings]\n"
            "       sr-train problems [--n N] [--seed N] [settings]\n"
            "       sr-train speed -m MODEL.gguf [--threads N]\n"
            "       sr-train pad -m MODEL.gguf -o FILE --ff N\n\n"
            "Trains the small/base reasoning pair for specreason (character-level llama-arch GGUFs) on the CPU.\n"
            "pair trains both models at once (the small one in a child process), caches and measures them;\n"
            "pad writes a copy with N feed-forward units per layer, the added ones inert (same outputs, more\n"
            "weight traffic: the pair at the memory-bound cost of real models).\n\n"
            "settings: --seed N --threads N --terms-min N --terms-max N --digits N --n-heldout N --n-mistakes N\n"
            "  --n-eval N --{small,base}-{layers,embd,heads,ff,lr,steps,batch} X --judge-frac F --judge-good F\n"
            "  --judge-real F --judge-near F --judge-weight N --judge-prompt S --judge-prefill S --mark-weight N\n"
            "  --mark-frac F --mark-layer N --mid-weight F --suffix-weight N --judge-steps N --judge-lr X\n"
            "  --judge-frac2 F --judge-weight2 N (base phase 2: judge-heavy training after generation and marks)\n"
            "  --judge-dp 0|1 (pair: phase 2 data-parallel over both processes, half of each batch each)\n"
            "  --time-limit S (abort with an error, writing nothing, past S seconds; 0 = none)\n\n"
            "Every budget is in optimizer steps: the same settings, seed and --threads give byte-identical\n"
            "models under any load, on any machine with the same CPU type and build (meta.json records\n"
            "their sha256).\n");
}

int main(int argc, char **argv) {
    /* ggml's CPU backend runs on OpenMP; with libgomp's default spin-waiting, two threads on a
     * machine whose cores are busy with other work stall at every graph node's barrier (5-25x
     * slower, measured). Passive waiting must be set before libgomp initialises: re-exec once. */
    /* OMP_DYNAMIC=false: libgomp must not hand out fewer threads than asked for when the machine
     * is loaded (it would change how ggml splits the work, and so the trained bits). */
    const char *dyn = getenv("OMP_DYNAMIC");
    if (!getenv("OMP_WAIT_POLICY") || !dyn || strcmp(dyn, "false") != 0) {
        if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "passive", 1);
        setenv("OMP_DYNAMIC", "false", 1);
        execv("/proc/self/exe", argv);
    }
    g_t_start = tt_now();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "pair") == 0) return cmd_pair(argc, argv);
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(argv[1], "problems") == 0) return cmd_problems(argc, argv);
    if (strcmp(argv[1], "speed") == 0) return cmd_speed(argc, argv);
    if (strcmp(argv[1], "diag") == 0) return cmd_diag(argc, argv);
    if (strcmp(argv[1], "pad") == 0) return cmd_pad(argc, argv);
    return usage_err("unknown command '%s'", argv[1]);
}
