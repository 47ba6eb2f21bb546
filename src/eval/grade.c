/*
 * grade.c: final-answer extraction, LaTeX answer normalisation and equivalence (see
 * include/specreason_grade.h). Used by the CLI/bench evaluation on MATH-500, AIME and GPQA.
 *
 * Everything here treats its input as untrusted model output: every pass is linear (brace matches
 * are precomputed once instead of rescanned), the numeric evaluator's recursion is capped at
 * EVAL_MAX_DEPTH, and nothing is printed or aborted. The normalisation rules follow the spirit of
 * Hendrycks et al.'s MATH `strip_string`, extended for model outputs (see normalize_*()).
 */
#include "specreason_grade.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define EVAL_MAX_DEPTH 64
#define REL_TOL 1e-6

static bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

/* True iff s[i..n) starts with the LaTeX command `\name` not followed by another letter. */
static bool at_cmd(const char *s, size_t n, size_t i, const char *name) {
    size_t l = strlen(name);
    if (i >= n || s[i] != '\\' || n - i - 1 < l || memcmp(s + i + 1, name, l) != 0) return false;
    return i + 1 + l >= n || !is_alpha((unsigned char)s[i + 1 + l]);
}

/* ------------------------------------------------------------------------------------------ */
/* Extraction                                                                                 */

/* Trims [*b, *e) of whitespace. */
static void trim(const char *s, size_t *b, size_t *e) {
    while (*b < *e && is_space((unsigned char)s[*b])) (*b)++;
    while (*e > *b && is_space((unsigned char)s[*e - 1])) (*e)--;
}

/* Content of the box command whose name ends at `i` (just after "\boxed"/"\fbox"), searching
 * for its closing brace before `bound`. Returns 1 with [*cb, *ce) set, 0 if it is empty, -1 if it
 * is not closed before bound. */
static int box_content(const char *t, size_t i, size_t bound, size_t *cb, size_t *ce) {
    size_t j = i;
    while (j < bound && is_space((unsigned char)t[j])) j++;
    if (j < bound && t[j] == '{') {
        size_t depth = 0;
        for (size_t k = j; k < bound; k++) {
            char c = t[k];
            if (c == '\\') { k++; continue; } /* \{ \} \\ are not grouping braces */
            if (c == '{') depth++;
            else if (c == '}' && --depth == 0) {
                *cb = j + 1;
                *ce = k;
                trim(t, cb, ce);
                return *ce > *cb ? 1 : 0;
            }
        }
        return -1;
    }
    /* Space form "\boxed 5": up to the next whitespace, '$' or the end. */
    size_t k = j;
    while (k < bound && !is_space((unsigned char)t[k]) && t[k] != '$') k++;
    *cb = j;
    *ce = k;
    return k > j ? 1 : 0;
}

/* The last complete box. Candidates are visited from the end; an unclosed candidate at q means no
 * earlier candidate can close after q (the text after q never returns to q's depth), so the scan
 * bound shrinks to q, and an empty box cannot contain another candidate: the total work is linear. */
static bool find_box(const char *t, size_t len, size_t *cb, size_t *ce) {
    size_t bound = len;
    for (size_t i = len; i-- > 0;) {
        if (t[i] != '\\') continue;
        size_t name_end;
        if (at_cmd(t, len, i, "boxed")) name_end = i + 6;
        else if (at_cmd(t, len, i, "fbox")) name_end = i + 5;
        else continue;
        if (i >= bound) continue;
        int r = box_content(t, name_end, bound, cb, ce);
        if (r > 0) return true;
        if (r < 0) bound = i;
    }
    return false;
}

/* Case-insensitive "answer" at i, starting a word. */
static bool at_answer_word(const char *t, size_t len, size_t i) {
    static const char w[] = "answer";
    if (len - i < 6) return false;
    for (size_t k = 0; k < 6; k++)
        if (lower((unsigned char)t[i + k]) != (unsigned char)w[k]) return false;
    return i == 0 || !is_alpha((unsigned char)t[i - 1]);
}

/* After an "answer" word at i: skips "**", spaces and then ':' or "is" (optionally "is:").
 * Returns the position after the marker, or 0 if the word is not an answer marker. */
static size_t answer_marker_end(const char *t, size_t len, size_t i) {
    size_t j = i + 6;
    while (j < len && (t[j] == '*' || t[j] == ' ' || t[j] == '\t')) j++;
    if (j < len && t[j] == ':') return j + 1;
    if (len - j >= 2 && lower((unsigned char)t[j]) == 'i' && lower((unsigned char)t[j + 1]) == 's' &&
        (len - j == 2 || !is_alpha((unsigned char)t[j + 2]))) {
        j += 2;
        while (j < len && (t[j] == ' ' || t[j] == '*')) j++;
        if (j < len && t[j] == ':') j++;
        return j;
    }
    return 0;
}

/* Removes one layer of a wrapper pair from [*b, *e) if present at both ends. */
static bool unwrap(const char *t, size_t *b, size_t *e, const char *open, const char *close) {
    size_t lo = strlen(open), lc = strlen(close);
    if (*e - *b < lo + lc || memcmp(t + *b, open, lo) != 0 || memcmp(t + *e - lc, close, lc) != 0)
        return false;
    *b += lo;
    *e -= lc;
    trim(t, b, e);
    return true;
}

