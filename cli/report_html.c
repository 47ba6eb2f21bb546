/*
 * report_html.c: the HTML report of an evaluation (see report_html.h). Reads summary.json,
 * chart.svg and results.jsonl with jansson and writes one HTML file that needs nothing else:
 * the step-marking stylesheet (web/steps.css, compiled in) and the chart are inlined, the only
 * interactivity (show only the problems where the runs disagree, open a rejected draft) is plain
 * HTML and CSS. Every string from a record, a dataset or the command line goes through esc().
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_html.h"
#include "web_assets.h"

struct group {
    const char *mode;      /* borrowed from summary.json */
    bool has_thr;
    double thr;
    const char *settings;  /* NULL = any settings (a --report summary) */
    json_t *g;             /* the summary.json group object */
    int hist[10];          /* judge scores over the group's shown records */
};

struct report {
    json_t *summary;
    struct group *groups;
    size_t n_groups;
    int64_t k;
    uint64_t seed;
    /* problems: given, or collected from the records */
    char **ids;
    char **texts;          /* may hold NULLs */
    size_t n_ids, cap_ids;
    bool collect;          /* ids are collected from the records */
    json_t **slot;         /* [problem][sample][group]: the latest record, or NULL */
    size_t cap_slots;
    size_t n_lines, n_bad, n_used;
    char *svg;
};

static int errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && n) vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return 1;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------------------------------ */
/* Escaping                                                                                   */

/* Writes n bytes of s as HTML text or attribute content: & < > " ' become references, C0
 * controls other than tab, newline and carriage return (and NUL) become U+FFFD. Input from
 * jansson is valid UTF-8. */
static void esc_n(FILE *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&': fputs("&amp;", o); break;
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '"': fputs("&quot;", o); break;
        case '\'': fputs("&#39;", o); break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) fputs("\xef\xbf\xbd", o);
            else fputc(c, o);
        }
    }
}

static void esc(FILE *o, const char *s) {
    if (s) esc_n(o, s, strlen(s));
}

/* A JSON string value, escaped, with its full length (it may hold NUL bytes). */
static void esc_json(FILE *o, const json_t *v) {
    if (json_is_string(v)) esc_n(o, json_string_value(v), json_string_length(v));
}

