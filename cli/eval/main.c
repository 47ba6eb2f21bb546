/*
 * cli/eval/main.c: `specreason-eval`: options, configurations (modes x thresholds), problem
 * selection and the settings hash; then runner.c runs what is missing and report.c summarises.
 * See eval.h for the layout of the harness.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"

/* ------------------------------------------------------------------------------------------ */
/* Options (one table drives parsing and --help, as in cli/main.c)                            */

struct cli C;

static const struct opt OPTS[] = {
    COMMON_OPTS_MODELS(C.o),
    {"data", 'd', OPT_STR, &C.data, 0, 0, "problem set: math JSONL (data/math500.jsonl, data/aime2024.jsonl) or GPQA CSV/JSONL"},
    {"kind", 0, OPT_STR, &C.kind, 0, 0, "math | gpqa | auto: how to read --data (default auto)"},
    {"modes", 'm', OPT_STR, &C.modes, 0, 0,
     "comma list of base, small, spec, spec+decode, base+decode, spec-always, spec-auto, spec-pipe (default base,small,spec)"},
    {"thresholds", 't', OPT_STR, &C.thresholds, 0, 0, "comma list of spec thresholds in [0, 10] (default 7)"},
    {"k", 'k', OPT_INT, &C.k, 1, 1e6, "samples per problem, pass@1 averaged over them (default 1)"},
    {"seed", 's', OPT_U64, &C.seed, 0, 0, "sample i uses seed S+i, for sampling and GPQA choice order (default 0)"},
    {"ids", 0, OPT_STR, &C.ids, 0, 0, "comma list of problem ids to run, in this order (default all)"},
    {"limit", 'l', OPT_INT, &C.limit, 1, 1e9, "only the first N selected problems"},
    {"out", 'o', OPT_STR, &C.out, 0, 0, "output directory (default eval-out)"},
    {"report", 0, OPT_FLAG, &C.report, 0, 0,
     "run nothing: summarise OUT/results.jsonl (latest record per key, any settings)"},
    {"html", 0, OPT_STR, &C.html, 0, 0,
     "also write FILE: an HTML report (table, chart, every problem's steps side by side)"},
    {"template", 0, OPT_STR, &C.template_name, 0, 0, "math | gpqa | raw: the user message (default: by dataset kind)"},
    {"prompt-template", 0, OPT_STR, &C.prompt_template, 0, 0,
     "custom user message; {problem} and (GPQA) {ans_a}..{ans_d} are replaced"},
    COMMON_OPTS_JUDGE(C.o),
    COMMON_OPTS_POLICY(C.o),
    COMMON_OPTS_STEPS(C.o),
    COMMON_OPTS_SAMPLING(C.o),
    COMMON_OPTS_THINKING(C.o),
    COMMON_OPTS_DRAFT(C.o, "+decode modes: "),
    COMMON_OPTS_HARDWARE(C.o),
    COMMON_OPTS_REMOTE(C.o),
    {"save-steps", 0, OPT_FLAG, &C.save_steps, 0, 0, "also store every step (the full result JSON) in each record"},
    {"server", 0, OPT_STR, &C.server, 0, 0,
     "run through a running specreason-server at URL (e.g. http://127.0.0.1:8080) instead of in-process models"},
    {"concurrency", 0, OPT_INT, &C.concurrency, 1, 256, "--server: records run at once (default 1)"},
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
            "Runs use the in-process engine, or with --server URL a running specreason-server (started\n"
            "with the same models and options; the run parameters go in each request), --concurrency N\n"
            "records at once.\n\noptions:\n");
    opt_usage(f, OPTS, N_OPTS, 26);
    fprintf(f, "\nmodes: base (base model alone), small (small model alone), spec (small drafts, base\n"
               "judges), spec+decode and base+decode (the same with token-level speculative decoding\n"
               "wherever the base model writes). Thresholds apply to the spec modes only.\n"
               "\nexit status: 0 ok, 1 model, data, run or I/O error, 2 usage error, 130 interrupted\n");
}

