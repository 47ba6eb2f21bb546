/*
 * fuzz_json.c: libFuzzer target for src/core/json.c: parse, walk every node through the typed
 * accessors, free. A failed parse must leave an error message.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Depth is bounded by SR_JSON_MAX_DEPTH, so this recursion is too. */
static size_t walk(const struct sr_json *v) {
    double d;
    int64_t i;
    bool b;
    size_t n = 1 + (sr_json_str(v) ? v->len : 0) + sr_json_num(v, &d) + sr_json_int(v, &i) + sr_json_bool(v, &b);
    for (size_t k = 0; k < sr_json_len(v); k++) {
        n += walk(sr_json_at(v, k));
        if (v->type == SR_JSON_OBJECT && strlen(v->keys[k]) == v->key_lens[k] && !sr_json_get(v, v->keys[k]))
            __builtin_trap();
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[128] = "";
    struct sr_json *v = sr_json_parse((const char *)data, size, err, sizeof err);
    if (!v && strncmp(err, "line ", 5) != 0) __builtin_trap();
    if (v) (void)walk(v);
    sr_json_free(v);
    return 0;
}
