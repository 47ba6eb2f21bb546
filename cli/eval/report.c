/*
 * cli/eval/report.c: the summary of the records: accuracy with its 95% interval, latency (mean
 * and median), tokens, acceptance and speedup per mode and threshold, as a table on stdout,
 * OUT/summary.json and OUT/summary.csv (and OUT/chart.svg through chart.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "report_html.h"
#include "jsonutil.h"

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
/* Summary: table, JSON, CSV, SVG                                                             */


static char *summary_json(const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems,
                          const struct progress *P) {
    json_t *o = json_pack("{s:s,s:s}", "tool", PROG, "version", sr_version());
    if (!o) return NULL;
    bool ok = sr_jset(o, "data", sr_jstr(C.data)) &&
              sr_jset(o, "kind", sr_jstr(ds->kind == SR_DATASET_GPQA ? "gpqa" : "math")) &&
              sr_jset(o, "problems", json_integer((json_int_t)n_problems)) &&
              sr_jset(o, "k", json_integer((json_int_t)C.k)) && sr_jset(o, "seed", json_integer((json_int_t)C.seed)) &&
              sr_jset(o, "out", sr_jstr(C.out)) && sr_jset(o, "report", json_boolean(C.report)) &&
              sr_jset(o, "records", json_pack("{s:I,s:I,s:I,s:I}", "planned", (json_int_t)P->total, "skipped",
                                              (json_int_t)P->skipped, "ran", (json_int_t)P->done, "failed",
                                              (json_int_t)P->failed));
    json_t *groups = json_array();
    ok = ok && sr_jset(o, "groups", groups);
    for (size_t i = 0; ok && i < ng; i++) {
        const struct group *g = &G[i];
        json_t *go = json_object();
        ok = go && json_array_append_new(groups, go) == 0;
        ok = ok && sr_jset(go, "mode", sr_jstr(g->c->m->name)) &&
             sr_jset(go, "threshold", g->c->has_thr ? sr_jnum_exact(strtod(g->c->thr_str, NULL)) : json_null()) &&
             sr_jset(go, "settings", sr_jstr(C.report ? NULL : g->c->settings)) &&
             sr_jset(go, "planned", json_integer((json_int_t)g->planned)) &&
             sr_jset(go, "n", json_integer((json_int_t)g->n)) &&
             sr_jset(go, "correct", json_integer((json_int_t)g->correct)) &&
             sr_jset(go, "errors", json_integer((json_int_t)g->errors));
        const char *names[] = {"accuracy", "ci_low", "ci_high", "mean_latency_ms", "median_latency_ms",
                               "mean_tokens", "acceptance", "sd_acceptance", "speedup"};
        const double vals[] = {g->acc, g->ci_lo, g->ci_hi, g->mean_ms, g->median_ms,
                               g->mean_tokens, g->acceptance, g->sd_acceptance, g->speedup};
        for (size_t k = 0; ok && k < sizeof vals / sizeof vals[0]; k++) ok = sr_jset(go, names[k], sr_jnum(vals[k]));
    }
    char *s = ok ? sr_jdump(o) : NULL;
    json_decref(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *out = realloc(s, n + 2);
    if (!out) { free(s); return NULL; }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
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

void summarise(struct state *S) {
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


/* --html FILE: the report of the problems the summary covers (cli/report_html.c). */
static int html_report(const struct state *S) {
    struct report_problem *pr = calloc(S->n_sel ? S->n_sel : 1, sizeof *pr);
    if (!pr) return fail("out of memory");
    for (size_t i = 0; i < S->n_sel; i++) pr[i] = (struct report_problem){S->sel[i]->id, S->sel[i]->problem};
    char msg[1200];
    int rc = report_html_write(C.out, C.html, pr, S->n_sel, msg, sizeof msg) ? fail("%s", msg) : 0;
    free(pr);
    return rc;
}

int write_reports(struct state *S, const struct progress *P) {
    int ret = 0;
    char *js = summary_json(S->groups, S->n_cfg, &S->ds, S->n_sel, P);
    char *csv = summary_csv(S->groups, S->n_cfg);
    char *svg = chart_svg(S->groups, S->n_cfg, &S->ds, S->n_sel);
    if (!js || !csv || !svg) ret = fail("out of memory");
    if (!ret) ret = write_file(C.out, "summary.json", js, strlen(js));
    if (!ret) ret = write_file(C.out, "summary.csv", csv, strlen(csv));
    if (!ret) ret = write_file(C.out, "chart.svg", svg, strlen(svg));
    if (!ret && C.html) ret = html_report(S);
    if (!ret) {
        if (C.json) fputs(js, stdout);
        else print_table(stdout, S->groups, S->n_cfg, &S->ds, S->n_sel);
        fflush(stdout);
    }
    free(js);
    free(csv);
    free(svg);
    return ret;
}