#define bad(...) opt_bad(PROG, __VA_ARGS__)

int fail(const char *fmt, ...) {
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
    common_opts_on_set(&C.o, o);
    if (o->dst == &C.thresholds) C.set_thresholds = true;
}

#define pick(val, what, names, n, out) opt_pick(PROG, val, what, names, n, out)

/* ------------------------------------------------------------------------------------------ */
/* Modes and configurations                                                                   */


const struct mode_def MODES[] = {
    {"base", SR_MODE_BASE, -1, false, "#d62728", -1},        {"small", SR_MODE_SMALL, -1, false, "#2ca02c", -1},
    {"spec", SR_MODE_SPEC, -1, false, "#1f77b4", -1},        {"spec+decode", SR_MODE_SPEC, -1, true, "#9467bd", -1},
    {"base+decode", SR_MODE_BASE, -1, true, "#ff7f0e", -1},
    {"spec-always", SR_MODE_SPEC, SR_POLICY_ALWAYS, false, "#17becf", -1},
    {"spec-auto", SR_MODE_SPEC, SR_POLICY_AUTO, false, "#8c564b", -1},
    /* policy always pipelined (issue 17): same output as spec-always, to time side by side */
    {"spec-pipe", SR_MODE_SPEC, SR_POLICY_ALWAYS, false, "#bcbd22", SR_PIPE_ON},
};
const size_t N_MODES = sizeof MODES / sizeof MODES[0];

bool uses_small(const struct mode_def *m) { return m->mode != SR_MODE_BASE || m->decode; }
bool uses_base(const struct mode_def *m) { return m->mode != SR_MODE_SMALL; }

/* One column of the evaluation: a mode and, for the spec modes, a threshold. */

void config_label(const struct config *c, char *buf, size_t size) {
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
    if (C.server) {
        /* the server's models and hardware are its own: records are keyed by its URL */
        sr_buf_printf(&b, "server=%s\nsampling=%.9g/%.9g\n", C.server, (double)rp->small.temperature,
                      (double)rp->small.top_p);
    } else if (uses_small(m)) {
        model_id(&b, "small", C.o.small_path ? C.o.small_path : "");
        sr_buf_printf(&b, "small=%.9g/%.9g ctx=%u ngl=%d threads=%d\n", (double)rp->small.temperature,
                      (double)rp->small.top_p, ep->small.n_ctx, ep->small.n_gpu_layers, ep->small.n_threads);
    }
    if (!C.server && uses_base(m)) {
        model_id(&b, "base", C.o.base_path ? C.o.base_path : "");
        sr_buf_printf(&b, "base=%.9g/%.9g ctx=%u ngl=%d threads=%d\n", (double)rp->base.temperature,
                      (double)rp->base.top_p, ep->base.n_ctx, ep->base.n_gpu_layers, ep->base.n_threads);
    }
    if (m->mode == SR_MODE_SPEC)
        sr_buf_printf(&b, "score=%d%s\njudge_prompt=%s\njudge_prefill=%s\n", (int)rp->score_method,
                      rp->score_method == SR_SCORE_AVERAGE ? "/top10" : "", /* average is the reference's now */
                      rp->judge_prompt ? rp->judge_prompt : SR_JUDGE_PROMPT,
                      rp->judge_prefill ? rp->judge_prefill : SR_JUDGE_PREFILL);
    if (m->decode)
        sr_buf_printf(&b, "draft=%d/%d/%.9g\n", rp->draft_max, rp->draft_min, (double)rp->draft_p_min);
    if (m->mode == SR_MODE_SPEC) {
        int pol = m->policy >= 0 ? m->policy : (int)rp->policy;
        /* policy always is what spec ran before the controller: its records keep their hash */
        if (pol != SR_POLICY_ALWAYS)
            sr_buf_printf(&b, "policy=%d/%.9g/%.9g/%d/%d%s\n", pol, (double)rp->ctl_precision, (double)rp->ctl_audit,
                          rp->ctl_probe_max, (int)rp->ctl_gate_label, rp->ctl_verify_rewrite ? "/verify" : "");
        /* pipelining changes time only; a mode that forces it is timed apart */
        if (m->pipeline >= 0) sr_buf_printf(&b, "pipeline=%d\n", m->pipeline);
    }
    uint64_t h = fnv1a64(b.data ? b.data : "", b.len, 0xCBF29CE484222325ULL);
    sr_buf_free(&b);
    snprintf(c->settings, sizeof c->settings, "%016llx", (unsigned long long)h);
}

