/*
 * cli/eval/chart.c: OUT/chart.svg, accuracy against latency (the shape of the paper's Figure 3).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"

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
char *chart_svg(const struct group *G, size_t ng, const struct sr_dataset *ds, size_t n_problems) {
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

