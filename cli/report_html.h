/*
 * report_html.h: the evaluation report of specreason-eval (--html FILE): one self-contained HTML
 * file with the summary table, the accuracy-versus-latency chart and every problem's traces side
 * by side per mode and threshold, each step marked by its author and judge score, so that one can
 * find where the judge was wrong. It reads only the files of an output directory
 * (summary.json, chart.svg, results.jsonl); all model and user text is HTML-escaped.
 */
#ifndef SR_CLI_REPORT_HTML_H
#define SR_CLI_REPORT_HTML_H

#include <stddef.h>

struct report_problem {
    const char *id;      /* the record key's problem id */
    const char *problem; /* the problem statement shown above its traces; NULL = not shown */
};

/* Writes the report of the evaluation in dir to html_path (through a temporary file, renamed at
 * the end). The groups (modes, thresholds, settings hashes), k and seed come from
 * dir/summary.json; a group's traces are the latest records of dir/results.jsonl with its mode,
 * threshold and (when summary.json names one) settings hash, for samples 0..k-1 at seed + sample.
 * problems: the problems to show, in this order; NULL = every problem of the records, in the
 * order of first appearance. Returns 0, or 1 with a message in err (err_size bytes). */
int report_html_write(const char *dir, const char *html_path, const struct report_problem *problems,
                      size_t n_problems, char *err, size_t err_size);

#endif
