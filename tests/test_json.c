/*
 * test_json.c: unit tests for src/core/json.c: valid and invalid documents, escapes and surrogate
 * pairs, error positions, nesting limit, numbers, typed lookups.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testutil.h"
#include "util.h"


static struct sr_json *parse(const char *s) { return sr_json_parse(s, strlen(s), NULL, 0); }

static void test_valid(void) {
    static const char *const ok[] = {
        "0", "-0", "1", "-1", "1.5", "-1.5e10", "1E+2", "1e-2", "0.0", "123456789",
        "true", "false", "null", "\"\"", "\"abc\"", "[]", "{}", " [ ] ", "\n\t{ }\r\n",
        "[1,2,3]", "{\"a\":1,\"b\":[true,false,null]}", "[[[[]]]]", "{\"\":\"\"}",
        "\"\\u0041\"", "\"\\ud83d\\ude00\"", "\"\xF0\x9F\x98\x80\"", "\"\\/\"",
        "[1e308]", "[-1e-400]", "{\"a\":{\"b\":{\"c\":[{}]}}}", "\xEF\xBB\xBF{}",
        "123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char err[128] = "";
        struct sr_json *v = sr_json_parse(ok[i], strlen(ok[i]), err, sizeof err);
        if (!v) {
            fprintf(stderr, "valid case %zu [%s] rejected: %s\n", i, ok[i], err);
            t_fail++;
        } else {
            t_pass++;
        }
        sr_json_free(v);
    }
    printf("valid documents: %zu\n", sizeof ok / sizeof ok[0]);
}

static void test_invalid(void) {
    static const struct { const char *text, *err; } bad[] = {
        {"", "line 1 col 1: empty input: expected a JSON value"},
        {"   ", "line 1 col 4: empty input: expected a JSON value"},
        {"{", "line 1 col 2: unexpected end of input: expected a string key"},
        {"[", "line 1 col 2: unexpected end of input: expected a value"},
        {"[1,]", "line 1 col 4: unexpected character: expected a value"},
        {"[1 2]", "line 1 col 4: expected ',' or ']' in array"},
        {"{\"a\" 1}", "line 1 col 6: expected ':' after object key"},
        {"{\n  \"a\":1,\n  \"b\" 2\n}", "line 3 col 7: expected ':' after object key"},
        {"{\"a\":1,}", "line 1 col 8: expected a string key in object"},
        {"{a:1}", "line 1 col 2: expected a string key in object"},
        {"01", "line 1 col 2: invalid number: leading zero"},
        {"1.", "line 1 col 3: invalid number: expected a digit after '.'"},
        {".5", "line 1 col 1: unexpected character: expected a value"},
        {"+1", "line 1 col 1: unexpected character: expected a value"},
        {"1e", "line 1 col 3: invalid number: expected a digit in the exponent"},
        {"-", "line 1 col 2: invalid number: expected a digit"},
        {"1e400", "line 1 col 1: number out of range"},
        {"-1e400", "line 1 col 1: number out of range"},
        {"tru", "line 1 col 1: unexpected character: expected a value"},
        {"nul", "line 1 col 1: unexpected character: expected a value"},
        {"NaN", "line 1 col 1: unexpected character: expected a value"},
        {"\"abc", "line 1 col 1: unterminated string"},
        {"\"a\nb\"", "line 1 col 3: control character in string (must be escaped)"},
        {"\"\\x\"", "line 1 col 2: invalid escape in string"},
        {"\"\\u12\"", "line 1 col 2: invalid \\u escape (need 4 hex digits)"},
        {"\"\\u12G4\"", "line 1 col 2: invalid \\u escape (need 4 hex digits)"},
        {"1 2", "line 1 col 3: unexpected characters after the JSON value"},
        {"{} x", "line 1 col 4: unexpected characters after the JSON value"},
        {"[1]]", "line 1 col 4: unexpected characters after the JSON value"},
        {"'a'", "line 1 col 1: unexpected character: expected a value"},
        {"[1,\n2,\n@]", "line 3 col 1: unexpected character: expected a value"},
        {"{\"a\":1 \"b\":2}", "line 1 col 8: expected ',' or '}' in object"},
        {"\"\\", "line 1 col 1: unterminated string"},
        {"[\"a\",", "line 1 col 6: unexpected end of input: expected a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[128] = "";
        struct sr_json *v = sr_json_parse(bad[i].text, strlen(bad[i].text), err, sizeof err);
        if (v || strcmp(err, bad[i].err) != 0) {
            fprintf(stderr, "invalid case %zu [%s]: %s, error [%s], want [%s]\n", i, bad[i].text,
                    v ? "accepted" : "rejected", err, bad[i].err);
            t_fail++;
        } else {
            t_pass++;
        }
        sr_json_free(v);
    }
    printf("invalid documents: %zu\n", sizeof bad / sizeof bad[0]);
    /* Error structure and truncation of the message buffer. */
    struct sr_json_error e;
    CHECK(sr_json_parse_ex("[1,\n  x]", 8, &e) == NULL);
    CHECK(e.line == 2 && e.col == 3 && e.offset == 6);
    char small[8];
    CHECK(sr_json_parse("x", 1, small, sizeof small) == NULL);
    CHECK(strlen(small) == 7);
    CHECK(sr_json_parse("x", 1, NULL, 0) == NULL);
    CHECK(sr_json_parse(NULL, 0, small, sizeof small) == NULL);
    /* An embedded NUL outside strings is garbage; the length, not the NUL, ends the input. */
    CHECK(sr_json_parse("1\0", 2, NULL, 0) == NULL);
    struct sr_json *v = sr_json_parse("12", 1, NULL, 0);
    double d = 0;
    CHECK(v && sr_json_num(v, &d) && d == 1);
    sr_json_free(v);
}