static void log_stderr(enum sr_log_level level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "[%s] %s\n", level >= SR_LOG_ERROR ? "error" : level >= SR_LOG_WARN ? "warn" : "info", msg);
}

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
        if (!m) return bad("unknown mode '%s' (modes: base, small, spec, spec+decode, base+decode, spec-always, spec-auto, spec-pipe)", S->mode_items[i]);
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

int main(int argc, char **argv) {
    struct sr_run_params rp = sr_run_default_params();
    common_opts_init(&C.o);
    C.k = 1;
    C.out = "eval-out";
    int rc = opt_parse(PROG, OPTS, N_OPTS, argc, argv, on_set, NULL);
    if (rc) return rc;
    if (C.help) { usage(stdout); return 0; }
    if (C.version) { printf(PROG " %s\n", sr_version()); return 0; }
    if (C.concurrency > 1 && !C.server) return bad("--concurrency needs --server (in-process runs go one at a time)");
    if (C.server && !*C.server) return bad("--server needs a URL");
    if (C.seed > (uint64_t)INT64_MAX - (uint64_t)C.k)
        return bad("--seed plus --k must stay below 2^63 (seeds are stored as JSON integers)");
    if (!C.data) return bad("--data FILE is required");
    if (!*C.out) return bad("--out must not be empty");

    int v = 0;
    if ((rc = common_opts_run_params(PROG, &C.o, &rp))) return rc;
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
    rp.prompt_template = "{problem}"; /* the harness fills the templates itself */
    struct sr_error err = {0};
    if (sr_run_params_check(&rp, &err) != SR_OK) return bad("%s", err.msg);
    if (C.server && (rp.small.temperature != rp.base.temperature || rp.small.top_p != rp.base.top_p))
        return bad("--server: a request sets one temperature and top-p for both models; per-model values are the "
                   "server's own options");

    struct state S;
    memset(&S, 0, sizeof S);
    int ret = 0;
    if ((ret = parse_configs(&S))) goto done;
    bool need_small = false, need_base = false;
    for (size_t i = 0; i < S.n_cfg; i++) {
        need_small = need_small || uses_small(S.cfg[i].m);
        need_base = need_base || uses_base(S.cfg[i].m);
    }
    if (!C.report && !C.server && need_small && !C.o.small_path && !C.o.small_url) { ret = bad("the selected modes need --small or --small-url"); goto done; }
    if (!C.report && !C.server && need_base && !C.o.base_path && !C.o.base_url) { ret = bad("the selected modes need --base or --base-url"); goto done; }

    struct sr_engine_params ep;
    common_opts_engine_params(&C.o, need_small, need_base, &ep);

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
        if ((ret = open_backend(&S, &ep))) goto done;
    }
    if ((ret = run_all(&S, &rp, gpqa, tmpl, &P))) goto done;
    if (P.to_run && P.style != PROG_NONE) {
        char el[32];
        fmt_dur((double)(sr_time_us() - P.t0_us) / 1e6, el, sizeof el);
        fprintf(stderr, PROG ": ran %zu records in %s (%zu skipped, %zu failed)\n", P.done, el, P.skipped, P.failed);
    }
    if (g_stop)
        fprintf(stderr, PROG ": interrupted after %zu records; rerun the same command to resume\n", P.done);

    summarise(&S);
    ret = write_reports(&S, &P);
    if (!ret && g_stop) ret = 130;
    else if (!ret && P.failed) ret = 1;
done:
    state_free(&S);
    return ret;
}
