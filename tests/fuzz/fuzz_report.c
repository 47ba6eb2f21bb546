/*
 * fuzz_report.c: libFuzzer target for the evaluation report (cli/report_html.c). The input is a
 * results.jsonl; the summary is fixed (spec t=7 and base, k=2). The report of any input must be
 * written, and no text from the input may come out as markup: the output never holds "<script",
 * "<img" or "<iframe" (the report writes none of them itself).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report_html.h"

static char g_dir[64];

static int setup(void) {
    if (g_dir[0]) return 0;
    snprintf(g_dir, sizeof g_dir, "/tmp/sr-fuzz-report-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char p[128];
    snprintf(p, sizeof p, "%s/summary.json", g_dir);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    fputs("{\"tool\":\"specreason-eval\",\"version\":\"0\",\"data\":\"d<script>\",\"kind\":\"math\",\"k\":2,\"seed\":0,"
          "\"groups\":[{\"mode\":\"base\",\"threshold\":null,\"settings\":null,\"n\":1,\"planned\":2},"
          "{\"mode\":\"spec\",\"threshold\":7,\"settings\":null,\"n\":1,\"planned\":2}]}\n",
          f);
    return fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (setup() != 0) return 0;
    char in[128], out[128];
    snprintf(in, sizeof in, "%s/results.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/report.html", g_dir);
    FILE *f = fopen(in, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    char err[256];
    if (report_html_write(g_dir, out, NULL, 0, err, sizeof err) != 0) {
        fprintf(stderr, "report_html_write failed: %s\n", err);
        abort();
    }
    f = fopen(out, "rb");
    if (!f) abort();
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    fclose(f);
    if (!buf) return 0;
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char)(buf[i] - 'A' + 'a');
    if (strstr(buf, "<script") || strstr(buf, "<img") || strstr(buf, "<iframe")) {
        fprintf(stderr, "markup from the input reached the report\n");
        abort();
    }
    free(buf);
    return 0;
}
