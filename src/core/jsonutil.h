/*
 * jsonutil.h: the few helpers every JSON reader and writer of the project shares on top of
 * jansson (the project's one JSON library): numbers and strings written alike everywhere, one
 * dump format, and parse errors that name the line and column.
 */
#ifndef SR_JSONUTIL_H
#define SR_JSONUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Every writer dumps with these flags: no spaces, reals to 15 significant digits (so a value
 * made by sr_jnum, or a decimal typed with up to 15 digits, prints as written). */
#define SR_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* A number as the project writes statistics: null unless finite; an integer when v is integral
 * (|v| < 9e15); else a real rounded to 6 significant digits. New reference (NULL on OOM). */
json_t *sr_jnum(double v);

/* A number that must read back exactly: an integer when integral, else the real itself. */
json_t *sr_jnum_exact(double v);

/* A string from s[0..n): invalid UTF-8 becomes U+FFFD, NULs are kept. s == NULL gives null. */
json_t *sr_jstrn(const char *s, size_t n);
json_t *sr_jstr(const char *s);

/* json_object_set_new that leaves obj unchanged and returns false when v is NULL (OOM). */
bool sr_jset(json_t *obj, const char *key, json_t *v);

/* Dumps v with SR_JSON_DUMP_FLAGS (caller frees with free()); NULL on OOM or v == NULL. */
char *sr_jdump(const json_t *v);

/* Parses text[0..len) as one JSON value (any type) surrounded by whitespace; a leading UTF-8 byte
 * order mark is skipped, \u0000 is allowed, invalid UTF-8 bytes read as U+FFFD. NULL on failure,
 * with err (if errlen > 0) set to "line L col C: message". */
json_t *sr_jparse(const char *text, size_t len, char *err, size_t errlen);
/* As sr_jparse, with the position as numbers (either may be NULL) and the message in msg. */
json_t *sr_jparse_at(const char *text, size_t len, size_t *line, size_t *col, char *msg, size_t msglen);

/* The number v as text: integers exactly, reals in the shortest form that reads back the same.
 * False unless v is a number. */
bool sr_jnum_text(const json_t *v, char *buf, size_t size);

#endif