static bool find_answer_line(const char *t, size_t len, size_t *cb, size_t *ce) {
    for (size_t i = len; i-- > 0;) {
        if (!at_answer_word(t, len, i)) continue;
        size_t j = answer_marker_end(t, len, i);
        if (!j) continue;
        size_t e = j;
        while (e < len && t[e] != '\n' && t[e] != '\r') e++;
        size_t b = j;
        trim(t, &b, &e);
        for (int round = 0; round < 4 && e > b; round++) {
            /* markdown bold "**Answer:** 12" and final periods */
            while (e > b && (t[e - 1] == '.' || t[e - 1] == '*')) { e--; trim(t, &b, &e); }
            while (e > b && t[b] == '*') { b++; trim(t, &b, &e); }
            bool any = unwrap(t, &b, &e, "$$", "$$") ||
                       unwrap(t, &b, &e, "$", "$") || unwrap(t, &b, &e, "\\(", "\\)") ||
                       unwrap(t, &b, &e, "\\[", "\\]");
            if (!any) break;
        }
        if (e > b) {
            *cb = b;
            *ce = e;
            return true;
        }
    }
    return false;
}

char *sr_grade_extract(const char *text, size_t len) {
    if (!text) return NULL;
    size_t b, e;
    if (find_box(text, len, &b, &e) || find_answer_line(text, len, &b, &e))
        return sr_strndup(text + b, e - b);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Normalisation                                                                              */

/*
 * Pass 1 (normalize_commands), one left-to-right scan with a stack of open braces:
 *  - whitespace (incl. newlines, '~', "\ ") becomes a space; all spaces are removed after
 *    pass 2: "2 \sqrt{5}" -> "2\sqrt{5}";
 *  - '$' and "\$" (math delimiters, currency) are dropped: "\$18.90" -> "18.90";
 *  - '%' and "\%" are dropped: "10\%" -> "10";
 *  - thin/medium spaces "\!", "\,", "\;", "\:" are dropped: "32,\!348" -> "32,348"; the
 *    braced separator "{,}" becomes ',': "1{,}000" -> "1,000";
 *  - \left, \right, \bigl, \bigr, \big, \Big (and an invisible "." delimiter after them) are
 *    dropped: "\left( 3, \pi \right)" -> "( 3, \pi )";
 *  - \displaystyle, \textstyle are dropped; \dfrac, \tfrac become \frac;
 *  - degree marks "^\circ", "^{\circ}", "\circ", "\degree" and U+00B0 are dropped: "90^\circ" -> "90";
 *  - wrappers \text, \textbf, \textit, \textrm, \textsf, \textup, \textnormal, \mbox, \hbox,
 *    \mathrm, \mathbf, \mathit, \mathsf, \boxed, \fbox are unwrapped: "\text{(C)}" -> "(C)"
 *    (the brace after the command is dropped together with its matching '}');
 *  - \le, \ge, \ne become \leq, \geq, \neq; "\begin{bmatrix}" becomes "\begin{pmatrix}";
 *  - a few Unicode symbols become LaTeX: U+2212 minus -> '-', pi, infinity, sqrt, times, cdot,
 *    plus-minus, <=, >=, union.
 */
static const char *const unwrap_cmds[] = {
    "text", "textbf", "textit", "textrm", "textsf", "textup", "textnormal", "mbox", "hbox",
    "mathrm", "mathbf", "mathit", "mathsf", "boxed", "fbox",
};

static bool name_is(const char *s, size_t n, const char *name) {
    return strlen(name) == n && memcmp(s, name, n) == 0;
}

static bool normalize_commands(const char *in, size_t n, struct sr_buf *out) {
    /* keep[k]: whether the k-th currently open brace is printed when it closes. */
    unsigned char *keep = malloc(n + 1);
    if (!keep) return false;
    size_t depth = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        if (is_space(c) || c == '~') { sr_buf_append(out, " ", 1); i++; continue; }
        if (c == '$' || c == '%') { i++; continue; }
        if (c == '{' && n - i >= 3 && in[i + 1] == ',' && in[i + 2] == '}') { /* "1{,}000" */
            sr_buf_append(out, ",", 1);
            i += 3;
            continue;
        }
        if (c == '{') { keep[depth++] = 1; sr_buf_append(out, "{", 1); i++; continue; }
        if (c == '}') {
            if (depth == 0 || keep[--depth]) sr_buf_append(out, "}", 1);
            i++;
            continue;
        }
        if (c == '^') {
            size_t j = i + 1;
            while (j < n && in[j] == ' ') j++;
            if (at_cmd(in, n, j, "circ")) { i = j + 5; continue; }
            if (j < n && in[j] == '{') {
                size_t k = j + 1;
                while (k < n && in[k] == ' ') k++;
                if (at_cmd(in, n, k, "circ")) {
                    k += 5;
                    while (k < n && in[k] == ' ') k++;
                    if (k < n && in[k] == '}') { i = k + 1; continue; }
                }
            }
            sr_buf_append(out, "^", 1);
            i++;
            continue;
        }
        if (c >= 0x80) {
            static const struct { const char *utf8, *latex; } map[] = {
                {"\xE2\x88\x92", "-"},      {"\xCF\x80", "\\pi "},      {"\xE2\x88\x9E", "\\infty "},
                {"\xE2\x88\x9A", "\\sqrt"}, {"\xC3\x97", "\\times "},   {"\xC2\xB7", "\\cdot "},
                {"\xC2\xB1", "\\pm "},      {"\xE2\x89\xA4", "\\leq "}, {"\xE2\x89\xA5", "\\geq "},
                {"\xE2\x88\xAA", "\\cup "}, {"\xC2\xB0", ""},
            };
            bool hit = false;
            for (size_t m = 0; m < sizeof map / sizeof map[0]; m++) {
                size_t l = strlen(map[m].utf8);
                if (n - i >= l && memcmp(in + i, map[m].utf8, l) == 0) {
                    sr_buf_puts(out, map[m].latex);
                    i += l;
                    hit = true;
                    break;
                }
            }
            if (!hit) { sr_buf_append(out, in + i, 1); i++; }
            continue;
        }
        if (c != '\\') { /* a run of ordinary characters */
            size_t j = i + 1;
            while (j < n && !strchr(" \t\n\r\f\v~$%{}^\\", in[j]) && (unsigned char)in[j] < 0x80) j++;
            sr_buf_append(out, in + i, j - i);
            i = j;
            continue;
        }
        /* A backslash. */
        if (i + 1 >= n) { sr_buf_append(out, "\\", 1); i++; continue; }
        unsigned char d = (unsigned char)in[i + 1];
        if (d == '\\' || d == '{' || d == '}') { sr_buf_append(out, in + i, 2); i += 2; continue; }
        if (d == '!' || d == ',' || d == ';' || d == ':' || d == '$' || d == '%') { i += 2; continue; }
        if (is_space(d)) { sr_buf_append(out, " ", 1); i += 2; continue; }
        if (!is_alpha(d)) { sr_buf_append(out, in + i, 2); i += 2; continue; }
        size_t ns = i + 1, ne = ns;
        while (ne < n && is_alpha((unsigned char)in[ne])) ne++;
        const char *name = in + ns;
        size_t nl = ne - ns;
        i = ne;
        if (name_is(name, nl, "left") || name_is(name, nl, "right") || name_is(name, nl, "bigl") ||
            name_is(name, nl, "bigr") || name_is(name, nl, "big") || name_is(name, nl, "Big") ||
            name_is(name, nl, "Bigl") || name_is(name, nl, "Bigr")) {
            if (i < n && in[i] == '.') i++;
            continue;
        }
        if (name_is(name, nl, "displaystyle") || name_is(name, nl, "textstyle") ||
            name_is(name, nl, "circ") || name_is(name, nl, "degree"))
            continue;
        if (name_is(name, nl, "dfrac") || name_is(name, nl, "tfrac")) { sr_buf_puts(out, "\\frac"); continue; }
        if (name_is(name, nl, "le")) { sr_buf_puts(out, "\\leq"); continue; }
        if (name_is(name, nl, "ge")) { sr_buf_puts(out, "\\geq"); continue; }
        if (name_is(name, nl, "ne")) { sr_buf_puts(out, "\\neq"); continue; }
        bool is_wrapper = false;
        for (size_t m = 0; m < sizeof unwrap_cmds / sizeof unwrap_cmds[0]; m++)
            if (name_is(name, nl, unwrap_cmds[m])) is_wrapper = true;
        if (is_wrapper) {
            size_t j = i;
            while (j < n && in[j] == ' ') j++;
            if (j < n && in[j] == '{') {
                keep[depth++] = 0;
                i = j + 1;
            }
            continue;
        }
        sr_buf_append(out, in + ns - 1, nl + 1);
        if ((name_is(name, nl, "begin") || name_is(name, nl, "end")) && n - i >= 9 &&
            memcmp(in + i, "{bmatrix}", 9) == 0) {
            sr_buf_puts(out, "{pmatrix}");
            i += 9;
        }
    }
    free(keep);
    return !out->oom;
}

