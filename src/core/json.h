/*
 * json.h: a small RFC 8259 JSON DOM parser (internal). Used for dataset files and, later, HTTP
 * request bodies, so every error names the line and column ("line 3 col 7: expected ':'").
 *
 * Invariants of a parsed tree: every string (values and keys) is valid UTF-8 (escapes are decoded,
 * surrogate pairs combined; lone surrogates and invalid raw bytes become U+FFFD), NUL-terminated,
 * and carries its byte length so embedded NULs (\u0000) survive. Nesting is limited to
 * SR_JSON_MAX_DEPTH, so the recursive parser's stack use is bounded whatever the input.
 * A tree is immutable after parsing: lookups are thread-safe on a shared tree.
 */
#ifndef SR_JSON_H
#define SR_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest accepted nesting of arrays/objects: "[[1]]" has depth 2. */
#define SR_JSON_MAX_DEPTH 128

enum sr_json_type {
    SR_JSON_NULL = 0,
    SR_JSON_BOOL,
    SR_JSON_NUMBER,
    SR_JSON_STRING,
    SR_JSON_ARRAY,
    SR_JSON_OBJECT,
};

struct sr_json {
    enum sr_json_type type;
    bool boolean;          /* SR_JSON_BOOL */
    double number;         /* SR_JSON_NUMBER (always finite: overflowing literals are rejected) */
    /* SR_JSON_STRING: the decoded value. SR_JSON_NUMBER: the literal as written (e.g. "1e3"),
     * kept so integers beyond 2^53 can be read exactly. NULL for other types. NUL-terminated. */
    char *str;
    size_t len;            /* bytes in str, excluding the terminator */
    size_t count;          /* SR_JSON_ARRAY / SR_JSON_OBJECT: number of children */
    struct sr_json *items; /* count children, in document order */
    char **keys;           /* SR_JSON_OBJECT: count keys, parallel to items; NUL-terminated */
    size_t *key_lens;      /* SR_JSON_OBJECT: byte length of each key */
};

/* Where and why a parse failed. line and col are 1-based; col counts bytes. */
struct sr_json_error {
    size_t line;
    size_t col;
    size_t offset; /* byte offset of the error in the input */
    char msg[96];  /* e.g. "expected ':' after object key" */
};

/* Parses text[0..len) (need not be NUL-terminated) as one JSON value surrounded by optional
 * whitespace; a leading UTF-8 byte order mark is skipped. Returns the tree (caller owns; free
 * with sr_json_free) or NULL on a syntax error, a nesting deeper than SR_JSON_MAX_DEPTH, a number
 * that overflows a double, trailing characters, or out of memory. On failure err (if non-NULL,
 * errlen > 0) receives "line L col C: message", truncated to errlen and NUL-terminated. */
struct sr_json *sr_json_parse(const char *text, size_t len, char *err, size_t errlen);

/* As sr_json_parse, with the error position as fields (e may be NULL). */
struct sr_json *sr_json_parse_ex(const char *text, size_t len, struct sr_json_error *e);

/* Frees a tree returned by a parse function. NULL is a no-op. Never call on a child. */
void sr_json_free(struct sr_json *v);

/* Member `key` of an object, or NULL if v is not an object or has no such key. Keys are compared
 * as C strings. With duplicate keys the last one wins (as JavaScript's JSON.parse). Linear time.
 * The result is borrowed from the tree. */
const struct sr_json *sr_json_get(const struct sr_json *obj, const char *key);

/* The string value (borrowed, NUL-terminated; v->len has the length), or NULL unless v is a
 * string. */
const char *sr_json_str(const struct sr_json *v);

/* True and *out = the value iff v is a number. */
bool sr_json_num(const struct sr_json *v, double *out);

/* True and *out = the value iff v is a number with an integral value that fits an int64_t
 * exactly (literals such as "9007199254740993" are read from the text, not via double). */
bool sr_json_int(const struct sr_json *v, int64_t *out);

/* True and *out = the value iff v is true or false. */
bool sr_json_bool(const struct sr_json *v, bool *out);

/* True iff v is null. */
bool sr_json_is_null(const struct sr_json *v);

/* Number of children of an array or object, 0 for anything else (and NULL). */
size_t sr_json_len(const struct sr_json *v);

/* Child i of an array or object (borrowed), or NULL if out of range or v is not a container. */
const struct sr_json *sr_json_at(const struct sr_json *v, size_t i);

#endif
