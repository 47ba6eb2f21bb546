/*
 * task.c: problem generator, step texts and corruptions, the character-level vocabulary and its
 * tokenizer (see task.h). The tokenizer mirrors llama.cpp's SPM path for this vocabulary; the
 * test test_train_tokenizer checks it against llama_tokenize on every kind of text we train on.
 */
#include "task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* RNG                                                                                        */

uint64_t tk_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t tk_rand_below(uint64_t *state, uint64_t n) { return tk_rand(state) % n; }

double tk_rand_unit(uint64_t *state) { return (double)(tk_rand(state) >> 11) * (1.0 / 9007199254740992.0); }

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary                                                                                 */

static const char *const SPECIAL_TEXT[TK_FIRST_ASCII] = {
    "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
    "user",  "assistant", "\n\n", "\\boxed{", "\n", "\xe2\x96\x81",
};
static const enum tk_token_type SPECIAL_TYPE[TK_FIRST_ASCII] = {
    TK_UNKNOWN, TK_CONTROL, TK_CONTROL, TK_CONTROL, TK_CONTROL, TK_CONTROL, TK_CONTROL,
    TK_USER_DEFINED, TK_USER_DEFINED, TK_USER_DEFINED, TK_USER_DEFINED, TK_NORMAL, TK_NORMAL,
};
static char ascii_text[94][2];
static char byte_text[256][8], byte_piece[256][2];
static bool tables_ready;

static void tables_init(void) {
    if (tables_ready) return;
    for (int i = 0; i < 94; i++) {
        ascii_text[i][0] = (char)('!' + i);
        ascii_text[i][1] = '\0';
    }
    for (int i = 0; i < 256; i++) {
        snprintf(byte_text[i], sizeof byte_text[i], "<0x%02X>", i);
        byte_piece[i][0] = (char)i;
        byte_piece[i][1] = '\0';
    }
    tables_ready = true;
}

const char *tk_token_text(int32_t id) {
    if (id < 0 || id >= TK_N_VOCAB) return NULL;
    if (id < TK_FIRST_ASCII) return SPECIAL_TEXT[id];
    tables_init();
    if (id < TK_FIRST_BYTE) return ascii_text[id - TK_FIRST_ASCII];
    return byte_text[id - TK_FIRST_BYTE];
}

enum tk_token_type tk_token_type(int32_t id) {
    if (id < 0 || id >= TK_N_VOCAB) return TK_UNKNOWN;
    if (id < TK_FIRST_ASCII) return SPECIAL_TYPE[id];
    return id < TK_FIRST_BYTE ? TK_NORMAL : TK_BYTE;
}

const char *tk_token_piece(int32_t id) {
    if (id == TK_SPACE) return " ";
    if (tk_token_type(id) == TK_CONTROL || tk_token_type(id) == TK_UNKNOWN) return "";
    if (tk_token_type(id) == TK_BYTE) {
        tables_init();
        return byte_piece[id - TK_FIRST_BYTE];
    }
    return tk_token_text(id);
}

int32_t tk_digit_token(int d) { return TK_FIRST_ASCII + ('0' + d - '!'); }

/* Control and user-defined tokens, longest text first (llama.cpp partitions in that order). */
static const int32_t SPECIAL_ORDER[] = {TK_IM_START, TK_ASSISTANT, TK_IM_END, TK_THINK_END, TK_BOXED,
                                        TK_THINK,    TK_EOS,       TK_USER,   TK_BOS,       TK_DELIM};