/*
 * Pass 2 (strip_units): unit words at the very end, after a number, are dropped, repeatedly and
 * with an optional "^2"/"^3"/"^{2}"/"^{3}": "864 inches^2" -> "864", "5.4 cents" -> "5.4",
 * "\frac{270}7 degrees" -> "\frac{270}7", "12 square units" -> "12". A unit must be a whole
 * word preceded (after spaces) by a digit, '}', ')', "\pi" or another unit word, so variables
 * and words such as "\text{east}" survive. Returns the new length (the string is cut in place).
 */
static const char *const unit_words[] = {
    "cm", "mm", "km", "meter", "meters", "metre", "metres", "centimeter", "centimeters",
    "kilometer", "kilometers", "millimeter", "millimeters", "inch", "inches", "foot", "feet", "ft",
    "yard", "yards", "yd", "mile", "miles", "mph", "kg", "gram", "grams", "kilogram", "kilograms",
    "pound", "pounds", "lb", "lbs", "ounce", "ounces", "oz", "second", "seconds", "sec", "minute",
    "minutes", "min", "hour", "hours", "hr", "hrs", "day", "days", "week", "weeks", "month",
    "months", "year", "years", "degree", "degrees", "radian", "radians", "cent", "cents", "dollar",
    "dollars", "unit", "units", "square", "sq", "cubic", "liter", "liters", "litre", "litres",
    "gallon", "gallons", "percent",
};

