/*
 * cli/eval.c: `specreason-eval`, the evaluation harness (issue 5). Runs a problem set through
 * several modes (base, small, spec over a threshold sweep, with or without token-level drafting),
 * k samples per problem, grades every output, and reports accuracy and latency side by side: a
 * table on stdout, OUT/summary.json, OUT/summary.csv and OUT/chart.svg (accuracy vs latency, the
 * shape of the paper's Figure 3).
 *
 * Every (problem, mode, threshold, sample, seed, settings hash) is one record, appended to
 * OUT/results.jsonl and flushed as soon as it is graded; a rerun reads the file and skips the
 * records it holds, so an interrupted evaluation resumes where it stopped (an unterminated last
 * line, left by a crash mid-write, is cut off and redone). The models are loaded once, into one
 * engine and one session, and only when something is left to run.
 *
 * Runs go through `struct backend` (run one user message with a parameter set, get an sr_result),
 * so a remote engine can be added beside the in-process one.
 * Exit codes: 0 success, 1 model, data, run or I/O error, 2 usage error, 130 interrupted.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "dataset.h"
#include "opts.h"
#include "json.h"
#include "specreason.h"
#include "specreason_grade.h"
#include "util.h"

#define PROG "specreason-eval"

/* ------------------------------------------------------------------------------------------ */
/* Options (one table drives parsing and --help, as in cli/main.c)                            */

struct cli {
    const char *small_path, *base_path, *data, *kind, *modes, *thresholds, *ids, *out, *server;
    const char *template_name, *prompt_template, *judge_prompt, *judge_prefill, *score, *answer_by,
        *progress;
    int64_t k, limit, first_n, max_step, budget, max_answer, draft_max, draft_min;
    int64_t ctx, small_ctx, base_ctx, threads, threads_batch, ngl, small_ngl, base_ngl;
    double temp, top_p, small_temp, small_top_p, base_temp, base_top_p, draft_p_min;
    uint64_t seed;
    bool greedy, no_strip, report, save_steps, json, quiet, verbose, help, version;
    bool set_temp, set_top_p, set_thresholds;
};

static struct cli C;

static const struct opt OPTS[] = {
    {"small", 0, OPT_STR, &C.small_path, 0, 0, "small (draft) model GGUF"},
    {"base", 0, OPT_STR, &C.base_path, 0, 0, "base (judge) model GGUF"},
    {"data", 'd', OPT_STR, &C.data, 0, 0, "problem set: math JSONL (data/math500.jsonl, data/aime2024.jsonl) or GPQA CSV/JSONL"},
    {"kind", 0, OPT_STR, &C.kind, 0, 0, "math | gpqa | auto: how to read --data (default auto)"},
    {"modes", 'm', OPT_STR, &C.modes, 0, 0,
     "comma list of base, small, spec, spec+decode, base+decode (default base,small,spec)"},
    {"thresholds", 't', OPT_STR, &C.thresholds, 0, 0, "comma list of spec thresholds in [0, 10] (default 7)"},
    {"k", 'k', OPT_INT, &C.k, 1, 1e6, "samples per problem, pass@1 averaged over them (default 1)"},
    {"seed", 's', OPT_U64, &C.seed, 0, 0, "sample i uses seed S+i, for sampling and GPQA choice order (default 0)"},
    {"ids", 0, OPT_STR, &C.ids, 0, 0, "comma list of problem ids to run, in this order (default all)"},
    {"limit", 'l', OPT_INT, &C.limit, 1, 1e9, "only the first N selected problems"},
    {"out", 'o', OPT_STR, &C.out, 0, 0, "output directory (default eval-out)"},
    {"report", 0, OPT_FLAG, &C.report, 0, 0,
     "run nothing: summarise OUT/results.jsonl (latest record per key, any settings)"},
    {"template", 0, OPT_STR, &C.template_name, 0, 0, "math | gpqa | raw: the user message (default: by dataset kind)"},
    {"prompt-template", 0, OPT_STR, &C.prompt_template, 0, 0,
     "custom user message; {problem} and (GPQA) {ans_a}..{ans_d} are replaced"},
    {"judge-prompt", 0, OPT_STR, &C.judge_prompt, 0, 0, "custom judge instruction (user turn)"},
    {"judge-prefill", 0, OPT_STR, &C.judge_prefill, 0, 0, "custom judge assistant prefill"},
    {"score", 0, OPT_STR, &C.score, 0, 0, "greedy | average: how the judge's score is read (default greedy)"},
    {"first-n-base", 0, OPT_INT, &C.first_n, 0, 1e9, "the first N steps are written by the base model (default 0)"},
    {"max-step-tokens", 0, OPT_INT, &C.max_step, 1, 65536, "a step ends after this many tokens (default 512)"},
    {"budget", 'n', OPT_INT, &C.budget, 1, 16777216, "token budget: adopted step tokens (default 8192)"},
    {"max-answer-tokens", 0, OPT_INT, &C.max_answer, 0, 16777216, "cap on the answer after </think> (default 1024)"},
    {"temp", 0, OPT_FLOAT, &C.temp, 0, 100, "temperature of both models (default 0.6; 0 = greedy)"},
    {"top-p", 0, OPT_FLOAT, &C.top_p, 1e-9, 1, "top-p of both models (default 0.95)"},
    {"small-temp", 0, OPT_FLOAT, &C.small_temp, 0, 100, "temperature of the small model"},
    {"small-top-p", 0, OPT_FLOAT, &C.small_top_p, 1e-9, 1, "top-p of the small model"},
    {"base-temp", 0, OPT_FLOAT, &C.base_temp, 0, 100, "temperature of the base model"},
    {"base-top-p", 0, OPT_FLOAT, &C.base_top_p, 1e-9, 1, "top-p of the base model"},
    {"greedy", 0, OPT_FLAG, &C.greedy, 0, 0, "greedy decoding for both models (same as --temp 0)"},
    {"answer-by", 0, OPT_STR, &C.answer_by, 0, 0, "base | loop: who writes the answer after </think> (default base)"},
    {"no-strip-think-end", 0, OPT_FLAG, &C.no_strip, 0, 0, "let a step without an answer marker end the thinking"},
    {"draft-max", 0, OPT_INT, &C.draft_max, 1, 64, "+decode modes: tokens drafted per verification (default 8)"},
    {"draft-min", 0, OPT_INT, &C.draft_min, 0, 64, "+decode modes: shorter drafts are not verified (default 0)"},
    {"draft-p-min", 0, OPT_FLOAT, &C.draft_p_min, 0, 1, "+decode modes: stop drafting below this probability (default 0.5)"},
    {"ctx", 'c', OPT_INT, &C.ctx, 0, 16777216, "context tokens per model (default: min(16384, training context))"},
    {"small-ctx", 0, OPT_INT, &C.small_ctx, 0, 16777216, "context tokens of the small model"},
    {"base-ctx", 0, OPT_INT, &C.base_ctx, 0, 16777216, "context tokens of the base model"},
    {"threads", 0, OPT_INT, &C.threads, 0, 512, "CPU threads (default: all cores)"},
    {"threads-batch", 0, OPT_INT, &C.threads_batch, 0, 512, "CPU threads for prefill and judging (default: --threads)"},
    {"ngl", 0, OPT_INT, &C.ngl, -1, 1e6, "layers on the GPU for both models (-1 = all, default 0)"},
    {"small-ngl", 0, OPT_INT, &C.small_ngl, -1, 1e6, "GPU layers of the small model"},
    {"base-ngl", 0, OPT_INT, &C.base_ngl, -1, 1e6, "GPU layers of the base model"},
    {"save-steps", 0, OPT_FLAG, &C.save_steps, 0, 0, "also store every step (the full result JSON) in each record"},
    {"server", 0, OPT_STR, &C.server, 0, 0, "URL of a running engine server (not available yet)"},
    {"progress", 0, OPT_STR, &C.progress, 0, 0,
     "auto | bar | lines | none: progress on stderr (default auto: bar on a terminal, else lines)"},
    {"quiet", 'q', OPT_FLAG, &C.quiet, 0, 0, "no progress output (same as --progress none)"},
    {"json", 0, OPT_FLAG, &C.json, 0, 0, "print summary.json to stdout instead of the table"},
    {"verbose", 'v', OPT_FLAG, &C.verbose, 0, 0, "log llama.cpp warnings and errors to stderr"},
    {"version", 0, OPT_FLAG, &C.version, 0, 0, "print the version"},
    {"help", 'h', OPT_FLAG, &C.help, 0, 0, "this help"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " --small S.gguf --base B.gguf --data FILE [options]\n\n"
            "Evaluates speculative reasoning on a problem set: each problem runs in every mode (and\n"
            "every threshold of the spec modes), k samples each; outputs are graded, appended to\n"
            "OUT/results.jsonl (a rerun skips what is done) and summarised as a table on stdout,\n"
            "OUT/summary.json, OUT/summary.csv and OUT/chart.svg (accuracy vs latency).\n"
            "Runs use the in-process engine; server mode (specreason-server, llama-server, vLLM) is\n"
            "not available yet.\n\noptions:\n");
    opt_usage(f, OPTS, N_OPTS, 26);
    fprintf(f, "\nmodes: base (base model alone), small (small model alone), spec (small drafts, base\n"
               "judges), spec+decode and base+decode (the same with token-level speculative decoding\n"
               "wherever the base model writes). Thresholds apply to the spec modes only.\n"
               "\nexit status: 0 ok, 1 model, data, run or I/O error, 2 usage error, 130 interrupted\n");
}

