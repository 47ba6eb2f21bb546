/*
 * testutil.h: minimal checks for the C tests. Each failed check prints file:line and the
 * expression; test_summary() prints "N passed, N failed" and returns the exit status.
 */
#ifndef SR_TESTUTIL_H
#define SR_TESTUTIL_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) {                                                                 \
            t_pass++;                                                               \
        } else {                                                                    \
            t_fail++;                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECK_STR(got, want)                                                                 \
    do {                                                                                     \
        const char *g_ = (got), *w_ = (want);                                                \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                                               \
            t_pass++;                                                                        \
        } else {                                                                             \
            t_fail++;                                                                        \
            fprintf(stderr, "%s:%d: strings differ:\n  got:  [%s]\n  want: [%s]\n", __FILE__, \
                    __LINE__, g_ ? g_ : "(null)", w_ ? w_ : "(null)");                       \
        }                                                                                    \
    } while (0)

static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