static const char *str_of(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static double num_of(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                    */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (buf && ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static int load_summary(struct report *R, const char *dir, char *err, size_t en) {
    char *path = path_join(dir, "summary.json");
    if (!path) return errf(err, en, "out of memory");
    json_error_t je;
    R->summary = json_load_file(path, 0, &je);
    if (!R->summary) {
        int rc = errf(err, en, "%s: %s (line %d)", path, je.text, je.line);
        free(path);
        return rc;
    }
    const json_t *groups = json_object_get(R->summary, "groups");
    json_t *k = json_object_get(R->summary, "k"), *seed = json_object_get(R->summary, "seed");
    if (!json_is_array(groups) || !json_is_integer(k) || json_integer_value(k) < 1 || !json_is_integer(seed)) {
        int rc = errf(err, en, "%s: not a specreason-eval summary (groups, k, seed)", path);
        free(path);
        return rc;
    }
    free(path);
    R->k = json_integer_value(k);
    R->seed = (uint64_t)json_integer_value(seed);
    R->n_groups = json_array_size(groups);
    R->groups = calloc(R->n_groups ? R->n_groups : 1, sizeof *R->groups);
    if (!R->groups) return errf(err, en, "out of memory");
    for (size_t i = 0; i < R->n_groups; i++) {
        json_t *g = json_array_get(groups, i);
        struct group *G = &R->groups[i];
        G->g = g;
        G->mode = str_of(g, "mode");
        if (!G->mode) return errf(err, en, "summary.json: group %zu has no mode", i);
        const json_t *t = json_object_get(g, "threshold");
        G->has_thr = json_is_number(t);
        G->thr = G->has_thr ? json_number_value(t) : 0;
        G->settings = str_of(g, "settings");
    }
    return 0;
}

static int add_problem(struct report *R, const char *id, const char *text) {
    if (R->n_ids == R->cap_ids) {
        size_t cap = R->cap_ids ? 2 * R->cap_ids : 64;
        char **a = realloc(R->ids, cap * sizeof *a);
        if (!a) return -1;
        R->ids = a;
        char **b = realloc(R->texts, cap * sizeof *b);
        if (!b) return -1;
        R->texts = b;
        R->cap_ids = cap;
    }
    R->ids[R->n_ids] = xstrdup(id);
    R->texts[R->n_ids] = text ? xstrdup(text) : NULL;
    if (!R->ids[R->n_ids] || (text && !R->texts[R->n_ids])) {
        free(R->ids[R->n_ids]);
        free(R->texts[R->n_ids]);
        return -1;
    }
    R->n_ids++;
    return 0;
}

static long find_problem(const struct report *R, const char *id) {
    for (size_t i = 0; i < R->n_ids; i++)
        if (strcmp(R->ids[i], id) == 0) return (long)i;
    return -1;
}

static size_t slot_index(const struct report *R, size_t p, int64_t s, size_t g) {
    return (p * (size_t)R->k + (size_t)s) * R->n_groups + g;
}

/* Room for the slots of problems 0..n_ids-1. */
static bool grow_slots(struct report *R) {
    size_t need = R->n_ids * (size_t)R->k * R->n_groups;
    if (need <= R->cap_slots) return true;
    size_t cap = R->cap_slots ? R->cap_slots : 256;
    while (cap < need) cap *= 2;
    json_t **s = realloc(R->slot, cap * sizeof *s);
    if (!s) return false;
    memset(s + R->cap_slots, 0, (cap - R->cap_slots) * sizeof *s);
    R->slot = s;
    R->cap_slots = cap;
    return true;
}

static bool group_matches(const struct group *G, const json_t *rec) {
    const char *mode = str_of(rec, "mode");
    if (!mode || strcmp(mode, G->mode) != 0) return false;
    const json_t *t = json_object_get(rec, "threshold");
    if (G->has_thr != json_is_number(t)) return false;
    if (G->has_thr && fabs(json_number_value(t) - G->thr) > 1e-9) return false;
    if (G->settings) {
        const char *s = str_of(rec, "settings");
        if (!s || strcmp(s, G->settings) != 0) return false;
    }
    return true;
}

/* One record: it replaces the earlier record of its slot (the latest counts, as in the summary). */
static int take_record(struct report *R, json_t *rec) {
    const char *id = str_of(rec, "id");
    const json_t *js = json_object_get(rec, "sample"), *jd = json_object_get(rec, "seed");
    if (!id || !json_is_integer(js) || !json_is_integer(jd)) return 1;
    int64_t s = json_integer_value(js);
    if (s < 0 || s >= R->k || (uint64_t)json_integer_value(jd) != R->seed + (uint64_t)s) return 0;
    long p = -1;
    for (size_t g = 0; g < R->n_groups; g++) {
        if (!group_matches(&R->groups[g], rec)) continue;
        if (p < 0) p = find_problem(R, id);
        if (p < 0) {
            if (!R->collect) return 0;
            if (add_problem(R, id, NULL) < 0) return -1;
            p = (long)R->n_ids - 1;
        }
        if (!grow_slots(R)) return -1;
        json_t **slot = &R->slot[slot_index(R, (size_t)p, s, g)];
        json_decref(*slot);
        *slot = json_incref(rec);
        R->n_used++;
    }
    return 0;
}

static int load_records(struct report *R, const char *dir, char *err, size_t en) {
    char *path = path_join(dir, "results.jsonl");
    if (!path) return errf(err, en, "out of memory");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = errf(err, en, "cannot read %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    free(path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        R->n_lines++;
        if (line[n - 1] != '\n') { R->n_bad++; break; } /* an unfinished last line */
        json_t *rec = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
        int t = json_is_object(rec) ? take_record(R, rec) : 1;
        json_decref(rec);
        if (t < 0) { rc = errf(err, en, "out of memory"); break; }
        if (t > 0) R->n_bad++;
    }
    free(line);
    fclose(f);
    return rc;
}

/* An attribute like onload= (whitespace, "on", letters, optional spaces, "=") in lowercase text. */
static bool has_event_attr(const char *s) {
    for (const char *p = strstr(s, "on"); p; p = strstr(p + 1, "on")) {
        if (p == s || !(p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' || p[-1] == '\r' || p[-1] == '/')) continue;
        const char *q = p + 2;
        if (*q < 'a' || *q > 'z') continue;
        while (*q >= 'a' && *q <= 'z') q++;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q == '=') return true;
    }
    return false;
}

/* chart.svg inlined as is, when it is what specreason-eval writes (no script, no foreign
 * content); the XML declaration before <svg is dropped. NULL when absent or refused. */
static char *load_svg(const char *dir) {
    char *path = path_join(dir, "chart.svg");
    if (!path) return NULL;
    size_t len = 0;
    char *svg = read_all(path, &len);
    free(path);
    if (!svg) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (svg[i] == '\0') { free(svg); return NULL; }
        if (svg[i] >= 'A' && svg[i] <= 'Z') svg[i] = (char)(svg[i] - 'A' + 'a'); /* a lowercase copy */
    }
    bool bad = strstr(svg, "<script") || strstr(svg, "<foreignobject") || strstr(svg, "javascript:") ||
               strstr(svg, "<iframe") || strstr(svg, "<!entity") || has_event_attr(svg);
    free(svg);
    if (bad) return NULL;
    path = path_join(dir, "chart.svg");
    svg = path ? read_all(path, &len) : NULL;
    free(path);
    char *start = svg ? strstr(svg, "<svg") : NULL;
    if (!start) { free(svg); return NULL; }
    memmove(svg, start, strlen(start) + 1);
    return svg;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                    */

static const char REPORT_CSS[] =
    "body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,\"Segoe UI\","
    "Roboto,sans-serif}\n"
    "main{max-width:110rem;margin:0 auto;padding:1rem}\n"
    "h1{font-size:1.5rem;margin:.2rem 0 .4rem}h2{font-size:1.2rem;margin:1.6rem 0 .5rem}"
    "h3{font-size:1.05rem;margin:0 0 .4rem}\n"
    ".meta{color:var(--muted);margin:.2rem 0}\n"
    ".scroll{overflow-x:auto}\n"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums}\n"
    "th,td{border-bottom:1px solid var(--line);padding:.3rem .55rem;text-align:right;white-space:nowrap}\n"
    "th:first-child,td:first-child{text-align:left}\n"
    "thead th{position:sticky;top:0;background:var(--bg)}\n"
    "#chart svg{max-width:100%;height:auto;border:1px solid var(--line);border-radius:.3rem}\n"
    "td.ok,.verdict.ok{color:var(--good)}td.wrong,.verdict.wrong{color:var(--bad)}td.none,.run.none{color:var(--muted)}\n"
    "td.ok,td.wrong,td.none{text-align:center}\n"
    "tr.disagree td:first-child a{font-weight:700}\n"
    ".filter{margin:.5rem 0}\n"
    "body:has(#only-disagree:checked) .problem:not(.disagree),"
    "body:has(#only-disagree:checked) #overview tr.agree{display:none}\n"
    ".problem{border-top:2px solid var(--line);padding-top:.8rem;margin-top:1.2rem}\n"
    ".problem>details{margin:.2rem 0 .6rem}.problem>details pre{white-space:pre-wrap;overflow-wrap:anywhere;"
    "background:var(--card);padding:.5rem;border-radius:.3rem;font:inherit}\n"
    ".runs{display:grid;grid-auto-flow:column;grid-auto-columns:minmax(19rem,1fr);gap:.8rem;overflow-x:auto;"
    "padding-bottom:.4rem}\n"
    ".run{border:1px solid var(--line);border-radius:.4rem;padding:.55rem;min-width:0}\n"
    ".run>header{margin-bottom:.5rem}.run>header h4{margin:0;font-size:1rem}\n"
    ".run>header .verdict{font-weight:700}\n"
    ".run>header p{margin:.1rem 0;color:var(--muted);font-size:.85rem}\n"
    ".run.wrong{border-color:var(--bad)}\n"
    ".sample{margin:.4rem 0 .3rem;font-size:.9rem;color:var(--muted)}\n"
    ".note{color:var(--muted);font-size:.85rem}\n"
    ".hist{vertical-align:middle}.hist rect{fill:var(--forced)}\n"
    "pre.text{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font:inherit}\n";

/* v with `decimals` decimals and a suffix, or an en dash when it is not a number. */
static void fmt_num(char *buf, size_t n, double v, int decimals, const char *suffix) {
    if (isfinite(v)) snprintf(buf, n, "%.*f%s", decimals, v, suffix);
    else snprintf(buf, n, "\xe2\x80\x93"); /* en dash */
}

static void group_label(FILE *o, const struct group *G) {
    esc(o, G->mode);
    if (G->has_thr) fprintf(o, " t=%g", G->thr);
}

static void score_hist_svg(FILE *o, const int *h) {
    int max = 0, total = 0;
    for (int i = 0; i < 10; i++) {
        if (h[i] > max) max = h[i];
        total += h[i];
    }
    if (!total) { fputs("\xe2\x80\x93", o); return; }
    fprintf(o, "<svg class=\"hist\" width=\"80\" height=\"22\" viewBox=\"0 0 80 22\" role=\"img\">"
               "<title>judge scores 0-9:");
    for (int i = 0; i < 10; i++) fprintf(o, " %d", h[i]);
    fputs("</title>", o);
    for (int i = 0; i < 10; i++) {
        double hh = 20.0 * h[i] / max;
        fprintf(o, "<rect x=\"%d\" y=\"%.1f\" width=\"7\" height=\"%.1f\"/>", i * 8, 21 - hh, hh);
    }
    fputs("</svg>", o);
}

static void write_summary(FILE *o, const struct report *R) {
    fputs("<section id=\"summary\"><h2>Summary</h2><div class=\"scroll\"><table><thead><tr><th>mode</th>"
          "<th>thr</th><th>n</th><th>accuracy</th><th>95% CI</th><th>mean s</th><th>median s</th>"
          "<th>tokens</th><th>accept</th><th>speedup</th><th>judge scores 0-9</th></tr></thead><tbody>\n",
          o);
    for (size_t i = 0; i < R->n_groups; i++) {
        const struct group *G = &R->groups[i];
        const json_t *g = G->g;
        char acc[32], lo[32], hi[32], mean[32], med[32], tok[32], acp[32], sp[32];
        fmt_num(acc, sizeof acc, 100 * num_of(g, "accuracy"), 1, "%");
        fmt_num(lo, sizeof lo, 100 * num_of(g, "ci_low"), 1, "");
        fmt_num(hi, sizeof hi, 100 * num_of(g, "ci_high"), 1, "");
        fmt_num(mean, sizeof mean, num_of(g, "mean_latency_ms") / 1000, 2, "");
        fmt_num(med, sizeof med, num_of(g, "median_latency_ms") / 1000, 2, "");
        fmt_num(tok, sizeof tok, num_of(g, "mean_tokens"), 0, "");
        fmt_num(acp, sizeof acp, 100 * num_of(g, "acceptance"), 1, "%");
        fmt_num(sp, sizeof sp, num_of(g, "speedup"), 2, "x");
        fputs("<tr><td>", o);
        esc(o, G->mode);
        fputs("</td><td>", o);
        if (G->has_thr) fprintf(o, "%g", G->thr);
        else fputs("\xe2\x80\x93", o);
        fprintf(o, "</td><td>%.0f/%.0f</td><td>%s</td><td>[%s, %s]</td><td>%s</td><td>%s</td><td>%s</td>"
                   "<td>%s</td><td>%s</td><td>",
                num_of(g, "n"), num_of(g, "planned"), acc, lo, hi, mean, med, tok, acp, sp);
        score_hist_svg(o, G->hist);
        fputs("</td></tr>\n", o);
    }
    fputs("</tbody></table></div></section>\n", o);
}

static void write_chart(FILE *o, const struct report *R) {
    fputs("<section id=\"chart\"><h2>Accuracy vs latency</h2>\n", o);
    if (R->svg) fputs(R->svg, o);
    else fputs("<p class=\"note\">No chart.svg in the output directory.</p>", o);
    fputs("\n</section>\n", o);
}

/* 1 correct, 0 wrong, -1 no record */
static int verdict(const json_t *rec) {
    if (!rec) return -1;
    return json_is_true(json_object_get(rec, "correct")) ? 1 : 0;
}

/* Runs disagree on a problem: some sample has both a correct and a wrong record. */
static bool disagree(const struct report *R, size_t p) {
    for (int64_t s = 0; s < R->k; s++) {
        bool ok = false, bad = false;
        for (size_t g = 0; g < R->n_groups; g++) {
            int v = verdict(R->slot[slot_index(R, p, s, g)]);
            ok = ok || v == 1;
            bad = bad || v == 0;
        }
        if (ok && bad) return true;
    }
    return false;
}

static void write_overview(FILE *o, const struct report *R) {
    fputs("<section id=\"overview\"><h2>Problems</h2>\n<p class=\"filter\"><label><input type=\"checkbox\" "
          "id=\"only-disagree\"> only problems where the runs disagree (one right, another wrong)</label></p>\n"
          "<div class=\"scroll\"><table><thead><tr><th>problem</th>",
          o);
    for (size_t g = 0; g < R->n_groups; g++) {
        fputs("<th>", o);
        group_label(o, &R->groups[g]);
        fputs("</th>", o);
    }
    fputs("</tr></thead><tbody>\n", o);
    for (size_t p = 0; p < R->n_ids; p++) {
        fprintf(o, "<tr class=\"%s\"><td><a href=\"#p%zu\">", disagree(R, p) ? "disagree" : "agree", p);
        esc(o, R->ids[p]);
        fputs("</a></td>", o);
        for (size_t g = 0; g < R->n_groups; g++) {
            int ok = 0, bad = 0;
            for (int64_t s = 0; s < R->k; s++) {
                int v = verdict(R->slot[slot_index(R, p, s, g)]);
                ok += v == 1;
                bad += v == 0;
            }
            const char *cls = ok + bad == 0 ? "none" : bad == 0 ? "ok" : ok == 0 ? "wrong" : "wrong";
            if (ok + bad == 0) fprintf(o, "<td class=\"%s\" title=\"no record\">\xe2\x80\x93</td>", cls);
            else if (R->k == 1) fprintf(o, "<td class=\"%s\">%s</td>", cls, ok ? "\xe2\x9c\x93 right" : "\xe2\x9c\x97 wrong");
            else fprintf(o, "<td class=\"%s\">%d/%d</td>", cls, ok, ok + bad);
        }
        fputs("</tr>\n", o);
    }
    fputs("</tbody></table></div></section>\n", o);
}

static void write_score(FILE *o, double score) {
    if (isfinite(score)) fprintf(o, "<span class=\"score\">%.3g</span>", score);
}

static void write_step(FILE *o, const json_t *st, size_t index) {
    const char *author = str_of(st, "author");
    if (!author) author = "?";
    double score = num_of(st, "score"), tokens = num_of(st, "tokens");
    const json_t *draft = json_object_get(st, "rejected_draft");
    char cls[32];
    snprintf(cls, sizeof cls, "%s", author);
    for (char *c = cls; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || *c == '-')) *c = '-';
    fprintf(o, "<li class=\"step a-%s\" data-author=\"%s\"><span class=\"mark\">", cls, cls);
    if (strcmp(author, "small") == 0) {
        fputs("small \xe2\x9c\x93 accepted ", o);
        write_score(o, score);
    } else if (strcmp(author, "base-reject") == 0) {
        fputs("base \xe2\x86\xbb after rejection", o);
    } else if (strcmp(author, "base-forced") == 0) {
        fputs("base (forced)", o);
    } else if (strcmp(author, "small-only") == 0) {
        fputs("small (alone)", o);
    } else {
        esc(o, author);
    }
    fputs("</span>", o);
    fprintf(o, " <span class=\"note\">step %zu", index + 1);
    if (isfinite(tokens)) fprintf(o, ", %.0f tokens", tokens);
    fputs("</span><p class=\"text\">", o);
    esc_json(o, json_object_get(st, "text"));
    fputs("</p>", o);
    if (json_is_string(draft)) {
        double ds = num_of(st, "draft_score");
        fputs("<details><summary>rejected draft", o);
        if (isfinite(ds)) fprintf(o, " (judge score %.3g)", ds);
        fputs("</summary><p class=\"text\">", o);
        esc_json(o, draft);
        fputs("</p></details>", o);
    }
    fputs("</li>\n", o);
}

static void write_run(FILE *o, const struct report *R, size_t g, const json_t *rec) {
    const struct group *G = &R->groups[g];
    int v = verdict(rec);
    fprintf(o, "<article class=\"run %s\" data-mode=\"", v < 0 ? "none" : v ? "ok" : "wrong");
    esc(o, G->mode);
    fputs("\"><header><h4>", o);
    group_label(o, G);
    if (v < 0) {
        fputs("</h4><p>no record</p></header></article>\n", o);
        return;
    }
    fprintf(o, " <span class=\"verdict %s\">%s</span></h4><p>answer <b>", v ? "ok" : "wrong",
            v ? "\xe2\x9c\x93 right" : "\xe2\x9c\x97 wrong");
    const char *ex = str_of(rec, "extracted");
    if (ex) esc(o, ex);
    else fputs("none", o);
    fputs("</b>, truth <b>", o);
    esc(o, str_of(rec, "truth"));
    fputs("</b></p>", o);
    const json_t *st = json_object_get(rec, "stats");
    char lat[32], acc[32];
    fmt_num(lat, sizeof lat, num_of(rec, "latency_ms") / 1000, 2, " s");
    fmt_num(acc, sizeof acc, 100 * num_of(st, "acceptance"), 0, "%");
    fprintf(o, "<p>%s, %.0f tokens, stop ", lat, num_of(rec, "tokens"));
    esc(o, str_of(rec, "stop"));
    fputs("</p>", o);
    if (json_is_object(st) && num_of(st, "judged") > 0)
        fprintf(o, "<p>steps: %.0f small, %.0f base after rejection, %.0f forced; accepted %s of %.0f judged</p>",
                num_of(st, "steps_small"), num_of(st, "steps_base_reject"), num_of(st, "steps_base_forced"), acc,
                num_of(st, "judged"));
    fputs("</header>\n", o);
    const json_t *result = json_object_get(rec, "result");
    const json_t *steps = json_object_get(result, "steps");
    if (json_is_array(steps)) {
        fputs("<ol class=\"steps\">\n", o);
        for (size_t i = 0; i < json_array_size(steps); i++) {
            const json_t *s = json_array_get(steps, i);
            if (json_is_object(s)) write_step(o, s, i);
        }
        fputs("</ol>\n", o);
    } else {
        fputs("<p class=\"note\">Recorded without --save-steps: no step marks.</p><pre class=\"text\">", o);
        esc_json(o, json_object_get(rec, "text"));
        fputs("</pre>\n", o);
    }
    const json_t *answer = json_object_get(rec, "answer");
    if (json_is_string(answer)) {
        fputs("<div class=\"answer-box\"><span class=\"label\">answer</span>", o);
        esc_json(o, answer);
        fputs("</div>\n", o);
    }
    fputs("</article>\n", o);
}

static void write_traces(FILE *o, const struct report *R) {
    fputs("<section id=\"traces\"><h2>Traces</h2>\n<ul class=\"legend\"><li class=\"a-small\">small model, "
          "accepted by the judge (score)</li><li class=\"a-base-reject\">base model after a rejection (the "
          "rejected draft under it)</li><li class=\"a-base-forced\">base model, forced (first N steps, mode "
          "base)</li><li class=\"a-small-only\">small model alone (mode small)</li></ul>\n",
          o);
    for (size_t p = 0; p < R->n_ids; p++) {
        fprintf(o, "<section class=\"problem%s\" id=\"p%zu\" data-id=\"", disagree(R, p) ? " disagree" : "", p);
        esc(o, R->ids[p]);
        fputs("\"><h3>", o);
        esc(o, R->ids[p]);
        fputs("</h3>\n", o);
        if (R->texts[p]) {
            fputs("<details><summary>problem</summary><pre>", o);
            esc(o, R->texts[p]);
            fputs("</pre></details>\n", o);
        }
        for (int64_t s = 0; s < R->k; s++) {
            if (R->k > 1) fprintf(o, "<p class=\"sample\">sample %lld (seed %llu)</p>\n", (long long)s,
                                  (unsigned long long)(R->seed + (uint64_t)s));
            fputs("<div class=\"runs\">\n", o);
            for (size_t g = 0; g < R->n_groups; g++) write_run(o, R, g, R->slot[slot_index(R, p, s, g)]);
            fputs("</div>\n", o);
        }
        fputs("</section>\n", o);
    }
    fputs("</section>\n", o);
}

static void write_html(FILE *o, const struct report *R) {
    const struct sr_web_asset *css = sr_web_asset_find("/steps.css");
    const char *data = str_of(R->summary, "data");
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta name=\"color-scheme\" content=\"light dark\">\n<title>specreason-eval report: ",
          o);
    esc(o, data ? data : "evaluation");
    fputs("</title>\n<style>\n", o);
    if (css) fwrite(css->data, 1, css->len, o);
    fputs(REPORT_CSS, o);
    fputs("</style>\n</head>\n<body>\n<main>\n<h1>Evaluation report</h1>\n<p class=\"meta\">", o);
    esc(o, data ? data : "?");
    fputs(" (", o);
    esc(o, str_of(R->summary, "kind"));
    fprintf(o, "): %zu problems shown, k=%lld, seed %llu; %zu records used of %zu lines", R->n_ids,
            (long long)R->k, (unsigned long long)R->seed, R->n_used, R->n_lines);
    if (R->n_bad) fprintf(o, " (%zu unreadable)", R->n_bad);
    fputs(". Written by ", o);
    esc(o, str_of(R->summary, "tool"));
    fputs(" ", o);
    esc(o, str_of(R->summary, "version"));
    fputs(".</p>\n<nav><a href=\"#summary\">summary</a> \xc2\xb7 <a href=\"#chart\">chart</a> \xc2\xb7 "
          "<a href=\"#overview\">problems</a> \xc2\xb7 <a href=\"#traces\">traces</a></nav>\n",
          o);
    write_summary(o, R);
    write_chart(o, R);
    write_overview(o, R);
    write_traces(o, R);
    fputs("</main>\n</body>\n</html>\n", o);
}

static void report_free(struct report *R) {
    if (R->slot)
        for (size_t i = 0; i < R->cap_slots; i++) json_decref(R->slot[i]);
    free(R->slot);
    for (size_t i = 0; i < R->n_ids; i++) {
        free(R->ids[i]);
        free(R->texts[i]);
    }
    free(R->ids);
    free(R->texts);
    free(R->groups);
    free(R->svg);
    json_decref(R->summary);
}

int report_html_write(const char *dir, const char *html_path, const struct report_problem *problems,
                      size_t n_problems, char *err, size_t err_size) {
    struct report R;
    memset(&R, 0, sizeof R);
    int rc = load_summary(&R, dir, err, err_size);
    R.collect = problems == NULL;
    for (size_t i = 0; !rc && problems && i < n_problems; i++)
        if (add_problem(&R, problems[i].id, problems[i].problem) < 0) rc = errf(err, err_size, "out of memory");
    if (!rc && !grow_slots(&R)) rc = errf(err, err_size, "out of memory");
    if (!rc) rc = load_records(&R, dir, err, err_size);
    if (!rc) {
        R.svg = load_svg(dir);
        for (size_t p = 0; p < R.n_ids; p++)
            for (int64_t s = 0; s < R.k; s++)
                for (size_t g = 0; g < R.n_groups; g++) {
                    const json_t *h = json_object_get(json_object_get(R.slot[slot_index(&R, p, s, g)], "stats"),
                                                      "score_hist");
                    for (size_t i = 0; i < 10 && i < json_array_size(h); i++)
                        R.groups[g].hist[i] += (int)json_integer_value(json_array_get(h, i));
                }
    }
    char *tmp = NULL;
    if (!rc) {
        size_t n = strlen(html_path) + 5;
        tmp = malloc(n);
        if (!tmp) rc = errf(err, err_size, "out of memory");
        else snprintf(tmp, n, "%s.tmp", html_path);
    }
    if (!rc) {
        FILE *o = fopen(tmp, "wb");
        if (!o) {
            rc = errf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
        } else {
            write_html(o, &R);
            bool bad = ferror(o) != 0;
            if (fclose(o) != 0) bad = true;
            if (bad) rc = errf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
            else if (rename(tmp, html_path) != 0)
                rc = errf(err, err_size, "cannot rename %s to %s: %s", tmp, html_path, strerror(errno));
            if (rc) remove(tmp);
        }
    }
    free(tmp);
    report_free(&R);
    return rc;
}