/* Length of a unit word ending at e (s[..e)), preceded by a non-letter non-backslash, or 0. */
static size_t unit_at_end(const char *s, size_t e) {
    size_t b = e;
    while (b > 0 && is_alpha((unsigned char)s[b - 1])) b--;
    if (b == e || (b > 0 && s[b - 1] == '\\')) return 0;
    for (size_t m = 0; m < sizeof unit_words / sizeof unit_words[0]; m++)
        if (name_is(s + b, e - b, unit_words[m])) return e - b;
    return 0;
}

static size_t strip_units(char *s, size_t n) {
    for (;;) {
        while (n > 0 && s[n - 1] == ' ') n--;
        size_t e = n;
        /* optional power after the unit */
        if (e >= 2 && s[e - 2] == '^' && (s[e - 1] == '2' || s[e - 1] == '3')) e -= 2;
        else if (e >= 4 && s[e - 4] == '^' && s[e - 3] == '{' && (s[e - 2] == '2' || s[e - 2] == '3') &&
                 s[e - 1] == '}')
            e -= 4;
        size_t ul = unit_at_end(s, e);
        if (!ul) break;
        size_t b = e - ul, p = b;
        while (p > 0 && s[p - 1] == ' ') p--;
        if (p == 0) break;
        unsigned char c = (unsigned char)s[p - 1];
        bool ok = is_digit(c) || c == '}' || c == ')' || unit_at_end(s, p) > 0 ||
                  (p >= 3 && memcmp(s + p - 3, "\\pi", 3) == 0);
        if (!ok) break;
        n = b;
    }
    s[n] = '\0';
    return n;
}

/* match[i] = index of the brace matching the unescaped '{' or '}' at i, or SIZE_MAX. */
static size_t *brace_matches(const char *s, size_t n) {
    size_t *match = malloc((n + 1) * sizeof *match);
    size_t *stack = malloc((n + 1) * sizeof *stack);
    if (!match || !stack) { free(match); free(stack); return NULL; }
    size_t sp = 0;
    for (size_t i = 0; i < n; i++) {
        match[i] = SIZE_MAX;
        if (s[i] == '\\' && i + 1 < n) { match[++i] = SIZE_MAX; continue; }
        if (s[i] == '{') stack[sp++] = i;
        else if (s[i] == '}' && sp > 0) {
            size_t o = stack[--sp];
            match[o] = i;
            match[i] = o;
        }
    }
    free(stack);
    return match;
}

/* End (exclusive) of a one-token macro argument at j: a {group}, a \command or one character;
 * j itself when there is none. */
static size_t arg_end(const char *s, size_t n, const size_t *match, size_t j) {
    if (j >= n || s[j] == '}' || s[j] == '^' || s[j] == '_') return j;
    if (s[j] == '{') return match[j] != SIZE_MAX ? match[j] + 1 : j;
    if (s[j] == '\\') {
        size_t k = j + 1;
        while (k < n && is_alpha((unsigned char)s[k])) k++;
        return k > j + 1 ? k : j;
    }
    return j + 1;
}

/*
 * Pass 3 (normalize_args), on the string without spaces:
 *  - \frac arguments get braces: "\frac12" -> "\frac{1}{2}", "\frac{270}7" -> "\frac{270}{7}",
 *    "\frac\pi2" -> "\frac{\pi}{2}"; \sqrt likewise: "\sqrt2" -> "\sqrt{2}" ("\sqrt[3]{x}" kept);
 *  - braces around one character after '^' or '_' are dropped: "4210_{5}" -> "4210_5",
 *    "x^{2}" -> "x^2".
 * Edits are recorded per position first (brace matches are precomputed), then applied in one
 * scan, so the pass is linear.
 */
struct edit {
    uint32_t open_before;  /* '{' to insert before this position */
    uint32_t close_after;  /* '}' to insert after this position */
    bool drop;             /* drop this character */
};

static void wrap_arg(struct edit *ed, const char *s, size_t n, const size_t *match, size_t j, size_t *end) {
    size_t e = arg_end(s, n, match, j);
    *end = e;
    if (e == j || s[j] == '{') return;
    if (ed[j].open_before < UINT32_MAX) ed[j].open_before++;
    if (ed[e - 1].close_after < UINT32_MAX) ed[e - 1].close_after++;
}

static bool normalize_args(const char *s, size_t n, struct sr_buf *out) {
    size_t *match = brace_matches(s, n);
    struct edit *ed = calloc(n + 1, sizeof *ed);
    if (!match || !ed) { free(match); free(ed); return false; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && !is_alpha((unsigned char)s[i + 1])) { i++; continue; }
        if (at_cmd(s, n, i, "frac")) {
            size_t e1, e2;
            wrap_arg(ed, s, n, match, i + 5, &e1);
            if (e1 > i + 5) wrap_arg(ed, s, n, match, e1, &e2);
        } else if (at_cmd(s, n, i, "sqrt")) {
            size_t e1;
            if (i + 5 < n && s[i + 5] != '[') wrap_arg(ed, s, n, match, i + 5, &e1);
        } else if ((s[i] == '^' || s[i] == '_') && i + 3 < n && s[i + 1] == '{' && match[i + 1] == i + 3 &&
                   s[i + 2] != '\\' && s[i + 2] != '{') {
            ed[i + 1].drop = true;
            ed[i + 3].drop = true;
        }
    }
    for (size_t i = 0; i < n;) {
        if (!ed[i].open_before && !ed[i].close_after && !ed[i].drop) { /* unedited run */
            size_t j = i + 1;
            while (j < n && !ed[j].open_before && !ed[j].close_after && !ed[j].drop) j++;
            sr_buf_append(out, s + i, j - i);
            i = j;
            continue;
        }
        for (uint32_t k = 0; k < ed[i].open_before; k++) sr_buf_append(out, "{", 1);
        if (!ed[i].drop) sr_buf_append(out, s + i, 1);
        for (uint32_t k = 0; k < ed[i].close_after; k++) sr_buf_append(out, "}", 1);
        i++;
    }
    free(match);
    free(ed);
    return !out->oom;
}