static void test_strings(void) {
    /* Regression (found by fuzz_json): empty strings and keys were not NUL-terminated. */
    struct sr_json *v = parse("{\"\":\"\"}");
    CHECK(v && v->keys[0][0] == '\0' && v->key_lens[0] == 0 && strcmp(sr_json_str(sr_json_get(v, "")), "") == 0);
    sr_json_free(v);
    v = parse("\"\"");
    CHECK(v && v->len == 0 && strlen(sr_json_str(v)) == 0);
    sr_json_free(v);
    v = parse("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"");
    CHECK(v && sr_json_str(v) && strcmp(sr_json_str(v), "a\"b\\c/d\be\ff\ng\rh\ti") == 0);
    sr_json_free(v);
    /* \u escapes: 1, 2 and 3 byte UTF-8 */
    v = parse("\"\\u0041\\u00e9\\u20AC\"");
    CHECK(v && strcmp(sr_json_str(v), "A\xC3\xA9\xE2\x82\xAC") == 0 && v->len == 6);
    sr_json_free(v);
    /* surrogate pair -> 4-byte UTF-8 (U+1F600) */
    v = parse("\"\\uD83D\\uDE00\"");
    CHECK(v && strcmp(sr_json_str(v), "\xF0\x9F\x98\x80") == 0);
    sr_json_free(v);
    /* lone high, lone low, high + non-low, reversed pair: U+FFFD each */
    v = parse("\"\\uD83Dx\\uDE00\\uD83D\\u0041\\uDE00\\uD83D\"");
    CHECK(v && strcmp(sr_json_str(v), "\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBD" "A\xEF\xBF\xBD\xEF\xBF\xBD") == 0);
    sr_json_free(v);
    v = parse("\"\\uD83D\"");
    CHECK(v && strcmp(sr_json_str(v), "\xEF\xBF\xBD") == 0);
    sr_json_free(v);
    /* embedded NUL keeps its length */
    v = parse("\"a\\u0000b\"");
    CHECK(v && v->len == 3 && memcmp(sr_json_str(v), "a\0b", 4) == 0);
    sr_json_free(v);
    /* invalid raw UTF-8 is accepted and replaced */
    v = parse("\"\xFF\xC3(\xED\xA0\x80" "ok\"");
    CHECK(v && strcmp(sr_json_str(v), "\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDok") == 0);
    sr_json_free(v);
    /* valid raw UTF-8 passes through */
    v = parse("\"\xE4\xB8\xAD\xE6\x96\x87\"");
    CHECK(v && strcmp(sr_json_str(v), "\xE4\xB8\xAD\xE6\x96\x87") == 0);
    sr_json_free(v);
    /* keys are decoded too */
    v = parse("{\"k\\u00e9y\":1, \"a\\u0000b\":2}");
    CHECK(v && sr_json_get(v, "k\xC3\xA9y") != NULL);
    CHECK(v && v->key_lens[1] == 3 && sr_json_get(v, "a") == NULL);
    sr_json_free(v);
}

static void test_numbers(void) {
    static const struct { const char *text; double want; } nums[] = {
        {"0", 0}, {"-0", 0}, {"42", 42}, {"-17", -17}, {"3.25", 3.25}, {"1e3", 1000},
        {"1E-3", 0.001}, {"-2.5e+2", -250}, {"1.7976931348623157e308", 1.7976931348623157e308},
        {"5e-324", 5e-324}, {"1e-400", 0},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        struct sr_json *v = parse(nums[i].text);
        double d = -1;
        CHECK(v && sr_json_num(v, &d) && d == nums[i].want);
        CHECK(v && v->str && strcmp(v->str, nums[i].text) == 0); /* literal kept */
        sr_json_free(v);
    }
    int64_t x = 0;
    struct sr_json *v = parse("9007199254740993");
    CHECK(v && sr_json_int(v, &x) && x == 9007199254740993LL);
    sr_json_free(v);
    v = parse("-9223372036854775808");
    CHECK(v && sr_json_int(v, &x) && x == INT64_MIN);
    sr_json_free(v);
    v = parse("9223372036854775808");
    CHECK(v && !sr_json_int(v, &x)); /* beyond int64 */
    sr_json_free(v);
    v = parse("1e3");
    CHECK(v && sr_json_int(v, &x) && x == 1000);
    sr_json_free(v);
    v = parse("2.5");
    CHECK(v && !sr_json_int(v, &x));
    sr_json_free(v);
    v = parse("1e300");
    CHECK(v && !sr_json_int(v, &x));
    sr_json_free(v);
    v = parse("\"5\"");
    CHECK(v && !sr_json_num(v, NULL) && !sr_json_int(v, &x));
    sr_json_free(v);
    /* A very long integer literal parses (as an approximate double). */
    struct sr_buf b = {0};
    for (int i = 0; i < 300; i++) sr_buf_append(&b, "9", 1);
    v = sr_json_parse(b.data, b.len, NULL, 0);
    double d = 0;
    CHECK(v && sr_json_num(v, &d) && d > 1e299 && isfinite(d));
    sr_json_free(v);
    for (int i = 0; i < 20; i++) sr_buf_append(&b, "9", 1);
    v = sr_json_parse(b.data, b.len, NULL, 0); /* 320 digits: overflows a double */
    CHECK(v == NULL);
    sr_buf_free(&b);
}

static void test_depth(void) {
    struct sr_buf b = {0};
    for (int i = 0; i < SR_JSON_MAX_DEPTH; i++) sr_buf_append(&b, "[", 1);
    for (int i = 0; i < SR_JSON_MAX_DEPTH; i++) sr_buf_append(&b, "]", 1);
    struct sr_json *v = sr_json_parse(b.data, b.len, NULL, 0);
    CHECK(v != NULL); /* exactly the limit */
    sr_json_free(v);
    sr_buf_clear(&b);
    for (int i = 0; i <= SR_JSON_MAX_DEPTH; i++) sr_buf_append(&b, "[", 1);
    for (int i = 0; i <= SR_JSON_MAX_DEPTH; i++) sr_buf_append(&b, "]", 1);
    char err[128];
    v = sr_json_parse(b.data, b.len, err, sizeof err);
    CHECK(v == NULL && strcmp(err, "line 1 col 129: nesting too deep (limit 128)") == 0);
    sr_buf_clear(&b);
    /* A million open brackets / objects: rejected quickly, no stack overflow. */
    for (int i = 0; i < 1000000; i++) sr_buf_append(&b, "{\"a\":[", 6);
    v = sr_json_parse(b.data, b.len, err, sizeof err);
    CHECK(v == NULL && strstr(err, "nesting too deep") != NULL);
    sr_buf_free(&b);
}

static void test_lookup(void) {
    const char *doc = "{\"name\":\"x\",\"n\":3,\"flag\":true,\"list\":[10,\"s\",null,{}],"
                      "\"empty_obj\":{},\"empty_arr\":[],\"dup\":1,\"dup\":2}";
    char err[128];
    struct sr_json *v = sr_json_parse(doc, strlen(doc), err, sizeof err);
    CHECK(v != NULL);
    if (!v) return;
    CHECK(v->type == SR_JSON_OBJECT && sr_json_len(v) == 8);
    CHECK(strcmp(sr_json_str(sr_json_get(v, "name")), "x") == 0);
    double d;
    CHECK(sr_json_num(sr_json_get(v, "n"), &d) && d == 3);
    bool bv = false;
    CHECK(sr_json_bool(sr_json_get(v, "flag"), &bv) && bv);
    CHECK(!sr_json_bool(sr_json_get(v, "n"), &bv));
    const struct sr_json *list = sr_json_get(v, "list");
    CHECK(sr_json_len(list) == 4);
    CHECK(sr_json_num(sr_json_at(list, 0), &d) && d == 10);
    CHECK(strcmp(sr_json_str(sr_json_at(list, 1)), "s") == 0);
    CHECK(sr_json_is_null(sr_json_at(list, 2)));
    CHECK(sr_json_at(list, 3)->type == SR_JSON_OBJECT && sr_json_len(sr_json_at(list, 3)) == 0);
    CHECK(sr_json_at(list, 4) == NULL);
    CHECK(sr_json_len(sr_json_get(v, "empty_obj")) == 0);
    CHECK(sr_json_get(v, "empty_arr")->type == SR_JSON_ARRAY && sr_json_len(sr_json_get(v, "empty_arr")) == 0);
    CHECK(sr_json_num(sr_json_get(v, "dup"), &d) && d == 2); /* last wins */
    CHECK(sr_json_get(v, "missing") == NULL);
    CHECK(sr_json_get(list, "name") == NULL);
    CHECK(sr_json_str(sr_json_get(v, "n")) == NULL);
    CHECK(sr_json_get(NULL, "x") == NULL && sr_json_len(NULL) == 0 && sr_json_at(NULL, 0) == NULL);
    CHECK(sr_json_str(NULL) == NULL && !sr_json_num(NULL, &d) && !sr_json_is_null(NULL));
    CHECK(strcmp(v->keys[0], "name") == 0 && v->key_lens[0] == 4);
    sr_json_free(v);
    sr_json_free(NULL);
}

static void test_large(void) {
    /* 200k-element array: linear time, correct count. */
    struct sr_buf b = {0};
    sr_buf_append(&b, "[", 1);
    for (int i = 0; i < 200000; i++) sr_buf_printf(&b, "%s{\"i\":%d}", i ? "," : "", i);
    sr_buf_append(&b, "]", 1);
    int64_t t0 = sr_time_us();
    struct sr_json *v = sr_json_parse(b.data, b.len, NULL, 0);
    int64_t dt = sr_time_us() - t0;
    CHECK(v && sr_json_len(v) == 200000);
    int64_t x = 0;
    CHECK(v && sr_json_int(sr_json_get(sr_json_at(v, 199999), "i"), &x) && x == 199999);
    CHECK(dt < 5 * 1000 * 1000);
    sr_json_free(v);
    sr_buf_free(&b);
}

int main(void) {
    test_valid();
    test_invalid();
    test_strings();
    test_numbers();
    test_depth();
    test_lookup();
    test_large();
    return test_summary("test_json");
}
