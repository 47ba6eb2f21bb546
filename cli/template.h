/*
 * template.h: the user message around a problem, filled by the tools themselves (so that a
 * problem or a choice containing "{problem}" is never rescanned): {problem} and, for multiple
 * choice, {ans_a}..{ans_d}.
 */
#ifndef SR_CLI_TEMPLATE_H
#define SR_CLI_TEMPLATE_H

#include <stdbool.h>

/* One pass over tmpl replacing {problem} and, when choices (four strings) is set,
 * {ans_a}..{ans_d}. Malloc'd; NULL on allocation failure. */
char *cli_fill_template(const char *tmpl, const char *problem, const char *const *choices);
/* Whether tmpl holds any of {ans_a}..{ans_d}. */
bool cli_template_has_choices(const char *tmpl);

#endif