/* Number of redundant parenthesis layers around all of s: k such that for each j < k, s[j] is
 * '(' whose matching ')' is s[n-1-j] and that holds no ',' directly. One pass with a stack over
 * (), [] and {} together, so "((((1))))" is linear, not quadratic. */
static size_t outer_parens(const char *s, size_t n) {
    if (n < 2 || s[0] != '(' || s[n - 1] != ')') return 0;
    size_t *match = malloc(n * sizeof *match);
    size_t *stack = malloc(n * sizeof *stack);
    bool *comma = calloc(n, sizeof *comma);
    size_t k = 0;
    if (!match || !stack || !comma) goto done;
    size_t sp = 0;
    for (size_t i = 0; i < n; i++) {
        match[i] = SIZE_MAX;
        char c = s[i];
        if (c == '\\') { if (i + 1 < n) match[++i] = SIZE_MAX; continue; }
        if (c == '(' || c == '[' || c == '{') stack[sp++] = i;
        else if ((c == ')' || c == ']' || c == '}') && sp > 0) match[stack[--sp]] = i;
        else if (c == ',' && sp > 0) comma[stack[sp - 1]] = true;
    }
    while (2 * k + 2 <= n && s[k] == '(' && match[k] == n - 1 - k && !comma[k]) k++;
done:
    free(match);
    free(stack);
    free(comma);
    return k;
}

/* True iff s is -?digits(,ddd)*(.digits)? or -?.digits; sets *groups_ok for valid 3-digit groups. */
static bool plain_number(const char *s, size_t n, bool *groups_ok) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    size_t first = 0, digits = 0;
    bool commas = false, ok = true;
    size_t group = 0;
    while (i < n && (is_digit((unsigned char)s[i]) || s[i] == ',')) {
        if (s[i] == ',') {
            if (!commas) first = group;
            else if (group != 3) ok = false;
            if (group == 0) return false;
            commas = true;
            group = 0;
        } else {
            group++;
            digits++;
        }
        i++;
    }
    if (commas) {
        if (group != 3 || first > 3) ok = false;
    }
    if (i < n && s[i] == '.') {
        i++;
        size_t fd = 0;
        while (i < n && is_digit((unsigned char)s[i])) { i++; fd++; }
        if (fd == 0 && digits == 0) return false;
    } else if (digits == 0) {
        return false;
    }
    *groups_ok = ok;
    return i == n;
}

/*
 * Pass 4 (normalize_final), on the spaceless string:
 *  - trailing periods are dropped: "104." -> "104";
 *  - a leading '+' is dropped: "+5" -> "5";
 *  - a prefix "v=" or "v\in" where v is one letter or one \command (x =, y=, \theta=) is dropped
 *    when no other '=' follows: "x=5" -> "5", "y=2x+3" -> "2x+3", "x\in[-2,7]" -> "[-2,7]";
 *  - parentheses around the whole answer are dropped unless they hold a top-level comma:
 *    "(E)" -> "E", "(113)" -> "113" (tuples and intervals keep theirs);
 *  - plain numbers are canonical: thousands separators are removed when every group has three
 *    digits ("1,000" -> "1000", "1,5" stays), trailing fractional zeros and a bare '.' go
 *    ("18.90" -> "18.9", "5.00" -> "5"), a leading '.' gets a zero (".5" -> "0.5"), leading zeros
 *    go ("023" -> "23") and "-0" becomes "0".
 */
