/*
 * cli/eval/eval.h: `specreason-eval`, the evaluation harness, in files with one job each:
 *   main.c    options, configurations (modes x thresholds), problem selection, the settings hash;
 *   store.c   OUT/results.jsonl: the records, their keys, resuming, one record as a JSON line;
 *   runner.c  backends (how one problem is run), prompts, grading, progress, the run over all records;
 *   report.c  statistics and the summary: table, summary.json, summary.csv;
 *   chart.c   chart.svg, accuracy against latency.
 *
 * Runs a problem set through several modes (base, small, spec over a threshold sweep, with or
 * without token-level drafting), k samples per problem, grades every output, and reports accuracy
 * and latency side by side (the shape of the paper's Figure 3).
 *
 * Every (problem, mode, threshold, sample, seed, settings hash) is one record, appended to
 * OUT/results.jsonl and flushed as soon as it is graded; a rerun reads the file and skips the
 * records it holds, so an interrupted evaluation resumes where it stopped (an unterminated last
 * line, left by a crash mid-write, is cut off and redone). The models are loaded once, into one
 * engine and one session, and only when something is left to run.
 *
 * Runs go through `struct backend` (run one user message with a parameter set, get an sr_result):
 * the in-process engine (runner.c), or a running specreason-server (client.c, --server URL,
 * --concurrency N records at once).
 * Exit codes: 0 success, 1 model, data, run or I/O error, 2 usage error, 130 interrupted.
 */
#ifndef SR_CLI_EVAL_H
#define SR_CLI_EVAL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "opts.h"
#include "specreason.h"
#include "util.h"

#define PROG "specreason-eval"

/* The command line (main.c). */
struct cli {
    struct common_opts o; /* models, steps, sampling, drafting, hardware (cli/opts.c) */
    const char *data, *kind, *modes, *thresholds, *ids, *out, *server, *html;
    const char *template_name, *prompt_template, *progress;
    int64_t k, limit, concurrency;
    uint64_t seed;
    bool report, save_steps, json, quiet, verbose, help, version;
    bool set_thresholds;
};
extern struct cli C;

#define bad(...) opt_bad(PROG, __VA_ARGS__)
/* Prints "specreason-eval: message" to stderr; returns 1. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- modes and configurations (main.c) ---- */
struct mode_def {
    const char *name;
    enum sr_mode mode;
    int policy;        /* enum sr_policy, or -1 = --policy */
    bool decode;       /* params.spec_decode */
    const char *color; /* chart colour */
    int pipeline;      /* enum sr_pipeline, or -1 = --pipeline */
};
extern const struct mode_def MODES[];
extern const size_t N_MODES;
bool uses_small(const struct mode_def *m);
bool uses_base(const struct mode_def *m);

/* One column of the evaluation: a mode and, for the spec modes, a threshold. */
struct config {
    const struct mode_def *m;
    bool has_thr;
    double thr;
    char thr_str[32]; /* "%.9g" of thr, or "-" */
    char settings[17]; /* hash of every setting that can change this configuration's records */
};
void config_label(const struct config *c, char *buf, size_t size);

/* ---- records (store.c) ---- */
struct rec {
    char *key;
    bool correct;
    double latency_ms, tokens;
    double judged, steps_small, sd_drafted, sd_accepted;
};

struct store {
    struct rec *v;
    size_t n, cap;
    size_t *slots; /* open addressing: index + 1, 0 = empty */
    size_t nslots; /* power of two */
};

uint64_t fnv1a64(const char *s, size_t n, uint64_t h);
char *path_join(const char *dir, const char *name);
/* mkdir -p; 0 or an errno value. */
int make_dirs(const char *path);
void store_free(struct store *s);
struct rec *store_find(const struct store *s, const char *key);
/* Adds r (takes ownership of r->key, also on failure); a record with the same key is replaced,
 * so the latest line of the file wins. False on allocation failure. */