#define bad(...) opt_bad(PROG, __VA_ARGS__)

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static void on_set(const struct opt *o, void *user) {
    (void)user;
    if (o->dst == &C.temp) C.set_temp = true;
    if (o->dst == &C.top_p) C.set_top_p = true;
    if (o->dst == &C.thresholds) C.set_thresholds = true;
}

#define pick(val, what, names, n, out) opt_pick(PROG, val, what, names, n, out)

/* ------------------------------------------------------------------------------------------ */
/* Modes and configurations                                                                   */

struct mode_def {
    const char *name;
    enum sr_mode mode;
    bool decode;       /* params.spec_decode */
    const char *color; /* chart colour */
};

static const struct mode_def MODES[] = {
    {"base", SR_MODE_BASE, false, "#d62728"},        {"small", SR_MODE_SMALL, false, "#2ca02c"},
    {"spec", SR_MODE_SPEC, false, "#1f77b4"},        {"spec+decode", SR_MODE_SPEC, true, "#9467bd"},
    {"base+decode", SR_MODE_BASE, true, "#ff7f0e"},
};
#define N_MODES (sizeof MODES / sizeof MODES[0])

static bool uses_small(const struct mode_def *m) { return m->mode != SR_MODE_BASE || m->decode; }
static bool uses_base(const struct mode_def *m) { return m->mode != SR_MODE_SMALL; }

/* One column of the evaluation: a mode and, for the spec modes, a threshold. */
struct config {
    const struct mode_def *m;
    bool has_thr;
    double thr;
    char thr_str[32]; /* "%.9g" of thr, or "-" */
    char settings[17]; /* hash of every setting that can change this configuration's records */
};

static void config_label(const struct config *c, char *buf, size_t size) {
    if (c->has_thr) snprintf(buf, size, "%s t=%s", c->m->name, c->thr_str);
    else snprintf(buf, size, "%s", c->m->name);
}

/* Splits a comma list into *items (pointers into a copy *store the caller frees). */
static int split_list(const char *s, const char *what, char **store, char ***items, size_t *n) {
    *store = sr_strdup(s);
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    *items = calloc(cap, sizeof **items);
    *n = 0;
    if (!*store || !*items) return fail("out of memory");
    char *p = *store;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        while (*p == ' ') p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ') p[--len] = '\0';
        if (!*p) return bad("--%s: empty item in '%s'", what, s);
        for (size_t i = 0; i < *n; i++)
            if (strcmp((*items)[i], p) == 0) return bad("--%s: '%s' is listed twice", what, p);
        (*items)[(*n)++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */

static uint64_t fnv1a64(const char *s, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001B3ULL;
    }
    return h;
}

static char *path_join(const char *dir, const char *name) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s/%s", dir, name);
    return sr_buf_take(&b);
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char *p = sr_strdup(path);
    if (!p) return ENOMEM;
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) { rc = errno; break; }
            *q = c;
            if (!c) break;
        }
    }
    free(p);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0) rc = errno;
        else if (!S_ISDIR(st.st_mode)) rc = ENOTDIR;
    }
    return rc;
}

/* Writes data to DIR/name through a temporary file and a rename, so readers never see half a file. */
static int write_file(const char *dir, const char *name, const char *data, size_t len) {
    char *path = path_join(dir, name), *tmp = NULL;
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s/.%s.tmp", dir, name);
    tmp = sr_buf_take(&b);
    int rc = 0;
    if (!path || !tmp) { rc = fail("out of memory"); goto done; }
    FILE *f = fopen(tmp, "wb");
    if (!f) { rc = fail("cannot write %s: %s", tmp, strerror(errno)); goto done; }
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok) { rc = fail("cannot write %s: %s", tmp, strerror(errno)); remove(tmp); goto done; }
    if (rename(tmp, path) != 0) { rc = fail("cannot rename %s to %s: %s", tmp, path, strerror(errno)); remove(tmp); }
done:
    free(path);
    free(tmp);
    return rc;
}

static void fmt_dur(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, size, "--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, size, "%lds", t);
}

/* ------------------------------------------------------------------------------------------ */
/* Statistics                                                                                 */

/* Wilson score interval for k successes out of n at 95% (z = 1.959964): better than the normal
 * approximation at small n and near 0 or 1, which is where small evaluations live. */
static void wilson95(size_t k, size_t n, double *lo, double *hi) {
    if (n == 0) { *lo = *hi = NAN; return; }
    const double z = 1.959963984540054;
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double denom = 1.0 + z2 / nn;
    double center = (p + z2 / (2.0 * nn)) / denom;
    double half = z / denom * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
    *lo = center - half < 0.0 ? 0.0 : center - half;
    *hi = center + half > 1.0 ? 1.0 : center + half;
    if (k == 0) *lo = 0.0;
    if (k == n) *hi = 1.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v); NAN when n == 0. */
static double median(double *v, size_t n) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------------------------------------ */
/* Records: what results.jsonl holds, indexed by key                                          */

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

static void store_free(struct store *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i].key);
    free(s->v);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

static size_t store_slot(const struct store *s, const char *key) {
    size_t m = s->nslots - 1, i = (size_t)fnv1a64(key, strlen(key), 0xCBF29CE484222325ULL) & m;
    while (s->slots[i] && strcmp(s->v[s->slots[i] - 1].key, key) != 0) i = (i + 1) & m;
    return i;
}

static struct rec *store_find(const struct store *s, const char *key) {
    if (!s->nslots) return NULL;
    size_t i = store_slot(s, key);
    return s->slots[i] ? &s->v[s->slots[i] - 1] : NULL;
}

/* Adds r (takes ownership of r->key, also on failure); a record with the same key is replaced,
 * so the latest line of the file wins. False on allocation failure. */
static bool store_put(struct store *s, struct rec *r) {
    struct rec *old = store_find(s, r->key);
    if (old) {
        free(old->key);
        *old = *r;
        return true;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        struct rec *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) { free(r->key); return false; }
        s->v = nv;
        s->cap = nc;
    }
    if ((s->n + 1) * 2 > s->nslots) {
        size_t ns = s->nslots ? s->nslots * 2 : 1024;
        size_t *sl = calloc(ns, sizeof *sl);
        if (!sl) { free(r->key); return false; }
        free(s->slots);
        s->slots = sl;
        s->nslots = ns;
        for (size_t i = 0; i < s->n; i++) s->slots[store_slot(s, s->v[i].key)] = i + 1;
    }
    s->v[s->n] = *r;
    s->slots[store_slot(s, r->key)] = ++s->n;
    return true;
}

/* The key of a record. settings NULL (--report) leaves the settings out, so the latest record
 * per problem, mode, threshold, sample and seed counts whatever settings produced it. */
static char *make_key(const char *id, const char *mode, const char *thr, int64_t sample, uint64_t seed,
                      const char *settings) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "%s\x1f%s\x1f%s\x1f%lld\x1f%llu", id, mode, thr, (long long)sample, (unsigned long long)seed);
    if (settings) sr_buf_printf(&b, "\x1f%s", settings);
    return sr_buf_take(&b);
}

static double num_or(const struct sr_json *obj, const char *key, double dflt) {
    double v;
    return sr_json_num(sr_json_get(obj, key), &v) ? v : dflt;
}

