/*
 * template.c: see template.h.
 */
#include "template.h"

#include <string.h>

#include "util.h"

/* The user message: one pass over tmpl replacing {problem} and, when choices is set,
 * {ans_a}..{ans_d}. Substituted text is never rescanned, so a problem or a choice that contains
 * "{problem}" stays as it is. */
char *cli_fill_template(const char *tmpl, const char *problem, const char *const *choices) {
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

bool cli_template_has_choices(const char *tmpl) {
    return strstr(tmpl, "{ans_a}") || strstr(tmpl, "{ans_b}") || strstr(tmpl, "{ans_c}") || strstr(tmpl, "{ans_d}");
}