int32_t tk_tokenize(const char *text, size_t len, int32_t *out, int32_t cap) {
    int32_t n = 0;
    size_t i = 0;
    while (i < len) {
        int32_t tok = -1;
        size_t adv = 1;
        for (size_t s = 0; s < sizeof SPECIAL_ORDER / sizeof SPECIAL_ORDER[0]; s++) {
            const char *t = SPECIAL_TEXT[SPECIAL_ORDER[s]];
            size_t tl = strlen(t);
            if (tl <= len - i && memcmp(text + i, t, tl) == 0) {
                tok = SPECIAL_ORDER[s];
                adv = tl;
                break;
            }
        }
        if (tok < 0) {
            unsigned char c = (unsigned char)text[i];
            if (c == ' ') tok = TK_SPACE;
            else if (c == '\n') tok = TK_NEWLINE;
            else if (c >= '!' && c <= '~') tok = TK_FIRST_ASCII + (c - '!');
            else tok = TK_FIRST_BYTE + c;
        }
        if (n < cap) out[n] = tok;
        n++;
        i += adv;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Problems                                                                                   */

struct tk_cfg tk_cfg_default(void) {
    struct tk_cfg c = {.terms_min = 5, .terms_max = 5, .digits = 1};
    return c;
}

const char *tk_cfg_check(const struct tk_cfg *c) {
    if (c->terms_min < 2 || c->terms_min > TK_MAX_TERMS) return "terms_min must be in [2, 9]";
    if (c->terms_max < c->terms_min || c->terms_max > TK_MAX_TERMS) return "terms_max must be in [terms_min, 9]";
    if (c->digits < 1 || c->digits > TK_MAX_DIGITS) return "digits must be in [1, 6]";
    return NULL;
}

void tk_cfg_name(const struct tk_cfg *c, char *buf, size_t size) {
    snprintf(buf, size, "add-t%d-%d-d%d", c->terms_min, c->terms_max, c->digits);
}

static int64_t pow10i(int e) {
    int64_t r = 1;
    while (e-- > 0) r *= 10;
    return r;
}

void tk_problem_gen(const struct tk_cfg *c, uint64_t *rng, struct tk_problem *p) {
    memset(p, 0, sizeof *p);
    p->n_terms = c->terms_min + (int32_t)tk_rand_below(rng, (uint64_t)(c->terms_max - c->terms_min + 1));
    p->width = c->digits + 1;
    int64_t lim = pow10i(c->digits);
    for (int32_t i = 0; i < p->n_terms; i++) p->term[i] = (int64_t)tk_rand_below(rng, (uint64_t)lim);
}

int32_t tk_n_steps(const struct tk_problem *p) { return p->n_terms; }

int64_t tk_total(const struct tk_problem *p, int32_t k) {
    int64_t s = 0;
    for (int32_t i = 0; i <= k + 1 && i < p->n_terms; i++) s += p->term[i];
    return s;
}

int64_t tk_answer(const struct tk_problem *p) { return tk_total(p, p->n_terms - 2); }

int tk_problem_text(const struct tk_problem *p, char *buf, size_t size) {
    size_t off = 0;
    for (int32_t i = 0; i < p->n_terms; i++)
        off += (size_t)snprintf(buf + off, off < size ? size - off : 0, "%s%0*lld", i ? "+" : "", p->width,
                                (long long)p->term[i]);
    return (int)off;
}

/* "Step 2: 08+07=15" (numbers padded to the problem's width; the step number may be given wrong
 * on purpose), or "Answer: \boxed{28}". */
static int fmt_step(const struct tk_problem *p, int32_t label, int64_t a, int64_t b, int64_t c, char *buf,
                    size_t size) {
    const int w = p->width;
    return snprintf(buf, size, "Step %d: %0*lld+%0*lld=%0*lld", label, w, (long long)a, w, (long long)b, w,
                    (long long)c);
}

static int fmt_add(const struct tk_problem *p, int32_t k, int64_t a, int64_t b, int64_t c, char *buf, size_t size) {
    return fmt_step(p, k + 1, a, b, c, buf, size);
}

static int fmt_boxed(const struct tk_problem *p, int64_t v, char *buf, size_t size) {
    return snprintf(buf, size, "Answer: \\boxed{%0*lld}", p->width, (long long)v);
}

int tk_step_text(const struct tk_problem *p, int32_t k, char *buf, size_t size) {
    if (k < p->n_terms - 1) {
        int64_t a = k == 0 ? p->term[0] : tk_total(p, k - 1);
        return fmt_add(p, k, a, p->term[k + 1], tk_total(p, k), buf, size);
    }
    return fmt_boxed(p, tk_answer(p), buf, size);
}

int tk_step_near_miss(const struct tk_problem *p, int32_t k, uint64_t *rng, char *buf, size_t size) {
    int64_t lim = pow10i(p->width);
    bool last = k == p->n_terms - 1;
    int64_t v = last ? tk_answer(p) : tk_total(p, k);
    int64_t w = v + (tk_rand_below(rng, 2) ? 1 : -1);
    if (w < 0 || (!last && w >= lim)) w = v == 0 ? 1 : v - 1;
    if (last) return fmt_boxed(p, w, buf, size);
    int64_t a = k == 0 ? p->term[0] : tk_total(p, k - 1);
    return fmt_add(p, k, a, p->term[k + 1], w, buf, size);
}

/* v with one digit (position pos from the right, 0-based) replaced by a different digit. */
static int64_t change_digit(int64_t v, int pos, uint64_t *rng) {
    int64_t m = pow10i(pos);
    int d = (int)((v / m) % 10);
    int nd = (d + 1 + (int)tk_rand_below(rng, 9)) % 10;
    return v + (int64_t)(nd - d) * m;
}

/* A wrong value near v that still fits `width` digits and is >= 0. */
static int64_t wrong_value(int64_t v, int width, uint64_t *rng) {
    int64_t lim = pow10i(width);
    for (int tries = 0; tries < 16; tries++) {
        int64_t w;
        switch (tk_rand_below(rng, 4)) {
        case 0: w = v + (tk_rand_below(rng, 2) ? 1 : -1); break;                         /* off by one */
        case 1: w = v + (tk_rand_below(rng, 2) ? 1 : -1) * pow10i(1 + (int)tk_rand_below(rng, (uint64_t)(width - 1)));
                break;                                                                   /* carry */
        default: w = change_digit(v, (int)tk_rand_below(rng, (uint64_t)width), rng); break; /* digit */
        }
        if (w >= 0 && w < lim && w != v) return w;
    }
    return v == 0 ? 1 : v - 1;
}

/* The sum with the carry out of one column dropped or an extra carry added ("wrong carry"). */
static int64_t carry_slip(int64_t a, int64_t b, int width, uint64_t *rng) {
    int64_t s = a + b;
    int cols[TK_MAX_DIGITS + 2], nc = 0;
    int carry = 0;
    for (int j = 0; j < width - 1; j++) {
        int64_t m = pow10i(j);
        int t = (int)((a / m) % 10 + (b / m) % 10) + carry;
        carry = t >= 10;
        if (carry) cols[nc++] = j;
    }
    if (nc > 0) return s - pow10i(cols[tk_rand_below(rng, (uint64_t)nc)] + 1); /* forgot a carry */
    int64_t w = s + pow10i(1 + (int)tk_rand_below(rng, (uint64_t)(width - 1)));  /* invented one */
    return w < pow10i(width) ? w : s - 1;
}

int tk_step_corrupt(const struct tk_problem *p, int32_t k, uint64_t *rng, char *buf, size_t size) {
    char right[TK_TEXT_MAX];
    tk_step_text(p, k, right, sizeof right);
    if (getenv("SR_DEBUG_Z")) {
        int n = snprintf(buf, size, "%s", right);
        if (getenv("SR_DEBUG_Z")[0] == 'u') buf[n - 1] = (char)('0' + (buf[n - 1] - '0' + 1 + (int)tk_rand_below(rng, 9)) % 10);
        else buf[n - 1] = 'Z';
        return n;
    }
    int64_t lim = pow10i(p->width);
    for (int tries = 0; tries < 32; tries++) {
        int n;
        if (k == p->n_terms - 1) {
            /* the answer step: a wrong final value, or the total before the last addition */
            int64_t v = tk_answer(p);
            int64_t w = tk_rand_below(rng, 4) == 0 && p->n_terms >= 3 ? tk_total(p, p->n_terms - 3)
                                                                       : wrong_value(v, p->width, rng);
            n = fmt_boxed(p, w, buf, size);
        } else {
            int64_t a = k == 0 ? p->term[0] : tk_total(p, k - 1);
            int64_t b = p->term[k + 1];
            int64_t c = a + b;
            switch (tk_rand_below(rng, 8)) {
            case 0: case 1: n = fmt_add(p, k, a, b, wrong_value(c, p->width, rng), buf, size); break;
            case 2: n = fmt_add(p, k, a, b, carry_slip(a, b, p->width, rng), buf, size); break;
            case 3: { /* miscopied operand: another term, or one digit changed; the sum follows it */
                int64_t b2 = tk_rand_below(rng, 2) ? p->term[tk_rand_below(rng, (uint64_t)p->n_terms)]
                                                   : change_digit(b, (int)tk_rand_below(rng, (uint64_t)(p->width - 1)), rng);
                if (b2 >= lim) b2 = b ^ 1;
                int64_t c2 = tk_rand_below(rng, 2) ? a + b2 : c;
                n = fmt_add(p, k, a, b2, c2 < lim ? c2 : c, buf, size);
                break;
            }
            case 4: { /* miscopied previous total; the sum follows it */
                int64_t a2 = wrong_value(a, p->width, rng);
                int64_t c2 = a2 + b;
                n = fmt_add(p, k, a2, b, c2 < lim ? c2 : c, buf, size);
                break;
            }
            case 5: { /* an operand skipped or repeated: the term after next, or the same again */
                int64_t b2 = k + 2 < p->n_terms && tk_rand_below(rng, 2) ? p->term[k + 2] : p->term[k];
                n = fmt_add(p, k, a, b2, a + b2 < lim ? a + b2 : c, buf, size);
                break;
            }
            case 6: /* premature answer: this step's sum, or the total so far */
                n = fmt_boxed(p, tk_rand_below(rng, 2) ? c : a, buf, size);
                break;
            default: /* a step counted wrong, the arithmetic right */
                n = fmt_step(p, k + 1 + (tk_rand_below(rng, 2) || k == 0 ? 1 : -1), a, b, c, buf, size);
                break;
            }
        }
        if ((size_t)n < size && strcmp(buf, right) != 0) return n;
    }
    /* Always reachable: a result one too large (fits, since sums stay far below 10^width). */
    if (k == p->n_terms - 1) return fmt_boxed(p, tk_answer(p) + 1, buf, size);
    int64_t a = k == 0 ? p->term[0] : tk_total(p, k - 1);
    return fmt_add(p, k, a, p->term[k + 1], a + p->term[k + 1] + 1, buf, size);
}

bool tk_problem_parse(const char *text, struct tk_problem *out) {
    memset(out, 0, sizeof *out);
    const char *s = text;
    int width = -1;
    while (*s) {
        if (out->n_terms == TK_MAX_TERMS) return false;
        int w = 0;
        int64_t v = 0;
        while (*s >= '0' && *s <= '9') {
            if (++w > TK_MAX_DIGITS + 1) return false;
            v = v * 10 + (*s++ - '0');
        }
        if (w == 0 || (width >= 0 && w != width)) return false;
        width = w;
        out->term[out->n_terms++] = v;
        if (*s == '+') s++;
        else if (*s) return false;
    }
    out->width = width;
    return out->n_terms >= 2;
}

bool tk_boxed_value(const char *text, int64_t *out) {
    const char *last = NULL;
    for (const char *q = strstr(text, "\\boxed{"); q; q = strstr(q + 1, "\\boxed{")) last = q;
    if (!last) return false;
    const char *s = last + strlen("\\boxed{");
    int64_t v = 0;
    int nd = 0;
    while (*s >= '0' && *s <= '9') {
        if (++nd > 18) return false;
        v = v * 10 + (*s++ - '0');
    }
    if (nd == 0 || *s != '}') return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Chat format                                                                                */

int tk_render_prefix(const char *problem, char *buf, size_t size) {
    return snprintf(buf, size, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n%s", problem, TK_THINK_OPEN);
}

int tk_render_judge_suffix(const char *judge_prompt, const char *judge_prefill, char *buf, size_t size) {
    return snprintf(buf, size, "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n%s", judge_prompt,
                    judge_prefill);
}