/* Parses one results.jsonl line into *r. Returns NULL on success, else why the line is unusable. */
static const char *parse_record(const char *line, size_t len, bool with_settings, struct rec *r) {
    char jerr[128];
    struct sr_json *j = sr_json_parse(line, len, jerr, sizeof jerr);
    if (!j) return "not valid JSON";
    const char *why = NULL;
    const struct sr_json *id = sr_json_get(j, "id"), *mode = sr_json_get(j, "mode"),
                         *thr = sr_json_get(j, "threshold"), *seed = sr_json_get(j, "seed"),
                         *settings = sr_json_get(j, "settings"), *stats = sr_json_get(j, "stats");
    int64_t sample = 0;
    double thr_v = 0;
    bool correct = false;
    memset(r, 0, sizeof *r);
    if (j->type != SR_JSON_OBJECT) why = "not a JSON object";
    else if (!sr_json_str(id) || !sr_json_str(mode) || !sr_json_str(settings)) why = "id, mode or settings missing";
    else if (!thr || (!sr_json_is_null(thr) && !sr_json_num(thr, &thr_v))) why = "threshold missing";
    else if (!sr_json_int(sr_json_get(j, "sample"), &sample) || sample < 0) why = "sample missing";
    else if (!seed || seed->type != SR_JSON_NUMBER || seed->str[0] == '-') why = "seed missing";
    else if (!sr_json_bool(sr_json_get(j, "correct"), &correct)) why = "correct missing";
    else if (!sr_json_num(sr_json_get(j, "latency_ms"), &r->latency_ms)) why = "latency_ms missing";
    else if (!sr_json_num(sr_json_get(j, "tokens"), &r->tokens)) why = "tokens missing";
    if (!why) {
        char thr_s[32];
        if (sr_json_is_null(thr)) snprintf(thr_s, sizeof thr_s, "-");
        else snprintf(thr_s, sizeof thr_s, "%.9g", thr_v);
        r->correct = correct;
        r->judged = num_or(stats, "judged", 0);
        r->steps_small = num_or(stats, "steps_small", 0);
        r->sd_drafted = num_or(stats, "sd_drafted", 0);
        r->sd_accepted = num_or(stats, "sd_accepted", 0);
        r->key = make_key(id->str, mode->str, thr_s, sample, strtoull(seed->str, NULL, 10),
                          with_settings ? settings->str : NULL);
        if (!r->key) why = "out of memory";
    }
    sr_json_free(j);
    return why;
}

/* Reads every complete line of f into the store. An unterminated last line (a crash while it was
 * written) is dropped; *partial_at = its offset, or -1. Malformed complete lines are skipped with
 * a warning. Returns 0 or an exit code. */
static int load_records(FILE *f, const char *path, bool with_settings, struct store *s, size_t *n_lines,
                        long long *partial_at) {
    char *line = NULL;
    size_t cap = 0, lineno = 0, n_bad = 0;
    long long off = 0;
    ssize_t len;
    *partial_at = -1;
    *n_lines = 0;
    errno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') { *partial_at = off; break; }
        off += len;
        size_t n = (size_t)len - 1;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ')) n--;
        if (n == 0) continue;
        struct rec r;
        const char *why = parse_record(line, n, with_settings, &r);
        if (why) {
            if (n_bad++ < 5) fprintf(stderr, PROG ": warning: %s line %zu ignored: %s\n", path, lineno, why);
            continue;
        }
        if (!store_put(s, &r)) { free(line); return fail("out of memory"); }
        (*n_lines)++;
    }
    bool err = ferror(f);
    free(line);
    if (err) return fail("cannot read %s: %s", path, strerror(errno));
    if (n_bad > 5) fprintf(stderr, PROG ": warning: %zu malformed lines in %s ignored\n", n_bad, path);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Backends: how one problem is run                                                           */

/* A way to run one problem. The in-process engine is the only implementation; a client of a
 * remote engine (specreason-server, llama-server, vLLM) would fill the same table, building the
 * sr_result from the server's JSON reply. */
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

/* The user message: one pass over tmpl replacing {problem} and, when choices is set,
 * {ans_a}..{ans_d}. Substituted text is never rescanned, so a problem or a choice that contains
 * "{problem}" stays as it is. */
static char *fill_template(const char *tmpl, const char *problem, const char *const *choices) {
    static const char *const keys[5] = {"{problem}", "{ans_a}", "{ans_b}", "{ans_c}", "{ans_d}"};
    struct sr_buf b = {0};
    const char *p = tmpl;
    while (*p) {
        int hit = -1;
        if (*p == '{')
            for (int k = 0; k < (choices ? 5 : 1); k++)
                if (strncmp(p, keys[k], strlen(keys[k])) == 0) { hit = k; break; }
        if (hit < 0) {
            const char *next = strchr(p + 1, '{');
            size_t n = next ? (size_t)(next - p) : strlen(p);
            sr_buf_append(&b, p, n);
            p += n;
            continue;
        }
        sr_buf_puts(&b, hit == 0 ? problem : choices[hit - 1]);
        p += strlen(keys[hit]);
    }
    if (!b.data && !b.oom) sr_buf_puts(&b, "");
    return sr_buf_take(&b);
}

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

struct grade {
    char *extracted; /* the answer found in the output (malloc'd), or NULL */
    bool correct;
};

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

/* ------------------------------------------------------------------------------------------ */
/* One record as a JSON line                                                                  */

static void key_(struct sr_buf *b, const char *k) {
    sr_buf_puts(b, ",");
    sr_buf_json_str(b, k, strlen(k));
    sr_buf_puts(b, ":");
}
static void kv_str(struct sr_buf *b, const char *k, const char *v) {
    key_(b, k);
    if (v) sr_buf_json_str(b, v, strlen(v));
    else sr_buf_puts(b, "null");
}
static void kv_num(struct sr_buf *b, const char *k, double v) {
    key_(b, k);
    sr_buf_json_num(b, v);
}
static void kv_raw(struct sr_buf *b, const char *k, const char *raw) {
    key_(b, k);
    sr_buf_puts(b, raw);
}

/* Every field of struct sr_stats, named as in sr_result_to_json, plus the spec-decode counters. */
static void stats_json(struct sr_buf *b, const struct sr_stats *S) {
    sr_buf_printf(b, "{\"steps\":%d", S->n_steps);
    kv_num(b, "steps_small", S->n_steps_small);
    kv_num(b, "steps_base_reject", S->n_steps_base_reject);
    kv_num(b, "steps_base_forced", S->n_steps_base_forced);
    kv_num(b, "judged", S->n_judged);
    kv_num(b, "acceptance", S->acceptance);
    key_(b, "score_hist");
    for (int i = 0; i < 10; i++) sr_buf_printf(b, "%c%d", i ? ',' : '[', S->score_hist[i]);
    sr_buf_puts(b, "]");
    kv_num(b, "prompt_tokens_small", (double)S->n_prompt_tokens_small);
    kv_num(b, "prompt_tokens_base", (double)S->n_prompt_tokens_base);
    kv_num(b, "adopted_tokens", (double)S->n_adopted_tokens);
    kv_num(b, "adopted_small", (double)S->n_adopted_small);
    kv_num(b, "adopted_base", (double)S->n_adopted_base);
    kv_num(b, "rejected_tokens", (double)S->n_rejected_tokens);
    kv_num(b, "judge_tokens", (double)S->n_judge_tokens);
    kv_num(b, "sync_tokens", (double)S->n_sync_tokens);
    kv_num(b, "answer_tokens", (double)S->n_answer_tokens);
    kv_num(b, "decode_calls_small", (double)S->n_decode_small);
    kv_num(b, "decode_calls_base", (double)S->n_decode_base);
    kv_num(b, "t_small_ms", S->t_small_ms);
    kv_num(b, "t_judge_ms", S->t_judge_ms);
    kv_num(b, "t_base_ms", S->t_base_ms);
    kv_num(b, "t_sync_ms", S->t_sync_ms);
    kv_num(b, "t_prompt_ms", S->t_prompt_ms);
    kv_num(b, "t_other_ms", S->t_other_ms);
    kv_num(b, "t_total_ms", S->t_total_ms);
    kv_num(b, "t_backend_ms", S->t_backend_ms);
    kv_num(b, "tokens_per_s", S->tokens_per_s);
    kv_num(b, "sd_drafted", (double)S->n_sd_drafted);
    kv_num(b, "sd_accepted", (double)S->n_sd_accepted);
    kv_num(b, "sd_batches", (double)S->n_sd_batches);
    kv_num(b, "sd_mean_accepted", S->sd_mean_accepted);
    kv_num(b, "t_sd_draft_ms", S->t_sd_draft_ms);
    kv_num(b, "t_sd_verify_ms", S->t_sd_verify_ms);
    sr_buf_puts(b, "}");
}