bool store_put(struct store *s, struct rec *r);
/* The key of a record. settings NULL (--report) leaves the settings out. */
char *make_key(const char *id, const char *mode, const char *thr, int64_t sample, uint64_t seed,
               const char *settings);

/* One problem and sample, ready to run (runner.c). */
struct item {
    const struct sr_problem *p;
    int64_t sample;
    uint64_t seed;
    const char *truth;  /* math answer, or the correct letter for this sample */
    char letter[2];
    int perm[4];        /* GPQA: source answer at each letter (0 = correct) */
    char *user_msg;     /* filled template */
};

struct grade {
    char *extracted; /* the answer found in the output (malloc'd), or NULL */
    bool correct;
};

/* One results.jsonl line (with its newline). */
char *record_json(const struct item *it, const struct config *c, bool gpqa, const struct sr_result *res,
                  const struct grade *g, double latency_ms, const struct sr_run_params *rp, const char *backend);

/* ---- backends (runner.c) ---- */
/* A way to run one problem: the in-process engine (runner.c) or a specreason-server (client.c),
 * which builds the sr_result from the server's JSON reply. */
struct backend {
    const char *name;
    void *state;
    /* Runs the complete user message (templates already filled; p->prompt_template is
     * "{problem}"). On SR_OK *out is a result to release with free_result (also when cancelled
     * through p->on_event: see (*out)->stop); otherwise err says why. */
    enum sr_status (*run_one)(void *state, const char *user_msg, const struct sr_run_params *p,
                              struct sr_result **out, char *err, size_t errlen);
    void (*free_result)(void *state, struct sr_result *r);
    void (*close)(void *state);
};

/* client.c: the backend of --server URL (a running specreason-server); checks GET /health and
 * takes the model id from GET /v1/models. run_one may be called from several threads at once. */
enum sr_status client_open(const char *url, struct backend *be, char *err, size_t errlen);

/* ---- progress (runner.c) ---- */
enum prog_style { PROG_NONE, PROG_BAR, PROG_LINES };

struct progress {
    enum prog_style style;
    size_t total, skipped, done, failed, to_run;
    int64_t t0_us, last_draw_us, last_done_us;
    char label[64];  /* the configuration being run */
    char what[160];  /* the problem and sample being run */
    int32_t step;
    bool drawn;
};
extern volatile sig_atomic_t g_stop;
void fmt_dur(double s, char *buf, size_t size);

/* ---- summary (report.c, chart.c) ---- */
struct group {
    const struct config *c;
    size_t planned, n, correct, errors;
    double acc, ci_lo, ci_hi, mean_ms, median_ms, mean_tokens, acceptance, sd_acceptance, speedup;
};

/* The whole evaluation. */
struct state {
    struct sr_dataset ds;
    const struct sr_problem **sel;
    size_t n_sel;
    struct config *cfg;
    size_t n_cfg;
    char *modes_store, *thr_store, *ids_store;
    char **mode_items, **thr_items, **id_items;
    size_t n_mode_items, n_thr_items, n_id_items;
    struct store store;
    FILE *results;
    char *results_path;
    struct backend be;
    bool have_backend;
    struct group *groups;
    double *lat;
};

/* store.c: opens OUT/results.jsonl (locked; --report only reads it) and loads its records. */
int open_results(struct state *S);
/* runner.c: loads the models into the in-process backend (or connects to --server) and installs
 * the Ctrl-C handler. */
int open_backend(struct state *S, const struct sr_engine_params *ep);
/* runner.c: runs every record not in the store, --concurrency at once; 0 or an exit code. */
int run_all(struct state *S, const struct sr_run_params *rp, bool gpqa, const char *tmpl, struct progress *P);
/* report.c: the groups' statistics from the store. */
void summarise(struct state *S);
/* report.c: writes summary.json, summary.csv and chart.svg and prints the table (or JSON). */
int write_reports(struct state *S, const struct progress *P);
/* chart.c */
char *chart_svg(const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems);

#endif
