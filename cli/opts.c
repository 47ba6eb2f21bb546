/*
 * opts.c: see opts.h.
 */
#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int opt_bad(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see %s --help)\n", prog);
    va_end(ap);
    return 2;
}

static int set_opt(const char *prog, const struct opt *o, const char *val) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG: *(bool *)o->dst = true; return 0;
    case OPT_STR: *(const char **)o->dst = val; return 0;
    case OPT_INT: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || (double)v < o->lo || (double)v > o->hi)
            return opt_bad(prog, "--%s expects an integer in [%.0f, %.0f]", o->name, o->lo, o->hi);
        *(int64_t *)o->dst = v;
        return 0;
    }
    case OPT_U64: {
        if (val[0] == '-') return opt_bad(prog, "--%s expects a non-negative integer", o->name);
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end) return opt_bad(prog, "--%s expects a non-negative integer", o->name);
        *(uint64_t *)o->dst = v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < o->lo || v > o->hi)
            return opt_bad(prog, "--%s expects a number in [%g, %g]", o->name, o->lo, o->hi);
        *(double *)o->dst = v;
        return 0;
    }
    }
    return 0;
}

int opt_parse(const char *prog, const struct opt *opts, size_t n, int argc, char **argv,
              void (*on_set)(const struct opt *o, void *user), void *user) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct opt *o = NULL;
        const char *val = NULL;
        if (a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (size_t k = 0; k < n; k++)
                if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) o = &opts[k];
            if (eq) val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (size_t k = 0; k < n; k++)
                if (opts[k].short_name == a[1]) o = &opts[k];
        }
        if (!o) return opt_bad(prog, "unknown option '%s'", a);
        if (o->kind == OPT_FLAG) {
            if (val) return opt_bad(prog, "--%s takes no value", o->name);
        } else if (!val) {
            if (i + 1 >= argc) return opt_bad(prog, "--%s needs a value", o->name);
            val = argv[++i];
        }
        int rc = set_opt(prog, o, val ? val : "");
        if (rc) return rc;
        if (on_set) on_set(o, user);
    }
    return 0;
}

void opt_usage(FILE *f, const struct opt *opts, size_t n, int width) {
    for (size_t i = 0; i < n; i++) {
        char left[64];
        const char *arg = opts[i].kind == OPT_FLAG ? "" : opts[i].kind == OPT_STR ? " S" : opts[i].kind == OPT_FLOAT ? " F" : " N";
        if (opts[i].short_name) snprintf(left, sizeof left, "-%c, --%s%s", opts[i].short_name, opts[i].name, arg);
        else snprintf(left, sizeof left, "    --%s%s", opts[i].name, arg);
        fprintf(f, "  %-*s %s\n", width, left, opts[i].help);
    }
}

int opt_pick(const char *prog, const char *val, const char *what, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (strcmp(val, names[i]) == 0) { *out = i; return 0; }
    return opt_bad(prog, "unknown %s '%s'", what, val);
}