struct item {
    const struct sr_problem *p;
    int64_t sample;
    uint64_t seed;
    const char *truth;  /* math answer, or the correct letter for this sample */
    char letter[2];
    int perm[4];        /* GPQA: source answer at each letter (0 = correct) */
    char *user_msg;     /* filled template */
};

static char *record_json(const struct item *it, const struct config *c, bool gpqa, const struct sr_result *res,
                         const struct grade *g, double latency_ms, const struct sr_run_params *rp,
                         const char *backend) {
    struct sr_buf b = {0};
    sr_buf_puts(&b, "{\"id\":");
    sr_buf_json_str(&b, it->p->id, strlen(it->p->id));
    kv_str(&b, "mode", c->m->name);
    kv_raw(&b, "threshold", c->has_thr ? c->thr_str : "null");
    sr_buf_printf(&b, ",\"sample\":%lld,\"seed\":%llu", (long long)it->sample, (unsigned long long)it->seed);
    kv_str(&b, "settings", c->settings);
    kv_str(&b, "kind", gpqa ? "gpqa" : "math");
    kv_str(&b, "truth", it->truth);
    if (gpqa)
        sr_buf_printf(&b, ",\"choice_order\":[%d,%d,%d,%d]", it->perm[0], it->perm[1], it->perm[2], it->perm[3]);
    kv_str(&b, "answer", res->answer);
    kv_str(&b, "extracted", g->extracted);
    kv_raw(&b, "correct", g->correct ? "true" : "false");
    kv_num(&b, "latency_ms", latency_ms);
    kv_num(&b, "tokens", (double)(res->stats.n_adopted_tokens + res->stats.n_answer_tokens));
    kv_str(&b, "stop", sr_stop_str(res->stop));
    kv_str(&b, "backend", backend);
    key_(&b, "stats");
    stats_json(&b, &res->stats);
    kv_str(&b, "text", res->text);
    if (C.save_steps) {
        char *full = sr_result_to_json(res, rp);
        if (!full) b.oom = true;
        else kv_raw(&b, "result", full);
        sr_free(full);
    }
    sr_buf_puts(&b, "}\n");
    return sr_buf_take(&b);
}

/* ------------------------------------------------------------------------------------------ */
/* Progress on stderr                                                                         */

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

static volatile sig_atomic_t g_stop;

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

/* ------------------------------------------------------------------------------------------ */
/* Summary: table, JSON, CSV, SVG                                                             */

struct group {
    const struct config *c;
    size_t planned, n, correct, errors;
    double acc, ci_lo, ci_hi, mean_ms, median_ms, mean_tokens, acceptance, sd_acceptance, speedup;
};

static void json_num_or_null(struct sr_buf *b, double v) {
    if (isfinite(v)) sr_buf_printf(b, "%.6g", v);
    else sr_buf_puts(b, "null");
}

static char *summary_json(const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems,
                          const struct progress *P) {
    struct sr_buf b = {0};
    sr_buf_printf(&b, "{\"tool\":\"" PROG "\",\"version\":\"%s\"", sr_version());
    kv_str(&b, "data", C.data);
    kv_str(&b, "kind", ds->kind == SR_DATASET_GPQA ? "gpqa" : "math");
    sr_buf_printf(&b, ",\"problems\":%zu,\"k\":%lld,\"seed\":%llu", n_problems, (long long)C.k,
                  (unsigned long long)C.seed);
    kv_str(&b, "out", C.out);
    kv_raw(&b, "report", C.report ? "true" : "false");
    sr_buf_printf(&b, ",\"records\":{\"planned\":%zu,\"skipped\":%zu,\"ran\":%zu,\"failed\":%zu}", P->total,
                  P->skipped, P->done, P->failed);
    sr_buf_puts(&b, ",\"groups\":[");
    for (size_t i = 0; i < ng; i++) {
        const struct group *g = &G[i];
        sr_buf_puts(&b, i ? ",{\"mode\":" : "{\"mode\":");
        sr_buf_json_str(&b, g->c->m->name, strlen(g->c->m->name));
        kv_raw(&b, "threshold", g->c->has_thr ? g->c->thr_str : "null");
        kv_str(&b, "settings", C.report ? NULL : g->c->settings);
        sr_buf_printf(&b, ",\"planned\":%zu,\"n\":%zu,\"correct\":%zu,\"errors\":%zu", g->planned, g->n, g->correct,
                      g->errors);
        const char *names[] = {"accuracy", "ci_low", "ci_high", "mean_latency_ms", "median_latency_ms",
                               "mean_tokens", "acceptance", "sd_acceptance", "speedup"};
        const double vals[] = {g->acc, g->ci_lo, g->ci_hi, g->mean_ms, g->median_ms,
                               g->mean_tokens, g->acceptance, g->sd_acceptance, g->speedup};
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            key_(&b, names[k]);
            json_num_or_null(&b, vals[k]);
        }
        sr_buf_puts(&b, "}");
    }
    sr_buf_puts(&b, "]}\n");
    return sr_buf_take(&b);
}

static void csv_num(struct sr_buf *b, double v) {
    sr_buf_puts(b, ",");
    if (isfinite(v)) sr_buf_printf(b, "%.6g", v);
}

static char *summary_csv(const struct group *G, size_t ng) {
    struct sr_buf b = {0};
    sr_buf_puts(&b, "mode,threshold,planned,n,correct,errors,accuracy,ci_low,ci_high,mean_latency_ms,"
                    "median_latency_ms,mean_tokens,acceptance,sd_acceptance,speedup\n");
    for (size_t i = 0; i < ng; i++) {
        const struct group *g = &G[i];
        sr_buf_printf(&b, "%s,%s,%zu,%zu,%zu,%zu", g->c->m->name, g->c->has_thr ? g->c->thr_str : "", g->planned, g->n,
                      g->correct, g->errors);
        csv_num(&b, g->acc);
        csv_num(&b, g->ci_lo);
        csv_num(&b, g->ci_hi);
        csv_num(&b, g->mean_ms);
        csv_num(&b, g->median_ms);
        csv_num(&b, g->mean_tokens);
        csv_num(&b, g->acceptance);
        csv_num(&b, g->sd_acceptance);
        csv_num(&b, g->speedup);
        sr_buf_puts(&b, "\n");
    }
    return sr_buf_take(&b);
}

static void print_table(FILE *o, const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems) {
    fprintf(o, "%s (%s): %zu problems x k=%lld\n", C.data, ds->kind == SR_DATASET_GPQA ? "gpqa" : "math", n_problems,
            (long long)C.k);
    fprintf(o, "%-12s %5s %5s %8s %15s %8s %8s %8s %7s %8s\n", "mode", "thr", "n", "accuracy", "95% CI", "mean s",
            "median s", "tokens", "accept", "speedup");
    size_t missing = 0;
    for (size_t i = 0; i < ng; i++) {
        const struct group *g = &G[i];
        char acc[16] = "-", ci[32] = "-", mean[16] = "-", med[16] = "-", tok[16] = "-", accept[16] = "-", sp[16] = "-";
        if (g->n) {
            snprintf(acc, sizeof acc, "%.1f%%", 100.0 * g->acc);
            snprintf(ci, sizeof ci, "[%.1f, %.1f]", 100.0 * g->ci_lo, 100.0 * g->ci_hi);
            snprintf(mean, sizeof mean, "%.2f", g->mean_ms / 1000.0);
            snprintf(med, sizeof med, "%.2f", g->median_ms / 1000.0);
            snprintf(tok, sizeof tok, "%.0f", g->mean_tokens);
        }
        if (isfinite(g->acceptance)) snprintf(accept, sizeof accept, "%.1f%%", 100.0 * g->acceptance);
        if (isfinite(g->speedup)) snprintf(sp, sizeof sp, "%.2fx", g->speedup);
        fprintf(o, "%-12s %5s %5zu %8s %15s %8s %8s %8s %7s %8s\n", g->c->m->name, g->c->thr_str, g->n, acc, ci, mean,
                med, tok, accept, sp);
        missing += g->planned - g->n;
    }
    if (missing) fprintf(o, "(%zu planned records missing: failed or not run yet)\n", missing);
}

static void svg_text(struct sr_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': sr_buf_puts(b, "&amp;"); break;
        case '<': sr_buf_puts(b, "&lt;"); break;
        case '>': sr_buf_puts(b, "&gt;"); break;
        case '"': sr_buf_puts(b, "&quot;"); break;
        case '\'': sr_buf_puts(b, "&apos;"); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') sr_buf_append(b, s, 1);
        }
    }
}