static void normalize_final(struct sr_buf *buf) {
    char *s = buf->data;
    size_t n = buf->len;
    while (n > 0 && s[n - 1] == '.' && !(n >= 2 && s[n - 2] == '\\')) n--;
    s[n] = '\0';
    if (n > 0 && s[0] == '+') { memmove(s, s + 1, n); n--; }
    /* variable prefix */
    size_t v = 0;
    if (n > 0 && is_alpha((unsigned char)s[0])) v = 1;
    else if (n > 1 && s[0] == '\\' && is_alpha((unsigned char)s[1])) {
        v = 1;
        while (v < n && is_alpha((unsigned char)s[v])) v++;
    }
    if (v > 0) {
        size_t skip = 0;
        if (v < n && s[v] == '=') skip = v + 1;
        else if (at_cmd(s, n, v, "in")) skip = v + 3;
        if (skip > 0 && skip < n && !memchr(s + skip, '=', n - skip)) {
            memmove(s, s + skip, n - skip + 1);
            n -= skip;
        }
    }
    /* redundant outer parentheses */
    size_t k = outer_parens(s, n);
    if (k > 0) {
        memmove(s, s + k, n - 2 * k);
        n -= 2 * k;
        s[n] = '\0';
    }
    buf->len = n;
    /* canonical plain numbers (rebuilt: ".5" -> "0.5" grows) */
    bool groups_ok;
    if (!plain_number(s, n, &groups_ok) || (!groups_ok && memchr(s, ',', n))) return;
    struct sr_buf o = {0};
    size_t i = 0;
    if (s[0] == '-') { sr_buf_append(&o, "-", 1); i = 1; }
    size_t int_start = i;
    while (int_start < n && (s[int_start] == '0' || s[int_start] == ',') && int_start + 1 < n &&
           s[int_start + 1] != '.')
        int_start++; /* leading zeros (and separators among them) */
    bool any_int = false;
    for (i = int_start; i < n && s[i] != '.'; i++) {
        if (s[i] != ',') { sr_buf_append(&o, s + i, 1); any_int = true; }
    }
    if (!any_int) sr_buf_append(&o, "0", 1);
    if (i < n) { /* fraction: drop trailing zeros and a bare '.' */
        size_t e = n;
        while (e > i + 1 && s[e - 1] == '0') e--;
        if (e > i + 1) sr_buf_append(&o, s + i, e - i);
    }
    if (o.oom) { sr_buf_free(&o); return; }
    if (o.len == 2 && memcmp(o.data, "-0", 2) == 0) { o.data[0] = '0'; o.data[1] = '\0'; o.len = 1; }
    sr_buf_free(buf);
    *buf = o;
}

