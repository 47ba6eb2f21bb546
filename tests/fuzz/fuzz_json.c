/*
 * fuzz_json.c: libFuzzer target for the project's JSON reading (src/core/jsonutil.c over jansson,
 * as datasets and results.jsonl are read): parse, walk every node, dump, parse the dump again and
 * require the same tree; a failed parse must leave a "line L col C:" message. Strings written
 * back from arbitrary bytes (sr_jstrn) must always dump and parse.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* jansson bounds the nesting depth while parsing, so this recursion is bounded too. */
static size_t walk(json_t *v) {
    char num[48];
    size_t n = 1 + (json_is_string(v) ? json_string_length(v) : 0) + sr_jnum_text(v, num, sizeof num);
    if (json_is_array(v))
        for (size_t i = 0; i < json_array_size(v); i++) n += walk(json_array_get(v, i));
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c) {
            if (json_object_get(v, k) != c) __builtin_trap();
            n += walk(c);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256] = "";
    json_t *v = sr_jparse((const char *)data, size, err, sizeof err);
    if (!v && strncmp(err, "line ", 5) != 0) __builtin_trap();
    if (v) {
        (void)walk(v);
        char *s = json_dumps(v, SR_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
        if (s) {
            json_t *w = sr_jparse(s, strlen(s), NULL, 0);
            if (!w) __builtin_trap();
            /* Reals print with 15 digits and may not read back bit for bit: compare only what
             * holds no real (and always the re-dump, which must be stable). */
            char *s2 = json_dumps(w, SR_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
            if (!s2 || strcmp(s, s2) != 0) {
                json_t *w2 = s2 ? sr_jparse(s2, strlen(s2), NULL, 0) : NULL;
                char *s3 = w2 ? json_dumps(w2, SR_JSON_DUMP_FLAGS | JSON_ENCODE_ANY) : NULL;
                if (!s3 || strcmp(s2, s3) != 0) __builtin_trap();
                free(s3);
                json_decref(w2);
            }
            free(s2);
            json_decref(w);
            free(s);
        }
        json_decref(v);
    }
    /* Any bytes as a string value: always valid JSON once written. */
    json_t *str = sr_jstrn((const char *)data, size);
    char *d = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
    if (str && d) {
        json_t *back = sr_jparse(d, strlen(d), NULL, 0);
        if (!back || !json_is_string(back)) __builtin_trap();
        json_decref(back);
    }
    free(d);
    json_decref(str);
    return 0;
}