/* A round tick step (1, 2 or 5 times a power of ten) near span / 5. */
static double nice_step(double span) {
    if (!(span > 0)) return 1.0;
    double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * p;
}

/* Accuracy (%, with the 95% interval as whiskers) against mean latency (s): one labelled point per
 * mode and threshold, a line through each spec mode's threshold sweep, axes with ticks, a legend. */
static char *chart_svg(const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems) {
    const double W = 820, H = 520, L = 72, R = 190, T = 56, B = 62, pw = W - L - R, ph = H - T - B;
    double xmax = 0, ylo = 100, yhi = 0;
    size_t shown = 0;
    for (size_t i = 0; i < ng; i++) {
        if (!G[i].n) continue;
        shown++;
        if (G[i].mean_ms / 1000.0 > xmax) xmax = G[i].mean_ms / 1000.0;
        if (100.0 * G[i].ci_lo < ylo) ylo = 100.0 * G[i].ci_lo;
        if (100.0 * G[i].ci_hi > yhi) yhi = 100.0 * G[i].ci_hi;
    }
    if (!shown) { ylo = 0; yhi = 100; xmax = 1; }
    if (!(xmax > 0)) xmax = 1;
    double xstep = nice_step(xmax), xhi = ceil(xmax * 1.06 / xstep) * xstep;
    double ystep = nice_step(yhi - ylo < 10 ? 10 : yhi - ylo);
    ylo = floor(ylo / ystep) * ystep;
    yhi = ceil(yhi / ystep) * ystep;
    if (yhi <= ylo) yhi = ylo + ystep;
    if (ylo < 0) ylo = 0;
    if (yhi > 100) yhi = 100;
#define PX(v) (L + (v) / xhi * pw)
#define PY(v) (T + ph - ((v) - ylo) / (yhi - ylo) * ph)
    struct sr_buf b = {0};
    sr_buf_printf(&b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
                  W, H, W, H);
    sr_buf_puts(&b, "<title>");
    svg_text(&b, C.data);
    sr_buf_puts(&b, ": accuracy vs latency</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    sr_buf_printf(&b, "<text x=\"%.1f\" y=\"24\" font-size=\"15\" font-weight=\"bold\">Accuracy vs latency: ", L);
    const char *base = strrchr(C.data, '/');
    svg_text(&b, base ? base + 1 : C.data);
    sr_buf_printf(&b, "</text>\n<text x=\"%.1f\" y=\"42\" fill=\"#555\">%s, %zu problems, k = %lld per problem; whiskers: 95%% "
                      "Wilson interval</text>\n",
                  L, ds->kind == SR_DATASET_GPQA ? "multiple choice" : "math", n_problems, (long long)C.k);
    /* grid, ticks and tick labels */
    sr_buf_puts(&b, "<g class=\"axes\" stroke=\"#ddd\">\n");
    int nx = (int)floor(xhi / xstep + 0.5), ny = (int)floor((yhi - ylo) / ystep + 0.5);
    for (int i = 0; i <= nx; i++)
        sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(i * xstep), T, PX(i * xstep),
                      T + ph);
    for (int i = 0; i <= ny; i++)
        sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L, PY(ylo + i * ystep), L + pw,
                      PY(ylo + i * ystep));
    sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n", L, T + ph, L + pw, T + ph);
    sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n", L, T, L, T + ph);
    sr_buf_puts(&b, "</g>\n<g class=\"ticks\" fill=\"#000\">\n");
    for (int i = 0; i <= nx; i++) {
        double v = i * xstep;
        sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.6g</text>\n",
                      PX(v), T + ph, PX(v), T + ph + 5, PX(v), T + ph + 19, v);
    }
    for (int i = 0; i <= ny; i++) {
        double v = ylo + i * ystep;
        sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.6g</text>\n",
                      L - 5, PY(v), L, PY(v), L - 8, PY(v) + 4, v);
    }
    sr_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">mean latency per problem (s)</text>\n",
                  L + pw / 2, H - 16);
    sr_buf_printf(&b, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\">accuracy, pass@1 (%%)"
                      "</text>\n</g>\n",
                  L - 48, T + ph / 2);
    /* threshold sweeps: one line per spec mode through its thresholds in increasing order */
    for (size_t m = 0; m < N_MODES; m++) {
        size_t idx[64], n = 0;
        for (size_t i = 0; i < ng && n < 64; i++)
            if (G[i].c->m == &MODES[m] && G[i].c->has_thr && G[i].n) idx[n++] = i;
        if (n < 2) continue;
        for (size_t i = 1; i < n; i++) /* insertion sort by threshold */
            for (size_t j = i; j > 0 && G[idx[j - 1]].c->thr > G[idx[j]].c->thr; j--) {
                size_t t = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = t;
            }
        sr_buf_printf(&b, "<polyline class=\"sweep\" data-mode=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                          "points=\"",
                      MODES[m].name, MODES[m].color);
        for (size_t i = 0; i < n; i++)
            sr_buf_printf(&b, "%s%.1f,%.1f", i ? " " : "", PX(G[idx[i]].mean_ms / 1000.0), PY(100.0 * G[idx[i]].acc));
        sr_buf_puts(&b, "\"/>\n");
    }
    /* points */
    for (size_t i = 0; i < ng; i++) {
        const struct group *g = &G[i];
        if (!g->n) continue;
        double x = PX(g->mean_ms / 1000.0), y = PY(100.0 * g->acc);
        char label[64];
        config_label(g->c, label, sizeof label);
        double lo = PY(100.0 * g->ci_lo), hi = PY(100.0 * g->ci_hi);
        sr_buf_printf(&b, "<g class=\"group\">\n<path class=\"ci\" d=\"M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fH%.1f\" "
                          "stroke=\"%s\" stroke-opacity=\"0.45\" fill=\"none\"/>\n",
                      x - 3, lo, x + 3, x, lo, hi, x - 3, hi, x + 3, g->c->m->color);
        sr_buf_printf(&b, "<circle class=\"point\" data-mode=\"%s\" data-threshold=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" "
                          "fill=\"%s\" stroke=\"#fff\"><title>",
                      g->c->m->name, g->c->has_thr ? g->c->thr_str : "", x, y, g->c->m->color);
        svg_text(&b, label);
        sr_buf_printf(&b, ": accuracy %.1f%% [%.1f, %.1f], mean latency %.2f s, n = %zu</title></circle>\n",
                      100.0 * g->acc, 100.0 * g->ci_lo, 100.0 * g->ci_hi, g->mean_ms / 1000.0, g->n);
        sr_buf_printf(&b, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">", x + 7, y - 6,
                      g->c->m->color);
        svg_text(&b, g->c->has_thr ? label + strlen(g->c->m->name) + 1 : label);
        sr_buf_puts(&b, "</text>\n</g>\n");
    }
    /* legend */
    double ly = T + 8;
    bool any_sweep = false;
    sr_buf_printf(&b, "<g class=\"legend\">\n<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">mode</text>\n", L + pw + 24, ly);
    for (size_t m = 0; m < N_MODES; m++) {
        bool present = false, sweep = false;
        for (size_t i = 0; i < ng; i++)
            if (G[i].c->m == &MODES[m]) { present = true; sweep = sweep || G[i].c->has_thr; }
        if (!present) continue;
        ly += 20;
        if (sweep)
            sr_buf_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
                          L + pw + 20, ly - 4, L + pw + 40, ly - 4, MODES[m].color);
                sr_buf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                      L + pw + 30, ly - 4, MODES[m].color, L + pw + 48, ly, MODES[m].name);
        any_sweep = any_sweep || sweep;
    }
    if (any_sweep)
        sr_buf_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\" font-size=\"11\">lines: threshold sweeps</text>\n"
                          "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\" font-size=\"11\">labels: t = threshold</text>\n",
                      L + pw + 20, ly + 26, L + pw + 20, ly + 42);
    sr_buf_puts(&b, "</g>\n</svg>\n");
#undef PX
#undef PY
    return sr_buf_take(&b);
}

/* ------------------------------------------------------------------------------------------ */
/* Setup                                                                                      */

/* "name:size" of a model file: part of the settings hash, so other weights mean other records,
 * while moving the file does not. */
static void model_id(struct sr_buf *b, const char *who, const char *path) {
    struct stat st;
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    if (stat(path, &st) == 0) sr_buf_printf(b, "%s_model=%s:%lld\n", who, name, (long long)st.st_size);
    else sr_buf_printf(b, "%s_model=%s:?\n", who, name);
}

/* Hash of everything that can change a configuration's records except the key's own fields
 * (problem, mode, threshold, sample, seed): models, prompts, budgets, sampling, and the hardware
 * knobs, since latency is one of the outputs. */
