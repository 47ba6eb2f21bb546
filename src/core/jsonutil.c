/*
 * jsonutil.c: shared helpers over jansson (see jsonutil.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "jsonutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

json_t *sr_jnum(double v) {
    if (!isfinite(v)) return json_null();
    if (fabs(v) < 9e15 && v == (double)(int64_t)v) return json_integer((json_int_t)v);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.6g", v);
    double r = strtod(tmp, NULL);
    if (fabs(r) < 9e15 && r == (double)(int64_t)r) return json_integer((json_int_t)r);
    return json_real(r);
}

json_t *sr_jnum_exact(double v) {
    if (!isfinite(v)) return json_null();
    if (fabs(v) < 9e15 && v == (double)(int64_t)v) return json_integer((json_int_t)v);
    return json_real(v);
}

/* Bytes of s[0..n) before the first invalid UTF-8 sequence (n if none). */
static size_t utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        size_t l = sr_utf8_len(u + i, n - i);
        if (!l) break;
        i += l;
    }
    return i;
}

/* s[0..n) with every invalid UTF-8 byte replaced by U+FFFD, from byte `from` on (the prefix is
 * valid), appended to b (b->oom on failure). */
static void utf8_fix(struct sr_buf *b, const char *s, size_t n, size_t from) {
    const unsigned char *u = (const unsigned char *)s;
    sr_buf_append(b, s, from);
    for (size_t i = from; i < n;) {
        size_t l = u[i] < 0x80 ? 1 : sr_utf8_len(u + i, n - i);
        if (!l) { sr_buf_append(b, "\xEF\xBF\xBD", 3); i++; continue; }
        sr_buf_append(b, s + i, l);
        i += l;
    }
}

json_t *sr_jstrn(const char *s, size_t n) {
    if (!s) return json_null();
    size_t ok = utf8_valid_prefix(s, n);
    if (ok == n) return json_stringn_nocheck(s, n);
    struct sr_buf b = {0};
    utf8_fix(&b, s, n, ok);
    json_t *v = b.oom ? NULL : json_stringn_nocheck(b.data ? b.data : "", b.len);
    sr_buf_free(&b);
    return v;
}

json_t *sr_jstr(const char *s) { return sr_jstrn(s, s ? strlen(s) : 0); }

bool sr_jset(json_t *obj, const char *key, json_t *v) {
    if (!v) return false;
    return json_object_set_new(obj, key, v) == 0;
}

char *sr_jdump(const json_t *v) { return v ? json_dumps(v, SR_JSON_DUMP_FLAGS) : NULL; }

json_t *sr_jparse_at(const char *text, size_t len, size_t *line, size_t *col, char *msg, size_t msglen) {
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) { text += 3; len -= 3; }
    /* jansson refuses invalid UTF-8; read it as U+FFFD instead, as every writer here does */
    struct sr_buf fixed = {0};
    size_t ok = utf8_valid_prefix(text, len);
    if (ok < len) {
        utf8_fix(&fixed, text, len, ok);
        if (fixed.oom) {
            if (line) *line = 1;
            if (col) *col = 1;
            if (msg && msglen) snprintf(msg, msglen, "out of memory");
            return NULL;
        }
        text = fixed.data;
        len = fixed.len;
    }
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    sr_buf_free(&fixed);
    if (v) return v;
    if (line) *line = je.line > 0 ? (size_t)je.line : 1;
    if (col) *col = je.column > 0 ? (size_t)je.column : 1;
    if (msg && msglen) snprintf(msg, msglen, "%s", je.text);
    return NULL;
}

json_t *sr_jparse(const char *text, size_t len, char *err, size_t errlen) {
    size_t line = 0, col = 0;
    char msg[JSON_ERROR_TEXT_LENGTH];
    json_t *v = sr_jparse_at(text, len, &line, &col, msg, sizeof msg);
    if (!v && err && errlen) snprintf(err, errlen, "line %zu col %zu: %s", line, col, msg);
    return v;
}

bool sr_jnum_text(const json_t *v, char *buf, size_t size) {
    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return true;
    }
    if (!json_is_real(v)) return false;
    double d = json_real_value(v);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    return true;
}
