/*
 * specreason_grade.h: answer extraction and grading for math (MATH-500, AIME) and multiple-choice
 * (GPQA) benchmarks.
 *
 * The final answer of a model output is the last \boxed{...} (brace-matched), as recommended by
 * the SpecReason notes (§3); answers are compared after LaTeX normalisation, numerically when both
 * sides evaluate to numbers, and element-wise for tuples, intervals and matrices.
 *
 * All functions are pure and thread-safe; they never print, exit or abort. Time and memory are
 * linear in the input size (up to a constant factor), and nesting depth is bounded, so untrusted
 * model output is safe to pass in.
 *
 *   char *ans = sr_grade_extract(out, out_len);              // "\frac{3}{4}" or NULL
 *   bool ok = ans && sr_grade_equal(ans, problem->answer);
 *   free(ans);
 */
#ifndef SPECREASON_GRADE_H
#define SPECREASON_GRADE_H

#include <stdbool.h>
#include <stddef.h>

#include "specreason.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The final answer in text[0..len) (need not be NUL-terminated): the content of the last
 * \boxed{...} or \fbox{...} with nested braces matched (an unclosed or empty one is skipped in
 * favour of an earlier complete one), or of the space form "\boxed 5" (up to the next space, '$'
 * or the end). Without any box, the rest of the last line that says "Answer: X", "ANSWER: X" or
 * "answer is X" (trimmed; surrounding $...$ and a final period removed).
 * Returns a malloc'd NUL-terminated string (caller frees with free()), or NULL if there is no
 * answer (or on allocation failure). */
SR_API char *sr_grade_extract(const char *text, size_t len);

/* A normalised form of a LaTeX answer, for comparison (rules documented in grade.c): spaces,
 * $, \left/\right, thin spaces, \text{} wrappers, units after numbers, degrees, percent signs,
 * "x =" prefixes and thousands separators are removed; \dfrac/\tfrac become \frac; \frac12 and
 * \sqrt2 get braces; plain numbers are canonical ("1,000.50" -> "1000.5", ".5" -> "0.5").
 * Returns a malloc'd string (caller frees with free()), or NULL if ans is NULL or on allocation
 * failure. */
SR_API char *sr_grade_normalize(const char *ans);

/* True iff the predicted answer is equivalent to the ground truth: the normalised strings are
 * equal; or both evaluate to finite numbers (integers, decimals, \frac, a/b, \sqrt, \pi, powers,
 * mixed numbers "1\frac{4}{5}") equal within 1e-6 relative; or both are tuples, intervals, sets,
 * unions or matrices with the same brackets and separators whose elements compare equal in
 * order. Single words compare case-insensitively. False if either is NULL or normalises to "". */
SR_API bool sr_grade_equal(const char *pred, const char *truth);

/* The multiple-choice letter 'A'..'D' chosen in text[0..len): from the final \boxed{X}
 * (also "\boxed{(X)}", "\boxed{\text{X}}"), else the last "answer: X" / "answer is (X)", else the
 * last "(X)". Returns 0 if none is found. */
SR_API char sr_grade_choice(const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