static void config_settings(struct config *c, const struct sr_run_params *rp, const struct sr_engine_params *ep,
                            const char *tmpl, enum sr_dataset_kind kind) {
    struct sr_buf b = {0};
    const struct mode_def *m = c->m;
    sr_buf_printf(&b, "kind=%d\ntemplate=%s\nfirst_n_base=%d\nmax_step_tokens=%d\nbudget=%d\nmax_answer_tokens=%d\n"
                      "answer_by=%d\nstrip_think_end=%d\n",
                  (int)kind, tmpl, rp->first_n_base, rp->max_step_tokens, rp->token_budget, rp->max_answer_tokens,
                  (int)rp->answer_by, (int)rp->strip_think_end);
    if (uses_small(m)) {
        model_id(&b, "small", C.small_path ? C.small_path : "");
        sr_buf_printf(&b, "small=%.9g/%.9g ctx=%u ngl=%d threads=%d\n", (double)rp->small.temperature,
                      (double)rp->small.top_p, ep->small.n_ctx, ep->small.n_gpu_layers, ep->small.n_threads);
    }
    if (uses_base(m)) {
        model_id(&b, "base", C.base_path ? C.base_path : "");
        sr_buf_printf(&b, "base=%.9g/%.9g ctx=%u ngl=%d threads=%d\n", (double)rp->base.temperature,
                      (double)rp->base.top_p, ep->base.n_ctx, ep->base.n_gpu_layers, ep->base.n_threads);
    }
    if (m->mode == SR_MODE_SPEC)
        sr_buf_printf(&b, "score=%d\njudge_prompt=%s\njudge_prefill=%s\n", (int)rp->score_method,
                      rp->judge_prompt ? rp->judge_prompt : SR_JUDGE_PROMPT,
                      rp->judge_prefill ? rp->judge_prefill : SR_JUDGE_PREFILL);
    if (m->decode)
        sr_buf_printf(&b, "draft=%d/%d/%.9g\n", rp->draft_max, rp->draft_min, (double)rp->draft_p_min);
    uint64_t h = fnv1a64(b.data ? b.data : "", b.len, 0xCBF29CE484222325ULL);
    sr_buf_free(&b);
    snprintf(c->settings, sizeof c->settings, "%016llx", (unsigned long long)h);
}

static void log_stderr(enum sr_log_level level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "[%s] %s\n", level >= SR_LOG_ERROR ? "error" : level >= SR_LOG_WARN ? "warn" : "info", msg);
}

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

static void state_free(struct state *S) {
    if (S->have_backend) S->be.close(S->be.state);
    if (S->results) fclose(S->results);
    free(S->results_path);
    store_free(&S->store);
    sr_dataset_free(&S->ds);
    free(S->sel);
    free(S->cfg);
    free(S->modes_store);
    free(S->thr_store);
    free(S->ids_store);
    free(S->mode_items);
    free(S->thr_items);
    free(S->id_items);
    free(S->groups);
    free(S->lat);
}

static int parse_configs(struct state *S) {
    int rc = split_list(C.modes ? C.modes : "base,small,spec", "modes", &S->modes_store, &S->mode_items,
                        &S->n_mode_items);
    if (rc) return rc;
    rc = split_list(C.thresholds ? C.thresholds : "7", "thresholds", &S->thr_store, &S->thr_items, &S->n_thr_items);
    if (rc) return rc;
    double thr[64];
    if (S->n_thr_items > 64) return bad("--thresholds: at most 64 values");
    for (size_t i = 0; i < S->n_thr_items; i++) {
        char *end = NULL;
        errno = 0;
        thr[i] = strtod(S->thr_items[i], &end);
        if (errno || end == S->thr_items[i] || *end || !(thr[i] >= 0 && thr[i] <= 10))
            return bad("--thresholds: '%s' is not a number in [0, 10]", S->thr_items[i]);
    }
    S->cfg = calloc(S->n_mode_items * S->n_thr_items, sizeof *S->cfg);
    if (!S->cfg) return fail("out of memory");
    bool any_spec = false;
    for (size_t i = 0; i < S->n_mode_items; i++) {
        const struct mode_def *m = NULL;
        for (size_t k = 0; k < N_MODES; k++)
            if (strcmp(S->mode_items[i], MODES[k].name) == 0) m = &MODES[k];
        if (!m) return bad("unknown mode '%s' (modes: base, small, spec, spec+decode, base+decode)", S->mode_items[i]);
        size_t nt = m->mode == SR_MODE_SPEC ? S->n_thr_items : 1;
        any_spec = any_spec || m->mode == SR_MODE_SPEC;
        for (size_t t = 0; t < nt; t++) {
            struct config *c = &S->cfg[S->n_cfg++];
            c->m = m;
            c->has_thr = m->mode == SR_MODE_SPEC;
            c->thr = c->has_thr ? thr[t] : 0;
            if (c->has_thr) snprintf(c->thr_str, sizeof c->thr_str, "%.9g", thr[t]);
            else snprintf(c->thr_str, sizeof c->thr_str, "-");
        }
    }
    for (size_t i = 0; i < S->n_cfg; i++)
        for (size_t j = 0; j < i; j++)
            if (S->cfg[i].m == S->cfg[j].m && S->cfg[i].has_thr && strcmp(S->cfg[i].thr_str, S->cfg[j].thr_str) == 0)
                return bad("--thresholds: %s is listed twice", S->cfg[i].thr_str);
    if (C.set_thresholds && !any_spec)
        fprintf(stderr, PROG ": note: --thresholds only applies to the spec modes; none is selected\n");
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int select_problems(struct state *S) {
    S->sel = calloc(S->ds.count ? S->ds.count : 1, sizeof *S->sel);
    if (!S->sel) return fail("out of memory");
    if (C.ids) {
        int rc = split_list(C.ids, "ids", &S->ids_store, &S->id_items, &S->n_id_items);
        if (rc) return rc;
        for (size_t i = 0; i < S->n_id_items; i++) {
            const struct sr_problem *p = sr_dataset_find(&S->ds, S->id_items[i]);
            if (!p)
                return bad("--ids: no problem with id '%s' in %s (ids look like '%s')", S->id_items[i], C.data,
                           S->ds.count ? S->ds.problems[0].id : "?");
            S->sel[S->n_sel++] = p;
        }
    } else {
        for (size_t i = 0; i < S->ds.count; i++) S->sel[S->n_sel++] = &S->ds.problems[i];
    }
    if (C.limit > 0 && (size_t)C.limit < S->n_sel) S->n_sel = (size_t)C.limit;
    if (!S->n_sel) return fail("%s holds no problems", C.data);
    /* records are keyed by problem id, so two problems with one id would share their records */
    const char **ids = malloc(S->n_sel * sizeof *ids);
    if (!ids) return fail("out of memory");
    for (size_t i = 0; i < S->n_sel; i++) ids[i] = S->sel[i]->id;
    qsort(ids, S->n_sel, sizeof *ids, cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < S->n_sel && !dup; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0) dup = ids[i];
    int rc = dup ? fail("%s: the id '%s' is used by two problems (records are keyed by id)", C.data, dup) : 0;
    free(ids);
    return rc;
}

/* Opens OUT/results.jsonl for appending (locked against a second evaluation on the same
 * directory) and loads its records. --report only reads it. */
static int open_results(struct state *S) {
    int err = C.report ? 0 : make_dirs(C.out);
    if (err) return fail("cannot create the output directory %s: %s", C.out, strerror(err));
    S->results_path = path_join(C.out, "results.jsonl");
    if (!S->results_path) return fail("out of memory");
    size_t n_lines = 0;
    long long partial = -1;
    if (C.report) {
        FILE *f = fopen(S->results_path, "rb");
        if (!f) return fail("cannot read %s: %s", S->results_path, strerror(errno));
        int rc = load_records(f, S->results_path, false, &S->store, &n_lines, &partial);
        fclose(f);
        return rc;
    }
    int fd = open(S->results_path, O_RDWR | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return fail("cannot open %s: %s", S->results_path, strerror(errno));
    struct flock lk = {0};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &lk) != 0) {
        close(fd);
        return fail("%s is in use by another " PROG " (one evaluation per output directory)", S->results_path);
    }
    S->results = fdopen(fd, "a+");
    if (!S->results) {
        close(fd);
        return fail("cannot open %s: %s", S->results_path, strerror(errno));
    }
    rewind(S->results);
    int rc = load_records(S->results, S->results_path, true, &S->store, &n_lines, &partial);
    if (rc) return rc;
    if (partial >= 0) {
        if (ftruncate(fileno(S->results), (off_t)partial) != 0)
            return fail("cannot truncate %s: %s", S->results_path, strerror(errno));
        fprintf(stderr, PROG ": dropped the unfinished last line of %s (an interrupted write); it will be redone\n",
                S->results_path);
    }
    if (fseek(S->results, 0, SEEK_END) != 0) return fail("cannot seek %s: %s", S->results_path, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

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
        it->user_msg = fill_template(tmpl, p->problem, ch);
    } else {
        it->truth = p->answer ? p->answer : "";
        it->user_msg = fill_template(tmpl, p->problem, NULL);
    }
    return it->user_msg ? 0 : fail("out of memory");
}

