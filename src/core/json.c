/*
 * json.c: recursive-descent JSON parser (RFC 8259) building a DOM of struct sr_json.
 *
 * Recursion happens only at '[' and '{' and is cut at SR_JSON_MAX_DEPTH, so stack use is bounded.
 * Every step consumes input or fails, so parsing is linear in the input size. Containers collect
 * their children in arrays that grow geometrically (realloc moves children, which is safe: a child
 * owns heap memory but nothing points at the child itself until parsing ends).
 */
#include "json.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct parser {
    const unsigned char *s;
    size_t n;
    size_t pos;
    struct sr_json_error *e;
    bool failed;
};

/* Records the first error at offset `at`; later errors are ignored. Returns false. */
static bool fail_at(struct parser *p, size_t at, const char *msg) {
    if (p->failed) return false;
    p->failed = true;
    if (p->e) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < at && i < p->n; i++) {
            if (p->s[i] == '\n') { line++; col = 1; }
            else col++;
        }
        p->e->line = line;
        p->e->col = col;
        p->e->offset = at;
        snprintf(p->e->msg, sizeof p->e->msg, "%s", msg);
    }
    return false;
}

static bool fail(struct parser *p, const char *msg) { return fail_at(p, p->pos, msg); }

static void skip_ws(struct parser *p) {
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static void free_children(struct sr_json *v) {
    for (size_t i = 0; i < v->count; i++) {
        free_children(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    v->items = NULL;
    v->keys = NULL;
    v->key_lens = NULL;
    v->str = NULL;
    v->count = 0;
}

void sr_json_free(struct sr_json *v) {
    if (!v) return;
    free_children(v);
    free(v);
}

static void put_utf8(struct sr_buf *b, uint32_t cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) { out[0] = (char)cp; n = 1; }
    else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sr_buf_append(b, out, n);
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p->pos + 2 (after "\u"); returns the value or -1. */
static long read_u4(struct parser *p, size_t at) {
    if (p->n - at < 6) return -1;
    long v = 0;
    for (size_t i = 2; i < 6; i++) {
        int h = hexval(p->s[at + i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Parses a string literal at p->pos (which is '"') into *out / *out_len (malloc'd). */
static bool parse_string(struct parser *p, char **out, size_t *out_len) {
    size_t start = p->pos;
    p->pos++;
    struct sr_buf b = {0};
    sr_buf_append(&b, "", 0); /* allocates and NUL-terminates, so "" yields a valid C string */
    for (;;) {
        size_t run = p->pos;
        while (run < p->n && p->s[run] >= 0x20 && p->s[run] < 0x80 && p->s[run] != '"' &&
               p->s[run] != '\\')
            run++;
        if (run > p->pos) sr_buf_append(&b, (const char *)p->s + p->pos, run - p->pos);
        p->pos = run;
        if (p->pos >= p->n) {
            fail_at(p, start, "unterminated string");
            goto bad;
        }
        unsigned char c = p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) {
            fail(p, "control character in string (must be escaped)");
            goto bad;
        }
        if (c >= 0x80) {
            size_t l = sr_utf8_len(p->s + p->pos, p->n - p->pos);
            if (l == 0) {
                /* Invalid UTF-8 is accepted but replaced, so the tree stays valid UTF-8. */
                sr_buf_append(&b, "\xEF\xBF\xBD", 3);
                p->pos++;
            } else {
                sr_buf_append(&b, (const char *)p->s + p->pos, l);
                p->pos += l;
            }
            continue;
        }
        /* c == '\\' */
        if (p->pos + 1 >= p->n) {
            fail_at(p, start, "unterminated string");
            goto bad;
        }
        unsigned char esc = p->s[p->pos + 1];
        switch (esc) {
        case '"': sr_buf_append(&b, "\"", 1); p->pos += 2; continue;
        case '\\': sr_buf_append(&b, "\\", 1); p->pos += 2; continue;
        case '/': sr_buf_append(&b, "/", 1); p->pos += 2; continue;
        case 'b': sr_buf_append(&b, "\b", 1); p->pos += 2; continue;
        case 'f': sr_buf_append(&b, "\f", 1); p->pos += 2; continue;
        case 'n': sr_buf_append(&b, "\n", 1); p->pos += 2; continue;
        case 'r': sr_buf_append(&b, "\r", 1); p->pos += 2; continue;
        case 't': sr_buf_append(&b, "\t", 1); p->pos += 2; continue;
        case 'u': break;
        default:
            fail(p, "invalid escape in string");
            goto bad;
        }
        long u = read_u4(p, p->pos);
        if (u < 0) {
            fail(p, "invalid \\u escape (need 4 hex digits)");
            goto bad;
        }
        p->pos += 6;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate: combine with a following \uDC00-\uDFFF, else U+FFFD. */
            long lo = (p->pos + 1 < p->n && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
                          ? read_u4(p, p->pos) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                p->pos += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD; /* lone low surrogate */
        }
        put_utf8(&b, cp);
    }
    if (b.oom) {
        fail_at(p, start, "out of memory");
        goto bad;
    }
    *out_len = b.len;
    *out = sr_buf_take(&b);
    if (!*out) return fail_at(p, start, "out of memory");
    return true;
bad:
    sr_buf_free(&b);
    return false;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* strtod, independent of the current locale's decimal point. s is NUL-terminated. */
static double to_double(const char *s, size_t len, bool *range_err) {
    const char *dp = localeconv()->decimal_point;
    char *copy = NULL;
    const char *use = s;
    if (dp && strcmp(dp, ".") != 0 && memchr(s, '.', len)) {
        size_t dl = strlen(dp);
        copy = malloc(len + dl + 1);
        if (!copy) { *range_err = true; return 0; }
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '.') { memcpy(copy + o, dp, dl); o += dl; }
            else copy[o++] = s[i];
        }
        copy[o] = '\0';
        use = copy;
    }
    errno = 0;
    double v = strtod(use, NULL);
    *range_err = (errno == ERANGE && (v > 1.0 || v < -1.0)); /* overflow; underflow is fine */
    free(copy);
    return v;
}

static bool parse_number(struct parser *p, struct sr_json *v) {
    size_t start = p->pos;
    const unsigned char *s = p->s;
    size_t i = p->pos;
    if (i < p->n && s[i] == '-') i++;
    if (i >= p->n || !is_digit(s[i])) return fail_at(p, i, "invalid number: expected a digit");
    if (s[i] == '0') {
        i++;
        if (i < p->n && is_digit(s[i])) return fail_at(p, i, "invalid number: leading zero");
    } else {
        while (i < p->n && is_digit(s[i])) i++;
    }
    if (i < p->n && s[i] == '.') {
        i++;
        if (i >= p->n || !is_digit(s[i]))
            return fail_at(p, i, "invalid number: expected a digit after '.'");
        while (i < p->n && is_digit(s[i])) i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || !is_digit(s[i]))
            return fail_at(p, i, "invalid number: expected a digit in the exponent");
        while (i < p->n && is_digit(s[i])) i++;
    }
    v->str = sr_strndup((const char *)s + start, i - start);
    if (!v->str) return fail_at(p, start, "out of memory");
    v->len = i - start;
    bool range_err = false;
    v->number = to_double(v->str, v->len, &range_err);
    if (range_err) return fail_at(p, start, "number out of range");
    v->type = SR_JSON_NUMBER;
    p->pos = i;
    return true;
}

static bool match_word(struct parser *p, const char *w) {
    size_t l = strlen(w);
    if (p->n - p->pos < l || memcmp(p->s + p->pos, w, l) != 0) return false;
    p->pos += l;
    return true;
}

static bool parse_value(struct parser *p, struct sr_json *v, int depth);

/* Grows a container's arrays to hold at least count + 1 children. */
static bool grow(struct parser *p, struct sr_json *v, size_t *cap, bool object) {
    if (v->count < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 4;
    struct sr_json *items = realloc(v->items, nc * sizeof *items);
    if (!items) return fail(p, "out of memory");
    v->items = items;
    if (object) {
        char **keys = realloc(v->keys, nc * sizeof *keys);
        if (!keys) return fail(p, "out of memory");
        v->keys = keys;
        size_t *lens = realloc(v->key_lens, nc * sizeof *lens);
        if (!lens) return fail(p, "out of memory");
        v->key_lens = lens;
    }
    *cap = nc;
    return true;
}

static bool parse_array(struct parser *p, struct sr_json *v, int depth) {
    v->type = SR_JSON_ARRAY;
    p->pos++; /* '[' */
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') { p->pos++; return true; }
    for (;;) {
        if (!grow(p, v, &cap, false)) return false;
        struct sr_json *child = &v->items[v->count];
        memset(child, 0, sizeof *child);
        v->count++; /* counted before parsing so a partial child is freed on error */
        skip_ws(p);
        if (!parse_value(p, child, depth + 1)) return false;
        skip_ws(p);
        if (p->pos >= p->n) return fail(p, "unexpected end of input: expected ',' or ']'");
        unsigned char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == ']') { p->pos++; return true; }
        return fail(p, "expected ',' or ']' in array");
    }
}

static bool parse_object(struct parser *p, struct sr_json *v, int depth) {
    v->type = SR_JSON_OBJECT;
    p->pos++; /* '{' */
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') { p->pos++; return true; }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->n) return fail(p, "unexpected end of input: expected a string key");
        if (p->s[p->pos] != '"') return fail(p, "expected a string key in object");
        if (!grow(p, v, &cap, true)) return false;
        char *key = NULL;
        size_t key_len = 0;
        if (!parse_string(p, &key, &key_len)) return false;
        struct sr_json *child = &v->items[v->count];
        memset(child, 0, sizeof *child);
        v->keys[v->count] = key;
        v->key_lens[v->count] = key_len;
        v->count++;
        skip_ws(p);
        if (p->pos >= p->n) return fail(p, "unexpected end of input: expected ':'");
        if (p->s[p->pos] != ':') return fail(p, "expected ':' after object key");
        p->pos++;
        skip_ws(p);
        if (!parse_value(p, child, depth + 1)) return false;
        skip_ws(p);
        if (p->pos >= p->n) return fail(p, "unexpected end of input: expected ',' or '}'");
        unsigned char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == '}') { p->pos++; return true; }
        return fail(p, "expected ',' or '}' in object");
    }
}

/* Parses one value at p->pos (whitespace already skipped). depth = containers enclosing it. */
static bool parse_value(struct parser *p, struct sr_json *v, int depth) {
    if (p->pos >= p->n) return fail(p, "unexpected end of input: expected a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        if (depth >= SR_JSON_MAX_DEPTH) return fail(p, "nesting too deep (limit 128)");
        return c == '{' ? parse_object(p, v, depth) : parse_array(p, v, depth);
    case '"':
        v->type = SR_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
        if (!match_word(p, "true")) break;
        v->type = SR_JSON_BOOL;
        v->boolean = true;
        return true;
    case 'f':
        if (!match_word(p, "false")) break;
        v->type = SR_JSON_BOOL;
        v->boolean = false;
        return true;
    case 'n':
        if (!match_word(p, "null")) break;
        v->type = SR_JSON_NULL;
        return true;
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        break;
    }
    return fail(p, "unexpected character: expected a value");
}

struct sr_json *sr_json_parse_ex(const char *text, size_t len, struct sr_json_error *e) {
    struct parser p = {(const unsigned char *)(text ? text : ""), text ? len : 0, 0, e, false};
    if (e) memset(e, 0, sizeof *e);
    struct sr_json *v = calloc(1, sizeof *v);
    if (!v) {
        fail(&p, "out of memory");
        return NULL;
    }
    if (p.n >= 3 && memcmp(p.s, "\xEF\xBB\xBF", 3) == 0) p.pos = 3;
    skip_ws(&p);
    if (p.pos >= p.n) {
        fail(&p, "empty input: expected a JSON value");
    } else if (parse_value(&p, v, 0)) {
        skip_ws(&p);
        if (p.pos < p.n) fail(&p, "unexpected characters after the JSON value");
    }
    if (p.failed) {
        sr_json_free(v);
        return NULL;
    }
    return v;
}

struct sr_json *sr_json_parse(const char *text, size_t len, char *err, size_t errlen) {
    struct sr_json_error e;
    struct sr_json *v = sr_json_parse_ex(text, len, &e);
    if (!v && err && errlen > 0) snprintf(err, errlen, "line %zu col %zu: %s", e.line, e.col, e.msg);
    return v;
}

const struct sr_json *sr_json_get(const struct sr_json *obj, const char *key) {
    if (!obj || obj->type != SR_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = obj->count; i-- > 0;) {
        if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return &obj->items[i];
    }
    return NULL;
}

const char *sr_json_str(const struct sr_json *v) {
    return v && v->type == SR_JSON_STRING ? v->str : NULL;
}

bool sr_json_num(const struct sr_json *v, double *out) {
    if (!v || v->type != SR_JSON_NUMBER) return false;
    if (out) *out = v->number;
    return true;
}

bool sr_json_int(const struct sr_json *v, int64_t *out) {
    if (!v || v->type != SR_JSON_NUMBER) return false;
    if (v->str && !strpbrk(v->str, ".eE")) {
        /* A plain integer literal: read it exactly. */
        errno = 0;
        char *end = NULL;
        long long x = strtoll(v->str, &end, 10);
        if (errno == ERANGE || !end || *end != '\0') return false;
        if (out) *out = (int64_t)x;
        return true;
    }
    /* 1e3 or 2.0: accept integral values that a double holds exactly (|x| <= 2^53). */
    double d = v->number;
    if (d != d || d < -9007199254740992.0 || d > 9007199254740992.0) return false;
    if ((double)(int64_t)d != d) return false;
    if (out) *out = (int64_t)d;
    return true;
}

bool sr_json_bool(const struct sr_json *v, bool *out) {
    if (!v || v->type != SR_JSON_BOOL) return false;
    if (out) *out = v->boolean;
    return true;
}

bool sr_json_is_null(const struct sr_json *v) { return v && v->type == SR_JSON_NULL; }

size_t sr_json_len(const struct sr_json *v) {
    if (!v || (v->type != SR_JSON_ARRAY && v->type != SR_JSON_OBJECT)) return 0;
    return v->count;
}

const struct sr_json *sr_json_at(const struct sr_json *v, size_t i) {
    if (!v || (v->type != SR_JSON_ARRAY && v->type != SR_JSON_OBJECT) || i >= v->count) return NULL;
    return &v->items[i];
}
