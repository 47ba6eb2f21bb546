/*
 * util.h: internal helpers shared by the library, the tools and the tests: a growable byte buffer
 * (sr_buf), checked allocation, timing, error formatting.
 * Nothing here calls llama.cpp.
 */
#ifndef SR_UTIL_H
#define SR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "specreason.h"

/* A growable byte string, always NUL-terminated when data != NULL. After an allocation failure
 * `oom` is set and every further append is a no-op, so callers check once at the end. */
struct sr_buf {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
};

void sr_buf_free(struct sr_buf *b);
void sr_buf_clear(struct sr_buf *b);
bool sr_buf_reserve(struct sr_buf *b, size_t extra);
void sr_buf_append(struct sr_buf *b, const char *s, size_t n);
void sr_buf_puts(struct sr_buf *b, const char *s);
void sr_buf_printf(struct sr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the data out (caller frees); the buffer is left empty. NULL if oom or empty-and-unallocated. */
char *sr_buf_take(struct sr_buf *b);

/* Length of the valid UTF-8 sequence at s (at most n bytes available; n >= 1), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
size_t sr_utf8_len(const unsigned char *s, size_t n);

char *sr_strndup(const char *s, size_t n);
char *sr_strdup(const char *s);
/* Finds needle in hay[0..n); returns pointer or NULL. */
const char *sr_memmem(const char *hay, size_t n, const char *needle, size_t m);

/* Monotonic clock in microseconds. */
int64_t sr_time_us(void);

/* Sets err (if non-NULL) to status + formatted message; returns status. */
enum sr_status sr_seterr(struct sr_error *err, enum sr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Library-internal logging (routed through sr_log_set). */
void sr_log(enum sr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