static void summarise(struct state *S, bool gpqa) {
    (void)gpqa;
    for (size_t ci = 0; ci < S->n_cfg; ci++) {
        struct group *g = &S->groups[ci];
        const struct config *c = g->c;
        double sum_ms = 0, sum_tok = 0, judged = 0, small = 0, drafted = 0, accepted = 0;
        for (size_t pi = 0; pi < S->n_sel; pi++)
            for (int64_t s = 0; s < C.k; s++) {
                g->planned++;
                char *key = make_key(S->sel[pi]->id, c->m->name, c->thr_str, s, C.seed + (uint64_t)s,
                                     C.report ? NULL : c->settings);
                const struct rec *r = key ? store_find(&S->store, key) : NULL;
                free(key);
                if (!r) continue;
                S->lat[g->n++] = r->latency_ms;
                g->correct += r->correct;
                sum_ms += r->latency_ms;
                sum_tok += r->tokens;
                judged += r->judged;
                small += r->steps_small;
                drafted += r->sd_drafted;
                accepted += r->sd_accepted;
            }
        double n = (double)g->n;
        g->acc = g->n ? (double)g->correct / n : NAN;
        wilson95(g->correct, g->n, &g->ci_lo, &g->ci_hi);
        g->mean_ms = g->n ? sum_ms / n : NAN;
        g->median_ms = median(S->lat, g->n);
        g->mean_tokens = g->n ? sum_tok / n : NAN;
        g->acceptance = c->m->mode == SR_MODE_SPEC && judged > 0 ? small / judged : NAN;
        g->sd_acceptance = c->m->decode && drafted > 0 ? accepted / drafted : NAN;
    }
    const struct group *base = NULL;
    for (size_t ci = 0; ci < S->n_cfg; ci++)
        if (S->groups[ci].c->m == &MODES[0]) base = &S->groups[ci];
    for (size_t ci = 0; ci < S->n_cfg; ci++) {
        struct group *g = &S->groups[ci];
        g->speedup = base && base->n && g->n && g->mean_ms > 0 ? base->mean_ms / g->mean_ms : NAN;
    }
}