char *sr_grade_normalize(const char *ans) {
    if (!ans) return NULL;
    size_t n = strlen(ans);
    struct sr_buf a = {0}, b = {0};
    if (!normalize_commands(ans, n, &a)) goto fail;
    if (!a.data) return sr_strdup("");
    a.len = strip_units(a.data, a.len);
    for (size_t i = 0; i < a.len;) { /* pass 3 prerequisite: remove all spaces */
        size_t j = i;
        while (j < a.len && a.data[j] != ' ') j++;
        sr_buf_append(&b, a.data + i, j - i);
        i = j + 1;
    }
    if (b.oom) goto fail;
    if (!b.data) { sr_buf_free(&a); return sr_strdup(""); }
    sr_buf_clear(&a);
    if (!normalize_args(b.data, b.len, &a)) goto fail;
    sr_buf_free(&b);
    if (!a.data) return sr_strdup("");
    normalize_final(&a);
    return sr_buf_take(&a);
fail:
    sr_buf_free(&a);
    sr_buf_free(&b);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Numeric evaluation of a normalised answer                                                  */

/*
 * Grammar (spaces already removed):
 *   expr    := term (('+'|'-') term)*
 *   term    := unary (('*'|'\cdot'|'\times'|'/'|'\div') unary | implicit power)*
 *   unary   := ('+'|'-')* power
 *   power   := primary ('^' (digit | '{' expr '}' | primary))?
 *   primary := number [\frac{int}{int} (mixed number)] | '(' expr ')' | '{' expr '}'
 *            | \frac{expr}{expr} | \sqrt{expr} | \sqrt[expr]{expr} | \pi
 * Implicit multiplication applies before '(', '{' or a backslash: "2\sqrt{3}", "3(4)".
 */
struct eval {
    const char *s;
    size_t n;
    size_t i;
    int depth;
};

static bool ev_expr(struct eval *e, double *out);
static bool ev_unary(struct eval *e, double *out);

static bool ev_cmd(struct eval *e, const char *name) {
    if (!at_cmd(e->s, e->n, e->i, name)) return false;
    e->i += 1 + strlen(name);
    return true;
}

static bool ev_char(struct eval *e, char c) {
    if (e->i < e->n && e->s[e->i] == c) { e->i++; return true; }
    return false;
}

static bool ev_group(struct eval *e, char open, char close, double *out) {
    if (!ev_char(e, open)) return false;
    return ev_expr(e, out) && ev_char(e, close);
}

/* Digits [. digits] | . digits; *integer tells whether there was no '.'. */
static bool ev_number(struct eval *e, double *out, bool *integer) {
    double v = 0;
    size_t start = e->i;
    while (e->i < e->n && is_digit((unsigned char)e->s[e->i])) v = v * 10 + (e->s[e->i++] - '0');
    *integer = true;
    if (e->i < e->n && e->s[e->i] == '.') {
        *integer = false;
        e->i++;
        double scale = 0.1;
        while (e->i < e->n && is_digit((unsigned char)e->s[e->i])) {
            v += (e->s[e->i++] - '0') * scale;
            scale *= 0.1;
        }
    }
    if (e->i == start || (e->i == start + 1 && !*integer)) return false;
    *out = v;
    return true;
}

/* "\frac{digits}{digits}" at the cursor, for mixed numbers. */
static bool ev_int_frac(struct eval *e, double *out) {
    size_t save = e->i;
    if (!ev_cmd(e, "frac") || !ev_char(e, '{')) goto no;
    double a = 0, b = 0;
    bool integer;
    if (!ev_number(e, &a, &integer) || !integer || !ev_char(e, '}') || !ev_char(e, '{')) goto no;
    if (!ev_number(e, &b, &integer) || !integer || !ev_char(e, '}') || b == 0) goto no;
    *out = a / b;
    return true;
no:
    e->i = save;
    return false;
}

static bool ev_primary(struct eval *e, double *out) {
    if (e->i >= e->n) return false;
    char c = e->s[e->i];
    if (is_digit((unsigned char)c) || c == '.') {
        bool integer;
        if (!ev_number(e, out, &integer)) return false;
        double f;
        if (integer && ev_int_frac(e, &f)) *out += f; /* "1\frac{4}{5}" = 1.8 */
        return true;
    }
    if (c == '(') return ev_group(e, '(', ')', out);
    if (c == '{') return ev_group(e, '{', '}', out);
    if (ev_cmd(e, "frac")) {
        double a, b;
        if (!ev_group(e, '{', '}', &a) || !ev_group(e, '{', '}', &b) || b == 0) return false;
        *out = a / b;
        return true;
    }
    if (ev_cmd(e, "sqrt")) {
        double idx = 2, x;
        if (e->i < e->n && e->s[e->i] == '[' && !ev_group(e, '[', ']', &idx)) return false;
        if (!ev_group(e, '{', '}', &x) || x < 0 || idx == 0) return false;
        *out = idx == 2 ? sqrt(x) : pow(x, 1.0 / idx);
        return true;
    }
    if (ev_cmd(e, "pi")) { *out = 3.14159265358979323846; return true; }
    return false;
}

static bool ev_power(struct eval *e, double *out) {
    if (!ev_primary(e, out)) return false;
    if (!ev_char(e, '^')) return true;
    double x;
    if (e->i < e->n && is_digit((unsigned char)e->s[e->i])) x = e->s[e->i++] - '0';
    else if (!ev_primary(e, &x)) return false;
    *out = pow(*out, x);
    return true;
}

static bool ev_unary(struct eval *e, double *out) {
    bool neg = false;
    while (e->i < e->n && (e->s[e->i] == '-' || e->s[e->i] == '+')) {
        if (e->s[e->i] == '-') neg = !neg;
        e->i++;
    }
    if (!ev_power(e, out)) return false;
    if (neg) *out = -*out;
    return true;
}

static bool ev_term(struct eval *e, double *out) {
    if (!ev_unary(e, out)) return false;
    for (;;) {
        double r;
        if (ev_char(e, '*') || ev_cmd(e, "cdot") || ev_cmd(e, "times")) {
            if (!ev_unary(e, &r)) return false;
            *out *= r;
        } else if (ev_char(e, '/') || ev_cmd(e, "div")) {
            if (!ev_unary(e, &r) || r == 0) return false;
            *out /= r;
        } else if (e->i < e->n && (e->s[e->i] == '(' || e->s[e->i] == '{' || e->s[e->i] == '\\')) {
            if (!ev_power(e, &r)) return false;
            *out *= r;
        } else {
            return true;
        }
    }
}

static bool ev_expr(struct eval *e, double *out) {
    if (++e->depth > EVAL_MAX_DEPTH) return false;
    if (!ev_term(e, out)) return false;
    while (e->i < e->n && (e->s[e->i] == '+' || e->s[e->i] == '-')) {
        char op = e->s[e->i++];
        double r;
        if (!ev_term(e, &r)) return false;
        *out = op == '+' ? *out + r : *out - r;
    }
    e->depth--;
    return true;
}

/* True iff s[0..n) is a complete arithmetic expression with a finite value. */
static bool eval_number(const char *s, size_t n, double *out) {
    struct eval e = {s, n, 0, 0};
    if (n == 0) return false;
    double v;
    if (!ev_expr(&e, &v) || e.i != n || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool num_close(double a, double b) {
    if (a == b) return true;
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) <= REL_TOL * m;
}

/* ------------------------------------------------------------------------------------------ */
/* Equivalence                                                                                */

static bool all_letters(const char *s, size_t n) {
    if (n < 2) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alpha((unsigned char)s[i])) return false;
    return true;
}

/* Two normalised atoms (no structure): equal text, equal value, or the same word in any case. */
static bool atom_equal(const char *a, size_t an, const char *b, size_t bn) {
    if (an == bn && memcmp(a, b, an) == 0) return an > 0;
    double x, y;
    if (eval_number(a, an, &x) && eval_number(b, bn, &y)) return num_close(x, y);
    if (an == bn && all_letters(a, an) && all_letters(b, bn)) {
        for (size_t i = 0; i < an; i++)
            if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
        return true;
    }
    return false;
}

/* Length of a structural separator at s[i] (at brace depth 0), or 0: brackets, ',', ';', '&',
 * "\\" (matrix rows), "\{", "\}", \cup, \cap, \begin{...}, \end{...}. */
static size_t sep_len(const char *s, size_t n, size_t i) {
    char c = s[i];
    if (c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';' || c == '&') return 1;
    if (c != '\\' || i + 1 >= n) return 0;
    char d = s[i + 1];
    if (d == '\\' || d == '{' || d == '}') return 2;
    if (at_cmd(s, n, i, "cup") || at_cmd(s, n, i, "cap")) return 4;
    if (at_cmd(s, n, i, "begin") || at_cmd(s, n, i, "end")) {
        size_t j = i + (s[i + 1] == 'b' ? 6 : 4);
        if (j < n && s[j] == '{') { /* environment names are short: bounded scan */
            size_t lim = j + 24 < n ? j + 24 : n;
            while (j < lim && s[j] != '}') j++;
            if (j < lim) return j + 1 - i;
        }
    }
    return 0;
}

/* Next token of a structural split starting at *pos: returns false at the end; sets [*b, *e) and
 * *sep (separator vs atom). Atoms are maximal runs between separators at brace depth 0. */
static bool next_token(const char *s, size_t n, size_t *pos, size_t *b, size_t *e, bool *sep) {
    size_t i = *pos;
    if (i >= n) return false;
    size_t l = sep_len(s, n, i);
    if (l) {
        *b = i;
        *e = i + l;
        *sep = true;
        *pos = i + l;
        return true;
    }
    size_t depth = 0;
    *b = i;
    while (i < n) {
        char c = s[i];
        if (depth == 0 && sep_len(s, n, i)) break;
        if (c == '\\') { i += i + 1 < n ? 2 : 1; continue; }
        if (c == '{') depth++;
        else if (c == '}' && depth > 0) depth--;
        i++;
    }
    *e = i;
    *sep = false;
    *pos = i;
    return true;
}

static bool structural_equal(const char *a, size_t an, const char *b, size_t bn) {
    size_t pa = 0, pb = 0;
    bool any_sep = false;
    for (;;) {
        size_t ab, ae, bb, be;
        bool as, bs;
        bool ha = next_token(a, an, &pa, &ab, &ae, &as);
        bool hb = next_token(b, bn, &pb, &bb, &be, &bs);
        if (!ha || !hb) return ha == hb && any_sep;
        if (as != bs) return false;
        if (as) {
            any_sep = true;
            if (ae - ab != be - bb || memcmp(a + ab, b + bb, ae - ab) != 0) return false;
        } else if (!atom_equal(a + ab, ae - ab, b + bb, be - bb)) {
            return false;
        }
    }
}

bool sr_grade_equal(const char *pred, const char *truth) {
    if (!pred || !truth) return false;
    char *a = sr_grade_normalize(pred);
    char *b = sr_grade_normalize(truth);
    bool eq = false;
    if (a && b && a[0] && b[0]) {
        size_t an = strlen(a), bn = strlen(b);
        eq = atom_equal(a, an, b, bn) || structural_equal(a, an, b, bn);
    }
    free(a);
    free(b);
    return eq;
}

/* ------------------------------------------------------------------------------------------ */
/* Multiple choice                                                                            */

static bool is_choice(unsigned char c) { return c >= 'A' && c <= 'D'; }

/* A choice letter at the start of a normalised box content: "B", "B)", "B.", "B:" or "(B)...". */
static char choice_in_box(const char *s) {
    size_t i = 0;
    if (s[i] == '(') i++;
    if (!is_choice((unsigned char)s[i])) return 0;
    char c = s[i++];
    if (s[i] == '\0') return c;
    if (s[i] == ')' || s[i] == '.' || s[i] == ':' || s[i] == ',') return c;
    return 0;
}

/* After an answer marker at j: skips spaces, '*', '$', '(', "\text{", "\textbf{", "option",
 * "choice" and reads a letter A-D not followed by a letter. */
static char choice_after_marker(const char *t, size_t len, size_t j) {
    for (int guard = 0; guard < 16 && j < len; guard++) {
        while (j < len && (t[j] == ' ' || t[j] == '\t')) j++;
        if (j >= len) break;
        unsigned char c = (unsigned char)t[j];
        if (c == '*' || c == '$' || c == '(' || c == '{') { j++; continue; }
        if (at_cmd(t, len, j, "text")) { j += 5; continue; }
        if (at_cmd(t, len, j, "textbf")) { j += 7; continue; }
        if (at_cmd(t, len, j, "boxed")) { j += 6; continue; }
        if (len - j >= 6 && (memcmp(t + j, "option", 6) == 0 || memcmp(t + j, "Option", 6) == 0) ) { j += 6; continue; }
        if (len - j >= 6 && (memcmp(t + j, "choice", 6) == 0 || memcmp(t + j, "Choice", 6) == 0)) { j += 6; continue; }
        break;
    }
    if (j >= len || !is_choice((unsigned char)t[j])) return 0;
    if (j + 1 < len && is_alpha((unsigned char)t[j + 1])) return 0;
    return t[j];
}

char sr_grade_choice(const char *text, size_t len) {
    if (!text) return 0;
    size_t b, e;
    if (find_box(text, len, &b, &e)) {
        char *raw = sr_strndup(text + b, e - b);
        char *norm = raw ? sr_grade_normalize(raw) : NULL;
        char c = norm ? choice_in_box(norm) : 0;
        free(raw);
        free(norm);
        if (c) return c;
    }
    for (size_t i = len; i-- > 0;) {
        if (!at_answer_word(text, len, i)) continue;
        size_t j = answer_marker_end(text, len, i);
        if (!j) continue;
        char c = choice_after_marker(text, len, j);
        if (c) return c;
    }
    for (size_t i = len; i-- > 2;) {
        if (text[i] == ')' && text[i - 2] == '(' && is_choice((unsigned char)text[i - 1])) return text[i - 1];
    }
    return 0;
}
