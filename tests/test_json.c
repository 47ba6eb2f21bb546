/*
 * test_json.c: the shared JSON helpers over jansson (src/core/jsonutil.c): numbers written as the
 * project always wrote statistics, strings from any bytes, parse errors with line and column.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "testutil.h"

/* Dumps v (any type) and frees it; the caller frees the text. */
static char *dump(json_t *v) {
    char *s = json_dumps(v, SR_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
    json_decref(v);
    return s;
}

static void expect_dump(json_t *v, const char *want) {
    char *s = dump(v);
    CHECK(s != NULL);
    if (s) CHECK_STR(s, want);
    free(s);
}

static void test_numbers(void) {
    expect_dump(sr_jnum(3), "3");
    expect_dump(sr_jnum(-0.0), "0");
    expect_dump(sr_jnum(0.5), "0.5");
    expect_dump(sr_jnum(1.0 / 3.0), "0.333333"); /* 6 significant digits, as "%.6g" */
    expect_dump(sr_jnum(123456.75), "123457");
    expect_dump(sr_jnum(2.5e-7), "2.5e-7");
    expect_dump(sr_jnum(1.0 / 0.0), "null");
    expect_dump(sr_jnum(0.0 / 0.0), "null");
    /* exact: a "%.9g" threshold reads back to the same text */
    expect_dump(sr_jnum_exact(0.7), "0.7");
    expect_dump(sr_jnum_exact(7), "7");
    expect_dump(sr_jnum_exact(0.123456789), "0.123456789");
    char buf[48];
    json_t *v = sr_jparse("2.50", 4, NULL, 0);
    CHECK(sr_jnum_text(v, buf, sizeof buf));
    CHECK_STR(buf, "2.5");
    json_decref(v);
    v = sr_jparse("60", 2, NULL, 0);
    CHECK(sr_jnum_text(v, buf, sizeof buf));
    CHECK_STR(buf, "60");
    json_decref(v);
    v = json_string("x");
    CHECK(!sr_jnum_text(v, buf, sizeof buf));
    json_decref(v);
}

static void test_strings(void) {
    expect_dump(sr_jstr("a\"b\\c\n\t\x01"), "\"a\\\"b\\\\c\\n\\t\\u0001\"");
    expect_dump(sr_jstr("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
    /* invalid UTF-8 (a lone continuation byte, a truncated sequence, an overlong form) -> U+FFFD */
    expect_dump(sr_jstr("a\x80" "b\xE2\x82"), "\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\"");
    expect_dump(sr_jstr("\xC0\xAF"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
    expect_dump(sr_jstrn("a\0b", 3), "\"a\\u0000b\"");
    expect_dump(sr_jstr(NULL), "null");
}

static void test_parse(void) {
    char err[160];
    json_t *v = sr_jparse("\xEF\xBB\xBF{\"a\":1,\"a\":2}", 16, err, sizeof err);
    CHECK(v != NULL);
    CHECK(json_integer_value(json_object_get(v, "a")) == 2); /* last duplicate wins */
    json_decref(v);
    v = sr_jparse("\"x\\u0000y\"", 10, err, sizeof err);
    CHECK(v && json_string_length(v) == 3);
    json_decref(v);
    v = sr_jparse("[\"a\x80z\"]", 7, err, sizeof err); /* invalid UTF-8 reads as U+FFFD */
    CHECK(v && strcmp(json_string_value(json_array_get(v, 0)), "a\xEF\xBF\xBDz") == 0);
    json_decref(v);
    v = sr_jparse("{\"a\":1,\n \"b\" 2}", 16, err, sizeof err);
    CHECK(v == NULL);
    CHECK(strncmp(err, "line 2 col ", 11) == 0);
    v = sr_jparse("[1] x", 5, err, sizeof err);
    CHECK(v == NULL);
    CHECK(strncmp(err, "line 1 col ", 11) == 0);
    v = sr_jparse("", 0, err, sizeof err);
    CHECK(v == NULL);
    /* deep nesting is refused, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(n);
    CHECK(deep != NULL);
    if (deep) {
        memset(deep, '[', n);
        v = sr_jparse(deep, n, err, sizeof err);
        CHECK(v == NULL);
        free(deep);
    }
}

int main(void) {
    test_numbers();
    test_strings();
    test_parse();
    return test_summary("test_json");
}