int main(int argc, char **argv) {
    struct sr_run_params rp = sr_run_default_params();
    C.k = 1;
    C.out = "eval-out";
    C.first_n = rp.first_n_base;
    C.max_step = rp.max_step_tokens;
    C.budget = rp.token_budget;
    C.max_answer = rp.max_answer_tokens;
    C.draft_max = rp.draft_max;
    C.draft_min = rp.draft_min;
    C.draft_p_min = rp.draft_p_min;
    C.small_temp = C.base_temp = C.small_top_p = C.base_top_p = NAN;
    C.small_ctx = C.base_ctx = -1;
    C.small_ngl = C.base_ngl = -2;
    int rc = opt_parse(PROG, OPTS, N_OPTS, argc, argv, on_set, NULL);
    if (rc) return rc;
    if (C.help) { usage(stdout); return 0; }
    if (C.version) { printf(PROG " %s\n", sr_version()); return 0; }
    if (C.server)
        return bad("--server: server mode is not available yet; runs use the in-process engine (--small, --base)");
    if (!C.data) return bad("--data FILE is required");
    if (!*C.out) return bad("--out must not be empty");

    int v = 0;
    if (C.score) {
        static const char *const m[] = {"greedy", "average"};
        if ((rc = pick(C.score, "score method", m, 2, &v))) return rc;
        rp.score_method = (enum sr_score_method)v;
    }
    if (C.answer_by) {
        static const char *const m[] = {"base", "loop"};
        if ((rc = pick(C.answer_by, "answer writer", m, 2, &v))) return rc;
        rp.answer_by = (enum sr_answer_by)v;
    }
    enum sr_dataset_kind kind = SR_DATASET_AUTO;
    if (C.kind) {
        static const char *const m[] = {"auto", "math", "gpqa"};
        if ((rc = pick(C.kind, "dataset kind", m, 3, &v))) return rc;
        kind = (enum sr_dataset_kind)v;
    }
    int tmpl_choice = -1;
    if (C.template_name) {
        static const char *const m[] = {"math", "gpqa", "raw"};
        if ((rc = pick(C.template_name, "template", m, 3, &tmpl_choice))) return rc;
    }
    enum prog_style style = isatty(STDERR_FILENO) ? PROG_BAR : PROG_LINES;
    if (C.progress) {
        static const char *const m[] = {"none", "bar", "lines", "auto"};
        if ((rc = pick(C.progress, "progress style", m, 4, &v))) return rc;
        if (v < 3) style = (enum prog_style)v;
    }
    if (C.quiet) style = PROG_NONE;
    rp.first_n_base = (int32_t)C.first_n;
    rp.max_step_tokens = (int32_t)C.max_step;
    rp.token_budget = (int32_t)C.budget;
    rp.max_answer_tokens = (int32_t)C.max_answer;
    rp.strip_think_end = !C.no_strip;
    rp.judge_prompt = C.judge_prompt;
    rp.judge_prefill = C.judge_prefill;
    rp.draft_max = (int32_t)C.draft_max;
    rp.draft_min = (int32_t)C.draft_min;
    rp.draft_p_min = (float)C.draft_p_min;
    if (C.set_temp) rp.small.temperature = rp.base.temperature = (float)C.temp;
    if (C.set_top_p) rp.small.top_p = rp.base.top_p = (float)C.top_p;
    if (C.greedy) rp.small.temperature = rp.base.temperature = 0.0f;
    if (!isnan(C.small_temp)) rp.small.temperature = (float)C.small_temp;
    if (!isnan(C.base_temp)) rp.base.temperature = (float)C.base_temp;
    if (!isnan(C.small_top_p)) rp.small.top_p = (float)C.small_top_p;
    if (!isnan(C.base_top_p)) rp.base.top_p = (float)C.base_top_p;
    rp.prompt_template = "{problem}"; /* the harness fills the templates itself */
    struct sr_error err = {0};
    if (sr_run_params_check(&rp, &err) != SR_OK) return bad("%s", err.msg);

    struct state S;
    memset(&S, 0, sizeof S);
    int ret = 0;
    if ((ret = parse_configs(&S))) goto done;
    bool need_small = false, need_base = false;
    for (size_t i = 0; i < S.n_cfg; i++) {
        need_small = need_small || uses_small(S.cfg[i].m);
        need_base = need_base || uses_base(S.cfg[i].m);
    }
    if (!C.report && need_small && !C.small_path) { ret = bad("the selected modes need --small"); goto done; }
    if (!C.report && need_base && !C.base_path) { ret = bad("the selected modes need --base"); goto done; }

    struct sr_engine_params ep = sr_engine_default_params();
    if (need_small) ep.small.path = C.small_path;
    if (need_base) ep.base.path = C.base_path;
    ep.small.n_ctx = ep.base.n_ctx = (uint32_t)C.ctx;
    if (C.small_ctx >= 0) ep.small.n_ctx = (uint32_t)C.small_ctx;
    if (C.base_ctx >= 0) ep.base.n_ctx = (uint32_t)C.base_ctx;
    ep.small.n_threads = ep.base.n_threads = (int32_t)C.threads;
    ep.small.n_threads_batch = ep.base.n_threads_batch = (int32_t)C.threads_batch;
    ep.small.n_gpu_layers = ep.base.n_gpu_layers = (int32_t)C.ngl;
    if (C.small_ngl >= -1) ep.small.n_gpu_layers = (int32_t)C.small_ngl;
    if (C.base_ngl >= -1) ep.base.n_gpu_layers = (int32_t)C.base_ngl;

    char dserr[512];
    if (sr_dataset_load(C.data, kind, C.seed, &S.ds, dserr, sizeof dserr) != SR_OK) {
        ret = fail("%s", dserr);
        goto done;
    }
    bool gpqa = S.ds.kind == SR_DATASET_GPQA;
    if ((ret = select_problems(&S))) goto done;
    const char *tmpl = gpqa ? SR_PROMPT_GPQA : SR_PROMPT_MATH;
    if (tmpl_choice >= 0) tmpl = tmpl_choice == 0 ? SR_PROMPT_MATH : tmpl_choice == 1 ? SR_PROMPT_GPQA : "{problem}";
    if (C.prompt_template) tmpl = C.prompt_template;
    if (!strstr(tmpl, "{problem}")) { ret = bad("the prompt template has no {problem}"); goto done; }
    if (gpqa && !strstr(tmpl, "{ans_a}"))
        fprintf(stderr, PROG ": warning: the prompt template has no {ans_a}..{ans_d}: the choices are not shown\n");
    if (!C.report && C.k > 1 && rp.small.temperature == 0.0f && rp.base.temperature == 0.0f)
        fprintf(stderr, PROG ": note: greedy decoding: the %lld samples of a problem are identical%s\n", (long long)C.k,
                gpqa ? " except for the choice order" : "");
    for (size_t i = 0; i < S.n_cfg; i++) config_settings(&S.cfg[i], &rp, &ep, tmpl, S.ds.kind);

    if ((ret = open_results(&S))) goto done;

    struct progress P;
    memset(&P, 0, sizeof P);
    P.style = style;
    P.total = S.n_sel * (size_t)C.k * S.n_cfg;
    S.groups = calloc(S.n_cfg, sizeof *S.groups);
    S.lat = calloc(S.n_sel * (size_t)C.k, sizeof *S.lat);
    if (!S.groups || !S.lat) { ret = fail("out of memory"); goto done; }
    for (size_t ci = 0; ci < S.n_cfg; ci++) S.groups[ci].c = &S.cfg[ci];
    for (size_t pi = 0; pi < S.n_sel; pi++)
        for (int64_t s = 0; s < C.k; s++)
            for (size_t ci = 0; ci < S.n_cfg; ci++) {
                char *key = make_key(S.sel[pi]->id, S.cfg[ci].m->name, S.cfg[ci].thr_str, s, C.seed + (uint64_t)s,
                                     C.report ? NULL : S.cfg[ci].settings);
                if (!key) { ret = fail("out of memory"); goto done; }
                P.skipped += store_find(&S.store, key) != NULL;
                free(key);
            }
    P.to_run = C.report ? 0 : P.total - P.skipped;
    if (!C.report && P.skipped)
        fprintf(stderr, PROG ": %zu of %zu records already done in %s (skipped)%s\n", P.skipped, P.total,
                S.results_path, P.to_run ? "" : "; nothing to run");

    if (P.to_run) {
        if (C.verbose) sr_log_set(log_stderr, NULL, SR_LOG_WARN);
        else sr_log_set(NULL, NULL, SR_LOG_ERROR);
        char berr[600];
        if (local_open(&ep, &S.be, berr, sizeof berr) != SR_OK) { ret = fail("%s", berr); goto done; }
        S.have_backend = true;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C kills */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }

    P.t0_us = sr_time_us();
    for (size_t pi = 0; pi < S.n_sel && P.to_run && !g_stop; pi++) {
        for (int64_t s = 0; s < C.k && !g_stop; s++) {
            struct item it;
            bool prepared = false;
            for (size_t ci = 0; ci < S.n_cfg && !g_stop; ci++) {
                const struct config *c = &S.cfg[ci];
                char *key = make_key(S.sel[pi]->id, c->m->name, c->thr_str, s, C.seed + (uint64_t)s, c->settings);
                if (!key) { ret = fail("out of memory"); break; }
                if (store_find(&S.store, key)) { free(key); continue; }
                if (!prepared && (ret = prepare_item(&it, S.sel[pi], s, gpqa, tmpl))) { free(key); break; }
                prepared = true;
                char label[64];
                config_label(c, label, sizeof label);
                snprintf(P.label, sizeof P.label, "%s", label);
                snprintf(P.what, sizeof P.what, "%s#%lld", it.p->id, (long long)s);
                P.step = 0;
                prog_draw(&P);
                struct sr_run_params run = rp;
                run.mode = c->m->mode;
                run.spec_decode = c->m->decode;
                run.threshold = (float)c->thr;
                if (!c->has_thr) run.threshold = sr_run_default_params().threshold;
                run.seed = it.seed;
                run.on_event = on_event;
                run.user = &P;
                struct sr_result *res = NULL;
                char rerr[600] = "";
                int64_t t0 = sr_time_us();
                enum sr_status st = S.be.run_one(S.be.state, it.user_msg, &run, &res, rerr, sizeof rerr);
                double ms = (double)(sr_time_us() - t0) / 1000.0;
                if (st != SR_OK || (res && res->stop == SR_STOP_CANCELLED)) {
                    if (res) S.be.free_result(S.be.state, res);
                    free(key);
                    if (g_stop) break;
                    prog_clear(&P);
                    fprintf(stderr, PROG ": %s %s sample %lld failed: %s\n", label, it.p->id, (long long)s, rerr);
                    P.failed++;
                    P.last_done_us = sr_time_us();
                    S.groups[ci].errors++;
                    if (P.done == 0 && P.failed >= 5) { /* a setup problem (e.g. context too small) */
                        ret = fail("giving up: the first %zu runs failed", P.failed);
                        break;
                    }
                    continue;
                }
                struct grade g = grade_output(res, gpqa, it.truth);
                char *line = record_json(&it, c, gpqa, res, &g, ms, &run, S.be.name);
                struct rec r = {key, g.correct, ms, (double)(res->stats.n_adopted_tokens + res->stats.n_answer_tokens),
                                res->stats.n_judged, res->stats.n_steps_small, (double)res->stats.n_sd_drafted,
                                (double)res->stats.n_sd_accepted};
                S.be.free_result(S.be.state, res);
                if (!line) { free(key); free(g.extracted); ret = fail("out of memory"); break; }
                size_t len = strlen(line);
                bool ok = fwrite(line, 1, len, S.results) == len && fflush(S.results) == 0;
                free(line);
                if (!ok) {
                    free(key);
                    free(g.extracted);
                    ret = fail("cannot write %s: %s", S.results_path, strerror(errno));
                    break;
                }
                if (!store_put(&S.store, &r)) { free(g.extracted); ret = fail("out of memory"); break; }
                P.done++;
                P.last_done_us = sr_time_us();
                if (P.style == PROG_LINES) {
                    fprintf(stderr, "[%zu/%zu] %s %s#%lld: %s (answer %s, truth %s) %.2f s, %.0f tokens\n",
                            P.skipped + P.done + P.failed, P.total, label, it.p->id, (long long)s,
                            g.correct ? "correct" : "wrong", g.extracted ? g.extracted : "none", it.truth, ms / 1000.0,
                            r.tokens);
                }
                free(g.extracted);
                prog_draw(&P);
            }
            if (prepared) free(it.user_msg);
            if (ret) break;
        }
        if (ret) break;
    }
    prog_clear(&P);
    if (ret) goto done;
    if (P.to_run && P.style != PROG_NONE) {
        char el[32];
        fmt_dur((double)(sr_time_us() - P.t0_us) / 1e6, el, sizeof el);
        fprintf(stderr, PROG ": ran %zu records in %s (%zu skipped, %zu failed)\n", P.done, el, P.skipped, P.failed);
    }
    if (g_stop)
        fprintf(stderr, PROG ": interrupted after %zu records; rerun the same command to resume\n", P.done);

    summarise(&S, gpqa);
    char *js = summary_json(S.groups, S.n_cfg, &S.ds, S.n_sel, &P);
    char *csv = summary_csv(S.groups, S.n_cfg);
    char *svg = chart_svg(S.groups, S.n_cfg, &S.ds, S.n_sel);
    if (!js || !csv || !svg) ret = fail("out of memory");
    if (!ret) ret = write_file(C.out, "summary.json", js, strlen(js));
    if (!ret) ret = write_file(C.out, "summary.csv", csv, strlen(csv));
    if (!ret) ret = write_file(C.out, "chart.svg", svg, strlen(svg));
    if (!ret) {
        if (C.json) fputs(js, stdout);
        else print_table(stdout, S.groups, S.n_cfg, &S.ds, S.n_sel);
        fflush(stdout);
    }
    free(js);
    free(csv);
    free(svg);
    if (!ret && g_stop) ret = 130;
    else if (!ret && P.failed) ret = 1;
done:
    state_free(&S);
    return ret;
}
