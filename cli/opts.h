/*
 * opts.h: command-line options from one table, shared by the specreason tools: the table drives
 * parsing (--name VALUE, --name=VALUE, -x VALUE), range checks with strtol/strtod and --help.
 * Bad values are rejected naming the option and its range, never clamped.
 */
#ifndef SR_CLI_OPTS_H
#define SR_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum opt_kind { OPT_FLAG, OPT_STR, OPT_INT, OPT_U64, OPT_FLOAT };

struct opt {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 = none */
    enum opt_kind kind;
    void *dst;        /* bool, const char *, int64_t, uint64_t or double */
    double lo, hi;    /* inclusive range for numbers */
    const char *help;
};

/* Prints "PROG: message" and the --help hint to stderr; returns 2 (usage error). */
int opt_bad(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses argv into the table's destinations; on_set (may be NULL) is called for each option
 * given. Returns 0, or 2 after printing the error. */
int opt_parse(const char *prog, const struct opt *opts, size_t n, int argc, char **argv,
              void (*on_set)(const struct opt *o, void *user), void *user);
/* The option list for --help, the left column `width` wide. */
void opt_usage(FILE *f, const struct opt *opts, size_t n, int width);
/* Index of val in names, or 2 after printing "unknown WHAT 'val'". */
int opt_pick(const char *prog, const char *val, const char *what, const char *const *names, int n, int *out);

#endif
